use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Checks the Kubernetes DNS-label rule (RFC 1123): 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
fn check_dns_label(what: &'static str, value: &str) -> Result<(), CoreError> {
    let fail = |reason| CoreError::InvalidName { what, value: value.to_owned(), reason };
    if value.is_empty() {
        return Err(fail("it is empty"));
    }
    if value.len() > 63 {
        return Err(fail("it is longer than 63 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(fail("it contains a character other than a-z, 0-9 and '-'"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(fail("it starts or ends with '-'"));
    }
    Ok(())
}

macro_rules! dns_label_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Parses a DNS label.
            pub fn new(value: impl Into<String>) -> Result<Self, CoreError> {
                let value = value.into();
                check_dns_label($what, &value)?;
                Ok(Self(value))
            }

            /// The label as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = CoreError;
            fn try_from(value: String) -> Result<Self, CoreError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = CoreError;
            fn from_str(value: &str) -> Result<Self, CoreError> {
                Self::new(value)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

dns_label_type!(
    /// A model's name: a Kubernetes DNS label, also its Open Inference Protocol name.
    ModelName,
    "model name"
);

dns_label_type!(
    /// A namespace: a Kubernetes DNS label that scopes models and policies.
    Namespace,
    "namespace"
);

impl Default for Namespace {
    fn default() -> Self {
        Namespace("default".to_owned())
    }
}

/// A model version, such as `1.0.0` or `2024-06-01.rc1`.
///
/// 1-128 characters of `[A-Za-z0-9._+-]`, starting with a letter or digit, so it is safe
/// as a path segment and in a URL. `latest` is reserved for the tag of that name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl Version {
    /// The reserved tag that names a model's most recently built version.
    pub const LATEST: &'static str = "latest";

    /// Parses a version.
    pub fn new(value: impl Into<String>) -> Result<Self, CoreError> {
        let value = value.into();
        let fail = |reason| CoreError::InvalidVersion { value: value.clone(), reason };
        if value.is_empty() {
            return Err(fail("it is empty"));
        }
        if value.len() > 128 {
            return Err(fail("it is longer than 128 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-')) {
            return Err(fail("it contains a character other than letters, digits, '.', '_', '+' and '-'"));
        }
        if !value.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(fail("it must start with a letter or digit"));
        }
        if value == Self::LATEST {
            return Err(fail("`latest` is reserved for the tag that names the newest version"));
        }
        Ok(Self(value))
    }

    /// The version as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Version {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, CoreError> {
        Self::new(value)
    }
}

impl std::str::FromStr for Version {
    type Err = CoreError;
    fn from_str(value: &str) -> Result<Self, CoreError> {
        Self::new(value)
    }
}

impl From<Version> for String {
    fn from(value: Version) -> String {
        value.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// One model version: namespace, name and version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// The namespace that scopes the model's policies.
    pub namespace: Namespace,
    /// The model's name.
    pub name: ModelName,
    /// The model's version.
    pub version: Version,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["iris", "a", "fraud-model-2", &"a".repeat(63)] {
            assert!(ModelName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Iris", "-iris", "iris-", "ir_is", "ir.is", "iris/x", &"a".repeat(64), "é"] {
            assert!(ModelName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        for ok in ["1", "1.0.0", "2024-06-01.rc1", "v1+build.5", "A_b"] {
            assert!(Version::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".1", "-1", "1/2", "..", "latest", "1 0", &"1".repeat(129)] {
            assert!(Version::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialize_checks() {
        let err = serde_json::from_str::<ModelName>("\"Bad\"").unwrap_err().to_string();
        assert!(err.contains("not a valid model name"), "{err}");
    }
}
