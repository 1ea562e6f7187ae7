//! Fuzzing the frame decoder: what any peer may put in a frame's body (random bytes, and
//! well-formed requests with bytes flipped, cut or appended) decodes or is refused as an
//! undecodable message; it never panics. A short fixed run here; `scripts/fuzz.sh` sets
//! `MESH_FUZZ_CASES` (and `MESH_FUZZ_SEED`) for a long one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::AgentMessage;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn damaged(rng: &mut StdRng, mut body: Vec<u8>) -> Vec<u8> {
    let noise = b"{}[]\":,0123456789-eE.truefalsnul\\u";
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..3) {
            0 if !body.is_empty() => {
                let i = rng.random_range(0..body.len());
                body[i] = noise[rng.random_range(0..noise.len())];
            }
            1 if !body.is_empty() => body.truncate(rng.random_range(0..body.len())),
            _ => {
                let i = rng.random_range(0..=body.len());
                body.insert(i, noise[rng.random_range(0..noise.len())]);
            }
        }
    }
    body
}

#[test]
fn random_and_damaged_frames_decode_or_are_refused() {
    let good = [
        encode(&Request::ServiceList),
        encode(&Request::ServiceScale {
            service: "web".into(),
            replicas: 3,
        }),
        encode(&Request::NodeList),
        encode(&AgentMessage::TaskStatus {
            updates: Vec::new(),
        }),
    ];
    let mut rng = StdRng::seed_from_u64(env("MESH_FUZZ_SEED", 0x5eed));
    let mut decoded = 0u64;
    for case in 0..env("MESH_FUZZ_CASES", 5_000) {
        let body = if case % 4 == 0 {
            (0..rng.random_range(0..48)).map(|_| rng.random()).collect()
        } else {
            let base = good[rng.random_range(0..good.len())].body.clone();
            damaged(&mut rng, base)
        };
        let frame = Frame { body };
        for result in [
            decode::<Request>(&frame).map(|_| ()),
            decode::<AgentMessage>(&frame).map(|_| ()),
        ] {
            match result {
                Ok(()) => decoded += 1,
                Err(e) => assert!(
                    e.to_string().contains("undecodable message"),
                    "{e} for {:?}",
                    String::from_utf8_lossy(&frame.body)
                ),
            }
        }
    }
    assert!(decoded > 0, "nothing decoded: the mutations are too strong");
}
