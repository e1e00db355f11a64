"""``palisade.Client``: call models served by Palisade over the Open Inference Protocol."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _tensors
from .errors import (
    ApiError,
    AuthenticationError,
    DriftUnavailableError,
    ExplanationsUnavailableError,
    OutliersUnavailableError,
    for_status,
)

#: Environment variable read for a token when none is given.
TOKEN_ENV = "PALISADE_TOKEN"

TokenSource = Callable[[], "str | None"]


@dataclass(frozen=True)
class ModelInfo:
    """A served model: its name, latest version, platform, inputs and outputs (from V2
    model metadata)."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[_tensors.TensorSpec, ...]
    outputs: tuple[_tensors.TensorSpec, ...]
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class OutlierScores:
    """What :meth:`Client.outliers` returns: one score and one outlier flag per row of the
    request, and the model's outputs."""

    scores: np.ndarray
    is_outlier: np.ndarray
    outputs: dict[str, np.ndarray]


class ServiceAccountToken:
    """Tokens of a Palisade service account (OAuth2 client credentials at
    ``POST /oauth/token``), fetched when first needed and renewed before they expire: once
    less than a fifth of a token's lifetime (at most 60 s) is left."""

    def __init__(self, http: _Http, client_id: str, secret: str, scope: str | None = None) -> None:
        self._http = http
        self._client_id = client_id
        self._secret = secret
        self._scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        #: How many tokens were fetched (for tests and logs).
        self.fetched = 0

    def __repr__(self) -> str:
        return f"ServiceAccountToken(client_id={self._client_id!r})"

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the current token: the next call fetches a new one."""
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        quote = urllib.parse.quote
        basic = base64.b64encode(f"{quote(self._client_id, safe='')}:{quote(self._secret, safe='')}".encode()).decode()
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        started = time.monotonic()
        status, headers, body = self._http.request(
            "POST",
            "/oauth/token",
            urllib.parse.urlencode(form).encode(),
            {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise _error(status, headers, body, self._http.url("/oauth/token"))
        answer = json.loads(body)
        lifetime = float(answer.get("expires_in", 300))
        self._token = str(answer["access_token"])
        self._renew_at = started + lifetime - min(60.0, lifetime / 5)
        self.fetched += 1


class _Http:
    """One keep-alive connection per thread to the server; a request on a connection the
    server closed while idle is sent again on a new one."""

    def __init__(self, url: str, timeout: float, ca_file: str | None, verify: bool) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"the server URL must be http://HOST[:PORT] or https://HOST[:PORT], not {url!r}")
        self.base = url.rstrip("/")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._local = threading.local()

    def url(self, path: str) -> str:
        return self.base + path

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._local.conn = conn
        return conn, False

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (0, 1):
            conn, reused = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=dict(headers or {}))
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                self.close()
                if reused and attempt == 0:
                    continue
                raise ConnectionError(f"{self.url(path)}: the server closed the connection: {err}") from err
            except OSError:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, response.headers, data
        raise AssertionError("unreachable")


def _error(status: int, headers: http.client.HTTPMessage, body: bytes, url: str, hint: str = "") -> ApiError:
    """The exception for an error answer, with the server's message and request id."""
    message = ""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        if isinstance(document.get("error"), str):
            message = document["error"]
            if isinstance(document.get("error_description"), str):  # OAuth2 (RFC 6749)
                message = f"{message}: {document['error_description']}"
        elif isinstance(document.get("status"), dict):  # Seldon
            message = str(document["status"].get("info") or document["status"].get("reason") or "")
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or http.client.responses.get(status, "error")
    return for_status(status)(status, message + hint, headers.get("x-request-id"), url)


class Client:
    """A client of a Palisade server.

    ``token`` is a bearer token, or a function returning one (called for every request, so
    it can renew tokens); when absent, ``$PALISADE_TOKEN`` is used. For a Palisade service
    account, use :meth:`from_service_account`. ``ca_file`` names the certificates to trust
    for ``https`` URLs (e.g. the certificate ``palisade serve --tls`` prints).

    Errors from the server raise :class:`palisade.errors.ApiError` subclasses carrying the
    server's message and the request id.
    """

    def __init__(
        self,
        url: str,
        token: str | TokenSource | None = None,
        *,
        timeout: float = 60.0,
        ca_file: str | os.PathLike[str] | None = None,
        verify: bool = True,
    ) -> None:
        self._http = _Http(url, timeout, os.fspath(ca_file) if ca_file is not None else None, verify)
        self.url = self._http.base
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        self._token: TokenSource = token if callable(token) else (lambda: token)
        self._metadata: dict[tuple[str, str | None], ModelInfo] = {}

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    @classmethod
    def from_service_account(
        cls,
        url: str,
        client_id: str,
        secret: str,
        *,
        scope: str | None = None,
        timeout: float = 60.0,
        ca_file: str | os.PathLike[str] | None = None,
        verify: bool = True,
    ) -> Client:
        """A client that authenticates as a Palisade service account (``palisade sa
        create`` prints its ``client_id`` and ``client_secret``): tokens come from the
        server's ``POST /oauth/token`` and are renewed before they expire."""
        client = cls(url, timeout=timeout, ca_file=ca_file, verify=verify)
        client._token = ServiceAccountToken(client._http, client_id, secret, scope)
        return client

    def close(self) -> None:
        """Close this thread's connection."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[http.client.HTTPMessage, bytes]:
        for attempt in (0, 1):
            sent = dict(headers or {})
            token = self._token()
            if token:
                sent["Authorization"] = f"Bearer {token}"
            status, answer_headers, data = self._http.request(method, path, body, sent)
            if 200 <= status < 300:
                return answer_headers, data
            renewable = isinstance(self._token, ServiceAccountToken)
            if status == 401 and renewable and attempt == 0:
                self._token.invalidate()  # type: ignore[attr-defined]
                continue
            hint = ""
            if status == 401 and not token:
                hint = f" (no token was sent: pass token=..., set ${TOKEN_ENV}, or use Client.from_service_account)"
            raise _error(status, answer_headers, data, self._http.url(path), hint)
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str) -> Any:
        _, data = self._call(method, path)
        return json.loads(data)

    @staticmethod
    def _model_path(name: str, version: str | None) -> str:
        quote = urllib.parse.quote
        path = f"/v2/models/{quote(name, safe='')}"
        return path if version is None else f"{path}/versions/{quote(version, safe='')}"

    def metadata(self, name: str, version: str | None = None) -> ModelInfo:
        """The model's V2 metadata: versions, inputs, outputs (with class labels)."""
        key = (name, version)
        if key not in self._metadata:
            doc = self._json("GET", self._model_path(name, version))
            self._metadata[key] = ModelInfo(
                name=str(doc.get("name", name)),
                versions=tuple(str(v) for v in doc.get("versions", [])),
                platform=str(doc.get("platform", "")),
                inputs=tuple(_tensors.TensorSpec.from_metadata(i) for i in doc.get("inputs", [])),
                outputs=tuple(_tensors.TensorSpec.from_metadata(o) for o in doc.get("outputs", [])),
                parameters=doc.get("parameters") or {},
            )
        return self._metadata[key]

    def predict(
        self,
        name: str,
        X: Any,
        *,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
        binary: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the model on ``X`` and returns its outputs by name, as numpy arrays.

        ``X`` is a pandas DataFrame (columns matched to the model's inputs by name), a dict
        ``{input: array}``, or an array for a model with one input. Values are cast to the
        model's datatypes (from its metadata, fetched once). Large tensors travel with the
        binary tensor extension (``binary=True`` forces it, ``False`` forces JSON).
        ``outputs`` selects outputs; ``version`` a version (default: the latest).
        """
        return self._infer(name, X, version, outputs, binary)[0]

    def outliers(self, name: str, X: Any, *, version: str | None = None) -> OutlierScores:
        """Runs the model on ``X`` like :meth:`predict` and returns the outlier scores the
        server computed for each row, for a model built with ``monitoring.outliers``
        (docs/monitoring.md): ``scores`` (higher is more unusual for Mahalanobis; sklearn's
        ``score_samples`` sign, lower is more unusual, for an IsolationForest),
        ``is_outlier`` per row, and the model's ``outputs``. A model without outlier
        scoring raises :class:`OutliersUnavailableError`."""
        outputs, parameters = self._infer(name, X, version, None, None)
        if "outlier_score" not in parameters:
            raise OutliersUnavailableError(
                f"model {name!r} scores no outliers: add `monitoring: {{outliers: ...}}` to its palisade.yaml "
                "and build it again (docs/monitoring.md)"
            )
        return OutlierScores(
            np.asarray(parameters["outlier_score"], dtype=np.float64),
            np.asarray(parameters.get("is_outlier", []), dtype=bool),
            outputs,
        )

    def _infer(
        self, name: str, X: Any, version: str | None, outputs: Sequence[str] | None, binary: bool | None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        info = self.metadata(name, version)
        where = f"model {name!r}: "
        arrays = _tensors.bind_inputs(info.inputs, X, where=where)
        datatypes = {spec.name: spec.datatype for spec in info.inputs}
        body, headers = _tensors.encode_request(arrays, datatypes, binary=binary, outputs=outputs)
        answer_headers, data = self._call("POST", self._model_path(name, version) + "/infer", body, headers)
        json_len = answer_headers.get("Inference-Header-Content-Length")
        return _tensors.decode_response_and_parameters(data, int(json_len) if json_len is not None else None)

    def models(self) -> list[ModelInfo]:
        """Every model the server serves (from its OpenAPI document), with its metadata.
        Models the caller may not call are listed without inputs and outputs."""
        doc = self._json("GET", "/openapi.json")
        names: list[str] = []
        for path in doc.get("paths", {}):
            parts = path.split("/")
            if len(parts) == 5 and parts[1:3] == ["v2", "models"] and parts[4] == "infer" and "{" not in parts[3]:
                name = urllib.parse.unquote(parts[3])
                if name not in names:
                    names.append(name)
        found = []
        for name in names:
            try:
                found.append(self.metadata(name))
            except (AuthenticationError, ApiError) as err:
                if err.status not in (401, 403):
                    raise
                found.append(ModelInfo(name, (), "", (), (), {}))
        return found

    def drift(self, name: str, *, version: str | None = None) -> dict[str, Any]:
        """The drift report of the model's recent inputs against its reference, for a model
        built with ``monitoring.drift`` (docs/monitoring.md): ``window_rows``, ``drift``
        (whether any feature drifts at the Bonferroni-corrected ``alpha``) and ``features``,
        each with its KS ``statistic``, ``p_value`` and ``corrected_p_value``. A model
        without drift monitoring raises :class:`DriftUnavailableError`; a caller its
        policies do not allow to read ``/drift``, :class:`PermissionDeniedError`."""
        try:
            _, data = self._call("GET", self._model_path(name, version) + "/drift", None, {})
        except ApiError as error:
            if error.status == 501:
                raise DriftUnavailableError(
                    f"model {name!r} has no drift monitoring ({error.message}): add `monitoring: {{drift: ...}}` "
                    "to its palisade.yaml and build it again (docs/monitoring.md)"
                ) from error
            raise
        return json.loads(data)

    def explain(self, name: str, X: Any, *, version: str | None = None) -> dict[str, Any]:
        """SHAP values of the model's answers on ``X``, for a model built with ``explainer:``
        in its palisade.yaml (docs/explain.md). Returns Alibi's Explanation as a dict, with
        ``data.shap_values`` as a list of numpy arrays (one per output class, or one for a
        regressor; rows x features) and ``data.expected_value`` as a numpy array. ``X`` is
        bound to the inputs as in :meth:`predict`. A model without an explainer raises
        :class:`ExplanationsUnavailableError`; a caller the model's policies do not allow to
        explain, :class:`PermissionDeniedError`."""
        info = self.metadata(name, version)
        arrays = _tensors.bind_inputs(info.inputs, X, where=f"model {name!r}: ")
        datatypes = {spec.name: spec.datatype for spec in info.inputs}
        body, headers = _tensors.encode_request(arrays, datatypes, binary=False, outputs=None)
        try:
            _, data = self._call("POST", self._model_path(name, version) + "/explain", body, headers)
        except ApiError as error:
            if error.status == 501:
                raise ExplanationsUnavailableError(
                    f"model {name!r} has no explainer ({error.message}): add `explainer:` to its palisade.yaml "
                    "and build it again (docs/explain.md)"
                ) from error
            raise
        explanation = json.loads(data)
        found = explanation.get("data") or {}
        if "shap_values" in found:
            found["shap_values"] = [np.asarray(v, dtype=np.float64) for v in found["shap_values"]]
        if "expected_value" in found:
            found["expected_value"] = np.asarray(found["expected_value"], dtype=np.float64)
        return explanation
