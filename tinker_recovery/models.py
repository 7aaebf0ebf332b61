"""Value types of the Tinker REST API, with the fields and optionality of the official SDK 0.38.

Build them with ``from_json(mapping)``: unknown keys are ignored; a missing required field or a
value of the wrong type raises ``ResponseError`` naming ``Type.field``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import attrs

from ._json import JsonObject
from .errors import ResponseError

__all__ = [
    "Checkpoint",
    "Cursor",
    "TrainingRun",
    "ParsedCheckpointTinkerPath",
    "CHECKPOINT_TYPES",
    "RunBrief",
    "ids_and_corrupted",
    "step_of",
]

CheckpointType = Literal["training", "sampler", "external"]
CHECKPOINT_TYPES: tuple[str, ...] = ("training", "sampler", "external")
_SEGMENT_TO_TYPE: dict[str, str] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}
_TINKER_SCHEME = "tinker://"
_STEP_IN_NAME = re.compile(r"step[-_]?([0-9]{1,18})(?![0-9])", re.IGNORECASE)
_STEP_METADATA_KEYS = ("step", "training_step")


_DIGITS = re.compile(r"[0-9]{1,18}")


def _ascii_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if _DIGITS.fullmatch(text) else None


def step_of(name: str, user_metadata: Mapping[str, str] | None = None) -> int | None:
    """The training step a checkpoint named ``name`` holds, or None when nothing says.

    In order: ``user_metadata["step"]``, then ``["training_step"]``, when ASCII digits (at most 18);
    then the last ``step<sep><digits>`` in the name (``step-000120``, ``step_7``, ``ckpt_step120``);
    then a name made of digits only (``000020`` -> 20, tinker-cookbook's periodic saves). Anything
    else (``final``, ``best``, Unicode digits) gives None.
    """
    for key in _STEP_METADATA_KEYS:
        value = (user_metadata or {}).get(key)
        if isinstance(value, str) and (step := _ascii_int(value)) is not None:
            return step
    found = _STEP_IN_NAME.findall(name)
    if found:
        return int(found[-1])
    return _ascii_int(name)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@attrs.frozen
class ParsedCheckpointTinkerPath:
    """A ``tinker://<run>/<weights|sampler_weights|external_weights>/<name>`` path, split into parts."""

    tinker_path: str
    training_run_id: str
    checkpoint_type: CheckpointType
    checkpoint_id: str

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        """Parse ``tinker_path``; raise ValueError unless it has exactly run, segment and name."""
        if not isinstance(tinker_path, str) or not tinker_path.startswith(_TINKER_SCHEME):
            raise ValueError(f"invalid tinker path {tinker_path!r}: must start with {_TINKER_SCHEME!r}")
        parts = tinker_path[len(_TINKER_SCHEME):].split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"invalid tinker path {tinker_path!r}: expected tinker://<run>/<segment>/<name>")
        checkpoint_type = _SEGMENT_TO_TYPE.get(parts[1])
        if checkpoint_type is None:
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: segment {parts[1]!r} is not one of "
                f"{', '.join(_SEGMENT_TO_TYPE)}"
            )
        return cls(tinker_path, parts[0], checkpoint_type, f"{parts[1]}/{parts[2]}")  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """The checkpoint's name: the last part of the path."""
        return self.checkpoint_id.split("/", 1)[1]


@attrs.frozen
class Checkpoint:
    """One saved checkpoint of a training run, as the REST API shows it."""

    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = False
    user_metadata: dict[str, str] | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Validate a decoded ``Checkpoint`` JSON object."""
        obj = JsonObject(data, "Checkpoint")
        return cls(
            checkpoint_id=obj.string("checkpoint_id"),
            checkpoint_type=obj.choice("checkpoint_type", CHECKPOINT_TYPES),  # type: ignore[arg-type]
            time=obj.timestamp("time"),
            tinker_path=obj.string("tinker_path"),
            size_bytes=obj.optional_integer("size_bytes"),
            public=obj.boolean("public", default=False),
            user_metadata=obj.str_map("user_metadata"),
            expires_at=obj.optional_timestamp("expires_at"),
        )

    @classmethod
    def from_path(cls, tinker_path: str, *, time: datetime) -> Checkpoint:
        """A checkpoint known only by its path (ValueError if the path does not parse)."""
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return cls(parsed.checkpoint_id, parsed.checkpoint_type, time, tinker_path)

    def to_json(self) -> dict[str, Any]:
        """The JSON object this checkpoint was read from (None fields omitted)."""
        data = {
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_type": self.checkpoint_type,
            "time": _iso(self.time),
            "tinker_path": self.tinker_path,
            "size_bytes": self.size_bytes,
            "public": self.public,
            "user_metadata": self.user_metadata,
            "expires_at": _iso(self.expires_at),
        }
        return {key: value for key, value in data.items() if value is not None}

    @property
    def name(self) -> str:
        """The name given at save time: ``checkpoint_id`` without its ``weights/`` segment."""
        return self.checkpoint_id.split("/", 1)[-1]

    @property
    def training_run_id(self) -> str | None:
        """The run the checkpoint belongs to, read from its path (None if the path does not parse)."""
        try:
            return ParsedCheckpointTinkerPath.from_tinker_path(self.tinker_path).training_run_id
        except ValueError:
            return None

    @property
    def step(self) -> int | None:
        """The training step this checkpoint was saved at, when it says so; else None.

        See ``step_of``: ``user_metadata["step"]`` (or ``"training_step"``) when that is a decimal
        integer, else the name: ``step-000120`` or ``ckpt_step120`` gives 120, a zero-padded
        numeric name as tinker-cookbook writes (``000020``) gives 20, ``final`` gives None.
        """
        return step_of(self.name, self.user_metadata)

    def is_expired(self, now: datetime) -> bool:
        """True when ``expires_at`` is set and not after ``now`` (an aware datetime)."""
        return self.expires_at is not None and self.expires_at <= now


@attrs.frozen
class Cursor:
    """Where a page sits in a listing: ``offset`` and ``limit`` of ``total_count`` items."""

    offset: int
    limit: int
    total_count: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cursor:
        """Validate a decoded ``Cursor`` JSON object."""
        obj = JsonObject(data, "Cursor")
        return cls(obj.integer("offset"), obj.integer("limit"), obj.integer("total_count"))

    @property
    def has_more(self) -> bool:
        """True when items remain after this page."""
        return self.offset + self.limit < self.total_count


@attrs.frozen
class TrainingRun:
    """A training run, as ``GET /api/v1/training_runs/{id}`` returns it."""

    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    last_request_time: datetime
    corrupted: bool = False
    lora_rank: int | None = None
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingRun:
        """Validate a decoded ``TrainingRun`` JSON object."""
        obj = JsonObject(data, "TrainingRun")
        return cls(
            training_run_id=obj.string("training_run_id"),
            base_model=obj.string("base_model"),
            model_owner=obj.string("model_owner"),
            is_lora=obj.boolean("is_lora"),
            last_request_time=obj.timestamp("last_request_time"),
            corrupted=obj.boolean("corrupted", default=False),
            lora_rank=obj.optional_integer("lora_rank"),
            last_checkpoint=obj.nested("last_checkpoint", Checkpoint.from_json),
            last_sampler_checkpoint=obj.nested("last_sampler_checkpoint", Checkpoint.from_json),
            user_metadata=obj.str_map("user_metadata"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object this run was read from (None fields omitted)."""
        data = {
            "training_run_id": self.training_run_id,
            "base_model": self.base_model,
            "model_owner": self.model_owner,
            "is_lora": self.is_lora,
            "last_request_time": _iso(self.last_request_time),
            "corrupted": self.corrupted,
            "lora_rank": self.lora_rank,
            "last_checkpoint": self.last_checkpoint.to_json() if self.last_checkpoint else None,
            "last_sampler_checkpoint": (
                self.last_sampler_checkpoint.to_json() if self.last_sampler_checkpoint else None
            ),
            "user_metadata": self.user_metadata,
        }
        return {key: value for key, value in data.items() if value is not None}


@attrs.frozen
class RunBrief:
    """What a listing page needs of a run: its id and corrupted flag, read cheaply.

    ``last_checkpoint`` is parsed on first access from the item's raw ``last_checkpoint`` object
    (None when absent); a malformed one raises ResponseError then, not when the page is read.
    ``full()`` parses the whole item (kept as read, ``raw``) into a TrainingRun when a corrupted
    run's other fields are needed, with no second request.
    """

    training_run_id: str
    corrupted: bool
    _raw_last_checkpoint: Mapping[str, Any] | None = attrs.field(
        default=None, repr=False, eq=False, alias="raw_last_checkpoint"
    )
    _raw: Mapping[str, Any] | None = attrs.field(default=None, repr=False, eq=False, alias="raw")

    @classmethod
    def from_json(cls, data: Any) -> RunBrief:
        """Read ``training_run_id`` (a string) and ``corrupted`` (a boolean, absent: False) only."""
        if type(data) is dict:  # what json.loads gives: the well-formed item checked inline (a listing
            run_id = data.get("training_run_id")  # reads 10,000 of them a second, issue 16)
            corrupted = data.get("corrupted", False)
            raw = data.get("last_checkpoint")
            if type(run_id) is str and type(corrupted) is bool and (raw is None or type(raw) is dict):
                return cls(run_id, corrupted, raw_last_checkpoint=raw, raw=data)
        obj = JsonObject(data, "TrainingRun")
        raw = data.get("last_checkpoint")
        if raw is not None and not isinstance(raw, Mapping):
            kind = type(raw).__name__
            raise ResponseError(f"TrainingRun.last_checkpoint: expected a JSON object, got {kind}")
        return cls(
            obj.string("training_run_id"),
            obj.boolean("corrupted", default=False),
            raw_last_checkpoint=raw,
            raw=data,
        )

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The run's last training checkpoint, parsed now (ResponseError if malformed)."""
        return None if self._raw_last_checkpoint is None else Checkpoint.from_json(self._raw_last_checkpoint)

    def full(self) -> TrainingRun | None:
        """The whole run, parsed now from the item as read: None when built without it (``raw``);
        ResponseError when a field a TrainingRun needs is malformed."""
        return None if self._raw is None else TrainingRun.from_json(self._raw)


RunT = TypeVar("RunT", TrainingRun, RunBrief)


def ids_and_corrupted(runs: Iterable[RunT]) -> tuple[list[str], list[RunT]]:
    """A page of runs as a listing poll reads it: every run's id, in order, and the corrupted runs
    (``corrupted`` read once per run; whatever it raises goes to the caller)."""
    ids: list[str] = []
    corrupted: list[RunT] = []
    for run in runs:
        ids.append(run.training_run_id)
        if run.corrupted:
            corrupted.append(run)
    return ids, corrupted
