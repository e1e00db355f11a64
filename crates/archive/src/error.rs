//! The crate's one error type.

/// Everything that can go wrong while archiving or reading an archive.
///
/// Messages name the object or file involved and never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive's settings cannot be used (a missing bucket, an unreadable credentials
    /// file, an `http://` endpoint without `allowHttp`).
    #[error("audit archive: {0}")]
    Config(String),
    /// The object store refused or failed a request (after its retries).
    #[error("audit archive: {action} {object}: {source}")]
    Store {
        /// What was being done (`cannot upload`, `cannot read`, ...).
        action: &'static str,
        /// The object (`s3://bucket/key`).
        object: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// An archived object holds other bytes than the local file it copies: it is never
    /// overwritten (one of the copies was altered, or another log wrote there).
    #[error("audit archive: {object} {what}")]
    Differs {
        /// The object.
        object: String,
        /// How it differs, and from what.
        what: String,
    },
    /// The local trail could not be read.
    #[error(transparent)]
    Audit(#[from] palisade_audit::AuditError),
    /// A local file (the archive state, a work file) could not be read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    pub(crate) fn io(
        path: impl Into<std::path::PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        ArchiveError::Io { path: path.into(), action, source }
    }
}
