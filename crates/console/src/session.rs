//! The server-side session store: a session id (256 random bits) lives only in the
//! browser's cookie, the store keeps its SHA-256; each session has an expiry and a CSRF
//! token; the store holds at most a configured number of sessions, and one person at most
//! [`MAX_PER_PERSON`] of them (so nobody can push everyone else's sessions out by signing
//! in over and over).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_identity::{Authenticated, Secret};

use crate::{ConsoleError, digest, random_token};

/// Sessions one person (one `iss/sub`) may hold at once; a new one ends their oldest.
pub const MAX_PER_PERSON: usize = 8;

/// One signed-in person.
#[derive(Debug)]
pub struct Session {
    /// Who: the verified ID token (or pasted token), as authentication made it.
    pub identity: Authenticated,
    /// The token every state-changing request must carry in `x-csrf-token`.
    pub csrf: Secret,
    /// When the session ends.
    pub expires: Instant,
    /// Who, as `iss/sub` (empty for an anonymous identity, which only tests make).
    principal: String,
}

impl Session {
    /// Whether `sent` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|sent| self.csrf.ct_eq(sent))
    }
}

/// The sessions (see the module docs). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    capacity: usize,
    ttl: Duration,
}

impl Sessions {
    /// A store of at most `capacity` sessions of `ttl` each.
    pub fn new(capacity: usize, ttl: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), capacity: capacity.max(1), ttl }
    }

    /// Starts a session for `identity`, ending after the store's lifetime or at `until`,
    /// whichever is sooner. Returns the cookie value (the id) and the session.
    pub fn create(
        &self,
        identity: Authenticated,
        until: Option<Instant>,
    ) -> Result<(Secret, Arc<Session>), ConsoleError> {
        let id = random_token(32)?;
        let csrf = Secret::new(random_token(32)?);
        let now = Instant::now();
        let expires = until.map_or(now + self.ttl, |until| until.min(now + self.ttl));
        let principal = identity.token().map(|t| t.principal()).unwrap_or_default();
        let session = Arc::new(Session { identity, csrf, expires, principal });
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity {
            map.retain(|_, s| s.expires > now);
        }
        loop {
            let theirs = map.iter().filter(|(_, s)| s.principal == session.principal);
            let (count, first) = theirs.fold((0, None::<(&[u8; 32], Instant)>), |(n, first), (k, s)| {
                (n + 1, if first.is_none_or(|(_, e)| s.expires < e) { Some((k, s.expires)) } else { first })
            });
            match first {
                Some((key, _)) if count >= MAX_PER_PERSON => {
                    let key = *key;
                    map.remove(&key);
                }
                _ => break,
            }
        }
        while map.len() >= self.capacity {
            let Some(first) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) else { break };
            map.remove(&first);
        }
        map.insert(digest(&id), session.clone());
        Ok((Secret::new(id), session))
    }

    /// The live session of a cookie value; an expired one is removed.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let key = digest(id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign-out).
    pub fn remove(&self, id: &str) -> bool {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest(id)).is_some()
    }

    /// Sessions held now (expired ones included until they are looked at or pushed out).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_only_and_end() {
        let store = Sessions::new(10, Duration::from_secs(60));
        let (id, session) = store.create(Authenticated::Anonymous, None).unwrap();
        assert!(Arc::ptr_eq(&store.get(id.expose()).unwrap(), &session));
        assert!(store.get("not-a-session").is_none());
        assert!(session.csrf_matches(Some(session.csrf.expose())));
        assert!(!session.csrf_matches(Some("wrong")));
        assert!(!session.csrf_matches(None));
        assert!(store.remove(id.expose()));
        assert!(store.get(id.expose()).is_none());
        let (short, _) = store.create(Authenticated::Anonymous, Some(Instant::now())).unwrap();
        assert!(store.get(short.expose()).is_none(), "a session past its end is gone");
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn the_store_is_bounded() {
        let store = Sessions::new(3, Duration::from_secs(60));
        let first =
            store.create(Authenticated::Anonymous, Some(Instant::now() + Duration::from_secs(5))).unwrap().0;
        let ids: Vec<Secret> =
            (0..5).map(|_| store.create(Authenticated::Anonymous, None).unwrap().0).collect();
        assert_eq!(store.len(), 3);
        assert!(store.get(first.expose()).is_none(), "the session ending first made room");
        assert!(store.get(ids[4].expose()).is_some());
    }

    #[test]
    fn one_person_cannot_push_everyone_out() {
        let store = Sessions::new(20, Duration::from_secs(60));
        let someone = |sub: &str| {
            let token = palisade_identity::VerifiedToken {
                issuer: "https://idp.example".to_owned(),
                subject: Some(sub.to_owned()),
                audiences: Vec::new(),
                presenter: None,
                jti: None,
                kid: None,
                alg: "ES256",
                expires_at: 0.0,
                valid_until: 0.0,
                claims: Arc::default(),
            };
            Authenticated::Token {
                token: Arc::new(token),
                rule: Arc::new(palisade_identity::JwtRule {
                    issuer: "https://idp.example".to_owned(),
                    audiences: Vec::new(),
                    keys: palisade_identity::KeySource::Discovery,
                    from_headers: Vec::new(),
                    from_params: Vec::new(),
                    from_cookies: Vec::new(),
                    forward_original_token: false,
                    output_payload_to_header: None,
                    output_claim_to_headers: Vec::new(),
                    timeout: Duration::from_secs(1),
                }),
                scope: Arc::new(palisade_identity::Scope::Global),
                location: palisade_identity::TokenLocation::Cookie("palisade_console".to_owned()),
            }
        };
        let alice = store.create(someone("alice"), None).unwrap().0;
        let mallory: Vec<Secret> =
            (0..50).map(|_| store.create(someone("mallory"), None).unwrap().0).collect();
        assert!(store.get(alice.expose()).is_some(), "alice keeps her session");
        assert_eq!(store.len(), 1 + MAX_PER_PERSON);
        assert!(store.get(mallory[0].expose()).is_none(), "mallory's oldest sessions ended");
        assert!(store.get(mallory[49].expose()).is_some());
    }

    #[test]
    fn secrets_do_not_print() {
        let store = Sessions::new(1, Duration::from_secs(60));
        let (id, session) = store.create(Authenticated::Anonymous, None).unwrap();
        let shown = format!("{id:?} {session:?}");
        assert!(!shown.contains(id.expose()) && !shown.contains(session.csrf.expose()), "{shown}");
    }
}
