"""Typed reads from a decoded JSON object; every failure is a ResponseError naming the field.

Also the one home of decoding a body (``loads``) and of reading a timestamp (``parse_timestamp``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from ._text import escape_text
from .errors import ResponseError

__all__ = ["MAX_INT", "JsonObject", "loads", "parse_timestamp"]

T = TypeVar("T")
_MISSING = object()
MAX_INT = 2**63 - 1
"""Integers read from an answer must lie within +-MAX_INT (a larger one is refused, not trusted)."""
_MAX_TIMESTAMP_CHARS = 64
_UTC_MAX = datetime.max.replace(tzinfo=UTC)
_UTC_MIN = datetime.min.replace(tzinfo=UTC)


def _shown(value: str) -> str:
    return escape_text(value, limit=64)


def loads(body: bytes | str, what: str) -> Any:
    """Decode a JSON body. Raises ResponseError naming ``what`` for anything that is not JSON:
    bad syntax, bad UTF-8, nesting too deep for the parser (RecursionError), integers with more
    digits than Python converts. ``NaN``/``Infinity`` literals decode as floats (the typed reads
    of ``JsonObject`` refuse them where a field needs another type), so one odd item does not fail
    a whole page."""
    try:
        return json.loads(body)
    except RecursionError:
        failure = ResponseError(f"{what}: response is nested too deeply to decode")
    except (ValueError, TypeError):
        failure = ResponseError(f"{what}: response is not JSON ({len(body)} bytes)")
    raise failure


def parse_timestamp(value: str, field: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime.

    A timestamp without a zone reads as UTC (as the official SDK's types accept it); ``Z`` is UTC.
    One that falls outside the years 1 to 9999 once turned to UTC (``9999-12-31T23:59:59-05:00``)
    is clamped to ``datetime.max``/``datetime.min`` in UTC. Raises ResponseError naming ``field``
    for text that is not such a timestamp.
    """
    if len(value) > _MAX_TIMESTAMP_CHARS:
        raise ResponseError(f"{field}: not an ISO-8601 datetime: {_shown(value)}")
    try:
        parsed: datetime | None = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        parsed = None  # raised below, outside the except block: no chained context
    if parsed is None:
        raise ResponseError(f"{field}: not an ISO-8601 datetime: {_shown(value)}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        offset = parsed.utcoffset()
        return _UTC_MAX if offset is not None and offset.total_seconds() < 0 else _UTC_MIN


class JsonObject:
    """Reads fields of one JSON object, for the type named ``owner`` (used in error messages)."""

    __slots__ = ("_data", "_owner")

    def __init__(self, data: Any, owner: str) -> None:
        if not isinstance(data, Mapping):
            raise ResponseError(f"{owner}: expected a JSON object, got {type(data).__name__}")
        self._data: Mapping[str, Any] = data
        self._owner = owner

    def _get(self, name: str, required: bool) -> Any:
        value = self._data.get(name, _MISSING)
        if value is _MISSING or (value is None and required):
            if required:
                raise ResponseError(f"{self._owner}.{name}: missing required field")
            return None
        return value

    def _fail(self, name: str, expected: str, value: Any) -> ResponseError:
        return ResponseError(f"{self._owner}.{name}: expected {expected}, got {type(value).__name__}")

    def string(self, name: str) -> str:
        """A required string field."""
        value = self._get(name, True)
        if not isinstance(value, str):
            raise self._fail(name, "a string", value)
        return value

    def optional_string(self, name: str) -> str | None:
        """A string field that may be absent or null."""
        value = self._get(name, False)
        if value is not None and not isinstance(value, str):
            raise self._fail(name, "a string", value)
        return value

    def boolean(self, name: str, *, default: bool | None = None) -> bool:
        """A boolean field; when absent or null, ``default`` (None: the field is required)."""
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, bool):
            raise self._fail(name, "a boolean", value)
        return value

    def integer(self, name: str) -> int:
        """A required integer field (not a bool, within +-MAX_INT)."""
        value = self.optional_integer(name, required=True)
        assert value is not None
        return value

    def optional_integer(self, name: str, *, required: bool = False) -> int | None:
        """An integer field that may be absent or null (not a bool, within +-MAX_INT)."""
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "an integer", value)
        if not -MAX_INT <= value <= MAX_INT:
            raise ResponseError(f"{self._owner}.{name}: integer out of range ({len(str(abs(value)))} digits)")
        return value

    def timestamp(self, name: str) -> datetime:
        """A required ISO-8601 timestamp, as UTC (see ``parse_timestamp``)."""
        value = self.optional_timestamp(name, required=True)
        assert value is not None
        return value

    def optional_timestamp(self, name: str, *, required: bool = False) -> datetime | None:
        """An ISO-8601 timestamp that may be absent or null, as UTC (see ``parse_timestamp``)."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(name, "an ISO-8601 string", value)
        return parse_timestamp(value, f"{self._owner}.{name}")

    def str_map(self, name: str) -> dict[str, str] | None:
        """An object whose values are all strings, or None when absent or null."""
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(name, "an object of strings", value)
        return dict(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """A string field that must be one of ``choices``."""
        value = self.string(name)
        if value not in choices:
            raise ResponseError(
                f"{self._owner}.{name}: expected one of {', '.join(choices)}, got {_shown(value)}"
            )
        return value

    def nested(self, name: str, build: Callable[[Any], T], *, required: bool = False) -> T | None:
        """An object field built by ``build``; None when absent or null and not ``required``."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(name, "a JSON object", value)
        return build(value)

    def raw_list(self, name: str, *, required: bool = True) -> list[Any]:
        """A list field as decoded (empty when absent and not ``required``)."""
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(name, "a list", value)
        return value

    def items(self, name: str, build: Callable[[Any], T], *, required: bool = True) -> list[T]:
        """A list field, each item built by ``build`` (empty when absent and not ``required``)."""
        return [build(item) for item in self.raw_list(name, required=required)]
