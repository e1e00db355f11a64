//! Palisade's audit archive: a log's sealed segments and signed checkpoints copied to an
//! S3-compatible object store, each copy read back and checked, and verification of the
//! archived and local parts of a trail as one chain.
//!
//! ```text
//! Archive::open(&ArchiveTarget)             (bucket, prefix, endpoint, region, credentials)
//! archive_pass(dir, &archive).await         (new checkpoint lines, then sealed segments not yet
//!                                            archived: written where absent, read back, compared;
//!                                            recorded in archive-state.jsonl)
//! Archiver::spawn(dir, target, retention, every)   (the same in the background, then retention:
//!                                            a due segment is deleted only once its archived copy
//!                                            reads back with the local size and SHA-256)
//! archive.logs() / archive.verify_across(..) (archived segments + checkpoints + local tail)
//! ```
//!
//! A separate crate so that the audit crate (and its fuzz target) stays free of HTTP, TLS and
//! the object store client.

mod across;
mod archiver;
mod error;
mod target;
#[cfg(feature = "testing")]
pub mod testing;
mod upload;

pub use across::{AcrossReport, ArchivedLog, work_dir};
pub use archiver::{Archiver, ArchiverStats, retain_once};
pub use error::ArchiveError;
/// The object store crate, for tools and tests that read or change archived objects.
pub use object_store;
pub use target::{AccessKey, Archive, ArchiveTarget, Credentials};
pub use upload::{Archived, PassReport, STATE_FILE, archive_pass, backlog, confirm_archived};
