//! Unlock keys, as Swarm's: `SWMKEY-1-<32 bytes in base64 without padding, 43 characters>`.
//! With autolock on, each manager keeps its copy of the data key on disk wrapped with this key
//! (the key-encryption key); a restarted manager stays locked until `swarm unlock` gives it.
//! Pure format and parsing: the randomness comes in as bytes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// What every unlock key starts with.
pub const PREFIX: &str = "SWMKEY-1-";
/// Characters after the prefix (32 bytes in unpadded base64).
pub const KEY_CHARS: usize = 43;

/// An unlock key. `Display` is the key as users type it; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockKey([u8; 32]);

/// Why a string is not an unlock key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid unlock key: an unlock key is {PREFIX} followed by {KEY_CHARS} base64 characters (print it with `meshctl swarm unlock-key` on an unlocked manager)"
)]
pub struct UnlockKeyError;

impl UnlockKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockKey({})", crate::state::REDACTED)
    }
}

impl FromStr for UnlockKey {
    type Err = UnlockKeyError;

    /// Surrounding white space (a pasted line) is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(UnlockKeyError)?;
        if body.len() != KEY_CHARS {
            return Err(UnlockKeyError);
        }
        let bytes = STANDARD_NO_PAD.decode(body).map_err(|_| UnlockKeyError)?;
        bytes.try_into().map(Self).map_err(|_| UnlockKeyError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_swarm_and_parse_back() {
        let k = UnlockKey::from_bytes([0xfb; 32]);
        let text = k.to_string();
        assert!(text.starts_with("SWMKEY-1-"), "{text}");
        assert_eq!(text.len(), PREFIX.len() + KEY_CHARS);
        assert_eq!(format!(" {text}\n").parse::<UnlockKey>().unwrap(), k);
        assert!(!format!("{k:?}").contains(&text[9..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = UnlockKey::from_bytes([7; 32]).to_string();
        for bad in [
            "",
            "SWMKEY-1-",
            "SWMKEY-2-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &good[..good.len() - 1],
            &format!("{good}A"),
            &good.replace("SWMKEY", "MSHTKN"),
            "SWMKEY-1-!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            let e = bad.parse::<UnlockKey>().unwrap_err();
            assert!(e.to_string().contains("SWMKEY-1-"), "{bad:?}: {e}");
        }
    }
}
