//! Property tests: the parser and the evaluator never panic on hostile input, and path
//! normalization is idempotent and yields a canonical path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use palisade_policy::{Headers, PolicySet, Request, normalize_path, parse_policy};
use proptest::prelude::*;
use serde_json::{Map, Value};

const SEED: &str = r#"kind: AuthorizationPolicy
apiVersion: security.istio.io/v1beta1
metadata:
  name: allow-to-example-model
  namespace: example-model
  annotations: {istio.io/dry-run: "false"}
spec:
  action: ALLOW
  selector: {matchLabels: {app: iris}}
  rules:
    - when:
        - key: "request.auth.claims[email]"
          values: [person_a@company.com, "*@company.com"]
        - key: request.headers[x-team]
          notValues: ["blue*"]
    - to:
        - operation:
            ports: ["443"]
            paths: ["/v2/{*}/x/{**}", "/public*"]
      from:
        - source:
            ipBlocks: ["10.0.0.0/8"]
            namespaces: ["ns-*"]
"#;

/// YAML-ish text: structure characters, keys Istio knows, and noise.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(", ".to_owned()),
        Just("\"".to_owned()),
        Just("*".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("!!str ".to_owned()),
        Just("---\n".to_owned()),
        Just("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: n}\n".to_owned()),
        prop::sample::select(vec![
            "spec", "rules", "from", "to", "when", "source", "operation", "key", "values", "notValues",
            "principals", "ipBlocks", "ports", "paths", "hosts", "action", "DENY", "CUSTOM", "provider",
            "selector", "matchLabels", "request.auth.claims[a][b]", "source.ip", "{**}", "{*}", "443",
            "1.2.3.4/33", "::1/128", "null", "~", "true", "-1", "1e99",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// The seed document with a few bytes replaced, inserted or deleted.
fn mutated_seed() -> impl Strategy<Value = String> {
    prop::collection::vec((0..SEED.len(), 0u8..3, any::<char>()), 1..6).prop_map(|edits| {
        let mut text: Vec<char> = SEED.chars().collect();
        for (at, op, c) in edits {
            let at = at.min(text.len().saturating_sub(1));
            match op {
                0 => text[at] = c,
                1 => text.insert(at, c),
                _ => {
                    text.remove(at);
                }
            }
        }
        text.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(text in prop_oneof![yamlish(), mutated_seed()]) {
        let _ = parse_policy(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn normalization_is_idempotent_and_canonical(raw in path_like()) {
        if let Ok(once) = normalize_path(&raw) {
            prop_assert_eq!(normalize_path(&once), Ok(once.clone()));
            prop_assert!(once.starts_with('/'));
            prop_assert!(once.is_ascii());
            prop_assert!(!once.contains("//"), "{}", once);
            prop_assert!(!once.contains('\\'));
            prop_assert!(!once.contains('?'));
            for segment in once.split('/') {
                prop_assert!(segment != "." && segment != "..", "{}", once);
            }
            let lower = once.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"), "{}", once);
        }
    }

    #[test]
    fn evaluator_never_panics(req in request()) {
        let set = policy_set();
        let decision = set.evaluate(&req);
        // Deny unless something explicitly allowed.
        if decision.allowed {
            let explicit = matches!(
                decision.reason,
                palisade_policy::DecisionReason::AllowedByPolicy { .. }
                    | palisade_policy::DecisionReason::OwnerDefault { .. }
            );
            prop_assert!(explicit, "allowed without a reason: {:?}", decision.reason);
        }
        let _ = set.explain(&req.model);
    }
}

fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "/", "//", "\\", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%25", "%00", "%", "%4",
            "%41", "?", "#", "a", "public", "private", "é", " ", "\0", "{", "*",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,4}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn policy_set() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let yaml = format!(
            "{SEED}---\n{}---\n{}---\n{}",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {notPrincipals: [\"*\"], remoteIpBlocks: [\"2001:db8::/32\"]}}]\n    when: [{key: \"request.auth.claims[scope]\", values: [\"admin\"]}, {key: connection.sni, notValues: [\"*.local\"]}]\n",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: audit, namespace: example-model}\nspec:\n  action: AUDIT\n  rules:\n  - from: [{source: {serviceAccounts: [\"ns/sa\"], requestPrincipals: [\"*/x\"]}}]\n    to: [{operation: {notHosts: [\"*.internal\"], methods: [GET]}}]\n",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: custom, namespace: example-model}\nspec:\n  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - to: [{operation: {paths: [\"/ext/{**}\"]}}]\n    when: [{key: destination.port, values: [\"9000\"]}, {key: source.ip, notValues: [\"10.0.0.1\"]}]\n",
        );
        common::set(&yaml)
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
        prop::sample::select(vec!["admin", "read write", "person_a@company.com", "x@company.com", ""])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn claims() -> impl Strategy<Value = Option<Map<String, Value>>> {
    let known = prop::sample::select(vec![
        "iss",
        "sub",
        "aud",
        "azp",
        "email",
        "email_verified",
        "groups",
        "scope",
        "a",
    ]);
    prop::option::of(prop::collection::btree_map(known.prop_map(str::to_owned), json_value(), 0..6))
        .prop_map(|m| m.map(|m| m.into_iter().collect()))
}

fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    prop::option::of(prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        Just("10.1.2.3".parse().expect("ip")),
    ])
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,24}", any::<String>(), Just(String::new())]
}

fn request() -> impl Strategy<Value = Request> {
    let model_labels = prop::collection::btree_map(
        prop::sample::select(vec!["app", "version"]).prop_map(str::to_owned),
        prop::sample::select(vec!["iris", "x", ""]).prop_map(str::to_owned),
        0..2,
    );
    let owners = prop::collection::vec(
        prop::sample::select(vec!["a@company.com", "group:ops", "serviceaccount:ns/sa"])
            .prop_map(|o| palisade_core::Owner::parse(o).expect("owner")),
        0..3,
    );
    let ns = prop::sample::select(vec!["example-model", "istio-system", "other"]);
    let headers =
        prop::collection::vec((prop::sample::select(vec!["x-team", ":authority", "host"]), text()), 0..4);
    (
        (ns, model_labels, owners),
        (ip(), ip(), ip(), any::<u16>()),
        (prop::option::of(text()), claims(), headers),
        (text(), text(), path_like(), prop::option::of(text())),
    )
        .prop_map(
            |(
                (ns, labels, owners),
                (src, remote, dst, port),
                (peer, claims, headers),
                (host, method, path, sni),
            )| {
                let model = Arc::new(palisade_policy::TargetModel {
                    namespace: palisade_core::Namespace::new(ns).expect("ns"),
                    name: palisade_core::ModelName::new("iris").expect("name"),
                    labels,
                    owners,
                });
                let mut req = Request::new(model);
                req.source_ip = src;
                req.remote_ip = remote;
                req.destination_ip = dst;
                req.port = port;
                req.source_principal = peer;
                req.claims = claims.map(Arc::new);
                req.headers = headers.into_iter().collect::<Headers>();
                req.host = host;
                req.method = method;
                req.path = normalize_path(&path).unwrap_or(path);
                req.sni = sni;
                req
            },
        )
}
