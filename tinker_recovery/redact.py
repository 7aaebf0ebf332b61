"""Keeping the API key out of text and errors: ``scrub(text, key)`` and ``redact_error(error, key)``.

A server may echo the key back, raw or re-encoded; an error raised inside an ``except`` block chains
the request (and its ``X-API-Key`` header) through ``__context__``. These two functions are what
every part of the package, and a caller, applies before text or an error leaves it.

Forms recognised, character by character and in any mix: the raw character; a backslash escape
(``\\/``, ``\\-``, doubled backslashes included); JSON/Python escapes ``\\u0074``, ``\\x74``; URL
encoding ``%74`` (also double-encoded ``%2574``); HTML references ``&#116;`` / ``&#x74;``; and the
key's base64 (standard and URL-safe) at every alignment. Both the whole key and its secret part
(without the ``tml-`` prefix) are removed. Matching ignores letter case (over-redaction is safe).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .errors import TinkerRecoveryError

__all__ = [
    "REDACTED",
    "KeyFilter",
    "RedactedError",
    "contains_key",
    "keys_of",
    "redact_error",
    "redact_error_keys",
    "scrub",
    "scrub_bytes",
]

REDACTED = "<redacted>"
"""What replaces each occurrence of the key."""

E = TypeVar("E", bound=BaseException)

_MIN_SECRET = 8  # a secret part shorter than this is not scrubbed on its own (too many false hits)
_HEADERY = ("headers", "request")  # attributes whose objects carry request headers (requests, httpx)


class RedactedError(TinkerRecoveryError):
    """Stands in for an error that could not be copied safely with the key removed.

    ``original_type``: the class name of the error it replaces; ``status_code``: its HTTP status,
    or None; ``message``: its text, scrubbed.
    """

    def __init__(self, message: str, *, original_type: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.original_type = original_type
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_redacted, (self.message, self.original_type, self.status_code))


def _rebuild_redacted(message: str, original_type: str, status_code: int | None) -> RedactedError:
    return RedactedError(message, original_type=original_type, status_code=status_code)


def _char_pattern(char: str) -> str:
    code = ord(char)
    alternatives = [
        re.escape(char),
        r"\\+" + re.escape(char),
        rf"\\+u0*{code:x}",
        rf"\\+x{code:02x}",
        rf"%(?:25)*{code:02x}",
        rf"&#0*{code};",
        rf"&#x0*{code:x};",
    ]
    return "(?:" + "|".join(alternatives) + ")"


def _base64_forms(secret: str) -> list[str]:
    """The interior of the key's base64 at each of the three byte alignments, both alphabets."""
    forms: list[str] = []
    raw = secret.encode("utf-8", "surrogatepass")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        lead = -(-offset * 4 // 3)  # characters touched by the padding bytes in front
        interior = encoded[lead:-4]
        if len(interior) >= _MIN_SECRET:
            forms.append(interior)
            forms.append(interior.replace("+", "-").replace("/", "_"))
    return forms


@functools.lru_cache(maxsize=8)
def _pattern(key: str) -> re.Pattern[str]:
    secrets = [key]
    if key.startswith("tml-") and len(key) - 4 >= _MIN_SECRET:
        secrets.append(key[4:])
    parts = ["".join(_char_pattern(char) for char in secret) for secret in secrets]
    for secret in secrets:
        parts.extend(re.escape(form) for form in _base64_forms(secret))
    return re.compile("|".join(parts), re.IGNORECASE)


def scrub(text: str, key: str | None) -> str:
    """``text`` with every recognised form of ``key`` replaced by ``REDACTED``.

    ``key`` None or empty: ``text`` unchanged. Linear in ``len(text)``; never raises for a str.
    """
    if not key or not text:
        return text
    return _pattern(key).sub(REDACTED, text)


def scrub_bytes(data: bytes, key: str | None) -> bytes:
    """``scrub`` for a body of bytes (decoded as Latin-1, so every byte survives the round trip)."""
    if not key or not data:
        return data
    return scrub(data.decode("latin-1"), key).encode("latin-1", "replace")


def contains_key(text: str, key: str | None) -> bool:
    """True if ``text`` holds ``key`` in any form ``scrub`` removes."""
    return bool(key) and bool(text) and _pattern(key).search(text) is not None


def _scrub_value(value: Any, key: str | None, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value, key)
    if isinstance(value, (bytes, bytearray)):
        return scrub_bytes(bytes(value), key)
    if depth > 20:
        return None
    if isinstance(value, Mapping):
        return {_scrub_value(k, key, depth + 1): _scrub_value(v, key, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(item, key, depth + 1) for item in value)
    if isinstance(value, BaseException):
        return redact_error(value, key)
    if any(hasattr(value, name) for name in _HEADERY) and not isinstance(value, type):
        return None  # a request or response object: its headers hold the key
    return value


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _fallback(error: BaseException, key: str | None) -> RedactedError:
    try:
        text = str(error)
    except Exception:
        text = ""
    return RedactedError(
        scrub(text, key) or type(error).__name__,
        original_type=type(error).__name__,
        status_code=_status(error),
    )


def redact_error(error: E, key: str | None) -> E | RedactedError:
    """A copy of ``error`` that is safe to show, log, journal, pickle or hand to user code.

    The copy is of the same class (its ``__init__`` is not run) with: ``args``, string, bytes and
    container attributes scrubbed of ``key``; attributes holding request/response objects (they
    carry the request's headers) set to None; ``__cause__`` and ``__context__`` cleared
    (``__suppress_context__`` set); ``__notes__`` scrubbed; the traceback kept. The original is not
    changed. When the class cannot be copied this way, or the key would still show in the copy's
    ``str``/``repr``, a ``RedactedError`` naming the original class and its status stands in.
    ``key`` None: only the chain and the request objects are removed.
    """
    cls = type(error)
    try:
        copy = cls.__new__(cls)
        copy.args = tuple(_scrub_value(arg, key) for arg in error.args)
        state = getattr(error, "__dict__", None)
        if state:
            copy.__dict__.update({name: _scrub_value(value, key) for name, value in state.items()})
        copy.__cause__ = None
        copy.__context__ = None
        copy.__suppress_context__ = True
        copy.__traceback__ = error.__traceback__
        shown = str(copy) + repr(copy)
    except Exception:
        return _fallback(error, key)
    if contains_key(shown, key):
        return _fallback(error, key)
    return copy


def keys_of(*sources: Any) -> tuple[str, ...]:
    """The API keys ``sources`` hold, without repeats: a str is a key; a Config gives ``api_key``; a
    RestClient (anything with a ``config``) gives its config's; a service gives ``api_key`` or
    ``_api_key`` (the official SDK's ``ServiceClient`` keeps it there). None and objects without a key
    are skipped. ``TINKER_API_KEY`` from the environment is always added: a client built without a
    key reads it from there."""
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and value not in found:
            found.append(value)

    for source in sources:
        if source is None:
            continue
        if isinstance(source, str):
            add(source)
            continue
        config = getattr(source, "config", None)
        for holder in (source, config):
            if holder is None:
                continue
            for name in ("api_key", "_api_key"):
                with contextlib.suppress(Exception):  # a property that raises holds no key to read
                    add(getattr(holder, name, None))
    add(os.environ.get("TINKER_API_KEY"))
    return tuple(found)


def _unchanged(value: Any, keys: tuple[str, ...]) -> bool:
    scrubbed = value
    for key in keys or (None,):
        scrubbed = _scrub_value(scrubbed, key)
    return bool(scrubbed is value or (type(scrubbed) is type(value) and scrubbed == value))


def _clean(error: BaseException, keys: tuple[str, ...], depth: int = 0) -> bool:
    """True if nothing in ``error`` or its chain would be removed: no key in its args, attributes,
    text or notes, no request/response object, and every ``__cause__``/``__context__`` as clean."""
    if depth > 20:
        return False
    try:
        state = getattr(error, "__dict__", None) or {}
        if not all(_unchanged(value, keys) for value in (error.args, *state.values())):
            return False
        notes = getattr(error, "__notes__", None) or []
        text = str(error) + repr(error) + "".join(str(note) for note in notes)
    except Exception:
        return False
    if any(contains_key(text, key) for key in keys):
        return False
    return all(link is None or _clean(link, keys, depth + 1) for link in (error.__cause__, error.__context__))


def redact_error_keys(error: E, keys: Iterable[str | None]) -> E | RedactedError:
    """``error`` itself when it is clean (no key of ``keys`` in its args, attributes, text, notes or
    chain, and no request/response object in them), else ``redact_error`` applied for each key (no
    key: only the chain and the request objects go). So an error that holds nothing secret keeps its
    identity and its ``__cause__``; one that does is replaced by a copy, never changed in place."""
    wanted = tuple(key for key in keys if key)
    if _clean(error, wanted):
        return error
    redacted: E | RedactedError = redact_error(error, None)
    for key in wanted:
        redacted = redact_error(redacted, key)
    return redacted


class KeyFilter(logging.Filter):
    """A logging filter that scrubs keys from every record it sees (a safety net, not the first line:
    the package builds its log text from scrubbed values already).

    Attach it to a handler (``handler.addFilter(KeyFilter([key]))``) to cover every logger that
    handler writes, the HTTP stack's included; ``add(key)`` registers another key. The record's
    message is rendered, scrubbed and frozen (``args`` emptied); its exception and stack text are
    rendered and scrubbed too. Never drops a record.
    """

    def __init__(self, keys: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._keys: tuple[str, ...] = tuple(k for k in keys if k)

    def add(self, key: str) -> None:
        """Scrub ``key`` too from now on (an empty key is ignored)."""
        if key:
            with self._lock:
                if key not in self._keys:
                    self._keys += (key,)

    def _scrub_all(self, text: str) -> str:
        for key in self._keys:
            text = scrub(text, key)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._keys:
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = self._scrub_all(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub_all(record.exc_text)
            record.exc_info = None  # the text above is what gets printed; the objects could leak
        if record.stack_info:
            record.stack_info = self._scrub_all(record.stack_info)
        return True
