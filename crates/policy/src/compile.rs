//! Policies compiled into matchers that evaluate a [`Request`] without allocating.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::pattern::{
    Cidr, NamespaceGlob, PathMatch, RequestPrincipalMatch, ServiceAccountMatch, StrMatch, TrustDomainMatch,
    bytes_eq, check_path_template,
};
use crate::resource::{
    AuthorizationPolicy, Condition, ConditionKey, Operation, Rule, Source, check_service_account, parse_port,
};
use crate::{Action, PolicyRef, Request, Settings, TargetModel};

/// Claim paths that get a per-evaluation lookup cache; more are looked up every time.
const CLAIM_CACHE: usize = 16;
/// Selector label keys that get a per-evaluation lookup cache.
const LABEL_CACHE: usize = 8;

/// A cached claim lookup.
#[derive(Clone, Copy)]
enum Slot<'r> {
    Unknown,
    Missing,
    Found(&'r Value),
}

/// One evaluation: the request, and the claims looked up so far (each claim path a policy
/// set uses gets a slot, so fifty rules on `email` read the claim once).
pub(crate) struct Ctx<'r> {
    pub(crate) req: &'r Request,
    claims: [Cell<Slot<'r>>; CLAIM_CACHE],
    labels: [Cell<Option<Option<&'r str>>>; LABEL_CACHE],
}

impl<'r> Ctx<'r> {
    pub(crate) fn new(req: &'r Request) -> Ctx<'r> {
        Ctx {
            req,
            claims: [const { Cell::new(Slot::Unknown) }; CLAIM_CACHE],
            labels: [const { Cell::new(None) }; LABEL_CACHE],
        }
    }

    /// The model's value for a selector label key.
    fn label(&self, model: &'r TargetModel, slot: usize, key: &str) -> Option<&'r str> {
        let lookup = || model.labels.get(key).map(String::as_str);
        let Some(cell) = self.labels.get(slot) else { return lookup() };
        match cell.get() {
            Some(found) => found,
            None => {
                let found = lookup();
                cell.set(Some(found));
                found
            }
        }
    }

    #[inline]
    pub(crate) fn claim<S: AsRef<str>>(&self, slot: usize, path: &[S]) -> Option<&'r Value> {
        let lookup = || self.req.claims.as_ref().and_then(|c| claim_at(c, path));
        let Some(cell) = self.claims.get(slot) else { return lookup() };
        match cell.get() {
            Slot::Found(v) => Some(v),
            Slot::Missing => None,
            Slot::Unknown => {
                let found = lookup();
                cell.set(found.map_or(Slot::Missing, Slot::Found));
                found
            }
        }
    }

    fn claim_str(&self, slot: usize, path: &[&str]) -> Option<&'r str> {
        self.claim(slot, path)?.as_str()
    }
}

/// Numbers the distinct claim paths and selector label keys of a policy set, for
/// [`Ctx`]'s caches.
#[derive(Debug, Default)]
pub(crate) struct CacheSlots(HashMap<Vec<Box<str>>, usize>, HashMap<Box<str>, usize>);

impl CacheSlots {
    fn label_slot(&mut self, key: &str) -> usize {
        let next = self.1.len();
        *self.1.entry(Box::from(key)).or_insert(next)
    }

    fn slot<S: AsRef<str>>(&mut self, path: &[S]) -> usize {
        let key: Vec<Box<str>> = path.iter().map(|p| Box::from(p.as_ref())).collect();
        let next = self.0.len();
        *self.0.entry(key).or_insert(next)
    }
}

/// One attribute test: it holds when a value matches and no `not` value does.
#[derive(Debug)]
struct Check {
    pos: Option<Matcher>,
    neg: Option<Matcher>,
}

impl Check {
    fn matches(&self, ctx: &Ctx<'_>) -> bool {
        self.pos.as_ref().is_none_or(|m| m.matches(ctx)) && self.neg.as_ref().is_none_or(|m| !m.matches(ctx))
    }
}

/// A conjunction of checks: one `from` source, one `to` operation, or all of `when`.
#[derive(Debug, Default)]
struct Clause(Box<[Check]>);

impl Clause {
    fn matches(&self, ctx: &Ctx<'_>) -> bool {
        self.0.iter().all(|c| c.matches(ctx))
    }

    fn sorted(mut checks: Vec<Check>) -> Clause {
        checks.sort_by_key(|c| c.pos.as_ref().or(c.neg.as_ref()).map_or(0, Matcher::cost));
        Clause(checks.into_boxed_slice())
    }
}

/// A compiled rule: any `from`, any `to`, all `when`.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    from: Box<[Clause]>,
    to: Box<[Clause]>,
    when: Clause,
}

/// A necessary condition of a rule that can key a hash index: a `when` condition on a
/// claim whose accepted values are all exact strings. The rule can match only when one of
/// the claim's atoms (see [`any_atom`]) is one of `values`.
pub(crate) struct Anchor<'a> {
    pub(crate) slot: usize,
    pub(crate) path: &'a [Box<str>],
    pub(crate) split_spaces: bool,
    pub(crate) values: Vec<&'a str>,
}

impl CompiledRule {
    /// The rule's first anchor, if it has one.
    pub(crate) fn anchor(&self) -> Option<Anchor<'_>> {
        self.when.0.iter().find_map(|check| match &check.pos {
            Some(Matcher::Claim { slot, path, split_spaces, values }) => {
                let exact: Option<Vec<&str>> = values
                    .iter()
                    .map(|v| match v {
                        StrMatch::Exact(e) => Some(&**e),
                        _ => None,
                    })
                    .collect();
                exact.map(|values| Anchor { slot: *slot, path, split_spaces: *split_spaces, values })
            }
            _ => None,
        })
    }

    pub(crate) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        (self.to.is_empty() || self.to.iter().any(|c| c.matches(ctx)))
            && (self.from.is_empty() || self.from.iter().any(|c| c.matches(ctx)))
            && self.when.matches(ctx)
    }
}

/// One `matchLabels` entry: `(cache slot, label key, label value)`.
type SelectorLabel = (usize, Box<str>, Box<str>);

/// A compiled policy.
#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) reference: PolicyRef,
    pub(crate) action: Action,
    pub(crate) dry_run: bool,
    selector: Option<Box<[SelectorLabel]>>,
    rules: Box<[CompiledRule]>,
    /// An owner-managed policy's creator: the policy selects only the models they own.
    creator: Option<CreatorCheck>,
}

/// What is needed to tell whether a policy's creator owns a model.
#[derive(Debug)]
struct CreatorCheck {
    claims: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
    settings: Settings,
}

impl CompiledPolicy {
    /// Whether the policy picks the model (the namespace is checked by the index): its
    /// selector matches, and an owner-managed policy's creator owns the model version.
    pub(crate) fn selects<'r>(&self, ctx: &Ctx<'r>, model: &'r TargetModel) -> bool {
        let labelled = match &self.selector {
            None => true,
            Some(labels) => labels.iter().all(|(slot, k, v)| {
                ctx.label(model, *slot, k).is_some_and(|mv| bytes_eq(mv.as_bytes(), v.as_bytes()))
            }),
        };
        labelled
            && self.creator.as_ref().is_none_or(|creator| {
                model
                    .owners
                    .iter()
                    .any(|owner| crate::eval::claims_identify(&creator.settings, owner, &creator.claims))
            })
    }

    /// The policy's rules.
    pub(crate) fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The index of the first rule the request matches.
    pub(crate) fn first_match(&self, ctx: &Ctx<'_>) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(ctx))
    }
}

/// A value test on one attribute of the request; the values are ORed.
#[derive(Debug)]
enum Matcher {
    Port(Box<[u16]>),
    Method(Box<[StrMatch]>),
    Host(Box<[StrMatch]>),
    SourceIp(Box<[Cidr]>),
    RemoteIp(Box<[Cidr]>),
    DestinationIp(Box<[Cidr]>),
    Sni(Box<[StrMatch]>),
    Path(Box<[PathMatch]>),
    Principal(Box<[StrMatch]>),
    Namespace(Box<[NamespaceGlob]>),
    ServiceAccount(Box<[ServiceAccountMatch]>),
    TrustDomain(Box<[TrustDomainMatch]>),
    RequestPrincipal { iss_slot: usize, sub_slot: usize, patterns: Box<[RequestPrincipalMatch]> },
    Header { name: Box<str>, values: Box<[StrMatch]> },
    Claim { slot: usize, path: Box<[Box<str>]>, split_spaces: bool, values: Box<[StrMatch]> },
}

impl Matcher {
    /// Rough relative cost, so cheap checks run first in a clause.
    fn cost(&self) -> u8 {
        match self {
            Matcher::Port(_) => 0,
            Matcher::Method(_) | Matcher::SourceIp(_) | Matcher::RemoteIp(_) | Matcher::DestinationIp(_) => 1,
            Matcher::Host(_) | Matcher::Sni(_) | Matcher::Path(_) => 2,
            Matcher::Principal(_) | Matcher::TrustDomain(_) | Matcher::RequestPrincipal { .. } => 3,
            Matcher::Namespace(_) | Matcher::ServiceAccount(_) | Matcher::Claim { .. } => 4,
            Matcher::Header { .. } => 5,
        }
    }

    fn matches(&self, ctx: &Ctx<'_>) -> bool {
        let req = ctx.req;
        match self {
            Matcher::Port(ports) => ports.contains(&req.port),
            Matcher::Method(values) => any_str(values, &req.method),
            Matcher::Host(values) => {
                !req.host.is_empty() && values.iter().any(|m| m.matches_ignore_case(&req.host))
            }
            Matcher::SourceIp(blocks) => ip_in(blocks, req.source_ip),
            Matcher::RemoteIp(blocks) => ip_in(blocks, req.remote_ip),
            Matcher::DestinationIp(blocks) => ip_in(blocks, req.destination_ip),
            Matcher::Sni(values) => req.sni.as_deref().is_some_and(|sni| any_str(values, sni)),
            Matcher::Path(values) => values.iter().any(|m| m.matches(&req.path)),
            Matcher::Principal(values) => req.source_principal.as_deref().is_some_and(|p| any_str(values, p)),
            Matcher::Namespace(globs) => {
                req.source_principal.as_deref().is_some_and(|p| globs.iter().any(|g| g.matches(p)))
            }
            Matcher::ServiceAccount(accounts) => {
                req.source_principal.as_deref().is_some_and(|p| accounts.iter().any(|a| a.matches(p)))
            }
            Matcher::TrustDomain(domains) => {
                req.source_principal.as_deref().is_some_and(|p| domains.iter().any(|d| d.matches(p)))
            }
            Matcher::RequestPrincipal { iss_slot, sub_slot, patterns } => {
                let iss = ctx.claim_str(*iss_slot, &["iss"]);
                let sub = ctx.claim_str(*sub_slot, &["sub"]);
                let (Some(iss), Some(sub)) = (iss, sub) else { return false };
                patterns.iter().any(|p| p.matches(iss, sub))
            }
            Matcher::Header { name, values } => header_matches(req, name, values),
            Matcher::Claim { slot, path, split_spaces, values } => {
                let Some(value) = ctx.claim(*slot, path) else { return false };
                claim_value_matches(value, *split_spaces, values)
            }
        }
    }
}

#[inline]
fn any_str(values: &[StrMatch], value: &str) -> bool {
    values.iter().any(|m| m.matches(value))
}

fn ip_in(blocks: &[Cidr], ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| blocks.iter().any(|b| b.contains(ip)))
}

fn claim_at<'a, S: AsRef<str>>(claims: &'a Map<String, Value>, path: &[S]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first.as_ref())?;
    for key in rest {
        value = value.as_object()?.get(key.as_ref())?;
    }
    Some(value)
}

/// Envoy's JWT claim matching: a string claim is matched as is (or, for space-delimited
/// claims such as `scope`, element by element); a list matches when any string element does.
/// Numbers, booleans and objects never match a string pattern.
#[inline]
fn claim_value_matches(value: &Value, split_spaces: bool, values: &[StrMatch]) -> bool {
    any_atom(value, split_spaces, |atom| any_str(values, atom))
}

/// Whether `f` holds for any atom of a claim value: the string itself (or each of its
/// space-separated tokens for a space-delimited claim), or each string of a list.
#[inline]
pub(crate) fn any_atom(value: &Value, split_spaces: bool, mut f: impl FnMut(&str) -> bool) -> bool {
    match value {
        Value::String(s) if split_spaces => s.split(' ').filter(|t| !t.is_empty()).any(f),
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().any(|item| item.as_str().is_some_and(&mut f)),
        _ => false,
    }
}

/// Envoy's header matching: `*` needs the header present (even empty); other patterns see
/// the values of a repeated header joined with `,`. The pseudo-headers `:authority`,
/// `:method` and `:path` read the request's host, method and (normalized) path.
fn header_matches(req: &Request, name: &str, values: &[StrMatch]) -> bool {
    let test = |value: &str| values.iter().any(|m| *m == StrMatch::Present || m.matches(value));
    let pseudo = match name {
        ":authority" => Some(req.host.as_str()),
        ":method" => Some(req.method.as_str()),
        ":path" => Some(req.path.as_str()),
        _ => None,
    };
    if let Some(value) = pseudo {
        return !value.is_empty() && test(value);
    }
    let mut all = req.headers.get_all(name);
    let Some(first) = all.next() else { return false };
    match all.next() {
        None => test(first),
        Some(second) => {
            let mut joined = String::with_capacity(first.len() + second.len() + 16);
            joined.push_str(first);
            joined.push(',');
            joined.push_str(second);
            for more in all {
                joined.push(',');
                joined.push_str(more);
            }
            test(&joined)
        }
    }
}

/// Compiles a policy. Every value was checked at parse time; the checks run again here for
/// policies built in code, and a failure names the offending value.
pub(crate) fn compile(
    policy: &AuthorizationPolicy,
    reference: PolicyRef,
    settings: &Settings,
    slots: &mut CacheSlots,
) -> Result<CompiledPolicy, String> {
    let ns = policy.metadata.namespace.as_str();
    let selector = policy.spec.selector.as_ref().map(|s| {
        s.match_labels
            .iter()
            .map(|(k, v)| (slots.label_slot(k), Box::from(k.as_str()), Box::from(v.as_str())))
            .collect()
    });
    let rules = policy
        .spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(rule, ns, settings, slots).map_err(|e| format!("spec.rules[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledPolicy {
        reference,
        action: policy.spec.action,
        dry_run: policy.is_dry_run(),
        selector,
        rules: rules.into_boxed_slice(),
        creator: policy
            .creator
            .as_ref()
            .map(|c| CreatorCheck { claims: c.claims.clone(), settings: settings.clone() }),
    })
}

fn compile_rule(
    rule: &Rule,
    ns: &str,
    settings: &Settings,
    slots: &mut CacheSlots,
) -> Result<CompiledRule, String> {
    let from = rule
        .from
        .iter()
        .enumerate()
        .map(|(i, f)| compile_source(&f.source, ns, slots).map_err(|e| format!("from[{i}].source: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let to = rule
        .to
        .iter()
        .enumerate()
        .map(|(i, t)| compile_operation(&t.operation).map_err(|e| format!("to[{i}].operation: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let when = rule
        .when
        .iter()
        .enumerate()
        .map(|(i, c)| compile_condition(c, ns, settings, slots).map_err(|e| format!("when[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledRule { from: from.into_boxed_slice(), to: to.into_boxed_slice(), when: Clause::sorted(when) })
}

fn check(
    values: &[String],
    not_values: &[String],
    mut build: impl FnMut(&[String]) -> Result<Matcher, String>,
) -> Result<Option<Check>, String> {
    if values.is_empty() && not_values.is_empty() {
        return Ok(None);
    }
    let pos = if values.is_empty() { None } else { Some(build(values)?) };
    let neg = if not_values.is_empty() { None } else { Some(build(not_values)?) };
    Ok(Some(Check { pos, neg }))
}

fn strs(values: &[String]) -> Box<[StrMatch]> {
    values.iter().map(|v| StrMatch::parse(v)).collect()
}

fn cidrs(values: &[String]) -> Result<Box<[Cidr]>, String> {
    values.iter().map(|v| Cidr::parse(v)).collect()
}

fn request_principals(values: &[String], slots: &mut CacheSlots) -> Matcher {
    Matcher::RequestPrincipal {
        iss_slot: slots.slot(&["iss"]),
        sub_slot: slots.slot(&["sub"]),
        patterns: values.iter().map(|v| RequestPrincipalMatch::compile(v)).collect(),
    }
}

fn compile_source(source: &Source, ns: &str, slots: &mut CacheSlots) -> Result<Clause, String> {
    source.check()?;
    let blocks = |b: &[crate::IpBlock]| b.iter().map(|b| b.as_str().to_owned()).collect::<Vec<_>>();
    let checks = [
        check(&source.principals, &source.not_principals, |v| Ok(Matcher::Principal(strs(v))))?,
        check(&source.request_principals, &source.not_request_principals, |v| {
            Ok(request_principals(v, slots))
        })?,
        check(&source.namespaces, &source.not_namespaces, |v| {
            Ok(Matcher::Namespace(v.iter().map(|v| NamespaceGlob::compile(v)).collect()))
        })?,
        check(&blocks(&source.ip_blocks), &blocks(&source.not_ip_blocks), |v| {
            Ok(Matcher::SourceIp(cidrs(v)?))
        })?,
        check(&blocks(&source.remote_ip_blocks), &blocks(&source.not_remote_ip_blocks), |v| {
            Ok(Matcher::RemoteIp(cidrs(v)?))
        })?,
        check(&source.service_accounts, &source.not_service_accounts, |v| service_accounts(v, ns))?,
        check(&source.trust_domains, &source.not_trust_domains, |v| {
            Ok(Matcher::TrustDomain(v.iter().map(|v| TrustDomainMatch::compile(v)).collect()))
        })?,
    ];
    Ok(Clause::sorted(checks.into_iter().flatten().collect()))
}

fn service_accounts(values: &[String], ns: &str) -> Result<Matcher, String> {
    values.iter().try_for_each(|v| check_service_account(v))?;
    Ok(Matcher::ServiceAccount(values.iter().map(|v| ServiceAccountMatch::compile(v, ns)).collect()))
}

fn compile_operation(op: &Operation) -> Result<Clause, String> {
    op.check()?;
    let ports = |p: &[crate::Port]| p.iter().map(|p| p.0.to_string()).collect::<Vec<_>>();
    let checks = [
        check(&op.hosts, &op.not_hosts, |v| {
            Ok(Matcher::Host(v.iter().map(|v| StrMatch::parse_lowercase(v)).collect()))
        })?,
        check(&ports(&op.ports), &ports(&op.not_ports), |v| {
            Ok(Matcher::Port(v.iter().map(|p| parse_port(p)).collect::<Result<_, _>>()?))
        })?,
        check(&op.methods, &op.not_methods, |v| Ok(Matcher::Method(strs(v))))?,
        check(&op.paths, &op.not_paths, |v| {
            v.iter().try_for_each(|p| check_path_template(p))?;
            Ok(Matcher::Path(v.iter().map(|p| PathMatch::compile(p)).collect()))
        })?,
    ];
    Ok(Clause::sorted(checks.into_iter().flatten().collect()))
}

fn compile_condition(
    condition: &Condition,
    ns: &str,
    settings: &Settings,
    slots: &mut CacheSlots,
) -> Result<Check, String> {
    condition.check()?;
    let claim = |path: &[&str], v: &[String], slots: &mut CacheSlots| -> Matcher {
        let split_spaces = path.len() == 1 && settings.space_delimited_claims.iter().any(|c| c == path[0]);
        Matcher::Claim {
            slot: slots.slot(path),
            path: path.iter().map(|p| Box::from(*p)).collect(),
            split_spaces,
            values: strs(v),
        }
    };
    let build = |v: &[String]| -> Result<Matcher, String> {
        Ok(match &condition.key {
            ConditionKey::RequestHeader(name) => {
                Matcher::Header { name: name.to_ascii_lowercase().into(), values: strs(v) }
            }
            ConditionKey::SourceIp => Matcher::SourceIp(cidrs(v)?),
            ConditionKey::RemoteIp => Matcher::RemoteIp(cidrs(v)?),
            ConditionKey::DestinationIp => Matcher::DestinationIp(cidrs(v)?),
            ConditionKey::SourceNamespace => {
                Matcher::Namespace(v.iter().map(|v| NamespaceGlob::compile(v)).collect())
            }
            ConditionKey::SourceServiceAccount => service_accounts(v, ns)?,
            ConditionKey::SourceTrustDomain => {
                Matcher::TrustDomain(v.iter().map(|v| TrustDomainMatch::compile(v)).collect())
            }
            ConditionKey::SourcePrincipal => Matcher::Principal(strs(v)),
            ConditionKey::RequestPrincipal => request_principals(v, slots),
            ConditionKey::RequestAudiences => claim(&["aud"], v, slots),
            ConditionKey::RequestPresenter => claim(&["azp"], v, slots),
            ConditionKey::RequestClaim(path) => {
                claim(&path.iter().map(String::as_str).collect::<Vec<_>>(), v, slots)
            }
            ConditionKey::DestinationPort => {
                Matcher::Port(v.iter().map(|p| parse_port(p)).collect::<Result<_, _>>()?)
            }
            ConditionKey::ConnectionSni => Matcher::Sni(strs(v)),
        })
    };
    match check(&condition.values, &condition.not_values, build)? {
        Some(c) => Ok(c),
        None => Err(format!("at least one of `values` or `notValues` must be set for key {}", condition.key)),
    }
}
