"""``palisade.serve``: run ``palisade serve`` from Python, for notebooks and tests."""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _binary
from .client import Client
from .errors import PalisadeError

_LISTENING = "palisade: listening on "


def _flag_args(flags: dict[str, Any]) -> list[str]:
    """``--flag-name value`` for each keyword (``True``: the bare flag; ``False``/``None``:
    left out; a list: the flag once per item)."""
    args: list[str] = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, os.fspath(item) if isinstance(item, os.PathLike) else str(item)]
        else:
            args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


class Server:
    """A running ``palisade serve``: ``url`` is where it listens, ``home`` its Palisade
    home. Use it as a context manager (``with palisade.serve() as server:``) or call
    :meth:`stop`. Its log (stderr) is in ``log_path``."""

    def __init__(self, home: str | os.PathLike[str] | None, args: list[str], startup_timeout: float) -> None:
        self.home = os.fspath(home) if home is not None else None
        self._logdir = tempfile.TemporaryDirectory(prefix="palisade-serve-")
        self.log_path = Path(self._logdir.name) / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._started = threading.Event()
        self.ca_file: str | None = None
        command = [_binary.find_palisade_bin(), *_binary.home_args(home), "serve", *args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        self.url = self._wait(startup_timeout)
        self._started.set()

    # The startup lines come on stdout, or on stderr when the platform config ships audit
    # records on stdout (audit.ship.stdout): both are watched until the server listens.
    # After that stdout is read and dropped (so that the server never blocks on it and
    # shipped records do not pile up here), and stderr goes on into the log.
    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if not self._started.is_set():
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            try:
                self._log.write(line.encode())
                self._log.flush()
            except ValueError:  # the log was closed by stop()
                pass
            if not self._started.is_set():
                self._lines.put(line.rstrip("\n"))

    def _wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise PalisadeError(f"palisade serve did not start listening within {timeout:.0f} s{self._log_tail()}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self._process.wait()
                self._stderr_reader.join(timeout=5)
                self._log.close()
                raise PalisadeError(f"palisade serve exited with status {code}{self._log_tail()}")
            if line.startswith("palisade: TLS certificate "):
                candidate = line.removeprefix("palisade: TLS certificate ").split(" (sha256")[0]
                if os.path.isfile(candidate):
                    self.ca_file = candidate
            if line.startswith(_LISTENING):
                return line[len(_LISTENING) :].split()[0]

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"; its log ends with:\n{text[-2000:]}" if text else ""

    @property
    def running(self) -> bool:
        """Whether the server process is still running."""
        return self._process.poll() is None

    def token(
        self,
        email: str | None = None,
        *,
        groups: Iterable[str] = (),
        service_account: str | None = None,
        ttl: str | None = None,
    ) -> str:
        """A token from the home's built-in issuer (``palisade token issue``): for
        ``email`` (a model's owner, for example), or for a service account ``NS/NAME``."""
        args = ["token", "issue"]
        if email:
            args += ["--email", email]
        for group in groups:
            args += ["--group", group]
        if service_account:
            args += ["--service-account", service_account]
        if ttl:
            args += ["--ttl", ttl]
        return _binary.run(args, home=self.home).strip()

    def client(self, email: str | None = None, **token_args: Any) -> Client:
        """A :class:`Client` of this server with a token for ``email`` (see :meth:`token`)."""
        return Client(self.url, self.token(email, **token_args), ca_file=self.ca_file)

    def stop(self, timeout: float = 15) -> None:
        """Stops the server (SIGTERM: in-flight requests finish), then waits for it."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr_reader.join(timeout=5)
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<palisade.Server {self.url} {state}>"


def serve(
    home: str | os.PathLike[str] | None = None,
    *,
    listen: str = "127.0.0.1:0",
    startup_timeout: float = 60.0,
    **flags: Any,
) -> Server:
    """Starts ``palisade serve`` on a free loopback port and returns the running
    :class:`Server`; use it in a ``with`` block to stop it at the end::

        with palisade.serve() as server:
            client = server.client("alice@example.com")
            client.predict("iris", X)

    ``home`` is the Palisade home (default: ``$PALISADE_HOME``, else ``~/.palisade``).
    Other keywords become ``palisade serve`` flags: ``threads=2`` is ``--threads 2``,
    ``tls=True`` is ``--tls``, ``config="platform.yaml"`` is ``--config platform.yaml``.
    """
    return Server(home, ["--listen", listen, *_flag_args(flags)], startup_timeout)
