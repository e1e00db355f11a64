//! A TLS listener for `axum::serve`: TCP accept, concurrent TLS handshakes with a timeout,
//! and per-connection information (addresses, verified peer identity, SNI, ALPN).

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::PeerIdentity;

/// Tuning of a [`TlsListener`].
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// A handshake not finished within this time is dropped (default 10 s).
    pub handshake_timeout: Duration,
    /// Connections between TCP accept and delivery to the server (handshaking, or waiting
    /// to be taken) at once; further ones wait in the kernel's backlog (default 512).
    pub max_concurrent_handshakes: usize,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions { handshake_timeout: Duration::from_secs(10), max_concurrent_handshakes: 512 }
    }
}

/// What is known about a TLS connection once its handshake is done. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The local address (its port is what `portLevelMtls` and policy `ports` match).
    pub local: SocketAddr,
    /// The verified peer identity, when the client presented a certificate. Every presented
    /// certificate was verified in the handshake (chain, validity, SPIFFE id of an accepted
    /// trust domain), so `Some` means proven.
    pub peer: Option<PeerIdentity>,
    /// The client's verified certificate chain, leaf first.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// The server name the client asked for (SNI), if any.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1_3` or `TLSv1_2`.
    pub protocol_version: Option<String>,
}

impl Connected<IncomingStream<'_, TlsListener>> for TlsConnInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> TlsConnInfo {
        stream.io().info().clone()
    }
}

/// A TLS connection handed to the server: the stream plus its [`TlsConnInfo`].
#[derive(Debug)]
pub struct TlsIo {
    stream: TlsStream<TcpStream>,
    info: TlsConnInfo,
}

impl TlsIo {
    /// What the handshake established.
    pub fn info(&self) -> &TlsConnInfo {
        &self.info
    }

    /// The underlying rustls stream.
    pub fn get_ref(&self) -> &TlsStream<TcpStream> {
        &self.stream
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Replaces the TLS configuration of a running listener; new handshakes use the new one,
/// established connections keep theirs (e.g. when the models on a port, and so its
/// client-certificate requirement, change).
#[derive(Debug, Clone)]
pub struct TlsConfigHandle(Arc<RwLock<Arc<ServerConfig>>>);

impl TlsConfigHandle {
    /// A handle holding `config`.
    pub fn new(config: Arc<ServerConfig>) -> TlsConfigHandle {
        TlsConfigHandle(Arc::new(RwLock::new(config)))
    }

    /// Uses `config` for the next handshakes.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The config new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Handshake counters of a listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    handshakes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
}

impl ListenerStats {
    /// Completed handshakes.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Handshakes that failed (protocol version, client certificate refused, garbage...).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Handshakes dropped for taking longer than the timeout.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }
}

/// A TLS listener for `axum::serve` (axum 0.8 [`Listener`]).
///
/// A background task accepts TCP connections and runs each handshake in its own task, with
/// a timeout, so a slow or failing client never holds up others; completed connections are
/// handed to `accept`. Failures are logged (at `info`, with the client address) and counted;
/// they never stop the accept loop. Dropping the listener stops accepting.
///
/// ```no_run
/// # async fn run(config: std::sync::Arc<rustls::ServerConfig>, app: axum::Router) -> std::io::Result<()> {
/// use palisade_tls::{TlsConnInfo, TlsListener};
/// let listener = TlsListener::bind("127.0.0.1:8443", config).await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<TlsConnInfo>()).await
/// # }
/// ```
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    incoming: mpsc::Receiver<TlsIo>,
    config: TlsConfigHandle,
    stats: Arc<ListenerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Binds `addr` and serves TLS with `config`, default options.
    pub async fn bind(addr: impl ToSocketAddrs, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        TlsListener::new(TcpListener::bind(addr).await?, config, ListenerOptions::default())
    }

    /// Serves TLS on a bound TCP listener. Must be called inside a tokio runtime.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        options: ListenerOptions,
    ) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let config = TlsConfigHandle::new(config);
        let stats = Arc::new(ListenerStats::default());
        let capacity = options.max_concurrent_handshakes.max(1);
        let (tx, incoming) = mpsc::channel(capacity);
        let task = tokio::spawn(accept_loop(tcp, local, config.clone(), options, tx, stats.clone()));
        Ok(TlsListener { local, incoming, config, stats, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle to replace the TLS configuration for new connections.
    pub fn config_handle(&self) -> TlsConfigHandle {
        self.config.clone()
    }

    /// Handshake counters.
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsIo, SocketAddr) {
        match self.incoming.recv().await {
            Some(io) => {
                let remote = io.info.remote;
                (io, remote)
            }
            // The accept task ended (it only does when aborted): nothing will come again.
            None => pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    local: SocketAddr,
    config: TlsConfigHandle,
    options: ListenerOptions,
    tx: mpsc::Sender<TlsIo>,
    stats: Arc<ListenerStats>,
) {
    let permits = Arc::new(Semaphore::new(options.max_concurrent_handshakes.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, remote) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                handle_accept_error(error).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        // Small responses should not wait for Nagle; failure only costs latency.
        let _ = stream.set_nodelay(true);
        let (config, tx, stats, timeout) =
            (config.clone(), tx.clone(), stats.clone(), options.handshake_timeout);
        tokio::spawn(async move {
            let local = stream.local_addr().unwrap_or(local);
            let result = tokio::time::timeout(timeout, handshake(&config, stream, remote, local)).await;
            match result {
                Ok(Ok(io)) => {
                    stats.handshakes.fetch_add(1, Ordering::Relaxed);
                    // The permit is held until the server takes the connection, which bounds
                    // connections in flight. A send error means the listener is gone; the
                    // connection just closes.
                    let _ = tx.send(io).await;
                    drop(permit);
                }
                Ok(Err(error)) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    log_handshake_failure(remote, &error);
                }
                Err(_) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%remote, timeout_ms = timeout.as_millis() as u64, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Repeated handshake failures (scanners, clients with the wrong CA, garbage) are logged
/// once per interval with a count, never once each.
fn log_handshake_failure(remote: SocketAddr, error: &io::Error) {
    static QUIET: std::sync::OnceLock<palisade_core::quiet::Quiet> = std::sync::OnceLock::new();
    let quiet = QUIET.get_or_init(|| palisade_core::quiet::Quiet::new(Duration::from_secs(10)));
    if let Some(report) = quiet.note() {
        tracing::info!(%remote, %error, suppressed = report.suppressed, "TLS handshake failed");
    }
}

async fn handshake(
    config: &TlsConfigHandle,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) -> io::Result<TlsIo> {
    let stream = TlsAcceptor::from(config.current()).accept(stream).await?;
    let info = conn_info(&stream, remote, local);
    Ok(TlsIo { stream, info })
}

/// The TLS handshake of one accepted connection, for servers that run their own accept
/// loop (and bound the handshake's time themselves): `None` when it fails, which is logged
/// (once per interval, with a count).
pub async fn accept_connection(
    config: &TlsConfigHandle,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) -> Option<TlsIo> {
    match handshake(config, stream, remote, local).await {
        Ok(io) => Some(io),
        Err(error) => {
            log_handshake_failure(remote, &error);
            None
        }
    }
}

fn conn_info(stream: &TlsStream<TcpStream>, remote: SocketAddr, local: SocketAddr) -> TlsConnInfo {
    let (_, conn) = stream.get_ref();
    let peer_certificates: Option<Arc<[CertificateDer<'static>]>> = conn
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
    let peer = peer_certificates.as_ref().and_then(|chain| match PeerIdentity::from_certificate(&chain[0]) {
        Ok(identity) => Some(identity),
        Err(error) => {
            // The verifier accepts only SPIFFE certificates, so this is unreachable unless a
            // custom verifier is configured; the connection then simply has no identity.
            tracing::warn!(%remote, %error, "verified client certificate without a workload identity");
            None
        }
    });
    TlsConnInfo {
        remote,
        local,
        peer,
        peer_certificates,
        sni: conn.server_name().map(str::to_owned),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        protocol_version: conn.protocol_version().map(|v| format!("{v:?}")),
    }
}

/// As axum's own listener does: connection-level errors are the client's problem; others
/// (such as running out of file descriptors) are logged and retried after a pause.
async fn handle_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
