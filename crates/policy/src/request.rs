//! What the evaluator needs to know about a request and the model it targets.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_core::{ModelName, Namespace, Owner};
use serde_json::{Map, Value};

/// The model a request is for: where it lives, its labels, and who owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetModel {
    /// The model's namespace; its policies and the root namespace's apply.
    pub namespace: Namespace,
    /// The model's name.
    pub name: ModelName,
    /// The model's labels, matched by `spec.selector.matchLabels`.
    pub labels: BTreeMap<String, String>,
    /// The model's owners: the only callers when no ALLOW policy applies.
    pub owners: Vec<Owner>,
}

impl TargetModel {
    /// A model without labels or owners.
    pub fn new(namespace: Namespace, name: ModelName) -> TargetModel {
        TargetModel { namespace, name, labels: BTreeMap::new(), owners: Vec::new() }
    }
}

/// Request headers: lower-case names, each possibly repeated, in arrival order. Clones
/// share one list (a graph's hops are authorized with the caller's headers, unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Arc<Vec<(String, String)>>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Arc::new(Vec::new()))
    }

    /// Adds one header value; the name is lower-cased.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        Arc::make_mut(&mut self.0).push((name.to_ascii_lowercase(), value.into()));
    }

    /// Headers whose names are already lower case (as `http::HeaderName` keeps them),
    /// copied in one pass: a name that is not lower case is lowered.
    pub fn from_lowercase<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Headers {
        let mut list = Vec::with_capacity(pairs.size_hint().1.unwrap_or(0));
        for (name, value) in pairs {
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                name.to_ascii_lowercase()
            } else {
                name.to_owned()
            };
            list.push((name, value.to_owned()));
        }
        Headers(Arc::new(list))
    }

    /// The values of a header (name in lower case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(name.as_ref(), value);
        }
        headers
    }
}

/// One request as the authorization step sees it. The server fills it after
/// authentication; every field maps to an Istio attribute.
#[derive(Debug, Clone)]
pub struct Request {
    /// `source.ip` / `ipBlocks`: the peer address of the connection.
    pub source_ip: Option<IpAddr>,
    /// `remote.ip` / `remoteIpBlocks`: the original client address (from trusted
    /// `X-Forwarded-For` hops or PROXY protocol; the connection peer otherwise).
    pub remote_ip: Option<IpAddr>,
    /// `destination.ip`: the local address the connection arrived on.
    pub destination_ip: Option<IpAddr>,
    /// `ports` / `destination.port`: the local port the connection arrived on.
    pub port: u16,
    /// `source.principal` / `principals`: the mTLS peer's SPIFFE id without `spiffe://`,
    /// such as `cluster.local/ns/billing/sa/batch` (see [`Request::peer_from_spiffe`]).
    pub source_principal: Option<String>,
    /// The verified JWT payload, or `None` when the request carried no token. Request
    /// principal (`iss/sub`), audiences (`aud`) and presenter (`azp`) are read from it,
    /// as Envoy reads them from the JWT filter's metadata. Shared with the verified
    /// token, so a request costs no copy of its claims.
    pub claims: Option<Arc<Map<String, Value>>>,
    /// `request.headers[...]`.
    pub headers: Headers,
    /// `hosts`: the request authority (`:authority` / `Host`) as sent, port included when
    /// the client sent one; compared case-insensitively.
    pub host: String,
    /// `methods`: the HTTP method, case-sensitive (`GET`; `POST` for gRPC).
    pub method: String,
    /// `paths`: the path from [`normalize_path`](crate::normalize_path) (no query string).
    pub path: String,
    /// `connection.sni`: the TLS server name, when the client sent one.
    pub sni: Option<String>,
    /// The model the request is for.
    pub model: Arc<TargetModel>,
}

impl Request {
    /// A request for `model` with nothing else known yet: no peer, no token, `GET /`.
    pub fn new(model: Arc<TargetModel>) -> Request {
        Request {
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            port: 0,
            source_principal: None,
            claims: None,
            headers: Headers::new(),
            host: String::new(),
            method: "GET".to_owned(),
            path: "/".to_owned(),
            sni: None,
            model,
        }
    }

    /// The `source.principal` form of a SPIFFE id: `spiffe://td/ns/a/sa/b` -> `td/ns/a/sa/b`.
    /// `None` for anything that is not a SPIFFE URI.
    pub fn peer_from_spiffe(uri: &str) -> Option<&str> {
        let rest = uri.strip_prefix("spiffe://")?;
        (!rest.is_empty()).then_some(rest)
    }

    /// `source.namespace`: the `ns` component of the peer identity.
    pub fn source_namespace(&self) -> Option<&str> {
        let principal = self.source_principal.as_deref()?;
        let mut parts = principal.split('/').skip(1);
        while let Some(part) = parts.next() {
            if part == "ns" {
                return parts.next().filter(|ns| !ns.is_empty());
            }
        }
        None
    }

    /// A string claim at the top level of the token.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.as_ref()?.get(name)?.as_str()
    }

    /// `request.auth.principal`: `iss/sub` of the token, when both are strings.
    pub fn request_principal(&self) -> Option<String> {
        Some(format!("{}/{}", self.claim_str("iss")?, self.claim_str("sub")?))
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn from_lowercase_keeps_what_append_would() {
        let pairs = [("x-team", "ml"), ("X-Team", "ops"), ("content-type", "application/json")];
        let appended: Headers = pairs.iter().copied().collect();
        let copied = Headers::from_lowercase(pairs.iter().copied());
        assert_eq!(copied, appended);
        assert_eq!(copied.get_all("x-team").collect::<Vec<_>>(), ["ml", "ops"]);
    }
}
