//! The operator against a fake API server (tower-test, as kube-rs's own controller tests
//! do): create, update, scale, delete with the finalizer, status conditions, backoff, and
//! that an unchanged resource applies nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use palisade_k8s::lease::LeaderLease;
use palisade_k8s::operator::{self, Context, FINALIZER};
use palisade_k8s::{Error, ModelDeployment};
use serde_json::{Value, json};

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// What the fake API server holds.
#[derive(Default)]
struct State {
    calls: Vec<Call>,
    objects: HashMap<String, Value>,
    md: Value,
    ready: bool,
    fail_applies: bool,
    policies: Vec<Value>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn start(md: &Value) -> (Fake, Client) {
        let fake = Fake(Arc::new(Mutex::new(State { md: md.clone(), ..State::default() })));
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = fake.0.clone();
        tokio::spawn(async move {
            // Watches are left open and silent: the controller then works from its lists.
            let mut watches = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                if request.uri().query().is_some_and(|q| q.contains("watch=true")) {
                    watches.push(send);
                    continue;
                }
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body,
                };
                let (code, answer) = answer(&mut state.lock().unwrap(), call);
                let response =
                    Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap()));
                send.send_response(response.unwrap());
            }
        });
        (fake, Client::new(service, "default"))
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    fn clear(&self) {
        self.0.lock().unwrap().calls.clear();
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.0.lock().unwrap());
    }

    /// The ModelDeployment as the API server now has it.
    fn md(&self) -> ModelDeployment {
        serde_json::from_value(self.0.lock().unwrap().md.clone()).unwrap()
    }
}

fn not_found() -> (u16, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "not found", "reason": "NotFound", "code": 404});
    (404, status)
}

fn answer(state: &mut State, call: Call) -> (u16, Value) {
    state.calls.push(call.clone());
    let path = call.path.as_str();
    if path.contains("/modeldeployments/") {
        if path.ends_with("/status") {
            if let Some(status) = call.body.get("status") {
                state.md["status"] = status.clone();
            }
        } else if call.method == "PATCH" {
            // The finalizer's JSON patch: apply its add/remove of metadata.finalizers.
            for op in call.body.as_array().cloned().unwrap_or_default() {
                match op["op"].as_str() {
                    Some("add") if op["path"] == "/metadata/finalizers" => {
                        state.md["metadata"]["finalizers"] = op["value"].clone()
                    }
                    Some("add") if op["path"] == "/metadata/finalizers/-" => {
                        state.md["metadata"]["finalizers"] = json!([op["value"].clone()])
                    }
                    Some("remove") => {
                        state.md["metadata"]["finalizers"] = json!([]);
                    }
                    _ => {}
                }
            }
        }
        return (200, state.md.clone());
    }
    if call.method == "GET" && path.ends_with("/modeldeployments") {
        let list = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ModelDeploymentList",
            "metadata": {"resourceVersion": "1"}, "items": [state.md]});
        return (200, list);
    }
    if call.method == "GET" && (path.ends_with("/deployments") || path.ends_with("/statefulsets")) {
        let list = json!({"apiVersion": "apps/v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []});
        return (200, list);
    }
    if path.ends_with("/authorizationpolicies") {
        let list = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicyList",
            "metadata": {"resourceVersion": "1"}, "items": state.policies});
        return (200, list);
    }
    match call.method.as_str() {
        "GET" => state.objects.get(path).cloned().map(|o| (200, o)).unwrap_or_else(not_found),
        "PATCH" => {
            if state.fail_applies {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "etcd is down", "reason": "InternalError", "code": 500});
                return (500, status);
            }
            let mut object = call.body.clone();
            if object["kind"] == "Deployment" || object["kind"] == "StatefulSet" {
                let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let ready = if state.ready { replicas } else { 0 };
                object["status"] = json!({"replicas": replicas, "readyReplicas": ready});
            }
            state.objects.insert(path.to_owned(), object.clone());
            (200, object)
        }
        "POST" => {
            let name = call.body["metadata"]["name"].as_str().unwrap_or_default();
            let key = format!("{path}/{name}");
            if state.objects.contains_key(&key) {
                return (
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "exists", "reason": "AlreadyExists", "code": 409}),
                );
            }
            state.objects.insert(key, call.body.clone());
            (201, call.body)
        }
        "PUT" => {
            state.objects.insert(path.to_owned(), call.body.clone());
            (200, call.body)
        }
        "DELETE" => match state.objects.remove(path) {
            Some(object) => (200, object),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn example(variants: Value, replicas: i64) -> Value {
    json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "0000-1111", "generation": 1,
            "finalizers": [FINALIZER]},
        "spec": {
            "variants": variants,
            "replicas": replicas,
            "owners": ["alice@example.com"],
            "tls": {"secretName": "iris-tls"},
        }
    })
}

fn one_variant() -> Value {
    example(json!([{"name": "v1", "image": "registry.example.com/iris:1", "traffic": 100}]), 2)
}

async fn reconcile(fake: &Fake, client: &Client) -> Result<Action, Error> {
    operator::reconcile(Arc::new(fake.md()), Context::new(client.clone())).await
}

fn applies(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.query.contains("fieldManager=palisade-operator"))
        .collect()
}

fn status_patches(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.path.ends_with("/status")).count()
}

fn condition(md: &ModelDeployment, type_: &str) -> (String, String) {
    let status = md.status.as_ref().unwrap();
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn the_controller_reconciles_what_it_lists_and_stops_on_shutdown() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.ready = true);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(operator::run(client, async move {
        let _ = stopped.await;
    }));
    for _ in 0..200 {
        if fake.md().status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(condition(&fake.md(), "Ready").0, "True");
    let calls = fake.calls();
    assert_eq!(applies(&calls).len(), 8, "{calls:?}");
    let watched: Vec<&str> = calls.iter().filter(|c| c.method == "GET").map(|c| c.path.as_str()).collect();
    for path in [
        "/apis/palisade.dev/v1alpha1/modeldeployments",
        "/apis/apps/v1/deployments",
        "/apis/security.istio.io/v1/authorizationpolicies",
    ] {
        assert!(watched.contains(&path), "{path} not listed: {watched:?}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), controller).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_new_deployment_gets_its_finalizer_first() {
    let mut md = one_variant();
    md["metadata"].as_object_mut().unwrap().remove("finalizers");
    let (fake, client) = Fake::start(&md);
    reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].path.ends_with("/modeldeployments/iris"));
    assert_eq!(fake.md().metadata.finalizers, Some(vec![FINALIZER.to_owned()]));
}

#[tokio::test]
async fn create_applies_every_object_server_side_with_owner_references() {
    let (fake, client) = Fake::start(&one_variant());
    let action = reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    let applied = applies(&calls);
    let kinds: Vec<&str> = applied.iter().map(|c| c.body["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Service"
        ]
    );
    for call in &applied {
        assert!(call.query.contains("force=true"), "{}", call.query);
        assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "0000-1111");
        assert_eq!(call.body["metadata"]["ownerReferences"][0]["controller"], true);
    }
    assert_eq!(status_patches(&calls), 1);
    let md = fake.md();
    assert_eq!(condition(&md, "Ready"), ("False".into(), "ReplicasNotReady".into()));
    assert_eq!(condition(&md, "Progressing"), ("True".into(), "ReplicasNotReady".into()));
    assert_eq!(md.status.as_ref().unwrap().observed_generation, Some(1));
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn ready_replicas_make_it_ready_and_a_second_reconcile_applies_nothing() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.ready = true);
    reconcile(&fake, &client).await.unwrap();
    let md = fake.md();
    assert_eq!(condition(&md, "Ready"), ("True".into(), "ReplicasReady".into()));
    assert_eq!(condition(&md, "Degraded").0, "False");
    let status = md.status.as_ref().unwrap();
    assert_eq!(status.replicas, 2);
    assert_eq!(status.selector, "palisade.dev/deployment=iris");
    assert_eq!(status.variants[0].ready_replicas, 2);

    fake.clear();
    let action = reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    assert!(applies(&calls).is_empty(), "an unchanged resource applied: {calls:?}");
    assert_eq!(status_patches(&calls), 0, "an unchanged status was patched: {calls:?}");
    assert!(calls.iter().all(|c| c.method == "GET"), "{calls:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn an_update_and_a_scale_apply_again() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.ready = true);
    reconcile(&fake, &client).await.unwrap();

    // kubectl scale: the scale subresource writes spec.replicas, the generation moves.
    fake.set(|s| {
        s.md["spec"]["replicas"] = json!(5);
        s.md["metadata"]["generation"] = json!(2);
        s.calls.clear();
    });
    reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    let deployment = applies(&calls).into_iter().find(|c| c.body["kind"] == "Deployment").unwrap();
    assert_eq!(deployment.body["spec"]["replicas"], 5);
    assert_eq!(fake.md().status.unwrap().replicas, 5);

    // An update: a second variant takes 10% of the traffic behind a router (which calls
    // the variants with workload certificates from the built-in CA).
    fake.set(|s| {
        s.md["spec"]["variants"] = json!([
            {"name": "v1", "image": "registry.example.com/iris:1", "traffic": 90},
            {"name": "v2", "image": "registry.example.com/iris:2", "traffic": 10},
        ]);
        s.md["spec"]["tls"] = json!({"builtInCa": {"secretName": "palisade-ca"}});
        s.md["metadata"]["generation"] = json!(3);
        s.calls.clear();
    });
    reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    let names: Vec<&str> =
        applies(&calls).iter().map(|c| c.body["metadata"]["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"iris-v2") && names.contains(&"iris-router") && names.contains(&"iris-traffic"),
        "{names:?}"
    );
    let md = fake.md();
    assert_eq!(md.status.as_ref().unwrap().observed_generation, Some(3));
    assert_eq!(md.status.as_ref().unwrap().variants.len(), 2);
}

#[tokio::test]
async fn a_cluster_policy_change_applies_the_policies_again() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.ready = true);
    reconcile(&fake, &client).await.unwrap();
    let digest = |fake: &Fake| {
        let state = fake.0.lock().unwrap();
        let deployment = &state.objects["/apis/apps/v1/namespaces/ml/deployments/iris-v1"];
        deployment["spec"]["template"]["metadata"]["annotations"]["palisade.dev/config-digest"].clone()
    };
    let before = digest(&fake);
    fake.set(|s| {
        s.policies = vec![json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "analysts", "namespace": "ml", "resourceVersion": "7"},
            "spec": {"action": "ALLOW", "rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["analysts"]}]}]}})];
        s.calls.clear();
    });
    reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    let policies =
        applies(&calls).into_iter().find(|c| c.body["metadata"]["name"] == "iris-policies").unwrap();
    let file = policies.body["data"]["cluster-analysts.yaml"].as_str().unwrap();
    assert!(file.contains("analysts") && !file.contains("resourceVersion"), "{file}");
    // The pods roll, so that every replica serves the new policies.
    let after = digest(&fake);
    assert_eq!(before.as_str().unwrap().len(), 64);
    assert_ne!(before, after);
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_with_the_reason() {
    let md = example(
        json!([
            {"name": "v1", "image": "registry.example.com/iris:1", "traffic": 60},
            {"name": "v2", "image": "registry.example.com/iris:2", "traffic": 30},
        ]),
        1,
    );
    let (fake, client) = Fake::start(&md);
    let action = reconcile(&fake, &client).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(applies(&fake.calls()).is_empty());
    let md = fake.md();
    assert_eq!(condition(&md, "Degraded"), ("True".into(), "InvalidSpec".into()));
    let message = &md.status.unwrap().conditions[0].message;
    assert!(message.contains("must sum to 100, not 90 (v1 60 + v2 30)"), "{message}");
}

#[tokio::test]
async fn delete_removes_the_workloads_then_the_finalizer() {
    let mut md = example(
        json!([
            {"name": "v1", "image": "registry.example.com/iris:1", "traffic": 100},
            {"name": "shadow", "image": "registry.example.com/iris:2", "shadow": true},
        ]),
        1,
    );
    let (fake, client) = Fake::start(&md);
    reconcile(&fake, &client).await.unwrap();
    md = serde_json::to_value(fake.md()).unwrap();
    md["metadata"]["deletionTimestamp"] = json!("2026-12-07T06:00:00Z");
    fake.set(|s| {
        s.md = md;
        s.calls.clear();
    });
    reconcile(&fake, &client).await.unwrap();
    let calls = fake.calls();
    let deleted: Vec<&str> = calls.iter().filter(|c| c.method == "DELETE").map(|c| c.path.as_str()).collect();
    assert_eq!(
        deleted,
        [
            "/apis/apps/v1/namespaces/ml/deployments/iris-router",
            "/apis/apps/v1/namespaces/ml/deployments/iris-v1",
            "/apis/apps/v1/namespaces/ml/deployments/iris-shadow",
        ]
    );
    let last = calls.last().unwrap();
    assert!(last.method == "PATCH" && last.path.ends_with("/modeldeployments/iris"), "{last:?}");
    assert_eq!(fake.md().metadata.finalizers, Some(vec![]));
}

#[tokio::test]
async fn failures_back_off_exponentially_and_reset_on_success() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.fail_applies = true);
    let ctx = Context::new(client.clone());
    let md = Arc::new(fake.md());
    let mut delays = Vec::new();
    for _ in 0..4 {
        let err = operator::reconcile(md.clone(), ctx.clone()).await.unwrap_err();
        assert!(err.to_string().contains("etcd is down"), "{err}");
        delays.push(operator::error_policy(md.clone(), &err, ctx.clone()));
    }
    let expected: Vec<Action> =
        [5, 10, 20, 40].iter().map(|s| Action::requeue(Duration::from_secs(*s))).collect();
    assert_eq!(delays, expected);
    assert_eq!(operator::backoff(30), Duration::from_secs(300));

    fake.set(|s| s.fail_applies = false);
    operator::reconcile(md.clone(), ctx.clone()).await.unwrap();
    let err = Error::Render("x".into());
    assert_eq!(operator::error_policy(md, &err, ctx), Action::requeue(Duration::from_secs(5)));
}

/// The number BENCHMARKS.md quotes: 100 deployments reconciled (first apply, then an
/// unchanged resync) against the fake API server. Run with `--ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn reconcile_time_for_100_deployments() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| s.ready = true);
    let ctx = Context::new(client.clone());
    let mut first = Duration::ZERO;
    let mut again = Duration::ZERO;
    for i in 0..100 {
        let mut md = one_variant();
        md["metadata"]["name"] = json!(format!("model-{i}"));
        fake.set(|s| s.md = md);
        let started = Instant::now();
        operator::reconcile(Arc::new(fake.md()), ctx.clone()).await.unwrap();
        first += started.elapsed();
        let started = Instant::now();
        operator::reconcile(Arc::new(fake.md()), ctx.clone()).await.unwrap();
        again += started.elapsed();
    }
    println!(
        "100 ModelDeployments: first reconcile {first:?} in all ({:?} each); unchanged {again:?} ({:?} each)",
        first / 100,
        again / 100
    );
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/palisade-system/leases/palisade-operator";

fn lease(client: &Client, identity: &str) -> LeaderLease {
    let api = kube::Api::<Lease>::namespaced(client.clone(), "palisade-system");
    LeaderLease::new(api, "palisade-operator", identity, Duration::from_secs(3))
}

fn held_by(identity: &str, renewed: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "palisade-operator", "namespace": "palisade-system", "resourceVersion": "1"},
        "spec": {"holderIdentity": identity, "leaseDurationSeconds": 3, "renewTime": renewed,
            "acquireTime": renewed, "leaseTransitions": 4}})
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let (fake, client) = Fake::start(&one_variant());
    lease(&client, "operator-a").acquire().await.unwrap();
    let stored = fake.0.lock().unwrap().objects.get(LEASE).cloned().unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "operator-a");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 3);
}

#[tokio::test]
async fn a_lease_renewed_by_another_replica_is_not_taken() {
    let (fake, client) = Fake::start(&one_variant());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    fake.set(|s| {
        s.objects.insert(LEASE.into(), held_by("operator-b", &now));
    });
    let waited =
        tokio::time::timeout(Duration::from_millis(300), lease(&client, "operator-a").acquire()).await;
    assert!(waited.is_err(), "took a lease another replica holds");
    assert!(fake.calls().iter().all(|c| c.method == "GET"));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let (fake, client) = Fake::start(&one_variant());
    fake.set(|s| {
        s.objects.insert(LEASE.into(), held_by("operator-b", "2026-01-01T00:00:00Z"));
    });
    lease(&client, "operator-a").acquire().await.unwrap();
    let stored = fake.0.lock().unwrap().objects.get(LEASE).cloned().unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "operator-a");
    assert_eq!(stored["spec"]["leaseTransitions"], 5);
    assert_eq!(stored["metadata"]["resourceVersion"], "1", "the replace is conditional on the version read");
}
