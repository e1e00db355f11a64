//! Serving inference graphs and traffic splits: the [`Hop`] every node's model call goes
//! through (resolve, authorize as the caller or as the graph, audit, run), the shadow, and
//! what the request context learns (routes taken, the node that refused).
//!
//! Security hop by hop: by default each hop is authorized as the original caller, with the
//! request authorization evaluated (token claims, connection, headers), against the node
//! model's policies and for its own path `/v2/models/NAME/versions/V/infer`; a graph can
//! never reach a model its caller may not call directly. With `callAs: graph` the hops are
//! authorized as the principal `graph:NAMESPACE/NAME` (Istio's `principals`), without the
//! caller's token. Every hop leaves an audit record linked to the caller's request
//! (`parent_request_id`, `node`), shadow calls included.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use palisade_audit::{AuditRecord, Authz, Decision};
use palisade_bundle::graph::{CallAs, ModelTarget};
use palisade_core::Tensor;
use palisade_graph::{Graph, Hop, HopFuture, Placement, RunError};
use palisade_identity::{Authenticated, VerifiedToken};

use crate::context::{Authentication, GraphFacts, RequestContext};
use crate::layers::audit::{authz_of, caller_fields, model_info, protocol_of};
use crate::registry::Registry;
use crate::route::Protocol;
use crate::{ApiError, AppState, ServedModel};

/// How deep graphs may nest (a graph whose node is a graph, ...).
const MAX_NESTING: usize = 8;

/// Who sent the graph request, as every hop is authorized and audited: taken once from the
/// request context.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    request_id: String,
    trace_id: String,
    policy: Option<palisade_policy::Request>,
    authenticated: Option<Authenticated>,
    token: Option<Arc<VerifiedToken>>,
    source_ip: Option<std::net::IpAddr>,
    peer: Option<String>,
    protocol: Protocol,
    /// Sent on only by upstreams that forward it: a router's variants, in a traffic graph
    /// that always calls as the caller.
    credential: Option<crate::context::Credential>,
    /// Whose rate budgets the hops draw from (see [`crate::layers::rate`]).
    rate_key: String,
}

impl Caller {
    pub(crate) fn of(ctx: &RequestContext) -> Caller {
        let authenticated = match ctx.authentication() {
            Some(Authentication::Authenticated(authenticated)) => Some(authenticated),
            _ => None,
        };
        Caller {
            request_id: ctx.id.as_str().to_owned(),
            trace_id: ctx.trace.trace_id.clone(),
            policy: ctx.policy_request().cloned(),
            token: ctx.token(),
            authenticated,
            source_ip: ctx.conn.as_ref().map(|c| c.remote.ip()),
            peer: ctx.admission().and_then(|a| a.peer.clone()),
            protocol: ctx.protocol,
            credential: ctx.credential().cloned(),
            rate_key: crate::layers::rate::caller_key(ctx),
        }
    }

    /// The value a sticky graph keeps callers in one arm by.
    fn sticky(&self, graph: &Graph) -> Option<Vec<u8>> {
        let sticky = graph.sticky()?;
        if let Some(claim) = &sticky.claim {
            let value = self.token.as_ref()?.claims.get(claim)?;
            return Some(match value {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            });
        }
        let header = sticky.header.as_deref()?;
        self.policy.as_ref()?.headers.get_all(header).next().map(|v| v.as_bytes().to_vec())
    }

    /// Who the caller is, for feedback: the token's principal, else the client address.
    pub(crate) fn principal(&self) -> String {
        match (&self.token, self.source_ip) {
            (Some(token), _) => token.principal(),
            (None, Some(ip)) => format!("anonymous@{ip}"),
            (None, None) => "anonymous".to_owned(),
        }
    }
}

/// A hop refused: the error, and the policy decision when one was taken.
type Refusal = (ApiError, Option<Arc<palisade_policy::Decision>>);

/// The hops of one graph request.
struct Hops {
    state: AppState,
    caller: Arc<Caller>,
    graph: Arc<ServedModel>,
    registry: Arc<Registry>,
    depth: usize,
    records: Arc<Mutex<Vec<AuditRecord>>>,
    /// This graph runs as a hop alongside others (a nested graph in a node's children):
    /// every one of its own hops runs alongside too.
    alongside: bool,
    /// What every hop record of this graph request shares (the caller, the request it
    /// belongs to, the principal the hops run as), derived once; `None` when hops are not
    /// audited (security off).
    template: Option<AuditRecord>,
    /// The status of the record of a hop dropped before it answered: 499 (a pipeline went
    /// on without it, or the caller went away), 504 for a shadow cut off at its timeout.
    cut_off_status: u16,
}

impl Hops {
    /// The hops of a request (or of a nested graph) to `graph`, for `caller`.
    fn new(
        state: &AppState,
        caller: Arc<Caller>,
        graph: Arc<ServedModel>,
        registry: Arc<Registry>,
        records: Arc<Mutex<Vec<AuditRecord>>>,
        nested: Nested,
    ) -> Hops {
        let template = state.secured().then(|| hop_template(state, &caller, &graph));
        Hops {
            state: state.clone(),
            caller,
            graph,
            registry,
            depth: nested.depth,
            records,
            alongside: nested.alongside,
            template,
            cut_off_status: 499,
        }
    }

    /// Authorizes a hop to `served`: `Ok(None)` when security is off.
    fn authorize(&self, served: &ServedModel) -> Result<Option<Arc<palisade_policy::Decision>>, Refusal> {
        if !self.state.secured() {
            return Ok(None);
        }
        let graph = match &self.graph.model {
            crate::registry::Servable::Graph(graph) => graph,
            crate::registry::Servable::Model(_) => {
                return Err((ApiError::Internal("a hop outside a graph".into()), None));
            }
        };
        // Mutual TLS is about the connection the request's bytes came on, and a graph
        // request comes on one: the caller's (a hop in the process opens none). So a STRICT
        // model refuses a graph request whose connection presented no verified client
        // certificate, through a graph as directly and whoever the hop runs as; its port
        // exceptions are those of the caller's listener port.
        let port = self.caller.policy.as_ref().map_or(0, |request| request.port);
        let mode = self.state.security().peer_auth().mtls_mode_for(
            served.target.namespace.as_str(),
            &served.target.labels,
            port,
        );
        if mode == palisade_tls::MtlsMode::Strict && self.caller.peer.is_none() {
            let refused = palisade_tls::MtlsRequired.to_string();
            tracing::info!(graph = %self.graph.id.name, model = %served.id.name, "a graph hop was refused: the model is mTLS STRICT and the caller's connection has no client certificate");
            return Err((ApiError::Forbidden(refused), None));
        }
        let (mut request, rate_key) = match graph.call_as() {
            CallAs::Caller => {
                // A namespace's own issuer never vouches for callers outside its namespace.
                if let Some(authenticated) = &self.caller.authenticated
                    && !authenticated.applies_to(served.identity_target())
                {
                    return Err((ApiError::AccessDenied, None));
                }
                // Fails closed: a graph request is always authorized before it runs.
                let Some(request) = self.caller.policy.clone() else {
                    return Err((ApiError::AccessDenied, None));
                };
                (request, self.caller.rate_key.clone())
            }
            CallAs::Graph => {
                let mut request = palisade_policy::Request::new(served.target.clone());
                request.source_principal = Some(graph_principal(&self.graph));
                (request, graph_principal(&self.graph))
            }
        };
        request.model = served.target.clone();
        request.method = "POST".to_owned();
        served.names.infer_path.clone_into(&mut request.path);
        let decision = Arc::new(self.state.security().policy_set().evaluate(&request));
        self.state.metrics().observe_decision(&decision);
        // A graph is no way around a node model's rate limit: the hop pays it, unless the
        // node is a version of the graph's own model (the router's variants, a canary of
        // its own versions), whose bucket the request paid already.
        let same_bucket = served.target.namespace == self.graph.target.namespace
            && served.target.name == self.graph.target.name
            && matches!(self.graph.model.graph().map(|g| g.call_as()), Some(CallAs::Caller));
        if decision.allowed && same_bucket {
            Ok(Some(decision))
        } else if decision.allowed {
            let kind = crate::rate::Kind::Requests;
            crate::layers::rate::charge(&self.state, served, kind, &rate_key, "graph_hop").map_err(
                |retry_after| {
                    (ApiError::RateLimited { budget: kind.as_str(), retry_after }, Some(decision.clone()))
                },
            )?;
            Ok(Some(decision))
        } else {
            tracing::info!(graph = %self.graph.id.name, model = %served.id.name, reason = %decision.reason, "a graph hop was denied");
            Err((ApiError::AccessDenied, Some(decision)))
        }
    }

    /// The audit record of one hop: the template's, with this hop's own fields.
    fn record(
        &self,
        node: &str,
        served: Option<&ServedModel>,
        decision: Option<&palisade_policy::Decision>,
        status: u16,
        received: palisade_audit::Timestamp,
        took: Duration,
    ) -> Option<AuditRecord> {
        let template = self.template.as_ref()?;
        let level = self.state.audit_level(served);
        if level == palisade_audit::Level::None {
            return None;
        }
        let mut record = template.clone();
        record.event_id = uuid::Uuid::now_v7();
        record.request_id = Some(uuid::Uuid::now_v7().to_string());
        record.node = Some(node.to_owned());
        record.received = Some(received);
        record.completed = Some(palisade_audit::Timestamp::now());
        record.status = Some(status);
        record.latency_ms = Some(took.as_secs_f64() * 1000.0);
        record.level = palisade_audit::Level::Metadata.min(level);
        if let Some(served) = served {
            record.path = Some(served.names.infer_path.clone());
            record.model = Some(model_info(served));
        }
        record.authz = Some(match decision {
            Some(decision) => authz_of(decision),
            None => Authz {
                decision: if status == 403 { Decision::Deny } else { Decision::Skipped },
                policy: None,
                rule: None,
                audit_marks: vec![],
                dry_run: vec![],
            },
        });
        Some(record)
    }
}

/// What every hop record of a graph request shares: the caller, the request it belongs to
/// (`parent_request_id`), and the principal the hops run as.
fn hop_template(state: &AppState, caller: &Caller, graph: &ServedModel) -> AuditRecord {
    let mut record = AuditRecord::request();
    record.parent_request_id = Some(caller.request_id.clone());
    record.trace_id = Some(caller.trace_id.clone());
    record.source_ip = caller.source_ip;
    record.peer_identity = caller.peer.clone();
    record.protocol = Some(protocol_of(caller.protocol));
    record.method = Some("POST".to_owned());
    let call_as = graph.model.graph().map_or(CallAs::Caller, |g| g.call_as());
    match (call_as, &caller.token) {
        (CallAs::Graph, _) => record.request_principal = Some(graph_principal(graph)),
        (CallAs::Caller, Some(token)) => caller_fields(state, &mut record, token),
        (CallAs::Caller, None) => {}
    }
    record
}

/// The principal of a graph's own calls (`callAs: graph`): `graph:NAMESPACE/NAME`.
pub(crate) fn graph_principal(graph: &ServedModel) -> String {
    format!("graph:{}/{}", graph.id.namespace, graph.id.name)
}

impl Hop for Hops {
    type Error = ApiError;

    fn call<'a>(
        &'a self,
        node: &'a str,
        model: &'a ModelTarget,
        inputs: Vec<Tensor>,
        placement: Placement,
    ) -> HopFuture<'a, ApiError> {
        // One span per hop, a child of the request's (an OpenTelemetry span when tracing is on).
        let span = tracing::info_span!("hop", graph = %self.graph.id.name, node, model = %model);
        let alongside = self.alongside || placement == Placement::Alongside;
        Box::pin(tracing::Instrument::instrument(self.call_inner(node, model, inputs, alongside), span))
    }

    fn timer(&self, after: Duration) -> palisade_graph::Timer {
        Box::pin(tokio::time::sleep(after))
    }

    fn refuses(&self, error: &ApiError) -> bool {
        matches!(error, ApiError::AccessDenied | ApiError::Forbidden(_) | ApiError::Unauthenticated(_))
    }
}

/// The graph error of a failed run, as the caller gets it.
fn run_error(error: RunError<ApiError>) -> ApiError {
    match error {
        RunError::Hop(error) => error,
        RunError::Node { node, message } => ApiError::Inference(format!("node `{node}`: {message}")),
        RunError::Late { node, message } => ApiError::JoinTimeout(format!("step `{node}`: {message}")),
    }
}

impl Hops {
    async fn call_inner(
        &self,
        node: &str,
        model: &ModelTarget,
        inputs: Vec<Tensor>,
        alongside: bool,
    ) -> Result<Vec<Tensor>, ApiError> {
        {
            let started = Instant::now();
            let received = palisade_audit::Timestamp::now();
            let served = self.registry.get(model.name.as_str(), model.version.as_ref().map(|v| v.as_str()));
            let (result, served, decision) = match served {
                Err(_) => {
                    let error = ApiError::NotReady(format!(
                        "node `{node}` of graph `{}`: model `{model}` is not served",
                        self.graph.id.name
                    ));
                    (Err(error), None, None)
                }
                Ok(served) => match self.authorize(&served) {
                    Err((error, decision)) => (Err(error), Some(served), decision),
                    Ok(decision) => {
                        let result = if self.depth >= MAX_NESTING {
                            Err(ApiError::Internal(format!("graphs nested deeper than {MAX_NESTING}")))
                        } else {
                            let mut cut_off = CutOff {
                                hops: self,
                                node,
                                served: served.clone(),
                                decision: decision.clone(),
                                received,
                                started,
                                armed: true,
                            };
                            let result = run_served(
                                &self.state,
                                &self.caller,
                                &self.registry,
                                &served,
                                inputs,
                                Nested { depth: self.depth + 1, alongside },
                                &self.records,
                            )
                            .await;
                            cut_off.armed = false;
                            result
                        };
                        (result, Some(served), decision)
                    }
                },
            };
            let took = started.elapsed();
            let status = match &result {
                Ok(_) => 200,
                Err(error) => error.status().as_u16(),
            };
            let outcome = match status {
                200 => "ok",
                403 => "denied",
                _ => "error",
            };
            let unserved;
            let model_label = match &served {
                Some(served) => served.names.label.as_str(),
                None => {
                    unserved = model.to_string();
                    unserved.as_str()
                }
            };
            self.state.metrics().observe_hop(self.graph.id.name.as_str(), node, model_label, outcome, took);
            if let Some(record) =
                self.record(node, served.as_deref(), decision.as_deref(), status, received, took)
                && let Ok(mut records) = self.records.lock()
            {
                records.push(record);
            }
            result
        }
    }
}

/// A hop under way: if it is dropped before it answers (a pipeline answered without it,
/// or the caller went away), its audit record still is written, with status 499.
struct CutOff<'h> {
    hops: &'h Hops,
    node: &'h str,
    served: Arc<ServedModel>,
    decision: Option<Arc<palisade_policy::Decision>>,
    received: palisade_audit::Timestamp,
    started: Instant,
    armed: bool,
}

impl Drop for CutOff<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let took = self.started.elapsed();
        let graph = self.hops.graph.id.name.as_str();
        self.hops.state.metrics().observe_hop(graph, self.node, &self.served.names.label, "cut_off", took);
        if let Some(record) = self.hops.record(
            self.node,
            Some(&self.served),
            self.decision.as_deref(),
            self.hops.cut_off_status,
            self.received,
            took,
        ) && let Ok(mut records) = self.hops.records.lock()
        {
            records.push(record);
        }
    }
}

/// Where a hop runs: how deep in nested graphs, and whether alongside other hops.
#[derive(Debug, Clone, Copy)]
struct Nested {
    depth: usize,
    alongside: bool,
}

/// Runs a served model or graph for a hop (nested graphs keep the caller and the records).
fn run_served<'a>(
    state: &'a AppState,
    caller: &'a Arc<Caller>,
    registry: &'a Arc<Registry>,
    served: &'a Arc<ServedModel>,
    inputs: Vec<Tensor>,
    nested: Nested,
    records: &'a Arc<Mutex<Vec<AuditRecord>>>,
) -> HopFuture<'a, ApiError> {
    Box::pin(async move {
        match &served.model {
            crate::registry::Servable::Model(runnable) => {
                state
                    .run_model_placed(served, runnable, inputs, caller.credential.as_ref(), nested.alongside)
                    .await
            }
            crate::registry::Servable::Graph(graph) => {
                let hops = Hops::new(
                    state,
                    caller.clone(),
                    served.clone(),
                    registry.clone(),
                    records.clone(),
                    nested,
                );
                let inputs = palisade_runtime::check_inputs(graph.signature(), inputs)?;
                let sticky = caller.sticky(graph);
                graph
                    .run(&hops, inputs, sticky.as_deref())
                    .await
                    .map(|outcome| outcome.outputs)
                    .map_err(run_error)
            }
        }
    })
}

/// Serves a request with a graph: the routes taken and the hops' audit records go into the
/// request context; a shadow copy, when due, runs on its own task and never touches the
/// caller's answer, status or latency.
pub(crate) async fn run(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    graph: &Arc<Graph>,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, ApiError> {
    let caller = Arc::new(Caller::of(ctx));
    let registry = ctx.registry().clone();
    let records = Arc::new(Mutex::new(Vec::new()));
    let top = Nested { depth: 0, alongside: false };
    let hops = Hops::new(state, caller.clone(), served.clone(), registry.clone(), records.clone(), top);
    let inputs = palisade_runtime::check_inputs(graph.signature(), inputs)?;
    if let Some(shadowed) = graph.shadow_for(&inputs) {
        spawn_shadow(state, caller.clone(), served.clone(), registry, shadowed);
    }
    let sticky = caller.sticky(graph);
    let result = graph.run(&hops, inputs, sticky.as_deref()).await;
    let records = records.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
    // The node of the last hop that did not answer: the one that stopped the request.
    let failed = records.iter().rev().find(|r| r.status != Some(200)).and_then(|r| r.node.clone());
    ctx.add_hops(records);
    match result {
        Ok(outcome) => {
            for taken in &outcome.routing {
                let arm = taken.child.clone().unwrap_or_else(|| taken.choice.as_index().to_string());
                state.metrics().observe_route(served.id.name.as_str(), &taken.node, &arm);
            }
            if !outcome.routing.is_empty() {
                state.feedback().remember(
                    ctx.id.as_str().to_owned(),
                    palisade_graph::Remembered {
                        graph: served.id.to_string(),
                        caller: caller.principal(),
                        routing: outcome.routing.clone(),
                        at: Instant::now(),
                    },
                );
            }
            ctx.set_graph(GraphFacts { routing: outcome.routing, failed_node: None });
            Ok(outcome.outputs)
        }
        Err(RunError::Hop(error)) => {
            if let ApiError::RateLimited { retry_after, .. } = error {
                let budget = crate::rate::Kind::Requests;
                ctx.set_rate_limited(crate::context::RateLimited { budget, retry_after });
            }
            ctx.set_graph(GraphFacts { routing: vec![], failed_node: failed });
            Err(error)
        }
        Err(error) => {
            let node = match &error {
                RunError::Node { node, .. } | RunError::Late { node, .. } => Some(node.clone()),
                RunError::Hop(_) => failed,
            };
            ctx.set_graph(GraphFacts { routing: vec![], failed_node: node });
            Err(run_error(error))
        }
    }
}

/// Mirrors a request to the shadow on its own task, within the inference timeout: its
/// answer is dropped, its failure only logged and counted, its hop audited.
fn spawn_shadow(
    state: &AppState,
    caller: Arc<Caller>,
    graph: Arc<ServedModel>,
    registry: Arc<Registry>,
    shadowed: palisade_graph::Shadowed,
) {
    let state = state.clone();
    let timeout = state.config().inference_timeout;
    tokio::spawn(async move {
        let records = Arc::new(Mutex::new(Vec::new()));
        let top = Nested { depth: 0, alongside: false };
        let mut hops = Hops::new(&state, caller, graph, registry, records.clone(), top);
        // The shadow's hop is dropped only by this timeout.
        hops.cut_off_status = 504;
        // The shadow's own task: nothing else of it is pending, so a cheap model runs here.
        let call = hops.call("shadow", &shadowed.target, shadowed.inputs, Placement::Inline);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, model = %shadowed.target, "the shadow call failed (the caller was answered without it)")
            }
            // Its hop record (504) was written as the call was dropped.
            Err(_) => {
                tracing::debug!(model = %shadowed.target, "the shadow call timed out (the caller was answered without it)");
            }
        }
        let records = records.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        for record in records {
            if let Err(error) = state.audit().append(record).await {
                tracing::warn!(%error, "the audit record of a shadow call could not be written");
            }
        }
    });
}

/// A reward for one of a graph's requests. Only these fields are read: a route sent back
/// by the client (Seldon's `routing`) is ignored, the server's memory of the request says
/// which arms it took.
#[derive(Debug, serde::Deserialize)]
struct V2Feedback {
    request_id: String,
    reward: f64,
}

/// `POST /v2/models/{graph}/feedback` with `{"request_id": ..., "reward": ...}`.
pub(crate) async fn feedback_v2(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let feedback: V2Feedback = serde_json::from_slice(&body.bytes).map_err(|e| {
        ApiError::BadRequest(format!("feedback is {{\"request_id\": \"...\", \"reward\": 1.0}}: {e}"))
    })?;
    let answer = reward(state, ctx, served, &feedback.request_id, feedback.reward)?;
    Ok(axum::Json(answer).into_response())
}

/// `POST /api/v1.0/feedback` (Seldon): the request id is the `meta.puid` of the response
/// the client got; the reward is `reward`.
pub(crate) async fn feedback_seldon(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let value: serde_json::Value = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::BadRequest(format!("Seldon feedback is a JSON object: {e}")))?;
    let puid = value["response"]["meta"]["puid"].as_str().ok_or_else(|| {
        ApiError::BadRequest(
            "Seldon feedback needs `response.meta.puid`: the puid of the response being rewarded".to_owned(),
        )
    })?;
    let reward_value = value["reward"]
        .as_f64()
        .ok_or_else(|| ApiError::BadRequest("Seldon feedback needs a numeric `reward`".to_owned()))?;
    reward(state, ctx, served, puid, reward_value)?;
    Ok(axum::Json(serde_json::json!({"meta": {"puid": puid}, "data": {"names": [], "ndarray": []}}))
        .into_response())
}

/// Rewards the arms one remembered request took: only its caller, or the graph's owners.
pub(crate) fn reward(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    request_id: &str,
    reward: f64,
) -> Result<serde_json::Value, ApiError> {
    let Some(graph) = served.model.graph() else {
        return Err(ApiError::BadRequest(format!(
            "model `{}` is not a graph: feedback rewards the routers of a graph",
            served.id.name
        )));
    };
    if !reward.is_finite() {
        return Err(ApiError::BadRequest("the reward must be a finite number".to_owned()));
    }
    let unknown = || {
        ApiError::NotFound(format!(
            "no request `{}` of `{}` is remembered by this replica: requests and bandit state are kept per replica, so feedback must reach the replica that served the request, within an hour, once; this one did not serve it, or it was rewarded already or has expired",
            crate::registry::clip(request_id),
            served.id.name
        ))
    };
    let remembered = state.feedback().get(request_id).ok_or_else(unknown)?;
    if remembered.graph != served.id.to_string() {
        return Err(unknown());
    }
    let caller = Caller::of(ctx).principal();
    let owner = ctx.policy_request().is_some_and(|request| {
        let policies = state.security().policy_set();
        served.owners.as_slice().iter().any(|owner| policies.is_owner(owner, request))
    });
    if caller != remembered.caller && !owner {
        tracing::info!(graph = %served.id.name, "feedback refused: not the request's caller nor an owner");
        return Err(ApiError::AccessDenied);
    }
    let remembered = state.feedback().forget(request_id).ok_or_else(unknown)?;
    let rewarded = graph.reward(&remembered.routing, reward);
    let facts = GraphFacts { routing: remembered.routing, failed_node: None };
    Ok(serde_json::json!({"request_id": request_id, "rewarded": rewarded, "routing": facts.routing_json()}))
}
