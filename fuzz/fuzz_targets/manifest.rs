//! `palisade.yaml` parsing (models and graphs): any bytes give a manifest or an error naming
//! the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz/palisade.yaml");
    match palisade_bundle::Manifest::parse(path, data) {
        Ok(manifest) => {
            let _ = manifest.model_ref().to_string();
            if let Some(model) = &manifest.model {
                let _ = model.files();
                if let Some(upstream) = model.upstream() {
                    let name = upstream.model.as_deref().unwrap_or(manifest.name.as_str());
                    let _ = upstream.url.join(&["v2", "models", name, "infer"]);
                }
            }
            // A graph: every node.
            if let Some(graph) = &manifest.graph {
                for (path, node) in graph.walk() {
                    let _ = (path, node.node_type());
                }
            }
            if let Some(monitoring) = &manifest.monitoring {
                let _ = (monitoring.references(), monitoring.forest_model());
            }
            // A pipeline: the stored model each step runs; a join window that loads is one
            // of 1 ms to an hour.
            if let Some(pipeline) = &manifest.pipeline {
                let max = palisade_bundle::graph::MAX_JOIN_WINDOW_MS;
                let windows = pipeline.steps.iter().map(|s| s.join_window_ms);
                for window in windows.chain([pipeline.output.as_ref().and_then(|o| o.join_window_ms)]).flatten() {
                    assert!((1..=max).contains(&window), "joinWindowMs {window} loaded");
                }
                for step in &pipeline.steps {
                    let _ = step.target();
                }
            }
        }
        Err(err) => assert!(err.to_string().starts_with("fuzz/palisade.yaml")),
    }
});
