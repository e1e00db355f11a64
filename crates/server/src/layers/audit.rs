//! The audit layer: exactly one record per audited request, allowed or not, written from
//! the request context; in strict mode the response leaves only once its record is durable.
//!
//! Which requests are audited is the route's decision ([`Route::is_audited`]), taken on
//! the normalized path: every request to a model is, however its path was spelled. The
//! record names the model, the caller and the decision from the context, so it describes
//! the request that was served. The request body's size and digest come from the one read
//! of the body (after authorization); a body that was never read is recorded by its
//! declared length, without a digest. At the payload levels, only model requests keep
//! their payloads, and fields that carry credentials are always redacted.
//!
//! [`Route::is_audited`]: crate::route::Route::is_audited

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use palisade_audit::{
    AuditRecord, Authn, AuthnOutcome, Authz, Decision, JwtInfo, Level, ModelInfo, Payloads, Protocol,
};
use palisade_bundle::manifest::AuditLevel;
use serde_json::Value;

use crate::context::{Authentication, Ctx, RequestContext};
use crate::route::Protocol as RouteProtocol;
use crate::{ApiError, AppState};

/// Payload fields that carry credentials: redacted at every level, on every route, whatever
/// the configuration says.
pub const ALWAYS_REDACTED: &[&str] =
    &["access_token", "refresh_token", "id_token", "token", "client_secret", "password", "authorization"];

/// The audit log as the server holds it, with a slot for the fsync-latency histogram that
/// the metrics registry provides once the server state exists.
#[derive(Clone)]
pub struct AuditHandle {
    log: Arc<palisade_audit::AuditLog>,
    sealer: Option<Arc<palisade_audit::Sealer>>,
    archiver: Option<Arc<palisade_archive::Archiver>>,
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
            ship: match settings.ship.stdout {
                true => Some(palisade_audit::Shipper::stdout(palisade_audit::ShipOptions {
                    checkpoints: settings.ship.checkpoints,
                    queue_bytes: settings.ship.queue_bytes,
                })?),
                false => None,
            },
            ..palisade_audit::AuditConfig::default()
        };
        let log = palisade_audit::AuditLog::open(dir, config)?;
        let sealer = match settings.seal.enabled {
            true => Some(Arc::new(palisade_audit::Sealer::spawn(
                dir.to_owned(),
                palisade_audit::SealOptions {
                    signing_key: settings.signing_key.clone(),
                    frame_records: settings.seal.frame_records,
                    level: settings.seal.level,
                    // With an archive, retention runs after each archiving pass instead (it
                    // deletes only what the archive confirms); without one, here (it only
                    // reports what it would delete).
                    retention: match settings.archive {
                        Some(_) => None,
                        None => settings.retention.as_ref().map(crate::platform::RetentionSettings::policy),
                    },
                    ..palisade_audit::SealOptions::default()
                },
                settings.seal.every,
            )?)),
            false => None,
        };
        let archiver = match &settings.archive {
            Some(archive) => Some(Arc::new(
                palisade_archive::Archiver::spawn(
                    dir.to_owned(),
                    archive.target(),
                    settings.retention.as_ref().map(crate::platform::RetentionSettings::policy),
                    archive.every,
                )
                .map_err(|e| palisade_audit::AuditError::Unavailable(e.to_string()))?,
            )),
            None => None,
        };
        Ok(AuditHandle { log: Arc::new(log), sealer, archiver, fsync })
    }

    /// The background archiver, when `audit.archive` is set.
    pub fn archiver(&self) -> Option<&Arc<palisade_archive::Archiver>> {
        self.archiver.as_ref()
    }

    /// The log.
    pub fn log(&self) -> &Arc<palisade_audit::AuditLog> {
        &self.log
    }

    /// The background sealer, when `audit.seal.enabled`.
    pub fn sealer(&self) -> Option<&Arc<palisade_audit::Sealer>> {
        self.sealer.as_ref()
    }

    pub(crate) fn attach_histogram(&self, histogram: prometheus::Histogram) {
        let _ = self.fsync.set(histogram);
    }
}

pub(crate) fn level_of(manifest: AuditLevel) -> Level {
    match manifest {
        AuditLevel::None => Level::None,
        AuditLevel::Metadata => Level::Metadata,
        AuditLevel::Request => Level::Request,
        AuditLevel::RequestResponse => Level::RequestResponse,
    }
}

pub(crate) fn protocol_of(protocol: RouteProtocol) -> Protocol {
    match protocol {
        RouteProtocol::V2Rest => Protocol::V2Rest,
        RouteProtocol::V2Grpc => Protocol::V2Grpc,
        // The record's protocol names the prediction protocol; the path says the transport.
        RouteProtocol::SeldonV1 | RouteProtocol::SeldonGrpc => Protocol::SeldonV1,
        RouteProtocol::OAuth => Protocol::Oauth,
        RouteProtocol::Admin | RouteProtocol::Console => Protocol::Admin,
    }
}

/// What a message's headers say about its body, for the record.
struct BodyShape {
    /// `Content-Length`.
    length: Option<u64>,
    /// `Inference-Header-Content-Length`: the JSON part of a binary-extension body.
    json_len: Option<usize>,
}

impl BodyShape {
    fn of(headers: &HeaderMap) -> BodyShape {
        fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        BodyShape {
            length: number(headers, axum::http::header::CONTENT_LENGTH.as_str()),
            json_len: number(headers, palisade_protocol::v2::HEADER_CONTENT_LENGTH),
        }
    }
}

/// Body bytes as a JSON payload for the record: the JSON (or, with Triton's binary
/// extension, its JSON header), else a note of the size. Redacted by the caller.
fn payload(bytes: &[u8], json_len: Option<usize>) -> Value {
    let json = json_len.and_then(|n| bytes.get(..n)).unwrap_or(bytes);
    serde_json::from_slice(json)
        .unwrap_or_else(|_| Value::String(format!("[{} bytes, not JSON]", bytes.len())))
}

/// In strict mode with an unwritable log, the 503 that answers before anything runs: the
/// record could not be made durable.
fn refusal(state: &AppState, ctx: &RequestContext) -> Option<Response> {
    let log = state.audit();
    if log.mode() != palisade_audit::Mode::Strict || log.writable() {
        return None;
    }
    let reason = log.health().last_error.unwrap_or_else(|| "write failed".to_owned());
    state.metrics().observe_audit_refusal(ctx.model_label());
    Some(crate::rescue::render(ctx.protocol, &ApiError::AuditUnavailable(reason)))
}

/// The layer (see the module docs).
pub(crate) async fn audit(State(state): State<AppState>, ctx: Ctx, req: Request, next: Next) -> Response {
    if !ctx.route.is_audited() {
        return next.run(req).await;
    }
    // A model known from the path whose records are off (`audit.level: None`, allowed by
    // the platform's minimum): nothing will be recorded, so nothing is announced to the
    // writer and the response is not buffered. It is refused like any other while a strict
    // log is unwritable, as a gRPC request for it is (its message names the model only
    // later, so it takes the path below).
    if let Some(served) = ctx.served()
        && state.audit_level(Some(served)) == Level::None
    {
        return match refusal(&state, &ctx) {
            Some(refused) => refused,
            None => next.run(req).await,
        };
    }
    let log = state.audit().clone();
    // Lets the writer hold a group commit open for this record (handed over with it, or
    // dropped with the request when it leaves no record).
    let announced = log.announce();
    let declared = BodyShape::of(req.headers());
    let response = match refusal(&state, &ctx) {
        Some(refused) => refused,
        None => next.run(req).await,
    };

    // Buffer the response to digest it, keeping its trailers (gRPC sends its status there).
    let (parts, body) = response.into_parts();
    let (response_bytes, trailers) = match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        }
        Err(_) => (bytes::Bytes::new(), None),
    };
    let grpc_code = crate::api::grpc::code_of(&parts.headers, trailers.as_ref());
    let rebuild =
        |parts, bytes: bytes::Bytes, trailers: Option<HeaderMap>| {
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

    let level = state.audit_level(ctx.served().map(Arc::as_ref));
    if level == Level::None {
        return rebuild(parts, response_bytes, trailers);
    }
    let status = crate::api::grpc::effective_status(parts.status, grpc_code).as_u16();
    let mut record = record_of(&state, &ctx, &declared, level, status, grpc_code, &response_bytes);
    record.node = ctx.graph().and_then(|g| g.failed_node.clone());
    record.outliers = ctx.outliers().map(crate::monitoring::OutlierFacts::audit);
    if level >= Level::Request && ctx.route.addresses_model() {
        let mut fields = state.security().platform().config.audit.redact.clone();
        if let Some(model) = ctx.served() {
            fields.extend(model.audit.redact.iter().cloned());
        }
        fields.extend(ALWAYS_REDACTED.iter().map(|f| (*f).to_owned()));
        let request = ctx
            .captured_body()
            .map(|bytes| palisade_audit::redact(&payload(bytes, declared.json_len), &fields));
        let response = (level == Level::RequestResponse).then(|| {
            let json_len = BodyShape::of(&parts.headers).json_len;
            palisade_audit::redact(&payload(&response_bytes, json_len), &fields)
        });
        record.payloads = Some(Payloads { request, response });
    }

    // A graph's hops are written before the request's own record, in order: the writer
    // takes appends in the order they are first polled, and one commit can cover them all.
    let hops: Vec<_> = ctx.take_hops().into_iter().map(|hop| log.append(hop)).collect();
    let (hops, own) = futures_util::future::join(
        futures_util::future::join_all(hops),
        log.append_announced(record, Some(announced)),
    )
    .await;
    let written = hops.into_iter().find(Result::is_err).unwrap_or(own);
    match written {
        Ok(_) => rebuild(parts, response_bytes, trailers),
        // The writer logs the failure itself (once per interval); the refusal is counted,
        // and logged like every server error, quietly.
        Err(err) if log.mode() == palisade_audit::Mode::Strict => {
            state.metrics().observe_audit_refusal(ctx.model_label());
            crate::rescue::render(ctx.protocol, &ApiError::AuditUnavailable(err.to_string()))
        }
        Err(_) => rebuild(parts, response_bytes, trailers),
    }
}

/// The record of a request, from its context and its response.
fn record_of(
    state: &AppState,
    ctx: &RequestContext,
    declared: &BodyShape,
    level: Level,
    status: u16,
    grpc_code: Option<i32>,
    response_bytes: &[u8],
) -> AuditRecord {
    let mut record = AuditRecord::request();
    record.request_id = Some(ctx.id.as_str().to_owned());
    record.trace_id = Some(ctx.trace.trace_id.clone());
    record.received = Some(ctx.received);
    record.completed = Some(palisade_audit::Timestamp::now());
    record.source_ip = ctx.conn.as_ref().map(|c| c.remote.ip());
    record.peer_identity = ctx.admission().and_then(|a| a.peer.clone());
    record.protocol = Some(protocol_of(ctx.protocol));
    record.method = Some(ctx.method.as_str().to_owned());
    record.path = Some(ctx.path.clone());
    record.status = Some(status);
    record.grpc_code = grpc_code;
    record.latency_ms = Some(ctx.started.elapsed().as_secs_f64() * 1000.0);
    match ctx.body() {
        Some(body) => {
            record.request_bytes = Some(body.bytes);
            record.request_sha256 = Some(body.sha256.clone());
        }
        // Never read (refused first): what the caller announced, with no digest.
        None => record.request_bytes = declared.length.or(Some(0)),
    }
    record.response_bytes = Some(response_bytes.len() as u64);
    record.response_sha256 = Some(palisade_audit::sha256_hex(response_bytes));
    record.level = level;
    record.authn = Some(match ctx.authentication() {
        None | Some(Authentication::Public) => Authn { outcome: AuthnOutcome::Public, reason: None },
        Some(Authentication::Authenticated(a)) if a.token().is_none() => {
            Authn { outcome: AuthnOutcome::Anonymous, reason: None }
        }
        Some(Authentication::Authenticated(_)) => {
            Authn { outcome: AuthnOutcome::Authenticated, reason: None }
        }
        Some(Authentication::Refused(reason)) => {
            Authn { outcome: AuthnOutcome::Refused, reason: Some(reason.to_owned()) }
        }
    });
    if let Some(token) = ctx.token() {
        caller_fields(state, &mut record, &token);
    }
    if let Some(model) = ctx.served() {
        record.model = Some(model_info(model));
    }
    record.authz = Some(match ctx.admission() {
        Some(admission) => authz_of(&admission.decision),
        None => Authz {
            decision: Decision::Skipped,
            policy: None,
            rule: None,
            audit_marks: Vec::new(),
            dry_run: Vec::new(),
        },
    });
    record.rate_limit = ctx.rate_limited().map(|limited| palisade_audit::RateLimit {
        budget: limited.budget.as_str().to_owned(),
        retry_after_s: limited.retry_after,
    });
    record
}

/// The record's model fields.
pub(crate) fn model_info(model: &crate::ServedModel) -> ModelInfo {
    model.names.audit.clone()
}

/// The record's caller fields, from the verified token.
pub(crate) fn caller_fields(
    state: &AppState,
    record: &mut AuditRecord,
    token: &palisade_identity::VerifiedToken,
) {
    {
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
}

pub(crate) fn authz_of(decision: &palisade_policy::Decision) -> Authz {
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
