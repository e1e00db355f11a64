//! The TLS certificate the data port serves, watched: its expiry, reloads and (for a
//! workload certificate) renewals as metrics on the admin port, and readiness that fails
//! once it has expired.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus::{IntCounter, IntGauge};

use crate::Metrics;
use crate::metrics::catch_up;

/// The data port's certificate, as handed to [`crate::AppState::watch_serving_cert`].
#[derive(Debug, Clone)]
pub struct ServingCert {
    /// The resolver that serves it (files hot-reloaded, or the workload certificate's).
    pub cert: Arc<palisade_tls::ReloadingCert>,
    /// The renewal's progress, when the certificate is Palisade's own workload certificate.
    pub workload: Option<palisade_tls::WorkloadStatus>,
}

/// A watched certificate with its metrics.
pub(crate) struct Watched {
    serving: ServingCert,
    expiry_seconds: IntGauge,
    reloads: IntCounter,
    reload_failures: IntCounter,
    renewals: Option<(IntCounter, IntCounter)>,
}

impl Watched {
    /// Registers the certificate metrics:
    ///
    /// - `palisade_tls_certificate_expiry_seconds`: seconds until the served certificate's
    ///   notAfter (negative once expired);
    /// - `palisade_tls_certificate_reloads_total`, `..._reload_failures_total`: new pairs
    ///   swapped in (file changes and renewals), changed files that could not be used;
    /// - with a workload certificate, `palisade_workload_certificate_renewals_total` and
    ///   `palisade_workload_certificate_renewal_failures_total`.
    pub(crate) fn register(serving: ServingCert, metrics: &Metrics) -> Result<Watched, prometheus::Error> {
        let expiry_seconds = IntGauge::new(
            "palisade_tls_certificate_expiry_seconds",
            "Seconds until the data port's TLS certificate expires (negative once expired).",
        )?;
        let reloads = IntCounter::new(
            "palisade_tls_certificate_reloads_total",
            "New certificate/key pairs swapped in on the data port (file changes and renewals).",
        )?;
        let reload_failures = IntCounter::new(
            "palisade_tls_certificate_reload_failures_total",
            "Changed certificate files that could not be used (the previous pair kept serving).",
        )?;
        metrics.register(Box::new(expiry_seconds.clone()))?;
        metrics.register(Box::new(reloads.clone()))?;
        metrics.register(Box::new(reload_failures.clone()))?;
        let renewals = match &serving.workload {
            Some(_) => {
                let done = IntCounter::new(
                    "palisade_workload_certificate_renewals_total",
                    "Renewals of Palisade's own workload certificate (at half-life).",
                )?;
                let failed = IntCounter::new(
                    "palisade_workload_certificate_renewal_failures_total",
                    "Failed renewal attempts of the workload certificate (each logged; retried with backoff).",
                )?;
                metrics.register(Box::new(done.clone()))?;
                metrics.register(Box::new(failed.clone()))?;
                Some((done, failed))
            }
            None => None,
        };
        let watched = Watched { serving, expiry_seconds, reloads, reload_failures, renewals };
        watched.sync();
        Ok(watched)
    }

    /// Brings the metrics up to date (on each scrape).
    pub(crate) fn sync(&self) {
        if let Some(not_after) = self.serving.cert.not_after() {
            self.expiry_seconds.set(seconds_until(not_after, SystemTime::now()));
        }
        catch_up(&self.reloads, self.serving.cert.reloads());
        catch_up(&self.reload_failures, self.serving.cert.reload_failures());
        if let (Some((done, failed)), Some(status)) = (&self.renewals, &self.serving.workload) {
            catch_up(done, status.renewals());
            catch_up(failed, status.renewal_failures());
        }
    }

    /// Why the server is not ready, if its certificate has expired.
    pub(crate) fn problem(&self) -> Option<String> {
        let not_after = self.serving.cert.not_after()?;
        if not_after > SystemTime::now() {
            return None;
        }
        let mut message = format!(
            "the TLS certificate {} expired {} s ago",
            self.serving.cert.cert_path().display(),
            -seconds_until(not_after, SystemTime::now())
        );
        if let Some(error) = self.serving.workload.as_ref().and_then(|s| s.last_error()) {
            message.push_str(&format!("; renewal is failing: {error}"));
        }
        Some(message)
    }
}

/// Whole seconds from `now` to `t`, negative when `t` is past.
fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn seconds_until_is_signed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(seconds_until(now + Duration::from_secs(30), now), 30);
        assert_eq!(seconds_until(now - Duration::from_secs(30), now), -30);
        assert_eq!(seconds_until(now, now), 0);
    }
}
