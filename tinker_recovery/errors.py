"""The exception hierarchy: every error this package raises derives from TinkerRecoveryError.

Each class says through ``retryable`` whether trying the same operation again may succeed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TinkerRecoveryError",
    "ApiError",
    "BadRequest",
    "AuthenticationError",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "UnprocessableEntity",
    "RateLimited",
    "ServerError",
    "ConnectionFailed",
    "RequestTimeout",
    "ResponseError",
    "RecoveryError",
    "RecoveryDisabled",
    "AlreadyPending",
    "NoExecutor",
    "MissingCheckpoint",
    "CheckpointStrategyNotSupported",
    "InvalidCheckpointPath",
    "AttemptTimeout",
    "BudgetExhausted",
    "Shutdown",
]


class TinkerRecoveryError(Exception):
    """Root of every error raised by tinker_recovery.

    ``retryable`` is True when the same call may succeed if tried again later.
    """

    retryable: bool = False


# --- REST errors --------------------------------------------------------------------------------


class ApiError(TinkerRecoveryError):
    """The service answered with an HTTP error status.

    ``status_code`` is the HTTP status; ``retry_after_s`` is the server's Retry-After hint in
    seconds, or None when it sent none. 408, 409, 429 and 5xx are retryable; other 4xx are not.
    """

    def __init__(self, message: str, *, status_code: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.retryable = status_code in (408, 409, 429) or status_code >= 500

    def __reduce__(self) -> tuple[Any, ...]:  # pickling and copying work with keyword-only arguments
        return (_rebuild_api_error, (type(self), self.message, self.status_code, self.retry_after_s))


def _rebuild_api_error(
    cls: type[ApiError], message: str, status_code: int, retry_after_s: float | None
) -> ApiError:
    return cls(message, status_code=status_code, retry_after_s=retry_after_s)


class BadRequest(ApiError, ValueError):
    """400: the service refused the request as malformed. Not retryable."""


class AuthenticationError(ApiError):
    """401: the API key is missing, malformed or not accepted. Not retryable."""


class PermissionDenied(ApiError):
    """403: the key is valid but may not touch this resource. Not retryable."""


class NotFound(ApiError, LookupError):
    """404: no such training run or checkpoint. Not retryable."""


class Conflict(ApiError):
    """409: the resource is in a conflicting state. Retryable."""


class UnprocessableEntity(ApiError, ValueError):
    """422: the request was well formed but its values were refused. Not retryable."""


class RateLimited(ApiError):
    """429: too many requests. Retryable, after ``retry_after_s`` when the server gave one."""


class ServerError(ApiError):
    """5xx: the service failed. Retryable."""


_STATUS_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: UnprocessableEntity,
    429: RateLimited,
}


def error_for_status(status_code: int, message: str, retry_after_s: float | None = None) -> ApiError:
    """Build the ApiError subclass that matches ``status_code``."""
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else ApiError
    return cls(message, status_code=status_code, retry_after_s=retry_after_s)


class ConnectionFailed(TinkerRecoveryError, ConnectionError):
    """The service could not be reached, or the connection broke mid-request. Retryable."""

    retryable = True


class RequestTimeout(ConnectionFailed, TimeoutError):
    """The service did not answer within the request's time-out. Retryable."""


class ResponseError(TinkerRecoveryError, ValueError):
    """A response body was too large, was not JSON, or did not have the documented shape.

    Retryable: a truncated or garbled body is usually a passing fault of a proxy or the network.
    """

    retryable = True


# --- recovery errors ----------------------------------------------------------------------------


class RecoveryError(TinkerRecoveryError):
    """A recovery could not be requested or could not be carried out."""


class RecoveryDisabled(RecoveryError):
    """The policy is not enabled: recovery is opt-in (``Policy(enabled=True)``)."""


class AlreadyPending(RecoveryError):
    """That run is already queued, recovering, or waiting for a retry."""


class NoExecutor(RecoveryError):
    """The monitor has no executor to hand corrupted runs to."""


class MissingCheckpoint(RecoveryError):
    """No training checkpoint was found to restart from. Not retryable."""


class CheckpointStrategyNotSupported(RecoveryError):
    """The policy's checkpoint strategy cannot be carried out. Not retryable."""


class InvalidCheckpointPath(RecoveryError, ValueError):
    """The chosen path is not a loadable training checkpoint path. Not retryable."""


class AttemptTimeout(RecoveryError, TimeoutError):
    """One recovery attempt ran past ``Policy.attempt_timeout_ms``. Retryable."""

    retryable = True


class BudgetExhausted(RecoveryError):
    """The lineage's restart budget (``max_recoveries`` within ``recovery_window_s``) is spent."""


class Shutdown(RecoveryError):
    """The executor or monitor was shut down before the work could run."""
