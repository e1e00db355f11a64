//! The model a gRPC request names, read from its message after authentication and before
//! authorization.
//!
//! A gRPC request names its model inside the protobuf message, not in the path. This layer
//! reads the one message of a unary call (within the body limit and the in-flight budget,
//! hashed for the audit record like any body), decodes only the model name and version
//! (`palisade_protocol::grpc::named_model`: tensors are skipped, not decoded), resolves the
//! model into the request context once, and hands the same bytes on. Authorization then
//! decides on that model, and the handler serves that model: tonic decodes the same bytes,
//! and the handler reads the model from the context, never from the message.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::context::{Ctx, Target};
use crate::route::Route;
use crate::{ApiError, AppState};

/// The reservation of a gRPC message's bytes, kept in the request while tonic decodes them.
#[derive(Debug, Clone)]
pub(crate) struct HeldBody(#[allow(dead_code)] pub Arc<crate::body::ReadBody>);

/// The layer of the stack without security (see the module docs); the secured stack runs
/// [`resolve`] as a step of [`super::admit`].
pub(crate) async fn layer(
    State(state): State<AppState>,
    ctx: Ctx,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let req = resolve(&state, &ctx, req).await?;
    Ok(next.run(req).await)
}

/// The step (see the module docs): a gRPC request that names its model gets its target
/// resolved and its body replaced by the same bytes; other requests pass unchanged.
pub(crate) async fn resolve(state: &AppState, ctx: &Ctx, req: Request) -> Result<Request, ApiError> {
    let Route::Grpc(method) = ctx.route else { return Ok(req) };
    if !method.names_model() {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    // A gRPC frame adds 5 bytes to the message, whose own limit tonic enforces.
    let limit = state.config().max_body_bytes.saturating_add(5);
    // The model, and so what the audit record keeps of the message, is known only once the
    // message is read: it is hashed (if at all) afterwards.
    let read =
        crate::body::read(ctx, state.body_budget(), &parts.headers, body, limit, crate::body::Keep::Nothing)
            .await?;
    let named = palisade_protocol::grpc::named_model(&read.bytes)?;
    let version = (!named.version.is_empty()).then_some(named.version.as_str());
    let target = match ctx.registry().get(&named.name, version) {
        Ok(served) => Target::Served(served),
        Err(err) => Target::Missing(err.public_message()),
    };
    ctx.resolve_target(target);
    crate::body::keep_read(ctx, &read.bytes, state.keep(ctx));
    let bytes = read.bytes.clone();
    parts.extensions.insert(HeldBody(Arc::new(read)));
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
