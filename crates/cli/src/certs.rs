//! `palisade ca init` and `palisade cert issue`: the built-in CA for workload identities.

use std::path::Path;

use palisade_tls::{Ca, CaOptions, IntermediateOptions, TrustDomain, WorkloadRequest};

use crate::cli::{CaInitArgs, CertIssueArgs};
use crate::failure::Failure;

fn duration(text: &Option<String>) -> Result<Option<std::time::Duration>, Failure> {
    match text {
        Some(text) => palisade_identity::rules::parse_duration(text).map(Some).map_err(Failure::usage),
        None => Ok(None),
    }
}

/// `ca init`
pub fn ca_init(home: &Path, args: &CaInitArgs) -> Result<(), Failure> {
    let trust_domain = TrustDomain::new(&args.trust_domain).map_err(Failure::usage)?;
    let ca = match (&args.intermediate_cert, &args.intermediate_key, &args.roots) {
        (Some(cert), Some(key), Some(roots)) => Ca::init_intermediate(
            home,
            IntermediateOptions {
                cert_chain: cert.clone(),
                key: key.clone(),
                roots: roots.clone(),
                trust_domain,
            },
        ),
        _ => {
            let mut options = CaOptions { trust_domain, ..CaOptions::default() };
            if let Some(lifetime) = duration(&args.lifetime)? {
                options.lifetime = lifetime;
            }
            Ca::init(home, options)
        }
    }
    .map_err(|e| Failure::usage(e).hint("`palisade ca init` never overwrites an existing CA"))?;
    println!("CA ready in {} (trust domain {})", home.join("ca").display(), ca.trust_domain());
    println!("  trust anchors: {}", home.join("ca/ca.pem").display());
    println!(
        "Issue workload certificates with `palisade cert issue --namespace NS --service-account SA --out DIR`."
    );
    Ok(())
}

/// `cert issue`
pub fn cert_issue(home: &Path, args: &CertIssueArgs) -> Result<(), Failure> {
    let ca =
        Ca::open(home).map_err(|e| Failure::usage(e).hint("create the CA first with `palisade ca init`"))?;
    let mut request = WorkloadRequest::new(&args.namespace, &args.service_account);
    request.dns_names = args.dns_names.clone();
    if let Some(lifetime) = duration(&args.lifetime)? {
        request.lifetime = lifetime;
    }
    let issued = ca.issue_workload(&request).map_err(Failure::usage)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::other(format!("cannot create {}: {e}", args.out.display())))?;
    let files = issued.write_to(&args.out).map_err(Failure::other)?;
    println!(
        "issued {} valid until {}",
        issued.identity.spiffe_id,
        crate::output::timestamp(
            issued.not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        )
    );
    println!("  cert: {}", files.cert.display());
    println!("  key:  {}", files.key.display());
    println!("  ca:   {}", args.out.join("ca.pem").display());
    println!("  sha256 fingerprint: {}", files.sha256_fingerprint);
    Ok(())
}
