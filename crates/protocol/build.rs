//! Generates the gRPC types, servers and clients from `proto/`: the Open Inference Protocol
//! V2 (`grpc_predict_v2.proto`) and Seldon Core v1 (`seldon.proto`, Palisade's own file for
//! Seldon's wire format), with the `protoc` shipped by `protoc-bin-vendored` (no download,
//! no system package) unless `PROTOC` names another one. `google/protobuf/struct.proto`
//! comes from the same crate's include directory.

use std::error::Error;

const PROTOS: [&str; 2] = ["proto/grpc_predict_v2.proto", "proto/seldon.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    let include = protoc_bin_vendored::include_path()?;
    let include = include.to_str().ok_or("the protoc include path is not UTF-8")?;
    tonic_prost_build::configure()
        .build_server(true)
        // The clients serve tests and tools; they take any tower service, so no transport.
        .build_client(true)
        .build_transport(false)
        .compile_with_config(config, &PROTOS, &["proto", include])?;
    Ok(())
}
