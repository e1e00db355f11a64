//! Workload identities: SPIFFE ids `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
//! carried as the only URI SAN of an X.509-SVID, as Istio issues them.

use std::fmt;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_parser::extensions::GeneralName;

use crate::TlsError;

/// Longest SPIFFE id accepted (the SPIFFE spec's limit).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;

/// A SPIFFE trust domain such as `cluster.local`: 1-255 characters of lower-case letters,
/// digits, `.`, `-` and `_` (the SPIFFE spec's alphabet).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Istio's and Palisade's default trust domain.
    pub const DEFAULT: &'static str = "cluster.local";

    /// Parses a trust domain.
    pub fn new(value: &str) -> Result<TrustDomain, TlsError> {
        if value.is_empty() || value.len() > 255 {
            return Err(TlsError::name("trust domain", value, "it must have 1-255 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(TlsError::name(
                "trust domain",
                value,
                "only lower-case letters, digits, '.', '-' and '_' are allowed",
            ));
        }
        Ok(TrustDomain(value.to_owned()))
    }

    /// The trust domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TrustDomain {
    fn default() -> Self {
        TrustDomain(TrustDomain::DEFAULT.to_owned())
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.0)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TrustDomain::new(&text).map_err(serde::de::Error::custom)
    }
}

/// The verified identity of an mTLS peer, read from its certificate's SPIFFE id.
///
/// Only a certificate that the listener's verifier accepted (chain to a configured trust
/// anchor, in validity, client-auth usage, a SPIFFE id of an accepted trust domain) yields
/// one, so holding a `PeerIdentity` means the peer proved it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// The full id: `spiffe://cluster.local/ns/fraud/sa/scorer`.
    pub spiffe_id: String,
    /// `cluster.local`.
    pub trust_domain: String,
    /// `fraud`.
    pub namespace: String,
    /// `scorer`.
    pub service_account: String,
}

impl PeerIdentity {
    /// Builds the identity of a workload; the names are checked as Kubernetes checks them
    /// (namespace: DNS label; service account: DNS subdomain).
    pub fn new(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<PeerIdentity, TlsError> {
        check_dns_label("namespace", namespace)?;
        check_dns_subdomain("service account", service_account)?;
        Ok(PeerIdentity {
            spiffe_id: format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"),
            trust_domain: trust_domain.as_str().to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }

    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>`, following the SPIFFE id rules (scheme and trust
    /// domain in lower case, no port, user info, query, fragment, empty, `.` or `..` segments)
    /// and Istio's path shape.
    pub fn parse_spiffe_id(id: &str) -> Result<PeerIdentity, TlsError> {
        let bad = |reason: &str| TlsError::Identity(format!("{id:?} is not a workload SPIFFE id: {reason}"));
        if id.len() > MAX_SPIFFE_ID_BYTES {
            return Err(TlsError::Identity(format!("SPIFFE id longer than {MAX_SPIFFE_ID_BYTES} bytes")));
        }
        let rest = id.strip_prefix("spiffe://").ok_or_else(|| bad("the scheme must be spiffe://"))?;
        let (td, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
        let trust_domain = TrustDomain::new(td).map_err(|_| bad("invalid trust domain"))?;
        let segments: Vec<&str> = path.split('/').collect();
        for segment in &segments {
            let valid = !segment.is_empty()
                && *segment != "."
                && *segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !valid {
                return Err(bad("path segments are non-empty [A-Za-z0-9._-], and not . or .."));
            }
        }
        match segments.as_slice() {
            ["ns", namespace, "sa", service_account] => Ok(PeerIdentity {
                spiffe_id: id.to_owned(),
                trust_domain: trust_domain.0,
                namespace: (*namespace).to_owned(),
                service_account: (*service_account).to_owned(),
            }),
            _ => Err(bad("the path must be /ns/<namespace>/sa/<service-account>")),
        }
    }

    /// Reads the identity of a certificate: it must carry exactly one URI SAN (X.509-SVID
    /// rule), and that URI must be a workload SPIFFE id. Nothing else is checked here: the
    /// chain is the verifier's business.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|_| TlsError::Identity("the certificate does not parse".to_owned()))?;
        let san = parsed
            .subject_alternative_name()
            .map_err(|_| TlsError::Identity("malformed subjectAltName extension".to_owned()))?
            .ok_or_else(|| TlsError::Identity("the certificate has no subjectAltName".to_owned()))?;
        let uris: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        match uris.as_slice() {
            [uri] => PeerIdentity::parse_spiffe_id(uri),
            [] => Err(TlsError::Identity("the certificate has no URI SAN".to_owned())),
            _ => Err(TlsError::Identity(format!(
                "the certificate has {} URI SANs; an X.509-SVID has exactly one",
                uris.len()
            ))),
        }
    }

    /// The identity as Istio's `principals` and `source.principal` write it:
    /// `cluster.local/ns/fraud/sa/scorer` (the SPIFFE id without its scheme).
    pub fn principal(&self) -> &str {
        self.spiffe_id.strip_prefix("spiffe://").unwrap_or(&self.spiffe_id)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_id)
    }
}

/// A DNS-1123 label: what Kubernetes requires of a namespace.
pub(crate) fn check_dns_label(what: &'static str, value: &str) -> Result<(), TlsError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(TlsError::name(
            what,
            value,
            "it must be a DNS label: 1-63 lower-case letters, digits and '-', alphanumeric at both ends",
        ))
    }
}

/// A DNS-1123 subdomain: what Kubernetes requires of a service account name.
pub(crate) fn check_dns_subdomain(what: &'static str, value: &str) -> Result<(), TlsError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.split('.').all(|p| !p.is_empty() && !p.starts_with('-') && !p.ends_with('-'));
    if ok {
        Ok(())
    } else {
        Err(TlsError::name(
            what,
            value,
            "it must be a DNS subdomain: lower-case letters, digits, '-' and '.', alphanumeric at both ends",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        let id = PeerIdentity::parse_spiffe_id("spiffe://cluster.local/ns/fraud/sa/scorer").unwrap();
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.namespace, "fraud");
        assert_eq!(id.service_account, "scorer");
        assert_eq!(id.principal(), "cluster.local/ns/fraud/sa/scorer");
        for bad in [
            "spiffe://cluster.local/ns/fraud/sa/",
            "spiffe://cluster.local/ns/fraud",
            "spiffe://cluster.local/ns/fraud/sa/x/extra",
            "spiffe://Cluster.local/ns/a/sa/b",
            "SPIFFE://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local:8443/ns/a/sa/b",
            "spiffe://user@cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/ns/a/sa/b#f",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local//ns/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b/",
        ] {
            assert!(PeerIdentity::parse_spiffe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(TrustDomain::new("example.org").is_ok());
        assert!(TrustDomain::new("Example.org").is_err());
        assert!(TrustDomain::new("").is_err());
        assert!(PeerIdentity::new(&TrustDomain::default(), "ns-1", "sa.x").is_ok());
        assert!(PeerIdentity::new(&TrustDomain::default(), "ns.1", "sa").is_err());
        assert!(PeerIdentity::new(&TrustDomain::default(), "ns", "-sa").is_err());
    }
}
