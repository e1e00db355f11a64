//! The front door: accepting connections within a budget, and closing the ones that hold
//! it without using it.
//!
//! Palisade faces callers before it knows who they are, so everything an unauthenticated
//! client can hold is bounded:
//!
//! - **Time.** A connection must finish its TLS handshake and send a complete first request
//!   head (HTTP/1) or preface and first HEADERS (HTTP/2) within `header_read_timeout`,
//!   together; silent and trickling ("slowloris") connections are closed then. A connection
//!   with no request in flight for `idle_timeout` is closed (HTTP/2: GOAWAY first); on
//!   HTTP/1 the same bound applies to reading each later request head.
//! - **Connections.** At most `max_connections` at once (the CLI derives it from the
//!   descriptor limit), and at most `max_connections_per_ip` from one address. Past the
//!   global cap, connections that never completed a request are shed first, then idle
//!   keep-alive ones, oldest first, before a new connection is refused. Past the per-address
//!   cap, that address's new connections are refused (closed at once); other addresses are
//!   not affected.
//!
//! Everything is counted in `palisade_connections{state}` and
//! `palisade_connections_refused_total{reason}`; repeated accept errors are logged once per
//! interval with a count.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_core::quiet::Quiet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::context::ConnInfo;

/// The front door's limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontConfig {
    /// TLS handshake plus the first request head, together (default 10 s).
    pub header_read_timeout: Duration,
    /// No request in flight for this long closes a connection (default 60 s).
    pub idle_timeout: Duration,
    /// Connections at once (default 10 000; the CLI derives it from `RLIMIT_NOFILE`).
    pub max_connections: usize,
    /// Connections at once from one address (default 256; 0: no per-address limit).
    pub max_connections_per_ip: usize,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_ip: 256,
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Accepted, no complete request yet (TLS handshake, first request head).
    Fresh = 0,
    /// A request is being served.
    Busy = 1,
    /// Keep-alive, no request in flight.
    Idle = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Fresh,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }

    /// The `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Fresh => "fresh",
            Phase::Busy => "busy",
            Phase::Idle => "idle",
        }
    }
}

/// Why a connection was refused or closed early (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address already holds `max_connections_per_ip`.
    PerIp,
    /// `max_connections` reached and nothing could be shed.
    Global,
}

impl Refusal {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Global => "global",
        }
    }
}

/// One live connection's shared state.
#[derive(Debug)]
struct Track {
    phase: AtomicU8,
    in_flight: AtomicUsize,
    /// Milliseconds since the connection opened at the last change of phase.
    changed_ms: AtomicU64,
    opened: Instant,
    shed: Notify,
}

impl Track {
    fn new() -> Track {
        Track {
            phase: AtomicU8::new(Phase::Fresh as u8),
            in_flight: AtomicUsize::new(0),
            changed_ms: AtomicU64::new(0),
            opened: Instant::now(),
            shed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn mark(&self, phase: Phase) {
        self.changed_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// How long the connection has been in its phase.
    fn in_phase_for(&self) -> Duration {
        self.opened.elapsed().saturating_sub(Duration::from_millis(self.changed_ms.load(Ordering::Acquire)))
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.mark(Phase::Busy);
    }

    fn request_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.mark(Phase::Idle);
        }
    }
}

/// Ends a request's share of its connection's activity, even when the request is cancelled.
struct InFlight(Arc<Track>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    live: HashMap<u64, (IpAddr, Arc<Track>)>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The connections of one server, their budget and counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Front {
    config: FrontConfig,
    table: Arc<Mutex<Table>>,
    refused: prometheus::IntCounterVec,
    closed: prometheus::IntCounterVec,
    accept_errors: Arc<Quiet>,
}

/// A place in the connection table, given back when the connection ends.
struct Admitted {
    table: Arc<Mutex<Table>>,
    id: u64,
    ip: IpAddr,
    track: Arc<Track>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut table) = self.table.lock() {
            table.live.remove(&self.id);
            if let Some(count) = table.per_ip.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    table.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl Front {
    /// A front door with these limits, counting into `metrics`.
    pub fn new(config: FrontConfig, metrics: &crate::Metrics) -> Front {
        Front {
            config,
            table: Arc::default(),
            refused: metrics.connections_refused.clone(),
            closed: metrics.connections_closed.clone(),
            accept_errors: Arc::new(Quiet::new(Duration::from_secs(10))),
        }
    }

    /// The limits.
    pub fn config(&self) -> FrontConfig {
        self.config
    }

    /// Live connections by phase: fresh, busy, idle.
    pub fn counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        if let Ok(table) = self.table.lock() {
            for (_, track) in table.live.values() {
                counts[track.phase() as usize] += 1;
            }
        }
        counts
    }

    /// Takes a place for a connection from `ip`, shedding an unused connection when the
    /// server is full; or says why not.
    fn admit(&self, ip: IpAddr) -> Result<Admitted, Refusal> {
        let Ok(mut table) = self.table.lock() else { return Err(Refusal::Global) };
        let per_ip = table.per_ip.get(&ip).copied().unwrap_or(0);
        if self.config.max_connections_per_ip > 0 && per_ip >= self.config.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        if table.live.len() >= self.config.max_connections {
            // The oldest connection that never completed a request, else the one idle the
            // longest: neither is serving anyone.
            let victim = table
                .live
                .values()
                .filter(|(_, t)| t.phase() == Phase::Fresh)
                .min_by_key(|(_, t)| t.opened)
                .or_else(|| {
                    table
                        .live
                        .values()
                        .filter(|(_, t)| t.phase() == Phase::Idle)
                        .max_by_key(|(_, t)| t.in_phase_for())
                })
                .map(|(_, t)| t.clone());
            match victim {
                Some(track) => {
                    track.shed.notify_one();
                    self.closed.with_label_values(&["shed"]).inc();
                }
                None => return Err(Refusal::Global),
            }
        }
        table.next += 1;
        let id = table.next;
        let track = Arc::new(Track::new());
        table.live.insert(id, (ip, track.clone()));
        *table.per_ip.entry(ip).or_insert(0) += 1;
        drop(table);
        Ok(Admitted { table: self.table.clone(), id, ip, track })
    }

    /// Serves `router` on `listener` (TLS when `tls` is given) until `shutdown` completes,
    /// then lets the connections finish their requests (at most 30 s).
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<palisade_tls::TlsConfigHandle>,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.accept_failed(&error).await;
                    continue;
                }
            };
            let admitted = match self.admit(remote.ip()) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    self.refused.with_label_values(&[refusal.as_str()]).inc();
                    // Closing at once gives the descriptor back; the client sees a reset.
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let front = self.clone();
            let (router, tls, stop) = (router.clone(), tls.clone(), stop_rx.clone());
            tokio::spawn(async move {
                front.connection(stream, remote, tls, router, admitted, stop).await;
            });
        }
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.table.lock().map_or(0, |t| t.live.len()) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Running out of descriptors, and other accept failures, are logged once per interval
    /// with a count, and retried after a pause.
    async fn accept_failed(&self, error: &std::io::Error) {
        use std::io::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
        ) {
            return;
        }
        if let Some(report) = self.accept_errors.note() {
            tracing::error!(error = %error, suppressed = report.suppressed, "accept failed; retrying");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// One connection: the TLS handshake, then HTTP, watched for the timeouts and shedding.
    async fn connection(
        self,
        stream: TcpStream,
        remote: SocketAddr,
        tls: Option<palisade_tls::TlsConfigHandle>,
        router: Router,
        admitted: Admitted,
        mut stop: watch::Receiver<bool>,
    ) {
        let track = admitted.track.clone();
        let local = stream.local_addr().unwrap_or(remote);
        let fresh_deadline = tokio::time::Instant::from_std(track.opened + self.config.header_read_timeout);
        match tls {
            None => {
                let info = ConnInfo { remote, local, peer: None, sni: None, tls: false };
                self.http(TokioIo::new(stream), info, router, &track, &mut stop).await;
            }
            Some(tls) => {
                let handshake = palisade_tls::accept_connection(&tls, stream, remote, local);
                let io = tokio::select! {
                    io = handshake => io,
                    () = tokio::time::sleep_until(fresh_deadline) => {
                        self.closed.with_label_values(&["header_timeout"]).inc();
                        return;
                    }
                    () = track.shed.notified() => return,
                };
                let Some(io) = io else { return };
                let info = io.info();
                let info = ConnInfo {
                    remote: info.remote,
                    local: info.local,
                    peer: info.peer.clone(),
                    sni: info.sni.clone(),
                    tls: true,
                };
                self.http(TokioIo::new(io), info, router, &track, &mut stop).await;
            }
        }
        drop(admitted);
    }

    async fn http<I>(
        &self,
        io: TokioIo<I>,
        info: ConnInfo,
        router: Router,
        track: &Arc<Track>,
        stop: &mut watch::Receiver<bool>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service_track = track.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            service_track.request_started();
            let in_flight = InFlight(service_track.clone());
            req.extensions_mut().insert(axum::extract::ConnectInfo(info.clone()));
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(Body::new)).await;
                drop(in_flight);
                response
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Each later request head on a keep-alive connection must arrive within the idle
        // timeout too (hyper's timer runs while waiting for a head).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.config.idle_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        let mut conn = pin!(conn);
        let mut closing: Option<Instant> = None;
        let tick = (self.config.header_read_timeout.min(self.config.idle_timeout) / 4)
            .max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                () = track.shed.notified(), if closing.is_none() => {
                    if track.phase() == Phase::Fresh {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = stop.changed(), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                () = tokio::time::sleep(tick) => {
                    let phase = track.phase();
                    if phase == Phase::Fresh && track.opened.elapsed() >= self.config.header_read_timeout {
                        self.closed.with_label_values(&["header_timeout"]).inc();
                        return;
                    }
                    // A connection told to close gets 30 s to finish what it serves.
                    if closing.is_some_and(|since| since.elapsed() >= Duration::from_secs(30)) {
                        return;
                    }
                    if closing.is_none() && phase == Phase::Idle && track.in_phase_for() >= self.config.idle_timeout {
                        self.closed.with_label_values(&["idle_timeout"]).inc();
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                }
            }
        }
    }
}
