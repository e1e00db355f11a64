//! What every layer believes a request is: the normalized path and its route (the request
//! context's), and the model a gRPC message names (authorization's) against what the full
//! decoder reads (the handler's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::grpc::{self, ModelInferRequest, prost::Message};
use palisade_server::route::{Route, RouteOptions};

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let method = axum::http::Method::from_bytes(METHODS[usize::from(selector) % METHODS.len()].as_bytes())
        .expect("a known method");
    let raw = String::from_utf8_lossy(rest);
    if let Ok(path) = palisade_policy::normalize_path(&raw) {
        // Normalizing twice changes nothing, so no layer can see another spelling.
        assert_eq!(palisade_policy::normalize_path(&path).as_deref(), Ok(path.as_str()));
        let options = RouteOptions { secured: true, console: true };
        let route = Route::resolve(&method, &path, options);
        assert_eq!(Route::resolve(&method, &path, options), route);
        // A public route is one of the allow-listed ones, and never a model's.
        if route.is_public(true) {
            assert!(!route.addresses_model());
        }
        // A route that addresses a model is always audited.
        if route.addresses_model() {
            assert!(route.is_audited());
        }
    }
    // The model name authorization reads is the one the handler decodes.
    if let Ok(named) = grpc::named_model(data)
        && let Ok(full) = ModelInferRequest::decode(&data[5..])
    {
        assert_eq!(named.name, full.model_name);
        assert_eq!(named.version, full.model_version);
    }
});
