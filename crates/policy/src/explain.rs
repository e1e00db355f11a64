//! "Who can call this model, and why", in plain English (`palisade policy explain`).

use std::fmt;
use std::path::PathBuf;

use palisade_core::Owner;

use crate::resource::{Condition, ConditionKey, Operation, Rule, Source};
use crate::{Action, AuthorizationPolicy, PolicyRef, Settings, TargetModel};

/// One applicable policy, summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedPolicy {
    /// The policy.
    pub policy: PolicyRef,
    /// Its action.
    pub action: Action,
    /// Whether it is a dry run (reported, never enforced).
    pub dry_run: bool,
    /// Whether it comes from the root namespace (applies to every namespace).
    pub from_root_namespace: bool,
    /// Where it was loaded from.
    pub source_file: PathBuf,
    /// One sentence per rule, in rule order, e.g.
    /// `ALLOW policy ns/name rule 0: when request.auth.claims[email] is one of a, b`.
    pub rules: Vec<String>,
}

/// Who may call a model, and why: the applicable policies in evaluation order (CUSTOM,
/// DENY, ALLOW, then dry-run and AUDIT policies, which never decide), or the owner default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// `namespace/name` of the model.
    pub model: String,
    /// True when no ALLOW policy applies, so only the owners may call the model.
    pub owner_default: bool,
    /// The model's owners, each with how a caller proves to be that owner.
    pub owners: Vec<(Owner, String)>,
    /// The applicable policies, in evaluation order.
    pub policies: Vec<ExplainedPolicy>,
}

impl Explanation {
    pub(crate) fn new(
        model: &TargetModel,
        owner_default: bool,
        policies: Vec<ExplainedPolicy>,
        settings: &Settings,
    ) -> Explanation {
        let owners = model.owners.iter().map(|o| (o.clone(), describe_owner(o, settings))).collect();
        Explanation { model: format!("{}/{}", model.namespace, model.name), owner_default, owners, policies }
    }

    /// The explanation as lines of text, as `palisade policy explain` prints it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("Model {}: who can call it, in evaluation order", self.model)];
        let enforced = |a: Action| self.policies.iter().filter(move |p| p.action == a && !p.dry_run);
        let mut step = 0;
        let mut heading = |lines: &mut Vec<String>, text: &str| {
            step += 1;
            lines.push(format!("{step}. {text}"));
        };
        if enforced(Action::Custom).next().is_some() {
            heading(
                &mut lines,
                "CUSTOM policies: a request matching any rule is denied (Palisade has no external authorizer; fail closed)",
            );
            push_rules(&mut lines, enforced(Action::Custom));
        }
        if enforced(Action::Deny).next().is_some() {
            heading(&mut lines, "DENY policies: a request matching any rule is denied");
            push_rules(&mut lines, enforced(Action::Deny));
        }
        if self.owner_default {
            heading(
                &mut lines,
                "No ALLOW policy applies, so only the model's owners may call it (Palisade default):",
            );
            if self.owners.is_empty() {
                lines.push("   the model has no owners: nobody can call it".to_owned());
            }
            for (owner, how) in &self.owners {
                lines.push(format!("   - {owner}: {how}"));
            }
        } else {
            heading(
                &mut lines,
                "ALLOW policies: a request matching any rule is allowed; anything else is denied",
            );
            push_rules(&mut lines, enforced(Action::Allow));
        }
        let dry: Vec<_> = self.policies.iter().filter(|p| p.dry_run).collect();
        if !dry.is_empty() {
            heading(&mut lines, "Dry-run policies (evaluated and reported, never enforced):");
            push_rules(&mut lines, dry.into_iter());
        }
        if enforced(Action::Audit).next().is_some() {
            heading(
                &mut lines,
                "AUDIT policies (matching requests are marked for audit; the decision is unchanged):",
            );
            push_rules(&mut lines, enforced(Action::Audit));
        }
        lines
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

fn push_rules<'a>(lines: &mut Vec<String>, policies: impl Iterator<Item = &'a ExplainedPolicy>) {
    for p in policies {
        let scope = if p.from_root_namespace { " (root namespace: applies to every namespace)" } else { "" };
        if p.rules.is_empty() {
            let what = match p.action {
                Action::Allow => "it allows nothing, yet its presence turns off the owner default",
                _ => "it never matches",
            };
            lines.push(format!("   - {} policy {} has no rules: {what}{scope}", p.action, p.policy));
        }
        for rule in &p.rules {
            lines.push(format!("   - {rule}{scope}"));
        }
    }
}

fn describe_owner(owner: &Owner, settings: &Settings) -> String {
    match owner {
        Owner::Email(email) => format!("a token whose `email` claim is {email} (and not marked unverified)"),
        Owner::Group(group) => format!("a token whose `{}` claim contains {group}", settings.groups_claim),
        Owner::ServiceAccount { namespace, name } => match &settings.palisade_issuer {
            Some(issuer) => format!(
                "a Palisade service-account token (iss {issuer}, sub system:serviceaccount:{namespace}:{name})"
            ),
            None => "a Palisade service-account token, but no Palisade issuer is configured: matches nobody"
                .to_owned(),
        },
    }
}

pub(crate) fn explain_policy(
    policy: &AuthorizationPolicy,
    reference: PolicyRef,
    from_root_namespace: bool,
) -> ExplainedPolicy {
    let action = policy.spec.action;
    let dry_run = policy.is_dry_run();
    let label = if dry_run { format!("{action} (dry run)") } else { action.to_string() };
    let rules = policy
        .spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let mut sentence = format!("{label} policy {reference} rule {i}: {}", summarize_rule(rule));
            if action == Action::Allow && !restricts_identity(rule) {
                sentence.push_str(" (no identity condition: any caller that passes authentication)");
            }
            sentence
        })
        .collect();
    ExplainedPolicy {
        policy: reference,
        action,
        dry_run,
        from_root_namespace,
        source_file: policy.source_file.clone(),
        rules,
    }
}

/// A rule in one sentence: `from ...; to ...; when ...`, or `any request`.
pub fn summarize_rule(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if !rule.from.is_empty() {
        let sources: Vec<_> = rule.from.iter().map(|f| describe_source(&f.source)).collect();
        parts.push(format!("from {}", either(&sources)));
    }
    if !rule.to.is_empty() {
        let operations: Vec<_> = rule.to.iter().map(|t| describe_operation(&t.operation)).collect();
        parts.push(format!("to {}", either(&operations)));
    }
    if !rule.when.is_empty() {
        let conditions: Vec<_> = rule.when.iter().map(describe_condition).collect();
        parts.push(format!("when {}", conditions.join(" and ")));
    }
    if parts.is_empty() { "any request".to_owned() } else { parts.join("; ") }
}

fn either(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        items.iter().map(|i| format!("({i})")).collect::<Vec<_>>().join(" or ")
    }
}

fn field(name: &str, values: &[String], not_values: &[String]) -> Option<String> {
    let list = |v: &[String]| v.join(", ");
    let pos = match values.len() {
        0 => None,
        1 => Some(format!("{name} is {}", values[0])),
        _ => Some(format!("{name} is one of {}", list(values))),
    };
    let neg = match not_values.len() {
        0 => None,
        1 => Some(format!("{name} is not {}", not_values[0])),
        _ => Some(format!("{name} is none of {}", list(not_values))),
    };
    match (pos, neg) {
        (Some(p), Some(n)) => Some(format!("{p} and {n}")),
        (p, n) => p.or(n),
    }
}

fn texts<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

fn describe_source(s: &Source) -> String {
    let fields = [
        field("peer principal", &s.principals, &s.not_principals),
        field("request principal", &s.request_principals, &s.not_request_principals),
        field("peer namespace", &s.namespaces, &s.not_namespaces),
        field("peer service account", &s.service_accounts, &s.not_service_accounts),
        field("peer trust domain", &s.trust_domains, &s.not_trust_domains),
        field("source IP", &texts(&s.ip_blocks), &texts(&s.not_ip_blocks)),
        field("remote IP", &texts(&s.remote_ip_blocks), &texts(&s.not_remote_ip_blocks)),
    ];
    fields.into_iter().flatten().collect::<Vec<_>>().join(" and ")
}

fn describe_operation(o: &Operation) -> String {
    let fields = [
        field("host", &o.hosts, &o.not_hosts),
        field("port", &texts(&o.ports), &texts(&o.not_ports)),
        field("method", &o.methods, &o.not_methods),
        field("path", &o.paths, &o.not_paths),
    ];
    fields.into_iter().flatten().collect::<Vec<_>>().join(" and ")
}

fn describe_condition(c: &Condition) -> String {
    field(&c.key.to_string(), &c.values, &c.not_values).unwrap_or_default()
}

/// Whether a rule says anything about who the caller is.
fn restricts_identity(rule: &Rule) -> bool {
    !rule.from.is_empty()
        || rule.when.iter().any(|c| {
            matches!(
                c.key,
                ConditionKey::SourcePrincipal
                    | ConditionKey::SourceNamespace
                    | ConditionKey::SourceServiceAccount
                    | ConditionKey::SourceTrustDomain
                    | ConditionKey::SourceIp
                    | ConditionKey::RemoteIp
                    | ConditionKey::RequestPrincipal
                    | ConditionKey::RequestAudiences
                    | ConditionKey::RequestPresenter
                    | ConditionKey::RequestClaim(_)
                    | ConditionKey::RequestHeader(_)
            )
        })
}
