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
            if not source.exists() or f"fn {function}(" not in source.read_text():
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


@pytest.mark.parametrize("name", list(SESSIONS))
def test_session_runs_as_written(name):
    session = Session(name, palisade_bin())
    try:
        for block in SESSIONS[name]:
            run_block(block, session, venv_python)
    finally:
        session.close()
