//! `palisade sa`, `palisade keys` and `palisade token`: the built-in issuer, from the command
//! line. These work on the home directory; a running server picks the changes up.

use std::path::Path;

use palisade_core::{ModelName, Namespace};
use palisade_identity::{LocalIssuer, TokenRequest};
use palisade_server::Platform;
use palisade_server::security::open_issuer;
use serde_json::{Value, json};

use crate::cli::{
    ConfigArgs, KeysRevokeArgs, KeysRotateArgs, OutputFormat, SaCreateArgs, SaListArgs, SaRevokeArgs,
    TokenIssueArgs,
};
use crate::failure::Failure;
use crate::output;

/// Reads `--config` (or the defaults).
pub fn platform(args: &ConfigArgs) -> Result<Platform, Failure> {
    match &args.config {
        Some(file) => {
            Platform::load(file).map_err(|e| Failure::usage(e).hint("see docs/config.md for every field"))
        }
        None => Ok(Platform::defaults()),
    }
}

fn issuer(home: &Path, args: &ConfigArgs) -> Result<LocalIssuer, Failure> {
    let platform = platform(args)?;
    open_issuer(home, &platform).map_err(Failure::other)
}

fn names(namespace: &str, name: &str) -> Result<(Namespace, ModelName), Failure> {
    let namespace = Namespace::new(namespace).map_err(Failure::usage)?;
    let name = ModelName::new(name)
        .map_err(|e| Failure::usage(e.to_string().replace("model name", "service account name")))?;
    Ok((namespace, name))
}

/// `sa create NAME --namespace NS`
pub fn sa_create(home: &Path, args: &SaCreateArgs) -> Result<(), Failure> {
    let (namespace, name) = names(&args.namespace, &args.name)?;
    let issuer = issuer(home, &args.config)?;
    let (account, secret) = issuer.create_account(namespace, name).map_err(|e| match e {
        palisade_identity::IdentityError::Conflict(_) => Failure::usage(e),
        other => Failure::other(other),
    })?;
    match args.output {
        OutputFormat::Json => output::json(&json!({
            "namespace": account.namespace,
            "name": account.name,
            "subject": account.subject(),
            "client_id": account.client_id,
            "client_secret": secret.expose(),
            "token_endpoint": format!("{}/oauth/token", issuer.settings().issuer.trim_end_matches('/')),
        })),
        OutputFormat::Text => {
            println!("service account {}/{} created", account.namespace, account.name);
            println!("  subject:       {}", account.subject());
            println!("  client_id:     {}", account.client_id);
            println!("  client_secret: {}", secret.expose());
            println!("The secret is shown once and only its hash is stored: keep it in your secret store.");
            println!(
                "Get a token: curl -u CLIENT_ID:CLIENT_SECRET -d grant_type=client_credentials http://SERVER/oauth/token"
            );
            Ok(())
        }
    }
}

/// `sa list`
pub fn sa_list(home: &Path, args: &SaListArgs) -> Result<(), Failure> {
    let issuer = issuer(home, &args.config)?;
    let accounts = issuer.accounts();
    match args.output {
        OutputFormat::Json => output::json(
            &accounts
                .iter()
                .map(|a| {
                    json!({
                        "namespace": a.namespace, "name": a.name, "client_id": a.client_id,
                        "subject": a.subject(), "created": output::timestamp(a.created),
                        "revoked": a.revoked.map(output::timestamp),
                    })
                })
                .collect::<Vec<Value>>(),
        ),
        OutputFormat::Text => {
            if accounts.is_empty() {
                println!("no service accounts (create one with `palisade sa create NAME --namespace NS`)");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = accounts
                .iter()
                .map(|a| {
                    vec![
                        a.namespace.to_string(),
                        a.name.to_string(),
                        a.client_id.clone(),
                        output::timestamp(a.created),
                        a.revoked.map_or_else(
                            || "active".to_owned(),
                            |t| format!("revoked {}", output::timestamp(t)),
                        ),
                    ]
                })
                .collect();
            output::table(&["NAMESPACE", "NAME", "CLIENT ID", "CREATED", "STATUS"], &rows);
            Ok(())
        }
    }
}

/// `sa revoke NAME --namespace NS`
pub fn sa_revoke(home: &Path, args: &SaRevokeArgs) -> Result<(), Failure> {
    let (namespace, name) = names(&args.namespace, &args.name)?;
    let issuer = issuer(home, &args.config)?;
    let account = issuer.revoke_account(&namespace, &name).map_err(|e| match e {
        palisade_identity::IdentityError::NotFound(_) => Failure::usage(e).hint("see `palisade sa list`"),
        other => Failure::other(other),
    })?;
    println!(
        "service account {}/{} revoked: no new tokens; tokens already issued expire within {} s",
        account.namespace,
        account.name,
        issuer.settings().token_ttl.as_secs()
    );
    Ok(())
}

/// `keys rotate`
pub fn keys_rotate(home: &Path, args: &KeysRotateArgs) -> Result<(), Failure> {
    let issuer = issuer(home, &args.config)?;
    let kid = issuer.rotate().map_err(Failure::other)?;
    println!(
        "signing with new key {kid}; older keys stay published for {} s so their tokens keep verifying",
        issuer.settings().rotation_overlap.as_secs()
    );
    Ok(())
}

/// `keys revoke KID`
pub fn keys_revoke(home: &Path, args: &KeysRevokeArgs) -> Result<(), Failure> {
    let issuer = issuer(home, &args.config)?;
    let started = issuer.revoke_key(&args.kid).map_err(|err| match err {
        palisade_identity::IdentityError::NotFound(_) => Failure::usage(err),
        other => Failure::other(other),
    })?;
    println!("revoked key {}: no longer published; tokens it signed are refused", args.kid);
    if let Some(kid) = started {
        println!("it was the signing key: signing with new key {kid}");
    }
    Ok(())
}

/// `token issue`
pub fn token_issue(home: &Path, args: &TokenIssueArgs) -> Result<(), Failure> {
    let issuer = issuer(home, &args.config)?;
    let ttl = match &args.ttl {
        Some(text) => Some(palisade_identity::rules::parse_duration(text).map_err(Failure::usage)?),
        None => None,
    };
    let mut extra = serde_json::Map::new();
    if let Some(email) = &args.email {
        extra.insert("email".into(), json!(email));
        extra.insert("email_verified".into(), json!(true));
    }
    if !args.groups.is_empty() {
        extra.insert("groups".into(), json!(args.groups));
    }
    let (subject, client_id) = match &args.service_account {
        Some(sa) => {
            let (namespace, name) =
                sa.split_once('/').ok_or_else(|| Failure::usage(format!("`{sa}` is not NAMESPACE/NAME")))?;
            let (namespace, name) = names(namespace, name)?;
            let account = issuer
                .accounts()
                .into_iter()
                .find(|a| a.namespace == namespace && a.name == name && a.revoked.is_none())
                .ok_or_else(|| {
                    Failure::usage(format!("no active service account {namespace}/{name}"))
                        .hint("see `palisade sa list`")
                })?;
            (account.subject(), Some(account.client_id))
        }
        // Each email gets its own subject, so the audit trail and policies tell callers
        // apart (`iss/sub` is the request principal); `--subject` overrides it.
        None => (
            args.subject
                .clone()
                .or_else(|| args.email.clone())
                .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "developer".to_owned())),
            None,
        ),
    };
    let issued = issuer
        .issue(TokenRequest {
            subject,
            client_id,
            extra,
            audiences: args.audience.clone().map(|a| vec![a]),
            ttl,
        })
        .map_err(Failure::other)?;
    println!("{}", issued.token.expose());
    Ok(())
}
