//! `palisade models list|show|delete`

use std::path::Path;

use palisade_bundle::{BundleRecord, Store};
use palisade_core::ModelName;
use serde_json::json;

use crate::cli::{DeleteArgs, ListArgs, OutputFormat, ServedArgs, ShowArgs};
use crate::failure::Failure;
use crate::output;

/// Splits `NAME[:VERSION]`; the version defaults to `latest`.
pub(crate) fn parse_reference(text: &str) -> Result<(ModelName, String), Failure> {
    let (name, version) = text.split_once(':').unwrap_or((text, "latest"));
    let name = ModelName::new(name)
        .map_err(|e| Failure::usage(e).hint("write NAME, NAME:VERSION or NAME:latest"))?;
    if version.is_empty() {
        return Err(Failure::usage(format!("`{text}` has an empty version"))
            .hint("write NAME:VERSION or NAME:latest"));
    }
    Ok((name, version.to_owned()))
}

fn record_json(record: &BundleRecord) -> serde_json::Value {
    json!({
        "name": record.name,
        "version": record.version,
        "namespace": record.namespace,
        "digest": record.digest,
        "created": output::timestamp(record.created),
        "latest": record.latest,
    })
}

/// `models list`
pub fn list(home: &Path, args: &ListArgs) -> Result<(), Failure> {
    let store = Store::open(home)?;
    let records = store.list()?;
    match args.output {
        OutputFormat::Json => output::json(&records.iter().map(record_json).collect::<Vec<_>>()),
        OutputFormat::Text => {
            if records.is_empty() {
                println!("no models in {} (build one with `palisade build DIR`)", home.display());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.name.to_string(),
                        r.version.to_string(),
                        r.namespace.to_string(),
                        r.digest.short(),
                        output::timestamp(r.created),
                        if r.latest { "latest".to_owned() } else { String::new() },
                    ]
                })
                .collect();
            output::table(&["NAME", "VERSION", "NAMESPACE", "DIGEST", "CREATED", "TAGS"], &rows);
            Ok(())
        }
    }
}

/// `models show`
pub fn show(home: &Path, args: &ShowArgs) -> Result<(), Failure> {
    let (name, version) = parse_reference(&args.model)?;
    let store = Store::open(home)?;
    let record = store.resolve(&name, &version)?;
    let bundle = store.load(&record)?;
    let manifest = &bundle.manifest;
    let signature = bundle.signature.clone().unwrap_or_default();
    match args.output {
        OutputFormat::Json => {
            let mut value = record_json(&record);
            value["description"] = json!(manifest.description);
            value["labels"] = json!(manifest.labels);
            value["owners"] = json!(manifest.owners);
            value["format"] = json!(manifest.model.as_ref().map_or("graph", |m| match m.format() {
                palisade_bundle::manifest::ModelFormat::Onnx => "onnx",
                palisade_bundle::manifest::ModelFormat::Upstream => "upstream",
            }));
            value["engine"] = json!(engine(&bundle));
            if let Some(runtime) = manifest.model.as_ref().and_then(|m| m.runtime()) {
                value["runtime"] = json!(runtime.as_str());
            }
            if let Some(upstream) = manifest.model.as_ref().and_then(|m| m.upstream()) {
                value["upstream"] = json!(upstream);
            }
            value["inputs"] = json!(signature.inputs);
            value["outputs"] = json!(signature.outputs);
            value["files"] = json!(bundle.files);
            value["verified"] = json!(true);
            output::json(&value)
        }
        OutputFormat::Text => {
            println!("{}:{}", record.name, record.version);
            println!("  namespace:  {}", record.namespace);
            println!("  digest:     {} (verified)", record.digest);
            println!("  created:    {}", output::timestamp(record.created));
            if record.latest {
                println!("  tags:       latest");
            }
            if let Some(description) = &manifest.description {
                println!("  description: {description}");
            }
            let owners: Vec<String> = manifest.owners.as_slice().iter().map(ToString::to_string).collect();
            println!("  owners:     {}", owners.join(", "));
            match manifest.model.as_ref().and_then(|m| m.runtime()) {
                Some(runtime) => {
                    println!("  engine:     {} (model.runtime: {})", engine(&bundle), runtime.as_str())
                }
                None => println!("  engine:     {}", engine(&bundle)),
            }
            if let Some(upstream) = manifest.model.as_ref().and_then(|m| m.upstream()) {
                let name = upstream.model.as_deref().unwrap_or(record.name.as_str());
                let mtls = upstream.tls.as_ref().is_some_and(|tls| tls.mutual);
                println!(
                    "  upstream:   {} model {name}{}",
                    upstream.url,
                    if mtls { " (mutual TLS)" } else { "" }
                );
            }
            for (key, value) in manifest.labels.iter() {
                println!("  label:      {key}={value}");
            }
            for input in &signature.inputs {
                println!("  input:      {}", output::tensor(input));
            }
            for out in &signature.outputs {
                println!("  output:     {}", output::tensor(out));
            }
            for file in &bundle.files {
                println!("  file:       {} ({} bytes, sha256 {})", file.path, file.size, file.sha256);
            }
            Ok(())
        }
    }
}

/// The engine that serves the bundle's model: as built, `upstream` for an upstream model,
/// `graph` for a bundle that serves other models,
/// or what `model.runtime` asks for in a bundle built before engines were recorded.
fn engine(bundle: &palisade_bundle::VerifiedBundle) -> &'static str {
    if bundle.manifest.is_composite() {
        return "graph";
    }
    match (bundle.engine, bundle.manifest.model.as_ref().and_then(|m| m.runtime())) {
        (Some(engine), _) => engine.as_str(),
        (None, None) => "upstream",
        (None, Some(runtime)) => match runtime {
            palisade_bundle::manifest::EngineChoice::Auto => "auto (chosen when served)",
            other => other.as_str(),
        },
    }
}

/// `models delete`
pub fn delete(home: &Path, args: &DeleteArgs) -> Result<(), Failure> {
    if !args.model.contains(':') {
        return Err(Failure::usage(format!("`{}` names no version", args.model))
            .hint(format!("write {0}:VERSION or {0}:latest to say which version to delete", args.model)));
    }
    let (name, version) = parse_reference(&args.model)?;
    let store = Store::open(home)?;
    let record = store.delete(&name, &version)?;
    println!("deleted {}:{} {}", record.name, record.version, record.digest);
    Ok(())
}

/// `models served`: what the running server serves now, from its management API.
pub fn served(home: &Path, args: &ServedArgs) -> Result<(), Failure> {
    let client = crate::policy::Client::new(home, &args.server)?;
    let (status, value) = client.send(reqwest::Method::GET, "/manage/v1/models", None)?;
    let value = crate::policy::expect_ok(status, value)?;
    match args.output {
        OutputFormat::Json => output::json(&value),
        OutputFormat::Text => {
            let models = value["models"].as_array().cloned().unwrap_or_default();
            if models.is_empty() {
                println!("the server serves no model you own or may call");
                return Ok(());
            }
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
            let rows: Vec<Vec<String>> = models
                .iter()
                .map(|m| {
                    vec![
                        text(&m["namespace"]),
                        text(&m["name"]),
                        text(&m["version"]),
                        if m["latest"] == json!(true) { "latest".to_owned() } else { String::new() },
                        text(&m["engine"]),
                        text(&m["digest"]).chars().take(19).collect(),
                    ]
                })
                .collect();
            output::table(&["NAMESPACE", "NAME", "VERSION", "", "ENGINE", "DIGEST"], &rows);
            Ok(())
        }
    }
}
