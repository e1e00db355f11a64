//! The management API for owner self-service: model owners manage their models' policies
//! without a platform ticket; platform administrators manage everything.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /manage/v1/policies` | policies the caller may manage (platform ones read-only) |
//! | `PUT /manage/v1/policies` | create or replace a policy (body: the YAML or JSON resource) |
//! | `DELETE /manage/v1/policies/{namespace}/{name}` | delete an owner-managed policy |
//! | `GET /manage/v1/models/{model}/explain` | who can call the model, and why |
//! | `POST /manage/v1/check` | dry evaluation for a token or a claim set |
//!
//! Requests are authenticated like any other. A caller may change a policy when they are a
//! platform administrator, or an owner of every model the policy selects (and it selects at
//! least one). Root-namespace policies and policies from the platform's policy directory
//! are for administrators only. Owner-managed policies live in `$PALISADE_HOME/owner-policies/`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_policy::{AuthorizationPolicy, Request as PolicyRequest, TargetModel};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::authn::Caller;
use crate::body::LimitedBody;
use crate::{ApiError, AppState};

fn forbidden(message: impl Into<String>) -> Response {
    (StatusCode::FORBIDDEN, Json(json!({"error": message.into()}))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message.into()}))).into_response()
}

fn caller_claims(caller: &Option<Extension<Caller>>) -> Option<Arc<Map<String, Value>>> {
    caller.as_ref().and_then(|Extension(c)| c.token()).map(|t| t.claims.clone())
}

/// Whether the caller is a platform administrator (config `authorization.admins`).
fn is_admin(state: &AppState, claims: &Option<Arc<Map<String, Value>>>) -> bool {
    let admins = &state.security().platform().config.authorization.admins;
    let set = state.security().policy_set();
    claims.as_ref().is_some_and(|claims| admins.iter().any(|admin| set.claims_identify(admin, claims)))
}

/// Whether the caller owns this model.
fn owns(state: &AppState, claims: &Option<Arc<Map<String, Value>>>, target: &Arc<TargetModel>) -> bool {
    let set = state.security().policy_set();
    let mut req = PolicyRequest::new(target.clone());
    req.claims = claims.clone();
    target.owners.iter().any(|owner| set.is_owner(owner, &req))
}

/// The served models a policy selects (latest versions; names are unique per server).
fn selected_models(state: &AppState, policy: &AuthorizationPolicy, root: &str) -> Vec<Arc<TargetModel>> {
    let namespace = policy.metadata.namespace.as_str();
    let selector = policy.spec.selector.as_ref().map(|s| &s.match_labels);
    state
        .registry()
        .latest()
        .filter(|m| namespace == root || m.target.namespace.as_str() == namespace)
        .filter(|m| {
            selector.is_none_or(|labels| labels.iter().all(|(k, v)| m.target.labels.get(k) == Some(v)))
        })
        .map(|m| m.target.clone())
        .collect()
}

/// Why the caller may not change this policy, if they may not.
fn may_change(
    state: &AppState,
    claims: &Option<Arc<Map<String, Value>>>,
    policy: &AuthorizationPolicy,
) -> Result<(), String> {
    if is_admin(state, claims) {
        return Ok(());
    }
    let root = state.security().platform().config.authorization.root_namespace.clone();
    if policy.metadata.namespace.as_str() == root {
        return Err(format!(
            "policies in the root namespace `{root}` apply to every model: platform administrators only"
        ));
    }
    let models = selected_models(state, policy, &root);
    if models.is_empty() {
        return Err(format!(
            "the policy selects no served model in namespace `{}`; only platform administrators may create it",
            policy.metadata.namespace
        ));
    }
    match models.iter().find(|m| !owns(state, claims, m)) {
        Some(model) => Err(format!(
            "you are not an owner of model {}/{}, which this policy selects",
            model.namespace, model.name
        )),
        None => Ok(()),
    }
}

fn is_platform_policy(state: &AppState, namespace: &str, name: &str) -> bool {
    state.security().policies().authorization_policies.iter().any(|p| {
        p.metadata.namespace.as_str() == namespace
            && p.metadata.name.as_str() == name
            && !p.source_file.starts_with(state.security().managed_dir())
    })
}

fn policy_summary(state: &AppState, policy: &AuthorizationPolicy) -> Value {
    let managed = policy.source_file.starts_with(state.security().managed_dir());
    json!({
        "namespace": policy.metadata.namespace.as_str(),
        "name": policy.metadata.name.as_str(),
        "action": format!("{:?}", policy.spec.action).to_uppercase(),
        "dry_run": policy.is_dry_run(),
        "source": if managed { "owner" } else { "platform" },
        "file": policy.source_file.display().to_string(),
        "rules": policy.spec.rules.iter().map(palisade_policy::summarize_rule).collect::<Vec<_>>(),
    })
}

/// `GET /manage/v1/policies`
pub(crate) async fn list(State(state): State<AppState>, caller: Option<Extension<Caller>>) -> Response {
    let claims = caller_claims(&caller);
    let admin = is_admin(&state, &claims);
    let owned_namespaces: Vec<String> = state
        .registry()
        .latest()
        .filter(|m| admin || owns(&state, &claims, &m.target))
        .map(|m| m.target.namespace.to_string())
        .collect();
    let root = state.security().platform().config.authorization.root_namespace.clone();
    let policies: Vec<Value> = state
        .security()
        .policies()
        .authorization_policies
        .iter()
        .filter(|p| {
            admin
                || p.metadata.namespace.as_str() == root
                || owned_namespaces.iter().any(|ns| ns == p.metadata.namespace.as_str())
        })
        .map(|p| policy_summary(&state, p))
        .collect();
    Json(json!({"policies": policies})).into_response()
}

/// `PUT /manage/v1/policies`
pub(crate) async fn apply(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<LimitedBody, ApiError>,
) -> Response {
    let LimitedBody(body) = match body {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let Ok(text) = std::str::from_utf8(&body) else { return bad_request("the body is not UTF-8") };
    let label = std::path::Path::new("request body");
    let policy = match palisade_policy::parse_policy(text, label) {
        Ok(policy) => policy,
        Err(err) => return bad_request(err.to_string()),
    };
    let claims = caller_claims(&caller);
    if let Err(why) = may_change(&state, &claims, &policy) {
        return forbidden(why);
    }
    let (namespace, name) = (policy.metadata.namespace.to_string(), policy.metadata.name.to_string());
    if is_platform_policy(&state, &namespace, &name) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": format!(
                "{namespace}/{name} is defined by the platform's policy directory; choose another name"
            )})),
        )
            .into_response();
    }
    let dir = state.security().managed_dir().join(&namespace);
    let file = dir.join(format!("{name}.yaml"));
    let previous = std::fs::read(&file).ok();
    if let Err(err) = write_atomically(&dir, &file, text.as_bytes()) {
        tracing::error!(error = %err, "cannot store a policy");
        return ApiError::Inference(format!("cannot store the policy: {err}")).into_response();
    }
    let security = state.security().clone();
    let applied = tokio::task::spawn_blocking(move || security.reload()).await;
    if let Ok(Err(err)) | Err(err) = applied.map_err(|e| crate::ConfigError(e.to_string())) {
        tracing::info!(error = %err, "policy refused when loaded with the others");
        // The new set did not build (for example a clash with another policy): undo.
        let _ = match &previous {
            Some(bytes) => write_atomically(&dir, &file, bytes),
            None => std::fs::remove_file(&file),
        };
        let security = state.security().clone();
        let _ = tokio::task::spawn_blocking(move || security.reload()).await;
        return bad_request(format!("the policy was refused when loaded with the others: {err}"));
    }
    let change = palisade_audit::ConfigChange {
        who: who(&caller),
        what: format!("policy {namespace}/{name}"),
        before_digest: previous.as_deref().map(digest),
        after_digest: Some(digest(text.as_bytes())),
    };
    if let Err(err) = state.audit().append(palisade_audit::AuditRecord::config_change(change)).await {
        // A change nobody can audit does not stay: undo it.
        let _ = match &previous {
            Some(bytes) => write_atomically(&dir, &file, bytes),
            None => std::fs::remove_file(&file),
        };
        let security = state.security().clone();
        let _ = tokio::task::spawn_blocking(move || security.reload()).await;
        tracing::error!(error = %err, "policy change undone: its audit record could not be written");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": format!("the audit log cannot be written ({err}); the change was not applied")}))).into_response();
    }
    tracing::info!(policy = %format!("{namespace}/{name}"), created = previous.is_none(), "policy applied through the management API");
    let status = if previous.is_none() { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(json!({"applied": format!("{namespace}/{name}"), "created": previous.is_none()})))
        .into_response()
}

/// `DELETE /manage/v1/policies/{namespace}/{name}`
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let existing = state
        .security()
        .policies()
        .authorization_policies
        .iter()
        .find(|p| p.metadata.namespace.as_str() == namespace && p.metadata.name.as_str() == name)
        .cloned();
    let Some(policy) = existing else {
        return ApiError::NotFound(format!("no policy {namespace}/{name}")).into_response();
    };
    if is_platform_policy(&state, &namespace, &name) {
        return forbidden(format!(
            "{namespace}/{name} comes from the platform's policy directory; change it there"
        ));
    }
    let claims = caller_claims(&caller);
    if let Err(why) = may_change(&state, &claims, &policy) {
        return forbidden(why);
    }
    let previous = std::fs::read(&policy.source_file).ok();
    if let Err(err) = std::fs::remove_file(&policy.source_file) {
        return ApiError::Inference(format!("cannot delete the policy: {err}")).into_response();
    }
    let change = palisade_audit::ConfigChange {
        who: who(&caller),
        what: format!("policy {namespace}/{name}"),
        before_digest: previous.as_deref().map(digest),
        after_digest: None,
    };
    if let Err(err) = state.audit().append(palisade_audit::AuditRecord::config_change(change)).await {
        if let (Some(bytes), Some(dir)) = (&previous, policy.source_file.parent()) {
            let _ = write_atomically(dir, &policy.source_file, bytes);
        }
        tracing::error!(error = %err, "policy deletion undone: its audit record could not be written");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": format!("the audit log cannot be written ({err}); the policy was not deleted")}))).into_response();
    }
    let security = state.security().clone();
    if let Ok(Err(err)) = tokio::task::spawn_blocking(move || security.reload()).await {
        tracing::error!(error = %err, "reload after a policy deletion failed");
    }
    tracing::info!(policy = %format!("{namespace}/{name}"), "policy deleted through the management API");
    Json(json!({"deleted": format!("{namespace}/{name}")})).into_response()
}

/// `GET /manage/v1/models/{model}/explain`
pub(crate) async fn explain(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(model): Path<String>,
) -> Response {
    let served = match state.registry().get(&model, None) {
        Ok(served) => served,
        Err(err) => return err.into_response(),
    };
    let claims = caller_claims(&caller);
    if !is_admin(&state, &claims) && !owns(&state, &claims, &served.target) {
        return forbidden(format!(
            "only the owners of {model} (and platform administrators) may see its access"
        ));
    }
    let explanation = state.security().policy_set().explain(&served.target);
    Json(json!({
        "model": explanation.model,
        "owner_default": explanation.owner_default,
        "owners": explanation.owners.iter().map(|(o, how)| json!({"owner": o.to_string(), "matches": how})).collect::<Vec<_>>(),
        "policies": explanation.policies.iter().map(|p| json!({
            "policy": p.policy.to_string(),
            "action": format!("{:?}", p.action).to_uppercase(),
            "dry_run": p.dry_run,
            "root_namespace": p.from_root_namespace,
            "rules": p.rules,
        })).collect::<Vec<_>>(),
        "text": explanation.lines(),
    }))
    .into_response()
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
pub(crate) async fn check(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    body: Result<LimitedBody, ApiError>,
) -> Response {
    let LimitedBody(body) = match body {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let request: CheckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => return bad_request(format!("invalid check request: {err}")),
    };
    let served = match state.registry().get(&request.model, request.version.as_deref()) {
        Ok(served) => served,
        Err(err) => return err.into_response(),
    };
    let caller_claims = caller_claims(&caller);
    if !is_admin(&state, &caller_claims) && !owns(&state, &caller_claims, &served.target) {
        return forbidden(format!(
            "only the owners of {} (and platform administrators) may check its access",
            request.model
        ));
    }
    let claims = match (request.token, request.claims) {
        (Some(_), Some(_)) => return bad_request("give either `token` or `claims`, not both"),
        (Some(token), None) => {
            let mut headers = HeaderMap::new();
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(value) => headers.insert(header::AUTHORIZATION, value),
                Err(_) => return bad_request("the token has characters a header cannot carry"),
            };
            let target = palisade_identity::Target {
                namespace: served.target.namespace.as_str(),
                labels: &served.target.labels,
            };
            match state.security().authenticator().authenticate(&headers, None, Some(target)).await {
                Ok(authenticated) => Caller(authenticated).token().map(|t| t.claims.clone()),
                Err(err) => {
                    return Json(json!({"allowed": false, "status": err.status(), "reason": format!("authentication: {err}")}))
                        .into_response();
                }
            }
        }
        (None, claims) => claims.map(Arc::new),
    };
    let path = request.path.unwrap_or_else(|| format!("/v2/models/{}/infer", served.id.name));
    let path = match palisade_policy::normalize_path(&path) {
        Ok(path) => path,
        Err(err) => return bad_request(format!("invalid path: {err}")),
    };
    let mut evaluate = PolicyRequest::new(served.target.clone());
    evaluate.claims = claims;
    evaluate.path = path;
    evaluate.method = request.method.unwrap_or_else(|| "POST".to_owned());
    let decision = state.security().policy_set().evaluate(&evaluate);
    Json(json!({
        "allowed": decision.allowed,
        "status": if decision.allowed { 200 } else { 403 },
        "reason": decision.reason.to_string(),
        "audit": decision.audit.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dry_run": decision.dry_run.iter().map(|(p, allow)| json!({"policy": p.to_string(), "would_allow": allow})).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Who made a change, for its audit record: the token's principal.
fn who(caller: &Option<Extension<Caller>>) -> String {
    caller
        .as_ref()
        .and_then(|Extension(c)| c.token())
        .map_or_else(|| "anonymous".to_owned(), |t| t.principal())
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", palisade_audit::sha256_hex(bytes))
}

fn write_atomically(dir: &std::path::Path, file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}
