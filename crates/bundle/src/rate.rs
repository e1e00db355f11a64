//! Per-caller rate limits as written in `palisade.yaml` (`limits.rate`) and in the platform
//! config (`limits.rate`): a token bucket per caller, one budget for a model's requests and a
//! separate, lower one for its explanations.
//!
//! ```yaml
//! limits:
//!   rate:
//!     requestsPerSecond: 20    # refill rate of each caller's bucket
//!     burst: 40                # bucket size: requests a rested caller may send at once
//!     explain:                 # optional: a tenth of the above when absent
//!       requestsPerSecond: 1
//!       burst: 2
//! ```
//!
//! The values are valid by construction: a rate is a finite number in
//! [`PER_SECOND_RANGE`], a burst an integer in [`BURST_RANGE`], and the explain budget is
//! never looser than the request budget it sits beside.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The range of `requestsPerSecond` (one request a day up to a million a second).
pub const PER_SECOND_RANGE: (f64, f64) = (1.0 / 86_400.0, 1_000_000.0);

/// The range of `burst`.
pub const BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// A refill rate in requests per second: finite, within [`PER_SECOND_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct PerSecond(f64);

// A `PerSecond` is never NaN (see `new`), so equality is an equivalence.
impl Eq for PerSecond {}

impl PerSecond {
    /// A rate, if `value` is finite and in range; else what is wrong.
    pub fn new(value: f64) -> Result<PerSecond, String> {
        let (low, high) = PER_SECOND_RANGE;
        if value.is_finite() && (low..=high).contains(&value) {
            Ok(PerSecond(value))
        } else {
            Err(format!("{value} is out of range: use a number from 0.0000116 (one a day) to 1000000"))
        }
    }

    /// The rate.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The smaller of two rates.
    pub fn min(self, other: PerSecond) -> PerSecond {
        if other.0 < self.0 { other } else { self }
    }
}

impl fmt::Display for PerSecond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for PerSecond {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PerSecond::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Requests a caller may send at once after resting: an integer in [`BURST_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Burst(u32);

impl Burst {
    /// A burst, if `value` is in range; else what is wrong.
    pub fn new(value: u32) -> Result<Burst, String> {
        if BURST_RANGE.contains(&value) {
            Ok(Burst(value))
        } else {
            Err(format!("{value} is out of range: use 1 to 1000000 requests"))
        }
    }

    /// The burst.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Burst {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        let value =
            u32::try_from(value).map_err(|_| format!("{value} is out of range: use 1 to 1000000 requests"));
        value.and_then(Burst::new).map_err(serde::de::Error::custom)
    }
}

/// One token bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Budget {
    /// Refill rate: the requests per second a caller may sustain.
    pub requests_per_second: PerSecond,
    /// Bucket size: the requests a caller who has been quiet may send at once.
    pub burst: Burst,
}

impl Budget {
    /// The tighter of two budgets, field by field.
    pub fn tightest(self, other: Budget) -> Budget {
        Budget {
            requests_per_second: self.requests_per_second.min(other.requests_per_second),
            burst: self.burst.min(other.burst),
        }
    }

    /// Whether `self` lets a caller do more than `other` in some field.
    pub fn looser_than(self, other: Budget) -> bool {
        self.requests_per_second > other.requests_per_second || self.burst > other.burst
    }

    /// A tenth of this budget (at least one request a burst): the explain budget when none
    /// is written.
    pub fn tenth(self) -> Budget {
        let (low, _) = PER_SECOND_RANGE;
        Budget {
            requests_per_second: PerSecond((self.requests_per_second.0 / 10.0).max(low)),
            burst: Burst((self.burst.0 / 10).max(1)),
        }
    }
}

/// `limits.rate`: each caller's budget for a model's requests, and for its explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRate", rename_all = "camelCase")]
pub struct RateSection {
    /// Requests of every kind but explanations: infer, metadata, readiness, Seldon and
    /// KServe predictions, gRPC calls, graphs.
    #[serde(flatten)]
    pub requests: Budget,
    /// Explanations (`/explain`, `:explain`, Seldon's `explain`); when absent, a tenth of
    /// `requests` (see [`Budget::tenth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Budget>,
}

impl RateSection {
    /// The explain budget: the one written, else a tenth of the request budget.
    pub fn explain_budget(&self) -> Budget {
        self.explain.unwrap_or_else(|| self.requests.tenth())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRate {
    requests_per_second: PerSecond,
    burst: Burst,
    #[serde(default)]
    explain: Option<Budget>,
}

impl TryFrom<RawRate> for RateSection {
    type Error = String;

    fn try_from(raw: RawRate) -> Result<RateSection, String> {
        let requests = Budget { requests_per_second: raw.requests_per_second, burst: raw.burst };
        if let Some(explain) = raw.explain
            && explain.looser_than(requests)
        {
            return Err(format!(
                "`explain` ({} per second, burst {}) is looser than the request budget ({} per second, burst {}); explanations cost more than predictions, give them the lower budget",
                explain.requests_per_second,
                explain.burst.get(),
                requests.requests_per_second,
                requests.burst.get()
            ));
        }
        Ok(RateSection { requests, explain: raw.explain })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<RateSection, String> {
        palisade_core::yaml::from_str::<RateSection>(std::path::Path::new("r.yaml"), text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_and_defaults_explain_to_a_tenth() {
        let rate = parse("{requestsPerSecond: 20, burst: 40}").unwrap();
        assert_eq!(rate.requests.requests_per_second.get(), 20.0);
        assert_eq!(rate.requests.burst.get(), 40);
        assert_eq!(rate.explain, None);
        let explain = rate.explain_budget();
        assert_eq!((explain.requests_per_second.get(), explain.burst.get()), (2.0, 4));
        let small = parse("{requestsPerSecond: 0.5, burst: 3}").unwrap().explain_budget();
        assert_eq!((small.requests_per_second.get(), small.burst.get()), (0.05, 1));
        let rate =
            parse("{requestsPerSecond: 2.5, burst: 5, explain: {requestsPerSecond: 0.5, burst: 1}}").unwrap();
        assert_eq!(rate.explain_budget().burst.get(), 1);
    }

    #[test]
    fn refuses_out_of_range_and_loose_explain_budgets() {
        for (bad, says) in [
            ("{requestsPerSecond: 0, burst: 1}", "out of range"),
            ("{requestsPerSecond: -3, burst: 1}", "out of range"),
            ("{requestsPerSecond: .nan, burst: 1}", "out of range"),
            ("{requestsPerSecond: .inf, burst: 1}", "out of range"),
            ("{requestsPerSecond: 1, burst: 0}", "out of range"),
            ("{requestsPerSecond: 1, burst: -1}", "out of range"),
            ("{requestsPerSecond: 1, burst: 9999999999}", "out of range"),
            ("{requestsPerSecond: 1}", "missing field `burst`"),
            ("{requestsPerSecond: 1, burst: 1, rps: 2}", "unknown field `rps`"),
            ("{requestsPerSecond: 1, burst: 5, explain: {requestsPerSecond: 2, burst: 1}}", "looser"),
            ("{requestsPerSecond: 1, burst: 5, explain: {requestsPerSecond: 1, burst: 6}}", "looser"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        for text in [
            "{requestsPerSecond: 2.5, burst: 5}",
            "{requestsPerSecond: 2.5, burst: 5, explain: {requestsPerSecond: 0.5, burst: 1}}",
        ] {
            let rate = parse(text).unwrap();
            let json = serde_json::to_string(&rate).unwrap();
            assert!(json.starts_with(r#"{"requestsPerSecond":2.5,"burst":5"#), "{json}");
            assert_eq!(serde_json::from_str::<RateSection>(&json).unwrap(), rate);
        }
    }

    #[test]
    fn tightest_takes_each_field_from_the_tighter_side() {
        let a = parse("{requestsPerSecond: 10, burst: 2}").unwrap().requests;
        let b = parse("{requestsPerSecond: 3, burst: 8}").unwrap().requests;
        let t = a.tightest(b);
        assert_eq!((t.requests_per_second.get(), t.burst.get()), (3.0, 2));
        assert!(a.looser_than(t) && b.looser_than(t) && !t.looser_than(a) && !t.looser_than(b));
    }
}
