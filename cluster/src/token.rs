//! Join tokens, as Swarm's: `MSHTKN-1-<digest>-<secret>`.
//!
//! The digest is the SHA-256 of the cluster's root CA certificate (DER), in base 36, 50
//! characters: a joiner pins it and accepts a manager only if the manager's chain ends in that CA.
//! The secret (25 characters of base 36, 128 random bits) is what the managers check; worker and
//! manager tokens differ only in it. Pure format and parsing: no I/O, and the randomness comes in
//! as bytes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// What every token starts with.
pub const PREFIX: &str = "MSHTKN";
/// The only token format version.
pub const VERSION: &str = "1";
/// Characters of the CA digest (256 bits in base 36).
pub const DIGEST_LEN: usize = 50;
/// Characters of the secret (128 bits in base 36).
pub const SECRET_LEN: usize = 25;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A parsed join token. Its `Debug` prints the secret as `<redacted>` (`Display` is the token).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JoinToken {
    /// [`ca_digest`] of the root CA the joiner must find at the manager.
    pub ca_digest: String,
    pub secret: String,
}

/// Why a string is not a join token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "invalid join token: it must look like {PREFIX}-{VERSION}-<50 characters>-<25 characters> (get one with `meshctl swarm join-token worker` on a manager)"
    )]
    Malformed,
    #[error("invalid join token: version {0:?} is not supported (only {VERSION})")]
    Version(String),
    #[error(
        "invalid join token: the CA digest must be {DIGEST_LEN} characters of 0-9 and a-z, got {0:?}"
    )]
    Digest(String),
    #[error(
        "invalid join token: the secret must be {SECRET_LEN} characters of 0-9 and a-z, got {0} characters"
    )]
    Secret(usize),
}

impl JoinToken {
    /// The token for the root CA `ca_der` and a secret.
    pub fn new(ca_der: &[u8], secret: &str) -> Self {
        Self {
            ca_digest: ca_digest(ca_der),
            secret: secret.to_owned(),
        }
    }

    /// Does this token pin the CA `ca_der`?
    pub fn pins(&self, ca_der: &[u8]) -> bool {
        self.ca_digest == ca_digest(ca_der)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .field("secret", &crate::state::REDACTED)
            .finish()
    }
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ,
/// so that a caller cannot find a token secret one character at a time.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.ca_digest, self.secret)
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts.as_slice() else {
            return Err(TokenError::Malformed);
        };
        if *prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        if *version != VERSION {
            return Err(TokenError::Version((*version).to_owned()));
        }
        if digest.len() != DIGEST_LEN || !is_base36(digest) {
            return Err(TokenError::Digest((*digest).to_owned()));
        }
        if secret.len() != SECRET_LEN || !is_base36(secret) {
            return Err(TokenError::Secret(secret.chars().count()));
        }
        Ok(Self {
            ca_digest: (*digest).to_owned(),
            secret: (*secret).to_owned(),
        })
    }
}

fn is_base36(s: &str) -> bool {
    s.bytes().all(|b| BASE36.contains(&b))
}

/// The digest a token carries for the root CA certificate `ca_der`.
pub fn ca_digest(ca_der: &[u8]) -> String {
    base36(&Sha256::digest(ca_der), DIGEST_LEN)
}

/// A secret made from 16 random bytes.
pub fn secret_from(random: [u8; 16]) -> String {
    base36(&random, SECRET_LEN)
}

/// `bytes` as a big-endian number in base 36, left-padded with zeros to `width`.
fn base36(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut digits = Vec::new();
    while num.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in &mut num {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(BASE36[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("base36 is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_and_secrets_compare_whole() {
        let t = JoinToken::new(b"ca", &secret_from([7; 16]));
        let text = format!("{t:?}");
        assert!(!text.contains(&t.secret), "{text}");
        assert!(
            text.contains("<redacted>") && text.contains(&t.ca_digest),
            "{text}"
        );
        assert!(secret_eq(&t.secret, &t.secret.clone()));
        assert!(!secret_eq(&t.secret, &secret_from([8; 16])));
        assert!(!secret_eq("abc", "abcd"));
        assert!(!secret_eq("abc", "abd"));
        assert!(secret_eq("", ""));
    }

    fn token() -> JoinToken {
        JoinToken::new(b"a CA certificate", &secret_from([7; 16]))
    }

    #[test]
    fn a_token_prints_and_parses_back() {
        let t = token();
        let s = t.to_string();
        assert!(s.starts_with("MSHTKN-1-"), "{s}");
        assert_eq!(s.len(), 6 + 1 + 1 + 1 + DIGEST_LEN + 1 + SECRET_LEN);
        assert_eq!(s.parse::<JoinToken>(), Ok(t.clone()));
        // Parse, print, parse again: unchanged.
        assert_eq!(s.parse::<JoinToken>().unwrap().to_string(), s);
        assert!(t.pins(b"a CA certificate"));
        assert!(!t.pins(b"another CA"));
        assert_eq!(format!("  {s}\n").parse::<JoinToken>(), Ok(t));
    }

    #[test]
    fn digests_and_secrets_have_fixed_width() {
        // The largest 256-bit number needs exactly 50 base-36 digits; zero is padded.
        assert_eq!(base36(&[0xff; 32], DIGEST_LEN).len(), DIGEST_LEN);
        assert_eq!(base36(&[0; 32], DIGEST_LEN), "0".repeat(DIGEST_LEN));
        assert_eq!(base36(&[0xff; 16], SECRET_LEN).len(), SECRET_LEN);
        assert_eq!(base36(&[1, 0], 3), "074"); // 256 = 7 * 36 + 4
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let good = token().to_string();
        let cases: Vec<(String, TokenError)> = vec![
            (String::new(), TokenError::Malformed),
            ("SWMTKN-1-abc-def".into(), TokenError::Malformed),
            (good.replacen("MSHTKN", "SWMTKN", 1), TokenError::Malformed),
            (
                good.replacen("-1-", "-2-", 1),
                TokenError::Version("2".into()),
            ),
            (format!("{good}-extra"), TokenError::Malformed),
            (
                format!(
                    "MSHTKN-1-{}-{}",
                    "A".repeat(DIGEST_LEN),
                    "a".repeat(SECRET_LEN)
                ),
                TokenError::Digest("A".repeat(DIGEST_LEN)),
            ),
            (
                format!("MSHTKN-1-abc-{}", "a".repeat(SECRET_LEN)),
                TokenError::Digest("abc".into()),
            ),
            (good[..good.len() - 1].to_owned(), TokenError::Secret(24)),
            (
                format!("{}A", &good[..good.len() - 1]),
                TokenError::Secret(25),
            ),
        ];
        for (input, want) in cases {
            let got = input.parse::<JoinToken>().unwrap_err();
            assert_eq!(got, want, "{input:?}");
            assert!(got.to_string().starts_with("invalid join token"), "{got}");
        }
    }

    /// Fuzzing: noise and damaged tokens never panic; what parses prints back the same, and
    /// what does not says it is an invalid join token.
    #[test]
    fn random_and_damaged_tokens_parse_or_say_why() {
        let mut rng = crate::spec::TestRng::new(17);
        let good = token().to_string();
        for case in 0..crate::spec::fuzz_cases(5_000) {
            let input = if case % 2 == 0 {
                rng.noise(b"MSHTKN-1-0123456789abcxyzABC \n\xc3", 90)
            } else {
                let mut bytes = good.clone().into_bytes();
                for _ in 0..=rng.below(3) {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] = *rng.pick(b"-0aZ ~");
                }
                String::from_utf8(bytes).unwrap()
            };
            match input.parse::<JoinToken>() {
                Ok(t) => assert_eq!(t.to_string().parse::<JoinToken>(), Ok(t), "{input:?}"),
                Err(e) => assert!(e.to_string().starts_with("invalid join token"), "{e}"),
            }
        }
    }
}
