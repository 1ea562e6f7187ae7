//! [`MaglevRing`]: the lookup table of Maglev (Eisenbud et al., NSDI 2016), filled from the
//! backends' permutations. Pure: the same names, in the same order, give the same table on every
//! node and after a restart, so flows keep their backend ([`crate::plan`] sorts the names).

/// A filled Maglev table: each slot names a backend by its index in the list it was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevRing {
    slots: Vec<u32>,
}

/// FNV-1a, 64-bit, with a seed: stable across builds and machines (std's hasher is not).
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix: FNV's low bits are weak for short, similar names.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl MaglevRing {
    /// Fills a table of `size` slots (a prime, larger than the number of backends) for the
    /// backends named `names` (unique). With no names the table is empty.
    pub fn new<S: AsRef<str>>(names: &[S], size: u32) -> Self {
        assert!(size > 1, "a Maglev table needs at least 2 slots");
        let m = u64::from(size);
        let n = names.len();
        if n == 0 {
            return Self { slots: Vec::new() };
        }
        // Each backend's permutation of the slots: offset + j * skip (mod size).
        let perms: Vec<(u64, u64)> = names
            .iter()
            .map(|name| {
                let b = name.as_ref().as_bytes();
                let offset = fnv1a(0x5bd1_e995, b) % m;
                let skip = fnv1a(0x1b87_3593, b) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0_u64; n];
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0_u64;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while table[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self { slots: table }
    }

    /// The backend index of every slot (empty for an empty ring).
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// The backend index for a flow hash.
    pub fn pick(&self, hash: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[hash as usize % self.slots.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.255.0.{}:80", i + 10)).collect()
    }

    #[test]
    fn every_slot_is_filled_with_a_listed_backend() {
        for n in [1, 2, 3, 7, 50] {
            let ring = MaglevRing::new(&names(n), 16381);
            assert_eq!(ring.slots().len(), 16381);
            assert!(ring.slots().iter().all(|&s| (s as usize) < n), "n={n}");
        }
        assert!(MaglevRing::new::<String>(&[], 16381).slots().is_empty());
    }

    #[test]
    fn shares_are_balanced() {
        for n in [2, 3, 10, 100] {
            let ring = MaglevRing::new(&names(n), 16381);
            let mut count = vec![0_u32; n];
            for &s in ring.slots() {
                count[s as usize] += 1;
            }
            let ideal = 16381.0 / f64::from(n as u32);
            for c in count {
                assert!(
                    (f64::from(c) - ideal).abs() / ideal < 0.03,
                    "n={n}: {c} slots vs ideal {ideal}"
                );
            }
        }
    }

    #[test]
    fn removing_one_backend_moves_little_else() {
        let all = names(10);
        let before = MaglevRing::new(&all, 16381);
        let mut rest = all.clone();
        let gone = rest.remove(3);
        let after = MaglevRing::new(&rest, 16381);
        let mut moved = 0;
        for (b, a) in before.slots().iter().zip(after.slots()) {
            let was = &all[*b as usize];
            let now = &rest[*a as usize];
            if *was != gone && was != now {
                moved += 1;
            }
        }
        // Slots that did not belong to the removed backend mostly stay (paper: a few percent).
        assert!(
            f64::from(moved) / 16381.0 < 0.03,
            "{moved} slots of surviving backends moved"
        );
    }

    #[test]
    fn order_of_names_does_not_matter_once_sorted_by_caller() {
        let a = MaglevRing::new(&names(5), 16381);
        let b = MaglevRing::new(&names(5), 16381);
        assert_eq!(a, b);
        assert_eq!(a.pick(12345), b.pick(12345));
    }
}
