//! Reading request bodies up to the configured limit.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::{ApiError, AppState};

/// A request body no larger than [`crate::ServerConfig::max_body_bytes`]; larger bodies are
/// refused with 413 before they are buffered whole.
pub(crate) struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().max_body_bytes;
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let body: Body = req.into_body();
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(LimitedBody(collected.to_bytes())),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::PayloadTooLarge { limit })
            }
            Err(err) => Err(ApiError::BadRequest(format!("could not read the request body: {err}"))),
        }
    }
}
