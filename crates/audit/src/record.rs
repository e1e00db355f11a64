//! The audit record: schema `palisade.audit/v1` (documented field by field in `SCHEMA.md`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{AuditError, Timestamp};

/// The schema tag every record of this version carries in its `schema` field.
pub const SCHEMA: &str = "palisade.audit/v1";

/// One audit event: a data-plane request (allowed or not, whatever its outcome) or a
/// configuration change.
///
/// The server fills what it knows and leaves the rest `None`; [`AuditLog::append`]
/// fills `schema`, `replica_id`, `seq`, `prev_hash` and `hash` (whatever the caller put
/// there), an `event_id` if it is nil, and `received` if no timestamp is set.
///
/// Serialized as one compact JSON object, fields in the order below, absent values and
/// empty lists omitted. Field order matters: `hash` must stay the last field (see
/// `SCHEMA.md`, "Hash chain").
///
/// [`AuditLog::append`]: crate::AuditLog::append
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Schema tag, [`SCHEMA`].
    pub schema: String,
    /// Position in this replica's chain: 0 for the first record, then consecutive.
    pub seq: u64,
    /// What kind of event this is.
    pub kind: RecordKind,
    /// Unique id of the event (UUIDv7, so ids sort by creation time).
    pub event_id: Uuid,
    /// The request id the client received (`x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For a hop of an inference graph (one node's model call, shadow calls included):
    /// the request id the caller received for the graph request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_request_id: Option<String>,
    /// For a hop of an inference graph: the node's name (for a traffic split, the arm's
    /// model; `shadow` for a shadow call). On the graph request's own record: the node
    /// where the request was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The W3C trace id (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When the request arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Timestamp>,
    /// When the response was complete (or the change applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<Timestamp>,
    /// The client's IP address as seen by the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The mTLS peer's SPIFFE id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_identity: Option<String>,
    /// The JWT's `iss/sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_principal: Option<String>,
    /// The `email` claim, when policy used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The groups claim, when policy used it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The OAuth client id (`azp` / `client_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The service account, for system callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Identifying fields of the JWT (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtInfo>,
    /// The model the request addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// The protocol of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The HTTP method (or gRPC method name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The normalized request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Authentication outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authn: Option<Authn>,
    /// Authorization decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz: Option<Authz>,
    /// The per-caller rate limit that refused the request (429), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The HTTP status of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The gRPC status code, for gRPC requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_code: Option<i32>,
    /// Time from `received` to `completed`, in milliseconds. A non-finite value is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Size of the request body in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    /// Size of the response body in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    /// SHA-256 of the request body, lowercase hex (see [`sha256_hex`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// SHA-256 of the response body, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
    /// The outlier scores of a monitored model's prediction (`monitoring.outliers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<Outliers>,
    /// The audit level the record was written at.
    pub level: Level,
    /// The (redacted) payloads, only at levels `Request` and `RequestResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Payloads>,
    /// What changed, for `kind: config` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigChange>,
    /// The replica whose chain holds the record.
    pub replica_id: String,
    /// Lowercase hex SHA-256 `hash` of the previous record (the genesis value for seq 0).
    pub prev_hash: String,
    /// Lowercase hex SHA-256 over `prev_hash` and this record without `hash`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl Default for AuditRecord {
    fn default() -> Self {
        Self {
            schema: SCHEMA.to_owned(),
            seq: 0,
            kind: RecordKind::Request,
            event_id: Uuid::nil(),
            request_id: None,
            parent_request_id: None,
            node: None,
            trace_id: None,
            received: None,
            completed: None,
            source_ip: None,
            peer_identity: None,
            request_principal: None,
            email: None,
            groups: Vec::new(),
            client_id: None,
            service_account: None,
            jwt: None,
            model: None,
            protocol: None,
            method: None,
            path: None,
            authn: None,
            authz: None,
            rate_limit: None,
            status: None,
            grpc_code: None,
            latency_ms: None,
            request_bytes: None,
            response_bytes: None,
            request_sha256: None,
            response_sha256: None,
            outliers: None,
            level: Level::Metadata,
            payloads: None,
            config: None,
            replica_id: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

impl AuditRecord {
    /// A data-plane record with a fresh event id, received now.
    pub fn request() -> Self {
        Self { event_id: Uuid::now_v7(), received: Some(Timestamp::now()), ..Self::default() }
    }

    /// A configuration-change record with a fresh event id, completed now.
    pub fn config_change(change: ConfigChange) -> Self {
        Self {
            kind: RecordKind::Config,
            event_id: Uuid::now_v7(),
            completed: Some(Timestamp::now()),
            level: Level::Metadata,
            config: Some(change),
            ..Self::default()
        }
    }

    /// The record's time for range queries: `received`, else `completed`.
    pub fn time(&self) -> Option<Timestamp> {
        self.received.or(self.completed)
    }

    /// Brings caller-supplied fields into the shape the schema promises, before sealing.
    pub(crate) fn normalize(&mut self, replica_id: &str) {
        SCHEMA.clone_into(&mut self.schema);
        replica_id.clone_into(&mut self.replica_id);
        if self.event_id.is_nil() {
            self.event_id = Uuid::now_v7();
        }
        if self.received.is_none() && self.completed.is_none() {
            self.received = Some(Timestamp::now());
        }
        if self.latency_ms.is_some_and(|l| !l.is_finite()) {
            self.latency_ms = None;
        }
        // Payloads only where the level asks for them: a caller's mistake must not put
        // data in the log that the model's owner did not agree to keep.
        match self.level {
            Level::None | Level::Metadata => self.payloads = None,
            Level::Request => {
                if let Some(p) = &mut self.payloads {
                    p.response = None;
                }
            }
            Level::RequestResponse => {}
        }
    }
}

/// The lowercase hex SHA-256 of `bytes`, for `request_sha256` / `response_sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::chain::to_hex(&Sha256::digest(bytes))
}

/// What kind of event a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A data-plane request.
    #[default]
    Request,
    /// A policy or configuration change.
    Config,
}

/// Identifying fields of the caller's JWT. The token itself is never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JwtInfo {
    /// The `kid` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The `alg` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The `jti` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// The model a request addressed. Plain strings: a request for a model that does not
/// exist (or has an invalid name) is recorded as asked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's namespace.
    pub namespace: String,
    /// The model's name.
    pub name: String,
    /// The model's version, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The bundle digest (`sha256:...`) of the version served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl From<&palisade_core::ModelRef> for ModelInfo {
    fn from(model: &palisade_core::ModelRef) -> Self {
        Self {
            namespace: model.namespace.to_string(),
            name: model.name.to_string(),
            version: Some(model.version.to_string()),
            digest: None,
        }
    }
}

/// The protocol a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Open Inference Protocol V2 over REST.
    #[serde(rename = "v2-rest")]
    V2Rest,
    /// Open Inference Protocol V2 over gRPC.
    #[serde(rename = "v2-grpc")]
    V2Grpc,
    /// Seldon Core v1 predictions.
    #[serde(rename = "seldon-v1")]
    SeldonV1,
    /// The built-in token endpoint.
    #[serde(rename = "oauth")]
    Oauth,
    /// Administrative endpoints.
    #[serde(rename = "admin")]
    Admin,
}

/// How authentication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthnOutcome {
    /// A valid token (or mTLS identity) was presented.
    Authenticated,
    /// No credentials, and the route allowed that (Istio's permissive behaviour).
    Anonymous,
    /// Credentials were missing or invalid: 401 or 403.
    Refused,
    /// A route that bypasses authentication by design (health probes).
    Public,
}

/// Authentication outcome and, when refused, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authn {
    /// The outcome.
    pub outcome: AuthnOutcome,
    /// A bounded reason label (`missing`, `expired`, `signature`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied (403).
    Deny,
    /// Authorization did not run (authentication failed first, or a public route).
    Skipped,
}

impl FromStr for Decision {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, AuditError> {
        match text {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            "skipped" => Ok(Decision::Skipped),
            _ => {
                Err(AuditError::InvalidFilter(format!("decision {text:?}: expected allow, deny or skipped")))
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Skipped => "skipped",
        })
    }
}

/// The authorization decision with the policy and rule that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authz {
    /// The decision.
    pub decision: Decision,
    /// The deciding policy (`namespace/name`, or `owner-default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The matching rule within the policy (its index or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// AUDIT policies that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_marks: Vec<String>,
    /// Dry-run policies that would have changed the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
}

/// A refusal by the per-caller rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// The budget that was used up: `requests` or `explain`.
    pub budget: String,
    /// The `Retry-After` the caller was given, in seconds.
    pub retry_after_s: u32,
}

/// How much of a request the log keeps, as in Kubernetes auditing. Ordered: a platform
/// minimum combines with a model's level by `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub enum Level {
    /// No record at all (the server does not call the log). Kept for completeness.
    None,
    /// Who, what, decision and outcome, with payload sizes and digests. The default.
    #[default]
    Metadata,
    /// Metadata plus the redacted request payload.
    Request,
    /// Metadata plus the redacted request and response payloads.
    RequestResponse,
}

impl FromStr for Level {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, AuditError> {
        match text {
            "None" => Ok(Level::None),
            "Metadata" => Ok(Level::Metadata),
            "Request" => Ok(Level::Request),
            "RequestResponse" => Ok(Level::RequestResponse),
            _ => Err(AuditError::InvalidFilter(format!(
                "audit level {text:?}: expected None, Metadata, Request or RequestResponse"
            ))),
        }
    }
}

/// A prediction's outlier scores, as the model's `monitoring.outliers` scored its rows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outliers {
    /// Rows scored.
    pub rows: u64,
    /// Rows that are outliers.
    pub outlier_rows: u64,
    /// The scores of the first rows (at most 1000), in row order; `null` for a row that
    /// could not be scored (a NaN feature).
    pub scores: Vec<Option<f64>>,
}

/// Payloads kept at levels `Request` and `RequestResponse`, after redaction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Payloads {
    /// The request body as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// The response body as JSON (`RequestResponse` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

/// A configuration change (`kind: config`): who changed what, with digests before and after.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Who made the change (principal, or `file` for a hot-reloaded file).
    pub who: String,
    /// What changed (`policy ns/name`, `request-authentication ...`, a file path).
    pub what: String,
    /// Digest of the previous content (`sha256:<hex>`), absent when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_digest: Option<String>,
    /// Digest of the new content, absent when deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_omitted_and_order_is_fixed() {
        let mut r = AuditRecord { replica_id: "r1".into(), prev_hash: "00".into(), ..AuditRecord::default() };
        r.status = Some(200);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"schema":"palisade.audit/v1","seq":0,"kind":"request","event_id":"00000000-0000-0000-0000-000000000000","status":200,"level":"Metadata","replica_id":"r1","prev_hash":"00"}"#
        );
        r.hash = "ff".into();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.ends_with(r#","prev_hash":"00","hash":"ff"}"#), "{json}");
        assert_eq!(serde_json::from_str::<AuditRecord>(&json).unwrap(), r);
    }

    #[test]
    fn normalize_drops_payloads_the_level_does_not_allow() {
        let payloads = Payloads { request: Some(serde_json::json!(1)), response: Some(serde_json::json!(2)) };
        let mut r = AuditRecord { payloads: Some(payloads.clone()), ..AuditRecord::default() };
        r.normalize("x");
        assert_eq!(r.payloads, None);
        assert!(!r.event_id.is_nil() && r.received.is_some());
        let mut r = AuditRecord { level: Level::Request, payloads: Some(payloads.clone()), ..r };
        r.normalize("x");
        assert_eq!(r.payloads.unwrap().response, None);
        let mut r = AuditRecord {
            level: Level::RequestResponse,
            payloads: Some(payloads.clone()),
            ..AuditRecord::default()
        };
        r.latency_ms = Some(f64::NAN);
        r.normalize("x");
        assert_eq!(r.payloads, Some(payloads));
        assert_eq!(r.latency_ms, None);
    }

    #[test]
    fn enums_use_the_documented_names() {
        let s = |v: &dyn erased::Ser| v.json();
        assert_eq!(s(&Protocol::V2Rest), "\"v2-rest\"");
        assert_eq!(s(&Protocol::SeldonV1), "\"seldon-v1\"");
        assert_eq!(s(&Level::RequestResponse), "\"RequestResponse\"");
        assert_eq!(s(&Decision::Skipped), "\"skipped\"");
        assert_eq!(s(&AuthnOutcome::Refused), "\"refused\"");
        assert_eq!(s(&RecordKind::Config), "\"config\"");
        assert!(Level::None < Level::Metadata && Level::Request < Level::RequestResponse);
    }

    mod erased {
        pub trait Ser {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Ser for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }
}
