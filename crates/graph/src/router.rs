//! Choosing children: weighted random draws (RANDOM_ABTEST, WEIGHTED_RANDOM, `traffic:`),
//! sticky draws, and what a router answered.

use crate::rng::Rng;

/// What a router chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Run this child (by index).
    Child(usize),
    /// Run every child, at once (`-1`).
    All,
    /// Run no child: the router's input is the answer (`-2`).
    Input,
}

impl Choice {
    /// Reads a router model's answer: `0..children`, `-1` or `-2`.
    pub fn from_index(index: i64, children: usize) -> Option<Choice> {
        match index {
            -1 => Some(Choice::All),
            -2 => Some(Choice::Input),
            i if i >= 0 && (i as u64) < children as u64 => Some(Choice::Child(i as usize)),
            _ => None,
        }
    }

    /// The index as Seldon reports it in `meta.routing`.
    pub fn as_index(self) -> i64 {
        match self {
            Choice::Child(i) => i as i64,
            Choice::All => -1,
            Choice::Input => -2,
        }
    }
}

/// Integer weights and their running sums: a draw uniform over `[0, total)` falls in arm
/// `i` when `sums[i-1] <= draw < sums[i]`, so each arm gets exactly `weight / total`.
#[derive(Debug, Clone)]
pub struct Weights {
    sums: Vec<u64>,
}

impl Weights {
    pub(crate) fn new(weights: &[u64]) -> Option<Weights> {
        let mut total = 0u64;
        let sums = weights
            .iter()
            .map(|w| {
                total = total.checked_add(*w)?;
                Some(total)
            })
            .collect::<Option<Vec<u64>>>()?;
        (total > 0).then_some(Weights { sums })
    }

    pub(crate) fn total(&self) -> u64 {
        self.sums.last().copied().unwrap_or(0)
    }

    /// The arm a point of `[0, total)` falls in.
    pub(crate) fn arm(&self, point: u64) -> usize {
        self.sums.partition_point(|&sum| sum <= point).min(self.sums.len().saturating_sub(1))
    }

    /// A random arm, or the sticky key's arm.
    pub(crate) fn draw(&self, rng: &mut Rng, sticky: Option<u64>) -> usize {
        let point = match sticky {
            Some(key) => sticky_point(key, self.total()),
            None => rng.below(self.total()),
        };
        self.arm(point)
    }
}

/// A stable 64-bit hash of a sticky key (FNV-1a, then SplitMix64's finalizer), salted with
/// the router's name so that two routers split one caller independently. The same caller
/// gets the same arm on every replica and after restarts.
pub fn sticky_key(value: &[u8], salt: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes().iter().chain([0u8].iter()).chain(value) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The point of `[0, total)` a sticky key maps to (multiply-shift: uniform for uniform keys).
pub fn sticky_point(key: u64, total: u64) -> u64 {
    ((u128::from(key) * u128::from(total)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn points_fall_in_their_arms_without_off_by_one() {
        let w = Weights::new(&[90, 10]).unwrap();
        assert_eq!(w.total(), 100);
        assert_eq!(w.arm(0), 0);
        assert_eq!(w.arm(89), 0);
        assert_eq!(w.arm(90), 1);
        assert_eq!(w.arm(99), 1);
        let w = Weights::new(&[0, 5, 0, 5]).unwrap();
        assert_eq!((0..10).map(|p| w.arm(p)).collect::<Vec<_>>(), vec![1, 1, 1, 1, 1, 3, 3, 3, 3, 3]);
        assert!(Weights::new(&[0, 0]).is_none());
    }

    #[test]
    fn choices_read_seldon_indices() {
        assert_eq!(Choice::from_index(-1, 2), Some(Choice::All));
        assert_eq!(Choice::from_index(-2, 2), Some(Choice::Input));
        assert_eq!(Choice::from_index(1, 2), Some(Choice::Child(1)));
        assert_eq!(Choice::from_index(2, 2), None);
        assert_eq!(Choice::from_index(-3, 2), None);
    }

    #[test]
    fn sticky_keys_are_stable_and_salted() {
        assert_eq!(sticky_key(b"alice", "r"), sticky_key(b"alice", "r"));
        assert_ne!(sticky_key(b"alice", "r"), sticky_key(b"alice", "s"));
        assert!(sticky_point(u64::MAX, 100) < 100);
    }
}
