//! The resource's checks, the CRD, and what a ModelDeployment renders into.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use palisade_k8s::{Object, parse, render};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(root().join("examples/kubernetes").join(name)).unwrap()
}

fn rendered(name: &str) -> Vec<Object> {
    render(&parse(Path::new(name), &example(name)).unwrap(), &[]).unwrap()
}

fn invalid(name: &str) -> String {
    let text = std::fs::read_to_string(root().join("crates/k8s/tests/invalid").join(name)).unwrap();
    parse(Path::new(name), &text).unwrap_err().to_string()
}

#[test]
fn the_crd_in_deploy_is_the_generated_one() {
    let generated = palisade_k8s::crd_yaml().unwrap();
    let checked_in = std::fs::read_to_string(root().join("deploy/crd.yaml")).unwrap();
    assert!(generated == checked_in, "deploy/crd.yaml is stale: run `palisade k8s crd > deploy/crd.yaml`");
}

#[test]
fn the_crd_has_status_scale_and_descriptions_for_kubectl_explain() {
    let crd: Value = serde_yaml::from_str(&palisade_k8s::crd_yaml().unwrap()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["scale"]["specReplicasPath"], ".spec.replicas");
    assert_eq!(version["subresources"]["scale"]["statusReplicasPath"], ".status.replicas");
    assert_eq!(version["subresources"]["scale"]["labelSelectorPath"], ".status.selector");
    assert!(version["subresources"]["status"].is_object());
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec["description"].as_str().unwrap().contains("traffic split"));
    assert!(spec["properties"]["variants"]["items"]["properties"]["traffic"]["description"].is_string());
    assert_eq!(
        spec["properties"]["variants"]["items"]["properties"]["traffic"]["maximum"].as_f64(),
        Some(100.0)
    );
}

#[test]
fn examples_parse() {
    for name in ["iris.yaml", "canary.yaml", "rps.yaml"] {
        parse(Path::new(name), &example(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}

#[test]
fn invalid_resources_are_refused_with_the_field_and_the_reason() {
    assert_eq!(
        invalid("traffic-sum.yaml"),
        "field `spec.variants[].traffic`: the traffic of the variants must sum to 100, not 90 (a 60 + b 30)"
    );
    assert_eq!(
        invalid("two-shadows.yaml"),
        "field `spec.variants`: at most one variant may be a shadow; 2 are: b, c"
    );
    let unknown = invalid("unknown-field.yaml");
    assert!(
        unknown.starts_with(
            "field `spec.replica`: unknown field `replica`, expected one of `variants`, `replicas`"
        ),
        "{unknown}"
    );
    assert_eq!(
        invalid("replicas-and-autoscaling.yaml"),
        "field `spec.replicas`: set `replicas` or `autoscaling`, not both"
    );
    let mut md = parse(Path::new("iris.yaml"), &example("iris.yaml")).unwrap();
    md.spec.variants[0].name = "router".into();
    let err = md.spec.check().unwrap_err().to_string();
    assert_eq!(
        err,
        "field `spec.variants[0].name`: `router` is the name of Palisade's traffic router; choose another"
    );
    md.spec.variants[0].name = "a-variant-name-too-long".into();
    assert!(md.spec.check().unwrap_err().to_string().contains("at most 20 characters"));
    assert!(invalid("router-without-ca.yaml").starts_with("field `spec.tls`: several variants"));
    let policy = invalid("bad-policy.yaml");
    assert!(policy.contains("spec.authorization.policies[0]") && policy.contains("claimz"), "{policy}");
}

fn kinds(objects: &[Object]) -> Vec<(String, String)> {
    objects.iter().map(|o| (o.kind.clone(), o.name.clone())).collect()
}

#[test]
fn one_variant_is_served_directly() {
    let objects = rendered("iris.yaml");
    let expected = [
        ("ServiceAccount", "iris"),
        ("ConfigMap", "iris-policies"),
        ("ConfigMap", "iris-platform"),
        ("Deployment", "iris-v1"),
        ("Service", "iris-v1"),
        ("PodDisruptionBudget", "iris-v1"),
        ("NetworkPolicy", "iris-v1"),
        ("Service", "iris"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(k, n)| ((*k).into(), (*n).into())).collect();
    assert_eq!(kinds(&objects), expected);
    let front = objects.last().unwrap();
    assert_eq!(front.value["spec"]["selector"]["palisade.dev/variant"], "v1");
    let policies = &objects[1].value["data"];
    assert!(policies["issuers.yaml"].as_str().unwrap().contains("kind: RequestAuthentication"));
    assert!(policies["spec-0.yaml"].as_str().unwrap().contains("iris-analysts"));
    // Rendered without a cluster: no owner reference (no uid yet).
    assert!(objects.iter().all(|o| o.value["metadata"].get("ownerReferences").is_none()));
}

#[test]
fn variants_and_a_shadow_get_a_router_statefulsets_and_autoscalers() {
    let objects = rendered("canary.yaml");
    let names: Vec<String> = kinds(&objects).iter().map(|(k, n)| format!("{k}/{n}")).collect();
    for want in [
        "ConfigMap/fraud-traffic",
        "StatefulSet/fraud-v1",
        "StatefulSet/fraud-v2",
        "StatefulSet/fraud-v3",
        "HorizontalPodAutoscaler/fraud-v3",
        "Deployment/fraud-router",
        "NetworkPolicy/fraud-router",
    ] {
        assert!(names.contains(&want.to_owned()), "{want} missing from {names:?}");
    }
    let traffic = objects.iter().find(|o| o.name == "fraud-traffic").unwrap();
    let traffic = traffic.value["data"]["traffic.yaml"].as_str().unwrap();
    assert!(
        traffic.contains("https://fraud-v2.payments.svc:8080") && traffic.contains("shadow: true"),
        "{traffic}"
    );
    let v1 = objects.iter().find(|o| o.kind == "StatefulSet" && o.name == "fraud-v1").unwrap();
    assert!(v1.value["spec"].get("replicas").is_none(), "the autoscaler owns replicas");
    assert_eq!(
        v1.value["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    let hpa = objects.iter().find(|o| o.kind == "HorizontalPodAutoscaler" && o.name == "fraud-v1").unwrap();
    assert_eq!(hpa.value["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(hpa.value["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
    // Behind a router, a variant accepts model calls from the router's pods only.
    let policy = objects.iter().find(|o| o.kind == "NetworkPolicy" && o.name == "fraud-v1").unwrap();
    assert_eq!(
        policy.value["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["palisade.dev/variant"],
        "router"
    );
    let args = v1.value["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
    let args: Vec<&str> = args.iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--workload-identity", "payments/fraud"]), "{args:?}");
}

#[test]
fn audit_records_are_shipped_on_stdout_unless_the_spec_says_not() {
    let platform = |objects: &[Object]| {
        let map = objects.iter().find(|o| o.kind == "ConfigMap" && o.name.ends_with("-platform")).unwrap();
        map.value["data"]["platform.yaml"].as_str().unwrap().to_owned()
    };
    let shipped = platform(&rendered("iris.yaml"));
    assert!(shipped.contains("  ship:\n    stdout: true\n"), "{shipped}");
    assert!(shipped.contains("signingKey: /home/palisade/audit-keys/audit-signing.pk8"), "{shipped}");
    let off =
        example("canary.yaml").replace("    storage: 5Gi\n", "    storage: 5Gi\n    shipToStdout: false\n");
    let objects = render(&parse(Path::new("off.yaml"), &off).unwrap(), &[]).unwrap();
    assert!(platform(&objects).contains("    stdout: false\n"));
}

#[test]
fn every_pod_is_locked_down_and_probed_on_the_admin_port() {
    for name in ["iris.yaml", "canary.yaml", "rps.yaml"] {
        for object in rendered(name) {
            let Some(pod) = object.value.pointer("/spec/template/spec") else { continue };
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{}", object.name);
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
            assert_eq!(pod["automountServiceAccountToken"], false);
            for container in pod["containers"].as_array().unwrap() {
                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true);
                assert_eq!(security["allowPrivilegeEscalation"], false);
                assert_eq!(security["runAsNonRoot"], true);
                assert_eq!(security["capabilities"]["drop"][0], "ALL");
                assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
                for probe in ["readinessProbe", "livenessProbe"] {
                    assert_eq!(container[probe]["httpGet"]["port"], "admin", "{}", object.name);
                }
            }
        }
    }
}

#[test]
fn requests_per_second_scale_on_the_pods_metric() {
    let objects = rendered("rps.yaml");
    let hpa = objects.iter().find(|o| o.kind == "HorizontalPodAutoscaler").unwrap();
    assert_eq!(hpa.value["spec"]["metrics"][0]["pods"]["metric"]["name"], "palisade_requests_per_second");
    assert_eq!(hpa.value["spec"]["metrics"][0]["pods"]["target"]["averageValue"], "200");
}

#[test]
fn yaml_output_is_multi_document() {
    let yaml = palisade_k8s::to_yaml(&rendered("iris.yaml")).unwrap();
    assert_eq!(yaml.matches("---\n").count(), 8);
    assert!(
        yaml.starts_with("---\napiVersion: v1\nkind: ServiceAccount\n")
            || yaml.contains("kind: ServiceAccount")
    );
}

/// A ModelDeployment file is attacker-sized YAML like any other: the bounded reader refuses
/// nesting, alias bombs and oversized files before anything is built, quickly, naming the
/// file.
#[test]
fn hostile_yaml_is_refused_before_it_is_parsed() {
    let file = Path::new("hostile.yaml");
    let started = std::time::Instant::now();
    let nested =
        format!("apiVersion: palisade.dev/v1alpha1\nkind: ModelDeployment\nspec: {}", "[".repeat(200_000));
    let laughs = {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = format!("*a{}", level - 1);
            text += &format!("a{level}: &a{level} [{}]\n", [previous.as_str(); 10].join(", "));
        }
        text + "apiVersion: palisade.dev/v1alpha1\nkind: ModelDeployment\n"
    };
    let two_documents = "apiVersion: palisade.dev/v1alpha1\nkind: ModelDeployment\n---\nkind: Other\n";
    for (what, text, expected) in [
        ("nesting", nested.as_str(), "nest deeper"),
        ("billion laughs", laughs.as_str(), "alias"),
        ("two documents", two_documents, "document"),
    ] {
        let error = parse(file, text).unwrap_err().to_string();
        assert!(error.starts_with("hostile.yaml:"), "{what}: {error}");
        assert!(error.contains(expected), "{what}: {error}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());

    // A file past 1 MiB is not read whole.
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.yaml");
    std::fs::write(&big, format!("apiVersion: palisade.dev/v1alpha1\n#{}\n", "x".repeat(2 << 20))).unwrap();
    let error = palisade_k8s::parse_file(&big).unwrap_err().to_string();
    assert!(error.contains("big.yaml") && error.contains("larger than 1048576 bytes"), "{error}");
    let missing = palisade_k8s::parse_file(&tmp.path().join("missing.yaml")).unwrap_err().to_string();
    assert!(missing.contains("missing.yaml") && missing.contains("cannot read"), "{missing}");
}
