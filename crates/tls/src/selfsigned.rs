//! The embedded default: a self-signed certificate for `localhost`, generated on first start
//! and reused afterwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::ca::random_serial;
use crate::pem::{
    pem_section, read_certificates, read_private_key, sha256_fingerprint, validity, write_atomic,
};
use crate::reload::CertFiles;
use crate::{TlsError, provider};

/// File name of the self-signed certificate in its directory.
pub const LOCALHOST_CERT_FILE: &str = "localhost.pem";
/// File name of its key (mode 0600).
pub const LOCALHOST_KEY_FILE: &str = "localhost-key.pem";
/// Lifetime of a generated self-signed certificate.
pub const LOCALHOST_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A stored certificate closer than this to its expiry is regenerated at start.
pub const LOCALHOST_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Returns a self-signed certificate for `localhost`, `127.0.0.1` and `::1` stored in `dir`
/// (`localhost.pem`, `localhost-key.pem`), generating it on first use (EC P-256, one year).
/// Later calls reuse the stored pair, unless it is unusable or within 30 days of expiry.
/// Print [`CertFiles::sha256_fingerprint`] so users can check what their client sees.
pub fn self_signed_localhost(dir: &Path) -> Result<CertFiles, TlsError> {
    let cert = dir.join(LOCALHOST_CERT_FILE);
    let key = dir.join(LOCALHOST_KEY_FILE);
    if cert.exists() || key.exists() {
        match reusable(&cert, &key) {
            Ok(fingerprint) => return Ok(CertFiles { cert, key, sha256_fingerprint: fingerprint }),
            Err(reason) => {
                tracing::warn!(cert = %cert.display(), %reason, "regenerating the self-signed localhost certificate");
            }
        }
    }
    let signing_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "localhost");
    name.push(DnType::OrganizationName, "Palisade (self-signed)");
    params.distinguished_name = name;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + LOCALHOST_LIFETIME).into();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.self_signed(&signing_key)?;
    write_atomic(&key, pem_section("PRIVATE KEY", signing_key.serialized_der()).as_bytes(), 0o600)?;
    write_atomic(&cert, certificate.pem().as_bytes(), 0o644)?;
    let fingerprint = sha256_fingerprint(certificate.der());
    tracing::info!(cert = %cert.display(), sha256 = %fingerprint, "generated a self-signed localhost certificate");
    Ok(CertFiles { cert, key, sha256_fingerprint: fingerprint })
}

/// The stored pair's fingerprint, if it can serve: parses, key matches, not near expiry.
fn reusable(cert: &Path, key: &Path) -> Result<String, String> {
    let chain = read_certificates(cert).map_err(|e| e.to_string())?;
    let private_key = read_private_key(key).map_err(|e| e.to_string())?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), private_key, &provider())
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    let (_, not_after) = validity(&chain[0]).ok_or("the certificate has no readable validity")?;
    if not_after < SystemTime::now() + LOCALHOST_RENEW_BEFORE {
        return Err("the certificate expires within 30 days".to_owned());
    }
    Ok(sha256_fingerprint(&chain[0]))
}
