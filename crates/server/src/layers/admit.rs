//! Admission: the secured stack's checks between CORS and the handler, run in order in one
//! layer (one `from_fn` hop instead of four; each step reads and fills the request context):
//!
//! 1. authentication ([`super::authn`]), or the console's session
//!    ([`crate::control::console::authenticate`]) on its routes;
//! 2. a gRPC message's model ([`super::grpc_model`]);
//! 3. authorization ([`super::authz`]);
//! 4. the caller's rate budget ([`super::rate`]).
//!
//! The first step that refuses ends the request with its error; nothing after it runs.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::context::Ctx;
use crate::route::Route;
use crate::{ApiError, AppState};

/// The layer (see the module docs).
pub(crate) async fn admit(
    State(state): State<AppState>,
    ctx: Ctx,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // The console's pages and calls address no model: its session is all they need.
    if let Route::Console(op) = &ctx.route
        && !ctx.public
    {
        return crate::control::console::authenticate(&state, &ctx, op, req, next).await;
    }
    let req = super::authn::authenticate(&state, &ctx, req).await?;
    let req = super::grpc_model::resolve(&state, &ctx, req).await?;
    super::authz::authorize(&state, &ctx, req.headers(), req.uri()).await?;
    super::rate::limit(&state, &ctx)?;
    Ok(next.run(req).await)
}
