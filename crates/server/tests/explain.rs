//! Explanations served end to end: bundles built with `explainer:` (TreeSHAP covers from
//! the background, KernelSHAP rows), `POST .../explain` and its KServe alias against
//! shap's oracle values and a brute-force Shapley computation, authorization on the
//! explain path of its own (a policy that allows `infer` does not allow `explain`), and
//! one audit record per explanation, allowed or not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::http::StatusCode;
use common::*;
use palisade_audit::AuditRecord;
use palisade_bundle::Store;
use palisade_bundle::manifest::ExplainerKind;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::{Value, json};

const TOL: f64 = 1e-6;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn oracle(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join(format!("fixtures/explain/{name}.json"))).unwrap())
        .unwrap()
}

fn csv(n_features: usize, rows: &[Value]) -> String {
    let mut text = (0..n_features).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",") + "\n";
    for row in rows {
        let cells: Vec<String> =
            row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap().to_string()).collect();
        text += &(cells.join(",") + "\n");
    }
    text
}

/// Builds a bundle with an explainer of `kind`, as `palisade build` does, into `store`.
fn add_explained(
    store: &Store,
    scratch: &Path,
    onnx: &Path,
    manifest: &str,
    kind: ExplainerKind,
    background: &str,
) {
    let manifest = format!("{manifest}explainer:\n  type: {}\n  background: bg.csv\n", kind.as_str());
    common::add_explained(store, scratch, onnx, &manifest, background);
}

const OWNER: &str = "owners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

/// wine (RF classifier, TreeShap), diabetes (GB regressor, TreeShap), iris (LR, KernelShap
/// over 3 rows) and plain (iris LR, no explainer), owned by alice, namespace `default`.
fn setup(policies: &[(&str, &str)]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    for (name, fixture) in [("wine", "wine_rf"), ("diabetes", "diabetes_gb")] {
        let o = oracle(fixture);
        let n = o["n_features"].as_u64().unwrap() as usize;
        add_explained(
            &store,
            tmp.path(),
            &repo().join(format!("fixtures/explain/{fixture}.onnx")),
            &format!("name: {name}\nversion: \"1\"\n{OWNER}"),
            ExplainerKind::TreeShap,
            &csv(n, o["background"].as_array().unwrap()),
        );
    }
    add_explained(
        &store,
        tmp.path(),
        &fixture("iris_lr_nozipmap"),
        &format!("name: iris\nversion: \"1\"\n{OWNER}"),
        ExplainerKind::KernelShap,
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n",
    );
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&format!("name: plain\nversion: \"1\"\n{OWNER}")]);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig { inline_below: std::time::Duration::ZERO, ..EngineConfig::default() },
        ServerConfig::default(),
        Platform::defaults(),
        Some(dir.path().to_owned()),
    );
    Setup { tmp, _policies: dir, app }
}

fn body(rows: &[Vec<f64>]) -> String {
    let n = rows[0].len();
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    json!({"inputs": [{"name": "X", "shape": [rows.len(), n], "datatype": "FP32", "data": data}]}).to_string()
}

fn rows_of(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

/// The oracle's rows without missing values (JSON cannot carry NaN; row 0 of each
/// fixture has one), with their indices in the oracle.
fn complete_rows(o: &Value) -> (Vec<usize>, Vec<Vec<f64>>) {
    o["rows"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_array().unwrap().iter().all(Value::is_number))
        .map(|(i, r)| (i, r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>()))
        .unzip()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[tokio::test]
async fn tree_shap_over_http_matches_shap_and_adds_up() {
    let s = setup(&[]);
    for (name, fixture) in [("wine", "wine_rf"), ("diabetes", "diabetes_gb")] {
        check_tree_shap(&s.app, name, fixture).await;
    }
}

/// `POST /v2/models/{name}/explain` on the oracle `fixture`'s complete rows: shap's values
/// and expected values within `TOL`, additivity, and onnxruntime's raw margins.
async fn check_tree_shap(app: &TestApp, name: &str, fixture: &str) {
    {
        let o = oracle(fixture);
        let (index, rows) = complete_rows(&o);
        assert!(rows.len() >= 7);
        let reply = call(app, "POST", &format!("/v2/models/{name}/explain"), body(&rows)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        let e = reply.json();
        assert_eq!(e["meta"]["name"], "TreeShap");
        let shap = e["data"]["shap_values"].as_array().unwrap();
        let want = o["shap_values"].as_array().unwrap();
        assert_eq!(shap.len(), want.len(), "{name}: one matrix per output");
        let mut worst = 0.0f64;
        for (k, (got, want)) in shap.iter().zip(want).enumerate() {
            let got = rows_of(got);
            assert_eq!(got.len(), rows.len());
            for (r, row) in got.iter().enumerate() {
                for (j, g) in row.iter().enumerate() {
                    worst = worst.max((g - f(&want[index[r]][j])).abs());
                }
            }
            let expected = f(&e["data"]["expected_value"][k]);
            assert!((expected - f(&o["expected_value"][k])).abs() < TOL, "{name} expected value {k}");
            for (r, row) in got.iter().enumerate() {
                let margin = f(&e["data"]["raw"]["raw_prediction"][r][k]);
                let sum = expected + row.iter().sum::<f64>();
                assert!(
                    (sum - margin).abs() < TOL,
                    "{name}: additivity row {r} output {k}: {sum} vs {margin}"
                );
                let ort = f(&o["onnxruntime_raw_margins"][index[r]][k]);
                // onnxruntime sums in f32: equal to its rounding.
                assert!(
                    (margin - ort).abs() <= 1e-6 * ort.abs().max(1.0),
                    "{name}: margin row {r}: {margin} vs onnxruntime {ort}"
                );
            }
        }
        assert!(worst < TOL, "{name}: largest difference from shap {worst}");
        assert_eq!(e["data"]["raw"]["prediction"].as_array().unwrap().len(), rows.len());
        assert_eq!(e["data"]["feature_names"].as_array().unwrap().len(), rows[0].len());
    }
}

#[tokio::test]
async fn tree_shap_explains_per_feature_preprocessing_and_opset_5_ensembles() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    // (model, ONNX file, oracle): an Imputer and a Scaler before a random forest; a Scaler
    // before gradient boosting; the diabetes forest rewritten as a TreeEnsemble (opset 5).
    let models = [
        ("imputed", "wine_imputed_rf", "wine_imputed_rf"),
        ("scaled", "diabetes_scaled_gb", "diabetes_scaled_gb"),
        ("opset5", "diabetes_rf_opset5", "diabetes_rf"),
    ];
    for (name, file, fixture) in models {
        let o = oracle(fixture);
        let n = o["n_features"].as_u64().unwrap() as usize;
        add_explained(
            &store,
            tmp.path(),
            &repo().join(format!("fixtures/explain/{file}.onnx")),
            &format!("name: {name}\nversion: \"1\"\n{OWNER}"),
            ExplainerKind::TreeShap,
            &csv(n, o["background"].as_array().unwrap()),
        );
    }
    assert_eq!(oracle("wine_imputed_rf")["preprocessing"], json!(["Imputer", "Scaler"]));
    assert_eq!(oracle("diabetes_scaled_gb")["preprocessing"], json!(["Scaler"]));
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        None,
    );
    for (name, _, fixture) in models {
        check_tree_shap(&app, name, fixture).await;
    }
}

#[tokio::test]
async fn kernel_shap_matches_brute_force_shapley_values() {
    let s = setup(&[]);
    let background = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
    let x = [5.9, 3.0, 5.1, 1.8];
    // Every coalition's synthetic rows, through the model's own infer endpoint.
    let mut synthetic = Vec::new();
    for mask in 0..16u32 {
        for b in &background {
            synthetic
                .push((0..4).map(|i| if mask >> i & 1 == 1 { x[i] } else { b[i] }).collect::<Vec<f64>>());
        }
    }
    let reply = call(&s.app, "POST", "/v2/models/iris/infer", body(&synthetic)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let out = reply.json();
    let probabilities = out["outputs"].as_array().unwrap().iter().find(|o| o["datatype"] == "FP32").unwrap();
    let p: Vec<f64> = probabilities["data"].as_array().unwrap().iter().map(f).collect();
    let classes = 3;
    let v =
        |mask: u32, k: usize| (0..3).map(|b| p[((mask as usize) * 3 + b) * classes + k]).sum::<f64>() / 3.0;
    let fact = |n: u32| (1..=n).product::<u32>() as f64;
    let reply = call(&s.app, "POST", "/v2/models/iris/explain", body(&[x.to_vec()])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let e = reply.json();
    assert_eq!(e["meta"]["name"], "KernelShap");
    assert_eq!(e["meta"]["params"]["exact"], true);
    assert_eq!(
        e["data"]["feature_names"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    for k in 0..classes {
        assert!((f(&e["data"]["expected_value"][k]) - v(0, k)).abs() < TOL);
        for i in 0..4u32 {
            let mut phi = 0.0;
            for mask in 0..16u32 {
                if mask >> i & 1 == 0 {
                    let size = mask.count_ones();
                    phi += fact(size) * fact(3 - size) / fact(4) * (v(mask | 1 << i, k) - v(mask, k));
                }
            }
            let got = f(&e["data"]["shap_values"][k][0][i as usize]);
            assert!((got - phi).abs() < TOL, "class {k} feature {i}: {got} vs brute force {phi}");
        }
    }
}

#[tokio::test]
async fn kserve_alias_and_version_path_answer_the_same() {
    let s = setup(&[]);
    let o = oracle("diabetes_gb");
    let (_, rows) = complete_rows(&o);
    let v2 = call(&s.app, "POST", "/v2/models/diabetes/explain", body(&rows)).await.json();
    let versioned = call(&s.app, "POST", "/v2/models/diabetes/versions/1/explain", body(&rows)).await;
    assert_eq!(versioned.status, StatusCode::OK);
    assert_eq!(versioned.json()["data"], v2["data"]);
    let instances = json!({"instances": rows}).to_string();
    let kserve = call(&s.app, "POST", "/v1/models/diabetes:explain", instances).await;
    assert_eq!(kserve.status, StatusCode::OK, "{}", String::from_utf8_lossy(&kserve.body));
    assert_eq!(kserve.json()["data"]["shap_values"], v2["data"]["shap_values"]);
    let seldon = json!({"data": {"ndarray": rows}}).to_string();
    for path in ["/seldon/default/diabetes/api/v1.0/explain", "/seldon/diabetes/api/v1.0/explain"] {
        let reply = call(&s.app, "POST", path, seldon.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["data"]["shap_values"], v2["data"]["shap_values"], "{path}");
    }
    // Several models are served: the unnamed Seldon route names none (Seldon's error body).
    let single = call(&s.app, "POST", "/api/v1.0/explain", seldon).await;
    assert_eq!(single.status, StatusCode::NOT_FOUND);
    assert!(single.json()["status"].is_object());
    // A model without an explainer: 501, after authorization.
    let plain = call(&s.app, "POST", "/v2/models/plain/explain", IRIS_ROW).await;
    assert_eq!(plain.status, StatusCode::NOT_IMPLEMENTED);
    assert!(String::from_utf8_lossy(&plain.body).contains("explainer:"));
    // Bad bodies are the caller's error.
    let bad = call(&s.app, "POST", "/v2/models/diabetes/explain", IRIS_ROW).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&bad.body));
    let many = body(&vec![rows[0].clone(); palisade_server::explain::MAX_EXPLAIN_ROWS + 1]);
    let too_many = call(&s.app, "POST", "/v2/models/diabetes/explain", many).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&too_many.body).contains("at most 1000"));
    let get = call(&s.app, "GET", "/v2/models/diabetes/explain", "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Allows person_a to infer with wine, and nothing else.
const INFER_ONLY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: infer-only
  namespace: default
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            requestPrincipals: ["*"]
      to:
        - operation:
            methods: ["POST"]
            paths: ["/v2/models/wine/infer", "/v1/models/wine:predict", "/seldon/default/wine/api/v1.0/predictions"]
      when:
        - key: "request.auth.claims[email]"
          values: ["person_a@company.com"]
"#;

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

#[tokio::test]
async fn explain_is_authorized_on_its_own_path_and_audited() {
    let s = setup(&[]);
    let app = &s.app;
    let row = body(&complete_rows(&oracle("wine_rf")).1[..1]);
    let stranger = token_with(app.state.security(), "bob", json!({"email": "bob@example.com"}));
    // No ALLOW policy: only the owners.
    assert_eq!(call(app, "POST", "/v2/models/wine/explain", row.clone()).await.status, StatusCode::OK);
    for path in ["/v2/models/wine/explain", "/v2/models/wine/versions/1/explain"] {
        let reply = call_as(app, Some(&stranger), "POST", path, row.clone()).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let reply = call_as(app, None, "POST", path, row.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let audited = records(&s);
    let explains: Vec<&AuditRecord> =
        audited.iter().filter(|r| r.path.as_deref().is_some_and(|p| p.ends_with("/explain"))).collect();
    assert_eq!(explains.len(), 5, "one record per explanation, allowed or not");
    let statuses: Vec<u16> = explains.iter().map(|r| r.status.unwrap()).collect();
    assert_eq!(statuses, [200, 403, 401, 403, 401]);
    assert_eq!(explains[0].model.as_ref().unwrap().name, "wine");
    assert!(explains[0].request_sha256.is_some());
}

#[tokio::test]
async fn a_policy_that_allows_infer_does_not_allow_explain() {
    let s = setup(&[("infer-only.yaml", INFER_ONLY)]);
    let app = &s.app;
    let rows = complete_rows(&oracle("wine_rf")).1;
    let row = body(&rows[..1]);
    let person_a = token_with(app.state.security(), "a", json!({"email": "person_a@company.com"}));
    let a = Some(person_a.as_str());
    assert_eq!(call_as(app, a, "POST", "/v2/models/wine/infer", row.clone()).await.status, StatusCode::OK);
    let instances = json!({"instances": &rows[..1]}).to_string();
    assert_eq!(
        call_as(app, a, "POST", "/v1/models/wine:predict", instances.clone()).await.status,
        StatusCode::OK
    );
    let seldon = json!({"data": {"ndarray": &rows[..1]}}).to_string();
    let predictions = "/seldon/default/wine/api/v1.0/predictions";
    assert_eq!(call_as(app, a, "POST", predictions, seldon.clone()).await.status, StatusCode::OK);
    for path in ["/seldon/default/wine/api/v1.0/explain", "/seldon/wine/api/v1.0/explain"] {
        let reply = call_as(app, a, "POST", path, seldon.clone()).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(reply.json()["status"].is_object(), "Seldon's error body");
    }
    for path in [
        "/v2/models/wine/explain",
        "/v2/models/wine/versions/1/explain",
        "/v2/models/wine/infer/../explain",
        "/v2/models/wine/./explain",
        "/v2/models//wine/explain",
        "/v2/models/wine/%65xplain",
        "/v2/models/wine/EXPLAIN",
        "/v2/models/wine%2Fexplain",
        "/v2/models/wine/explain%00",
        "/v2/models/wine/infer%2F..%2Fexplain",
        "/v2/models/wine/explain/",
        "/v1/models/wine:explain",
        "/v1/models/wine%3Aexplain",
    ] {
        let reply = call_as(app, a, "POST", path, row.clone()).await;
        assert_ne!(reply.status, StatusCode::OK, "{path} must not be served to an infer-only caller");
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST].contains(&reply.status),
            "{path}: {}",
            reply.status
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("shap_values"), "{path}");
    }
    // The exact explain paths are refused by authorization (403), not by routing.
    for path in ["/v2/models/wine/explain", "/v1/models/wine:explain", "/v2/models/wine/%65xplain"] {
        let body = if path.starts_with("/v1") { instances.clone() } else { row.clone() };
        assert_eq!(call_as(app, a, "POST", path, body).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    // The explicit policy replaced the owner default: the owner is refused too.
    assert_eq!(call(app, "POST", "/v2/models/wine/explain", row).await.status, StatusCode::FORBIDDEN);
}

/// The OpenAPI document lists `explain` for the models that have an explainer, and only
/// for them; its example runs and answers what the document says.
#[tokio::test]
async fn openapi_lists_explain_for_explained_models_and_its_example_runs() {
    let s = setup(&[]);
    let doc = call(&s.app, "GET", "/openapi.json", "").await.json();
    let paths = doc["paths"].as_object().unwrap();
    for name in ["wine", "diabetes", "iris"] {
        let op = &paths[&format!("/v2/models/{name}/explain")]["post"];
        assert_eq!(op["operationId"], format!("explain_{name}"));
        let example = op["requestBody"]["content"]["application/json"]["example"].to_string();
        let reply = call(&s.app, "POST", &format!("/v2/models/{name}/explain"), example).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", String::from_utf8_lossy(&reply.body));
        let e = reply.json();
        let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        for field in schema["required"].as_array().unwrap() {
            assert!(e.get(field.as_str().unwrap()).is_some(), "{name}: {field} missing");
        }
        for field in schema["properties"]["data"]["required"].as_array().unwrap() {
            assert!(e["data"][field.as_str().unwrap()].is_array(), "{name}: data.{field}");
        }
    }
    assert!(!paths.contains_key("/v2/models/plain/explain"), "plain has no explainer");
    assert!(paths.contains_key("/v2/models/plain/infer"));
}
