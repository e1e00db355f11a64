//! Certificates that follow their files: a certificate resolver that notices when the
//! certificate or key file changes and swaps in the new pair without touching established
//! connections.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pem::{read_limited, sha256_fingerprint};
use crate::{TlsError, provider};

/// Reload failures of every [`ReloadingCert`] in the process, for a metrics counter.
static RELOAD_FAILURES_TOTAL: AtomicU64 = AtomicU64::new(0);

/// The number of certificate reloads that failed (a changed file that could not be used),
/// summed over every [`ReloadingCert`] of the process. Each failure was logged as a warning.
pub fn reload_failures_total() -> u64 {
    RELOAD_FAILURES_TOTAL.load(Ordering::Relaxed)
}

/// Where a server (or client) certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertSource {
    /// A PEM certificate chain (leaf first) and a PEM private key, watched for changes.
    Files {
        /// The chain.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
}

impl CertSource {
    /// A chain and key from files.
    pub fn files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> CertSource {
        CertSource::Files { cert: cert.into(), key: key.into() }
    }
}

/// A certificate and key on disk, with the certificate's SHA-256 fingerprint (for printing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// The PEM private key (mode 0600).
    pub key: PathBuf,
    /// SHA-256 of the leaf certificate, `AB:CD:...`, as `openssl x509 -fingerprint -sha256`.
    pub sha256_fingerprint: String,
}

impl CertFiles {
    /// The files as a [`CertSource`].
    pub fn source(&self) -> CertSource {
        CertSource::files(&self.cert, &self.key)
    }
}

/// How often [`ReloadingCert`] looks at its files by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A certificate resolver for servers and clients whose certificate follows its files.
///
/// On a handshake, at most once per check interval, it compares the files' identity (device,
/// inode, size, modification time; symlinks followed, so Kubernetes' secret-volume swaps are
/// seen) with those of the pair in use. When they changed it loads the new pair, checks that
/// the key belongs to the certificate, and swaps it in; handshakes in progress and
/// established connections keep the pair they started with.
///
/// A changed pair that cannot be used is retried at the next check (the writer may be
/// between the certificate and the key); when the same files fail twice in a row the
/// failure is logged at `warn`, counted ([`Self::reload_failures`],
/// [`reload_failures_total`]) and the previous pair keeps serving until the files change
/// again.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    state: Mutex<State>,
    epoch: Instant,
    check_interval_ms: u64,
    last_check_ms: AtomicU64,
    reloads: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    fingerprint: String,
    not_after: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    /// Identity of the files behind the pair in use.
    loaded: Option<FileStamp>,
    /// Files that failed once and will be retried.
    failed_once: Option<FileStamp>,
    /// Files whose failure was reported; not retried until they change.
    reported: Option<FileStamp>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The files are those in use (or known broken and already reported).
    Unchanged,
    /// A new pair is in use.
    Reloaded,
    /// The changed files could not be used; the previous pair stays. `reported` is true once
    /// the failure has been counted and logged.
    Failed {
        /// Why.
        error: String,
        /// Whether this failure was counted.
        reported: bool,
    },
    /// Another thread is checking right now.
    Busy,
}

impl ReloadingCert {
    /// Loads the pair, checking the files once per [`DEFAULT_RELOAD_INTERVAL`].
    pub fn load(source: &CertSource) -> Result<Arc<ReloadingCert>, TlsError> {
        ReloadingCert::with_interval(source, DEFAULT_RELOAD_INTERVAL)
    }

    /// Loads the pair, checking the files at most once per `interval` (on handshakes, or from
    /// [`Self::spawn_watch`]).
    pub fn with_interval(source: &CertSource, interval: Duration) -> Result<Arc<ReloadingCert>, TlsError> {
        let CertSource::Files { cert, key } = source;
        let stamp = FileStamp::of(cert, key);
        let loaded = load_pair(cert, key, &provider())?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert.clone(),
            key_path: key.clone(),
            provider: provider(),
            current: RwLock::new(Arc::new(loaded)),
            state: Mutex::new(State { loaded: stamp, ..State::default() }),
            epoch: Instant::now(),
            check_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_check_ms: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The pair in use, after a check if one is due.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.check_if_due();
        self.loaded().key.clone()
    }

    /// SHA-256 fingerprint of the leaf certificate in use.
    pub fn fingerprint(&self) -> String {
        self.loaded().fingerprint.clone()
    }

    /// Expiry of the leaf certificate in use.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.loaded().not_after
    }

    /// How many times a new pair was swapped in.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many changed pairs could not be used (each logged once).
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Looks at the files now, whatever the interval. Returns [`ReloadOutcome::Busy`] at
    /// once when another thread is checking.
    pub fn check_now(&self) -> ReloadOutcome {
        let Ok(mut state) = self.state.try_lock() else {
            return ReloadOutcome::Busy;
        };
        self.check_locked(&mut state)
    }

    /// Looks at the files now, waiting for a check in progress on another thread to finish,
    /// so that files written before the call are seen. For writers of the files (the
    /// workload certificate's renewal) that want the new pair in use when it returns. Blocks
    /// on file I/O: call it off the async runtime.
    pub fn reload_now(&self) -> ReloadOutcome {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.check_locked(&mut state)
    }

    fn check_locked(&self, state: &mut State) -> ReloadOutcome {
        let stamp = FileStamp::of(&self.cert_path, &self.key_path);
        if stamp.is_none() || stamp == state.loaded || stamp == state.reported {
            // Missing files (being replaced, or deleted) keep the pair in use silently until
            // they come back; a deleted file is not a new certificate.
            return ReloadOutcome::Unchanged;
        }
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(loaded) => {
                tracing::info!(
                    cert = %self.cert_path.display(),
                    sha256 = %loaded.fingerprint,
                    "TLS certificate reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                state.loaded = stamp;
                state.failed_once = None;
                state.reported = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                ReloadOutcome::Reloaded
            }
            Err(error) => {
                let error = error.to_string();
                if state.failed_once == stamp {
                    tracing::warn!(
                        cert = %self.cert_path.display(),
                        %error,
                        "TLS certificate reload failed; the previous certificate stays in use"
                    );
                    state.reported = stamp;
                    state.failed_once = None;
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    RELOAD_FAILURES_TOTAL.fetch_add(1, Ordering::Relaxed);
                    ReloadOutcome::Failed { error, reported: true }
                } else {
                    tracing::debug!(cert = %self.cert_path.display(), %error, "TLS certificate reload deferred");
                    state.failed_once = stamp;
                    ReloadOutcome::Failed { error, reported: false }
                }
            }
        }
    }

    /// Checks the files every `interval` in a background task, so that a certificate is
    /// reloaded even when no handshake happens. The task holds a weak reference and ends
    /// once the resolver is dropped.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.check_now();
            }
        })
    }

    fn check_if_due(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.check_interval_ms {
            return;
        }
        if self.last_check_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.check_now();
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let chain = crate::pem::parse_certificates(&read_limited(cert)?, cert)?;
    let private_key = crate::pem::parse_private_key(&read_limited(key)?, key)?;
    let fingerprint = sha256_fingerprint(&chain[0]);
    let not_after = crate::pem::validity(&chain[0]).map(|(_, not_after)| not_after);
    let certified = CertifiedKey::from_der(chain, private_key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::cert(key, format!("the key does not belong to the certificate in {}", cert.display()))
        }
        other => TlsError::cert(key, format!("unusable private key: {other}")),
    })?;
    if let Some(not_after) = not_after
        && not_after < SystemTime::now()
    {
        tracing::warn!(cert = %cert.display(), "the TLS certificate has expired");
    }
    Ok(Loaded { key: Arc::new(certified), fingerprint, not_after })
}

/// What identifies a version of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    cert: (u64, u64, u64, Option<SystemTime>),
    key: (u64, u64, u64, Option<SystemTime>),
}

impl FileStamp {
    fn of(cert: &Path, key: &Path) -> Option<FileStamp> {
        Some(FileStamp { cert: stamp(cert)?, key: stamp(key)? })
    }
}

#[cfg(unix)]
fn stamp(path: &Path) -> Option<(u64, u64, u64, Option<SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.len(), meta.modified().ok()))
}

#[cfg(not(unix))]
fn stamp(path: &Path) -> Option<(u64, u64, u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((0, 0, meta.len(), meta.modified().ok()))
}
