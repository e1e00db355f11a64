//! Parsing YAML documents into typed values with errors that name the file, line, column and
//! field, the way every Palisade configuration error reads:
//!
//! ```text
//! iris/palisade.yaml:12:11: field `model.format`: unknown variant `pickle`, expected `onnx`
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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

/// Deserializes one YAML document, reporting the failing field's path and position.
pub fn from_str<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, LocatedError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let inner = err.into_inner();
        let (line, column) = match inner.location() {
            Some(loc) => (Some(loc.line()), Some(loc.column())),
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

/// One document of a multi-document YAML file, with its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1-based line where the document starts.
    pub first_line: usize,
    /// The document, preceded by blank lines so that positions in errors are those of the
    /// whole file.
    pub text: String,
}

/// Splits a multi-document YAML file on `---` lines. Empty documents are dropped.
pub fn documents(text: &str) -> Vec<Document> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut docs = Vec::new();
    let mut start = 0;
    for end in 0..=lines.len() {
        let at_separator = lines.get(end).is_some_and(|line| {
            let trimmed = line.trim_end();
            trimmed == "---" || trimmed.starts_with("--- ")
        });
        if end < lines.len() && !at_separator {
            continue;
        }
        let chunk = &lines[start..end];
        let content = chunk.iter().position(|line| {
            let t = line.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if let Some(offset) = content {
            let mut text = "\n".repeat(start);
            text.extend(chunk.iter().copied());
            docs.push(Document { first_line: start + offset + 1, text });
        }
        start = end + 1;
    }
    docs
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
        let docs = documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[1].first_line, 5);
        let err = from_str::<serde_yaml::Value>(Path::new("m.yaml"), &docs[2].text).unwrap_err();
        assert_eq!(err.line, Some(10), "{err}");
        assert_eq!(from_str::<serde_yaml::Value>(Path::new("m.yaml"), &docs[1].text).unwrap()["b"], 2);
    }
}
