//! The embedded default: a self-signed localhost certificate, generated once and reused.

use std::net::IpAddr;

use palisade_tls::{ClientAuth, ServerTls, TrustAnchors, self_signed_localhost, sha256_fingerprint};
use x509_parser::extensions::GeneralName;

use crate::common::*;

#[tokio::test]
async fn generated_once_reused_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed_localhost(dir.path()).unwrap();
    assert!(files.cert.exists() && files.key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // SANs: localhost, 127.0.0.1, ::1.
    let der = palisade_tls::read_certificates(&files.cert).unwrap().remove(0);
    assert_eq!(sha256_fingerprint(&der), files.sha256_fingerprint);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let mut names = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => names.push(d.to_string()),
            GeneralName::IPAddress(ip) => {
                let ip: IpAddr = match ip.len() {
                    4 => <[u8; 4]>::try_from(*ip).unwrap().into(),
                    _ => <[u8; 16]>::try_from(*ip).unwrap().into(),
                };
                names.push(ip.to_string());
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
    assert!(!cert.is_ca());

    // Reused on the next start: same files, same fingerprint.
    let before = std::fs::read(&files.cert).unwrap();
    let again = self_signed_localhost(dir.path()).unwrap();
    assert_eq!(again, files);
    assert_eq!(std::fs::read(&again.cert).unwrap(), before);

    // Served: a client trusting exactly this certificate connects by name and by address.
    let server =
        serve(palisade_tls::server_config(ServerTls::new(files.source(), ClientAuth::None)).unwrap()).await;
    let client = client_config(&TrustAnchors::from_pem_file(&files.cert).unwrap(), None);
    for name in ["localhost", "127.0.0.1"] {
        let mut stream = connect(server.addr, client.clone(), name).await.unwrap();
        assert_eq!(sha256_fingerprint(&server_leaf(&stream)), files.sha256_fingerprint);
        assert_eq!(get_on(&mut stream, "/").await.unwrap(), (200, "ok".to_owned()));
    }
}

#[test]
fn an_unusable_stored_pair_is_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed_localhost(dir.path()).unwrap();
    std::fs::write(&first.key, "garbage").unwrap();
    let second = self_signed_localhost(dir.path()).unwrap();
    assert_ne!(first.sha256_fingerprint, second.sha256_fingerprint);
    assert!(palisade_tls::read_private_key(&second.key).is_ok());
}

#[test]
fn the_fingerprint_is_what_openssl_prints() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed_localhost(dir.path()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&files.cert)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // "sha256 Fingerprint=AB:CD:..."
    let printed = text.trim().split_once('=').unwrap().1;
    assert_eq!(printed, files.sha256_fingerprint);
}
