//! Image references: `REGISTRY/REPOSITORY[:TAG]`.

use std::fmt;

use crate::ImageError;

/// Where an image is pushed: a registry host, a repository in it, and a tag.
///
/// The registry is always explicit (a name with a dot or a port, or `localhost`): a push
/// never goes to a default registry by surprise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    /// `path/of/repository`, lower case.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

impl ImageRef {
    /// Parses `REGISTRY/REPOSITORY[:TAG]`; without a tag, `default_tag`.
    pub fn parse(text: &str, default_tag: &str) -> Result<ImageRef, ImageError> {
        let refuse =
            |problem: &str| ImageError::Reference { reference: text.to_owned(), problem: problem.to_owned() };
        if text.contains('@') {
            return Err(refuse("push by tag: a digest is what the push produces"));
        }
        let Some((registry, rest)) = text.split_once('/') else {
            return Err(refuse(
                "expected REGISTRY/REPOSITORY[:TAG], such as registry.example.com/models/iris:1.0.0",
            ));
        };
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(refuse(
                "the first part must be a registry host (with a dot or a port, or localhost); Palisade has no default registry",
            ));
        }
        if registry.is_empty()
            || !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(refuse("the registry must be a host name or address, with an optional port"));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, tag),
            _ => (rest, default_tag),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if repository.len() > 255 || !repository.split('/').all(component_ok) {
            return Err(refuse(
                "the repository must be lower-case letters, digits and . _ - separated by /, each part starting and ending with a letter or digit",
            ));
        }
        if !tag_ok(tag) {
            return Err(refuse("the tag must be 1-128 letters, digits, _ . -, not starting with . or -"));
        }
        Ok(ImageRef { registry: registry.to_owned(), repository: repository.to_owned(), tag: tag.to_owned() })
    }

    /// Whether the registry is on this machine (plain HTTP is used only then).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// A valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn tag_ok(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A model version as a tag: characters a tag cannot hold (`+` of semver build metadata)
/// become `_`, as Docker's own tooling does.
pub fn version_tag(version: &str) -> String {
    let tag: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' })
        .take(128)
        .collect();
    if tag_ok(&tag) { tag } else { format!("v{}", &tag[..tag.len().min(127)]) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn references_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/models/iris:1.0.0", "x").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "models/iris", "1.0.0")
        );
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/models/iris:1.0.0");
        let r = ImageRef::parse("registry.example.com/iris", "2.0").unwrap();
        assert_eq!(r.tag, "2.0");
        assert!(!r.is_loopback());
        assert!(ImageRef::parse("localhost/iris", "1").unwrap().is_loopback());
        assert!(ImageRef::parse("[::1]:5000/iris:1", "1").unwrap().is_loopback());
        assert!(!ImageRef::parse("127.0.0.1.example.com/iris", "1").unwrap().is_loopback());
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for (text, problem) in [
            ("iris:1.0", "REGISTRY/REPOSITORY"),
            ("library/iris:1.0", "registry host"),
            ("r.example.com/Iris", "lower-case"),
            ("r.example.com/iris:-x", "tag"),
            ("r.example.com/iris@sha256:00", "digest"),
            ("r.example.com//iris", "lower-case"),
        ] {
            let err = ImageRef::parse(text, "1").unwrap_err().to_string();
            assert!(err.contains(problem), "{text}: {err}");
        }
    }

    #[test]
    fn versions_become_tags() {
        assert_eq!(version_tag("1.0.0"), "1.0.0");
        assert_eq!(version_tag("1.0.0+build.5"), "1.0.0_build.5");
        assert_eq!(version_tag(".hidden"), "v.hidden");
    }
}
