//! Where the archive is: an S3-compatible bucket and prefix, reached with `object_store`,
//! and how a log's files are named there.
//!
//! ```text
//! <prefix>/<replica id>/<log id>/segment-<seq>.jsonl.zst        a sealed segment, byte for byte
//! <prefix>/<replica id>/<log id>/checkpoints/<offset>.jsonl     checkpoints.jsonl from byte <offset>
//! ```
//!
//! The log id (from the genesis checkpoint) keeps two chains of one replica apart (a log
//! moved aside and started again).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::ArchiveError;

/// Where archive credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The environment, as the AWS tools read it: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), or a web identity
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`), else the instance's metadata service.
    Environment,
    /// A file in the AWS shared-credentials format: a `[default]` section (or none) with
    /// `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token`.
    /// Read at every pass, so a rotated key is picked up.
    File(PathBuf),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Environment => f.write_str("Environment"),
            Credentials::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// An access key read from a credentials file; `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id (not secret).
    pub id: String,
    secret: String,
    token: Option<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AccessKey {
    /// Parses a shared-credentials file's text (`file` names it in errors).
    pub fn parse(file: &std::path::Path, text: &str) -> Result<AccessKey, ArchiveError> {
        let (mut id, mut secret, mut token) = (None, None, None);
        let mut in_default = true;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_default = section.trim() == "default";
                continue;
            }
            if !in_default {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else { continue };
            let value = value.trim().to_owned();
            match name.trim() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(AccessKey { id, secret, token })
            }
            _ => Err(ArchiveError::Config(format!(
                "{}: no aws_access_key_id and aws_secret_access_key in its [default] section (the AWS shared-credentials format)",
                file.display()
            ))),
        }
    }
}

/// The archive's settings (`audit.archive` in the platform configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveTarget {
    /// The bucket.
    pub bucket: String,
    /// The key prefix under which every replica's trail goes (may be empty).
    pub prefix: String,
    /// The S3 endpoint (`https://s3.eu-central-1.amazonaws.com`, a MinIO or Ceph URL);
    /// `None`: AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when the store does not care).
    pub region: String,
    /// Where credentials come from.
    pub credentials: Credentials,
    /// Allow an `http://` endpoint (a store on a trusted network or loopback only: the
    /// requests are signed, not encrypted).
    pub allow_http: bool,
    /// Longest one request may take, retries included.
    pub request_timeout: Duration,
}

impl ArchiveTarget {
    /// A target from an `s3://bucket/prefix` URL, the other settings at their defaults.
    pub fn from_url(url: &str) -> Result<ArchiveTarget, ArchiveError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| ArchiveError::Config(format!("{url:?} is not an s3://BUCKET/PREFIX URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ArchiveError::Config(format!("{url:?} names no bucket: use s3://BUCKET/PREFIX")));
        }
        Ok(ArchiveTarget {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            credentials: Credentials::Environment,
            allow_http: false,
            request_timeout: Duration::from_secs(60),
        })
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// An open archive: the store and the prefix.
#[derive(Clone)]
pub struct Archive {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) root: Key,
    pub(crate) target: ArchiveTarget,
}

impl fmt::Debug for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archive").field("url", &self.target.url()).finish()
    }
}

impl Archive {
    /// Connects (lazily: no request is made here) to the archive `target` describes.
    pub fn open(target: &ArchiveTarget) -> Result<Archive, ArchiveError> {
        if target.bucket.is_empty() {
            return Err(ArchiveError::Config("no bucket given".into()));
        }
        if let Some(endpoint) = &target.endpoint
            && endpoint.starts_with("http://")
            && !target.allow_http
        {
            return Err(ArchiveError::Config(format!(
                "the endpoint {endpoint} is plain HTTP: use https://, or set allowHttp (a trusted network only)"
            )));
        }
        let mut builder = match &target.credentials {
            Credentials::Environment => AmazonS3Builder::from_env(),
            Credentials::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ArchiveError::Config(format!("{}: cannot read the credentials file: {e}", path.display()))
                })?;
                let key = AccessKey::parse(path, &text)?;
                let mut builder =
                    AmazonS3Builder::new().with_access_key_id(key.id).with_secret_access_key(key.secret);
                if let Some(token) = key.token {
                    builder = builder.with_token(token);
                }
                builder
            }
        };
        builder = builder
            .with_bucket_name(&target.bucket)
            .with_region(&target.region)
            .with_allow_http(target.allow_http)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: target.request_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(target.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(target.allow_http),
            );
        if let Some(endpoint) = &target.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| ArchiveError::Config(format!("{}: {e}", target.url())))?;
        let root = Key::from(target.prefix.as_str());
        Ok(Archive { store: Arc::new(store), root, target: target.clone() })
    }

    /// The archive's URL, for messages.
    pub fn url(&self) -> String {
        self.target.url()
    }

    /// The object store client (for tools and tests that read or change objects).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where a log's objects go.
    pub fn log_root(&self, replica_id: &str, log_id: &str) -> Key {
        self.root.clone().join(replica_id).join(log_id)
    }

    /// `s3://bucket/key`, for messages.
    pub(crate) fn name(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.target.bucket)
    }
}

/// The key of a log's checkpoints from byte `offset` of `checkpoints.jsonl`.
pub(crate) fn checkpoints_key(log_root: &Key, offset: u64) -> Key {
    log_root.clone().join("checkpoints").join(format!("{offset:020}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_keys_parse_from_the_default_section_and_never_show_their_secret() {
        let file = std::path::Path::new("creds");
        let key = AccessKey::parse(
            file,
            "[other]\naws_access_key_id = NO\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\naws_session_token = t0k\n",
        )
        .unwrap();
        assert_eq!(key.id, "AKIA1");
        let shown = format!("{key:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k"), "{shown}");
        let err = AccessKey::parse(file, "[other]\naws_access_key_id = A\naws_secret_access_key = B\n")
            .unwrap_err();
        assert!(err.to_string().contains("creds") && err.to_string().contains("[default]"), "{err}");
    }

    #[test]
    fn urls_give_bucket_and_prefix_and_plain_http_needs_a_yes() {
        let t = ArchiveTarget::from_url("s3://trails/prod/eu/").unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("trails", "prod/eu"));
        assert_eq!(t.url(), "s3://trails/prod/eu");
        assert!(ArchiveTarget::from_url("https://x").is_err());
        assert!(ArchiveTarget::from_url("s3:///x").is_err());
        let plain = ArchiveTarget { endpoint: Some("http://127.0.0.1:9".into()), ..t.clone() };
        let err = Archive::open(&plain).unwrap_err();
        assert!(err.to_string().contains("allowHttp"), "{err}");
        assert!(Archive::open(&ArchiveTarget { allow_http: true, ..plain }).is_ok());
    }
}
