//! An issuer's keys over time: fetched with a timeout, refreshed periodically, refetched
//! once when a token names an unknown key (single-flight, at most once per interval), kept
//! when the identity provider is down, and absent (so requests fail closed) until the first
//! successful load.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::keys::KeySet;
use crate::rules::KeySource;

/// Largest key-set or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Fetches a URL's body. The production implementation is [`HttpFetch`]; tests substitute
/// their own to count and control fetches.
pub trait Fetch: Send + Sync + 'static {
    /// GETs `url`, giving up after `timeout`.
    fn get<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

/// Fetching over HTTP(S) with reqwest (rustls, platform trust roots).
#[derive(Debug, Clone)]
pub struct HttpFetch {
    client: reqwest::Client,
}

impl HttpFetch {
    /// A client that follows at most 3 redirects, never from HTTPS to plain HTTP nor from
    /// loopback to another host, and never sends cookies.
    pub fn new() -> Result<HttpFetch, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                match redirect_allowed(attempt.previous(), attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(why),
                }
            }))
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpFetch { client })
    }
}

impl Fetch for HttpFetch {
    fn get<'a>(
        &'a self,
        url: &'a str,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move {
            let mut response = self
                .client
                .get(url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
            if !response.status().is_success() {
                return Err(format!("GET {url}: HTTP {}", response.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) =
                response.chunk().await.map_err(|e| format!("GET {url}: {}", without_url(&e)))?
            {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(format!("GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }
}

/// Whether a key fetch may follow a redirect to `to`, after visiting `previous` (the first
/// is the URL asked for): at most 3 redirects, never from HTTPS to plain HTTP, and plain
/// HTTP only on loopback.
fn redirect_allowed(previous: &[reqwest::Url], to: &reqwest::Url) -> Result<(), &'static str> {
    let Some(first) = previous.first() else { return Ok(()) };
    if previous.len() > 3 {
        return Err("more than 3 redirects");
    }
    if first.scheme() == "https" && to.scheme() != "https" {
        return Err("a redirect from https to plain http");
    }
    if to.scheme() == "http" && crate::rules::check_key_url(to.as_str(), false).is_err() {
        return Err("a redirect to plain http off loopback");
    }
    Ok(())
}

fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    if err.is_timeout() { format!("timed out ({text})") } else { text }
}

/// How keys are kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Periodic refresh (default 20 minutes).
    pub refresh_interval: Duration,
    /// Least time between refetches caused by unknown key ids (default 1 minute).
    pub unknown_kid_interval: Duration,
    /// Least time between attempts while no key set was ever loaded (default 5 seconds).
    pub retry_interval: Duration,
    /// Longest a request waits for a fetch it caused (an unknown key id, keys never
    /// loaded); the fetch goes on in the background, within the rule's own timeout, and
    /// later requests use its result (default 1 second).
    pub request_wait: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            refresh_interval: Duration::from_secs(20 * 60),
            unknown_kid_interval: Duration::from_secs(60),
            retry_interval: Duration::from_secs(5),
            request_wait: Duration::from_secs(1),
        }
    }
}

/// What a refresh changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Key ids that disappeared: tokens verified with them must be forgotten.
    pub removed: Vec<String>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    discovered_jwks_uri: Option<String>,
    last_error: Option<String>,
}

/// Fetches that requests cause, started in the background: when they ran, whether one runs.
#[derive(Default)]
struct Demand {
    last_unknown_kid_fetch: Option<Instant>,
    last_missing_fetch: Option<Instant>,
    running: bool,
}

/// The keys of one issuer.
pub struct IssuerKeys {
    issuer: String,
    source: KeySource,
    timeout: Duration,
    policy: KeyPolicy,
    fetch: Arc<dyn Fetch>,
    current: RwLock<Option<Arc<KeySet>>>,
    fetching: tokio::sync::Mutex<FetchState>,
    demand: std::sync::Mutex<Demand>,
    /// Counts the background fetches that finished, so requests can wait for the next.
    finished: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys").field("issuer", &self.issuer).field("source", &self.source).finish()
    }
}

impl IssuerKeys {
    /// Keys of `issuer` from `source`. Inline keys are ready at once; others load on
    /// [`IssuerKeys::refresh`].
    pub fn new(
        issuer: &str,
        source: KeySource,
        timeout: Duration,
        policy: KeyPolicy,
        fetch: Arc<dyn Fetch>,
    ) -> IssuerKeys {
        let current = match &source {
            KeySource::Inline(json) => KeySet::parse(json.as_bytes()).ok().map(Arc::new),
            _ => None,
        };
        IssuerKeys {
            issuer: issuer.to_owned(),
            source,
            timeout,
            policy,
            fetch,
            current: RwLock::new(current),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
            demand: std::sync::Mutex::new(Demand::default()),
            finished: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the keys come from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The keys, if any were ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.read().ok().and_then(|guard| guard.clone())
    }

    /// Replaces the keys (for issuers whose keys are pushed, such as Palisade's own).
    pub fn set(&self, keys: KeySet) -> KeyChange {
        self.swap(Arc::new(keys))
    }

    fn swap(&self, keys: Arc<KeySet>) -> KeyChange {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let removed = match guard.as_ref() {
            Some(old) => old.kids().filter(|kid| !keys.has_kid(kid)).map(str::to_owned).collect(),
            None => Vec::new(),
        };
        *guard = Some(keys);
        KeyChange { removed }
    }

    /// The last fetch error, for diagnostics.
    pub async fn last_error(&self) -> Option<String> {
        self.fetching.lock().await.last_error.clone()
    }

    /// Fetches the keys now. On failure the previous keys stay in use.
    pub async fn refresh(&self) -> Result<KeyChange, String> {
        let mut state = self.fetching.lock().await;
        self.fetch_locked(&mut state).await
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<KeyChange, String> {
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_keys(state).await;
        match result {
            Ok(keys) => {
                state.last_error = None;
                if !keys.skipped.is_empty() {
                    tracing::debug!(issuer = %self.issuer, skipped = ?keys.skipped, "some published keys were skipped");
                }
                Ok(self.swap(Arc::new(keys)))
            }
            Err(err) => {
                tracing::warn!(issuer = %self.issuer, error = %err, "cannot load the issuer's keys; cached keys stay in use");
                state.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<KeySet, String> {
        let url = match &self.source {
            KeySource::Inline(json) => return KeySet::parse(json.as_bytes()),
            KeySource::Pushed => {
                return self.current().map(|k| (*k).clone()).ok_or_else(|| "no keys were pushed".to_owned());
            }
            KeySource::Uri(url) => url.clone(),
            KeySource::Discovery => match &state.discovered_jwks_uri {
                Some(url) => url.clone(),
                None => {
                    let url = self.discover().await?;
                    state.discovered_jwks_uri = Some(url.clone());
                    url
                }
            },
        };
        let body = self.fetch.get(&url, self.timeout).await?;
        KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
    }

    async fn discover(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let body = self.fetch.get(&url, self.timeout).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON ({e})"))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(format!("{url}: the discovery document names a different issuer"));
        }
        let jwks_uri =
            doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| format!("{url}: no jwks_uri"))?;
        // Plain HTTP only where the issuer itself was allowed it (loopback, or a platform
        // that allows insecure key URLs and trusts an http issuer).
        let issuer_insecure = self.issuer.starts_with("http://");
        crate::rules::check_key_url(
            jwks_uri,
            issuer_insecure && crate::rules::check_key_url(&self.issuer, false).is_err(),
        )
        .map_err(|e| format!("{url}: jwks_uri: {e}"))?;
        Ok(jwks_uri.to_owned())
    }

    /// Called when a token names a key id the set lacks. A refetch starts in the background
    /// (one at a time, and at most once per [`KeyPolicy::unknown_kid_interval`]), and the
    /// request waits for it at most [`KeyPolicy::request_wait`]: a hung identity provider
    /// never holds a request longer. Returns the keys to retry with and what the refetch
    /// changed, if it finished in time.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>, kid: &str) -> (Option<Arc<KeySet>>, KeyChange) {
        if matches!(self.source, KeySource::Inline(_) | KeySource::Pushed) {
            return (self.current(), KeyChange::default());
        }
        if let Some(keys) = self.current()
            && keys.has_kid(kid)
        {
            return (Some(keys), KeyChange::default());
        }
        let change = self
            .fetch_in_background(
                |demand| &mut demand.last_unknown_kid_fetch,
                self.policy.unknown_kid_interval,
            )
            .await;
        (self.current(), change)
    }

    /// Called when no keys were ever loaded: a fetch starts in the background, at most once
    /// per [`KeyPolicy::retry_interval`], and the request waits for it at most
    /// [`KeyPolicy::request_wait`].
    pub async fn load_if_missing(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        if let Some(keys) = self.current() {
            return Some(keys);
        }
        self.fetch_in_background(|demand| &mut demand.last_missing_fetch, self.policy.retry_interval).await;
        self.current()
    }

    /// Starts a fetch in the background unless one runs or the last one of this kind
    /// (`last`) was within `interval`, then waits for the running fetch at most
    /// [`KeyPolicy::request_wait`].
    async fn fetch_in_background(
        self: &Arc<Self>,
        last: impl FnOnce(&mut Demand) -> &mut Option<Instant>,
        interval: Duration,
    ) -> KeyChange {
        let mut finished = self.finished.subscribe();
        let (changes_tx, mut changes) = tokio::sync::oneshot::channel();
        let running = {
            let mut demand = self.demand.lock().unwrap_or_else(|e| e.into_inner());
            if !demand.running {
                let last = last(&mut demand);
                if last.is_none_or(|at| at.elapsed() >= interval) {
                    *last = Some(Instant::now());
                    demand.running = true;
                    let keys = self.clone();
                    tokio::spawn(async move {
                        let change = keys.refresh().await.unwrap_or_default();
                        keys.demand.lock().unwrap_or_else(|e| e.into_inner()).running = false;
                        let _ = changes_tx.send(change);
                        keys.finished.send_modify(|n| *n += 1);
                    });
                }
            }
            demand.running
        };
        if running {
            let _ = tokio::time::timeout(self.policy.request_wait, finished.changed()).await;
        }
        // What the fetch changed, when this request started it and it finished in time;
        // otherwise verification still never trusts a removed key (see `Authenticator`).
        changes.try_recv().unwrap_or_default()
    }

    /// How long until the next periodic refresh should run.
    pub fn next_refresh_in(&self) -> Duration {
        if self.current().is_some() { self.policy.refresh_interval } else { self.policy.retry_interval }
    }

    /// Whether keys come from the network (and so need a refresher).
    pub fn is_remote(&self) -> bool {
        matches!(self.source, KeySource::Uri(_) | KeySource::Discovery)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn key_fetches_never_follow_a_redirect_down_to_plain_http() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let https = [url("https://idp.example/keys")];
        let loopback = [url("http://127.0.0.1:9/keys")];
        assert!(redirect_allowed(&https, &url("https://cdn.idp.example/keys")).is_ok());
        assert!(redirect_allowed(&https, &url("http://idp.example/keys")).is_err(), "https to http");
        assert!(redirect_allowed(&https, &url("http://127.0.0.1/keys")).is_err(), "https to loopback http");
        assert!(redirect_allowed(&loopback, &url("http://localhost:9/other")).is_ok());
        assert!(redirect_allowed(&loopback, &url("http://localhost.evil.example/keys")).is_err());
        assert!(redirect_allowed(&loopback, &url("http://169.254.169.254/latest")).is_err(), "off loopback");
        let many = [
            url("https://a.example/1"),
            url("https://a.example/2"),
            url("https://a.example/3"),
            url("https://a.example/4"),
        ];
        assert!(redirect_allowed(&many, &url("https://a.example/5")).is_err(), "more than 3");
    }

    /// Serves queued responses and counts requests.
    #[derive(Default)]
    pub(crate) struct FakeFetch {
        pub(crate) responses: Mutex<VecDeque<Result<Vec<u8>, String>>>,
        pub(crate) fallback: Mutex<Option<Result<Vec<u8>, String>>>,
        pub(crate) count: AtomicUsize,
        pub(crate) delay: Mutex<Duration>,
    }

    impl Fetch for FakeFetch {
        fn get<'a>(
            &'a self,
            _url: &'a str,
            _timeout: Duration,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
            Box::pin(async move {
                self.count.fetch_add(1, Ordering::SeqCst);
                let delay = *self.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let next = self.responses.lock().unwrap().pop_front();
                next.or_else(|| self.fallback.lock().unwrap().clone())
                    .unwrap_or_else(|| Err("offline".into()))
            })
        }
    }
}
