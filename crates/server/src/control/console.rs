//! The web console (`/console`, docs/console.md): its pages, sign-in and sign-out, and the
//! JSON its script reads. The pieces that need no server (assets, sessions, the OpenID
//! Connect client) are in `palisade-console`; here they meet the request context.
//!
//! - A session is found by the authentication layer ([`authenticate`]) and becomes the
//!   request's caller, exactly as a verified bearer token would: the audit layer records
//!   the person, and the owner checks are the management API's own
//!   ([`super::manage::Caller::owns`]).
//! - Every request that changes something (`POST`) carries the session's CSRF token in
//!   `x-csrf-token`; a pasted-token sign-in (no session yet) must come from the console's
//!   own origin.
//! - Someone who owns no version of a model learns nothing of it: its pages answer 404, as
//!   for a model that does not exist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_console::cookie::{self, SameSite};
use palisade_console::{ConsoleConfig, ConsoleError, Sessions, SignIn, assets};
use palisade_identity::{Authenticated, AuthnError, AuthnSettings, InvalidToken, Scoping};
use serde_json::{Value, json};

use super::manage;
use crate::context::{Authentication, Ctx, RequestContext};
use crate::route::ConsoleOp;
use crate::{ApiError, AppState, ServedModel};

/// The header a state-changing console request carries its session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The console's sessions and its identity provider client.
#[derive(Debug)]
pub(crate) struct ConsoleState {
    sessions: Sessions,
    signin: Option<SignIn>,
    ttl: Duration,
    /// Audit page queries running at once (each reads the whole trail).
    audit_queries: tokio::sync::Semaphore,
    /// An hour of request metrics, for the health page.
    pub(crate) health: super::health::History,
}

/// Audit page queries that may run at once; past it, 429.
const AUDIT_QUERIES_AT_ONCE: usize = 2;

impl ConsoleState {
    /// The console for the platform's `console:` settings; `settings` are the platform's
    /// token settings (clock skew, lifetime cap), which ID tokens meet too.
    pub(crate) fn new(config: &ConsoleConfig, settings: AuthnSettings) -> Result<ConsoleState, ConsoleError> {
        let signin = config.oidc.as_ref().map(|oidc| SignIn::new(oidc, settings)).transpose()?;
        Ok(ConsoleState {
            sessions: Sessions::new(config.max_sessions, config.session_ttl),
            signin,
            ttl: config.session_ttl,
            audit_queries: tokio::sync::Semaphore::new(AUDIT_QUERIES_AT_ONCE),
            health: super::health::History::default(),
        })
    }
}

fn console(state: &AppState) -> Result<&Arc<ConsoleState>, ApiError> {
    state.console().ok_or_else(|| ApiError::Internal("a console route without the console".to_owned()))
}

/// A redirect (303) with the console's headers.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    assets::secure(response.headers_mut());
    response
}

/// The authentication of a console route that needs a session (called by the
/// authentication layer for such routes): the session's identity becomes the request's
/// caller; without a session a page is sent to the sign-in page and a call is answered
/// 401; a `POST` without the session's CSRF token is refused (403).
pub(crate) async fn authenticate(
    state: &AppState,
    ctx: &Ctx,
    op: &ConsoleOp,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let console = console(state)?;
    let session = cookie::value(req.headers(), cookie::SESSION).and_then(|id| console.sessions.get(id));
    let Some(session) = session else {
        ctx.set_authentication(Authentication::Refused("missing"));
        if op.is_page() {
            return Ok(see_other("/console/signin"));
        }
        return Err(ApiError::Unauthenticated(AuthnError::MissingToken));
    };
    ctx.set_authentication(Authentication::Authenticated(session.identity.clone()));
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !session.csrf_matches(sent) {
            return Err(ApiError::Forbidden(format!(
                "the console's CSRF token (`{CSRF_HEADER}`) is missing or wrong: reload the page"
            )));
        }
    }
    Ok(next.run(req).await)
}

/// Runs a console operation; every answer carries the console's security headers.
pub(crate) async fn handle(
    state: &AppState,
    ctx: &RequestContext,
    op: &ConsoleOp,
    req: Request,
) -> Result<Response, ApiError> {
    let console = console(state)?.clone();
    let mut response = match op {
        ConsoleOp::Page { model: None } => page(assets::APP_PAGE),
        ConsoleOp::Page { model: Some(model) } => {
            owned_model(state, ctx, model)?;
            page(assets::APP_PAGE)
        }
        ConsoleOp::SignInPage => page(assets::SIGN_IN_PAGE),
        ConsoleOp::Asset(name) => {
            let asset = assets::asset(name).ok_or_else(|| {
                ApiError::NotFound(format!("no console asset {}", crate::registry::clip(name)))
            })?;
            ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
        }
        ConsoleOp::Login => login(&console, ctx).await,
        ConsoleOp::Callback => {
            // The parts only: a body is not `Sync`, and the exchange below awaits.
            let (parts, _) = req.into_parts();
            callback(&console, ctx, &parts).await
        }
        ConsoleOp::PasteToken => paste(state, &console, ctx, req).await?,
        ConsoleOp::Logout => logout(&console, ctx, req.headers()),
        ConsoleOp::Me => me(state, &console, ctx, req.headers())?,
        ConsoleOp::Models => models(state, ctx).await,
        ConsoleOp::Model { model } => one_model(state, ctx, model).await?,
        ConsoleOp::Access { model } => {
            owned_model(state, ctx, model)?;
            manage::explain(state, &manage::caller(state, ctx), model)?
        }
        ConsoleOp::Check => check(state, ctx, req).await?,
        ConsoleOp::Health => {
            let caller = manage::caller(state, ctx);
            let visible: std::collections::BTreeSet<String> =
                owned(state, ctx).into_iter().map(|(n, _)| n).collect();
            let all = is_auditor(state, &caller);
            let mut series = console.health.series((!all).then_some(&visible));
            series["auditor"] = json!(all);
            axum::Json(series).into_response()
        }
        ConsoleOp::Audit => {
            // At most a couple of trail scans at once: the rest are told to come back.
            let _permit = console.audit_queries.try_acquire().map_err(|_| ApiError::Overloaded)?;
            audit(state, ctx, req.uri().query()).await?
        }
        ConsoleOp::AuditRecord { seq } => {
            let _permit = console.audit_queries.try_acquire().map_err(|_| ApiError::Overloaded)?;
            audit_record(state, ctx, seq).await?
        }
        ConsoleOp::DeletePolicy { namespace, name } => {
            let mode = manage::Mode::from_query(req.uri().query())?;
            manage::delete(state, ctx, &manage::caller(state, ctx), namespace, name, mode).await?
        }
        ConsoleOp::ApplyPolicy => {
            let mode = manage::Mode::from_query(req.uri().query())?;
            manage::apply_request(state, ctx, &manage::caller(state, ctx), mode, req).await?
        }
    };
    assets::secure(response.headers_mut());
    Ok(response)
}

fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `GET /console/login`: off to the identity provider, with the binding cookie.
async fn login(console: &ConsoleState, ctx: &RequestContext) -> Response {
    let Some(signin) = &console.signin else { return see_other("/console/signin?error=unconfigured") };
    // Pending sign-ins are bounded per client address too: one client filling the store
    // pushes out only its own.
    match signin.begin(ctx.conn.as_ref().map(|c| c.remote.ip())).await {
        Ok(begin) => {
            let mut response = see_other(&begin.location);
            let max_age = palisade_console::oidc::PENDING_TTL.as_secs();
            // The binding only travels to the callback; SameSite=Lax lets it come back on
            // the identity provider's redirect, a top-level navigation from its site.
            if let Some(value) = cookie::set(
                cookie::SIGN_IN,
                begin.binding.expose(),
                "/console/callback",
                SameSite::Lax,
                max_age,
                tls(ctx),
            ) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "console sign-in could not start");
            see_other("/console/signin?error=provider")
        }
    }
}

fn tls(ctx: &RequestContext) -> bool {
    ctx.conn.as_ref().is_some_and(|c| c.tls)
}

/// The session cookie for a new session, and the sign-in binding cleared.
fn start_session(
    console: &ConsoleState,
    ctx: &RequestContext,
    identity: Authenticated,
    until: Option<Instant>,
    response: &mut Response,
) -> Result<(), ApiError> {
    ctx.set_authentication(Authentication::Authenticated(identity.clone()));
    let (id, session) = console
        .sessions
        .create(identity, until)
        .map_err(|err| ApiError::Internal(format!("cannot start a console session: {err}")))?;
    let max_age =
        session.expires.saturating_duration_since(Instant::now()).as_secs().min(console.ttl.as_secs());
    let headers = response.headers_mut();
    if let Some(value) =
        cookie::set(cookie::SESSION, id.expose(), "/console", SameSite::Strict, max_age, tls(ctx))
    {
        headers.append(header::SET_COOKIE, value);
    }
    if let Some(value) = cookie::set(cookie::SIGN_IN, "", "/console/callback", SameSite::Lax, 0, tls(ctx)) {
        headers.append(header::SET_COOKIE, value);
    }
    Ok(())
}

/// `GET /console/callback?code&state`: the identity provider's answer. The sign-in page
/// is told what went wrong by a fixed code, never by text from the request.
async fn callback(
    console: &ConsoleState,
    ctx: &RequestContext,
    req: &axum::http::request::Parts,
) -> Response {
    let Some(signin) = &console.signin else { return see_other("/console/signin?error=unconfigured") };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri.query().unwrap_or("")).unwrap_or_default();
    let one = |name: &str| {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    };
    if one("error").is_some() {
        return see_other("/console/signin?error=denied");
    }
    let (Some(state), Some(code)) = (one("state"), one("code")) else {
        return see_other("/console/signin?error=refused");
    };
    let binding = cookie::value(&req.headers, cookie::SIGN_IN);
    match signin.complete(state, code, binding).await {
        Ok(identity) => {
            let mut response = page(assets::CONTINUE_PAGE);
            match start_session(console, ctx, identity, None, &mut response) {
                Ok(()) => response,
                Err(err) => err.into_response(),
            }
        }
        Err(err @ ConsoleError::Provider(_)) => {
            tracing::warn!(error = %err, "console sign-in failed at the identity provider");
            see_other("/console/signin?error=provider")
        }
        Err(err) => {
            tracing::info!(error = %err, "console sign-in refused");
            see_other("/console/signin?error=refused")
        }
    }
}

/// Whether a request without a session comes from a console page of this server: its
/// `Origin` is this server's own (browsers send it with every `POST`).
fn same_origin(ctx: &RequestContext, headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let scheme = if tls(ctx) { "https" } else { "http" };
    matches!((origin, host), (Some(origin), Some(host)) if origin == format!("{scheme}://{host}"))
}

/// `POST /console/session` `{"token": "..."}`: a session for a token of the built-in
/// issuer, verified as any API token is; it ends when the token does, if sooner.
async fn paste(
    state: &AppState,
    console: &ConsoleState,
    ctx: &RequestContext,
    req: Request,
) -> Result<Response, ApiError> {
    if !same_origin(ctx, req.headers()) {
        return Err(ApiError::Forbidden(
            "a console sign-in must come from the console's own page (its Origin is not this server)"
                .to_owned(),
        ));
    }
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Paste {
        token: String,
    }
    let paste: Paste = serde_json::from_slice(&body.bytes)
        .map_err(|err| ApiError::BadRequest(format!("expected {{\"token\": \"...\"}}: {err}")))?;
    let issuer = &state.security().platform().config.issuer;
    let untrusted = || ApiError::Unauthenticated(AuthnError::Invalid(InvalidToken::UntrustedIssuer));
    if !issuer.enabled {
        return Err(untrusted());
    }
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {}", paste.token.trim()))
        .map_err(|_| ApiError::BadRequest("the token has characters a header cannot carry".to_owned()))?;
    headers.insert(header::AUTHORIZATION, value);
    let identity = state
        .security()
        .authenticator()
        .authenticate(&headers, None, Scoping::NoModel)
        .await
        .map_err(ApiError::Unauthenticated)?;
    let token = identity.token().cloned().ok_or_else(untrusted)?;
    if token.issuer != issuer.issuer {
        return Err(untrusted());
    }
    let left = (token.expires_at - palisade_identity::authn::unix_now()).max(0.0);
    let until = Instant::now() + Duration::from_secs_f64(left.min(86_400.0));
    let mut response = StatusCode::NO_CONTENT.into_response();
    start_session(console, ctx, identity, Some(until), &mut response)?;
    Ok(response)
}

/// `POST /console/logout`: the session ends and its cookie is cleared.
fn logout(console: &ConsoleState, ctx: &RequestContext, headers: &HeaderMap) -> Response {
    if let Some(id) = cookie::value(headers, cookie::SESSION) {
        console.sessions.remove(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(value) = cookie::set(cookie::SESSION, "", "/console", SameSite::Strict, 0, tls(ctx)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /console/api/me`: who is signed in, the CSRF token for the page's changes, and the
/// built-in issuer (the form writes service-account callers as its request principals).
fn me(
    state: &AppState,
    console: &ConsoleState,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let session = cookie::value(headers, cookie::SESSION)
        .and_then(|id| console.sessions.get(id))
        .ok_or(ApiError::Unauthenticated(AuthnError::MissingToken))?;
    let token = ctx.token().ok_or(ApiError::Unauthenticated(AuthnError::MissingToken))?;
    let config = &state.security().platform().config;
    let groups_claim = &config.authorization.groups_claim;
    let builtin_issuer = config.issuer.enabled.then_some(config.issuer.issuer.as_str());
    Ok(axum::Json(json!({
        "builtin_issuer": builtin_issuer,
        "principal": token.principal(),
        "issuer": token.issuer,
        "email": token.claims.get("email"),
        "name": token.claims.get("name"),
        "groups": token.claims.get(groups_claim.as_str()),
        "csrf": session.csrf.expose(),
    }))
    .into_response())
}

/// One model version as the console shows it.
async fn version_json(state: &AppState, served: &ServedModel, latest: bool) -> Value {
    let metadata = serde_json::to_value(crate::api::v2::metadata(state, served)).unwrap_or_default();
    let status = if crate::api::v2::check_ready(served).await.is_ok() { "ready" } else { "not ready" };
    json!({
        "version": served.id.version.as_str(),
        "latest": latest,
        "digest": served.digest.to_string(),
        "engine": served.model.engine(),
        "status": status,
        "inputs": metadata.get("inputs"),
        "outputs": metadata.get("outputs"),
    })
}

/// The model versions the caller owns, by model name, in name and version order (the
/// management API's owner check).
fn owned(state: &AppState, ctx: &RequestContext) -> Vec<(String, Vec<Arc<ServedModel>>)> {
    let caller = manage::caller(state, ctx);
    let mut by_name: std::collections::BTreeMap<String, Vec<Arc<ServedModel>>> = Default::default();
    for served in ctx.registry().all().filter(|m| caller.owns(state, &m.target)) {
        by_name.entry(served.id.name.to_string()).or_default().push(served.clone());
    }
    by_name.into_iter().collect()
}

async fn model_json(
    state: &AppState,
    ctx: &RequestContext,
    name: &str,
    versions: &[Arc<ServedModel>],
) -> Value {
    let latest = ctx.registry().get(name, None).ok().map(|l| l.id.version.clone());
    let mut listed = Vec::new();
    for served in versions {
        listed.push(version_json(state, served, latest.as_ref() == Some(&served.id.version)).await);
    }
    let first = versions.first();
    json!({
        "name": name,
        "namespace": first.map(|m| m.id.namespace.as_str()),
        "owners": first.map(|m| m.target.owners.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "versions": listed,
    })
}

/// `GET /console/api/models`
async fn models(state: &AppState, ctx: &RequestContext) -> Response {
    let mut models = Vec::new();
    for (name, versions) in owned(state, ctx) {
        models.push(model_json(state, ctx, &name, &versions).await);
    }
    axum::Json(json!({"models": models})).into_response()
}

/// `GET /console/api/models/{m}`: 404 alike for a model that is not served and one the
/// caller owns no version of.
async fn one_model(state: &AppState, ctx: &RequestContext, name: &str) -> Result<Response, ApiError> {
    let (name, versions) = owned_model(state, ctx, name)?;
    Ok(axum::Json(model_json(state, ctx, &name, &versions).await).into_response())
}

/// `POST /console/api/check`: the management API's check, for a model the caller owns
/// (404 otherwise, as everywhere in the console).
async fn check(state: &AppState, ctx: &RequestContext, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let model = serde_json::from_slice::<Value>(&body.bytes)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| ApiError::BadRequest("expected a JSON object naming the `model`".to_owned()))?;
    owned_model(state, ctx, &model)?;
    manage::check(state, &manage::caller(state, ctx), &body.bytes).await
}

/// The versions of model `name` the caller owns; 404 alike when it is not served and when
/// the caller owns none of it.
fn owned_model(
    state: &AppState,
    ctx: &RequestContext,
    name: &str,
) -> Result<(String, Vec<Arc<ServedModel>>), ApiError> {
    owned(state, ctx)
        .into_iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no model {} that you own", crate::registry::clip(name))))
}

/// The most records the audit page shows or exports at once (the newest that match).
const MAX_AUDIT_RECORDS: usize = 1000;

/// `GET /console/api/audit?caller&decision&status&from&to&model&limit&format`: the newest
/// matching records of the models the caller owns now (every record, for the platform's
/// `console.auditors`), as JSON or, with `format=jsonl`, as JSON lines to save. The JSON
/// also counts every matching record (not only the newest shown) per time bucket, allowed
/// (the authorization decision was allow) and refused (anything else).
async fn audit(state: &AppState, ctx: &RequestContext, query: Option<&str>) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|err| ApiError::BadRequest(format!("query string: {err}")))?;
    let bad = |key: &str, err: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("query parameter `{key}`: {err}"))
    };
    let mut filter = palisade_audit::Filter::default();
    let (mut limit, mut jsonl, mut model) = (100, false, None);
    for (key, value) in pairs.into_iter().filter(|(_, v)| !v.is_empty()) {
        match key.as_str() {
            "caller" => filter.principal = Some(value),
            "decision" => filter.decision = Some(value.parse().map_err(|e| bad(&key, &e))?),
            "status" => filter.status = Some(value.parse().map_err(|e| bad(&key, &e))?),
            "from" => filter.from = Some(value.parse().map_err(|e| bad(&key, &e))?),
            "to" => filter.to = Some(value.parse().map_err(|e| bad(&key, &e))?),
            "model" => model = Some(value),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT_RECORDS).contains(n))
                    .ok_or_else(|| bad(&key, &format!("use 1 to {MAX_AUDIT_RECORDS}")))?;
            }
            "format" if value == "jsonl" => jsonl = true,
            "format" if value == "json" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`: expected caller, decision, status, from, to, model, limit or format (json, jsonl)"
                )));
            }
        }
    }
    let visible = Visible::of(state, ctx);
    let auditor = visible.auditor;
    let dir = state.audit().dir().to_owned();
    // Reading the trail is file I/O over every segment: off the async runtime.
    type Matched = (Vec<palisade_audit::AuditRecord>, super::timeline::Timeline);
    let (records, timeline) = tokio::task::spawn_blocking(move || -> Result<Matched, String> {
        let mut newest = std::collections::VecDeque::with_capacity(limit);
        let mut timeline = super::timeline::Timeline::default();
        for record in palisade_audit::query(&dir, filter).map_err(|e| e.to_string())? {
            let record = record.map_err(|e| e.to_string())?;
            if !visible.shows(&record) {
                continue;
            }
            if model.as_deref().is_some_and(|m| record.model.as_ref().is_none_or(|info| m != info.name)) {
                continue;
            }
            if let Some(time) = record.time() {
                let allowed =
                    record.authz.as_ref().is_some_and(|a| a.decision == palisade_audit::Decision::Allow);
                timeline.add(time.unix_millis(), allowed);
            }
            if newest.len() == limit {
                newest.pop_front();
            }
            newest.push_back(record);
        }
        Ok((newest.into_iter().rev().collect(), timeline))
    })
    .await
    .map_err(|err| ApiError::Internal(format!("the audit query stopped: {err}")))?
    .map_err(|err| ApiError::Internal(format!("cannot read the audit trail: {err}")))?;
    if jsonl {
        let mut body = String::new();
        for record in &records {
            body.push_str(&serde_json::to_string(record).unwrap_or_default());
            body.push('\n');
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "application/jsonl; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"palisade-audit.jsonl\""),
            ],
            body,
        )
            .into_response());
    }
    Ok(axum::Json(json!({
        "auditor": auditor,
        "limit": limit,
        "records": records,
        "timeline": timeline.to_json(),
    }))
    .into_response())
}

/// Which audit records the signed-in person may see: those of the models they own now (any
/// version), or every model's for the platform's `console.auditors`. Records of no model
/// (configuration changes) are not shown.
struct Visible {
    auditor: bool,
    /// (namespace, name) of the models owned.
    owned: std::collections::BTreeSet<(String, String)>,
}

impl Visible {
    fn of(state: &AppState, ctx: &RequestContext) -> Visible {
        let auditor = is_auditor(state, &manage::caller(state, ctx));
        let owned = owned(state, ctx)
            .into_iter()
            .filter_map(|(name, versions)| versions.first().map(|m| (m.id.namespace.to_string(), name)))
            .collect();
        Visible { auditor, owned }
    }

    fn shows(&self, record: &palisade_audit::AuditRecord) -> bool {
        record.model.as_ref().is_some_and(|info| {
            self.auditor || self.owned.contains(&(info.namespace.clone(), info.name.clone()))
        })
    }
}

/// `GET /console/api/audit/{seq}`: one record, whole, and the hash chain verified at it
/// (`palisade_audit::verify_record`, with the server's own audit public key); 404 alike
/// for a seq that does not exist and a record the person may not see.
async fn audit_record(state: &AppState, ctx: &RequestContext, seq: &str) -> Result<Response, ApiError> {
    let shown = crate::registry::clip(seq);
    let hidden = move || ApiError::NotFound(format!("no audit record {shown} that you may see"));
    let wanted: u64 =
        seq.parse().ok().filter(|_| seq.bytes().all(|b| b.is_ascii_digit())).ok_or_else(&hidden)?;
    let visible = Visible::of(state, ctx);
    let dir = state.audit().dir().to_owned();
    let key = palisade_audit::KeySource::Pinned(state.audit().public_key());
    type Found = Option<(palisade_audit::AuditRecord, palisade_audit::RecordVerification)>;
    let found = tokio::task::spawn_blocking(move || -> Result<Found, String> {
        let mut found = None;
        for record in
            palisade_audit::query(&dir, palisade_audit::Filter::default()).map_err(|e| e.to_string())?
        {
            let record = record.map_err(|e| e.to_string())?;
            if record.seq == wanted {
                found = Some(record);
                break;
            }
        }
        let Some(record) = found.filter(|r| visible.shows(r)) else { return Ok(None) };
        let verification = palisade_audit::verify_record(&dir, wanted, &key).map_err(|e| e.to_string())?;
        Ok(Some((record, verification)))
    })
    .await
    .map_err(|err| ApiError::Internal(format!("the audit lookup stopped: {err}")))?
    .map_err(|err| ApiError::Internal(format!("cannot read the audit trail: {err}")))?;
    let (record, check) = found.ok_or_else(hidden)?;
    let status = if check.verified() {
        "verified"
    } else if check.chained && check.report.ok {
        "pending"
    } else {
        "failed"
    };
    let report = &check.report;
    Ok(axum::Json(json!({
        "record": record,
        "verification": {
            "status": status,
            "chained": check.chained,
            "checkpoint": check.checkpoint.map(|c| json!({"seq": c.seq, "line": c.line, "time": c.time.to_string()})),
            "records_checked": report.records,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "key_id": report.key_id,
            "problem": report.first_problem.as_ref().map(ToString::to_string),
        },
    }))
    .into_response())
}

/// Whether the caller is one of the platform's `console.auditors`.
fn is_auditor(state: &AppState, caller: &manage::Caller) -> bool {
    let auditors = &state.security().platform().config.console.auditors;
    let set = state.security().policy_set();
    caller.claims().is_some_and(|claims| auditors.iter().any(|a| set.claims_identify(a, claims)))
}
