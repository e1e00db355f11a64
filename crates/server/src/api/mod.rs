//! The data port's endpoints. [`dispatch`] is the one handler behind the layers: it runs
//! the endpoint the context's route names, with the model the context resolved. No
//! handler matches a path or looks a model up by name.

pub(crate) mod docs;
pub(crate) mod grpc;
pub(crate) mod kserve;
pub(crate) mod openapi;
pub(crate) mod seldon;
pub(crate) mod v2;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::context::{Ctx, Target};
use crate::registry::clip;
use crate::route::{KServeOp, ModelOp, Route, SeldonMethod};
use crate::{ApiError, AppState, ServedModel};

/// The served model of a model route, or the 404 the route earned. Authorization has
/// already refused a missing model when security is on; this is for the app without it.
fn served(ctx: &Ctx) -> Result<Arc<ServedModel>, ApiError> {
    match ctx.target() {
        Some(Target::Served(served)) => Ok(served.clone()),
        Some(Target::Missing(message)) => Err(ApiError::NotFound(message.clone())),
        None => Err(ApiError::Internal(format!("{:?} has no model", ctx.route))),
    }
}

/// Runs the endpoint of the request's route.
pub(crate) async fn dispatch(State(state): State<AppState>, ctx: Ctx, req: Request) -> Response {
    let result = match &ctx.route {
        Route::Invalid(message) => Err(ApiError::BadRequest(message.clone())),
        Route::NotFound => Err(ApiError::NotFound(format!("no route for {}", clip(&ctx.path)))),
        Route::MethodNotAllowed(allow) => Err(ApiError::MethodNotAllowed(allow)),
        Route::Live => Ok(v2::live()),
        Route::Ready => Ok(v2::ready(&state)),
        Route::ServerMetadata => Ok(v2::server_metadata()),
        Route::Model { op, .. } => match served(&ctx) {
            Ok(served) => match op {
                ModelOp::Metadata => Ok(v2::model_metadata(&state, &served)),
                ModelOp::Ready => v2::model_ready(&served).await,
                ModelOp::Infer => v2::infer(&state, &ctx, &served, req).await,
                ModelOp::Feedback => crate::graphs::feedback_v2(&state, &ctx, &served, req).await,
                ModelOp::Explain => v2::explain(&state, &ctx, &served, req).await,
                ModelOp::Drift => {
                    crate::monitoring::drift(&state, &served).await.map(|v| axum::Json(v).into_response())
                }
            },
            Err(err) => Err(err),
        },
        Route::Seldon(_) => match served(&ctx) {
            Ok(served) => seldon::predict(&state, &ctx, &served, req).await,
            Err(err) => Err(err),
        },
        Route::SeldonExplain(_) => match served(&ctx) {
            Ok(served) => seldon::explain(&state, &ctx, &served, req).await,
            Err(err) => Err(err),
        },
        Route::SeldonFeedback(_) => match served(&ctx) {
            Ok(served) => crate::graphs::feedback_seldon(&state, &ctx, &served, req).await,
            Err(err) => Err(err),
        },
        Route::SeldonGrpc(SeldonMethod::Predict) => match served(&ctx) {
            Ok(served) => seldon::predict_grpc(&state, &ctx, &served, req).await,
            Err(err) => Err(err),
        },
        Route::SeldonGrpc(SeldonMethod::SendFeedback) => match served(&ctx) {
            Ok(served) => seldon::predict_grpc(&state, &ctx, &served, req).await,
            Err(err) => Err(err),
        },
        Route::Alive => Ok(kserve::alive()),
        Route::KServe { op, .. } => match served(&ctx) {
            Ok(served) => match op {
                KServeOp::Ready => kserve::ready(&served).await,
                KServeOp::Predict => kserve::predict(&state, &ctx, &served, req).await,
                KServeOp::Explain => kserve::explain(&state, &ctx, &served, req).await,
            },
            Err(err) => Err(err),
        },
        Route::Grpc(_) => Ok(grpc::serve(&state, req).await),
        Route::OpenApi => Ok(docs::openapi(&state)),
        Route::DocsRedirect => Ok(docs::redirect()),
        Route::Docs(asset) => docs::asset(&state, asset),
        Route::OAuthToken => crate::control::oauth::token(&state, &ctx, req).await,
        Route::Discovery => crate::control::oauth::discovery(&state),
        Route::Jwks => crate::control::oauth::jwks(&state),
        Route::Manage(op) => crate::control::manage::handle(&state, &ctx, op, req).await,
        Route::Console(op) => crate::control::console::handle(&state, &ctx, op, req).await,
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    // Sticky clients learn their arm; every protocol gets it (gRPC as metadata).
    if let Some(route) = ctx.graph().map(|g| g.route_header()).filter(|r| !r.is_empty())
        && let Ok(value) = axum::http::HeaderValue::from_str(&route)
    {
        response.headers_mut().insert("x-palisade-route", value);
    }
    response
}
