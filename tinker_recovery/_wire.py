"""The one home of reading what a server says besides the body's data: Retry-After and error text.

Both never raise, whatever the server sends.
"""

from __future__ import annotations

import email.utils
import math
import re
from typing import TYPE_CHECKING, Any

from ._json import loads
from ._text import escape_text
from .errors import ResponseError
from .redact import scrub

if TYPE_CHECKING:
    from ._http import Headers

__all__ = ["DETAIL_LIMIT", "RETRY_AFTER_CAP_S", "error_detail", "retry_after_s"]

RETRY_AFTER_CAP_S = 60.0
"""A server's Retry-After is obeyed up to this many seconds."""
DETAIL_LIMIT = 200
"""Characters of a server's error text kept in an error message."""
_NUMBER = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")


def _seconds(text: str, scale: float) -> float | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text) / scale
    return value if math.isfinite(value) else None


def retry_after_s(headers: Headers, now: float) -> float | None:
    """The server's retry hint in seconds, in ``[0, RETRY_AFTER_CAP_S]``, or None if absent or bad.

    Read from ``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds, or an HTTP date,
    ``now`` being the wall-clock time in seconds since the epoch). Only plain ASCII decimal numbers
    count (no sign, NaN, infinity or Unicode digits); a date in the past gives 0.
    """
    try:
        raw_ms = headers.get("retry-after-ms")
        raw = headers.get("retry-after")
    except Exception:
        return None
    if isinstance(raw_ms, str):
        value = _seconds(raw_ms, 1000.0)
        if value is not None:
            return min(value, RETRY_AFTER_CAP_S)
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    value = _seconds(raw, 1.0)
    if value is None:
        try:
            value = email.utils.parsedate_to_datetime(raw).timestamp() - now
        except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
            return None
        if not math.isfinite(value):
            return None
    return max(0.0, min(value, RETRY_AFTER_CAP_S))


def error_detail(body: bytes, key: str | None = None, limit: int = DETAIL_LIMIT) -> str:
    """A short, one-line, printable detail from an error body, scrubbed of ``key``.

    The JSON ``detail``/``error``/``message`` string when there is one, else the start of the body
    (decoded as UTF-8, bad bytes replaced). Newlines and control characters are escaped (see
    ``escape_text``), so a server cannot forge a log line. Never raises.
    """
    text: Any
    window = limit * 4 + 16 * len(key or "")  # scrub before cutting: a cut key would still leak
    try:
        data = loads(body, "error body")
    except ResponseError:
        text = body[:window].decode("utf-8", "replace").strip()
    else:
        text = None
        if isinstance(data, dict):
            for name in ("detail", "error", "message"):
                if isinstance(data.get(name), str):
                    text = data[name]
                    break
        if text is None:
            text = body[:window].decode("utf-8", "replace").strip()
    return escape_text(scrub(text[:window], key)[: limit * 4], limit=limit)
