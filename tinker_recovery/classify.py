"""Sorting an attempt's error into retryable (try again after a backoff) or fatal (stop now).

Knows this package's errors and, without importing it, the official ``tinker`` SDK's: its status
errors carry ``status_code``, its connection errors are named ``APIConnectionError`` /
``APITimeoutError``, a future that expired raises ``RetryableException``, and a failed future
raises ``RequestFailedError`` with a ``category``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from .errors import TinkerRecoveryError

__all__ = ["Verdict", "classify", "is_unloadable"]

log = logging.getLogger("tinker_recovery.classify")

FATAL_STATUSES = frozenset({400, 401, 403, 404, 422})
RETRYABLE_STATUSES = frozenset({408, 409, 429})
_TRANSIENT_NAMES = frozenset(
    {"APIConnectionError", "APITimeoutError", "RetryableException", "ConnectError", "ReadTimeout"}
)


@attrs.frozen
class Verdict:
    """Whether an error is worth retrying, and why (a short text for signals and logs)."""

    retryable: bool
    reason: str


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _is_user_error(error: BaseException) -> bool:
    """A failed future the service blamed on the request (the SDK's ``category == "user"``)."""
    category = getattr(error, "category", None)
    return category is not None and str(category).lower() == "user"


def _builtin_verdict(error: BaseException) -> Verdict:
    if not isinstance(error, Exception):
        return Verdict(False, f"fatal: {type(error).__name__} raised in the attempt")
    status = _status_of(error)
    if status is not None:
        if status in FATAL_STATUSES:
            return Verdict(False, f"fatal: HTTP {status} from the service")
        if status in RETRYABLE_STATUSES or status >= 500:
            return Verdict(True, f"transient: HTTP {status} from the service")
    if isinstance(error, TinkerRecoveryError):
        kind = "transient" if error.retryable else "fatal"
        return Verdict(error.retryable, f"{kind}: {type(error).__name__}")
    if type(error).__name__ in _TRANSIENT_NAMES or isinstance(error, (ConnectionError, TimeoutError)):
        return Verdict(True, f"transient: {type(error).__name__}")
    if _is_user_error(error):
        return Verdict(False, f"fatal: the service refused the request ({type(error).__name__}, user error)")
    return Verdict(True, f"transient: unclassified {type(error).__name__}")


def classify(error: BaseException, retry_on: Callable[[BaseException], bool | None] | None = None) -> Verdict:
    """The verdict on ``error``: ``retry_on(error)`` first when given (True: retry, False: fatal,
    None: no opinion; anything else, or raising, even KeyboardInterrupt or SystemExit: logged, no
    opinion), then the built-in rules. Errors not known to be fatal are retried; BaseExceptions that
    are not Exceptions (KeyboardInterrupt, SystemExit, GeneratorExit) are fatal."""
    if retry_on is not None:
        try:
            opinion = retry_on(error)
        except BaseException:
            log.error(
                "retry_on raised on %s; using the built-in classification",
                type(error).__name__,
                exc_info=True,
            )
            opinion = None
        if opinion is True:
            return Verdict(True, f"transient: retry_on chose to retry {type(error).__name__}")
        if opinion is False:
            return Verdict(False, f"fatal: retry_on refused to retry {type(error).__name__}")
    return _builtin_verdict(error)


def is_unloadable(error: BaseException) -> bool:
    """True when ``error`` says the checkpoint itself cannot be loaded (gone, or refused as
    unreadable), so an older checkpoint may still work."""
    return _status_of(error) == 404 or _is_user_error(error)
