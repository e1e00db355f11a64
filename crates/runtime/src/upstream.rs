//! Models served by an upstream Open Inference Protocol (V2) server over HTTP.
//!
//! Palisade stays the front door: the caller is authenticated, authorized, audited and
//! limited by the server's layers, its inputs are checked against the signature the manifest
//! declares, and only then does [`UpstreamModel::infer`] send a V2 JSON request to
//! `{url}/v2/models/{model}[/versions/{version}]/infer`, over plaintext, TLS, or mutual TLS
//! with Palisade's workload certificate. The answer is parsed as untrusted input and checked
//! against the declared outputs before anything reaches the caller.
//!
//! Calls run on the async runtime (they wait on the network, not on a CPU), through one
//! connection pool per model. Failures are classified so the server can answer 502 (the
//! upstream is unreachable, failed, or answered nonsense), 504 (no answer in time) or 400 (the
//! upstream refused the input); the classification keeps the internal address for the log
//! and leaves it out of what the caller sees.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use palisade_bundle::manifest::UpstreamSpec;
use palisade_core::{ModelSignature, Tensor};
use palisade_protocol::v2::HEADER_CONTENT_LENGTH;
use palisade_protocol::v2::client::{encode_infer_request, parse_error_message, parse_infer_response};
use palisade_tls::{ReloadingCert, TrustAnchors};
use reqwest::{StatusCode, Url, header};

use crate::RuntimeError;

/// Largest upstream response body read, in bytes; a larger one is an invalid response.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest upstream error message passed on to a caller.
const MAX_MESSAGE_CHARS: usize = 256;
/// Longest a readiness probe waits, whatever the model's timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What an upstream client needs from the server that runs it.
#[derive(Clone, Default)]
pub struct UpstreamContext {
    /// Palisade's workload certificate (hot-reloaded), presented to upstream servers whose
    /// manifest sets `tls.mutual`.
    pub workload_cert: Option<Arc<ReloadingCert>>,
    /// Trust anchors for `https` upstreams whose manifest names no CA: the serving home's
    /// built-in CA.
    pub default_roots: Option<TrustAnchors>,
    /// Only check the manifest (for `palisade build`): the TLS material of the serving host
    /// is not needed yet, and nothing is contacted.
    pub check_only: bool,
    /// Where upstream calls may go (the default refuses loopback, link-local and metadata
    /// addresses; see [`crate::egress`]).
    pub egress: Arc<crate::EgressPolicy>,
}

impl fmt::Debug for UpstreamContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamContext")
            .field("workload_cert", &self.workload_cert.as_ref().map(|c| c.cert_path().to_owned()))
            .field("default_roots", &self.default_roots.as_ref().map(|r| r.certificates().len()))
            .field("check_only", &self.check_only)
            .field("egress", &self.egress)
            .finish()
    }
}

/// How a model call is made. On whose behalf: passed on to an upstream in headers
/// (`x-request-id`, `traceparent`) and as the V2 request `id`, so the two servers' logs and
/// traces join up. And whether other calls of the same request run alongside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext<'a> {
    /// The caller's request id at Palisade.
    pub request_id: Option<&'a str>,
    /// The W3C trace context naming Palisade's span, as the upstream's parent.
    pub traceparent: Option<&'a str>,
    /// The caller's verified bearer token, sent on (as `Authorization: Bearer`) only by an
    /// upstream model made with [`UpstreamModel::forwarding_credentials`].
    pub credential: Option<&'a str>,
    /// Other calls of the same request run alongside this one (a graph node's children):
    /// an in-process model then runs on an inference thread unless it is trivially cheap
    /// (see `Engine::infer_alongside`), so that the calling task does not run the calls one
    /// after the other.
    pub alongside: bool,
}

/// Why an upstream call failed. The `Display` form names the upstream and is for the log;
/// [`UpstreamError::public_message`] is what a caller may see.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No HTTP answer: connection refused or reset, name resolution, TLS handshake.
    #[error("upstream {target}: no answer: {detail}")]
    Unreachable {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// The transport error and its causes.
        detail: String,
    },
    /// No complete answer within the model's `timeout`.
    #[error("upstream {target}: no answer within {}", palisade_core::format_duration(*timeout))]
    Timeout {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The upstream refused the request as invalid (HTTP 400 or 422): the caller's input.
    #[error("upstream {target}: HTTP {status}: {message}")]
    Rejected {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// The status.
        status: u16,
        /// The upstream's message, clipped.
        message: String,
    },
    /// The upstream failed (5xx), is busy (429), or refused Palisade itself (401, 403, 404,
    /// a redirect...).
    #[error("upstream {target}: HTTP {status}: {message}")]
    Failed {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// The status.
        status: u16,
        /// The upstream's message, clipped.
        message: String,
    },
    /// The model's `maxConcurrency` calls are already in flight.
    #[error("upstream {target}: {limit} calls already in flight (maxConcurrency)")]
    Saturated {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// The limit.
        limit: usize,
    },
    /// The answer is not a V2 response, or does not match the declared outputs.
    #[error("upstream {target}: unusable response: {detail}")]
    InvalidResponse {
        /// The upstream model (URL and name), for the log.
        target: String,
        /// What is wrong, and how to fix it when it is a configuration mismatch.
        detail: String,
    },
}

impl UpstreamError {
    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "upstream_unreachable",
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::Rejected { .. } => "upstream_rejected",
            UpstreamError::Failed { .. } => "upstream_failed",
            UpstreamError::Saturated { .. } => "upstream_saturated",
            UpstreamError::InvalidResponse { .. } => "upstream_invalid_response",
        }
    }

    /// What the caller may see: no addresses, no internal detail; the upstream's own words
    /// only when it refused the caller's input.
    pub fn public_message(&self) -> String {
        match self {
            UpstreamError::Unreachable { .. } => "the upstream model server could not be reached".to_owned(),
            UpstreamError::Timeout { timeout, .. } => format!(
                "the upstream model server did not answer within {}",
                palisade_core::format_duration(*timeout)
            ),
            UpstreamError::Rejected { message, .. } => {
                format!("the upstream model server refused the request: {message}")
            }
            UpstreamError::Failed { status, .. } => {
                format!("the upstream model server failed (HTTP {status})")
            }
            UpstreamError::Saturated { .. } => {
                "the upstream model server is at its concurrency limit; retry later".to_owned()
            }
            UpstreamError::InvalidResponse { .. } => {
                "the upstream model server sent a response Palisade cannot use".to_owned()
            }
        }
    }

    /// The upstream's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Rejected { status, .. } | UpstreamError::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A model served by an upstream V2 server: its declared signature and a pooled HTTP client.
pub struct UpstreamModel {
    signature: ModelSignature,
    client: reqwest::Client,
    infer_url: Url,
    ready_url: Url,
    target: String,
    timeout: Duration,
    in_flight: tokio::sync::Semaphore,
    max_concurrency: usize,
    max_body_bytes: Option<usize>,
    forward_credentials: bool,
}

impl fmt::Debug for UpstreamModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamModel").field("target", &self.target).finish_non_exhaustive()
    }
}

impl UpstreamModel {
    /// Sets the model's own request body limit (`limits.maxBodyBytes`).
    pub fn with_max_body_bytes(mut self, limit: Option<usize>) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// The model's own request body limit, if it has one.
    pub fn max_body_bytes(&self) -> Option<usize> {
        self.max_body_bytes
    }

    /// Sends the caller's bearer token on with each call, so that the upstream (another
    /// Palisade: a variant behind Palisade's router) authenticates, authorizes and audits
    /// the same caller again. Never for a manifest's upstream: a third-party server has no
    /// business with the caller's token.
    pub fn forwarding_credentials(mut self) -> Self {
        self.forward_credentials = true;
        self
    }

    /// Whether calls carry the caller's token ([`UpstreamModel::forwarding_credentials`]).
    pub fn forwards_credentials(&self) -> bool {
        self.forward_credentials
    }

    /// Builds the client for `spec`, serving the model `name` (the upstream model name when
    /// the spec has none) with the declared `signature`. `dir` is the bundle directory, where
    /// the CA file the manifest names was copied. Nothing is contacted.
    pub fn new(
        name: &str,
        spec: &UpstreamSpec,
        signature: ModelSignature,
        dir: &Path,
        context: &UpstreamContext,
    ) -> Result<UpstreamModel, RuntimeError> {
        let manifest = dir.join(palisade_bundle::manifest::MANIFEST_FILE);
        let load_error = |field: &str, message: String| RuntimeError::Load {
            path: manifest.clone(),
            message: format!("field `{field}`: {message}"),
        };
        let model = spec.model.as_deref().unwrap_or(name);
        let mut base = vec!["v2", "models", model];
        if let Some(version) = &spec.version {
            base.extend(["versions", version.as_str()]);
        }
        let infer_url = spec.url.join(&[base.as_slice(), &["infer"]].concat());
        let ready_url = spec.url.join(&[base.as_slice(), &["ready"]].concat());
        let target = match &spec.version {
            Some(version) => format!("{} model {model} version {version}", spec.url),
            None => format!("{} model {model}", spec.url),
        };

        // Refused destinations are refused here, before any connection: an IP address now, a
        // DNS name by the resolver at every connection. `palisade build` has no platform
        // config, so loopback (allowed by name or not) is decided when the server loads it.
        let url = spec.url.as_url();
        if let Err(refused) = context.egress.check_url(url)
            && !(context.check_only && is_loopback(spec.url.host()))
        {
            return Err(load_error("model.upstream.url", refused));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let mut builder = reqwest::Client::builder()
            .dns_resolver(context.egress.resolver(port))
            .timeout(spec.timeout)
            .connect_timeout(spec.connect_timeout)
            .pool_max_idle_per_host(spec.pool.max_idle_per_host)
            .pool_idle_timeout(spec.pool.idle_timeout)
            // A redirect could send the caller's tensors elsewhere: it is an upstream failure.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")));

        if let Some(tls) = &spec.tls {
            let roots = match &tls.ca {
                Some(ca) => Some(TrustAnchors::from_pem_file(&ca.under(dir)).map_err(|e| {
                    load_error("model.upstream.tls.ca", format!("{e}; give the PEM certificate(s) of the CA that issued the upstream's certificate"))
                })?),
                None => context.default_roots.clone(),
            };
            let identity = match (tls.mutual, &context.workload_cert) {
                (true, Some(cert)) => Some(cert.clone()),
                (true, None) if !context.check_only => {
                    return Err(load_error(
                        "model.upstream.tls.mutual",
                        "mutual TLS needs Palisade's workload certificate, and none is configured: start `palisade serve` with --workload-identity NS/SA (issued by the built-in CA, see docs/mtls.md) or with --workload-cert and --workload-key".to_owned(),
                    ));
                }
                _ => None,
            };
            match roots {
                Some(roots) => {
                    let config = palisade_tls::client_config(&roots, identity)
                        .map_err(|e| load_error("model.upstream.tls", e.to_string()))?;
                    let mut config = Arc::unwrap_or_clone(config);
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                    builder = builder.tls_backend_preconfigured(config).https_only(true);
                }
                None if context.check_only => {}
                None => {
                    return Err(load_error(
                        "model.upstream.tls.ca",
                        "the upstream is https but no CA is named and this home has no built-in CA: add `tls: {ca: FILE}` (the PEM CA of the upstream's certificate) next to palisade.yaml and rebuild, or create the CA with `palisade ca init`".to_owned(),
                    ));
                }
            }
        } else if !context.check_only && !is_loopback(spec.url.host()) {
            tracing::warn!(
                upstream = %target,
                "upstream reached over plaintext HTTP: tensors travel unencrypted; use an https URL"
            );
        }
        let client = builder
            .build()
            .map_err(|e| load_error("model.upstream", format!("cannot build the HTTP client: {e}")))?;
        Ok(UpstreamModel {
            signature,
            client,
            infer_url,
            ready_url,
            target,
            timeout: spec.timeout,
            in_flight: tokio::sync::Semaphore::new(spec.max_concurrency),
            max_concurrency: spec.max_concurrency,
            max_body_bytes: None,
            forward_credentials: false,
        })
    }

    /// The declared inputs and outputs.
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// The upstream model, as `URL model NAME [version V]` (for logs, never for callers).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The timeout of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends inputs (already checked against the signature) and returns every declared
    /// output, in signature order.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        call: CallContext<'_>,
    ) -> Result<Vec<Tensor>, UpstreamError> {
        let _permit = self.in_flight.try_acquire().map_err(|_| UpstreamError::Saturated {
            target: self.target.clone(),
            limit: self.max_concurrency,
        })?;
        let outputs: Vec<&str> = self.signature.outputs.iter().map(|o| o.name.as_str()).collect();
        let body = encode_infer_request(call.request_id, &inputs, &outputs);
        let mut request = self
            .client
            .post(self.infer_url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body);
        if let Some(id) = call.request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(traceparent) = call.traceparent {
            request = request.header("traceparent", traceparent);
        }
        if self.forward_credentials
            && let Some(token) = call.credential
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let json_len = match response.headers().get(HEADER_CONTENT_LENGTH) {
            None => None,
            Some(value) => {
                Some(value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| {
                    self.invalid("its Inference-Header-Content-Length is not a byte count".to_owned())
                })?)
            }
        };
        let bytes = self.read_body(response).await?;
        if !status.is_success() {
            return Err(self.status_error(status, &bytes));
        }
        let parsed = parse_infer_response(&bytes, json_len).map_err(|e| self.invalid(e.to_string()))?;
        self.match_outputs(parsed.outputs)
    }

    /// Asks the upstream whether the model is ready (`GET .../ready`, at most 5 s).
    pub async fn ready(&self) -> Result<(), UpstreamError> {
        let response = self
            .client
            .get(self.ready_url.clone())
            .timeout(self.timeout.min(READY_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = self.read_body(response).await?;
        if status.is_success() { Ok(()) } else { Err(self.status_error(status, &bytes)) }
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(self.invalid(format!("the body is larger than {MAX_RESPONSE_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(self.invalid(format!("the body is larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Every declared output, from the upstream's answer, in signature order: present, of
    /// the declared datatype and a fitting shape. Extra outputs are dropped.
    fn match_outputs(&self, mut given: Vec<Tensor>) -> Result<Vec<Tensor>, UpstreamError> {
        let mut outputs = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let Some(pos) = given.iter().position(|t| t.name() == spec.name) else {
                let names: Vec<&str> = given.iter().map(Tensor::name).collect();
                return Err(self.invalid(format!(
                    "output `{}` is missing (it answered {names:?}); fix `model.outputs` in palisade.yaml to name outputs the upstream model has",
                    spec.name
                )));
            };
            let tensor = given.swap_remove(pos);
            if tensor.datatype() != spec.datatype {
                return Err(self.invalid(format!(
                    "output `{}` is {} but palisade.yaml declares {}; fix `model.outputs`",
                    spec.name,
                    tensor.datatype(),
                    spec.datatype
                )));
            }
            if !spec.accepts_shape(tensor.shape()) {
                return Err(self.invalid(format!(
                    "output `{}` has shape {:?} but palisade.yaml declares {:?} (-1 is any size); fix `model.outputs`",
                    spec.name,
                    tensor.shape(),
                    spec.shape_i64()
                )));
            }
            outputs.push(tensor);
        }
        Ok(outputs)
    }

    fn invalid(&self, detail: String) -> UpstreamError {
        UpstreamError::InvalidResponse { target: self.target.clone(), detail }
    }

    fn transport_error(&self, err: &reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            return UpstreamError::Timeout { target: self.target.clone(), timeout: self.timeout };
        }
        let mut detail = error_chain(err);
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("alert") || lower.contains("tls") {
            detail.push_str(
                " (TLS: check that `model.upstream.tls.ca` holds the CA of the upstream's certificate, that the certificate names the URL's host, and, with `mutual: true`, that the upstream trusts Palisade's workload certificate)",
            );
        }
        UpstreamError::Unreachable { target: self.target.clone(), detail }
    }

    fn status_error(&self, status: StatusCode, body: &[u8]) -> UpstreamError {
        let message = parse_error_message(body)
            .map(|m| clip_message(&m))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
        let target = self.target.clone();
        let status = status.as_u16();
        match status {
            400 | 422 => UpstreamError::Rejected { target, status, message },
            _ => UpstreamError::Failed { target, status, message },
        }
    }
}

/// An error and its causes, `a: b: c`, without repeats (reqwest repeats hyper's text).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = next {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

/// An upstream message as a caller may see it: one line, printable, at most 256 characters.
fn clip_message(message: &str) -> String {
    let mut clipped: String =
        message.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_MESSAGE_CHARS).collect();
    if message.chars().count() > MAX_MESSAGE_CHARS {
        clipped.push('…');
    }
    clipped
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    //! Against real sockets: a small HTTP/1.1 server that answers what each test scripts.

    use std::sync::Mutex;

    use palisade_bundle::Manifest;
    use palisade_core::TensorData;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// One scripted answer: a delay, then raw bytes (status line, headers, body).
    #[derive(Clone)]
    struct Answer {
        delay: Duration,
        bytes: Vec<u8>,
    }

    fn answer(status: &str, body: &str) -> Answer {
        Answer {
            delay: Duration::ZERO,
            bytes: format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        }
    }

    /// Serves `answer` to every request; returns the base URL and the requests received.
    async fn upstream(answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                                })
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                log.lock().unwrap().push(text);
                                tokio::time::sleep(answer.delay).await;
                                let _ = socket.write_all(&answer.bytes).await;
                                request.clear();
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}"), seen)
    }

    fn model(url: &str, extra: &str) -> UpstreamModel {
        model_timing_out(url, "2s", extra)
    }

    fn model_timing_out(url: &str, timeout: &str, extra: &str) -> UpstreamModel {
        let text = format!(
            "name: iris\nversion: \"1\"\nowners: [a@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: {url}\n    model: iris-sk\n    timeout: {timeout}\n{extra}  inputs: [{{name: X, datatype: FP32, shape: [-1, 4]}}]\n  outputs:\n    - {{name: predict, datatype: INT64, shape: [-1, 1]}}\n    - {{name: predict_proba, datatype: FP64, shape: [-1, 3]}}\n"
        );
        let manifest = Manifest::parse(Path::new("palisade.yaml"), text.as_bytes()).unwrap();
        let spec = manifest.model.as_ref().unwrap().upstream().unwrap();
        let signature = ModelSignature {
            inputs: manifest.model.as_ref().unwrap().inputs.clone().unwrap(),
            outputs: manifest.model.as_ref().unwrap().outputs.clone().unwrap(),
        };
        // The test servers listen on 127.0.0.1, which the platform must allow by name.
        let egress =
            crate::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
        let context = UpstreamContext { egress: Arc::new(egress), ..UpstreamContext::default() };
        UpstreamModel::new("iris", spec, signature, Path::new("."), &context).unwrap()
    }

    fn row() -> Vec<Tensor> {
        vec![Tensor::new("X", vec![1, 4], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2])).unwrap()]
    }

    const GOOD: &str = r#"{"model_name":"iris-sk","outputs":[
        {"name":"predict_proba","shape":[1,3],"datatype":"FP64","data":[0.9,0.1,0.0]},
        {"name":"extra","shape":[1],"datatype":"FP32","data":[1]},
        {"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}"#;

    #[tokio::test]
    async fn sends_v2_json_and_returns_the_declared_outputs_in_order() {
        let (url, seen) = upstream(answer("200 OK", GOOD)).await;
        let model = model(&url, "");
        let outputs = model
            .infer(
                row(),
                CallContext {
                    request_id: Some("req-1"),
                    traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    // A manifest's upstream never gets the caller's token.
                    credential: Some("caller-token"),
                    alongside: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(outputs.iter().map(Tensor::name).collect::<Vec<_>>(), ["predict", "predict_proba"]);
        assert_eq!(outputs[0].data(), &TensorData::Int64(vec![0]));
        let request = seen.lock().unwrap()[0].clone();
        assert!(request.starts_with("POST /v2/models/iris-sk/infer HTTP/1.1\r\n"), "{request}");
        assert!(request.to_ascii_lowercase().contains("x-request-id: req-1"), "{request}");
        assert!(
            request.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "{request}"
        );
        assert!(!request.to_ascii_lowercase().contains("authorization"), "{request}");
        assert!(
            request.ends_with(r#"{"id":"req-1","inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"predict"},{"name":"predict_proba"}]}"#),
            "{request}"
        );
        // Connections are pooled: a second call reuses the first one.
        model.infer(row(), CallContext::default()).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn only_a_forwarding_upstream_gets_the_callers_token() {
        let (url, seen) = upstream(answer("200 OK", GOOD)).await;
        let model = model(&url, "").forwarding_credentials();
        let call = CallContext { credential: Some("caller-token"), ..CallContext::default() };
        model.infer(row(), call).await.unwrap();
        model.infer(row(), CallContext::default()).await.unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen[0].contains("authorization: Bearer caller-token\r\n"), "{}", seen[0]);
        assert!(!seen[1].to_ascii_lowercase().contains("authorization"), "{}", seen[1]);
    }

    #[tokio::test]
    async fn versioned_paths_and_readiness() {
        let (url, seen) = upstream(answer("200 OK", "")).await;
        let model = model(&url, "    version: \"v2\"\n");
        model.ready().await.unwrap();
        assert!(seen.lock().unwrap()[0].starts_with("GET /v2/models/iris-sk/versions/v2/ready HTTP/1.1"));
        let (url, _) = upstream(answer("503 Service Unavailable", r#"{"error":"loading"}"#)).await;
        let err = model_ready_error(&url).await;
        assert!(matches!(err, UpstreamError::Failed { status: 503, .. }), "{err}");
    }

    async fn model_ready_error(url: &str) -> UpstreamError {
        model(url, "").ready().await.unwrap_err()
    }

    #[tokio::test]
    async fn failures_are_classified_and_public_messages_hide_the_address() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "400 Bad Request",
                r#"{"error":"Expected shape (4,), got (3,)"}"#,
                "upstream_rejected",
                "refused the request: Expected shape (4,), got (3,)",
            ),
            (
                "422 Unprocessable Entity",
                r#"{"detail":"field required"}"#,
                "upstream_rejected",
                "field required",
            ),
            (
                "500 Internal Server Error",
                r#"{"error":"Traceback at /srv/model.py"}"#,
                "upstream_failed",
                "failed (HTTP 500)",
            ),
            (
                "404 Not Found",
                r#"{"error":"Model iris-sk not found"}"#,
                "upstream_failed",
                "failed (HTTP 404)",
            ),
            ("302 Found", "", "upstream_failed", "failed (HTTP 302)"),
            ("200 OK", "<html>", "upstream_invalid_response", "cannot use"),
            (
                "200 OK",
                r#"{"outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}"#,
                "upstream_invalid_response",
                "cannot use",
            ),
        ];
        for (status, body, kind, public) in cases {
            let (url, _) = upstream(answer(status, body)).await;
            let err = model(&url, "").infer(row(), CallContext::default()).await.unwrap_err();
            assert_eq!(err.kind(), *kind, "{status}: {err}");
            assert!(err.public_message().contains(public), "{status}: {}", err.public_message());
            assert!(!err.public_message().contains("127.0.0.1"), "{}", err.public_message());
            assert!(!err.public_message().contains("/srv/"), "{}", err.public_message());
            // The log line names the upstream.
            assert!(err.to_string().contains(&url), "{err}");
        }
        // A declared output the upstream does not have: the log says what to fix.
        let (url, _) = upstream(answer(
            "200 OK",
            r#"{"outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}"#,
        ))
        .await;
        let err = model(&url, "").infer(row(), CallContext::default()).await.unwrap_err().to_string();
        assert!(
            err.contains("output `predict_proba` is missing") && err.contains("fix `model.outputs`"),
            "{err}"
        );
        let wrong_type = GOOD.replace(r#""datatype":"FP64""#, r#""datatype":"FP32""#);
        let (url, _) = upstream(answer("200 OK", &wrong_type)).await;
        let err = model(&url, "").infer(row(), CallContext::default()).await.unwrap_err().to_string();
        assert!(err.contains("is FP32 but palisade.yaml declares FP64"), "{err}");
        // Long or multi-line upstream messages are clipped to one short line.
        let long = format!(r#"{{"error":"line1\nline2 {}"}}"#, "x".repeat(1000));
        let (url, _) = upstream(answer("400 Bad Request", &long)).await;
        let message =
            model(&url, "").infer(row(), CallContext::default()).await.unwrap_err().public_message();
        assert!(!message.contains('\n') && message.chars().count() < 320, "{message}");
    }

    /// The "slow upstream" is a real socket that accepts and reads the request, then waits
    /// longer than the model's timeout before answering.
    #[tokio::test]
    async fn a_slow_upstream_is_a_timeout() {
        let (url, _) = upstream(Answer { delay: Duration::from_secs(30), ..answer("200 OK", GOOD) }).await;
        let model = model_timing_out(&url, "300ms", "");
        let started = std::time::Instant::now();
        let err = model.infer(row(), CallContext::default()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.public_message(), "the upstream model server did not answer within 300ms");
    }

    #[tokio::test]
    async fn calls_beyond_max_concurrency_are_refused_at_once() {
        let (url, seen) =
            upstream(Answer { delay: Duration::from_millis(500), ..answer("200 OK", GOOD) }).await;
        let model = Arc::new(model(&url, "    maxConcurrency: 1\n"));
        let first = tokio::spawn({
            let model = model.clone();
            async move { model.infer(row(), CallContext::default()).await }
        });
        while seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = model.infer(row(), CallContext::default()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Saturated { limit: 1, .. }), "{err}");
        first.await.unwrap().unwrap();
        // The permit is back once the call finished.
        model.infer(row(), CallContext::default()).await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = model(&url, "").infer(row(), CallContext::default()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err}");
        assert_eq!(err.public_message(), "the upstream model server could not be reached");
        assert!(err.to_string().contains(&url), "the log names it: {err}");
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused_at_load_naming_the_field() {
        let text = "name: iris\nversion: \"1\"\nowners: [a@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: https://up:1\n    tls: {mutual: true}\n  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: y, datatype: FP32, shape: [-1]}]\n";
        let manifest = Manifest::parse(Path::new("palisade.yaml"), text.as_bytes()).unwrap();
        let spec = manifest.model.as_ref().unwrap().upstream().unwrap();
        let build = |context: &UpstreamContext| {
            UpstreamModel::new("iris", spec, ModelSignature::default(), Path::new("/b"), context).map(|_| ())
        };
        // Checking a manifest at build time needs no TLS material.
        build(&UpstreamContext { check_only: true, ..UpstreamContext::default() }).unwrap();
        let err = build(&UpstreamContext::default()).unwrap_err().to_string();
        assert!(
            err.contains("field `model.upstream.tls.mutual`") && err.contains("--workload-cert"),
            "{err}"
        );
    }
}
