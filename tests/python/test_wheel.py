"""The wheel: the package is the installed one, and it ships a working binary."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import palisade


def test_the_package_is_the_installed_one_not_the_source_tree():
    package = pathlib.Path(palisade.__file__).resolve()
    assert "site-packages" in package.parts, package
    assert palisade.__version__ != "0+unknown"


def test_the_binary_is_installed_beside_the_package():
    binary = pathlib.Path(palisade.find_palisade_bin())
    assert binary.parent == pathlib.Path(os.path.normpath(sys.executable)).parent, binary
    assert shutil.which("palisade", path=str(binary.parent)) == str(binary)
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("palisade ")


def test_python_dash_m_runs_the_binary():
    out = subprocess.run([sys.executable, "-m", "palisade", "--help"], capture_output=True, text=True, check=True)
    assert "predict" in out.stdout and "serve" in out.stdout


def test_serve_stops_its_process(tmp_path):
    with palisade.serve(home=tmp_path / "home") as server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
    assert not server.running


def test_serve_reports_a_server_that_cannot_start(tmp_path):
    try:
        palisade.serve(home=tmp_path / "home", threads=0)
    except palisade.PalisadeError as err:
        assert "exited with status" in str(err)
    else:
        raise AssertionError("serve --threads 0 should not start")


def test_palisade_bin_overrides_the_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("PALISADE_BIN", str(tmp_path / "missing"))
    try:
        palisade.find_palisade_bin()
    except palisade.PalisadeError as err:
        assert "PALISADE_BIN" in str(err)
    else:
        raise AssertionError("a missing $PALISADE_BIN should be refused")
    monkeypatch.delenv("PALISADE_BIN")
    assert os.path.isfile(palisade.find_palisade_bin())
