"""A rendered pod starts, with the kubelet's volumes emulated on disk (no cluster here).

`palisade k8s render` writes pods that run as uid 65532 with a read-only root filesystem,
so everything the server writes is on a volume, and the kubelet hands volumes over in a
shape Palisade's key rules refuse: an emptyDir's root is open to all (mode 2777), a Secret
volume's files are links into a hidden `..DATE` directory, made group-readable by the
`fsGroup` change. This test lays the volumes out that way from the rendered objects (the
ConfigMaps' data, the CA as a Secret, emptyDirs, the StatefulSet's claim), mounts them
where the pod spec says (a `subPath` is created as the kubelet does, with its volume's
mode; a mount inside the home is a link), runs the init container's command, then the
server's, with the rendered arguments (only the ports are changed, to loopback), and calls
it over TLS as a peer would, checking its workload certificate.

What differs from a real node, and why it does not matter here: mounts are links rather
than bind mounts (the key rules check the key file and its directory, which are real
here), the processes run as the test's user rather than 65532, and the issuers'
ConfigMap entry is left out (its JWKS URL is not on this machine; nothing may leave it).
"""

import json
import os
import pathlib
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from conftest import ROOT, palisade_bin

HOME = "/home/palisade"


def run(*args, env=None, check=True):
    result = subprocess.run([palisade_bin(), *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def secret_volume(source, target, default_mode):
    """A Secret volume as the kubelet writes it, group-readable as fsGroup leaves it."""
    data = target / "..2026_12_07_15_00_00.000000001"
    data.mkdir(parents=True)
    for file in sorted(p.name for p in source.iterdir()):
        shutil.copyfile(source / file, data / file)
        os.chmod(data / file, default_mode | 0o040)
        os.symlink(f"..data/{file}", target / file)
    os.symlink(data.name, target / "..data")


class Pod:
    """The rendered pod of one workload, its volumes on disk under `root`."""

    def __init__(self, objects, workload, root, ca_home):
        self.objects = objects
        self.spec = workload["spec"]["template"]["spec"]
        self.root = root
        self.volumes = {}
        for volume in self.spec["volumes"]:
            path = root / "volumes" / volume["name"]
            if "emptyDir" in volume:
                path.mkdir(parents=True)
                os.chmod(path, 0o2777)
            elif "configMap" in volume:
                path.mkdir(parents=True)
                data = self.config_map(volume["configMap"]["name"])["data"]
                for name, text in data.items():
                    if name == "issuers.yaml":
                        continue  # its JWKS URL is not on this machine (see the module doc)
                    # Paths in the home (the audit signing key) point into the emulated one.
                    (path / name).write_text(text.replace(HOME + "/", f"{root / 'home'}/"))
            elif "secret" in volume:
                secret_volume(ca_home / "ca", path, volume["secret"]["defaultMode"])
            else:
                pytest.fail(f"unexpected volume {volume}")
            self.volumes[volume["name"]] = path
        for claim in workload["spec"].get("volumeClaimTemplates", []):
            path = root / "volumes" / claim["metadata"]["name"]
            path.mkdir(parents=True)
            os.chmod(path, 0o2770)
            self.volumes[claim["metadata"]["name"]] = path

    def config_map(self, name):
        return next(o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)

    def mounts(self, container):
        """{mountPath: host path}; a missing subPath is made as the kubelet makes it."""
        out = {}
        for mount in container["volumeMounts"]:
            path = self.volumes[mount["name"]]
            if "subPath" in mount:
                sub = path / mount["subPath"]
                if not sub.exists():
                    sub.mkdir()
                    os.chmod(sub, os.stat(path).st_mode & 0o7777)
                path = sub
            out[mount["mountPath"]] = path
        return out

    @staticmethod
    def rewrite(args, mounts):
        def one(arg):
            for mount_path in sorted(mounts, key=len, reverse=True):
                if arg == mount_path or arg.startswith(mount_path + "/"):
                    return str(mounts[mount_path]) + arg[len(mount_path):]
            return arg

        return [one(a) for a in args]

    def init(self):
        (container,) = self.spec["initContainers"]
        assert container["command"] == ["/usr/local/bin/palisade"]
        return run(*self.rewrite(container["args"], self.mounts(container)))

    def home(self, bundle):
        """The image's home (the bundle built into it) with the container's mounts linked in."""
        (container,) = self.spec["containers"]
        home = self.root / "home"
        shutil.rmtree(home, ignore_errors=True)
        run("--home", str(home), "build", str(bundle))
        mounts = self.mounts(container)
        for mount_path, host in mounts.items():
            if mount_path.startswith(HOME + "/"):
                inside = home / mount_path[len(HOME) + 1 :]
                if inside.is_dir() and not inside.is_symlink():
                    shutil.rmtree(inside)
                os.symlink(host, inside)
        args = self.rewrite(container["args"], mounts)
        for flag in ("--listen", "--admin-listen"):
            args[args.index(flag) + 1] = "127.0.0.1:0"
        env = {**os.environ, "PALISADE_HOME": str(home)}
        assert {"name": "PALISADE_HOME", "value": HOME} in container["env"]
        return home, args, env


def serve(args, env, log):
    """Starts the server; its startup lines are on stderr (stdout carries the shipped audit
    records), both go to `log`."""
    proc = subprocess.Popen([palisade_bin(), *args], stdout=log, stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()

    def pump():
        for line in proc.stderr:
            log.write(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    base = admin = None
    deadline = time.monotonic() + 60
    while base is None or admin is None:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.flush()
                pytest.fail(f"palisade serve did not start: {pathlib.Path(log.name).read_text()[-3000:]}")
            continue
        if line.startswith("palisade: admin listening on "):
            admin = line.split()[4]
        if line.startswith("palisade: listening on "):
            base = line.split()[3]
    return proc, base, admin


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """The CA the Secret holds, and the rendered objects of examples/kubernetes/canary.yaml
    (three StatefulSets with the built-in CA, a router)."""
    ca_home = tmp_path_factory.mktemp("ca-home")
    run("--home", str(ca_home), "ca", "init")
    rendered = run("k8s", "render", str(ROOT / "examples" / "kubernetes" / "canary.yaml")).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    return ca_home, objects


def workload(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_a_variant_pod_starts_with_the_built_in_ca_and_serves_its_workload_identity(canary, tmp_path):
    ca_home, objects = canary
    pod = Pod(objects, workload(objects, "StatefulSet", "fraud-v1"), tmp_path, ca_home)
    print(pod.init().stdout)
    home, args, env = pod.home(ROOT / "examples" / "iris")
    with open(tmp_path / "server.log", "w") as log:
        proc, base, admin = serve(args, env, log)
        try:
            assert base.startswith("https://")
            with urllib.request.urlopen(f"{admin}/readyz", timeout=10) as ready:
                assert ready.status == 200
            # A peer that trusts only the CA the Secret holds, checking the Service's name.
            context = ssl.create_default_context(cafile=str(ca_home / "ca" / "ca.pem"))
            host, port = base.removeprefix("https://").rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="fraud-v1.payments.svc") as tls:
                    cert = tls.getpeercert()
                    tls.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: fraud-v1.payments.svc\r\nConnection: close\r\n\r\n")
                    answer = tls.recv(4096).decode()
            assert answer.startswith("HTTP/1.1 200"), answer
            uris = [v for k, v in cert["subjectAltName"] if k == "URI"]
            assert uris == ["spiffe://cluster.local/ns/payments/sa/fraud"], cert
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    # The CA, its key, the audit key and the workload key are private copies, not links.
    state = pod.volumes["state"]
    assert oct(os.stat(state / "ca").st_mode & 0o777) == "0o700"
    assert oct(os.stat(state / "ca" / "issuer-key.pem").st_mode & 0o777) == "0o600"
    keys = pod.volumes["audit"] / "keys"
    assert oct(os.stat(keys).st_mode & 0o777) == "0o700"
    assert os.stat(keys / "audit-signing.pk8").st_mode & 0o777 == 0o600
    # The trail the server wrote verifies.
    verified = run(
        "--home", str(home), "audit", "verify", "--public-key", str(keys / "audit-signing.pub"), check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_without_the_init_container_the_kubelets_layout_is_refused(canary, tmp_path):
    """What the pods did before the init container: the CA read from the Secret volume
    itself, and keys in a volume root open to all. Palisade refuses both and says why."""
    ca_home, objects = canary
    pod = Pod(objects, workload(objects, "StatefulSet", "fraud-v1"), tmp_path, ca_home)
    home, args, env = pod.home(ROOT / "examples" / "iris")
    os.unlink(home / "ca")
    os.symlink(pod.volumes["ca-secret"], home / "ca")
    result = subprocess.run([palisade_bin(), *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "symbolic link" in result.stderr or "group" in result.stderr, result.stderr


def test_a_restart_after_an_fsgroup_change_takes_the_keys_back(canary, tmp_path):
    """A StatefulSet's volume outlives its pod; with fsGroupChangePolicy Always (or a root
    mismatch) the kubelet makes every file group-readable again. The init container takes
    them back before the server reads its keys."""
    ca_home, objects = canary
    pod = Pod(objects, workload(objects, "StatefulSet", "fraud-v2"), tmp_path, ca_home)
    pod.init()
    key = pod.volumes["audit"] / "keys" / "k"
    key.write_text("x")
    for path in [pod.volumes["audit"], *pod.volumes["audit"].rglob("*")]:
        os.chmod(path, (os.stat(path).st_mode & 0o7777) | (0o2070 if path.is_dir() else 0o060))
    out = pod.init().stdout
    assert "modes changed" in out
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert os.stat(pod.volumes["audit"] / "trail").st_mode & 0o777 == 0o700


def test_the_router_pod_runs_the_same_init_container(canary):
    _, objects = canary
    router = workload(objects, "Deployment", "fraud-router")["spec"]["template"]["spec"]
    (init,) = router["initContainers"]
    assert init["args"][:2] == ["k8s", "init-pod"]
    assert "--ca-from" in init["args"]
    assert json.dumps(init["securityContext"]) == json.dumps(router["containers"][0]["securityContext"])
