//! The policy set and its decision procedure.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use palisade_core::yaml::LocatedError;
use palisade_core::{Namespace, Owner};

use crate::compile::{CacheSlots, CompiledPolicy, Ctx, compile};
use crate::index::RoleIndex;
use crate::{Action, AuthorizationPolicy, PolicyError, Request, TargetModel};

/// Evaluation settings that are the platform's, not a policy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Policies in this namespace apply to every model (Istio's root namespace, by
    /// default `istio-system` in Istio; `palisade-system` in Palisade).
    pub root_namespace: String,
    /// The claim that lists a caller's groups, for `group:NAME` owners.
    pub groups_claim: String,
    /// Issuer of Palisade's own service-account tokens, for `serviceaccount:NS/NAME` owners;
    /// service-account owners match nobody while it is unset.
    pub palisade_issuer: Option<String>,
    /// Top-level claims whose string value is a space-separated list, matched element by
    /// element (Istio: `scope` and `permission`, plus a RequestAuthentication's
    /// `spaceDelimitedClaims`).
    pub space_delimited_claims: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root_namespace: "palisade-system".to_owned(),
            groups_claim: "groups".to_owned(),
            palisade_issuer: None,
            space_delimited_claims: vec!["scope".to_owned(), "permission".to_owned()],
        }
    }
}

/// Names a policy in a decision: `namespace/name`. Cloning is cheap (no allocation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    /// The policy's namespace.
    pub namespace: Arc<str>,
    /// The policy's name.
    pub name: Arc<str>,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionReason {
    /// A DENY policy's rule matched.
    DeniedByPolicy {
        /// The policy.
        policy: PolicyRef,
        /// Index of the first matching rule.
        rule_index: usize,
    },
    /// An ALLOW policy's rule matched (and no CUSTOM or DENY rule did).
    AllowedByPolicy {
        /// The policy.
        policy: PolicyRef,
        /// Index of the first matching rule.
        rule_index: usize,
    },
    /// ALLOW policies apply to the model, and none of their rules matched.
    NoMatchingAllow,
    /// No ALLOW policy applies, and the caller is this owner of the model.
    OwnerDefault {
        /// The owner entry that matched.
        owner: Owner,
    },
    /// No ALLOW policy applies, and the caller is none of the model's owners.
    NotAnOwner,
    /// A CUSTOM policy's rule matched; Palisade has no external authorizer to ask, so it
    /// denies (fail closed), as Istio does for a CUSTOM policy whose provider is missing.
    CustomDeny {
        /// The policy.
        policy: PolicyRef,
    },
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionReason::DeniedByPolicy { policy, rule_index } => {
                write!(f, "denied by DENY policy {policy} rule {rule_index}")
            }
            DecisionReason::AllowedByPolicy { policy, rule_index } => {
                write!(f, "allowed by ALLOW policy {policy} rule {rule_index}")
            }
            DecisionReason::NoMatchingAllow => f.write_str("no rule of the ALLOW policies matched"),
            DecisionReason::OwnerDefault { owner } => write!(f, "allowed as owner {owner} (no ALLOW policy)"),
            DecisionReason::NotAnOwner => f.write_str("no ALLOW policy, and the caller is not an owner"),
            DecisionReason::CustomDeny { policy } => {
                write!(f, "denied by CUSTOM policy {policy} (no external authorizer: fail closed)")
            }
        }
    }
}

/// The outcome of [`PolicySet::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed; when false the server answers 403 `RBAC: access denied`.
    pub allowed: bool,
    /// Why.
    pub reason: DecisionReason,
    /// AUDIT policies with a matching rule: the request must be audited under these names.
    pub audit: Vec<PolicyRef>,
    /// Dry-run policies that apply, with what each would have decided on its own: an ALLOW
    /// policy would allow when a rule matches, a DENY policy would allow when none does.
    pub dry_run: Vec<(PolicyRef, bool)>,
}

/// Indices into [`PolicySet::compiled`] of the policies that may apply to a namespace's
/// models (the root namespace's first, then the namespace's own), by role.
#[derive(Debug, Default, Clone)]
struct RoleLists {
    custom: Vec<usize>,
    deny: Vec<usize>,
    allow: Vec<usize>,
    audit: Vec<usize>,
    dry_deny: Vec<usize>,
    dry_allow: Vec<usize>,
}

/// [`RoleLists`] with the deciding roles indexed for lookup.
#[derive(Debug, Default)]
struct NamespaceIndex {
    custom: RoleIndex,
    deny: RoleIndex,
    allow: RoleIndex,
    audit: Vec<usize>,
    dry_deny: Vec<usize>,
    dry_allow: Vec<usize>,
}

impl NamespaceIndex {
    fn build(lists: RoleLists, compiled: &[CompiledPolicy]) -> NamespaceIndex {
        NamespaceIndex {
            custom: RoleIndex::build(lists.custom, compiled),
            deny: RoleIndex::build(lists.deny, compiled),
            allow: RoleIndex::build(lists.allow, compiled),
            audit: lists.audit,
            dry_deny: lists.dry_deny,
            dry_allow: lists.dry_allow,
        }
    }
}

/// A set of policies indexed by namespace, ready to evaluate requests.
///
/// Build it once per policy load and share it (`Arc<PolicySet>`); evaluation takes `&self`
/// and allocates nothing unless it has something to report.
#[derive(Debug)]
pub struct PolicySet {
    settings: Settings,
    /// Policies sorted by namespace then name; parallel to `compiled`.
    policies: Vec<AuthorizationPolicy>,
    compiled: Vec<CompiledPolicy>,
    /// Per namespace with policies: root-namespace and own policies, merged.
    by_namespace: HashMap<String, NamespaceIndex>,
    /// For namespaces without policies of their own: the root namespace's.
    root_only: NamespaceIndex,
}

impl PolicySet {
    /// Indexes and compiles policies. Fails on a duplicate `namespace/name`, on a policy
    /// built in code that breaks a validation rule, or on unusable settings.
    pub fn new(mut policies: Vec<AuthorizationPolicy>, settings: Settings) -> Result<PolicySet, PolicyError> {
        Namespace::new(settings.root_namespace.as_str())
            .map_err(|e| PolicyError::Settings(format!("root_namespace: {e}")))?;
        if settings.groups_claim.is_empty() {
            return Err(PolicyError::Settings("groups_claim must not be empty".to_owned()));
        }
        policies.sort_by(|a, b| {
            (a.metadata.namespace.as_str(), a.metadata.name.as_str())
                .cmp(&(b.metadata.namespace.as_str(), b.metadata.name.as_str()))
        });
        for pair in policies.windows(2) {
            if pair[0].metadata.namespace == pair[1].metadata.namespace
                && pair[0].metadata.name == pair[1].metadata.name
            {
                return Err(PolicyError::Duplicate {
                    namespace: pair[0].metadata.namespace.to_string(),
                    name: pair[0].metadata.name.clone(),
                    first: pair[0].source_file.clone(),
                    second: pair[1].source_file.clone(),
                });
            }
        }
        let mut compiled = Vec::with_capacity(policies.len());
        let mut own: HashMap<String, RoleLists> = HashMap::new();
        let mut slots = CacheSlots::default();
        let mut namespace_names: HashMap<String, Arc<str>> = HashMap::new();
        for (i, policy) in policies.iter().enumerate() {
            let ns = policy.metadata.namespace.as_str();
            let namespace = namespace_names.entry(ns.to_owned()).or_insert_with(|| Arc::from(ns)).clone();
            let reference = PolicyRef { namespace, name: Arc::from(policy.metadata.name.as_str()) };
            let policy_compiled = compile(policy, reference, &settings, &mut slots).map_err(|message| {
                PolicyError::Invalid(Box::new(LocatedError::field(
                    &policy.source_file,
                    "",
                    format!("policy {ns}/{}: {message}", policy.metadata.name),
                )))
            })?;
            let index = own.entry(ns.to_owned()).or_default();
            let list = match (policy_compiled.action, policy_compiled.dry_run) {
                (Action::Custom, _) => &mut index.custom,
                (Action::Audit, _) => &mut index.audit,
                (Action::Deny, false) => &mut index.deny,
                (Action::Deny, true) => &mut index.dry_deny,
                (Action::Allow, false) => &mut index.allow,
                (Action::Allow, true) => &mut index.dry_allow,
            };
            list.push(i);
            compiled.push(policy_compiled);
        }
        let root_lists = own.get(settings.root_namespace.as_str()).cloned().unwrap_or_default();
        let by_namespace = own
            .into_iter()
            .map(|(ns, lists)| {
                let merged =
                    if ns == settings.root_namespace { lists } else { root_lists.merged_with(&lists) };
                (ns, NamespaceIndex::build(merged, &compiled))
            })
            .collect();
        let root_only = NamespaceIndex::build(root_lists, &compiled);
        Ok(PolicySet { settings, policies, compiled, by_namespace, root_only })
    }

    /// The settings the set was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every policy, sorted by namespace then name.
    pub fn policies(&self) -> &[AuthorizationPolicy] {
        &self.policies
    }

    /// The policies that may apply to a model in `namespace`.
    fn index(&self, namespace: &str) -> &NamespaceIndex {
        self.by_namespace.get(namespace).unwrap_or(&self.root_only)
    }

    /// The compiled policies in `list` that select the model, in order.
    fn applicable<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        model: &'a TargetModel,
        list: &'a [usize],
    ) -> impl Iterator<Item = &'a CompiledPolicy> + 'a {
        list.iter().map(|&i| &self.compiled[i]).filter(move |p| p.selects(ctx, model))
    }

    /// Decides a request, in Istio's order: CUSTOM (deny: no external authorizer), DENY,
    /// then ALLOW, with Palisade's owner default when no ALLOW policy applies.
    pub fn evaluate(&self, req: &Request) -> Decision {
        let model = &*req.model;
        let index = self.index(model.namespace.as_str());
        let ctx = Ctx::new(req);

        let mut audit = Vec::new();
        for policy in self.applicable(&ctx, model, &index.audit) {
            if policy.first_match(&ctx).is_some() {
                audit.push(policy.reference.clone());
            }
        }
        let mut dry_run = Vec::new();
        for policy in self.applicable(&ctx, model, &index.dry_deny) {
            dry_run.push((policy.reference.clone(), policy.first_match(&ctx).is_none()));
        }
        for policy in self.applicable(&ctx, model, &index.dry_allow) {
            dry_run.push((policy.reference.clone(), policy.first_match(&ctx).is_some()));
        }
        let decide = |allowed, reason| Decision { allowed, reason, audit, dry_run };

        let compiled = self.compiled.as_slice();
        if let Some((i, _)) = index.custom.first_match(compiled, &ctx, model) {
            return decide(false, DecisionReason::CustomDeny { policy: compiled[i].reference.clone() });
        }
        if let Some((i, rule_index)) = index.deny.first_match(compiled, &ctx, model) {
            let policy = compiled[i].reference.clone();
            return decide(false, DecisionReason::DeniedByPolicy { policy, rule_index });
        }
        if let Some((i, rule_index)) = index.allow.first_match(compiled, &ctx, model) {
            let policy = compiled[i].reference.clone();
            return decide(true, DecisionReason::AllowedByPolicy { policy, rule_index });
        }
        if index.allow.any_selects(compiled, &ctx, model) {
            return decide(false, DecisionReason::NoMatchingAllow);
        }
        match model.owners.iter().find(|owner| self.is_owner(owner, req)) {
            Some(owner) => decide(true, DecisionReason::OwnerDefault { owner: owner.clone() }),
            None => decide(false, DecisionReason::NotAnOwner),
        }
    }

    /// Whether the request's token identifies this owner.
    ///
    /// - `user@domain`: the `email` claim, local part exact and domain case-insensitive,
    ///   unless `email_verified` is present and not `true` (a boolean or the string "true").
    /// - `group:NAME`: the groups claim is NAME or a list containing NAME.
    /// - `serviceaccount:NS/NAME`: `iss` is the Palisade issuer and `sub` is
    ///   `system:serviceaccount:NS:NAME`.
    pub fn is_owner(&self, owner: &Owner, req: &Request) -> bool {
        req.claims.as_ref().is_some_and(|claims| self.claims_identify(owner, claims))
    }

    /// Whether a verified claim set identifies this owner (the rules of
    /// [`PolicySet::is_owner`]); also used for platform administrators.
    pub fn claims_identify(
        &self,
        owner: &Owner,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        claims_identify(&self.settings, owner, claims)
    }

    /// Explains who may call `model`, and why; see [`Explanation`](crate::Explanation).
    pub fn explain(&self, model: &TargetModel) -> crate::Explanation {
        let index = self.index(model.namespace.as_str());
        let request = Request::new(Arc::new(model.clone()));
        let ctx = Ctx::new(&request);
        let pick = |list: &[usize]| -> Vec<usize> {
            list.iter().copied().filter(|&i| self.compiled[i].selects(&ctx, model)).collect()
        };
        let ordered = [
            pick(&index.custom.all),
            pick(&index.deny.all),
            pick(&index.allow.all),
            pick(&index.dry_deny),
            pick(&index.dry_allow),
            pick(&index.audit),
        ];
        let owner_default = ordered[2].is_empty();
        let policies = ordered
            .iter()
            .flatten()
            .map(|&i| {
                let policy = &self.policies[i];
                crate::explain::explain_policy(
                    policy,
                    self.compiled[i].reference.clone(),
                    policy.metadata.namespace.as_str() == self.settings.root_namespace,
                )
            })
            .collect();
        crate::explain::Explanation::new(model, owner_default, policies, &self.settings)
    }
}

impl RoleLists {
    /// `self`'s policies, then `other`'s, role by role.
    fn merged_with(&self, other: &RoleLists) -> RoleLists {
        let cat = |a: &[usize], b: &[usize]| a.iter().chain(b).copied().collect();
        RoleLists {
            custom: cat(&self.custom, &other.custom),
            deny: cat(&self.deny, &other.deny),
            allow: cat(&self.allow, &other.allow),
            audit: cat(&self.audit, &other.audit),
            dry_deny: cat(&self.dry_deny, &other.dry_deny),
            dry_allow: cat(&self.dry_allow, &other.dry_allow),
        }
    }
}

/// Whether a verified claim set identifies this owner (see [`PolicySet::is_owner`]).
pub(crate) fn claims_identify(
    settings: &Settings,
    owner: &Owner,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    match owner {
        Owner::Email(email) => {
            let Some(claimed) = claims.get("email").and_then(|v| v.as_str()) else { return false };
            let verified = match claims.get("email_verified") {
                None => true,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::String(s)) => s == "true",
                Some(_) => false,
            };
            verified && emails_match(email, claimed)
        }
        Owner::Group(group) => match claims.get(&settings.groups_claim) {
            Some(serde_json::Value::String(s)) => s == group,
            Some(serde_json::Value::Array(items)) => items.iter().any(|g| g.as_str() == Some(group)),
            _ => false,
        },
        Owner::ServiceAccount { namespace, name } => {
            let Some(issuer) = settings.palisade_issuer.as_deref() else { return false };
            let iss = claims.get("iss").and_then(|v| v.as_str());
            let sub = claims.get("sub").and_then(|v| v.as_str());
            iss == Some(issuer)
                && sub
                    .and_then(|s| s.strip_prefix("system:serviceaccount:"))
                    .and_then(|s| s.strip_prefix(namespace.as_str()))
                    .and_then(|s| s.strip_prefix(':'))
                    == Some(name.as_str())
        }
    }
}

fn emails_match(owner: &str, claimed: &str) -> bool {
    match (owner.rsplit_once('@'), claimed.rsplit_once('@')) {
        (Some((ol, od)), Some((cl, cd))) => ol == cl && od.eq_ignore_ascii_case(cd),
        _ => false,
    }
}
