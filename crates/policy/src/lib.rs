//! Palisade authorization: Istio's `AuthorizationPolicy`, parsed as users write it and
//! evaluated with Istio's semantics, plus Palisade's stricter owner default.
//!
//! Pure: no I/O, no async, no HTTP types, so it can be unit-tested and fuzzed alone.
//!
//! ```text
//! parse_policy(yaml) -> AuthorizationPolicy      (Istio's validation, file:line on error)
//! PolicySet::new(policies, Settings)             (indexed by namespace, compiled matchers)
//! normalize_path(raw) -> path                    (once per request, before matching)
//! PolicySet::evaluate(&Request) -> Decision      (CUSTOM -> DENY -> ALLOW | owner default)
//! PolicySet::explain(&TargetModel) -> Explanation
//! ```
//!
//! # Decision order
//!
//! For the policies that apply to the model (its namespace's and the root namespace's,
//! whose `selector.matchLabels` the model's labels satisfy):
//!
//! 1. a matching **CUSTOM** rule denies: Palisade has no external authorizer, and Istio
//!    also denies when a CUSTOM policy's provider is unavailable (fail closed);
//! 2. a matching **DENY** rule denies;
//! 3. when no enforced **ALLOW** policy applies, only the model's owners are allowed
//!    (Palisade's default; Istio would allow everyone);
//! 4. a matching **ALLOW** rule allows; otherwise the request is denied.
//!
//! AUDIT policies never change the decision; their matches are listed in
//! [`Decision::audit`]. Policies annotated `istio.io/dry-run: "true"` are evaluated and
//! reported in [`Decision::dry_run`] but never enforced, and a dry-run ALLOW policy does not
//! turn off the owner default (as in Istio, where it installs no enforcing rules).
//!
//! # Semantics where Istio leaves room
//!
//! - Attributes are matched as Envoy matches them: `*` means present and non-empty
//!   (`.+`), except for headers, `hosts` and `methods`, where it means present; a repeated
//!   header is matched on its values joined with `,`; hosts compare case-insensitively with
//!   the authority as sent (port included); `principals`, `namespaces`, `serviceAccounts`
//!   and `trustDomains` read the mTLS peer's SPIFFE id; `requestPrincipals` split
//!   `iss/sub` on the last `/` and match the token's `iss` and `sub` claims.
//! - Claims: a string claim matches as a whole; a list claim when any string element does;
//!   numbers, booleans and objects never match (Envoy compares strings). Top-level claims
//!   named in [`Settings::space_delimited_claims`] (`scope`, `permission` by default) are
//!   split on spaces first; nested claims are not.
//! - An absent attribute fails a positive match and so satisfies a `not*` match: a
//!   plaintext caller matches `notPrincipals: ["*"]`, a caller without a token matches
//!   `notRequestPrincipals`.
//! - Paths are matched after [`normalize_path`], which merges slashes (Istio's recommended
//!   `DECODE_AND_MERGE_SLASHES`; Istio's default only resolves dot segments).
//! - Owner default: an email owner matches the `email` claim with the local part exact and
//!   the domain case-insensitive (RFC 5321), unless `email_verified` is present and not
//!   `true`; a group owner matches the configured groups claim (string or list) exactly; a
//!   service-account owner matches only tokens from [`Settings::palisade_issuer`].
//! - `experimental.envoy.filters.*` conditions and `targetRef(s)` are refused at load time:
//!   Palisade has no Envoy metadata and attaches policies by namespace and selector.
//! - `metadata.namespace` is required: Palisade has no "current namespace" to default to.

mod compile;
mod error;
mod eval;
mod explain;
mod index;
mod path;
mod pattern;
mod request;
pub mod resource;

pub use error::{PathError, PolicyError};
pub use eval::{Decision, DecisionReason, PolicyRef, PolicySet, Settings};
pub use explain::{ExplainedPolicy, Explanation, summarize_rule};
pub use palisade_core::yaml::LocatedError;
pub use path::{MAX_PATH_BYTES, normalize_host, normalize_path};
pub use pattern::Cidr;
pub use request::{Headers, Request, TargetModel};
pub use resource::{
    Action, ApiVersion, AuthorizationPolicy, Condition, ConditionKey, Creator, IpBlock, ObjectMeta,
    Operation, Port, Provider, Rule, RuleFrom, RuleTo, Source, Spec, WorkloadSelector, parse_policy,
    parse_policy_value,
};
