//! Cases from Istio's end-to-end authorization tests, replayed against the evaluator.
//!
//! Each test names the function of `tests/integration/security/authz_test.go` it mirrors
//! and uses the policies of `tests/integration/security/testdata/authz/*.yaml.tmpl` with
//! the template parameters filled in: the callers are workload `a` of namespaces `ns1` and
//! `ns2` (SPIFFE ids `cluster.local/ns/ns1/sa/a`, `cluster.local/ns/ns2/sa/a`), the target
//! is model `b` in `ns1` (label `app: b`), and the echo ports are http 18080, http2 18085,
//! grpc 17070, tcp 19090. Istio's TCP cases become requests to the tcp port.
//!
//! Where Istio relies on its implicit "allow when no ALLOW policy applies", the tests add an
//! explicit allow-all policy, since Palisade's default would restrict the model to its owners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{R, check_cases, istio_implicit_allow, model, set, set_with};
use palisade_policy::Settings;
use serde_json::json;

const NS1_A: &str = "cluster.local/ns/ns1/sa/a";
const NS2_A: &str = "cluster.local/ns/ns2/sa/a";
const HTTP: u16 = 18080;
const HTTP2: u16 = 18085;
const GRPC: u16 = 17070;
const TCP: u16 = 19090;

fn target() -> std::sync::Arc<palisade_policy::TargetModel> {
    model("ns1", "b", &[("app", "b")])
}

/// The http/grpc/tcp rule triple that most of Istio's allow/deny templates share.
fn triple(name: &str, action: &str, source: &str, http_paths: &str, not_paths: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: {name}
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: {action}
  rules:
    - to:
        - operation:
            ports: [ "18080", "18085" ]
            paths: {http_paths}
            {not_paths}
            methods: [ "GET" ]
      from:
        - source:
            {source}
    - to:
        - operation:
            ports: [ "17070" ]
            paths: [ "/proto.EchoTestService/Echo" ]
            methods: [ "POST" ]
      from:
        - source:
            {source}
    - to:
        - operation:
            ports: [ "19090" ]
      from:
        - source:
            {source}
"#
    )
}

/// Cases shared by the Principal, ServiceAccount and Namespace allow tests.
fn allow_cases(test: &'static str, set: &palisade_policy::PolicySet) {
    let m = target();
    let mut cases = Vec::new();
    for (peer, allowed) in [(NS1_A, true), (NS2_A, false)] {
        let base = R::to(&m).peer(peer);
        cases.push((
            test,
            base.clone().port(GRPC).method("POST").path("/proto.EchoTestService/Echo"),
            allowed,
        ));
        cases.push((test, base.clone().port(TCP), allowed));
        for port in [HTTP, HTTP2] {
            let http = base.clone().port(port).method("GET");
            cases.push((test, http.clone().path("/allow"), allowed));
            cases.push((test, http.clone().path("/allow?param=value"), allowed));
            cases.push((test, http.clone().path("/deny"), false));
            cases.push((test, http.clone().path("/deny?param=value"), false));
        }
    }
    check_cases(set, &cases);
}

#[test]
fn authz_principal() {
    // TestAuthz_Principal + allow-principal.yaml.tmpl
    let policy = triple("b", "ALLOW", &format!("principals: [ \"{NS1_A}\" ]"), r#"[ "/allow" ]"#, "");
    allow_cases("TestAuthz_Principal", &set(&policy));
}

#[test]
fn authz_service_account() {
    // TestAuthz_ServiceAccount + allow-serviceaccount.yaml.tmpl
    let policy = triple("b", "ALLOW", r#"serviceAccounts: [ "ns1/a" ]"#, r#"[ "/allow" ]"#, "");
    allow_cases("TestAuthz_ServiceAccount", &set(&policy));
}

#[test]
fn authz_namespace() {
    // TestAuthz_Namespace + allow-namespace.yaml.tmpl
    let policy = triple("b", "ALLOW", r#"namespaces: [ "ns1" ]"#, r#"[ "/allow" ]"#, "");
    allow_cases("TestAuthz_Namespace", &set(&policy));
}

#[test]
fn authz_trust_domain() {
    // TestAuthz_TrustDomain + allow-trust-domain.yaml.tmpl
    let policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
        - operation:
            ports: [ "18080", "18085" ]
            paths: [ "/allow" ]
            methods: [ "GET" ]
      from:
        - source:
            trustDomains: [ "cluster.local" ]
    - to:
        - operation:
            ports: [ "18080", "18085" ]
            paths: [ "/deny" ]
            methods: [ "GET" ]
      from:
        - source:
            trustDomains: [ "bad.example.com" ]
    - to:
        - operation:
            ports: [ "18080", "18085" ]
            paths: [ "/not-trust-domain" ]
            methods: [ "GET" ]
      from:
        - source:
            notTrustDomains: [ "cluster.local" ]
    - to:
        - operation:
            ports: [ "18080", "18085" ]
            paths: [ "/not-deny" ]
            methods: [ "GET" ]
      from:
        - source:
            notTrustDomains: [ "bad.example.com" ]
    - to:
        - operation:
            ports: [ "17070" ]
            paths: [ "/proto.EchoTestService/Echo" ]
            methods: [ "POST" ]
      from:
        - source:
            trustDomains: [ "cluster.local" ]
    - to:
        - operation:
            ports: [ "19090" ]
      from:
        - source:
            trustDomains: [ "cluster.local" ]
"#;
    let s = set(policy);
    let m = target();
    let mut cases = Vec::new();
    for peer in [NS1_A, NS2_A] {
        let base = R::to(&m).peer(peer);
        cases.push((
            "TestAuthz_TrustDomain",
            base.clone().port(GRPC).method("POST").path("/proto.EchoTestService/Echo"),
            true,
        ));
        cases.push(("TestAuthz_TrustDomain", base.clone().port(TCP), true));
        for port in [HTTP, HTTP2] {
            let http = base.clone().port(port).method("GET");
            cases.push(("TestAuthz_TrustDomain /allow", http.clone().path("/allow"), true));
            cases.push(("TestAuthz_TrustDomain /deny", http.clone().path("/deny"), false));
            cases.push((
                "TestAuthz_TrustDomain /not-trust-domain",
                http.clone().path("/not-trust-domain"),
                false,
            ));
            cases.push(("TestAuthz_TrustDomain /not-deny", http.clone().path("/not-deny"), true));
        }
    }
    check_cases(&s, &cases);
}

/// deny-global.yaml.tmpl, placed in the root namespace.
const DENY_GLOBAL: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: policy-deny-system
  namespace: istio-system
spec:
  action: DENY
  rules:
  - to:
    - operation:
        ports: [ "18080", "18085" ]
        paths: ["/global-deny*"]
        notPaths: ["/global-deny/allow"]
"#;

fn deny_cases(test: &'static str, set: &palisade_policy::PolicySet) {
    let m = target();
    let mut cases = Vec::new();
    for (peer, allowed) in [(NS1_A, true), (NS2_A, false)] {
        let base = R::to(&m).peer(peer);
        cases.push((
            test,
            base.clone().port(GRPC).method("POST").path("/proto.EchoTestService/Echo"),
            allowed,
        ));
        cases.push((test, base.clone().port(TCP), allowed));
        for port in [HTTP, HTTP2] {
            let http = base.clone().port(port).method("GET");
            for (path, allow) in [
                ("/deny", allowed),
                ("/deny?param=value", allowed),
                ("/deny/allow", true),
                ("/deny/allow?param=value", true),
                ("/allow", true),
                ("/allow?param=value", true),
                ("/global-deny", false),
                ("/global-deny?param=value", false),
                ("/global-deny/allow", true),
                ("/global-deny/allow?param=value", true),
            ] {
                cases.push((test, http.clone().path(path), allow));
            }
        }
    }
    check_cases(set, &cases);
}

#[test]
fn authz_deny_principal() {
    // TestAuthz_DenyPrincipal + deny-global.yaml.tmpl + deny-principal.yaml.tmpl
    let deny = triple(
        "b",
        "DENY",
        &format!("principals: [ \"{NS2_A}\" ]"),
        r#"[ "/deny*" ]"#,
        r#"notPaths: ["/deny/allow"]"#,
    );
    let yaml = format!("{DENY_GLOBAL}\n---\n{deny}\n---\n{}", istio_implicit_allow("ns1"));
    deny_cases("TestAuthz_DenyPrincipal", &set(&yaml));
}

#[test]
fn authz_deny_namespace() {
    // TestAuthz_DenyNamespace + deny-global.yaml.tmpl + deny-namespace.yaml.tmpl
    let deny =
        triple("b", "DENY", r#"namespaces: [ "ns2" ]"#, r#"[ "/deny*" ]"#, r#"notPaths: ["/deny/allow"]"#);
    let yaml = format!("{DENY_GLOBAL}\n---\n{deny}\n---\n{}", istio_implicit_allow("ns1"));
    deny_cases("TestAuthz_DenyNamespace", &set(&yaml));
}

#[test]
fn authz_not_namespace() {
    // TestAuthz_NotNamespace + not-namespace.yaml.tmpl: DENY from notNamespaces [ns1].
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b-deny
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: DENY
  rules:
    - from:
      - source:
          notNamespaces: [ "ns1" ]
---
{}"#,
        istio_implicit_allow("ns1")
    );
    let s = set(&yaml);
    let m = target();
    let mut cases = Vec::new();
    for port in [GRPC, TCP, HTTP, HTTP2] {
        cases.push(("TestAuthz_NotNamespace ns1", R::to(&m).peer(NS1_A).port(port), true));
        cases.push(("TestAuthz_NotNamespace ns2", R::to(&m).peer(NS2_A).port(port), false));
        // A plaintext caller has no namespace, so "not ns1" holds and the DENY rule matches.
        cases.push(("TestAuthz_NotNamespace plaintext", R::to(&m).port(port), false));
    }
    check_cases(&s, &cases);
}

#[test]
fn authz_not_host() {
    // TestAuthz_NotHost + not-host.yaml.tmpl
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
      - operation:
          notHosts: [ "deny.b.com" ]
"#);
    let m = target();
    check_cases(
        &s,
        &[
            ("TestAuthz_NotHost allow", R::to(&m).host("allow.b.com"), true),
            ("TestAuthz_NotHost deny", R::to(&m).host("deny.b.com"), false),
            ("TestAuthz_NotHost deny (case)", R::to(&m).host("DENY.b.COM"), false),
        ],
    );
}

#[test]
fn authz_not_method() {
    // TestAuthz_NotMethod + not-method.yaml.tmpl
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b-allow
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
      - operation:
          notMethods: [ "PUT" ]
"#);
    let m = target();
    let mut cases = Vec::new();
    for port in [HTTP, HTTP2] {
        cases.push(("TestAuthz_NotMethod GET", R::to(&m).peer(NS1_A).port(port).method("GET"), true));
        cases.push(("TestAuthz_NotMethod PUT", R::to(&m).peer(NS1_A).port(port).method("PUT"), false));
    }
    check_cases(&s, &cases);
}

#[test]
fn authz_not_port() {
    // TestAuthz_NotPort + not-port.yaml.tmpl
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b-allow
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
      - operation:
          notPorts: [ "18085" ]
"#);
    let m = target();
    check_cases(
        &s,
        &[
            ("TestAuthz_NotPort http", R::to(&m).peer(NS1_A).port(HTTP), true),
            ("TestAuthz_NotPort http2", R::to(&m).peer(NS1_A).port(HTTP2), false),
        ],
    );
}

#[test]
fn authz_deny_plaintext() {
    // TestAuthz_DenyPlaintext + plaintext.yaml.tmpl: DENY from notPrincipals ["*"].
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: DENY
  rules:
    - from:
        - source:
            notPrincipals: [ "*" ]
---
{}"#,
        istio_implicit_allow("ns1")
    );
    let s = set(&yaml);
    let m = target();
    let mut cases = Vec::new();
    for port in [GRPC, TCP, HTTP, HTTP2] {
        cases.push(("TestAuthz_DenyPlaintext mTLS", R::to(&m).peer(NS1_A).port(port), true));
        cases.push(("TestAuthz_DenyPlaintext plaintext", R::to(&m).port(port), false));
    }
    check_cases(&s, &cases);
}

/// jwt.yaml.tmpl's AuthorizationPolicy.
const JWT_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  rules:
  - to:
    - operation:
        paths: ["/token1"]
        methods: ["GET"]
    from:
    - source:
        requestPrincipals: ["test-issuer-1@istio.io/sub-1"]
  - to:
    - operation:
        paths: ["/token2"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[groups]
      values: ["group-2"]
  - to:
    - operation:
        paths: ["/tokenAny"]
        methods: ["GET"]
    from:
    - source:
        requestPrincipals: ["*"]
  - to:
    - operation:
        paths: ["/scope"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[scope]
      values: ["append", "write"]
  - to:
    - operation:
        paths: ["/otherscope"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[scope]
      values: ["admin"]
  - to:
    - operation:
        paths: ["/permission"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[permission]
      values: ["write", "append"]
  - to:
    - operation:
        paths: ["/custom-scope-admin"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[custom_scope]
      values: ["admin"]
  - to:
    - operation:
        paths: ["/custom-scope-user"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[custom_scope]
      values: ["user"]
  - to:
    - operation:
        paths: ["/nested-key1"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[nested][key1]
      values: ["valueB"]
  - to:
    - operation:
        paths: ["/nested-non-exist"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[nested][non-exist]
      values: ["valueC"]
  - to:
    - operation:
        paths: ["/nested-key2"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[nested][key2]
      values: ["valueC"]
  - to:
    - operation:
        paths: ["/nested-2-key1"]
        methods: ["GET"]
    when:
    - key: request.auth.claims[nested][nested-2][key1]
      values: ["valueA"]
  - to:
    - operation:
        paths: ["/valid-jwt"]
    when:
    - key: request.auth.principal
      values: ["*"]
  - to:
    - operation:
        paths: ["*/presenter"]
    when:
    - key: request.auth.presenter
      values: ["bar"]
  - to:
    - operation:
        paths: ["*/audiences"]
    when:
    - key: request.auth.audiences
      values: ["foo"]
  - to:
    - operation:
        paths: ["/token3"]
        methods: ["GET"]
    from:
    - source:
        notRequestPrincipals: ["test-issuer-1@istio.io/sub-1"]
"#;

#[test]
fn authz_jwt() {
    // TestAuthz_JWT + jwt.yaml.tmpl. Token payloads are those of tests/common/jwt/jwt_token.go;
    // issuer 2's RequestAuthentication adds custom_scope and teams to the space-delimited claims.
    let settings = Settings {
        space_delimited_claims: ["scope", "permission", "custom_scope", "teams"].map(String::from).to_vec(),
        ..common::istio_settings()
    };
    let s = set_with(JWT_POLICY, settings);
    let m = target();
    let issuer1 = json!({"groups": ["group-1"], "iss": "test-issuer-1@istio.io", "sub": "sub-1"});
    let issuer2 = json!({"groups": ["group-2"], "iss": "test-issuer-2@istio.io", "sub": "sub-2"});
    let aud = json!({"aud": "foo", "iss": "test-issuer-1@istio.io", "sub": "sub-1"});
    let aud_list = json!({"aud": ["foo", "buzz"], "iss": "test-issuer-1@istio.io", "sub": "sub-1"});
    let azp = json!({"azp": "bar", "iss": "test-issuer-1@istio.io", "sub": "sub-1"});
    let nested1 = json!({"iss": "test-issuer-1@istio.io", "sub": "sub-1",
        "nested": {"key1": ["valueA", "valueB"], "nested-2": {"key1": ["valueA", "valueB"]}}});
    let nested2 = json!({"iss": "test-issuer-1@istio.io", "sub": "sub-1",
        "nested": {"key2": "valueC", "nested-2": {"key2": "valueC"}}});
    let permission = json!({"iss": "test-issuer-2@istio.io", "permission": "read write", "sub": "sub-2"});
    let scope = json!({"iss": "test-issuer-2@istio.io", "scope": "write read", "sub": "sub-2"});
    let custom_scope = json!({"custom_scope": "admin user", "iss": "test-issuer-2@istio.io", "sub": "sub-2"});
    let none = serde_json::Value::Null;
    let table = [
        ("[No JWT]", &none, "/token1", false),
        ("[No JWT]", &none, "/token2", false),
        ("[Token1]", &issuer1, "/token1", true),
        ("[Token1]", &issuer1, "/token2", false),
        ("[Token2]", &issuer2, "/token1", false),
        ("[Token2]", &issuer2, "/token2", true),
        ("[Token3]", &issuer1, "/token3", false),
        ("[Token3]", &issuer2, "/token3", true),
        ("[Token1]", &issuer1, "/tokenAny", true),
        ("[Token2]", &issuer2, "/tokenAny", true),
        ("[PermissionToken1]", &issuer1, "/permission", false),
        ("[PermissionToken2]", &issuer2, "/permission", false),
        ("[PermissionTokenWithSpaceDelimitedPermission]", &permission, "/permission", true),
        ("[PermissionTokenWithSpaceDelimitedScope]", &scope, "/scope", true),
        ("[PermissionTokenWithSpaceDelimitedScope]", &scope, "/otherscope", false),
        ("[CustomScopeToken]", &custom_scope, "/custom-scope-admin", true),
        ("[CustomScopeToken]", &custom_scope, "/custom-scope-user", true),
        ("[NoJWT]", &none, "/custom-scope-admin", false),
        ("[NoJWT]", &none, "/custom-scope-user", false),
        ("[Token1]", &issuer1, "/custom-scope-admin", false),
        ("[Token1]", &issuer1, "/custom-scope-user", false),
        ("[NestedToken1]", &nested1, "/nested-key1", true),
        ("[NestedToken2]", &nested2, "/nested-key1", false),
        ("[NestedToken1]", &nested1, "/nested-key2", false),
        ("[NestedToken2]", &nested2, "/nested-key2", true),
        ("[NestedToken1]", &nested1, "/nested-2-key1", true),
        ("[NestedToken2]", &nested2, "/nested-2-key1", false),
        ("[NestedToken1]", &nested1, "/nested-non-exist", false),
        ("[NestedToken2]", &nested2, "/nested-non-exist", false),
        ("[NoJWT]", &none, "/tokenAny", false),
        ("[JWTWithAud]", &aud, "/audiences", true),
        ("[JWTWithAudList]", &aud_list, "/audiences", true),
        // The presenter and valid-jwt rules exist in jwt.yaml.tmpl; these exercise them.
        ("[JWTWithAzp]", &azp, "/presenter", true),
        ("[Token1]", &issuer1, "/presenter", false),
        ("[Token1]", &issuer1, "/valid-jwt", true),
        ("[NoJWT]", &none, "/valid-jwt", false),
    ];
    let mut cases = Vec::new();
    for (prefix, claims, path, allow) in table {
        for port in [HTTP, HTTP2] {
            let r = R::to(&m).peer(NS1_A).port(port).method("GET").path(path).claims(claims.clone());
            cases.push((prefix, r, allow));
        }
    }
    check_cases(&s, &cases);
}

#[test]
fn authz_workload_selector() {
    // TestAuthz_WorkloadSelector + workload, workload-bad, workload-ns (ns1 and ns2) and
    // workload-system-ns templates.
    let policy = |name: &str, ns: &str, selector: &str, path: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{selector}  rules:\n  - to:\n    - operation:\n        paths: [ \"{path}\" ]\n"
        )
    };
    let app_b = "  selector:\n    matchLabels:\n      \"app\": \"b\"\n";
    let app_b_bad = "  selector:\n    matchLabels:\n      \"app\": \"b\"\n      \"foo\": \"bla\"\n";
    let yaml = [
        policy("policy-b", "ns1", app_b, "/policy-ns1-b"),
        policy("policy-b-bad", "ns1", app_b_bad, "/policy-ns1-b-bad"),
        policy("policy-ns1-all", "ns1", "", "/policy-ns1-all"),
        policy("policy-ns2-all", "ns2", "", "/policy-ns2-all"),
        policy("policy-system-b", "istio-system", app_b, "/policy-system-b"),
    ]
    .join("---\n");
    let s = set(&yaml);
    let b = target();
    let b_relabelled = model("ns1", "b", &[("app", "b"), ("foo", "bla")]);
    let r = |m: &std::sync::Arc<palisade_policy::TargetModel>, p: &str| R::to(m).peer(NS1_A).path(p);
    check_cases(
        &s,
        &[
            ("TestAuthz_WorkloadSelector bad selector", r(&b, "/policy-ns1-b-bad"), false),
            (
                "TestAuthz_WorkloadSelector bad selector after relabel",
                r(&b_relabelled, "/policy-ns1-b-bad"),
                true,
            ),
            ("TestAuthz_WorkloadSelector namespace-wide ns1", r(&b, "/policy-ns1-all"), true),
            ("TestAuthz_WorkloadSelector namespace-wide ns2", r(&b, "/policy-ns2-all"), false),
            ("TestAuthz_WorkloadSelector workload", r(&b, "/policy-ns1-b"), true),
            ("TestAuthz_WorkloadSelector system namespace", r(&b, "/policy-system-b"), true),
            ("TestAuthz_WorkloadSelector other workload", r(&b, "/policy-ns1-c"), false),
            ("TestAuthz_WorkloadSelector other workload (system)", r(&b, "/policy-system-c"), false),
        ],
    );
    // The root-namespace policy selects by label in every namespace.
    let c_in_ns2 = model("ns2", "c", &[("app", "b")]);
    check_cases(
        &s,
        &[
            (
                "TestAuthz_WorkloadSelector system ns selects across namespaces",
                r(&c_in_ns2, "/policy-system-b"),
                true,
            ),
            ("TestAuthz_WorkloadSelector ns2-wide", r(&c_in_ns2, "/policy-ns2-all"), true),
            ("TestAuthz_WorkloadSelector ns1 policy not in ns2", r(&c_in_ns2, "/policy-ns1-b"), false),
        ],
    );
}

#[test]
fn authz_path_precedence() {
    // TestAuthz_PathPrecedence + path-precedence.yaml.tmpl: DENY wins over ALLOW.
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: policy-b-deny
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: DENY
  rules:
    - to:
        - operation:
            paths: ["/allow/admin"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: policy-b-allow
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
        - operation:
            paths: ["/allow*"]
"#);
    let m = target();
    let mut cases = Vec::new();
    for port in [HTTP, HTTP2] {
        for (path, allow) in [
            ("/allow/admin", false),
            ("/allow/admin?param=value", false),
            ("/allow", true),
            ("/allow?param=value", true),
        ] {
            cases.push(("TestAuthz_PathPrecedence", R::to(&m).port(port).path(path), allow));
        }
    }
    check_cases(&s, &cases);
}

const PATH_TEMPLATING: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: ALLOW
  rules:
    - to:
        - operation:
            paths: ["/allow/admin/{**}", "/foo/{*}/bar/{**}", "/store/{**}/cart"]
"#;

#[test]
fn authz_path_templating() {
    // TestAuthz_PathTemplating + path-templating.yaml.tmpl. Istio runs this test with its
    // default (BASE) normalization, which keeps `//`; the paths are given as Envoy sees them.
    let s = set(PATH_TEMPLATING);
    let m = target();
    let table = [
        ("/allow/admin/", true),
        ("/allow/admin", false),
        ("/allow/user/", false),
        ("/allow/admin?param=value", false),
        ("/allow", false),
        ("/allow/admin/temp", true),
        ("/allow/admin/temp.txt", true),
        ("/allow/admin/foo/temp.txt", true),
        ("/foo/buzz/bar/bat.txt", true),
        ("/foo/buzz/bar/bat.temp.txt", true),
        ("/foo/buzz/bar/bat/fuzz.txt", true),
        ("/foo/bar/bat.txt", false),
        ("/foo//bar/bat.txt", false),
        ("/foo/buzz/bar/bat", true),
        ("/store//cart", true),
        ("/store/cart", false),
        ("/store/foo/cart", true),
        ("/store/foo/bar/cart", true),
    ];
    let mut cases = Vec::new();
    for (path, allow) in table {
        let raw = path.split('?').next().unwrap_or(path);
        for port in [HTTP, HTTP2] {
            cases.push(("TestAuthz_PathTemplating", R::to(&m).port(port).raw_path(raw), allow));
        }
    }
    check_cases(&s, &cases);
}

#[test]
fn authz_path_templating_after_palisade_normalization() {
    // Palisade merges slashes (Istio's recommended DECODE_AND_MERGE_SLASHES), so the two
    // `//` cases of TestAuthz_PathTemplating see `/store/cart` and `/foo/bar/bat.txt`.
    let s = set(PATH_TEMPLATING);
    let m = target();
    check_cases(
        &s,
        &[
            ("merged /store//cart", R::to(&m).path("/store//cart"), false),
            ("merged /foo//bar/bat.txt", R::to(&m).path("/foo//bar/bat.txt"), false),
            ("query dropped /allow/admin/?x", R::to(&m).path("/allow/admin/?x=1"), true),
        ],
    );
}

#[test]
fn authz_ingress_gateway() {
    // TestAuthz_IngressGateway + ingress-gateway.yaml.tmpl: a root-namespace DENY policy
    // selecting the gateway; X-Forwarded-For sets remote.ip.
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: policy-b
  namespace: istio-system
spec:
  action: DENY
  selector:
    matchLabels:
      app: istio-ingressgateway
  rules:
    - to:
        - operation:
            hosts: [
              "deny.b.com",
              "*.suffix.b.com",
              "prefix.b.*"]
    - to:
        - operation:
            hosts: ["internal.b.com"]
        - operation:
            paths: ["/private"]
    - from:
        - source:
            remoteIpBlocks: ["172.17.72.46", "192.168.4.0/23"]
      to:
        - operation:
            hosts: ["remoteipblocks.b.com"]
    - from:
        - source:
            notRemoteIpBlocks: ["172.23.240.0/22"]
      to:
        - operation:
            hosts: ["notremoteipblocks.b.com"]
    - to:
        - operation:
            hosts: ["remoteipattr.b.com"]
      when:
        - key: remote.ip
          values: ["10.242.5.7", "10.124.99.0/24"]
---
{}"#,
        istio_implicit_allow("ns1")
    );
    let s = set(&yaml);
    let gw = model("ns1", "gateway", &[("app", "istio-ingressgateway")]);
    let table: &[(&str, &str, Option<&str>, bool)] = &[
        ("deny.b.com", "/", None, false),
        ("DENY.B.COM", "/", None, false),
        ("Deny.b.Com", "/", None, false),
        ("deny.suffix.b.com", "/", None, false),
        ("DENY.SUFFIX.B.COM", "/", None, false),
        ("Deny.Suffix.b.Com", "/", None, false),
        ("prefix.b.com", "/", None, false),
        ("PREFIX.B.COM", "/", None, false),
        ("Prefix.b.Com", "/", None, false),
        ("www.b.com", "/", Some("172.16.0.1"), true),
        ("www.b.com", "/private", Some("172.16.0.1"), false),
        ("www.b.com", "/public", Some("172.16.0.1"), true),
        ("internal.b.com", "/", Some("172.16.0.1"), false),
        ("internal.b.com", "/private", Some("172.16.0.1"), false),
        ("remoteipblocks.b.com", "/", Some("172.17.72.46"), false),
        ("remoteipblocks.b.com", "/", Some("192.168.5.233"), false),
        ("remoteipblocks.b.com", "/", Some("10.4.5.6"), true),
        ("notremoteipblocks.b.com", "/", Some("10.2.3.4"), false),
        ("notremoteipblocks.b.com", "/", Some("172.23.242.188"), true),
        ("remoteipattr.b.com", "/", Some("10.242.5.7"), false),
        ("remoteipattr.b.com", "/", Some("10.124.99.10"), false),
        ("remoteipattr.b.com", "/", Some("10.4.5.6"), true),
    ];
    let cases: Vec<_> = table
        .iter()
        .map(|(host, path, ip, allow)| {
            let mut r = R::to(&gw).host(host).path(path).port(80);
            if let Some(ip) = ip {
                r = r.remote_ip(ip);
            }
            ("TestAuthz_IngressGateway", r, *allow)
        })
        .collect();
    check_cases(&s, &cases);
}

#[test]
fn authz_conditions() {
    // TestAuthz_Conditions + conditions.yaml.tmpl. Workload addresses: ns1/a 10.0.1.1,
    // ns2/a 10.0.2.1, target b 10.0.1.2; the mTLS SNI is Istio's outbound cluster name.
    let policy = |name: &str, rules: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: b-{name}\n  namespace: ns1\nspec:\n  selector:\n    matchLabels:\n      app: \"b\"\n  rules:\n{rules}"
        )
    };
    let rule = |path: &str, key: &str, field: &str, values: &str| {
        format!(
            "  - to:\n    - operation:\n        paths: [ \"{path}\" ]\n    when:\n    - key: {key}\n      {field}: {values}\n"
        )
    };
    let yaml = [
        policy(
            "request-headers",
            &(rule("/request-headers", "request.headers[x-foo]", "values", r#"[ "foo" ]"#)
                + &rule("/request-headers-notValues", "request.headers[x-foo]", "notValues", r#"[ "bar" ]"#)),
        ),
        policy(
            "source-ip",
            &(rule("/source-ip", "source.ip", "values", r#"["10.0.1.1"]"#)
                + &rule("/source-ip-notValues", "source.ip", "notValues", r#"["10.0.2.1"]"#)),
        ),
        policy(
            "source-namespace",
            &(rule("/source-namespace", "source.namespace", "values", r#"[ "ns1" ]"#)
                + &rule("/source-namespace-notValues", "source.namespace", "notValues", r#"[ "ns2" ]"#)),
        ),
        policy(
            "source-principal",
            &(rule("/source-principal", "source.principal", "values", &format!("[ \"{NS1_A}\" ]"))
                + &rule(
                    "/source-principal-notValues",
                    "source.principal",
                    "notValues",
                    &format!("[ \"{NS2_A}\" ]"),
                )),
        ),
        policy(
            "source-trust-domain",
            &(rule("/source-trust-domain", "source.trustDomain", "values", r#"[ "cluster.local" ]"#)
                + &rule(
                    "/source-trust-domain-notValues",
                    "source.trustDomain",
                    "notValues",
                    r#"[ "bad.example.com" ]"#,
                )),
        ),
        policy(
            "destination-ip",
            &(rule("/destination-ip-good", "destination.ip", "values", r#"["10.0.1.2"]"#)
                + &rule("/destination-ip-bad", "destination.ip", "values", r#"[ "1.2.3.4" ]"#)
                + &rule("/destination-ip-notValues", "destination.ip", "notValues", r#"["10.0.1.2"]"#)),
        ),
        policy(
            "destination-port",
            &(rule("/destination-port-good", "destination.port", "values", r#"[ "18080" ]"#)
                + &rule("/destination-port-bad", "destination.port", "values", r#"[ "1" ]"#)
                + &rule("/destination-port-notValues", "destination.port", "notValues", r#"[ "18080" ]"#)),
        ),
        policy(
            "connection-sni",
            &(rule("/connection-sni-good", "connection.sni", "values", r#"[ "*.b.ns1.svc.cluster.local" ]"#)
                + &rule("/connection-sni-bad", "connection.sni", "values", r#"[ "never-matched" ]"#)
                + &rule(
                    "/connection-sni-notValues",
                    "connection.sni",
                    "notValues",
                    r#"[ "*.b.ns1.svc.cluster.local" ]"#,
                )),
        ),
    ]
    .join("---\n");
    let s = set(&yaml);
    let m = target();
    let mut cases = Vec::new();
    for (peer, ip, allowed) in [(NS1_A, "10.0.1.1", true), (NS2_A, "10.0.2.1", false)] {
        let base = R::to(&m)
            .peer(peer)
            .source_ip(ip)
            .dest_ip("10.0.1.2")
            .port(HTTP)
            .sni("outbound_.18080_._.b.ns1.svc.cluster.local");
        let c = |path: &str| base.clone().path(path);
        cases.extend([
            ("TestAuthz_Conditions headers foo", c("/request-headers").header("x-foo", "foo"), true),
            ("TestAuthz_Conditions headers bar", c("/request-headers").header("x-foo", "bar"), false),
            ("TestAuthz_Conditions headers none", c("/request-headers"), false),
            (
                "TestAuthz_Conditions headers notValues foo",
                c("/request-headers-notValues").header("x-foo", "foo"),
                true,
            ),
            (
                "TestAuthz_Conditions headers notValues bar",
                c("/request-headers-notValues").header("x-foo", "bar"),
                false,
            ),
            ("TestAuthz_Conditions source-ip", c("/source-ip"), allowed),
            ("TestAuthz_Conditions source-ip-notValues", c("/source-ip-notValues"), allowed),
            ("TestAuthz_Conditions source-namespace", c("/source-namespace"), allowed),
            ("TestAuthz_Conditions source-namespace-notValues", c("/source-namespace-notValues"), allowed),
            ("TestAuthz_Conditions source-principal", c("/source-principal"), allowed),
            ("TestAuthz_Conditions source-principal-notValues", c("/source-principal-notValues"), allowed),
            ("TestAuthz_Conditions source-trust-domain", c("/source-trust-domain"), true),
            ("TestAuthz_Conditions source-trust-domain-notValues", c("/source-trust-domain-notValues"), true),
            ("TestAuthz_Conditions destination-ip-good", c("/destination-ip-good"), true),
            ("TestAuthz_Conditions destination-ip-bad", c("/destination-ip-bad"), false),
            ("TestAuthz_Conditions destination-ip-notValues", c("/destination-ip-notValues"), false),
            ("TestAuthz_Conditions destination-port-good", c("/destination-port-good"), true),
            ("TestAuthz_Conditions destination-port-bad", c("/destination-port-bad"), false),
            ("TestAuthz_Conditions destination-port-notValues", c("/destination-port-notValues"), false),
            ("TestAuthz_Conditions connection-sni-good", c("/connection-sni-good"), true),
            ("TestAuthz_Conditions connection-sni-bad", c("/connection-sni-bad"), false),
            ("TestAuthz_Conditions connection-sni-notValues", c("/connection-sni-notValues"), false),
            ("TestAuthz_Conditions other", c("/other"), false),
        ]);
    }
    check_cases(&s, &cases);
}

#[test]
fn authz_path_normalization() {
    // TestAuthz_PathNormalization + path-normalization.yaml.tmpl, plus the encoded-slash and
    // double-slash vectors of Istio's path-normalization guidance.
    let s = set(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  rules:
  - to:
    - operation:
        paths: ["/public*"]
        methods: ["GET"]
"#);
    let m = target();
    let table = [
        ("/public", true),
        ("/public/../public", true),
        ("/private", false),
        ("/public/../private", false),
        ("/public/./../private", false),
        ("/public/.././private", false),
        ("/public/%2E%2E/private", false),
        ("/public/%2e%2e/private", false),
        ("/public/%2E/%2E%2E/private", false),
        ("/public/%2e/%2e%2e/private", false),
        ("/public/%2E%2E/%2E/private", false),
        ("/public/%2e%2e/%2e/private", false),
        ("/public/..%2Fprivate", false),
        ("/public/..%2fprivate", false),
        ("/public/..%5Cprivate", false),
        ("/public\\..\\private", false),
        ("//public/../private", false),
        ("/public//../private", false),
        ("/public/x", true),
        ("/public/%78", true),
    ];
    let cases: Vec<_> = table
        .iter()
        .map(|(p, allow)| ("TestAuthz_PathNormalization", R::to(&m).port(HTTP).path(p), *allow))
        .collect();
    check_cases(&s, &cases);
}

#[test]
fn authz_custom_server_fails_closed() {
    // TestAuthz_CustomServer + custom-provider.yaml.tmpl: requests matching a CUSTOM rule go
    // to the external authorizer in Istio. Palisade has none, so they are denied, as Istio
    // does when the provider is missing; requests that do not match fall through.
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: b-custom
  namespace: ns1
spec:
  selector:
    matchLabels:
      "app": "b"
  action: CUSTOM
  provider:
    name: ext-authz-http
  rules:
  - to:
    - operation:
        paths: ["/custom"]
---
{}"#,
        istio_implicit_allow("ns1")
    );
    let s = set(&yaml);
    let m = target();
    check_cases(
        &s,
        &[
            ("TestAuthz_CustomServer matching", R::to(&m).path("/custom"), false),
            ("TestAuthz_CustomServer not matching", R::to(&m).path("/health"), true),
        ],
    );
}
