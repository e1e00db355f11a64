//! `palisade serve`

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_bundle::Store;
use palisade_runtime::{Engine, EngineConfig, UpstreamContext};
use std::collections::BTreeSet;
use std::sync::Arc;

use palisade_identity::HttpFetch;
use palisade_server::{AppState, Registry, RegistryError, Security, SecurityConfig, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{LogFormat, ServeArgs};

use crate::failure::Failure;
use crate::limits;

/// Prints a line about the server: on stdout, or on stderr when stdout carries audit lines.
macro_rules! say {
    ($to_stderr:expr, $($arg:tt)*) => {
        if $to_stderr { eprintln!($($arg)*) } else { println!($($arg)*) }
    };
}

/// Loads and verifies every bundle, starts the engine and the listeners, and serves until
/// SIGINT or SIGTERM, then drains.
pub fn run(home: &Path, args: ServeArgs) -> Result<(), Failure> {
    let (_tracing, tracing_notice) = init_logging(args.log_format, args.otlp_endpoint.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("palisade-io")
        .build()
        .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;
    let tls = {
        // The workload certificate's renewal task needs the runtime.
        let _runtime = runtime.enter();
        tls_settings(home, &args)?
    };
    if let Some(admin) = args.admin_listen
        && !admin.ip().is_loopback()
        && !args.dangerous_plaintext_admin
    {
        return Err(Failure::usage(format!(
            "--admin-listen {admin} is not a loopback address: /metrics names models and policies, and the admin port has no TLS"
        ))
        .hint("listen on 127.0.0.1 or ::1 (and scrape through a local agent), or add --dangerous-plaintext-admin on a trusted network"));
    }
    let platform = crate::identity::platform(&args.config)?;
    // With `audit.ship.stdout`, stdout carries audit lines only: everything else goes to stderr.
    let stdout_is_audit = platform.config.audit.ship.stdout;
    if let Some(notice) = tracing_notice {
        say!(stdout_is_audit, "{notice}");
    }
    let store = Store::open(home)?;
    for warning in store.warnings() {
        crate::output::warn(&warning);
    }
    let upstream = upstream_context(home, &args, tls.as_ref(), &platform)?;
    let traffic = match &args.traffic {
        Some(path) => Some(palisade_server::router::TrafficFile::read(path).map_err(Failure::data)?),
        None => None,
    };
    let registry = match &traffic {
        Some(traffic) => palisade_server::router::registry(&store, traffic, &upstream).map_err(|e| {
            Failure::usage(e).hint("the router runs from the first variant's image, with the traffic file `palisade k8s render` writes")
        })?,
        None => Registry::load_with(&store, &upstream).map_err(|err| match err {
            RegistryError::Bundle(err) => Failure::from(err),
            other => Failure::usage(other)
                .hint("rebuild the model with `palisade build`, or delete it with `palisade models delete`"),
        })?,
    };
    let served: Vec<String> =
        registry.all().map(|m| format!("{}:{} ({})", m.id.name, m.id.version, m.digest.short())).collect();
    let mut engine_config = EngineConfig { queue_capacity: args.queue_capacity, ..EngineConfig::default() };
    if let Some(threads) = args.threads {
        engine_config.threads = threads;
    }
    if engine_config.threads == 0 || engine_config.queue_capacity == 0 {
        return Err(Failure::usage("--threads and --queue-capacity must be at least 1"));
    }
    let max_inflight_bytes = args.max_inflight_bytes.unwrap_or_else(limits::default_inflight_bytes);
    if max_inflight_bytes < args.max_body_bytes {
        return Err(Failure::usage(format!(
            "--max-inflight-bytes {max_inflight_bytes} is smaller than --max-body-bytes {}: no request of the largest size could ever be read",
            args.max_body_bytes
        )));
    }
    if args.header_read_timeout == 0 || args.idle_timeout == 0 {
        return Err(Failure::usage("--header-read-timeout and --idle-timeout must be at least 1 second"));
    }
    let descriptors = limits::raise_descriptor_limit();
    let front = palisade_server::FrontConfig {
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: args.max_connections.unwrap_or_else(|| limits::connection_budget(descriptors.soft)),
        max_connections_per_ip: args.max_connections_per_ip,
    };
    let engine = Engine::start(engine_config)
        .map_err(|e| Failure::other(format!("cannot start inference threads: {e}")))?;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        inference_timeout: Duration::from_secs(args.inference_timeout.max(1)),
        max_inflight_bytes,
        dangerous_disable_security: args.dangerous_disable_security,
    };
    if args.dangerous_disable_security && !args.listen.ip().is_loopback() {
        return Err(Failure::usage(format!(
            "--dangerous-disable-security is refused on {}: it serves every model to anyone",
            args.listen
        ))
        .hint("listen on 127.0.0.1 or ::1, or drop --dangerous-disable-security"));
    }
    let model_namespaces: BTreeSet<String> = registry.namespaces().into_iter().map(String::from).collect();
    let security_config =
        SecurityConfig { platform, policy_dir: args.policy_dir.clone(), home: home.to_owned() };
    let fetch = Arc::new(HttpFetch::new().map_err(Failure::other)?);
    let security = Arc::new(Security::new(security_config, model_namespaces, fetch).map_err(|e| {
        Failure::usage(e).hint("fix the file named above; every field is described in docs/config.md")
    })?);
    let audit =
        palisade_server::AuditHandle::open(&home.join("audit"), &security.platform().config.audit, None)
            .map_err(|e| {
                Failure::other(format!("cannot open the audit log: {e}"))
                    .hint("the message names the file and the fix; see docs/audit.md")
            })?;
    let audit_log = audit.log().clone();
    let state = AppState::new(registry, engine, security.clone(), audit, config).map_err(Failure::other)?;

    if let Some(tls) = &tls {
        state
            .watch_serving_cert(palisade_server::ServingCert {
                cert: tls.source.cert.clone(),
                workload: tls.workload.as_ref().map(|w| w.status()),
            })
            .map_err(Failure::other)?;
    }
    runtime.block_on(async move {
        security.load_keys().await;
        security.spawn_tasks();
        // Versions built, tagged or deleted while serving appear and go without a restart
        // (a router's models come from its traffic file, not from the store).
        if traffic.is_none() {
            state.watch_store(store.clone(), upstream.clone(), Duration::from_secs(1));
        }
        state.watch_console_health();
        let listener = bind(args.listen).await?;
        let addr = listener.local_addr().map_err(Failure::other)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if served.is_empty() {
            say!(
                stdout_is_audit,
                "palisade: no models in {} yet; build one with `palisade build DIR`",
                home.display()
            );
        } else {
            say!(stdout_is_audit, "palisade: serving {}", served.join(", "));
        }
        let authn = &security.platform().config.authentication;
        if args.dangerous_disable_security {
            say!(
                stdout_is_audit,
                "palisade: WARNING: security is disabled (--dangerous-disable-security): \
                 no authentication, no authorization, no audit"
            );
            tracing::warn!("security disabled: no authentication, authorization or audit");
        }
        say!(
            stdout_is_audit,
            "palisade: authentication: {}; {} trusted issuer(s); built-in issuer {}",
            if authn.require_token { "token required" } else { "token optional (requireToken: false)" },
            security.authenticator().key_holders().len(),
            security.issuer().map_or("disabled".to_owned(), |i| i.settings().issuer.clone()),
        );
        let admin = match args.admin_listen {
            Some(admin_addr) => {
                let admin = bind(admin_addr).await?;
                let local = admin.local_addr().map_err(Failure::other)?;
                say!(stdout_is_audit, "palisade: admin listening on http://{local} (/metrics, /readyz, /livez)");
                Some(admin)
            }
            None => None,
        };

        if let Some(tls) = &tls {
            say!(stdout_is_audit, "palisade: TLS certificate {} (sha256 {})", tls.cert_label, tls.fingerprint);
            if let Some(workload) = &tls.workload {
                let status = workload.status();
                say!(
                    stdout_is_audit,
                    "palisade: workload identity {} (certificate valid until {}, renewed every {})",
                    workload.identity(),
                    crate::output::timestamp(
                        status.not_after().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
                    ),
                    humantime::format_duration(status.lifetime() / 2),
                );
            }
        }
        say!(
            stdout_is_audit,
            "palisade: limits: {} connections ({} per address), descriptors {} (hard {}), {} MiB of request bodies in flight, header read {} s, idle {} s",
            front.max_connections,
            if front.max_connections_per_ip == 0 { "no limit".to_owned() } else { front.max_connections_per_ip.to_string() },
            descriptors.soft,
            descriptors.hard,
            max_inflight_bytes / (1024 * 1024),
            front.header_read_timeout.as_secs(),
            front.idle_timeout.as_secs(),
        );
        if let Some(rate) = &security.platform().config.limits.rate
            && !args.dangerous_disable_security
        {
            let explain = rate.explain_budget();
            say!(
                stdout_is_audit,
                "palisade: rate limit per caller and model (this replica): {}/s, burst {}; explain {}/s, burst {}",
                rate.requests.requests_per_second,
                rate.requests.burst.get(),
                explain.requests_per_second,
                explain.burst.get(),
            );
        }
        if let Some(trust) = tls.as_ref().and_then(|tls| tls.trust.as_ref()) {
            say!(stdout_is_audit, "palisade: clients trust {} (curl --cacert {0})", trust.display());
        }
        say!(stdout_is_audit, "palisade: listening on {scheme}://{addr} (API docs: {scheme}://{addr}/docs)");
        // The CLI's clients (`palisade policy`, `palisade models served`) find the server here.
        crate::endpoint::write(
            home,
            &crate::endpoint::Endpoint {
                url: crate::endpoint::local_url(scheme, addr),
                trust: tls.as_ref().and_then(|tls| tls.trust.clone()),
                pid: std::process::id(),
            },
        )?;
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
        let router = palisade_server::app(state.clone());
        let front = state.front(front);
        let api = async {
            match tls {
                None => front.serve(listener, None, router, stopped(stop_rx.clone())).await,
                Some(tls) => {
                    let port = addr.port();
                    let config = tls.source.config_for(&state, port).map_err(std::io::Error::other)?;
                    let handle = palisade_tls::TlsConfigHandle::new(config);
                    tls.source.clone().watch(state.clone(), port, handle.clone());
                    let served = front.serve(listener, Some(handle), router, stopped(stop_rx.clone())).await;
                    // The workload certificate keeps renewing until the server stops.
                    drop(tls);
                    served
                }
            }
        };
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
        if let Err(err) = audit_log.close().await {
            tracing::error!(error = %err, "cannot close the audit log cleanly");
        }
        api.and(admin).map_err(|e| Failure::other(format!("server error: {e}")))?;
        crate::endpoint::remove(home);
        say!(stdout_is_audit, "palisade: stopped");
        Ok(())
    })
}

/// What upstream models need from this server: its client certificate for mutual TLS
/// (`--workload-cert`/`--workload-key`, else the `--workload-identity` certificate it serves
/// with) and the built-in CA's trust anchors for upstreams whose manifest names no CA.
fn upstream_context(
    home: &Path,
    args: &ServeArgs,
    tls: Option<&Tls>,
    platform: &palisade_server::Platform,
) -> Result<UpstreamContext, Failure> {
    // The built-in CA is optional here: a broken one is reported, and only the models that
    // need it (https without a CA of their own) then fail to load, by name.
    let default_roots = if home.join(palisade_tls::ca::CA_DIR).exists() {
        palisade_tls::Ca::open(home)
            .inspect_err(|e| tracing::warn!(error = %e, "the home's built-in CA is unusable; upstream models cannot use it"))
            .ok()
            .map(|ca| ca.trust_anchors().clone())
    } else {
        None
    };
    let workload_cert = match (&args.workload_cert, &args.workload_key) {
        (Some(cert), Some(key)) => Some(
            palisade_tls::ReloadingCert::load(&palisade_tls::CertSource::files(cert, key)).map_err(|e| {
                Failure::usage(e)
                    .hint("--workload-cert and --workload-key must be a PEM certificate chain and its key")
            })?,
        ),
        _ => tls.and_then(|tls| tls.workload.as_ref()).map(|workload| workload.resolver()),
    };
    let own_ports = [Some(args.listen.port()), args.admin_listen.map(|a| a.port())]
        .into_iter()
        .flatten()
        .filter(|p| *p != 0);
    let egress = palisade_runtime::EgressPolicy {
        allowed_hosts: platform.config.upstream.allowed_hosts.clone(),
        own_ports: own_ports.collect(),
    };
    Ok(UpstreamContext { workload_cert, default_roots, check_only: false, egress: Arc::new(egress) })
}

/// TLS for the data listener: certificate source, client roots for mutual TLS, and the
/// workload certificate being renewed (kept alive while serving).
struct Tls {
    source: TlsSource,
    workload: Option<palisade_tls::WorkloadCert>,
    cert_label: String,
    fingerprint: String,
    /// The PEM file clients trust, when Palisade made the certificate (self-signed, or from
    /// the built-in CA).
    trust: Option<PathBuf>,
}

/// What the listener's rustls config is built from.
#[derive(Clone)]
struct TlsSource {
    cert: Arc<palisade_tls::ReloadingCert>,
    roots: Option<palisade_tls::ClientRoots>,
}

impl TlsSource {
    /// The server config for the models' current PeerAuthentication modes on `port`.
    fn config_for(
        &self,
        state: &AppState,
        port: u16,
    ) -> Result<Arc<rustls::ServerConfig>, palisade_tls::TlsError> {
        let peer_auth = state.security().peer_auth();
        let modes: Vec<_> = state
            .registry()
            .latest()
            .map(|m| peer_auth.mtls_mode_for(m.target.namespace.as_str(), &m.target.labels, port))
            .collect();
        let client_auth =
            palisade_tls::listener_client_auth(modes, peer_auth.settings().default_mode, self.roots.clone())?;
        palisade_tls::server_config_with(
            self.cert.clone(),
            &client_auth,
            &[b"h2".to_vec(), b"http/1.1".to_vec()],
        )
    }

    /// Rebuilds the listener's config when PeerAuthentication changes (new connections only).
    fn watch(self, state: AppState, port: u16, handle: palisade_tls::TlsConfigHandle) {
        tokio::spawn(async move {
            let mut current = state.security().peer_auth();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticker.tick().await;
                let latest = state.security().peer_auth();
                if Arc::ptr_eq(&latest, &current) {
                    continue;
                }
                current = latest;
                match self.config_for(&state, port) {
                    Ok(config) => handle.replace(config),
                    Err(err) => {
                        tracing::error!(error = %err, "mutual TLS settings refused; keeping the previous ones")
                    }
                }
            }
        });
    }
}

/// TLS is on with `--workload-identity` (a certificate from the built-in CA, renewed at
/// half-life), with `--tls-cert/--tls-key`, with `--tls` (self-signed), and by default on
/// non-loopback addresses (self-signed) unless `--dangerous-plaintext`. Must run inside the
/// tokio runtime (the workload certificate's renewal is a task).
fn tls_settings(home: &Path, args: &ServeArgs) -> Result<Option<Tls>, Failure> {
    if let Some(identity) = &args.workload_identity {
        return workload_tls(home, args, identity).map(Some);
    }
    let non_loopback = !args.listen.ip().is_loopback();
    let mut trust = None;
    let (source, label, fingerprint) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let source = palisade_tls::CertSource::Files { cert: cert.clone(), key: key.clone() };
            (source, cert.display().to_string(), None)
        }
        _ if args.tls || (non_loopback && !args.dangerous_plaintext) => {
            let files = palisade_tls::self_signed_localhost(&home.join("tls"))
                .map_err(|e| Failure::other(format!("cannot create the self-signed certificate: {e}")))?;
            let label = format!("{} (self-signed for localhost)", files.cert.display());
            trust = Some(files.cert.clone());
            (
                palisade_tls::CertSource::Files { cert: files.cert, key: files.key },
                label,
                Some(files.sha256_fingerprint),
            )
        }
        _ => {
            if non_loopback {
                tracing::warn!(listen = %args.listen, "serving plaintext HTTP on a non-loopback address (--dangerous-plaintext)");
            }
            return Ok(None);
        }
    };
    let cert = palisade_tls::ReloadingCert::load(&source).map_err(|e| {
        Failure::usage(e).hint("--tls-cert and --tls-key must be a PEM certificate chain and its key")
    })?;

    let fingerprint = fingerprint.unwrap_or_else(|| cert.fingerprint());
    let roots = match &args.client_ca {
        Some(_) => client_ca_roots(args)?,
        None => palisade_tls::Ca::open(home).ok().map(|ca| ca.client_roots()),
    };
    Ok(Some(Tls { source: TlsSource { cert, roots }, workload: None, cert_label: label, fingerprint, trust }))
}

/// `--client-ca FILE` with `--trust-domain`.
fn client_ca_roots(args: &ServeArgs) -> Result<Option<palisade_tls::ClientRoots>, Failure> {
    let Some(file) = &args.client_ca else { return Ok(None) };
    let domain = palisade_tls::TrustDomain::new(&args.trust_domain)
        .map_err(|e| Failure::usage(format!("--trust-domain: {e}")))?;
    let roots = palisade_tls::ClientRoots::from_pem_file(file, domain).map_err(|e| {
        Failure::usage(format!("--client-ca: {e}"))
            .hint("--client-ca must be a PEM bundle of CA certificates")
    })?;
    Ok(Some(roots))
}

/// `--workload-identity NS/SA`: the server's own certificate from the built-in CA, in
/// `HOME/tls/workload/NS/SA/`, renewed at half-life.
fn workload_tls(home: &Path, args: &ServeArgs, identity: &str) -> Result<Tls, Failure> {
    let Some((namespace, service_account)) = identity.split_once('/') else {
        return Err(Failure::usage(format!(
            "--workload-identity: expected NAMESPACE/SERVICE_ACCOUNT, such as palisade-system/palisade; got {identity:?}"
        )));
    };
    let ca = palisade_tls::Ca::open(home).map_err(|e| {
        Failure::usage(format!("--workload-identity needs the built-in CA: {e}"))
            .hint(format!("create it with `palisade ca init --home {}`", home.display()))
    })?;
    let mut request = palisade_tls::WorkloadRequest::new(namespace, service_account);
    if let Some(ttl) = &args.workload_cert_ttl {
        request.lifetime = palisade_identity::rules::parse_duration(ttl).map_err(|e| {
            Failure::usage(format!("--workload-cert-ttl: {e}")).hint("write it like 24h, 30m or 10s")
        })?;
        if request.lifetime < Duration::from_secs(2) {
            return Err(Failure::usage(format!("--workload-cert-ttl: {ttl} is too short")).hint(
                "a workload certificate lives at least 2s; use hours in production (24h is the default)",
            ));
        }
    }
    request.dns_names = workload_names(args);
    let dir = home.join("tls").join("workload").join(namespace).join(service_account);
    let ca = Arc::new(ca);
    let workload = palisade_tls::WorkloadCert::start(ca.clone(), request, &dir).map_err(|e| {
        Failure::usage(format!("--workload-identity {identity}: {e}")).hint(
            "NAMESPACE is a DNS label and SERVICE_ACCOUNT a DNS subdomain (lower-case letters, digits, '-', '.'); \
             the lifetime must end before the CA certificate does",
        )
    })?;
    let roots = match client_ca_roots(args)? {
        Some(roots) => Some(roots),
        None => Some(ca.client_roots()),
    };
    let cert_label =
        format!("{} (workload certificate from {})", workload.files().cert.display(), ca.dir().display());
    let fingerprint = workload.resolver().fingerprint();
    let trust = workload.files().cert.parent().map(|dir| dir.join(palisade_tls::ca::WORKLOAD_CA_FILE));
    Ok(Tls {
        source: TlsSource { cert: workload.resolver(), roots },
        workload: Some(workload),
        cert_label,
        fingerprint,
        trust,
    })
}

/// The names in the workload certificate: loopback, the listen address when it is a
/// specific one, and `--workload-dns`.
fn workload_names(args: &ServeArgs) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let ip = args.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(args.workload_dns.iter().cloned());
    let mut seen = BTreeSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
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

/// Logs to stderr, filtered by `PALISADE_LOG`; with an OTLP endpoint, also exports spans
/// (the request spans and what runs inside them). The returned provider flushes on drop.
/// Also returns a line to print about where traces go.
fn init_logging(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<(Tracing, Option<String>), Failure> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};

    let filter = EnvFilter::try_from_env("PALISADE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journal gets plain text (and painting
    // every span field costs a few thousand instructions per request).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let mut notice = None;
    let provider = match otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url.clone())
                .build()
                .map_err(|e| {
                    Failure::usage(format!("--otlp-endpoint {endpoint}: {e}"))
                        .hint("give the collector's base URL, such as http://127.0.0.1:4318")
                })?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("palisade").build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            notice = Some(format!("palisade: exporting traces to {url}"));
            Some(provider)
        }
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("palisade"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    Ok((Tracing(provider), notice))
}

/// Flushes and stops the trace exporter when serving ends.
struct Tracing(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("palisade: could not flush the last traces: {err}");
        }
    }
}
