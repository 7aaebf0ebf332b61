"""The one home of a signal's payload: the fields every signal carries, and ``reason_class``.

Every payload holds ``run_id``, ``attempt`` (0 for monitor events), ``strategy``, ``metadata``,
``time`` (a UTC ``datetime``, from the sender's clock), ``lineage_id`` (the run id the lineage
started from) and ``recovery_id`` (a recovery's id on executor events, None on monitor events).
``reason_class`` is a low-cardinality label for metrics (one of ``REASON_CLASSES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["payload", "reason_class", "REASON_CLASSES"]

REASON_CLASSES = (
    "timeout",
    "connection",
    "rate_limited",
    "server_error",
    "auth",
    "not_found",
    "bad_request",
    "response",
    "attempt_timeout",
    "missing_checkpoint",
    "budget",
    "shutdown",
    "user_error",
    "interrupted",
    "internal",
    "other",
)
"""Every value ``reason_class`` can take."""


def payload(
    *,
    run_id: str,
    attempt: int,
    strategy: str,
    metadata: Mapping[str, Any],
    time: datetime,
    lineage_id: str,
    recovery_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A signal's keyword payload: the common fields, then ``extra`` (``checkpoint``, ``client``,
    ``new_run_id``, ``error``, ``reason``, ``reason_class``, ``duration_s`` where they apply)."""
    return {
        "run_id": run_id,
        "attempt": attempt,
        "strategy": strategy,
        "metadata": metadata,
        "time": time,
        "lineage_id": lineage_id,
        "recovery_id": recovery_id,
        **extra,
    }


def reason_class(error: BaseException | None) -> str:
    """The class of ``error`` as one of ``REASON_CLASSES``; knows this package's errors and, by
    ``status_code`` and class name, the official SDK's."""
    from . import errors

    if error is None:
        return "other"
    if isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return "interrupted"
    checks: tuple[tuple[type[BaseException], str], ...] = (
        (errors.Shutdown, "shutdown"),
        (errors.BudgetExhausted, "budget"),
        (errors.AttemptTimeout, "attempt_timeout"),
        (errors.MissingCheckpoint, "missing_checkpoint"),
        (errors.InvalidCheckpointPath, "missing_checkpoint"),
        (errors.RequestTimeout, "timeout"),
        (errors.ConnectionFailed, "connection"),
        (errors.ResponseError, "response"),
    )
    for cls, label in checks:
        if isinstance(error, cls):
            return label
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        if status in (401, 403):
            return "auth"
        if status == 404:
            return "not_found"
        if status == 429:
            return "rate_limited"
        if status >= 500:
            return "server_error"
        if 400 <= status < 500:
            return "bad_request"
    name = type(error).__name__
    if name in ("APITimeoutError", "ReadTimeout") or isinstance(error, TimeoutError):
        return "timeout"
    if name in ("APIConnectionError", "ConnectError") or isinstance(error, ConnectionError):
        return "connection"
    category = getattr(error, "category", None)
    if category is not None and str(category).lower() == "user":
        return "user_error"
    return "other"
