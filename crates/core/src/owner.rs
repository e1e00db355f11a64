use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CoreError, ModelName, Namespace};

/// Someone who owns a model: by default the only caller allowed, and the one who sets its policies.
///
/// Written in `palisade.yaml` as a plain email (`alice@example.com`), `group:NAME`
/// (matched against the token's groups claim) or `serviceaccount:NAMESPACE/NAME`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Owner {
    /// A person, matched against a verified `email` claim.
    Email(String),
    /// A group, matched against the token's groups claim.
    Group(String),
    /// A Palisade service account.
    ServiceAccount {
        /// The service account's namespace.
        namespace: Namespace,
        /// The service account's name.
        name: ModelName,
    },
}

impl Owner {
    /// Parses an owner entry.
    pub fn parse(value: &str) -> Result<Self, CoreError> {
        let fail = |reason| CoreError::InvalidOwner { value: value.to_owned(), reason };
        if let Some(group) = value.strip_prefix("group:") {
            if group.is_empty()
                || group.len() > 256
                || group.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(fail("the group name must be 1-256 characters without spaces"));
            }
            return Ok(Owner::Group(group.to_owned()));
        }
        if let Some(account) = value.strip_prefix("serviceaccount:") {
            let (namespace, name) = account
                .split_once('/')
                .ok_or_else(|| fail("a service account is written serviceaccount:NAMESPACE/NAME"))?;
            let namespace =
                Namespace::new(namespace).map_err(|_| fail("the namespace is not a DNS label"))?;
            let name =
                ModelName::new(name).map_err(|_| fail("the service account name is not a DNS label"))?;
            return Ok(Owner::ServiceAccount { namespace, name });
        }
        let (local, domain) = value.split_once('@').ok_or_else(|| fail("it has no '@'"))?;
        let valid_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if local.is_empty()
            || value.len() > 254
            || !valid_domain
            || local.chars().any(|c| c.is_control() || c.is_whitespace() || c == '@')
        {
            return Err(fail("it is not an email address"));
        }
        Ok(Owner::Email(value.to_owned()))
    }
}

impl TryFrom<String> for Owner {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, CoreError> {
        Owner::parse(&value)
    }
}

impl From<Owner> for String {
    fn from(owner: Owner) -> String {
        owner.to_string()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Email(email) => f.write_str(email),
            Owner::Group(group) => write!(f, "group:{group}"),
            Owner::ServiceAccount { namespace, name } => write!(f, "serviceaccount:{namespace}/{name}"),
        }
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(Owner::parse("alice@example.com").unwrap(), Owner::Email("alice@example.com".into()));
        assert_eq!(Owner::parse("group:fraud-analysts").unwrap(), Owner::Group("fraud-analysts".into()));
        assert_eq!(
            Owner::parse("serviceaccount:billing/billing-batch").unwrap().to_string(),
            "serviceaccount:billing/billing-batch"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "group:",
            "group:a b",
            "serviceaccount:x",
            "serviceaccount:Bad/x",
            "a@b@c.com",
        ] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
    }
}
