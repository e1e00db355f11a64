//! The sealed segment file: a rotated segment's exact bytes in independent zstd frames,
//! followed by a frame index and the signed seal checkpoint.
//!
//! ```text
//! zstd frame 0 .. zstd frame n-1   each: the exact bytes of up to `frame_records` complete
//!                                  lines of the plain segment (content checksum on)
//! skippable frame 0x184D2A50       the index: one JSON object, see [`SealIndex`]
//! skippable frame 0x184D2A51       the seal checkpoint: one signed checkpoint line (kind `seal`)
//! skippable frame 0x184D2A5F       the footer: the index frame's offset (u64 LE), "PALSEAL1"
//! ```
//!
//! zstd decoders skip skippable frames, so `zstd -dc segment-….jsonl.zst` prints the plain
//! segment byte for byte, and the hash chain (defined over those bytes) is unchanged. A
//! reader finds the index from the last 24 bytes and decodes only the frames it needs.
//!
//! Everything read here may have been written by an attacker: sizes are checked against
//! the file's length and fixed budgets before anything is allocated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{AuditError, Timestamp};

/// Schema tag of a sealed segment's index.
pub const SEALED_SCHEMA: &str = "palisade.audit.sealed/v1";

const INDEX_MAGIC: u32 = 0x184D_2A50;
const CHECKPOINT_MAGIC: u32 = 0x184D_2A51;
const FOOTER_MAGIC: u32 = 0x184D_2A5F;
const FOOTER_TAG: &[u8; 8] = b"PALSEAL1";
/// The footer frame: magic, size, offset, tag.
pub(crate) const FOOTER_LEN: u64 = 4 + 4 + 8 + 8;
/// Most bytes an index plus seal checkpoint may take (a 64 MiB segment needs ~200 KB).
pub(crate) const TRAILER_BUDGET: u64 = 16 * 1024 * 1024;
/// Most bytes one frame may take, compressed or not.
pub(crate) const FRAME_BUDGET: u64 = 256 * 1024 * 1024;
/// Bits in a frame's request-id filter.
const FILTER_BITS: usize = 2048;
/// Probes per request id in the filter.
const FILTER_PROBES: usize = 4;

/// One frame of a sealed segment, as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameEntry {
    /// Offset of the zstd frame from the start of the file.
    pub offset: u64,
    /// Its compressed length.
    pub bytes: u64,
    /// Seq of its first record.
    pub first_seq: u64,
    /// Records (lines) it holds.
    pub records: u64,
    /// Bytes of those lines, uncompressed.
    pub plain_bytes: u64,
    /// Earliest record time (`received`, else `completed`) in the frame, if any has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Latest record time in the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    /// A Bloom filter (hex, 2048 bits, 4 probes from SHA-256) of the frame's request ids:
    /// a frame whose filter lacks an id holds no record with it.
    pub request_ids: String,
}

/// The index of a sealed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealIndex {
    /// [`SEALED_SCHEMA`].
    pub schema: String,
    /// The segment's logical name (`segment-<seq>.jsonl`).
    pub segment: String,
    /// Seq of its first record.
    pub first_seq: u64,
    /// Records it holds.
    pub records: u64,
    /// Length of the plain segment.
    pub plain_bytes: u64,
    /// SHA-256 (hex) of the plain segment.
    pub plain_sha256: String,
    /// Its frames, in order.
    pub frames: Vec<FrameEntry>,
}

impl SealIndex {
    /// The frame that holds `seq`, if any.
    pub fn frame_of(&self, seq: u64) -> Option<usize> {
        self.frames.iter().position(|f| seq >= f.first_seq && seq - f.first_seq < f.records)
    }
}

/// A sealed segment's trailer, parsed and checked for consistency.
#[derive(Debug, Clone)]
pub struct Trailer {
    /// The index.
    pub index: SealIndex,
    /// The seal checkpoint line (without newline), not yet verified.
    pub checkpoint: Vec<u8>,
    /// Where the frames end (the index frame's offset).
    pub frames_end: u64,
}

/// A Bloom filter over request ids.
#[derive(Debug, Clone)]
pub(crate) struct IdFilter {
    bits: Vec<u8>,
}

impl IdFilter {
    pub(crate) fn new() -> Self {
        Self { bits: vec![0; FILTER_BITS / 8] }
    }

    fn probes(id: &str) -> [usize; FILTER_PROBES] {
        let digest = Sha256::digest(id.as_bytes());
        let mut out = [0; FILTER_PROBES];
        for (i, slot) in out.iter_mut().enumerate() {
            let v = u16::from_le_bytes([digest[2 * i], digest[2 * i + 1]]);
            *slot = usize::from(v) % FILTER_BITS;
        }
        out
    }

    pub(crate) fn insert(&mut self, id: &str) {
        for bit in Self::probes(id) {
            self.bits[bit / 8] |= 1 << (bit % 8);
        }
    }

    pub(crate) fn to_hex(&self) -> String {
        hex::encode(&self.bits)
    }

    /// Whether the filter in `hex` may hold `id` (a malformed filter may hold anything).
    pub(crate) fn may_hold(hex_bits: &str, id: &str) -> bool {
        let Ok(bits) = hex::decode(hex_bits) else { return true };
        if bits.len() != FILTER_BITS / 8 {
            return true;
        }
        Self::probes(id).iter().all(|&bit| bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

fn skippable(magic: u32, payload: &[u8]) -> Result<Vec<u8>, AuditError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| AuditError::Serialize("a sealed segment's trailer is too large".into()))?;
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The bytes that end a sealed file whose frames end at `frames_end`.
pub(crate) fn trailer_bytes(
    index: &SealIndex,
    checkpoint_line: &[u8],
    frames_end: u64,
) -> Result<Vec<u8>, AuditError> {
    let json = serde_json::to_vec(index).map_err(|e| AuditError::Serialize(e.to_string()))?;
    let mut out = skippable(INDEX_MAGIC, &json)?;
    out.extend(skippable(CHECKPOINT_MAGIC, checkpoint_line)?);
    let mut footer = Vec::with_capacity(16);
    footer.extend_from_slice(&frames_end.to_le_bytes());
    footer.extend_from_slice(FOOTER_TAG);
    out.extend(skippable(FOOTER_MAGIC, &footer)?);
    Ok(out)
}

/// Reads `len` bytes at `offset` after checking them against the budget.
fn read_at(file: &mut File, offset: u64, len: u64, budget: u64) -> std::io::Result<Vec<u8>> {
    if len > budget {
        return Err(std::io::Error::other(format!("{len} bytes is more than the {budget}-byte budget")));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize).map_err(std::io::Error::other)?;
    buf.resize(len as usize, 0);
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Why a sealed file's trailer cannot be read: damaged (named) or unreadable.
#[derive(Debug)]
pub(crate) enum TrailerError {
    /// The bytes are not a sealed segment's trailer: what is wrong.
    Damaged(String),
    /// The file could not be read.
    Io(AuditError),
}

/// Reads and checks the trailer of the sealed file at `path`.
pub(crate) fn read_trailer(path: &Path, file: &mut File) -> Result<Trailer, TrailerError> {
    let len = file.metadata().map_err(|e| TrailerError::Io(AuditError::io(path, "cannot stat", e)))?.len();
    if len < FOOTER_LEN {
        return Err(TrailerError::Damaged("too short to be a sealed segment (no footer)".into()));
    }
    let footer = read_at(file, len - FOOTER_LEN, FOOTER_LEN, FOOTER_LEN)
        .map_err(|e| TrailerError::Io(AuditError::io(path, "cannot read", e)))?;
    let tail_start = footer_offset(&footer).ok_or_else(|| {
        TrailerError::Damaged(
            "the footer is missing or damaged (the file was truncated or altered at its end)".into(),
        )
    })?;
    if tail_start > len - FOOTER_LEN || len - FOOTER_LEN - tail_start > TRAILER_BUDGET {
        return Err(TrailerError::Damaged(format!(
            "the footer points to offset {tail_start}, outside the trailer"
        )));
    }
    let tail = read_at(file, tail_start, len - FOOTER_LEN - tail_start, TRAILER_BUDGET)
        .map_err(|e| TrailerError::Io(AuditError::io(path, "cannot read", e)))?;
    parse_trailer(&tail, tail_start).map_err(TrailerError::Damaged)
}

pub(crate) fn footer_offset(footer: &[u8]) -> Option<u64> {
    let (magic, rest) = footer.split_first_chunk::<4>()?;
    let (size, rest) = rest.split_first_chunk::<4>()?;
    let (offset, tag) = rest.split_first_chunk::<8>()?;
    (u32::from_le_bytes(*magic) == FOOTER_MAGIC && u32::from_le_bytes(*size) == 16 && tag == FOOTER_TAG)
        .then(|| u64::from_le_bytes(*offset))
}

/// Splits one skippable frame of `magic` off the front of `bytes`.
fn take_skippable(bytes: &[u8], magic: u32) -> Option<(&[u8], &[u8])> {
    let (m, rest) = bytes.split_first_chunk::<4>()?;
    let (size, rest) = rest.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*m) != magic {
        return None;
    }
    let size = usize::try_from(u32::from_le_bytes(*size)).ok()?;
    (size <= rest.len()).then(|| rest.split_at(size))
}

/// Parses the index and checkpoint frames (`tail`, which starts at file offset
/// `frames_end` and ends before the footer) and checks the index for consistency: frames
/// contiguous from offset 0 to `frames_end`, seqs contiguous, counts adding up.
pub fn parse_trailer(tail: &[u8], frames_end: u64) -> Result<Trailer, String> {
    let (json, rest) = take_skippable(tail, INDEX_MAGIC).ok_or("the frame index is missing or damaged")?;
    let (checkpoint, rest) =
        take_skippable(rest, CHECKPOINT_MAGIC).ok_or("the seal checkpoint is missing or damaged")?;
    if !rest.is_empty() {
        return Err("unexpected bytes between the seal checkpoint and the footer".into());
    }
    let index: SealIndex =
        serde_json::from_slice(json).map_err(|e| format!("the frame index is not valid ({e})"))?;
    if index.schema != SEALED_SCHEMA {
        return Err(format!("unknown sealed-segment schema {:?}", index.schema));
    }
    if crate::chain::parse_hash(&index.plain_sha256).is_none() {
        return Err("the frame index's plain_sha256 is malformed".into());
    }
    let (mut offset, mut seq, mut records, mut plain) = (0u64, index.first_seq, 0u64, 0u64);
    for (i, frame) in index.frames.iter().enumerate() {
        let bad = |what: &str| Err(format!("frame {i} in the index: {what}"));
        if frame.offset != offset {
            return bad("does not start where the previous frame ends");
        }
        if frame.first_seq != seq {
            return bad("its first seq does not follow the previous frame's records");
        }
        if frame.records == 0 || frame.bytes == 0 || frame.plain_bytes == 0 {
            return bad("is empty");
        }
        if frame.bytes > FRAME_BUDGET || frame.plain_bytes > FRAME_BUDGET {
            return bad("is larger than a frame may be");
        }
        offset = offset.checked_add(frame.bytes).ok_or("frame offsets overflow")?;
        seq = seq.checked_add(frame.records).ok_or("frame seqs overflow")?;
        records += frame.records;
        plain += frame.plain_bytes;
    }
    if offset != frames_end {
        return Err(format!("the frames end at offset {offset} but the index starts at {frames_end}"));
    }
    if records != index.records || plain != index.plain_bytes {
        return Err("the frames' records or bytes do not add up to the segment's".into());
    }
    Ok(Trailer { index, checkpoint: checkpoint.to_vec(), frames_end })
}

/// Decodes frame `entry` of `file`: exactly its `plain_bytes`, or what is wrong.
pub(crate) fn decode_frame(
    path: &Path,
    file: &mut File,
    entry: &FrameEntry,
) -> Result<Vec<u8>, TrailerError> {
    let compressed = read_at(file, entry.offset, entry.bytes, FRAME_BUDGET)
        .map_err(|e| TrailerError::Io(AuditError::io(path, "cannot read", e)))?;
    let capacity = usize::try_from(entry.plain_bytes)
        .map_err(|_| TrailerError::Damaged("frame is larger than a frame may be".into()))?;
    let plain = zstd::bulk::decompress(&compressed, capacity).map_err(|e| {
        TrailerError::Damaged(format!("the zstd frame does not decode ({e}): the file was altered"))
    })?;
    if plain.len() as u64 != entry.plain_bytes {
        return Err(TrailerError::Damaged(format!(
            "decodes to {} bytes, the index says {}: the file was altered",
            plain.len(),
            entry.plain_bytes
        )));
    }
    Ok(plain)
}

/// Builds a sealed file's bytes frame by frame.
pub(crate) struct Builder {
    compressor: zstd::bulk::Compressor<'static>,
    frame_records: usize,
    /// Lines of the frame being filled.
    pending: Vec<u8>,
    pending_records: u64,
    pending_first: u64,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    filter: IdFilter,
    next_seq: u64,
    /// The compressed frames so far.
    pub(crate) out: Vec<u8>,
    frames: Vec<FrameEntry>,
    sha: Sha256,
    plain_bytes: u64,
    first_seq: u64,
}

impl Builder {
    pub(crate) fn new(first_seq: u64, frame_records: usize, level: i32) -> Result<Self, AuditError> {
        let mut compressor = zstd::bulk::Compressor::new(level)
            .map_err(|e| AuditError::Serialize(format!("zstd level {level}: {e}")))?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(|e| AuditError::Serialize(format!("zstd: {e}")))?;
        Ok(Self {
            compressor,
            frame_records: frame_records.max(1),
            pending: Vec::new(),
            pending_records: 0,
            pending_first: first_seq,
            from: None,
            to: None,
            filter: IdFilter::new(),
            next_seq: first_seq,
            out: Vec::new(),
            frames: Vec::new(),
            sha: Sha256::new(),
            plain_bytes: 0,
            first_seq,
        })
    }

    /// Adds one line (without its newline) of record `self.next_seq`.
    pub(crate) fn push(
        &mut self,
        line: &[u8],
        time: Option<Timestamp>,
        request_id: Option<&str>,
    ) -> Result<(), AuditError> {
        if self.pending_records == 0 {
            self.pending_first = self.next_seq;
        }
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
        self.pending_records += 1;
        self.next_seq += 1;
        if let Some(t) = time {
            self.from = Some(self.from.map_or(t, |f| f.min(t)));
            self.to = Some(self.to.map_or(t, |f| f.max(t)));
        }
        if let Some(id) = request_id {
            self.filter.insert(id);
        }
        if self.pending_records as usize >= self.frame_records {
            self.finish_frame()?;
        }
        Ok(())
    }

    fn finish_frame(&mut self) -> Result<(), AuditError> {
        if self.pending_records == 0 {
            return Ok(());
        }
        let compressed = self
            .compressor
            .compress(&self.pending)
            .map_err(|e| AuditError::Serialize(format!("zstd: {e}")))?;
        self.sha.update(&self.pending);
        self.plain_bytes += self.pending.len() as u64;
        self.frames.push(FrameEntry {
            offset: self.out.len() as u64,
            bytes: compressed.len() as u64,
            first_seq: self.pending_first,
            records: self.pending_records,
            plain_bytes: self.pending.len() as u64,
            from: self.from.take(),
            to: self.to.take(),
            request_ids: std::mem::replace(&mut self.filter, IdFilter::new()).to_hex(),
        });
        self.out.extend_from_slice(&compressed);
        self.pending.clear();
        self.pending_records = 0;
        Ok(())
    }

    /// Closes the last frame and returns the frames' bytes and the index.
    pub(crate) fn finish(mut self, segment: &str) -> Result<(Vec<u8>, SealIndex), AuditError> {
        self.finish_frame()?;
        let index = SealIndex {
            schema: SEALED_SCHEMA.to_owned(),
            segment: segment.to_owned(),
            first_seq: self.first_seq,
            records: self.next_seq - self.first_seq,
            plain_bytes: self.plain_bytes,
            plain_sha256: hex::encode(self.sha.finalize()),
            frames: self.frames,
        };
        Ok((self.out, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_give_a_trailer_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..600), end in any::<u64>()) {
            let _ = parse_trailer(&bytes, end);
        }

        #[test]
        fn a_mutated_trailer_never_panics(flip in 0usize..4096, bit in 0u8..8) {
            let mut builder = Builder::new(0, 2, 1).unwrap();
            for i in 0..5 {
                builder.push(format!("{{\"i\":{i}}}").as_bytes(), None, Some("x")).unwrap();
            }
            let (frames, index) = builder.finish("segment-00000000000000000000.jsonl").unwrap();
            let mut tail = trailer_bytes(&index, b"{}", frames.len() as u64).unwrap();
            tail.truncate(tail.len() - FOOTER_LEN as usize);
            let i = flip % tail.len();
            tail[i] ^= 1 << bit;
            let _ = parse_trailer(&tail, frames.len() as u64);
        }
    }

    #[test]
    fn filter_holds_what_was_inserted_and_rarely_more() {
        let mut filter = IdFilter::new();
        for i in 0..256 {
            filter.insert(&format!("req-{i}"));
        }
        let hex_bits = filter.to_hex();
        assert!((0..256).all(|i| IdFilter::may_hold(&hex_bits, &format!("req-{i}"))));
        let false_hits = (0..10_000).filter(|i| IdFilter::may_hold(&hex_bits, &format!("other-{i}"))).count();
        assert!(false_hits < 600, "{false_hits} false positives in 10000");
        assert!(IdFilter::may_hold("zz", "anything"), "a malformed filter excludes nothing");
    }

    #[test]
    fn built_trailer_parses_and_frames_decode_to_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Builder::new(5, 2, 3).unwrap();
        let lines: Vec<String> = (0..5).map(|i| format!("{{\"line\":{i}}}")).collect();
        for (i, line) in lines.iter().enumerate() {
            builder
                .push(line.as_bytes(), Some(Timestamp::from_unix_millis(i as i64)), Some(&format!("r{i}")))
                .unwrap();
        }
        let (frames, index) = builder.finish("segment-00000000000000000005.jsonl").unwrap();
        assert_eq!(index.frames.len(), 3);
        assert_eq!(index.records, 5);
        assert_eq!(index.frame_of(9), Some(2));
        assert_eq!(index.frame_of(10), None);
        let mut file_bytes = frames.clone();
        file_bytes.extend(trailer_bytes(&index, b"{\"checkpoint\":1}", frames.len() as u64).unwrap());
        let path = dir.path().join("s.zst");
        std::fs::write(&path, &file_bytes).unwrap();
        // Any zstd decoder reads the plain segment back, skipping the trailer.
        let plain = zstd::stream::decode_all(&file_bytes[..]).unwrap();
        assert_eq!(plain, lines.iter().map(|l| format!("{l}\n")).collect::<String>().as_bytes());
        let mut file = File::open(&path).unwrap();
        let trailer = read_trailer(&path, &mut file).unwrap();
        assert_eq!(trailer.index, index);
        assert_eq!(trailer.checkpoint, b"{\"checkpoint\":1}");
        let second = decode_frame(&path, &mut file, &index.frames[1]).unwrap();
        assert_eq!(second, b"{\"line\":2}\n{\"line\":3}\n");
        assert_eq!(index.frames[1].from, Some(Timestamp::from_unix_millis(2)));
        // A truncated file has no footer; a footer pointing elsewhere is refused.
        std::fs::write(&path, &file_bytes[..file_bytes.len() - 1]).unwrap();
        let mut file = File::open(&path).unwrap();
        assert!(matches!(read_trailer(&path, &mut file), Err(TrailerError::Damaged(_))));
        let mut moved = file_bytes.clone();
        let n = moved.len();
        moved[n - 16] ^= 1;
        std::fs::write(&path, &moved).unwrap();
        let mut file = File::open(&path).unwrap();
        assert!(matches!(read_trailer(&path, &mut file), Err(TrailerError::Damaged(_))));
    }
}
