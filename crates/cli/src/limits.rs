//! Limits `palisade serve` derives from the machine: the descriptor budget (raised to the
//! hard limit at start) and the memory budget for request bodies in flight.

/// The process's descriptor limits after [`raise_descriptor_limit`].
#[derive(Debug, Clone, Copy)]
pub struct Descriptors {
    /// The soft limit in effect.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a server should use what it may), and
/// says what it is now. On failure the limits stay as they were.
pub fn raise_descriptor_limit() -> Descriptors {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard {
                match rlimit::Resource::NOFILE.set(hard, hard) {
                    Ok(()) => return Descriptors { soft: hard, hard },
                    Err(error) => tracing::warn!(%error, soft, hard, "cannot raise the descriptor limit"),
                }
            }
            Descriptors { soft, hard }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit; assuming 1024");
            Descriptors { soft: 1024, hard: 1024 }
        }
    }
}

/// Connections the descriptor budget allows: the soft limit less a reserve for model files,
/// the audit log, key fetches and upstream connections (an eighth, at least 128).
pub fn connection_budget(soft: u64) -> usize {
    let reserve = (soft / 8).max(128);
    usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX).max(16)
}

/// A quarter of the memory the server may use: its cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) when it has one, else the machine's; 512 MiB when neither can be
/// read. At least 64 MiB.
pub fn default_inflight_bytes() -> usize {
    let limit = cgroup_memory_limit().or_else(physical_memory).unwrap_or(2 * 1024 * 1024 * 1024);
    usize::try_from(limit / 4).unwrap_or(usize::MAX).max(64 * 1024 * 1024)
}

fn cgroup_memory_limit() -> Option<u64> {
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        // `max` (v2) or a huge number (v1) mean no limit.
        text.trim().parse::<u64>().ok().filter(|&bytes| bytes < (1 << 50))
    })
}

fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_leave_a_reserve_and_have_floors() {
        assert_eq!(connection_budget(4096), 4096 - 512);
        assert_eq!(connection_budget(1024), 1024 - 128);
        assert_eq!(connection_budget(100), 16);
        assert!(default_inflight_bytes() >= 64 * 1024 * 1024);
    }
}
