//! Per-caller rate limits: after authorization (the caller and the model are known, from
//! the context) and before the handler reads the body, each request takes one token from
//! its caller's bucket for the model, or is refused with 429 and `Retry-After`.
//!
//! The budget is the platform's `limits.rate`, tightened by the model's own (see
//! [`crate::rate::budget_for`]); explanations draw from the separate explain budget. The
//! caller is the verified token's principal (`iss/sub`), else the mTLS peer's SPIFFE id,
//! else the client address (an IPv6 client by its /64, which one subscriber usually
//! holds whole). Routes that address no served model pass untouched.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::context::{Ctx, RateLimited, RequestContext};
use crate::rate::Kind;
use crate::{ApiError, AppState};

/// The layer (see the module docs).
pub(crate) async fn limit(
    State(state): State<AppState>,
    ctx: Ctx,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(served) = ctx.served() else { return Ok(next.run(req).await) };
    let kind = if ctx.route.is_explain() { Kind::Explain } else { Kind::Requests };
    let platform = state.security().platform().config.limits.rate.as_ref();
    let Some(budget) = crate::rate::budget_for(platform, served.rate.as_ref(), kind) else {
        return Ok(next.run(req).await);
    };
    let model = served.target.as_ref();
    let caller = caller_key(&ctx);
    let key = (model.namespace.as_str(), model.name.as_str(), kind, caller.as_str());
    match state.limiter().check(&key, crate::rate::rate_of(budget)) {
        Ok(()) => Ok(next.run(req).await),
        Err(refused) => {
            let retry_after = refused.retry_after_secs();
            ctx.set_rate_limited(RateLimited { budget: kind, retry_after });
            state.metrics().observe_rate_limited(served.id.name.as_str(), ctx.route.endpoint_label());
            Err(ApiError::RateLimited { budget: kind.as_str(), retry_after })
        }
    }
}

/// Whose bucket a request draws from (see the module docs).
pub(crate) fn caller_key(ctx: &RequestContext) -> String {
    if let Some(token) = ctx.token() {
        return format!("jwt:{}", token.principal());
    }
    if let Some(peer) = ctx.admission().and_then(|a| a.peer.as_deref()) {
        return format!("peer:{peer}");
    }
    match ctx.conn.as_ref().map(|c| c.remote.ip()) {
        Some(IpAddr::V4(ip)) => format!("ip:{ip}"),
        Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = ip.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}
