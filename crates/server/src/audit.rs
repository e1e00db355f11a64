//! The audit layer: exactly one record per data-plane request, allowed or not, and in
//! strict mode the response leaves only once its record is durable.
//!
//! The layer puts an [`AuditFacts`] in the request extensions; the layers and handlers
//! inside fill in what they learn (who the caller is, the authorization decision, the
//! model). When the response exists, the layer writes the record from those facts, the
//! request and response sizes and SHA-256 digests, and (at the payload levels) the redacted
//! payloads.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use palisade_audit::{
    AuditRecord, Authn, AuthnOutcome, Authz, Decision, JwtInfo, Level, ModelInfo, Payloads, Protocol,
};
use palisade_bundle::manifest::AuditLevel;
use palisade_identity::VerifiedToken;
use serde_json::Value;

use crate::request_id::{RequestId, TraceContext};
use crate::{AppState, ConnInfo, ServedModel};

/// The audit log as the server holds it, with a slot for the fsync-latency histogram that
/// the metrics registry provides once the server state exists.
#[derive(Clone)]
pub struct AuditHandle {
    log: Arc<palisade_audit::AuditLog>,
    fsync: Arc<std::sync::OnceLock<prometheus::Histogram>>,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandle").field("dir", &self.log.dir()).finish()
    }
}

impl AuditHandle {
    /// Opens (or resumes) the log in `dir` with the platform's settings. `faults` is the
    /// storage-failure hook for tests; `None` in production.
    pub fn open(
        dir: &std::path::Path,
        settings: &crate::platform::AuditSettings,
        faults: Option<palisade_audit::FaultInjection>,
    ) -> Result<AuditHandle, palisade_audit::AuditError> {
        let fsync: Arc<std::sync::OnceLock<prometheus::Histogram>> = Arc::default();
        let slot = fsync.clone();
        let replica_id = settings.replica_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "local".to_owned())
        });
        let config = palisade_audit::AuditConfig {
            replica_id,
            mode: match settings.mode {
                crate::platform::AuditMode::Strict => palisade_audit::Mode::Strict,
                crate::platform::AuditMode::Relaxed => palisade_audit::Mode::Relaxed,
            },
            segment_max_bytes: settings.segment_max_bytes,
            segment_max_age: settings.segment_max_age,
            checkpoint_every: settings.checkpoint_every,
            checkpoint_interval: settings.checkpoint_interval,
            commit_delay: settings.commit_delay,
            signing_key: settings.signing_key.clone(),
            fsync_observer: Some(Arc::new(move |d| {
                if let Some(histogram) = slot.get() {
                    histogram.observe(d.as_secs_f64());
                }
            })),
            fault_injection: faults,
            ..palisade_audit::AuditConfig::default()
        };
        let log = palisade_audit::AuditLog::open(dir, config)?;
        Ok(AuditHandle { log: Arc::new(log), fsync })
    }

    /// The log.
    pub fn log(&self) -> &Arc<palisade_audit::AuditLog> {
        &self.log
    }

    pub(crate) fn attach_histogram(&self, histogram: prometheus::Histogram) {
        let _ = self.fsync.set(histogram);
    }
}

/// What the layers inside learn about a request, for its audit record.
#[derive(Debug, Default)]
pub struct AuditFacts {
    authn: Option<Authn>,
    token: Option<Arc<VerifiedToken>>,
    decision: Option<Arc<palisade_policy::Decision>>,
    model: Option<Arc<ServedModel>>,
    peer: Option<String>,
    path: Option<String>,
}

/// The shared, fillable facts of one request (in its extensions).
#[derive(Debug, Clone, Default)]
pub struct Facts(Arc<Mutex<AuditFacts>>);

impl Facts {
    fn with(&self, f: impl FnOnce(&mut AuditFacts)) {
        if let Ok(mut facts) = self.0.lock() {
            f(&mut facts);
        }
    }

    /// Records the authentication outcome.
    pub fn authn(&self, outcome: AuthnOutcome, reason: Option<&str>, token: Option<Arc<VerifiedToken>>) {
        self.with(|f| {
            f.authn = Some(Authn { outcome, reason: reason.map(str::to_owned) });
            f.token = token;
        });
    }

    /// Records the authorization decision.
    pub fn decision(&self, decision: Arc<palisade_policy::Decision>) {
        self.with(|f| f.decision = Some(decision));
    }

    /// Records the model the request addressed.
    pub fn model(&self, model: Arc<ServedModel>) {
        self.with(|f| f.model = Some(model));
    }

    /// Records the verified mTLS peer.
    pub fn peer(&self, spiffe_id: &str) {
        self.with(|f| f.peer = Some(spiffe_id.to_owned()));
    }

    /// Records the normalized path.
    pub fn path(&self, path: &str) {
        self.with(|f| f.path = Some(path.to_owned()));
    }
}

/// Paths without an audit record: health probes (probed every few seconds by design) and
/// the static documentation. Everything else on the data port is audited, including
/// unknown paths and refusals.
fn audited(path: &str) -> bool {
    !(path.starts_with("/v2/health/")
        || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/openapi.json"
        || path.starts_with("/.well-known/")
        || crate::grpc::is_public_method(path))
}

fn protocol_of(req: &Request) -> Protocol {
    let path = req.uri().path();
    if crate::grpc::is_grpc(req.headers()) {
        Protocol::V2Grpc
    } else if path.starts_with("/api/v1.0/") || path.starts_with("/seldon/") {
        Protocol::SeldonV1
    } else if path.starts_with("/oauth/") {
        Protocol::Oauth
    } else if path.starts_with("/manage/") {
        Protocol::Admin
    } else {
        Protocol::V2Rest
    }
}

fn level_of(manifest: AuditLevel) -> Level {
    match manifest {
        AuditLevel::None => Level::None,
        AuditLevel::Metadata => Level::Metadata,
        AuditLevel::Request => Level::Request,
        AuditLevel::RequestResponse => Level::RequestResponse,
    }
}

/// Body bytes as a JSON payload for the record: the JSON (or, with Triton's binary
/// extension, its JSON header), else a note of the size. Redacted by the caller.
fn payload(bytes: &[u8], json_len: Option<usize>) -> Value {
    let json = json_len.and_then(|n| bytes.get(..n)).unwrap_or(bytes);
    serde_json::from_slice(json)
        .unwrap_or_else(|_| Value::String(format!("[{} bytes, not JSON]", bytes.len())))
}

fn unavailable(reason: &str) -> Response {
    let body = serde_json::json!({
        "error": format!("the audit log cannot be written ({reason}); predictions are refused rather than served unaudited")
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The layer (see the module docs).
pub(crate) async fn audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !audited(&path) {
        return next.run(req).await;
    }
    let log = state.audit().clone();
    // Lets the writer hold a group commit open for this record (handed over with it, or
    // dropped with the request when it leaves no record).
    let announced = log.announce();
    let started = Instant::now();
    let received = palisade_audit::Timestamp::now();
    let facts = Facts::default();
    let protocol = protocol_of(&req);
    let method = req.method().as_str().to_owned();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.as_str().to_owned());
    let trace_id = req.extensions().get::<TraceContext>().map(|t| t.trace_id.clone());
    let source_ip = req.extensions().get::<axum::extract::ConnectInfo<ConnInfo>>().map(|c| c.0.remote.ip());
    let json_len = req
        .headers()
        .get(palisade_protocol::v2::HEADER_CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let strict = log.health().mode == palisade_audit::Mode::Strict;
    let health = log.health();

    // Buffer the request body (within the body limit) to digest it; the handler reads the
    // same bytes.
    let (mut parts, body) = req.into_parts();
    let limit = state.config().max_body_bytes;
    let (request_bytes, response) = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            parts.extensions.insert(facts.clone());
            let req = Request::from_parts(parts, Body::from(bytes.clone()));
            let response = if strict && !health.writable {
                // Refuse before running anything: the record could not be made durable.
                unavailable(health.last_error.as_deref().unwrap_or("write failed"))
            } else {
                next.run(req).await
            };
            (bytes, response)
        }
        Err(_) => (bytes::Bytes::new(), crate::ApiError::PayloadTooLarge { limit }.into_response()),
    };
    let response = if protocol == Protocol::V2Grpc { crate::grpc::as_grpc(response).await } else { response };

    // Buffer the response to digest it, keeping its trailers (gRPC sends its status there).
    let (parts, body) = response.into_parts();
    let (response_bytes, trailers) = match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        }
        Err(_) => (bytes::Bytes::new(), None),
    };
    let grpc_code = crate::grpc::code_of(&parts.headers, trailers.as_ref());
    let rebuild =
        |parts, bytes: bytes::Bytes, trailers: Option<axum::http::HeaderMap>| {
            let body =
                match trailers {
                    // An empty body must stay visibly empty: a gRPC "trailers-only" error is one
                    // HEADERS frame that ends the stream, and clients ignore its status otherwise.
                    None if bytes.is_empty() => Body::empty(),
                    None => Body::from(bytes),
                    Some(trailers) => Body::new(http_body_util::Full::new(bytes).with_trailers(
                        std::future::ready(Some(Ok::<_, std::convert::Infallible>(trailers))),
                    )),
                };
            Response::from_parts(parts, body)
        };

    let facts = match facts.0.lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(_) => AuditFacts::default(),
    };
    let platform = &state.security().platform().config.audit;
    let model_level = facts.model.as_ref().map_or(AuditLevel::Metadata, |m| m.audit.level);
    let level = level_of(model_level.max(platform.minimum_level));
    if level == Level::None {
        return rebuild(parts, response_bytes, trailers);
    }

    let mut record = AuditRecord::request();
    record.request_id = request_id;
    record.trace_id = trace_id;
    record.received = Some(received);
    record.completed = Some(palisade_audit::Timestamp::now());
    record.source_ip = source_ip;
    record.peer_identity = facts.peer;
    record.protocol = Some(protocol);
    record.method = Some(method);
    record.path = Some(facts.path.unwrap_or(path));
    record.status = Some(crate::grpc::effective_status(parts.status, grpc_code).as_u16());
    record.grpc_code = grpc_code;
    record.latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    record.request_bytes = Some(request_bytes.len() as u64);
    record.response_bytes = Some(response_bytes.len() as u64);
    record.request_sha256 = Some(palisade_audit::sha256_hex(&request_bytes));
    record.response_sha256 = Some(palisade_audit::sha256_hex(&response_bytes));
    record.level = level;
    record.authn = facts.authn.or(Some(Authn { outcome: AuthnOutcome::Public, reason: None }));
    if let Some(token) = &facts.token {
        record.request_principal = Some(token.principal());
        record.email = token.claims.get("email").and_then(Value::as_str).map(str::to_owned);
        let groups_claim = &state.security().platform().config.authorization.groups_claim;
        record.groups = match token.claims.get(groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(group)) => vec![group.clone()],
            _ => Vec::new(),
        };
        record.client_id = token.claims.get("client_id").and_then(Value::as_str).map(str::to_owned);
        record.service_account =
            token.subject.as_deref().filter(|s| s.starts_with("system:serviceaccount:")).map(str::to_owned);
        record.jwt =
            Some(JwtInfo { kid: token.kid.clone(), alg: Some(token.alg.to_owned()), jti: token.jti.clone() });
    }
    if let Some(model) = &facts.model {
        record.model = Some(ModelInfo {
            namespace: model.id.namespace.to_string(),
            name: model.id.name.to_string(),
            version: Some(model.id.version.to_string()),
            digest: Some(model.digest.to_string()),
        });
    }
    record.authz = Some(match &facts.decision {
        Some(decision) => authz_of(decision),
        None => Authz {
            decision: Decision::Skipped,
            policy: None,
            rule: None,
            audit_marks: Vec::new(),
            dry_run: Vec::new(),
        },
    });
    if level >= Level::Request {
        let mut fields = platform.redact.clone();
        if let Some(model) = &facts.model {
            fields.extend(model.audit.redact.iter().cloned());
        }
        let request = palisade_audit::redact(&payload(&request_bytes, json_len), &fields);
        let response = (level == Level::RequestResponse).then(|| {
            let json_len = parts
                .headers
                .get(palisade_protocol::v2::HEADER_CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            palisade_audit::redact(&payload(&response_bytes, json_len), &fields)
        });
        record.payloads = Some(Payloads { request: Some(request), response });
    }

    match log.append_announced(record, Some(announced)).await {
        Ok(_) => rebuild(parts, response_bytes, trailers),
        Err(err) if strict => {
            tracing::error!(error = %err, "AUDIT LOG UNAVAILABLE: refusing to release a response without its record");
            state.metrics().observe_audit_refusal();
            let refusal = unavailable(&err.to_string());
            if protocol == Protocol::V2Grpc { crate::grpc::as_grpc(refusal).await } else { refusal }
        }
        Err(err) => {
            tracing::warn!(error = %err, "audit record dropped (relaxed mode)");
            rebuild(parts, response_bytes, trailers)
        }
    }
}

fn authz_of(decision: &palisade_policy::Decision) -> Authz {
    use palisade_policy::DecisionReason as R;
    let (policy, rule) = match &decision.reason {
        R::DeniedByPolicy { policy, rule_index } | R::AllowedByPolicy { policy, rule_index } => {
            (Some(policy.to_string()), Some(rule_index.to_string()))
        }
        R::CustomDeny { policy } => (Some(policy.to_string()), None),
        R::OwnerDefault { owner } => (Some("owner-default".to_owned()), Some(owner.to_string())),
        R::NotAnOwner => (Some("owner-default".to_owned()), None),
        R::NoMatchingAllow => (None, None),
    };
    Authz {
        decision: if decision.allowed { Decision::Allow } else { Decision::Deny },
        policy,
        rule,
        audit_marks: decision.audit.iter().map(ToString::to_string).collect(),
        dry_run: decision
            .dry_run
            .iter()
            .map(|(p, allow)| format!("{p}: would {}", if *allow { "allow" } else { "deny" }))
            .collect(),
    }
}
