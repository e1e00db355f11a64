//! The audit page's "requests over time": the records a query matched, counted per time
//! bucket, allowed and refused. Counting is bounded whatever the trail holds: counts are
//! kept per minute, coarsened to hours, then days, past [`MAX_KEYS`] distinct keys, and the
//! answer has at most [`MAX_BUCKETS`] buckets of a round width.

use std::collections::BTreeMap;

use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Distinct keys kept while counting; past it, the unit grows.
const MAX_KEYS: usize = 20_000;
/// Buckets in the answer, at most.
pub(crate) const MAX_BUCKETS: i64 = 60;
/// Bucket widths, smallest first: the first one that gives at most [`MAX_BUCKETS`] wins.
const WIDTHS: [i64; 19] = [
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
    90 * DAY,
    180 * DAY,
    365 * DAY,
];

/// Allowed and refused records per time unit.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    /// Milliseconds per key.
    unit: i64,
    /// Unit index (time / unit) -> (allowed, refused).
    counts: BTreeMap<i64, (u64, u64)>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { unit: MINUTE, counts: BTreeMap::new() }
    }
}

impl Timeline {
    /// Counts one record at `millis` since the Unix epoch.
    pub(crate) fn add(&mut self, millis: i64, allowed: bool) {
        let slot = self.counts.entry(millis.div_euclid(self.unit)).or_default();
        if allowed {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
        if self.counts.len() > MAX_KEYS {
            let coarser = if self.unit < HOUR { HOUR } else { DAY.max(self.unit * 30) };
            let old = std::mem::take(&mut self.counts);
            for (key, (a, r)) in old {
                let slot = self.counts.entry((key * self.unit).div_euclid(coarser)).or_default();
                slot.0 += a;
                slot.1 += r;
            }
            self.unit = coarser;
        }
    }

    /// The bucket width (ms) and the buckets from the first record's to the last's, empty
    /// ones included: (start in ms, allowed, refused).
    pub(crate) fn buckets(&self) -> (i64, Vec<(i64, u64, u64)>) {
        let (Some((&first, _)), Some((&last, _))) =
            (self.counts.first_key_value(), self.counts.last_key_value())
        else {
            return (self.unit, Vec::new());
        };
        let (start, end) = (first * self.unit, (last + 1) * self.unit);
        let fits = |width: i64| (end.div_euclid(width) - start.div_euclid(width)) < MAX_BUCKETS;
        let width = WIDTHS
            .iter()
            .copied()
            .filter(|w| *w >= self.unit && w % self.unit == 0)
            .find(|w| fits(*w))
            .unwrap_or_else(|| {
                // Longer than 60 years of records: whole units, however many.
                let span = (end - start) / self.unit;
                self.unit * (span / MAX_BUCKETS + 1)
            });
        let base = start.div_euclid(width);
        let count = usize::try_from((end - 1).div_euclid(width) - base + 1).unwrap_or(0);
        let mut out: Vec<(i64, u64, u64)> = (0..count).map(|i| ((base + i as i64) * width, 0, 0)).collect();
        for (key, (a, r)) in &self.counts {
            let index = usize::try_from((key * self.unit).div_euclid(width) - base).unwrap_or(0);
            if let Some(slot) = out.get_mut(index) {
                slot.1 += a;
                slot.2 += r;
            }
        }
        (width, out)
    }

    /// The buckets as the page reads them.
    pub(crate) fn to_json(&self) -> Value {
        let (width, buckets) = self.buckets();
        let buckets: Vec<Value> = buckets
            .into_iter()
            .map(|(start, allowed, refused)| {
                json!({
                    "start": palisade_audit::Timestamp::from_unix_millis(start).to_string(),
                    "allowed": allowed,
                    "refused": refused,
                })
            })
            .collect();
        json!({"bucket_s": width / 1000, "buckets": buckets})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_000_000_000; // 2026-12-01T..., any time will do

    #[test]
    fn records_are_counted_per_bucket_with_empty_buckets_between() {
        let mut t = Timeline::default();
        t.add(T0, true);
        t.add(T0 + 10_000, false);
        t.add(T0 + 5 * MINUTE, true);
        let (width, buckets) = t.buckets();
        assert_eq!(width, MINUTE);
        let counts: Vec<(u64, u64)> = buckets.iter().map(|b| (b.1, b.2)).collect();
        // T0 is not on a minute boundary: the first two may share its minute only.
        assert_eq!(counts.iter().map(|c| c.0 + c.1).sum::<u64>(), 3);
        assert_eq!(buckets.len() as i64, (T0 + 5 * MINUTE) / MINUTE - T0 / MINUTE + 1);
        assert_eq!(counts[0].0, 1);
        assert_eq!(counts.last().unwrap().0, 1);
        assert!(buckets.windows(2).all(|w| w[1].0 - w[0].0 == MINUTE));
    }

    #[test]
    fn a_long_span_gets_wider_buckets_never_more_than_sixty() {
        for span in [59 * MINUTE, 2 * HOUR, 3 * DAY, 400 * DAY] {
            let mut t = Timeline::default();
            t.add(T0, true);
            t.add(T0 + span, false);
            let (width, buckets) = t.buckets();
            assert!(buckets.len() as i64 <= MAX_BUCKETS, "{span}: {}", buckets.len());
            assert!(buckets.len() >= 2, "{span}");
            assert!(WIDTHS.contains(&width), "{width}");
            assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 1);
            assert_eq!(buckets.iter().map(|b| b.2).sum::<u64>(), 1);
            assert!(buckets.iter().all(|b| b.0 % width == 0), "aligned");
        }
    }

    #[test]
    fn counting_stays_bounded_and_loses_no_record() {
        let mut t = Timeline::default();
        // One record a minute for two months: more minutes than MAX_KEYS.
        let n = 60 * 24 * 60;
        for i in 0..n {
            t.add(T0 + i * MINUTE, i % 3 != 0);
        }
        assert!(t.counts.len() <= MAX_KEYS, "{}", t.counts.len());
        let (_, buckets) = t.buckets();
        assert!(buckets.len() as i64 <= MAX_BUCKETS);
        let total: u64 = buckets.iter().map(|b| b.1 + b.2).sum();
        assert_eq!(total, n as u64);
    }

    #[test]
    fn nothing_counted_is_no_buckets() {
        assert!(Timeline::default().buckets().1.is_empty());
        assert_eq!(Timeline::default().to_json()["buckets"], json!([]));
    }
}
