//! Policy evaluation cost with 1, 100 and 1000 policies in the model's namespace.
//!
//! The policies are a realistic mix: email allow-lists, group rules, path and method rules,
//! some selecting other models by label, plus a DENY and an AUDIT policy in the root
//! namespace. The one that allows the request sorts last. A second set has only path rules,
//! which the claim index cannot skip. Run with `cargo bench -p palisade-policy`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::{ModelName, Namespace, Owner};
use palisade_policy::{PolicySet, Request, Settings, TargetModel, normalize_path, parse_policy};

fn policy(i: usize, total: usize, kind: usize) -> String {
    let header = |name: &str, selector: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: models\nspec:\n{selector}  rules:\n"
        )
    };
    if i + 1 == total {
        // The matching policy: an email allow-list that contains the caller.
        return header("zz-readers", "")
            + "  - to: [{operation: {methods: [POST], paths: [\"/v2/models/*\"]}}]\n    when:\n    - key: request.auth.claims[email]\n      values: [carol@example.com, alice@example.com]\n";
    }
    match kind {
        0 => {
            header(&format!("p{i:04}-emails"), "")
                + &format!(
                    "  - when:\n    - key: request.auth.claims[email]\n      values: [user{i}@example.com, other{i}@example.com, third{i}@example.com]\n"
                )
        }
        1 => {
            header(&format!("p{i:04}-groups"), "")
                + &format!(
                    "  - to: [{{operation: {{methods: [GET, POST]}}}}]\n    when:\n    - key: request.auth.claims[groups]\n      values: [team-{i}, admins-{i}]\n"
                )
        }
        2 => {
            header(&format!("p{i:04}-paths"), "")
                + &format!(
                    "  - from: [{{source: {{requestPrincipals: [\"https://idp.example.com/svc-{i}\"]}}}}]\n    to: [{{operation: {{paths: [\"/v2/models/model-{i}/*\", \"/v2/models/model-{i}/versions/{{*}}/infer\"]}}}}]\n"
                )
        }
        _ => {
            header(
                &format!("p{i:04}-selected"),
                &format!("  selector:\n    matchLabels:\n      app: model-{i}\n"),
            ) + "  - {}\n"
        }
    }
}

fn root_policies() -> Vec<String> {
    vec![
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: block-debug\n  namespace: palisade-system\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.headers[x-debug]\n      values: [\"*\"]\n  - from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\"]}}]\n".to_owned(),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: audit-writes\n  namespace: palisade-system\nspec:\n  action: AUDIT\n  rules:\n  - to: [{operation: {methods: [DELETE, PUT]}}]\n".to_owned(),
    ]
}

/// `n` policies; `kind(i)` picks policy `i`'s shape (0 emails, 1 groups, 2 paths, 3 selector).
fn build(n: usize, kind: impl Fn(usize) -> usize) -> PolicySet {
    let mut docs = root_policies();
    docs.extend((0..n).map(|i| policy(i, n, kind(i))));
    let policies =
        docs.iter().map(|d| parse_policy(d, Path::new("bench.yaml")).expect("bench policy parses")).collect();
    PolicySet::new(policies, Settings::default()).expect("policy set")
}

fn request() -> Request {
    let model = Arc::new(TargetModel {
        namespace: Namespace::new("models").expect("namespace"),
        name: ModelName::new("iris").expect("name"),
        labels: [("app".to_owned(), "iris".to_owned()), ("team".to_owned(), "ml".to_owned())].into(),
        owners: vec![
            Owner::parse("group:ml-owners").expect("owner"),
            Owner::parse("alice@example.com").expect("owner"),
        ],
    });
    let mut req = Request::new(model);
    req.method = "POST".to_owned();
    req.path = normalize_path("/v2/models/iris/infer").expect("path");
    req.host = "models.example.com".to_owned();
    req.port = 8443;
    req.source_ip = Some("10.1.2.3".parse().expect("ip"));
    req.remote_ip = req.source_ip;
    req.headers.append("content-type", "application/json");
    req.headers.append("user-agent", "tritonclient/2.50");
    req.headers.append("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    req.claims = match serde_json::json!({
        "iss": "https://idp.example.com",
        "sub": "0b7c1f2e-alice",
        "aud": ["palisade"],
        "email": "alice@example.com",
        "email_verified": true,
        "groups": ["ml-owners", "staff", "readers"],
        "scope": "openid email profile",
        "exp": 4_000_000_000u64,
    }) {
        serde_json::Value::Object(map) => Some(Arc::new(map)),
        _ => None,
    };
    req
}

fn bench(c: &mut Criterion) {
    let req = request();
    let mut group = c.benchmark_group("evaluate");
    for n in [1, 100, 1000] {
        let set = build(n, |i| i % 4);
        let decision = set.evaluate(&req);
        assert!(decision.allowed, "{n} policies: {}", decision.reason);
        group.bench_function(format!("{n}_policies_allow_last"), |b| {
            b.iter(|| black_box(set.evaluate(black_box(&req))))
        });
    }
    // Worst case for the index: no rule is keyed by an exact claim value, so every policy
    // is tried in turn.
    let unindexed = build(100, |_| 2);
    assert!(unindexed.evaluate(&req).allowed);
    group.bench_function("100_policies_unindexed_paths", |b| {
        b.iter(|| black_box(unindexed.evaluate(black_box(&req))))
    });
    let owner_only = build(0, |i| i % 4);
    assert!(owner_only.evaluate(&req).allowed);
    group.bench_function("owner_default", |b| b.iter(|| black_box(owner_only.evaluate(black_box(&req)))));
    group.finish();

    c.bench_function("normalize_path", |b| {
        b.iter(|| black_box(normalize_path(black_box("/v2/models/iris/versions/3/infer?x=1"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
