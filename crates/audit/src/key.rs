//! The log's Ed25519 signing key, where it lives, and the public key auditors verify with.
//!
//! The key lives outside the log directory, by default in `keys/` beside it (for a log in
//! `$PALISADE_HOME/audit`: `$PALISADE_HOME/keys/audit-signing.pk8`), so that someone who
//! can rewrite the log cannot also sign for it. The private key is a PKCS#8 (v2) document,
//! mode 0600, in a directory created with mode 0700; the public key beside it
//! (`audit-signing.pub`) holds the raw 32-byte key in standard base64 (with padding) and a
//! newline.
//!
//! Logs written before genesis checkpoints kept their key inside the log directory
//! (`replica-key.pk8` / `replica-key.pub`); those names are only read, to verify such logs.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::AuditError;

/// The directory, beside the log directory, that holds the signing key by default.
pub const KEYS_DIR: &str = "keys";
/// File name of the private signing key (PKCS#8) in [`KEYS_DIR`].
pub const SIGNING_KEY_FILE: &str = "audit-signing.pk8";
/// File name of the public key (raw, base64) beside the signing key.
pub const SIGNING_PUBLIC_KEY_FILE: &str = "audit-signing.pub";
/// The private key of a log written before genesis checkpoints, inside its log directory.
/// Never created any more; its presence marks such a log.
pub const LEGACY_PRIVATE_KEY_FILE: &str = "replica-key.pk8";
/// The public key of a log written before genesis checkpoints, inside its log directory.
pub const LEGACY_PUBLIC_KEY_FILE: &str = "replica-key.pub";

/// Largest key file read (a PKCS#8 Ed25519 document is 83 bytes, its public key 45).
const MAX_KEY_FILE: u64 = 4096;

/// The default signing key of the log in `log_dir`: `keys/audit-signing.pk8` in the
/// directory that holds `log_dir` (`$PALISADE_HOME/keys/audit-signing.pk8` for the log in
/// `$PALISADE_HOME/audit`).
pub fn default_signing_key(log_dir: &Path) -> Result<PathBuf, AuditError> {
    let mut absolute =
        std::path::absolute(log_dir).map_err(|e| AuditError::io(log_dir, "cannot resolve", e))?;
    if absolute.file_name().is_none() {
        // Ends with `..`: only the file system knows what it names.
        absolute = fs::canonicalize(&absolute).map_err(|e| AuditError::io(log_dir, "cannot resolve", e))?;
    }
    match absolute.parent() {
        Some(parent) => Ok(parent.join(KEYS_DIR).join(SIGNING_KEY_FILE)),
        None => Err(AuditError::Key(format!(
            "{}: a log at the root has no directory beside it for its key; set the signing key's path",
            log_dir.display()
        ))),
    }
}

/// The public key file that goes with the private key at `signing_key`: the same name
/// with the extension `.pub`.
pub fn public_key_path(signing_key: &Path) -> PathBuf {
    signing_key.with_extension("pub")
}

/// An Ed25519 public key that checkpoint signatures are verified with.
///
/// Auditors should pin it (obtained out of band, see
/// [`KeySource::Pinned`](crate::KeySource::Pinned)) rather than trust a file that someone
/// with access to the machine could replace.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses the base64 text of a public key file (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, AuditError> {
        let bytes = base64::decode(text.trim())
            .ok_or_else(|| AuditError::Key("public key is not valid base64".into()))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuditError::Key(format!("public key has {} bytes, expected 32", b.len()))
        })?;
        Ok(Self(raw))
    }

    /// Reads a public key file (`audit-signing.pub`).
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let text = read_small(path).map_err(|e| AuditError::io(path, "cannot read public key", e))?;
        let text = String::from_utf8(text)
            .map_err(|_| AuditError::Key(format!("{}: public key is not text", path.display())))?;
        Self::from_base64(&text).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key's id, as written in checkpoints: the first 16 hex digits of its SHA-256.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(message, signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::encode(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// The log's signing key, loaded from a file whose modes were checked.
pub(crate) struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
    path: PathBuf,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {}, private key redacted)", self.public.key_id(), self.path.display())
    }
}

impl SigningKey {
    /// Loads the key at `path`, or `None` when there is no file there.
    ///
    /// Refuses (as ssh does) a key that is a symbolic link or not a regular file, a key
    /// readable or writable by group or others, and a key in a directory that group or
    /// others can write; checks that the public key file beside it matches, and writes it
    /// when it is missing.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, AuditError> {
        let Some(der) = read_private(path)? else { return Ok(None) };
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| AuditError::Key(format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display())))?;
        let raw: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AuditError::Key("Ed25519 public key is not 32 bytes".into()))?;
        let key = Self { pair, public: PublicKey(raw), path: path.to_owned() };
        let public_path = public_key_path(path);
        match PublicKey::from_file(&public_path) {
            Ok(on_disk) if on_disk == key.public => {}
            Ok(_) => {
                return Err(AuditError::Key(format!(
                    "{} does not match {}: restore the matching pair (or delete the .pub file; it is rewritten from the private key)",
                    public_path.display(),
                    path.display()
                )));
            }
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                write_new(&public_path, format!("{}\n", key.public).as_bytes(), 0o644)?;
            }
            Err(e) => return Err(e),
        }
        Ok(Some(key))
    }

    /// Loads the key at `path`, creating it (and its directory, mode 0700, and its public
    /// key) when there is none.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        if let Some(key) = Self::load(path)? {
            return Ok(key);
        }
        let dir = parent_of(path)?;
        create_private_dir(dir)?;
        check_dir(dir)?;
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuditError::Key("cannot generate an Ed25519 key".into()))?;
        // Another process may create the same key at the same moment: the first one wins
        // and both use it.
        if write_new(path, doc.as_ref(), 0o600)? {
            tracing::info!(path = %path.display(), "created the audit signing key");
        }
        Self::load(path)?
            .ok_or_else(|| AuditError::Key(format!("{}: vanished after creation", path.display())))
    }

    /// The public half.
    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    /// Where the private key is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

fn parent_of(path: &Path) -> Result<&Path, AuditError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => Ok(parent),
        _ => Ok(Path::new(".")),
    }
}

/// What the checks call the key.
const WHAT: &str = "the signing key";

/// Reads the private key file after checking that it and its directory are private
/// (`palisade_private_files::read_key`, the rule every key of Palisade's follows).
fn read_private(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    palisade_private_files::read_key(path, WHAT, MAX_KEY_FILE).map_err(|e| private_error(path, e))
}

fn private_error(path: &Path, err: palisade_private_files::PrivateFileError) -> AuditError {
    use palisade_private_files::PrivateFileError as E;
    match err {
        E::Insecure { path, problem, fix } => AuditError::InsecureKey { path, what: problem, fix },
        E::TooLarge { path, .. } => {
            AuditError::Key(format!("{}: too large for an Ed25519 PKCS#8 key", path.display()))
        }
        E::Io { path, action, source } => AuditError::io(&path, action, source),
        other => AuditError::Key(format!("{}: {other}", path.display())),
    }
}

/// Refuses a key directory that group or others can write (they could replace the key).
fn check_dir(dir: &Path) -> Result<(), AuditError> {
    palisade_private_files::check_key_dir(dir, WHAT).map_err(|e| private_error(dir, e))
}

fn create_private_dir(dir: &Path) -> Result<(), AuditError> {
    palisade_private_files::create_dir_all(dir).map_err(|e| private_error(dir, e))
}

/// Reads a small file, refusing one larger than [`MAX_KEY_FILE`].
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large for a key"));
    }
    Ok(bytes)
}

/// Creates `path` with `bytes` and `mode`, durably (temporary file, fsync, link into place,
/// directory fsync), unless it exists. Returns whether this call created it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, AuditError> {
    let dir = parent_of(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(|e| AuditError::io(&tmp, "cannot create", e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&tmp, "cannot write", e));
    // A hard link never replaces an existing file, unlike a rename.
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(AuditError::io(path, "cannot create", e)),
    });
    let _ = fs::remove_file(&tmp);
    let created = linked?;
    sync_dir(dir)?;
    Ok(created)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| AuditError::io(dir, "cannot sync directory", e))
}

/// Standard base64 (RFC 4648, with padding), for the public key and signatures.
pub(crate) mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes `bytes`.
    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Decodes canonical padded base64; `None` for anything else.
    pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let quads = bytes.len() / 4;
        for (i, quad) in bytes.chunks(4).enumerate() {
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && i + 1 != quads) {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            // Non-canonical encodings (stray bits in the last symbol) are refused.
            if decoded[3 - pad..].iter().any(|&b| b != 0) {
                return None;
            }
            out.extend_from_slice(&decoded[..3 - pad]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_known_vectors() {
        for (raw, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64::encode(raw.as_bytes()), enc);
            assert_eq!(base64::decode(enc).unwrap(), raw.as_bytes());
        }
        for bad in ["Zg=", "Zh==", "Z===", "Zg==Zg==", "Zm9*", "===="] {
            assert!(base64::decode(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn base64_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(base64::decode(&base64::encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn base64_decode_never_panics(text in "[A-Za-z0-9+/=]{0,12}") {
            if let Some(bytes) = base64::decode(&text) {
                prop_assert_eq!(base64::encode(&bytes), text);
            }
        }
    }

    #[test]
    fn default_location_is_beside_the_log_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            default_signing_key(Path::new("/home/p/.palisade/audit")).unwrap(),
            Path::new("/home/p/.palisade/keys/audit-signing.pk8")
        );
        assert_eq!(default_signing_key(Path::new("audit/")).unwrap(), cwd.join("keys/audit-signing.pk8"));
        assert_eq!(default_signing_key(Path::new("./audit")).unwrap(), cwd.join("keys/audit-signing.pk8"));
        assert!(default_signing_key(Path::new("/")).is_err());
        assert_eq!(public_key_path(Path::new("/k/audit-signing.pk8")), Path::new("/k/audit-signing.pub"));
    }

    #[test]
    fn key_is_created_once_with_private_permissions() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(KEYS_DIR).join(SIGNING_KEY_FILE);
        assert!(SigningKey::load(&path).unwrap().is_none());
        let a = SigningKey::load_or_create(&path).unwrap();
        let b = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let on_disk = PublicKey::from_file(&public_key_path(&path)).unwrap();
        assert_eq!(on_disk, a.public());
        let sig = a.sign(b"message");
        assert!(on_disk.verifies(b"message", &sig));
        assert!(!on_disk.verifies(b"messagf", &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            assert_eq!(mode(&public_key_path(&path)), 0o644);
        }
        assert!(format!("{a:?}").contains("private key redacted"));
        // A deleted public key is written again from the private key.
        fs::remove_file(public_key_path(&path)).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().unwrap().public(), a.public());
        assert_eq!(PublicKey::from_file(&public_key_path(&path)).unwrap(), a.public());
    }

    #[test]
    fn mismatched_public_key_file_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(KEYS_DIR).join(SIGNING_KEY_FILE);
        SigningKey::load_or_create(&path).unwrap();
        fs::write(public_key_path(&path), format!("{}\n", base64::encode(&[7u8; 32]))).unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn unsafe_key_files_are_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(KEYS_DIR).join(SIGNING_KEY_FILE);
        SigningKey::load_or_create(&path).unwrap();
        let chmod = |p: &Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();

        chmod(&path, 0o644);
        let err = SigningKey::load(&path).unwrap_err();
        assert!(matches!(err, AuditError::InsecureKey { .. }), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
        chmod(&path, 0o600);

        chmod(path.parent().unwrap(), 0o777);
        let err = SigningKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
        chmod(path.parent().unwrap(), 0o700);

        let elsewhere = home.path().join("real.pk8");
        fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(SigningKey::load_or_create(&path).is_err(), "a link is never replaced by a new key");
    }
}
