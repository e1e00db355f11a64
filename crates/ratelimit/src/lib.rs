//! Per-caller rate limits: one token bucket per key (for Palisade, a model, a budget and a
//! caller), in bounded memory. Pure: no I/O, no async; benchmarked alone.
//!
//! Each bucket is kept as a single number, its *theoretical arrival time* (the generic cell
//! rate algorithm, GCRA, which is a token bucket written differently): every admitted
//! request pushes it one emission interval `T = 1 / rate` further; a request is admitted
//! while that time is at most `(burst - 1) * T` ahead of now. So over any interval of
//! length `t` a caller is admitted at most `burst + rate * t` requests, and a bucket whose
//! time has passed is full: such an entry can be forgotten without changing any answer.
//!
//! Memory is bounded: at most about `max_keys` buckets are tracked, in shards. When a shard
//! is full, its full (idle) buckets are dropped; if that is not enough, the buckets nearest
//! to full are dropped (their callers get fresh buckets, the smallest loosening possible).
//! An attacker who mints addresses or principals therefore costs a bounded table, never
//! unbounded growth.
//!
//! Times are nanoseconds on the limiter's own clock; [`Limiter::check_at`] takes the time
//! as an argument so tests control it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards of the table (a power of two): requests of different callers rarely share a lock.
const SHARDS: usize = 16;

/// A bucket's refill rate and size, as the limiter uses them: the emission interval and the
/// tolerance, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per request, rounded up (so never more than the rate is admitted).
    interval: u64,
    /// How far ahead of now the arrival time may be: `(burst - 1) * interval`.
    tolerance: u64,
}

impl Rate {
    /// The strictest rate: one request a day, no burst.
    pub const ONE_A_DAY: Rate = Rate { interval: 86_400 * 1_000_000_000, tolerance: 0 };

    /// `per_second` requests a second sustained, `burst` at once; `None` unless
    /// `per_second` is finite and positive and `burst` at least 1. A rate below one request
    /// in about 584 years is taken as that.
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        if !(per_second.is_finite() && per_second > 0.0 && burst >= 1) {
            return None;
        }
        // `as` saturates; an interval of at least 1 ns keeps the arithmetic meaningful.
        let interval = ((1e9 / per_second).ceil() as u64).max(1);
        let tolerance = interval.saturating_mul(u64::from(burst - 1));
        Some(Rate { interval, tolerance })
    }
}

/// A refusal: how long until the caller's next request would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The wait, exact.
    pub wait: Duration,
}

impl Refused {
    /// The wait in whole seconds, rounded up (at least 1): the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u32 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
    }
}

/// One shard's buckets: key digest to theoretical arrival time (ns).
type Table = HashMap<u128, u64, PassThrough>;

/// The limiter: every caller's buckets, bounded (see the module docs).
pub struct Limiter {
    shards: Vec<Mutex<Table>>,
    per_shard: usize,
    keys: [std::collections::hash_map::RandomState; 2],
    epoch: Instant,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("tracked", &self.tracked()).field("max", &self.capacity()).finish()
    }
}

impl Limiter {
    /// A limiter tracking at most `max_keys` buckets (at least one per shard).
    pub fn new(max_keys: usize) -> Limiter {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            per_shard,
            keys: [Default::default(), Default::default()],
            epoch: Instant::now(),
        }
    }

    /// The most buckets tracked at once.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Buckets tracked now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |t| t.len())).sum()
    }

    /// Nanoseconds on the limiter's clock.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes one request from the bucket of `key` (for Palisade: the model, the budget and the
    /// caller), now.
    pub fn check<K: Hash + ?Sized>(&self, key: &K, rate: Rate) -> Result<(), Refused> {
        self.check_at(key, rate, self.now())
    }

    /// Takes one request from the bucket of `key` at time `now` (ns on the limiter's clock).
    pub fn check_at<K: Hash + ?Sized>(&self, key: &K, rate: Rate, now: u64) -> Result<(), Refused> {
        let key = self.digest(key);
        // The low bits pick the shard; the map's own hash uses other bits of the same digest.
        let shard = &self.shards[(key as usize) & (SHARDS - 1)];
        let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
        let arrival = match table.get(&key) {
            Some(&tat) => tat.max(now),
            None => now,
        };
        let ahead = arrival - now;
        if ahead > rate.tolerance {
            return Err(Refused { wait: Duration::from_nanos(ahead - rate.tolerance) });
        }
        let next = arrival.saturating_add(rate.interval);
        if table.len() >= self.per_shard && !table.contains_key(&key) {
            make_room(&mut table, self.per_shard, now);
        }
        table.insert(key, next);
        Ok(())
    }

    /// Two independent keyed hashes of the key, as one 128-bit digest. The keys are random
    /// per process, so nobody can aim two callers at one bucket.
    fn digest<K: Hash + ?Sized>(&self, key: &K) -> u128 {
        (u128::from(self.keys[0].hash_one(key)) << 64) | u128::from(self.keys[1].hash_one(key))
    }
}

/// Frees room in a full shard: every full (idle) bucket goes, since forgetting one changes
/// no answer; if that frees less than a sixteenth of the shard, the buckets nearest to full
/// go too, down to fifteen sixteenths, so a stream of new keys costs amortized constant
/// time per key.
fn make_room(table: &mut Table, per_shard: usize, now: u64) {
    table.retain(|_, tat| *tat > now);
    let keep = per_shard - per_shard.div_ceil(16).max(1).min(per_shard);
    if table.len() <= keep {
        return;
    }
    let mut by_fullness: Vec<(u64, u128)> = table.iter().map(|(key, tat)| (*tat, *key)).collect();
    let excess = by_fullness.len() - keep;
    by_fullness.select_nth_unstable(excess - 1);
    for (_, key) in &by_fullness[..excess] {
        table.remove(key);
    }
}

/// A hasher for keys that already are keyed digests: it passes their bits through.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// See [`PassThrough`].
#[derive(Debug, Clone, Copy, Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, value: u128) {
        // The high half: the shard was chosen by the low bits.
        self.0 = (value >> 64) as u64;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// Which budget, as Palisade's keys name it.
    #[derive(Debug, Clone, Copy, Hash)]
    enum Kind {
        Requests,
        Explain,
    }

    const SECOND: u64 = 1_000_000_000;

    fn budget(per_second: f64, burst: u32) -> Rate {
        Rate::new(per_second, burst).unwrap()
    }

    #[test]
    fn a_burst_then_refusals_until_the_bucket_refills() {
        let limiter = Limiter::new(1000);
        let b = budget(2.0, 3);
        let t0 = 5 * SECOND;
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&("iris", Kind::Requests, "alice"), b, t0), Ok(()));
        }
        let refused = limiter.check_at(&("iris", Kind::Requests, "alice"), b, t0).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(500), "one token refills in 1/rate");
        assert_eq!(refused.retry_after_secs(), 1);
        // Refusals take nothing: just before the refill still refused, at it admitted.
        let just_before = t0 + 500_000_000 - 1;
        assert!(limiter.check_at(&("iris", Kind::Requests, "alice"), b, just_before).is_err());
        assert_eq!(limiter.check_at(&("iris", Kind::Requests, "alice"), b, t0 + 500_000_000), Ok(()));
        assert!(limiter.check_at(&("iris", Kind::Requests, "alice"), b, t0 + 500_000_000).is_err());
        // After a long rest the whole burst is back, never more.
        let later = t0 + 60 * SECOND;
        let admitted =
            (0..10).filter(|_| limiter.check_at(&("iris", Kind::Requests, "alice"), b, later).is_ok());
        assert_eq!(admitted.count(), 3);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limiter = Limiter::new(10);
        let slow = budget(0.4, 1);
        limiter.check_at(&("m", Kind::Requests, "c"), slow, 0).unwrap();
        let refused = limiter.check_at(&("m", Kind::Requests, "c"), slow, SECOND / 10).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(2400));
        assert_eq!(refused.retry_after_secs(), 3);
        assert_eq!(Refused { wait: Duration::from_secs(2) }.retry_after_secs(), 2);
        assert_eq!(Refused { wait: Duration::from_nanos(1) }.retry_after_secs(), 1);
    }

    #[test]
    fn callers_models_and_budgets_have_their_own_buckets() {
        let limiter = Limiter::new(1000);
        let one = budget(1.0, 1);
        limiter.check_at(&("iris", Kind::Requests, "alice"), one, 0).unwrap();
        assert!(limiter.check_at(&("iris", Kind::Requests, "alice"), one, 0).is_err());
        limiter.check_at(&("iris", Kind::Requests, "bob"), one, 0).unwrap();
        limiter.check_at(&("wine", Kind::Requests, "alice"), one, 0).unwrap();
        limiter.check_at(&("iris", Kind::Explain, "alice"), one, 0).unwrap();
        assert!(limiter.check_at(&("iris", Kind::Explain, "alice"), one, 0).is_err());
    }

    #[test]
    fn memory_is_bounded_when_callers_are_minted() {
        let limiter = Limiter::new(1024);
        let b = budget(1.0, 5);
        // A steady caller, then a flood of new addresses, all active at once.
        limiter.check_at(&("iris", Kind::Requests, "alice"), b, 0).unwrap();
        for i in 0..200_000u32 {
            let caller = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            limiter.check_at(&("iris", Kind::Requests, &caller), b, 0).unwrap();
            if i % 4096 == 0 {
                assert!(limiter.tracked() <= limiter.capacity(), "{limiter:?}");
            }
        }
        assert!(limiter.tracked() <= limiter.capacity(), "{limiter:?}");
        assert!(limiter.capacity() < 1024 + SHARDS, "{limiter:?}");
        // Over time the flood goes idle and its buckets are dropped as room is needed.
        for i in 0..5000u32 {
            limiter.check_at(&("iris", Kind::Requests, &format!("late{i}")), b, 100 * SECOND).unwrap();
        }
        assert!(limiter.tracked() <= limiter.capacity());
    }

    #[test]
    fn a_small_table_is_only_ever_looser() {
        // A table of one bucket per shard must forget callers all the time; forgetting an
        // idle one changes nothing, and forgetting a busy one only ever loosens.
        let small = Limiter::new(1);
        let large = Limiter::new(100_000);
        let b = budget(3.0, 2);
        let mut now = 0;
        let (mut evicting, mut refusals) = (0, 0);
        for step in 0..20_000u64 {
            now += (step * 7919) % 70_000_000;
            let caller = format!("caller{}", (step * 31) % 97);
            let s = small.check_at(&("m", Kind::Requests, &caller), b, now).is_ok();
            let l = large.check_at(&("m", Kind::Requests, &caller), b, now).is_ok();
            evicting += usize::from(s != l);
            refusals += usize::from(!l);
            // The small table may only ever be looser (a busy bucket evicted), never stricter.
            assert!(s || !l, "step {step}: small {s}, large {l}");
        }
        assert!(refusals > 100, "the test exercises refusals: {refusals}");
        assert!(small.tracked() <= small.capacity() && large.tracked() > small.capacity());
        // Busy buckets were evicted from the small table: its answers were looser sometimes.
        assert!(evicting > 0);
    }

    proptest! {
        /// Over every interval between two admitted requests, at most `burst + rate * t` are
        /// admitted; and a refusal's wait is exact: a moment earlier is still refused.
        #[test]
        fn never_admits_more_than_burst_plus_rate_times_t(
            per_second in 0.01f64..5000.0,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..2_000_000_000, 1..300),
        ) {
            let limiter = Limiter::new(100);
            let b = budget(per_second, burst);
            let mut now = 0u64;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                match limiter.check_at(&("m", Kind::Requests, "c"), b, now) {
                    Ok(()) => admitted.push(now),
                    Err(refused) => {
                        let wait = u64::try_from(refused.wait.as_nanos()).unwrap();
                        prop_assert!(wait > 0);
                        prop_assert!(limiter.check_at(&("m", Kind::Requests, "c"), b, now + wait - 1).is_err());
                    }
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                for (j, end) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as f64;
                    let t = (end - start) as f64 / 1e9;
                    prop_assert!(count <= f64::from(burst) + per_second * t + 1e-9,
                        "{count} admitted in {t} s at {per_second}/s, burst {burst}");
                }
            }
        }

        /// A caller who waits `1 / rate` between requests is always admitted.
        #[test]
        fn a_caller_within_the_rate_is_never_refused(per_second in 0.01f64..5000.0, burst in 1u32..50, n in 1usize..200) {
            let limiter = Limiter::new(100);
            let b = budget(per_second, burst);
            let interval = (1e9 / per_second).ceil() as u64;
            for i in 0..n as u64 {
                prop_assert!(limiter.check_at(&("m", Kind::Requests, "c"), b, i * interval).is_ok());
            }
        }
    }
}

#[cfg(test)]
mod rate_tests {
    #![allow(clippy::unwrap_used)]

    use super::Rate;

    #[test]
    fn rates_refuse_nonsense_and_round_the_interval_up() {
        for (per_second, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (f64::INFINITY, 1), (1.0, 0)] {
            assert_eq!(Rate::new(per_second, burst), None, "{per_second} {burst}");
        }
        let third = Rate::new(3.0, 2).unwrap();
        assert_eq!((third.interval, third.tolerance), (333_333_334, 333_333_334));
        assert_eq!(Rate::new(1e12, 1).unwrap().interval, 1);
        assert_eq!(Rate::new(1e-300, 5).unwrap().tolerance, u64::MAX);
    }
}
