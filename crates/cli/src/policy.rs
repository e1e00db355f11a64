//! `palisade policy ...`: owner self-service through a running server's management API.

use std::path::Path;

use palisade_core::yaml;
use serde_json::{Value, json};

use crate::cli::{
    OutputFormat, PolicyApplyArgs, PolicyCheckArgs, PolicyDeleteArgs, PolicyExplainArgs, PolicyListArgs,
    ServerArgs,
};
use crate::endpoint;
use crate::failure::Failure;
use crate::output;

/// A client of a running server's management API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the server named by `--server`, else of the server last started with this
    /// home, else of `http://127.0.0.1:8080`.
    pub fn new(home: &Path, args: &ServerArgs) -> Result<Client, Failure> {
        let recorded = if args.server.is_none() { endpoint::read(home) } else { None };
        let base = match (&args.server, &recorded) {
            (Some(server), _) => server.clone(),
            (None, Some(recorded)) => recorded.url.clone(),
            (None, None) => "http://127.0.0.1:8080".to_owned(),
        };
        let trust = args.cacert.clone().or_else(|| recorded.and_then(|r| r.trust));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;
        let mut http = reqwest::Client::builder();
        if let Some(file) = trust {
            let pem = std::fs::read(&file).map_err(|e| {
                Failure::usage(format!("cannot read the certificate {}: {e}", file.display()))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Failure::usage(format!("{}: not a PEM certificate: {e}", file.display())))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(Failure::other)?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token: args.auth_token.clone(),
            http,
            runtime,
        })
    }

    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| {
                Failure::other(format!("cannot reach {url}: {e}"))
                    .hint("is the server running? set --server or PALISADE_SERVER")
            })?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(Failure::other)?;
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status == 401 {
                return Err(Failure::usage("the server refused your token (401)")
                    .hint("pass --auth-token or set PALISADE_TOKEN to a valid token"));
            }
            Ok((status, value))
        })
    }
}

fn error_of(value: &Value) -> String {
    value.get("error").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| value.to_string())
}

pub fn expect_ok(status: u16, value: Value) -> Result<Value, Failure> {
    match status {
        200..=299 => Ok(value),
        400 | 404 | 409 => Err(Failure::usage(error_of(&value))),
        403 => Err(Failure::usage(format!("refused: {}", error_of(&value)))
            .hint("owners change their own models' policies; platform administrators everything")),
        _ => Err(Failure::other(format!("server answered {status}: {}", error_of(&value)))),
    }
}

/// `policy apply -f FILE`: each document is applied in order.
pub fn apply(home: &Path, args: &PolicyApplyArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.file.display())))?;
    // Validate locally first, so errors name this file's lines.
    let documents = yaml::documents(&args.file, &text).map_err(|e| Failure::usage(e.to_string()))?;
    if documents.is_empty() {
        return Err(Failure::usage(format!("{} holds no policy", args.file.display())));
    }
    for document in &documents {
        palisade_policy::parse_policy(document, &args.file).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let client = Client::new(home, &args.server)?;
    for document in documents {
        let body = document.text.as_bytes().to_vec();
        change(&client, reqwest::Method::PUT, "/manage/v1/policies", Some(body), args.dry_run, args.yes)?;
    }
    Ok(())
}

/// Applies or deletes through the management API: first as a dry run, whose impact is
/// printed; then for real unless `dry_run`, confirmed when `yes`. A change that takes an
/// owner's own access away stops here without `yes`.
fn change(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    dry_run: bool,
    yes: bool,
) -> Result<(), Failure> {
    let (status, preview) = client.send(method.clone(), &format!("{path}?dryRun=true"), body.clone())?;
    let preview = expect_ok(status, preview)?;
    let policy = preview["policy"].as_str().unwrap_or("policy").to_owned();
    print_impact(&policy, &preview);
    if dry_run {
        println!("{policy}: dry run, nothing changed");
        return Ok(());
    }
    if preview["owners_lose_access"] == json!(true) && !yes {
        return Err(Failure::usage(format!(
            "{policy}: not changed: owners would lose access to their own model (above)"
        ))
        .hint(
            "add the owners to the policy's rules to keep their access, or pass --yes to change it anyway",
        ));
    }
    let confirmed = if yes { format!("{path}?confirm=true") } else { path.to_owned() };
    let (status, value) = client.send(method, &confirmed, body)?;
    let value = expect_ok(status, value)?;
    let verb = if value.get("deleted").is_some() {
        "deleted"
    } else if value["created"] == json!(true) {
        "created"
    } else {
        "updated"
    };
    println!("{policy} {verb}");
    Ok(())
}

/// Prints what a change selects and, per model version, who gains and loses access.
fn print_impact(policy: &str, preview: &Value) {
    if let Some(selects) = preview["selects"].as_array() {
        let names: Vec<&str> = selects.iter().filter_map(Value::as_str).collect();
        if names.is_empty() {
            println!("{policy} selects no served model version");
        } else {
            println!("{policy} selects {}", names.join(", "));
        }
    }
    let impact = preview["impact"].as_array().cloned().unwrap_or_default();
    if impact.is_empty() {
        println!("  nobody gains or loses access");
    }
    let names = |v: &Value| {
        v.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
    };
    for model in &impact {
        println!("  {}:", model["model"].as_str().unwrap_or(""));
        if model["gains"].as_array().is_some_and(|a| !a.is_empty()) {
            println!("    gains access: {}", names(&model["gains"]));
        }
        if model["loses"].as_array().is_some_and(|a| !a.is_empty()) {
            println!("    loses access: {}", names(&model["loses"]));
        }
        if model["owners_losing"].as_array().is_some_and(|a| !a.is_empty()) {
            println!(
                "    WARNING: owners lose access to their own model: {}",
                names(&model["owners_losing"])
            );
        }
    }
}

/// `policy list`
pub fn list(home: &Path, args: &PolicyListArgs) -> Result<(), Failure> {
    let client = Client::new(home, &args.server)?;
    let (status, value) = client.send(reqwest::Method::GET, "/manage/v1/policies", None)?;
    let value = expect_ok(status, value)?;
    match args.output {
        OutputFormat::Json => output::json(&value),
        OutputFormat::Text => {
            let empty = Vec::new();
            let policies = value["policies"].as_array().unwrap_or(&empty);
            if policies.is_empty() {
                println!("no policies you may manage");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = policies
                .iter()
                .map(|p| {
                    vec![
                        p["namespace"].as_str().unwrap_or("").to_owned(),
                        p["name"].as_str().unwrap_or("").to_owned(),
                        p["action"].as_str().unwrap_or("").to_owned(),
                        p["source"].as_str().unwrap_or("").to_owned(),
                        if p["dry_run"] == json!(true) { "dry-run".to_owned() } else { String::new() },
                    ]
                })
                .collect();
            output::table(&["NAMESPACE", "NAME", "ACTION", "SOURCE", ""], &rows);
            Ok(())
        }
    }
}

/// `policy delete NS/NAME`
pub fn delete(home: &Path, args: &PolicyDeleteArgs) -> Result<(), Failure> {
    let (namespace, name) = args
        .policy
        .split_once('/')
        .ok_or_else(|| Failure::usage(format!("`{}` is not NAMESPACE/NAME", args.policy)))?;
    let client = Client::new(home, &args.server)?;
    let path = format!("/manage/v1/policies/{namespace}/{name}");
    change(&client, reqwest::Method::DELETE, &path, None, args.dry_run, args.yes)
}

/// `policy explain MODEL`
pub fn explain(home: &Path, args: &PolicyExplainArgs) -> Result<(), Failure> {
    let client = Client::new(home, &args.server)?;
    let (status, value) =
        client.send(reqwest::Method::GET, &format!("/manage/v1/models/{}/explain", args.model), None)?;
    let value = expect_ok(status, value)?;
    match args.output {
        OutputFormat::Json => output::json(&value),
        OutputFormat::Text => {
            for line in value["text"].as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or(""));
            }
            Ok(())
        }
    }
}

/// `policy check`
pub fn check(home: &Path, args: &PolicyCheckArgs) -> Result<(), Failure> {
    let claims = match &args.claims {
        Some(text) => {
            Some(serde_json::from_str::<Value>(text).ok().filter(Value::is_object).ok_or_else(|| {
                Failure::usage("--claims must be a JSON object, e.g. '{\"email\": \"a@b.c\"}'")
            })?)
        }
        None => None,
    };
    let mut body = json!({"model": args.model});
    if let Some(token) = &args.token {
        body["token"] = json!(token);
    }
    if let Some(claims) = claims {
        body["claims"] = claims;
    }
    if let Some(path) = &args.path {
        body["path"] = json!(path);
    }
    if let Some(method) = &args.method {
        body["method"] = json!(method);
    }
    let client = Client::new(home, &args.server)?;
    let (status, value) =
        client.send(reqwest::Method::POST, "/manage/v1/check", Some(body.to_string().into_bytes()))?;
    let value = expect_ok(status, value)?;
    let allowed = value["allowed"] == json!(true);
    match args.output {
        OutputFormat::Json => output::json(&value)?,
        OutputFormat::Text => {
            println!("{} ({})", if allowed { "ALLOW" } else { "DENY" }, value["status"]);
            println!("  {}", value["reason"].as_str().unwrap_or(""));
            for dry in value["dry_run"].as_array().into_iter().flatten() {
                println!(
                    "  dry-run {}: would {}",
                    dry["policy"].as_str().unwrap_or(""),
                    if dry["would_allow"] == json!(true) { "allow" } else { "deny" }
                );
            }
        }
    }
    if allowed { Ok(()) } else { Err(Failure::denied()) }
}
