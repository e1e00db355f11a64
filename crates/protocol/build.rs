//! Generates the Open Inference Protocol V2 gRPC types, server and client from
//! `proto/grpc_predict_v2.proto`, with the `protoc` shipped by `protoc-bin-vendored`
//! (no download, no system package) unless `PROTOC` names another one.

use std::error::Error;

const PROTO: &str = "proto/grpc_predict_v2.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(true)
        // The client serves tests and tools; it takes any tower service, so no transport.
        .build_client(true)
        .build_transport(false)
        .compile_with_config(config, &[PROTO], &["proto"])?;
    Ok(())
}
