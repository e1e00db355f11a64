//! The second security review's finding 1: a malicious model cannot take the server down.
//!
//! Each model here is written by the test, a few hundred bytes of ONNX whose attributes or
//! constants announce billions of values: a `TreeEnsembleRegressor` with
//! `n_targets = 2000000000` (the review's attack, which aborted the process on its first
//! request), and its siblings (a declared output of two billion columns, `Tile` and
//! `Expand` to billions of elements, `TopK` with a huge `k`). None of them loads, on tract or
//! on onnxruntime. Models that do load but whose rows are wide (a million targets or
//! classes) have their outputs reserved from the server's in-flight memory budget before
//! they run: a request that can never fit is 413, one that does not fit now is 503 with
//! `Retry-After`, and another model keeps answering throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use common::{IRIS_ROW, call, fixture, with_onnxruntime};
use palisade_bundle::Store;
use palisade_runtime::EngineConfig;
use palisade_runtime::onnx::pb;
use palisade_server::{Registry, ServerConfig};
use prost::Message;

/// The engines a model may be built for here: tract always, onnxruntime when present.
fn engines() -> Vec<&'static str> {
    if with_onnxruntime() { vec!["tract", "onnxruntime"] } else { vec!["tract"] }
}

// ---- ONNX models written by the test ----

fn dim(value: Option<i64>, param: &str) -> pb::tensor_shape_proto::Dimension {
    use pb::tensor_shape_proto::dimension::Value;
    let value = match value {
        Some(n) => Some(Value::DimValue(n)),
        None if param.is_empty() => None,
        None => Some(Value::DimParam(param.into())),
    };
    pb::tensor_shape_proto::Dimension { value, ..Default::default() }
}

/// A tensor value: `elem_type` (1 float, 7 int64) and dims (`None` for `N`, the batch).
fn value(name: &str, elem_type: i32, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    let dims = dims.iter().enumerate().map(|(axis, d)| dim(*d, if axis == 0 { "N" } else { "" })).collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), i, r#type: 2, ..Default::default() }
}

fn ints(name: &str, values: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), ints: values, r#type: 7, ..Default::default() }
}

fn floats(name: &str, values: Vec<f32>) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), floats: values, r#type: 6, ..Default::default() }
}

fn strings(name: &str, values: &[&str]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: 8,
        ..Default::default()
    }
}

fn node(
    domain: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        name: op.to_lowercase(),
        op_type: op.into(),
        domain: domain.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn int64s(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        data_type: 7,
        dims: vec![values.len() as i64],
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<pb::NodeProto>,
    initializer: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> Vec<u8> {
    let opset = |domain: &str, version| pb::OperatorSetIdProto { domain: domain.into(), version };
    pb::ModelProto {
        ir_version: 8,
        producer_name: "palisade-tests".into(),
        opset_import: vec![opset("", 17), opset("ai.onnx.ml", 3)],
        graph: Some(pb::GraphProto {
            name: "hostile".into(),
            node: nodes,
            initializer,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// One stump on feature 0: both leaves weight target (or class) 0.
fn stump(prefix: &str) -> Vec<pb::AttributeProto> {
    vec![
        ints("nodes_treeids", vec![0, 0, 0]),
        ints("nodes_nodeids", vec![0, 1, 2]),
        ints("nodes_featureids", vec![0, 0, 0]),
        floats("nodes_values", vec![5.0, 0.0, 0.0]),
        strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
        ints("nodes_truenodeids", vec![1, 0, 0]),
        ints("nodes_falsenodeids", vec![2, 0, 0]),
        ints(&format!("{prefix}_treeids"), vec![0, 0]),
        ints(&format!("{prefix}_nodeids"), vec![1, 2]),
        ints(&format!("{prefix}_ids"), vec![0, 0]),
        floats(&format!("{prefix}_weights"), vec![1.0, 2.0]),
    ]
}

/// A `TreeEnsembleRegressor` over `[N, 4]` floats with `n_targets` targets; its output's
/// width is left undeclared, so only the attribute says how wide a row is.
fn regressor(n_targets: i64) -> Vec<u8> {
    let mut attributes = stump("target");
    attributes.push(int("n_targets", n_targets));
    model(
        vec![node("ai.onnx.ml", "TreeEnsembleRegressor", &["X"], &["Y"], attributes)],
        vec![],
        vec![value("X", 1, &[None, Some(4)])],
        vec![value("Y", 1, &[None, None])],
    )
}

/// A `TreeEnsembleClassifier` with `n_classes` integer labels.
fn classifier(n_classes: i64) -> Vec<u8> {
    let mut attributes = stump("class");
    attributes.push(ints("classlabels_int64s", (0..n_classes).collect()));
    model(
        vec![node("ai.onnx.ml", "TreeEnsembleClassifier", &["X"], &["label", "probabilities"], attributes)],
        vec![],
        vec![value("X", 1, &[None, Some(4)])],
        vec![value("label", 7, &[None]), value("probabilities", 1, &[None, None])],
    )
}

/// An `Identity` whose output is declared `[1, 2000000000]`.
fn declared_output() -> Vec<u8> {
    model(
        vec![node("", "Identity", &["X"], &["Y"], vec![])],
        vec![],
        vec![value("X", 1, &[None, Some(4)])],
        vec![value("Y", 1, &[Some(1), Some(2_000_000_000)])],
    )
}

/// `op(X, constant)` with a constant size input: Tile's repeats, Expand's shape, TopK's k.
fn with_constant(op: &str, constant: &[i64], outputs: &[&str]) -> Vec<u8> {
    let declared =
        outputs.iter().map(|name| value(name, if *name == "I" { 7 } else { 1 }, &[None, None])).collect();
    model(
        vec![node("", op, &["X", "C"], outputs, vec![])],
        vec![int64s("C", constant)],
        vec![value("X", 1, &[None, Some(4)])],
        declared,
    )
}

// ---- bundles and the server ----

/// Stages `bytes` as a bundle named `name` on `engine`, the way `palisade build` does;
/// the preparation's error when the model does not load.
fn build(store: &Store, scratch: &Path, name: &str, engine: &str, bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::write(dir.path().join("model.onnx"), bytes).unwrap();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "name: {name}\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n  runtime: {engine}\n"
        ),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model =
        palisade_runtime::prepare(staged.manifest(), &staged.model_path()).map_err(|e| e.to_string())?;
    staged.set_signature(model.signature()).unwrap();
    store.commit(staged).unwrap();
    Ok(())
}

fn iris(store: &Store, scratch: &Path) {
    let bytes = std::fs::read(fixture("iris_rf_nozipmap")).unwrap();
    build(store, scratch, "iris", "tract", &bytes).unwrap();
}

fn home() -> (tempfile::TempDir, Store, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let scratch = tmp.path().join("src");
    std::fs::create_dir_all(&scratch).unwrap();
    (tmp, store, scratch)
}

fn rows(n: usize) -> String {
    let data: Vec<String> = (0..n).map(|i| format!("{}.0,1.0,2.0,3.0", i % 9)).collect();
    format!(r#"{{"inputs":[{{"name":"X","shape":[{n},4],"datatype":"FP32","data":[{}]}}]}}"#, data.join(","))
}

#[test]
fn finding_1_models_whose_attributes_imply_billions_of_values_never_load_on_either_engine() {
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("n-targets", regressor(2_000_000_000), "n_targets"),
        ("declared-output", declared_output(), "2000000000"),
        ("tile", with_constant("Tile", &[1, 2_000_000_000], &["Y"]), "the repeats"),
        ("expand", with_constant("Expand", &[4_000_000_000, 4], &["Y"]), "the shape"),
        ("topk", with_constant("TopK", &[2_000_000_000], &["Y", "I"]), "`k`"),
    ];
    let (_tmp, store, scratch) = home();
    for engine in engines() {
        for (name, bytes, named) in &hostile {
            assert!(bytes.len() < 2048, "{name}: the attack is a small file ({} bytes)", bytes.len());
            let refused = build(&store, &scratch, name, engine, bytes).unwrap_err();
            assert!(
                refused.contains("the model asks for too much memory") && refused.contains(named),
                "{engine} {name}: {refused}"
            );
        }
    }
    // Nothing was stored: a server over this store serves the one good model.
    iris(&store, &scratch);
    let registry = Registry::load(&store).unwrap();
    assert_eq!(registry.namespaces().len(), 1);
    assert!(registry.get("iris", None).is_ok());
}

#[test]
fn finding_1_wide_models_load_within_the_limits_and_report_their_row_size() {
    let (_tmp, store, scratch) = home();
    for engine in engines() {
        // 2^28 targets is the most a row may hold; one past it is refused.
        let refused = build(&store, &scratch, "past", engine, &regressor((1 << 28) + 1)).unwrap_err();
        assert!(refused.contains("n_targets"), "{engine}: {refused}");
        build(&store, &scratch, &format!("wide-{engine}"), engine, &regressor(1 << 20)).unwrap();
    }
    let registry = Registry::load(&store).unwrap();
    for engine in engines() {
        let served = registry.get(&format!("wide-{engine}"), None).unwrap();
        assert_eq!(served.model.engine(), engine);
        assert_eq!(served.model.runnable().unwrap().output_bytes_per_row(), 4 << 20, "{engine}");
    }
}

#[tokio::test]
async fn finding_1_outputs_are_reserved_from_the_budget_and_other_models_keep_serving() {
    let budget = 10 << 20;
    let (_tmp, store, scratch) = home();
    iris(&store, &scratch);
    let mut wide = Vec::new();
    for engine in engines() {
        // 4 MiB of outputs per row (a million targets), and 512 KiB and a label (2^17
        // classes: their labels go into the bundle's signature, whose size is capped).
        let regressor_name = format!("targets-{engine}");
        build(&store, &scratch, &regressor_name, engine, &regressor(1 << 20)).unwrap();
        let classifier_name = format!("classes-{engine}");
        build(&store, &scratch, &classifier_name, engine, &classifier(1 << 17)).unwrap();
        wide.push((regressor_name, 4u64 << 20));
        wide.push((classifier_name, (4u64 << 17) + 8));
    }
    let registry = Registry::load(&store).unwrap();
    for (name, per_row) in &wide {
        assert_eq!(
            registry.get(name, None).unwrap().model.runnable().unwrap().output_bytes_per_row(),
            *per_row,
            "{name}"
        );
    }
    let config = ServerConfig { max_inflight_bytes: budget, ..ServerConfig::default() };
    let app = common::app(store.root(), registry, EngineConfig::default(), config);
    let infer = |name: &str| format!("/v2/models/{name}/infer");

    for (name, per_row) in &wide {
        let fit = (budget as u64 / per_row) as usize;
        // As many rows as fit the budget are computed.
        let reply = call(&app, "POST", &infer(name), rows(fit)).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", String::from_utf8_lossy(&reply.body));
        let outputs = reply.json()["outputs"].clone();
        let widest = outputs.as_array().unwrap().iter().map(|o| o["shape"][1].as_u64().unwrap_or(0)).max();
        assert!(widest >= Some(1 << 17), "{name}: {outputs:.200}");

        // One more never fits: 413, with the sizes, before anything runs.
        let reply = call(&app, "POST", &infer(name), rows(fit + 1)).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{name}");
        let message = reply.json()["error"].as_str().unwrap().to_owned();
        let needed = (fit as u64 + 1) * per_row;
        assert!(
            message.contains("send fewer rows") && message.contains(&format!("would take {needed} bytes")),
            "{message}"
        );
        assert!(reply.headers.get("retry-after").is_none());

        // While others hold most of the budget, one row does not fit now: 503, retry later.
        let hold = Hold::start(&app, budget - (*per_row as usize) / 2).await;
        let reply = call(&app, "POST", &infer(name), rows(1)).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
        assert_eq!(reply.headers["retry-after"], "1");
        assert!(reply.json()["error"].as_str().unwrap().contains("retry later"));
        // The small model still answers meanwhile, and the wide one once the budget is back.
        let reply = call(&app, "POST", &infer("iris"), IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::OK);
        hold.release().await;
        assert_eq!(call(&app, "POST", &infer(name), rows(1)).await.status, StatusCode::OK);
        assert_eq!(app.state.body_budget().in_use(), 0, "{name}: every reservation is given back");
    }
    let reply = call(&app, "POST", &infer("iris"), IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Inputs are checked before outputs are sized: a shape the model does not take is the
/// caller's 400 (naming the input), even when the rows it claims would not fit the budget
/// (schemathesis sent `[2147483648, 0]` with no data to iris).
#[tokio::test]
async fn a_wrong_shape_is_a_400_before_the_outputs_are_sized() {
    let (_tmp, store, scratch) = home();
    iris(&store, &scratch);
    let app = common::app(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
    );
    for shape in ["[2147483648, 0]", "[2147483647, 0]", "[0, 2147483648]", "[4294967296, 4]"] {
        let body = format!(r#"{{"inputs":[{{"name":"X","shape":{shape},"datatype":"FP32","data":[]}}]}}"#);
        let reply = call(&app, "POST", "/v2/models/iris/infer", body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{shape}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(reply.json()["error"].as_str().unwrap().contains('X'), "{shape}: the input is named");
    }
    assert_eq!(app.state.body_budget().in_use(), 0);
}

/// A request in flight that holds `bytes` of the server's budget: its declared body length,
/// reserved before it is read, while the body trickles.
struct Hold {
    sender: tokio::sync::mpsc::Sender<bytes::Bytes>,
    request: tokio::task::JoinHandle<common::Reply>,
}

impl Hold {
    async fn start(app: &common::TestApp, bytes: usize) -> Hold {
        let (sender, receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let trickle = futures_util::stream::unfold(receiver, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
        });
        let request = axum::http::Request::post("/v2/models/iris/infer")
            .header("authorization", format!("Bearer {}", app.token))
            .header("content-length", bytes.to_string())
            .body(axum::body::Body::from_stream(trickle))
            .unwrap();
        let in_flight = app.clone();
        let request = tokio::spawn(async move { common::send(&in_flight, request).await });
        sender.send(bytes::Bytes::from_static(b"{")).await.unwrap();
        for _ in 0..400 {
            if app.state.body_budget().in_use() >= bytes {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(app.state.body_budget().in_use(), bytes, "the held request reserved its length");
        Hold { sender, request }
    }

    async fn release(self) {
        drop(self.sender);
        let reply = self.request.await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "the held body ended early: not JSON");
    }
}
