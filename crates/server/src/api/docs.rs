//! `/openapi.json` and the Swagger UI at `/docs`, served from assets embedded at build time
//! (the `utoipa-swagger-ui` crate with its `vendored` assets: nothing is fetched at build or
//! run time).

use std::sync::Arc;

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
pub(crate) fn openapi(state: &AppState) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi()).into_response()
}

/// `GET /docs` -> `/docs/`, so the UI's relative asset paths resolve.
pub(crate) fn redirect() -> Response {
    Redirect::permanent("/docs/").into_response()
}

/// `GET /docs/{asset}`; the empty asset is the Swagger UI page.
pub(crate) fn asset(state: &AppState, file: &str) -> Result<Response, ApiError> {
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
            Ok(response)
        }
        Ok(None) => Err(ApiError::NotFound(format!("no docs asset {}", crate::registry::clip(file)))),
        Err(err) => Err(ApiError::Internal(format!("swagger ui: {err}"))),
    }
}
