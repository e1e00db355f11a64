//! Load-time validation, mirroring Istio's validation tests:
//! `pkg/config/validation/validation_test.go` (TestValidateAuthorizationPolicy),
//! `pkg/config/security/security_test.go` (TestValidateCondition, TestCheckWildcardValues,
//! TestCheckTrustDomainValues, TestCheckValidPathTemplate) and
//! `pilot/pkg/security/authz/model/util_test.go` (TestConvertToPort,
//! TestExtractNameInNestedBrackets), plus Palisade's error-reporting promises.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{parse, parse_err};
use palisade_policy::{Action, ApiVersion, ConditionKey, PolicyError, PolicySet, Settings, parse_policy};

/// A full document around a `spec` written in YAML flow style.
fn doc(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: httpbin\n  namespace: foo\nspec: {spec}\n"
    )
}

fn valid(spec: &str) -> bool {
    parse_policy(&doc(spec), Path::new("t.yaml")).is_ok()
}

#[test]
fn validate_authorization_policy() {
    // TestValidateAuthorizationPolicy: (case name, spec, valid).
    let cases: &[(&str, &str, bool)] = &[
        (
            "good",
            r#"{selector: {matchLabels: {app: httpbin, version: v1}}, rules: [{from: [{source: {principals: ["sa1", "sa2"]}}, {source: {requestPrincipals: ["*"]}}], to: [{operation: {methods: ["GET"], paths: ["/path1", "/path2"]}}, {operation: {hosts: ["*.example.com"]}}], when: [{key: "source.ip", values: ["1.2.3.4", "5.6.7.0/24"]}, {key: "request.headers[:authority]", values: ["v1", "v2"]}]}]}"#,
            true,
        ),
        (
            "good serviceAccounts",
            r#"{rules: [{from: [{source: {serviceAccounts: ["ns/sa", "sa"], notServiceAccounts: ["ns/other"]}}]}]}"#,
            true,
        ),
        (
            "serviceAccounts and namespaces",
            r#"{rules: [{from: [{source: {serviceAccounts: ["ns/sa"], namespaces: ["ns"]}}]}]}"#,
            false,
        ),
        (
            "serviceAccounts and principals",
            r#"{rules: [{from: [{source: {serviceAccounts: ["ns/sa"], principals: ["p"]}}]}]}"#,
            false,
        ),
        ("custom-good", r#"{action: CUSTOM, provider: {name: my-custom-authz}, rules: [{}]}"#, true),
        ("custom-empty-provider", r#"{action: CUSTOM, provider: {name: ""}, rules: [{}]}"#, false),
        ("custom-nil-provider", r#"{action: CUSTOM, rules: [{}]}"#, false),
        (
            "custom-invalid-rule principals",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{from: [{source: {principals: ["a"]}}]}]}"#,
            false,
        ),
        (
            "custom-invalid-rule namespaces",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{from: [{source: {notNamespaces: ["a"]}}]}]}"#,
            false,
        ),
        (
            "custom-invalid-rule requestPrincipals",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{from: [{source: {requestPrincipals: ["a"]}}]}]}"#,
            false,
        ),
        (
            "custom-invalid-rule source.namespace",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{when: [{key: source.namespace, values: [a]}]}]}"#,
            false,
        ),
        (
            "custom-invalid-rule request.auth.claims",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{when: [{key: "request.auth.claims[a]", values: [a]}]}]}"#,
            false,
        ),
        (
            "custom-valid-rule ipBlocks",
            r#"{action: CUSTOM, provider: {name: p}, rules: [{from: [{source: {ipBlocks: ["1.2.3.4"]}}], when: [{key: "request.headers[x]", values: [a]}]}]}"#,
            true,
        ),
        ("custom-rules-nil", r#"{action: CUSTOM, provider: {name: p}}"#, false),
        ("provider-wrong-action", r#"{action: ALLOW, provider: {name: p}, rules: [{}]}"#, false),
        ("provider-wrong-action deny", r#"{action: DENY, provider: {name: p}, rules: [{}]}"#, false),
        ("allow-rules-nil", r#"{action: ALLOW}"#, true),
        ("deny-rules-nil", r#"{action: DENY}"#, false),
        ("audit-rules-nil", r#"{action: AUDIT}"#, true),
        ("selector-empty-value", r#"{selector: {matchLabels: {app: "", version: v1}}}"#, true),
        ("selector-empty-key", r#"{selector: {matchLabels: {app: httpbin, "": v1}}}"#, false),
        ("selector-empty-labels", r#"{selector: {}}"#, true),
        ("selector-wildcard-value", r#"{selector: {matchLabels: {app: "httpbin-*"}}}"#, false),
        ("selector-wildcard-key", r#"{selector: {matchLabels: {"app-*": httpbin}}}"#, false),
        (
            "target-ref (not supported by Palisade)",
            r#"{targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: foo}}"#,
            false,
        ),
        (
            "target-refs (not supported by Palisade)",
            r#"{targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: foo}]}"#,
            false,
        ),
        ("from-empty", r#"{rules: [{from: []}]}"#, false),
        ("source-nil", r#"{rules: [{from: [{}]}]}"#, false),
        ("source-empty", r#"{rules: [{from: [{source: {}}]}]}"#, false),
        ("to-empty", r#"{rules: [{to: []}]}"#, false),
        ("operation-nil", r#"{rules: [{to: [{}]}]}"#, false),
        ("operation-empty", r#"{rules: [{to: [{operation: {}}]}]}"#, false),
        ("Principals-empty", r#"{rules: [{from: [{source: {principals: ["p1", ""]}}]}]}"#, false),
        ("NotPrincipals-empty", r#"{rules: [{from: [{source: {notPrincipals: ["p1", ""]}}]}]}"#, false),
        (
            "RequestPrincipals-empty",
            r#"{rules: [{from: [{source: {requestPrincipals: ["p1", ""]}}]}]}"#,
            false,
        ),
        (
            "NotRequestPrincipals-empty",
            r#"{rules: [{from: [{source: {notRequestPrincipals: ["p1", ""]}}]}]}"#,
            false,
        ),
        ("Namespaces-empty", r#"{rules: [{from: [{source: {namespaces: ["ns", ""]}}]}]}"#, false),
        (
            "ServiceAccounts-empty",
            r#"{rules: [{from: [{source: {serviceAccounts: ["ns/sa", ""]}}]}]}"#,
            false,
        ),
        ("NotNamespaces-empty", r#"{rules: [{from: [{source: {notNamespaces: ["ns", ""]}}]}]}"#, false),
        ("IpBlocks-empty", r#"{rules: [{from: [{source: {ipBlocks: ["1.2.3.4", ""]}}]}]}"#, false),
        ("NotIpBlocks-empty", r#"{rules: [{from: [{source: {notIpBlocks: ["1.2.3.4", ""]}}]}]}"#, false),
        (
            "RemoteIpBlocks-empty",
            r#"{rules: [{from: [{source: {remoteIpBlocks: ["1.2.3.4", ""]}}]}]}"#,
            false,
        ),
        (
            "NotRemoteIpBlocks-empty",
            r#"{rules: [{from: [{source: {notRemoteIpBlocks: ["1.2.3.4", ""]}}]}]}"#,
            false,
        ),
        ("Hosts-empty", r#"{rules: [{to: [{operation: {hosts: ["host", ""]}}]}]}"#, false),
        ("NotHosts-empty", r#"{rules: [{to: [{operation: {notHosts: ["host", ""]}}]}]}"#, false),
        ("Ports-empty", r#"{rules: [{to: [{operation: {ports: ["80", ""]}}]}]}"#, false),
        ("NotPorts-empty", r#"{rules: [{to: [{operation: {notPorts: ["80", ""]}}]}]}"#, false),
        ("Methods-empty", r#"{rules: [{to: [{operation: {methods: ["GET", ""]}}]}]}"#, false),
        ("NotMethods-empty", r#"{rules: [{to: [{operation: {notMethods: ["GET", ""]}}]}]}"#, false),
        ("Paths-empty", r#"{rules: [{to: [{operation: {paths: ["/path", ""]}}]}]}"#, false),
        ("NotPaths-empty", r#"{rules: [{to: [{operation: {notPaths: ["/path", ""]}}]}]}"#, false),
        (
            "value-empty",
            r#"{rules: [{when: [{key: "request.headers[:authority]", values: ["v1", ""]}]}]}"#,
            false,
        ),
        ("invalid ip in ipBlocks", r#"{rules: [{from: [{source: {ipBlocks: ["1.2.3.4", "ip1"]}}]}]}"#, false),
        (
            "invalid ip in notIpBlocks",
            r#"{rules: [{from: [{source: {notIpBlocks: ["5.6.7.8", "ip2"]}}]}]}"#,
            false,
        ),
        (
            "invalid ip in remoteIpBlocks",
            r#"{rules: [{from: [{source: {remoteIpBlocks: ["1.2.3.4", "ip1"]}}]}]}"#,
            false,
        ),
        (
            "invalid ip in notRemoteIpBlocks",
            r#"{rules: [{from: [{source: {notRemoteIpBlocks: ["5.6.7.8", "ip2"]}}]}]}"#,
            false,
        ),
        ("invalid port in ports", r#"{rules: [{to: [{operation: {ports: ["80", "port1"]}}]}]}"#, false),
        ("invalid port in notPorts", r#"{rules: [{to: [{operation: {notPorts: ["90", "port2"]}}]}]}"#, false),
        ("condition-key-missing", r#"{rules: [{when: [{values: ["v1", "v2"]}]}]}"#, false),
        ("condition-key-empty", r#"{rules: [{when: [{key: "", values: ["v1", "v2"]}]}]}"#, false),
        ("condition-value-missing", r#"{rules: [{when: [{key: "source.principal"}]}]}"#, false),
        ("condition-value-invalid", r#"{rules: [{when: [{key: "source.ip", values: ["a.b.c.d"]}]}]}"#, false),
        (
            "condition-notValue-invalid",
            r#"{rules: [{when: [{key: "source.ip", notValues: ["a.b.c.d"]}]}]}"#,
            false,
        ),
        ("condition-unknown", r#"{rules: [{when: [{key: "key1", values: ["v1"]}]}]}"#, false),
        // The L7Deny* cases are warnings in Istio (HTTP-only DENY rules also deny TCP); valid.
        (
            "L7DenyWithFrom",
            r#"{action: DENY, rules: [{from: [{source: {requestPrincipals: ["example.com/sub-1"]}}]}]}"#,
            true,
        ),
        ("L7DenyWithTo", r#"{action: DENY, rules: [{to: [{operation: {methods: ["GET"]}}]}]}"#, true),
        (
            "L7DenyWithFromAndToWithPort",
            r#"{action: DENY, rules: [{from: [{source: {requestPrincipals: ["a/b"]}}], to: [{operation: {methods: ["GET"], ports: ["8080"]}}]}]}"#,
            true,
        ),
        (
            "trustDomains good",
            r#"{rules: [{from: [{source: {trustDomains: ["cluster.local", "*", "td-*", "*-td"], notTrustDomains: ["bad"]}}]}]}"#,
            true,
        ),
        (
            "trustDomains slash",
            r#"{rules: [{from: [{source: {trustDomains: ["cluster.local/ns/foo"]}}]}]}"#,
            false,
        ),
        ("unknown action", r#"{action: PERMIT}"#, false),
    ];
    let wrong: Vec<_> =
        cases.iter().filter(|(_, spec, ok)| valid(spec) != *ok).map(|(name, ..)| *name).collect();
    assert!(wrong.is_empty(), "misjudged: {wrong:?}");
}

#[test]
fn dry_run_annotation() {
    // TestValidateAuthorizationPolicy dry-run-* cases.
    let with = |value: &str, action: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n  annotations:\n    istio.io/dry-run: \"{value}\"\nspec:\n  action: {action}\n  provider: {}\n  rules: [{{}}]\n",
            if action == "CUSTOM" { "{name: p}" } else { "null" }
        )
    };
    let ok = |text: &str| parse_policy(text, Path::new("t.yaml")).is_ok();
    assert!(ok(&with("true", "ALLOW")), "dry-run-valid-allow");
    assert!(ok(&with("true", "DENY")), "dry-run-valid-deny");
    assert!(ok(&with("False", "DENY")), "Go ParseBool spelling");
    assert!(!ok(&with("foo", "ALLOW")), "dry-run-invalid-value");
    assert!(!ok(&with("true", "CUSTOM")), "dry-run-invalid-action-custom");
    assert!(!ok(&with("true", "AUDIT")), "dry-run-invalid-action-audit");
    assert!(parse(&with("t", "ALLOW")).is_dry_run());
    assert!(!parse(&with("0", "ALLOW")).is_dry_run());
}

#[test]
fn validate_condition() {
    // TestValidateCondition: (key, values, valid). experimental.envoy.filters.* is valid in
    // Istio but reads Envoy metadata Palisade does not have: rejected with a clear error.
    let cases: &[(&str, &str, bool)] = &[
        ("request.headers[:authority]", r#"["productpage", ""]"#, false),
        ("request.headers[:authority]", r#"["productpage"]"#, true),
        ("request.headers[]", r#"["productpage"]"#, false),
        ("source.ip", r#"["1.2.3.4", "5.6.7.0/24"]"#, true),
        ("source.ip", r#"["a.b.c.d"]"#, false),
        ("remote.ip", r#"["1.2.3.4", "5.6.7.0/24"]"#, true),
        ("remote.ip", r#"["a.b.c.d"]"#, false),
        ("source.namespace", r#"["value"]"#, true),
        ("source.user", r#"["value"]"#, false),
        ("source.principal", r#"["value"]"#, true),
        ("source.serviceAccount", r#"["too/many/slashes"]"#, false),
        ("source.serviceAccount", r#"["/emptyns"]"#, false),
        ("source.serviceAccount", r#"["emptysa/"]"#, false),
        ("source.serviceAccount", r#"["ns/sa"]"#, true),
        ("source.serviceAccount", r#"["sa"]"#, true),
        ("source.serviceAccount", r#"["ns/sa*"]"#, false),
        ("source.trustDomain", r#"["cluster.local"]"#, true),
        ("source.trustDomain", r#"["*"]"#, true),
        ("source.trustDomain", r#"["foo*"]"#, true),
        ("source.trustDomain", r#"["*bar"]"#, true),
        ("source.trustDomain", r#"["fo*-bar"]"#, false),
        ("source.trustDomain", r#"["fo*bar*"]"#, false),
        ("source.trustDomain", r#"[""]"#, false),
        ("request.auth.principal", r#"["value"]"#, true),
        ("request.auth.audiences", r#"["value"]"#, true),
        ("request.auth.presenter", r#"["value"]"#, true),
        ("request.auth.claims[id]", r#"["123"]"#, true),
        ("request.auth.claims[]", r#"["value"]"#, false),
        ("destination.ip", r#"["1.2.3.4", "5.6.7.0/24"]"#, true),
        ("destination.ip", r#"["a.b.c.d"]"#, false),
        ("destination.port", r#"["80", "90"]"#, true),
        ("destination.port", r#"["80", "x"]"#, false),
        ("destination.labels[app]", r#"["value"]"#, false),
        ("destination.name", r#"["value"]"#, false),
        ("destination.namespace", r#"["value"]"#, false),
        ("destination.user", r#"["value"]"#, false),
        ("connection.sni", r#"["value"]"#, true),
        ("experimental.envoy.filters.a.b[c]", r#"["value"]"#, false),
        ("experimental.envoy.filters.a.b.x", r#"["value"]"#, false),
    ];
    let wrong: Vec<_> = cases
        .iter()
        .filter(|(key, values, ok)| {
            let spec = format!(r#"{{rules: [{{when: [{{key: "{key}", values: {values}}}]}}]}}"#);
            let not_spec = format!(r#"{{rules: [{{when: [{{key: "{key}", notValues: {values}}}]}}]}}"#);
            valid(&spec) != *ok || valid(&not_spec) != *ok
        })
        .map(|(key, values, _)| format!("{key} {values}"))
        .collect();
    assert!(wrong.is_empty(), "misjudged: {wrong:?}");
}

#[test]
fn check_wildcard_and_trust_domain_values() {
    // TestCheckWildcardValues and TestCheckTrustDomainValues, through trustDomains.
    for (value, ok) in [
        ("foo", true),
        ("*", true),
        ("foo*", true),
        ("*foo", true),
        ("", false),
        ("fo*-bar", false),
        ("fo*bar*", false),
        ("cluster.local", true),
        ("cluster-*", true),
        ("*-cluster", true),
        ("cluster.local/ns/foo", false),
        ("spiffe://cluster.local", false),
    ] {
        let spec = format!(r#"{{rules: [{{from: [{{source: {{trustDomains: ["{value}"]}}}}]}}]}}"#);
        assert_eq!(valid(&spec), ok, "trustDomains {value:?}");
    }
}

#[test]
fn check_valid_path_template() {
    // TestCheckValidPathTemplate: (paths, valid).
    for (path, ok) in [
        ("/{*}/foo", true),
        ("/{*}/foo/", true),
        ("/foo/{**}/bar", true),
        ("/foo/bar/{**}", true),
        ("/foo/{**}buzz/bar", false),
        ("/{*}/foo/{}/bar", false),
        ("/foo/{*}/bar/*", false),
        ("/foo/{*}/bar/**/buzz", false),
        ("/foo/{buzz}/bar", false),
        ("/{buzz}", false),
        ("/foo/{buzz}/bar/{**}", false),
        ("/foo/{buzz=*}/bar/{**}", false),
        ("/{*}/foo/{buzz=**}/bar", false),
        ("/{*}/foo/{**}bar", false),
        ("/{*}/foo/{*}.txt", false),
        ("/{*}/foo/{temp", false),
        ("/{*}/foo/temp}/bar", false),
        ("/{*}/foo/temp}/*", false),
        ("/{**}/foo/temp/{*}/bar", false),
        ("/{**}/{**}", false),
        ("/{**}/foo/temp/{**}/bar", false),
        ("/{*}/foo/?abc", false),
        // Plain paths and Istio wildcards are not templates.
        ("/prefix*", true),
        ("*/suffix", true),
        ("*", true),
    ] {
        for field in ["paths", "notPaths"] {
            let spec = format!(r#"{{rules: [{{to: [{{operation: {{{field}: ["{path}"]}}}}]}}]}}"#);
            assert_eq!(valid(&spec), ok, "{field} {path:?}");
        }
    }
}

#[test]
fn convert_to_port() {
    // util_test.go TestConvertToPort, via operation ports and destination.port.
    for (port, ok) in
        [("-80", false), ("xyz", false), ("91234", false), ("443", true), ("0", true), ("65535", true)]
    {
        assert_eq!(
            valid(&format!(r#"{{rules: [{{to: [{{operation: {{ports: ["{port}"]}}}}]}}]}}"#)),
            ok,
            "{port}"
        );
        assert_eq!(
            valid(&format!(r#"{{rules: [{{when: [{{key: destination.port, values: ["{port}"]}}]}}]}}"#)),
            ok
        );
    }
}

#[test]
fn extract_name_in_nested_brackets() {
    // util_test.go TestExtractNameInNestedBrackets, through request.auth.claims keys.
    for (suffix, want) in [
        ("[good]", Some(vec!["good"])),
        ("[good][abc][xyz]", Some(vec!["good", "abc", "xyz"])),
        ("[[good]", Some(vec!["[good"])),
        ("[good]]", Some(vec!["good]"])),
        ("[[good]]", Some(vec!["[good]"])),
        ("x[bad]", None),
        ("[bad", None),
        ("bad]", None),
        ("bad", None),
        // `[]` parses in Istio's helper but validateMapKey rejects the key first.
        ("[]", None),
    ] {
        let key = format!("request.auth.claims{suffix}");
        let got = ConditionKey::parse(&key).ok();
        let want = want.map(|w| ConditionKey::RequestClaim(w.into_iter().map(String::from).collect()));
        assert_eq!(got, want, "{key}");
    }
    // util_test.go TestExtractNameInBrackets, through request.headers keys.
    assert_eq!(ConditionKey::parse("request.headers[good]"), Ok(ConditionKey::RequestHeader("good".into())));
    assert_eq!(
        ConditionKey::parse("request.headers[[good]]"),
        Ok(ConditionKey::RequestHeader("[good]".into()))
    );
    for bad in ["request.headers[bad", "request.headersbad]", "request.headers", "request.headers[]"] {
        assert!(ConditionKey::parse(bad).is_err(), "{bad}");
    }
}

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
fn seed_policy_loads_unchanged() {
    let p = parse(SEED);
    assert_eq!(p.api_version, ApiVersion::V1beta1);
    assert_eq!(p.metadata.name, "allow-to-example-model");
    assert_eq!(p.metadata.namespace.as_str(), "example-model");
    assert_eq!(p.spec.action, Action::Allow);
    assert_eq!(p.spec.rules.len(), 2);
    assert_eq!(p.spec.rules[0].when[0].key, ConditionKey::RequestClaim(vec!["email".into()]));
    assert_eq!(p.spec.rules[1].to[0].operation.ports[0].0, 443);
    assert_eq!(p.source_file, Path::new("test.yaml"));
    // Serializing and parsing again gives the same policy.
    let again = parse(&serde_yaml::to_string(&p).expect("serialize"));
    assert_eq!(again, p);
}

#[test]
fn errors_name_file_line_and_field() {
    let e = parse_err(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules:\n  - from:\n    - source:\n        principalz: [x]\n",
    );
    assert_eq!(e.line, Some(10));
    assert_eq!(e.field, "spec.rules[0].from[0].source.principalz");
    assert!(e.message.starts_with("unknown field `principalz`"), "{}", e.message);
    assert_eq!(e.file, Path::new("test.yaml"));
    let shown = PolicyError::Invalid(Box::new(e)).to_string();
    assert!(
        shown.starts_with("test.yaml:10:9: field `spec.rules[0].from[0].source.principalz`: unknown field"),
        "{shown}"
    );

    let e = parse_err(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [a]\n    - key: request.auth.clams[email]\n      values: [a]\n",
    );
    assert_eq!(e.line, Some(11), "unknown condition key is reported on its line");
    assert_eq!(e.field, "spec.rules[0].when[1].key");
    assert!(e.message.contains("unknown attribute: request.auth.clams[email]"), "{}", e.message);

    let e = parse_err(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks:\n        - 10.0.0.0/8\n        - 10.0.0.0/33\n",
    );
    assert_eq!((e.line, e.field.as_str()), (Some(12), "spec.rules[0].from[0].source.ipBlocks[1]"));
    assert!(e.message.contains("prefix length"), "{}", e.message);

    for (text, field, needle) in [
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec: {}\n",
            "metadata",
            "namespace",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: Bad_Name\n  namespace: foo\n",
            "metadata",
            "DNS subdomain",
        ),
        (
            "apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n",
            "apiVersion",
            "unsupported apiVersion",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: p\n  namespace: foo\n",
            "kind",
            "AuthorizationPolicy",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  targetRef: {kind: Gateway, name: gw}\n",
            "spec",
            "not supported",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules:\n  - when:\n    - key: experimental.envoy.filters.a.b[c]\n      values: [v]\n",
            "spec.rules[0].when[0].key",
            "not supported",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nextra: 1\n",
            "extra",
            "unknown field",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n  owner: x\n",
            "metadata.owner",
            "unknown field",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  selector: {labels: {a: b}}\n",
            "spec.selector.labels",
            "unknown field",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules: [{to: [{operation: {path: [/x]}}]}]\n",
            "spec.rules[0].to[0].operation.path",
            "unknown field",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules: [{when: [{key: source.ip, value: [1.2.3.4]}]}]\n",
            "spec.rules[0].when[0].value",
            "unknown field",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n  rules: [{froms: []}]\n",
            "spec.rules[0].froms",
            "unknown field",
        ),
        ("", "", "empty"),
        ("- a\n- b\n", "", "invalid type"),
    ] {
        let e = parse_err(text);
        assert_eq!(e.field, field, "{text}");
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
}

#[test]
fn kubectl_export_loads() {
    // Read-only metadata and status from `kubectl get -o yaml` are accepted and dropped.
    let p = parse(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n  uid: 5d3c\n  resourceVersion: \"123\"\n  generation: 2\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n  labels: {team: a}\n  annotations: {note: x}\nspec:\n  rules: [{}]\nstatus:\n  validationMessages: []\n",
    );
    assert_eq!(p.metadata.labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(p.spec.rules.len(), 1);
}

#[test]
fn unquoted_ports_are_accepted() {
    // Istio's CRD wants strings; YAML users often write numbers. The text is the same.
    let p = parse(&doc("{rules: [{to: [{operation: {ports: [443, 8080]}}]}]}"));
    assert_eq!(
        p.spec.rules[0].to[0].operation.ports.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![443, 8080]
    );
}

#[test]
fn policy_set_rejects_duplicates_and_bad_settings() {
    let p = parse(SEED);
    let err = PolicySet::new(vec![p.clone(), p.clone()], Settings::default()).expect_err("duplicate");
    assert!(matches!(err, PolicyError::Duplicate { .. }), "{err}");
    let bad = Settings { root_namespace: "Not A Namespace".into(), ..Settings::default() };
    assert!(matches!(PolicySet::new(vec![p.clone()], bad), Err(PolicyError::Settings(_))));
    // A policy built in code is validated again when compiled.
    let mut built = p;
    built.spec.rules[0].when[0].values.clear();
    let err = PolicySet::new(vec![built], Settings::default()).expect_err("invalid condition");
    assert!(err.to_string().contains("at least one of `values` or `notValues`"), "{err}");
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let huge = format!("{}\n# {}\n", SEED, "x".repeat(palisade_policy::resource::MAX_POLICY_BYTES));
    let e = parse_err(&huge);
    assert!(e.message.contains("at most"), "{}", e.message);
}

#[test]
fn multi_document_files_keep_line_numbers() {
    // The caller splits files with palisade_core::yaml::documents and dispatches on `kind`.
    let text = format!(
        "{SEED}---\n# second\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: two\n  namespace: foo\nspec:\n  rules:\n  - to:\n    - operation:\n        ports: [\"http\"]\n"
    );
    let docs = palisade_core::yaml::documents(Path::new("multi.yaml"), &text).expect("split");
    assert_eq!(docs.len(), 2);
    assert!(parse_policy(docs[0], Path::new("multi.yaml")).is_ok());
    let err = parse_policy(docs[1], Path::new("multi.yaml")).expect_err("bad port");
    let located = err.invalid().expect("located");
    assert_eq!(located.line, Some(30), "{err}");
    assert_eq!(located.field, "spec.rules[0].to[0].operation.ports[0]");
    assert!(located.message.contains("bad port (http)"), "{}", located.message);
}

#[test]
fn parse_from_a_value_for_kind_dispatch() {
    let value: serde_yaml::Value = serde_yaml::from_str(SEED).expect("yaml");
    assert_eq!(value["kind"].as_str(), Some("AuthorizationPolicy"));
    let policy = palisade_policy::parse_policy_value(value, Path::new("v.yaml")).expect("policy");
    assert_eq!(policy, parse_policy(SEED, Path::new("v.yaml")).expect("policy"));
    let bad: serde_yaml::Value =
        serde_yaml::from_str(&doc("{rules: [{when: [{key: nope, values: [x]}]}]}")).expect("yaml");
    let err = palisade_policy::parse_policy_value(bad, Path::new("v.yaml")).expect_err("unknown key");
    let located = err.invalid().expect("located");
    assert_eq!((located.line, located.field.as_str()), (None, "spec.rules[0].when[0].key"));
    assert!(located.message.starts_with("unknown attribute: nope"), "{}", located.message);
}
