//! `StringNormalizer` (ONNX opset 10).

use std::collections::HashSet;

use crate::OnnxMlError;

/// The case change a [`StringNormalizer`] applies (`case_change_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseChange {
    /// `LOWER`.
    Lower,
    /// `UPPER`.
    Upper,
    /// `NONE` (the default).
    None,
}

impl std::str::FromStr for CaseChange {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "LOWER" => Ok(CaseChange::Lower),
            "UPPER" => Ok(CaseChange::Upper),
            "NONE" => Ok(CaseChange::None),
            other => Err(OnnxMlError::unknown_value("case_change_action", other)),
        }
    }
}

/// The attributes of a `StringNormalizer` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringNormalizerAttributes {
    /// `case_change_action`.
    pub case_change_action: CaseChange,
    /// `is_case_sensitive`: whether stopwords match case-sensitively (default false).
    pub is_case_sensitive: bool,
    /// `stopwords`: strings removed from the input.
    pub stopwords: Vec<String>,
    /// `locale`, when set (onnxruntime's default is `en_US.UTF-8`).
    pub locale: Option<String>,
}

/// A `StringNormalizer`: removes stopwords, then changes the case of what remains, as
/// onnxruntime does under its default `en_US.UTF-8` locale.
///
/// * Case changes map each character on its own (Unicode's simple case mapping, as the C
///   library's `towlower`/`towupper` do): `ß` stays `ß` in upper case, `İ` becomes `i`.
/// * Without case sensitivity, stopwords and inputs are compared after changing both to
///   upper case when the action is `UPPER`, and to lower case otherwise; the strings that
///   remain keep their own case until the case change.
/// * The input is `[C]` or `[1, C]`; the output has the same rank and the remaining
///   strings. When nothing remains, the output holds one empty string (`[1]` or `[1, 1]`).
/// * Locales whose case rules differ from the default (Turkish, Azerbaijani,
///   Lithuanian) are refused rather than mapped wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringNormalizer {
    case: CaseChange,
    case_sensitive: bool,
    /// Stopwords as compared: as given when case-sensitive, else case-changed.
    stopwords: HashSet<String>,
}

impl StringNormalizer {
    /// Validates the attributes: stopwords must be non-empty and distinct (as compared).
    pub fn new(attributes: StringNormalizerAttributes) -> Result<Self, OnnxMlError> {
        let StringNormalizerAttributes { case_change_action, is_case_sensitive, stopwords, locale } =
            attributes;
        if let Some(locale) = &locale {
            let language = locale.split(['_', '-', '.']).next().unwrap_or_default().to_ascii_lowercase();
            if matches!(language.as_str(), "tr" | "az" | "lt") {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "locale",
                    reason: format!(
                        "locale `{locale}` has its own case rules, which Palisade does not implement"
                    ),
                });
            }
        }
        let compare = compare_case(case_change_action);
        let mut set = HashSet::with_capacity(stopwords.len());
        for (index, word) in stopwords.into_iter().enumerate() {
            if word.is_empty() {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "stopwords",
                    reason: format!("entry {index} is empty"),
                });
            }
            let key = if is_case_sensitive { word } else { change_case(&word, compare) };
            if !set.insert(key) {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "stopwords",
                    reason: format!("entry {index} repeats an earlier stopword"),
                });
            }
        }
        Ok(StringNormalizer { case: case_change_action, case_sensitive: is_case_sensitive, stopwords: set })
    }

    /// Whether the output's size depends on the input's values (there are stopwords).
    pub fn filters(&self) -> bool {
        !self.stopwords.is_empty()
    }

    /// Normalizes `input` of `shape` (`[C]` or `[1, C]`): the output shape and strings.
    pub fn normalize(
        &self,
        shape: &[usize],
        input: &[String],
    ) -> Result<(Vec<usize>, Vec<String>), OnnxMlError> {
        let leading_one = match *shape {
            [c] if c == input.len() => false,
            [1, c] if c == input.len() => true,
            _ => {
                return Err(OnnxMlError::InvalidInput(format!(
                    "StringNormalizer takes an input of shape [C] or [1, C], got {shape:?}"
                )));
            }
        };
        let compare = compare_case(self.case);
        let mut out = Vec::new();
        out.try_reserve_exact(input.len()).map_err(|_| OnnxMlError::TooLarge { elements: input.len() })?;
        for s in input {
            if !self.stopwords.is_empty() {
                let stop = if self.case_sensitive {
                    self.stopwords.contains(s)
                } else {
                    self.stopwords.contains(&change_case(s, compare))
                };
                if stop {
                    continue;
                }
            }
            out.push(change_case(s, self.case));
        }
        if out.is_empty() {
            out.push(String::new());
        }
        let shape = if leading_one { vec![1, out.len()] } else { vec![out.len()] };
        Ok((shape, out))
    }
}

/// The case stopwords are compared in, without case sensitivity.
fn compare_case(action: CaseChange) -> CaseChange {
    if action == CaseChange::Upper { CaseChange::Upper } else { CaseChange::Lower }
}

/// Changes the case of each character on its own.
pub(crate) fn change_case(s: &str, action: CaseChange) -> String {
    match action {
        CaseChange::None => s.to_owned(),
        CaseChange::Lower => s.chars().map(simple_lower).collect(),
        CaseChange::Upper => s.chars().map(simple_upper).collect(),
    }
}

/// Unicode's simple lowercase mapping: one character for one.
fn simple_lower(c: char) -> char {
    let mut full = c.to_lowercase();
    match (full.next(), full.next()) {
        (Some(one), None) => one,
        // U+0130 (İ) lowercases to "i̇" in full, to `i` in the simple mapping.
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// Unicode's simple uppercase mapping: one character for one.
fn simple_upper(c: char) -> char {
    let mut full = c.to_uppercase();
    match (full.next(), full.next()) {
        (Some(one), None) => one,
        // Characters whose full uppercase is several characters have no simple uppercase
        // (ß, ligatures), except the Greek letters with ypogegrammeni, which map to their
        // prosgegrammeni forms.
        _ => match u32::from(c) {
            0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
                char::from_u32(u32::from(c) + 8).unwrap_or(c)
            }
            0x1FB3 => '\u{1FBC}',
            0x1FC3 => '\u{1FCC}',
            0x1FF3 => '\u{1FFC}',
            _ => c,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn normalizer(case: CaseChange, sensitive: bool, stopwords: &[&str]) -> StringNormalizer {
        StringNormalizer::new(StringNormalizerAttributes {
            case_change_action: case,
            is_case_sensitive: sensitive,
            stopwords: stopwords.iter().map(|s| s.to_string()).collect(),
            locale: None,
        })
        .unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn simple_case_mapping() {
        assert_eq!(change_case("Straße İstanbul ǅ", CaseChange::Upper), "STRAßE İSTANBUL Ǆ");
        assert_eq!(change_case("Straße İstanbul ǅ", CaseChange::Lower), "straße istanbul ǆ");
        assert_eq!(change_case("ᾳ ﬁ", CaseChange::Upper), "ᾼ ﬁ");
    }

    #[test]
    fn stopwords_compare_in_the_actions_case() {
        let n = normalizer(CaseChange::Upper, false, &["the", "A"]);
        let (shape, out) = n.normalize(&[4], &strings(&["The", "cat", "a", "mat"])).unwrap();
        assert_eq!(shape, vec![2]);
        assert_eq!(out, strings(&["CAT", "MAT"]));
        let n = normalizer(CaseChange::None, true, &["the"]);
        let (shape, out) = n.normalize(&[1, 3], &strings(&["The", "the", "x"])).unwrap();
        assert_eq!(shape, vec![1, 2]);
        assert_eq!(out, strings(&["The", "x"]));
    }

    #[test]
    fn everything_filtered_leaves_one_empty_string() {
        let n = normalizer(CaseChange::Lower, false, &["x"]);
        assert_eq!(n.normalize(&[2], &strings(&["X", "x"])).unwrap(), (vec![1], strings(&[""])));
        assert_eq!(n.normalize(&[1, 1], &strings(&["x"])).unwrap(), (vec![1, 1], strings(&[""])));
    }

    #[test]
    fn refuses_what_onnxruntime_refuses() {
        let build = |words: &[&str], sensitive| {
            StringNormalizer::new(StringNormalizerAttributes {
                case_change_action: CaseChange::Lower,
                is_case_sensitive: sensitive,
                stopwords: strings(words),
                locale: None,
            })
        };
        assert!(build(&[""], true).is_err());
        assert!(build(&["a", "A"], false).is_err());
        assert!(build(&["a", "A"], true).is_ok());
        assert!(
            normalizer(CaseChange::Lower, false, &[])
                .normalize(&[2, 2], &strings(&["a", "b", "c", "d"]))
                .is_err()
        );
        assert!("lower".parse::<CaseChange>().is_err());
    }
}
