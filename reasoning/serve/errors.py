"""OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from reasoning.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadModel,
    MalformedResponse,
    UnsupportedRequest,
)

from .schemas import ErrorBody, ErrorDetail

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    502: "upstream_error",
    504: "timeout_error",
}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    detail = ErrorDetail(message=message, type=_TYPES.get(status, "server_error"), param=param, code=code)
    return JSONResponse(ErrorBody(error=detail).model_dump(), status_code=status, headers=headers)


# What a client (HTTP or MCP) is told when the upstream model fails: (status, code, message) by
# error type, first match. The error's own text (upstream URL, provider messages, maybe a key's
# prefix) is only logged: it is the operator's to read, not the caller's.
UPSTREAM_FAILURES: tuple[tuple[type[BackendError], int, str, str], ...] = (
    (BackendTimeout, 504, "upstream_timeout", "the upstream model did not answer within the request timeout"),
    (BackendUnavailable, 502, "upstream_unavailable", "the upstream model could not be reached"),
    (AuthenticationError, 502, "upstream_error", "the upstream model refused this server's credentials"),
    (BadModel, 502, "upstream_model_not_found", "the upstream model does not know this model name"),
    (MalformedResponse, 502, "upstream_error", "the upstream model answered with a malformed response"),
    (UnsupportedRequest, 502, "upstream_error", "the upstream model cannot serve what this strategy asks of it"),
    (BackendError, 502, "upstream_error", "the upstream model failed"),
)


log = logging.getLogger("reasoning.serve")


def upstream_message(failed: BackendError) -> tuple[int, str, str]:
    """(HTTP status, error code, message for the caller) of a backend failure. The failure's own
    text (an upstream's URL, key hints, internals) goes to the server's log only, never to the
    caller: the HTTP server and the MCP tool both answer through here."""
    log.warning("backend failed: %r", failed)
    status, code, message = next((s, c, m) for kind, s, c, m in UPSTREAM_FAILURES if isinstance(failed, kind))
    return status, code, f"{message} (details in the server's log)"
