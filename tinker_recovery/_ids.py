"""Checks on identifiers before they are put into a URL path."""

from __future__ import annotations

import re
from typing import Any

_RUN_ID = re.compile(r"[A-Za-z0-9_.:@+=-]{1,256}")


def check_run_id(run_id: Any) -> str:
    """Return ``run_id`` if it is safe in a URL path, else raise ValueError (TypeError if not a str).

    Allowed: 1 to 256 of letters, digits and ``_ . : @ + = -``, never ``..``. So ``/``, ``%``,
    whitespace and control characters are refused before any request is sent.
    """
    if not isinstance(run_id, str):
        raise TypeError(f"run_id: expected str, got {type(run_id).__name__}")
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"run_id: {run_id[:80]!r} is not a valid training run id "
            "(letters, digits and _ . : @ + = - only; no '/', '..', '%' or whitespace)"
        )
    return run_id
