//! `PeerAuthentication`: Istio's examples parse unchanged, errors name file:line:field, and
//! modes resolve with Istio's precedence.

use std::collections::BTreeMap;
use std::path::Path;

use palisade_tls::{
    ClientAuth, MtlsMode, MtlsRequired, PeerAuthSettings, PeerAuthentication, PeerAuthentications,
    PeerIdentity, TlsError, TrustDomain, admit, listener_client_auth, parse_peer_authentication,
};

use crate::common::Pki;

fn parse(text: &str) -> PeerAuthentication {
    parse_peer_authentication(text, Path::new("pa.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn error(text: &str) -> String {
    match parse_peer_authentication(text, Path::new("policies/pa.yaml")) {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The examples of Istio's PeerAuthentication reference, as written there.
const ISTIO_EXAMPLES: &[&str] = &[
    // Policy to allow mTLS traffic for all workloads under namespace foo.
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mode: STRICT
",
    // Policy to allow both mTLS and plaintext traffic for all workloads under namespace foo,
    // but require mTLS for workload finance.
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mode: PERMISSIVE
",
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: finance
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
",
    // Policy that enables strict mTLS for all finance workloads, but leaves the port 8080
    // to plaintext.
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
  portLevelMtls:
    8080:
      mode: DISABLE
",
    // Policy that inherits mTLS mode from namespace (or mesh) settings, and disables mTLS
    // for workload port 8080.
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  selector:
    matchLabels:
      app: finance
  portLevelMtls:
    8080:
      mode: DISABLE
",
    // Mesh-wide STRICT, v1beta1, as kubectl exports it.
    "apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{}'
  creationTimestamp: \"2024-03-01T10:00:00Z\"
  generation: 1
  name: default
  namespace: palisade-system
  resourceVersion: \"4242\"
  uid: 6f1c2d9e-0000-4000-8000-000000000000
spec:
  mtls:
    mode: STRICT
status: {}
",
];

#[test]
fn istios_examples_parse_unchanged() {
    for text in ISTIO_EXAMPLES {
        parse(text);
    }
    let port_level = parse(ISTIO_EXAMPLES[3]);
    assert_eq!(port_level.namespace, "foo");
    assert_eq!(port_level.selector, labels(&[("app", "finance")]));
    assert_eq!(port_level.mode, Some(MtlsMode::Strict));
    assert_eq!(port_level.port_level, BTreeMap::from([(8080, Some(MtlsMode::Disable))]));
    let inherit = parse(ISTIO_EXAMPLES[4]);
    assert_eq!(inherit.mode, None, "no mtls: UNSET, inherited");
    let mesh = parse(ISTIO_EXAMPLES[5]);
    assert_eq!(mesh.api_version, "security.istio.io/v1beta1");
    assert!(mesh.creation_timestamp.is_some());
    // Ports may be written as strings (JSON-style keys) and modes as UNSET.
    let quoted = parse(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: q, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: UNSET}
  portLevelMtls:
    \"9090\": {mode: PERMISSIVE}
    8443: {}
",
    );
    assert_eq!(quoted.port_level, BTreeMap::from([(8443, None), (9090, Some(MtlsMode::Permissive))]));
    // An empty spec is valid (and inherits everything).
    assert_eq!(parse("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: e, namespace: foo}\n").mode, None);
}

#[test]
fn errors_name_the_file_line_and_field() {
    let typo = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
spec:
  mtls:
    mod: STRICT
";
    let err = error(typo);
    assert!(err.starts_with("policies/pa.yaml:8:"), "{err}");
    assert!(err.contains("field `spec.mtls.mod`: unknown field `mod`, expected `mode`"), "{err}");
    assert!(err.contains("check the spelling against Istio's PeerAuthentication reference"), "{err}");

    let lower_case = typo.replace("mod: STRICT", "mode: strict");
    let err = error(&lower_case);
    assert!(err.starts_with("policies/pa.yaml:8:"), "{err}");
    assert!(err.contains("field `spec.mtls.mode`: unknown mTLS mode `strict`"), "{err}");

    let unknown_spec = typo.replace("  mtls:\n    mod: STRICT\n", "  mtlsMode: STRICT\n");
    let err = error(&unknown_spec);
    assert!(
        err.starts_with("policies/pa.yaml:7:")
            && err.contains("field `spec.mtlsMode`: unknown field `mtlsMode`"),
        "{err}"
    );

    let namespace_wide_ports = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
";
    let err = error(namespace_wide_ports);
    assert!(
        err.contains("field `spec`: mesh/namespace peer authentication cannot have port level mTLS"),
        "{err}"
    );

    let port_zero = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    0: {mode: DISABLE}
";
    let err = error(port_zero);
    assert!(
        err.starts_with("policies/pa.yaml:7:") && err.contains("port must be in range 1..65535"),
        "{err}"
    );

    let empty_ports =
        port_zero.replace("    0: {mode: DISABLE}\n", "").replace("portLevelMtls:", "portLevelMtls: {}");
    assert!(error(&empty_ports).contains("must have at least one element"));

    let wildcard = port_zero.replace("app: a", "app: '*'");
    assert!(error(&wildcard).contains("wildcard is not supported in selector"));

    let no_namespace =
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {}\n";
    let err = error(no_namespace);
    assert!(err.contains("field `metadata`") && err.contains("missing field `namespace`"), "{err}");

    let alpha = "apiVersion: authentication.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: b}\n";
    let err = error(alpha);
    assert!(err.starts_with("policies/pa.yaml:1:") && err.contains("unsupported apiVersion"), "{err}");

    let kind =
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: b}\n";
    assert!(error(kind).contains("field `kind`"));

    let time = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: b, creationTimestamp: yesterday}\n";
    assert!(error(time).contains("not an RFC 3339 timestamp"));

    assert!(matches!(
        parse_peer_authentication("  \n", Path::new("x.yaml")),
        Err(TlsError::Config(e)) if e.message.contains("empty")
    ));
}

#[test]
fn documents_of_a_multi_document_file_keep_their_line_numbers() {
    let file = format!("{}---\n{}", ISTIO_EXAMPLES[0], ISTIO_EXAMPLES[2].replace("STRICT", "STRIKT"));
    let docs = palisade_core::yaml::documents(Path::new("all.yaml"), &file).unwrap();
    assert_eq!(docs.len(), 2);
    parse(docs[0].text);
    let err = parse_peer_authentication(docs[1], Path::new("all.yaml")).unwrap_err().to_string();
    // Eight lines of the first document, the separator, then line 11 of the second.
    assert!(err.starts_with("all.yaml:20:"), "{err}");
}

fn policy(namespace: &str, name: &str, yaml_spec: &str) -> PeerAuthentication {
    parse(&format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{yaml_spec}"
    ))
}

fn with_time(mut p: PeerAuthentication, rfc3339: &str) -> PeerAuthentication {
    p.creation_timestamp =
        Some(time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap());
    p
}

#[test]
fn resolution_follows_istios_precedence() {
    let settings = PeerAuthSettings::default();
    let finance = labels(&[("app", "finance"), ("version", "v1")]);
    let other = labels(&[("app", "other")]);

    // Nothing: the platform default (PERMISSIVE, as Istio).
    let none = PeerAuthentications::new(vec![], settings.clone());
    assert_eq!(none.mtls_mode_for("foo", &finance, 8443), MtlsMode::Permissive);
    let strict_default = PeerAuthentications::new(
        vec![],
        PeerAuthSettings { default_mode: MtlsMode::Strict, ..PeerAuthSettings::default() },
    );
    assert_eq!(strict_default.mtls_mode_for("foo", &finance, 8443), MtlsMode::Strict);

    let mesh = policy("palisade-system", "default", "  mtls: {mode: STRICT}\n");
    let ns = policy("foo", "default", "  mtls: {mode: PERMISSIVE}\n");
    let ns_unset = policy("foo", "default", "  mtls: {mode: UNSET}\n");
    let workload = policy(
        "foo",
        "finance",
        "  selector: {matchLabels: {app: finance}}\n  mtls: {mode: DISABLE}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    9090: {mode: UNSET}\n",
    );
    let workload_inherit = policy(
        "foo",
        "finance",
        "  selector: {matchLabels: {app: finance}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
    );

    // Platform-wide < namespace.
    let set = PeerAuthentications::new(vec![mesh.clone()], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);
    assert_eq!(set.mtls_mode_for("palisade-system", &finance, 1), MtlsMode::Strict);
    let set = PeerAuthentications::new(vec![mesh.clone(), ns.clone()], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Permissive);
    assert_eq!(
        set.mtls_mode_for("bar", &finance, 1),
        MtlsMode::Strict,
        "other namespaces keep the platform mode"
    );
    // UNSET inherits.
    let set = PeerAuthentications::new(vec![mesh.clone(), ns_unset], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);

    // Namespace < selector < port.
    let set = PeerAuthentications::new(vec![mesh.clone(), ns.clone(), workload.clone()], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 8443), MtlsMode::Disable);
    assert_eq!(set.mtls_mode_for("foo", &finance, 8080), MtlsMode::Strict);
    assert_eq!(
        set.mtls_mode_for("foo", &finance, 9090),
        MtlsMode::Disable,
        "UNSET port: the workload's mode"
    );
    assert_eq!(set.mtls_mode_for("foo", &other, 8080), MtlsMode::Permissive, "selector does not match");
    let effective = set.effective("foo", &finance);
    assert_eq!(effective.mode, MtlsMode::Disable);
    assert_eq!(effective.per_port, BTreeMap::from([(8080, MtlsMode::Strict), (9090, MtlsMode::Disable)]));

    // A selector policy without mtls inherits the namespace's, only its port differs.
    let set = PeerAuthentications::new(vec![mesh.clone(), ns.clone(), workload_inherit], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 8443), MtlsMode::Permissive);
    assert_eq!(set.mtls_mode_for("foo", &finance, 8080), MtlsMode::Disable);

    // A selector in the root namespace never applies (Istio ignores it too).
    let root_selector = policy(
        "palisade-system",
        "finance",
        "  selector: {matchLabels: {app: finance}}\n  mtls: {mode: DISABLE}\n",
    );
    let set = PeerAuthentications::new(vec![mesh.clone(), root_selector], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);
    assert_eq!(set.mtls_mode_for("palisade-system", &finance, 1), MtlsMode::Strict);

    // Policies of another namespace never apply.
    let set = PeerAuthentications::new(
        vec![policy("bar", "default", "  mtls: {mode: DISABLE}\n")],
        settings.clone(),
    );
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Permissive);

    // The root namespace is a setting.
    let custom =
        PeerAuthSettings { root_namespace: "istio-system".to_owned(), default_mode: MtlsMode::Permissive };
    let set =
        PeerAuthentications::new(vec![policy("istio-system", "default", "  mtls: {mode: STRICT}\n")], custom);
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);
}

#[test]
fn the_oldest_of_competing_policies_wins() {
    let settings = PeerAuthSettings::default();
    let finance = labels(&[("app", "finance"), ("tier", "gold")]);
    let newer = with_time(policy("foo", "a-newer", "  mtls: {mode: DISABLE}\n"), "2024-05-01T00:00:00Z");
    let older = with_time(policy("foo", "z-older", "  mtls: {mode: STRICT}\n"), "2023-05-01T00:00:00Z");
    let set = PeerAuthentications::new(vec![newer.clone(), older.clone()], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);

    let by_app = with_time(
        policy("foo", "by-app", "  selector: {matchLabels: {app: finance}}\n  mtls: {mode: DISABLE}\n"),
        "2024-01-01T00:00:00Z",
    );
    let by_tier = with_time(
        policy("foo", "by-tier", "  selector: {matchLabels: {tier: gold}}\n  mtls: {mode: STRICT}\n"),
        "2022-01-01T00:00:00Z",
    );
    let set = PeerAuthentications::new(vec![by_app.clone(), by_tier], settings.clone());
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Strict);

    // Same time (or none): the smaller name.
    let a = policy("foo", "a", "  mtls: {mode: DISABLE}\n");
    let b = policy("foo", "b", "  mtls: {mode: STRICT}\n");
    let set = PeerAuthentications::new(vec![b, a], settings);
    assert_eq!(set.mtls_mode_for("foo", &finance, 1), MtlsMode::Disable);
}

#[test]
fn the_listener_asks_for_what_its_models_need() {
    let pki = Pki::new();
    let roots = || Some(pki.ca.client_roots());
    use MtlsMode::*;
    let kind = |auth: ClientAuth| match auth {
        ClientAuth::None => "none",
        ClientAuth::Optional(_) => "optional",
        ClientAuth::Required(_) => "required",
    };
    let cases: &[(&[MtlsMode], &str)] = &[
        (&[Strict, Strict], "required"),
        (&[Strict, Permissive], "optional"),
        (&[Strict, Disable], "optional"),
        (&[Permissive], "optional"),
        (&[Disable, Disable], "none"),
        (&[], "optional"), // no model yet: the default mode (PERMISSIVE)
    ];
    for (modes, expected) in cases {
        let auth = listener_client_auth(modes.iter().copied(), Permissive, roots()).unwrap();
        assert_eq!(kind(auth), *expected, "{modes:?}");
    }
    assert_eq!(kind(listener_client_auth([], Strict, roots()).unwrap()), "required");
    // Without a client CA: PERMISSIVE degrades to no request; STRICT is a configuration error.
    assert_eq!(kind(listener_client_auth([Permissive, Disable], Permissive, None).unwrap()), "none");
    let err = listener_client_auth([Strict, Permissive], Permissive, None).unwrap_err().to_string();
    assert!(err.contains("STRICT") && err.contains("client CA"), "{err}");
}

#[test]
fn requests_are_admitted_per_model_mode() {
    let peer = PeerIdentity::new(&TrustDomain::default(), "fraud", "scorer").unwrap();
    assert_eq!(admit(MtlsMode::Strict, Some(&peer)), Ok(Some(&peer)));
    assert_eq!(admit(MtlsMode::Strict, None), Err(MtlsRequired));
    assert_eq!(admit(MtlsMode::Permissive, Some(&peer)), Ok(Some(&peer)));
    assert_eq!(admit(MtlsMode::Permissive, None), Ok(None));
    assert_eq!(admit(MtlsMode::Disable, Some(&peer)), Ok(None));
}
