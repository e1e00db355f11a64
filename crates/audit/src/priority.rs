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
}
