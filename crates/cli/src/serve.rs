//! `palisade serve`

use std::path::Path;
use std::time::Duration;

use palisade_bundle::Store;
use palisade_runtime::{Engine, EngineConfig};
use std::collections::BTreeSet;
use std::sync::Arc;

use palisade_identity::HttpFetch;
use palisade_server::{AppState, Registry, RegistryError, Security, SecurityConfig, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{LogFormat, ServeArgs};
use crate::failure::Failure;

/// Loads and verifies every bundle, starts the engine and the listeners, and serves until
/// SIGINT or SIGTERM, then drains.
pub fn run(home: &Path, args: ServeArgs) -> Result<(), Failure> {
    init_logging(args.log_format);
    let store = Store::open(home)?;
    let registry = Registry::load(&store).map_err(|err| match err {
        RegistryError::Bundle(err) => Failure::from(err),
        other => Failure::usage(other)
            .hint("rebuild the model with `palisade build`, or delete it with `palisade models delete`"),
    })?;
    let served: Vec<String> =
        registry.all().map(|m| format!("{}:{} ({})", m.id.name, m.id.version, m.digest.short())).collect();
    let mut engine_config = EngineConfig { queue_capacity: args.queue_capacity, ..EngineConfig::default() };
    if let Some(threads) = args.threads {
        engine_config.threads = threads;
    }
    if engine_config.threads == 0 || engine_config.queue_capacity == 0 {
        return Err(Failure::usage("--threads and --queue-capacity must be at least 1"));
    }
    let engine = Engine::start(engine_config)
        .map_err(|e| Failure::other(format!("cannot start inference threads: {e}")))?;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        inference_timeout: Duration::from_secs(args.inference_timeout.max(1)),
    };
    let platform = crate::identity::platform(&args.config)?;
    let model_namespaces: BTreeSet<String> = registry.namespaces().into_iter().map(String::from).collect();
    let security_config =
        SecurityConfig { platform, policy_dir: args.policy_dir.clone(), home: home.to_owned() };
    let fetch = Arc::new(HttpFetch::new().map_err(Failure::other)?);
    let security = Arc::new(Security::new(security_config, model_namespaces, fetch).map_err(|e| {
        Failure::usage(e).hint("fix the file named above; every field is described in docs/config.md")
    })?);
    let state = AppState::new(registry, engine, security.clone(), config).map_err(Failure::other)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("palisade-io")
        .build()
        .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        security.load_keys().await;
        security.spawn_tasks();
        let listener = bind(args.listen).await?;
        let addr = listener.local_addr().map_err(Failure::other)?;
        if served.is_empty() {
            println!("palisade: no models in {} yet; build one with `palisade build DIR`", home.display());
        } else {
            println!("palisade: serving {}", served.join(", "));
        }
        let authn = &security.platform().config.authentication;
        println!(
            "palisade: authentication: {}; {} trusted issuer(s); built-in issuer {}",
            if authn.require_token { "token required" } else { "token optional (requireToken: false)" },
            security.authenticator().key_holders().len(),
            security.issuer().map_or("disabled".to_owned(), |i| i.settings().issuer.clone()),
        );
        println!("palisade: listening on http://{addr} (API docs: http://{addr}/docs)");
        let admin = match args.admin_listen {
            Some(admin_addr) => {
                let admin = bind(admin_addr).await?;
                let local = admin.local_addr().map_err(Failure::other)?;
                println!("palisade: admin listening on http://{local} (/metrics, /readyz, /livez)");
                Some(admin)
            }
            None => None,
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        let signal_state = state.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: draining connections");
            signal_state.set_draining();
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let api =
            palisade_server::serve(listener, palisade_server::app(state.clone()), stopped(stop_rx.clone()));
        let admin_task = async {
            match admin {
                Some(admin) => {
                    palisade_server::serve(
                        admin,
                        palisade_server::admin_app(state.clone()),
                        stopped(stop_rx.clone()),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let (api, admin) = tokio::join!(api, admin_task);
        api.and(admin).map_err(|e| Failure::other(format!("server error: {e}")))?;
        println!("palisade: stopped");
        Ok(())
    })
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|e| {
        Failure::usage(format!("cannot listen on {addr}: {e}"))
            .hint("pick another address, or port 0 for a free one")
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PALISADE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
