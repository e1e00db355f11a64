//! The background threads of the trail (the sealer, the archiver) run at a lower CPU
//! priority than the request path: compressing and uploading segments must not take CPU
//! from requests when the cores are busy. When they are, the backlog grows instead (its
//! metrics and `maxBacklog` readiness bounds say so) and drains when load drops; on idle
//! cores the priority changes nothing.

/// The nice value added to a background thread (Linux: 0 is the default, 19 the lowest).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority by [`BACKGROUND_NICE`]. On Linux the
/// nice value belongs to the thread, so the rest of the process keeps its priority; on
/// other systems it would apply to the whole process, so nothing is changed there. A
/// failure (a sandbox refusing the call) leaves the priority as it was: it is a preference,
/// not a guarantee the trail depends on.
pub fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(BACKGROUND_NICE) {
        tracing::debug!(error = %e, "could not lower a background audit thread's priority");
    }
}

/// A background thread that runs a pass at once and then every `every`, at the lowered
/// priority, until dropped: dropping wakes it, lets the pass in progress finish, and joins
/// it. What the sealer and the archiver are built on.
pub struct Periodic {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic").field("running", &self.thread.is_some()).finish()
    }
}

impl Periodic {
    /// Starts the thread `name` running `pass`.
    pub fn spawn(
        name: &str,
        every: std::time::Duration,
        mut pass: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Periodic> {
        use std::sync::PoisonError;
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            lower_this_threads_priority();
            loop {
                pass();
                let (lock, wake) = &*flag;
                let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (stopped, _) = wake
                    .wait_timeout_while(stopped, every, |stop| !*stop)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stopped {
                    return;
                }
            }
        })?;
        Ok(Periodic { stop, thread: Some(thread) })
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let inside = std::thread::spawn(|| {
            let start = rustix::process::getpriority_process(None).unwrap();
            lower_this_threads_priority();
            (start, rustix::process::getpriority_process(None).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(inside.1, (inside.0 + BACKGROUND_NICE).min(19), "the thread is lowered");
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            before,
            "the rest of the process is not"
        );
    }

    #[test]
    fn a_periodic_thread_runs_at_once_again_and_stops_when_dropped() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let passes = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&passes);
        let periodic = Periodic::spawn("test-periodic", std::time::Duration::from_millis(10), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while passes.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(passes.load(Ordering::SeqCst) >= 3);
        drop(periodic);
        let after = passes.load(Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(passes.load(Ordering::SeqCst), after, "no pass after the drop returned");
    }
}
