//! Files only their owner may read: Palisade's home, the bundles in it, policies and the
//! keys that sign tokens, checkpoints and certificates.
//!
//! Two halves, one rule each:
//! - **Create private.** Directories are made 0700 and files 0600 when they are created
//!   (never created open and narrowed afterwards), and replaced atomically.
//! - **Read keys only when private.** A private key is read only if it is a regular file
//!   (not a symbolic link someone could point elsewhere), readable by its owner alone, in a
//!   directory nobody else can write; what was checked is what is opened. Otherwise the
//!   error names the file and the command that fixes it, as ssh does.
//!
//! Every crate that keeps a secret on disk uses these functions, so the rule is written
//! once.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a private file could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    /// A key file or its directory is open to others; the message names the fix.
    #[error("{}: {problem} (fix: {fix})", path.display())]
    Insecure {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// A key file is larger than any key.
    #[error("{}: larger than {limit} bytes, too large for a key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A file system operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl PrivateFileError {
    fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        PrivateFileError::Io { path: path.to_owned(), action, source }
    }

    fn insecure(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        PrivateFileError::Insecure { path: path.to_owned(), problem: problem.into(), fix: fix.into() }
    }
}

/// The mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// The mode of private directories.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they
/// are; see [`shared_dir_warning`]).
pub fn create_dir_all(dir: &Path) -> Result<(), PrivateFileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|e| PrivateFileError::io(dir, "create the directory", e))
}

/// Options that create a file with mode 0600 (or open an existing one for writing).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Creates a new file with mode 0600; fails if it exists (a link included: nothing is
/// followed).
pub fn create_new(path: &Path) -> Result<File, PrivateFileError> {
    options().create_new(true).open(path).map_err(|e| PrivateFileError::io(path, "create", e))
}

/// Writes `bytes` to `path` atomically (a 0600 temporary file in the same directory,
/// synced, renamed over the old file, the directory synced).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrivateFileError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // tempfile creates its files 0600.
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| PrivateFileError::io(dir, "write in", e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| PrivateFileError::io(path, "write", e))?;
    tmp.persist(path).map_err(|e| PrivateFileError::io(path, "replace", e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| PrivateFileError::io(dir, "sync", e))
}

/// A warning when group or others may enter or list `dir` (a home created before modes
/// were set, or by hand), with the fix; `None` when it is private or unreadable.
pub fn shared_dir_warning(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).ok()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "{} is open to other users (mode {mode:04o}): they can read its models and keys (fix: chmod 700 {})",
                dir.display(),
                dir.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    None
}

/// Checks that `path` may hold a private key: a regular file, not a symbolic link, that
/// only its owner can read or write, in a directory only its owner can write. `what`
/// names the key in messages ("the token signing keys").
pub fn check_key(path: &Path, what: &str) -> Result<(), PrivateFileError> {
    let link = fs::symlink_metadata(path).map_err(|e| PrivateFileError::io(path, "read", e))?;
    check_meta(path, &link, what)
}

fn check_meta(path: &Path, link: &fs::Metadata, what: &str) -> Result<(), PrivateFileError> {
    if link.file_type().is_symlink() {
        return Err(PrivateFileError::insecure(
            path,
            format!(
                "{what} is a symbolic link; it must be a regular file, so that nobody can point it elsewhere"
            ),
            format!(
                "replace the link with the file it points to (cp --remove-destination \"$(readlink -f {0})\" {0})",
                path.display()
            ),
        ));
    }
    if !link.is_file() {
        return Err(PrivateFileError::insecure(
            path,
            format!("{what} is not a regular file"),
            "put the key file there",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = link.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::insecure(
                path,
                format!("{what} is accessible by group or others (mode {mode:04o})"),
                format!("chmod 600 {}", path.display()),
            ));
        }
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        check_key_dir(dir, what)?;
    }
    Ok(())
}

/// Checks that nobody but its owner can write `dir`, the directory of `what` (they could
/// replace the key).
pub fn check_key_dir(dir: &Path, what: &str) -> Result<(), PrivateFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir_mode = fs::metadata(dir)
            .map_err(|e| PrivateFileError::io(dir, "read the key's directory", e))?
            .permissions()
            .mode()
            & 0o777;
        if dir_mode & 0o022 != 0 {
            return Err(PrivateFileError::insecure(
                dir,
                format!(
                    "the directory of {what} is writable by group or others (mode {dir_mode:04o}): they could replace the key"
                ),
                format!("chmod 700 {}", dir.display()),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, what);
    Ok(())
}

/// Makes `dir` a private tree for this process: creates it (and missing parents) 0700,
/// then sets every directory under it to 0700 and every file to at most 0600, without
/// following links. For volumes another program prepared, such as a Kubernetes volume
/// whose `fsGroup` ownership change made everything group-readable and group-writable:
/// afterwards the keys in it pass [`check_key`] again. Refuses an entry owned by another
/// user or a symbolic link (either could hold or point at a key someone else controls).
/// Returns how many modes it changed.
pub fn secure_tree(dir: &Path) -> Result<usize, PrivateFileError> {
    create_dir_all(dir)?;
    let mut changed = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|e| PrivateFileError::io(&path, "read", e))?;
        if meta.file_type().is_symlink() {
            return Err(PrivateFileError::insecure(
                &path,
                "a symbolic link in a private directory",
                format!("remove it (rm {}); private directories hold regular files only", path.display()),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let uid = rustix::process::geteuid().as_raw();
            if meta.uid() != uid {
                return Err(PrivateFileError::insecure(
                    &path,
                    format!("owned by uid {}, not by this process (uid {uid})", meta.uid()),
                    format!("chown {uid} {}, or run as its owner", path.display()),
                ));
            }
            let mode = meta.permissions().mode() & 0o7777;
            let wanted = if meta.is_dir() { DIR_MODE } else { mode & 0o700 };
            if mode != wanted {
                fs::set_permissions(&path, fs::Permissions::from_mode(wanted))
                    .map_err(|e| PrivateFileError::io(&path, "set the mode of", e))?;
                changed += 1;
            }
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(|e| PrivateFileError::io(&path, "list", e))? {
                pending.push(entry.map_err(|e| PrivateFileError::io(&path, "list", e))?.path());
            }
        }
    }
    Ok(changed)
}

/// Reads a private key of at most `limit` bytes after [`check_key`]; the file opened is
/// the file checked (a link swapped in between is refused). `Ok(None)` when it does not
/// exist.
pub fn read_key(path: &Path, what: &str, limit: u64) -> Result<Option<Vec<u8>>, PrivateFileError> {
    let link = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PrivateFileError::io(path, "read", e)),
    };
    check_meta(path, &link, what)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let file = options.open(path).map_err(|e| PrivateFileError::io(path, "open", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let opened = file.metadata().map_err(|e| PrivateFileError::io(path, "read", e))?;
        if (opened.dev(), opened.ino()) != (link.dev(), link.ino()) {
            return Err(PrivateFileError::insecure(
                path,
                format!("{what} changed while it was being opened"),
                "retry, and find out what replaces it",
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| PrivateFileError::io(path, "read", e))?;
    if bytes.len() as u64 > limit {
        return Err(PrivateFileError::TooLarge { path: path.to_owned(), limit });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!((mode(&tmp.path().join("a")), mode(&dir)), (0o700, 0o700));
        let file = dir.join("f");
        create_new(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(create_new(&file).is_err());
        write_atomic(&dir.join("g"), b"x").unwrap();
        assert_eq!(mode(&dir.join("g")), 0o600);
        assert!(shared_dir_warning(&dir).is_none());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(shared_dir_warning(&dir).unwrap().contains("chmod 700"));
    }

    #[test]
    fn secure_tree_takes_back_what_a_volume_owner_change_opened() {
        // What the kubelet leaves after an fsGroup change: directories 2777/2770, files 0660.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volume/keys");
        fs::create_dir_all(root.join("sub")).unwrap();
        let key = root.join("sub/key.pem");
        fs::write(&key, b"secret").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o660)).unwrap();
        fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o2770)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o2777)).unwrap();
        assert!(read_key(&key, "the key", 64).is_err());
        assert_eq!(secure_tree(&root).unwrap(), 3);
        assert_eq!((mode(&root), mode(&root.join("sub")), mode(&key)), (0o700, 0o700, 0o600));
        assert_eq!(read_key(&key, "the key", 64).unwrap().unwrap(), b"secret");
        // Nothing left to change; a missing directory is created private.
        assert_eq!(secure_tree(&root).unwrap(), 0);
        secure_tree(&tmp.path().join("volume/trail")).unwrap();
        assert_eq!(mode(&tmp.path().join("volume/trail")), 0o700);
        // A link inside is refused, not followed.
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let err = secure_tree(&root).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains("rm "), "{err}");
    }

    #[test]
    fn keys_open_to_others_or_linked_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let key = tmp.path().join("key");
        assert!(read_key(&key, "the key", 64).unwrap().is_none());
        fs::write(&key, b"secret").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&key, "the key", 64).unwrap_err().to_string();
        assert!(err.contains(&format!("fix: chmod 600 {}", key.display())), "{err}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key(&key, "the key", 64).unwrap().unwrap(), b"secret");
        assert!(matches!(read_key(&key, "the key", 3), Err(PrivateFileError::TooLarge { .. })));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        let err = read_key(&link, "the key", 64).unwrap_err().to_string();
        assert!(err.contains("symbolic link") && err.contains("cp --remove-destination"), "{err}");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let err = check_key(&key, "the key").unwrap_err().to_string();
        assert!(err.contains(&format!("fix: chmod 700 {}", tmp.path().display())), "{err}");
    }
}
