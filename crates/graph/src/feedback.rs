//! What the server remembers of a graph's requests, for feedback: the route each took and
//! who sent it, by request id. Bounded: the oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::exec::RouteTaken;

/// One remembered request.
#[derive(Debug, Clone)]
pub struct Remembered {
    /// The graph that served it (`namespace/name:version`).
    pub graph: String,
    /// Who sent it (the caller's principal, as the server writes it).
    pub caller: String,
    /// The routes it took.
    pub routing: Vec<RouteTaken>,
    /// When.
    pub at: Instant,
}

/// Requests remembered for feedback, by request id.
#[derive(Debug)]
pub struct FeedbackLog {
    capacity: usize,
    max_age: Duration,
    inner: Mutex<(HashMap<String, Remembered>, VecDeque<String>)>,
}

impl FeedbackLog {
    /// Remembers at most `capacity` requests, each for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> FeedbackLog {
        FeedbackLog {
            capacity: capacity.max(1),
            max_age,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Remembers a request.
    pub fn remember(&self, request_id: String, remembered: Remembered) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        while map.len() >= self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        order.push_back(request_id.clone());
        map.insert(request_id, remembered);
    }

    /// The request, if remembered and not too old.
    pub fn get(&self, request_id: &str) -> Option<Remembered> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(request_id).filter(|r| r.at.elapsed() <= self.max_age).cloned()
    }

    /// Forgets a request (its feedback was taken: one reward per request).
    pub fn forget(&self, request_id: &str) -> Option<Remembered> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.remove(request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_are_forgotten_first() {
        let log = FeedbackLog::new(2, Duration::from_secs(60));
        let r =
            |c: &str| Remembered { graph: "g".into(), caller: c.into(), routing: vec![], at: Instant::now() };
        log.remember("a".into(), r("x"));
        log.remember("b".into(), r("y"));
        log.remember("c".into(), r("z"));
        assert!(log.get("a").is_none());
        assert_eq!(log.get("c").map(|r| r.caller), Some("z".to_owned()));
        assert!(log.forget("b").is_some());
        assert!(log.get("b").is_none());
    }
}
