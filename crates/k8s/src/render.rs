//! A `ModelDeployment` rendered into the Kubernetes objects that run it.
//!
//! What each variant gets: a ServiceAccount (shared), a Deployment (a StatefulSet when the
//! audit trail asks for a persistent volume per replica), a Service, a PodDisruptionBudget,
//! a HorizontalPodAutoscaler v2 when autoscaling, and a NetworkPolicy. With more than one
//! variant or a shadow, a router (Palisade itself, `palisade serve --traffic FILE`) stands in
//! front of the variants and splits the traffic; the variants then accept calls from the
//! router only. The policies (issuers, access rules) are a ConfigMap that every pod reads
//! as `--policy-dir`; the TLS certificate is a Secret reference. Each pod's init container
//! (`palisade k8s init-pod`) makes the directories the server keeps keys in private and
//! copies the built-in CA out of its Secret volume, whose layout the key rules refuse.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde::Serialize;

use crate::Error;
use crate::resource::{AuditLevel, ModelDeployment, ResourceList, Variant};

/// The port that serves the model APIs (TLS).
pub const SERVING_PORT: i32 = 8080;
/// The admin port: `/livez`, `/readyz`, `/metrics` (plaintext, probes and scraping).
pub const ADMIN_PORT: i32 = 9090;
/// Palisade's home inside the image (`palisade image build`): the bundle, and mounts for
/// what the server writes.
pub const HOME: &str = "/home/palisade";
/// The binary inside the image.
pub const BINARY: &str = "/usr/local/bin/palisade";
/// The label every object carries with its deployment's name.
pub const DEPLOYMENT_LABEL: &str = "palisade.dev/deployment";
/// The label that tells variants (and the router) apart.
pub const VARIANT_LABEL: &str = "palisade.dev/variant";
/// Where the policies ConfigMap is mounted.
const POLICY_DIR: &str = "/etc/palisade/policies";
/// Where the platform ConfigMap is mounted.
const PLATFORM_DIR: &str = "/etc/palisade/platform";
/// Where the init container mounts the pod's `state` volume.
const INIT_STATE: &str = "/var/run/palisade/state";
/// Where the init container mounts the audit volume.
const INIT_AUDIT: &str = "/var/run/palisade/audit";
/// Where the init container mounts the built-in CA's Secret.
const CA_SECRET_DIR: &str = "/etc/palisade/ca-secret";
/// Where the traffic ConfigMap is mounted (router only).
const TRAFFIC_DIR: &str = "/etc/palisade/traffic";
/// The router's pseudo-variant name.
pub const ROUTER: &str = "router";

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, `Service`, ...
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object, `apiVersion` and `kind` included.
    pub value: serde_json::Value,
}

/// The workload kind of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Stateless replicas.
    Deployment,
    /// One audit volume per replica.
    StatefulSet,
}

impl WorkloadKind {
    /// The workload kind for this deployment.
    pub fn of(md: &ModelDeployment) -> Self {
        match md.spec.audit.as_ref().and_then(|a| a.storage.as_ref()) {
            Some(_) => WorkloadKind::StatefulSet,
            None => WorkloadKind::Deployment,
        }
    }
}

/// The name of a variant's workload and Service.
pub fn variant_name(md: &ModelDeployment, variant: &str) -> String {
    format!("{}-{variant}", md_name(md))
}

/// Whether a router stands in front of the variants.
pub fn has_router(md: &ModelDeployment) -> bool {
    md.spec.variants.len() > 1
}

fn md_name(md: &ModelDeployment) -> &str {
    md.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(md: &ModelDeployment) -> String {
    md.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned())
}

/// Renders the objects of `md`. `cluster_policies` are the `AuthorizationPolicy` documents
/// found in its namespace (the operator passes them; `palisade k8s render` none).
pub fn render(md: &ModelDeployment, cluster_policies: &[serde_json::Value]) -> Result<Vec<Object>, Error> {
    let name = md_name(md);
    if !crate::resource::is_dns_label(name) || name.len() > 30 {
        return Err(Error::Invalid {
            field: "metadata.name".into(),
            message: format!("`{name}` is not a DNS label of at most 30 characters (a-z, 0-9, -)"),
        });
    }
    md.spec.check()?;
    let mut r = Renderer { md, name, namespace: namespace(md), config_digest: String::new() };
    let policies = r.policies(cluster_policies)?;
    let platform = r.platform();
    r.config_digest = config_digest(&[&policies, &platform])?;
    let mut objects = vec![r.object(&r.service_account())?, r.object(&policies)?, r.object(&platform)?];
    if has_router(md) {
        objects.push(r.object(&r.traffic()?)?);
    }
    for variant in &md.spec.variants {
        objects.extend(r.variant(variant)?);
    }
    if has_router(md) {
        objects.extend(r.router()?);
    }
    objects.push(r.object(&r.front_service())?);
    Ok(objects)
}

/// Renders `objects` as multi-document YAML.
pub fn to_yaml(objects: &[Object]) -> Result<String, Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object.value).map_err(|err| Error::Render(err.to_string()))?);
    }
    Ok(out)
}

struct Renderer<'a> {
    md: &'a ModelDeployment,
    name: &'a str,
    namespace: String,
    /// SHA-256 of the ConfigMaps the pods read, in their template: a change of policies
    /// rolls the pods. (The kubelet updates a mounted ConfigMap by swapping a hidden
    /// symbolic link, which the policy directory's change check does not follow.)
    config_digest: String,
}

/// The annotation on pod templates that carries [`Renderer::config_digest`].
pub const CONFIG_DIGEST_ANNOTATION: &str = "palisade.dev/config-digest";

fn config_digest(maps: &[&ConfigMap]) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for map in maps {
        let data = serde_json::to_vec(&map.data).map_err(|err| Error::Render(err.to_string()))?;
        hasher.update(data);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Renderer<'_> {
    fn object<K: k8s_openapi::Resource + Serialize>(&self, object: &K) -> Result<Object, Error> {
        let mut value = serde_json::to_value(object).map_err(|err| Error::Render(err.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), K::API_VERSION.into());
            map.insert("kind".into(), K::KIND.into());
        }
        let name = value.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
        Ok(Object { api_version: K::API_VERSION.to_owned(), kind: K::KIND.to_owned(), name, value })
    }

    fn labels(&self, variant: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "palisade".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name.to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "palisade-operator".to_owned()),
            (DEPLOYMENT_LABEL.to_owned(), self.name.to_owned()),
        ]);
        if let Some(variant) = variant {
            labels.insert(VARIANT_LABEL.to_owned(), variant.to_owned());
        }
        labels
    }

    fn selector(&self, variant: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (DEPLOYMENT_LABEL.to_owned(), self.name.to_owned()),
            (VARIANT_LABEL.to_owned(), variant.to_owned()),
        ])
    }

    fn meta(&self, name: String, variant: Option<&str>) -> ObjectMeta {
        let owner = self.md.meta().uid.as_ref().map(|uid| OwnerReference {
            api_version: "palisade.dev/v1alpha1".into(),
            kind: "ModelDeployment".into(),
            name: self.name.to_owned(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(variant)),
            annotations: Some(BTreeMap::from([(
                "palisade.dev/owners".to_owned(),
                self.md.spec.owners.join(","),
            )])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    fn service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(self.name.to_owned(), None),
            // Palisade calls no Kubernetes API: no token in its pods.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    /// Issuers and access rules, as the files of `palisade serve --policy-dir`.
    fn policies(&self, cluster_policies: &[serde_json::Value]) -> Result<ConfigMap, Error> {
        let mut data = BTreeMap::new();
        if let Some(authn) = &self.md.spec.authentication {
            let rules: Vec<serde_json::Value> = authn
                .issuers
                .iter()
                .map(|i| {
                    let mut rule = serde_json::json!({"issuer": i.issuer, "jwksUri": i.jwks_uri});
                    if !i.audiences.is_empty() {
                        rule["audiences"] = serde_json::json!(i.audiences);
                    }
                    rule
                })
                .collect();
            // In the root namespace, the rules apply to every model these pods serve.
            let doc = serde_json::json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "RequestAuthentication",
                "metadata": {"name": format!("{}-issuers", self.name), "namespace": "palisade-system"},
                "spec": {"jwtRules": rules},
            });
            data.insert("issuers.yaml".to_owned(), yaml(&doc)?);
        }
        let own = self.md.spec.authorization.iter().flat_map(|a| a.policies.iter());
        for (i, policy) in own.enumerate() {
            data.insert(format!("spec-{i}.yaml"), yaml(policy)?);
        }
        for policy in cluster_policies {
            let name = policy.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("unnamed");
            data.insert(format!("cluster-{name}.yaml"), yaml(policy)?);
        }
        Ok(ConfigMap {
            metadata: self.meta(format!("{}-policies", self.name), None),
            data: Some(data),
            ..ConfigMap::default()
        })
    }

    /// The platform file (`palisade serve --config`): the audit level, the signing key, and
    /// whether records are shipped on stdout (by default they are: the trail of a pod
    /// without `audit.storage` goes with the pod).
    fn platform(&self) -> ConfigMap {
        let audit = self.md.spec.audit.as_ref();
        let level = audit.map(|a| a.level).unwrap_or_default();
        let ship = audit.is_none_or(|a| a.ship_to_stdout);
        let level = match level {
            AuditLevel::None => "None",
            AuditLevel::Metadata => "Metadata",
            AuditLevel::Request => "Request",
            AuditLevel::RequestResponse => "RequestResponse",
        };
        let text = format!(
            "audit:\n  minimumLevel: {level}\n  signingKey: {HOME}/audit-keys/audit-signing.pk8\n  ship:\n    stdout: {ship}\n"
        );
        ConfigMap {
            metadata: self.meta(format!("{}-platform", self.name), None),
            data: Some(BTreeMap::from([("platform.yaml".to_owned(), text)])),
            ..ConfigMap::default()
        }
    }

    /// The router's traffic file: each variant's Service and weight, and the shadow.
    fn traffic(&self) -> Result<ConfigMap, Error> {
        let variants: Vec<serde_json::Value> = self
            .md
            .spec
            .variants
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name,
                    "url": format!("https://{}.{}.svc:{SERVING_PORT}", variant_name(self.md, &v.name), self.namespace),
                    "traffic": v.traffic,
                    "shadow": v.shadow,
                })
            })
            .collect();
        let doc = serde_json::json!({"variants": variants});
        Ok(ConfigMap {
            metadata: self.meta(format!("{}-traffic", self.name), Some(ROUTER)),
            data: Some(BTreeMap::from([("traffic.yaml".to_owned(), yaml(&doc)?)])),
            ..ConfigMap::default()
        })
    }

    fn variant(&self, variant: &Variant) -> Result<Vec<Object>, Error> {
        let name = variant_name(self.md, &variant.name);
        let pod = self.pod(&variant.name, &variant.image, &[]);
        let mut objects = Vec::new();
        let replicas = match &self.md.spec.autoscaling {
            Some(_) => None,
            None => Some(self.md.spec.replicas.unwrap_or(1)),
        };
        let selector =
            LabelSelector { match_labels: Some(self.selector(&variant.name)), ..LabelSelector::default() };
        match WorkloadKind::of(self.md) {
            WorkloadKind::Deployment => objects.push(self.object(&Deployment {
                metadata: self.meta(name.clone(), Some(&variant.name)),
                spec: Some(DeploymentSpec { replicas, selector, template: pod, ..DeploymentSpec::default() }),
                ..Deployment::default()
            })?),
            WorkloadKind::StatefulSet => objects.push(self.object(&StatefulSet {
                metadata: self.meta(name.clone(), Some(&variant.name)),
                spec: Some(StatefulSetSpec {
                    replicas,
                    selector,
                    service_name: Some(name.clone()),
                    template: pod,
                    volume_claim_templates: Some(vec![self.audit_claim()]),
                    ..StatefulSetSpec::default()
                }),
                ..StatefulSet::default()
            })?),
        }
        objects.push(self.object(&self.service(name.clone(), &variant.name))?);
        objects.push(self.object(&self.disruption_budget(name.clone(), &variant.name))?);
        if let Some(hpa) = self.autoscaler(name.clone(), &variant.name) {
            objects.push(self.object(&hpa)?);
        }
        objects.push(self.object(&self.network_policy(name, &variant.name))?);
        Ok(objects)
    }

    fn router(&self) -> Result<Vec<Object>, Error> {
        let name = format!("{}-{ROUTER}", self.name);
        // The router is Palisade too: it authenticates, authorizes and audits each call,
        // then forwards it over mutual TLS to the variant the traffic split picks.
        let image = self.md.spec.variants.first().map(|v| v.image.as_str()).unwrap_or_default();
        let extra = ["--traffic".to_owned(), format!("{TRAFFIC_DIR}/traffic.yaml")];
        let mut pod = self.pod(ROUTER, image, &extra);
        if let Some(spec) = pod.spec.as_mut() {
            spec.volumes.get_or_insert_with(Vec::new).push(Volume {
                name: "traffic".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: format!("{}-traffic", self.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
            if let Some(container) = spec.containers.first_mut() {
                container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                    name: "traffic".into(),
                    mount_path: TRAFFIC_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            }
        }
        let replicas = match &self.md.spec.autoscaling {
            Some(scaling) => scaling.min_replicas.max(2),
            None => self.md.spec.replicas.unwrap_or(1).max(2),
        };
        let deployment = Deployment {
            metadata: self.meta(name.clone(), Some(ROUTER)),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(self.selector(ROUTER)),
                    ..LabelSelector::default()
                },
                template: pod,
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        Ok(vec![
            self.object(&deployment)?,
            self.object(&self.disruption_budget(name.clone(), ROUTER))?,
            self.object(&self.network_policy(name, ROUTER))?,
        ])
    }

    /// The Service callers use: the router's pods, or the only variant's.
    fn front_service(&self) -> Service {
        let target = if has_router(self.md) {
            ROUTER
        } else {
            self.md.spec.variants.first().map(|v| v.name.as_str()).unwrap_or_default()
        };
        self.service(self.name.to_owned(), target)
    }

    fn service(&self, name: String, variant: &str) -> Service {
        Service {
            metadata: self.meta(name, Some(variant)),
            spec: Some(ServiceSpec {
                selector: Some(self.selector(variant)),
                ports: Some(vec![ServicePort {
                    name: Some("https".into()),
                    port: SERVING_PORT,
                    target_port: Some(IntOrString::String("https".into())),
                    app_protocol: Some("https".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn disruption_budget(&self, name: String, variant: &str) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(name, Some(variant)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(self.selector(variant)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    fn autoscaler(&self, name: String, variant: &str) -> Option<HorizontalPodAutoscaler> {
        let scaling = self.md.spec.autoscaling.as_ref()?;
        let metric = if let Some(cpu) = scaling.target_cpu_utilization {
            MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(cpu),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }
        } else {
            MetricSpec {
                type_: "Pods".into(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier { name: "palisade_requests_per_second".into(), selector: None },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity(
                            scaling.target_requests_per_second.unwrap_or(1).to_string(),
                        )),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }
        };
        let kind = match WorkloadKind::of(self.md) {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        };
        Some(HorizontalPodAutoscaler {
            metadata: self.meta(name.clone(), Some(variant)),
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: kind.into(),
                    name,
                },
                min_replicas: Some(scaling.min_replicas),
                max_replicas: scaling.max_replicas,
                metrics: Some(vec![metric]),
                ..HorizontalPodAutoscalerSpec::default()
            }),
            ..HorizontalPodAutoscaler::default()
        })
    }

    /// Who may connect: anyone to the serving port of the front pods (Palisade
    /// authenticates every call), only the router to the variants behind it, and only the
    /// namespace's pods (Prometheus) to the admin port.
    fn network_policy(&self, name: String, variant: &str) -> NetworkPolicy {
        let serving_from = if has_router(self.md) && variant != ROUTER {
            Some(vec![NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector(ROUTER)),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }])
        } else {
            None
        };
        let port = |n: i32| NetworkPolicyPort {
            port: Some(IntOrString::Int(n)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        };
        NetworkPolicy {
            metadata: self.meta(name, Some(variant)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector(variant)),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![
                    NetworkPolicyIngressRule { from: serving_from, ports: Some(vec![port(SERVING_PORT)]) },
                    NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector::default()),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![port(ADMIN_PORT)]),
                    },
                ]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    fn audit_claim(&self) -> PersistentVolumeClaim {
        let audit = self.md.spec.audit.as_ref();
        let storage = audit.and_then(|a| a.storage.clone()).unwrap_or_else(|| "1Gi".into());
        PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("audit".into()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: audit.and_then(|a| a.storage_class_name.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(storage))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    fn pod(&self, variant: &str, image: &str, extra_args: &[String]) -> PodTemplateSpec {
        let spec = &self.md.spec;
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "0.0.0.0:8080",
            "--admin-listen",
            "0.0.0.0:9090",
            // Probes come from the kubelet on the node's address; the NetworkPolicy limits
            // who else reaches the admin port.
            "--dangerous-plaintext-admin",
            "--policy-dir",
            POLICY_DIR,
            "--log-format",
            "json",
            "--config",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(format!("{PLATFORM_DIR}/platform.yaml"));
        let mut volumes = vec![
            config_volume("policies", format!("{}-policies", self.name)),
            config_volume("platform", format!("{}-platform", self.name)),
            empty_dir("tmp"),
            empty_dir("state"),
        ];
        let mut mounts = vec![
            mount("policies", POLICY_DIR, true),
            mount("platform", PLATFORM_DIR, true),
            mount("tmp", "/tmp", false),
        ];
        // What the server writes and keeps private (its keys, its workload certificate, the
        // owners' policies, the audit trail) lives in subdirectories the init container
        // creates 0700 (a volume's own root is open to all, and the kubelet's `fsGroup`
        // change makes files group-readable): each is mounted by `subPath` where the
        // server expects it.
        let mut private = Vec::new();
        for dir in ["identity", "tls", "owner-policies"] {
            mounts.push(sub_mount("state", &format!("{HOME}/{dir}"), dir, false));
            private.push(format!("{INIT_STATE}/{dir}"));
        }
        // The audit trail and its signing key: a volume per replica (StatefulSet) or one
        // that lives as long as the pod.
        if WorkloadKind::of(self.md) == WorkloadKind::Deployment {
            volumes.push(empty_dir("audit"));
        }
        mounts.push(sub_mount("audit", &format!("{HOME}/audit"), "trail", false));
        mounts.push(sub_mount("audit", &format!("{HOME}/audit-keys"), "keys", false));
        private.extend([format!("{INIT_AUDIT}/trail"), format!("{INIT_AUDIT}/keys")]);
        let mut init_args: Vec<String> = vec!["k8s".into(), "init-pod".into()];
        for dir in private {
            init_args.extend(["--private-dir".to_owned(), dir]);
        }
        let mut init_mounts = vec![mount("state", INIT_STATE, false), mount("audit", INIT_AUDIT, false)];
        if let Some(secret) = &spec.tls.secret_name {
            volumes.push(secret_volume("tls", secret));
            mounts.push(mount("tls", "/etc/palisade/tls", true));
            args.extend(
                ["--tls-cert", "/etc/palisade/tls/tls.crt", "--tls-key", "/etc/palisade/tls/tls.key"]
                    .map(String::from),
            );
        } else if let Some(ca) = &spec.tls.built_in_ca {
            // The CA key is read only from a private file: the init container copies it out
            // of the Secret volume (links, group-readable) into the private `state/ca`.
            volumes.push(secret_volume("ca-secret", &ca.secret_name));
            init_mounts.push(mount("ca-secret", CA_SECRET_DIR, true));
            init_args.extend(["--ca-from", CA_SECRET_DIR, "--ca-home", INIT_STATE].map(String::from));
            mounts.push(sub_mount("state", &format!("{HOME}/ca"), "ca", true));
            args.push("--workload-identity".into());
            args.push(format!("{}/{}", self.namespace, self.name));
            for dns in [self.name.to_owned(), variant_name(self.md, variant)] {
                args.push("--workload-dns".into());
                args.push(format!("{dns}.{}.svc", self.namespace));
            }
        }
        args.extend(extra_args.iter().cloned());
        let probe = |path: &str, delay: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("admin".into()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(delay),
            period_seconds: Some(10),
            ..Probe::default()
        };
        let container = Container {
            name: "palisade".into(),
            image: Some(image.to_owned()),
            command: Some(vec![BINARY.to_owned()]),
            args: Some(args),
            env: Some(vec![EnvVar {
                name: "PALISADE_HOME".into(),
                value: Some(HOME.into()),
                ..EnvVar::default()
            }]),
            ports: Some(vec![
                ContainerPort {
                    name: Some("https".into()),
                    container_port: SERVING_PORT,
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("admin".into()),
                    container_port: ADMIN_PORT,
                    ..ContainerPort::default()
                },
            ]),
            readiness_probe: Some(probe("/readyz", 1)),
            liveness_probe: Some(probe("/livez", 10)),
            resources: spec.resources.as_ref().map(|r| ResourceRequirements {
                requests: r.requests.as_ref().map(quantities),
                limits: r.limits.as_ref().map(quantities),
                ..ResourceRequirements::default()
            }),
            security_context: Some(container_security()),
            volume_mounts: Some(mounts),
            ..Container::default()
        };
        let init = Container {
            name: "init".into(),
            image: Some(image.to_owned()),
            command: Some(vec![BINARY.to_owned()]),
            args: Some(init_args),
            security_context: Some(container_security()),
            volume_mounts: Some(init_mounts),
            ..Container::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.labels(Some(variant))),
                annotations: Some(BTreeMap::from([(
                    CONFIG_DIGEST_ANNOTATION.to_owned(),
                    self.config_digest.clone(),
                )])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(self.name.to_owned()),
                automount_service_account_token: Some(false),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(65532),
                    run_as_group: Some(65532),
                    fs_group: Some(65532),
                    // The init container takes the private directories back after a change;
                    // changing only when the root does not match keeps restarts quick.
                    fs_group_change_policy: Some("OnRootMismatch".into()),
                    seccomp_profile: Some(runtime_default()),
                    ..PodSecurityContext::default()
                }),
                init_containers: Some(vec![init]),
                containers: vec![container],
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
        }
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn quantities(list: &ResourceList) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    if let Some(cpu) = &list.cpu {
        out.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &list.memory {
        out.insert("memory".to_owned(), Quantity(memory.clone()));
    }
    out
}

fn config_volume(name: &str, config_map: String) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource { name: config_map, ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn sub_mount(name: &str, path: &str, sub_path: &str, read_only: bool) -> VolumeMount {
    VolumeMount { sub_path: Some(sub_path.into()), ..mount(name, path, read_only) }
}

fn yaml(value: &impl Serialize) -> Result<String, Error> {
    serde_yaml::to_string(value).map_err(|err| Error::Render(err.to_string()))
}
