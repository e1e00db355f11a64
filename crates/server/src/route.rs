//! The data port's routes: which endpoint a request addresses, decided once, from the
//! normalized path and the method.
//!
//! [`Route::resolve`] is the only route matcher of the data port. The request context
//! ([`crate::context`]) calls it once per request; authentication, authorization, audit,
//! metrics and the handlers all read the result, so none of them can disagree about which
//! endpoint, or which model, a request is for. Route parameters (model, version, namespace)
//! are percent-decoded here, once; the handlers get them decoded and never see the path.

use axum::http::Method;

/// What a request to a model route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOp {
    /// `GET /v2/models/{m}[/versions/{v}]`
    Metadata,
    /// `GET /v2/models/{m}[/versions/{v}]/ready`
    Ready,
    /// `POST /v2/models/{m}[/versions/{v}]/infer`
    Infer,
    /// `POST /v2/models/{m}[/versions/{v}]/feedback`: a reward for a graph's request.
    Feedback,
    /// `POST /v2/models/{m}[/versions/{v}]/explain`: SHAP values of the request's rows
    /// (authorized on its own path, never as `infer`).
    Explain,
    /// `GET /v2/models/{m}[/versions/{v}]/drift`: the drift of recent inputs against the
    /// model's reference (authorized on its own path).
    Drift,
}

/// A method of `inference.GRPCInferenceService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcMethod {
    /// `ServerLive` (public, like `/v2/health/live`).
    ServerLive,
    /// `ServerReady` (public).
    ServerReady,
    /// `ServerMetadata`
    ServerMetadata,
    /// `ModelReady`: names a model in its message.
    ModelReady,
    /// `ModelMetadata`: names a model in its message.
    ModelMetadata,
    /// `ModelInfer`: names a model in its message.
    ModelInfer,
}

impl GrpcMethod {
    fn parse(name: &str) -> Option<GrpcMethod> {
        Some(match name {
            "ServerLive" => GrpcMethod::ServerLive,
            "ServerReady" => GrpcMethod::ServerReady,
            "ServerMetadata" => GrpcMethod::ServerMetadata,
            "ModelReady" => GrpcMethod::ModelReady,
            "ModelMetadata" => GrpcMethod::ModelMetadata,
            "ModelInfer" => GrpcMethod::ModelInfer,
            _ => return None,
        })
    }

    /// Whether the method's message names a model.
    pub fn names_model(self) -> bool {
        matches!(self, GrpcMethod::ModelReady | GrpcMethod::ModelMetadata | GrpcMethod::ModelInfer)
    }
}

/// What a request to a KServe V1 model route does (`/v1/models/{m}[:verb]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KServeOp {
    /// `GET /v1/models/{m}`: `{"name", "ready"}`.
    Ready,
    /// `POST /v1/models/{m}:predict`
    Predict,
    /// `POST /v1/models/{m}:explain`: the V2 `explain`, with KServe V1's body.
    Explain,
}

/// A method of the Seldon Core v1 gRPC service (`seldon.protos.Seldon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeldonMethod {
    /// `Predict`: the deployment is named in the `seldon` metadata (and `namespace`).
    Predict,
    /// `SendFeedback`: not served (UNIMPLEMENTED).
    SendFeedback,
}

/// Which Seldon Core v1 deployment a prediction is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeldonTarget {
    /// `/api/v1.0/predictions`: the one model served.
    Single,
    /// `/seldon/{namespace}/{deployment}/api/v1.0/predictions`, and
    /// `/seldon/{deployment}/api/v1.0/predictions` in the namespace `default`.
    Named {
        /// The namespace, decoded.
        namespace: String,
        /// The deployment (model) name, decoded.
        name: String,
    },
}

/// An operation of the owner self-service API (`/manage/v1/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageOp {
    /// `GET /manage/v1/policies`
    ListPolicies,
    /// `PUT /manage/v1/policies`
    ApplyPolicy,
    /// `DELETE /manage/v1/policies/{namespace}/{name}`
    DeletePolicy {
        /// The policy's namespace, decoded.
        namespace: String,
        /// The policy's name, decoded.
        name: String,
    },
    /// `GET /manage/v1/models`
    ListModels,
    /// `GET /manage/v1/models/{model}/explain`
    Explain {
        /// The model name, decoded.
        model: String,
    },
    /// `POST /manage/v1/check`
    Check,
}

/// A request to the web console (`/console/...`, docs/console.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleOp {
    /// `GET /console/`, `/console/models/{m}`: the app page, whose script draws the page
    /// (a session is required: without one, a redirect to the sign-in page).
    Page {
        /// The model of a model's page, decoded.
        model: Option<String>,
    },
    /// `GET /console/signin` (public).
    SignInPage,
    /// `GET /console/assets/{file}` (public): an embedded script or style sheet.
    Asset(String),
    /// `GET /console/login` (public): starts a sign-in with the identity provider.
    Login,
    /// `GET /console/callback` (public): the identity provider's answer.
    Callback,
    /// `POST /console/session` (public: the pasted token is the credential).
    PasteToken,
    /// `POST /console/logout`
    Logout,
    /// `GET /console/api/me`: who is signed in, and the session's CSRF token.
    Me,
    /// `GET /console/api/models`: the models the person owns.
    Models,
    /// `GET /console/api/models/{m}`: one model the person owns.
    Model {
        /// The model name, decoded.
        model: String,
    },
    /// `GET /console/api/models/{m}/access`: who can call the model, and why (`policy explain`).
    Access {
        /// The model name, decoded.
        model: String,
    },
    /// `POST /console/api/check`: would this caller be allowed (`policy check`)?
    Check,
    /// `POST /console/api/policies[?dryRun=true][&confirm=true]`: apply a policy (the
    /// management API's `PUT /manage/v1/policies`).
    ApplyPolicy,
    /// `GET /console/api/audit?...`: the audit records of the person's models (every
    /// model's, for auditors), filtered; `format=jsonl` exports them.
    Audit,
    /// `GET /console/api/audit/{seq}`: one audit record of the person's models (any, for
    /// auditors) and whether the hash chain verifies at it.
    AuditRecord {
        /// The record's seq, as written in the path (not a number: 404).
        seq: String,
    },
    /// `DELETE /console/api/policies/{namespace}/{name}[?dryRun=true][&confirm=true]`:
    /// delete an owner-managed policy (the management API's `DELETE /manage/v1/policies`).
    DeletePolicy {
        /// The policy's namespace, decoded.
        namespace: String,
        /// The policy's name, decoded.
        name: String,
    },
    /// `GET /console/api/health`: the last hour's request rate, latency and refusals of the
    /// person's models (every model's, for auditors).
    Health,
}

impl ConsoleOp {
    /// Whether the operation is reached without a session.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            ConsoleOp::SignInPage
                | ConsoleOp::Asset(_)
                | ConsoleOp::Login
                | ConsoleOp::Callback
                | ConsoleOp::PasteToken
        )
    }

    /// Whether the operation is a page a browser navigates to (sent to sign in when there
    /// is no session), not a call of the page's script (answered 401).
    pub fn is_page(&self) -> bool {
        matches!(self, ConsoleOp::Page { .. })
    }
}

/// The endpoint a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The path cannot be interpreted (`%00`, a bad escape, too long): 400.
    Invalid(String),
    /// `GET /v2/health/live` (public).
    Live,
    /// `GET /v2/health/ready` (public).
    Ready,
    /// `GET /v2`
    ServerMetadata,
    /// A V2 model endpoint, with its route parameters decoded.
    Model {
        /// The model name as the path gives it.
        name: String,
        /// The version as the path gives it; `None`: the latest.
        version: Option<String>,
        /// What the request does.
        op: ModelOp,
    },
    /// `POST` a Seldon Core v1 prediction.
    Seldon(SeldonTarget),
    /// `POST` Seldon Core v1 feedback (`/api/v1.0/feedback`, `/seldon/.../api/v1.0/feedback`).
    SeldonFeedback(SeldonTarget),
    /// `POST` a Seldon Core v1 explanation (`/api/v1.0/explain`,
    /// `/seldon/.../api/v1.0/explain`): the V2 `explain`, with Seldon's body.
    SeldonExplain(SeldonTarget),
    /// `POST /seldon.protos.Seldon/{method}` (gRPC).
    SeldonGrpc(SeldonMethod),
    /// `GET /`: KServe V1's liveness probe, `{"status": "alive"}` (public).
    Alive,
    /// A KServe V1 model endpoint, the model name decoded.
    KServe {
        /// The model name as the path gives it.
        name: String,
        /// What the request does.
        op: KServeOp,
    },
    /// `POST /inference.GRPCInferenceService/{method}`.
    Grpc(GrpcMethod),
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /docs`: redirected to `/docs/`.
    DocsRedirect,
    /// `GET /docs/{asset}`; the empty asset is the Swagger UI page.
    Docs(String),
    /// `POST /oauth/token` (public: the client authenticates with its secret).
    OAuthToken,
    /// `GET /.well-known/openid-configuration` (public).
    Discovery,
    /// `GET /.well-known/jwks.json` (public).
    Jwks,
    /// The owner self-service API.
    Manage(ManageOp),
    /// The web console.
    Console(ConsoleOp),
    /// A known path with a method it does not take: 405, with these methods in `Allow`.
    MethodNotAllowed(&'static str),
    /// No such endpoint: 404.
    NotFound,
}

/// Which routes exist besides the V2, gRPC, Seldon and docs endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOptions {
    /// Security is on: the issuer (`/oauth`, `/.well-known`) and `/manage` routes exist.
    pub secured: bool,
    /// The console is on (security on, `console.enabled`): the `/console` routes exist.
    pub console: bool,
}

/// The protocol a request speaks, which decides how its errors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Open Inference Protocol V2 over REST, KServe V1 (whose errors are the same
    /// `{"error": "..."}` body), and the other JSON endpoints.
    V2Rest,
    /// Open Inference Protocol V2 over gRPC.
    V2Grpc,
    /// Seldon Core v1 (`{"status": {...}}` errors).
    SeldonV1,
    /// Seldon Core v1 over gRPC (`seldon.protos.Seldon`): errors as gRPC statuses.
    SeldonGrpc,
    /// The OAuth2 token endpoint and discovery (RFC 6749 errors).
    OAuth,
    /// The owner self-service API.
    Admin,
    /// The web console (JSON errors, with the console's security headers).
    Console,
}

impl Protocol {
    /// Whether the protocol is gRPC (errors in trailers; no CORS).
    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::V2Grpc | Protocol::SeldonGrpc)
    }
}

/// A KServe V1 model segment: `{m}` (readiness), `{m}:predict` or `{m}:explain`. Model
/// names cannot hold `:`, so the last one separates the verb; any other verb is no route.
fn kserve(method: &Method, segment: &str) -> Route {
    let route = |name: &str, op| Route::KServe { name: name.to_owned(), op };
    match segment.rsplit_once(':') {
        None => get(method, route(segment, KServeOp::Ready)),
        Some((name, "predict")) => post(method, route(name, KServeOp::Predict)),
        Some((name, "explain")) => post(method, route(name, KServeOp::Explain)),
        Some(_) => Route::NotFound,
    }
}

/// A console route, from the segments after `console`.
fn console(method: &Method, s: &[&str]) -> Route {
    let route = |op| Route::Console(op);
    match s {
        [] | [""] | ["audit"] | ["health"] => get(method, route(ConsoleOp::Page { model: None })),
        ["models", m] => get(method, route(ConsoleOp::Page { model: Some((*m).to_owned()) })),
        ["signin"] => get(method, route(ConsoleOp::SignInPage)),
        ["assets", file] => get(method, route(ConsoleOp::Asset((*file).to_owned()))),
        ["login"] => get(method, route(ConsoleOp::Login)),
        ["callback"] => get(method, route(ConsoleOp::Callback)),
        ["session"] => post(method, route(ConsoleOp::PasteToken)),
        ["logout"] => post(method, route(ConsoleOp::Logout)),
        ["api", "me"] => get(method, route(ConsoleOp::Me)),
        ["api", "models"] => get(method, route(ConsoleOp::Models)),
        ["api", "models", m] => get(method, route(ConsoleOp::Model { model: (*m).to_owned() })),
        ["api", "models", m, "access"] => get(method, route(ConsoleOp::Access { model: (*m).to_owned() })),
        ["api", "check"] => post(method, route(ConsoleOp::Check)),
        ["api", "policies"] => post(method, route(ConsoleOp::ApplyPolicy)),
        ["api", "audit"] => get(method, route(ConsoleOp::Audit)),
        ["api", "audit", seq] => get(method, route(ConsoleOp::AuditRecord { seq: (*seq).to_owned() })),
        ["api", "policies", namespace, name] if method == Method::DELETE => {
            route(ConsoleOp::DeletePolicy { namespace: (*namespace).to_owned(), name: (*name).to_owned() })
        }
        ["api", "policies", _, _] => Route::MethodNotAllowed("DELETE"),
        ["api", "health"] => get(method, route(ConsoleOp::Health)),
        _ => Route::NotFound,
    }
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

fn get(method: &Method, route: Route) -> Route {
    if method == Method::GET || method == Method::HEAD { route } else { Route::MethodNotAllowed(GET) }
}

fn post(method: &Method, route: Route) -> Route {
    if method == Method::POST { route } else { Route::MethodNotAllowed(POST) }
}

/// The value of a `%XX`-escaped path segment; `None` when it is not UTF-8.
pub(crate) fn decode_segment(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = segment.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Route {
    /// The route of a normalized path (`palisade_policy::normalize_path`) and method.
    pub fn resolve(method: &Method, path: &str, options: RouteOptions) -> Route {
        let Some(rest) = path.strip_prefix('/') else { return Route::NotFound };
        let raw: Vec<&str> = rest.split('/').collect();
        let Some(segments) = raw.iter().map(|s| decode_segment(s)).collect::<Option<Vec<String>>>() else {
            return Route::NotFound;
        };
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let model = |name: &str, version: Option<&str>, op: ModelOp| Route::Model {
            name: name.to_owned(),
            version: version.map(str::to_owned),
            op,
        };
        match s.as_slice() {
            [""] => get(method, Route::Alive),
            ["v1", "models", m] => kserve(method, m),
            ["v2"] => get(method, Route::ServerMetadata),
            ["v2", "health", "live"] => get(method, Route::Live),
            ["v2", "health", "ready"] => get(method, Route::Ready),
            ["v2", "models", m] => get(method, model(m, None, ModelOp::Metadata)),
            ["v2", "models", m, "ready"] => get(method, model(m, None, ModelOp::Ready)),
            ["v2", "models", m, "infer"] => post(method, model(m, None, ModelOp::Infer)),
            ["v2", "models", m, "versions", v] => get(method, model(m, Some(v), ModelOp::Metadata)),
            ["v2", "models", m, "versions", v, "ready"] => get(method, model(m, Some(v), ModelOp::Ready)),
            ["v2", "models", m, "versions", v, "infer"] => post(method, model(m, Some(v), ModelOp::Infer)),
            ["v2", "models", m, "explain"] => post(method, model(m, None, ModelOp::Explain)),
            ["v2", "models", m, "versions", v, "explain"] => {
                post(method, model(m, Some(v), ModelOp::Explain))
            }
            ["v2", "models", m, "drift"] => get(method, model(m, None, ModelOp::Drift)),
            ["v2", "models", m, "versions", v, "drift"] => get(method, model(m, Some(v), ModelOp::Drift)),
            ["v2", "models", m, "feedback"] => post(method, model(m, None, ModelOp::Feedback)),
            ["v2", "models", m, "versions", v, "feedback"] => {
                post(method, model(m, Some(v), ModelOp::Feedback))
            }
            ["api", "v1.0", "feedback"] => post(method, Route::SeldonFeedback(SeldonTarget::Single)),
            ["seldon", name, "api", "v1.0", "feedback"] => post(
                method,
                Route::SeldonFeedback(SeldonTarget::Named {
                    namespace: palisade_core::Namespace::default().as_str().to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            ["seldon", namespace, name, "api", "v1.0", "feedback"] => post(
                method,
                Route::SeldonFeedback(SeldonTarget::Named {
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            ["api", "v1.0", "explain"] => post(method, Route::SeldonExplain(SeldonTarget::Single)),
            ["seldon", name, "api", "v1.0", "explain"] => post(
                method,
                Route::SeldonExplain(SeldonTarget::Named {
                    namespace: palisade_core::Namespace::default().as_str().to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            ["seldon", namespace, name, "api", "v1.0", "explain"] => post(
                method,
                Route::SeldonExplain(SeldonTarget::Named {
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            ["api", "v1.0", "predictions"] => post(method, Route::Seldon(SeldonTarget::Single)),
            ["seldon", name, "api", "v1.0", "predictions"] => post(
                method,
                Route::Seldon(SeldonTarget::Named {
                    namespace: palisade_core::Namespace::default().as_str().to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            ["seldon", namespace, name, "api", "v1.0", "predictions"] => post(
                method,
                Route::Seldon(SeldonTarget::Named {
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                }),
            ),
            [service, name] if *service == palisade_protocol::seldon::grpc::SERVICE_NAME => match *name {
                "Predict" => post(method, Route::SeldonGrpc(SeldonMethod::Predict)),
                "SendFeedback" => post(method, Route::SeldonGrpc(SeldonMethod::SendFeedback)),
                _ => Route::NotFound,
            },
            [service, name] if *service == palisade_protocol::grpc::SERVICE_NAME => {
                match GrpcMethod::parse(name) {
                    Some(grpc) => post(method, Route::Grpc(grpc)),
                    None => Route::NotFound,
                }
            }
            ["openapi.json"] => get(method, Route::OpenApi),
            ["docs"] => get(method, Route::DocsRedirect),
            ["docs", asset @ ..] => get(method, Route::Docs(asset.join("/"))),
            ["oauth", "token"] if options.secured => post(method, Route::OAuthToken),
            [".well-known", "openid-configuration"] if options.secured => get(method, Route::Discovery),
            [".well-known", "jwks.json"] if options.secured => get(method, Route::Jwks),
            ["manage", "v1", "policies"] if options.secured => {
                if method == Method::GET || method == Method::HEAD {
                    Route::Manage(ManageOp::ListPolicies)
                } else if method == Method::PUT {
                    Route::Manage(ManageOp::ApplyPolicy)
                } else {
                    Route::MethodNotAllowed("GET, HEAD, PUT")
                }
            }
            ["manage", "v1", "policies", namespace, name] if options.secured => {
                if method == Method::DELETE {
                    Route::Manage(ManageOp::DeletePolicy {
                        namespace: (*namespace).to_owned(),
                        name: (*name).to_owned(),
                    })
                } else {
                    Route::MethodNotAllowed("DELETE")
                }
            }
            ["manage", "v1", "models"] if options.secured => get(method, Route::Manage(ManageOp::ListModels)),
            ["manage", "v1", "models", m, "explain"] if options.secured => {
                get(method, Route::Manage(ManageOp::Explain { model: (*m).to_owned() }))
            }
            ["manage", "v1", "check"] if options.secured => post(method, Route::Manage(ManageOp::Check)),
            ["console", ..] if options.console => console(method, &s[1..]),
            _ => Route::NotFound,
        }
    }

    /// Whether the route is served without a token: health probes (orchestrators probe
    /// without credentials), the issuer's public endpoints (the token endpoint checks the
    /// client's secret itself), and the docs when the platform makes them public.
    pub fn is_public(&self, docs_public: bool) -> bool {
        match self {
            Route::Live
            | Route::Ready
            | Route::Alive
            | Route::Grpc(GrpcMethod::ServerLive | GrpcMethod::ServerReady)
            | Route::OAuthToken
            | Route::Discovery
            | Route::Jwks => true,
            Route::Console(op) => op.is_public(),
            Route::OpenApi | Route::DocsRedirect | Route::Docs(_) => docs_public,
            _ => false,
        }
    }

    /// Whether a request to this route leaves an audit record. Health probes (probed every
    /// few seconds by design), the static documentation and the issuer's public documents
    /// do not; everything else does, refusals, unknown paths and bad requests included.
    pub fn is_audited(&self) -> bool {
        !matches!(
            self,
            Route::Live
                | Route::Ready
                | Route::Alive
                | Route::Grpc(GrpcMethod::ServerLive | GrpcMethod::ServerReady)
                | Route::OpenApi
                | Route::DocsRedirect
                | Route::Docs(_)
                | Route::Discovery
                | Route::Jwks
                | Route::Console(ConsoleOp::Asset(_) | ConsoleOp::SignInPage)
        )
    }

    /// Whether the route addresses a model (named in the path, or in a gRPC message).
    pub fn addresses_model(&self) -> bool {
        match self {
            Route::Model { .. }
            | Route::Seldon(_)
            | Route::SeldonFeedback(_)
            | Route::SeldonExplain(_)
            | Route::KServe { .. } => true,
            Route::SeldonGrpc(_) => true,
            Route::Grpc(method) => method.names_model(),
            _ => false,
        }
    }

    /// Whether the route asks for an explanation (V2 `/explain`, KServe `:explain`, Seldon's
    /// `explain`): such requests draw from the model's explain rate budget.
    pub fn is_explain(&self) -> bool {
        matches!(
            self,
            Route::Model { op: ModelOp::Explain, .. }
                | Route::KServe { op: KServeOp::Explain, .. }
                | Route::SeldonExplain(_)
        )
    }

    /// A bounded name of a model endpoint, for metric labels (`-` for other routes).
    pub fn endpoint_label(&self) -> &'static str {
        match self {
            Route::Model { op, .. } => match op {
                ModelOp::Metadata => "v2_metadata",
                ModelOp::Ready => "v2_ready",
                ModelOp::Infer => "v2_infer",
                ModelOp::Feedback => "v2_feedback",
                ModelOp::Explain => "v2_explain",
                ModelOp::Drift => "v2_drift",
            },
            Route::KServe { op, .. } => match op {
                KServeOp::Ready => "kserve_ready",
                KServeOp::Predict => "kserve_predict",
                KServeOp::Explain => "kserve_explain",
            },
            Route::Seldon(_) => "seldon_predict",
            Route::SeldonFeedback(_) => "seldon_feedback",
            Route::SeldonExplain(_) => "seldon_explain",
            Route::SeldonGrpc(SeldonMethod::Predict) => "seldon_grpc_predict",
            Route::SeldonGrpc(SeldonMethod::SendFeedback) => "seldon_grpc_feedback",
            Route::Grpc(GrpcMethod::ModelInfer) => "grpc_model_infer",
            Route::Grpc(GrpcMethod::ModelMetadata) => "grpc_model_metadata",
            Route::Grpc(GrpcMethod::ModelReady) => "grpc_model_ready",
            _ => "-",
        }
    }

    /// The protocol of a request to this route. A request to no route is answered in gRPC
    /// when it says it speaks gRPC.
    pub fn protocol(&self, grpc_content_type: bool) -> Protocol {
        match self {
            Route::Grpc(_) => Protocol::V2Grpc,
            Route::Seldon(_) | Route::SeldonFeedback(_) | Route::SeldonExplain(_) => Protocol::SeldonV1,
            Route::SeldonGrpc(_) => Protocol::SeldonGrpc,
            Route::OAuthToken | Route::Discovery | Route::Jwks => Protocol::OAuth,
            Route::Manage(_) => Protocol::Admin,
            Route::Console(_) => Protocol::Console,
            Route::NotFound | Route::Invalid(_) | Route::MethodNotAllowed(_) if grpc_content_type => {
                Protocol::V2Grpc
            }
            _ => Protocol::V2Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: RouteOptions = RouteOptions { secured: true, console: true };

    fn r(method: Method, path: &str) -> Route {
        Route::resolve(&method, path, ON)
    }

    #[test]
    fn v2_routes_with_decoded_parameters() {
        assert_eq!(
            r(Method::POST, "/v2/models/iris/versions/2.0.0+build.1/infer"),
            Route::Model { name: "iris".into(), version: Some("2.0.0+build.1".into()), op: ModelOp::Infer }
        );
        assert_eq!(
            r(Method::GET, "/v2/models/ir%20is"),
            Route::Model { name: "ir is".into(), version: None, op: ModelOp::Metadata }
        );
        assert_eq!(r(Method::GET, "/v2/models/iris/infer"), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::OPTIONS, "/v2/models/iris/infer"), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::HEAD, "/v2/health/live"), Route::Live);
        assert_eq!(r(Method::GET, "/v2/models/iris/infer/"), Route::NotFound);
        assert_eq!(r(Method::GET, "/v2/models/%FF"), Route::NotFound);
    }

    #[test]
    fn grpc_takes_post_only() {
        let path = "/inference.GRPCInferenceService/ModelInfer";
        assert_eq!(r(Method::POST, path), Route::Grpc(GrpcMethod::ModelInfer));
        assert_eq!(r(Method::OPTIONS, path), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::GET, path), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::POST, "/inference.GRPCInferenceService/Other"), Route::NotFound);
    }

    #[test]
    fn kserve_v1_routes_split_the_verb_after_decoding() {
        let kserve = |name: &str, op| Route::KServe { name: name.into(), op };
        assert_eq!(r(Method::GET, "/v1/models/iris"), kserve("iris", KServeOp::Ready));
        assert_eq!(r(Method::POST, "/v1/models/iris:predict"), kserve("iris", KServeOp::Predict));
        assert_eq!(r(Method::POST, "/v1/models/iris:explain"), kserve("iris", KServeOp::Explain));
        // The request context routes the normalized path, where `%3A` is already `:`.
        let normalized = palisade_policy::normalize_path("/v1/models/iris%3Apredict").unwrap();
        assert_eq!(normalized, "/v1/models/iris:predict");
        assert_eq!(r(Method::POST, &normalized), kserve("iris", KServeOp::Predict));
        assert_eq!(r(Method::POST, "/v1/models/%69ris:predict"), kserve("iris", KServeOp::Predict));
        // An escaped `%` stays a name character: no verb, a model no one can be called.
        assert_eq!(r(Method::GET, "/v1/models/iris%253Apredict"), kserve("iris%3Apredict", KServeOp::Ready));
        assert_eq!(r(Method::GET, "/v1/models/iris:predict"), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::POST, "/v1/models/iris"), Route::MethodNotAllowed("GET, HEAD"));
        assert_eq!(r(Method::POST, "/v1/models/iris:classify"), Route::NotFound);
        assert_eq!(r(Method::POST, "/v1/models/a:b:predict"), kserve("a:b", KServeOp::Predict));
        assert_eq!(r(Method::GET, "/"), Route::Alive);
        assert!(r(Method::GET, "/").is_public(false) && !r(Method::GET, "/").is_audited());
        for path in ["/v1/models/iris", "/v1/models/iris:predict", "/v1/models/iris:explain"] {
            for method in [Method::GET, Method::POST] {
                let route = r(method.clone(), path);
                assert!(!route.is_public(true), "{method} {path}");
                assert!(route.is_audited(), "{method} {path}");
            }
            assert!(r(Method::POST, path).addresses_model() || path == "/v1/models/iris");
        }
    }

    #[test]
    fn seldon_routes_with_and_without_namespace_and_over_grpc() {
        let named = |namespace: &str, name: &str| {
            Route::Seldon(SeldonTarget::Named { namespace: namespace.into(), name: name.into() })
        };
        assert_eq!(r(Method::POST, "/seldon/team/iris/api/v1.0/predictions"), named("team", "iris"));
        assert_eq!(r(Method::POST, "/seldon/iris/api/v1.0/predictions"), named("default", "iris"));
        assert_eq!(r(Method::GET, "/seldon/iris/api/v1.0/predictions"), Route::MethodNotAllowed("POST"));
        let predict = r(Method::POST, "/seldon.protos.Seldon/Predict");
        assert_eq!(predict, Route::SeldonGrpc(SeldonMethod::Predict));
        assert!(predict.addresses_model() && predict.is_audited() && !predict.is_public(true));
        assert_eq!(predict.protocol(true), Protocol::SeldonGrpc);
        assert!(predict.protocol(false).is_grpc());
        assert_eq!(
            r(Method::POST, "/seldon/team/iris/api/v1.0/feedback"),
            Route::SeldonFeedback(SeldonTarget::Named { namespace: "team".into(), name: "iris".into() })
        );
        assert_eq!(r(Method::POST, "/api/v1.0/feedback"), Route::SeldonFeedback(SeldonTarget::Single));
        assert_eq!(r(Method::POST, "/api/v1.0/explain"), Route::SeldonExplain(SeldonTarget::Single));
        assert_eq!(
            r(Method::POST, "/seldon/team/iris/api/v1.0/explain"),
            Route::SeldonExplain(SeldonTarget::Named { namespace: "team".into(), name: "iris".into() })
        );
        assert_eq!(r(Method::GET, "/api/v1.0/explain"), Route::MethodNotAllowed("POST"));
        let explain = r(Method::POST, "/v2/models/iris/versions/2/explain");
        assert_eq!(
            explain,
            Route::Model { name: "iris".into(), version: Some("2".into()), op: ModelOp::Explain }
        );
        assert!(explain.addresses_model() && explain.is_audited() && !explain.is_public(true));
        assert_eq!(r(Method::POST, "/v2/models/iris/explain/x"), Route::NotFound);
        // No gRPC method explains: V2 gRPC and Seldon gRPC have none.
        assert_eq!(r(Method::POST, "/inference.GRPCInferenceService/ModelExplain"), Route::NotFound);
        assert_eq!(r(Method::POST, "/seldon.protos.Seldon/Explain"), Route::NotFound);
        assert_eq!(
            r(Method::POST, "/v2/models/g/feedback"),
            Route::Model { name: "g".into(), version: None, op: ModelOp::Feedback }
        );
        assert_eq!(r(Method::GET, "/v2/models/g/feedback"), Route::MethodNotAllowed("POST"));
        let feedback = r(Method::POST, "/seldon.protos.Seldon/SendFeedback");
        assert_eq!(feedback, Route::SeldonGrpc(SeldonMethod::SendFeedback));
        assert!(feedback.addresses_model() && feedback.is_audited() && !feedback.is_public(true));
        assert_eq!(r(Method::OPTIONS, "/seldon.protos.Seldon/Predict"), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::POST, "/seldon.protos.Seldon/ModelMetadata"), Route::NotFound);
    }

    #[test]
    fn issuer_and_manage_routes_exist_only_with_security() {
        let off = RouteOptions { secured: false, console: false };
        assert_eq!(Route::resolve(&Method::POST, "/oauth/token", off), Route::NotFound);
        assert_eq!(Route::resolve(&Method::GET, "/manage/v1/policies", off), Route::NotFound);
        assert_eq!(r(Method::POST, "/oauth/token"), Route::OAuthToken);
        assert_eq!(
            r(Method::DELETE, "/manage/v1/policies/ns/p"),
            Route::Manage(ManageOp::DeletePolicy { namespace: "ns".into(), name: "p".into() })
        );
    }

    #[test]
    fn console_routes_exist_only_with_the_console() {
        let off = RouteOptions { secured: true, console: false };
        assert_eq!(Route::resolve(&Method::GET, "/console/", off), Route::NotFound);
        assert_eq!(r(Method::GET, "/console/"), Route::Console(ConsoleOp::Page { model: None }));
        assert_eq!(r(Method::GET, "/console"), Route::Console(ConsoleOp::Page { model: None }));
        assert_eq!(
            r(Method::GET, "/console/models/ir%20is"),
            Route::Console(ConsoleOp::Page { model: Some("ir is".into()) })
        );
        assert_eq!(r(Method::GET, "/console/logout"), Route::MethodNotAllowed("POST"));
        assert_eq!(r(Method::POST, "/console/api/models"), Route::MethodNotAllowed("GET, HEAD"));
        assert_eq!(r(Method::GET, "/console/assets/a/b"), Route::NotFound);
        assert_eq!(
            r(Method::GET, "/console/api/audit/12"),
            Route::Console(ConsoleOp::AuditRecord { seq: "12".into() })
        );
        assert_eq!(
            r(Method::DELETE, "/console/api/policies/team-a/p%20q"),
            Route::Console(ConsoleOp::DeletePolicy { namespace: "team-a".into(), name: "p q".into() })
        );
        assert_eq!(r(Method::GET, "/console/api/policies/team-a/p"), Route::MethodNotAllowed("DELETE"));
        // Without a session: the sign-in page, assets and the sign-in steps only.
        let public = ["/console/signin", "/console/assets/console.js", "/console/login", "/console/callback"];
        for path in public {
            assert!(r(Method::GET, path).is_public(false), "{path}");
        }
        assert!(r(Method::POST, "/console/session").is_public(false));
        for (method, path) in [
            (Method::GET, "/console/"),
            (Method::GET, "/console/models/x"),
            (Method::POST, "/console/logout"),
            (Method::GET, "/console/api/me"),
            (Method::GET, "/console/api/models"),
            (Method::GET, "/console/api/models/x"),
            (Method::GET, "/console/api/audit/1"),
            (Method::DELETE, "/console/api/policies/ns/p"),
        ] {
            let route = r(method, path);
            assert!(!route.is_public(true) && route.is_audited(), "{path}");
            assert_eq!(route.protocol(false), Protocol::Console);
        }
        assert!(!r(Method::GET, "/console/assets/console.js").is_audited());
        assert!(r(Method::GET, "/console/callback").is_audited(), "sign-ins are audited");
    }

    #[test]
    fn public_and_audited_are_allow_lists() {
        assert!(r(Method::GET, "/v2/health/live").is_public(true));
        assert!(!r(Method::GET, "/v2/health/live").is_audited());
        assert!(!r(Method::POST, "/v2/health/live").is_public(true), "a POST is no probe");
        assert!(!r(Method::GET, "/openapi.json").is_public(false));
        assert!(r(Method::GET, "/openapi.json").is_public(true));
        assert!(r(Method::POST, "/oauth/token").is_audited());
        for path in ["/v2/models/iris/infer", "/v2/health/x", "/v2/health/live/x", "/nothing"] {
            let route = r(Method::POST, path);
            assert!(!route.is_public(true), "{path}: {route:?}");
            assert!(route.is_audited(), "{path}: {route:?}");
        }
    }

    proptest::proptest! {
        /// The fuzz target `request_context` on stable: any path, normalized once, keeps
        /// its route when normalized again; public routes never address a model; model
        /// routes are always audited.
        #[test]
        fn routes_are_stable_and_model_routes_audited(
            method in proptest::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::OPTIONS, Method::HEAD]),
            raw in "(/|%2[eEfF]|%5[cC]|%2[bB]|%3[aA]|:|\\\\|\\.|v1|v2|models|iris|versions|infer|ready|health|live|docs|predict|seldon|seldon\\.protos\\.Seldon|Predict|inference\\.GRPCInferenceService|ModelInfer|ServerLive|[a-z%0-9+]){0,24}",
        ) {
            if let Ok(path) = palisade_policy::normalize_path(&raw) {
                let again = palisade_policy::normalize_path(&path);
                proptest::prop_assert_eq!(again.as_deref(), Ok(path.as_str()));
                let route = Route::resolve(&method, &path, ON);
                if route.is_public(true) {
                    proptest::prop_assert!(!route.addresses_model());
                }
                if route.addresses_model() {
                    proptest::prop_assert!(route.is_audited());
                }
            }
        }
    }
}
