"""Typed errors: each carries what the user needs to act on it."""

from __future__ import annotations


class ReasoningError(Exception):
    """Base class of every error this framework raises on purpose."""


class BudgetExhausted(ReasoningError):
    """A backend call could not fit in the remaining budget, not even shrunk."""

    def __init__(self, limit: str, detail: str = "") -> None:
        self.limit = limit
        super().__init__(f"budget exhausted: {limit}" + (f" ({detail})" if detail else ""))


class BackendError(ReasoningError):
    """A backend failed in a way retries did not fix."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached (server down, model files missing)."""


class BackendTimeout(BackendUnavailable):
    """The backend did not answer within the request timeout (``--request-timeout``)."""


class MalformedResponse(BackendError):
    """The backend answered with a body that is not a valid response (not JSON, no ``choices``)."""


class AuthenticationError(BackendError):
    """The provider rejected the credentials."""


class BadModel(BackendError):
    """The provider does not know the model name."""


class UnsupportedRequest(BackendError):
    """The request uses a feature the backend does not declare (see Capabilities)."""


class ConfigError(ReasoningError, ValueError):
    """Bad user input: unknown names, malformed budgets or files."""
