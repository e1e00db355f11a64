//! Helpers shared by the policy test suites.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use palisade_core::{ModelName, Namespace, Owner};
use palisade_policy::{
    AuthorizationPolicy, Decision, LocatedError, PolicySet, Request, Settings, TargetModel, normalize_path,
    parse_policy,
};
use serde_json::Value;

/// Parses one policy document or panics with the error.
pub fn parse(yaml: &str) -> AuthorizationPolicy {
    match parse_policy(yaml, Path::new("test.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("policy did not parse: {e}\n{yaml}"),
    }
}

/// Parses one policy document that must be rejected.
pub fn parse_err(yaml: &str) -> LocatedError {
    match parse_policy(yaml, Path::new("test.yaml")) {
        Ok(p) => panic!("policy parsed but should not have: {p:?}\n{yaml}"),
        Err(e) => e.invalid().cloned().unwrap_or_else(|| panic!("unexpected error kind: {e}")),
    }
}

/// Settings that mirror Istio's defaults (root namespace `istio-system`).
pub fn istio_settings() -> Settings {
    Settings { root_namespace: "istio-system".to_owned(), ..Settings::default() }
}

/// Parses multi-document YAML (split on `---` lines) into a policy set with Istio settings.
pub fn set(yaml: &str) -> PolicySet {
    set_with(yaml, istio_settings())
}

/// Like [`set`] with explicit settings.
pub fn set_with(yaml: &str, settings: Settings) -> PolicySet {
    let policies = split_documents(yaml).into_iter().map(|doc| parse(&doc)).collect();
    PolicySet::new(policies, settings).expect("policy set")
}

/// Splits a YAML stream on `---` separator lines, dropping empty documents.
pub fn split_documents(yaml: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .collect()
}

/// A model in `ns` named `name` with labels.
pub fn model(ns: &str, name: &str, labels: &[(&str, &str)]) -> Arc<TargetModel> {
    model_with_owners(ns, name, labels, &[])
}

/// A model with owners.
pub fn model_with_owners(ns: &str, name: &str, labels: &[(&str, &str)], owners: &[&str]) -> Arc<TargetModel> {
    Arc::new(TargetModel {
        namespace: Namespace::new(ns).expect("namespace"),
        name: ModelName::new(name).expect("model name"),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        owners: owners.iter().map(|o| Owner::parse(o).expect("owner")).collect(),
    })
}

/// A request builder; paths go through `normalize_path`, as the server does.
#[derive(Clone)]
pub struct R(pub Request);

impl R {
    pub fn to(model: &Arc<TargetModel>) -> R {
        let mut req = Request::new(model.clone());
        req.host = "b.ns1.svc.cluster.local".to_owned();
        req.port = 18080;
        R(req)
    }
    pub fn path(mut self, raw: &str) -> R {
        self.0.path = normalize_path(raw).expect("path normalizes");
        self
    }
    /// Sets the path without normalization (for matcher-level mirrors of Envoy tests).
    pub fn raw_path(mut self, path: &str) -> R {
        self.0.path = path.to_owned();
        self
    }
    pub fn method(mut self, m: &str) -> R {
        self.0.method = m.to_owned();
        self
    }
    pub fn port(mut self, p: u16) -> R {
        self.0.port = p;
        self
    }
    pub fn host(mut self, h: &str) -> R {
        self.0.host = palisade_policy::normalize_host(h);
        self
    }
    pub fn peer(mut self, principal: &str) -> R {
        self.0.source_principal = Some(principal.to_owned());
        self
    }
    pub fn claims(mut self, claims: Value) -> R {
        self.0.claims = match claims {
            Value::Object(map) => Some(Arc::new(map)),
            Value::Null => None,
            other => panic!("claims must be an object: {other}"),
        };
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> R {
        self.0.headers.append(name, value);
        self
    }
    pub fn source_ip(mut self, ip: &str) -> R {
        self.0.source_ip = Some(ip.parse::<IpAddr>().expect("ip"));
        self
    }
    pub fn remote_ip(mut self, ip: &str) -> R {
        self.0.remote_ip = Some(ip.parse::<IpAddr>().expect("ip"));
        self
    }
    pub fn dest_ip(mut self, ip: &str) -> R {
        self.0.destination_ip = Some(ip.parse::<IpAddr>().expect("ip"));
        self
    }
    pub fn sni(mut self, sni: &str) -> R {
        self.0.sni = Some(sni.to_owned());
        self
    }
}

/// Evaluates and returns the decision.
pub fn decide(set: &PolicySet, r: &R) -> Decision {
    set.evaluate(&r.0)
}

/// Asserts the decision of each case; `name` names the Istio test the case mirrors.
pub fn check_cases(set: &PolicySet, cases: &[(&str, R, bool)]) {
    let mut failures = Vec::new();
    for (name, r, allow) in cases {
        let d = set.evaluate(&r.0);
        if d.allowed != *allow {
            failures.push(format!(
                "{name}: expected {} but got {} ({}) for {} {} port {} peer {:?} host {:?}",
                if *allow { "ALLOW" } else { "DENY" },
                if d.allowed { "ALLOW" } else { "DENY" },
                d.reason,
                r.0.method,
                r.0.path,
                r.0.port,
                r.0.source_principal,
                r.0.host,
            ));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// A policy that allows everything in `ns`: stands in for Istio's implicit allow when a
/// workload has no ALLOW policy (Palisade would apply the owner default instead).
pub fn istio_implicit_allow(ns: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: zz-istio-implicit-allow\n  namespace: {ns}\nspec:\n  rules:\n  - {{}}\n"
    )
}
