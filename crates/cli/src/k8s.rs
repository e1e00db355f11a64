//! `palisade k8s crd|render` and `palisade operator`: Palisade on Kubernetes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use palisade_k8s::lease::LeaderLease;

use crate::failure::Failure;

/// `palisade k8s ...`
#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Print the ModelDeployment CustomResourceDefinition (YAML).
    Crd,
    /// Print the objects the operator would apply for a ModelDeployment, as multi-document
    /// YAML, without a cluster.
    Render(RenderArgs),
    /// Prepare a pod's volumes before `palisade serve` starts (the init container that
    /// `render` adds): private directories made 0700 with their files 0600 again after the
    /// kubelet's `fsGroup` change, and the built-in CA copied out of its Secret volume.
    InitPod(InitPodArgs),
}

/// `palisade k8s init-pod`
#[derive(Debug, Args)]
pub struct InitPodArgs {
    /// A directory to create, or take back, as private to this user (repeatable).
    #[arg(long, value_name = "DIR")]
    pub private_dir: Vec<PathBuf>,
    /// The mounted Secret that holds the built-in CA (the files of `palisade ca init`'s
    /// `ca/` directory).
    #[arg(long, value_name = "DIR", requires = "ca_home")]
    pub ca_from: Option<PathBuf>,
    /// Where to import it: the CA lands in `DIR/ca/`, mounted as the server's `HOME/ca`.
    #[arg(long, value_name = "DIR", requires = "ca_from")]
    pub ca_home: Option<PathBuf>,
}

/// `palisade k8s render`
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A ModelDeployment (YAML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `palisade operator`
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Reconcile only while holding a Lease, so that several replicas can run.
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's namespace [default: the pod's, from POD_NAMESPACE].
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    pub lease_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "palisade-operator")]
    pub lease_name: String,
    /// This replica's name in the Lease [default: the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Runs `palisade k8s ...`.
pub fn run(command: &K8sCommand) -> Result<(), Failure> {
    match command {
        K8sCommand::Crd => {
            print!("{}", palisade_k8s::crd_yaml().map_err(Failure::other)?);
            Ok(())
        }
        K8sCommand::Render(args) => {
            let md = palisade_k8s::parse_file(&args.file).map_err(|err| match err {
                palisade_k8s::Error::Parse(message) => Failure::data(message),
                other => Failure::data(format!("{}: {other}", args.file.display())),
            })?;
            let objects = palisade_k8s::render(&md, &[])
                .map_err(|err| Failure::data(format!("{}: {err}", args.file.display())))?;
            print!("{}", palisade_k8s::to_yaml(&objects).map_err(Failure::other)?);
            Ok(())
        }
        K8sCommand::InitPod(args) => init_pod(args),
    }
}

fn init_pod(args: &InitPodArgs) -> Result<(), Failure> {
    for dir in &args.private_dir {
        let changed = palisade_private_files::secure_tree(dir).map_err(|e| {
            Failure::usage(e)
                .hint("the pod's securityContext runs as uid 65532; its volumes must be writable by it")
        })?;
        println!("{}: private ({changed} modes changed)", dir.display());
    }
    if let (Some(from), Some(home)) = (&args.ca_from, &args.ca_home) {
        let ca = palisade_tls::Ca::import(home, from).map_err(|e| {
            Failure::usage(e).hint("the Secret must hold the files of `palisade ca init`'s ca/ directory")
        })?;
        println!(
            "{}: CA imported from {} (trust domain {})",
            ca.dir().display(),
            from.display(),
            ca.trust_domain()
        );
    }
    Ok(())
}

/// Runs `palisade operator` until SIGTERM or Ctrl-C; JSON logs on stderr, filtered by
/// `PALISADE_LOG`.
pub fn operator(args: &OperatorArgs) -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .json()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Failure::other)?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|err| Failure::usage(format!("no Kubernetes API server configured: {err}")))?;
        if !args.leader_elect {
            palisade_k8s::operator::run(client, shutdown()).await;
            return Ok(());
        }
        let identity = match &args.identity {
            Some(identity) => identity.clone(),
            None => std::env::var("HOSTNAME").unwrap_or_else(|_| "palisade-operator".into()),
        };
        let api = kube::Api::namespaced(client.clone(), &args.lease_namespace);
        let lease = LeaderLease::new(api, &args.lease_name, &identity, Duration::from_secs(15));
        lease.acquire().await.map_err(Failure::other)?;
        tokio::select! {
            () = palisade_k8s::operator::run(client, shutdown()) => Ok(()),
            err = lease.hold() => Err(Failure::other(format!("stopping: {err}"))),
        }
    })
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
