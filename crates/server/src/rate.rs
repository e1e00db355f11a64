//! Per-caller rate limits in the server: which budget a request draws from, the budget a
//! model's callers get (the platform's `limits.rate` tightened by the manifest's), and the
//! limiter itself ([`palisade_ratelimit::Limiter`]: GCRA token buckets in a bounded table).

use palisade_bundle::rate::{Budget, RateSection};
pub use palisade_ratelimit::{Limiter, Rate, Refused};

/// Default for the most buckets tracked at once (`limits.maxTrackedCallers`).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Every model request but explanations.
    Requests,
    /// Explanations.
    Explain,
}

impl Kind {
    /// The name in audit records and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Explain => "explain",
        }
    }
}

/// The budget a model's callers get for `kind`: the platform's and the manifest's, each
/// field the tighter of the two (a manifest only ever tightens); `None` when neither sets a
/// rate (no limit).
pub fn budget_for(platform: Option<&RateSection>, model: Option<&RateSection>, kind: Kind) -> Option<Budget> {
    let of = |rate: &RateSection| match kind {
        Kind::Requests => rate.requests,
        Kind::Explain => rate.explain_budget(),
    };
    match (platform.map(of), model.map(of)) {
        (Some(platform), Some(model)) => Some(platform.tightest(model)),
        (platform, model) => platform.or(model),
    }
}

/// What a manifest's `limits.rate` asks for beyond the platform's (which then applies), one
/// sentence per budget, for the warning logged when the model loads.
pub fn loosenings(platform: Option<&RateSection>, model: Option<&RateSection>) -> Vec<String> {
    let (Some(platform), Some(model)) = (platform, model) else { return Vec::new() };
    [Kind::Requests, Kind::Explain]
        .into_iter()
        .filter_map(|kind| {
            let wanted = budget_for(None, Some(model), kind)?;
            let allowed = budget_for(Some(platform), None, kind)?;
            wanted.looser_than(allowed).then(|| {
                format!(
                    "limits.rate ({} budget: {} per second, burst {}) is looser than the platform's ({} per second, burst {}); the tighter value of each applies",
                    kind.as_str(),
                    wanted.requests_per_second,
                    wanted.burst.get(),
                    allowed.requests_per_second,
                    allowed.burst.get()
                )
            })
        })
        .collect()
}

/// The limiter's rate for a budget. A [`Budget`]'s ranges are within what [`Rate::new`]
/// takes, so the strictest rate stands in only for a budget that cannot exist.
pub fn rate_of(budget: Budget) -> Rate {
    Rate::new(budget.requests_per_second.get(), budget.burst.get()).unwrap_or(Rate::ONE_A_DAY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn section(text: &str) -> RateSection {
        palisade_core::yaml::from_str(Path::new("r.yaml"), text).unwrap()
    }

    fn pair(budget: Option<Budget>) -> Option<(f64, u32)> {
        budget.map(|b| (b.requests_per_second.get(), b.burst.get()))
    }

    #[test]
    fn a_manifest_tightens_field_by_field_and_never_loosens() {
        let platform =
            section("{requestsPerSecond: 10, burst: 20, explain: {requestsPerSecond: 1, burst: 2}}");
        let tighter_rate = section("{requestsPerSecond: 2, burst: 50}");
        assert_eq!(pair(budget_for(Some(&platform), Some(&tighter_rate), Kind::Requests)), Some((2.0, 20)));
        // The manifest's own explain default (a tenth: 0.2/s, burst 5) against the platform's.
        assert_eq!(pair(budget_for(Some(&platform), Some(&tighter_rate), Kind::Explain)), Some((0.2, 2)));
        assert_eq!(pair(budget_for(None, Some(&tighter_rate), Kind::Requests)), Some((2.0, 50)));
        assert_eq!(pair(budget_for(Some(&platform), None, Kind::Explain)), Some((1.0, 2)));
        assert_eq!(budget_for(None, None, Kind::Requests), None);

        let warnings = loosenings(Some(&platform), Some(&tighter_rate));
        assert_eq!(warnings.len(), 2, "burst 50 > 20, explain burst 5 > 2: {warnings:?}");
        assert!(warnings[0].contains("requests budget") && warnings[0].contains("looser"), "{warnings:?}");
        let tight = section("{requestsPerSecond: 1, burst: 1}");
        assert!(loosenings(Some(&platform), Some(&tight)).is_empty());
        assert!(loosenings(None, Some(&platform)).is_empty(), "nothing to loosen without a platform limit");
    }
}
