"""Small pieces every part of FakeTinker shares: errors, results, JSON and request-field checks.

Nothing here holds state or imports another FakeTinker module.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ..models import ParsedCheckpointTinkerPath

__all__ = [
    "JSON",
    "PROTOBUF",
    "ApiProblem",
    "OpFailed",
    "Result",
    "dump",
    "failure",
    "field",
    "iso",
    "parse_path",
    "string_map",
]

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
_SERVED_SEGMENTS = ("weights", "sampler_weights")


class ApiProblem(Exception):
    """Answer the request with HTTP ``status`` and a JSON error body carrying ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OpFailed(Exception):
    """The future resolves to ``{"error": message, "category": category}``."""

    def __init__(self, message: str, category: str = "user") -> None:
        super().__init__(message)
        self.message = message
        self.category = category


@attrs.frozen
class Result:
    """A resolved future: the body to send and its content type."""

    body: bytes
    content_type: str = JSON


def dump(data: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def iso(timestamp: float) -> str:
    """Epoch seconds as ``2023-11-14T22:13:20Z`` (UTC, ``Z`` suffix, microseconds when non-zero)."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def failure(message: str, category: str = "user") -> Result:
    """A future that failed: the body the official client turns into ``RequestFailedError``."""
    return Result(dump({"error": message, "category": category}))


def field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """``body[name]`` checked against ``kind``; ApiProblem(400) naming the field when missing or wrong.

    A missing (or null) optional field gives None; ``bool`` never passes for ``int``.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise ApiProblem(400, f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiProblem(400, f"field {name!r} has the wrong type")
    return value


def string_map(value: Any, name: str) -> dict[str, str] | None:
    """A ``user_metadata``-style object as ``dict[str, str]`` (None stays None); ApiProblem(400) otherwise."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ApiProblem(400, f"{name} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def parse_path(path: Any) -> ParsedCheckpointTinkerPath:
    """A ``tinker://<run>/<weights|sampler_weights>/<name>`` path; ApiProblem(400) when malformed.

    Parsing is ``models.ParsedCheckpointTinkerPath``'s; FakeTinker serves only training and sampler
    checkpoints, so an ``external_weights`` path is refused too.
    """
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    except ValueError as exc:
        raise ApiProblem(400, str(exc)) from None
    if parsed.checkpoint_id.split("/", 1)[0] not in _SERVED_SEGMENTS:
        raise ApiProblem(
            400, f"invalid tinker path {path!r}: FakeTinker serves only weights and sampler_weights"
        )
    return parsed
