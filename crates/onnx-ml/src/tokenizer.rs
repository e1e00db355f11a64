//! `Tokenizer` (domain `com.microsoft`, opset 1), the tokenizer scikit-learn's text
//! pipelines export (skl2onnx's `TfidfVectorizer` and `CountVectorizer` converters).

use regex_automata::nfa::thompson::{self, pikevm::PikeVM};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, meta};

use crate::OnnxMlError;

/// Most states a compiled pattern may have (model files choose the patterns).
const NFA_SIZE_LIMIT: usize = 4 << 20;
/// The start-of-text marker `mark` adds before each row's tokens.
const START_TEXT: &str = "\u{2}";
/// The end-of-text marker `mark` adds after each row's tokens.
const END_TEXT: &str = "\u{3}";

/// The attributes of a `Tokenizer` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerAttributes {
    /// `mark`: surround each row's tokens with `"\x02"` and `"\x03"`.
    pub mark: bool,
    /// `pad_value`: what fills rows with fewer tokens than the longest.
    pub pad_value: String,
    /// `mincharnum`: tokens shorter than this many characters are dropped (at least 1).
    pub mincharnum: i64,
    /// `separators`: patterns that split the text (used when present).
    pub separators: Option<Vec<String>>,
    /// `tokenexp`: the pattern a token matches (used without `separators`).
    pub tokenexp: Option<String>,
}

/// How a [`Tokenizer`] finds tokens.
#[derive(Debug, Clone)]
enum Mode {
    /// Every character is a token (`separators: [""]` or `tokenexp: "."`).
    Characters,
    /// Text between matches of each separator in turn.
    Separators(Vec<Pattern>),
    /// Matches of one pattern.
    Tokens(Pattern),
}

/// A pattern in RE2 syntax, searched as RE2 does with `longest_match`: the leftmost
/// match, and of the matches that start there, the longest.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    /// Finds where the leftmost match starts.
    leftmost: meta::Regex,
    /// From a start, finds the longest match (`MatchKind::All`, anchored).
    longest: PikeVM,
}

impl Pattern {
    fn compile(attribute: &'static str, source: &str) -> Result<Pattern, OnnxMlError> {
        let translated =
            translate(source).map_err(|reason| OnnxMlError::InvalidAttribute { attribute, reason })?;
        let invalid = |e: &dyn std::fmt::Display| OnnxMlError::InvalidAttribute {
            attribute,
            reason: format!("pattern `{}` does not compile: {e}", truncate(source)),
        };
        let leftmost = meta::Regex::builder()
            .syntax(syntax::Config::new())
            .configure(meta::Config::new().nfa_size_limit(Some(NFA_SIZE_LIMIT)))
            .build(&translated)
            .map_err(|e| invalid(&e))?;
        let longest = PikeVM::builder()
            .syntax(syntax::Config::new())
            .thompson(thompson::Config::new().nfa_size_limit(Some(NFA_SIZE_LIMIT)))
            .configure(PikeVM::config().match_kind(MatchKind::All))
            .build(&translated)
            .map_err(|e| invalid(&e))?;
        Ok(Pattern { source: source.to_owned(), leftmost, longest })
    }

    /// The leftmost-longest match in `text[start..]` (context before `start` counts for
    /// `\b` and `^`), as a byte range of `text`.
    fn find(&self, text: &str, start: usize) -> Option<(usize, usize)> {
        let found = self.leftmost.search(&Input::new(text).range(start..))?;
        let from = found.start();
        let mut cache = self.longest.create_cache();
        let input = Input::new(text).range(from..).anchored(Anchored::Yes);
        let mut caps = self.longest.create_captures();
        self.longest.search(&mut cache, &input, &mut caps);
        let end = caps.get_match().map_or(found.end(), |m| m.end().max(found.end()));
        Some((from, end))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A compiled `Tokenizer` with onnxruntime's semantics.
///
/// * Input `[C]` or `[N, C]` strings; output `[.., T]` where `T` is the largest number of
///   tokens in any string (plus 2 with `mark`), shorter rows padded with `pad_value` after
///   their tokens (and after the end marker). When no string has a token, the output is
///   `[.., 0]`, marks or not.
/// * `tokenexp` patterns follow RE2's syntax and semantics, as in onnxruntime: `\w`, `\d`,
///   `\s` and `\b` are ASCII-only, and each search takes the leftmost match, the longest
///   of those that start there. A match shorter than `mincharnum` characters is skipped,
///   and the search goes on one character after its start.
/// * `separators` are patterns too; each splits every piece the previous one left, and
///   pieces shorter than `mincharnum` are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenizer {
    mark: bool,
    pad_value: String,
    mincharnum: usize,
    mode: ModeEq,
}

/// [`Mode`] compared by pattern source.
#[derive(Debug, Clone)]
struct ModeEq(Mode);

impl PartialEq for ModeEq {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Mode::Characters, Mode::Characters) => true,
            (Mode::Separators(a), Mode::Separators(b)) => a == b,
            (Mode::Tokens(a), Mode::Tokens(b)) => a == b,
            _ => false,
        }
    }
}

impl Tokenizer {
    /// Validates the attributes and compiles the patterns.
    pub fn new(attributes: TokenizerAttributes) -> Result<Self, OnnxMlError> {
        let TokenizerAttributes { mark, pad_value, mincharnum, separators, tokenexp } = attributes;
        let mincharnum = match usize::try_from(mincharnum) {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "mincharnum",
                    reason: format!("must be positive, got {mincharnum}"),
                });
            }
        };
        let mode = match (separators, tokenexp) {
            (Some(separators), _) => {
                if separators.is_empty() {
                    return Err(OnnxMlError::InvalidAttribute {
                        attribute: "separators",
                        reason: "must not be empty".into(),
                    });
                }
                if separators.len() == 1 && separators[0].is_empty() {
                    Mode::Characters
                } else {
                    let patterns = separators
                        .iter()
                        .map(|s| Pattern::compile("separators", s))
                        .collect::<Result<Vec<_>, _>>()?;
                    Mode::Separators(patterns)
                }
            }
            (None, Some(tokenexp)) if tokenexp == "." => Mode::Characters,
            (None, Some(tokenexp)) if !tokenexp.is_empty() => {
                Mode::Tokens(Pattern::compile("tokenexp", &tokenexp)?)
            }
            (None, _) => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "tokenexp",
                    reason: "one of `separators` and a non-empty `tokenexp` is required".into(),
                });
            }
        };
        if matches!(mode, Mode::Characters) && mincharnum > 1 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "mincharnum",
                reason: "must be 1 for tokenization into characters".into(),
            });
        }
        Ok(Tokenizer { mark, pad_value, mincharnum, mode: ModeEq(mode) })
    }

    /// Tokenizes `input` of `shape` (`[C]` or `[N, C]`): the output shape and strings.
    pub fn tokenize(
        &self,
        shape: &[usize],
        input: &[String],
    ) -> Result<(Vec<usize>, Vec<String>), OnnxMlError> {
        if !matches!(shape.len(), 1 | 2) || shape.iter().product::<usize>() != input.len() {
            return Err(OnnxMlError::InvalidInput(format!(
                "Tokenizer takes an input of shape [C] or [N, C], got {shape:?}"
            )));
        }
        let mut rows: Vec<Vec<&str>> = Vec::new();
        rows.try_reserve_exact(input.len()).map_err(|_| OnnxMlError::TooLarge { elements: input.len() })?;
        for s in input {
            rows.push(self.tokens(s));
        }
        let most = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut out_shape = shape.to_vec();
        if most == 0 {
            out_shape.push(0);
            return Ok((out_shape, Vec::new()));
        }
        let width = most + if self.mark { 2 } else { 0 };
        out_shape.push(width);
        let total = crate::alloc::product(input.len(), width)?;
        let mut out = crate::filled(total, String::new())?;
        for (row, slots) in rows.iter().zip(out.chunks_exact_mut(width)) {
            let mut slots = slots.iter_mut();
            let mut put = |s: &str| {
                if let Some(slot) = slots.next() {
                    s.clone_into(slot);
                }
            };
            if self.mark {
                put(START_TEXT);
            }
            for token in row {
                put(token);
            }
            if self.mark {
                put(END_TEXT);
            }
            for _ in row.len()..most {
                put(&self.pad_value);
            }
        }
        Ok((out_shape, out))
    }

    fn tokens<'s>(&self, s: &'s str) -> Vec<&'s str> {
        match &self.mode.0 {
            Mode::Characters => s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect(),
            Mode::Tokens(pattern) => {
                let mut tokens = Vec::new();
                let mut start = 0;
                while start <= s.len() {
                    let Some((from, to)) = pattern.find(s, start) else { break };
                    // Matches of a UTF-8 pattern on text fall on character boundaries.
                    let Some(token) = s.get(from..to) else { break };
                    if token.chars().count() >= self.mincharnum {
                        tokens.push(token);
                        start = to;
                        if to == from {
                            start += 1;
                        }
                    } else {
                        start = from + next_char_len(s, from);
                    }
                }
                tokens
            }
            Mode::Separators(patterns) => {
                let mut row = vec![s];
                for pattern in patterns {
                    let mut pieces = Vec::new();
                    for text in row {
                        let mut start = 0;
                        loop {
                            match pattern.find(text, start) {
                                Some((from, to)) => {
                                    let piece = text.get(start..from).unwrap_or_default();
                                    if piece.chars().count() >= self.mincharnum {
                                        pieces.push(piece);
                                    }
                                    start = if to > from { to } else { from + next_char_len(text, from) };
                                    if start > text.len() {
                                        break;
                                    }
                                }
                                None => {
                                    let piece = text.get(start..).unwrap_or_default();
                                    if piece.chars().count() >= self.mincharnum {
                                        pieces.push(piece);
                                    }
                                    break;
                                }
                            }
                        }
                    }
                    row = pieces;
                }
                row
            }
        }
    }
}

/// Bytes of the character at `at`, 1 at the end of the text (as onnxruntime reads the
/// terminating zero there).
fn next_char_len(s: &str, at: usize) -> usize {
    s.get(at..).and_then(|rest| rest.chars().next()).map_or(1, char::len_utf8)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Rewrites a pattern in RE2's syntax into the `regex` crate's, keeping RE2's meaning:
/// `\w \W \d \D \s \S` become their ASCII classes and `\b \B` ASCII word boundaries;
/// `\Q...\E` becomes escaped literals; inside brackets, `[`, `&`, `~` and a doubled
/// `-` are literals, as in RE2 (the `regex` crate reads them as nested classes and set
/// operations). `\C` (any byte) is refused.
fn translate(pattern: &str) -> Result<String, String> {
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = "\\t\\n\\f\\r ";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    // Inside a bracket expression: whether anything has been written since `[` or `[^`.
    let mut class: Option<bool> = None;
    while let Some(c) = chars.next() {
        match (c, class) {
            ('\\', _) => {
                let Some(e) = chars.next() else { return Err("the pattern ends with `\\`".into()) };
                let inside = class.is_some();
                match e {
                    'w' if inside => out.push_str(WORD),
                    'd' if inside => out.push_str("0-9"),
                    's' if inside => out.push_str(SPACE),
                    'W' if inside => out.push_str(&format!("[^{WORD}]")),
                    'D' if inside => out.push_str("[^0-9]"),
                    'S' if inside => out.push_str(&format!("[^{SPACE}]")),
                    'w' => out.push_str(&format!("[{WORD}]")),
                    'd' => out.push_str("[0-9]"),
                    's' => out.push_str(&format!("[{SPACE}]")),
                    'W' => out.push_str(&format!("[^{WORD}]")),
                    'D' => out.push_str("[^0-9]"),
                    'S' => out.push_str(&format!("[^{SPACE}]")),
                    'b' if !inside => out.push_str("(?-u:\\b)"),
                    'B' if !inside => out.push_str("(?-u:\\B)"),
                    'C' => return Err("`\\C` (any byte) is not supported".into()),
                    'Q' => {
                        let mut literal = String::new();
                        loop {
                            match chars.next() {
                                None => break,
                                Some('\\') if chars.peek() == Some(&'E') => {
                                    chars.next();
                                    break;
                                }
                                Some(l) => literal.push(l),
                            }
                        }
                        out.push_str(&regex_syntax_escape(&literal));
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                if let Some(written) = class.as_mut() {
                    *written = true;
                }
            }
            ('[', None) => {
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                // A `]` right after the opening is a literal.
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str("\\]");
                    class = Some(true);
                } else {
                    class = Some(false);
                }
            }
            ('[', Some(_)) if chars.peek() == Some(&':') => {
                // A POSIX class `[:name:]`, copied through its closing `:]`.
                out.push('[');
                let mut previous = '[';
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' && previous == ':' {
                        break;
                    }
                    previous = p;
                }
                class = Some(true);
            }
            (']', Some(_)) => {
                out.push(']');
                class = None;
            }
            ('[' | '&' | '~', Some(_)) => {
                out.push('\\');
                out.push(c);
                class = Some(true);
            }
            ('-', Some(_)) if chars.peek() == Some(&'-') => {
                out.push_str("\\-");
                class = Some(true);
            }
            (_, Some(_)) => {
                out.push(c);
                class = Some(true);
            }
            (_, None) => out.push(c),
        }
    }
    Ok(out)
}

/// Escapes every meta character of `literal`.
fn regex_syntax_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tokenizer(tokenexp: Option<&str>, separators: Option<&[&str]>, mark: bool, min: i64) -> Tokenizer {
        Tokenizer::new(TokenizerAttributes {
            mark,
            pad_value: "#".into(),
            mincharnum: min,
            separators: separators.map(|s| s.iter().map(|s| s.to_string()).collect()),
            tokenexp: tokenexp.map(str::to_owned),
        })
        .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leftmost_longest_like_re2() {
        let t = tokenizer(Some("a|ab"), None, false, 1);
        assert_eq!(t.tokenize(&[1], &strings(&["xab"])).unwrap().1, strings(&["ab"]));
        let t = tokenizer(Some(r"\w|\w\w"), None, false, 1);
        assert_eq!(t.tokenize(&[1], &strings(&["abc"])).unwrap().1, strings(&["ab", "c"]));
    }

    #[test]
    fn ascii_word_classes_like_re2() {
        let t = tokenizer(Some(r"\b\w\w+\b"), None, false, 1);
        let (shape, out) = t.tokenize(&[2], &strings(&["the café sat", "a b"])).unwrap();
        // RE2's \w is ASCII: "café" yields "caf" only if a boundary follows, which \b
        // (ASCII) sees between `f` and `é`.
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(out, strings(&["the", "caf", "sat", "#", "#", "#"]));
    }

    #[test]
    fn marks_and_padding() {
        let t = tokenizer(Some(r"\w+"), None, true, 1);
        let (shape, out) = t.tokenize(&[1, 2], &strings(&["a b", "c"])).unwrap();
        assert_eq!(shape, vec![1, 2, 4]);
        assert_eq!(out, strings(&["\u{2}", "a", "b", "\u{3}", "\u{2}", "c", "\u{3}", "#"]));
        let (shape, out) = t.tokenize(&[2], &strings(&["", "  "])).unwrap();
        assert_eq!(shape, vec![2, 0]);
        assert!(out.is_empty());
    }

    #[test]
    fn short_matches_are_skipped_one_character_on() {
        let t = tokenizer(Some(r"\w+"), None, false, 3);
        assert_eq!(t.tokenize(&[1], &strings(&["ab abcd"])).unwrap().1, strings(&["abcd"]));
        // After a too-short match the search restarts one character after its start.
        let t = tokenizer(Some(r"[a-z]{2}"), None, false, 3);
        assert_eq!(t.tokenize(&[1], &strings(&["abc"])).unwrap().0, vec![1, 0]);
    }

    #[test]
    fn separators_split_in_turn() {
        let t = tokenizer(None, Some(&[" ", ","]), false, 1);
        let (_, out) = t.tokenize(&[2], &strings(&["a,b c", "d"])).unwrap();
        assert_eq!(out, strings(&["a", "b", "c", "d", "#", "#"]));
        let t = tokenizer(None, Some(&[""]), false, 1);
        assert_eq!(t.tokenize(&[1], &strings(&["hé"])).unwrap().1, strings(&["h", "é"]));
    }

    #[test]
    fn translation_keeps_re2_meaning() {
        assert_eq!(translate(r"[\w-]").unwrap(), "[0-9A-Za-z_-]");
        assert_eq!(translate(r"[[a]").unwrap(), r"[\[a]");
        assert_eq!(translate(r"[]a]").unwrap(), r"[\]a]");
        assert_eq!(translate(r"[[:alpha:]&]").unwrap(), r"[[:alpha:]\&]");
        assert_eq!(translate(r"\Qa.b\E").unwrap(), r"a\.b");
        assert!(translate(r"\C").is_err());
        for p in [r"\b\w\w+\b", r"(?i)[^\W\d]+", r"\B\w", r"\pL+", r"\S+"] {
            Pattern::compile("tokenexp", p).unwrap();
        }
    }

    #[test]
    fn bad_attributes_are_errors() {
        let build = |tokenexp: Option<&str>, separators: Option<Vec<String>>, min| {
            Tokenizer::new(TokenizerAttributes {
                mark: false,
                pad_value: "#".into(),
                mincharnum: min,
                separators,
                tokenexp: tokenexp.map(str::to_owned),
            })
        };
        assert!(build(None, None, 1).is_err());
        assert!(build(Some(""), None, 1).is_err());
        assert!(build(Some("("), None, 1).is_err());
        assert!(build(Some("a"), None, 0).is_err());
        assert!(build(Some("."), None, 2).is_err());
        assert!(build(None, Some(vec![]), 1).is_err());
    }
}
