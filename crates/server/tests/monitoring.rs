//! Monitoring served end to end (docs/monitoring.md): bundles built with `monitoring:`
//! from fixtures/monitoring (iris, an IsolationForest exported by skl2onnx), outlier scores
//! in V2 REST, gRPC and Seldon responses against scipy's Mahalanobis distances and
//! scikit-learn's `score_samples`, the scores in the audit record and the histogram, and the
//! drift endpoint against `scipy.stats.ks_2samp`, authorized on its own path and audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use palisade_audit::{AuditRecord, Filter};
use palisade_bundle::Store;
use palisade_core::{Tensor, TensorData};
use palisade_protocol::grpc::inference::infer_parameter::ParameterChoice;
use palisade_protocol::grpc::tonic::{self, Request};
use palisade_protocol::grpc::{self as grpc, GrpcInferenceServiceClient};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::{Value, json};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn oracle() -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("fixtures/monitoring/oracle.json")).unwrap()).unwrap()
}

const OWNER: &str = "owners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

/// Builds a bundle of the iris classifier with `monitoring` (YAML under `monitoring:`), as
/// `palisade build` does; the directory holds reference.csv and iforest.onnx.
fn add_monitored(store: &Store, scratch: &Path, name: &str, monitoring: &str) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::copy(fixture("iris_lr_nozipmap"), dir.path().join("model.onnx")).unwrap();
    for file in ["reference.csv", "iforest.onnx"] {
        std::fs::copy(repo().join("fixtures/monitoring").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("name: {name}\nversion: \"1\"\n{OWNER}monitoring:\n{monitoring}"),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    let section = staged.manifest().monitoring.clone().unwrap();
    let forest = section.forest_model().map(|p| p.under(&staged.dir_path()));
    let reference = |field: &'static str| staged.reference(field).map(<[u8]>::to_vec);
    let (record, _) =
        palisade_server::monitoring::build_record(&section, &reference, forest.as_deref(), model.signature())
            .unwrap();
    staged.set_monitoring(&record).unwrap();
    store.commit(staged).unwrap();
}

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

/// `mahal` (Mahalanobis outliers, drift over a window of 60 rows), `forest`
/// (IsolationForest outliers) and `plain` (no monitoring), owned by alice.
fn setup(policies: &[(&str, &str)]) -> Setup {
    setup_with(policies, true)
}

/// [`setup`], without `forest` when `forest` is false (loading it is most of a setup's time).
fn setup_with(policies: &[(&str, &str)], forest: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    add_monitored(
        &store,
        tmp.path(),
        "mahal",
        "  outliers: {method: mahalanobis, reference: reference.csv, quantile: 0.99}\n  drift: {reference: reference.csv, window: 60, alpha: 0.05}\n",
    );
    if forest {
        add_monitored(
            &store,
            tmp.path(),
            "forest",
            "  outliers: {method: isolation_forest, model: iforest.onnx}\n",
        );
    }
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&format!("name: plain\nversion: \"1\"\n{OWNER}")]);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        Some(dir.path().to_owned()),
    );
    Setup { tmp, _policies: dir, app }
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn body(rows: &[Vec<f64>]) -> String {
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    json!({"inputs": [{"name": "X", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}]}).to_string()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn flags(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    palisade_audit::query(&s.tmp.path().join("home/audit"), Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.config.is_none())
        .collect()
}

async fn metrics_text(app: &TestApp) -> String {
    let admin = palisade_server::admin_app(app.state.clone());
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap();
    let res = tower::ServiceExt::oneshot(admin, request).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn mahalanobis_scores_match_scipy_in_rest_seldon_and_the_audit_record() {
    let s = setup_with(&[], false);
    let o = oracle();
    let probes = rows(&o["probes"]);
    let want = floats(&o["mahalanobis"]);
    let threshold = o["mahalanobis_threshold_q99"].as_f64().unwrap();

    let reply = call(&s.app, "POST", "/v2/models/mahal/infer", body(&probes)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let v2 = reply.json();
    let scores = floats(&v2["parameters"]["outlier_score"]);
    assert_eq!(scores.len(), probes.len(), "one score per row");
    for (i, (got, want)) in scores.iter().zip(&want).enumerate() {
        // The row at the mean scores ~4e-7 in both: compare absolutely there.
        assert!((got - want).abs() <= 1e-6 * want.max(1.0), "row {i}: {got} vs scipy {want}");
    }
    let expected_flags: Vec<bool> = want.iter().map(|d| *d > threshold).collect();
    assert_eq!(flags(&v2["parameters"]["is_outlier"]), expected_flags);
    assert!(expected_flags.contains(&true) && expected_flags.contains(&false), "the probes hold both kinds");
    // The prediction itself is unchanged by monitoring.
    let plain = call(&s.app, "POST", "/v2/models/plain/infer", body(&probes)).await.json();
    assert_eq!(v2["outputs"], plain["outputs"]);
    assert!(plain.get("parameters").is_none_or(|p| p.get("outlier_score").is_none()), "{plain}");

    // Seldon Core v1: `meta.tags`, as Seldon's outlier detectors reported.
    let seldon = json!({"data": {"ndarray": probes}}).to_string();
    let reply = call(&s.app, "POST", "/seldon/default/mahal/api/v1.0/predictions", seldon).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let tags = &reply.json()["meta"]["tags"];
    assert_eq!(floats(&tags["outlier_score"]), scores);
    assert_eq!(flags(&tags["is_outlier"]), expected_flags);

    // The audit record of the prediction carries the scores.
    let audited: Vec<AuditRecord> =
        records(&s).into_iter().filter(|r| r.path.as_deref() == Some("/v2/models/mahal/infer")).collect();
    let [record] = &audited[..] else { panic!("{audited:?}") };
    let outliers = record.outliers.as_ref().unwrap();
    assert_eq!(outliers.rows, probes.len() as u64);
    assert_eq!(outliers.outlier_rows, expected_flags.iter().filter(|f| **f).count() as u64);
    assert_eq!(outliers.scores.iter().map(|s| s.unwrap()).collect::<Vec<_>>(), scores);
    let report =
        palisade_audit::verify(&s.tmp.path().join("home/audit"), &palisade_audit::VerifyOptions::default())
            .unwrap();
    assert!(report.ok, "the chain verifies with the new field: {report:?}");

    let text = metrics_text(&s.app).await;
    let count = format!("palisade_outlier_score_count{{model=\"mahal\"}} {}", 2 * probes.len());
    assert!(text.contains(&count), "{count} in {text}");
}

#[tokio::test]
async fn isolation_forest_scores_match_sklearn_score_samples() {
    let s = setup(&[]);
    let o = oracle();
    let probes = rows(&o["probes"]);
    let want = floats(&o["iforest_score_samples"]);
    let reply = call(&s.app, "POST", "/v2/models/forest/infer", body(&probes)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let v2 = reply.json();
    let scores = floats(&v2["parameters"]["outlier_score"]);
    assert_eq!(scores.len(), want.len());
    for (i, (got, want)) in scores.iter().zip(&want).enumerate() {
        // The forest is recognized and scored natively, in f64 as scikit-learn does.
        assert!((got - want).abs() < 1e-6, "row {i}: {got} vs sklearn score_samples {want}");
    }
    // sklearn's predict: -1 for outliers.
    let predicted: Vec<bool> = o["iforest_predict"].as_array().unwrap().iter().map(|p| p == -1).collect();
    assert!(
        floats(&o["iforest_decision_function"]).iter().all(|d| d.abs() > 1e-4),
        "no probe on the boundary"
    );
    assert_eq!(flags(&v2["parameters"]["is_outlier"]), predicted);
    assert!(predicted.contains(&true) && predicted.contains(&false));
    let audited = records(&s);
    let record = audited.iter().find(|r| r.path.as_deref() == Some("/v2/models/forest/infer")).unwrap();
    assert_eq!(
        record.outliers.as_ref().unwrap().scores.iter().map(|s| s.unwrap()).collect::<Vec<_>>(),
        scores
    );
}

#[tokio::test]
async fn grpc_responses_carry_the_scores() {
    let s = setup(&[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_server::serve(listener, s.app.router.clone(), std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let o = oracle();
    let probes = rows(&o["probes"]);
    let data: Vec<f32> = probes.iter().flatten().map(|&x| x as f32).collect();
    let x = Tensor::new("X", vec![probes.len(), 4], TensorData::Fp32(data)).unwrap();
    for (model, want) in [("mahal", "mahalanobis"), ("forest", "iforest_score_samples")] {
        let mut request =
            Request::new(grpc::encode_infer_request(model, None, Some("g"), std::slice::from_ref(&x), true));
        request.metadata_mut().insert("authorization", format!("Bearer {}", s.app.token).parse().unwrap());
        let reply = client.model_infer(request).await.unwrap().into_inner();
        let text = |name: &str| match &reply.parameters[name].parameter_choice {
            Some(ParameterChoice::StringParam(text)) => serde_json::from_str::<Value>(text).unwrap(),
            other => panic!("{name}: {other:?}"),
        };
        let scores = floats(&text("outlier_score"));
        let want = floats(&o[want]);
        assert_eq!(scores.len(), want.len());
        for (got, want) in scores.iter().zip(&want) {
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{model}: {got} vs {want}");
        }
        assert_eq!(flags(&text("is_outlier")).len(), probes.len());
    }
    let audited = records(&s);
    let grpc_record =
        audited.iter().find(|r| r.path.as_deref().is_some_and(|p| p.ends_with("/ModelInfer"))).unwrap();
    assert_eq!(grpc_record.outliers.as_ref().unwrap().rows, probes.len() as u64);
}

fn p_values(report: &Value) -> Vec<f64> {
    report["features"].as_array().unwrap().iter().map(|f| f["p_value"].as_f64().unwrap()).collect()
}

#[tokio::test]
async fn drift_reacts_to_shifted_inputs_as_scipy_says() {
    let s = setup_with(&[], false);
    let o = oracle();
    let empty = call(&s.app, "GET", "/v2/models/mahal/drift", "").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", String::from_utf8_lossy(&empty.body));
    let empty = empty.json();
    assert_eq!(
        (empty["window_rows"].clone(), empty["window"].clone(), empty["drift"].clone()),
        (json!(0), json!(60), json!(false))
    );

    // 60 rows drawn from the reference fill the window: no drift, scipy's p-values.
    let same = rows(&o["window_same"]);
    assert_eq!(call(&s.app, "POST", "/v2/models/mahal/infer", body(&same)).await.status, StatusCode::OK);
    let report = call(&s.app, "GET", "/v2/models/mahal/drift", "").await.json();
    assert_eq!(report["window_rows"], 60);
    assert_eq!(report["drift"], false, "{report}");
    let names: Vec<&str> =
        report["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sepal_length", "sepal_width", "petal_length", "petal_width"]);
    let scipy = |key: &str| -> Vec<f64> {
        o[key].as_array().unwrap().iter().map(|k| k["p_value"].as_f64().unwrap()).collect()
    };
    for (got, want) in p_values(&report).iter().zip(scipy("ks_same")) {
        assert!((got - want).abs() < 1e-9, "{got} vs scipy {want}");
    }

    // The same rows shifted by 1.5 in sepal_length, sent in two requests, replace them.
    let shifted = rows(&o["window_shifted"]);
    for half in shifted.chunks(30) {
        assert_eq!(call(&s.app, "POST", "/v2/models/mahal/infer", body(half)).await.status, StatusCode::OK);
    }
    let report = call(&s.app, "GET", "/v2/models/mahal/versions/1/drift", "").await.json();
    assert_eq!(report["drift"], true, "{report}");
    let drifted: Vec<bool> =
        report["features"].as_array().unwrap().iter().map(|f| f["drift"].as_bool().unwrap()).collect();
    assert_eq!(drifted, [true, false, false, false]);
    for (got, want) in p_values(&report).iter().zip(scipy("ks_shifted")) {
        assert!((got - want).abs() <= 1e-9_f64.max(want * 1e-9), "{got} vs scipy {want}");
    }
    let first = &report["features"][0];
    let corrected = first["corrected_p_value"].as_f64().unwrap();
    assert!(
        (corrected - (first["p_value"].as_f64().unwrap() * 4.0).min(1.0)).abs() < 1e-15,
        "Bonferroni over 4 features"
    );

    let text = metrics_text(&s.app).await;
    let gauge = text
        .lines()
        .find(|l| {
            l.starts_with("palisade_drift_p_value{")
                && l.contains("feature=\"sepal_length\"")
                && l.contains("model=\"mahal\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let value: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - scipy("ks_shifted")[0]).abs() < 1e-20_f64.max(value * 1e-9), "{gauge}");

    // The OpenAPI document lists the route for the model with drift only.
    let openapi = call(&s.app, "GET", "/openapi.json", "").await.json();
    assert!(openapi["paths"]["/v2/models/mahal/drift"]["get"].is_object(), "{}", openapi["paths"]);
    assert!(openapi["paths"].get("/v2/models/plain/drift").is_none());

    // A model without `monitoring.drift`: 501 saying how to add it.
    let reply = call(&s.app, "GET", "/v2/models/plain/drift", "").await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert!(String::from_utf8_lossy(&reply.body).contains("monitoring.drift"));
    assert_eq!(
        call(&s.app, "POST", "/v2/models/mahal/drift", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

const INFER_ONLY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: infer-only
  namespace: default
spec:
  action: ALLOW
  rules:
    - to:
        - operation:
            paths: ["/v2/models/mahal/infer"]
"#;

#[tokio::test]
async fn drift_is_authorized_on_its_own_path_and_audited() {
    let s = setup_with(&[], false);
    let app = &s.app;
    let stranger = token_with(app.state.security(), "bob", json!({"email": "bob@example.com"}));
    for path in ["/v2/models/mahal/drift", "/v2/models/mahal/versions/1/drift"] {
        assert_eq!(call(app, "GET", path, "").await.status, StatusCode::OK, "{path}: owner");
        assert_eq!(
            call_as(app, Some(&stranger), "GET", path, "").await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
        assert_eq!(call_as(app, None, "GET", path, "").await.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let audited: Vec<u16> = records(&s)
        .iter()
        .filter(|r| r.path.as_deref().is_some_and(|p| p.ends_with("/drift")))
        .map(|r| r.status.unwrap())
        .collect();
    assert_eq!(audited, [200, 403, 401, 200, 403, 401]);

    // A policy that lets anyone infer does not let them read drift.
    let s = setup_with(&[("infer-only.yaml", INFER_ONLY)], false);
    let stranger = token_with(s.app.state.security(), "bob", json!({"email": "bob@example.com"}));
    let row = body(&[vec![5.1, 3.5, 1.4, 0.2]]);
    assert_eq!(
        call_as(&s.app, Some(&stranger), "POST", "/v2/models/mahal/infer", row).await.status,
        StatusCode::OK
    );
    let reply = call_as(&s.app, Some(&stranger), "GET", "/v2/models/mahal/drift", "").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[test]
fn bad_references_are_refused_naming_the_field_and_the_problem() {
    let signature = palisade_runtime::prepare(
        &palisade_bundle::manifest::Manifest::parse(
            Path::new("palisade.yaml"),
            format!("name: m\nversion: \"1\"\n{OWNER}").as_bytes(),
        )
        .unwrap(),
        &fixture("iris_lr_nozipmap"),
    )
    .unwrap()
    .signature()
    .clone();
    let section = |yaml: &str| {
        palisade_bundle::manifest::Manifest::parse(
            Path::new("palisade.yaml"),
            format!("name: m\nversion: \"1\"\n{OWNER}monitoring:\n{yaml}").as_bytes(),
        )
        .unwrap()
        .monitoring
        .unwrap()
    };
    let refused = |yaml: &str, csv: &str| {
        let bytes = csv.as_bytes().to_vec();
        let reference = move |_: &'static str| Some(bytes.clone());
        palisade_server::monitoring::build_record(&section(yaml), &reference, None, &signature).unwrap_err()
    };
    let mahal = "  outliers: {method: mahalanobis, reference: r.csv}\n";
    let drift = "  drift: {reference: r.csv}\n";
    let e = refused(mahal, "a,b,c\n1,2,3\n4,5,7\n");
    assert_eq!(e.field, "monitoring.outliers.reference");
    assert!(e.message.contains("3 features") && e.message.contains("takes 4"), "{}", e.message);
    let e = refused(drift, "a,b,c,d\n1,2,3,4\n1,x,3,4\n");
    assert_eq!(e.field, "monitoring.drift.reference");
    assert!(e.message.contains("line 3, column 2 (`b`): `x` is not a number"), "{}", e.message);
    let e = refused(drift, "a,b,c,d\n");
    assert!(e.message.contains("no rows"), "{}", e.message);
    let e = refused(drift, "");
    assert!(e.message.contains("empty"), "{}", e.message);
    let e = refused(mahal, "a,b,c,d\n1,2,3,4\n");
    assert!(e.message.contains("2"), "one row has no covariance: {}", e.message);
    let e = refused(drift, "a,b,c,d\n1,2,,4\n");
    assert!(e.message.contains("row 1, feature `c`"), "{}", e.message);
    assert!(!e.hint.is_empty());

    // Two references with different headers.
    let both = "  outliers: {method: mahalanobis, reference: a.csv}\n  drift: {reference: b.csv}\n";
    let reference = |field: &'static str| {
        Some(
            if field == "monitoring.outliers.reference" {
                "a,b,c,d\n1,2,3,4\n2,3,4,6\n3,1,2,2\n"
            } else {
                "a,b,c,e\n1,2,3,4\n"
            }
            .as_bytes()
            .to_vec(),
        )
    };
    let e =
        palisade_server::monitoring::build_record(&section(both), &reference, None, &signature).unwrap_err();
    assert_eq!(e.field, "monitoring.drift.reference");
    assert!(
        e.message.contains("\"e\"") && e.message.contains("monitoring.outliers.reference"),
        "{}",
        e.message
    );

    // An IsolationForest file that is not one.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("iforest.onnx");
    std::fs::copy(fixture("iris_lr_nozipmap"), &path).unwrap();
    let forest = "  outliers: {method: isolation_forest, model: iforest.onnx}\n";
    let e = palisade_server::monitoring::build_record(&section(forest), &|_| None, Some(&path), &signature)
        .unwrap_err();
    assert_eq!(e.field, "monitoring.outliers.model");
    assert!(e.message.contains("no float output `scores`"), "{}", e.message);
}

/// Builds the iris classifier with the IsolationForest `file` of fixtures/monitoring as its
/// outlier model (with `offset`, or the default); returns the build's notes.
fn add_forest(store: &Store, scratch: &Path, name: &str, file: &str, offset: Option<f64>) -> Vec<String> {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::copy(fixture("iris_lr_nozipmap"), dir.path().join("model.onnx")).unwrap();
    std::fs::copy(repo().join("fixtures/monitoring").join(file), dir.path().join("forest.onnx")).unwrap();
    let offset = offset.map(|o| format!(", offset: {o}")).unwrap_or_default();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "name: {name}\nversion: \"1\"\n{OWNER}monitoring:\n  outliers: {{method: isolation_forest, model: forest.onnx{offset}}}\n"
        ),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    let section = staged.manifest().monitoring.clone().unwrap();
    let forest = section.forest_model().map(|p| p.under(&staged.dir_path()));
    let (record, notes) =
        palisade_server::monitoring::build_record(&section, &|_| None, forest.as_deref(), model.signature())
            .unwrap();
    staged.set_monitoring(&record).unwrap();
    store.commit(staged).unwrap();
    notes
}

fn forests_oracle() -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("fixtures/monitoring/forests.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn every_fixture_forest_is_scored_natively_as_sklearn_at_every_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let oracle = forests_oracle();
    let forests = oracle["forests"].as_array().unwrap();
    for (i, f) in forests.iter().enumerate() {
        let notes = add_forest(
            &store,
            tmp.path(),
            &format!("forest{i}"),
            f["file"].as_str().unwrap(),
            Some(f["offset"].as_f64().unwrap()),
        );
        let trees = f["settings"]["n_estimators"].as_u64().unwrap();
        assert!(notes.iter().any(|n| n.ends_with(&format!("scored natively, {trees} trees"))), "{notes:?}");
    }
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        None,
    );
    for (i, f) in forests.iter().enumerate() {
        let probes = rows(&f["probes"]);
        let want = floats(&f["score_samples"]);
        let decision = floats(&f["decision_function"]);
        assert_eq!(probes.len(), 64);
        for batch in [1, 7, 64] {
            let mut scores = Vec::new();
            let mut outliers = Vec::new();
            for chunk in probes.chunks(batch) {
                let reply = call(&app, "POST", &format!("/v2/models/forest{i}/infer"), body(chunk)).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
                let v2 = reply.json();
                scores.extend(floats(&v2["parameters"]["outlier_score"]));
                outliers.extend(flags(&v2["parameters"]["is_outlier"]));
            }
            for (row, (got, want)) in scores.iter().zip(&want).enumerate() {
                assert!((got - want).abs() < 1e-6, "{}: batch {batch} row {row}: {got} vs {want}", f["file"]);
            }
            // scikit-learn's predict: an outlier when decision_function < 0.
            for (row, (flag, d)) in outliers.iter().zip(&decision).enumerate() {
                if d.abs() > 1e-6 {
                    assert_eq!(*flag, *d < 0.0, "{}: row {row}, decision_function {d}", f["file"]);
                }
            }
            assert_eq!(scores.len(), 64);
        }
    }
}

#[tokio::test]
async fn an_export_not_recognized_exactly_is_run_as_its_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let oracle = forests_oracle();
    let altered = &oracle["altered"];
    let notes = add_forest(&store, tmp.path(), "altered", altered["file"].as_str().unwrap(), None);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("scored by running its graph: not recognized exactly") && n.contains("0.6")),
        "{notes:?}"
    );
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        None,
    );
    let probes = rows(&altered["probes"]);
    let reply = call(&app, "POST", "/v2/models/altered/infer", body(&probes)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let scores = floats(&reply.json()["parameters"]["outlier_score"]);
    // The graph's own answer (decision_function) plus the offset, not scikit-learn's score.
    let want: Vec<f64> = floats(&altered["onnxruntime_scores"]).iter().map(|d| d - 0.5).collect();
    let sklearn = floats(&oracle["forests"][0]["score_samples"]);
    assert_eq!(scores.len(), want.len());
    for (got, want) in scores.iter().zip(&want) {
        assert!((got - want).abs() < 1e-5, "{got} vs onnxruntime {want}");
    }
    assert!(scores.iter().zip(&sklearn).any(|(g, s)| (g - s).abs() > 1e-3), "the altered graph differs");
}

#[test]
fn an_offset_other_than_the_exports_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = tempfile::tempdir_in(tmp.path()).unwrap();
    std::fs::copy(fixture("iris_lr_nozipmap"), dir.path().join("model.onnx")).unwrap();
    std::fs::copy(repo().join("fixtures/monitoring/iforest_contamination.onnx"), dir.path().join("f.onnx"))
        .unwrap();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("name: c\nversion: \"1\"\n{OWNER}monitoring:\n  outliers: {{method: isolation_forest, model: f.onnx}}\n"),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    let section = staged.manifest().monitoring.clone().unwrap();
    let forest = section.forest_model().map(|p| p.under(&staged.dir_path()));
    let e =
        palisade_server::monitoring::build_record(&section, &|_| None, forest.as_deref(), model.signature())
            .unwrap_err();
    assert_eq!(e.field, "monitoring.outliers.offset");
    // contamination=0.1 fitted offset_ = -0.58659...; the default is -0.5.
    assert!(e.message.contains("it is -0.5,") && e.message.contains("offset_ = -0.5865921"), "{}", e.message);
    assert!(e.hint.contains("offset_"), "{}", e.hint);
}
