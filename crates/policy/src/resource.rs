//! Istio's `AuthorizationPolicy` resource (`security.istio.io/v1` and `v1beta1`), exactly as
//! users write it, with Istio's validation applied while parsing.
//!
//! A value of these types has passed every check `istioctl validate` makes (plus a few of
//! Palisade's own, such as a required `metadata.namespace`): the evaluator compiles it
//! without second-guessing. Unknown fields anywhere, and unknown condition keys, are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use palisade_core::Namespace;
use palisade_core::yaml::{self, LocatedError};
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PolicyError;
use crate::pattern::{Cidr, check_path_template};

/// Largest policy document accepted, checked before parsing.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The annotation that turns a policy into a dry run: evaluated and reported, never enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// The `kind` this module parses.
pub const KIND: &str = "AuthorizationPolicy";

/// An `AuthorizationPolicy` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy", rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// `security.istio.io/v1` or `security.istio.io/v1beta1` (same schema).
    pub api_version: ApiVersion,
    /// Always [`KIND`].
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// What the policy selects and decides.
    pub spec: Spec,
    /// Where the policy was read from; not part of the document.
    #[serde(skip)]
    pub source_file: PathBuf,
    /// Who created the policy through the owner self-service API; not part of the document.
    /// Such a policy applies to a model only while its creator is an owner of that model
    /// version. `None`: a platform policy, applied as Istio applies it.
    #[serde(skip)]
    pub creator: Option<Creator>,
}

/// The model owner who created an owner-managed policy: the verified claims their
/// ownership is judged by (`email`, `email_verified`, the groups claim, `iss`, `sub`).
#[derive(Debug, Clone, PartialEq)]
pub struct Creator {
    /// The creator's request principal (`iss/sub`), for people reading the record.
    pub principal: String,
    /// The claims that identify the creator as an owner.
    pub claims: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
}

impl AuthorizationPolicy {
    /// Whether the `istio.io/dry-run` annotation makes this a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.metadata.annotations.get(DRY_RUN_ANNOTATION).and_then(|v| parse_go_bool(v)).unwrap_or(false)
    }
}

/// The API versions that carry `AuthorizationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApiVersion {
    /// `security.istio.io/v1`.
    #[serde(rename = "security.istio.io/v1")]
    V1,
    /// `security.istio.io/v1beta1`.
    #[serde(rename = "security.istio.io/v1beta1")]
    V1beta1,
}

/// The subset of Kubernetes `ObjectMeta` a policy uses.
///
/// Read-only fields that `kubectl get -o yaml` adds (`uid`, `resourceVersion`, `generation`,
/// `creationTimestamp`, `managedFields`, ...) are accepted and dropped, so exported objects load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMeta")]
pub struct ObjectMeta {
    /// The policy's name: a DNS subdomain (RFC 1123), unique in its namespace.
    pub name: String,
    /// The namespace whose models the policy governs (all models when it is the root namespace).
    pub namespace: Namespace,
    /// Annotations; `istio.io/dry-run` is the one Palisade reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels, kept for tooling.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `spec`: the policy proper.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec", rename_all = "camelCase")]
pub struct Spec {
    /// Which models of the namespace the policy applies to; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// What a match does.
    #[serde(default)]
    pub action: Action,
    /// The external authorizer of a CUSTOM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// The rules, ORed. None at all: the policy never matches (`spec: {}` allows nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// `spec.selector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a model must all carry for the policy to apply; empty selects every model.
    #[serde(default, deserialize_with = "match_labels")]
    pub match_labels: BTreeMap<String, String>,
}

/// `spec.action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow a request that matches a rule.
    #[default]
    Allow,
    /// Deny a request that matches a rule.
    Deny,
    /// Record a request that matches a rule; never changes the decision.
    Audit,
    /// Ask an external authorizer about a request that matches a rule. Palisade has no
    /// external authorizer, so it denies such requests (fail closed).
    Custom,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        })
    }
}

/// `spec.provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// The extension provider's name in Istio's mesh config.
    #[serde(default)]
    pub name: String,
}

/// One rule: it matches when any `from`, any `to` and every `when` matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct Rule {
    /// Sources; absent matches every source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// Operations; absent matches every operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Conditions, ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// An entry of `from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFrom {
    /// The source to match.
    pub source: Source,
}

/// An entry of `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTo {
    /// The operation to match.
    pub operation: Operation,
}

/// `from[].source`: fields are ANDed, the values of a field ORed; `not*` excludes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSource", rename_all = "camelCase")]
pub struct Source {
    /// mTLS peer identities (`cluster.local/ns/NS/sa/SA`); `*` is any mTLS peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Excluded peer identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT principals, `iss/sub`; `*` is any authenticated token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// Excluded JWT principals.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces (from the peer identity); `*` may appear anywhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Excluded peer namespaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Connection peer addresses or CIDR blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<IpBlock>,
    /// Excluded connection peer addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<IpBlock>,
    /// Original client addresses (X-Forwarded-For / PROXY protocol).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<IpBlock>,
    /// Excluded original client addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<IpBlock>,
    /// Peer service accounts, `NS/NAME` or `NAME` (in the policy's namespace).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Excluded peer service accounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Peer trust domains (`cluster.local`); one wildcard at the start or end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Excluded peer trust domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// `to[].operation`: fields are ANDed, the values of a field ORed; `not*` excludes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOperation", rename_all = "camelCase")]
pub struct Operation {
    /// Request authorities, case-insensitive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Excluded authorities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Excluded destination ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    /// HTTP methods, case-sensitive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Excluded methods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Normalized paths: exact, `prefix*`, `*suffix`, `*`, or a `{*}` / `{**}` template.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Excluded paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A `when` condition: `key` must match one of `values` and none of `notValues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCondition", rename_all = "camelCase")]
pub struct Condition {
    /// The attribute.
    pub key: ConditionKey,
    /// Accepted values (ORed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Rejected values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// The attributes Istio's `when` conditions support.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConditionKey {
    /// `request.headers[NAME]`.
    RequestHeader(String),
    /// `source.ip`: the connection peer address.
    SourceIp,
    /// `remote.ip`: the original client address.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.serviceAccount`: `NS/NAME` or `NAME`.
    SourceServiceAccount,
    /// `source.trustDomain`.
    SourceTrustDomain,
    /// `source.principal`.
    SourcePrincipal,
    /// `request.auth.principal`: `iss/sub`.
    RequestPrincipal,
    /// `request.auth.audiences`: the `aud` claim.
    RequestAudiences,
    /// `request.auth.presenter`: the `azp` claim.
    RequestPresenter,
    /// `request.auth.claims[A][B]...`: a claim, possibly nested.
    RequestClaim(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

impl ConditionKey {
    /// Parses a key as Istio's `ValidateAttribute` and `model.New` do.
    pub fn parse(key: &str) -> Result<ConditionKey, String> {
        let map_key = |prefix: &str| -> Result<(), String> {
            let open = key.find('[');
            match open {
                Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => Ok(()),
                _ => Err(format!("bad key ({key}): should have the form {prefix}[NAME]")),
            }
        };
        Ok(match key {
            "" => return Err("`key` must not be empty".to_owned()),
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "source.trustDomain" => ConditionKey::SourceTrustDomain,
            "source.principal" => ConditionKey::SourcePrincipal,
            "request.auth.principal" => ConditionKey::RequestPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAudiences,
            "request.auth.presenter" => ConditionKey::RequestPresenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            "destination.namespace" => {
                return Err(format!("attribute {key} is replaced by the metadata.namespace"));
            }
            "destination.name" | "destination.user" => {
                return Err(format!("deprecated attribute {key}: only supported in v1alpha1"));
            }
            k if k.starts_with("destination.labels") => {
                return Err(format!("attribute {key} is replaced by the workload selector"));
            }
            k if k.starts_with("experimental.envoy.filters.") => {
                return Err(format!(
                    "attribute {key} is not supported: it reads Envoy filter metadata, and Palisade has no Envoy filters"
                ));
            }
            k if k.starts_with("request.headers") => {
                map_key("request.headers")?;
                let name = extract_name_in_brackets(&k["request.headers".len()..])?;
                ConditionKey::RequestHeader(name.to_owned())
            }
            k if k.starts_with("request.auth.claims") => {
                map_key("request.auth.claims")?;
                ConditionKey::RequestClaim(extract_names_in_nested_brackets(
                    &k["request.auth.claims".len()..],
                )?)
            }
            _ => {
                return Err(format!(
                    "unknown attribute: {key} (supported: request.headers[NAME], source.ip, remote.ip, \
                     source.namespace, source.serviceAccount, source.trustDomain, source.principal, \
                     request.auth.principal, request.auth.audiences, request.auth.presenter, \
                     request.auth.claims[NAME], destination.ip, destination.port, connection.sni)"
                ));
            }
        })
    }

    fn check_value(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err(format!("empty value not allowed, found in {self}"));
        }
        match self {
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                Cidr::parse(value).map(|_| ())
            }
            ConditionKey::DestinationPort => parse_port(value).map(|_| ()),
            ConditionKey::SourceServiceAccount => check_service_account(value),
            ConditionKey::SourceTrustDomain => check_wildcard(value),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ConditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionKey::RequestHeader(name) => write!(f, "request.headers[{name}]"),
            ConditionKey::SourceIp => f.write_str("source.ip"),
            ConditionKey::RemoteIp => f.write_str("remote.ip"),
            ConditionKey::SourceNamespace => f.write_str("source.namespace"),
            ConditionKey::SourceServiceAccount => f.write_str("source.serviceAccount"),
            ConditionKey::SourceTrustDomain => f.write_str("source.trustDomain"),
            ConditionKey::SourcePrincipal => f.write_str("source.principal"),
            ConditionKey::RequestPrincipal => f.write_str("request.auth.principal"),
            ConditionKey::RequestAudiences => f.write_str("request.auth.audiences"),
            ConditionKey::RequestPresenter => f.write_str("request.auth.presenter"),
            ConditionKey::RequestClaim(path) => {
                f.write_str("request.auth.claims")?;
                path.iter().try_for_each(|p| write!(f, "[{p}]"))
            }
            ConditionKey::DestinationIp => f.write_str("destination.ip"),
            ConditionKey::DestinationPort => f.write_str("destination.port"),
            ConditionKey::ConnectionSni => f.write_str("connection.sni"),
        }
    }
}

impl Serialize for ConditionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConditionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a condition key such as request.auth.claims[email]", ConditionKey::parse)
    }
}

/// `[NAME]` -> `NAME` (Istio's `extractNameInBrackets`).
fn extract_name_in_brackets(s: &str) -> Result<&str, String> {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| format!("expecting format [<NAME>], but found {s}"))
}

/// `[a][b]` -> `[a, b]`; anything else that is `[...]` is one name (Istio's
/// `extractNameInNestedBrackets`).
pub(crate) fn extract_names_in_nested_brackets(s: &str) -> Result<Vec<String>, String> {
    let bytes = s.as_bytes();
    let find_end = |begin: usize| -> Option<usize> {
        if bytes.get(begin) != Some(&b'[') {
            return None;
        }
        for (i, b) in bytes.iter().enumerate().skip(begin + 1) {
            match b {
                b'[' => return None,
                b']' => return Some(i),
                _ => {}
            }
        }
        None
    };
    let mut names = Vec::new();
    let mut begin = 0;
    while begin < bytes.len() {
        match find_end(begin) {
            Some(end) => {
                names.push(s[begin + 1..end].to_owned());
                begin = end + 1;
            }
            None => return Ok(vec![extract_name_in_brackets(s)?.to_owned()]),
        }
    }
    Ok(names)
}

/// A destination port (`"443"`): a decimal number 0-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u16);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a port number as a string, such as \"443\"", |v| parse_port(v).map(Port))
    }
}

pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("empty value not allowed in ports".to_owned());
    }
    let ok = text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(p) if ok && p <= 65535 => Ok(p as u16),
        _ => Err(format!("bad port ({text}): a port is a number 0-65535")),
    }
}

/// An `ipBlocks` entry: an IPv4/IPv6 address or CIDR block, kept as written.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IpBlock {
    text: String,
    cidr: Cidr,
}

impl IpBlock {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        Ok(IpBlock { text: text.to_owned(), cidr: Cidr::parse(text)? })
    }

    /// The block as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed block.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpBlock({})", self.text)
    }
}

impl Serialize for IpBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IpBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an IP address or CIDR block", |v| {
            if v.is_empty() {
                return Err("empty value not allowed in IP blocks".to_owned());
            }
            IpBlock::parse(v)
        })
    }
}

/// Istio's `CheckServiceAccount` for one value.
pub(crate) fn check_service_account(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value not allowed in service accounts".to_owned());
    }
    if value.contains('*') {
        return Err(format!("wildcard not allowed in service accounts, found {value:?}"));
    }
    if value.len() > 320 {
        return Err(format!("a service account cannot exceed 320 characters, found {value:?}"));
    }
    let shape = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    match value.split_once('/') {
        Some((ns, sa)) if ns.is_empty() || sa.is_empty() || sa.contains('/') => {
            Err(format!("{shape}, found {value:?}"))
        }
        _ => Ok(()),
    }
}

/// Istio's `CheckWildcardValues` for one value: one `*`, at the start or the end.
fn check_wildcard(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value not allowed".to_owned());
    }
    let stars = value.matches('*').count();
    if stars > 1 {
        return Err(format!("at most one wildcard is allowed, found {value:?}"));
    }
    if stars == 1 && value != "*" && !value.starts_with('*') && !value.ends_with('*') {
        return Err(format!("wildcard is only allowed at the start or end, found {value:?}"));
    }
    Ok(())
}

/// Istio's `CheckTrustDomainValues` for one value.
fn check_trust_domain(value: &str) -> Result<(), String> {
    check_wildcard(value)?;
    if value.contains('/') {
        return Err(format!("trust domain must not contain '/', found {value:?}"));
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which Istio uses for `istio.io/dry-run`.
pub(crate) fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A DNS-1123 subdomain: what Kubernetes requires of object names.
fn check_object_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.split('.').all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: a policy name is a DNS subdomain (lower-case letters, digits, '-' and '.', \
             at most 253 characters, alphanumeric at both ends)"
        ))
    }
}

// ---- Deserialization helpers ----
//
// Values are checked inside `visit_str`, while serde_yaml still holds the scalar, so an
// error carries the line and column of the offending value itself.

struct CheckedStr<F>(&'static str, F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'de> for CheckedStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// Deserializes a string and checks or converts it with `check`.
fn checked_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(CheckedStr(expecting, check))
}

/// A string that must not be empty.
struct NonEmpty(String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a non-empty string", |v| {
            check_non_empty(v)?;
            Ok(NonEmpty(v.to_owned()))
        })
    }
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<NonEmpty>::deserialize(d)?.into_iter().map(|v| v.0).collect())
}

struct ServiceAccountValue(String);

impl<'de> Deserialize<'de> for ServiceAccountValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a service account, NAME or NAMESPACE/NAME", |v| {
            check_service_account(v)?;
            Ok(ServiceAccountValue(v.to_owned()))
        })
    }
}

fn service_accounts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Vec::<ServiceAccountValue>::deserialize(d)?;
    if values.len() > 16 {
        return Err(de::Error::custom("may not have more than 16 service accounts"));
    }
    Ok(values.into_iter().map(|v| v.0).collect())
}

struct TrustDomainValue(String);

impl<'de> Deserialize<'de> for TrustDomainValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a trust domain", |v| {
            check_trust_domain(v)?;
            Ok(TrustDomainValue(v.to_owned()))
        })
    }
}

fn trust_domains<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<TrustDomainValue>::deserialize(d)?.into_iter().map(|v| v.0).collect())
}

struct PathValue(String);

impl<'de> Deserialize<'de> for PathValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a path", |v| {
            if v.is_empty() {
                return Err("empty value not allowed in paths".to_owned());
            }
            check_path_template(v)?;
            Ok(PathValue(v.to_owned()))
        })
    }
}

fn paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<PathValue>::deserialize(d)?.into_iter().map(|v| v.0).collect())
}

fn match_labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let labels = BTreeMap::<String, String>::deserialize(d)?;
    for (k, v) in &labels {
        if k.is_empty() {
            return Err(de::Error::custom(format!("empty key is not supported in selector: \"={v}\"")));
        }
        if k.contains('*') || v.contains('*') {
            return Err(de::Error::custom(format!("wildcard is not supported in selector: \"{k}={v}\"")));
        }
    }
    Ok(labels)
}

// ---- Raw shapes, checked field by field, then as a whole ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    api_version: RawApiVersion,
    #[allow(dead_code)] // checked while parsing
    kind: RawKind,
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

struct RawApiVersion(ApiVersion);

impl<'de> Deserialize<'de> for RawApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an apiVersion", |v| match v {
            "security.istio.io/v1" => Ok(RawApiVersion(ApiVersion::V1)),
            "security.istio.io/v1beta1" => Ok(RawApiVersion(ApiVersion::V1beta1)),
            other => Err(format!(
                "unsupported apiVersion {other:?} for AuthorizationPolicy (expected security.istio.io/v1 or security.istio.io/v1beta1)"
            )),
        })
    }
}

struct RawKind;

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a kind", |v| {
            if v == KIND {
                Ok(RawKind)
            } else {
                Err(format!("kind is {v:?}; this parser reads kind: {KIND}"))
            }
        })
    }
}

impl TryFrom<RawPolicy> for AuthorizationPolicy {
    type Error = String;
    fn try_from(raw: RawPolicy) -> Result<Self, String> {
        let spec = raw.spec.unwrap_or_default();
        if let Some(value) = raw.metadata.annotations.get(DRY_RUN_ANNOTATION) {
            match spec.action {
                Action::Allow | Action::Deny => {
                    if parse_go_bool(value).is_none() {
                        return Err(format!(
                            "metadata.annotations: {DRY_RUN_ANNOTATION} has invalid value {value:?} (use \"true\" or \"false\")"
                        ));
                    }
                }
                action => {
                    return Err(format!(
                        "metadata.annotations: {DRY_RUN_ANNOTATION} only supports action ALLOW or DENY, found {action}"
                    ));
                }
            }
        }
        Ok(AuthorizationPolicy {
            api_version: raw.api_version.0,
            kind: KIND.to_owned(),
            metadata: raw.metadata,
            spec,
            source_file: PathBuf::new(),
            creator: None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct RawMeta {
    name: Option<String>,
    namespace: Option<Namespace>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    uid: Option<IgnoredAny>,
    resource_version: Option<IgnoredAny>,
    generation: Option<IgnoredAny>,
    creation_timestamp: Option<IgnoredAny>,
    managed_fields: Option<IgnoredAny>,
    self_link: Option<IgnoredAny>,
}

impl TryFrom<RawMeta> for ObjectMeta {
    type Error = String;
    fn try_from(raw: RawMeta) -> Result<Self, String> {
        let name = raw.name.ok_or("missing field `name`: every policy needs a name")?;
        check_object_name(&name)?;
        let namespace = raw.namespace.ok_or(
            "missing field `namespace`: Palisade has no current namespace to default to; \
             write the namespace whose models the policy governs",
        )?;
        Ok(ObjectMeta { name, namespace, annotations: raw.annotations, labels: raw.labels })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    selector: Option<WorkloadSelector>,
    target_ref: Option<IgnoredAny>,
    target_refs: Option<IgnoredAny>,
    #[serde(default)]
    action: Action,
    provider: Option<Provider>,
    rules: Option<Vec<Rule>>,
}

impl TryFrom<RawSpec> for Spec {
    type Error = String;
    fn try_from(raw: RawSpec) -> Result<Self, String> {
        if raw.target_ref.is_some() || raw.target_refs.is_some() {
            return Err("targetRef/targetRefs are not supported: Palisade attaches policies to models \
                        by namespace and `selector.matchLabels`"
                .to_owned());
        }
        let rules = raw.rules.unwrap_or_default();
        match raw.action {
            Action::Custom => {
                if rules.is_empty() {
                    return Err(
                        "CUSTOM action without `rules` is meaningless as it will never be triggered, \
                                add an empty rule `{}` if you want it be triggered for every request"
                            .to_owned(),
                    );
                }
                if raw.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                    return Err("`provider.name` must not be empty for action CUSTOM".to_owned());
                }
                for (i, rule) in rules.iter().enumerate() {
                    check_custom_rule(i, rule)?;
                }
            }
            action => {
                if raw.provider.is_some() {
                    return Err(format!("`provider` must not be with non CUSTOM action, found {action}"));
                }
                if action == Action::Deny && rules.is_empty() {
                    return Err("DENY action without `rules` is meaningless as it will never be triggered, \
                                add an empty rule `{}` if you want it be triggered for every request"
                        .to_owned());
                }
            }
        }
        Ok(Spec { selector: raw.selector, action: raw.action, provider: raw.provider, rules })
    }
}

/// The fields Istio does not support with CUSTOM.
fn check_custom_rule(index: usize, rule: &Rule) -> Result<(), String> {
    let fail =
        |name: &str| Err(format!("rules[{index}]: {name} is currently not supported with CUSTOM action"));
    for from in &rule.from {
        let s = &from.source;
        for (set, name) in [
            (!s.namespaces.is_empty(), "from.source.namespaces"),
            (!s.not_namespaces.is_empty(), "from.source.notNamespaces"),
            (!s.service_accounts.is_empty(), "from.source.serviceAccounts"),
            (!s.not_service_accounts.is_empty(), "from.source.notServiceAccounts"),
            (!s.trust_domains.is_empty(), "from.source.trustDomains"),
            (!s.not_trust_domains.is_empty(), "from.source.notTrustDomains"),
            (!s.principals.is_empty(), "from.source.principals"),
            (!s.not_principals.is_empty(), "from.source.notPrincipals"),
            (!s.request_principals.is_empty(), "from.source.requestPrincipals"),
            (!s.not_request_principals.is_empty(), "from.source.notRequestPrincipals"),
        ] {
            if set {
                return fail(name);
            }
        }
    }
    for when in &rule.when {
        let key = &when.key;
        let unsupported = matches!(
            key,
            ConditionKey::SourceNamespace
                | ConditionKey::SourceServiceAccount
                | ConditionKey::SourceTrustDomain
                | ConditionKey::SourcePrincipal
                | ConditionKey::RequestPrincipal
                | ConditionKey::RequestAudiences
                | ConditionKey::RequestPresenter
                | ConditionKey::RequestClaim(_)
        );
        if unsupported {
            return fail(&key.to_string());
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    from: Option<Vec<RuleFrom>>,
    to: Option<Vec<RuleTo>>,
    #[serde(default)]
    when: Vec<Condition>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(raw: RawRule) -> Result<Self, String> {
        if raw.from.as_ref().is_some_and(Vec::is_empty) {
            return Err("`from` must not be empty; leave it out to match every source".to_owned());
        }
        if raw.to.as_ref().is_some_and(Vec::is_empty) {
            return Err("`to` must not be empty; leave it out to match every operation".to_owned());
        }
        Ok(Rule { from: raw.from.unwrap_or_default(), to: raw.to.unwrap_or_default(), when: raw.when })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    #[serde(default, deserialize_with = "non_empty")]
    principals: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    not_principals: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    request_principals: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    not_request_principals: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    namespaces: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    not_namespaces: Vec<String>,
    #[serde(default)]
    ip_blocks: Vec<IpBlock>,
    #[serde(default)]
    not_ip_blocks: Vec<IpBlock>,
    #[serde(default)]
    remote_ip_blocks: Vec<IpBlock>,
    #[serde(default)]
    not_remote_ip_blocks: Vec<IpBlock>,
    #[serde(default, deserialize_with = "service_accounts")]
    service_accounts: Vec<String>,
    #[serde(default, deserialize_with = "service_accounts")]
    not_service_accounts: Vec<String>,
    #[serde(default, deserialize_with = "trust_domains")]
    trust_domains: Vec<String>,
    #[serde(default, deserialize_with = "trust_domains")]
    not_trust_domains: Vec<String>,
}

impl TryFrom<RawSource> for Source {
    type Error = String;
    fn try_from(r: RawSource) -> Result<Self, String> {
        let source = Source {
            principals: r.principals,
            not_principals: r.not_principals,
            request_principals: r.request_principals,
            not_request_principals: r.not_request_principals,
            namespaces: r.namespaces,
            not_namespaces: r.not_namespaces,
            ip_blocks: r.ip_blocks,
            not_ip_blocks: r.not_ip_blocks,
            remote_ip_blocks: r.remote_ip_blocks,
            not_remote_ip_blocks: r.not_remote_ip_blocks,
            service_accounts: r.service_accounts,
            not_service_accounts: r.not_service_accounts,
            trust_domains: r.trust_domains,
            not_trust_domains: r.not_trust_domains,
        };
        source.check()?;
        Ok(source)
    }
}

impl Source {
    fn is_empty(&self) -> bool {
        self.principals.is_empty()
            && self.not_principals.is_empty()
            && self.request_principals.is_empty()
            && self.not_request_principals.is_empty()
            && self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.ip_blocks.is_empty()
            && self.not_ip_blocks.is_empty()
            && self.remote_ip_blocks.is_empty()
            && self.not_remote_ip_blocks.is_empty()
            && self.service_accounts.is_empty()
            && self.not_service_accounts.is_empty()
            && self.trust_domains.is_empty()
            && self.not_trust_domains.is_empty()
    }

    /// The whole-source checks; per-value checks also run here for sources built in code.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err("`from.source` must not be empty".to_owned());
        }
        let identity_fields = self.principals.len()
            + self.not_principals.len()
            + self.namespaces.len()
            + self.not_namespaces.len();
        if identity_fields > 0 && !(self.service_accounts.is_empty() && self.not_service_accounts.is_empty())
        {
            return Err("cannot set serviceAccounts with namespaces or principals".to_owned());
        }
        for v in self.principals.iter().chain(&self.not_principals).chain(&self.request_principals) {
            check_non_empty(v)?;
        }
        for v in self.not_request_principals.iter().chain(&self.namespaces).chain(&self.not_namespaces) {
            check_non_empty(v)?;
        }
        for v in self.service_accounts.iter().chain(&self.not_service_accounts) {
            check_service_account(v)?;
        }
        for v in self.trust_domains.iter().chain(&self.not_trust_domains) {
            check_trust_domain(v)?;
        }
        Ok(())
    }
}

fn check_non_empty(value: &str) -> Result<(), String> {
    if value.is_empty() { Err("empty value not allowed".to_owned()) } else { Ok(()) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOperation {
    #[serde(default, deserialize_with = "non_empty")]
    hosts: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    not_hosts: Vec<String>,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    not_ports: Vec<Port>,
    #[serde(default, deserialize_with = "non_empty")]
    methods: Vec<String>,
    #[serde(default, deserialize_with = "non_empty")]
    not_methods: Vec<String>,
    #[serde(default, deserialize_with = "paths")]
    paths: Vec<String>,
    #[serde(default, deserialize_with = "paths")]
    not_paths: Vec<String>,
}

impl TryFrom<RawOperation> for Operation {
    type Error = String;
    fn try_from(r: RawOperation) -> Result<Self, String> {
        let operation = Operation {
            hosts: r.hosts,
            not_hosts: r.not_hosts,
            ports: r.ports,
            not_ports: r.not_ports,
            methods: r.methods,
            not_methods: r.not_methods,
            paths: r.paths,
            not_paths: r.not_paths,
        };
        operation.check()?;
        Ok(operation)
    }
}

impl Operation {
    pub(crate) fn check(&self) -> Result<(), String> {
        let empty = self.hosts.is_empty()
            && self.not_hosts.is_empty()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
            && self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty();
        if empty {
            return Err("`to.operation` must not be empty".to_owned());
        }
        for v in self.hosts.iter().chain(&self.not_hosts).chain(&self.methods).chain(&self.not_methods) {
            check_non_empty(v)?;
        }
        for v in self.paths.iter().chain(&self.not_paths) {
            check_non_empty(v)?;
            check_path_template(v)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCondition {
    key: Option<ConditionKey>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    not_values: Vec<String>,
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;
    fn try_from(raw: RawCondition) -> Result<Self, String> {
        let key = raw.key.ok_or("`key` must not be empty")?;
        let condition = Condition { key, values: raw.values, not_values: raw.not_values };
        condition.check()?;
        Ok(condition)
    }
}

impl Condition {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.values.is_empty() && self.not_values.is_empty() {
            return Err(format!("at least one of `values` or `notValues` must be set for key {}", self.key));
        }
        for (i, v) in self.values.iter().enumerate() {
            self.key
                .check_value(v)
                .map_err(|e| format!("invalid `values[{i}]` for key {}: {e}", self.key))?;
        }
        for (i, v) in self.not_values.iter().enumerate() {
            self.key
                .check_value(v)
                .map_err(|e| format!("invalid `notValues[{i}]` for key {}: {e}", self.key))?;
        }
        Ok(())
    }
}

// ---- Entry points ----

/// Parses one `AuthorizationPolicy` YAML (or JSON) document; `file` names it in errors.
///
/// Multi-document files are split by the caller with [`palisade_core::yaml::documents`];
/// a document passed as it comes keeps the file's line numbers. The document is checked
/// against [`palisade_core::yaml::Limits`] (size, nesting, aliases) before it is parsed; [`parse_policy_value`] serves callers that dispatch on `kind`.
pub fn parse_policy<'a>(
    source: impl Into<yaml::Source<'a>>,
    file: &Path,
) -> Result<AuthorizationPolicy, PolicyError> {
    let source = source.into();
    let text = source.text();
    if text.len() > MAX_POLICY_BYTES {
        return Err(invalid(LocatedError::field(
            file,
            "",
            format!("the document is {} bytes; a policy is at most {MAX_POLICY_BYTES}", text.len()),
        )));
    }
    if text.trim().is_empty() {
        return Err(invalid(LocatedError::field(file, "", "the document is empty")));
    }
    let mut policy: AuthorizationPolicy = yaml::from_str(file, source).map_err(invalid)?;
    policy.source_file = file.to_owned();
    Ok(policy)
}

/// Parses a document already read as a `serde_yaml::Value`, for callers that dispatch on
/// `kind` first. Line numbers are lost; field paths remain.
pub fn parse_policy_value(value: serde_yaml::Value, file: &Path) -> Result<AuthorizationPolicy, PolicyError> {
    let mut policy: AuthorizationPolicy = serde_path_to_error::deserialize(value).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = err.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((parent, rest)) if !field.is_empty() && field.starts_with(parent) => rest.to_owned(),
            _ => message,
        };
        invalid(LocatedError::field(file, field, message))
    })?;
    policy.source_file = file.to_owned();
    Ok(policy)
}

fn invalid(mut error: LocatedError) -> PolicyError {
    if error.message.starts_with("unknown field") {
        error.message.push_str("; check the spelling against Istio's AuthorizationPolicy reference");
    }
    PolicyError::Invalid(Box::new(error))
}
