//! The one table that turns failures into responses.
//!
//! Layers and handlers raise [`ApiError`]; [`ApiError::status`] picks the HTTP status,
//! [`ApiError::grpc_code`] the gRPC code and [`ApiError::public_message`] the text the
//! caller sees. Internal details (model execution errors, I/O) are logged with the request
//! id and never sent to the caller. One renderer ([`crate::rescue`]) writes the error in the
//! request's protocol: V2 JSON, Seldon's `status` body, an OAuth2 error, or gRPC trailers.

use std::time::Duration;

use axum::http::StatusCode;
use palisade_identity::AuthnError;
use palisade_protocol::ProtocolError;
use palisade_protocol::grpc::tonic::{Code, Status};
use palisade_runtime::{RuntimeError, UpstreamError};

/// A failed request, as the caller will see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body or parameters are malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// Authentication failed: no token, an invalid one, or more than one (401); an audience
    /// the issuer's rule does not accept (403). Answered with an RFC 6750 challenge.
    #[error("authentication failed: {0}")]
    Unauthenticated(AuthnError),
    /// The caller may not do this, and may be told why (403): a management operation on
    /// another owner's model, a connection without the client certificate a STRICT model
    /// requires.
    #[error("{0}")]
    Forbidden(String),
    /// The model's policies said no (403 `RBAC: access denied`, as Istio answers).
    #[error("RBAC: access denied")]
    AccessDenied,
    /// No such model, version or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method (405); the methods it takes.
    #[error("this endpoint takes {0}")]
    MethodNotAllowed(&'static str),
    /// The endpoint exists but what it asks for is not served (501): explanations, Seldon
    /// feedback.
    #[error("{0}")]
    NotImplemented(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body exceeds the configured limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The inference queue is full (429).
    #[error("the server is overloaded; retry later")]
    Overloaded,
    /// Too many failed attempts from this client or address (429 with `Retry-After`).
    #[error("too many failed attempts; retry in {retry_after} s")]
    Throttled {
        /// Seconds until the next attempt is considered.
        retry_after: u32,
    },
    /// The caller has used its rate budget for this model (429 with `Retry-After`,
    /// `RESOURCE_EXHAUSTED` over gRPC): `limits.rate` in the platform config or the
    /// model's manifest.
    #[error(
        "rate limit exceeded: this caller's {budget} budget for the model is used up; retry in {retry_after} s"
    )]
    RateLimited {
        /// Which budget: `requests` or `explain`.
        budget: &'static str,
        /// Seconds until the next request would be admitted, rounded up.
        retry_after: u32,
    },
    /// The request bodies in flight already take the server's memory budget for them
    /// (503, `RESOURCE_EXHAUSTED` over gRPC); nothing of this body was held.
    #[error("the server is receiving too much request data right now; retry later")]
    BodyBudgetExhausted,
    /// The outputs this request would make do not fit the server's in-flight memory budget
    /// (`--max-inflight-bytes`, shared with request bodies): 413 when they are larger than
    /// the whole budget (fewer rows may fit), else 503 with `Retry-After` while other
    /// requests hold it. `RESOURCE_EXHAUSTED` over gRPC either way. Nothing ran.
    #[error("{}", output_budget_message(*needed, *limit))]
    OutputBudget {
        /// Bytes the outputs would take.
        needed: u64,
        /// The budget, in bytes.
        limit: usize,
    },
    /// The model failed; details are logged, not returned (500).
    #[error("inference failed: {0}")]
    Inference(String),
    /// Something inside the server failed; details are logged, not returned (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// The request took longer than the configured timeout (504).
    #[error("inference did not finish within {0:?}")]
    Timeout(Duration),
    /// A pipeline's `inner` join was still waiting for a step when its `joinWindowMs`
    /// closed (504): the joining step and the late ones, named as in the manifest.
    #[error("pipeline join timed out: {0}")]
    JoinTimeout(String),
    /// The server is starting or stopping (503).
    #[error("the server is not ready")]
    Unavailable,
    /// A model is not ready: its upstream server says so (503).
    #[error("{0}")]
    NotReady(String),
    /// The audit log cannot be written, so nothing is served unaudited (503).
    #[error("the audit log cannot be written ({0}); requests are refused rather than served unaudited")]
    AuditUnavailable(String),
    /// An upstream model server could not be reached, failed, or answered something
    /// unusable (502). The log gets the upstream's address and the cause; the caller does not.
    #[error("{0}")]
    BadGateway(UpstreamError),
    /// An upstream model server did not answer within the model's timeout (504).
    #[error("{0}")]
    GatewayTimeout(UpstreamError),
    /// An OAuth2 token endpoint error (RFC 6749 section 5.2): its status, its `error` code
    /// and a description for the client.
    #[error("{error}: {description}")]
    OAuth {
        /// 400 or 401.
        status: StatusCode,
        /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, ...
        error: &'static str,
        /// What went wrong.
        description: String,
    },
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(err) => {
                StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            ApiError::Forbidden(_) | ApiError::AccessDenied => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::OutputBudget { needed, limit } if *needed > *limit as u64 => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::OutputBudget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Overloaded | ApiError::Throttled { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BodyBudgetExhausted
            | ApiError::Unavailable
            | ApiError::NotReady(_)
            | ApiError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Inference(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout(_) | ApiError::JoinTimeout(_) | ApiError::GatewayTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::OAuth { status, .. } => *status,
        }
    }

    /// The gRPC code for this error: the code of its HTTP status in the shared table, except
    /// where gRPC has a better word (a memory budget is `RESOURCE_EXHAUSTED`).
    pub fn grpc_code(&self) -> Code {
        match self {
            ApiError::BodyBudgetExhausted | ApiError::OutputBudget { .. } => Code::ResourceExhausted,
            ApiError::MethodNotAllowed(_) => Code::Unimplemented,
            other => grpc_code_for(other.status()),
        }
    }

    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthenticated(err) => err.reason(),
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AccessDenied => "access_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Overloaded => "overloaded",
            ApiError::Throttled { .. } => "throttled",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BodyBudgetExhausted => "body_budget",
            ApiError::OutputBudget { .. } => "output_budget",
            ApiError::Inference(_) => "inference_failed",
            ApiError::Internal(_) => "internal",
            ApiError::Timeout(_) => "timeout",
            ApiError::JoinTimeout(_) => "join_timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::NotReady(_) => "not_ready",
            ApiError::AuditUnavailable(_) => "audit_unavailable",
            ApiError::BadGateway(err) | ApiError::GatewayTimeout(err) => err.kind(),
            ApiError::OAuth { error, .. } => error,
        }
    }

    /// The message the caller sees: the whole error for the caller's mistakes, a generic one
    /// for ours.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Inference(_) => {
                "inference failed; the server log has details under this request id".to_owned()
            }
            ApiError::Internal(_) => {
                "internal error; the server log has details under this request id".to_owned()
            }
            ApiError::BadGateway(err) | ApiError::GatewayTimeout(err) => {
                format!("{}; the server log has details under this request id", err.public_message())
            }
            ApiError::Unauthenticated(AuthnError::MissingToken) => {
                "authentication required: send a bearer token".to_owned()
            }
            ApiError::AuditUnavailable(_) => {
                "the audit log cannot be written; requests are refused rather than served unaudited"
                    .to_owned()
            }
            ApiError::OAuth { description, .. } => description.clone(),
            other => other.to_string(),
        }
    }

    /// The `WWW-Authenticate` challenge of a 401/403 from authentication (RFC 6750).
    pub fn challenge(&self) -> Option<String> {
        let ApiError::Unauthenticated(err) = self else {
            return match self {
                ApiError::OAuth { status, .. } if *status == StatusCode::UNAUTHORIZED => {
                    Some(r#"Basic realm="palisade""#.to_owned())
                }
                _ => None,
            };
        };
        Some(match err {
            AuthnError::MissingToken => r#"Bearer realm="palisade""#.to_owned(),
            AuthnError::MultipleTokens => {
                r#"Bearer realm="palisade", error="invalid_request", error_description="more than one token""#
                    .to_owned()
            }
            other => format!(
                r#"Bearer realm="palisade", error="invalid_token", error_description="{}""#,
                other.to_string().replace('"', "'")
            ),
        })
    }

    /// Seconds after which a client may retry, for the errors that pass.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Overloaded | ApiError::BodyBudgetExhausted | ApiError::Unavailable => Some(1),
            ApiError::AuditUnavailable(_) => Some(5),
            ApiError::Throttled { retry_after } | ApiError::RateLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            ApiError::OutputBudget { needed, limit } if *needed <= *limit as u64 => Some(1),
            _ => None,
        }
    }
}

/// What a caller reads when a request's outputs do not fit the memory budget.
fn output_budget_message(needed: u64, limit: usize) -> String {
    if needed > limit as u64 {
        format!(
            "the model's outputs for this request would take {needed} bytes, more than the server's \
             limit of {limit} bytes for data in flight; send fewer rows"
        )
    } else {
        format!(
            "the model's outputs for this request would take {needed} bytes, and the server's memory \
             for data in flight is in use right now; retry later"
        )
    }
}

/// The one table between HTTP statuses and gRPC codes, used both ways: errors raised as
/// HTTP responses (by layers) become gRPC statuses for gRPC callers, and gRPC outcomes are
/// counted and audited under the HTTP status they stand for. When a code appears twice, the
/// first row is its HTTP status.
const GRPC_CODES: &[(u16, Code)] = &[
    (200, Code::Ok),
    (400, Code::InvalidArgument),
    (401, Code::Unauthenticated),
    (403, Code::PermissionDenied),
    (404, Code::NotFound),
    (409, Code::Aborted),
    (429, Code::ResourceExhausted),
    (413, Code::ResourceExhausted),
    (500, Code::Internal),
    (501, Code::Unimplemented),
    (503, Code::Unavailable),
    (502, Code::Unavailable),
    (504, Code::DeadlineExceeded),
    (499, Code::Cancelled),
];

/// The gRPC code for an HTTP status (`UNKNOWN` for statuses the table does not name).
pub fn grpc_code_for(status: StatusCode) -> Code {
    GRPC_CODES.iter().find(|(s, _)| *s == status.as_u16()).map_or(Code::Unknown, |(_, code)| *code)
}

/// The HTTP status a gRPC code stands for (500 for codes the table does not name).
pub fn http_status_for(code: Code) -> StatusCode {
    GRPC_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .and_then(|(s, _)| StatusCode::from_u16(*s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ApiError {
    /// The error as a gRPC status: its code and the public message.
    pub fn to_grpc(&self) -> Status {
        Status::new(self.grpc_code(), self.public_message())
    }
}

impl From<AuthnError> for ApiError {
    fn from(err: AuthnError) -> Self {
        ApiError::Unauthenticated(err)
    }
}

impl From<ProtocolError> for ApiError {
    fn from(err: ProtocolError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        match err {
            RuntimeError::InvalidInput(message) | RuntimeError::InputRefused(message) => {
                ApiError::BadRequest(message)
            }
            RuntimeError::Overloaded => ApiError::Overloaded,
            RuntimeError::Unavailable => ApiError::Unavailable,
            RuntimeError::Timeout(timeout) => ApiError::Timeout(timeout),
            RuntimeError::Upstream(err) => match err {
                UpstreamError::Timeout { .. } => ApiError::GatewayTimeout(err),
                // The upstream refused the caller's input: the caller may see why.
                UpstreamError::Rejected { .. } => ApiError::BadRequest(err.public_message()),
                // A busy upstream is backpressure the caller can act on, like a full queue.
                UpstreamError::Failed { status: 429, .. } | UpstreamError::Saturated { .. } => {
                    ApiError::Overloaded
                }
                other => ApiError::BadGateway(other),
            },
            other => ApiError::Inference(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_internal() {
        let err = ApiError::from(RuntimeError::Execution("tract: node 7 shape mismatch /srv/x".into()));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.public_message().contains("tract"));
        let err = ApiError::from(RuntimeError::InvalidInput("input `X`: shape".into()));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.public_message(), "input `X`: shape");
        assert_eq!(ApiError::from(RuntimeError::Overloaded).status(), StatusCode::TOO_MANY_REQUESTS);
        let err = ApiError::from(RuntimeError::InputRefused("input `city`, row 0: unknown category".into()));
        assert_eq!((err.status(), err.grpc_code()), (StatusCode::BAD_REQUEST, Code::InvalidArgument));
        assert_eq!(err.public_message(), "input `city`, row 0: unknown category");
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses_without_addresses() {
        let target = "http://10.1.2.3:8080 model iris".to_owned();
        let cases = [
            (
                UpstreamError::Unreachable { target: target.clone(), detail: "connection refused".into() },
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
            ),
            (
                UpstreamError::Timeout { target: target.clone(), timeout: std::time::Duration::from_secs(2) },
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
            ),
            (
                UpstreamError::Failed { target: target.clone(), status: 500, message: "Traceback".into() },
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
            ),
            (
                UpstreamError::Failed { target: target.clone(), status: 429, message: "busy".into() },
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
            ),
            (
                UpstreamError::InvalidResponse { target: target.clone(), detail: "not JSON".into() },
                StatusCode::BAD_GATEWAY,
                "upstream_invalid_response",
            ),
            (
                UpstreamError::Rejected { target: target.clone(), status: 400, message: "bad shape".into() },
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
        ];
        for (upstream, status, kind) in cases {
            let err = ApiError::from(RuntimeError::Upstream(upstream));
            assert_eq!(err.status(), status, "{err}");
            assert_eq!(err.kind(), kind, "{err}");
            let public = err.public_message();
            assert!(!public.contains("10.1.2.3") && !public.contains("Traceback"), "{public}");
            if status.is_server_error() {
                assert!(err.to_string().contains("10.1.2.3"), "the log names the upstream: {err}");
                assert!(public.contains("request id"), "{public}");
            }
        }
    }

    #[test]
    fn grpc_codes_follow_one_table_both_ways() {
        let cases = [
            (StatusCode::BAD_REQUEST, Code::InvalidArgument),
            (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
            (StatusCode::FORBIDDEN, Code::PermissionDenied),
            (StatusCode::NOT_FOUND, Code::NotFound),
            (StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted),
            (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            (StatusCode::GATEWAY_TIMEOUT, Code::DeadlineExceeded),
        ];
        for (status, code) in cases {
            assert_eq!(grpc_code_for(status), code);
            assert_eq!(http_status_for(code), status);
        }
        assert_eq!(grpc_code_for(StatusCode::PAYLOAD_TOO_LARGE), Code::ResourceExhausted);
        assert_eq!(grpc_code_for(StatusCode::IM_A_TEAPOT), Code::Unknown);
        assert_eq!(ApiError::Overloaded.to_grpc().code(), Code::ResourceExhausted);
        let limited = ApiError::RateLimited { budget: "explain", retry_after: 3 };
        assert_eq!(
            (limited.status(), limited.grpc_code()),
            (StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted)
        );
        assert_eq!(limited.retry_after(), Some(3));
        assert!(limited.public_message().contains("explain budget"), "{}", limited.public_message());
        let hidden = ApiError::Inference("tract: /srv/model.onnx".into()).to_grpc();
        assert_eq!(hidden.code(), Code::Internal);
        assert!(!hidden.message().contains("tract"));
    }
}
