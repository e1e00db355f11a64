//! Parsing YAML documents into typed values with errors that name the file, line, column and
//! field, the way every Palisade configuration error reads:
//!
//! ```text
//! iris/palisade.yaml:12:11: field `model.format`: unknown variant `pickle`, expected `onnx`
//! ```
//!
//! YAML reaches Palisade from people who are not trusted with the server's availability
//! (a manifest copied from elsewhere, a policy `PUT` by any model owner), so every document
//! is checked against [`Limits`] before it is deserialized: its size, how deeply it nests,
//! how many documents it holds and how far its aliases expand. The check is one pass of a
//! streaming parser (libyaml's grammar, as the deserializer uses) that stops at the first
//! event past a limit, so it costs time linear in the input however the input is built.
//! Without it, nested flow collections (`[[[[...`) cost the deserializer's libyaml time
//! quadratic in their depth (a 240 KB body took 73 s of CPU), and an anchor repeated by
//! aliases is copied once per alias ("billion laughs").

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The deepest nesting of collections accepted (Palisade's own formats need fewer than 10).
pub const MAX_DEPTH: usize = 64;
/// The most nodes (scalars, sequences, mappings) a document may hold, every alias counted
/// as the nodes it refers to. Parsing costs time per node, so this bounds it: a document at
/// the limit parses in a few tens of milliseconds.
pub const MAX_NODES: usize = 50_000;
/// The most scalar bytes a document may stand for, every alias counted as the bytes it
/// refers to ("billion laughs").
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_DOCUMENT_BYTES;
/// The most documents one file may hold.
pub const MAX_DOCUMENTS: usize = 1000;

/// The bounds a document is checked against before it is deserialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes, once every alias is replaced by what it refers to.
    pub max_nodes: usize,
    /// Most scalar bytes, once every alias is replaced by what it refers to.
    pub max_expanded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_DOCUMENT_BYTES,
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_expanded_bytes: MAX_EXPANDED_BYTES,
        }
    }
}

/// A configuration document that did not parse, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the field (`model.format`, `owners[1]`), empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl LocatedError {
    /// An error about a field whose position is not known.
    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> LocatedError {
        LocatedError {
            file: file.to_owned(),
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    fn at(file: &Path, mark: libyaml_safer::Mark, line_offset: usize, message: String) -> LocatedError {
        LocatedError {
            file: file.to_owned(),
            line: usize::try_from(mark.line).ok().map(|l| l + 1 + line_offset),
            column: usize::try_from(mark.column).ok().map(|c| c + 1),
            field: String::new(),
            message,
        }
    }
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for LocatedError {}

/// YAML text and where it sits in its file: a whole file, or one [`Document`] of a
/// multi-document file (whose errors keep the file's line numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    text: &'a str,
    line_offset: usize,
}

impl<'a> Source<'a> {
    /// Text whose first line is line `line_offset + 1` of its file.
    pub fn new(text: &'a str, line_offset: usize) -> Source<'a> {
        Source { text, line_offset }
    }

    /// The text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// How many lines of the file come before the text.
    pub fn line_offset(&self) -> usize {
        self.line_offset
    }
}

impl<'a> From<&'a str> for Source<'a> {
    fn from(text: &'a str) -> Self {
        Source { text, line_offset: 0 }
    }
}

impl<'a> From<&'a String> for Source<'a> {
    fn from(text: &'a String) -> Self {
        Source { text, line_offset: 0 }
    }
}

impl<'a> From<&Document<'a>> for Source<'a> {
    fn from(document: &Document<'a>) -> Self {
        Source { text: document.text, line_offset: document.line_offset }
    }
}

impl<'a> From<Document<'a>> for Source<'a> {
    fn from(document: Document<'a>) -> Self {
        Source { text: document.text, line_offset: document.line_offset }
    }
}

/// Reads a YAML file of at most [`MAX_DOCUMENT_BYTES`] as UTF-8, never more into memory
/// (a larger file is refused before it is parsed); errors name the file and `what` it
/// holds ("the platform config").
pub fn read_file(file: &Path, what: &str) -> Result<String, LocatedError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_DOCUMENT_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| LocatedError::field(file, "", format!("cannot read {what}: {e}")))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(LocatedError::field(
            file,
            "",
            format!("{what} is larger than {MAX_DOCUMENT_BYTES} bytes; split it into several files"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        LocatedError::field(
            file,
            "",
            format!("{what} is not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Deserializes one YAML document, reporting the failing field's path and position. The
/// document is checked against the default [`Limits`] first.
pub fn from_str<'a, T: DeserializeOwned>(
    file: &Path,
    source: impl Into<Source<'a>>,
) -> Result<T, LocatedError> {
    from_str_within(file, source, Limits::default())
}

/// [`from_str`] with other limits.
pub fn from_str_within<'a, T: DeserializeOwned>(
    file: &Path,
    source: impl Into<Source<'a>>,
    limits: Limits,
) -> Result<T, LocatedError> {
    let source = source.into();
    check(file, source, limits)?;
    let deserializer = serde_yaml::Deserializer::from_str(source.text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let inner = err.into_inner();
        let (line, column) = match inner.location() {
            Some(loc) => (Some(loc.line() + source.line_offset), Some(loc.column())),
            None => (None, None),
        };
        let message = inner.to_string();
        // serde_yaml appends " at line L column C", reported separately above.
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        // It also prefixes nested errors with the parent's path, which `field` already has.
        let message = match message.split_once(": ") {
            Some((parent, rest)) if !field.is_empty() && field.starts_with(parent) => rest.to_owned(),
            _ => message,
        };
        LocatedError { file: file.to_owned(), line, column, field, message }
    })
}

/// Checks one document against `limits` without building anything: its size, that it is
/// one document, its nesting and how far its aliases expand. Syntax errors are reported
/// here too, with their position. Time and memory are linear in the text.
pub fn check<'a>(file: &Path, source: impl Into<Source<'a>>, limits: Limits) -> Result<(), LocatedError> {
    let source = source.into();
    walk(file, source, limits, |_, _| Visit::Continue)
}

/// The scalar at `path` (mapping keys from the top, such as `["metadata", "namespace"]`)
/// of one document, read within `limits` and without reading past it. `None` when the
/// document has no plain scalar there (absent, a collection, an alias).
pub fn peek_scalar<'a>(
    file: &Path,
    source: impl Into<Source<'a>>,
    path: &[&str],
    limits: Limits,
) -> Result<Option<String>, LocatedError> {
    let mut found = None;
    walk(file, source.into(), limits, |keys, value| {
        if let Some(value) = value
            && keys.len() == path.len()
            && keys.iter().zip(path).all(|(k, p)| k.as_deref() == Some(*p))
        {
            found = Some(value.to_owned());
            return Visit::Stop;
        }
        Visit::Continue
    })?;
    Ok(found)
}

/// Whether a walk goes on after a scalar value.
enum Visit {
    Continue,
    Stop,
}

/// One open collection during a walk.
struct Frame {
    /// A mapping (keys and values alternate) or a sequence.
    mapping: bool,
    /// In a mapping: the next node is a key.
    expecting_key: bool,
    /// In a mapping: the key of the value being read, when it was a plain scalar.
    key: Option<String>,
    /// The anchor on the collection, with the expansion counts when it opened.
    anchor: Option<(String, Size)>,
}

/// Nodes and scalar bytes, as expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

/// A scalar value with the mapping keys leading to it (`None` for a key that was not a
/// plain scalar).
type KeyedValue = (Vec<Option<String>>, String);

/// The state of one walk over a document's events.
struct Walker<'f> {
    file: &'f Path,
    line_offset: usize,
    limits: Limits,
    frames: Vec<Frame>,
    /// Nodes and scalar bytes so far, every alias counted as what it refers to.
    expanded: Size,
    /// The expansion of every anchored node seen.
    anchors: HashMap<String, Size>,
    documents: usize,
}

impl Walker<'_> {
    fn error(&self, mark: libyaml_safer::Mark, message: String) -> LocatedError {
        LocatedError::at(self.file, mark, self.line_offset, message)
    }

    fn grow(&mut self, by: Size, mark: libyaml_safer::Mark, what: &str) -> Result<(), LocatedError> {
        self.expanded.nodes = self.expanded.nodes.saturating_add(by.nodes);
        self.expanded.bytes = self.expanded.bytes.saturating_add(by.bytes);
        if self.expanded.nodes > self.limits.max_nodes {
            return Err(self.error(
                mark,
                format!(
                    "{what}: the document holds more than {} nodes (aliases count as what they refer to); split it into smaller documents",
                    self.limits.max_nodes
                ),
            ));
        }
        if self.expanded.bytes > self.limits.max_expanded_bytes {
            return Err(self.error(
                mark,
                format!(
                    "{what}: the document expands to more than {} bytes of scalars through its aliases; write the repeated parts out, or use fewer aliases",
                    self.limits.max_expanded_bytes
                ),
            ));
        }
        Ok(())
    }

    /// A node completed the key or the value of the enclosing mapping.
    fn completed(&mut self) {
        if let Some(frame) = self.frames.last_mut()
            && frame.mapping
        {
            frame.expecting_key = !frame.expecting_key;
        }
    }

    fn open(
        &mut self,
        mapping: bool,
        anchor: Option<String>,
        mark: libyaml_safer::Mark,
    ) -> Result<(), LocatedError> {
        if self.frames.len() >= self.limits.max_depth {
            return Err(self.error(
                mark,
                format!(
                    "collections nest deeper than {} levels here; no Palisade document needs that many",
                    self.limits.max_depth
                ),
            ));
        }
        self.grow(Size { nodes: 1, bytes: 0 }, mark, "a collection")?;
        if let Some(frame) = self.frames.last_mut()
            && frame.mapping
            && frame.expecting_key
        {
            // A collection as a key: no path leads through it.
            frame.key = None;
        }
        let start = Size { nodes: self.expanded.nodes - 1, bytes: self.expanded.bytes };
        self.frames.push(Frame {
            mapping,
            expecting_key: true,
            key: None,
            anchor: anchor.map(|a| (a, start)),
        });
        Ok(())
    }

    fn close(&mut self) {
        if let Some(frame) = self.frames.pop() {
            if let Some((anchor, start)) = frame.anchor {
                let size = Size {
                    nodes: self.expanded.nodes - start.nodes,
                    bytes: self.expanded.bytes - start.bytes,
                };
                self.anchors.insert(anchor, size);
            }
            self.completed();
        }
    }

    fn alias(&mut self, anchor: &str, mark: libyaml_safer::Mark) -> Result<(), LocatedError> {
        if self.frames.iter().any(|f| f.anchor.as_ref().is_some_and(|(a, _)| a == anchor)) {
            return Err(
                self.error(mark, format!("the alias `*{anchor}` refers to a collection that contains it"))
            );
        }
        let cost = self.anchors.get(anchor).copied().unwrap_or(Size { nodes: 1, bytes: 0 });
        self.grow(cost, mark, &format!("the alias `*{anchor}`"))?;
        self.completed();
        Ok(())
    }

    /// A scalar: a key (returned as `None`) or a value, with the keys leading to it from
    /// the top when no sequence is on the way.
    fn scalar(
        &mut self,
        anchor: Option<String>,
        value: String,
        mark: libyaml_safer::Mark,
    ) -> Result<Option<KeyedValue>, LocatedError> {
        let cost = Size { nodes: 1, bytes: value.len() };
        self.grow(cost, mark, "a scalar")?;
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor, cost);
        }
        let is_key = self.frames.last().is_some_and(|f| f.mapping && f.expecting_key);
        let result = if is_key {
            if let Some(frame) = self.frames.last_mut() {
                frame.key = Some(value);
            }
            None
        } else if self.frames.iter().all(|f| f.mapping) {
            Some((self.frames.iter().map(|f| f.key.clone()).collect(), value))
        } else {
            None
        };
        self.completed();
        Ok(result)
    }
}

/// Streams the document's events, enforcing `limits`, and calls `visit` with the keys
/// leading to every scalar value that no sequence encloses.
fn walk(
    file: &Path,
    source: Source<'_>,
    limits: Limits,
    mut visit: impl FnMut(&[Option<String>], Option<&str>) -> Visit,
) -> Result<(), LocatedError> {
    use libyaml_safer::EventData;

    if source.text.len() > limits.max_bytes {
        return Err(LocatedError::field(
            file,
            "",
            format!(
                "the document is {} bytes; at most {} are read (split it into smaller documents)",
                source.text.len(),
                limits.max_bytes
            ),
        ));
    }
    let mut input = source.text.as_bytes();
    let mut parser = libyaml_safer::Parser::new();
    parser.set_input_string(&mut input);
    let mut walker = Walker {
        file,
        line_offset: source.line_offset,
        limits,
        frames: Vec::new(),
        expanded: Size::default(),
        anchors: HashMap::new(),
        documents: 0,
    };
    loop {
        let event = parser.parse().map_err(|err| {
            let message = err.problem().to_owned();
            match err.problem_mark() {
                Some(mark) => LocatedError::at(file, mark, source.line_offset, message),
                None => LocatedError::field(file, "", message),
            }
        })?;
        let mark = event.start_mark;
        match event.data {
            EventData::StreamStart { .. } | EventData::DocumentEnd { .. } => {}
            EventData::StreamEnd => return Ok(()),
            EventData::DocumentStart { .. } => {
                walker.documents += 1;
                if walker.documents > 1 {
                    return Err(walker.error(
                        mark,
                        "a second document starts here (`---`); this file holds one document".to_owned(),
                    ));
                }
            }
            EventData::Alias { anchor } => walker.alias(&anchor, mark)?,
            EventData::Scalar { anchor, value, .. } => {
                if let Some((keys, value)) = walker.scalar(anchor, value, mark)?
                    && let Visit::Stop = visit(&keys, Some(&value))
                {
                    return Ok(());
                }
            }
            EventData::SequenceStart { anchor, .. } => walker.open(false, anchor, mark)?,
            EventData::MappingStart { anchor, .. } => walker.open(true, anchor, mark)?,
            EventData::SequenceEnd | EventData::MappingEnd => walker.close(),
        }
    }
}

/// One document of a multi-document YAML file, with where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// 1-based line of the document's first line that is not blank or a comment.
    pub first_line: usize,
    /// The document's text (from the line after its `---`).
    pub text: &'a str,
    /// How many lines of the file come before `text`.
    pub line_offset: usize,
}

impl<'a> Document<'a> {
    /// The document as a [`Source`] for [`from_str`], keeping the file's line numbers.
    pub fn source(&self) -> Source<'a> {
        Source::from(self)
    }
}

/// Splits a multi-document YAML file on `---` lines, in time linear in the text. Empty
/// documents (blank lines and comments only) are dropped. A file with more than
/// [`MAX_DOCUMENTS`] documents is refused, naming the line where the one too many starts.
pub fn documents<'a>(file: &Path, text: &'a str) -> Result<Vec<Document<'a>>, LocatedError> {
    let mut docs = Vec::new();
    // Byte offset and line number where the current document starts.
    let (mut start, mut start_line) = (0usize, 0usize);
    let mut first_content: Option<usize> = None;
    let (mut offset, mut line) = (0usize, 0usize);
    let mut push = |start: usize, end: usize, start_line: usize, first: Option<usize>| {
        let Some(first) = first else { return Ok(()) };
        if docs.len() >= MAX_DOCUMENTS {
            return Err(LocatedError {
                file: file.to_owned(),
                line: Some(first + 1),
                column: None,
                field: String::new(),
                message: format!(
                    "the file holds more than {MAX_DOCUMENTS} documents; split it into several files"
                ),
            });
        }
        docs.push(Document { first_line: first + 1, text: &text[start..end], line_offset: start_line });
        Ok(())
    };
    for raw in text.split_inclusive('\n') {
        let trimmed = raw.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            push(start, offset, start_line, first_content)?;
            start = offset + raw.len();
            start_line = line + 1;
            first_content = None;
        } else {
            let t = raw.trim();
            if first_content.is_none() && !t.is_empty() && !t.starts_with('#') {
                first_content = Some(line);
            }
        }
        offset += raw.len();
        line += 1;
    }
    push(start, text.len(), start_line, first_content)?;
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let err = from_str::<Outer>(Path::new("c.yaml"), "name: x\ninner:\n  port: 99999\n").unwrap_err();
        assert_eq!(err.field, "inner.port");
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().starts_with("c.yaml:3:"), "{err}");
        let err = from_str::<Outer>(Path::new("c.yaml"), "name: x\ninner:\n  prot: 1\n").unwrap_err();
        assert_eq!(err.field, "inner.prot");
        assert!(err.message.starts_with("unknown field `prot`"), "{}", err.message);
    }

    #[test]
    fn documents_keep_their_line_numbers() {
        let text = "# header\na: 1\n---\n\nb: 2\n--- \n# only a comment\n---\nc: [\n";
        let docs = documents(Path::new("m.yaml"), text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[1].first_line, 5);
        let err = from_str::<serde_yaml::Value>(Path::new("m.yaml"), &docs[2]).unwrap_err();
        assert_eq!(err.line, Some(10), "{err}");
        assert_eq!(from_str::<serde_yaml::Value>(Path::new("m.yaml"), &docs[1]).unwrap()["b"], 2);
        let err = from_str::<Outer>(Path::new("m.yaml"), &docs[1]).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        // A document's text is a slice of the file, never padded.
        assert_eq!(docs[1].text, "\nb: 2\n");
    }

    #[test]
    fn documents_split_without_a_trailing_newline() {
        let docs = documents(Path::new("m.yaml"), "a: 1\n---\nb: 2").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].text, "b: 2");
        assert_eq!(docs[1].line_offset, 2);
        assert!(documents(Path::new("m.yaml"), "").unwrap().is_empty());
        assert!(documents(Path::new("m.yaml"), "---\n---\n# x\n").unwrap().is_empty());
        let many = "a: 1\n---\n".repeat(MAX_DOCUMENTS + 1);
        let err = documents(Path::new("m.yaml"), &many).unwrap_err();
        assert_eq!(err.line, Some(2 * MAX_DOCUMENTS + 1), "{err}");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_where_it_happens() {
        let deep = format!("a: {}{}\n", "[".repeat(65), "]".repeat(65));
        let err = from_str::<serde_yaml::Value>(Path::new("d.yaml"), deep.as_str()).unwrap_err();
        assert!(err.message.contains("nest deeper than 64"), "{err}");
        assert_eq!((err.line, err.column), (Some(1), Some(67)), "{err}");
        let ok = format!("a: {}{}\n", "[".repeat(63), "]".repeat(63));
        assert!(from_str::<serde_yaml::Value>(Path::new("d.yaml"), ok.as_str()).is_ok());
        let mut block = String::new();
        for depth in 0..70 {
            block.push_str(&" ".repeat(depth));
            block.push_str("k:\n");
        }
        let err = from_str::<serde_yaml::Value>(Path::new("b.yaml"), block.as_str()).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{err}");
    }

    #[test]
    fn aliases_expand_within_the_budget() {
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in 'b'..='j' {
            laughs.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
            previous = name;
        }
        let err = from_str::<serde_yaml::Value>(Path::new("l.yaml"), laughs.as_str()).unwrap_err();
        assert!(err.message.contains("more than 50000 nodes"), "{err}");
        let small = "a: &a [1, 2]\nb: *a\nc: *a\n";
        let value = from_str::<serde_yaml::Value>(Path::new("s.yaml"), small).unwrap();
        assert_eq!(value["c"][1], 2);
        let err = from_str::<serde_yaml::Value>(Path::new("r.yaml"), "a: &a [*a]\n").unwrap_err();
        assert!(err.message.contains("contains it"), "{err}");
    }

    #[test]
    fn one_document_per_source() {
        let err = from_str::<serde_yaml::Value>(Path::new("t.yaml"), "a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("second document"), "{err}");
        assert_eq!(err.line, Some(2));
        assert!(from_str::<serde_yaml::Value>(Path::new("t.yaml"), "---\na: 1\n").is_ok());
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
        let err = from_str::<serde_yaml::Value>(Path::new("big.yaml"), big.as_str()).unwrap_err();
        assert!(err.message.contains("at most 1048576"), "{err}");
    }

    #[test]
    fn peeking_reads_one_scalar_of_the_top_mappings() {
        let limits = Limits::default();
        let text = "kind: X\nspec:\n  namespace: wrong\nmetadata:\n  name: n\n  namespace: lab\n";
        let found = peek_scalar(Path::new("p"), text, &["metadata", "namespace"], limits).unwrap();
        assert_eq!(found.as_deref(), Some("lab"));
        let json = r#"{"metadata": {"namespace": "lab", "name": "x"}, "spec": {}}"#;
        let found = peek_scalar(Path::new("p"), json, &["metadata", "namespace"], limits).unwrap();
        assert_eq!(found.as_deref(), Some("lab"));
        let aliased = "x: &n lab\nmetadata: {namespace: *n}\n";
        assert_eq!(peek_scalar(Path::new("p"), aliased, &["metadata", "namespace"], limits).unwrap(), None);
        let listed = "metadata: [{namespace: lab}]\n";
        assert_eq!(peek_scalar(Path::new("p"), listed, &["metadata", "namespace"], limits).unwrap(), None);
        // The walk stops at the value: what follows is never read.
        let then_garbage = "metadata: {namespace: lab}\nspec: [[[\n";
        let found = peek_scalar(Path::new("p"), then_garbage, &["metadata", "namespace"], limits).unwrap();
        assert_eq!(found.as_deref(), Some("lab"));
        let deep_first = format!("spec: {}\nmetadata: {{namespace: lab}}\n", "[".repeat(100));
        assert!(
            peek_scalar(Path::new("p"), deep_first.as_str(), &["metadata", "namespace"], limits).is_err()
        );
    }
}
