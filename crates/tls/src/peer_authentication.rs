//! Istio's `PeerAuthentication` (`security.istio.io/v1` and `v1beta1`): mTLS modes STRICT,
//! PERMISSIVE and DISABLE, set platform-wide, per namespace, per model (selector) and per port.
//!
//! # Resolution (Istio's `ComposePeerAuthentication`)
//!
//! For a model in namespace `ns` with labels `L`, served on port `p`:
//!
//! 1. start from [`PeerAuthSettings::default_mode`] (the platform config; PERMISSIVE, as in
//!    Istio, unless the platform says otherwise);
//! 2. a policy in the root namespace without selector (platform-wide) overrides it;
//! 3. a policy in `ns` without selector (namespace-wide) overrides that;
//! 4. a policy in `ns` whose `selector.matchLabels` are all in `L` overrides that;
//! 5. that policy's `portLevelMtls[p]`, if any, overrides that.
//!
//! `UNSET` (or no `mtls`) at any level inherits the level above. When several policies
//! compete at one level the oldest wins (`metadata.creationTimestamp`; a policy without one
//! counts as oldest, as Go's zero time does in Istio), then the smaller name, then namespace.
//! Selector policies in the root namespace never apply (Istio ignores them too).
//!
//! # One listener, many models: where each mode is enforced
//!
//! Istio decides per workload because each workload has its own sidecar; a Palisade listener
//! serves many models, possibly with different modes, and TLS client authentication
//! happens before the request says which model it wants. Palisade therefore splits the
//! work ([`listener_client_auth`]):
//!
//! - **at the handshake**: if every model on the port is STRICT, a client certificate is
//!   *required* (no certificate: the handshake fails, as in Istio); if every model is
//!   DISABLE, none is requested; otherwise one is *requested but optional*. Whenever a
//!   certificate is presented it must verify (trusted CA, in validity, client-auth usage, a
//!   SPIFFE id of an accepted trust domain) or the handshake fails, in every mode;
//! - **per request** ([`admit`]): a request for a STRICT model on a connection without a
//!   verified peer identity is refused; a PERMISSIVE model accepts it (peer identity
//!   absent); a DISABLE model ignores any identity the connection has, so policies and
//!   audit see none, as with Istio's plaintext.
//!
//! The rejected alternative, requiring certificates at the handshake whenever any model on
//! the port is STRICT, would make every PERMISSIVE model on the same port unreachable for
//! callers without certificates: the strictest mode would leak onto models that did not
//! ask for it. With the chosen split, each model gets exactly its own mode, and a port whose
//! models are all STRICT still refuses certificate-less clients before any HTTP is spoken.
//! Note that health probes on an all-STRICT port then need a client certificate too; probe
//! the admin port, or keep one PERMISSIVE model on the port.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use palisade_core::Namespace;
use palisade_core::yaml::{self, LocatedError};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{ClientAuth, ClientRoots, PeerIdentity, TlsError};

/// The `kind` this module parses.
pub const KIND: &str = "PeerAuthentication";

/// Largest document accepted, checked before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// An mTLS mode, ordered from the weakest to the strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// No mTLS: no client certificate is asked for, and none is used as an identity.
    Disable,
    /// mTLS optional: a verified client certificate becomes the peer identity; without one
    /// the request continues without a peer identity.
    Permissive,
    /// mTLS required: a request without a verified client certificate is refused.
    Strict,
}

impl MtlsMode {
    /// The mode as Istio spells it (`DISABLE`, `PERMISSIVE`, `STRICT`).
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `PeerAuthentication`, with Istio's validation applied.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthentication {
    /// `security.istio.io/v1` or `security.istio.io/v1beta1`.
    pub api_version: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`: whose models it governs (all, in the root namespace).
    pub namespace: String,
    /// `metadata.creationTimestamp`, used to pick the oldest of competing policies.
    pub creation_timestamp: Option<OffsetDateTime>,
    /// `spec.selector.matchLabels`; empty means the whole namespace.
    pub selector: BTreeMap<String, String>,
    /// `spec.mtls.mode`; `None` is UNSET (inherit).
    pub mode: Option<MtlsMode>,
    /// `spec.portLevelMtls`: port to mode (`None`: UNSET, inherit the policy's mode).
    pub port_level: BTreeMap<u16, Option<MtlsMode>>,
    /// Where it was read from.
    pub source_file: PathBuf,
}

/// Parses one `PeerAuthentication` document. Unknown fields are errors; errors name the
/// file, line, column and field, like every Palisade configuration error.
///
/// `source` may be a document cut from a multi-document file by
/// [`palisade_core::yaml::documents`]; errors keep the file's line numbers.
pub fn parse_peer_authentication<'a>(
    source: impl Into<yaml::Source<'a>>,
    file: &Path,
) -> Result<PeerAuthentication, TlsError> {
    let source = source.into();
    let text = source.text();
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LocatedError::field(
            file,
            "",
            format!("the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are read", text.len()),
        )
        .into());
    }
    if text.trim().is_empty() {
        return Err(LocatedError::field(file, "", "the document is empty").into());
    }
    let raw: Raw = yaml::from_str(file, source).map_err(|mut e| {
        if e.message.starts_with("unknown field") {
            e.message.push_str("; check the spelling against Istio's PeerAuthentication reference");
        }
        e
    })?;
    let spec = raw.spec.unwrap_or_default();
    Ok(PeerAuthentication {
        api_version: raw.api_version.0.to_owned(),
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        creation_timestamp: raw.metadata.creation_timestamp.map(|t| t.0),
        selector: spec.selector,
        mode: spec.mode,
        port_level: spec.port_level,
        source_file: file.to_owned(),
    })
}

/// Platform settings for resolving modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthSettings {
    /// The namespace whose selector-less policy is platform-wide (`palisade-system`, like
    /// the authorization policies' root namespace).
    pub root_namespace: String,
    /// The mode when no policy applies (PERMISSIVE, Istio's default).
    pub default_mode: MtlsMode,
}

impl Default for PeerAuthSettings {
    fn default() -> Self {
        PeerAuthSettings { root_namespace: "palisade-system".to_owned(), default_mode: MtlsMode::Permissive }
    }
}

/// The resolved mTLS setting of one model: its mode, and per-port exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMtls {
    /// The mode on ports without an exception.
    pub mode: MtlsMode,
    /// Port-level modes.
    pub per_port: BTreeMap<u16, MtlsMode>,
}

impl EffectiveMtls {
    /// The mode on `port`.
    pub fn on_port(&self, port: u16) -> MtlsMode {
        self.per_port.get(&port).copied().unwrap_or(self.mode)
    }
}

/// The loaded policies, ready to answer "which mode applies to this model on this port".
#[derive(Debug, Clone, Default)]
pub struct PeerAuthentications {
    settings: PeerAuthSettings,
    /// By namespace, oldest first.
    by_namespace: BTreeMap<String, Vec<PeerAuthentication>>,
}

impl PeerAuthentications {
    /// Indexes `policies`.
    pub fn new(policies: Vec<PeerAuthentication>, settings: PeerAuthSettings) -> PeerAuthentications {
        let mut by_namespace: BTreeMap<String, Vec<PeerAuthentication>> = BTreeMap::new();
        for policy in policies {
            if policy.namespace == settings.root_namespace && !policy.selector.is_empty() {
                tracing::warn!(
                    file = %policy.source_file.display(),
                    name = %policy.name,
                    "a PeerAuthentication with a selector in the root namespace never applies (as in Istio)"
                );
            }
            by_namespace.entry(policy.namespace.clone()).or_default().push(policy);
        }
        for list in by_namespace.values_mut() {
            list.sort_by(oldest_first);
        }
        PeerAuthentications { settings, by_namespace }
    }

    /// The settings.
    pub fn settings(&self) -> &PeerAuthSettings {
        &self.settings
    }

    /// The resolved setting of a model (see the module docs for the order).
    pub fn effective(&self, namespace: &str, labels: &BTreeMap<String, String>) -> EffectiveMtls {
        let root = self.settings.root_namespace.as_str();
        let none: &[PeerAuthentication] = &[];
        let namespace_wide = |ns: &str| {
            self.by_namespace.get(ns).map_or(none, Vec::as_slice).iter().find(|p| p.selector.is_empty())
        };
        let mut mode = self.settings.default_mode;
        if let Some(m) = namespace_wide(root).and_then(|p| p.mode) {
            mode = m;
        }
        if namespace != root
            && let Some(m) = namespace_wide(namespace).and_then(|p| p.mode)
        {
            mode = m;
        }
        let workload = (namespace != root)
            .then(|| {
                self.by_namespace.get(namespace).map_or(none, Vec::as_slice).iter().find(|p| {
                    !p.selector.is_empty() && p.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
            })
            .flatten();
        let mut per_port = BTreeMap::new();
        if let Some(policy) = workload {
            if let Some(m) = policy.mode {
                mode = m;
            }
            for (port, port_mode) in &policy.port_level {
                per_port.insert(*port, port_mode.unwrap_or(mode));
            }
        }
        EffectiveMtls { mode, per_port }
    }

    /// The mode for a model on a port.
    pub fn mtls_mode_for(&self, namespace: &str, labels: &BTreeMap<String, String>, port: u16) -> MtlsMode {
        self.effective(namespace, labels).on_port(port)
    }
}

fn oldest_first(a: &PeerAuthentication, b: &PeerAuthentication) -> Ordering {
    // `None` (no timestamp) is Go's zero time: older than any real one.
    a.creation_timestamp
        .cmp(&b.creation_timestamp)
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.namespace.cmp(&b.namespace))
}

/// What the TLS handshake of a listener asks of clients, given the modes of the models it
/// serves (see the module docs): all STRICT: required; all DISABLE: not requested;
/// otherwise requested but optional. `modes` empty (no model yet) counts as `default_mode`.
///
/// `roots` are the client CAs (`--client-ca FILE`, or the built-in CA). Without them no
/// certificate can be verified: PERMISSIVE and DISABLE then degrade to not requesting one,
/// and any STRICT model is a configuration error.
pub fn listener_client_auth(
    modes: impl IntoIterator<Item = MtlsMode>,
    default_mode: MtlsMode,
    roots: Option<ClientRoots>,
) -> Result<ClientAuth, TlsError> {
    let modes: Vec<MtlsMode> = modes.into_iter().collect();
    let modes = if modes.is_empty() { vec![default_mode] } else { modes };
    let all = |m: MtlsMode| modes.iter().all(|x| *x == m);
    let any_strict = modes.contains(&MtlsMode::Strict);
    match roots {
        None if any_strict => Err(TlsError::Mtls(
            "a model is STRICT but no client CA is configured (set --client-ca or use the built-in CA)"
                .to_owned(),
        )),
        None => Ok(ClientAuth::None),
        Some(_) if all(MtlsMode::Disable) => Ok(ClientAuth::None),
        Some(roots) if all(MtlsMode::Strict) => Ok(ClientAuth::Required(roots)),
        Some(roots) => Ok(ClientAuth::Optional(roots)),
    }
}

/// A request refused because its model is STRICT and the connection has no verified client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mutual TLS is required: the connection presented no verified client certificate")]
pub struct MtlsRequired;

/// The per-request half of enforcement: the peer identity a request to a model in `mode`
/// carries into authorization and audit, or a refusal.
///
/// STRICT: the connection's verified identity, or [`MtlsRequired`]; PERMISSIVE: the
/// identity if any; DISABLE: none, whatever the connection has.
pub fn admit(mode: MtlsMode, peer: Option<&PeerIdentity>) -> Result<Option<&PeerIdentity>, MtlsRequired> {
    match mode {
        MtlsMode::Strict => peer.map(Some).ok_or(MtlsRequired),
        MtlsMode::Permissive => Ok(peer),
        MtlsMode::Disable => Ok(None),
    }
}

// ---- Raw shapes, checked while parsing so errors carry positions ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    api_version: RawApiVersion,
    #[allow(dead_code)] // checked while parsing
    kind: RawKind,
    metadata: RawMeta,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

struct RawApiVersion(&'static str);

impl<'de> Deserialize<'de> for RawApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an apiVersion", |v| match v {
            "security.istio.io/v1" => Ok(RawApiVersion("security.istio.io/v1")),
            "security.istio.io/v1beta1" => Ok(RawApiVersion("security.istio.io/v1beta1")),
            other => Err(format!(
                "unsupported apiVersion {other:?} for PeerAuthentication (expected security.istio.io/v1 or security.istio.io/v1beta1)"
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

#[derive(Deserialize)]
#[serde(try_from = "RawMetaFields")]
struct RawMeta {
    name: String,
    namespace: String,
    creation_timestamp: Option<Timestamp>,
}

/// `metadata`, including the read-only fields `kubectl get -o yaml` adds (dropped).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct RawMetaFields {
    name: Option<String>,
    namespace: Option<Namespace>,
    creation_timestamp: Option<Timestamp>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    uid: Option<IgnoredAny>,
    resource_version: Option<IgnoredAny>,
    generation: Option<IgnoredAny>,
    managed_fields: Option<IgnoredAny>,
    self_link: Option<IgnoredAny>,
}

impl TryFrom<RawMetaFields> for RawMeta {
    type Error = String;
    fn try_from(raw: RawMetaFields) -> Result<Self, String> {
        let name = raw.name.ok_or("missing field `name`: every PeerAuthentication needs a name")?;
        let namespace = raw.namespace.ok_or(
            "missing field `namespace`: Palisade has no current namespace to default to; write the \
             namespace whose models the policy governs (the root namespace for platform-wide)",
        )?;
        Ok(RawMeta {
            name,
            namespace: namespace.as_str().to_owned(),
            creation_timestamp: raw.creation_timestamp,
        })
    }
}

struct Timestamp(OffsetDateTime);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an RFC 3339 timestamp", |v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map(Timestamp)
                .map_err(|_| format!("{v:?} is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"))
        })
    }
}

#[derive(Default)]
struct Spec {
    selector: BTreeMap<String, String>,
    mode: Option<MtlsMode>,
    port_level: BTreeMap<u16, Option<MtlsMode>>,
}

impl<'de> Deserialize<'de> for Spec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawSpec::deserialize(d)?;
        let selector = raw.selector.map(|s| s.match_labels).unwrap_or_default();
        let port_level = match raw.port_level_mtls {
            None => BTreeMap::new(),
            Some(ports) if ports.is_empty() => {
                return Err(de::Error::custom("port level mTLS, if defined, must have at least one element"));
            }
            Some(_) if selector.is_empty() => {
                return Err(de::Error::custom(
                    "mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls needs a selector)",
                ));
            }
            Some(ports) => ports.into_iter().map(|(port, mtls)| (port.0, mtls.mode.0)).collect(),
        };
        Ok(Spec { selector, mode: raw.mtls.and_then(|m| m.mode.0), port_level })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    selector: Option<RawSelector>,
    mtls: Option<RawMtls>,
    port_level_mtls: Option<BTreeMap<PortKey, RawMtls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelector {
    #[serde(default, deserialize_with = "match_labels")]
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    #[serde(default)]
    mode: ModeSetting,
}

/// `UNSET` (`None`) or a mode.
#[derive(Default)]
struct ModeSetting(Option<MtlsMode>);

impl<'de> Deserialize<'de> for ModeSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an mTLS mode", |v| match v {
            "UNSET" => Ok(ModeSetting(None)),
            "DISABLE" => Ok(ModeSetting(Some(MtlsMode::Disable))),
            "PERMISSIVE" => Ok(ModeSetting(Some(MtlsMode::Permissive))),
            "STRICT" => Ok(ModeSetting(Some(MtlsMode::Strict))),
            other => Err(format!(
                "unknown mTLS mode `{other}`, expected one of `UNSET`, `DISABLE`, `PERMISSIVE`, `STRICT`"
            )),
        })
    }
}

/// A `portLevelMtls` key: a port 1-65535, written as a YAML number or a string.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PortKey(u16);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 1-65535")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(PortKey(p)),
                    _ => Err(E::custom(format!("port must be in range 1..65535, found {v}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("port must be in range 1..65535, found {v}"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                let digits = !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit());
                match v.parse::<u64>() {
                    Ok(n) if digits => self.visit_u64(n),
                    _ => Err(E::custom(format!("port must be a number in range 1..65535, found {v:?}"))),
                }
            }
        }
        d.deserialize_any(PortVisitor)
    }
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

struct CheckedStr<F>(&'static str, F);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for CheckedStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// Deserializes a string and converts it with `check` while the deserializer still knows
/// the position, so an error points at the value itself.
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
