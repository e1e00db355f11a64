//! Cross-origin requests from browsers (CORS), for the REST routes only.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) carries no
//! credentials by specification, so it is answered here, before authentication, and never
//! reaches a handler: 204 with the allowed method and headers when the platform allows the
//! origin (`cors.allowedOrigins`) and the requested method is one the route takes over REST.
//! Any other `OPTIONS` (a gRPC route, an origin that is not allowed, a route that does not
//! exist) goes on like every request: authentication, then 405. Answers to allowed origins
//! carry `Access-Control-Allow-Origin`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::context::Ctx;
use crate::route::{Protocol, Route};

/// The layer (see the module docs).
pub(crate) async fn cors(State(state): State<AppState>, ctx: Ctx, req: Request, next: Next) -> Response {
    // The console's pages and calls are same-origin only: no CORS for them, ever.
    if ctx.protocol == Protocol::Console {
        return next.run(req).await;
    }
    let config = &state.security().platform().config.cors;
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin.filter(|o| config.allows(o)) else { return next.run(req).await };
    let Ok(origin_value) = HeaderValue::from_str(&origin) else { return next.run(req).await };

    let requested = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    if ctx.method == Method::OPTIONS
        && let Some(method) = requested
    {
        let route = Route::resolve(&method, &ctx.path, state.route_options());
        let rest = !matches!(route, Route::NotFound | Route::Invalid(_) | Route::MethodNotAllowed(_))
            && !route.protocol(false).is_grpc()
            && route.protocol(false) != Protocol::Console;
        if rest {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin_value);
            headers.insert(header::VARY, HeaderValue::from_static("origin"));
            if let Ok(value) = HeaderValue::from_str(method.as_str()) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
            }
            if let Ok(value) = HeaderValue::from_str(&config.allowed_headers.join(", ")) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
            }
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(config.max_age.as_secs()));
            return response;
        }
        return next.run(req).await;
    }
    let mut response = next.run(req).await;
    if !ctx.protocol.is_grpc() {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin_value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, www-authenticate, retry-after"),
        );
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
