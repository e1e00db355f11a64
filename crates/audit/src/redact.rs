//! Field redaction for payloads kept at levels `Request` and `RequestResponse`.

use serde_json::Value;

use crate::AuditError;

/// The text that replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A plain key, matched at any depth.
    Anywhere(String),
    /// A path from the root.
    Path(Vec<Step>),
}

/// A parsed set of redaction paths.
///
/// # Syntax
///
/// Each entry names what to replace with the string `"[redacted]"` (the whole value:
/// scalar, object or array):
///
/// - a **plain key** (no `.`, `[`, `]`, and not `*` or `$...`), e.g. `password`: every
///   object member with that name, at any depth;
/// - a **path**, anchored at the root, e.g. `inputs[*].data`, `parameters.api_key`,
///   `$.outputs[0]`: segments separated by `.`, optionally starting with `$` or `$.`; a
///   segment is a member name (or `*` for every member) followed by any number of
///   selectors, `[*]` (every element) or `[N]` (element N, from 0). A segment may also be
///   only selectors (`[*].data`, `$[0]`). Member names cannot contain `.`, `[` or `]`.
///
/// A path that matches nothing changes nothing. Paths are parsed when a [`Redactor`] is
/// built, so a typo fails at configuration time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    rules: Vec<Rule>,
}

impl Redactor {
    /// Parses `fields`; fails on the first malformed path.
    pub fn new<S: AsRef<str>>(fields: &[S]) -> Result<Self, AuditError> {
        let rules = fields.iter().map(|f| parse(f.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A copy of `value` with every matching field replaced by `"[redacted]"`.
    pub fn apply(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.apply_in_place(&mut value);
        value
    }

    /// Replaces every matching field of `value` with `"[redacted]"`.
    pub fn apply_in_place(&self, value: &mut Value) {
        for rule in &self.rules {
            match rule {
                Rule::Anywhere(key) => redact_anywhere(value, key),
                Rule::Path(steps) => redact_path(value, steps),
            }
        }
    }
}

/// A copy of `value` with the fields named in `fields` replaced by `"[redacted]"` (see
/// [`Redactor`] for the syntax).
///
/// Fails closed: if any path is malformed, the whole value is replaced by
/// `"[redacted]"`. Use [`Redactor::new`] at configuration time to reject bad paths early.
pub fn redact(value: &Value, fields: &[String]) -> Value {
    match Redactor::new(fields) {
        Ok(redactor) => redactor.apply(value),
        Err(e) => {
            tracing::warn!(error = %e, "malformed redaction path: redacting the whole payload");
            Value::String(REDACTED.to_owned())
        }
    }
}

fn parse(path: &str) -> Result<Rule, AuditError> {
    let fail =
        |reason: &str| AuditError::InvalidRedaction { path: path.to_owned(), reason: reason.to_owned() };
    if path.is_empty() {
        return Err(fail("it is empty"));
    }
    if !path.contains(['.', '[', ']']) && path != "*" && !path.starts_with('$') {
        return Ok(Rule::Anywhere(path.to_owned()));
    }
    let rest = path.strip_prefix('$').map_or(path, |r| r.strip_prefix('.').unwrap_or(r));
    let mut steps = Vec::new();
    if rest.is_empty() {
        return Err(fail("it names the whole payload"));
    }
    for segment in rest.split('.') {
        let (name, mut selectors) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
        match name {
            "" if selectors.is_empty() => return Err(fail("it has an empty segment")),
            "" => {}
            "*" => steps.push(Step::AnyKey),
            _ if name.contains(']') => return Err(fail("a ']' without '['")),
            _ => steps.push(Step::Key(name.to_owned())),
        }
        while !selectors.is_empty() {
            let Some(inner) = selectors.strip_prefix('[') else {
                return Err(fail("text after a selector must start a new segment with '.'"));
            };
            let Some(end) = inner.find(']') else { return Err(fail("a '[' without ']'")) };
            let index = &inner[..end];
            steps.push(match index {
                "*" => Step::AnyIndex,
                _ if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                    Step::Index(index.parse().map_err(|_| fail("an index is too large"))?)
                }
                _ => return Err(fail("a selector must be [*] or [N]")),
            });
            selectors = &inner[end + 1..];
        }
    }
    Ok(Rule::Path(steps))
}

fn redacted() -> Value {
    Value::String(REDACTED.to_owned())
}

fn redact_anywhere(value: &mut Value, key: &str) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if name == key {
                    *member = redacted();
                } else {
                    redact_anywhere(member, key);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_anywhere(item, key)),
        _ => {}
    }
}

fn redact_path(value: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else {
        *value = redacted();
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(members)) => {
            if let Some(member) = members.get_mut(key) {
                redact_path(member, rest);
            }
        }
        (Step::AnyKey, Value::Object(members)) => members.values_mut().for_each(|m| redact_path(m, rest)),
        (Step::Index(i), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*i) {
                redact_path(item, rest);
            }
        }
        (Step::AnyIndex, Value::Array(items)) => items.iter_mut().for_each(|item| redact_path(item, rest)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn v2_inference_request_paths() {
        let request = json!({
            "id": "42",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]},
                {"name": "y", "datatype": "BYTES", "shape": [1], "data": ["secret"]}
            ],
            "parameters": {"api_key": "k", "nested": {"password": "p"}}
        });
        let out = redact(&request, &fields(&["inputs[*].data", "parameters.api_key", "password"]));
        assert_eq!(
            out,
            json!({
                "id": "42",
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": "[redacted]"},
                    {"name": "y", "datatype": "BYTES", "shape": [1], "data": "[redacted]"}
                ],
                "parameters": {"api_key": "[redacted]", "nested": {"password": "[redacted]"}}
            })
        );
        let out = redact(&request, &fields(&["$.inputs[1]", "*.nested"]));
        assert_eq!(out["inputs"][1], json!("[redacted]"));
        assert_eq!(out["inputs"][0]["name"], json!("x"));
        assert_eq!(out["parameters"]["nested"], json!("[redacted]"));
        assert_eq!(
            redact(&json!([[1, 2], [3]]), &fields(&["[*][0]"])),
            json!([["[redacted]", 2], ["[redacted]"]])
        );
        assert_eq!(redact(&request, &fields(&["nothing.here", "inputs[9]"])), request);
    }

    #[test]
    fn malformed_paths_are_refused_and_redact_everything() {
        for bad in ["", "a..b", "a[", "a[x]", "a[1]b", "a]", "$", "$.", "a.", "[]"] {
            assert!(Redactor::new(&[bad]).is_err(), "{bad:?}");
        }
        assert_eq!(redact(&json!({"a": 1}), &fields(&["a["])), json!("[redacted]"));
        assert!(Redactor::new(&["a", "a.b[*]", "$[0]", "*", "x[3][*]"]).is_ok());
    }
}
