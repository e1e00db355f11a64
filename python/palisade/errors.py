"""Exceptions raised by the Palisade SDK.

Every exception is a :class:`PalisadeError`. Errors from a server carry its message and the
request id it answered with (``x-request-id``), which also tags the server's log lines and
the request's audit record.
"""

from __future__ import annotations


class PalisadeError(Exception):
    """Base class of every error raised by the SDK."""


class BinaryNotFoundError(PalisadeError):
    """The ``palisade`` binary could not be found."""


class CommandError(PalisadeError):
    """A ``palisade`` command failed; the message is what it printed on stderr."""

    def __init__(self, command: list[str], returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        text = stderr.strip() or f"exited with status {returncode}"
        super().__init__(f"`palisade {' '.join(command)}` failed: {text}")


class UnsupportedModelError(PalisadeError, TypeError):
    """``palisade.save`` was given an object it cannot convert to ONNX."""


class ExportError(PalisadeError):
    """A converter could not export the model to ONNX, or Palisade refused the export."""


class ExportMismatchError(ExportError):
    """The ONNX export answers differently from the original model on the sample.

    ``differences`` lists one line per output that differs.
    """

    def __init__(self, message: str, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(message)


class ApiError(PalisadeError):
    """A server answered with an error status.

    Attributes: ``status`` (HTTP status), ``message`` (the server's message),
    ``request_id`` (``x-request-id``, to find the request in the server's log and audit
    trail) and ``url``.
    """

    def __init__(self, status: int, message: str, request_id: str | None, url: str) -> None:
        self.status = status
        self.message = message
        self.request_id = request_id
        self.url = url
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{status} from {url}: {message}{rid}")


class AuthenticationError(ApiError):
    """401: no token, or a token the server does not accept (expired, wrong issuer, ...)."""


class PermissionDeniedError(ApiError):
    """403: the token is valid but the model's policies do not allow this caller."""


class NotFoundError(ApiError):
    """404: no such model or version (answered only after authentication)."""


class ExplanationsUnavailableError(PalisadeError, NotImplementedError):
    """The model has no explainer (the server answers its explain endpoint with 501)."""


class OutliersUnavailableError(PalisadeError, NotImplementedError):
    """The model scores no outliers (its palisade.yaml has no ``monitoring.outliers``)."""


class DriftUnavailableError(PalisadeError, NotImplementedError):
    """The model has no ``monitoring.drift`` (the server answers its drift endpoint with 501)."""


def for_status(status: int) -> type[ApiError]:
    """The exception class for an HTTP status."""
    return {401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError}.get(status, ApiError)
