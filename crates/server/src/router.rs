//! Palisade as the router in front of a ModelDeployment's variants
//! (`palisade serve --traffic FILE`, docs/kubernetes.md "The traffic split").
//!
//! The router's home holds one bundle, the first variant's (its image). Each variant of the
//! traffic file becomes an upstream version of that model, `NAME:VARIANT`, reached at the
//! variant's Service over mutual TLS (the router's workload certificate, the built-in CA)
//! with the caller's token sent on, so that the variant authenticates, authorizes and
//! audits the same caller again. Over them, the latest `NAME` is a traffic bundle compiled
//! as any `traffic:` / `shadow:` manifest is (`palisade_graph`): the weighted draw, the
//! shadow on its own task, routing metadata, hop records and metrics are the graphs' own.
//! A variant can also be called by its version (`/v2/models/NAME/versions/VARIANT/infer`),
//! under the same policies.

use std::path::Path;
use std::sync::Arc;

use palisade_bundle::graph::{ModelTarget, Shadow, TrafficArm};
use palisade_bundle::manifest::{ModelSection, ModelSource, UpstreamSpec};
use palisade_bundle::{Store, VerifiedBundle};
use palisade_core::{ModelSignature, Version};
use palisade_runtime::{Runnable, UpstreamContext, UpstreamModel};
use serde::Deserialize;

use crate::registry::{Registry, Servable, ServedModel};

/// Largest traffic file read.
pub const MAX_TRAFFIC_BYTES: u64 = 64 * 1024;
/// Most variants a traffic file may list.
pub const MAX_VARIANTS: usize = 16;
/// The version under which the traffic split itself is served (the latest of the model).
pub const TRAFFIC_VERSION: &str = "traffic";

/// The traffic file `palisade k8s render` writes into the `NAME-traffic` ConfigMap.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficFile {
    /// The variants, in the order the ModelDeployment lists them.
    pub variants: Vec<VariantEntry>,
}

/// One variant: where it is served, and its share.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantEntry {
    /// The variant's name; the version it is served under by the router.
    pub name: String,
    /// Its Service's base URL (`https://NAME-VARIANT.NAMESPACE.svc:8080`).
    pub url: String,
    /// Percent of the requests (the non-shadow variants sum to 100).
    #[serde(default)]
    pub traffic: u32,
    /// Whether it gets a copy of every request instead (at most one; its traffic is 0).
    #[serde(default)]
    pub shadow: bool,
}

/// Why the router cannot start: the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RouterError(String);

impl TrafficFile {
    /// Reads and checks `path` (at most [`MAX_TRAFFIC_BYTES`]).
    pub fn read(path: &Path) -> Result<TrafficFile, RouterError> {
        let text = palisade_core::yaml::read_file(path, "the traffic file")
            .map_err(|e| RouterError(e.to_string()))?;
        TrafficFile::parse(path, &text)
    }

    /// Parses and checks a traffic file's text.
    pub fn parse(path: &Path, text: &str) -> Result<TrafficFile, RouterError> {
        if text.len() as u64 > MAX_TRAFFIC_BYTES {
            return Err(RouterError(format!(
                "{}: {} bytes; a traffic file has at most {MAX_TRAFFIC_BYTES}",
                path.display(),
                text.len()
            )));
        }
        let file: TrafficFile =
            palisade_core::yaml::from_str(path, text).map_err(|e| RouterError(e.to_string()))?;
        let fail = |field: &str, message: String| {
            RouterError(format!("{}: field `{field}`: {message}", path.display()))
        };
        if file.variants.is_empty() || file.variants.len() > MAX_VARIANTS {
            return Err(fail(
                "variants",
                format!("list 1 to {MAX_VARIANTS} variants, not {}", file.variants.len()),
            ));
        }
        let mut sum = 0u32;
        let mut shadows = 0;
        for (i, variant) in file.variants.iter().enumerate() {
            let at = |field: &str| format!("variants[{i}].{field}");
            Version::new(variant.name.as_str()).map_err(|e| fail(&at("name"), e.to_string()))?;
            if variant.name == TRAFFIC_VERSION {
                return Err(fail(
                    &at("name"),
                    format!("`{TRAFFIC_VERSION}` names the split itself; rename the variant"),
                ));
            }
            if file.variants[..i].iter().any(|v| v.name == variant.name) {
                return Err(fail(&at("name"), format!("`{}` is listed twice", variant.name)));
            }
            let url =
                palisade_bundle::manifest::UpstreamUrl::new(&variant.url).map_err(|e| fail(&at("url"), e))?;
            // The caller's token travels with every call: never in clear text off this host.
            let loopback = matches!(url.host(), "localhost" | "127.0.0.1" | "[::1]" | "::1");
            if url.as_url().scheme() != "https" && !loopback {
                return Err(fail(
                    &at("url"),
                    format!(
                        "{} is plaintext, and the router sends each caller's token to the variant: use https (the variants' workload certificates)",
                        variant.url
                    ),
                ));
            }
            if variant.shadow {
                shadows += 1;
                if variant.traffic != 0 {
                    return Err(fail(&at("traffic"), "a shadow gets copies, not a share: set 0".to_owned()));
                }
            }
            sum = sum.saturating_add(variant.traffic);
        }
        if shadows > 1 {
            return Err(fail("variants[].shadow", format!("at most one shadow, not {shadows}")));
        }
        if sum != 100 {
            return Err(fail("variants[].traffic", format!("the traffic must sum to 100, not {sum}")));
        }
        Ok(file)
    }
}

/// The router's models: each variant an upstream version of the home's one model, and the
/// traffic split over them as its latest version.
pub fn registry(
    store: &Store,
    traffic: &TrafficFile,
    upstream: &UpstreamContext,
) -> Result<Registry, RouterError> {
    let records = store.list().map_err(|e| RouterError(e.to_string()))?;
    // The model the image was built for: the home's latest that no other bundle serves
    // through (an image of a graph carries the models it names, too).
    let mut loaded = Vec::new();
    for record in records.iter().filter(|r| r.latest) {
        loaded.push(store.load(record).map_err(|e| RouterError(e.to_string()))?);
    }
    // What each model's latest serves through, from other models (a split over its own
    // versions does not make a model a component of itself).
    let used: Vec<(palisade_core::ModelName, ModelTarget)> = loaded
        .iter()
        .flat_map(|b| palisade_graph::uses_of(&b.manifest).into_iter().map(|u| (b.manifest.name.clone(), u)))
        .collect();
    let mut roots: Vec<VerifiedBundle> = loaded
        .into_iter()
        .filter(|b| !used.iter().any(|(by, u)| u.name == b.manifest.name && by != &b.manifest.name))
        .collect();
    if roots.len() != 1 {
        return Err(RouterError(format!(
            "the router serves the one model its home was built for (the first variant's image), and {} holds {} models that no other serves through",
            store.root().display(),
            roots.len()
        )));
    }
    let bundle = roots.remove(0);
    let signature = signature_of(&bundle)?;
    let mut registry = Registry::default();
    for variant in &traffic.variants {
        registry.insert(variant_model(&bundle, &signature, variant, upstream)?, false);
    }
    let mut manifest = served_through(&bundle.manifest);
    manifest.version = version(TRAFFIC_VERSION)?;
    let arm = |v: &VariantEntry| -> Result<ModelTarget, RouterError> {
        Ok(ModelTarget { name: manifest.name.clone(), version: Some(version(&v.name)?) })
    };
    let mut arms = Vec::new();
    for variant in traffic.variants.iter().filter(|v| !v.shadow && v.traffic > 0) {
        arms.push(TrafficArm { model: arm(variant)?, weight: variant.traffic });
    }
    manifest.traffic = Some(arms);
    manifest.shadow = match traffic.variants.iter().find(|v| v.shadow) {
        Some(shadow) => Some(Shadow { model: arm(shadow)?, percent: 100.0 }),
        None => None,
    };
    let split = VerifiedBundle { manifest, signature: None, engine: None, explainer: None, ..bundle };
    let served = ServedModel::graph_from_bundle(&split, &registry)
        .map_err(|e| RouterError(format!("the traffic split does not compile: {e}")))?;
    registry.insert(served, true);
    Ok(registry)
}

/// The model's manifest (name, namespace, owners, labels, audit and limits: what policies
/// and records see) without what it runs: the router runs none of it itself.
fn served_through(manifest: &palisade_bundle::Manifest) -> palisade_bundle::Manifest {
    palisade_bundle::Manifest {
        model: None,
        graph: None,
        pipeline: None,
        traffic: None,
        shadow: None,
        sticky: None,
        call_as: Default::default(),
        inputs: None,
        explainer: None,
        monitoring: None,
        ..manifest.clone()
    }
}

fn version(text: &str) -> Result<Version, RouterError> {
    Version::new(text).map_err(|e| RouterError(e.to_string()))
}

/// The model's inputs and outputs: recorded at build, else declared in its manifest.
fn signature_of(bundle: &VerifiedBundle) -> Result<ModelSignature, RouterError> {
    if let Some(signature) = &bundle.signature {
        return Ok(signature.clone());
    }
    match bundle.manifest.model.as_ref().map(|m| (m.inputs.clone(), m.outputs.clone())) {
        Some((Some(inputs), Some(outputs))) => Ok(ModelSignature { inputs, outputs }),
        _ => Err(RouterError(format!(
            "the bundle {}:{} records no signature; rebuild it with this version of palisade",
            bundle.manifest.name, bundle.manifest.version
        ))),
    }
}

fn variant_model(
    bundle: &VerifiedBundle,
    signature: &ModelSignature,
    variant: &VariantEntry,
    upstream: &UpstreamContext,
) -> Result<ServedModel, RouterError> {
    let name = bundle.manifest.name.as_str();
    let mut spec = serde_json::json!({"url": variant.url, "model": name});
    if variant.url.starts_with("https:") {
        // The variant's certificate from the built-in CA; the router's own presented.
        spec["tls"] = serde_json::json!({"mutual": true});
    }
    let spec: UpstreamSpec = serde_json::from_value(spec)
        .map_err(|e| RouterError(format!("variant `{}`: url {}: {e}", variant.name, variant.url)))?;
    let model = UpstreamModel::new(name, &spec, signature.clone(), &bundle.dir, upstream)
        .map_err(|e| RouterError(format!("variant `{}`: {e}", variant.name)))?
        .forwarding_credentials();
    let mut manifest = served_through(&bundle.manifest);
    manifest.version = version(&variant.name)?;
    manifest.model = Some(ModelSection {
        source: ModelSource::Upstream(Box::new(spec)),
        inputs: Some(signature.inputs.clone()),
        outputs: Some(signature.outputs.clone()),
    });
    let variant_bundle = VerifiedBundle {
        manifest,
        signature: Some(signature.clone()),
        engine: None,
        explainer: None,
        ..bundle.clone()
    };
    Ok(ServedModel::with(&variant_bundle, Servable::Model(Runnable::Upstream(Arc::new(model)))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<TrafficFile, String> {
        TrafficFile::parse(Path::new("traffic.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_rendered_traffic_file_parses() {
        let file = parse(
            "variants:\n- name: v1\n  url: https://fraud-v1.payments.svc:8080\n  traffic: 90\n  shadow: false\n\
             - name: v2\n  url: https://fraud-v2.payments.svc:8080\n  traffic: 10\n  shadow: false\n\
             - name: v3\n  url: https://fraud-v3.payments.svc:8080\n  traffic: 0\n  shadow: true\n",
        )
        .unwrap();
        assert_eq!(file.variants.len(), 3);
        assert!(file.variants[2].shadow);
    }

    #[test]
    fn bad_traffic_files_are_refused_naming_the_field() {
        let one = |name: &str, url: &str, traffic: u32, shadow: bool| {
            format!("- {{name: {name}, url: '{url}', traffic: {traffic}, shadow: {shadow}}}\n")
        };
        let url = "https://a.svc:8080";
        for (text, want) in [
            ("variants: []\n".to_owned(), "field `variants`: list 1 to 16"),
            (format!("variants:\n{}", one("v1", url, 90, false)), "sum to 100, not 90"),
            (format!("variants:\n{}{}", one("v1", url, 100, false), one("v1", url, 0, true)), "listed twice"),
            (
                format!(
                    "variants:\n{}{}{}",
                    one("v1", url, 100, false),
                    one("s1", url, 0, true),
                    one("s2", url, 0, true)
                ),
                "at most one shadow",
            ),
            (format!("variants:\n{}", one("v1", url, 100, true)), "a shadow gets copies"),
            (format!("variants:\n{}", one("traffic", url, 100, false)), "names the split itself"),
            (format!("variants:\n{}", one("v/1", url, 100, false)), "variants[0].name"),
            (format!("variants:\n{}", one("v1", "ftp://a", 100, false)), "variants[0].url"),
            (
                format!("variants:\n{}", one("v1", "http://fraud-v1.payments.svc:8080", 100, false)),
                "is plaintext",
            ),
            ("variants:\n- {name: v1, url: 'https://a', traffic: 100, weight: 3}\n".to_owned(), "weight"),
            ("variants: {}\n".to_owned(), "variants"),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{text} -> {err}");
            assert!(err.contains("traffic.yaml"), "{err}");
        }
    }

    #[test]
    fn a_large_or_deep_file_is_refused_before_it_is_parsed() {
        let big = format!("variants: []\n#{}\n", "x".repeat(MAX_TRAFFIC_BYTES as usize));
        assert!(parse(&big).unwrap_err().contains("at most"));
        let deep = format!("variants: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
    }
}
