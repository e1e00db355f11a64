//! The benchmark's ceiling: a bare hyper HTTP/1 server on a multi-threaded tokio runtime
//! that reads each request body and answers `200 OK` with a small JSON body.
//!
//! Nothing a real model server needs (routing, parsing, inference, security) happens here,
//! so its throughput under the same load generator is what this machine's loopback, kernel
//! and HTTP stack allow: the upper bound the other rows are compared with.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, header};
use hyper_util::rt::TokioIo;

/// The answer to every request; about the size of a small V2 inference response header.
const BODY: &[u8] = br#"{"model_name":"ceiling","outputs":[]}"#;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "palisade-bench-ceiling", about, version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    runtime.enable_all().build().context("starting the tokio runtime")?.block_on(serve(args.listen))
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    // The harness reads this line to learn the port.
    println!("ceiling: listening on http://{local}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of file descriptors must not end the server; try again.
            Err(_) => continue,
        };
        // Same as every server in the comparison: no Nagle delay on small responses.
        stream.set_nodelay(true).ok();
        tokio::spawn(async move {
            let service = service_fn(answer);
            // A client closing its connection mid-request is normal at the end of a run.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as a server that parses it would.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(response)
}
