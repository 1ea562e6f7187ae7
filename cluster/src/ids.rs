//! Object identifiers as Swarm prints them: 25 characters of base 36, shown cut to 12 in tables.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An object's identifier.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Id(String);

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl Id {
    /// A new random identifier.
    pub fn random() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        Self(
            (0..25)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, as in `service ls`.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }

    /// Does `prefix` (at least one character) select this id, as Docker's id prefixes do?
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        !prefix.is_empty() && self.0.starts_with(prefix)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_look_like_swarms() {
        let id = Id::random();
        assert_eq!(id.as_str().len(), 25);
        assert!(id.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(id.short().len(), 12);
        assert!(id.matches_prefix(id.short()));
        assert_ne!(id, Id::random());
    }
}
