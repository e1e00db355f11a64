//! Reading and writing PEM files: certificate chains, private keys, and the atomic writes
//! that let a hot reloader never see half a file.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::TlsError;

/// Largest certificate or key file read, checked before parsing.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A private key in PEM form. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    /// Wraps a PEM-encoded private key.
    pub fn new(pem: String) -> KeyPem {
        KeyPem(pem)
    }

    /// The PEM text. Handle with care: this is the secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem([redacted])")
    }
}

/// Reads a file of at most [`MAX_PEM_BYTES`].
pub(crate) fn read_limited(path: &Path) -> Result<Vec<u8>, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::io(path, "cannot read", e))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: format!("the file is {} bytes; at most {MAX_PEM_BYTES} are read", meta.len()),
        });
    }
    std::fs::read(path).map_err(|e| TlsError::io(path, "cannot read", e))
}

/// Parses every `CERTIFICATE` section of a PEM document, in order. At least one is required.
pub fn parse_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no CERTIFICATE section".to_owned() });
    }
    for (i, cert) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(cert).is_err() {
            return Err(TlsError::cert(
                path,
                format!("certificate #{} is not a valid X.509 certificate", i + 1),
            ));
        }
    }
    Ok(certs)
}

/// Reads a PEM file of certificates (a chain: leaf first; or a bundle of trust anchors).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(&read_limited(path)?, path)
}

/// Parses the private key of a PEM document (PKCS#8, SEC1 `EC PRIVATE KEY` or PKCS#1
/// `RSA PRIVATE KEY`).
pub fn parse_private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            TlsError::Pem { path: path.to_owned(), message: "no PRIVATE KEY section".to_owned() }
        }
        e => pem_error(path, e),
    })
}

/// Reads a PEM private key file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_private_key(&read_limited(path)?, path)
}

fn pem_error(path: &Path, error: pem::Error) -> TlsError {
    // The PEM parser's messages may quote a line of the file; for a key file that line is
    // secret, so only the kind of failure is reported.
    let message = match error {
        pem::Error::MissingSectionEnd { .. } => "malformed PEM: a section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "malformed PEM: bad BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "malformed PEM: bad base64".to_owned(),
        pem::Error::SectionTooLarge => "malformed PEM: section too large".to_owned(),
        pem::Error::NoItemsFound => "no PEM section of the expected kind".to_owned(),
        other => format!("malformed PEM: {other}"),
    };
    TlsError::Pem { path: path.to_owned(), message }
}

/// Encodes DER certificates as PEM, one `CERTIFICATE` section each.
pub fn certificates_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem_section("CERTIFICATE", c)).collect()
}

/// One PEM section with LF line endings (RFC 7468).
pub(crate) fn pem_section(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der.to_vec()), config)
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509 -fingerprint -sha256`
/// prints it: upper-case hex pairs separated by colons.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex = hex::encode_upper(digest);
    let mut out = String::with_capacity(hex.len() * 3 / 2);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(std::str::from_utf8(pair).unwrap_or_default());
    }
    out
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, flushed
/// and synced, then renamed over the target. Readers see the old file or the new one, never a
/// mix. `mode` sets Unix permissions before any byte is written (0600 for keys).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, "cannot create the directory", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".palisade-tmp-")
        .tempfile_in(dir)
        .map_err(|e| TlsError::io(dir, "cannot create a temporary file", e))?;
    set_mode(tmp.path(), mode)?;
    tmp.write_all(contents).map_err(|e| TlsError::io(path, "cannot write", e))?;
    tmp.as_file().sync_all().map_err(|e| TlsError::io(path, "cannot sync", e))?;
    tmp.persist(path).map_err(|e| TlsError::io(path, "cannot replace", e.error))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| TlsError::io(path, "cannot set permissions", e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), TlsError> {
    Ok(())
}

/// The validity period of a certificate.
pub(crate) fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let to_time = |t: i64| -> SystemTime {
        if t >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(t.unsigned_abs())
        }
    };
    let v = cert.validity();
    Some((to_time(v.not_before.timestamp()), to_time(v.not_after.timestamp())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pem_debug_is_redacted() {
        let key = KeyPem::new("-----BEGIN PRIVATE KEY-----\nsecret\n".to_owned());
        assert_eq!(format!("{key:?}"), "KeyPem([redacted])");
    }

    #[test]
    fn fingerprint_shape() {
        let fp = sha256_fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF"), "{fp}");
    }
}
