//! Pushing an image layout to a registry over the OCI distribution API.
//!
//! Each blob (layers, then config) is checked with `HEAD` and, when missing, uploaded in
//! one piece (`POST .../blobs/uploads/`, then `PUT <location>?digest=`); then the
//! manifest is `PUT` under the tag. Registries that answer 401 are followed as Docker
//! does: `Basic` challenges get the credentials, `Bearer` challenges send them to the
//! token service the challenge names (`realm`, `service`, scope
//! `repository:REPO:pull,push`) and use the token it returns.
//!
//! Plain HTTP is used only for a registry on a loopback address; anything else is HTTPS
//! with the system's CA roots. Credentials go only to the registry's own origin and to a
//! token service on HTTPS (or loopback).

use std::fmt;
use std::fs::File;
use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url, header};
use serde::Deserialize;

use crate::layout::LayoutImage;
use crate::oci::{Descriptor, MEDIA_MANIFEST};
use crate::{ImageError, ImageRef, Progress};

/// A registry user name and password (or access token); the password never prints.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a user name and a password or token.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// Where the image went.
    pub reference: ImageRef,
    /// The manifest digest (the image is also at `REGISTRY/REPOSITORY@DIGEST`).
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

/// Pushes the image of `layout` to `target`.
pub fn push(
    layout: &LayoutImage,
    target: &ImageRef,
    credentials: Option<&Credentials>,
    progress: &mut dyn Progress,
) -> Result<PushOutcome, ImageError> {
    let mut session = Session::new(target, credentials)?;
    let mut outcome = PushOutcome {
        reference: target.clone(),
        digest: layout.manifest.digest.clone(),
        uploaded: 0,
        skipped: 0,
    };
    for blob in layout.parsed.layers.iter().chain(std::iter::once(&layout.parsed.config)) {
        progress.step(&format!("push {}", &blob.digest[..19.min(blob.digest.len())]), blob.size);
        if session.upload_blob(layout, blob)? {
            outcome.uploaded += 1;
        } else {
            outcome.skipped += 1;
        }
        progress.advance(blob.size);
    }
    progress.step("push manifest", 0);
    let url = session.url(&format!("/v2/{}/manifests/{}", target.repository, target.tag))?;
    let bytes = layout.manifest_bytes.clone();
    let response = session.send(|client| {
        client.put(url.clone()).header(header::CONTENT_TYPE, MEDIA_MANIFEST).body(bytes.clone())
    })?;
    if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
        return Err(session.refused("the manifest upload", response));
    }
    if let Some(digest) = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok())
        && digest != layout.manifest.digest
    {
        return Err(session
            .error(format!("the registry stored the manifest as {digest}, not {}", layout.manifest.digest)));
    }
    Ok(outcome)
}

/// How requests are authorized, as learnt from the registry's challenges.
enum Authorization {
    None,
    Header(String),
}

struct Session<'a> {
    client: Client,
    target: &'a ImageRef,
    base: Url,
    credentials: Option<&'a Credentials>,
    authorization: Authorization,
}

impl<'a> Session<'a> {
    fn new(target: &'a ImageRef, credentials: Option<&'a Credentials>) -> Result<Self, ImageError> {
        let scheme = if target.is_loopback() { "http" } else { "https" };
        let base =
            Url::parse(&format!("{scheme}://{}/", target.registry)).map_err(|e| ImageError::Reference {
                reference: target.to_string(),
                problem: format!("the registry is not a valid host: {e}"),
            })?;
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            // Whole layers go in one request: the limit is for a stalled registry, not a slow link.
            .timeout(Duration::from_secs(30 * 60))
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Registry {
                registry: target.registry.clone(),
                problem: format!("cannot create an HTTP client: {e}"),
            })?;
        Ok(Session { client, target, base, credentials, authorization: Authorization::None })
    }

    fn error(&self, problem: String) -> ImageError {
        ImageError::Registry { registry: self.target.registry.clone(), problem }
    }

    fn url(&self, path: &str) -> Result<Url, ImageError> {
        self.base.join(path).map_err(|e| self.error(format!("bad URL {path}: {e}")))
    }

    /// A refused request: its status and the registry's error codes and messages.
    fn refused(&self, what: &str, response: Response) -> ImageError {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<RegistryError>,
        }
        #[derive(Deserialize)]
        struct RegistryError {
            code: String,
            #[serde(default)]
            message: String,
        }
        let status = response.status();
        let detail = serde_json::from_slice::<Errors>(&small_body(response))
            .ok()
            .map(|e| {
                e.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
            })
            .filter(|d| !d.is_empty())
            .map_or_else(String::new, |d| format!(" ({d})"));
        self.error(format!("{what} was refused with {status}{detail}"))
    }

    /// Sends a request built by `build`, authorizing it (once more after a 401 challenge).
    fn send(&mut self, build: impl Fn(&Client) -> RequestBuilder) -> Result<Response, ImageError> {
        for attempt in 0..2 {
            let mut request = build(&self.client);
            if let Authorization::Header(value) = &self.authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request.build().map_err(|e| self.error(format!("cannot build a request: {e}")))?;
            if request.url().origin() != self.base.origin() {
                return Err(self.error(format!("it sent the upload to another host ({})", request.url())));
            }
            let response = self
                .client
                .execute(request)
                .map_err(|e| self.error(format!("cannot reach {}: {e}", self.base)))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.authorization = Authorization::Header(self.answer(&challenge)?);
        }
        Err(self.error("it refused the credentials (401)".to_owned()))
    }

    /// The `Authorization` value that answers a `WWW-Authenticate` challenge.
    fn answer(&self, challenge: &str) -> Result<String, ImageError> {
        let challenge = Challenge::parse(challenge);
        let scheme = challenge.scheme.as_str();
        let needs_credentials = || {
            self.error(
                "it asks for credentials: set PALISADE_REGISTRY_USERNAME and PALISADE_REGISTRY_PASSWORD"
                    .to_owned(),
            )
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return self.credentials.map(Credentials::basic).ok_or_else(needs_credentials);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.error(format!("it asks for unsupported authentication `{scheme}`")));
        }
        let param = |name: &str| challenge.param(name);
        let realm =
            param("realm").ok_or_else(|| self.error("its Bearer challenge names no realm".to_owned()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| self.error(format!("its token realm `{realm}` is not a URL: {e}")))?;
        let realm_loopback = url.host().is_some_and(|host| match host {
            url::Host::Domain(d) => d == "localhost",
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        });
        if url.scheme() != "https" && !realm_loopback {
            return Err(
                self.error(format!("its token service {realm} is not HTTPS; credentials are not sent there"))
            );
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = param("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &format!("repository:{}:pull,push", self.target.repository));
        }
        let mut request = self.client.get(url.clone());
        if let Some(credentials) = self.credentials {
            request = request.header(header::AUTHORIZATION, credentials.basic());
        }
        let response =
            request.send().map_err(|e| self.error(format!("cannot reach its token service {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(match response.status() {
                StatusCode::UNAUTHORIZED if self.credentials.is_none() => needs_credentials(),
                status => self.error(format!("its token service refused with {status}")),
            });
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&small_body(response))
            .map_err(|e| self.error(format!("its token service sent no token: {e}")))?;
        let token = token
            .token
            .or(token.access_token)
            .ok_or_else(|| self.error("its token service sent no token".to_owned()))?;
        Ok(format!("Bearer {token}"))
    }

    /// Uploads one blob unless the registry has it; true when uploaded.
    fn upload_blob(&mut self, layout: &LayoutImage, blob: &Descriptor) -> Result<bool, ImageError> {
        let repository = self.target.repository.clone();
        let url = self.url(&format!("/v2/{repository}/blobs/{}", blob.digest))?;
        let head = self.send(|client| client.head(url.clone()))?;
        if head.status() == StatusCode::OK {
            return Ok(false);
        }
        let start = self.url(&format!("/v2/{repository}/blobs/uploads/"))?;
        let started = self.send(|client| client.post(start.clone()).header(header::CONTENT_LENGTH, "0"))?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(self.refused("starting an upload", started));
        }
        let location = started
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error("it started an upload without a Location".to_owned()))?;
        let mut upload =
            self.base.join(location).map_err(|e| self.error(format!("bad upload location: {e}")))?;
        upload.query_pairs_mut().append_pair("digest", &blob.digest);
        let path = layout.blob_path(blob);
        let size = blob.size;
        let response = self.send(|client| {
            let request = client
                .put(upload.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, size.to_string());
            match File::open(&path) {
                Ok(file) => request.body(reqwest::blocking::Body::sized(file, size)),
                // Sent without a body: the registry refuses the digest, and the error says so.
                Err(_) => request,
            }
        })?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused(&format!("uploading blob {}", blob.digest), response));
        }
        Ok(true)
    }
}

/// The first 64 KiB of a response body (errors and tokens are small; a registry is not
/// trusted to bound them).
fn small_body(response: Response) -> Vec<u8> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let _ = response.take(64 * 1024).read_to_end(&mut bytes);
    bytes
}

/// A `WWW-Authenticate` challenge as a registry sends it (RFC 7235): a scheme and its
/// parameters. Quoted values may hold commas and backslash-escaped quotes; parameter names
/// compare without case. Any text parses (what cannot be read is left out), so a hostile
/// registry gets an error about what is missing, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Basic`, `Bearer`, ...
    pub scheme: String,
    /// The parameters in order, names as sent.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Reads a challenge header's value.
    pub fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
        Challenge { scheme: scheme.to_owned(), params: parse_params(rest) }
    }

    /// The value of parameter `name` (any case), if sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `name=value` or `name="quoted, \"value\""` pairs separated by commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((at, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = at + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            },
        };
        params.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(challenge.scheme, "Bearer");
        assert_eq!(
            challenge.params,
            vec![
                ("realm".to_owned(), "https://auth.example.com/token".to_owned()),
                ("service".to_owned(), "registry.example.com".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ]
        );
        assert_eq!(challenge.param("REALM"), Some("https://auth.example.com/token"));
        let basic = Challenge::parse(r#"Basic realm="x""#);
        assert_eq!((basic.scheme.as_str(), basic.param("realm")), ("Basic", Some("x")));
        // Escaped quotes, unquoted values, stray commas and spaces.
        let odd = Challenge::parse(r#"Bearer  , realm = "a\"b,c" , service=svc,, error=insufficient_scope"#);
        assert_eq!(odd.param("realm"), Some(r#"a"b,c"#));
        assert_eq!(odd.param("service"), Some("svc"));
        assert_eq!(odd.param("error"), Some("insufficient_scope"));
        // An unterminated quote keeps what there is; no scheme, no parameters.
        assert_eq!(Challenge::parse(r#"Bearer realm="https://x"#).param("realm"), Some("https://x"));
        assert_eq!(Challenge::parse("").params, vec![]);
        assert_eq!(Challenge::parse("Bearer").params, vec![]);
    }

    proptest::proptest! {
        /// Any text parses; parameters written by a registry read back as written.
        #[test]
        fn any_challenge_parses(text in "\\PC{0,200}") {
            let challenge = Challenge::parse(&text);
            proptest::prop_assert!(text.trim().starts_with(challenge.scheme.as_str()));
        }

        #[test]
        fn written_parameters_read_back(
            params in proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,20}"), 0..5)
        ) {
            let header = params
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(", ");
            let challenge = Challenge::parse(&format!("Bearer {header}"));
            proptest::prop_assert_eq!(challenge.scheme.as_str(), "Bearer");
            proptest::prop_assert_eq!(challenge.params, params);
        }
    }

    #[test]
    fn passwords_do_not_print() {
        let credentials = Credentials::new("robot", "hunter2-secret");
        assert!(!format!("{credentials:?}").contains("hunter2"));
        assert_eq!(credentials.basic(), "Basic cm9ib3Q6aHVudGVyMi1zZWNyZXQ=");
    }
}
