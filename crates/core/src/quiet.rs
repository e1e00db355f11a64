//! Quiet failure logs: the first of a run of repeated failures is told, then at most one
//! line per interval, with the count of those not told.
//!
//! A full disk or a flood of bad handshakes must not turn into one log line per request:
//! that is how a small outage becomes a big one once a log shipper is involved. Callers ask
//! [`Quiet::note`] before logging, and log only when it says so, with the count it gives.
//! Every failure should still be counted in a metric.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to say when a noted failure is to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Failures of this kind since the last line that were not logged.
    pub suppressed: u64,
}

/// Rate limit for one kind of repeated failure (see the module docs).
#[derive(Debug)]
pub struct Quiet {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Quiet {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> Quiet {
        Quiet { interval, state: Mutex::new((None, 0)) }
    }

    /// Notes one failure; `Some` when this one should be logged.
    pub fn note(&self) -> Option<Report> {
        self.note_at(Instant::now())
    }

    /// [`Quiet::note`] at a given time (for tests).
    pub fn note_at(&self, now: Instant) -> Option<Report> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.interval => {
                *suppressed += 1;
                None
            }
            _ => {
                let report = Report { suppressed: *suppressed };
                *last = Some(now);
                *suppressed = 0;
                Some(report)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_told_then_one_line_per_interval_with_a_count() {
        let quiet = Quiet::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(quiet.note_at(t0), Some(Report { suppressed: 0 }));
        let told: Vec<_> =
            (1..=400).filter_map(|i| quiet.note_at(t0 + Duration::from_millis(i * 50))).collect();
        // 400 failures over 20 s: one line each 10 s, with what was held back.
        assert_eq!(told, vec![Report { suppressed: 199 }, Report { suppressed: 199 }]);
    }
}
