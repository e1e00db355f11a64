//! One image layer: a sorted, timestamp-free tar, gzipped deterministically.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::layout::Blobs;
use crate::oci::{Descriptor, MEDIA_LAYER};
use crate::{ImageError, Progress};

/// Who owns an entry (numeric only: the image has no name service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// root:root.
pub(crate) const ROOT: Owner = Owner { uid: 0, gid: 0 };

#[derive(Debug)]
enum Content {
    Dir,
    Bytes(Vec<u8>),
    File(HostFile),
}

/// A file copied from the host when the layer is written.
#[derive(Debug)]
pub(crate) struct HostFile {
    /// Where it is read from.
    pub source: PathBuf,
    /// Exactly this many bytes are copied.
    pub size: u64,
    /// When known, the SHA-256 (hex) the bytes must have, checked as they are read.
    pub sha256: Option<String>,
    /// Its name in errors.
    pub label: String,
}

#[derive(Debug)]
struct Entry {
    owner: Owner,
    mode: u32,
    content: Content,
}

/// A layer being assembled: paths relative to `/`, no leading slash.
#[derive(Debug)]
pub(crate) struct Layer {
    name: &'static str,
    // Sorted by path, so a parent (a prefix) always precedes what it holds.
    entries: BTreeMap<String, Entry>,
}

/// A layer written as a blob.
#[derive(Debug)]
pub(crate) struct WrittenLayer {
    pub descriptor: Descriptor,
    /// The SHA-256 of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

impl Layer {
    pub fn new(name: &'static str) -> Self {
        Layer { name, entries: BTreeMap::new() }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Bytes of file content the layer will read (for progress).
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.content {
                Content::Dir => 0,
                Content::Bytes(b) => b.len() as u64,
                Content::File(file) => file.size,
            })
            .sum()
    }

    /// Adds a directory (and any missing parents, owned alike).
    pub fn dir(&mut self, path: &str, owner: Owner, mode: u32) {
        self.parents(path, owner);
        self.entries.insert(path.to_owned(), Entry { owner, mode, content: Content::Dir });
    }

    /// Adds a file with the given bytes.
    pub fn bytes(&mut self, path: &str, owner: Owner, mode: u32, bytes: Vec<u8>) {
        self.parents(path, owner);
        self.entries.insert(path.to_owned(), Entry { owner, mode, content: Content::Bytes(bytes) });
    }

    /// Adds a file read from the host when the layer is written.
    pub fn file(&mut self, path: &str, owner: Owner, mode: u32, file: HostFile) {
        self.parents(path, owner);
        self.entries.insert(path.to_owned(), Entry { owner, mode, content: Content::File(file) });
    }

    /// Missing parent directories: private (0700) when a non-root user owns them, else 0755.
    fn parents(&mut self, path: &str, owner: Owner) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            let parent = &path[..end];
            if !self.entries.contains_key(parent) {
                let mode = if owner == ROOT { 0o755 } else { 0o700 };
                self.entries.insert(parent.to_owned(), Entry { owner, mode, content: Content::Dir });
            }
            end += 1;
        }
    }

    /// Writes the layer as a gzipped tar blob. Every entry has the mtime `epoch`, numeric
    /// owners and no user or group names; gzip records no file name and no time.
    pub fn write(
        self,
        blobs: &Blobs,
        epoch: u64,
        progress: &mut dyn Progress,
    ) -> Result<WrittenLayer, ImageError> {
        let (tmp_path, file) = blobs.temp_file()?;
        let io_err = ImageError::io(&tmp_path, "write");
        let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let gzip = GzBuilder::new().mtime(0).write(compressed, Compression::new(6));
        let mut tar = tar::Builder::new(HashingWriter::new(gzip));
        tar.mode(tar::HeaderMode::Deterministic);
        let written = (|| -> Result<(), ImageError> {
            for (path, entry) in &self.entries {
                let mut header = tar::Header::new_gnu();
                header.set_mtime(epoch);
                header.set_uid(u64::from(entry.owner.uid));
                header.set_gid(u64::from(entry.owner.gid));
                header.set_mode(entry.mode);
                match &entry.content {
                    Content::Dir => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_size(0);
                        tar.append_data(&mut header, format!("{path}/"), io::empty())
                            .map_err(ImageError::io(&tmp_path, "write"))?;
                    }
                    Content::Bytes(bytes) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_size(bytes.len() as u64);
                        tar.append_data(&mut header, path, bytes.as_slice())
                            .map_err(ImageError::io(&tmp_path, "write"))?;
                        progress.advance(bytes.len() as u64);
                    }
                    Content::File(HostFile { source, size, sha256, label }) => {
                        header.set_entry_type(tar::EntryType::Regular);
                        header.set_size(*size);
                        let file = File::open(source).map_err(ImageError::io(source, "open"))?;
                        let mut reader = CheckedReader {
                            inner: file.take(*size),
                            hasher: Sha256::new(),
                            count: 0,
                            progress: &mut *progress,
                        };
                        tar.append_data(&mut header, path, &mut reader)
                            .map_err(ImageError::io(source, "read"))?;
                        let (count, digest) = (reader.count, hex::encode(reader.hasher.finalize()));
                        if count != *size {
                            return Err(ImageError::Changed {
                                file: label.clone(),
                                problem: format!("it has {count} bytes, not {size}"),
                            });
                        }
                        if let Some(expected) = sha256
                            && *expected != digest
                        {
                            return Err(ImageError::Changed {
                                file: label.clone(),
                                problem: format!("its sha256 is {digest}, not {expected}"),
                            });
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(err);
        }
        let uncompressed = tar.into_inner().map_err(ImageError::io(&tmp_path, "write"))?;
        let (diff_id, _) = uncompressed.digest();
        let gzip = uncompressed.into_inner();
        let compressed = gzip.finish().map_err(ImageError::io(&tmp_path, "write"))?;
        let (digest, size) = compressed.digest();
        let buffered = compressed.into_inner();
        let file = buffered.into_inner().map_err(|e| io_err(e.into_error()))?;
        let descriptor = blobs.commit(tmp_path, file, MEDIA_LAYER, digest, size)?;
        Ok(WrittenLayer { descriptor, diff_id })
    }
}

/// Counts and hashes what passes through to `inner`.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }

    /// `sha256:<hex>` and the byte count so far.
    pub fn digest(&self) -> (String, u64) {
        (format!("sha256:{}", hex::encode(self.hasher.clone().finalize())), self.count)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what is read, reporting progress.
struct CheckedReader<'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: &'a mut dyn Progress,
}

impl<R: Read> Read for CheckedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
