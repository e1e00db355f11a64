//! The built-in certificate authority and workload identities.
//!
//! `palisade ca init` creates a root (or adopts an organisation's intermediate) under
//! `$HOME/ca/`; `palisade cert issue` and a running Palisade issue short-lived workload
//! certificates (X.509-SVIDs) from it.
//!
//! # Layout of `$HOME/ca/` (directory mode 0700)
//!
//! | file              | mode | content |
//! |-------------------|------|---------|
//! | `ca.yaml`         | 0644 | `trustDomain` and `kind` (`root` or `intermediate`); written last, so its presence means the CA is complete |
//! | `ca.pem`          | 0644 | the trust anchors workloads and clients trust (the root; the organisation's roots for an intermediate) |
//! | `issuer.pem`      | 0644 | the issuing certificate, then any further intermediates up to (not including) the root |
//! | `issuer-key.pem`  | 0600 | the issuing certificate's private key |
//!
//! For a root CA, `issuer.pem` and `ca.pem` hold the same certificate.
//!
//! # Certificates
//!
//! - Root: EC P-256, self-signed, `CA:TRUE` (no path length limit, so an intermediate can be
//!   added below it later), key usage keyCertSign + cRLSign + digitalSignature, subject
//!   `O=Palisade, CN=Palisade root CA (<trust domain>)`, lifetime [`DEFAULT_CA_LIFETIME`]
//!   (ten years) unless [`CaOptions::lifetime`] says otherwise. Rotating it means a new
//!   `ca init` in a new home and distributing both roots during the overlap.
//! - Workload: EC P-256, empty subject, the SPIFFE id `spiffe://<td>/ns/<ns>/sa/<sa>` as
//!   the only URI SAN (critical, since the subject is empty), optional DNS/IP SANs,
//!   `CA:FALSE`, key usage digitalSignature, extended key usage serverAuth + clientAuth,
//!   random 128-bit serial, lifetime [`DEFAULT_WORKLOAD_LIFETIME`] (24 h). `notBefore` is
//!   back-dated by a tenth of the lifetime, at most 60 s, for clock skew.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::pem::{
    KeyPem, certificates_to_pem, parse_private_key, pem_section, read_certificates, read_limited, validity,
    write_atomic,
};
use crate::reload::CertFiles;
use crate::{ClientAuth, ClientRoots, PeerIdentity, TlsError, TrustAnchors, TrustDomain, provider};

/// The CA's directory under a Palisade home.
pub const CA_DIR: &str = "ca";
/// Default lifetime of a root created by [`Ca::init`]: ten years (3650 days).
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Default lifetime of a workload certificate: 24 hours.
pub const DEFAULT_WORKLOAD_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// File names written by [`IssuedCert::write_to`].
pub const WORKLOAD_CERT_FILE: &str = "cert.pem";
/// The workload key (mode 0600).
pub const WORKLOAD_KEY_FILE: &str = "key.pem";
/// The trust anchors for the workload's peers.
pub const WORKLOAD_CA_FILE: &str = "ca.pem";

const CONFIG_FILE: &str = "ca.yaml";
const ROOTS_FILE: &str = "ca.pem";
const ISSUER_FILE: &str = "issuer.pem";
const ISSUER_KEY_FILE: &str = "issuer-key.pem";

/// Options of a new root CA.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The trust domain of the identities it issues (default `cluster.local`).
    pub trust_domain: TrustDomain,
    /// Lifetime of the root (default [`DEFAULT_CA_LIFETIME`], ten years).
    pub lifetime: Duration,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions { trust_domain: TrustDomain::default(), lifetime: DEFAULT_CA_LIFETIME }
    }
}

/// An organisation's intermediate CA to issue from, instead of a Palisade root.
#[derive(Debug, Clone)]
pub struct IntermediateOptions {
    /// PEM: the intermediate certificate first, then any certificates between it and the root.
    pub cert_chain: PathBuf,
    /// PEM private key of the intermediate.
    pub key: PathBuf,
    /// PEM bundle of the organisation's root(s): what workloads will trust.
    pub roots: PathBuf,
    /// The trust domain of the identities it issues.
    pub trust_domain: TrustDomain,
}

/// Whether the CA is Palisade's own root or an adopted intermediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKind {
    /// A self-signed root created by [`Ca::init`].
    Root,
    /// An organisation's intermediate adopted by [`Ca::init_intermediate`].
    Intermediate,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaConfigFile {
    trust_domain: TrustDomain,
    kind: CaKind,
}

/// What to issue: the workload's identity, extra names, and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRequest {
    /// Kubernetes-style namespace (DNS label).
    pub namespace: String,
    /// Service account (DNS subdomain).
    pub service_account: String,
    /// Extra SANs: DNS names, or IP addresses (an entry that parses as one), so the
    /// certificate can also serve as a server certificate for those names.
    pub dns_names: Vec<String>,
    /// Lifetime (default [`DEFAULT_WORKLOAD_LIFETIME`]).
    pub lifetime: Duration,
}

impl WorkloadRequest {
    /// A 24-hour certificate for `namespace`/`service_account`, without extra names.
    pub fn new(namespace: impl Into<String>, service_account: impl Into<String>) -> WorkloadRequest {
        WorkloadRequest {
            namespace: namespace.into(),
            service_account: service_account.into(),
            dns_names: Vec::new(),
            lifetime: DEFAULT_WORKLOAD_LIFETIME,
        }
    }
}

/// A freshly issued workload certificate.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// PEM: the workload certificate, then the issuing chain (without the root).
    pub chain_pem: String,
    /// PEM PKCS#8 private key (redacted in `Debug`).
    pub key_pem: KeyPem,
    /// PEM trust anchors (the CA's `ca.pem`).
    pub ca_pem: String,
    /// The identity in the certificate.
    pub identity: PeerIdentity,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

impl IssuedCert {
    /// Writes `cert.pem`, `key.pem` (0600) and `ca.pem` into `dir`, each atomically, key
    /// first, so that a hot reloader watching the pair never serves a mismatched one.
    pub fn write_to(&self, dir: &Path) -> Result<CertFiles, TlsError> {
        let cert = dir.join(WORKLOAD_CERT_FILE);
        let key = dir.join(WORKLOAD_KEY_FILE);
        write_atomic(&key, self.key_pem.expose().as_bytes(), 0o600)?;
        write_atomic(&cert, self.chain_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(WORKLOAD_CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        Ok(CertFiles { cert, key, sha256_fingerprint: crate::pem::sha256_fingerprint(&self.cert_der) })
    }
}

/// The built-in CA: issues workload certificates of one trust domain.
pub struct Ca {
    dir: PathBuf,
    trust_domain: TrustDomain,
    kind: CaKind,
    issuer: Issuer<'static, KeyPair>,
    /// The issuing certificate and the intermediates above it (no self-signed root).
    chain: Vec<CertificateDer<'static>>,
    roots: TrustAnchors,
    issuer_not_after: SystemTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a root CA in `home/ca/`. Fails if that directory already holds a CA: a CA is
    /// never overwritten.
    pub fn init(home: &Path, options: CaOptions) -> Result<Ca, TlsError> {
        let dir = prepare_dir(home)?;
        if options.lifetime < Duration::from_secs(3600) {
            return Err(TlsError::Ca {
                path: dir,
                message: "a CA lifetime under one hour is refused".to_owned(),
            });
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Palisade");
        name.push(DnType::CommonName, format!("Palisade root CA ({})", options.trust_domain));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let (not_before, not_after) = validity_window(SystemTime::now(), options.lifetime);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        let root = params.self_signed(&key)?;
        write_atomic(
            &dir.join(ISSUER_KEY_FILE),
            pem_section("PRIVATE KEY", key.serialized_der()).as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(ISSUER_FILE), root.pem().as_bytes(), 0o644)?;
        write_atomic(&dir.join(ROOTS_FILE), root.pem().as_bytes(), 0o644)?;
        write_config(&dir, &CaConfigFile { trust_domain: options.trust_domain, kind: CaKind::Root })?;
        tracing::info!(dir = %dir.display(), "created a root CA");
        Ca::open(home)
    }

    /// Adopts an organisation's intermediate: checks that it is a CA, that the key is its
    /// key, and that a certificate it issues verifies up to the given roots (chain, validity,
    /// constraints), then copies it into `home/ca/`.
    pub fn init_intermediate(home: &Path, options: IntermediateOptions) -> Result<Ca, TlsError> {
        let dir = ca_dir(home);
        if dir.join(CONFIG_FILE).exists() {
            return Err(already(&dir));
        }
        let chain = read_certificates(&options.cert_chain)?;
        let key_bytes = read_limited(&options.key)?;
        let key_der = parse_private_key(&key_bytes, &options.key)?;
        let roots = TrustAnchors::from_pem_file(&options.roots)?;
        let chain: Vec<_> = chain.into_iter().filter(|c| !is_self_signed(c)).collect();
        let ca = Ca::assemble(
            dir.clone(),
            options.trust_domain.clone(),
            CaKind::Intermediate,
            chain.clone(),
            key_der,
            roots.clone(),
            &options.cert_chain,
        )?;
        // A trial issuance, verified exactly as a Palisade listener verifies peers.
        let trial = ca.issue_workload(&WorkloadRequest {
            lifetime: Duration::from_secs(300),
            ..WorkloadRequest::new("palisade-system", "ca-check")
        })?;
        let verifier =
            ClientAuth::Required(ClientRoots::new(roots.clone(), options.trust_domain.clone())).verifier()?;
        verifier.verify_client_cert(&trial.cert_der, &chain, UnixTime::now()).map_err(|e| {
            TlsError::cert(
                &options.cert_chain,
                format!(
                    "a certificate issued by this intermediate does not verify against {}: {e}",
                    options.roots.display()
                ),
            )
        })?;
        let dir = prepare_dir(home)?;
        write_atomic(&dir.join(ISSUER_KEY_FILE), &key_bytes, 0o600)?;
        write_atomic(&dir.join(ISSUER_FILE), certificates_to_pem(&chain).as_bytes(), 0o644)?;
        write_atomic(&dir.join(ROOTS_FILE), roots.to_pem().as_bytes(), 0o644)?;
        write_config(&dir, &CaConfigFile { trust_domain: options.trust_domain, kind: CaKind::Intermediate })?;
        tracing::info!(dir = %dir.display(), "adopted an intermediate CA");
        Ca::open(home)
    }

    /// Adopts a copy of a CA directory made by `palisade ca init` elsewhere, as a secret
    /// store hands it over (a Kubernetes Secret volume: each file a link into a hidden
    /// directory, group-readable under `fsGroup`), into `home/ca/` with this home's modes.
    /// The copy is checked as [`Ca::open`] checks a CA (the key is the issuer's, the issuer
    /// a CA, not expired) before anything is written. The source key may not be open to
    /// everyone (mode `o+r`). Importing the same CA again changes nothing; a different one
    /// is refused, as `init` never overwrites.
    pub fn import(home: &Path, from: &Path) -> Result<Ca, TlsError> {
        let source = |name: &str| from.join(name);
        let key_path = source(ISSUER_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)
                .map_err(|e| TlsError::io(&key_path, "cannot read", e))?
                .permissions()
                .mode();
            if mode & 0o004 != 0 {
                return Err(TlsError::Ca {
                    path: key_path,
                    message: format!(
                        "the CA key is readable by everyone (mode {:04o}); give the Secret volume `defaultMode: 0400` (or chmod o-r the file)",
                        mode & 0o777
                    ),
                });
            }
        }
        let files: Vec<(&str, Vec<u8>)> = [CONFIG_FILE, ROOTS_FILE, ISSUER_FILE, ISSUER_KEY_FILE]
            .into_iter()
            .map(|name| read_limited(&source(name)).map(|bytes| (name, bytes)))
            .collect::<Result<_, _>>()?;
        let bytes = |name: &str| {
            files.iter().find(|(n, _)| *n == name).map(|(_, b)| b.as_slice()).unwrap_or_default()
        };
        let config_path = source(CONFIG_FILE);
        let text = std::str::from_utf8(bytes(CONFIG_FILE))
            .map_err(|_| TlsError::Ca { path: config_path.clone(), message: "not UTF-8 text".to_owned() })?;
        let config: CaConfigFile = palisade_core::yaml::from_str(&config_path, text)?;
        let issuer_path = source(ISSUER_FILE);
        let chain = crate::pem::parse_certificates(bytes(ISSUER_FILE), &issuer_path)?;
        let chain: Vec<_> = match config.kind {
            CaKind::Root => chain,
            CaKind::Intermediate => chain.into_iter().filter(|c| !is_self_signed(c)).collect(),
        };
        let key_der = parse_private_key(bytes(ISSUER_KEY_FILE), &key_path)?;
        let roots_path = source(ROOTS_FILE);
        let roots =
            TrustAnchors::from_certificates(crate::pem::parse_certificates(bytes(ROOTS_FILE), &roots_path)?)?;
        Ca::assemble(from.to_owned(), config.trust_domain, config.kind, chain, key_der, roots, &issuer_path)?;

        let dir = ca_dir(home);
        if dir.join(CONFIG_FILE).exists() {
            let same =
                files.iter().all(|(name, wanted)| std::fs::read(dir.join(name)).is_ok_and(|b| &b == wanted));
            if !same {
                return Err(already(&dir));
            }
            return Ca::open(home);
        }
        let dir = prepare_dir(home)?;
        for (name, contents) in &files {
            let mode = if *name == ISSUER_KEY_FILE { 0o600 } else { 0o644 };
            // ca.yaml last: its presence means the CA is complete.
            if *name != CONFIG_FILE {
                write_atomic(&dir.join(name), contents, mode)?;
            }
        }
        write_atomic(&dir.join(CONFIG_FILE), bytes(CONFIG_FILE), 0o644)?;
        tracing::info!(dir = %dir.display(), from = %from.display(), "imported the CA");
        Ca::open(home)
    }

    /// Opens the CA in `home/ca/`.
    pub fn open(home: &Path) -> Result<Ca, TlsError> {
        let dir = ca_dir(home);
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            return Err(TlsError::Ca {
                path: dir,
                message: "no CA here; create one with `palisade ca init --home PATH`".to_owned(),
            });
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| TlsError::io(&config_path, "cannot read", e))?;
        let config: CaConfigFile = palisade_core::yaml::from_str(&config_path, &text)?;
        let key_path = dir.join(ISSUER_KEY_FILE);
        // Refused, as ssh refuses keys: a symbolic link, open to group or others, or in a
        // directory others can write.
        let key_pem = palisade_private_files::read_key(&key_path, "the CA key", crate::pem::MAX_PEM_BYTES)
            .map_err(|e| TlsError::Ca { path: key_path.clone(), message: e.to_string() })?
            .ok_or_else(|| TlsError::Ca {
                path: key_path.clone(),
                message: "the CA key is missing; restore it from a backup, or create a new CA".to_owned(),
            })?;
        let key_der = parse_private_key(&key_pem, &key_path)?;
        let issuer_path = dir.join(ISSUER_FILE);
        let chain = read_certificates(&issuer_path)?;
        let chain: Vec<_> = match config.kind {
            CaKind::Root => chain,
            CaKind::Intermediate => chain.into_iter().filter(|c| !is_self_signed(c)).collect(),
        };
        let roots = TrustAnchors::from_pem_file(&dir.join(ROOTS_FILE))?;
        Ca::assemble(dir, config.trust_domain, config.kind, chain, key_der, roots, &issuer_path)
    }

    /// Opens the CA in `home/ca/`, creating a root with `options` if there is none.
    pub fn open_or_init(home: &Path, options: CaOptions) -> Result<Ca, TlsError> {
        if ca_dir(home).join(CONFIG_FILE).exists() { Ca::open(home) } else { Ca::init(home, options) }
    }

    fn assemble(
        dir: PathBuf,
        trust_domain: TrustDomain,
        kind: CaKind,
        chain: Vec<CertificateDer<'static>>,
        key_der: PrivateKeyDer<'static>,
        roots: TrustAnchors,
        path: &Path,
    ) -> Result<Ca, TlsError> {
        let Some(issuing) = chain.first() else {
            return Err(TlsError::cert(path, "no issuing certificate (only self-signed roots?)"));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(issuing)
            .map_err(|_| TlsError::cert(path, "the issuing certificate does not parse"))?;
        if !parsed.is_ca() {
            return Err(TlsError::cert(
                path,
                "the issuing certificate is not a CA (basicConstraints CA:TRUE)",
            ));
        }
        if let Ok(Some(usage)) = parsed.key_usage()
            && !usage.value.key_cert_sign()
        {
            return Err(TlsError::cert(
                path,
                "the issuing certificate's key usage does not allow keyCertSign",
            ));
        }
        rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider()).map_err(
            |e| TlsError::cert(path, format!("the key does not belong to the issuing certificate: {e}")),
        )?;
        let key = KeyPair::try_from(&key_der)
            .map_err(|e| TlsError::cert(path, format!("unsupported issuer key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(issuing, key)?;
        let (_, issuer_not_after) = validity(issuing)
            .ok_or_else(|| TlsError::cert(path, "the issuing certificate has no validity"))?;
        if issuer_not_after <= SystemTime::now() {
            return Err(TlsError::cert(path, "the issuing certificate has expired"));
        }
        Ok(Ca { dir, trust_domain, kind, issuer, chain, roots, issuer_not_after })
    }

    /// The trust domain of the identities this CA issues.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Root or adopted intermediate.
    pub fn kind(&self) -> CaKind {
        self.kind
    }

    /// `home/ca/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trust anchors (`ca.pem`).
    pub fn trust_anchors(&self) -> &TrustAnchors {
        &self.roots
    }

    /// What listeners accept as client certificates: this CA's anchors and trust domain.
    pub fn client_roots(&self) -> ClientRoots {
        ClientRoots::new(self.roots.clone(), self.trust_domain.clone())
    }

    /// When the issuing certificate expires; no workload certificate outlives it.
    pub fn issuer_not_after(&self) -> SystemTime {
        self.issuer_not_after
    }

    /// Issues a workload certificate (see the module docs for its contents).
    pub fn issue_workload(&self, request: &WorkloadRequest) -> Result<IssuedCert, TlsError> {
        let identity = PeerIdentity::new(&self.trust_domain, &request.namespace, &request.service_account)?;
        if request.lifetime < Duration::from_secs(2) {
            return Err(TlsError::name("lifetime", &format!("{:?}", request.lifetime), "at least 2 seconds"));
        }
        let now = SystemTime::now();
        let (not_before, not_after) = validity_window(now, request.lifetime);
        if not_after > self.issuer_not_after {
            return Err(TlsError::Ca {
                path: self.dir.clone(),
                message: format!(
                    "a certificate valid for {} s would outlive the issuing CA certificate",
                    request.lifetime.as_secs()
                ),
            });
        }
        let mut sans = vec![SanType::URI(identity.spiffe_id.as_str().try_into()?)];
        for name in &request.dns_names {
            if let Ok(ip) = name.parse::<std::net::IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else {
                rustls_pki_types::DnsName::try_from(name.as_str())
                    .map_err(|_| TlsError::name("DNS name", name, "not a valid DNS name"))?;
                sans.push(SanType::DnsName(name.as_str().try_into()?));
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain_pem = cert.pem();
        chain_pem.push_str(&certificates_to_pem(
            &self.chain.iter().filter(|c| !is_self_signed(c)).cloned().collect::<Vec<_>>(),
        ));
        Ok(IssuedCert {
            chain_pem,
            key_pem: KeyPem::new(pem_section("PRIVATE KEY", key.serialized_der())),
            ca_pem: self.roots.to_pem(),
            identity,
            not_before,
            not_after,
            cert_der: cert.der().clone(),
        })
    }
}

/// `notBefore`/`notAfter` in whole seconds: back-dated by a tenth of the lifetime (at most
/// 60 s) for clock skew.
fn validity_window(now: SystemTime, lifetime: Duration) -> (SystemTime, SystemTime) {
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let backdate = (lifetime / 10).min(Duration::from_secs(60)).as_secs();
    let not_before = UNIX_EPOCH + Duration::from_secs(now_secs.saturating_sub(backdate));
    let not_after = UNIX_EPOCH + Duration::from_secs(now_secs) + Duration::from_secs(lifetime.as_secs());
    (not_before, not_after)
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TlsError::Mtls("the system random number generator failed".to_owned()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_dir(home: &Path) -> PathBuf {
    home.join(CA_DIR)
}

fn already(dir: &Path) -> TlsError {
    TlsError::Ca {
        path: dir.to_owned(),
        message: "a CA already exists here; it is never overwritten (move it away to start over)".to_owned(),
    }
}

fn prepare_dir(home: &Path) -> Result<PathBuf, TlsError> {
    let dir = ca_dir(home);
    if dir.join(CONFIG_FILE).exists() {
        return Err(already(&dir));
    }
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::io(&dir, "cannot create the directory", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TlsError::io(&dir, "cannot set permissions", e))?;
    }
    Ok(dir)
}

fn write_config(dir: &Path, config: &CaConfigFile) -> Result<(), TlsError> {
    let text = format!(
        "# Palisade certificate authority (see the palisade-tls crate docs for this directory's layout).\n\
         trustDomain: {}\nkind: {}\n",
        config.trust_domain,
        match config.kind {
            CaKind::Root => "root",
            CaKind::Intermediate => "intermediate",
        }
    );
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes(), 0o644)
}

fn is_self_signed(cert: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(cert)
        .map(|(_, c)| c.tbs_certificate.subject.as_raw() == c.tbs_certificate.issuer.as_raw())
        .unwrap_or(false)
}
