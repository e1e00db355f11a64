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
    /// The prepared model.
    pub model: Runnable,
    /// What authorization knows of the model: namespace, name, labels, owners.
    pub target: Arc<palisade_policy::TargetModel>,
    /// What the audit log keeps of the model's requests (the manifest's `audit:`).
    pub audit: palisade_bundle::manifest::AuditSection,
    /// The manifest's `batching:`.
    pub batching: Option<palisade_bundle::manifest::BatchingSection>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("id", &self.id)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl ServedModel {
    /// The labels as a map (matched by policy selectors).
    pub fn label_map(&self) -> &std::collections::BTreeMap<String, String> {
        self.labels.as_map()
    }

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
        let model = palisade_runtime::prepare_with(&bundle.manifest, &bundle.model_path(), upstream)?;
        let manifest = &bundle.manifest;
        let target = Arc::new(palisade_policy::TargetModel {
            namespace: manifest.namespace.clone(),
            name: manifest.name.clone(),
            labels: manifest.labels.as_map().clone(),
            owners: manifest.owners.as_slice().to_vec(),
        });
        Ok(ServedModel {
            target,
            audit: manifest.audit.clone(),
            batching: manifest.batching,
            id: bundle.manifest.model_ref(),
            digest: bundle.digest.clone(),
            description: bundle.manifest.description.clone(),
            labels: bundle.manifest.labels.clone(),
            owners: bundle.manifest.owners.clone(),
            model,
        })
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
        for record in store.list()? {
            let bundle = store.load(&record)?;
            let served = ServedModel::from_bundle_with(&bundle, upstream).map_err(|source| {
                RegistryError::Model { model: format!("{}:{}", record.name, record.version), source }
            })?;
            registry.insert(served, record.latest);
        }
        Ok(registry)
    }

    /// Adds a model version; `latest` makes it the version served without an explicit one.
    pub fn insert(&mut self, model: ServedModel, latest: bool) {
        self.insert_shared(Arc::new(model), latest);
    }

    /// [`Registry::insert`] for a model already shared (served before a reload).
    fn insert_shared(&mut self, model: Arc<ServedModel>, latest: bool) {
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
        for record in store.list()? {
            let kept = self.lookup(&record.name, &record.version).filter(|m| m.digest == record.digest);
            let served = match kept {
                Some(served) => served.clone(),
                None => {
                    let loaded = store.load(&record).map_err(RegistryError::from).and_then(|bundle| {
                        ServedModel::from_bundle_with(&bundle, upstream).map_err(|source| {
                            RegistryError::Model {
                                model: format!("{}:{}", record.name, record.version),
                                source,
                            }
                        })
                    });
                    match loaded {
                        Ok(served) => {
                            let served = Arc::new(served);
                            changes.loaded.push(served.clone());
                            served
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
