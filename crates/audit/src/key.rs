//! The replica's Ed25519 signing key and the public key auditors verify with.
//!
//! `replica-key.pk8` holds the PKCS#8 (v2) document, mode 0600, created on first open;
//! `replica-key.pub` holds the raw 32-byte public key in standard base64 (with padding)
//! and a newline.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::AuditError;

/// File name of the private key (PKCS#8), inside the log directory.
pub const PRIVATE_KEY_FILE: &str = "replica-key.pk8";
/// File name of the public key (raw, base64), inside the log directory.
pub const PUBLIC_KEY_FILE: &str = "replica-key.pub";

/// An Ed25519 public key that checkpoint signatures are verified with.
///
/// Auditors should pin it (pass it in [`VerifyOptions::public_key`]) rather than trust the
/// `replica-key.pub` that sits beside the log: whoever can rewrite the log can rewrite
/// that file too.
///
/// [`VerifyOptions::public_key`]: crate::VerifyOptions::public_key
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses the base64 text of `replica-key.pub` (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, AuditError> {
        let bytes = base64::decode(text.trim())
            .ok_or_else(|| AuditError::Key("public key is not valid base64".into()))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuditError::Key(format!("public key has {} bytes, expected 32", b.len()))
        })?;
        Ok(Self(raw))
    }

    /// Reads a `replica-key.pub` file.
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let text = fs::read_to_string(path).map_err(|e| AuditError::io(path, "cannot read public key", e))?;
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

/// The replica's signing key.
pub(crate) struct ReplicaKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for ReplicaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaKey({}, private key redacted)", self.public.key_id())
    }
}

impl ReplicaKey {
    /// Loads the key from `dir`, creating it (and the public key file) on first use.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, AuditError> {
        let private = dir.join(PRIVATE_KEY_FILE);
        let der = match fs::read(&private) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_private_key(dir)?,
            Err(e) => return Err(AuditError::io(&private, "cannot read replica key", e)),
        };
        warn_if_readable_by_others(&private);
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| AuditError::Key(format!("{}: not an Ed25519 PKCS#8 key: {e}", private.display())))?;
        let raw: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AuditError::Key("Ed25519 public key is not 32 bytes".into()))?;
        let key = Self { pair, public: PublicKey(raw) };
        let public_path = dir.join(PUBLIC_KEY_FILE);
        if public_path.exists() {
            let on_disk = PublicKey::from_file(&public_path)?;
            if on_disk != key.public {
                return Err(AuditError::Key(format!(
                    "{} does not match {}; restore the matching pair",
                    public_path.display(),
                    private.display()
                )));
            }
        } else {
            write_durably(dir, PUBLIC_KEY_FILE, format!("{}\n", key.public).as_bytes(), 0o644)?;
        }
        Ok(key)
    }

    /// The public half.
    pub(crate) fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

fn create_private_key(dir: &Path) -> Result<Vec<u8>, AuditError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| AuditError::Key("cannot generate an Ed25519 key".into()))?;
    let der = doc.as_ref().to_vec();
    write_durably(dir, PRIVATE_KEY_FILE, &der, 0o600)?;
    tracing::info!(path = %dir.join(PRIVATE_KEY_FILE).display(), "created the audit replica key");
    Ok(der)
}

/// Writes `name` in `dir` atomically (temporary file, fsync, rename, directory fsync).
fn write_durably(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), AuditError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(|e| AuditError::io(&tmp, "cannot create", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&tmp, "cannot write", e))?;
    fs::rename(&tmp, &path).map_err(|e| AuditError::io(&path, "cannot rename into place", e))?;
    sync_dir(dir)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| AuditError::io(dir, "cannot sync directory", e))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "audit replica key is readable by group or others; chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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
    fn key_is_created_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let a = ReplicaKey::load_or_create(dir.path()).unwrap();
        let b = ReplicaKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let on_disk = PublicKey::from_file(&dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(on_disk, a.public());
        let sig = a.sign(b"message");
        assert!(on_disk.verifies(b"message", &sig));
        assert!(!on_disk.verifies(b"messagf", &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(PRIVATE_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(format!("{a:?}").contains("private key redacted"));
    }

    #[test]
    fn mismatched_public_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        ReplicaKey::load_or_create(dir.path()).unwrap();
        fs::write(dir.path().join(PUBLIC_KEY_FILE), format!("{}\n", base64::encode(&[7u8; 32]))).unwrap();
        let err = ReplicaKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
