"""Every command and file in README.md and docs/*.md, run or loaded as written (the rules
are in docblocks.py). A page that shows a command a reader cannot run fails here."""

import collections

import pytest

from conftest import ROOT, palisade_bin
from docblocks import LANGUAGES, Session, all_blocks, run_block

BLOCKS = all_blocks()


def venv_python(name):
    python = ROOT / ".venv" / name / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: scripts/install-test-deps.sh makes it")
    return str(python)


def test_every_block_is_text_or_has_a_runner():
    problems = []
    for block in BLOCKS:
        if block.language not in LANGUAGES:
            problems.append(f"{block.where}: language `{block.language or '(none)'}`; use one of {sorted(LANGUAGES)}")
        if tested := block.directive.get("tested"):
            path, _, function = tested.partition("::")
            source = ROOT / path
            if not source.is_file():
                problems.append(f"{block.where}: tested={tested}: no file {path}")
            elif function and not any(f"{kw} {function}(" in source.read_text() for kw in ["fn", "def"]):
                problems.append(f"{block.where}: tested={tested}: no function {function} in {path}")
        recipe = block.directive.get("recipe")
        if recipe and not (ROOT / "fixtures" / "models" / "readme" / recipe / "expected.json").exists():
            problems.append(f"{block.where}: recipe {recipe} has no fixtures/models/readme/{recipe}/expected.json")
    assert not problems, "\n".join(problems)
    runnable = [b for b in BLOCKS if b.language != "text"]
    assert len(runnable) >= 40, f"only {len(runnable)} runnable blocks: were the pages found?"


SESSIONS = collections.OrderedDict()
for block in BLOCKS:
    if block.language in LANGUAGES - {"text"} and not {"recipe", "tested"} & block.directive.keys():
        SESSIONS.setdefault(block.session, []).append(block)
# Sessions that use the Python SDK need the wheel's virtualenv, which scripts/test-python.sh
# builds after this suite; it runs them (`-k sdk`) once the wheel is installed.
SDK_VENV = "python-test"
SDK = [name for name, blocks in SESSIONS.items() if any(b.directive.get("venv") == SDK_VENV for b in blocks)]


@pytest.mark.parametrize("name", [n for n in SESSIONS if n not in SDK])
def test_session_runs_as_written(name):
    run_session(name)


@pytest.mark.parametrize("name", SDK)
def test_sdk_session_runs_as_written(name):
    if not (ROOT / ".venv" / SDK_VENV / "bin" / "python").exists():
        pytest.skip(f"needs .venv/{SDK_VENV}, the installed wheel: scripts/test-python.sh runs this test")
    run_session(name)


def run_session(name):
    session = Session(name, palisade_bin())
    try:
        for block in SESSIONS[name]:
            run_block(block, session, venv_python)
    finally:
        session.close()
