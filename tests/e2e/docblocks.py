"""Runs the code blocks of README.md and docs/*.md as a reader would.

Every fenced block has a language. `text` blocks (output, messages, diagrams) are only
read; every other block is a command or a file, and is executed or loaded:

| block | what the test does |
|---|---|
| `sh` | runs in the page's session (below), in order, with `bash -e -o pipefail` |
| `python` | runs in the session with `.venv/e2e`'s Python (or `venv=NAME`) |
| `yaml` | `palisade validate` (kind told apart by content, or `kind=`); `fragment=manifest`, `fragment=upstream` (a manifest of an upstream model) or `fragment=platform` validates it merged into a minimal document; `kubernetes`: each document with a `kind` is checked as `kubectl apply` would be: a `ModelDeployment` by `palisade k8s render`, Istio's security resources by `palisade validate`, Kubernetes' own kinds by `kubernetes-validate --strict` (a warning fails), a `SeldonDeployment` only parsed (no schema here); documents without a `kind` (fragments) are only parsed |
| `json` | parsed; with `request=METHOD PATH` sent to the session's server, which must answer 200 |
| `promql` | checked by `promtool check rules` as a recording rule's expression |

A block may be preceded by a directive, `<!-- doc: KEY=VALUE ... -->` (values with spaces
in double quotes):

- `tested=PATH::FUNCTION`: the block is not run here because FUNCTION in PATH runs what it
  shows (for what a session cannot set up, such as a log written by an older version); the
  function must exist.
- `file=NAME`: the block is also written to NAME in the session directory, for later blocks.
- `before="SHELL"`: run first, unseen by the reader (what the prose asks the reader to have);
  `\\n` separates lines.
- `status=N`: the block's expected exit status (default 0).
- `expect="TEXT"`: its output must contain TEXT.
- `session=NAME`: share state with other pages' blocks of that session (default: the page).
- `recipe=NAME`: the block is run word for word by fixtures/generate.sh and its result
  checked by crates/runtime/tests/readme.rs (the older `<!-- recipe: NAME -->` also counts).
- `venv=NAME`, `kind=KIND`, `fragment=KIND`, `request="METHOD PATH"`, `kubernetes`: above.

A session is a scratch directory with its own `PALISADE_HOME`, `HOME`, port and
environment (variables set by a block are seen by the next ones: `set -a` exports them).
What a session changes on the way, so the pages can read as a user types them:

- `cargo run [-q] --release --` runs the already-built `palisade` (PALISADE_BIN);
- ports 8080 to 8089, 8443 and 9090 are the session's own free ports, one per number,
  and `0.0.0.0` is loopback (`palisade serve` without `--listen` listens on 8080's);
- `palisade serve` runs in the background, its output in `serve-N.log`, and the block
  goes on once it answers (the server stops when the session ends); another command
  ending in `&` writes to `job-N.log` and must still run half a second later;
- absolute paths under /var/, /etc/ and /srv/ live under the session's root;
- `examples/` and `fixtures/` are the repository's, and `$DOCTEST_ROOT` is the repository
  (for hidden setup only);
- a line that is only `scripts/test.sh` (the README's second command) is not run: it is
  the run this test belongs to.
"""

import dataclasses
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"sh", "python", "yaml", "json", "promql", "text"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*doc:(.*?)-->\s*$")
RECIPE = re.compile(r"^\s*<!--\s*recipe:\s*(\S+)\s*-->\s*$")
KEYS = {"tested", "file", "before", "status", "expect", "session", "recipe", "venv", "kind", "fragment", "request", "kubernetes"}


@dataclasses.dataclass
class Block:
    page: pathlib.Path
    line: int
    language: str
    text: str
    directive: dict

    @property
    def where(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def session(self):
        return self.directive.get("session") or self.page.stem


def parse_directive(text, where):
    directive = {}
    for token in shlex.split(text):
        key, _, value = token.partition("=")
        if key not in KEYS:
            raise ValueError(f"{where}: unknown doc directive `{key}` (known: {', '.join(sorted(KEYS))})")
        directive[key] = value.replace("\\n", "\n") if key == "before" else value
    return directive


def blocks(page):
    """The fenced blocks of a page, each with the directive on the line before it."""
    lines = page.read_text().split("\n")
    found = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, language = fence.group(1), fence.group(2)
        end = i + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        body = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1 : end]) + "\n"
        previous = lines[i - 1] if i > 0 else ""
        where = f"{page.relative_to(ROOT)}:{i + 1}"
        directive = {}
        if m := DIRECTIVE.match(previous):
            directive = parse_directive(m.group(1), where)
        elif m := RECIPE.match(previous):
            directive = {"recipe": m.group(1)}
        found.append(Block(page, i + 1, language, body, directive))
        i = end + 1
    return found


def all_blocks():
    return [block for page in PAGES for block in blocks(page)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PRELUDE = r"""
set -a
[ -f "$DOCTEST_ENV" ] && source "$DOCTEST_ENV"
__wait_server() {
  local deadline=$((SECONDS + 60))
  until grep -q "^palisade: listening on " "serve-$1.log" 2>/dev/null; do
    if [ $SECONDS -gt $deadline ] || ! kill -0 "$2" 2>/dev/null; then
      echo "doctest: the server did not start:" >&2; cat "serve-$1.log" >&2; return 1
    fi
    sleep 0.1
  done
}
"""

TRAILER = r"""
declare -px | grep -v -E '^declare -[a-zA-Z-]* (BASH|SHELLOPTS|BASHOPTS|PWD|OLDPWD|SHLVL|_|DOCTEST_ENV)=' > "$DOCTEST_ENV.next"
mv "$DOCTEST_ENV.next" "$DOCTEST_ENV"
"""


class Session:
    """A scratch directory, home and port where a page's blocks run in order."""

    def __init__(self, name, palisade):
        self.name = name
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"doctest-{name}-"))
        self.root = self.dir / "root"
        self.ports = {}
        self.servers = 0
        self.jobs = 0
        self.groups = []
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        (bin_dir / "palisade").symlink_to(palisade)
        for linked in ["examples", "fixtures"]:
            (self.dir / linked).symlink_to(ROOT / linked)
        self.env = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(self.dir),
            "PALISADE_HOME": str(self.dir / "home"),
            "DOCTEST_ENV": str(self.dir / ".env"),
            "DOCTEST_ROOT": str(ROOT),
            "LANG": "C.UTF-8",
            "PALISADE_ONNXRUNTIME_LIB": os.environ.get("PALISADE_ONNXRUNTIME_LIB", ""),
        }

    @property
    def port(self):
        return self.port_for("8080")

    def port_for(self, documented):
        if documented not in self.ports:
            self.ports[documented] = free_port()
        return self.ports[documented]

    def ports_rewritten(self, text):
        """Ports 8080-8089, 8443 and 9090 in a block are the session's own free ports, on
        loopback."""
        text = text.replace("0.0.0.0:", "127.0.0.1:")
        return re.sub(r"(?<![\w.])(808\d|8443|9090)(?![\w])", lambda m: str(self.port_for(m.group(0))), text)

    def rewrite(self, text):
        """What the session changes in a shell block (see the module docs)."""
        text = re.sub(r"\\\n\s*", " ", text)  # continued lines are one command
        text = re.sub(r"cargo run (-q )?--release --", "palisade", text)
        text = self.ports_rewritten(text)
        text = re.sub(r"(?<![\w.$/-])/(var|etc|srv)/", lambda m: f"{self.root}/{m.group(1)}/", text)
        out = []
        for line in text.split("\n"):
            if re.search(r"\bpalisade (--home \S+ )?serve\b", line) and not line.lstrip().startswith("#"):
                code, _, comment = line.partition(" #")
                code = code.rstrip()
                background = code.endswith("&")
                code = code.rstrip("&").rstrip()
                if "--listen" not in code:
                    code += f" --listen 127.0.0.1:{self.port}"
                self.servers += 1
                out.append(f"{{ {code}; }} > serve-{self.servers}.log 2>&1 &")
                out.append(f"__wait_server {self.servers} $!")
                del background, comment
            elif re.search(r"[^&]&\s*(#.*)?$", line) and not line.lstrip().startswith("#"):
                code = re.sub(r"&\s*(#.*)?$", "", line).rstrip()
                self.jobs += 1
                out.append(f"{{ {code}; }} > job-{self.jobs}.log 2>&1 &")
                out.append(f"sleep 0.5; kill -0 $! || {{ cat job-{self.jobs}.log; exit 1; }}")
            elif line.strip() == "scripts/test.sh":
                out.append(": the test run this block belongs to")
            else:
                out.append(line)
        return "\n".join(out)

    def shell(self, script, timeout):
        full = PRELUDE + script + "\n" + TRAILER
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", full],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.groups.append(proc.pid)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out
        return proc.returncode, out

    def environment(self):
        """The variables the blocks so far exported, for Python blocks."""
        env_file = self.dir / ".env"
        env = dict(self.env)
        if env_file.exists():
            dumped = subprocess.run(
                ["bash", "-c", f"set -a; source {shlex.quote(str(env_file))}; env -0"],
                capture_output=True,
                env=self.env,
                check=True,
            ).stdout
            for item in dumped.split(b"\0"):
                key, _, value = item.decode().partition("=")
                if key:
                    env[key] = value
        return env

    def server_url(self):
        record = json.loads((self.dir / "home" / "server.json").read_text())
        return record["url"]

    def close(self):
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


def deep_merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


FRAGMENT_BASES = {
    "manifest": {
        "name": "fragment",
        "version": "1.0.0",
        "owners": ["alice@example.com"],
        "model": {"path": "model.onnx", "format": "onnx"},
    },
    "platform": {},
    "upstream": {
        "name": "fragment",
        "version": "1.0.0",
        "owners": ["alice@example.com"],
        "model": {
            "format": "upstream",
            "upstream": {"url": "http://127.0.0.1:9000"},
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
        },
    },
}


def run_block(block, session, venvs):
    """Runs or loads one block; raises AssertionError naming the block on failure."""
    d = block.directive
    if "file" in d:
        target = session.dir / d["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(session.ports_rewritten(block.text))
    if "before" in d:
        status, out = session.shell(session.rewrite(d["before"]), timeout=120)
        assert status == 0, f"{block.where}: the hidden setup failed ({status}):\n{out}"
    expected = int(d.get("status", "0"))
    if block.language == "sh":
        status, out = session.shell(session.rewrite(block.text), timeout=300)
        assert status == expected, f"{block.where}: exit status {status}, expected {expected}:\n{block.text}\n--- output:\n{out}"
    elif block.language == "python":
        python = venvs(d.get("venv", "e2e"))
        script = session.dir / f"block-{block.page.stem}-{block.line}.py"
        script.write_text(session.ports_rewritten(block.text))
        proc = subprocess.run(
            [python, str(script)], cwd=session.dir, env=session.environment(), capture_output=True, text=True, timeout=300
        )
        status, out = proc.returncode, proc.stdout + proc.stderr
        assert status == expected, f"{block.where}: exit status {status}, expected {expected}:\n--- output:\n{out}"
    elif block.language == "yaml":
        out = load_yaml(block, session)
    elif block.language == "json":
        document = json.loads(block.text)
        out = ""
        if "request" in d:
            method, path = d["request"].split(" ", 1)
            env = session.environment()
            request = urllib.request.Request(
                session.server_url() + path,
                data=json.dumps(document).encode(),
                method=method,
                headers={"Authorization": f"Bearer {env['TOKEN']}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, f"{block.where}: {response.status}"
                out = response.read().decode()
    elif block.language == "promql":
        rules = session.dir / f"rules-{block.line}.yaml"
        expr = block.text.strip()
        rules.write_text(json.dumps({"groups": [{"name": "doc", "rules": [{"record": "doc:check", "expr": expr}]}]}))
        proc = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{block.where}: promtool refused the expression:\n{proc.stdout}{proc.stderr}"
        out = proc.stdout
    else:
        raise AssertionError(f"{block.where}: no runner for `{block.language}`")
    if "expect" in d:
        assert d["expect"] in out, f"{block.where}: the output lacks {d['expect']!r}:\n{out}"


def check_kubernetes(block, session, documents):
    """Checks each Kubernetes resource of a block as the cluster would (see the table)."""
    import yaml

    out = ""
    for i, doc in enumerate(documents):
        api_version, kind = doc.get("apiVersion", ""), doc.get("kind")
        if not kind or api_version.startswith("machinelearning.seldon.io/"):
            continue
        target = session.dir / f"block-{block.page.stem}-{block.line}-{i}.yaml"
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        if kind == "ModelDeployment":
            command = ["palisade", "k8s", "render", str(target)]
        elif api_version.startswith("security.istio.io/"):
            command = ["palisade", "validate", str(target)]
        else:
            command = [str(ROOT / ".venv" / "kubernetes" / "bin" / "kubernetes-validate"), "--strict", str(target)]
        proc = subprocess.run(command, cwd=session.dir, env=session.env, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "WARN" not in output, f"{block.where}: {kind} refused:\n{output}"
        out += proc.stdout
    return out


def load_yaml(block, session):
    import yaml  # PyYAML comes with schemathesis in .venv/e2e

    d = block.directive
    documents = [doc for doc in yaml.safe_load_all(block.text) if doc is not None]
    assert documents, f"{block.where}: an empty YAML block"
    if "kubernetes" in d:
        for doc in documents:
            assert isinstance(doc, dict), f"{block.where}: not a mapping"
        return check_kubernetes(block, session, documents)
    target = session.dir / f"block-{block.page.stem}-{block.line}.yaml"
    kind = d.get("kind")
    if "fragment" in d:
        kind = "manifest" if d["fragment"] == "upstream" else d["fragment"]
        merged = deep_merge(json.loads(json.dumps(FRAGMENT_BASES[d["fragment"]])), documents[0])
        target.write_text(yaml.safe_dump(merged, sort_keys=False))
    else:
        target.write_text(block.text)
    command = ["palisade", "validate", str(target)] + (["--kind", kind] if kind else [])
    proc = subprocess.run(command, cwd=session.dir, env=session.env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{block.where}: palisade validate refused it:\n{proc.stdout}{proc.stderr}"
    return proc.stdout
