//! Throttling failed client-credential attempts at the token endpoint.
//!
//! Secrets are 256 random bits, so guessing one is hopeless; the throttle is about the
//! noise and the cost: without it a client tried 2,000 wrong secrets in 1.7 s and nothing
//! was logged. Each client id and each source address (an IPv6 address by its /64) may
//! fail a few times per window; past that, its attempts are refused without checking the
//! secret until the window ends (the caller sees 429 with `Retry-After`). A success clears
//! the client id's count. Failures are logged as one summary line per interval, never one
//! line per attempt. Memory is bounded: each table keeps at most [`MAX_TRACKED`] keys,
//! dropping the oldest window when full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per client id in one window.
pub const MAX_FAILURES_PER_CLIENT: u32 = 5;
/// Failures allowed per source address in one window (an address may host many clients).
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked per table.
pub const MAX_TRACKED: usize = 10_000;
/// At most one summary log line per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One key's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Failures per key, bounded.
#[derive(Debug, Default)]
struct Table<K> {
    windows: HashMap<K, Window>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    /// Seconds until `key` may try again, if it is over `limit`.
    fn blocked(&self, key: &K, limit: u32, now: Instant) -> Option<Duration> {
        let window = self.windows.get(key)?;
        let ends = window.start + WINDOW;
        (window.failures >= limit && ends > now).then(|| ends - now)
    }

    fn fail(&mut self, key: K, now: Instant) {
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_TRACKED {
            self.windows.retain(|_, w| w.start + WINDOW > now);
            if self.windows.len() >= MAX_TRACKED
                && let Some(oldest) = self.windows.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| k.clone())
            {
                self.windows.remove(&oldest);
            }
        }
        let window = self.windows.entry(key).or_insert(Window { start: now, failures: 0 });
        if window.start + WINDOW <= now {
            *window = Window { start: now, failures: 0 };
        }
        window.failures = window.failures.saturating_add(1);
    }

    fn clear(&mut self, key: &K) {
        self.windows.remove(key);
    }
}

/// What is counted since the last summary line.
#[derive(Debug)]
struct Summary {
    since: Option<Instant>,
    failures: u64,
    refused: u64,
}

#[derive(Debug)]
struct State {
    clients: Table<String>,
    addresses: Table<IpAddr>,
    summary: Summary,
}

/// The token endpoint's throttle, shared by every request.
#[derive(Debug)]
pub struct CredentialThrottle {
    state: Mutex<State>,
}

impl Default for CredentialThrottle {
    fn default() -> Self {
        CredentialThrottle {
            state: Mutex::new(State {
                clients: Table { windows: HashMap::new() },
                addresses: Table { windows: HashMap::new() },
                summary: Summary { since: None, failures: 0, refused: 0 },
            }),
        }
    }
}

/// One client's address as per-address limits count it: IPv4 as is (also when it comes
/// IPv4-mapped, `::ffff:a.b.c.d`, on a dual-stack listener), IPv6 by its /64 (one host's,
/// or one subscriber's, many addresses).
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            for segment in &mut segments[4..] {
                *segment = 0;
            }
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

impl CredentialThrottle {
    /// Whether an attempt may go ahead; `Err(wait)` when the client id or the address is
    /// over its limit (the caller answers 429 with `Retry-After: wait`, at least 1 s).
    pub fn check(&self, client_id: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let by_client = state.clients.blocked(&client_id.to_owned(), MAX_FAILURES_PER_CLIENT, now);
        let by_address =
            address.and_then(|a| state.addresses.blocked(&address_key(a), MAX_FAILURES_PER_ADDRESS, now));
        match by_client.into_iter().chain(by_address).max() {
            Some(wait) => {
                state.summary.refused += 1;
                Self::maybe_log(&mut state.summary, now);
                Err(wait.max(Duration::from_secs(1)))
            }
            None => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, client_id: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.clients.fail(client_id.to_owned(), now);
        if let Some(address) = address {
            state.addresses.fail(address_key(address), now);
        }
        state.summary.failures += 1;
        Self::maybe_log(&mut state.summary, now);
    }

    /// Records a success: the client id's failures are forgotten.
    pub fn succeeded(&self, client_id: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.clients.clear(&client_id.to_owned());
        }
    }

    /// One line per [`LOG_INTERVAL`] at most: the first failure after a quiet interval at
    /// once, then the counts of each interval.
    fn maybe_log(summary: &mut Summary, now: Instant) {
        let due = summary.since.is_none_or(|since| now.duration_since(since) >= LOG_INTERVAL);
        if due {
            tracing::warn!(
                failed = summary.failures,
                refused = summary.refused,
                interval_s = summary.since.map_or(0, |s| now.duration_since(s).as_secs()),
                "failed client-credential attempts at /oauth/token (clients and addresses past {MAX_FAILURES_PER_CLIENT} and {MAX_FAILURES_PER_ADDRESS} failures a minute are refused with 429)"
            );
            *summary = Summary { since: Some(now), failures: 0, refused: 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_client_past_its_failures_is_refused_until_its_window_ends() {
        let throttle = CredentialThrottle::default();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_CLIENT {
            assert!(throttle.check("c", Some(address)).is_ok());
            throttle.failed("c", Some(address));
        }
        let wait = throttle.check("c", Some(address)).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= WINDOW, "{wait:?}");
        // Another client from another address is not affected.
        assert!(throttle.check("d", Some("192.0.2.2".parse().unwrap())).is_ok());
        throttle.succeeded("c");
        assert!(throttle.check("c", Some(address)).is_ok());
    }

    #[test]
    fn an_address_past_its_failures_is_refused_for_every_client_and_ipv6_by_its_64() {
        let throttle = CredentialThrottle::default();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            let address: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            throttle.failed(&format!("client-{i}"), Some(address));
        }
        assert!(throttle.check("fresh", Some("2001:db8::ffff".parse().unwrap())).is_err());
        assert!(throttle.check("fresh", Some("2001:db8:1::1".parse().unwrap())).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address_not_as_one_64() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let throttle = CredentialThrottle::default();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            throttle.failed(&format!("client-{i}"), Some(mapped));
        }
        assert!(throttle.check("fresh", Some("192.0.2.7".parse().unwrap())).is_err());
        // Another IPv4 client on the dual-stack listener is not held to its failures.
        assert!(throttle.check("fresh", Some("::ffff:198.51.100.1".parse().unwrap())).is_ok());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let throttle = CredentialThrottle::default();
        for i in 0..MAX_TRACKED + 100 {
            throttle.failed(&format!("c{i}"), None);
        }
        assert!(throttle.state.lock().unwrap().clients.windows.len() <= MAX_TRACKED);
    }
}
