//! Palisade's own workload certificate: issued by the built-in CA, served on the data port,
//! presented to upstream servers, and renewed at half its lifetime.
//!
//! ```text
//! WorkloadCert::start(ca, request, dir)
//!   ├─ reuse dir/cert.pem if it is this identity's, verifies under the CA, before half-life
//!   │  (else issue one and write cert.pem, key.pem, ca.pem atomically, key first)
//!   ├─ resolver(): Arc<ReloadingCert> over those files
//!   │    = ResolvesServerCert  -> server_config_with(resolver, ..)     (the data port)
//!   │    = ResolvesClientCert  -> client_config(roots, Some(resolver)) (upstream mTLS)
//!   └─ background task: at half-life issue, write, reload_now() -> the next handshake on
//!      either side uses the new pair; established connections keep theirs
//! ```
//!
//! A renewal that fails (CA certificate too close to its own expiry, files not writable)
//! leaves the current certificate in use, is logged at `warn` (at `error` once the
//! certificate has expired) and counted, and is retried with exponential backoff (see
//! [`next_renewal`]). [`WorkloadStatus`] reports all of this for metrics and readiness.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ClientConfig;
use rustls_pki_types::UnixTime;

use crate::ca::{WORKLOAD_CERT_FILE, WORKLOAD_KEY_FILE};
use crate::pem::{read_certificates, read_private_key, sha256_fingerprint, validity};
use crate::reload::{CertFiles, CertSource, DEFAULT_RELOAD_INTERVAL, ReloadOutcome, ReloadingCert};
use crate::{Ca, ClientAuth, PeerIdentity, TlsError, TrustAnchors, WorkloadRequest, provider};

/// The first retry after a failed renewal comes this long after it; each further
/// consecutive failure doubles the wait, up to [`RENEWAL_RETRY_MAX`].
pub const RENEWAL_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between two renewal attempts after failures.
pub const RENEWAL_RETRY_MAX: Duration = Duration::from_secs(300);

/// A certificate's validity period: `(notBefore, notAfter)`.
pub type Validity = (SystemTime, SystemTime);

/// When the renewal task next tries to renew a certificate valid over `validity`, after
/// `consecutive_failures` failed attempts in a row, at time `now`.
///
/// - No failure: at half-life, `notBefore + (notAfter - notBefore) / 2` (possibly in the
///   past: then the caller renews at once).
/// - After `n` failures: `now + min(RENEWAL_RETRY_MIN * 2^(n-1), RENEWAL_RETRY_MAX)`; while
///   the certificate is still valid the wait is also at most half of the remaining validity
///   (but at least [`RENEWAL_RETRY_MIN`]), so several attempts happen before it expires.
pub fn next_renewal(validity: Validity, consecutive_failures: u32, now: SystemTime) -> SystemTime {
    let (not_before, not_after) = validity;
    if consecutive_failures == 0 {
        let life = not_after.duration_since(not_before).unwrap_or_default();
        return not_before + life / 2;
    }
    let doublings = consecutive_failures.saturating_sub(1).min(20);
    let backoff = RENEWAL_RETRY_MIN.saturating_mul(1 << doublings).min(RENEWAL_RETRY_MAX);
    let wait = match not_after.duration_since(now) {
        Ok(remaining) if !remaining.is_zero() => backoff.min((remaining / 2).max(RENEWAL_RETRY_MIN)),
        _ => backoff,
    };
    now + wait
}

/// Palisade's own workload certificate, renewed at half-life (see the module docs).
///
/// Dropping the value stops the renewal; the resolver and the status handles stay usable
/// (serving the last certificate).
#[derive(Debug)]
pub struct WorkloadCert {
    files: CertFiles,
    identity: PeerIdentity,
    resolver: Arc<ReloadingCert>,
    status: WorkloadStatus,
    task: tokio::task::JoinHandle<()>,
}

impl WorkloadCert {
    /// Ensures a current certificate in `dir` and starts renewing it. Must be called inside
    /// a tokio runtime.
    pub fn start(ca: Arc<Ca>, request: WorkloadRequest, dir: &Path) -> Result<WorkloadCert, TlsError> {
        let dir = dir.to_owned();
        let identity = PeerIdentity::new(ca.trust_domain(), &request.namespace, &request.service_account)?;
        let (files, validity) = match reusable(&ca, &identity, &dir) {
            Some(found) => {
                tracing::info!(
                    id = %identity,
                    serial = %found.2,
                    not_after = %rfc3339(found.1.1),
                    "reusing the workload certificate"
                );
                (found.0, found.1)
            }
            None => {
                let issued = ca.issue_workload(&request)?;
                let files = issued.write_to(&dir)?;
                tracing::info!(
                    id = %issued.identity,
                    serial = %serial_of(&issued.cert_der),
                    sha256 = %files.sha256_fingerprint,
                    not_after = %rfc3339(issued.not_after),
                    "issued the workload certificate"
                );
                (files, (issued.not_before, issued.not_after))
            }
        };
        let resolver = ReloadingCert::with_interval(&files.source(), DEFAULT_RELOAD_INTERVAL)?;
        let status = WorkloadStatus(Arc::new(StatusInner {
            lifetime: request.lifetime,
            renewals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            not_before: AtomicU64::new(unix_secs(validity.0)),
            not_after: AtomicU64::new(unix_secs(validity.1)),
            next_attempt: AtomicU64::new(unix_secs(next_renewal(validity, 0, SystemTime::now()))),
            last_error: Mutex::new(None),
        }));
        let task = tokio::spawn(renew_loop(RenewalTask {
            ca,
            request,
            dir,
            resolver: resolver.clone(),
            status: status.clone(),
        }));
        Ok(WorkloadCert { files, identity, resolver, status, task })
    }

    /// The identity in the certificate.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The certificate and key files (`cert.pem`, `key.pem`; `ca.pem` beside them).
    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// The files as a [`CertSource`].
    pub fn cert_source(&self) -> CertSource {
        self.files.source()
    }

    /// The shared handle to the current certificate and key: a rustls server *and* client
    /// certificate resolver that every renewal updates before the next handshake.
    ///
    /// Serve with `server_config_with(cert.resolver(), ..)`; present it to upstream servers
    /// with `client_config(roots, Some(cert.resolver()))` (or [`Self::client_config`]).
    /// [`ReloadingCert::current`] returns the pair in use, [`ReloadingCert::not_after`] and
    /// [`ReloadingCert::fingerprint`] describe it.
    pub fn resolver(&self) -> Arc<ReloadingCert> {
        self.resolver.clone()
    }

    /// A client config for mutual TLS to upstream servers whose certificates chain to
    /// `roots` (usually `ca.trust_anchors()`), presenting this workload certificate, renewed
    /// included. See [`crate::client_config`].
    pub fn client_config(&self, roots: &TrustAnchors) -> Result<Arc<ClientConfig>, TlsError> {
        crate::client_config(roots, Some(self.resolver()))
    }

    /// A cheap handle on the renewal's progress, for metrics and readiness.
    pub fn status(&self) -> WorkloadStatus {
        self.status.clone()
    }

    /// Renewals done.
    pub fn renewals(&self) -> u64 {
        self.status.renewals()
    }

    /// Renewal attempts that failed (each logged).
    pub fn renewal_failures(&self) -> u64 {
        self.status.renewal_failures()
    }

    /// Expiry of the current certificate.
    pub fn not_after(&self) -> SystemTime {
        self.status.not_after()
    }
}

impl Drop for WorkloadCert {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The progress of a [`WorkloadCert`]'s renewal. Cheap to clone; every clone sees the same
/// values.
#[derive(Debug, Clone)]
pub struct WorkloadStatus(Arc<StatusInner>);

#[derive(Debug)]
struct StatusInner {
    lifetime: Duration,
    renewals: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Unix seconds.
    not_before: AtomicU64,
    /// Unix seconds.
    not_after: AtomicU64,
    /// Unix seconds of the next attempt.
    next_attempt: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl WorkloadStatus {
    /// The lifetime of each certificate issued.
    pub fn lifetime(&self) -> Duration {
        self.0.lifetime
    }

    /// Renewals done.
    pub fn renewals(&self) -> u64 {
        self.0.renewals.load(Ordering::Relaxed)
    }

    /// Renewal attempts that failed.
    pub fn renewal_failures(&self) -> u64 {
        self.0.failures.load(Ordering::Relaxed)
    }

    /// Failed attempts since the last success (0 when the last attempt succeeded).
    pub fn consecutive_failures(&self) -> u32 {
        self.0.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Start of validity of the current certificate.
    pub fn not_before(&self) -> SystemTime {
        from_unix(self.0.not_before.load(Ordering::Relaxed))
    }

    /// Expiry of the current certificate.
    pub fn not_after(&self) -> SystemTime {
        from_unix(self.0.not_after.load(Ordering::Relaxed))
    }

    /// When the next renewal attempt is due.
    pub fn next_attempt(&self) -> SystemTime {
        from_unix(self.0.next_attempt.load(Ordering::Relaxed))
    }

    /// Whether the current certificate has expired (renewal kept failing).
    pub fn is_expired(&self) -> bool {
        self.not_after() <= SystemTime::now()
    }

    /// The error of the last failed attempt, while failures continue.
    pub fn last_error(&self) -> Option<String> {
        self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn validity(&self) -> Validity {
        (self.not_before(), self.not_after())
    }

    fn succeeded(&self, validity: Validity) {
        self.0.not_before.store(unix_secs(validity.0), Ordering::Relaxed);
        self.0.not_after.store(unix_secs(validity.1), Ordering::Relaxed);
        self.0.consecutive_failures.store(0, Ordering::Relaxed);
        self.0.renewals.fetch_add(1, Ordering::Relaxed);
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn failed(&self, error: String) -> u32 {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.0.consecutive_failures.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }
}

struct RenewalTask {
    ca: Arc<Ca>,
    request: WorkloadRequest,
    dir: PathBuf,
    resolver: Arc<ReloadingCert>,
    status: WorkloadStatus,
}

/// What one successful renewal produced, for the log.
struct Renewed {
    identity: PeerIdentity,
    validity: Validity,
    serial: String,
    fingerprint: String,
}

impl RenewalTask {
    /// Issues, writes (key first, each file atomically) and swaps the new pair into the
    /// resolver. Blocking: file I/O and key generation.
    fn renew(&self) -> Result<Renewed, String> {
        let issued = self.ca.issue_workload(&self.request).map_err(|e| e.to_string())?;
        let files = issued.write_to(&self.dir).map_err(|e| e.to_string())?;
        match self.resolver.reload_now() {
            ReloadOutcome::Reloaded | ReloadOutcome::Unchanged | ReloadOutcome::Busy => {}
            ReloadOutcome::Failed { error, .. } => {
                return Err(format!("the renewed certificate was written but cannot be loaded: {error}"));
            }
        }
        if self.resolver.fingerprint() != files.sha256_fingerprint {
            return Err(format!(
                "the renewed certificate was written to {} but another one is in use; is another process writing there?",
                files.cert.display()
            ));
        }
        Ok(Renewed {
            identity: issued.identity,
            validity: (issued.not_before, issued.not_after),
            serial: serial_of(&issued.cert_der),
            fingerprint: files.sha256_fingerprint,
        })
    }
}

async fn renew_loop(task: RenewalTask) {
    let task = Arc::new(task);
    loop {
        let status = &task.status;
        let next = next_renewal(status.validity(), status.consecutive_failures(), SystemTime::now());
        status.0.next_attempt.store(unix_secs(next), Ordering::Relaxed);
        let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
        // A floor, so that a clock jump or a tiny lifetime never makes this a busy loop.
        tokio::time::sleep(wait.max(Duration::from_millis(200))).await;

        let attempt = task.clone();
        let result = match tokio::task::spawn_blocking(move || attempt.renew()).await {
            Ok(result) => result,
            Err(join) => Err(format!("the renewal task failed: {join}")),
        };
        match result {
            Ok(renewed) => {
                status.succeeded(renewed.validity);
                let next = next_renewal(renewed.validity, 0, SystemTime::now());
                tracing::info!(
                    id = %renewed.identity,
                    serial = %renewed.serial,
                    sha256 = %renewed.fingerprint,
                    not_after = %rfc3339(renewed.validity.1),
                    next_renewal = %rfc3339(next),
                    "renewed the workload certificate"
                );
            }
            Err(error) => {
                let failures = status.failed(error.clone());
                let now = SystemTime::now();
                let retry = next_renewal(status.validity(), failures, now);
                let retry_in_ms = retry.duration_since(now).unwrap_or_default().as_millis() as u64;
                let not_after = status.not_after();
                match not_after.duration_since(now) {
                    Ok(left) if !left.is_zero() => tracing::warn!(
                        %error,
                        consecutive_failures = failures,
                        retry_in_ms,
                        expires_in_secs = left.as_secs(),
                        not_after = %rfc3339(not_after),
                        "workload certificate renewal FAILED; the current certificate stays in use until it expires"
                    ),
                    _ => tracing::error!(
                        %error,
                        consecutive_failures = failures,
                        retry_in_ms,
                        not_after = %rfc3339(not_after),
                        "workload certificate renewal FAILED and the certificate has EXPIRED: peers refuse it and readiness fails until a renewal succeeds"
                    ),
                }
            }
        }
    }
}

/// The stored certificate with its validity and serial, if it can be kept: this identity's,
/// its key matches, it verifies under the CA now, and it is before its half-life.
fn reusable(ca: &Ca, identity: &PeerIdentity, dir: &Path) -> Option<(CertFiles, Validity, String)> {
    let cert_path = dir.join(WORKLOAD_CERT_FILE);
    let key_path = dir.join(WORKLOAD_KEY_FILE);
    let chain = read_certificates(&cert_path).ok()?;
    let key = read_private_key(&key_path).ok()?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider()).ok()?;
    if PeerIdentity::from_certificate(&chain[0]).ok()? != *identity {
        return None;
    }
    let verifier = ClientAuth::Required(ca.client_roots()).verifier().ok()?;
    verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).ok()?;
    let validity = validity(&chain[0])?;
    if next_renewal(validity, 0, SystemTime::now()) <= SystemTime::now() {
        return None;
    }
    let files =
        CertFiles { cert: cert_path, key: key_path, sha256_fingerprint: sha256_fingerprint(&chain[0]) };
    Some((files, validity, serial_of(&chain[0])))
}

/// A certificate's serial number as colon-separated hex (`openssl x509 -serial` without the
/// colons), for logs.
pub(crate) fn serial_of(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.tbs_certificate.raw_serial_as_string())
        .unwrap_or_else(|_| "?".to_owned())
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_at_half_life() {
        // 24 h certificate, back-dated 60 s: half of 24 h + 60 s after notBefore.
        let validity = (at(1_000_000 - 60), at(1_000_000 + 86_400));
        assert_eq!(next_renewal(validity, 0, at(1_000_000)), at(1_000_000 - 60 + (86_400 + 60) / 2));
        // A 4 s certificate: 2 s after notBefore, whatever the current time.
        let short = (at(100), at(104));
        assert_eq!(next_renewal(short, 0, at(100)), at(102));
        assert_eq!(next_renewal(short, 0, at(103)), at(102), "overdue: the caller renews at once");
        // An odd lifetime splits to the millisecond.
        let odd = (at(0), at(5));
        assert_eq!(next_renewal(odd, 0, at(0)), UNIX_EPOCH + Duration::from_millis(2500));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        // A long-lived certificate far from expiry: pure doubling from 1 s to 5 min.
        let validity = (at(0), at(86_400));
        let now = at(43_200);
        let waits: Vec<u64> =
            (1..=12).map(|n| next_renewal(validity, n, now).duration_since(now).unwrap().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        // Absurd failure counts neither overflow nor exceed the cap.
        assert_eq!(next_renewal(validity, u32::MAX, now), now + RENEWAL_RETRY_MAX);
    }

    #[test]
    fn retries_keep_up_before_expiry_and_back_off_after() {
        let validity = (at(0), at(100));
        // 10 s left: never more than half of what remains (5 s), even after many failures.
        assert_eq!(next_renewal(validity, 9, at(90)), at(95));
        // Less than 2 s left: the floor of 1 s.
        assert_eq!(next_renewal(validity, 9, at(99)), at(100));
        // Expired: plain exponential backoff, so a broken CA is not hammered.
        assert_eq!(next_renewal(validity, 4, at(200)), at(208));
        assert_eq!(next_renewal(validity, 30, at(200)), at(500));
        // The first retry is 1 s after the failure.
        assert_eq!(next_renewal(validity, 1, at(50)), at(51));
    }

    #[test]
    fn serial_is_read_with_x509_parser() {
        let home = tempfile::tempdir().unwrap();
        let ca = Ca::init(home.path(), crate::CaOptions::default()).unwrap();
        let issue = || ca.issue_workload(&WorkloadRequest::new("a", "b")).unwrap().cert_der;
        let serial = serial_of(&issue());
        // 128 random bits, positive: 16 bytes, written as 16 colon-separated hex pairs.
        assert_eq!(serial.split(':').count(), 16, "{serial}");
        assert_ne!(serial, serial_of(&issue()));
    }
}
