//! The security state of a running server: the current authenticator (swapped atomically
//! when the policy directory changes), Palisade's own issuer, and the background tasks that
//! keep keys and configuration fresh.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use palisade_identity::rules::{FromHeader, KeySource};
use palisade_identity::{
    Authenticator, AuthnSettings, Fetch, IssuerKeys, IssuerSettings, JwtRule, KeyPolicy, LocalIssuer, Scope,
    ScopedRule,
};

use palisade_policy::PolicySet;

use crate::platform::{ConfigError, Fingerprint, Platform, PolicyDocuments, fingerprint, load_policy_dirs};

/// How often the policy directory and the issuer's files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What the server needs to build its security state.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// The platform configuration.
    pub platform: Platform,
    /// The policy directory, if any.
    pub policy_dir: Option<PathBuf>,
    /// The Palisade home (the issuer keeps its keys under `identity/`).
    pub home: PathBuf,
}

/// The security state shared by all requests.
pub struct Security {
    config: SecurityConfig,
    model_namespaces: BTreeSet<String>,
    fetch: Arc<dyn Fetch>,
    issuer: Option<Arc<LocalIssuer>>,
    issuer_keys: Option<Arc<IssuerKeys>>,
    authn: RwLock<Arc<Authenticator>>,
    policies: RwLock<Arc<PolicyDocuments>>,
    policy_set: RwLock<Arc<PolicySet>>,
    peer_auth: RwLock<Arc<palisade_tls::PeerAuthentications>>,
    watched: Mutex<Option<Fingerprint>>,
    reload_failures: prometheus::IntCounter,
    throttle: palisade_identity::CredentialThrottle,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Builds the issuer settings from the platform configuration.
pub fn issuer_settings(platform: &Platform) -> IssuerSettings {
    let c = &platform.config.issuer;
    IssuerSettings {
        issuer: c.issuer.clone(),
        audiences: c.audiences.clone(),
        token_ttl: c.token_lifetime,
        // Platform::parse admits only these three names.
        algorithm: match c.algorithm.as_str() {
            "EdDSA" => palisade_identity::Algorithm::EdDSA,
            "RS256" => palisade_identity::Algorithm::RS256,
            _ => palisade_identity::Algorithm::ES256,
        },
        rotation_overlap: c.key_rotation_overlap,
    }
}

/// Opens Palisade's own issuer in a home directory.
pub fn open_issuer(home: &Path, platform: &Platform) -> Result<LocalIssuer, ConfigError> {
    LocalIssuer::open(&home.join("identity"), issuer_settings(platform))
        .map_err(|e| ConfigError(e.to_string()))
}

impl Security {
    /// Loads everything once; any error is a configuration error (the server does not start).
    pub fn new(
        config: SecurityConfig,
        model_namespaces: BTreeSet<String>,
        fetch: Arc<dyn Fetch>,
    ) -> Result<Security, ConfigError> {
        if let Some(dir) = &config.policy_dir {
            let managed = managed_dir(&config);
            if dir.starts_with(&managed) || managed.starts_with(dir) {
                return Err(ConfigError(format!(
                    "--policy-dir {} overlaps {}, where Palisade keeps owner-managed policies; use another directory",
                    dir.display(),
                    managed.display()
                )));
            }
        }
        let (issuer, issuer_keys) = if config.platform.config.issuer.enabled {
            let issuer = Arc::new(open_issuer(&config.home, &config.platform)?);
            let settings = issuer.settings();
            let keys = Arc::new(IssuerKeys::new(
                &settings.issuer,
                KeySource::Pushed,
                Duration::from_secs(1),
                KeyPolicy::default(),
                fetch.clone(),
            ));
            keys.set(issuer.key_set().map_err(|e| ConfigError(e.to_string()))?);
            (Some(issuer), Some(keys))
        } else {
            (None, None)
        };
        let policies = load_all(&config)?;
        let policy_set = build_policy_set(&config, issuer.as_deref(), &policies)?;
        let peer_auth = build_peer_auth(&config.platform, &policies);
        let watched = Some(fingerprint_all(&config)?);
        let reload_failures = prometheus::IntCounter::new(
            "palisade_config_reload_failures_total",
            "Policy directory changes refused because a document was invalid.",
        )
        .map_err(|e| ConfigError(e.to_string()))?;
        let security = Security {
            config,
            model_namespaces,
            fetch,
            issuer,
            issuer_keys,
            authn: RwLock::new(Arc::new(Authenticator::new(
                Vec::new(),
                AuthnSettings::default(),
                Arc::new(NoFetch),
                &[],
            ))),
            policies: RwLock::new(Arc::new(policies.clone())),
            policy_set: RwLock::new(Arc::new(policy_set)),
            peer_auth: RwLock::new(Arc::new(peer_auth)),
            watched: Mutex::new(watched),
            reload_failures,
            throttle: palisade_identity::CredentialThrottle::default(),
        };
        let authn = security.build_authenticator(&policies, &[]);
        if let Ok(mut slot) = security.authn.write() {
            *slot = Arc::new(authn);
        }
        Ok(security)
    }

    /// The authenticator in effect.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        match self.authn.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The policy documents in effect.
    pub fn policies(&self) -> Arc<PolicyDocuments> {
        match self.policies.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The authorization policies in effect.
    pub fn policy_set(&self) -> Arc<PolicySet> {
        match self.policy_set.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The PeerAuthentication resources in effect (mutual TLS modes).
    pub fn peer_auth(&self) -> Arc<palisade_tls::PeerAuthentications> {
        match self.peer_auth.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Where owner-managed policies (the management API's) are stored.
    pub fn managed_dir(&self) -> PathBuf {
        managed_dir(&self.config)
    }

    /// Palisade's own issuer, when enabled.
    pub fn issuer(&self) -> Option<&Arc<LocalIssuer>> {
        self.issuer.as_ref()
    }

    /// The platform configuration.
    pub fn platform(&self) -> &Platform {
        &self.config.platform
    }

    /// The throttle of failed client-credential attempts at `/oauth/token`.
    pub fn credential_throttle(&self) -> &palisade_identity::CredentialThrottle {
        &self.throttle
    }

    /// The counter of refused reloads (registered in the server's metrics).
    pub fn reload_failures(&self) -> &prometheus::IntCounter {
        &self.reload_failures
    }

    fn settings(&self) -> AuthnSettings {
        let a = &self.config.platform.config.authentication;
        AuthnSettings {
            require_token: a.require_token,
            max_lifetime: a.max_token_lifetime,
            clock_skew: a.clock_skew,
            cache_capacity: a.token_cache_capacity,
            keys: KeyPolicy { refresh_interval: a.jwks_refresh_interval, ..KeyPolicy::default() },
        }
    }

    fn build_authenticator(&self, policies: &PolicyDocuments, existing: &[Arc<IssuerKeys>]) -> Authenticator {
        let root = &self.config.platform.config.authorization.root_namespace;
        let mut rules: Vec<ScopedRule> = self
            .config
            .platform
            .jwt_rules
            .iter()
            .map(|r| ScopedRule { rule: r.clone(), scope: Scope::Global })
            .collect();
        let gateways = &self.config.platform.config.authentication.gateway_namespaces;
        for resource in &policies.request_authentications {
            // The root namespace and the gateway namespaces the platform names apply to
            // every model; any other namespace only to its own models, whatever is served.
            let global = &resource.namespace == root || gateways.contains(&resource.namespace);
            if !global && !self.model_namespaces.contains(&resource.namespace) {
                tracing::warn!(
                    resource = %format!("{}/{}", resource.namespace, resource.name),
                    "no served model is in this RequestAuthentication's namespace, so its rules apply to none; if it stands for an ingress gateway, add the namespace to authentication.gatewayNamespaces"
                );
            }
            let globals = if global { vec![resource.namespace.clone()] } else { Vec::new() };
            rules.extend(ScopedRule::from_resource(resource, &globals));
        }
        let mut existing = existing.to_vec();
        if let (Some(issuer), Some(keys)) = (&self.issuer, &self.issuer_keys) {
            let settings = issuer.settings();
            rules.push(ScopedRule {
                rule: JwtRule {
                    issuer: settings.issuer.clone(),
                    audiences: settings.audiences.clone(),
                    keys: KeySource::Pushed,
                    from_headers: vec![FromHeader { name: "authorization".into(), prefix: "Bearer ".into() }],
                    from_params: Vec::new(),
                    from_cookies: Vec::new(),
                    forward_original_token: false,
                    output_payload_to_header: None,
                    output_claim_to_headers: Vec::new(),
                    timeout: Duration::from_secs(1),
                },
                scope: Scope::Global,
            });
            existing.push(keys.clone());
        }
        let authn = Authenticator::new(rules, self.settings(), self.fetch.clone(), &existing);
        match &self.issuer {
            // Tokens of a revoked service account stop at once, not at expiry.
            Some(issuer) => authn.with_account_state(issuer.clone()),
            None => authn,
        }
    }

    /// Loads every remote issuer's keys once, concurrently, each within its timeout. Failures
    /// are logged; those issuers fail closed until a later refresh succeeds.
    pub async fn load_keys(&self) {
        let authn = self.authenticator();
        let holders: Vec<_> = authn.key_holders().into_iter().filter(|h| h.is_remote()).collect();
        let tasks: Vec<_> = holders
            .into_iter()
            .map(|holder| tokio::spawn(async move { holder.refresh().await.map(|_| ()) }))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Pushes the issuer's keys to its verifier after the CLI rotated them.
    pub fn sync_issuer_keys(&self) {
        if let (Some(issuer), Some(keys)) = (&self.issuer, &self.issuer_keys) {
            match issuer.reload_if_changed() {
                Ok(true) | Ok(false) => {
                    if let Ok(set) = issuer.key_set() {
                        let change = keys.set(set);
                        if !change.removed.is_empty() {
                            self.authenticator().forget_keys(keys.issuer(), &change.removed);
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot reload the issuer's keys"),
            }
        }
    }

    /// Re-reads the policy directory if it changed. A valid change replaces the rules at once;
    /// an invalid one keeps the previous rules, logs the file, line and field, and counts it.
    pub fn reload_if_changed(&self) -> bool {
        let current = match fingerprint_all(&self.config) {
            Ok(f) => f,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the policy directory; keeping the current rules");
                return false;
            }
        };
        let Ok(mut watched) = self.watched.lock() else { return false };
        if watched.as_ref() == Some(&current) {
            return false;
        }
        *watched = Some(current);
        drop(watched);
        match self.reload() {
            Ok(()) => true,
            Err(err) => {
                self.reload_failures.inc();
                tracing::error!(error = %err, "policy change refused; keeping the previous rules");
                false
            }
        }
    }

    /// Re-reads every policy source now and swaps in the result, or says why not (the
    /// previous rules stay in effect).
    pub fn reload(&self) -> Result<(), ConfigError> {
        let policies = load_all(&self.config)?;
        let set = build_policy_set(&self.config, self.issuer.as_deref(), &policies)?;
        let existing = self.authenticator().key_holders();
        let authn = Arc::new(self.build_authenticator(&policies, &existing));
        if let Ok(mut slot) = self.authn.write() {
            *slot = authn;
        }
        if let Ok(mut slot) = self.policy_set.write() {
            *slot = Arc::new(set);
        }
        if let Ok(mut slot) = self.peer_auth.write() {
            *slot = Arc::new(build_peer_auth(&self.config.platform, &policies));
        }
        if let Ok(mut slot) = self.policies.write() {
            *slot = Arc::new(policies);
        }
        if let (Ok(current), Ok(mut watched)) = (fingerprint_all(&self.config), self.watched.lock()) {
            *watched = Some(current);
        }
        tracing::info!("policies reloaded");
        Ok(())
    }

    /// Starts the background work: periodic key refresh for remote issuers, and watching the
    /// policy directory and the issuer's files.
    pub fn spawn_tasks(self: &Arc<Self>) {
        let security = Arc::clone(self);
        tokio::spawn(async move {
            let mut due: HashMap<usize, Instant> = HashMap::new();
            let mut ticker = tokio::time::interval(WATCH_INTERVAL);
            loop {
                ticker.tick().await;
                let watcher = security.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    watcher.reload_if_changed();
                    watcher.sync_issuer_keys();
                })
                .await;
                let authn = security.authenticator();
                for holder in authn.key_holders().into_iter().filter(|h| h.is_remote()) {
                    let id = Arc::as_ptr(&holder) as usize;
                    let next = *due.entry(id).or_insert_with(|| Instant::now() + holder.next_refresh_in());
                    if Instant::now() >= next {
                        due.insert(id, Instant::now() + holder.next_refresh_in());
                        let authn = authn.clone();
                        tokio::spawn(async move {
                            if let Ok(change) = holder.refresh().await {
                                authn.forget_keys(holder.issuer(), &change.removed);
                            }
                        });
                    }
                }
            }
        });
    }
}

fn managed_dir(config: &SecurityConfig) -> PathBuf {
    config.home.join("owner-policies")
}

fn dirs(config: &SecurityConfig) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = config.policy_dir.iter().cloned().collect();
    dirs.push(managed_dir(config));
    dirs
}

fn load_all(config: &SecurityConfig) -> Result<PolicyDocuments, ConfigError> {
    let dirs = dirs(config);
    let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let mut documents =
        load_policy_dirs(&refs, config.platform.config.authentication.allow_insecure_jwks_uri)?;
    let managed = managed_dir(config);
    for policy in &mut documents.authorization_policies {
        if policy.source_file.starts_with(&managed) {
            policy.creator = creator_of(&policy.source_file)?;
        }
    }
    Ok(documents)
}

/// The creator of an owner-managed policy, from the record stored beside it. A policy
/// stored before creators were recorded has none and applies as a platform policy would,
/// until its owner applies it again.
fn creator_of(policy_file: &Path) -> Result<Option<palisade_policy::Creator>, ConfigError> {
    let file = crate::control::manage::creator_file(policy_file);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                policy = %policy_file.display(),
                "owner-managed policy without a creator record: it applies to every model it selects; apply it again to bind it to its owner's models"
            );
            return Ok(None);
        }
        Err(err) => return Err(ConfigError(format!("{}: {err}", file.display()))),
    };
    let record: crate::control::manage::CreatorRecord = serde_json::from_slice(&bytes)
        .map_err(|err| ConfigError(format!("{}: not a creator record: {err}", file.display())))?;
    Ok((!record.admin)
        .then(|| palisade_policy::Creator { principal: record.principal, claims: Arc::new(record.claims) }))
}

fn fingerprint_all(config: &SecurityConfig) -> Result<Fingerprint, ConfigError> {
    let mut all = Vec::new();
    for dir in dirs(config) {
        if dir.exists() {
            all.extend(fingerprint(&dir)?);
        }
    }
    Ok(all)
}

/// The authorization settings of the platform.
pub fn policy_settings(platform: &Platform, issuer: Option<&LocalIssuer>) -> palisade_policy::Settings {
    let a = &platform.config.authorization;
    palisade_policy::Settings {
        root_namespace: a.root_namespace.clone(),
        groups_claim: a.groups_claim.clone(),
        palisade_issuer: issuer.map(|i| i.settings().issuer.clone()),
        ..palisade_policy::Settings::default()
    }
}

fn build_peer_auth(platform: &Platform, policies: &PolicyDocuments) -> palisade_tls::PeerAuthentications {
    palisade_tls::PeerAuthentications::new(
        policies.peer_authentications.clone(),
        palisade_tls::PeerAuthSettings {
            root_namespace: platform.config.authorization.root_namespace.clone(),
            ..palisade_tls::PeerAuthSettings::default()
        },
    )
}

fn build_policy_set(
    config: &SecurityConfig,
    issuer: Option<&LocalIssuer>,
    policies: &PolicyDocuments,
) -> Result<PolicySet, ConfigError> {
    PolicySet::new(policies.authorization_policies.clone(), policy_settings(&config.platform, issuer))
        .map_err(|e| ConfigError(e.to_string()))
}

/// A fetcher for authenticators that never fetch (the placeholder before the first build).
struct NoFetch;

impl Fetch for NoFetch {
    fn get<'a>(
        &'a self,
        url: &'a str,
        _timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move { Err(format!("no fetching configured for {url}")) })
    }
}
