//! The models a server serves: every version of every bundle in the store, verified and prepared.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_bundle::manifest::{Labels, Owners};
use palisade_bundle::{BundleDigest, BundleError, Store, VerifiedBundle};
use palisade_core::{ModelName, ModelRef, Namespace, Version};
use palisade_runtime::{Runnable, RuntimeError, UpstreamContext};

use crate::ApiError;

/// One model version ready to serve.
pub struct ServedModel {
    /// Namespace, name and version.
    pub id: ModelRef,
    /// The bundle's content address.
    pub digest: BundleDigest,
    /// The manifest's description.
    pub description: Option<String>,
    /// The manifest's labels.
    pub labels: Labels,
    /// The manifest's owners.
    pub owners: Owners,
    /// What serves the requests: the prepared model, or an inference graph over others.
    pub model: Servable,
    /// What authorization knows of the model: namespace, name, labels (the manifest's and
    /// `palisade.dev/model: NAME`), owners.
    pub target: Arc<palisade_policy::TargetModel>,
    /// What the audit log keeps of the model's requests (the manifest's `audit:`).
    pub audit: palisade_bundle::manifest::AuditSection,
    /// The manifest's `batching:`.
    pub batching: Option<palisade_bundle::manifest::BatchingSection>,
    /// The explainer of `POST .../explain`, when the bundle has one.
    pub explainer: Option<Arc<crate::explain::Explainer>>,
    /// The manifest's `limits.rate`: each caller's budget, tightening the platform's.
    pub rate: Option<palisade_bundle::rate::RateSection>,
    /// Outlier scores and drift of its inputs, when the bundle has `monitoring:`.
    pub monitor: Option<Arc<crate::monitoring::Monitor>>,
    /// How audit records, graph hops and metrics name the model, derived once from `id` and
    /// `digest` ([`ModelNames::of`]).
    pub names: ModelNames,
}

/// How a served model is named where every request names it, derived once when it loads.
#[derive(Debug, Clone)]
pub struct ModelNames {
    /// As audit records name it: namespace, name, version, digest.
    pub(crate) audit: palisade_audit::ModelInfo,
    /// `/v2/models/NAME/versions/VERSION/infer`: the path a graph's hop to the model is
    /// authorized and audited for.
    pub(crate) infer_path: String,
    /// `NAME:VERSION`, as graph metrics label it.
    pub(crate) label: String,
}

impl ModelNames {
    /// The names of the model `id` with bundle digest `digest`.
    pub fn of(id: &ModelRef, digest: &BundleDigest) -> ModelNames {
        ModelNames {
            audit: palisade_audit::ModelInfo {
                namespace: id.namespace.to_string(),
                name: id.name.to_string(),
                version: Some(id.version.to_string()),
                digest: Some(digest.to_string()),
            },
            infer_path: format!("/v2/models/{}/versions/{}/infer", id.name, id.version),
            label: format!("{}:{}", id.name, id.version),
        }
    }
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.id)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// What serves a bundle's requests.
#[derive(Debug, Clone)]
pub enum Servable {
    /// A model of its own, prepared (in-process or upstream).
    Model(Runnable),
    /// An inference graph or traffic split over other served models (`graph:`,
    /// `traffic:`), compiled against the models served with it.
    Graph(Arc<palisade_graph::Graph>),
}

impl Servable {
    /// The inputs and outputs clients see.
    pub fn signature(&self) -> &palisade_core::ModelSignature {
        match self {
            Servable::Model(model) => model.signature(),
            Servable::Graph(graph) => graph.signature(),
        }
    }

    /// The model's own request body limit, if it has one.
    pub fn max_body_bytes(&self) -> Option<usize> {
        match self {
            Servable::Model(model) => model.max_body_bytes(),
            Servable::Graph(_) => None,
        }
    }

    /// The engine that computes it (`graph` for a graph).
    pub fn engine(&self) -> &'static str {
        match self {
            Servable::Model(model) => model.engine(),
            Servable::Graph(_) => "graph",
        }
    }

    /// The platform V2 metadata reports (`graph` for a graph).
    pub fn platform(&self) -> &'static str {
        match self {
            Servable::Model(model) => model.platform(),
            Servable::Graph(_) => "graph",
        }
    }

    /// The upstream model, if it is one.
    pub fn upstream(&self) -> Option<&Arc<palisade_runtime::UpstreamModel>> {
        match self {
            Servable::Model(model) => model.upstream(),
            Servable::Graph(_) => None,
        }
    }

    /// The prepared model, unless this is a graph.
    pub fn runnable(&self) -> Option<&Runnable> {
        match self {
            Servable::Model(model) => Some(model),
            Servable::Graph(_) => None,
        }
    }

    /// The graph, if this is one.
    pub fn graph(&self) -> Option<&Arc<palisade_graph::Graph>> {
        match self {
            Servable::Model(_) => None,
            Servable::Graph(graph) => Some(graph),
        }
    }
}

impl ServedModel {
    /// The model as token rules see it: namespace and labels (for namespace-scoped issuers).
    pub fn identity_target(&self) -> palisade_identity::Target<'_> {
        palisade_identity::Target { namespace: self.target.namespace.as_str(), labels: &self.target.labels }
    }

    /// Prepares a verified bundle.
    pub fn from_bundle(bundle: &VerifiedBundle) -> Result<ServedModel, RuntimeError> {
        ServedModel::from_bundle_with(bundle, &UpstreamContext::default())
    }

    /// Prepares a verified bundle, with the TLS material upstream models may need.
    pub fn from_bundle_with(
        bundle: &VerifiedBundle,
        upstream: &UpstreamContext,
    ) -> Result<ServedModel, RuntimeError> {
        let runnable = palisade_runtime::prepare_with(&bundle.manifest, &bundle.model_path(), upstream)?;
        let explainer = match &bundle.explainer {
            None => None,
            Some(record) => Some(Arc::new(
                crate::explain::Explainer::load(record, &bundle.model_path(), runnable.signature()).map_err(
                    |message| RuntimeError::Load {
                        path: bundle.model_path(),
                        message: format!("its explainer cannot be loaded: {message}"),
                    },
                )?,
            )),
        };
        let monitor = match &bundle.monitoring {
            None => None,
            Some(record) => {
                Some(Arc::new(crate::monitoring::Monitor::load(record, &bundle.dir).map_err(|message| {
                    RuntimeError::Load {
                        path: bundle.model_path(),
                        message: format!("its monitoring cannot be loaded: {message}"),
                    }
                })?))
            }
        };
        let mut served = ServedModel::with(bundle, Servable::Model(runnable));
        served.explainer = explainer;
        served.monitor = monitor;
        Ok(served)
    }

    /// Compiles a bundle with `graph:` or `traffic:` against the models `catalog` serves.
    pub fn graph_from_bundle(
        bundle: &VerifiedBundle,
        catalog: &dyn palisade_graph::Catalog,
    ) -> Result<ServedModel, palisade_graph::GraphError> {
        let graph = palisade_graph::compile(&bundle.manifest, catalog, None)?;
        Ok(ServedModel::with(bundle, Servable::Graph(Arc::new(graph))))
    }

    pub(crate) fn with(bundle: &VerifiedBundle, model: Servable) -> ServedModel {
        let manifest = &bundle.manifest;
        let mut labels = manifest.labels.as_map().clone();
        labels.insert(palisade_bundle::manifest::MODEL_NAME_LABEL.to_owned(), manifest.name.to_string());
        let target = Arc::new(palisade_policy::TargetModel {
            namespace: manifest.namespace.clone(),
            name: manifest.name.clone(),
            labels,
            owners: manifest.owners.as_slice().to_vec(),
        });
        let id = bundle.manifest.model_ref();
        ServedModel {
            names: ModelNames::of(&id, &bundle.digest),
            target,
            audit: manifest.audit.clone(),
            batching: manifest.batching,
            id,
            digest: bundle.digest.clone(),
            description: bundle.manifest.description.clone(),
            labels: bundle.manifest.labels.clone(),
            owners: bundle.manifest.owners.clone(),
            model,
            explainer: None,
            rate: manifest.limits.and_then(|l| l.rate),
            monitor: None,
        }
    }
}

struct Versions {
    latest: Version,
    by_version: BTreeMap<Version, Arc<ServedModel>>,
}

/// Every served model, by name and version.
#[derive(Default)]
pub struct Registry {
    models: BTreeMap<ModelName, Versions>,
    forwards_credentials: bool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.models.keys()).finish()
    }
}

/// What a [`Registry::reload`] changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Model versions newly served (new, or rebuilt with another bundle).
    pub loaded: Vec<Arc<ServedModel>>,
    /// Model versions no longer served (deleted, or replaced by a rebuild).
    pub unloaded: Vec<Arc<ServedModel>>,
    /// Model versions that could not be loaded (`name:version`, why).
    pub failed: Vec<(String, String)>,
}

impl Changes {
    /// Whether nothing was loaded or unloaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.unloaded.is_empty()
    }
}

/// Why the store could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A bundle is missing, corrupt or tampered with.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A graph does not compile against the models served.
    #[error("{model}: {error}")]
    Graph {
        /// Which graph version.
        model: String,
        /// Why.
        error: String,
    },
    /// A model could not be prepared.
    #[error("{model}: {source}")]
    Model {
        /// Which model version.
        model: String,
        /// Why.
        source: RuntimeError,
    },
}

impl Registry {
    /// Verifies and prepares every version of every model in the store.
    pub fn load(store: &Store) -> Result<Registry, RegistryError> {
        Registry::load_with(store, &UpstreamContext::default())
    }

    /// [`Registry::load`], with the TLS material upstream models may need.
    pub fn load_with(store: &Store, upstream: &UpstreamContext) -> Result<Registry, RegistryError> {
        let mut registry = Registry::default();
        let mut graphs = Vec::new();
        for record in store.list()? {
            let bundle = store.load(&record)?;
            if bundle.manifest.is_composite() {
                graphs.push((bundle, record.latest));
                continue;
            }
            let served = ServedModel::from_bundle_with(&bundle, upstream).map_err(|source| {
                RegistryError::Model { model: format!("{}:{}", record.name, record.version), source }
            })?;
            registry.insert(served, record.latest);
        }
        match registry.link(graphs).into_iter().next() {
            Some((model, error)) => Err(RegistryError::Graph { model, error }),
            None => Ok(registry),
        }
    }

    /// Compiles graph bundles against the models served, graphs over graphs after the graphs
    /// they name. Returns those that do not compile (`name:version`, why).
    fn link(&mut self, mut pending: Vec<(VerifiedBundle, bool)>) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        loop {
            failures.clear();
            let before = pending.len();
            let mut waiting = Vec::new();
            for (bundle, latest) in pending {
                match ServedModel::graph_from_bundle(&bundle, &*self) {
                    Ok(served) => self.insert(served, latest),
                    Err(error) => {
                        let id = format!("{}:{}", bundle.manifest.name, bundle.manifest.version);
                        failures.push((id, format!("{}: {error}", palisade_bundle::manifest::MANIFEST_FILE)));
                        waiting.push((bundle, latest));
                    }
                }
            }
            pending = waiting;
            if pending.is_empty() || pending.len() == before {
                return failures;
            }
        }
    }

    /// Adds a model version; `latest` makes it the version served without an explicit one.
    pub fn insert(&mut self, model: ServedModel, latest: bool) {
        self.insert_shared(Arc::new(model), latest);
    }

    /// [`Registry::insert`] for a model already shared (served before a reload).
    fn insert_shared(&mut self, model: Arc<ServedModel>, latest: bool) {
        self.forwards_credentials |= model.model.upstream().is_some_and(|u| u.forwards_credentials());
        let version = model.id.version.clone();
        let entry = self
            .models
            .entry(model.id.name.clone())
            .or_insert_with(|| Versions { latest: version.clone(), by_version: BTreeMap::new() });
        if latest {
            entry.latest = version.clone();
        }
        entry.by_version.insert(version, model);
    }

    /// Whether a served model sends the caller's token on (a router's variants): only then
    /// does authentication keep it in the request context.
    pub fn forwards_credentials(&self) -> bool {
        self.forwards_credentials
    }

    /// The served version `version` of `name`, if any.
    fn lookup(&self, name: &ModelName, version: &Version) -> Option<&Arc<ServedModel>> {
        self.models.get(name).and_then(|v| v.by_version.get(version))
    }

    /// The models of `store` as it is now: the versions served already (same name, version
    /// and bundle digest) are kept as they are, the others verified and prepared. A bundle
    /// that fails is left out and reported, and the rest are served. Blocking work: call it
    /// off the async runtime.
    pub fn reload(
        &self,
        store: &Store,
        upstream: &UpstreamContext,
    ) -> Result<(Registry, Changes), RegistryError> {
        let mut next = Registry::default();
        let mut changes = Changes::default();
        let mut graphs = Vec::new();
        let mut kept_graphs = Vec::new();
        for record in store.list()? {
            let kept = self.lookup(&record.name, &record.version).filter(|m| m.digest == record.digest);
            let served = match kept {
                // A graph is compiled again below: the models it names may have changed.
                Some(served) if served.model.graph().is_some() => {
                    kept_graphs.push((served.clone(), record.clone()));
                    continue;
                }
                Some(served) => served.clone(),
                None => {
                    let loaded = store.load(&record).map_err(RegistryError::from).and_then(|bundle| {
                        if bundle.manifest.is_composite() {
                            return Ok(Err(bundle));
                        }
                        ServedModel::from_bundle_with(&bundle, upstream).map(Ok).map_err(|source| {
                            RegistryError::Model {
                                model: format!("{}:{}", record.name, record.version),
                                source,
                            }
                        })
                    });
                    match loaded {
                        Ok(Ok(served)) => {
                            let served = Arc::new(served);
                            changes.loaded.push(served.clone());
                            served
                        }
                        Ok(Err(bundle)) => {
                            graphs.push((bundle, record.latest));
                            continue;
                        }
                        Err(error) => {
                            changes
                                .failed
                                .push((format!("{}:{}", record.name, record.version), error.to_string()));
                            continue;
                        }
                    }
                }
            };
            next.insert_shared(served, record.latest);
        }
        // Graphs served already stay as they are (their bandits keep learning) when they
        // still compile to the same signature against the new models; else they are loaded
        // again, like new graphs.
        for (served, record) in kept_graphs {
            match store.load(&record) {
                Ok(bundle) => match ServedModel::graph_from_bundle(&bundle, &next) {
                    Ok(fresh) if fresh.model.signature() == served.model.signature() => {
                        next.insert_shared(served, record.latest)
                    }
                    _ => graphs.push((bundle, record.latest)),
                },
                Err(error) => {
                    changes.failed.push((format!("{}:{}", record.name, record.version), error.to_string()))
                }
            }
        }
        let before: Vec<ModelRef> = next.all().map(|m| m.id.clone()).collect();
        changes.failed.extend(next.link(graphs));
        changes.loaded.extend(next.all().filter(|m| !before.contains(&m.id)).cloned());
        changes.unloaded = self
            .all()
            .filter(|m| next.lookup(&m.id.name, &m.id.version).is_none_or(|n| !Arc::ptr_eq(n, m)))
            .cloned()
            .collect();
        Ok((next, changes))
    }

    /// The named model at a version, or at its latest version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
        let versions = ModelName::new(name)
            .ok()
            .and_then(|n| self.models.get(&n))
            .ok_or_else(|| ApiError::NotFound(format!("model `{}` not found", clip(name))))?;
        let version = match version {
            None => &versions.latest,
            Some(v) => {
                let parsed = Version::new(v).ok();
                match parsed.as_ref().and_then(|p| versions.by_version.get_key_value(p)) {
                    Some((key, _)) => key,
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "model `{name}` has no version `{}` (available: {})",
                            clip(v),
                            versions.by_version.keys().map(Version::as_str).collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
        };
        versions
            .by_version
            .get(version)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("model `{name}` has no version `{version}`")))
    }

    /// All versions of a model, in order.
    pub fn versions(&self, name: &ModelName) -> Vec<Version> {
        self.models.get(name).map(|v| v.by_version.keys().cloned().collect()).unwrap_or_default()
    }

    /// The latest version of every model, by name.
    pub fn latest(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values().filter_map(|v| v.by_version.get(&v.latest))
    }

    /// Every model version.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values().flat_map(|v| v.by_version.values())
    }

    /// The only model served, if exactly one name is served.
    pub fn single(&self) -> Option<&Arc<ServedModel>> {
        let mut latest = self.latest();
        match (latest.next(), latest.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The model in a namespace, at its latest version.
    pub fn in_namespace(&self, namespace: &str, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        let model = self.get(name, None)?;
        if model.id.namespace.as_str() != namespace {
            return Err(ApiError::NotFound(format!(
                "model `{}` not found in namespace `{}`",
                clip(name),
                clip(namespace)
            )));
        }
        Ok(model)
    }

    /// Whether no model is served.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The namespaces of served models.
    pub fn namespaces(&self) -> Vec<Namespace> {
        let mut all: Vec<Namespace> = self.latest().map(|m| m.id.namespace.clone()).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Names echoed in messages are cut short: they come from the caller.
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The served models, as a graph being loaded sees them.
impl palisade_graph::Catalog for Registry {
    fn lookup(
        &self,
        target: &palisade_bundle::graph::ModelTarget,
    ) -> Result<palisade_graph::CatalogEntry, String> {
        let served = self
            .get(target.name.as_str(), target.version.as_ref().map(Version::as_str))
            .map_err(|e| format!("model `{target}` is not served: {}", e.public_message()))?;
        let uses = served.model.graph().map(|g| g.uses().to_vec()).unwrap_or_default();
        Ok(palisade_graph::CatalogEntry { signature: served.model.signature().clone(), uses })
    }
}
