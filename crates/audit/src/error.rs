//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while appending to, opening or reading an audit log.
///
/// Messages name the file involved and never contain key material or payloads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file or directory could not be read, written or created.
    #[error("{}: {action}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`cannot read`, `cannot create`, ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The log cannot make records durable right now (disk full, I/O error, ...).
    ///
    /// In strict mode every append fails with this error until a later write succeeds; the
    /// server answers 503 rather than serving a prediction without its record.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// The log was closed; no more records are accepted.
    #[error("audit log is closed")]
    Closed,
    /// Another process (or another [`AuditLog`](crate::AuditLog) in this one) holds the
    /// log's directory.
    #[error("{}: audit log is in use by another writer", path.display())]
    Locked {
        /// The log's directory.
        path: PathBuf,
    },
    /// A file of the log is not in the expected format (found while opening or reading).
    #[error("{}{}: {what}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when the problem is one line.
        line: Option<u64>,
        /// What is wrong.
        what: String,
    },
    /// The signing key or a public key is missing, unreadable or malformed, or does not
    /// match the log.
    #[error("audit key: {0}")]
    Key(String),
    /// The signing key's file or directory is unsafe: a symbolic link, or open to group or
    /// others. Refused, as ssh refuses such keys.
    #[error("{}: {what}; fix: {fix}", path.display())]
    InsecureKey {
        /// The key file or its directory.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
        /// The command or step that fixes it.
        fix: String,
    },
    /// The writer cannot vouch for the log's chain head, so it will not sign it: the
    /// genesis or last checkpoint is missing or invalid, contradicts the chain, or more
    /// records follow it than a crash can leave.
    #[error(
        "{}: {problem}. The audit writer will not sign a chain head it cannot vouch for: run `palisade audit verify --dir {}` to see what happened, then move the directory aside (mv {} {}.suspect) so that the next start begins a new chain",
        dir.display(), dir.display(), dir.display(), dir.display()
    )]
    Untrusted {
        /// The log's directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The log was written by a Palisade version before genesis checkpoints, with its key
    /// inside the log directory. It can be read and verified (as legacy), never extended.
    #[error(
        "{}: this audit log was written before genesis checkpoints (its signing key is inside the log directory, so it cannot be vouched for) and is not extended. Keep it as an archive: move it aside (mv {} {}.legacy) and start again; a new chain begins, with its key outside the log directory. `palisade audit verify --dir <archive>` still checks the old chain",
        dir.display(), dir.display(), dir.display()
    )]
    Legacy {
        /// The log's directory.
        dir: PathBuf,
    },
    /// A redaction path does not follow the syntax documented in [`Redactor`](crate::Redactor).
    #[error("redaction path {path:?}: {reason}")]
    InvalidRedaction {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A directory of replicas' trails cannot be read as one: two trails claim the same
    /// replica or log, or one replica's directory holds several trails.
    #[error("{what}; fix: {fix}")]
    AmbiguousTrails {
        /// What is ambiguous, naming the paths.
        what: String,
        /// How to resolve it.
        fix: String,
    },
    /// A query filter or a time value could not be parsed.
    #[error("{0}")]
    InvalidFilter(String),
    /// A record could not be serialized (never expected with the crate's own types).
    #[error("audit record cannot be serialized: {0}")]
    Serialize(String),
}

impl AuditError {
    /// Builds an [`AuditError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        AuditError::Io { path: path.into(), action, source }
    }

    /// Builds an [`AuditError::Corrupt`].
    pub(crate) fn corrupt(path: impl Into<PathBuf>, line: Option<u64>, what: impl Into<String>) -> Self {
        AuditError::Corrupt { path: path.into(), line, what: what.into() }
    }
}
