//! What a policy change does: for each model version it could touch, who gains access and
//! who loses it, compared with the policies in effect now.
//!
//! "Who" is the identities anyone would ask about: the model's owners, everyone the old and
//! the new policy name (emails, groups, request principals), any other authenticated
//! caller, and anonymous callers. Each is judged by the real policy evaluator, before and
//! after, on an inference request. A change that takes an owner's own access away is what
//! the management API asks to be confirmed.

use std::sync::Arc;

use palisade_core::Owner;
use palisade_policy::{AuthorizationPolicy, ConditionKey, PolicySet, Request as PolicyRequest};
use serde_json::{Map, Value, json};

use crate::{ApiError, AppState, ServedModel};

/// The access one model version gains and loses.
#[derive(Debug, Clone)]
pub(crate) struct ModelImpact {
    /// `namespace/name:version`.
    pub model: String,
    /// Identities allowed after and not before.
    pub gains: Vec<String>,
    /// Identities allowed before and not after.
    pub loses: Vec<String>,
    /// Of those who lose access, the model's owners.
    pub owners_losing: Vec<String>,
}

/// The impact of a change on every model version it touches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Impact {
    /// Versions whose access changes.
    pub models: Vec<ModelImpact>,
}

impl Impact {
    /// Whether some owner loses access to their own model.
    pub fn owners_lose(&self) -> bool {
        self.models.iter().any(|m| !m.owners_losing.is_empty())
    }

    /// The impact as the management API answers it.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.models
                .iter()
                .map(|m| json!({"model": m.model, "gains": m.gains, "loses": m.loses, "owners_losing": m.owners_losing}))
                .collect(),
        )
    }
}

/// One identity to judge: a label for people, and the verified claims it stands for.
struct Candidate {
    label: String,
    claims: Option<Arc<Map<String, Value>>>,
}

fn claims(pairs: &[(&str, Value)]) -> Option<Arc<Map<String, Value>>> {
    Some(Arc::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()))
}

fn owner_candidate(owner: &Owner, groups_claim: &str, people: &str, palisade_issuer: &str) -> Candidate {
    let label = owner.to_string();
    let claims = match owner {
        Owner::Email(email) => claims(&[
            ("iss", json!(people)),
            ("sub", json!(email)),
            ("email", json!(email)),
            ("email_verified", json!(true)),
        ]),
        Owner::Group(group) => claims(&[
            ("iss", json!(people)),
            ("sub", json!(format!("member-of-{group}"))),
            (groups_claim, json!([group])),
        ]),
        Owner::ServiceAccount { namespace, name } => claims(&[
            ("iss", json!(palisade_issuer)),
            ("sub", json!(format!("system:serviceaccount:{namespace}:{name}"))),
        ]),
    };
    Candidate { label, claims }
}

/// The identities a policy names by value (wildcards name nobody in particular).
fn named_by(policy: &AuthorizationPolicy, groups_claim: &str, people: &str, into: &mut Vec<Candidate>) {
    let exact = |v: &String| !v.contains('*');
    for rule in &policy.spec.rules {
        for from in &rule.from {
            for principal in from.source.request_principals.iter().filter(|v| exact(v)) {
                if let Some((iss, sub)) = principal.rsplit_once('/') {
                    into.push(Candidate {
                        label: format!("principal {principal}"),
                        claims: claims(&[("iss", json!(iss)), ("sub", json!(sub))]),
                    });
                }
            }
        }
        for condition in &rule.when {
            for value in condition.values.iter().filter(|v| exact(v)) {
                match &condition.key {
                    ConditionKey::RequestClaim(path) if path.as_slice() == ["email"] => {
                        into.push(Candidate {
                            label: value.clone(),
                            claims: claims(&[
                                ("iss", json!(people)),
                                ("sub", json!(value)),
                                ("email", json!(value)),
                                ("email_verified", json!(true)),
                            ]),
                        })
                    }
                    ConditionKey::RequestClaim(path) if path.len() == 1 && path[0] == groups_claim => into
                        .push(Candidate {
                            label: format!("group:{value}"),
                            claims: claims(&[
                                ("iss", json!(people)),
                                ("sub", json!(format!("member-of-{value}"))),
                                (groups_claim, json!([value])),
                            ]),
                        }),
                    ConditionKey::RequestPrincipal => {
                        if let Some((iss, sub)) = value.rsplit_once('/') {
                            into.push(Candidate {
                                label: format!("principal {value}"),
                                claims: claims(&[("iss", json!(iss)), ("sub", json!(sub))]),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The impact of replacing the policy `namespace/name` (if it exists) by `next` (or of
/// deleting it, when `next` is `None`). The caller asking, if authenticated, is judged
/// with their own verified claims too, as `you (PRINCIPAL)`.
pub(crate) fn impact(
    state: &AppState,
    caller: Option<(String, Arc<Map<String, Value>>)>,
    namespace: &str,
    name: &str,
    next: Option<AuthorizationPolicy>,
) -> Result<Impact, ApiError> {
    let security = state.security();
    let current = security.policy_set();
    let mut policies: Vec<AuthorizationPolicy> = security.policies().authorization_policies.clone();
    let old = policies
        .iter()
        .position(|p| p.metadata.namespace.as_str() == namespace && p.metadata.name.as_str() == name)
        .map(|i| policies.remove(i));
    if let Some(next) = &next {
        policies.push(next.clone());
    }
    let after = PolicySet::new(policies, current.settings().clone()).map_err(|err| {
        ApiError::BadRequest(format!("the policy was refused when loaded with the others: {err}"))
    })?;
    let settings = current.settings();
    let groups_claim = settings.groups_claim.clone();
    let palisade_issuer = settings.palisade_issuer.clone().unwrap_or_default();
    // People are judged as tokens of the first trusted identity provider would carry them
    // (Palisade's own issuer when no other is configured).
    let people = security
        .platform()
        .jwt_rules
        .first()
        .map(|rule| rule.issuer.clone())
        .or_else(|| settings.palisade_issuer.clone())
        .unwrap_or_else(|| "https://idp.invalid".to_owned());
    let mut named = Vec::new();
    for policy in old.iter().chain(next.iter()) {
        named_by(policy, &groups_claim, &people, &mut named);
    }
    let root = &settings.root_namespace;
    let registry = state.registry();
    let touched: Vec<&Arc<ServedModel>> =
        registry.all().filter(|m| namespace == root || m.target.namespace.as_str() == namespace).collect();
    let mut models = Vec::new();
    for served in touched {
        let mut candidates: Vec<Candidate> = served
            .target
            .owners
            .iter()
            .map(|o| owner_candidate(o, &groups_claim, &people, &palisade_issuer))
            .collect();
        let mut owner_count = candidates.len();
        if let Some((principal, claims)) = &caller {
            let claims = Some(claims.clone());
            let mut request = PolicyRequest::new(served.target.clone());
            request.claims = claims.clone();
            let label = format!("you ({principal})");
            if served.target.owners.iter().any(|owner| current.is_owner(owner, &request)) {
                candidates.insert(0, Candidate { label, claims });
                owner_count += 1;
            } else {
                candidates.push(Candidate { label, claims });
            }
        }
        candidates
            .extend(named.iter().map(|c| Candidate { label: c.label.clone(), claims: c.claims.clone() }));
        candidates.push(Candidate {
            label: "any other authenticated caller".to_owned(),
            claims: claims(&[
                ("iss", json!(people)),
                ("sub", json!("someone-else")),
                ("email", json!("someone-else@elsewhere.invalid")),
                ("email_verified", json!(true)),
            ]),
        });
        candidates.push(Candidate { label: "anonymous callers".to_owned(), claims: None });
        let mut impact = ModelImpact {
            model: format!("{}/{}:{}", served.id.namespace, served.id.name, served.id.version),
            gains: Vec::new(),
            loses: Vec::new(),
            owners_losing: Vec::new(),
        };
        for (i, candidate) in candidates.iter().enumerate() {
            if candidates[..i].iter().any(|c| c.label == candidate.label) {
                continue;
            }
            let mut request = PolicyRequest::new(served.target.clone());
            request.claims = candidate.claims.clone();
            request.method = "POST".to_owned();
            request.path = format!("/v2/models/{}/infer", served.id.name);
            let (was, is) = (current.evaluate(&request).allowed, after.evaluate(&request).allowed);
            match (was, is) {
                (false, true) => impact.gains.push(candidate.label.clone()),
                (true, false) => {
                    impact.loses.push(candidate.label.clone());
                    if i < owner_count {
                        impact.owners_losing.push(candidate.label.clone());
                    }
                }
                _ => {}
            }
        }
        if !impact.gains.is_empty() || !impact.loses.is_empty() {
            models.push(impact);
        }
    }
    Ok(Impact { models })
}
