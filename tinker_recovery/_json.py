"""Typed reads from a decoded JSON object; every failure is a ResponseError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Callable, TypeVar

from .errors import ResponseError

T = TypeVar("T")
_MISSING = object()


class JsonObject:
    """Reads fields of one JSON object, for the type named ``owner`` (used in error messages)."""

    __slots__ = ("_data", "_owner")

    def __init__(self, data: Any, owner: str) -> None:
        if not isinstance(data, Mapping):
            raise ResponseError(f"{owner}: expected a JSON object, got {type(data).__name__}")
        self._data = data
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

    def str(self, name: str, *, required: bool = True) -> str | None:
        value = self._get(name, required)
        if value is not None and not isinstance(value, str):
            raise self._fail(name, "a string", value)
        return value

    def bool(self, name: str, *, default: bool | None = None) -> bool:
        value = self._get(name, default is None)
        if value is None:
            return default  # type: ignore[return-value]
        if not isinstance(value, bool):
            raise self._fail(name, "a boolean", value)
        return value

    def int(self, name: str, *, required: bool = True) -> int | None:
        value = self._get(name, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._fail(name, "an integer", value)
        return value

    def datetime(self, name: str, *, required: bool = True) -> datetime | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(name, "an ISO-8601 string", value)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ResponseError(f"{self._owner}.{name}: not an ISO-8601 datetime: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            raise ResponseError(f"{self._owner}.{name}: datetime has no time zone: {value[:64]!r}")
        return parsed

    def str_map(self, name: str) -> dict[str, str] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(name, "an object of strings", value)
        return dict(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.str(name)
        if value not in choices:
            raise ResponseError(f"{self._owner}.{name}: expected one of {', '.join(choices)}, got {value!r}")
        return value  # type: ignore[return-value]

    def nested(self, name: str, build: Callable[[Any], T], *, required: bool = False) -> T | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(name, "a JSON object", value)
        return build(value)

    def list(self, name: str, build: Callable[[Any], T], *, required: bool = True) -> list[T]:
        value = self._get(name, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(name, "a list", value)
        return [build(item) for item in value]
