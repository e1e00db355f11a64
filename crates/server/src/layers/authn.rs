//! Authentication: every request to a non-public route carries a valid token, or is
//! refused with 401 (403 for an audience mismatch) before anything reads its body or looks
//! at a model's data.
//!
//! The rules that may verify the token follow from the context's target: a model's
//! namespace-scoped rules apply to that model only; a request for a model that is not
//! served, or for a gRPC method whose message names the model, may be verified by any rule
//! (it is answered 404, or its rule is checked against the model by authorization once the
//! message is read); a request that addresses no model only by global rules.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_identity::{Authenticated, Scoping, TokenLocation};
use serde_json::Value;

use crate::context::{Authentication, Ctx, Target};
use crate::{ApiError, AppState};

/// The token rules that may verify a request's token, from its target.
pub(crate) fn scoping(ctx: &Ctx) -> Scoping<'_> {
    match ctx.target() {
        Some(Target::Served(served)) => Scoping::Model(served.identity_target()),
        Some(Target::Missing(_)) => Scoping::AnyModel,
        None if ctx.route.addresses_model() => Scoping::AnyModel,
        None => Scoping::NoModel,
    }
}

/// The step (see the module docs), run by [`super::admit`]. On success the context holds the
/// caller; the token is stripped unless its rule forwards it, and the rule's output headers
/// are set. The console's routes are authenticated by its session instead (see
/// [`crate::control::console::authenticate`]).
pub(crate) async fn authenticate(state: &AppState, ctx: &Ctx, mut req: Request) -> Result<Request, ApiError> {
    if ctx.public {
        ctx.set_authentication(Authentication::Public);
        return Ok(req);
    }
    let authn = state.security().authenticator();
    match authn.authenticate(req.headers(), req.uri().query(), scoping(ctx)).await {
        Ok(authenticated) => {
            if ctx.registry().forwards_credentials()
                && let Authenticated::Token { location, .. } = &authenticated
                && let Some((_, token)) = palisade_identity::authn::find_tokens(
                    req.headers(),
                    req.uri().query(),
                    std::slice::from_ref(location),
                )
                .into_iter()
                .next()
            {
                // Kept for a router's variants (`CallContext::credential`), read where the
                // verified token was found, before the header is stripped.
                ctx.set_credential(&token);
            }
            apply_rule_outputs(&mut req, &authenticated);
            ctx.set_authentication(Authentication::Authenticated(authenticated));
            Ok(req)
        }
        Err(err) => {
            ctx.set_authentication(Authentication::Refused(err.reason()));
            state.metrics().observe_authn_failure(ctx.model_label(), err.reason());
            tracing::info!(reason = err.reason(), "authentication refused");
            Err(ApiError::Unauthenticated(err))
        }
    }
}

/// What the accepting rule does to the request: strip the token (unless
/// `forwardOriginalToken`), copy the payload or claims into headers.
fn apply_rule_outputs(req: &mut Request, authenticated: &Authenticated) {
    let Authenticated::Token { token, rule, location, .. } = authenticated else { return };
    if !rule.forward_original_token
        && let TokenLocation::Header { name, .. } = location
    {
        req.headers_mut().remove(name.as_str());
    }
    if let Some(name) = &rule.output_payload_to_header {
        let payload = URL_SAFE_NO_PAD.encode(Value::Object((*token.claims).clone()).to_string());
        set_header(req, name, &payload);
    }
    for output in &rule.output_claim_to_headers {
        let value = match token.claims.get(&output.claim) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            _ => None,
        };
        if let Some(value) = value {
            set_header(req, &output.header, &value);
        }
    }
}

fn set_header(req: &mut Request, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        req.headers_mut().insert(name, value);
    }
}
