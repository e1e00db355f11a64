//! Palisade's own semantics: the seed platform policy, the owner default, decision reasons,
//! the root namespace, claim and address details, and `explain`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{R, check_cases, model, model_with_owners, set, set_with};
use palisade_core::Owner;
use palisade_policy::{DecisionReason, PolicySet, Settings};
use serde_json::json;

const SEED: &str = r#"kind: AuthorizationPolicy
apiVersion: security.istio.io/v1beta1
metadata:
  name: allow-to-example-model
  namespace: example-model
spec:
  action: ALLOW
  rules:
    - when:
        - key: "request.auth.claims[email]"
          values:
            - person_a@company.com
            - person_b@company.com
            - service_account_a@company.com
    - to:
        - operation:
            ports:
              - "443"
"#;

#[test]
fn seed_policy_behaves_as_istio() {
    let s = set(SEED);
    let m = model_with_owners("example-model", "iris", &[], &["owner@company.com"]);
    let person_a = json!({"iss": "https://idp", "sub": "a", "email": "person_a@company.com"});
    let stranger = json!({"iss": "https://idp", "sub": "z", "email": "stranger@company.com"});
    check_cases(
        &s,
        &[
            ("listed email on 8443", R::to(&m).port(8443).claims(person_a.clone()), true),
            ("unlisted email on 8443", R::to(&m).port(8443).claims(stranger.clone()), false),
            // Rules are ORed: the second rule allows ANY request to port 443.
            ("unlisted email on 443", R::to(&m).port(443).claims(stranger), true),
            ("no token on 443", R::to(&m).port(443), true),
            ("no token on 8443", R::to(&m).port(8443), false),
            // An ALLOW policy applies, so the owner default is off: owners are not special.
            ("owner on 8443", R::to(&m).port(8443).claims(json!({"email": "owner@company.com"})), false),
        ],
    );
    let d = s.evaluate(&R::to(&m).port(443).0);
    assert_eq!(d.reason.to_string(), "allowed by ALLOW policy example-model/allow-to-example-model rule 1");
    let other_ns = model("other", "iris", &[]);
    let d = s.evaluate(&R::to(&other_ns).port(443).0);
    assert_eq!(d.reason, DecisionReason::NotAnOwner, "the policy only governs its namespace");

    let text = s.explain(&m).to_string();
    assert!(
        text.contains(
            "ALLOW policy example-model/allow-to-example-model rule 0: when request.auth.claims[email] is one of \
             person_a@company.com, person_b@company.com, service_account_a@company.com"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ALLOW policy example-model/allow-to-example-model rule 1: to port is 443 (no identity condition: any caller that passes authentication)"
        ),
        "{text}"
    );
}

fn owners_set(settings: Settings) -> PolicySet {
    // A policy for another model only: `iris` has no ALLOW policy.
    set_with(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: other\n  namespace: ml\nspec:\n  selector:\n    matchLabels:\n      app: other\n  rules:\n  - {}\n",
        settings,
    )
}

#[test]
fn owner_default() {
    let settings = Settings {
        palisade_issuer: Some("https://palisade.local".into()),
        groups_claim: "roles".into(),
        ..Settings::default()
    };
    let s = owners_set(settings);
    let m = model_with_owners(
        "ml",
        "iris",
        &[("app", "iris")],
        &["Alice@Example.com", "group:fraud-analysts", "serviceaccount:billing/batch"],
    );
    let sa = |iss: &str, sub: &str| json!({"iss": iss, "sub": sub});
    check_cases(
        &s,
        &[
            ("email", R::to(&m).claims(json!({"email": "Alice@Example.com"})), true),
            ("email domain case-insensitive", R::to(&m).claims(json!({"email": "Alice@EXAMPLE.COM"})), true),
            (
                "email local part case-sensitive",
                R::to(&m).claims(json!({"email": "alice@example.com"})),
                false,
            ),
            (
                "email verified",
                R::to(&m).claims(json!({"email": "Alice@example.com", "email_verified": true})),
                true,
            ),
            (
                "email verified as string",
                R::to(&m).claims(json!({"email": "Alice@example.com", "email_verified": "true"})),
                true,
            ),
            (
                "email unverified",
                R::to(&m).claims(json!({"email": "Alice@example.com", "email_verified": false})),
                false,
            ),
            (
                "email unverified as string",
                R::to(&m).claims(json!({"email": "Alice@example.com", "email_verified": "false"})),
                false,
            ),
            ("email not a string", R::to(&m).claims(json!({"email": ["Alice@example.com"]})), false),
            ("group in list", R::to(&m).claims(json!({"roles": ["x", "fraud-analysts"]})), true),
            ("group as string", R::to(&m).claims(json!({"roles": "fraud-analysts"})), true),
            ("group prefix is not a match", R::to(&m).claims(json!({"roles": ["fraud-analysts-2"]})), false),
            ("default groups claim not used", R::to(&m).claims(json!({"groups": ["fraud-analysts"]})), false),
            (
                "service account",
                R::to(&m).claims(sa("https://palisade.local", "system:serviceaccount:billing:batch")),
                true,
            ),
            (
                "service account, other issuer",
                R::to(&m).claims(sa("https://evil", "system:serviceaccount:billing:batch")),
                false,
            ),
            (
                "service account, other name",
                R::to(&m).claims(sa("https://palisade.local", "system:serviceaccount:billing:batch2")),
                false,
            ),
            (
                "service account, other namespace",
                R::to(&m).claims(sa("https://palisade.local", "system:serviceaccount:bill:batch")),
                false,
            ),
            ("no token", R::to(&m), false),
            ("mTLS peer alone is not an owner", R::to(&m).peer("cluster.local/ns/billing/sa/batch"), false),
        ],
    );
    let d = s.evaluate(&R::to(&m).claims(json!({"roles": ["fraud-analysts"]})).0);
    assert_eq!(
        d.reason,
        DecisionReason::OwnerDefault { owner: Owner::parse("group:fraud-analysts").expect("owner") }
    );
    assert_eq!(d.reason.to_string(), "allowed as owner group:fraud-analysts (no ALLOW policy)");

    // Without a configured issuer, service-account owners match nobody.
    let s = owners_set(Settings::default());
    let d =
        s.evaluate(&R::to(&m).claims(sa("https://palisade.local", "system:serviceaccount:billing:batch")).0);
    assert_eq!(d.reason, DecisionReason::NotAnOwner);

    // A model without owners is closed.
    let orphan = model("ml", "orphan", &[]);
    assert!(!s.evaluate(&R::to(&orphan).claims(json!({"email": "a@b.co"})).0).allowed);
}

#[test]
fn deny_applies_before_owner_default() {
    let s = set(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-writes\n  namespace: istio-system\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [DELETE]\n",
    );
    let m = model_with_owners("ml", "iris", &[], &["alice@example.com"]);
    let alice = json!({"email": "alice@example.com"});
    check_cases(
        &s,
        &[
            ("owner GET", R::to(&m).claims(alice.clone()), true),
            (
                "owner DELETE denied by root-namespace policy",
                R::to(&m).method("DELETE").claims(alice.clone()),
                false,
            ),
        ],
    );
    let d = s.evaluate(&R::to(&m).method("DELETE").claims(alice).0);
    assert_eq!(d.reason.to_string(), "denied by DENY policy istio-system/no-writes rule 0");
}

#[test]
fn root_namespace_is_configurable() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: palisade-system\nspec:\n  action: DENY\n  rules:\n  - {}\n";
    let m = model_with_owners("ml", "iris", &[], &["alice@example.com"]);
    let alice = || R::to(&m).claims(json!({"email": "alice@example.com"}));
    // Palisade's default root namespace is palisade-system.
    check_cases(&set_with(yaml, Settings::default()), &[("palisade root", alice(), false)]);
    // With Istio's root namespace, palisade-system is an ordinary namespace.
    check_cases(&set(yaml), &[("istio root", alice(), true)]);
    // A model in the root namespace sees the root policies once.
    let in_root = model("palisade-system", "x", &[]);
    let d = set_with(yaml, Settings::default()).evaluate(&R::to(&in_root).0);
    assert!(!d.allowed);
}

#[test]
fn claims_details() {
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: ml
spec:
  rules:
  - to: [{operation: {paths: ["/level"]}}]
    when: [{key: "request.auth.claims[level]", values: ["3"]}]
  - to: [{operation: {paths: ["/nested-scope"]}}]
    when: [{key: "request.auth.claims[realm][scope]", values: ["read"]}]
  - to: [{operation: {paths: ["/scope"]}}]
    when: [{key: "request.auth.claims[scope]", values: ["read"]}]
  - to: [{operation: {paths: ["/any-group"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["*"]}]
  - to: [{operation: {paths: ["/not-admin"]}}]
    when: [{key: "request.auth.claims[groups]", notValues: ["admin"]}]
"#);
    let m = model("ml", "iris", &[]);
    check_cases(
        &s,
        &[
            (
                "numbers never match strings (as Envoy)",
                R::to(&m).path("/level").claims(json!({"level": 3})),
                false,
            ),
            ("string number matches", R::to(&m).path("/level").claims(json!({"level": "3"})), true),
            (
                "space splitting is top-level only",
                R::to(&m).path("/nested-scope").claims(json!({"realm": {"scope": "read write"}})),
                false,
            ),
            (
                "nested exact",
                R::to(&m).path("/nested-scope").claims(json!({"realm": {"scope": "read"}})),
                true,
            ),
            (
                "top-level scope is split",
                R::to(&m).path("/scope").claims(json!({"scope": "write  read"})),
                true,
            ),
            ("scope list", R::to(&m).path("/scope").claims(json!({"scope": ["read"]})), true),
            (
                "presence needs a non-empty string",
                R::to(&m).path("/any-group").claims(json!({"groups": [""]})),
                false,
            ),
            ("presence in list", R::to(&m).path("/any-group").claims(json!({"groups": ["", "a"]})), true),
            ("presence without claim", R::to(&m).path("/any-group").claims(json!({"sub": "x"})), false),
            ("notValues without token", R::to(&m).path("/not-admin"), true),
            (
                "notValues with admin in list",
                R::to(&m).path("/not-admin").claims(json!({"groups": ["user", "admin"]})),
                false,
            ),
            (
                "notValues without admin",
                R::to(&m).path("/not-admin").claims(json!({"groups": ["user"]})),
                true,
            ),
        ],
    );
}

#[test]
fn ip_blocks_v4_v6() {
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p
  namespace: ml
spec:
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7", "::ffff:172.16.0.0/108"]
        notIpBlocks: ["10.9.0.0/16"]
"#);
    let m = model("ml", "iris", &[]);
    check_cases(
        &s,
        &[
            ("v4 inside", R::to(&m).source_ip("10.1.2.3"), true),
            ("v4 excluded", R::to(&m).source_ip("10.9.1.1"), false),
            ("v4 outside", R::to(&m).source_ip("11.0.0.1"), false),
            ("single address", R::to(&m).source_ip("192.168.1.7"), true),
            ("single address neighbour", R::to(&m).source_ip("192.168.1.8"), false),
            ("v6 inside", R::to(&m).source_ip("2001:db8::1"), true),
            ("v6 outside", R::to(&m).source_ip("2001:db9::1"), false),
            ("v4-mapped v6 peer", R::to(&m).source_ip("::ffff:10.1.2.3"), true),
            ("v4-mapped range", R::to(&m).source_ip("172.16.5.5"), true),
            ("no address", R::to(&m), false),
        ],
    );
}

#[test]
fn explain_lists_policies_in_order() {
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: guard
  namespace: istio-system
spec:
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: readers
  namespace: ml
spec:
  selector:
    matchLabels:
      app: iris
  rules:
  - from:
    - source:
        requestPrincipals: ["https://idp/*"]
    to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/v2/models/iris/*"]
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: trial
  namespace: ml
  annotations:
    istio.io/dry-run: "true"
spec:
  action: DENY
  rules:
  - when:
    - key: request.headers[x-debug]
      values: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: record
  namespace: ml
spec:
  action: AUDIT
  rules:
  - to:
    - operation:
        notMethods: ["GET"]
"#);
    let m = model_with_owners("ml", "iris", &[("app", "iris")], &["alice@example.com"]);
    let e = s.explain(&m);
    assert!(!e.owner_default);
    let order: Vec<_> = e.policies.iter().map(|p| p.policy.to_string()).collect();
    assert_eq!(order, ["istio-system/guard", "ml/readers", "ml/trial", "ml/record"]);
    let text = e.to_string();
    for needle in [
        "Model ml/iris: who can call it, in evaluation order",
        "1. DENY policies: a request matching any rule is denied",
        "DENY policy istio-system/guard rule 0: from request principal is not * (root namespace: applies to every namespace)",
        "2. ALLOW policies: a request matching any rule is allowed; anything else is denied",
        "ALLOW policy ml/readers rule 0: from request principal is https://idp/*; to method is one of GET, POST and path is /v2/models/iris/*",
        "ALLOW policy ml/readers rule 1: any request (no identity condition: any caller that passes authentication)",
        "3. Dry-run policies (evaluated and reported, never enforced):",
        "DENY (dry run) policy ml/trial rule 0: when request.headers[x-debug] is *",
        "4. AUDIT policies (matching requests are marked for audit; the decision is unchanged):",
        "AUDIT policy ml/record rule 0: to method is not GET",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let unlabelled = model_with_owners("ml", "other", &[], &["alice@example.com", "group:ops"]);
    let e = s.explain(&unlabelled);
    assert!(e.owner_default);
    let text = e.to_string();
    assert!(text.contains("No ALLOW policy applies, so only the model's owners may call it"), "{text}");
    assert!(text.contains("- alice@example.com: a token whose `email` claim is alice@example.com"), "{text}");
    assert!(text.contains("- group:ops: a token whose `groups` claim contains ops"), "{text}");

    let empty_allow = set(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: nothing\n  namespace: ml\nspec: {}\n",
    );
    let text = empty_allow.explain(&unlabelled).to_string();
    assert!(text.contains("ALLOW policy ml/nothing has no rules: it allows nothing, yet its presence turns off the owner default"), "{text}");
}

#[test]
fn decision_has_no_reports_when_nothing_to_report() {
    let s = set(SEED);
    let m = model("example-model", "iris", &[]);
    let d = s.evaluate(&R::to(&m).port(443).0);
    assert!(d.audit.is_empty() && d.dry_run.is_empty());
}

#[test]
fn spiffe_helpers() {
    use palisade_policy::Request;
    assert_eq!(
        Request::peer_from_spiffe("spiffe://cluster.local/ns/a/sa/b"),
        Some("cluster.local/ns/a/sa/b")
    );
    assert_eq!(Request::peer_from_spiffe("https://x"), None);
    assert_eq!(Request::peer_from_spiffe("spiffe://"), None);
    let m = model("ml", "iris", &[]);
    let r = R::to(&m)
        .peer("cluster.local/ns/billing/sa/batch")
        .claims(json!({"iss": "https://idp/x", "sub": "u1"}));
    assert_eq!(r.0.source_namespace(), Some("billing"));
    assert_eq!(r.0.request_principal().as_deref(), Some("https://idp/x/u1"));
}

/// An owner-managed policy reaches only the models its creator owns (the second security
/// review's finding 6): Bob's selector-free ALLOW in the shared namespace `lab` opens his
/// model to everyone, and leaves Alice's model (deployed later, or an older version whose
/// labels match) under its own rules.
#[test]
fn an_owner_policy_reaches_only_its_creators_models() {
    let mut allow_all = common::parse(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: lab}\nspec:\n  rules: [{}]\n",
    );
    allow_all.creator = Some(palisade_policy::Creator {
        principal: "https://idp/bob".into(),
        claims: std::sync::Arc::new(
            json!({"iss": "https://idp", "sub": "bob", "email": "bob@lab.example"})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    });
    let s = PolicySet::new(vec![allow_all], common::istio_settings()).unwrap();
    let bobs = model_with_owners("lab", "bobmodel", &[], &["bob@lab.example"]);
    let shared = model_with_owners("lab", "shared", &[], &["alice@lab.example", "bob@lab.example"]);
    let alices = model_with_owners("lab", "alicesecret", &[], &["alice@lab.example"]);
    let stranger = json!({"iss": "https://idp", "sub": "eve", "email": "eve@elsewhere.example"});
    assert!(s.evaluate(&R::to(&bobs).claims(stranger.clone()).0).allowed, "bob opened his own model");
    assert!(s.evaluate(&R::to(&shared).claims(stranger.clone()).0).allowed, "bob co-owns this one");
    let d = s.evaluate(&R::to(&alices).claims(stranger).0);
    assert!(!d.allowed, "{}", d.reason);
    assert_eq!(d.reason, DecisionReason::NotAnOwner, "alice's model keeps the owner default");
    assert!(s.evaluate(&R::to(&alices).claims(json!({"email": "alice@lab.example"})).0).allowed);
    assert!(s.explain(&alices).policies.is_empty(), "explain shows no policy for alice's model");
    assert_eq!(s.explain(&bobs).policies.len(), 1);

    // The same document without a creator (the platform's policy directory) applies to
    // every model of the namespace, as Istio applies it.
    let platform = common::set(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: lab}\nspec:\n  rules: [{}]\n",
    );
    assert!(platform.evaluate(&R::to(&alices).0).allowed);
}
