//! Per-caller rate limits: after authorization (the caller and the model are known, from
//! the context) and before the handler reads the body, each request takes one token from
//! its caller's bucket for the model, or is refused with 429 and `Retry-After`.
//!
//! The budget is the platform's `limits.rate`, tightened by the model's own (see
//! [`crate::rate::budget_for`]); explanations draw from the separate explain budget. The
//! caller is the verified token's principal (`iss/sub`), else the mTLS peer's SPIFFE id,
//! else the client address (an IPv6 client by its /64, which one subscriber usually
//! holds whole). Routes that address no served model pass untouched. A graph's call of a
//! node model ([`crate::graphs`]) pays that model's request budget too, as the caller (or,
//! with `callAs: graph`, as the graph).

use std::net::IpAddr;

use crate::context::{Ctx, RateLimited, RequestContext};
use crate::rate::Kind;
use crate::{ApiError, AppState, ServedModel};

/// The step (see the module docs), run by [`super::admit`] after authorization.
pub(crate) fn limit(state: &AppState, ctx: &Ctx) -> Result<(), ApiError> {
    let Some(served) = ctx.served() else { return Ok(()) };
    let kind = if ctx.route.is_explain() { Kind::Explain } else { Kind::Requests };
    // The caller's key is formatted only when there is a budget to draw from.
    let Some(budget) = budget(state, served, kind) else { return Ok(()) };
    take(state, served, kind, budget, &caller_key(ctx), ctx.route.endpoint_label()).map_err(|retry_after| {
        ctx.set_rate_limited(RateLimited { budget: kind, retry_after });
        ApiError::RateLimited { budget: kind.as_str(), retry_after }
    })
}

/// Takes one request from `caller`'s `kind` budget for `served` (no budget: nothing to
/// take). A refusal is counted under `endpoint` and returns its `Retry-After` in seconds.
/// Also what a graph's hop to a model pays (see [`crate::graphs`]).
pub(crate) fn charge(
    state: &AppState,
    served: &ServedModel,
    kind: Kind,
    caller: &str,
    endpoint: &'static str,
) -> Result<(), u32> {
    match budget(state, served, kind) {
        Some(budget) => take(state, served, kind, budget, caller, endpoint),
        None => Ok(()),
    }
}

/// The budget of `kind` for `served`: the platform's, tightened by the model's.
fn budget(state: &AppState, served: &ServedModel, kind: Kind) -> Option<palisade_bundle::rate::Budget> {
    let platform = state.security().platform().config.limits.rate.as_ref();
    crate::rate::budget_for(platform, served.rate.as_ref(), kind)
}

fn take(
    state: &AppState,
    served: &ServedModel,
    kind: Kind,
    budget: palisade_bundle::rate::Budget,
    caller: &str,
    endpoint: &'static str,
) -> Result<(), u32> {
    let model = served.target.as_ref();
    let key = (model.namespace.as_str(), model.name.as_str(), kind, caller);
    state.limiter().check(&key, crate::rate::rate_of(budget)).map_err(|refused| {
        state.metrics().observe_rate_limited(served.id.name.as_str(), endpoint);
        refused.retry_after_secs()
    })
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
