//! Palisade's own token issuer: service accounts (client id + secret, only a hash stored),
//! OAuth2 client-credentials tokens signed with rotating keys, and the published key set.
//!
//! State lives in `$PALISADE_HOME/identity/`: `signing-keys.json` (private keys, mode 0600)
//! and `service-accounts.json`. The CLI changes these files; a running server notices
//! ([`LocalIssuer::reload_if_changed`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use palisade_core::{ModelName, Namespace};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::IdentityError;
use crate::keys::KeySet;
use crate::secret::Secret;
use crate::signing::{SigningKey, StoredKey};

const KEYS_FILE: &str = "signing-keys.json";
const ACCOUNTS_FILE: &str = "service-accounts.json";

/// Settings of the built-in issuer.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// The `iss` of issued tokens: the server's public URL in production.
    pub issuer: String,
    /// The `aud` of issued tokens.
    pub audiences: Vec<String>,
    /// Lifetime of service-account tokens (default 15 minutes).
    pub token_ttl: Duration,
    /// Algorithm of new signing keys (ES256, RS256 or EdDSA).
    pub algorithm: Algorithm,
    /// How long a rotated-out key stays published, so tokens it signed keep verifying.
    pub rotation_overlap: Duration,
}

impl Default for IssuerSettings {
    fn default() -> Self {
        IssuerSettings {
            issuer: "https://palisade.local".to_owned(),
            audiences: vec!["palisade".to_owned()],
            token_ttl: Duration::from_secs(15 * 60),
            algorithm: Algorithm::ES256,
            rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

/// A service account: a system identity that gets tokens with a client id and secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its name.
    pub name: ModelName,
    /// The OAuth2 client id.
    pub client_id: String,
    /// SHA-256 of the secret, hex. Secrets are 256 random bits, so a fast hash suffices.
    pub secret_sha256: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Revocation time, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
}

impl ServiceAccount {
    /// The token subject: `system:serviceaccount:NAMESPACE:NAME` (Kubernetes' form).
    pub fn subject(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<StoredKey>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    accounts: Vec<ServiceAccount>,
}

struct Loaded {
    /// Each stored key's public JWK and when it was retired, derived once per load: parsing
    /// a private key (an RSA key's consistency check above all) costs milliseconds, and the
    /// server reads the published set every second.
    published: Vec<(Option<u64>, Value)>,
    signer: SigningKey,
    accounts: Vec<ServiceAccount>,
    stamp: (Stamp, Stamp),
}

/// What identifies a version of a file: every write replaces it (new inode), and the time and
/// size tell apart writes on file systems without inodes.
type Stamp = Option<(SystemTime, u64, u64)>;

/// An issued token.
#[derive(Debug)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: Secret,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Who a token is for.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// `sub`
    pub subject: String,
    /// `client_id`, for service accounts.
    pub client_id: Option<String>,
    /// Extra claims (`email`, `groups`, ...), for development tokens.
    pub extra: Map<String, Value>,
    /// Overrides the default audiences.
    pub audiences: Option<Vec<String>>,
    /// Overrides the default lifetime.
    pub ttl: Option<Duration>,
}

/// The built-in issuer.
pub struct LocalIssuer {
    dir: PathBuf,
    settings: IssuerSettings,
    state: RwLock<Loaded>,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer").field("dir", &self.dir).field("settings", &self.settings).finish()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io_error(path: &Path, action: &str, err: impl std::fmt::Display) -> IdentityError {
    IdentityError::Store(format!("cannot {action} {}: {err}", path.display()))
}

impl LocalIssuer {
    /// Opens the issuer state in `dir` (usually `$PALISADE_HOME/identity`), creating a first
    /// signing key if there is none.
    pub fn open(dir: &Path, settings: IssuerSettings) -> Result<LocalIssuer, IdentityError> {
        palisade_private_files::create_dir_all(dir).map_err(|e| IdentityError::Store(e.to_string()))?;
        let keys_path = dir.join(KEYS_FILE);
        if !keys_path.exists() {
            let key = SigningKey::generate(settings.algorithm)?;
            write_private(&keys_path, &KeysFile { keys: vec![key.to_stored(now_secs())] })?;
        }
        let loaded = load(dir)?;
        Ok(LocalIssuer { dir: dir.to_owned(), settings, state: RwLock::new(loaded) })
    }

    /// The settings.
    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    /// The directory holding the issuer's files.
    pub fn identity_dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the files unconditionally (after this process wrote them).
    fn reload(&self) -> Result<(), IdentityError> {
        let loaded = load(&self.dir)?;
        if let Ok(mut state) = self.state.write() {
            *state = loaded;
        }
        Ok(())
    }

    /// Re-reads the files if the CLI changed them; returns whether anything changed.
    pub fn reload_if_changed(&self) -> Result<bool, IdentityError> {
        let stamp = stamps(&self.dir);
        let unchanged = self.state.read().map(|s| s.stamp == stamp).unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let loaded = load(&self.dir)?;
        if let Ok(mut state) = self.state.write() {
            *state = loaded;
        }
        Ok(true)
    }

    /// The public keys tokens may be verified with: the signing key and those retired
    /// within the overlap.
    pub fn jwks(&self) -> Value {
        let now = now_secs();
        let overlap = self.settings.rotation_overlap.as_secs();
        let Ok(state) = self.state.read() else { return json!({"keys": []}) };
        let keys: Vec<&Value> = state
            .published
            .iter()
            .filter(|(retired, _)| retired.is_none_or(|r| r + overlap > now))
            .map(|(_, jwk)| jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The published keys as a verification key set.
    pub fn key_set(&self) -> Result<KeySet, IdentityError> {
        KeySet::parse(self.jwks().to_string().as_bytes()).map_err(IdentityError::Crypto)
    }

    /// Starts signing with a new key; the old one stays published for the overlap, and
    /// keys retired longer ago are deleted. Returns the new key id.
    pub fn rotate(&self) -> Result<String, IdentityError> {
        let path = self.dir.join(KEYS_FILE);
        let mut file: KeysFile = read_keys(&path)?.unwrap_or_default();
        let now = now_secs();
        let overlap = self.settings.rotation_overlap.as_secs();
        for key in &mut file.keys {
            key.retired.get_or_insert(now);
        }
        file.keys.retain(|k| k.retired.is_none_or(|r| r + overlap > now));
        let key = SigningKey::generate(self.settings.algorithm)?;
        let kid = key.kid().to_owned();
        file.keys.insert(0, key.to_stored(now));
        write_private(&path, &file)?;
        self.reload()?;
        Ok(kid)
    }

    /// Revokes a signing key: it leaves the published key set at once (tokens it signed stop
    /// verifying as soon as the server syncs, within a second), unlike rotation, which keeps
    /// a retired key published for the overlap. Revoking the active key starts a new one.
    /// Returns the new signing key's id when one was started.
    pub fn revoke_key(&self, kid: &str) -> Result<Option<String>, IdentityError> {
        let path = self.dir.join(KEYS_FILE);
        let mut file: KeysFile = read_keys(&path)?.unwrap_or_default();
        let stored = file.keys.iter().position(|k| k.kid == kid).ok_or_else(|| {
            IdentityError::NotFound(format!(
                "no signing key {kid} (see the `kid` of /.well-known/jwks.json); it may already be gone"
            ))
        })?;
        let removed = file.keys.remove(stored);
        let mut started = None;
        if removed.retired.is_none() {
            let key = SigningKey::generate(self.settings.algorithm)?;
            started = Some(key.kid().to_owned());
            file.keys.insert(0, key.to_stored(now_secs()));
        }
        write_private(&path, &file)?;
        self.reload()?;
        Ok(started)
    }

    /// Creates a service account; the secret is returned once and only its hash is stored.
    pub fn create_account(
        &self,
        namespace: Namespace,
        name: ModelName,
    ) -> Result<(ServiceAccount, Secret), IdentityError> {
        let path = self.dir.join(ACCOUNTS_FILE);
        let mut file: AccountsFile = read_json(&path)?.unwrap_or_default();
        if file.accounts.iter().any(|a| a.namespace == namespace && a.name == name && a.revoked.is_none()) {
            return Err(IdentityError::Conflict(format!(
                "service account {namespace}/{name} already exists; revoke it first to replace its secret"
            )));
        }
        let secret = Secret::new(random_token(32)?);
        let account = ServiceAccount {
            client_id: format!("{namespace}.{name}.{}", random_token(6)?.to_ascii_lowercase()),
            namespace,
            name,
            secret_sha256: hex::encode(Sha256::digest(secret.expose().as_bytes())),
            created: now_secs(),
            revoked: None,
        };
        file.accounts.push(account.clone());
        write_private(&path, &file)?;
        self.reload()?;
        Ok((account, secret))
    }

    /// Service accounts, revoked ones included.
    pub fn accounts(&self) -> Vec<ServiceAccount> {
        self.state.read().map(|s| s.accounts.clone()).unwrap_or_default()
    }

    /// Revokes a service account: it gets no new tokens (issued ones expire within the
    /// token lifetime).
    pub fn revoke_account(
        &self,
        namespace: &Namespace,
        name: &ModelName,
    ) -> Result<ServiceAccount, IdentityError> {
        let path = self.dir.join(ACCOUNTS_FILE);
        let mut file: AccountsFile = read_json(&path)?.unwrap_or_default();
        let account = file
            .accounts
            .iter_mut()
            .find(|a| &a.namespace == namespace && &a.name == name && a.revoked.is_none())
            .ok_or_else(|| {
                IdentityError::NotFound(format!("no active service account {namespace}/{name}"))
            })?;
        account.revoked = Some(now_secs());
        let revoked = account.clone();
        write_private(&path, &file)?;
        self.reload()?;
        Ok(revoked)
    }

    /// Checks client credentials in constant time; `None` for unknown, revoked or wrong.
    pub fn authenticate_client(&self, client_id: &str, secret: &str) -> Option<ServiceAccount> {
        let _ = self.reload_if_changed();
        let state = self.state.read().ok()?;
        let presented = Sha256::digest(secret.as_bytes());
        let mut found = None;
        for account in &state.accounts {
            let id_match = account.client_id.as_bytes().ct_eq(client_id.as_bytes());
            let stored = hex::decode(&account.secret_sha256).unwrap_or_default();
            let secret_match = stored.as_slice().ct_eq(presented.as_slice());
            if bool::from(id_match & secret_match) && account.revoked.is_none() {
                found = Some(account.clone());
            }
        }
        found
    }

    /// Issues a token for a service account.
    pub fn issue_for(&self, account: &ServiceAccount) -> Result<IssuedToken, IdentityError> {
        self.issue(TokenRequest {
            subject: account.subject(),
            client_id: Some(account.client_id.clone()),
            ..TokenRequest::default()
        })
    }

    /// Issues a token.
    pub fn issue(&self, request: TokenRequest) -> Result<IssuedToken, IdentityError> {
        let now = now_secs();
        let ttl = request.ttl.unwrap_or(self.settings.token_ttl).as_secs().max(1);
        let mut claims = request.extra;
        claims.insert("iss".into(), json!(self.settings.issuer));
        claims.insert("sub".into(), json!(request.subject));
        let audiences = request.audiences.unwrap_or_else(|| self.settings.audiences.clone());
        claims
            .insert("aud".into(), if audiences.len() == 1 { json!(audiences[0]) } else { json!(audiences) });
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + ttl));
        claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
        if let Some(client_id) = request.client_id {
            claims.insert("client_id".into(), json!(client_id));
        }
        let state =
            self.state.read().map_err(|_| IdentityError::Store("issuer state is unavailable".into()))?;
        let token = state.signer.sign(&claims, "JWT")?;
        Ok(IssuedToken { token: Secret::new(token), expires_in: ttl })
    }

    /// The OIDC discovery document for this issuer.
    pub fn discovery(&self) -> Value {
        let issuer = self.settings.issuer.trim_end_matches('/');
        json!({
            "issuer": self.settings.issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": [crate::signing::algorithm_name(self.settings.algorithm)],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        })
    }
}

fn random_token(bytes: usize) -> Result<String, IdentityError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| IdentityError::Crypto("no randomness".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

fn stamps(dir: &Path) -> (Stamp, Stamp) {
    let stamp = |name: &str| -> Stamp {
        let meta = fs::metadata(dir.join(name)).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.modified().ok()?, meta.len(), inode))
    };
    (stamp(KEYS_FILE), stamp(ACCOUNTS_FILE))
}

fn load(dir: &Path) -> Result<Loaded, IdentityError> {
    let stamp = stamps(dir);
    let keys_path = dir.join(KEYS_FILE);
    let keys: KeysFile = read_keys(&keys_path)?.ok_or_else(|| io_error(&keys_path, "read", "missing"))?;
    let active = keys.keys.iter().find(|k| k.retired.is_none()).ok_or_else(|| {
        IdentityError::Store(format!(
            "{} has no active signing key; run `palisade keys rotate`",
            keys_path.display()
        ))
    })?;
    let signer = SigningKey::from_stored(active)?;
    let accounts: AccountsFile = read_json(&dir.join(ACCOUNTS_FILE))?.unwrap_or_default();
    let published = keys
        .keys
        .iter()
        .filter_map(|k| SigningKey::from_stored(k).ok().map(|key| (k.retired, key.public_jwk())))
        .collect();
    Ok(Loaded { published, signer, accounts: accounts.accounts, stamp })
}

/// Largest `signing-keys.json` read.
const MAX_KEYS_FILE: u64 = 1024 * 1024;

/// Reads the signing keys, refusing a file that group or others can read, a symbolic link,
/// or a directory others can write, naming the `chmod` fix.
fn read_keys(path: &Path) -> Result<Option<KeysFile>, IdentityError> {
    let bytes = palisade_private_files::read_key(path, "the token signing keys", MAX_KEYS_FILE)
        .map_err(|e| IdentityError::Store(e.to_string()))?;
    bytes.map(|bytes| serde_json::from_slice(&bytes).map_err(|e| io_error(path, "parse", e))).transpose()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| io_error(path, "parse", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, "read", e)),
    }
}

/// Writes a file readable by its owner only, atomically.
fn write_private<T: Serialize>(path: &Path, value: &T) -> Result<(), IdentityError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io_error(path, "encode", e))?;
    palisade_private_files::write_atomic(path, &bytes).map_err(|e| IdentityError::Store(e.to_string()))
}

impl crate::AccountState for LocalIssuer {
    /// A token that names a service account (`client_id`) stands while that account exists
    /// and is not revoked; a token without one (`palisade token issue`) stands.
    fn active(&self, token: &crate::VerifiedToken) -> bool {
        let Some(client_id) = token.claims.get("client_id").and_then(Value::as_str) else { return true };
        let Ok(state) = self.state.read() else { return false };
        state.accounts.iter().any(|a| a.client_id == client_id && a.revoked.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token;

    fn issuer(dir: &Path) -> LocalIssuer {
        LocalIssuer::open(dir, IssuerSettings::default()).unwrap()
    }

    #[test]
    fn service_account_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let issuer = issuer(tmp.path());
        let (account, secret) =
            issuer.create_account("billing".parse().unwrap(), "billing-batch".parse().unwrap()).unwrap();
        assert_eq!(account.subject(), "system:serviceaccount:billing:billing-batch");
        let stored = fs::read_to_string(tmp.path().join(ACCOUNTS_FILE)).unwrap();
        assert!(!stored.contains(secret.expose()), "the secret itself is never stored");
        assert!(issuer.authenticate_client(&account.client_id, secret.expose()).is_some());
        assert!(issuer.authenticate_client(&account.client_id, "wrong").is_none());
        assert!(issuer.authenticate_client("other", secret.expose()).is_none());
        assert!(issuer.create_account("billing".parse().unwrap(), "billing-batch".parse().unwrap()).is_err());
        issuer.revoke_account(&account.namespace, &account.name).unwrap();
        assert!(issuer.authenticate_client(&account.client_id, secret.expose()).is_none());
    }

    #[test]
    fn tokens_carry_the_service_account_claims() {
        let tmp = tempfile::tempdir().unwrap();
        let issuer = issuer(tmp.path());
        let (account, _) = issuer.create_account("ns".parse().unwrap(), "sa".parse().unwrap()).unwrap();
        let issued = issuer.issue_for(&account).unwrap();
        assert_eq!(issued.expires_in, 900);
        let parsed = token::parse(issued.token.expose()).unwrap();
        assert_eq!(parsed.header.alg, Algorithm::ES256);
        assert_eq!(parsed.claims.iss, "https://palisade.local");
        assert_eq!(parsed.claims.sub.as_deref(), Some("system:serviceaccount:ns:sa"));
        assert_eq!(parsed.claims.aud, vec!["palisade"]);
        assert!(parsed.claims.jti.is_some());
        assert_eq!(parsed.claims.all["client_id"], json!(account.client_id));
        assert_eq!(parsed.claims.exp - parsed.claims.iat.unwrap(), 900.0);
        issuer.key_set().unwrap().verify(&parsed).unwrap();
    }

    #[test]
    fn every_issuer_algorithm_signs_tokens_its_key_set_verifies() {
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let tmp = tempfile::tempdir().unwrap();
            let settings = IssuerSettings { algorithm: alg, ..Default::default() };
            let issuer = LocalIssuer::open(tmp.path(), settings).unwrap();
            let issued = issuer.issue(TokenRequest { subject: "dev".into(), ..Default::default() }).unwrap();
            let parsed = token::parse(issued.token.expose()).unwrap();
            assert_eq!(parsed.header.alg, alg);
            issuer.key_set().unwrap().verify(&parsed).unwrap();
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_for_the_overlap() {
        let tmp = tempfile::tempdir().unwrap();
        let issuer = issuer(tmp.path());
        let before = issuer.issue(TokenRequest { subject: "dev".into(), ..Default::default() }).unwrap();
        let new_kid = issuer.rotate().unwrap();
        let after = issuer.issue(TokenRequest { subject: "dev".into(), ..Default::default() }).unwrap();
        let keys = issuer.key_set().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(token::parse(after.token.expose()).unwrap().header.kid.as_deref(), Some(new_kid.as_str()));
        keys.verify(&token::parse(before.token.expose()).unwrap()).unwrap();
        keys.verify(&token::parse(after.token.expose()).unwrap()).unwrap();

        let short = LocalIssuer::open(
            tmp.path(),
            IssuerSettings { rotation_overlap: Duration::ZERO, ..Default::default() },
        )
        .unwrap();
        short.rotate().unwrap();
        assert_eq!(short.key_set().unwrap().len(), 1, "keys past the overlap are no longer published");
    }

    #[test]
    fn a_second_process_sees_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let server = issuer(tmp.path());
        let cli = issuer(tmp.path());
        let (account, secret) = cli.create_account("ns".parse().unwrap(), "sa".parse().unwrap()).unwrap();
        assert!(server.authenticate_client(&account.client_id, secret.expose()).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let _ = issuer(tmp.path());
        let mode = fs::metadata(tmp.path().join(KEYS_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}
