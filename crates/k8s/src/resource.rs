//! The `ModelDeployment` custom resource (`palisade.dev/v1alpha1`) and the checks its
//! OpenAPI schema cannot express.

use std::collections::BTreeSet;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The API group of Palisade's resources.
pub const GROUP: &str = "palisade.dev";

/// A model served by Palisade on Kubernetes: one or more variants of a bundle image with a
/// traffic split, an optional shadow, scaling, and the model's security (issuers, access
/// policies, TLS, audit).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    doc = "A model served by Palisade: variants of a bundle image with a traffic split, scaling, and its security (issuers, access policies, TLS, audit).",
    plural = "modeldeployments",
    shortname = "md",
    namespaced,
    status = "ModelDeploymentStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelDeploymentSpec {
    /// The variants that serve the model; the traffic of the non-shadow ones sums to 100.
    #[schemars(length(min = 1, max = 8))]
    pub variants: Vec<Variant>,
    /// Replicas of each variant (the scale subresource); not with `autoscaling`. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Scale each variant between a minimum and a maximum on a CPU or requests-per-second
    /// target (a HorizontalPodAutoscaler per variant); not with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory of each replica (Kubernetes quantities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The model's owners, written like palisade.yaml owners (`alice@example.com`,
    /// `group:NAME`, `serviceaccount:NS/NAME`); recorded on every object.
    #[schemars(length(min = 1))]
    pub owners: Vec<String>,
    /// Who may present tokens: trusted issuers, as Istio's `RequestAuthentication` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Who may call: Istio `AuthorizationPolicy` documents, as Palisade reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The serving certificate: a Secret, or Palisade's built-in CA.
    pub tls: Tls,
    /// The audit trail: level and storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// One variant: a bundle image and its share of the traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Variant {
    /// The variant's name, a DNS label (`a-z`, `0-9`, `-`) of at most 20 characters,
    /// unique in the deployment, and not `router`.
    #[schemars(length(min = 1, max = 20), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The bundle image (`palisade image build`), by tag or digest.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Percent of the requests this variant answers; 0 for a shadow.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub traffic: i32,
    /// A shadow receives a copy of every request; its answers are recorded, never returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// Horizontal autoscaling of each variant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// The fewest replicas of a variant.
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// The most replicas of a variant.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target average CPU utilisation, percent of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Target requests per second per replica (a custom metric: needs a metrics adapter
    /// serving `palisade_requests_per_second` from Palisade's Prometheus metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_requests_per_second: Option<i32>,
}

/// CPU and memory requests and limits.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
    /// What the container may use at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
}

/// Kubernetes quantities of CPU and memory.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// CPU, such as `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, such as `256Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

/// Trusted token issuers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authentication {
    /// Each issuer as an Istio `JWTRule`: issuer, audiences, jwksUri.
    #[schemars(length(min = 1))]
    pub issuers: Vec<Issuer>,
}

/// One trusted issuer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issuer {
    /// The `iss` claim.
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the issuer's keys are published (https).
    #[schemars(regex(pattern = r"^https://"))]
    pub jwks_uri: String,
}

/// Access policies carried by the deployment itself.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// `security.istio.io/v1` `AuthorizationPolicy` documents, written as for Istio.
    /// Policies applied to the cluster with `kubectl apply` in the deployment's namespace
    /// are added by the operator.
    #[serde(default)]
    #[schemars(schema_with = "preserved_objects")]
    pub policies: Vec<serde_json::Value>,
}

/// The serving certificate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`), such as cert-manager writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Palisade's built-in CA issues each replica a short-lived SPIFFE workload
    /// certificate; the CA (`palisade ca init`) is read from this Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_in_ca: Option<BuiltInCa>,
}

/// The built-in CA, kept in a Secret made from `palisade ca init`'s directory.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltInCa {
    /// The Secret holding the CA directory's files.
    pub secret_name: String,
}

/// The audit trail of each replica.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audit {
    /// The least every record keeps (the model's palisade.yaml may raise it).
    #[serde(default)]
    pub level: AuditLevel,
    /// A persistent volume of this size per replica (a StatefulSet); without it the trail
    /// lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti)$"))]
    pub storage: Option<String>,
    /// The storage class of the volumes [default: the cluster's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Also write every record and checkpoint, once durable in the replica's trail, as one
    /// JSON line on the container's stdout, where the cluster's log collector reads it (the
    /// server's own logs are on stderr). The local trail stays the record of truth.
    #[serde(default = "ship_to_stdout")]
    pub ship_to_stdout: bool,
}

fn ship_to_stdout() -> bool {
    true
}

/// Audit levels, as in Kubernetes auditing.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AuditLevel {
    /// No record.
    None,
    /// Who, what, decision, outcome, digests.
    #[default]
    Metadata,
    /// And the request payload.
    Request,
    /// And the response payload.
    RequestResponse,
}

/// What the operator saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The fewest ready replicas of any variant (the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// The label selector of the variants' pods (the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// Replicas per variant.
    #[serde(default)]
    pub variants: Vec<VariantStatus>,
    /// SHA-256 of the objects last applied; the same spec and policies apply nothing anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
}

/// A status condition, as Kubernetes writes them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One variant's replicas.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariantStatus {
    /// The variant's name.
    pub name: String,
    /// Replicas asked for.
    pub replicas: i32,
    /// Replicas ready.
    pub ready_replicas: i32,
}

fn preserved_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

impl ModelDeploymentSpec {
    /// Checks what the schema cannot express: the traffic split, one shadow, unique
    /// names, scaling, TLS, and the policies as Palisade reads them.
    pub fn check(&self) -> Result<(), Error> {
        let invalid = |field: &str, message: String| Err(Error::Invalid { field: field.to_owned(), message });
        if self.variants.is_empty() {
            return invalid("spec.variants", "at least one variant is needed".into());
        }
        let mut names = BTreeSet::new();
        for (i, variant) in self.variants.iter().enumerate() {
            // NAME-VARIANT names a StatefulSet, whose pods' revision label allows 52.
            if !is_dns_label(&variant.name) || variant.name.len() > 20 {
                return invalid(
                    &format!("spec.variants[{i}].name"),
                    format!("`{}` is not a DNS label of at most 20 characters (a-z, 0-9, -)", variant.name),
                );
            }
            if variant.name == crate::render::ROUTER {
                return invalid(
                    &format!("spec.variants[{i}].name"),
                    "`router` is the name of Palisade's traffic router; choose another".into(),
                );
            }
            if !names.insert(variant.name.as_str()) {
                return invalid(
                    &format!("spec.variants[{i}].name"),
                    format!("`{}` is used twice", variant.name),
                );
            }
            if variant.image.trim().is_empty() {
                return invalid(&format!("spec.variants[{i}].image"), "an image is needed".into());
            }
            if !(0..=100).contains(&variant.traffic) {
                return invalid(
                    &format!("spec.variants[{i}].traffic"),
                    format!("{} is not a percentage (0 to 100)", variant.traffic),
                );
            }
            if variant.shadow && variant.traffic != 0 {
                return invalid(
                    &format!("spec.variants[{i}].traffic"),
                    format!(
                        "variant `{}` is a shadow: it receives a copy of every request, so its traffic must be 0, not {}",
                        variant.name, variant.traffic
                    ),
                );
            }
        }
        let shadows: Vec<&str> = self.variants.iter().filter(|v| v.shadow).map(|v| v.name.as_str()).collect();
        if shadows.len() > 1 {
            return invalid(
                "spec.variants",
                format!("at most one variant may be a shadow; {} are: {}", shadows.len(), shadows.join(", ")),
            );
        }
        let serving: Vec<&Variant> = self.variants.iter().filter(|v| !v.shadow).collect();
        if serving.is_empty() {
            return invalid("spec.variants", "at least one variant must not be a shadow".into());
        }
        let total: i32 = serving.iter().map(|v| v.traffic).sum();
        if total != 100 {
            let parts: Vec<String> = serving.iter().map(|v| format!("{} {}", v.name, v.traffic)).collect();
            return invalid(
                "spec.variants[].traffic",
                format!("the traffic of the variants must sum to 100, not {total} ({})", parts.join(" + ")),
            );
        }
        match (&self.replicas, &self.autoscaling) {
            (Some(_), Some(_)) => {
                return invalid("spec.replicas", "set `replicas` or `autoscaling`, not both".into());
            }
            (Some(replicas), None) if *replicas < 0 => {
                return invalid("spec.replicas", format!("{replicas} is negative"));
            }
            (_, Some(scaling)) => {
                if scaling.min_replicas < 1 || scaling.max_replicas < scaling.min_replicas {
                    return invalid(
                        "spec.autoscaling",
                        format!(
                            "minReplicas {} and maxReplicas {} must satisfy 1 <= minReplicas <= maxReplicas",
                            scaling.min_replicas, scaling.max_replicas
                        ),
                    );
                }
                if scaling.target_cpu_utilization.is_some() == scaling.target_requests_per_second.is_some() {
                    return invalid(
                        "spec.autoscaling",
                        "set exactly one target: `targetCpuUtilization` or `targetRequestsPerSecond`".into(),
                    );
                }
            }
            _ => {}
        }
        if self.owners.iter().all(|owner| owner.trim().is_empty()) {
            return invalid("spec.owners", "at least one owner is needed".into());
        }
        if self.tls.secret_name.is_some() == self.tls.built_in_ca.is_some() {
            return invalid("spec.tls", "set exactly one of `secretName` and `builtInCa`".into());
        }
        if self.tls.built_in_ca.is_none() && (self.variants.len() > 1) {
            return invalid(
                "spec.tls",
                "several variants are served behind Palisade's router, which calls them over mutual TLS with workload certificates: use `builtInCa` (a `secretName` certificate cannot prove to the variants that a call comes from the router)".into(),
            );
        }
        if let Some(authorization) = &self.authorization {
            for (i, policy) in authorization.policies.iter().enumerate() {
                check_policy(i, policy)?;
            }
        }
        Ok(())
    }
}

fn check_policy(i: usize, policy: &serde_json::Value) -> Result<(), Error> {
    let field = format!("spec.authorization.policies[{i}]");
    let kind = policy.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    if kind != "AuthorizationPolicy" {
        return Err(Error::Invalid { field, message: format!("kind `{kind}` is not AuthorizationPolicy") });
    }
    let value: serde_yaml::Value = serde_yaml::to_value(policy)
        .map_err(|err| Error::Invalid { field: field.clone(), message: err.to_string() })?;
    palisade_policy::parse_policy_value(value, std::path::Path::new(&field))
        .map(|_| ())
        .map_err(|err| Error::Invalid { field, message: err.to_string() })
}

/// Whether `name` is an RFC 1123 DNS label.
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && !name.ends_with('-')
}
