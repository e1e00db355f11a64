"""Palisade's Kubernetes resources, offline: the CRD, deploy/ and every rendered manifest
pass `kubernetes-validate --strict` (any warning fails the test: an unknown kind is only a
warning there); example ModelDeployments validate against the CRD's own schema, and
invalid ones are refused with a clear message, by the schema or by `palisade k8s render`.

The last test runs against a real cluster, and is skipped unless KUBECONFIG points at one.
"""

import copy
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "kubernetes"
EXAMPLES = sorted((ROOT / "examples" / "kubernetes").glob("*.yaml"))
INVALID = ROOT / "crates" / "k8s" / "tests" / "invalid"
# The oldest Kubernetes the manifests target (k8s-openapi's v1_33) and the newest the
# validator knows.
VERSIONS = ["1.33.0", None]


def palisade(*args, check=True):
    result = subprocess.run([os.environ["PALISADE_BIN"], *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def validate(paths):
    """kubernetes-validate --strict over `paths`; fails on an error or a warning."""
    for version in VERSIONS:
        command = [str(VENV / "bin" / "kubernetes-validate"), "--strict"]
        if version:
            command += ["-k", version]
        result = subprocess.run(command + [str(p) for p in paths], capture_output=True, text=True)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "WARN" not in output and "ERROR" not in output, output
        assert output.count("INFO") >= len(paths), output


@pytest.fixture(scope="module")
def crd(tmp_path_factory):
    path = tmp_path_factory.mktemp("crd") / "crd.yaml"
    path.write_text(palisade("k8s", "crd").stdout)
    return path


def test_crd_and_deploy_validate_strictly(crd):
    deploy = [p for p in sorted((ROOT / "deploy").rglob("*.yaml")) if p.name != "kustomization.yaml"]
    validate([crd, *deploy])
    assert crd.read_text() == (ROOT / "deploy" / "crd.yaml").read_text()


def test_the_crd_schema_is_structural_and_explained(crd):
    """What the API server requires of a CRD schema (structural: a type on every node, no
    references or unions of types) and what `kubectl explain` shows (a description on every
    field), checked offline since no API server runs here."""
    document = yaml.safe_load(crd.read_text())
    root = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = []

    def walk(node, path, named):
        if not (node.get("type") or node.get("x-kubernetes-preserve-unknown-fields")
                or node.get("x-kubernetes-int-or-string")):
            problems.append(f"{path}: no type")
        for key in ("$ref", "oneOf", "not"):
            if key in node:
                problems.append(f"{path}: {key}")
        if "properties" in node and node.get("additionalProperties") is not None:
            problems.append(f"{path}: properties with additionalProperties")
        if named and not node.get("description") and path.count(".") > 1:
            problems.append(f"{path}: no description")
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}", True)
        if "items" in node:
            walk(node["items"], f"{path}[]", False)

    walk(root["properties"]["spec"], "spec", True)
    walk(root["properties"]["status"], "status", True)
    assert problems == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (for its kustomize)")
def test_the_kustomization_builds_and_validates(tmp_path):
    built = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, check=True)
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Namespace",
                     "Role", "RoleBinding", "ServiceAccount"], kinds
    operator = next(d for d in documents if d["kind"] == "Deployment")
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/palisade/operator:0.1.0"
    path = tmp_path / "deploy.yaml"
    path.write_text(built.stdout)
    validate([path])


def test_rbac_is_least_privilege():
    """No wildcard, no Secrets, deletes only of workloads, Leases in its namespace only."""
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))
    cluster = next(d for d in documents if d["kind"] == "ClusterRole")
    for rule in cluster["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"], rule
        if "delete" in rule["verbs"]:
            assert rule["resources"] == ["deployments", "statefulsets"], rule
    assert not any("leases" in rule["resources"] for rule in cluster["rules"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_rendered_manifests_validate_strictly(example, tmp_path):
    rendered = palisade("k8s", "render", str(example)).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    assert len(documents) >= 7
    # One file per document, so that each is counted by the validator's INFO lines.
    paths = []
    for i, document in enumerate(documents):
        path = tmp_path / f"{i:02}-{document['kind']}.yaml"
        path.write_text(yaml.safe_dump(document))
        paths.append(path)
    validate(paths)
    # What the pods read (--policy-dir, --config) is what `palisade serve` accepts.
    for document in documents:
        if document["kind"] != "ConfigMap" or document["metadata"]["name"].endswith("-traffic"):
            continue
        for key, text in document["data"].items():
            path = tmp_path / f"{document['metadata']['name']}-{key}"
            path.write_text(text)
            assert "valid" in palisade("validate", str(path)).stdout


def strict(schema):
    """The CRD's schema as the API server applies it with strict field validation
    (kubectl's default): properties not in the schema are refused, except where the schema
    preserves unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema["properties"]["spec"])
    return schema


@pytest.fixture(scope="module")
def schema(crd):
    document = yaml.safe_load(crd.read_text())
    return strict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


SCHEMA_CHECK = """
import json, sys
import jsonschema
schema, document = json.load(sys.stdin)
validator = jsonschema.Draft4Validator(schema)
print(json.dumps([".".join(str(p) for p in e.absolute_path) + ": " + e.message
                  for e in validator.iter_errors(document)]))
"""


def schema_errors(schema, document):
    """Errors of `document` against `schema`, by the `jsonschema` package that
    kubernetes-validate brings into its virtualenv."""
    result = subprocess.run([str(VENV / "bin" / "python"), "-c", SCHEMA_CHECK], input=json.dumps([schema, document]),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(example, schema):
    assert schema_errors(schema, yaml.safe_load(example.read_text())) == []


def test_the_schema_refuses_an_unknown_field(schema):
    document = yaml.safe_load((INVALID / "unknown-field.yaml").read_text())
    assert schema_errors(schema, document) == [
        "spec: Additional properties are not allowed ('replica' was unexpected)"
    ]


def test_the_schema_refuses_out_of_range_values(schema):
    document = yaml.safe_load((EXAMPLES[0]).read_text())
    document["spec"]["variants"][0]["traffic"] = 150
    document["spec"]["variants"][0]["name"] = "Not_A_Label"
    errors = schema_errors(schema, document)
    assert any("150 is greater than the maximum of 100" in e for e in errors), errors
    assert any("does not match" in e for e in errors), errors


@pytest.mark.parametrize(
    "name, message",
    [
        ("traffic-sum.yaml", "field `spec.variants[].traffic`: the traffic of the variants must sum to 100, not 90 (a 60 + b 30)"),
        ("two-shadows.yaml", "field `spec.variants`: at most one variant may be a shadow; 2 are: b, c"),
        ("unknown-field.yaml", "field `spec.replica`: unknown field `replica`"),
        ("replicas-and-autoscaling.yaml", "field `spec.replicas`: set `replicas` or `autoscaling`, not both"),
        ("bad-policy.yaml", "spec.authorization.policies[0]"),
        ("router-without-ca.yaml", "field `spec.tls`: several variants are served behind Palisade's router"),
    ],
)
def test_render_refuses_what_the_schema_cannot_express(name, message):
    result = palisade("k8s", "render", str(INVALID / name), check=False)
    assert result.returncode == 65, result.stderr
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


def cluster_reachable():
    if not os.environ.get("KUBECONFIG"):
        return False
    try:
        return subprocess.run(["kubectl", "cluster-info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not cluster_reachable(), reason="needs KUBECONFIG pointing at a reachable cluster")
def test_on_a_cluster(tmp_path):
    """Applies deploy/ and a ModelDeployment, waits until it is Ready, and calls the model.

    Needs PALISADE_E2E_OPERATOR_IMAGE and PALISADE_E2E_MODEL_IMAGE (images the cluster can
    pull, built with `palisade image build`), PALISADE_E2E_TOKEN (a token the model
    accepts) and a Secret `iris-tls` in namespace `ml`.
    """
    for variable in ["PALISADE_E2E_OPERATOR_IMAGE", "PALISADE_E2E_MODEL_IMAGE", "PALISADE_E2E_TOKEN"]:
        if not os.environ.get(variable):
            pytest.skip(f"{variable} is not set")

    def kubectl(*args, **kwargs):
        return subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True, **kwargs)

    kubectl("apply", "--server-side", "-k", str(ROOT / "deploy"))
    kubectl("-n", "palisade-system", "set", "image", "deployment/palisade-operator",
            f"operator={os.environ['PALISADE_E2E_OPERATOR_IMAGE']}")
    kubectl("-n", "palisade-system", "rollout", "status", "deployment/palisade-operator", "--timeout=120s")
    document = yaml.safe_load((ROOT / "examples" / "kubernetes" / "iris.yaml").read_text())
    document["spec"]["variants"][0]["image"] = os.environ["PALISADE_E2E_MODEL_IMAGE"]
    document["spec"]["replicas"] = 1
    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(document))
    subprocess.run(["kubectl", "create", "namespace", "ml"], capture_output=True)  # may exist
    kubectl("apply", "-f", str(path))
    kubectl("-n", "ml", "wait", "modeldeployment/iris", "--for=condition=Ready", "--timeout=300s")
    forward = subprocess.Popen(["kubectl", "-n", "ml", "port-forward", "service/iris", "18080:8080"])
    try:
        import time
        import urllib.request
        import ssl

        time.sleep(2)
        request = urllib.request.Request(
            "https://127.0.0.1:18080/v2/models/iris/infer",
            data=json.dumps({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                                         "data": [5.1, 3.5, 1.4, 0.2]}]}).encode(),
            headers={"Authorization": f"Bearer {os.environ['PALISADE_E2E_TOKEN']}",
                     "Content-Type": "application/json"},
        )
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.status == 200
    finally:
        forward.terminate()
        kubectl("delete", "-f", str(path), "--wait=true")
