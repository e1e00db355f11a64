//! Matcher semantics from Istio's pilot unit tests, checked by evaluating requests:
//! `pilot/pkg/security/authz/model/generator_test.go`, `model_test.go`,
//! `pilot/pkg/security/authz/matcher/{string,header,template}_test.go`, and the policy
//! shapes of `pilot/pkg/security/authz/builder/testdata/http/*-in.yaml`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{R, check_cases, model, model_with_owners, set};
use palisade_policy::{DecisionReason, Request};
use serde_json::json;

/// One ALLOW policy in `foo` with the given rules (YAML flow style), for model `httpbin`.
fn allow(rules: &str) -> palisade_policy::PolicySet {
    set(&format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules: {rules}\n"
    ))
}

fn httpbin() -> std::sync::Arc<palisade_policy::TargetModel> {
    model("foo", "httpbin", &[("app", "httpbin"), ("version", "v1")])
}

fn jwt(iss: &str, sub: &str) -> serde_json::Value {
    json!({"iss": iss, "sub": sub})
}

#[test]
fn request_principal() {
    // generator_test.go TestRequestPrincipal: how `iss/sub` patterns split into matchers.
    let m = httpbin();
    // (pattern, [((iss, sub), matches)])
    type Case<'a> = (&'a str, &'a [((&'a str, &'a str), bool)]);
    let table: &[Case] = &[
        ("*", &[(("a", "b"), true), (("", "b"), false), (("a", ""), false)]),
        (
            "foo*",
            &[(("foo", "x"), true), (("foobar", "x"), true), (("bar", "x"), false), (("foo", ""), false)],
        ),
        ("foo/*", &[(("foo", "x"), true), (("foo2", "x"), false), (("foo", ""), false)]),
        (
            "foo/bar*",
            &[
                (("foo", "bar"), true),
                (("foo", "barbaz"), true),
                (("foo", "baz"), false),
                (("xfoo", "bar"), false),
            ],
        ),
        (
            "*foo",
            &[
                (("any", "foo"), true),
                (("any", "xfoo"), true),
                (("any", "foox"), false),
                (("", "foo"), false),
            ],
        ),
        ("*/foo", &[(("any", "foo"), true), (("any", "xfoo"), false), (("", "foo"), false)]),
        (
            "*bar/foo",
            &[
                (("bar", "foo"), true),
                (("xbar", "foo"), true),
                (("barx", "foo"), false),
                (("xbar", "foox"), false),
            ],
        ),
        ("foo/bar", &[(("foo", "bar"), true), (("foo", "baz"), false), (("fo", "bar"), false)]),
        // The issuer may contain '/': the split is on the last one.
        (
            "https://example.com/*",
            &[(("https://example.com", "x"), true), (("https://example.org", "x"), false)],
        ),
        (
            "https://example.com/sub-1",
            &[(("https://example.com", "sub-1"), true), (("https://example.com/sub-1", ""), false)],
        ),
    ];
    for (pattern, cases) in table {
        let s = allow(&format!(r#"[{{from: [{{source: {{requestPrincipals: ["{pattern}"]}}}}]}}]"#));
        let when = allow(&format!(r#"[{{when: [{{key: request.auth.principal, values: ["{pattern}"]}}]}}]"#));
        let cases: Vec<_> = cases
            .iter()
            .map(|((iss, sub), ok)| ("TestRequestPrincipal", R::to(&m).claims(jwt(iss, sub)), *ok))
            .collect();
        check_cases(&s, &cases);
        check_cases(&when, &cases);
        check_cases(&s, &[("TestRequestPrincipal no token", R::to(&m), false)]);
    }
}

#[test]
fn service_account() {
    // generator_test.go TestServiceAccount / TestServiceAccountRegex.
    let m = httpbin();
    let table = [
        ("standard", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns/sa/my-sa", true),
        ("suffix attributes", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns/sa/my-sa/k/v", true),
        ("prefix attributes", "my-ns/my-sa", "spiffe://cluster.local/k/v/ns/my-ns/sa/my-sa", true),
        ("middle attributes", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns/k/v/sa/my-sa", true),
        ("all attributes", "my-ns/my-sa", "spiffe://cluster.local/k1/v1/ns/my-ns/k2/v2/sa/my-sa/k3/v3", true),
        ("sa suffix string", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns/sa/my-sa-suffix", false),
        ("ns suffix string", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns-suffix/sa/my-sa", false),
        ("not spiffe", "my-ns/my-sa", "cluster.local/ns/my-ns/sa/my-sa", false),
        ("invalid spiffe", "my-ns/my-sa", "spiffe://ns/my-ns/sa/my-sa", false),
        ("missing sa", "my-ns/my-sa", "spiffe://cluster.local/ns/my-ns", false),
        ("missing ns", "my-ns/my-sa", "spiffe://cluster.local/sa/my-sa", false),
        ("weird keys", "my-ns/my-sa", "spiffe://cluster.local/k/ns/my-ns/something/bar/sa/my-sa/baz", true),
        (
            "regex metachars - exact match with dots",
            "my.ns/my.sa",
            "spiffe://cluster.local/ns/my.ns/sa/my.sa",
            true,
        ),
        ("regex metachars - dot in ns", "my.ns/my.sa", "spiffe://cluster.local/ns/myXns/sa/my.sa", false),
        ("regex metachars - dot in sa", "my.ns/my.sa", "spiffe://cluster.local/ns/my.ns/sa/myXsa", false),
        // A bare name is in the policy's namespace (`foo`).
        ("default namespace", "my-sa", "spiffe://cluster.local/ns/foo/sa/my-sa", true),
        ("default namespace, other ns", "my-sa", "spiffe://cluster.local/ns/bar/sa/my-sa", false),
    ];
    for (name, value, identity, ok) in table {
        let mut r = R::to(&m);
        r.0.source_principal = Request::peer_from_spiffe(identity).map(str::to_owned);
        let from = allow(&format!(r#"[{{from: [{{source: {{serviceAccounts: ["{value}"]}}}}]}}]"#));
        let when = allow(&format!(r#"[{{when: [{{key: source.serviceAccount, values: ["{value}"]}}]}}]"#));
        check_cases(&from, &[(name, r.clone(), ok)]);
        check_cases(&when, &[(name, r, ok)]);
    }
}

#[test]
fn namespace_matcher() {
    // generator_test.go TestNamespaceMatcherRegex_Match and srcNamespaceGenerator cases.
    let m = httpbin();
    let table = [
        ("ns.prod", "cluster.local/ns/ns.prod/sa/admin", true),
        ("ns.prod", "cluster.local/ns/nsXprod/sa/admin", false),
        ("ns.*.prod", "cluster.local/ns/ns.any.prod/sa/admin", true),
        ("ns.*.prod", "cluster.local/ns/nsXanyXprod/sa/admin", false),
        ("foo", "cluster.local/ns/foo/sa/x", true),
        ("foo", "cluster.local/ns/foobar/sa/x", false),
        ("ns-prefix-*", "cluster.local/ns/ns-prefix-a/sa/x", true),
        ("*-ns-suffix", "cluster.local/ns/a-ns-suffix/sa/x", true),
        ("*", "cluster.local/ns/any/sa/x", true),
    ];
    for (value, peer, ok) in table {
        let s = allow(&format!(r#"[{{from: [{{source: {{namespaces: ["{value}"]}}}}]}}]"#));
        check_cases(&s, &[("TestNamespaceMatcherRegex_Match", R::to(&m).peer(peer), ok)]);
        check_cases(&s, &[("namespace needs a peer", R::to(&m), false)]);
    }
}

#[test]
fn trust_domain_generator() {
    // generator_test.go srcTrustDomainGenerator-{exact,wildcard,prefix-wildcard,suffix-wildcard}.
    let m = httpbin();
    for (value, peer, ok) in [
        ("cluster.local", "cluster.local/ns/a/sa/b", true),
        ("cluster.local", "cluster.local.evil/ns/a/sa/b", false),
        ("*", "anything/ns/a/sa/b", true),
        ("cluster.*", "cluster.example/ns/a/sa/b", true),
        ("cluster.*", "other.example/ns/a/sa/b", false),
        ("*local", "cluster.local/ns/a/sa/b", true),
        ("*local", "cluster.localx/ns/a/sa/b", false),
    ] {
        let s = allow(&format!(r#"[{{when: [{{key: source.trustDomain, values: ["{value}"]}}]}}]"#));
        check_cases(&s, &[("srcTrustDomainGenerator", R::to(&m).peer(peer), ok)]);
    }
}

#[test]
fn principal_string_matcher() {
    // string_test.go TestStringMatcherWithPrefix: principals get `spiffe://` prepended, so
    // `*` is any peer, `*x` a suffix, `x*` a prefix; regex metacharacters are literal.
    let m = httpbin();
    for (value, peer, ok) in [
        ("*", "cluster.local/ns/foo/sa/x", true),
        ("cluster.local/ns/foo/sa/*", "cluster.local/ns/foo/sa/x", true),
        ("*-suffix", "cluster.local/ns/foo/sa/a-suffix", true),
        ("*admin.example", "cluster.local/ns/foo/sa/admin.example", true),
        ("*admin.example", "cluster.local/ns/foo/sa/adminXexample", false),
        ("*rule[0]", "cluster.local/ns/foo/sa/rule[0]", true),
        ("*rule[0]", "cluster.local/ns/foo/sa/rule0", false),
        ("+?", "+?", true),
        ("+?", "a", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        let s = allow(&format!(r#"[{{from: [{{source: {{principals: ["{value}"]}}}}]}}]"#));
        check_cases(&s, &[("TestStringMatcherWithPrefix", R::to(&m).peer(peer), ok)]);
        check_cases(&s, &[("principals need a peer", R::to(&m), false)]);
    }
}

#[test]
fn header_path_and_host_matchers() {
    // header_test.go TestHeaderMatcher / TestHostMatcher / TestPathMatcher.
    let m = httpbin();
    let paths = allow(r#"[{to: [{operation: {paths: ["*/productpage*"]}}]}]"#);
    check_cases(
        &paths,
        &[
            ("suffix match keeps the literal star", R::to(&m).raw_path("/x/productpage*"), true),
            ("suffix match keeps the literal star", R::to(&m).raw_path("/x/productpage"), false),
        ],
    );
    for (pattern, path, ok) in [
        ("/productpage", "/productpage", true),
        ("/productpage", "/productpage/x", false),
        ("/prefix*", "/prefix/x", true),
        ("/prefix*", "/other", false),
        ("*suffix", "/a/suffix", true),
        ("*suffix", "/a/suffixx", false),
        ("*", "/", true),
    ] {
        let s = allow(&format!(r#"[{{to: [{{operation: {{paths: ["{pattern}"]}}}}]}}]"#));
        check_cases(&s, &[("TestPathMatcher", R::to(&m).path(path), ok)]);
    }
    for (pattern, host, ok) in [
        ("*", "anything", true),
        ("*.example.com", "www.example.com", true),
        ("*.example.com", "WWW.EXAMPLE.COM", true),
        ("*.example.com", "example.com", false),
        ("example.*", "example.org", true),
        ("example.*", "Example.Org", true),
        ("example.com", "example.com", true),
        ("example.com", "Example.COM", true),
        // Hosts match the authority as sent, port included.
        ("example.com", "example.com:8443", false),
        ("example.com*", "example.com:8443", true),
    ] {
        let s = allow(&format!(r#"[{{to: [{{operation: {{hosts: ["{pattern}"]}}}}]}}]"#));
        check_cases(&s, &[("TestHostMatcher", R::to(&m).host(host), ok)]);
    }
    for (pattern, method, ok) in [
        ("GET", "GET", true),
        ("GET", "get", false),
        ("method-prefix-*", "method-prefix-x", true),
        ("*", "PATCH", true),
    ] {
        let s = allow(&format!(r#"[{{to: [{{operation: {{methods: ["{pattern}"]}}}}]}}]"#));
        check_cases(&s, &[("TestHeaderMatcher :method", R::to(&m).method(method), ok)]);
    }
}

#[test]
fn request_header_conditions() {
    // generator_test.go requestHeaderGenerator and the full-rule header values.
    let m = httpbin();
    let s = allow(
        r#"[{when: [{key: "request.headers[X-header]", values: ["header", "header-prefix-*", "*-suffix-header"], notValues: ["not-header"]}]}]"#,
    );
    check_cases(
        &s,
        &[
            ("exact", R::to(&m).header("x-header", "header"), true),
            ("name is case-insensitive", R::to(&m).header("X-Header", "header"), true),
            ("value is case-sensitive", R::to(&m).header("x-header", "HEADER"), false),
            ("prefix", R::to(&m).header("x-header", "header-prefix-1"), true),
            ("suffix", R::to(&m).header("x-header", "a-suffix-header"), true),
            ("absent", R::to(&m), false),
            ("notValues", R::to(&m).header("x-header", "not-header"), false),
            // Envoy joins repeated headers with ',' before matching.
            ("repeated header joined", R::to(&m).header("x-header", "header").header("x-header", "x"), false),
        ],
    );
    let present = allow(r#"[{when: [{key: "request.headers[x-present]", values: ["*"]}]}]"#);
    check_cases(
        &present,
        &[("present, even empty", R::to(&m).header("x-present", ""), true), ("absent", R::to(&m), false)],
    );
    let joined = allow(r#"[{when: [{key: "request.headers[x-multi]", values: ["a,b"]}]}]"#);
    check_cases(&joined, &[("joined value", R::to(&m).header("x-multi", "a").header("x-multi", "b"), true)]);
    let not_only = allow(r#"[{when: [{key: "request.headers[x-foo]", notValues: ["bar"]}]}]"#);
    check_cases(&not_only, &[("notValues alone: absent header passes", R::to(&m), true)]);
    let authority =
        allow(r#"[{when: [{key: "request.headers[:authority]", values: ["b.ns1.svc.cluster.local"]}]}]"#);
    check_cases(&authority, &[(":authority is the request host", R::to(&m), true)]);
}

#[test]
fn path_templates() {
    // template_test.go TestPathTemplateMatcher shapes, matched like Envoy's uri_template.
    let m = httpbin();
    for (template, path, ok) in [
        ("/foo/bar/{*}", "/foo/bar/baz", true),
        ("/foo/bar/{*}", "/foo/bar/", false),
        ("/foo/bar/{*}", "/foo/bar/baz/qux", false),
        ("/foo/{**}/bar", "/foo/a/b/c/bar", true),
        ("/foo/{**}/bar", "/foo//bar", true),
        ("/foo/{**}/bar", "/foo/bar", false),
        ("/{*}/foo/{**}/bar", "/x/foo/y/bar", true),
        ("/{*}/foo/{**}/bar", "/x/y/foo/z/bar", false),
        ("/{*}/{*}/foo/{**}/bar", "/x/y/foo/z/bar", true),
        ("/{*}/{*}/foo/{**}/bar", "/x/foo/z/bar", false),
        ("/api/{*}", "/api/a%20b", true),
        ("/api/{*}", "/api/a*b", false),
        ("/{**}", "/", true),
        ("/{**}", "/a/b", true),
    ] {
        let s = allow(&format!(r#"[{{to: [{{operation: {{paths: ["{template}"]}}}}]}}]"#));
        check_cases(&s, &[("TestPathTemplateMatcher", R::to(&m).raw_path(path), ok)]);
        let not = allow(&format!(r#"[{{to: [{{operation: {{notPaths: ["{template}"]}}}}]}}]"#));
        check_cases(&not, &[("notPaths template", R::to(&m).raw_path(path), !ok)]);
    }
}

#[test]
fn model_generate_rule_shape() {
    // model_test.go TestModel_Generate: two `from`, two `to` and two `when` entries.
    let s = allow(
        r#"[{from: [{source: {requestPrincipals: ["td-1/ns/foo/sa/sleep-1"], notRequestPrincipals: ["td-1/ns/foo/sa/sleep-2"]}}, {source: {requestPrincipals: ["td-1/ns/foo/sa/sleep-3"], notRequestPrincipals: ["td-1/ns/foo/sa/sleep-4"]}}], to: [{operation: {ports: ["8001"], notPorts: ["8002"]}}, {operation: {ports: ["8003"], notPorts: ["8004"]}}], when: [{key: "source.principal", values: ["td-1/ns/foo/sa/httpbin-1"], notValues: ["td-1/ns/foo/sa/httpbin-2"]}, {key: "destination.ip", values: ["10.0.0.1"], notValues: ["10.0.0.2"]}]}]"#,
    );
    let m = httpbin();
    let ok = || {
        R::to(&m)
            .claims(jwt("td-1/ns/foo/sa", "sleep-1"))
            .port(8001)
            .peer("td-1/ns/foo/sa/httpbin-1")
            .dest_ip("10.0.0.1")
    };
    check_cases(
        &s,
        &[
            ("all hold", ok(), true),
            ("second from", ok().claims(jwt("td-1/ns/foo/sa", "sleep-3")), true),
            ("second to", ok().port(8003), true),
            ("no from matches", ok().claims(jwt("td-1/ns/foo/sa", "sleep-2")), false),
            ("no to matches", ok().port(8002), false),
            ("first when fails", ok().peer("td-1/ns/foo/sa/httpbin-2"), false),
            ("second when fails", ok().dest_ip("10.0.0.2"), false),
            (
                "no destination ip",
                R::to(&m)
                    .claims(jwt("td-1/ns/foo/sa", "sleep-1"))
                    .port(8001)
                    .peer("td-1/ns/foo/sa/httpbin-1"),
                false,
            ),
        ],
    );
}

#[test]
fn allow_full_rule() {
    // builder testdata allow-full-rule-in.yaml: every field with values and notValues that
    // include "*", so the rule can never match (each `not*: ["*"]` excludes everything present).
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-1
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
    - from:
        - source:
            serviceAccounts: [ "my-ns/my-sa", "sa-only" ]
            notServiceAccounts: [ "my-ns/my-sa-not", "sa-not-only" ]
    - from:
        - source:
            principals: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
            requestPrincipals: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*"]
            namespaces: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
            ipBlocks: ["1.2.3.4", "5.6.0.0/16"]
            remoteIpBlocks: ["1.2.3.4", "5.6.0.0/16"]
            notPrincipals: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]
            notRequestPrincipals: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]
            notNamespaces: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]
            notIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
            notRemoteIpBlocks: ["9.0.0.1", "9.2.0.0/16"]
      to:
        - operation:
            methods: ["method", "method-prefix-*", "*-suffix-method", "*"]
            hosts: ["exact.com", "*.suffix.com", "prefix.*", "*"]
            ports: ["80", "90"]
            paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}", "/{**}/path/template"]
            notMethods: ["not-method", "not-method-prefix-*", "*-not-suffix-method", "*"]
            notHosts: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]
            notPorts: ["8000", "9000"]
            notPaths: ["/not-exact", "/not-prefix/*", "*/not-suffix", "*", "/not-path/template/{*}", "/{**}/not-path/template"]
      when:
        - key: "request.headers[X-header]"
          values: ["header", "header-prefix-*", "*-suffix-header", "*"]
          notValues: ["not-header", "not-header-prefix-*", "*-not-suffix-header", "*"]
        - key: "source.ip"
          values: ["10.10.10.10", "192.168.10.0/24"]
          notValues: ["90.10.10.10", "90.168.10.0/24"]
        - key: "remote.ip"
          values: ["10.10.10.10", "192.168.10.0/24"]
          notValues: ["90.10.10.10", "90.168.10.0/24"]
        - key: "source.namespace"
          values: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
          notValues: ["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]
        - key: "source.principal"
          values: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
          notValues: ["not-principal", "not-principal-prefix-*", "*-not-suffix-principal", "*"]
        - key: "request.auth.principal"
          values: ["requestPrincipals", "requestPrincipals-prefix-*", "*-suffix-requestPrincipals", "*", "https://example.com/*"]
          notValues: ["not-requestPrincipals", "not-requestPrincipals-prefix-*", "*-not-suffix-requestPrincipals", "*"]
        - key: "request.auth.audiences"
          values: ["audiences", "audiences-prefix-*", "*-suffix-audiences", "*"]
          notValues: ["not-audiences", "not-audiences-prefix-*", "*-not-suffix-audiences", "*"]
        - key: "request.auth.presenter"
          values: ["presenter", "presenter-prefix-*", "*-suffix-presenter", "*"]
          notValues: ["not-presenter", "not-presenter-prefix-*", "*-not-suffix-presenter", "*"]
        - key: "request.auth.claims[iss]"
          values: ["iss", "iss-prefix-*", "*-suffix-iss", "*"]
          notValues: ["not-iss", "not-iss-prefix-*", "*-not-suffix-iss", "*"]
        - key: "request.auth.claims[nested1][nested2]"
          values: ["nested", "nested-prefix-*", "*-suffix-nested", "*"]
          notValues: ["not-nested", "not-nested-prefix-*", "*-not-suffix-nested", "*"]
        - key: "destination.ip"
          values: ["10.10.10.10", "192.168.10.0/24"]
          notValues: ["90.10.10.10", "90.168.10.0/24"]
        - key: "destination.port"
          values: ["91", "92"]
          notValues: ["9001", "9002"]
        - key: "connection.sni"
          values: ["exact.com", "*.suffix.com", "prefix.*", "*"]
          notValues: ["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]
"#);
    let m = httpbin();
    check_cases(
        &s,
        &[
            ("rule 0: service account my-ns/my-sa", R::to(&m).peer("cluster.local/ns/my-ns/sa/my-sa"), true),
            (
                "rule 0: bare name is in the policy namespace",
                R::to(&m).peer("cluster.local/ns/foo/sa/sa-only"),
                true,
            ),
            ("rule 0: excluded", R::to(&m).peer("cluster.local/ns/foo/sa/sa-not-only"), false),
            ("rule 1 excludes everything present", R::to(&m).peer("cluster.local/ns/ns/sa/principal"), false),
        ],
    );
}

#[test]
fn builder_policy_shapes() {
    // builder testdata: allow-empty-rule, allow-nil-rule, deny-empty-rule, deny-and-allow,
    // multiple-policies, custom-simple-http, simple-policy-principal-with-wildcard.
    let m = httpbin();
    let allow_all = set(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-all\n  namespace: foo\nspec:\n  selector:\n    matchLabels:\n      app: httpbin\n      version: v1\n  rules:\n    - {}\n",
    );
    check_cases(&allow_all, &[("allow-empty-rule", R::to(&m).path("/anything"), true)]);
    let allow_none = set(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-none\n  namespace: foo\nspec:\n  selector:\n    matchLabels:\n      app: httpbin\n      version: v1\n",
    );
    check_cases(&allow_none, &[("allow-nil-rule", R::to(&m).claims(json!({"email": "a@b.c"})), false)]);
    let d = allow_none.evaluate(&R::to(&m).0);
    assert_eq!(d.reason, DecisionReason::NoMatchingAllow, "an ALLOW policy without rules still applies");

    let deny_all = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-all\n  namespace: foo\nspec:\n  action: DENY\n  rules:\n  - {{}}\n---\n{}",
        common::istio_implicit_allow("foo")
    );
    check_cases(&set(&deny_all), &[("deny-empty-rule", R::to(&m), false)]);

    let deny_and_allow = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-deny
  namespace: foo
spec:
  action: DENY
  rules:
  - from:
    - source:
        principals: ["deny"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-allow
  namespace: foo
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["allow"]
"#);
    check_cases(
        &deny_and_allow,
        &[
            ("deny-and-allow: allow", R::to(&m).peer("allow"), true),
            ("deny-and-allow: deny", R::to(&m).peer("deny"), false),
            ("deny-and-allow: neither", R::to(&m).peer("other"), false),
            ("deny-and-allow: plaintext", R::to(&m), false),
        ],
    );

    let multiple = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-1
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
  - to:
    - operation:
        methods: ["GET", "POST"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-2
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  rules:
    - to:
      - operation:
          paths: ["/v1", "/v2"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-3
  namespace: foo
spec:
  selector:
    matchLabels:
      version: v2
  rules:
    - to:
        - operation:
            hosts: ["google.com", "httpbin.org"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-4
  namespace: foo
spec:
  rules:
    - to:
        - operation:
            ports: ["80", "90"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-5
  namespace: foo
spec:
"#);
    check_cases(
        &multiple,
        &[
            ("multiple-policies: method", R::to(&m).method("POST").port(1), true),
            ("multiple-policies: path", R::to(&m).method("PUT").port(1).path("/v2"), true),
            (
                "multiple-policies: host of unselected policy",
                R::to(&m).method("PUT").port(1).host("google.com"),
                false,
            ),
            ("multiple-policies: port", R::to(&m).method("PUT").port(90), true),
            ("multiple-policies: none", R::to(&m).method("PUT").port(1), false),
        ],
    );

    let wildcard = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
    - from:
        - source:
            principals: ["*"]
        - source:
            principals: ["*/ns/foo/sa/rule[0]-from[1]-principal[0]", "*bar/ns/foo/sa/rule[0]-from[1]-principal[1]"]
"#);
    check_cases(
        &wildcard,
        &[
            ("simple-policy-principal-with-wildcard: any mTLS peer", R::to(&m).peer("td/ns/x/sa/y"), true),
            ("simple-policy-principal-with-wildcard: plaintext", R::to(&m), false),
        ],
    );
}

#[test]
fn custom_simple_http() {
    // builder testdata custom-simple-http-in.yaml (+ custom-bad-out: no usable provider
    // means the matching requests are denied).
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-1
  namespace: foo
spec:
  action: CUSTOM
  provider:
    name: default
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
    - to:
        - operation:
            paths: ["/httpbin1"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-2
  namespace: foo
spec:
  action: CUSTOM
  provider:
    name: default
  selector:
    matchLabels:
      app: httpbin
      version: v1
  rules:
    - to:
        - operation:
            paths: ["/httpbin2"]
---
{}"#,
        common::istio_implicit_allow("foo")
    );
    let s = set(&yaml);
    let m = httpbin();
    let d = s.evaluate(&R::to(&m).path("/httpbin2").0);
    assert!(!d.allowed);
    assert_eq!(
        d.reason.to_string(),
        "denied by CUSTOM policy foo/httpbin-2 (no external authorizer: fail closed)"
    );
    check_cases(&s, &[("custom: other path", R::to(&m).path("/other"), true)]);
    let other = model("foo", "other", &[("app", "other")]);
    check_cases(&s, &[("custom: unselected model", R::to(&other).path("/httpbin1"), true)]);
}

#[test]
fn dry_run_and_audit() {
    // builder testdata dry-run-allow-and-deny-in.yaml, dry-run-mix-in.yaml and
    // audit-full-rule-in.yaml.
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-1
  namespace: foo
  annotations:
    "istio.io/dry-run": "true"
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: ALLOW
  rules:
    - to:
        - operation:
            paths: ["/allow"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-2
  namespace: foo
  annotations:
    "istio.io/dry-run": "true"
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: DENY
  rules:
    - to:
        - operation:
            paths: ["/deny"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-3
  namespace: foo
  annotations:
    "istio.io/dry-run": "false"
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: ALLOW
  rules:
    - to:
        - operation:
            paths: ["/another"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: audit-all
  namespace: istio-system
spec:
  action: AUDIT
  rules:
    - {}
"#);
    let m = httpbin();
    let names = |d: &palisade_policy::Decision| {
        d.dry_run.iter().map(|(p, would)| (p.to_string(), *would)).collect::<Vec<_>>()
    };
    let d = s.evaluate(&R::to(&m).path("/deny").0);
    assert!(!d.allowed, "dry-run policies are never enforced; httpbin-3 is the enforced ALLOW");
    assert_eq!(d.reason, DecisionReason::NoMatchingAllow);
    assert_eq!(names(&d), vec![("foo/httpbin-2".to_owned(), false), ("foo/httpbin-1".to_owned(), false)]);
    assert_eq!(d.audit.iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["istio-system/audit-all"]);

    let d = s.evaluate(&R::to(&m).path("/allow").0);
    assert!(!d.allowed);
    assert_eq!(names(&d), vec![("foo/httpbin-2".to_owned(), true), ("foo/httpbin-1".to_owned(), true)]);

    let d = s.evaluate(&R::to(&m).path("/another").0);
    assert!(d.allowed);
    assert!(
        matches!(d.reason, DecisionReason::AllowedByPolicy { ref policy, rule_index: 0 } if &*policy.name == "httpbin-3")
    );
    assert_eq!(d.audit.len(), 1, "AUDIT matches are reported whatever the decision");

    // Only dry-run ALLOW policies: none is enforced, so the owner default applies (Istio
    // would allow everyone, having installed no enforcing ALLOW rules).
    let only_dry = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin-1
  namespace: foo
  annotations:
    "istio.io/dry-run": "true"
spec:
  rules:
    - to:
        - operation:
            paths: ["/allow"]
"#);
    let owned = model_with_owners("foo", "httpbin", &[], &["alice@example.com"]);
    let d = only_dry.evaluate(&R::to(&owned).path("/allow").0);
    assert_eq!(d.reason, DecisionReason::NotAnOwner);
    assert_eq!(d.dry_run.len(), 1);
    assert!(d.dry_run[0].1);
    let d = only_dry.evaluate(&R::to(&owned).path("/allow").claims(json!({"email": "alice@example.com"})).0);
    assert!(d.allowed);
}
