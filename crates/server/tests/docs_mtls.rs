//! Every YAML example of docs/mtls.md loads through the code that reads `--policy-dir`, and
//! each adoption step gives the modes the guide promises.
//!
//! Each example starts with a `# policies/NAME.yaml` comment; the test knows every name, so
//! an example added to the guide without a check here fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use palisade_server::platform::load_policy_dir;
use palisade_tls::{
    CaOptions, ClientAuth, MtlsMode, PeerAuthSettings, PeerAuthentications, listener_client_auth,
};

const GUIDE: &str = include_str!("../../../docs/mtls.md");

/// The fenced YAML blocks of the guide, by the file name in their first line.
fn examples() -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut lines = GUIDE.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```yaml" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let name = body
            .first()
            .and_then(|l| l.strip_prefix("# policies/"))
            .unwrap_or_else(|| panic!("a YAML example without a `# policies/NAME.yaml` first line: {body:?}"))
            .to_owned();
        let previous = blocks.insert(name.clone(), body.join("\n") + "\n");
        assert!(previous.is_none(), "two examples named {name}");
    }
    blocks
}

/// Loads the named examples together as one policy directory, the way `serve` does.
fn policies(names: &[&str]) -> PeerAuthentications {
    let all = examples();
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::write(dir.path().join(name), &all[*name]).unwrap();
    }
    let docs = load_policy_dir(dir.path(), false).unwrap();
    assert_eq!(docs.peer_authentications.len(), names.len());
    PeerAuthentications::new(docs.peer_authentications, PeerAuthSettings::default())
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

const PORT: u16 = 8443;
const OTHER_PORT: u16 = 9443;

#[test]
fn every_yaml_example_loads_as_a_policy_file() {
    let all = examples();
    let names: BTreeSet<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "00-mesh-permissive.yaml",
            "00-mesh-strict.yaml",
            "10-fraud-strict.yaml",
            "20-legacy-scorer.yaml"
        ]),
        "the guide's examples changed: add checks for them here"
    );
    for (name, text) in &all {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let docs = load_policy_dir(dir.path(), false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(docs.peer_authentications.len(), 1, "{name}");
        assert!(docs.authorization_policies.is_empty() && docs.request_authentications.is_empty());
    }
}

#[test]
fn step_1_permissive_everywhere() {
    let p = policies(&["00-mesh-permissive.yaml"]);
    for namespace in ["fraud", "billing", "palisade-system"] {
        assert_eq!(p.mtls_mode_for(namespace, &labels("scorer"), PORT), MtlsMode::Permissive);
    }
    // With the CA as client roots, the listener asks for a certificate without requiring it.
    let home = tempfile::tempdir().unwrap();
    let roots = palisade_tls::Ca::init(home.path(), CaOptions::default()).unwrap().client_roots();
    let auth = listener_client_auth([MtlsMode::Permissive], MtlsMode::Permissive, Some(roots)).unwrap();
    assert!(matches!(auth, ClientAuth::Optional(_)));
}

#[test]
fn step_3_strict_for_one_namespace() {
    let p = policies(&["00-mesh-permissive.yaml", "10-fraud-strict.yaml"]);
    assert_eq!(p.mtls_mode_for("fraud", &labels("scorer"), PORT), MtlsMode::Strict);
    assert_eq!(p.mtls_mode_for("fraud", &BTreeMap::new(), OTHER_PORT), MtlsMode::Strict);
    assert_eq!(p.mtls_mode_for("billing", &labels("scorer"), PORT), MtlsMode::Permissive);

    // A port serving fraud and billing models: certificate optional, STRICT per request; a
    // port with only fraud models: certificate required at the handshake.
    let home = tempfile::tempdir().unwrap();
    let roots = palisade_tls::Ca::init(home.path(), CaOptions::default()).unwrap().client_roots();
    let mixed = [MtlsMode::Strict, MtlsMode::Permissive];
    assert!(matches!(
        listener_client_auth(mixed, MtlsMode::Permissive, Some(roots.clone())).unwrap(),
        ClientAuth::Optional(_)
    ));
    assert!(matches!(
        listener_client_auth([MtlsMode::Strict], MtlsMode::Permissive, Some(roots)).unwrap(),
        ClientAuth::Required(_)
    ));
}

#[test]
fn step_3b_a_port_exception_for_one_model() {
    let p = policies(&["00-mesh-permissive.yaml", "10-fraud-strict.yaml", "20-legacy-scorer.yaml"]);
    assert_eq!(p.mtls_mode_for("fraud", &labels("legacy-scorer"), PORT), MtlsMode::Permissive);
    assert_eq!(p.mtls_mode_for("fraud", &labels("legacy-scorer"), OTHER_PORT), MtlsMode::Strict);
    assert_eq!(p.mtls_mode_for("fraud", &labels("scorer"), PORT), MtlsMode::Strict);
    // The selector only applies in its own namespace.
    assert_eq!(p.mtls_mode_for("billing", &labels("legacy-scorer"), PORT), MtlsMode::Permissive);
}

#[test]
fn step_4_strict_everywhere() {
    let p = policies(&["00-mesh-strict.yaml", "10-fraud-strict.yaml"]);
    for namespace in ["fraud", "billing", "palisade-system"] {
        assert_eq!(p.mtls_mode_for(namespace, &labels("scorer"), PORT), MtlsMode::Strict, "{namespace}");
    }
    // An exception left in place still wins over the platform-wide policy (workload level).
    let p = policies(&["00-mesh-strict.yaml", "10-fraud-strict.yaml", "20-legacy-scorer.yaml"]);
    assert_eq!(p.mtls_mode_for("fraud", &labels("legacy-scorer"), PORT), MtlsMode::Permissive);
}
