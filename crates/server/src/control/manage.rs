//! The management API for owner self-service: model owners manage their models' policies
//! without a platform ticket; platform administrators manage everything.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /manage/v1/policies` | the policies that reach the caller's models (all, for administrators) |
//! | `PUT /manage/v1/policies` | create or replace a policy (body: the YAML or JSON resource) |
//! | `DELETE /manage/v1/policies/{namespace}/{name}` | delete an owner-managed policy |
//! | `GET /manage/v1/models` | the model versions the server serves now |
//! | `GET /manage/v1/models/{model}/explain` | who can call each version of the model, and why |
//! | `POST /manage/v1/check` | dry evaluation for a token or a claim set |
//!
//! An owner-managed policy belongs to its creator: it is stored with the creator's verified
//! identity, and at every decision it applies to a model version only while the creator is
//! an owner of that version (models deployed later included). A selector-free policy in a
//! shared namespace therefore reaches the creator's models only. An owner may create a
//! policy that selects at least one model they own; may replace one they created, or one
//! whose every reached model they own; and may delete one they created or one that reaches
//! a model they own. Whether a policy exists is told only to those who may manage it (404
//! otherwise). Root-namespace policies and the platform's policy directory are for
//! administrators (`authorization.admins`). Owner-managed policies live in
//! `$PALISADE_HOME/owner-policies/NAMESPACE/NAME.yaml`, with the creator in
//! `NAME.creator.json` beside it.
//!
//! Applying and deleting answer with the change's impact: per model version, who gains and
//! who loses access compared with now. `?dryRun=true` answers the impact, and the policy's
//! YAML line by line against the stored one (`diff`), and changes nothing. A change that takes an owner's own access away is refused (409) unless the
//! request says `?confirm=true`.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_identity::{Scoping, VerifiedToken};
use palisade_policy::{AuthorizationPolicy, Request as PolicyRequest, TargetModel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::impact::{self, Impact};
use crate::context::RequestContext;
use crate::route::ManageOp;
use crate::{ApiError, AppState, ServedModel};

/// Claims kept with an owner-managed policy: those ownership is judged by.
const CREATOR_CLAIMS: &[&str] = &["iss", "sub", "email", "email_verified", "client_id"];

/// The creator record beside an owner-managed policy (`NAME.creator.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatorRecord {
    /// `iss/sub` of the creator.
    pub principal: String,
    /// The claims their ownership is judged by.
    pub claims: Map<String, Value>,
    /// A platform administrator created it: it applies as a platform policy would.
    #[serde(default)]
    pub admin: bool,
}

/// The file of the creator record of an owner-managed policy file.
pub(crate) fn creator_file(policy_file: &Path) -> std::path::PathBuf {
    policy_file.with_extension("creator.json")
}

/// The caller of a management operation (or of the console, whose owner checks are these).
pub(crate) struct Caller {
    token: Option<Arc<VerifiedToken>>,
    admin: bool,
}

impl Caller {
    /// The caller's verified claims, if authenticated.
    pub(crate) fn claims(&self) -> Option<&Arc<Map<String, Value>>> {
        self.token.as_ref().map(|t| &t.claims)
    }

    fn principal(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.principal())
    }

    /// The caller's principal and verified claims, if authenticated.
    fn identity(&self) -> Option<(String, Arc<Map<String, Value>>)> {
        self.token.as_ref().map(|t| (t.principal(), t.claims.clone()))
    }

    /// Whether the caller is an owner of this model version.
    pub(crate) fn owns(&self, state: &AppState, target: &Arc<TargetModel>) -> bool {
        let set = state.security().policy_set();
        let mut req = PolicyRequest::new(target.clone());
        req.claims = self.claims().cloned();
        target.owners.iter().any(|owner| set.is_owner(owner, &req))
    }
}

/// The caller of the request: its verified token, and whether it is a platform administrator.
pub(crate) fn caller(state: &AppState, ctx: &RequestContext) -> Caller {
    let token = ctx.token();
    let admins = &state.security().platform().config.authorization.admins;
    let set = state.security().policy_set();
    let admin =
        token.as_ref().is_some_and(|t| admins.iter().any(|admin| set.claims_identify(admin, &t.claims)));
    Caller { token, admin }
}

/// Runs a management operation.
pub(crate) async fn handle(
    state: &AppState,
    ctx: &RequestContext,
    op: &ManageOp,
    req: Request,
) -> Result<Response, ApiError> {
    let caller = caller(state, ctx);
    let mode = Mode::from_query(req.uri().query())?;
    match op {
        ManageOp::ListPolicies => Ok(list(state, &caller)),
        ManageOp::ListModels => Ok(models(state, &caller)),
        ManageOp::ApplyPolicy => apply_request(state, ctx, &caller, mode, req).await,
        ManageOp::DeletePolicy { namespace, name } => {
            delete(state, ctx, &caller, namespace, name, mode).await
        }
        ManageOp::Explain { model } => explain(state, &caller, model),
        ManageOp::Check => {
            let (parts, body) = req.into_parts();
            let body = state.read_body(ctx, &parts.headers, body).await?;
            check(state, &caller, &body.bytes).await
        }
    }
}

/// `PUT /manage/v1/policies` (and the console's `POST /console/api/policies`): the body is
/// the policy, the query says `dryRun` and `confirm`.
pub(crate) async fn apply_request(
    state: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    mode: Mode,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    apply(state, ctx, caller, &body.bytes, mode).await
}

/// How a change is asked for: `?dryRun=true` (answer the impact, change nothing) and
/// `?confirm=true` (an owner may lose access to their own model).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mode {
    dry_run: bool,
    confirm: bool,
}

impl Mode {
    /// The mode a query string asks for; unknown parameters are refused.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Mode, ApiError> {
        let mut mode = Mode::default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|err| ApiError::BadRequest(format!("query string: {err}")))?;
        for (key, value) in pairs {
            let flag = match value.as_str() {
                "true" | "All" | "" => true,
                "false" => false,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "query parameter `{key}`: `{other}` is not `true` or `false`"
                    )));
                }
            };
            match key.as_str() {
                "dryRun" => mode.dry_run = flag,
                "confirm" => mode.confirm = flag,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter `{other}`: expected `dryRun` or `confirm`"
                    )));
                }
            }
        }
        Ok(mode)
    }
}

/// Decides on a change from its impact: the dry run's answer, the refusal of a change that
/// takes an owner's access away unconfirmed, or `None` to go ahead.
fn judge(
    what: &str,
    selects: &[Arc<ServedModel>],
    impact: &Impact,
    mode: Mode,
    change: (&str, &str),
) -> Option<Result<Response, ApiError>> {
    if mode.dry_run {
        let (before, after) = change;
        let diff: Vec<Value> = palisade_core::diff::lines(before, after)
            .iter()
            .map(|line| json!({"op": line.kind(), "line": line.text()}))
            .collect();
        return Some(Ok(Json(json!({
            "dry_run": true,
            "policy": what,
            "selects": model_names(selects),
            "impact": impact.to_json(),
            "owners_lose_access": impact.owners_lose(),
            "diff": diff,
        }))
        .into_response()));
    }
    if impact.owners_lose() && !mode.confirm {
        let lost: Vec<String> = impact
            .models
            .iter()
            .filter(|m| !m.owners_losing.is_empty())
            .map(|m| format!("{} ({})", m.model, m.owners_losing.join(", ")))
            .collect();
        return Some(Err(ApiError::Conflict(format!(
            "this change takes owners' access to their own model away: {}; add the owners to the policy's rules to keep it, or confirm with `?confirm=true` (`palisade policy apply --yes`)",
            lost.join("; ")
        ))));
    }
    None
}

fn model_names(models: &[Arc<ServedModel>]) -> Vec<String> {
    models.iter().map(|m| format!("{}/{}:{}", m.id.namespace, m.id.name, m.id.version)).collect()
}

/// `GET /manage/v1/models`: the model versions the server serves now that the caller owns
/// or may call (all, for administrators).
fn models(state: &AppState, caller: &Caller) -> Response {
    let registry = state.registry();
    let set = state.security().policy_set();
    let visible = |m: &ServedModel| {
        caller.admin || caller.owns(state, &m.target) || {
            let mut request = PolicyRequest::new(m.target.clone());
            request.claims = caller.claims().cloned();
            request.method = "POST".to_owned();
            request.path = format!("/v2/models/{}/infer", m.id.name);
            set.evaluate(&request).allowed
        }
    };
    let mut served: Vec<&Arc<ServedModel>> = registry.all().filter(|m| visible(m)).collect();
    served.sort_by(|a, b| {
        (a.id.namespace.as_str(), a.id.name.as_str()).cmp(&(b.id.namespace.as_str(), b.id.name.as_str()))
    });
    let models: Vec<Value> = served
        .iter()
        .map(|m| {
            let latest = registry.get(m.id.name.as_str(), None).is_ok_and(|l| l.id.version == m.id.version);
            json!({
                "namespace": m.id.namespace.as_str(),
                "name": m.id.name.as_str(),
                "version": m.id.version.as_str(),
                "latest": latest,
                "digest": m.digest.to_string(),
                "engine": m.model.engine(),
                "owners": m.target.owners.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({"models": models})).into_response()
}

/// Every served model version a policy document selects by namespace and labels, whoever
/// created it.
fn selected(state: &AppState, policy: &AuthorizationPolicy) -> Vec<Arc<ServedModel>> {
    let root = &state.security().platform().config.authorization.root_namespace;
    let namespace = policy.metadata.namespace.as_str();
    let selector = policy.spec.selector.as_ref().map(|s| &s.match_labels);
    state
        .registry()
        .all()
        .filter(|m| namespace == root || m.target.namespace.as_str() == namespace)
        .filter(|m| {
            selector.is_none_or(|labels| labels.iter().all(|(k, v)| m.target.labels.get(k) == Some(v)))
        })
        .cloned()
        .collect()
}

/// The served model versions a loaded policy applies to: those it selects that its creator
/// owns (all it selects, for a platform policy).
fn reached(state: &AppState, policy: &AuthorizationPolicy) -> Vec<Arc<ServedModel>> {
    let set = state.security().policy_set();
    selected(state, policy)
        .into_iter()
        .filter(|m| {
            policy
                .creator
                .as_ref()
                .is_none_or(|c| m.target.owners.iter().any(|o| set.claims_identify(o, &c.claims)))
        })
        .collect()
}

fn is_managed(state: &AppState, policy: &AuthorizationPolicy) -> bool {
    policy.source_file.starts_with(state.security().managed_dir())
}

fn find(state: &AppState, namespace: &str, name: &str) -> Option<AuthorizationPolicy> {
    state
        .security()
        .policies()
        .authorization_policies
        .iter()
        .find(|p| p.metadata.namespace.as_str() == namespace && p.metadata.name.as_str() == name)
        .cloned()
}

/// Whether the caller created this owner-managed policy.
fn created(caller: &Caller, policy: &AuthorizationPolicy) -> bool {
    matches!((&policy.creator, caller.principal()), (Some(c), Some(p)) if c.principal == p)
}

fn policy_summary(state: &AppState, caller: &Caller, policy: &AuthorizationPolicy) -> Value {
    let mut summary = json!({
        "namespace": policy.metadata.namespace.as_str(),
        "name": policy.metadata.name.as_str(),
        "action": format!("{:?}", policy.spec.action).to_uppercase(),
        "dry_run": policy.is_dry_run(),
        "source": if is_managed(state, policy) { "owner" } else { "platform" },
        "creator": policy.creator.as_ref().map(|c| c.principal.clone()),
        "rules": policy.spec.rules.iter().map(palisade_policy::summarize_rule).collect::<Vec<_>>(),
    });
    if caller.admin {
        summary["file"] = json!(policy.source_file.display().to_string());
    }
    summary
}

/// `GET /manage/v1/policies`
fn list(state: &AppState, caller: &Caller) -> Response {
    let policies: Vec<Value> = state
        .security()
        .policies()
        .authorization_policies
        .iter()
        .filter(|p| caller.admin || reached(state, p).iter().any(|m| caller.owns(state, &m.target)))
        .map(|p| policy_summary(state, caller, p))
        .collect();
    Json(json!({"policies": policies})).into_response()
}

/// `PUT /manage/v1/policies`
async fn apply(
    state: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    body: &[u8],
    mode: Mode,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".to_owned()))?
        .to_owned();
    // Who may apply in the namespace is decided from one bounded look at the document
    // (`metadata.namespace`, read within the YAML limits and no further), before the rest
    // is parsed: a caller who owns no model there never costs the server a full parse.
    let peeked = palisade_core::yaml::peek_scalar(
        Path::new("request body"),
        text.as_str(),
        &["metadata", "namespace"],
        palisade_core::yaml::Limits::default(),
    )
    .map_err(|err| ApiError::BadRequest(err.to_string()))?
    .ok_or_else(|| {
        ApiError::BadRequest(
            "request body: field `metadata.namespace` is required, written as a plain value (a policy applies in one namespace)"
                .to_owned(),
        )
    })?;
    let root = &state.security().platform().config.authorization.root_namespace;
    if !caller.admin {
        if &peeked == root {
            return Err(ApiError::Forbidden(format!(
                "policies in the root namespace `{root}` apply to every model: platform administrators only"
            )));
        }
        let owns_one = state
            .registry()
            .all()
            .any(|m| m.target.namespace.as_str() == peeked && caller.owns(state, &m.target));
        if !owns_one {
            return Err(ApiError::Forbidden(format!(
                "you own no model in namespace `{peeked}`: an owner's policy applies only to models its creator owns"
            )));
        }
    }
    // Parsing is CPU work bounded by the YAML limits; it runs off the async runtime.
    let (policy, text) = tokio::task::spawn_blocking(move || {
        palisade_policy::parse_policy(text.as_str(), Path::new("request body")).map(|policy| (policy, text))
    })
    .await
    .map_err(|err| ApiError::Internal(format!("policy parsing stopped: {err}")))?
    .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    let text = text.as_str();
    let (namespace, name) = (policy.metadata.namespace.to_string(), policy.metadata.name.to_string());
    if namespace != peeked {
        return Err(ApiError::BadRequest(format!(
            "request body: `metadata.namespace` reads `{peeked}` at first and `{namespace}` once parsed; write it once, as a plain value"
        )));
    }
    if !caller.admin && !selected(state, &policy).iter().any(|m| caller.owns(state, &m.target)) {
        return Err(ApiError::Forbidden(format!(
            "the policy selects none of your models in namespace `{namespace}`: an owner's policy applies only to models its creator owns"
        )));
    }
    let existing = find(state, &namespace, &name);
    if let Some(existing) = &existing {
        let reach = reached(state, existing);
        let may_replace = is_managed(state, existing)
            && (caller.admin
                || created(caller, existing)
                || (!reach.is_empty() && reach.iter().all(|m| caller.owns(state, &m.target))));
        if !may_replace {
            // One answer for a platform policy and another owner's: the name is taken,
            // nothing more is told.
            return Err(ApiError::Conflict(format!(
                "the name {namespace}/{name} is taken by a policy you may not replace; choose another name"
            )));
        }
    }
    let creator = CreatorRecord {
        principal: caller.principal().unwrap_or_else(|| "anonymous".to_owned()),
        claims: creator_claims(state, caller),
        admin: caller.admin,
    };
    let mut next = policy.clone();
    next.creator = (!creator.admin).then(|| palisade_policy::Creator {
        principal: creator.principal.clone(),
        claims: Arc::new(creator.claims.clone()),
    });
    let impact = impact::impact(state, caller.identity(), &namespace, &name, Some(next))?;
    // The policy it replaces, as stored (only an owner-managed one can be replaced).
    let before =
        existing.as_ref().and_then(|p| std::fs::read_to_string(&p.source_file).ok()).unwrap_or_default();
    let change = (before.as_str(), text);
    if let Some(answer) =
        judge(&format!("{namespace}/{name}"), &selected(state, &policy), &impact, mode, change)
    {
        return answer;
    }
    let dir = state.security().managed_dir().join(&namespace);
    let file = dir.join(format!("{name}.yaml"));
    let previous = Stored::read(&file);
    let creator_json = serde_json::to_vec_pretty(&creator).map_err(|e| ApiError::Internal(e.to_string()))?;
    let written = write_atomically(&dir, &creator_file(&file), &creator_json)
        .and_then(|()| write_atomically(&dir, &file, text.as_bytes()));
    if let Err(err) = written {
        previous.restore(&dir, &file);
        return Err(ApiError::Internal(format!("cannot store the policy: {err}")));
    }
    if let Err(err) = reload(state).await {
        tracing::info!(error = %err, "policy refused when loaded with the others");
        // The new set did not build (for example a clash with another policy): undo.
        previous.restore(&dir, &file);
        let _ = reload(state).await;
        return Err(ApiError::BadRequest(format!(
            "the policy was refused when loaded with the others: {err}"
        )));
    }
    let change = palisade_audit::ConfigChange {
        who: creator.principal.clone(),
        what: format!("policy {namespace}/{name}"),
        before_digest: previous.policy.as_deref().map(digest),
        after_digest: Some(digest(text.as_bytes())),
    };
    if let Err(err) = record_change(state, ctx, change).await {
        // A change nobody can audit does not stay: undo it.
        previous.restore(&dir, &file);
        let _ = reload(state).await;
        tracing::error!(error = %err, "policy change undone: its audit record could not be written");
        return Err(ApiError::AuditUnavailable(err.to_string()));
    }
    let created = previous.policy.is_none();
    tracing::info!(policy = %format!("{namespace}/{name}"), created, "policy applied through the management API");
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(json!({
            "applied": format!("{namespace}/{name}"),
            "created": created,
            "selects": model_names(&selected(state, &policy)),
            "impact": impact.to_json(),
        })),
    )
        .into_response())
}

/// Whether the caller may delete `policy` (and learn that it exists): administrators any;
/// an owner an owner-managed one they created or one that reaches a model they own. A
/// platform policy the caller may see is then refused with 403 ("change it there").
fn may_delete(state: &AppState, caller: &Caller, policy: &AuthorizationPolicy) -> bool {
    caller.admin
        || (is_managed(state, policy)
            && (created(caller, policy)
                || reached(state, policy).iter().any(|m| caller.owns(state, &m.target))))
}

/// `DELETE /manage/v1/policies/{namespace}/{name}` (and the console's `DELETE
/// /console/api/policies/{namespace}/{name}`)
pub(crate) async fn delete(
    state: &AppState,
    ctx: &RequestContext,
    caller: &Caller,
    namespace: &str,
    name: &str,
    mode: Mode,
) -> Result<Response, ApiError> {
    // The same answer whether the policy is missing or not the caller's to manage: nobody
    // learns of policies they may not manage.
    let hidden = || ApiError::NotFound(format!("no policy {namespace}/{name} that you may manage"));
    let policy = find(state, namespace, name).ok_or_else(hidden)?;
    let managed = is_managed(state, &policy);
    if !may_delete(state, caller, &policy) {
        return Err(hidden());
    }
    if !managed {
        return Err(ApiError::Forbidden(format!(
            "{namespace}/{name} comes from the platform's policy directory; change it there"
        )));
    }
    let impact = impact::impact(state, caller.identity(), namespace, name, None)?;
    let before = std::fs::read_to_string(&policy.source_file).unwrap_or_default();
    let what = format!("{namespace}/{name}");
    if let Some(answer) = judge(&what, &reached(state, &policy), &impact, mode, (before.as_str(), "")) {
        return answer;
    }
    let file = policy.source_file.clone();
    let dir = file.parent().map(Path::to_owned).unwrap_or_default();
    let previous = Stored::read(&file);
    std::fs::remove_file(&file)
        .map_err(|err| ApiError::Internal(format!("cannot delete the policy: {err}")))?;
    let _ = std::fs::remove_file(creator_file(&file));
    let change = palisade_audit::ConfigChange {
        who: caller.principal().unwrap_or_else(|| "anonymous".to_owned()),
        what: format!("policy {namespace}/{name}"),
        before_digest: previous.policy.as_deref().map(digest),
        after_digest: None,
    };
    if let Err(err) = record_change(state, ctx, change).await {
        previous.restore(&dir, &file);
        tracing::error!(error = %err, "policy deletion undone: its audit record could not be written");
        return Err(ApiError::AuditUnavailable(err.to_string()));
    }
    if let Err(err) = reload(state).await {
        tracing::error!(error = %err, "reload after a policy deletion failed");
    }
    tracing::info!(policy = %format!("{namespace}/{name}"), "policy deleted through the management API");
    Ok(Json(json!({"deleted": format!("{namespace}/{name}"), "impact": impact.to_json()})).into_response())
}

/// `GET /manage/v1/models/{model}/explain`: for every served version of the model.
pub(crate) fn explain(state: &AppState, caller: &Caller, model: &str) -> Result<Response, ApiError> {
    let latest = state.registry().get(model, None)?;
    let versions: Vec<Arc<ServedModel>> = state
        .registry()
        .versions(&latest.id.name)
        .iter()
        .filter_map(|v| state.registry().get(model, Some(v.as_str())).ok())
        .collect();
    if !caller.admin && !versions.iter().any(|m| caller.owns(state, &m.target)) {
        return Err(ApiError::Forbidden(format!(
            "only the owners of {model} (and platform administrators) may see its access"
        )));
    }
    let set = state.security().policy_set();
    let explained = |served: &ServedModel| {
        let explanation = set.explain(&served.target);
        json!({
            "version": served.id.version.as_str(),
            "owner_default": explanation.owner_default,
            "owners": explanation.owners.iter().map(|(o, how)| json!({"owner": o.to_string(), "matches": how})).collect::<Vec<_>>(),
            "policies": explanation.policies.iter().map(|p| json!({
                "policy": p.policy.to_string(),
                "action": format!("{:?}", p.action).to_uppercase(),
                "dry_run": p.dry_run,
                "root_namespace": p.from_root_namespace,
                "rules": p.rules,
                "deletable": find(state, &p.policy.namespace, &p.policy.name)
                    .is_some_and(|policy| is_managed(state, &policy) && may_delete(state, caller, &policy)),
            })).collect::<Vec<_>>(),
            "text": explanation.lines(),
        })
    };
    let mut body = explained(&latest);
    body["model"] = json!(set.explain(&latest.target).model);
    let mut text: Vec<String> = Vec::new();
    let mut per_version = Vec::new();
    for served in &versions {
        let one = explained(served);
        text.push(format!(
            "version {}{}:",
            served.id.version,
            if served.id.version == latest.id.version { " (latest)" } else { "" }
        ));
        text.extend(
            one["text"].as_array().into_iter().flatten().filter_map(Value::as_str).map(|l| format!("  {l}")),
        );
        per_version.push(one);
    }
    if let Some(graph) = latest.model.graph() {
        let (hops, lines) = explain_hops(state, &latest, graph);
        body["graph"] = hops;
        text.extend(lines);
    }
    body["versions"] = json!(per_version);
    body["text"] = json!(text);
    Ok(Json(body).into_response())
}

/// Who a graph's hops run as, and what the models they call allow: with `callAs: caller`,
/// a caller also needs each model's access (listed); with `callAs: graph`, each model's
/// policies must allow the principal `graph:NAMESPACE/NAME` (evaluated here).
fn explain_hops(
    state: &AppState,
    served: &ServedModel,
    graph: &palisade_graph::Graph,
) -> (Value, Vec<String>) {
    let set = state.security().policy_set();
    let registry = state.registry();
    let principal = crate::graphs::graph_principal(served);
    let as_graph = graph.call_as() == palisade_bundle::graph::CallAs::Graph;
    let mut lines = vec![if as_graph {
        format!(
            "graph: its nodes call their models as `{principal}` (callAs: graph); callers need access to the graph only"
        )
    } else {
        "graph: its nodes call their models as the caller (callAs: caller); a caller also needs access to each:".to_owned()
    }];
    let mut models = Vec::new();
    for target in graph.uses() {
        let Ok(model) = registry.get(target.name.as_str(), target.version.as_ref().map(|v| v.as_str()))
        else {
            lines.push(format!("  {target}: not served"));
            continue;
        };
        let explanation = set.explain(&model.target);
        let allowed = as_graph.then(|| {
            let mut request = palisade_policy::Request::new(model.target.clone());
            request.source_principal = Some(principal.clone());
            request.method = "POST".to_owned();
            request.path = format!("/v2/models/{}/versions/{}/infer", model.id.name, model.id.version);
            set.evaluate(&request).allowed
        });
        match allowed {
            Some(true) => lines.push(format!("  {target}: allows {principal}")),
            Some(false) => {
                lines.push(format!("  {target}: does NOT allow {principal}: its calls are refused (403)"))
            }
            None => {
                lines.push(format!("  {target}:"));
                lines.extend(explanation.lines().into_iter().map(|l| format!("    {l}")));
            }
        }
        models
            .push(json!({"model": target.to_string(), "allows_graph": allowed, "text": explanation.lines()}));
    }
    let call_as = if as_graph { "graph" } else { "caller" };
    (json!({"call_as": call_as, "principal": principal, "models": models}), lines)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    model: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

/// `POST /manage/v1/check`: what would the policies decide for this token (verified with
/// the server's trusted issuers) or claim set (taken as is)?
pub(crate) async fn check(state: &AppState, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let request: CheckRequest = serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("invalid check request: {err}")))?;
    let served = state.registry().get(&request.model, request.version.as_deref())?;
    if !caller.admin && !caller.owns(state, &served.target) {
        return Err(ApiError::Forbidden(format!(
            "only the owners of {} (and platform administrators) may check its access",
            request.model
        )));
    }
    let claims = match (request.token, request.claims) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("give either `token` or `claims`, not both".to_owned()));
        }
        (Some(token), None) => {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ApiError::BadRequest("the token has characters a header cannot carry".to_owned())
            })?;
            headers.insert(header::AUTHORIZATION, value);
            let scoping = Scoping::Model(served.identity_target());
            match state.security().authenticator().authenticate(&headers, None, scoping).await {
                Ok(authenticated) => authenticated.token().map(|t| t.claims.clone()),
                Err(err) => {
                    return Ok(Json(json!({"allowed": false, "status": err.status(), "reason": format!("authentication: {err}")}))
                        .into_response());
                }
            }
        }
        (None, claims) => claims.map(Arc::new),
    };
    let path = request.path.unwrap_or_else(|| format!("/v2/models/{}/infer", served.id.name));
    let path = palisade_policy::normalize_path(&path)
        .map_err(|err| ApiError::BadRequest(format!("invalid path: {err}")))?;
    let mut evaluate = PolicyRequest::new(served.target.clone());
    evaluate.claims = claims;
    evaluate.path = path;
    evaluate.method = request.method.unwrap_or_else(|| "POST".to_owned());
    let decision = state.security().policy_set().evaluate(&evaluate);
    Ok(Json(json!({
        "allowed": decision.allowed,
        "status": if decision.allowed { 200 } else { 403 },
        "reason": decision.reason.to_string(),
        "audit": decision.audit.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dry_run": decision.dry_run.iter().map(|(p, allow)| json!({"policy": p.to_string(), "would_allow": allow})).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The claims of the caller that ownership is judged by, to store with their policy.
fn creator_claims(state: &AppState, caller: &Caller) -> Map<String, Value> {
    let groups = &state.security().platform().config.authorization.groups_claim;
    caller
        .claims()
        .map(|claims| {
            claims
                .iter()
                .filter(|(k, _)| CREATOR_CLAIMS.contains(&k.as_str()) || *k == groups)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the audit record of a policy change, naming the caller as fully as a request's
/// record does (principal, email, client, token id, request id, address).
async fn record_change(
    state: &AppState,
    ctx: &RequestContext,
    change: palisade_audit::ConfigChange,
) -> Result<(), palisade_audit::AuditError> {
    let mut record = palisade_audit::AuditRecord::config_change(change);
    record.request_id = Some(ctx.id.as_str().to_owned());
    record.trace_id = Some(ctx.trace.trace_id.clone());
    record.source_ip = ctx.conn.as_ref().map(|c| c.remote.ip());
    if let Some(token) = ctx.token() {
        record.request_principal = Some(token.principal());
        record.email = token.claims.get("email").and_then(Value::as_str).map(str::to_owned);
        record.client_id = token.claims.get("client_id").and_then(Value::as_str).map(str::to_owned);
        record.jwt = Some(palisade_audit::JwtInfo {
            kid: token.kid.clone(),
            alg: Some(token.alg.to_owned()),
            jti: token.jti.clone(),
        });
    }
    state.audit().append(record).await.map(|_| ())
}

async fn reload(state: &AppState) -> Result<(), crate::ConfigError> {
    let security = state.security().clone();
    tokio::task::spawn_blocking(move || security.reload())
        .await
        .map_err(|e| crate::ConfigError(e.to_string()))?
}

/// An owner-managed policy's files as they were, to put back when a change is undone.
struct Stored {
    policy: Option<Vec<u8>>,
    creator: Option<Vec<u8>>,
}

impl Stored {
    fn read(file: &Path) -> Stored {
        Stored { policy: std::fs::read(file).ok(), creator: std::fs::read(creator_file(file)).ok() }
    }

    fn restore(&self, dir: &Path, file: &Path) {
        for (path, bytes) in [(file.to_owned(), &self.policy), (creator_file(file), &self.creator)] {
            let _ = match bytes {
                Some(bytes) => write_atomically(dir, &path, bytes),
                None => std::fs::remove_file(&path).or(Ok(())),
            };
        }
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", palisade_audit::sha256_hex(bytes))
}

fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    palisade_private_files::create_dir_all(dir).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}
