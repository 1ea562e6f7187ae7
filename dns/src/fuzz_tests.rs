//! Fuzzing the DNS responder with what a task (or anything on an overlay) may send: random
//! bytes, and well-formed queries with bytes flipped, cut or appended. The responder must never
//! panic, and every reply it writes must parse as DNS and stay within the transport's limit. A
//! short fixed run here; `scripts/fuzz.sh` sets `MESH_FUZZ_CASES` (and `MESH_FUZZ_SEED`) for a
//! long one.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::table::{NameTable, ServiceRecords, TaskRecord};
use crate::wire::{Outcome, Responder, Transport};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn table() -> NameTable {
    let mut b = NameTable::builder();
    b.network("n1", "front", &["10.0.0.0/16".parse().unwrap()])
        .unwrap();
    let mut web = ServiceRecords::vip("web", "10.0.0.2".parse().unwrap());
    let mut many = ServiceRecords::dnsrr("many");
    for i in 0..60u16 {
        let addr = IpAddr::from([10, 0, 1, (i + 1) as u8]);
        many = many.task(TaskRecord::replica(format!("t{i}"), u64::from(i) + 1, addr));
        if i < 3 {
            web = web.task(TaskRecord::replica(format!("w{i}"), u64::from(i) + 1, addr));
        }
    }
    b.service("n1", &web).unwrap();
    b.service("n1", &many).unwrap();
    b.build()
}

/// A well-formed query for one of the names the table knows (or not), of a random type.
fn query(rng: &mut StdRng) -> Vec<u8> {
    let names = [
        "web",
        "many",
        "tasks.web",
        "t3.many",
        "nosuch",
        "web.",
        "example.org",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::PTR,
        RecordType::TXT,
        RecordType::ANY,
    ];
    let mut m = Message::new(rng.random(), MessageType::Query, OpCode::Query);
    let name = names[rng.random_range(0..names.len())];
    let qtype = types[rng.random_range(0..types.len())];
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if rng.random_bool(0.5) {
        let mut e = Edns::new();
        e.set_max_payload(rng.random_range(0..=4096));
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// `request` with a few bytes changed, cut short or extended.
fn mutate(rng: &mut StdRng, mut request: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..4) {
            0 if !request.is_empty() => {
                let i = rng.random_range(0..request.len());
                request[i] = rng.random();
            }
            1 if !request.is_empty() => request.truncate(rng.random_range(0..request.len())),
            2 => request.push(rng.random()),
            _ => {
                // A count field (questions, answers, authorities, additionals) set high.
                if request.len() >= 12 {
                    let at = 4 + 2 * rng.random_range(0..4);
                    request[at..at + 2].copy_from_slice(&rng.random::<u16>().to_be_bytes());
                }
            }
        }
    }
    request
}

#[test]
fn random_and_damaged_requests_never_panic_and_replies_parse() {
    let table = table();
    let mut responder = Responder::new(1232);
    let mut rng = StdRng::seed_from_u64(env("MESH_FUZZ_SEED", 0x5eed));
    let mut replies = 0u64;
    for case in 0..env("MESH_FUZZ_CASES", 3_000) {
        let request = match case % 3 {
            0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            1 => query(&mut rng),
            _ => {
                let q = query(&mut rng);
                mutate(&mut rng, q)
            }
        };
        let transport = if rng.random_bool(0.5) {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        if responder.respond(&table, "n1", &request, transport) == Outcome::Reply {
            let reply = responder.reply();
            Message::from_vec(reply)
                .unwrap_or_else(|e| panic!("reply to {request:02x?} does not parse: {e}"));
            if transport == Transport::Udp {
                assert!(reply.len() <= 4096, "a {}-byte UDP reply", reply.len());
            }
            replies += 1;
        }
    }
    assert!(replies > 0, "no request got a reply");
}
