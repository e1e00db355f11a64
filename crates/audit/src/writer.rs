//! The writer: one dedicated thread per log, fed by a bounded channel, committing records
//! in groups (one `write` + one `fsync` per batch) and signing checkpoints.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::chain::{self, Hash};
use crate::checkpoint::{
    CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint, CheckpointKind, CheckpointWindow, genesis_link,
    new_log_id,
};
use crate::config::{AuditConfig, Mode, before_sync, before_write};
use crate::key::{PublicKey, SigningKey, default_signing_key, sync_dir};
use crate::record::AuditRecord;
use crate::resume;
use crate::segment::{self, Segment, segment_name};
use crate::{AuditError, Timestamp};

/// File name of the lock that keeps a second writer out of a log directory.
pub const LOCK_FILE: &str = ".lock";

/// How often a log that stays unwritable repeats its error.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What an append achieved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Appended {
    /// Strict mode: the record is durable at this position of the chain.
    Durable {
        /// The record's seq.
        seq: u64,
        /// The record's hash (lowercase hex).
        hash: String,
    },
    /// Relaxed mode: the record is queued; it may still be dropped if a write fails.
    Queued,
    /// Relaxed mode: the queue was full and the record was dropped (and counted).
    Dropped,
}

/// Whether the log can make records durable, for readiness probes and the 503 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// False after a failed write, until a later write succeeds.
    pub writable: bool,
    /// The last write error, cleared by the next successful write.
    pub last_error: Option<String>,
    /// Records waiting for the writer.
    pub queue_depth: u64,
    /// The configured mode.
    pub mode: Mode,
    /// Whether the log was closed.
    pub closed: bool,
    /// The seq the next record will get (= records in the chain, for a complete log).
    pub next_seq: u64,
}

/// Counters for metrics, read with [`AuditLog::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records waiting for the writer.
    pub queue_depth: u64,
    /// Records written and fsynced.
    pub records_written: u64,
    /// Bytes of records written and fsynced.
    pub bytes_written: u64,
    /// Batches taken from the queue (one group commit each, unless it failed).
    pub batches: u64,
    /// Segment fsyncs (one per batch, two when a batch crosses a segment boundary).
    pub fsyncs: u64,
    /// Total time spent in segment fsyncs.
    pub fsync_time: Duration,
    /// Relaxed mode: records dropped (queue full or write failed).
    pub dropped: u64,
    /// Failed segment writes or fsyncs.
    pub write_errors: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Failed checkpoint writes.
    pub checkpoint_errors: u64,
    /// Torn final lines (never acknowledged) truncated when the log was opened.
    pub torn_tails_repaired: u64,
    /// Lines copied to the shipping stream ([`AuditConfig::ship`]), and lines that could
    /// not be (queue full or the stream failed), with failed writes; zero without one.
    pub ship: crate::ShipStats,
}

#[derive(Default)]
struct Shared {
    queue_depth: AtomicU64,
    /// Records announced and not yet appended (requests in progress).
    announced: AtomicU64,
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_errors: AtomicU64,
    torn_tails_repaired: AtomicU64,
    next_seq: AtomicU64,
    unwritable: AtomicBool,
    closed: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn set_error(&self, error: Option<String>) {
        self.unwritable.store(error.is_some(), Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }
}

type Reply = oneshot::Sender<Result<Appended, AuditError>>;

struct Job {
    record: Box<AuditRecord>,
    reply: Option<Reply>,
}

enum Command {
    Append(Job),
    Close(oneshot::Sender<Result<(), AuditError>>),
}

/// A handle to an open audit log. Cheap to clone; all clones feed the same writer thread.
///
/// The writer stops (after a final checkpoint) on [`AuditLog::close`], or when the last
/// handle is dropped.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    mode: Mode,
    public_key: PublicKey,
    signing_key: PathBuf,
    log_id: String,
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    ship: Option<crate::Shipper>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.inner.dir).field("mode", &self.inner.mode).finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `dir` and starts its writer thread.
    ///
    /// Creates the directory (mode 0700), takes an exclusive lock on it, and truncates a
    /// torn final line left by a crash (it was never acknowledged; counted in
    /// [`AuditStats::torn_tails_repaired`] and logged). A new log gets its genesis
    /// checkpoint (and, if there is none yet, a signing key, see
    /// [`AuditConfig::signing_key`]). An existing log is resumed only if the writer can
    /// vouch for its head: its genesis and last checkpoints verify with the key, the chain
    /// from the last checkpoint links to it, and no more records follow it than one
    /// checkpoint window (what a crash can leave); those records are then signed in a
    /// recovery checkpoint. Otherwise it fails with [`AuditError::Untrusted`],
    /// [`AuditError::Legacy`] (a log written before genesis checkpoints),
    /// [`AuditError::Key`] or [`AuditError::InsecureKey`], each naming the file and the fix.
    /// Blocks on file I/O.
    pub fn open(dir: impl AsRef<Path>, config: AuditConfig) -> Result<Self, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(&dir, config, Arc::clone(&shared))?;
        let mode = writer.config.mode;
        let public_key = writer.key.public();
        let signing_key = writer.key.path().to_owned();
        let log_id = writer.log_id.clone();
        let ship = writer.config.ship.clone();
        let (tx, rx) = mpsc::channel(writer.config.queue_capacity);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("palisade-audit".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build();
                match runtime {
                    Ok(runtime) => {
                        let _ = started_tx.send(Ok(()));
                        writer.run(rx, &runtime);
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| AuditError::io(&dir, "cannot start the audit writer thread", e))?;
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(AuditError::io(&dir, "cannot start the audit writer's timer", e)),
            Err(_) => return Err(AuditError::Unavailable("the audit writer thread exited at start".into())),
        }
        Ok(Self { inner: Arc::new(Inner { dir, mode, public_key, signing_key, log_id, tx, shared, ship }) })
    }

    /// Appends a record.
    ///
    /// Strict mode: resolves to [`Appended::Durable`] once the record is written and
    /// fsynced (waiting for queue space if needed), or to [`AuditError::Unavailable`] when
    /// it cannot be made durable. Relaxed mode: resolves at once to [`Appended::Queued`] or
    /// [`Appended::Dropped`]. [`AuditError::Closed`] after [`close`](Self::close).
    ///
    /// The writer sets `schema`, `replica_id`, `seq`, `prev_hash` and `hash`, an
    /// `event_id` if nil and `received` if no timestamp is set, and drops payloads the
    /// record's `level` does not allow. The future does not borrow `self`.
    pub fn append(
        &self,
        record: AuditRecord,
    ) -> impl Future<Output = Result<Appended, AuditError>> + Send + 'static + use<> {
        self.append_announced(record, None)
    }

    /// [`append`](Self::append) for a record announced with [`announce`](Self::announce):
    /// the announcement ends once the record is queued, so a writer holding a commit for it
    /// sees the record before the announcement goes.
    pub fn append_announced(
        &self,
        record: AuditRecord,
        announced: Option<Announced>,
    ) -> impl Future<Output = Result<Appended, AuditError>> + Send + 'static + use<> {
        let inner = Arc::clone(&self.inner);
        async move {
            let shared = &inner.shared;
            if shared.closed.load(Ordering::SeqCst) {
                return Err(AuditError::Closed);
            }
            match inner.mode {
                Mode::Strict => {
                    let (reply, done) = oneshot::channel();
                    shared.queue_depth.fetch_add(1, Ordering::Relaxed);
                    if inner
                        .tx
                        .send(Command::Append(Job { record: Box::new(record), reply: Some(reply) }))
                        .await
                        .is_err()
                    {
                        shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                        return Err(AuditError::Closed);
                    }
                    drop(announced);
                    done.await.unwrap_or(Err(AuditError::Closed))
                }
                Mode::Relaxed => {
                    shared.queue_depth.fetch_add(1, Ordering::Relaxed);
                    match inner.tx.try_send(Command::Append(Job { record: Box::new(record), reply: None })) {
                        Ok(()) => Ok(Appended::Queued),
                        Err(e) => {
                            shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
                            match e {
                                mpsc::error::TrySendError::Full(_) => {
                                    Shared::add(&shared.dropped, 1);
                                    Ok(Appended::Dropped)
                                }
                                mpsc::error::TrySendError::Closed(_) => Err(AuditError::Closed),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Announces a record that is on its way (a request has started): until the returned
    /// guard is dropped, the writer may hold a batch open for up to
    /// [`AuditConfig::commit_delay`] so that one fsync covers this record too. Hand the
    /// guard to [`append_announced`](Self::append_announced) with the record, or drop it
    /// when there will be no record.
    pub fn announce(&self) -> Announced {
        self.inner.shared.announced.fetch_add(1, Ordering::Relaxed);
        Announced { shared: Arc::clone(&self.inner.shared) }
    }

    /// Commits everything queued, writes a final checkpoint and stops the writer; later
    /// appends fail with [`AuditError::Closed`]. Returns once the directory lock is released.
    /// Calling it again is harmless.
    pub async fn close(&self) -> Result<(), AuditError> {
        self.inner.shared.closed.store(true, Ordering::SeqCst);
        let (reply, done) = oneshot::channel();
        if self.inner.tx.send(Command::Close(reply)).await.is_err() {
            return Ok(());
        }
        done.await.unwrap_or(Ok(()))
    }

    /// The configured mode (what [`Health::mode`] says, without the rest).
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Whether the last write succeeded (what [`Health::writable`] says, without taking the
    /// lock that guards the last error): the per-request check.
    pub fn writable(&self) -> bool {
        !self.inner.shared.unwritable.load(Ordering::SeqCst)
    }

    /// Whether the log can make records durable right now.
    pub fn health(&self) -> Health {
        let shared = &self.inner.shared;
        Health {
            writable: !shared.unwritable.load(Ordering::SeqCst),
            last_error: shared.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            queue_depth: shared.queue_depth.load(Ordering::Relaxed),
            mode: self.inner.mode,
            closed: shared.closed.load(Ordering::SeqCst),
            next_seq: shared.next_seq.load(Ordering::SeqCst),
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> AuditStats {
        let s = &self.inner.shared;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuditStats {
            queue_depth: get(&s.queue_depth),
            records_written: get(&s.records_written),
            bytes_written: get(&s.bytes_written),
            batches: get(&s.batches),
            fsyncs: get(&s.fsyncs),
            fsync_time: Duration::from_nanos(get(&s.fsync_nanos)),
            dropped: get(&s.dropped),
            write_errors: get(&s.write_errors),
            checkpoints: get(&s.checkpoints),
            checkpoint_errors: get(&s.checkpoint_errors),
            torn_tails_repaired: get(&s.torn_tails_repaired),
            ship: self.inner.ship.as_ref().map(crate::Shipper::stats).unwrap_or_default(),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The public key the log's checkpoints are signed with (give it to auditors to pin).
    pub fn public_key(&self) -> PublicKey {
        self.inner.public_key
    }

    /// Where the signing key is.
    pub fn signing_key(&self) -> &Path {
        &self.inner.signing_key
    }

    /// The log's id, from its genesis checkpoint.
    pub fn log_id(&self) -> &str {
        &self.inner.log_id
    }
}

/// The segment being appended to.
struct OpenSegment {
    file: File,
    name: String,
    path: PathBuf,
    /// Bytes written, durable or not.
    len: u64,
    /// Bytes known durable; a failed write is cut back to this.
    committed_len: u64,
    opened: Instant,
}

/// A record on its way to the log; see [`AuditLog::announce`].
#[must_use = "the announcement ends when the guard is dropped"]
pub struct Announced {
    shared: Arc<Shared>,
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.shared.announced.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Announced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Announced")
    }
}

/// How long closing waits for the shipping stream to take the last lines.
const SHIP_DRAIN: Duration = Duration::from_secs(5);

/// How often a held batch looks for announced records.
const COMMIT_POLL: Duration = Duration::from_micros(25);

/// How long the timer waits before retrying a failed checkpoint (appends retry at once).
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// A record of a batch waiting for its fsync.
struct Pending {
    reply: Option<Reply>,
    seq: u64,
    hash: Hash,
}

/// The writer thread's state. Invariants: everything up to `committed_*` is durable;
/// `next_seq`/`head` run ahead only while a batch is being written; at most
/// `window.records` durable records are not covered by a checkpoint.
struct Writer {
    dir: PathBuf,
    config: AuditConfig,
    shared: Arc<Shared>,
    key: SigningKey,
    key_id: String,
    log_id: String,
    _lock: File,
    segment: Option<OpenSegment>,
    checkpoints: File,
    checkpoints_path: PathBuf,
    checkpoints_committed_len: u64,
    checkpoints_need_repair: bool,
    next_seq: u64,
    head: Hash,
    committed_seq: u64,
    committed_head: Hash,
    last_record_segment: Option<String>,
    needs_repair: bool,
    /// The seq of the last head signed (`None`: only the genesis).
    checkpointed_seq: Option<u64>,
    /// The window this writer keeps: the configured one, or until its first checkpoint the
    /// smaller of that and the one the log's last checkpoint states (the records after it
    /// are judged by the window it states).
    window: CheckpointWindow,
    uncovered_since: Option<Instant>,
    /// After a failed checkpoint, when the timer tries again.
    checkpoint_retry_at: Option<Instant>,
    last_failure_log: Option<Instant>,
}

/// Renders an error with its sources, for `Unavailable` messages and logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Writer {
    fn open(dir: &Path, mut config: AuditConfig, shared: Arc<Shared>) -> Result<Self, AuditError> {
        config.queue_capacity = config.queue_capacity.max(1);
        config.max_batch = config.max_batch.max(1);
        config.checkpoint_every = config.checkpoint_every.max(1);
        create_dir(dir)?;
        let lock = lock_dir(dir)?;
        let key_path = match &config.signing_key {
            Some(path) => path.clone(),
            None => default_signing_key(dir)?,
        };
        resume::key_outside(dir, &key_path)?;

        let (segments, odd) = segment::list(dir)?;
        if !odd.is_empty() {
            tracing::warn!(files = ?odd, dir = %dir.display(), "ignoring files that look like audit segments but are misnamed");
        }
        let mut repaired = 0;
        // The newest segment is never sealed (the sealer leaves the last one); were it, it
        // is read-only and the next record starts a new segment.
        if let Some(last) = segments.last().filter(|s| !s.sealed) {
            let removed = segment::repair_torn_tail(&last.path)?;
            if removed > 0 {
                tracing::warn!(
                    segment = %last.name, bytes = removed,
                    "truncated a torn final audit record (a crash interrupted its write; it was never acknowledged)"
                );
                repaired += 1;
            }
        }
        let checkpoints_path = dir.join(CHECKPOINT_FILE);
        if checkpoints_path.exists() && segment::repair_torn_tail(&checkpoints_path)? > 0 {
            tracing::warn!("truncated a torn final audit checkpoint");
            repaired += 1;
        }
        let config_window =
            CheckpointWindow { records: config.checkpoint_every, interval: config.checkpoint_interval };
        let found = resume::examine(dir, &segments, &key_path)?;
        let checkpoints = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&checkpoints_path)
            .map_err(|e| AuditError::io(&checkpoints_path, "cannot open", e))?;
        let checkpoints_committed_len =
            checkpoints.metadata().map_err(|e| AuditError::io(&checkpoints_path, "cannot stat", e))?.len();
        let resume::Found { key, existing } = found;
        let key_id = key.public().key_id();
        let mut writer = Self {
            dir: dir.to_path_buf(),
            config,
            shared,
            key,
            key_id,
            log_id: String::new(),
            _lock: lock,
            segment: None,
            checkpoints,
            checkpoints_path,
            checkpoints_committed_len,
            checkpoints_need_repair: false,
            next_seq: 0,
            head: [0; 32],
            committed_seq: 0,
            committed_head: [0; 32],
            last_record_segment: None,
            needs_repair: false,
            checkpointed_seq: None,
            window: config_window,
            uncovered_since: None,
            checkpoint_retry_at: None,
            last_failure_log: None,
        };
        match existing {
            None => writer.start_chain(&segments)?,
            Some(existing) => writer.resume_chain(existing, &segments)?,
        }
        sync_dir(dir)?;
        writer.shared.torn_tails_repaired.store(repaired, Ordering::Relaxed);
        writer.shared.next_seq.store(writer.next_seq, Ordering::SeqCst);
        tracing::info!(
            dir = %dir.display(), log_id = %writer.log_id, key = %writer.key.path().display(),
            key_id = %writer.key_id, next_seq = writer.next_seq, "audit log open"
        );
        Ok(writer)
    }

    /// A new log: writes its genesis checkpoint; the first record will link to it.
    fn start_chain(&mut self, segments: &[Segment]) -> Result<(), AuditError> {
        self.log_id = new_log_id().map_err(|_| AuditError::Key("cannot draw a random log id".into()))?;
        let mut genesis = Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            kind: CheckpointKind::Genesis,
            log_id: self.log_id.clone(),
            seq: None,
            hash: None,
            segment: None,
            recovered_from: None,
            time: Timestamp::now(),
            replica_id: self.config.replica_id.clone(),
            key_id: self.key_id.clone(),
            every_records: self.window.records,
            every_ms: u64::try_from(self.window.interval.as_millis()).unwrap_or(u64::MAX),
            signature: String::new(),
        };
        let line = genesis.seal(&self.key).map_err(|e| AuditError::Serialize(e.to_string()))?;
        self.checkpoints
            .set_len(0)
            .and_then(|()| self.checkpoints.write_all(&line))
            .and_then(|()| self.checkpoints.sync_all())
            .map_err(|e| AuditError::io(&self.checkpoints_path, "cannot write the genesis checkpoint", e))?;
        self.checkpoints_committed_len = line.len() as u64;
        let link = genesis_link(&line[..line.len() - 1]);
        self.ship_checkpoint(line);
        (self.next_seq, self.head, self.committed_seq, self.committed_head) = (0, link, 0, link);
        // An empty segment left by a crash before the first record is reused.
        if let Some(last) = segments.last().filter(|s| !s.sealed) {
            self.segment = Some(self.reopen_segment(last, 0, false)?);
        }
        tracing::info!(log_id = %self.log_id, "started a new audit chain (genesis checkpoint written)");
        Ok(())
    }

    /// An existing log the writer can vouch for: resumes after its last record and signs
    /// the records a crash left unsigned.
    fn resume_chain(&mut self, existing: resume::Existing, segments: &[Segment]) -> Result<(), AuditError> {
        self.log_id = existing.log_id;
        self.next_seq = existing.next_seq;
        self.head = existing.head;
        self.committed_seq = existing.next_seq;
        self.committed_head = existing.head;
        self.last_record_segment = existing.last_record_segment;
        self.checkpointed_seq = existing.checkpointed_seq;
        self.window = self.window.min(existing.window);
        if let Some(last) = segments.last().filter(|s| !s.sealed) {
            self.segment =
                Some(self.reopen_segment(last, self.next_seq, existing.last_record_in_last_segment)?);
        }
        if existing.unsigned > 0 {
            let from = self.checkpointed_seq.map_or(0, |s| s + 1);
            tracing::warn!(
                records = existing.unsigned,
                from_seq = from,
                "the audit log was not closed cleanly: signing the records written after its last checkpoint (within one checkpoint window) in a recovery checkpoint"
            );
            self.uncovered_since = Some(Instant::now());
            self.sign_head(CheckpointKind::Recovery, Some(from))?;
        }
        Ok(())
    }

    /// Opens the last segment for appending, after checking that its name fits the chain.
    fn reopen_segment(
        &self,
        last: &Segment,
        next_seq: u64,
        holds_last_record: bool,
    ) -> Result<OpenSegment, AuditError> {
        if last.first_seq > next_seq || (!holds_last_record && last.first_seq != next_seq) {
            return Err(AuditError::corrupt(
                &last.path,
                None,
                format!(
                    "segment is named for seq {} but the chain continues at seq {next_seq}",
                    last.first_seq
                ),
            ));
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&last.path)
            .map_err(|e| AuditError::io(&last.path, "cannot open", e))?;
        let len = file.metadata().map_err(|e| AuditError::io(&last.path, "cannot stat", e))?.len();
        Ok(OpenSegment {
            file,
            name: last.name.clone(),
            path: last.path.clone(),
            len,
            committed_len: len,
            opened: Instant::now(),
        })
    }

    /// The writer thread's loop: take everything queued, commit it, checkpoint when due.
    fn run(mut self, mut rx: mpsc::Receiver<Command>, runtime: &tokio::runtime::Runtime) {
        let close = loop {
            let wait = self.checkpoint_due_in();
            let received = runtime.block_on(async {
                match wait {
                    Some(wait) => tokio::time::timeout(wait, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            });
            let first = match received {
                None => {
                    self.checkpoint_if_due(false);
                    continue;
                }
                Some(None) => break None,
                Some(Some(command)) => command,
            };
            let mut batch = Vec::new();
            let mut close = None;
            match first {
                Command::Append(job) => batch.push(job),
                Command::Close(reply) => close = Some(reply),
            }
            let hold_until = Instant::now() + self.config.commit_delay;
            while close.is_none() && batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(Command::Append(job)) => batch.push(job),
                    Ok(Command::Close(reply)) => close = Some(reply),
                    Err(_) => {
                        // Group commit: while requests that will append are in progress,
                        // wait a little for them (bounded by the commit delay).
                        let now = Instant::now();
                        if now >= hold_until || self.shared.announced.load(Ordering::Relaxed) == 0 {
                            break;
                        }
                        std::thread::sleep((hold_until - now).min(COMMIT_POLL));
                    }
                }
            }
            if !batch.is_empty() {
                self.shared.queue_depth.fetch_sub(batch.len() as u64, Ordering::Relaxed);
                self.write_batch(batch);
            }
            self.checkpoint_if_due(false);
            if close.is_some() {
                break close;
            }
        };
        self.shared.closed.store(true, Ordering::SeqCst);
        let result = self.finish();
        if let Some(ship) = &self.config.ship
            && !ship.drain(SHIP_DRAIN)
        {
            tracing::warn!(
                "the audit shipping stream did not take the last lines within {} s; they are in the local log",
                SHIP_DRAIN.as_secs()
            );
        }
        let shared = Arc::clone(&self.shared);
        // Files and the directory lock are released before anyone hears that we closed.
        drop(self);
        drop(rx);
        shared.queue_depth.store(0, Ordering::Relaxed);
        if let Some(reply) = close {
            let _ = reply.send(result);
        }
    }

    /// Commits one batch: seals each record onto the chain, writes them, fsyncs, then
    /// answers every waiter. On failure rolls the chain back and fails the whole batch.
    fn write_batch(&mut self, batch: Vec<Job>) {
        Shared::add(&self.shared.batches, 1);
        if let Err(e) = self.prepare() {
            return self.fail(Vec::new(), batch.into_iter().map(|j| j.reply), &e);
        }
        let mut buf = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        while let Some(Job { mut record, reply }) = jobs.next() {
            if self.next_seq - self.covered_next() >= self.window.records {
                // The window is full: sign what is committed before writing more, so that a
                // crash never leaves more than one window of records unsigned.
                if let Err(e) = self
                    .flush(&mut buf, &mut pending)
                    .and_then(|()| self.sign_head(CheckpointKind::Head, None))
                {
                    let rest = std::iter::once(reply).chain(jobs.map(|j| j.reply));
                    return self.fail(pending, rest, &e);
                }
            }
            record.normalize(&self.config.replica_id);
            let (line, hash) = match chain::seal(&mut record, self.next_seq, &self.head) {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::error!(error = %e, "audit record refused");
                    match reply {
                        Some(reply) => drop(reply.send(Err(e))),
                        None => Shared::add(&self.shared.dropped, 1),
                    }
                    continue;
                }
            };
            if self.must_rotate(buf.len() as u64, line.len() as u64)
                && let Err(e) = self.flush(&mut buf, &mut pending).and_then(|()| self.rotate())
            {
                let rest = std::iter::once(reply).chain(jobs.map(|j| j.reply));
                return self.fail(pending, rest, &e);
            }
            buf.extend_from_slice(&line);
            pending.push(Pending { reply, seq: self.next_seq, hash });
            self.next_seq += 1;
            self.head = hash;
        }
        if let Err(e) = self.flush(&mut buf, &mut pending) {
            self.fail(pending, std::iter::empty(), &e);
        }
    }

    /// Before a batch: signs the head if a checkpoint is overdue (one failed), cuts back
    /// what a failed write left behind, closes an old segment.
    fn prepare(&mut self) -> Result<(), AuditError> {
        if self.uncovered_since.is_some_and(|since| since.elapsed() >= self.window.interval) {
            // No record goes past the window's interval unsigned either.
            self.sign_head(CheckpointKind::Head, None)?;
        }
        if self.needs_repair {
            if let Some(seg) = &mut self.segment {
                before_write(self.config.fault_injection.as_ref())
                    .and_then(|()| seg.file.set_len(seg.committed_len))
                    .and_then(|()| seg.file.sync_all())
                    .map_err(|e| AuditError::io(&seg.path, "cannot cut back a failed write", e))?;
                seg.len = seg.committed_len;
            }
            self.needs_repair = false;
        }
        if let Some(seg) = &self.segment
            && seg.len > 0
            && seg.opened.elapsed() >= self.config.segment_max_age
        {
            self.segment = None;
        }
        Ok(())
    }

    fn must_rotate(&self, buffered: u64, line: u64) -> bool {
        match &self.segment {
            None => true,
            Some(seg) => {
                let used = seg.len + buffered;
                used > 0 && used + line > self.config.segment_max_bytes
            }
        }
    }

    /// Starts the segment whose first record is `next_seq`.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let name = segment_name(self.next_seq);
        let path = self.dir.join(&name);
        let file = before_write(self.config.fault_injection.as_ref())
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
            .map_err(|e| AuditError::io(&path, "cannot create segment", e))?;
        let len = file.metadata().map_err(|e| AuditError::io(&path, "cannot stat", e))?.len();
        if len != 0 {
            return Err(AuditError::corrupt(&path, None, "a new segment's file already holds data"));
        }
        sync_dir(&self.dir)?;
        self.segment =
            Some(OpenSegment { file, name, path, len: 0, committed_len: 0, opened: Instant::now() });
        Ok(())
    }

    /// Writes and fsyncs the buffered lines, then acknowledges their records.
    fn flush(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<Pending>) -> Result<(), AuditError> {
        let Some(last) = pending.last() else { return Ok(()) };
        let (last_seq, last_hash) = (last.seq, last.hash);
        let faults = self.config.fault_injection.as_ref();
        let Some(seg) = &mut self.segment else {
            return Err(AuditError::Unavailable("no segment is open".into()));
        };
        before_write(faults)
            .and_then(|()| seg.file.write_all(buf))
            .map_err(|e| AuditError::io(&seg.path, "cannot write", e))?;
        seg.len += buf.len() as u64;
        let started = Instant::now();
        before_sync(faults)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| AuditError::io(&seg.path, "cannot fsync", e))?;
        let took = started.elapsed();
        seg.committed_len = seg.len;

        self.committed_seq = last_seq + 1;
        self.committed_head = last_hash;
        if self.last_record_segment.as_deref() != Some(&seg.name) {
            self.last_record_segment = Some(seg.name.clone());
        }
        self.uncovered_since.get_or_insert_with(Instant::now);
        let shared = &self.shared;
        Shared::add(&shared.fsyncs, 1);
        Shared::add(&shared.fsync_nanos, u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        Shared::add(&shared.records_written, pending.len() as u64);
        Shared::add(&shared.bytes_written, buf.len() as u64);
        shared.next_seq.store(self.committed_seq, Ordering::SeqCst);
        if shared.unwritable.load(Ordering::SeqCst) {
            shared.set_error(None);
            tracing::info!("audit log is writable again");
        }
        if let Some(observe) = &self.config.fsync_observer {
            observe(took);
        }
        let lines = pending.len() as u64;
        for p in pending.drain(..) {
            if let Some(reply) = p.reply {
                let _ = reply.send(Ok(Appended::Durable { seq: p.seq, hash: crate::chain::to_hex(&p.hash) }));
            }
        }
        // The copy for the log collector: only what is durable, handed over without waiting.
        match &self.config.ship {
            Some(ship) => ship.send(std::mem::take(buf), lines),
            None => buf.clear(),
        }
        Ok(())
    }

    /// Rolls the chain back to the last durable record and fails every record of the batch.
    fn fail(&mut self, pending: Vec<Pending>, rest: impl Iterator<Item = Option<Reply>>, error: &AuditError) {
        let reason = error_chain(error);
        self.next_seq = self.committed_seq;
        self.head = self.committed_head;
        self.needs_repair = true;
        Shared::add(&self.shared.write_errors, 1);
        let was_writable = !self.shared.unwritable.load(Ordering::SeqCst);
        self.shared.set_error(Some(reason.clone()));
        let mut failed = 0;
        for reply in pending.into_iter().map(|p| p.reply).chain(rest) {
            failed += 1;
            if let Some(reply) = reply {
                let _ = reply.send(Err(AuditError::Unavailable(reason.clone())));
            }
        }
        if self.config.mode == Mode::Relaxed {
            Shared::add(&self.shared.dropped, failed);
        }
        // Loud when the log becomes unwritable, then at most every 10 s while it stays so.
        let loud =
            was_writable || self.last_failure_log.is_none_or(|at| at.elapsed() >= FAILURE_LOG_INTERVAL);
        if !loud {
            tracing::debug!(error = %reason, records = failed, "audit log write failed again");
            return;
        }
        self.last_failure_log = Some(Instant::now());
        match self.config.mode {
            Mode::Strict => tracing::error!(
                error = %reason, records = failed,
                "audit log write failed: appends fail (the server answers 503) until a write succeeds"
            ),
            Mode::Relaxed => {
                tracing::error!(error = %reason, records = failed, "audit log write failed: records dropped")
            }
        }
    }

    /// The seq of the first record not covered by a checkpoint.
    fn covered_next(&self) -> u64 {
        self.checkpointed_seq.map_or(0, |s| s + 1)
    }

    /// How long until a checkpoint falls due by time (or may be retried after a failure);
    /// `None` when every record is covered.
    fn checkpoint_due_in(&self) -> Option<Duration> {
        let since = self.uncovered_since?;
        let due = self.window.interval.saturating_sub(since.elapsed());
        let retry = self
            .checkpoint_retry_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()));
        Some(due.max(retry))
    }

    fn checkpoint_if_due(&mut self, closing: bool) {
        let Some(head_seq) = self.committed_seq.checked_sub(1) else { return };
        if self.checkpointed_seq == Some(head_seq) {
            self.uncovered_since = None;
            return;
        }
        let uncovered = self.committed_seq - self.covered_next();
        let retry_wait = self.checkpoint_retry_at.is_some_and(|at| Instant::now() < at);
        let late = self.uncovered_since.is_some_and(|since| since.elapsed() >= self.window.interval);
        if closing || (!retry_wait && (late || uncovered >= self.window.records)) {
            let kind = if closing { CheckpointKind::Close } else { CheckpointKind::Head };
            // A failure is logged and counted; the next batch retries before it writes.
            let _ = self.sign_head(kind, None);
        }
    }

    /// Signs the committed head (if a record is not covered yet); on failure logs, counts,
    /// and arranges for the file to be cut back and the timer to retry.
    fn sign_head(&mut self, kind: CheckpointKind, recovered_from: Option<u64>) -> Result<(), AuditError> {
        let Some(head_seq) = self.committed_seq.checked_sub(1) else { return Ok(()) };
        if self.checkpointed_seq == Some(head_seq) {
            return Ok(());
        }
        match self.write_checkpoint(head_seq, kind, recovered_from) {
            Ok(()) => {
                self.checkpoint_retry_at = None;
                Ok(())
            }
            Err(e) => {
                Shared::add(&self.shared.checkpoint_errors, 1);
                self.checkpoints_need_repair = true;
                self.checkpoint_retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                tracing::error!(error = %error_chain(&e), "cannot write an audit checkpoint");
                Err(AuditError::Unavailable(format!("cannot write an audit checkpoint: {}", error_chain(&e))))
            }
        }
    }

    fn write_checkpoint(
        &mut self,
        head_seq: u64,
        kind: CheckpointKind,
        recovered_from: Option<u64>,
    ) -> Result<(), AuditError> {
        let Some(segment) = self.last_record_segment.clone() else { return Ok(()) };
        let window = CheckpointWindow {
            records: self.config.checkpoint_every,
            interval: self.config.checkpoint_interval,
        };
        let mut checkpoint = Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            kind,
            log_id: self.log_id.clone(),
            seq: Some(head_seq),
            hash: Some(crate::chain::to_hex(&self.committed_head)),
            segment: Some(segment),
            recovered_from,
            time: Timestamp::now(),
            replica_id: self.config.replica_id.clone(),
            key_id: self.key_id.clone(),
            every_records: window.records,
            every_ms: u64::try_from(window.interval.as_millis()).unwrap_or(u64::MAX),
            signature: String::new(),
        };
        let line = checkpoint.seal(&self.key).map_err(|e| AuditError::Serialize(e.to_string()))?;
        let faults = self.config.fault_injection.as_ref();
        let path = &self.checkpoints_path;
        if self.checkpoints_need_repair {
            before_write(faults)
                .and_then(|()| self.checkpoints.set_len(self.checkpoints_committed_len))
                .map_err(|e| AuditError::io(path, "cannot cut back a failed write", e))?;
            self.checkpoints_need_repair = false;
        }
        before_write(faults)
            .and_then(|()| self.checkpoints.write_all(&line))
            .and_then(|()| before_sync(faults))
            .and_then(|()| self.checkpoints.sync_data())
            .map_err(|e| AuditError::io(path, "cannot write checkpoint", e))?;
        self.checkpoints_committed_len += line.len() as u64;
        self.ship_checkpoint(line);
        self.checkpointed_seq = Some(head_seq);
        self.uncovered_since = None;
        // The checkpoint states the configured window; from here on it is the one kept.
        self.window = window;
        Shared::add(&self.shared.checkpoints, 1);
        Ok(())
    }

    /// Hands a durable checkpoint line to the shipper, if it ships checkpoints.
    fn ship_checkpoint(&self, line: Vec<u8>) {
        if let Some(ship) = self.config.ship.as_ref().filter(|s| s.ships_checkpoints()) {
            ship.send(line, 1);
        }
    }

    /// On close: a final checkpoint over everything committed.
    fn finish(&mut self) -> Result<(), AuditError> {
        self.checkpoint_if_due(true);
        match self.committed_seq.checked_sub(1) {
            Some(head) if self.checkpointed_seq != Some(head) => {
                Err(AuditError::Unavailable("the final audit checkpoint could not be written".into()))
            }
            _ => Ok(()),
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), AuditError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| AuditError::io(dir, "cannot create", e))
}

fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, "cannot open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(AuditError::Locked { path: dir.to_path_buf() }),
        Err(fs::TryLockError::Error(e)) => Err(AuditError::io(&path, "cannot lock", e)),
    }
}
