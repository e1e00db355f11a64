//! The built-in CA: init, layout, workload certificates, adopting an intermediate.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_tls::{
    Ca, CaKind, CaOptions, ClientAuth, ClientRoots, IntermediateOptions, PeerIdentity, ServerTls,
    TrustAnchors, TrustDomain, WorkloadRequest,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use crate::common::*;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn unix(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t as u64)
}

#[test]
fn init_writes_the_documented_layout_and_never_overwrites() {
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::init(home.path(), CaOptions::default()).unwrap();
    let dir = home.path().join("ca");
    assert_eq!(ca.dir(), dir);
    assert_eq!(ca.kind(), CaKind::Root);
    assert_eq!(ca.trust_domain().as_str(), "cluster.local");
    for file in ["ca.yaml", "ca.pem", "issuer.pem", "issuer-key.pem"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("issuer-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);

    // The root: EC P-256, CA, ten years.
    let root = palisade_tls::read_certificates(&dir.join("ca.pem")).unwrap().remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&root).unwrap();
    assert!(cert.is_ca());
    assert_eq!(cert.public_key().algorithm.algorithm, x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY);
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!((lifetime - 3650 * 86400).abs() <= 120, "{lifetime}");

    let err = Ca::init(home.path(), CaOptions::default()).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let reopened = Ca::open(home.path()).unwrap();
    assert_eq!(reopened.trust_anchors().certificates(), ca.trust_anchors().certificates());
    assert!(
        Ca::open(tempfile::tempdir().unwrap().path()).unwrap_err().to_string().contains("palisade ca init")
    );
}

#[test]
fn the_trust_domain_and_lifetime_are_options() {
    let home = tempfile::tempdir().unwrap();
    let options = CaOptions {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        lifetime: Duration::from_secs(86400 * 30),
    };
    let ca = Ca::init(home.path(), options).unwrap();
    assert_eq!(Ca::open(home.path()).unwrap().trust_domain().as_str(), "example.org");
    let issued = ca.issue_workload(&WorkloadRequest::new("ns", "sa")).unwrap();
    assert_eq!(issued.identity.spiffe_id, "spiffe://example.org/ns/ns/sa/sa");
    let (_, root) = x509_parser::parse_x509_certificate(&ca.trust_anchors().certificates()[0]).unwrap();
    let life = root.validity().not_after.timestamp() - root.validity().not_before.timestamp();
    assert!((life - 30 * 86400).abs() <= 120);
    // A workload certificate never outlives its issuer.
    let mut long = WorkloadRequest::new("ns", "sa");
    long.lifetime = Duration::from_secs(86400 * 60);
    assert!(ca.issue_workload(&long).unwrap_err().to_string().contains("outlive"));
}

fn uri_and_dns_sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let san = cert.subject_alternative_name().unwrap().expect("SAN present");
    assert!(san.critical, "an empty subject makes the SAN critical");
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(u) => uris.push(u.to_string()),
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => dns.push(format!("ip:{ip:?}")),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (uris, dns)
}

#[test]
fn workload_certificates_carry_the_spiffe_id_and_last_24_hours() {
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::init(home.path(), CaOptions::default()).unwrap();
    let mut request = WorkloadRequest::new("fraud", "scorer");
    request.dns_names = vec!["scorer.fraud.svc".to_owned()];
    let issued = ca.issue_workload(&request).unwrap();
    assert_eq!(issued.identity.spiffe_id, "spiffe://cluster.local/ns/fraud/sa/scorer");
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"), "the key is redacted in Debug");

    let (_, cert) = x509_parser::parse_x509_certificate(&issued.cert_der).unwrap();
    let (uris, dns) = uri_and_dns_sans(&cert);
    assert_eq!(uris, ["spiffe://cluster.local/ns/fraud/sa/scorer"], "the SPIFFE id is the only URI SAN");
    assert_eq!(dns, ["scorer.fraud.svc"]);
    assert!(cert.subject().iter().next().is_none(), "empty subject, as Istio issues");
    assert!(!cert.is_ca());
    let usage = cert.key_usage().unwrap().unwrap();
    assert!(usage.critical && usage.value.digital_signature() && !usage.value.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    let now = SystemTime::now();
    let not_after = unix(cert.validity().not_after.timestamp());
    let not_before = unix(cert.validity().not_before.timestamp());
    let to_expiry = not_after.duration_since(now).unwrap();
    assert!(
        to_expiry > Duration::from_secs(24 * 3600 - 5) && to_expiry <= Duration::from_secs(24 * 3600),
        "{to_expiry:?}"
    );
    assert!(now.duration_since(not_before).unwrap() <= Duration::from_secs(62), "back-dated at most 60 s");
    assert_eq!((issued.not_before, issued.not_after), (not_before, not_after));
    assert_eq!(PeerIdentity::from_certificate(&issued.cert_der).unwrap(), issued.identity);

    // Files: cert.pem (chain), key.pem (0600), ca.pem.
    let out = home.path().join("out");
    let files = issued.write_to(&out).unwrap();
    assert_eq!(files.cert, out.join("cert.pem"));
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(
        std::fs::read_to_string(out.join("ca.pem")).unwrap(),
        std::fs::read_to_string(home.path().join("ca/ca.pem")).unwrap()
    );
    assert_eq!(
        palisade_tls::read_certificates(&files.cert).unwrap().len(),
        1,
        "a root CA adds no intermediate"
    );

    // An independent verifier agrees.
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(out.join("ca.pem"))
        .arg(&files.cert)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn names_that_cannot_be_identities_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::init(home.path(), CaOptions::default()).unwrap();
    for (ns, sa) in [("Fraud", "scorer"), ("fraud", "score/r"), ("", "x"), ("fraud", "")] {
        let err = ca.issue_workload(&WorkloadRequest::new(ns, sa)).unwrap_err();
        assert!(matches!(err, palisade_tls::TlsError::InvalidName { .. }), "{ns}/{sa}: {err}");
    }
    let mut bad_dns = WorkloadRequest::new("fraud", "scorer");
    bad_dns.dns_names = vec!["not a name".to_owned()];
    assert!(ca.issue_workload(&bad_dns).is_err());
    assert!(TrustDomain::new("Cluster.Local").is_err());
}

/// An organisation's PKI made with rcgen: root -> intermediate. Returns (dir, chain, key, roots).
fn org_pki(
    intermediate_is_ca: bool,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::default();
    root_params.distinguished_name.push(DnType::CommonName, "Example Org Root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).unwrap();
    let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut inter_params = CertificateParams::default();
    inter_params.distinguished_name.push(DnType::CommonName, "Example Org Mesh Intermediate");
    inter_params.is_ca =
        if intermediate_is_ca { IsCa::Ca(BasicConstraints::Constrained(0)) } else { IsCa::ExplicitNoCa };
    inter_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    inter_params.use_authority_key_identifier_extension = true;
    let inter = inter_params.signed_by(&inter_key, &root).unwrap();
    let chain = dir.path().join("intermediate.pem");
    let key = dir.path().join("intermediate-key.pem");
    let roots = dir.path().join("org-root.pem");
    std::fs::write(&chain, inter.pem()).unwrap();
    std::fs::write(&key, inter_key.serialize_pem()).unwrap();
    std::fs::write(&roots, root.pem()).unwrap();
    (dir, chain, key, roots)
}

#[tokio::test]
async fn an_organisations_intermediate_can_be_plugged_in() {
    let (org, chain, key, roots) = org_pki(true);
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::init_intermediate(
        home.path(),
        IntermediateOptions {
            cert_chain: chain.clone(),
            key: key.clone(),
            roots: roots.clone(),
            trust_domain: TrustDomain::default(),
        },
    )
    .unwrap();
    assert_eq!(ca.kind(), CaKind::Intermediate);
    assert_eq!(mode(&home.path().join("ca/issuer-key.pem")), 0o600);
    let ca = Ca::open(home.path()).unwrap();

    // Workload chains carry the intermediate; peers trust only the organisation's root.
    let issued = ca.issue_workload(&WorkloadRequest::new("fraud", "scorer")).unwrap();
    let files = issued.write_to(&home.path().join("out")).unwrap();
    let chain_certs = palisade_tls::read_certificates(&files.cert).unwrap();
    assert_eq!(chain_certs.len(), 2);
    assert_eq!(
        std::fs::read_to_string(home.path().join("out/ca.pem")).unwrap(),
        TrustAnchors::from_pem_file(&roots).unwrap().to_pem()
    );

    // A STRICT listener trusting the organisation's root accepts the workload.
    let mut server_req = WorkloadRequest::new("palisade-system", "palisade");
    server_req.dns_names = vec!["localhost".to_owned()];
    let server_files = ca.issue_workload(&server_req).unwrap().write_to(&home.path().join("server")).unwrap();
    let client_roots = ClientRoots::from_pem_file(&roots, TrustDomain::default()).unwrap();
    let server = serve(
        palisade_tls::server_config(ServerTls::new(
            server_files.source(),
            ClientAuth::Required(client_roots),
        ))
        .unwrap(),
    )
    .await;
    let client =
        client_config(&TrustAnchors::from_pem_file(&roots).unwrap(), Some((&files.cert, &files.key)));
    let (status, body) = get(server.addr, client, "/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("peer=spiffe://cluster.local/ns/fraud/sa/scorer") && body.contains("chain=2"),
        "{body}"
    );
    drop(org);
}

#[test]
fn an_unusable_intermediate_is_refused() {
    let options = |chain: &Path, key: &Path, roots: &Path| IntermediateOptions {
        cert_chain: chain.to_owned(),
        key: key.to_owned(),
        roots: roots.to_owned(),
        trust_domain: TrustDomain::default(),
    };
    // Not a CA.
    let (_org, chain, key, roots) = org_pki(false);
    let err = Ca::init_intermediate(tempfile::tempdir().unwrap().path(), options(&chain, &key, &roots))
        .unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    // Key of another certificate.
    let (_org, chain, _, roots) = org_pki(true);
    let (_org2, _, other_key, _) = org_pki(true);
    let err = Ca::init_intermediate(tempfile::tempdir().unwrap().path(), options(&chain, &other_key, &roots))
        .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    // Roots it does not chain to.
    let (_org3, _, _, foreign_roots) = org_pki(true);
    let (_org4, chain, key, _) = org_pki(true);
    let home = tempfile::tempdir().unwrap();
    let err = Ca::init_intermediate(home.path(), options(&chain, &key, &foreign_roots)).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(!home.path().join("ca/ca.yaml").exists(), "nothing is written for a refused intermediate");
}

#[test]
fn issued_chains_verify_with_webpki() {
    let home = tempfile::tempdir().unwrap();
    let ca = Ca::init(home.path(), CaOptions::default()).unwrap();
    let issued = ca.issue_workload(&WorkloadRequest::new("a", "b")).unwrap();
    let verifier = ClientAuth::Required(ca.client_roots()).verifier().unwrap();
    let leaf: CertificateDer<'_> = issued.cert_der.clone();
    assert!(verifier.verify_client_cert(&leaf, &[], rustls_pki_types::UnixTime::now()).is_ok());
}

/// A Secret volume as the kubelet writes it: the files in a hidden timestamped directory,
/// `..data` a link to it, each name a link through `..data`, group-readable (fsGroup).
fn secret_volume(from: &Path, to: &Path, key_mode: u32) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let data = to.join("..2026_12_07_15_00_00.123");
    std::fs::create_dir_all(&data).unwrap();
    for file in ["ca.yaml", "ca.pem", "issuer.pem", "issuer-key.pem"] {
        std::fs::copy(from.join(file), data.join(file)).unwrap();
        let mode = if file == "issuer-key.pem" { key_mode } else { 0o440 };
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        symlink(format!("..data/{file}"), to.join(file)).unwrap();
    }
    symlink("..2026_12_07_15_00_00.123", to.join("..data")).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o3777)).unwrap();
}

#[test]
fn a_ca_from_a_secret_volume_is_imported_private_and_issues_like_the_original() {
    let origin = tempfile::tempdir().unwrap();
    let original = Ca::init(origin.path(), CaOptions::default()).unwrap();
    let mounts = tempfile::tempdir().unwrap();
    let secret = mounts.path().join("secret");
    secret_volume(&origin.path().join("ca"), &secret, 0o440);

    // Opened where it is mounted, the key is refused (a link, group-readable)...
    let pod_home = mounts.path().join("home");
    std::fs::create_dir_all(&pod_home).unwrap();
    std::os::unix::fs::symlink(&secret, pod_home.join("ca")).unwrap();
    let err = Ca::open(&pod_home).unwrap_err().to_string();
    assert!(err.contains("symbolic link") || err.contains("group"), "{err}");
    std::fs::remove_file(pod_home.join("ca")).unwrap();

    // ...imported, it is a private copy that opens and issues from the same root.
    let ca = Ca::import(&pod_home, &secret).unwrap();
    let dir = pod_home.join("ca");
    assert_eq!(
        (mode(&dir), mode(&dir.join("issuer-key.pem")), mode(&dir.join("ca.pem"))),
        (0o700, 0o600, 0o644)
    );
    assert!(!std::fs::symlink_metadata(dir.join("issuer-key.pem")).unwrap().file_type().is_symlink());
    assert_eq!(ca.trust_anchors().certificates(), original.trust_anchors().certificates());
    let issued = ca.issue_workload(&WorkloadRequest::new("payments", "fraud")).unwrap();
    let verifier = ClientAuth::Required(original.client_roots()).verifier().unwrap();
    verifier.verify_client_cert(&issued.cert_der, &[], rustls_pki_types::UnixTime::now()).unwrap();

    // Again (an init container restarted): nothing changes. Another CA: refused.
    Ca::import(&pod_home, &secret).unwrap();
    let other = tempfile::tempdir().unwrap();
    Ca::init(other.path(), CaOptions::default()).unwrap();
    let other_secret = mounts.path().join("other-secret");
    secret_volume(&other.path().join("ca"), &other_secret, 0o440);
    let err = Ca::import(&pod_home, &other_secret).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn an_import_refuses_a_key_open_to_everyone_or_not_matching_its_certificate() {
    let origin = tempfile::tempdir().unwrap();
    Ca::init(origin.path(), CaOptions::default()).unwrap();
    let mounts = tempfile::tempdir().unwrap();
    let open = mounts.path().join("open");
    secret_volume(&origin.path().join("ca"), &open, 0o644);
    let home = mounts.path().join("home");
    let err = Ca::import(&home, &open).unwrap_err().to_string();
    assert!(err.contains("readable by everyone") && err.contains("defaultMode: 0400"), "{err}");
    assert!(!home.join("ca").exists());

    // Another CA's key with this CA's certificate: refused before anything is written.
    let stranger = tempfile::tempdir().unwrap();
    Ca::init(stranger.path(), CaOptions::default()).unwrap();
    let mixed = mounts.path().join("mixed-src");
    std::fs::create_dir_all(&mixed).unwrap();
    for file in ["ca.yaml", "ca.pem", "issuer.pem"] {
        std::fs::copy(origin.path().join("ca").join(file), mixed.join(file)).unwrap();
    }
    std::fs::copy(stranger.path().join("ca/issuer-key.pem"), mixed.join("issuer-key.pem")).unwrap();
    let err = Ca::import(&home, &mixed).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");
    assert!(!home.join("ca").exists());
}
