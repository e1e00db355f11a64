//! Platform configuration (`palisade serve --config FILE`) and the policy directory
//! (`--policy-dir DIR`), where Istio security resources are accepted as written.
//!
//! Every field is documented in `docs/config.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use palisade_core::yaml::{self, LocatedError};
use palisade_identity::JwtRule;
use palisade_identity::rules::{
    RawJwtRule, RequestAuthentication, parse_duration, parse_request_authentication,
};
use palisade_policy::AuthorizationPolicy;
use serde::{Deserialize, Deserializer};

/// The platform configuration, set once by the platform team for every model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformConfig {
    /// Who may call: token requirements and trusted issuers.
    #[serde(default)]
    pub authentication: AuthenticationConfig,
    /// Palisade's own token issuer for service accounts.
    #[serde(default)]
    pub issuer: IssuerConfig,
    /// Authorization settings.
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    /// The API documentation pages.
    #[serde(default)]
    pub docs: DocsConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Adaptive batching for models whose manifest has no `batching:` section (same fields
    /// as the manifest's); off when absent. Models that cannot be batched (a fixed first
    /// dimension) are served unbatched.
    #[serde(default)]
    pub batching: Option<palisade_bundle::manifest::BatchingSection>,
    /// Cross-origin requests from browsers (CORS): which web origins may call the REST API.
    #[serde(default)]
    pub cors: CorsConfig,
    /// Where upstream models may be reached.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Per-caller limits on model requests.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The web console at `/console` (docs/console.md).
    #[serde(default)]
    pub console: palisade_console::ConsoleConfig,
}

/// `limits:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Each caller's token bucket for each model (`requestsPerSecond`, `burst`, and an
    /// `explain` budget, a tenth of the request budget when absent); no rate limit when
    /// absent. A model's `limits.rate` may only tighten it. Held per replica.
    #[serde(default)]
    pub rate: Option<palisade_bundle::rate::RateSection>,
    /// The most (model, budget, caller) buckets the rate limiter tracks at once (16 to
    /// 10,000,000; default 100,000, about 5 MB). Past it, idle buckets are forgotten, then
    /// those nearest to full.
    #[serde(default = "max_tracked_callers")]
    pub max_tracked_callers: usize,
}

fn max_tracked_callers() -> usize {
    crate::rate::DEFAULT_MAX_KEYS
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { rate: None, max_tracked_callers: max_tracked_callers() }
    }
}

/// `upstream:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamConfig {
    /// Hosts, exactly as written in bundles' upstream URLs, that may be loopback,
    /// link-local or cloud metadata addresses (a model server beside Palisade on
    /// `127.0.0.1`, say). Every other upstream URL that is, or resolves to, such an address
    /// is refused at load and at connect time. The server's own ports are refused always.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// `cors:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`, exactly as browsers send them) whose pages may
    /// call the REST endpoints; `*` allows every origin. Empty (the default): no
    /// cross-origin calls, and preflights are not answered.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send (besides the CORS-safelisted ones).
    #[serde(default = "cors_headers")]
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(default = "ten_minutes", deserialize_with = "duration")]
    pub max_age: Duration,
}

fn cors_headers() -> Vec<String> {
    ["authorization", "content-type", "inference-header-content-length", "traceparent"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig { allowed_origins: Vec::new(), allowed_headers: cors_headers(), max_age: ten_minutes() }
    }
}

impl CorsConfig {
    /// Whether pages from `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed == "*" || allowed == origin)
    }
}

/// `audit:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditSettings {
    /// `strict` (default): a response leaves only after its record is durable, and when the
    /// log cannot be written the server answers 503 instead of serving unaudited.
    /// `relaxed`: records are buffered; when the buffer is full or the disk fails, records
    /// are dropped and counted.
    #[serde(default)]
    pub mode: AuditMode,
    /// The least a model's records keep, whatever its manifest says.
    #[serde(default)]
    pub minimum_level: palisade_bundle::manifest::AuditLevel,
    /// Payload fields redacted for every model (added to each model's own list).
    #[serde(default)]
    pub redact: Vec<String>,
    /// This replica's name in the chain (default: the host name).
    #[serde(default)]
    pub replica_id: Option<String>,
    /// Segment files rotate past this size.
    #[serde(default = "segment_bytes")]
    pub segment_max_bytes: u64,
    /// Segment files rotate after this age.
    #[serde(default = "hour", deserialize_with = "duration")]
    pub segment_max_age: Duration,
    /// A signed checkpoint every this many records...
    #[serde(default = "thousand")]
    pub checkpoint_every: u64,
    /// ...or after this time.
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// How long a group commit may wait for records of requests already in progress
    /// (never when none are); zero commits at once.
    #[serde(default = "commit_delay", deserialize_with = "duration")]
    pub commit_delay: Duration,
    /// The audit signing key (Ed25519 PKCS#8), outside the log directory (default:
    /// `<home>/keys/audit-signing.pk8`).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Copies of the trail for a log collector.
    #[serde(default)]
    pub ship: ShipSettings,
    /// Compressing rotated segments into sealed ones.
    #[serde(default)]
    pub seal: SealSettings,
    /// How long and how much of the trail to keep locally (absent: keep everything).
    #[serde(default)]
    pub retention: Option<RetentionSettings>,
    /// Copying sealed segments and checkpoints to an S3-compatible object store (absent: no
    /// archive, and retention deletes nothing).
    #[serde(default)]
    pub archive: Option<ArchiveSettings>,
}

/// `audit.archive:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArchiveSettings {
    /// The bucket.
    pub bucket: String,
    /// The key prefix; each replica's trail goes under `<prefix>/<replica id>/<log id>/`.
    #[serde(default)]
    pub prefix: String,
    /// The S3 endpoint URL (absent: AWS's endpoint for `region`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    #[serde(default = "us_east_1")]
    pub region: String,
    /// An AWS shared-credentials file (`[default]` with `aws_access_key_id`,
    /// `aws_secret_access_key`), read at every pass (absent: the environment).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Allow an `http://` endpoint (a trusted network only).
    #[serde(default)]
    pub allow_http: bool,
    /// How often the archiver looks for new checkpoints and sealed segments (default 10s).
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub every: Duration,
    /// Longest one request to the store may take, retries included (default 60s).
    #[serde(default = "minute", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Readiness fails while more sealed segments than this wait to be archived (absent:
    /// never).
    #[serde(default)]
    pub max_backlog: Option<u64>,
}

fn us_east_1() -> String {
    "us-east-1".to_owned()
}

impl ArchiveSettings {
    /// The field that is wrong, and how to fix it.
    fn validate(&self, seal: &SealSettings) -> Result<(), (&'static str, String)> {
        if self.bucket.trim().is_empty() {
            return Err(("audit.archive.bucket", "give the bucket's name".to_owned()));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(("audit.archive.endpoint", format!("{endpoint:?} is not an http(s):// URL")));
            }
            if endpoint.starts_with("http://") && !self.allow_http {
                return Err((
                    "audit.archive.endpoint",
                    format!(
                        "{endpoint} is plain HTTP: use https://, or set audit.archive.allowHttp: true (a trusted network only)"
                    ),
                ));
            }
        }
        if self.every.is_zero() {
            return Err(("audit.archive.every", "must be longer than zero, e.g. 10s".to_owned()));
        }
        if self.request_timeout.is_zero() {
            return Err(("audit.archive.requestTimeout", "must be longer than zero, e.g. 60s".to_owned()));
        }
        if !seal.enabled {
            return Err((
                "audit.archive",
                "only sealed segments are archived, and audit.seal.enabled is false: enable sealing or remove audit.archive".to_owned(),
            ));
        }
        Ok(())
    }

    /// As the archive crate takes it.
    pub fn target(&self) -> palisade_archive::ArchiveTarget {
        palisade_archive::ArchiveTarget {
            bucket: self.bucket.clone(),
            prefix: self.prefix.trim_matches('/').to_owned(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            credentials: match &self.credentials_file {
                Some(path) => palisade_archive::Credentials::File(path.clone()),
                None => palisade_archive::Credentials::Environment,
            },
            allow_http: self.allow_http,
            request_timeout: self.request_timeout,
        }
    }
}

/// `audit.retention:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionSettings {
    /// A sealed segment whose newest record is older than this is due for removal.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
    /// While the trail takes more bytes than this, its oldest sealed segments are due.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl RetentionSettings {
    /// The field that is wrong, and how to fix it.
    fn validate(&self, seal: &SealSettings) -> Result<(), (&'static str, String)> {
        if self.max_age.is_none() && self.max_bytes.is_none() {
            return Err((
                "audit.retention",
                "give maxAge, maxBytes or both (or remove audit.retention)".to_owned(),
            ));
        }
        if self.max_age.is_some_and(|d| d.is_zero()) {
            return Err((
                "audit.retention.maxAge",
                "must be longer than zero, e.g. 2160h (90 days)".to_owned(),
            ));
        }
        if self.max_bytes == Some(0) {
            return Err(("audit.retention.maxBytes", "must be more than zero bytes".to_owned()));
        }
        if !seal.enabled {
            return Err((
                "audit.retention",
                "only sealed segments are ever removed, and audit.seal.enabled is false: enable sealing or remove audit.retention"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// As the audit crate takes it.
    pub fn policy(&self) -> palisade_audit::RetentionPolicy {
        palisade_audit::RetentionPolicy { max_age: self.max_age, max_bytes: self.max_bytes }
    }
}

/// `audit.seal:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SealSettings {
    /// Seal rotated segments in the background (default true): zstd frames, a frame
    /// index and a signed seal checkpoint, the chain unchanged. The active segment always
    /// stays plain JSON lines.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Records per zstd frame, 1 to 65536 (default 256): what a query by request id or
    /// time range decodes.
    #[serde(default = "frame_records")]
    pub frame_records: usize,
    /// zstd level, 1 to 19 (default 3).
    #[serde(default = "seal_level")]
    pub level: i32,
    /// How often the sealer looks for rotated segments (default 30s).
    #[serde(default = "thirty_seconds", deserialize_with = "duration")]
    pub every: Duration,
    /// Readiness fails while more rotated segments than this wait to be sealed (absent:
    /// never), so that an operator learns before the disk fills.
    #[serde(default)]
    pub max_backlog: Option<u64>,
}

fn frame_records() -> usize {
    palisade_audit::SealOptions::default().frame_records
}
fn seal_level() -> i32 {
    palisade_audit::SealOptions::default().level
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            enabled: true,
            frame_records: frame_records(),
            level: seal_level(),
            every: thirty_seconds(),
            max_backlog: None,
        }
    }
}

impl SealSettings {
    /// The field that is out of range, and how to fix it.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=65_536).contains(&self.frame_records) {
            return Err((
                "audit.seal.frameRecords",
                format!("{} is out of range: use 1 to 65536 (256 is a good default)", self.frame_records),
            ));
        }
        if !(1..=19).contains(&self.level) {
            return Err((
                "audit.seal.level",
                format!("{} is out of range: use a zstd level from 1 to 19", self.level),
            ));
        }
        if self.every.is_zero() {
            return Err(("audit.seal.every", "must be longer than zero, e.g. 30s".to_owned()));
        }
        Ok(())
    }
}

/// `audit.ship:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShipSettings {
    /// Also write every record, once it is durable in the local trail, as one JSON line on
    /// stdout (the stored line, byte for byte), for the cluster's log collector. The
    /// server's own messages then go to stderr only. Never instead of the local trail: a
    /// stdout that blocks or fails costs shipped lines (counted), never records.
    #[serde(default)]
    pub stdout: bool,
    /// Ship the signed checkpoints too (lines of schema `palisade.audit.checkpoint/v2`).
    #[serde(default = "yes")]
    pub checkpoints: bool,
    /// Bytes of lines that may wait for stdout; past it, lines are dropped from the copy.
    #[serde(default = "ship_queue_bytes")]
    pub queue_bytes: u64,
}

fn ship_queue_bytes() -> u64 {
    palisade_audit::ShipOptions::default().queue_bytes
}

impl Default for ShipSettings {
    fn default() -> Self {
        ShipSettings { stdout: false, checkpoints: true, queue_bytes: ship_queue_bytes() }
    }
}

/// Durability of the audit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Durable before the response (default).
    #[default]
    Strict,
    /// Buffered; drops counted.
    Relaxed,
}

fn segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn thousand() -> u64 {
    1000
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn commit_delay() -> Duration {
    palisade_audit::AuditConfig::default().commit_delay
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            mode: AuditMode::Strict,
            minimum_level: palisade_bundle::manifest::AuditLevel::Metadata,
            redact: Vec::new(),
            replica_id: None,
            segment_max_bytes: segment_bytes(),
            segment_max_age: hour(),
            checkpoint_every: thousand(),
            checkpoint_interval: ten_seconds(),
            commit_delay: commit_delay(),
            signing_key: None,
            ship: ShipSettings::default(),
            seal: SealSettings::default(),
            retention: None,
            archive: None,
        }
    }
}

/// `authentication:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticationConfig {
    /// Refuse requests without a token (401). `false` is Istio's default behaviour, where
    /// such requests pass unauthenticated and only authorization can stop them.
    #[serde(default = "yes")]
    pub require_token: bool,
    /// Longest token lifetime accepted.
    #[serde(default = "day", deserialize_with = "duration")]
    pub max_token_lifetime: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "minute", deserialize_with = "duration")]
    pub clock_skew: Duration,
    /// How often issuers' keys are refetched.
    #[serde(default = "twenty_minutes", deserialize_with = "duration")]
    pub jwks_refresh_interval: Duration,
    /// Allow `jwksUri` over plain HTTP to non-loopback hosts (a trusted network only).
    #[serde(default)]
    pub allow_insecure_jwks_uri: bool,
    /// Verified tokens remembered to skip repeated signature checks.
    #[serde(default = "cache_capacity")]
    pub token_cache_capacity: usize,
    /// Trusted issuers for every model, with Istio's `jwtRules` fields.
    #[serde(default)]
    pub jwt_rules: Vec<RawJwtRule>,
    /// Namespaces whose `RequestAuthentication` resources apply to every model, as at an
    /// Istio ingress gateway (such as `api`). Elsewhere a `RequestAuthentication` applies
    /// to the models of its own namespace only; in the root namespace, to every model.
    #[serde(default)]
    pub gateway_namespaces: Vec<String>,
}

/// `issuer:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerConfig {
    /// Serve `/oauth/token` and trust the tokens it issues.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The `iss` of issued tokens: set it to the server's public URL.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The `aud` of issued tokens.
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    /// Lifetime of issued tokens.
    #[serde(default = "fifteen_minutes", deserialize_with = "duration")]
    pub token_lifetime: Duration,
    /// Algorithm of signing keys: ES256, RS256 (RSA-2048) or EdDSA.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// How long a rotated-out key stays published.
    #[serde(default = "day", deserialize_with = "duration")]
    pub key_rotation_overlap: Duration,
}

/// `authorization:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationConfig {
    /// Policies in this namespace apply to every model.
    #[serde(default = "root_namespace")]
    pub root_namespace: String,
    /// The claim that lists a caller's groups (for `group:NAME` owners).
    #[serde(default = "groups_claim")]
    pub groups_claim: String,
    /// Platform administrators: they may change any model's policies and root-namespace
    /// policies. Entries are written like model owners (email, `group:NAME`,
    /// `serviceaccount:NS/NAME`).
    #[serde(default)]
    pub admins: Vec<palisade_core::Owner>,
}

/// `docs:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DocsConfig {
    /// Serve `/docs` and `/openapi.json` without a token (they describe model interfaces,
    /// never data). `false` requires a token like the model APIs.
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}
fn day() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn minute() -> Duration {
    Duration::from_secs(60)
}
fn twenty_minutes() -> Duration {
    Duration::from_secs(20 * 60)
}
fn fifteen_minutes() -> Duration {
    Duration::from_secs(15 * 60)
}
fn cache_capacity() -> usize {
    10_000
}
fn default_issuer() -> String {
    "https://palisade.local".to_owned()
}
fn default_audiences() -> Vec<String> {
    vec!["palisade".to_owned()]
}
fn default_algorithm() -> String {
    "ES256".to_owned()
}
fn root_namespace() -> String {
    "palisade-system".to_owned()
}
fn groups_claim() -> String {
    "groups".to_owned()
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        AuthenticationConfig {
            require_token: true,
            max_token_lifetime: day(),
            clock_skew: minute(),
            jwks_refresh_interval: twenty_minutes(),
            allow_insecure_jwks_uri: false,
            token_cache_capacity: cache_capacity(),
            jwt_rules: Vec::new(),
            gateway_namespaces: Vec::new(),
        }
    }
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            enabled: true,
            issuer: default_issuer(),
            audiences: default_audiences(),
            token_lifetime: fifteen_minutes(),
            algorithm: default_algorithm(),
            key_rotation_overlap: day(),
        }
    }
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            root_namespace: root_namespace(),
            groups_claim: groups_claim(),
            admins: Vec::new(),
        }
    }
}

impl Default for DocsConfig {
    fn default() -> Self {
        DocsConfig { public: true }
    }
}

/// A configuration problem, naming the file (and line and field where known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<LocatedError> for ConfigError {
    fn from(err: LocatedError) -> Self {
        ConfigError(err.to_string())
    }
}

/// The platform configuration with its rules validated.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The settings as written (rules removed).
    pub config: PlatformConfig,
    /// The validated `authentication.jwtRules`.
    pub jwt_rules: Vec<JwtRule>,
    /// Where it came from, if a file.
    pub file: Option<PathBuf>,
}

impl Platform {
    /// The built-in defaults (no file).
    pub fn defaults() -> Platform {
        Platform { config: PlatformConfig::default(), jwt_rules: Vec::new(), file: None }
    }

    /// Reads and validates a configuration file (at most [`MAX_CONFIG_FILE_BYTES`]).
    pub fn load(file: &Path) -> Result<Platform, ConfigError> {
        let text = read_capped(file, "the platform config")?;
        Platform::parse(file, &text)
    }

    /// Parses configuration text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Platform, ConfigError> {
        let mut config: PlatformConfig =
            if text.trim().is_empty() { PlatformConfig::default() } else { yaml::from_str(file, text)? };
        let allow_insecure = config.authentication.allow_insecure_jwks_uri;
        let mut jwt_rules = Vec::new();
        for (i, raw) in std::mem::take(&mut config.authentication.jwt_rules).into_iter().enumerate() {
            let rule =
                raw.validate(&format!("authentication.jwtRules[{i}]"), allow_insecure).map_err(|e| {
                    ConfigError(format!("{}: field `{}`: {}", file.display(), e.field, e.message))
                })?;
            jwt_rules.push(rule);
        }
        if !matches!(config.issuer.algorithm.as_str(), "ES256" | "RS256" | "EdDSA") {
            return Err(ConfigError(format!(
                "{}: field `issuer.algorithm`: `{}` is not supported; use ES256, RS256 or EdDSA",
                file.display(),
                config.issuer.algorithm
            )));
        }
        if let Some(batching) = &config.batching
            && let Err((field, message)) = batching.validate()
        {
            return Err(ConfigError(format!("{}: field `{field}`: {message}", file.display())));
        }
        if let Err((field, message)) = config.audit.seal.validate() {
            return Err(ConfigError(format!("{}: field `{field}`: {message}", file.display())));
        }
        if let Some(retention) = &config.audit.retention
            && let Err((field, message)) = retention.validate(&config.audit.seal)
        {
            return Err(ConfigError(format!("{}: field `{field}`: {message}", file.display())));
        }
        if let Some(archive) = &config.audit.archive
            && let Err((field, message)) = archive.validate(&config.audit.seal)
        {
            return Err(ConfigError(format!("{}: field `{field}`: {message}", file.display())));
        }
        if let Err((field, message)) = config.console.validate() {
            return Err(ConfigError(format!("{}: field `{field}`: {message}", file.display())));
        }
        if !(16..=10_000_000).contains(&config.limits.max_tracked_callers) {
            return Err(ConfigError(format!(
                "{}: field `limits.maxTrackedCallers`: {} is out of range: use 16 to 10000000",
                file.display(),
                config.limits.max_tracked_callers
            )));
        }
        Ok(Platform { config, jwt_rules, file: Some(file.to_owned()) })
    }
}

/// The largest platform config or policy-directory file read; past it the file is refused
/// (a reload keeps the policies in effect).
pub const MAX_CONFIG_FILE_BYTES: u64 = palisade_core::yaml::MAX_DOCUMENT_BYTES as u64;

/// The most YAML files read from the policy directories together.
pub const MAX_POLICY_FILES: usize = 10_000;

/// Reads a UTF-8 file of at most [`MAX_CONFIG_FILE_BYTES`], never more into memory.
fn read_capped(file: &Path, what: &str) -> Result<String, ConfigError> {
    palisade_core::yaml::read_file(file, what).map_err(|e| ConfigError(e.to_string()))
}

/// Everything loaded from the policy directory.
#[derive(Debug, Clone, Default)]
pub struct PolicyDocuments {
    /// `RequestAuthentication` resources.
    pub request_authentications: Vec<RequestAuthentication>,
    /// `AuthorizationPolicy` resources.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// `PeerAuthentication` resources.
    pub peer_authentications: Vec<palisade_tls::PeerAuthentication>,
}

/// A cheap summary of the directory's files, to notice changes.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The YAML files of a policy directory (recursively), sorted, with sizes and times.
pub fn fingerprint(dir: &Path) -> Result<Fingerprint, ConfigError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let entries = std::fs::read_dir(&path)
            .map_err(|e| ConfigError(format!("{}: cannot read the policy directory: {e}", path.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            let Ok(kind) = entry.file_type() else { continue };
            if hidden {
                continue;
            }
            // A symlinked file is judged by its target, which is what is read: a Kubernetes
            // ConfigMap volume updates by swapping a hidden `..data` link, so only the
            // targets' size and time change. Symlinked directories are not descended.
            let meta = if kind.is_symlink() { std::fs::metadata(&path) } else { entry.metadata() };
            let Ok(meta) = meta else { continue };
            if kind.is_symlink() && meta.is_dir() {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                if files.len() >= MAX_POLICY_FILES {
                    return Err(ConfigError(format!(
                        "{}: more than {MAX_POLICY_FILES} policy files; merge them",
                        dir.display()
                    )));
                }
                files.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every resource in the policy directories. Any invalid document fails the whole
/// load, naming the file, line and field, so a half-applied directory never takes effect.
/// Directories that do not exist are empty.
pub fn load_policy_dirs(dirs: &[&Path], allow_insecure_jwks: bool) -> Result<PolicyDocuments, ConfigError> {
    let mut docs = PolicyDocuments::default();
    for dir in dirs {
        if dir.exists() {
            load_policy_dir_into(dir, allow_insecure_jwks, &mut docs)?;
        }
    }
    Ok(docs)
}

/// Reads one policy directory (see [`load_policy_dirs`]).
pub fn load_policy_dir(dir: &Path, allow_insecure_jwks: bool) -> Result<PolicyDocuments, ConfigError> {
    let mut docs = PolicyDocuments::default();
    load_policy_dir_into(dir, allow_insecure_jwks, &mut docs)?;
    Ok(docs)
}

fn load_policy_dir_into(
    dir: &Path,
    allow_insecure_jwks: bool,
    docs: &mut PolicyDocuments,
) -> Result<(), ConfigError> {
    for (file, _, _) in fingerprint(dir)? {
        load_policy_file_into(&file, allow_insecure_jwks, docs)?;
    }
    Ok(())
}

/// Reads one policy file as `--policy-dir` reads each of its files (what
/// `palisade validate` checks).
pub fn load_policy_file(file: &Path, allow_insecure_jwks: bool) -> Result<PolicyDocuments, ConfigError> {
    let mut docs = PolicyDocuments::default();
    load_policy_file_into(file, allow_insecure_jwks, &mut docs)?;
    Ok(docs)
}

fn load_policy_file_into(
    file: &Path,
    allow_insecure_jwks: bool,
    docs: &mut PolicyDocuments,
) -> Result<(), ConfigError> {
    let text = read_capped(file, "the policy file")?;
    for document in yaml::documents(file, &text)? {
        // Syntax and the limits (size, nesting, aliases) are reported where they fail.
        yaml::check(file, document, yaml::Limits::default())?;
        let head: KindHeader = yaml::from_str(file, document).map_err(|_| {
            ConfigError(format!(
                "{}:{}: not a Kubernetes resource (apiVersion and kind are required)",
                file.display(),
                document.first_line
            ))
        })?;
        let at =
            |message: String| ConfigError(format!("{}:{}: {message}", file.display(), document.first_line));
        if !matches!(head.api_version.as_deref(), Some("security.istio.io/v1" | "security.istio.io/v1beta1"))
        {
            return Err(at(format!(
                "apiVersion {:?} is not security.istio.io/v1 or v1beta1",
                head.api_version.unwrap_or_default()
            )));
        }
        match head.kind.as_deref() {
            Some("RequestAuthentication") => {
                let ra = parse_request_authentication(file, document, allow_insecure_jwks)
                    .map_err(|e| ConfigError(format!("{}: {}", e.field, e.message)))?;
                docs.request_authentications.push(ra);
            }
            Some("AuthorizationPolicy") => {
                let policy =
                    palisade_policy::parse_policy(document, file).map_err(|e| ConfigError(e.to_string()))?;
                docs.authorization_policies.push(policy);
            }
            Some("PeerAuthentication") => {
                let policy = palisade_tls::parse_peer_authentication(document, file)
                    .map_err(|e| ConfigError(e.to_string()))?;
                docs.peer_authentications.push(policy);
            }
            other => {
                return Err(at(format!(
                    "kind {:?} is not one Palisade reads here (RequestAuthentication, AuthorizationPolicy, PeerAuthentication)",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct KindHeader {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConfigMap volume: `policy.yaml -> ..data/policy.yaml`, `..data -> ..v1`; an update
    /// writes `..v2` and swaps `..data`. The change must be seen, and the file read through
    /// its links.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_configmap_style_symlink_swap_changes_the_fingerprint() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let policy = |name: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{}}\n"
            )
        };
        std::fs::create_dir(root.join("..v1")).unwrap();
        std::fs::write(root.join("..v1/policy.yaml"), policy("first")).unwrap();
        symlink("..v1", root.join("..data")).unwrap();
        symlink("..data/policy.yaml", root.join("policy.yaml")).unwrap();
        let before = fingerprint(root).unwrap();
        assert_eq!(before.len(), 1, "the hidden directories are not read: {before:?}");

        std::fs::create_dir(root.join("..v2")).unwrap();
        std::fs::write(root.join("..v2/policy.yaml"), policy("second-and-longer")).unwrap();
        symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let after = fingerprint(root).unwrap();
        assert_ne!(before, after, "the swap is a change");
        let docs = load_policy_dirs(&[root], false).unwrap();
        assert_eq!(docs.authorization_policies[0].metadata.name, "second-and-longer");
    }

    #[test]
    fn defaults_are_secure() {
        let p = Platform::defaults();
        assert!(p.config.authentication.require_token);
        assert_eq!(p.config.authentication.clock_skew, Duration::from_secs(60));
        assert!(p.config.issuer.enabled);
        assert_eq!(p.config.issuer.token_lifetime, Duration::from_secs(900));
    }

    #[test]
    fn parses_a_full_config() {
        let text = r#"
authentication:
  requireToken: false
  maxTokenLifetime: 1h
  clockSkew: 30s
  jwksRefreshInterval: 5m
  jwtRules:
    - issuer: https://idp.local/auth/realms/ML
      audiences: [ml]
      jwksUri: https://idp.local/auth/realms/ML/protocol/openid-connect/certs
issuer:
  issuer: https://palisade.example.com
  audiences: [ml]
  tokenLifetime: 10m
  algorithm: EdDSA
authorization: {rootNamespace: platform, groupsClaim: roles}
docs: {public: false}
"#;
        let p = Platform::parse(Path::new("p.yaml"), text).unwrap();
        assert!(!p.config.authentication.require_token);
        assert_eq!(p.jwt_rules[0].audiences, vec!["ml"]);
        assert_eq!(p.config.issuer.algorithm, "EdDSA");
        assert_eq!(p.config.authorization.groups_claim, "roles");
        assert!(!p.config.docs.public);
    }

    #[test]
    fn audit_shipping_is_off_by_default_and_parses() {
        let ship = &Platform::defaults().config.audit.ship;
        assert!(!ship.stdout && ship.checkpoints);
        let p = Platform::parse(Path::new("p.yaml"), "audit:\n  ship: {stdout: true, checkpoints: false}\n")
            .unwrap();
        assert!(p.config.audit.ship.stdout && !p.config.audit.ship.checkpoints);
        let err = Platform::parse(Path::new("p.yaml"), "audit:\n  ship: {stdout: yes please}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.yaml:2:") && err.contains("audit.ship.stdout"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = Platform::parse(Path::new("p.yaml"), "authentication:\n  requireTokn: true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.yaml:2:"), "{err}");
        assert!(err.contains("authentication.requireTokn"), "{err}");
        let err = Platform::parse(Path::new("p.yaml"), "authentication:\n  clockSkew: soon\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("authentication.clockSkew"), "{err}");
        let err = Platform::parse(
            Path::new("p.yaml"),
            "authentication:\n  jwtRules:\n    - issuer: https://x\n      jwksUri: http://x.example/keys\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("authentication.jwtRules[0].jwksUri"), "{err}");
        let err =
            Platform::parse(Path::new("p.yaml"), "issuer:\n  algorithm: HS256\n").unwrap_err().to_string();
        assert!(err.contains("issuer.algorithm"), "{err}");
    }

    #[test]
    fn rate_limits_parse_and_errors_name_the_field() {
        assert!(Platform::defaults().config.limits.rate.is_none(), "no rate limit unless configured");
        let p = Platform::parse(
            Path::new("p.yaml"),
            "limits:\n  rate: {requestsPerSecond: 50, burst: 100}\n  maxTrackedCallers: 5000\n",
        )
        .unwrap();
        let rate = p.config.limits.rate.unwrap();
        assert_eq!((rate.requests.burst.get(), rate.explain_budget().burst.get()), (100, 10));
        assert_eq!(p.config.limits.max_tracked_callers, 5000);
        for (text, field) in [
            ("limits:\n  rate: {requestsPerSecond: 50}\n", "limits.rate"),
            ("limits:\n  rate:\n    requestsPerSecond: 50\n    burst: 1.5\n", "limits.rate.burst"),
            (
                "limits:\n  rate: {requestsPerSecond: 5, burst: 5, explain: {requestsPerSecond: 9, burst: 1}}\n",
                "limits.rate",
            ),
            ("limits:\n  maxTrackedCallers: 3\n", "limits.maxTrackedCallers"),
            ("limits:\n  rates: {}\n", "limits.rates"),
        ] {
            let err = Platform::parse(Path::new("p.yaml"), text).unwrap_err().to_string();
            assert!(err.contains("p.yaml") && err.contains(field), "{text}: {err}");
        }
    }

    #[test]
    fn policy_dir_reads_multi_document_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("auth.yaml"),
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a, namespace: api}\nspec:\n  jwtRules:\n  - issuer: https://a\n    jwksUri: https://a/keys\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: {}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: q, namespace: ns}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [a@b.c]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let docs = load_policy_dir(dir.path(), false).unwrap();
        assert_eq!(docs.request_authentications.len(), 1);
        assert_eq!(docs.authorization_policies.len(), 2);
        std::fs::write(dir.path().join("typo.yaml"), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: t, namespace: ns}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claim[email]\n      values: [x]\n").unwrap();
        let err = load_policy_dir(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("typo.yaml:7:"), "{err}");
        std::fs::remove_file(dir.path().join("typo.yaml")).unwrap();

        std::fs::write(dir.path().join("bad.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
            .unwrap();
        let err = load_policy_dir(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("bad.yaml:1:"), "{err}");
    }
}
