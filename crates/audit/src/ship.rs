//! Shipping: a copy of every durable line (records, and optionally checkpoints) written to a
//! stream such as stdout, where a cluster's log collector picks it up.
//!
//! The copy never stands in for the log and never holds it up. The writer hands a batch
//! over only after it is durable in the log (written and fsynced), and only without waiting:
//! the lines go to a dedicated thread through a queue bounded in bytes, so a stream that
//! blocks (a stalled collector, a full pipe) or fails (a closed pipe) costs shipped lines,
//! never records. Lines that could not be shipped are counted ([`ShipStats`]) and the
//! failure is logged, at most every 10 seconds. Each line is the stored line, byte for byte.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::AuditError;

/// How often a failing or overflowing stream repeats its warning.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What to ship, and how much may wait for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipOptions {
    /// Ship checkpoint lines too (after the records they cover), so that the collector's
    /// copy carries the signatures and the log's genesis. Default true.
    pub checkpoints: bool,
    /// Bytes of lines that may wait for the stream; past it, lines are dropped from the
    /// copy (never from the log) and counted. Default 16 MiB.
    pub queue_bytes: u64,
}

impl Default for ShipOptions {
    fn default() -> Self {
        Self { checkpoints: true, queue_bytes: 16 * 1024 * 1024 }
    }
}

/// Counters of a [`Shipper`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Lines (records and checkpoints) written to the stream.
    pub shipped: u64,
    /// Lines not shipped: the queue was full, or the stream failed.
    pub dropped: u64,
    /// Failed writes to the stream.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    shipped: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    /// Bytes handed over and not yet written (or given up).
    queued_bytes: AtomicU64,
    /// Batches handed over and not yet written (or given up).
    in_flight: AtomicU64,
}

/// A batch of complete lines.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// A handle to a shipping thread. Cheap to clone; the thread ends when the last handle is
/// dropped, after writing what was queued.
#[derive(Clone)]
pub struct Shipper {
    tx: mpsc::Sender<Batch>,
    counters: Arc<Counters>,
    options: ShipOptions,
}

impl fmt::Debug for Shipper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shipper").field("options", &self.options).field("stats", &self.stats()).finish()
    }
}

impl Shipper {
    /// Ships to standard output.
    pub fn stdout(options: ShipOptions) -> Result<Self, AuditError> {
        Self::start(StdoutLines, options)
    }

    /// Ships to `out`, from a thread of its own.
    pub fn start(out: impl Write + Send + 'static, options: ShipOptions) -> Result<Self, AuditError> {
        let (tx, rx) = mpsc::channel::<Batch>();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("palisade-audit-ship".to_owned())
            .spawn(move || run(rx, out, &thread_counters))
            .map_err(|e| AuditError::io("<ship>", "cannot start the audit shipping thread", e))?;
        Ok(Self { tx, counters, options })
    }

    /// Whether checkpoints are shipped too.
    pub fn ships_checkpoints(&self) -> bool {
        self.options.checkpoints
    }

    /// The counters.
    pub fn stats(&self) -> ShipStats {
        let c = &self.counters;
        ShipStats {
            shipped: c.shipped.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Hands `lines` complete lines over without waiting; drops (and counts) them when the
    /// queue is full.
    pub(crate) fn send(&self, bytes: Vec<u8>, lines: u64) {
        if lines == 0 {
            return;
        }
        let c = &self.counters;
        let len = bytes.len() as u64;
        let queued = c.queued_bytes.fetch_add(len, Ordering::SeqCst);
        if queued.saturating_add(len) > self.options.queue_bytes && queued > 0 {
            c.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            c.dropped.fetch_add(lines, Ordering::Relaxed);
            return;
        }
        c.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Batch { bytes, lines }).is_err() {
            c.in_flight.fetch_sub(1, Ordering::SeqCst);
            c.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            c.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }

    /// Waits until everything handed over was written (or given up), at most `timeout`.
    /// Returns whether the queue is empty.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.counters.in_flight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The shipping thread: writes each batch and flushes; counts and reports failures.
fn run(rx: mpsc::Receiver<Batch>, mut out: impl Write, counters: &Counters) {
    let mut last_warning: Option<Instant> = None;
    let mut dropped_at_warning = 0;
    while let Ok(batch) = rx.recv() {
        let written = out.write_all(&batch.bytes).and_then(|()| out.flush());
        match written {
            Ok(()) => {
                counters.shipped.fetch_add(batch.lines, Ordering::Relaxed);
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                counters.dropped.fetch_add(batch.lines, Ordering::Relaxed);
                if last_warning.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
                    let dropped = counters.dropped.load(Ordering::Relaxed);
                    tracing::warn!(
                        error = %e,
                        lines_not_shipped = dropped,
                        since_last_warning = dropped - dropped_at_warning,
                        "cannot ship audit lines to the stream; the local audit log is unaffected"
                    );
                    last_warning = Some(Instant::now());
                    dropped_at_warning = dropped;
                }
            }
        }
        counters.queued_bytes.fetch_sub(batch.bytes.len() as u64, Ordering::SeqCst);
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Standard output, locked for each batch so that its lines are never interleaved with
/// other output of the process.
struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A stream that collects what it is given, or fails, or blocks until released.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_are_counted() {
        let sink = Sink::default();
        let ship = Shipper::start(sink.clone(), ShipOptions::default()).unwrap();
        ship.send(b"a\nb\n".to_vec(), 2);
        ship.send(b"c\n".to_vec(), 1);
        assert!(ship.drain(Duration::from_secs(5)));
        assert_eq!(&*sink.bytes.lock().unwrap(), b"a\nb\nc\n");
        assert_eq!(ship.stats(), ShipStats { shipped: 3, dropped: 0, errors: 0 });
    }

    #[test]
    fn a_failing_stream_is_counted_and_later_batches_still_go() {
        let sink = Sink::default();
        let ship = Shipper::start(sink.clone(), ShipOptions::default()).unwrap();
        sink.fail.store(true, Ordering::SeqCst);
        ship.send(b"a\nb\n".to_vec(), 2);
        assert!(ship.drain(Duration::from_secs(5)));
        sink.fail.store(false, Ordering::SeqCst);
        ship.send(b"c\n".to_vec(), 1);
        assert!(ship.drain(Duration::from_secs(5)));
        assert_eq!(&*sink.bytes.lock().unwrap(), b"c\n");
        assert_eq!(ship.stats(), ShipStats { shipped: 1, dropped: 2, errors: 1 });
    }

    #[test]
    fn a_blocked_stream_never_blocks_the_sender_and_overflow_is_dropped() {
        let sink = Sink::default();
        let ship = Shipper::start(sink.clone(), ShipOptions { checkpoints: true, queue_bytes: 8 }).unwrap();
        let held = sink.gate.lock().unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            ship.send(b"0123\n".to_vec(), 1);
        }
        assert!(started.elapsed() < Duration::from_secs(1), "send waited for the stream");
        assert!(!ship.drain(Duration::from_millis(50)), "the stream is blocked");
        drop(held);
        assert!(ship.drain(Duration::from_secs(5)));
        let stats = ship.stats();
        assert_eq!(stats.shipped + stats.dropped, 100);
        assert!(stats.dropped >= 98, "{stats:?}");
        assert_eq!(sink.bytes.lock().unwrap().len() as u64, stats.shipped * 5);
    }
}
