//! Settings of a log, and the storage-failure hook tests use.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A callback that receives the duration of every segment fsync (for a histogram).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// When [`AuditLog::append`](crate::AuditLog::append) resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The future resolves once the record is durable (written and fsynced), or fails
    /// with [`AuditError::Unavailable`](crate::AuditError::Unavailable) when it cannot be made durable. The default: the
    /// server releases a response only after its record is durable.
    #[default]
    Strict,
    /// The future resolves as soon as the record is queued. A full queue or a failed write
    /// drops records; drops are counted in [`AuditStats::dropped`](crate::AuditStats::dropped). Opt-in.
    Relaxed,
}

/// Settings of an [`AuditLog`](crate::AuditLog). Start from [`AuditConfig::default`] and change what you need.
#[derive(Clone)]
pub struct AuditConfig {
    /// The replica's id, written in every record and checkpoint; the first record of a new
    /// log chains from a genesis value derived from it. Default `local`.
    pub replica_id: String,
    /// Strict (default) or relaxed durability.
    pub mode: Mode,
    /// Records that may wait for the writer (at least 1). In strict mode a full queue
    /// makes `append` wait; in relaxed mode it drops. Default 16384.
    pub queue_capacity: usize,
    /// Most records committed by one write + fsync (at least 1). Default 4096.
    pub max_batch: usize,
    /// How long the writer may hold a batch open for records that are on their way (see
    /// [`AuditLog::announce`](crate::AuditLog::announce)) before it commits. It waits only while some are announced,
    /// so a lone request never waits; under load, one fsync then covers more records.
    /// Zero commits at once. Default 250 µs.
    pub commit_delay: Duration,
    /// A segment is closed once the next record would take it past this size (a single
    /// larger record still gets a segment of its own). Default 64 MiB.
    pub segment_max_bytes: u64,
    /// A segment is closed before the first write after it has been open this long.
    /// Default 1 h.
    pub segment_max_age: Duration,
    /// A checkpoint is written once this many records are not covered by one (at least 1),
    /// before the next record is written: a crash leaves at most this many records
    /// unsigned. Default 1000.
    pub checkpoint_every: u64,
    /// A checkpoint is written at the latest this long after the first record not covered
    /// by one was committed; when it cannot be written, appends fail until it is. Default
    /// 10 s.
    pub checkpoint_interval: Duration,
    /// The Ed25519 signing key (PKCS#8, mode 0600, in a directory only its owner can
    /// write; created with its directory, mode 0700, when a new log starts and there is no
    /// key there yet). Never inside the log directory. `None` (the default):
    /// [`default_signing_key`] of the log directory, `keys/audit-signing.pk8` beside it
    /// (`$PALISADE_HOME/keys/audit-signing.pk8` for `$PALISADE_HOME/audit`). The public key
    /// is written beside it as `<name>.pub`.
    ///
    /// [`default_signing_key`]: crate::default_signing_key
    pub signing_key: Option<PathBuf>,
    /// Receives the duration of every segment fsync.
    pub fsync_observer: Option<FsyncObserver>,
    /// Test hook: makes writes or fsyncs fail on demand (see [`FaultInjection`]). Leave
    /// `None` in production.
    pub fault_injection: Option<FaultInjection>,
    /// A copy of every record (and checkpoint, if the shipper asks for them) for a log
    /// collector, handed over once it is durable in the log (see [`Shipper`]). `None` (the
    /// default): no copy.
    ///
    /// [`Shipper`]: crate::Shipper
    pub ship: Option<crate::Shipper>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            replica_id: "local".to_owned(),
            mode: Mode::Strict,
            queue_capacity: 16_384,
            max_batch: 4096,
            commit_delay: Duration::from_micros(250),
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            signing_key: None,
            fsync_observer: None,
            fault_injection: None,
            ship: None,
        }
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("replica_id", &self.replica_id)
            .field("mode", &self.mode)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("commit_delay", &self.commit_delay)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("segment_max_age", &self.segment_max_age)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("signing_key", &self.signing_key)
            .field("fsync_observer", &self.fsync_observer.is_some())
            .field("fault_injection", &self.fault_injection)
            .field("ship", &self.ship)
            .finish()
    }
}

/// A switchboard for simulating storage failures, shared between a test and the writer.
///
/// Tests run as root, so permissions cannot make a directory unwritable; instead the writer
/// consults this hook right before each write (segment, checkpoint, repair) and each fsync,
/// and fails that operation with an injected `StorageFull` error while it is armed. The
/// failure then takes exactly the path a real `ENOSPC` or `EIO` would. It can only make the
/// log fail, never weaken it, and costs two atomic loads per batch when present.
#[derive(Debug, Clone, Default)]
pub struct FaultInjection {
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    sync_delay_micros: AtomicU64,
}

impl FaultInjection {
    /// A hook with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `on`, every write fails as if the disk were full.
    pub fn fail_writes(&self, on: bool) {
        self.faults.fail_writes.store(on, Ordering::SeqCst);
    }

    /// While `on`, every fsync fails (after the write succeeded).
    pub fn fail_syncs(&self, on: bool) {
        self.faults.fail_syncs.store(on, Ordering::SeqCst);
    }

    /// Makes every fsync take at least `delay` longer (a slow disk).
    pub fn delay_syncs(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.faults.sync_delay_micros.store(micros, Ordering::SeqCst);
    }

    fn before_write(&self) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected fault: no space left on device",
            ));
        }
        Ok(())
    }

    fn before_sync(&self) -> io::Result<()> {
        let delay = self.faults.sync_delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fault: fsync failed"));
        }
        Ok(())
    }
}

pub(crate) fn before_write(faults: Option<&FaultInjection>) -> io::Result<()> {
    faults.map_or(Ok(()), FaultInjection::before_write)
}

pub(crate) fn before_sync(faults: Option<&FaultInjection>) -> io::Result<()> {
    faults.map_or(Ok(()), FaultInjection::before_sync)
}
