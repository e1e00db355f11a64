//! A load generator for the Open Inference Protocol V2 over gRPC (`ModelInfer`), the gRPC
//! counterpart of `wrk` in the benchmark harness (`bench/run.sh`).
//!
//! It opens a fixed number of HTTP/2 connections, keeps a fixed number of requests in
//! flight on each, sends the same one-row FP32 request for a warm-up and then for a fixed
//! duration, and prints one JSON line: requests, errors by gRPC code, requests per second
//! and latency percentiles (microseconds, from an HDR histogram).
//!
//! With `--probe` it sends one request and exits 0 when it succeeds, 3 otherwise: the
//! harness uses that to tell whether a server speaks gRPC at all.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use palisade_protocol::grpc::{
    GrpcInferenceServiceClient, InferInputTensor, InferTensorContents, ModelInferRequest,
};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Latencies above this are clamped into the histogram's last bucket.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "palisade-bench-loadgen", about, version)]
struct Args {
    /// The server, such as http://127.0.0.1:8080 (HTTP/2 without TLS, prior knowledge).
    #[arg(long)]
    addr: String,
    /// Model name.
    #[arg(long)]
    model: String,
    /// Model version; empty lets the server choose.
    #[arg(long, default_value = "")]
    model_version: String,
    /// Input tensor name.
    #[arg(long, default_value = "X")]
    input_name: String,
    /// One row of FP32 features, comma-separated.
    #[arg(long, default_value = "5.1,3.5,1.4,0.2", value_delimiter = ',')]
    input: Vec<f32>,
    /// Rows per request: `--input` repeated, shape `[ROWS, features]`.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// The input tensor from a file of little-endian FP32 values (replaces `--input` and
    /// `--rows`); needs `--shape`.
    #[arg(long, requires = "shape")]
    input_file: Option<std::path::PathBuf>,
    /// The input's shape for `--input-file`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<i64>>,
    /// Send the tensor as `raw_input_contents` (as tritonclient does) instead of
    /// `fp32_contents`.
    #[arg(long)]
    raw: bool,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Measured time, such as 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it, at the same load.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bearer token sent in the `authorization` metadata.
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Send one request and exit 0 if it succeeds, 3 if not; prints the outputs' FP32
    /// values.
    #[arg(long)]
    probe: bool,
}

/// The request's one input: its shape and FP32 values.
fn input_tensor(args: &Args) -> anyhow::Result<(Vec<i64>, Vec<f32>)> {
    let Some(path) = &args.input_file else {
        let values: Vec<f32> =
            args.input.iter().copied().cycle().take(args.input.len() * args.rows.max(1)).collect();
        return Ok((vec![args.rows.max(1) as i64, args.input.len() as i64], values));
    };
    let shape = args.shape.clone().context("--input-file needs --shape")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % 4 != 0 {
        bail!("{}: {} bytes is not a whole number of FP32 values", path.display(), bytes.len());
    }
    let values: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let elements: i64 = shape.iter().product();
    if usize::try_from(elements).ok() != Some(values.len()) {
        bail!("{}: {} values do not fill the shape {shape:?}", path.display(), values.len());
    }
    Ok((shape, values))
}

/// A duration written as `10s`, `1.5s`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(Duration::from_secs_f64(value * scale)),
        _ => Err(format!("`{text}` is not a duration such as 10s or 500ms")),
    }
}

/// What one connection's workers measured.
struct Tally {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally { latencies: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)?, errors: BTreeMap::new() })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latencies.add(other.latencies)?;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(err) => Err(err.into()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("palisade-bench-loadgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.streams == 0 {
        bail!("--connections and --streams must be at least 1");
    }
    let (shape, values) = input_tensor(&args)?;
    let (contents, raw_input_contents) = if args.raw {
        (None, vec![values.iter().flat_map(|v| v.to_le_bytes()).collect()])
    } else {
        (Some(InferTensorContents { fp32_contents: values, ..Default::default() }), Vec::new())
    };
    let request = ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.model_version.clone(),
        inputs: vec![InferInputTensor {
            name: args.input_name.clone(),
            datatype: "FP32".into(),
            shape,
            contents,
            ..Default::default()
        }],
        raw_input_contents,
        ..Default::default()
    };
    let authorization = match &args.token {
        Some(token) => Some(
            MetadataValue::try_from(format!("Bearer {token}"))
                .context("the token is not a valid metadata value")?,
        ),
        None => None,
    };
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("`{}` is not a URI", args.addr))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20));

    if args.probe {
        return probe(&endpoint, request, authorization).await;
    }

    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // One `connect` per channel: each is its own HTTP/2 connection.
        channels.push(endpoint.connect().await.with_context(|| format!("connecting to {}", args.addr))?);
    }

    let started = Instant::now();
    let measure_from = started + args.warmup;
    let measure_until = measure_from + args.duration;
    let mut workers = Vec::new();
    for channel in &channels {
        for _ in 0..args.streams {
            let client = GrpcInferenceServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
            workers.push(tokio::spawn(worker(
                client,
                request.clone(),
                authorization.clone(),
                measure_from,
                measure_until,
            )));
        }
    }
    let mut total = Tally::new()?;
    for worker in workers {
        total.merge(worker.await.context("a worker panicked")??)?;
    }

    let requests = total.latencies.len();
    let errors: u64 = total.errors.values().sum();
    let seconds = args.duration.as_secs_f64();
    let us = |quantile: f64| total.latencies.value_at_quantile(quantile) as f64 / 1000.0;
    let report = json!({
        "tool": "palisade-bench-loadgen",
        "connections": args.connections,
        "streams": args.streams,
        "duration_s": seconds,
        "requests": requests,
        "errors": errors,
        "error_codes": total.errors,
        "rps": if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
        "mean_us": total.latencies.mean() / 1000.0,
        "p50_us": us(0.50),
        "p90_us": us(0.90),
        "p99_us": us(0.99),
        "max_us": total.latencies.max() as f64 / 1000.0,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// Sends one request; success is an OK status with at least one output.
async fn probe(
    endpoint: &Endpoint,
    request: ModelInferRequest,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
) -> anyhow::Result<ExitCode> {
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => {
            println!("{}", json!({"ok": false, "error": format!("connect: {err}")}));
            return Ok(ExitCode::from(3));
        }
    };
    let mut client = GrpcInferenceServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut call = tonic::Request::new(request);
    call.set_timeout(Duration::from_secs(10));
    if let Some(value) = authorization {
        call.metadata_mut().insert("authorization", value);
    }
    match client.model_infer(call).await {
        Ok(response) if !response.get_ref().outputs.is_empty() => {
            let response = response.get_ref();
            // Each output's values (FP32 or INT64), from typed contents or from raw bytes.
            let values: BTreeMap<&str, Vec<f64>> = response
                .outputs
                .iter()
                .enumerate()
                .map(|(i, out)| (out.name.as_str(), output_values(out, response.raw_output_contents.get(i))))
                .collect();
            println!("{}", json!({"ok": true, "outputs": response.outputs.len(), "values": values}));
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            println!("{}", json!({"ok": false, "error": "the response has no outputs"}));
            Ok(ExitCode::from(3))
        }
        Err(status) => {
            println!(
                "{}",
                json!({"ok": false, "error": format!("{:?}: {}", status.code(), status.message())})
            );
            Ok(ExitCode::from(3))
        }
    }
}

/// An output's FP32 or INT64 values as f64 (empty for other datatypes).
fn output_values(out: &palisade_protocol::grpc::InferOutputTensor, raw: Option<&Vec<u8>>) -> Vec<f64> {
    match (out.datatype.as_str(), raw) {
        ("FP32", Some(raw)) => {
            raw.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        ("INT64", Some(raw)) => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        ("FP32", None) => {
            out.contents.iter().flat_map(|c| c.fp32_contents.iter().map(|v| f64::from(*v))).collect()
        }
        ("INT64", None) => {
            out.contents.iter().flat_map(|c| c.int64_contents.iter().map(|v| *v as f64)).collect()
        }
        _ => Vec::new(),
    }
}

/// Sends requests back to back until `until`; records those that complete after `from`.
async fn worker(
    mut client: GrpcInferenceServiceClient<Channel>,
    request: ModelInferRequest,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    from: Instant,
    until: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(tally);
        }
        let mut call = tonic::Request::new(request.clone());
        if let Some(value) = &authorization {
            call.metadata_mut().insert("authorization", value.clone());
        }
        let outcome = client.model_infer(call).await;
        let done = Instant::now();
        if done < from || done > until {
            continue;
        }
        match outcome {
            Ok(response) if !response.get_ref().outputs.is_empty() => {
                let nanos = u64::try_from(done.duration_since(sent).as_nanos()).unwrap_or(MAX_LATENCY_NS);
                tally.latencies.saturating_record(nanos.clamp(1, MAX_LATENCY_NS));
            }
            Ok(_) => *tally.errors.entry("EmptyResponse".into()).or_default() += 1,
            Err(status) => *tally.errors.entry(format!("{:?}", status.code())).or_default() += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_and_milliseconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("1m").is_err());
    }

    #[test]
    fn tallies_merge_latencies_and_error_codes() -> anyhow::Result<()> {
        let mut a = Tally::new()?;
        a.latencies.record(1_000)?;
        a.errors.insert("Unavailable".into(), 2);
        let mut b = Tally::new()?;
        b.latencies.record(3_000)?;
        b.errors.insert("Unavailable".into(), 1);
        b.errors.insert("Unauthenticated".into(), 4);
        a.merge(b)?;
        assert_eq!(a.latencies.len(), 2);
        assert_eq!(a.errors.get("Unavailable"), Some(&3));
        assert_eq!(a.errors.get("Unauthenticated"), Some(&4));
        Ok(())
    }
}
