//! AuthorizationPolicy parsing and evaluation: a policy that parses can be compiled,
//! evaluated and explained without a panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade_policy::{PolicySet, Request, Settings, TargetModel, parse_policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = parse_policy(text, std::path::Path::new("fuzz.yaml")) else { return };
    let namespace = policy.metadata.namespace.clone();
    let Ok(set) = PolicySet::new(vec![policy], Settings::default()) else { return };
    let model = Arc::new(TargetModel::new(namespace, "m".parse().unwrap_or_else(|_| unreachable!())));
    let mut request = Request::new(model.clone());
    request.path = "/v2/models/m/infer".to_owned();
    request.method = "POST".to_owned();
    let _ = set.evaluate(&request);
    let _ = set.explain(&model).lines();
});
