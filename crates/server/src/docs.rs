//! `/openapi.json` and the Swagger UI at `/docs`, served from assets embedded at build time
//! (the `utoipa-swagger-ui` crate with its `vendored` assets: nothing is fetched at build or
//! run time).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::{ApiError, AppState};

/// The Swagger UI configuration: it reads our own `/openapi.json`.
pub(crate) fn config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .display_request_duration(true)
            .display_operation_id(false),
    )
}

/// `GET /openapi.json`
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.inner.openapi.clone()).into_response()
}

/// `GET /docs` -> `/docs/`, so the UI's relative asset paths resolve.
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/docs/")
}

/// `GET /docs/`
pub(crate) async fn index(State(state): State<AppState>) -> Response {
    asset_response(&state, "")
}

/// `GET /docs/{file}`
pub(crate) async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    asset_response(&state, &file)
}

fn asset_response(state: &AppState, file: &str) -> Response {
    match utoipa_swagger_ui::serve(file, state.inner.docs.clone()) {
        Ok(Some(found)) => {
            let mut response = (StatusCode::OK, found.bytes.into_owned()).into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&found.content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            if found.gzpipped {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        Ok(None) => {
            ApiError::NotFound(format!("no docs asset {}", crate::registry::clip(file))).into_response()
        }
        Err(err) => ApiError::Inference(format!("swagger ui: {err}")).into_response(),
    }
}
