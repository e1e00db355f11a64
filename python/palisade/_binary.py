"""Finding and running the ``palisade`` binary that the wheel installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from .errors import BinaryNotFoundError, CommandError

#: Environment variable naming a ``palisade`` binary to use instead of the wheel's.
BIN_ENV = "PALISADE_BIN"

_EXE = "palisade.exe" if sys.platform == "win32" else "palisade"


def _candidates() -> list[Path]:
    """Where pip puts the wheel's binary: the environment's scripts directory, the user
    scheme's (``pip install --user``), or ``bin/`` beside the package (``--target``)."""
    dirs: list[str | None] = [sysconfig.get_path("scripts")]
    try:
        user_scheme = sysconfig.get_preferred_scheme("user")
        dirs.append(sysconfig.get_path("scripts", user_scheme))
    except (AttributeError, KeyError):  # Python < 3.10 or an unusual sysconfig
        pass
    found = [Path(d) / _EXE for d in dirs if d]
    found.append(Path(__file__).resolve().parent.parent / "bin" / _EXE)
    return found


def find_palisade_bin() -> str:
    """The path of the ``palisade`` binary: ``$PALISADE_BIN`` when set, else the one the
    wheel installed, else the first ``palisade`` on ``PATH``."""
    override = os.environ.get(BIN_ENV)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise BinaryNotFoundError(f"${BIN_ENV} is {override!r}, which is not an executable file")
        return override
    for path in _candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    on_path = shutil.which(_EXE)
    if on_path:
        return on_path
    raise BinaryNotFoundError(
        "the palisade binary is not installed next to this Python package: reinstall the wheel "
        "(`pip install --force-reinstall palisade`), or set $PALISADE_BIN to a palisade binary "
        "(`cargo build -p palisade-cli` builds target/debug/palisade)"
    )


def home_args(home: str | os.PathLike[str] | None) -> list[str]:
    """``--home PATH`` when a home is given; otherwise the binary's own default
    (``$PALISADE_HOME``, else ``~/.palisade``)."""
    return ["--home", os.fspath(home)] if home is not None else []


def run(
    args: Sequence[str],
    *,
    home: str | os.PathLike[str] | None = None,
    input: str | None = None,
    timeout: float | None = 600,
) -> str:
    """Runs ``palisade [--home HOME] ARGS`` and returns its standard output; a failure
    raises :class:`CommandError` with what the command printed on stderr."""
    command = [*home_args(home), *args]
    done = subprocess.run(
        [find_palisade_bin(), *command],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise CommandError(command, done.returncode, done.stderr)
    return done.stdout
