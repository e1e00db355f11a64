//! The operator: reconciles each `ModelDeployment` into the objects [`crate::render`]
//! renders, with server-side apply.
//!
//! One reconcile: (1) the finalizer is in place (kube-runtime's `finalizer`); (2) the
//! namespace's `AuthorizationPolicy` resources are read, so owners manage access with
//! `kubectl apply` as with Istio; (3) the objects are rendered, and their digest compared
//! with the one in the status: when the spec, the policies and the workloads are
//! unchanged nothing is applied; otherwise every object is applied with the field manager
//! `palisade-operator`, owned by the `ModelDeployment`; (4) the status (conditions,
//! per-variant replicas, observed generation) is patched when it changed. Failures are
//! retried with a per-object exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::render::{self, DEPLOYMENT_LABEL, Object, ROUTER, WorkloadKind, variant_name};
use crate::resource::{Condition, ModelDeployment, ModelDeploymentStatus, VariantStatus};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "palisade-operator";
/// The finalizer on every `ModelDeployment`.
pub const FINALIZER: &str = "palisade.dev/cleanup";
/// How often a healthy deployment is looked at again without an event.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a deployment whose replicas are not all ready is looked at again.
const PROGRESS: Duration = Duration::from_secs(15);

/// Istio's `AuthorizationPolicy` (`security.istio.io/v1`), watched untyped.
pub fn authorization_policy_resource() -> ApiResource {
    ApiResource {
        group: "security.istio.io".into(),
        version: "v1".into(),
        api_version: "security.istio.io/v1".into(),
        kind: "AuthorizationPolicy".into(),
        plural: "authorizationpolicies".into(),
    }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    failures: Mutex<HashMap<ObjectRef<ModelDeployment>, u32>>,
}

impl Context {
    /// A context over `client`.
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Context { client, failures: Mutex::new(HashMap::new()) })
    }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let deployments: Api<ModelDeployment> = Api::all(client.clone());
    let policies = Api::<DynamicObject>::all_with(client.clone(), &authorization_policy_resource());
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=palisade-operator");
    let controller = Controller::new(deployments, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), owned)
        .watches_with(policies, authorization_policy_resource(), watcher::Config::default(), move |policy| {
            // A policy may concern any model of its namespace: look at each of them again.
            let namespace = policy.namespace();
            store
                .state()
                .into_iter()
                .filter(|md| md.namespace() == namespace)
                .map(|md| ObjectRef::from_obj(md.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Context::new(client))
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(err) => tracing::warn!(error = %err, "reconcile failed"),
            }
        })
        .await;
}

/// Reconciles one `ModelDeployment`.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = md.namespace().unwrap_or_else(|| "default".into());
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let object = ObjectRef::from_obj(md.as_ref());
    let result = finalizer(&api, FINALIZER, md, |event| async {
        match event {
            Event::Apply(md) => apply(&md, &ctx, &namespace).await,
            Event::Cleanup(md) => cleanup(&md, &ctx, &namespace).await,
        }
    })
    .await
    .map_err(|err| Error::Finalizer(err.to_string()));
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&object);
    }
    result
}

/// After a failure: retry after 5 s, doubling with each failure in a row, up to 5 min.
pub fn error_policy(md: Arc<ModelDeployment>, err: &Error, ctx: Arc<Context>) -> Action {
    let failures = match ctx.failures.lock() {
        Ok(mut failures) => {
            let count = failures.entry(ObjectRef::from_obj(md.as_ref())).or_insert(0);
            *count = count.saturating_add(1);
            *count
        }
        Err(_) => 1,
    };
    let delay = backoff(failures);
    tracing::warn!(name = %md.name_any(), error = %err, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay before retry number `failures` (1 = the first failure).
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5u64 << exponent).min(Duration::from_secs(300))
}

async fn apply(md: &ModelDeployment, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), namespace);
    let name = md.name_any();
    let generation = md.metadata.generation;
    let previous = md.status.clone().unwrap_or_default();
    let policies = namespace_policies(ctx, namespace).await?;
    let objects = match render::render(md, &policies) {
        Ok(objects) => objects,
        Err(err @ Error::Invalid { .. }) => {
            // A spec the operator cannot deploy: say why in the status, and wait for a change.
            let status = status_of(&previous, generation, &name, None, Vec::new(), Err(err.to_string()));
            patch_status(&api, &name, &previous, status).await?;
            return Ok(Action::await_change());
        }
        Err(err) => return Err(err),
    };
    let digest = digest(&objects)?;
    let mut workloads = read_workloads(md, ctx, namespace).await?;
    let unchanged = previous.applied_digest.as_deref() == Some(digest.as_str())
        && previous.observed_generation == generation
        && workloads.iter().all(Option::is_some);
    if !unchanged {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for object in &objects {
            let applied = server_side_apply(ctx, namespace, object, &params).await?;
            if let Some(slot) = workload_slot(md, object) {
                workloads[slot] = Some(applied);
            }
        }
        tracing::info!(%name, namespace, objects = objects.len(), "applied");
    }
    let variants = variant_statuses(md, &workloads);
    let status = status_of(&previous, generation, &name, Some(digest), variants, Ok(()));
    let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    patch_status(&api, &name, &previous, status).await?;
    Ok(Action::requeue(if ready { RESYNC } else { PROGRESS }))
}

/// Deletes the router first (traffic stops), then the variants; the audit volumes of a
/// StatefulSet stay (PersistentVolumeClaims outlive it) for the auditors.
async fn cleanup(md: &ModelDeployment, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let mut names = Vec::new();
    if render::has_router(md) {
        names.push((WorkloadKind::Deployment, variant_name(md, ROUTER)));
    }
    let kind = WorkloadKind::of(md);
    names.extend(md.spec.variants.iter().map(|v| (kind, variant_name(md, &v.name))));
    for (kind, name) in names {
        let result = match kind {
            WorkloadKind::Deployment => {
                deployments.delete(&name, &DeleteParams::foreground()).await.map(|_| ())
            }
            WorkloadKind::StatefulSet => {
                statefulsets.delete(&name, &DeleteParams::foreground()).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    tracing::info!(name = %md.name_any(), namespace, "deleted");
    Ok(Action::await_change())
}

/// The namespace's `AuthorizationPolicy` documents, reduced to what Palisade reads (name,
/// namespace, labels, annotations, spec) and sorted, so the digest changes only with them.
async fn namespace_policies(ctx: &Context, namespace: &str) -> Result<Vec<serde_json::Value>, Error> {
    let api = Api::<DynamicObject>::namespaced_with(
        ctx.client.clone(),
        namespace,
        &authorization_policy_resource(),
    );
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        // Neither Istio's nor Palisade's policy CRD installed: no cluster policies.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut policies: Vec<serde_json::Value> = list
        .items
        .into_iter()
        .map(|policy| {
            let mut metadata = json!({"name": policy.name_any(), "namespace": namespace});
            if !policy.labels().is_empty() {
                metadata["labels"] = json!(policy.labels());
            }
            if let Some(dry_run) = policy.annotations().get("istio.io/dry-run") {
                metadata["annotations"] = json!({"istio.io/dry-run": dry_run});
            }
            json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": metadata,
                "spec": policy.data.get("spec").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    policies.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    Ok(policies)
}

fn digest(objects: &[Object]) -> Result<String, Error> {
    let yaml = render::to_yaml(objects)?;
    Ok(hex::encode(Sha256::digest(yaml.as_bytes())))
}

fn api_resource(object: &Object) -> ApiResource {
    let (group, version) = match object.api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), object.api_version.clone()),
    };
    let plural = match object.kind.as_str() {
        "NetworkPolicy" => "networkpolicies".to_owned(),
        kind => format!("{}s", kind.to_ascii_lowercase()),
    };
    ApiResource { group, version, api_version: object.api_version.clone(), kind: object.kind.clone(), plural }
}

async fn server_side_apply(
    ctx: &Context,
    namespace: &str,
    object: &Object,
    params: &PatchParams,
) -> Result<DynamicObject, Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &api_resource(object));
    Ok(api.patch(&object.name, params, &Patch::Apply(&object.value)).await?)
}

/// The index in `md.spec.variants` of the variant whose workload `object` is.
fn workload_slot(md: &ModelDeployment, object: &Object) -> Option<usize> {
    if object.kind != "Deployment" && object.kind != "StatefulSet" {
        return None;
    }
    md.spec.variants.iter().position(|v| variant_name(md, &v.name) == object.name)
}

async fn read_workloads(
    md: &ModelDeployment,
    ctx: &Context,
    namespace: &str,
) -> Result<Vec<Option<DynamicObject>>, Error> {
    let resource = match WorkloadKind::of(md) {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
    };
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &resource);
    let mut workloads = Vec::new();
    for variant in &md.spec.variants {
        workloads.push(api.get_opt(&variant_name(md, &variant.name)).await?);
    }
    Ok(workloads)
}

fn variant_statuses(md: &ModelDeployment, workloads: &[Option<DynamicObject>]) -> Vec<VariantStatus> {
    let desired = md.spec.autoscaling.as_ref().map(|a| a.min_replicas).or(md.spec.replicas).unwrap_or(1);
    md.spec
        .variants
        .iter()
        .zip(workloads)
        .map(|(variant, workload)| {
            let field = |name: &str| {
                workload
                    .as_ref()
                    .and_then(|w| w.data.pointer(&format!("/status/{name}")))
                    .and_then(|v| v.as_i64())
                    .and_then(|v| i32::try_from(v).ok())
            };
            let replicas = workload
                .as_ref()
                .and_then(|w| w.data.pointer("/spec/replicas"))
                .and_then(|v| v.as_i64())
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(desired);
            VariantStatus {
                name: variant.name.clone(),
                replicas,
                ready_replicas: field("readyReplicas").unwrap_or(0),
            }
        })
        .collect()
}

fn status_of(
    previous: &ModelDeploymentStatus,
    generation: Option<i64>,
    name: &str,
    digest: Option<String>,
    variants: Vec<VariantStatus>,
    outcome: Result<(), String>,
) -> ModelDeploymentStatus {
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        // The transition time moves only when the status does.
        let last_transition_time = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().to_string());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    };
    let conditions = match &outcome {
        Err(message) => vec![
            condition("Ready", false, "InvalidSpec", message.clone()),
            condition("Progressing", false, "InvalidSpec", message.clone()),
            condition("Degraded", true, "InvalidSpec", message.clone()),
        ],
        Ok(()) => {
            let waiting: Vec<String> = variants
                .iter()
                .filter(|v| v.ready_replicas < v.replicas.max(1))
                .map(|v| format!("{} {}/{}", v.name, v.ready_replicas, v.replicas))
                .collect();
            if waiting.is_empty() {
                vec![
                    condition("Ready", true, "ReplicasReady", "every variant has its replicas ready".into()),
                    condition("Progressing", false, "RolloutComplete", "nothing is rolling out".into()),
                    condition("Degraded", false, "ReplicasReady", "no variant is short of replicas".into()),
                ]
            } else {
                let message = format!("replicas ready: {}", waiting.join(", "));
                vec![
                    condition("Ready", false, "ReplicasNotReady", message.clone()),
                    condition("Progressing", true, "ReplicasNotReady", message.clone()),
                    condition("Degraded", false, "RollingOut", message),
                ]
            }
        }
    };
    ModelDeploymentStatus {
        observed_generation: generation,
        conditions,
        replicas: variants.iter().map(|v| v.ready_replicas).min().unwrap_or(0),
        selector: format!("{DEPLOYMENT_LABEL}={name}"),
        variants,
        applied_digest: digest.or_else(|| previous.applied_digest.clone()),
    }
}

async fn patch_status(
    api: &Api<ModelDeployment>,
    name: &str,
    previous: &ModelDeploymentStatus,
    status: ModelDeploymentStatus,
) -> Result<(), Error> {
    if *previous == status {
        return Ok(());
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}
