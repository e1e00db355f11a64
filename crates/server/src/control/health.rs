//! The console's health page: the server's own request metrics, sampled every few seconds
//! into an hour of history, and turned into per-interval series for the models a person
//! may see (requests per second, latency percentiles, refusals by status and by reason,
//! summed and per model).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::AppState;

/// How often the metrics are sampled.
pub(crate) const EVERY: Duration = Duration::from_secs(10);
/// Samples kept: an hour at [`EVERY`].
const KEPT: usize = 361;
/// The statuses shown as refusals.
const REFUSALS: [&str; 3] = ["401", "403", "429"];

#[derive(Debug, Default, Clone)]
struct ModelSample {
    by_status: HashMap<String, u64>,
    /// Cumulative counts per bucket upper bound, in seconds.
    buckets: Vec<(f64, u64)>,
    /// `palisade_authn_failures_total` by reason.
    authn: HashMap<String, u64>,
    /// `palisade_audit_refusals_total`.
    audit_refused: u64,
}

impl ModelSample {
    /// Refusals by reason, as the page names them: `401 <authentication reason>`,
    /// `403 denied`, `429 too many requests`, `503 audit unavailable`.
    fn reasons(&self) -> BTreeMap<String, u64> {
        let mut reasons: BTreeMap<String, u64> =
            self.authn.iter().map(|(reason, n)| (format!("401 {reason}"), *n)).collect();
        for (status, name) in [("403", "403 denied"), ("429", "429 too many requests")] {
            reasons.insert(name.to_owned(), self.by_status.get(status).copied().unwrap_or(0));
        }
        reasons.insert("503 audit unavailable".to_owned(), self.audit_refused);
        reasons
    }
}

#[derive(Debug)]
struct Sample {
    /// Seconds since the Unix epoch.
    at: f64,
    models: HashMap<String, ModelSample>,
}

/// An hour of samples of the request metrics.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Takes one sample of `palisade_requests_total` and
    /// `palisade_request_duration_seconds` now.
    pub(crate) fn sample(&self, state: &AppState) {
        let mut models: HashMap<String, ModelSample> = HashMap::new();
        for family in state.metrics().families() {
            let requests = family.name() == "palisade_requests_total";
            let latency = family.name() == "palisade_request_duration_seconds";
            let authn = family.name() == "palisade_authn_failures_total";
            let audit = family.name() == "palisade_audit_refusals_total";
            if !requests && !latency && !authn && !audit {
                continue;
            }
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned())
                };
                let Some(model) = label("model") else { continue };
                let entry = models.entry(model).or_default();
                if requests && let Some(code) = label("code") {
                    entry.by_status.insert(code, metric.get_counter().get_value() as u64);
                }
                if authn && let Some(reason) = label("reason") {
                    entry.authn.insert(reason, metric.get_counter().get_value() as u64);
                }
                if audit {
                    entry.audit_refused = metric.get_counter().get_value() as u64;
                }
                if latency {
                    let histogram = metric.get_histogram();
                    entry.buckets = histogram
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count()))
                        .collect();
                }
            }
        }
        let at = palisade_identity::authn::unix_now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(Sample { at, models });
    }

    /// Per-interval points for `visible` models (all when `None`): requests per second,
    /// latency percentiles (the upper bound of the bucket they fall in, ms), refusals by
    /// status, and refusals by reason summed (`reasons`) and per model (`by_model`; only
    /// reasons that occurred in the interval are listed).
    pub(crate) fn series(&self, visible: Option<&BTreeSet<String>>) -> Value {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let shown = |model: &str| visible.is_none_or(|v| v.contains(model));
        let mut points = Vec::new();
        for (before, after) in samples.iter().zip(samples.iter().skip(1)) {
            let seconds = (after.at - before.at).max(0.001);
            let mut requests = 0u64;
            let mut refused: BTreeMap<&str, u64> = REFUSALS.iter().map(|s| (*s, 0)).collect();
            let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
            let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
            let mut by_model: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
            for (model, now) in after.models.iter().filter(|(m, _)| shown(m)) {
                let then = before.models.get(model).cloned().unwrap_or_default();
                let earlier = then.reasons();
                for (reason, count) in now.reasons() {
                    let delta = count.saturating_sub(earlier.get(&reason).copied().unwrap_or(0));
                    if delta > 0 {
                        *reasons.entry(reason.clone()).or_default() += delta;
                        *by_model.entry(model.as_str()).or_default().entry(reason).or_default() += delta;
                    }
                }
                for (status, count) in &now.by_status {
                    let delta = count.saturating_sub(then.by_status.get(status).copied().unwrap_or(0));
                    requests += delta;
                    if let Some(slot) = refused.get_mut(status.as_str()) {
                        *slot += delta;
                    }
                }
                for (i, (bound, count)) in now.buckets.iter().enumerate() {
                    let earlier = then.buckets.get(i).map_or(0, |b| b.1);
                    let slot = buckets.entry(i as u64).or_insert((*bound, 0));
                    slot.1 += count.saturating_sub(earlier);
                }
            }
            let percentile = |q: f64| -> Option<f64> {
                let total = buckets.values().last().map_or(0, |b| b.1);
                if total == 0 {
                    return None;
                }
                let wanted = (q * total as f64).ceil() as u64;
                buckets.values().find(|(_, count)| *count >= wanted).map(|(bound, _)| bound * 1000.0)
            };
            points.push(json!({
                "at": after.at,
                "requests": requests,
                "rps": requests as f64 / seconds,
                "p50_ms": percentile(0.5),
                "p95_ms": percentile(0.95),
                "p99_ms": percentile(0.99),
                "refused": refused,
                "reasons": reasons,
                "by_model": by_model,
            }));
        }
        json!({"every_s": EVERY.as_secs(), "points": points})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, model: &str, ok: u64, denied: u64, fast: u64, slow: u64) -> Sample {
        let by_status = [("200".to_owned(), ok), ("403".to_owned(), denied)].into_iter().collect();
        let buckets = vec![(0.001, fast), (0.1, fast + slow), (f64::INFINITY, fast + slow)];
        let authn = [("expired".to_owned(), denied / 2)].into_iter().collect();
        let sample = ModelSample { by_status, buckets, authn, audit_refused: ok / 6 };
        Sample { at, models: [(model.to_owned(), sample)].into_iter().collect() }
    }

    #[test]
    fn series_are_differences_for_the_visible_models_only() {
        let history = History::default();
        {
            let mut samples = history.samples.lock().unwrap();
            samples.push_back(sample(100.0, "iris", 0, 0, 0, 0));
            let mut later = sample(110.0, "iris", 18, 2, 10, 10);
            later
                .models
                .insert("other".to_owned(), sample(110.0, "other", 1000, 0, 1000, 0).models["other"].clone());
            samples.push_back(later);
        }
        let iris: BTreeSet<String> = ["iris".to_owned()].into_iter().collect();
        let series = history.series(Some(&iris));
        let point = &series["points"][0];
        assert_eq!(point["rps"], 2.0);
        assert_eq!(point["refused"]["403"], 2);
        assert_eq!(point["p50_ms"], 1.0);
        assert_eq!(point["p99_ms"], 100.0);
        assert_eq!(point["reasons"]["403 denied"], 2);
        assert_eq!(point["reasons"]["401 expired"], 1);
        assert_eq!(point["reasons"]["503 audit unavailable"], 3);
        assert!(point["reasons"].get("429 too many requests").is_none(), "none in the interval: {point}");
        assert_eq!(point["by_model"]["iris"]["403 denied"], 2);
        assert!(point["by_model"].get("other").is_none(), "{point}");
        let all = history.series(None);
        assert_eq!(all["points"][0]["rps"], 102.0);
        assert_eq!(all["points"][0]["by_model"]["other"]["503 audit unavailable"], 166);
    }
}
