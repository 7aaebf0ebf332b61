"""tinker-cookbook's checkpoint log: read it, pick the newest loadable record, make a rerun resume there.

A tinker-cookbook loop appends one JSON record per save to ``{log_path}/checkpoints.jsonl``::

    {"name": "000020", "batch": 20, "epoch": 0, "final": false,
     "state_path": "tinker://<run>/weights/000020", "sampler_path": "tinker://<run>/sampler_weights/000020",
     "elapsed_tokens": 81920}

and resumes, when run again, from the LAST record that has a ``state_path`` (restored with its optimizer),
starting at that record's ``(epoch, batch)``. Rolling saves live 2 h and are deleted when the next
rolling save lands, so that last record may no longer be loadable while an older periodic one is.

- ``read_log(log_path)`` / ``read_checkpoints(log_path)``: the records (a torn last line is skipped).
- ``record_step(record)``: the step a record was saved at (its zero-padded name).
- ``select_resume(...)``: the pure choice of the newest loadable record, given the REST listings.
- ``prepare_resume(log_path, rest)``: asks the REST API, then rewrites the file so that the chosen
  record is its last line (see below); what a supervisor calls between stopping and rerunning a loop.

The rewrite keeps the file a valid cookbook log: every kept line is left byte for byte as it was;
the lines after the chosen record (unusable newer records, and any record saved after it) and a
torn last line are moved to the sidecar ``{log_path}/checkpoints.unusable.jsonl``, one JSON object
per moved line: ``{"moved_at": ISO-8601 UTC, "reason": text, "line": N, "record": {...}}`` (or
``"raw": text`` for a torn line). The sidecar is appended and synced before the log is replaced
(``os.replace`` of a synced temporary file), so a crash in between loses nothing: at worst a line
is in both files. The loop must be stopped while this runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from ._text import escape_text
from .errors import MissingCheckpoint, NotFound
from .models import Checkpoint, ParsedCheckpointTinkerPath

__all__ = [
    "CHECKPOINTS_FILE",
    "SIDECAR_FILE",
    "CheckpointLogError",
    "CheckpointRecord",
    "CheckpointLog",
    "Skipped",
    "ResumePoint",
    "read_log",
    "read_checkpoints",
    "record_step",
    "select_resume",
    "prepare_resume",
]

log = logging.getLogger("tinker_recovery.cookbook")

CHECKPOINTS_FILE = "checkpoints.jsonl"
"""The cookbook's checkpoint log, in the loop's ``log_path``."""
SIDECAR_FILE = "checkpoints.unusable.jsonl"
"""Where ``prepare_resume`` moves the lines it takes out of the log."""
DEFAULT_EXPIRY_MARGIN_S = 60.0
"""A checkpoint expiring within this many seconds counts as expired: the rerun still has to load it."""

_KNOWN_FIELDS = ("name", "batch", "epoch", "final", "state_path", "sampler_path")
_NUMERIC_NAME = re.compile(r"[0-9]+")


class CheckpointLogError(ValueError):
    """A ``checkpoints.jsonl`` line that is not a cookbook record (not a torn last line); names the
    file, the line number and the field."""


def _optional_int(data: Mapping[str, Any], field: str, where: str) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointLogError(f"{where}: {field!r} must be an integer, got {escape_text(repr(value), 80)}")
    return value


def _optional_path(data: Mapping[str, Any], field: str, where: str, segment: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CheckpointLogError(f"{where}: {field!r} must be a tinker:// path, got {type(value).__name__}")
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(value)
    except ValueError:
        raise CheckpointLogError(
            f"{where}: {field!r} is not a tinker:// path: {escape_text(value, 120)}"
        ) from None
    if not parsed.checkpoint_id.startswith(segment + "/"):
        raise CheckpointLogError(
            f"{where}: {field!r} must be a tinker://<run>/{segment}/<name> path, "
            f"got {escape_text(value, 120)}"
        )
    return value


@attrs.frozen
class CheckpointRecord:
    """One line of ``checkpoints.jsonl``.

    ``name``: the save's name (``"000020"``, ``"final"``). ``batch``/``epoch``: the loop position the
    record stores (None when absent); in supervised training ``batch`` is the batch just finished,
    in RL the next batch to run. ``final``: the loop's last save. ``state_path``: the training
    checkpoint (``tinker://<run>/weights/<name>``; None for a sampler-only save). ``sampler_path``:
    the sampler weights (``tinker://<run>/sampler_weights/<name>``, or None). ``extras``: every
    other key (``elapsed_tokens``, ...). ``line``: its 1-based line number; ``raw``: the line's text.
    """

    name: str
    batch: int | None
    epoch: int | None
    final: bool
    state_path: str | None
    sampler_path: str | None
    extras: Mapping[str, Any] = attrs.field(factory=dict, eq=False)
    line: int = 0
    raw: str = attrs.field(default="", eq=False, repr=False)

    @classmethod
    def from_json(cls, data: Any, *, line: int = 0, raw: str = "", where: str = "record") -> CheckpointRecord:
        """Validate a decoded record. Raises CheckpointLogError naming ``where`` and the field."""
        if not isinstance(data, dict):
            raise CheckpointLogError(f"{where}: expected a JSON object, got {type(data).__name__}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise CheckpointLogError(
                f"{where}: 'name' must be a non-empty string, got {escape_text(repr(name), 80)}"
            )
        final = data.get("final", False)
        if not isinstance(final, bool):
            raise CheckpointLogError(
                f"{where}: 'final' must be true or false, got {escape_text(repr(final), 80)}"
            )
        return cls(
            name=name,
            batch=_optional_int(data, "batch", where),
            epoch=_optional_int(data, "epoch", where),
            final=final,
            state_path=_optional_path(data, "state_path", where, "weights"),
            sampler_path=_optional_path(data, "sampler_path", where, "sampler_weights"),
            extras={key: value for key, value in data.items() if key not in _KNOWN_FIELDS},
            line=line,
            raw=raw,
        )

    @property
    def tinker_path(self) -> str | None:
        """The training checkpoint a resume restores (``state_path``)."""
        return self.state_path

    @property
    def run_id(self) -> str | None:
        """The run that saved it, read from ``state_path`` (else ``sampler_path``)."""
        path = self.state_path or self.sampler_path
        return None if path is None else ParsedCheckpointTinkerPath.from_tinker_path(path).training_run_id

    def to_json(self) -> dict[str, Any]:
        """The record as the cookbook writes it (None paths left out, extras kept)."""
        data: dict[str, Any] = {
            "name": self.name,
            "batch": self.batch,
            "epoch": self.epoch,
            "final": self.final,
            "state_path": self.state_path,
            "sampler_path": self.sampler_path,
        }
        data = {key: value for key, value in data.items() if value is not None}
        data.update(self.extras)
        return data


@attrs.frozen
class CheckpointLog:
    """A ``checkpoints.jsonl`` as read: ``records`` oldest first, and ``torn_line`` (the text of a
    torn last line, or None)."""

    path: str
    records: tuple[CheckpointRecord, ...]
    torn_line: str | None = None

    @property
    def by_path(self) -> dict[str, CheckpointRecord]:
        """Records with a ``state_path``, keyed by it, oldest first (a repeated path: the newer wins)."""
        return {record.state_path: record for record in self.records if record.state_path is not None}

    def resume_candidates(self) -> list[CheckpointRecord]:
        """Records with a ``state_path``, newest first: the order a rerun would consider them."""
        return [record for record in reversed(self.records) if record.state_path is not None]


def _log_file(log_path: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(log_path), CHECKPOINTS_FILE)


def read_log(log_path: str | os.PathLike[str]) -> CheckpointLog:
    """Read ``{log_path}/checkpoints.jsonl`` line by line.

    A missing file gives no records. Blank lines are ignored. A last line that is not JSON (a loop
    killed mid-write) is skipped with a warning and kept in ``torn_line``; any other bad line raises
    CheckpointLogError naming the file, its line number and what is wrong.
    """
    path = _log_file(log_path)
    records: list[CheckpointRecord] = []
    pending: tuple[int, str, ValueError] | None = None  # a line that did not parse; fatal unless last
    try:
        file = open(path, encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return CheckpointLog(path, ())
    with file:
        for number, text in enumerate(file, start=1):
            line = text.rstrip("\n")
            if not line.strip():
                continue
            if pending is not None:
                raise CheckpointLogError(f"{path}: line {pending[0]}: {pending[2]}")
            where = f"{path}: line {number}"
            try:
                data = json.loads(line)
            except ValueError as error:
                pending = (number, line, ValueError(f"not JSON ({error})"))
                continue
            records.append(CheckpointRecord.from_json(data, line=number, raw=line, where=where))
    if pending is not None:
        log.warning("%s: skipped a torn last line %d (%d characters)", path, pending[0], len(pending[1]))
        return CheckpointLog(path, tuple(records), torn_line=pending[1])
    return CheckpointLog(path, tuple(records))


def read_checkpoints(log_path: str | os.PathLike[str]) -> dict[str, CheckpointRecord]:
    """The records of ``{log_path}/checkpoints.jsonl`` that have a ``state_path``, keyed by that
    ``tinker_path``, oldest first. See ``read_log``."""
    return read_log(log_path).by_path


def record_step(record: CheckpointRecord, batches_per_epoch: int | None = None) -> int | None:
    """The loop step a record was saved at.

    A zero-padded numeric name gives its number (``"000020"`` -> 20, ``"0"`` -> 0). Otherwise (e.g.
    ``"final"``), with ``batches_per_epoch`` given and both ``epoch`` and ``batch`` in the record:
    ``epoch * batches_per_epoch + batch``. Else None. ``batches_per_epoch`` must be >= 1 or None.
    """
    if batches_per_epoch is not None and (isinstance(batches_per_epoch, bool) or batches_per_epoch < 1):
        raise ValueError(f"batches_per_epoch: must be an int >= 1 or None, got {batches_per_epoch!r}")
    if _NUMERIC_NAME.fullmatch(record.name):
        return int(record.name)
    if batches_per_epoch is not None and record.epoch is not None and record.batch is not None:
        return record.epoch * batches_per_epoch + record.batch
    return None


# --- choosing the resume point ------------------------------------------------------------------


@attrs.frozen
class Skipped:
    """A record not resumed from, and why: ``"deleted"``, ``"expired"``, ``"expires within 60 s"``,
    ``"run not found"`` or ``"beyond the fallback budget"``."""

    record: CheckpointRecord
    reason: str


@attrs.frozen
class ResumePoint:
    """What ``prepare_resume`` decided.

    ``record``: the record a rerun resumes from (None: the log has no record with a state path, so
    the rerun starts from scratch). ``checkpoint``: that checkpoint as the REST API lists it.
    ``skipped``: newer records found unusable, newest first. ``moved``: lines moved to ``sidecar``.
    """

    log_path: str
    record: CheckpointRecord | None
    checkpoint: Checkpoint | None
    skipped: tuple[Skipped, ...] = ()
    moved: int = 0
    sidecar: str | None = None

    @property
    def step(self) -> int | None:
        """``record_step(record)``, or None."""
        return None if self.record is None else record_step(self.record)


def _unusable(
    record: CheckpointRecord, listing: Sequence[Checkpoint] | None, now: datetime, margin_s: float
) -> tuple[str | None, Checkpoint | None]:
    """(None, checkpoint) when the record is loadable, else (reason, None)."""
    if listing is None:
        return "run not found", None
    found = next(
        (c for c in listing if c.tinker_path == record.state_path and c.checkpoint_type == "training"), None
    )
    if found is None:
        return "deleted", None
    if found.is_expired(now):
        return "expired", None
    if margin_s > 0 and found.is_expired(now + timedelta(seconds=margin_s)):
        return f"expires within {margin_s:g} s", None
    return None, found


def select_resume(
    candidates: Sequence[CheckpointRecord],
    listing_of: Callable[[str], Sequence[Checkpoint] | None],
    now: datetime,
    *,
    max_fallbacks: int = 2,
    expiry_margin_s: float = DEFAULT_EXPIRY_MARGIN_S,
) -> tuple[CheckpointRecord, Checkpoint, tuple[Skipped, ...]]:
    """Pick the newest loadable record of ``candidates`` (records with a state path, newest first).

    ``listing_of(run_id)`` gives a run's checkpoints as the REST API lists them, or None when the run
    is not found; it is called once per run, only for the records looked at. A record is loadable
    when its ``state_path`` is listed as a training checkpoint whose ``expires_at`` is None or later
    than ``now + expiry_margin_s`` (an aware datetime; a margin of 0 accepts anything not yet
    expired). At most ``1 + max_fallbacks`` records are looked at (the newest, then older ones).
    Returns (record, checkpoint, skipped newer records). Raises MissingCheckpoint saying why each
    record looked at was skipped, also when ``candidates`` is empty; ValueError for a bad argument.
    """
    if isinstance(max_fallbacks, bool) or not isinstance(max_fallbacks, int) or max_fallbacks < 0:
        raise ValueError(f"max_fallbacks: must be an int >= 0, got {max_fallbacks!r}")
    if not expiry_margin_s >= 0 or expiry_margin_s == float("inf"):
        raise ValueError(f"expiry_margin_s: must be a finite number >= 0, got {expiry_margin_s!r}")
    listings: dict[str, Sequence[Checkpoint] | None] = {}
    skipped: list[Skipped] = []
    for index, record in enumerate(candidates):
        if index > max_fallbacks:
            break
        run_id = record.run_id
        assert run_id is not None and record.state_path is not None, "candidates must have a state_path"
        if run_id not in listings:
            listings[run_id] = listing_of(run_id)
        reason, checkpoint = _unusable(record, listings[run_id], now, expiry_margin_s)
        if checkpoint is not None:
            return record, checkpoint, tuple(skipped)
        assert reason is not None
        skipped.append(Skipped(record, reason))
    if not candidates:
        raise MissingCheckpoint("the checkpoint log has no record with a state_path")
    why = "; ".join(f"{escape_text(s.record.name, 40)} (line {s.record.line}): {s.reason}" for s in skipped)
    left = len(candidates) - len(skipped)
    more = f"; {left} older record(s) beyond max_fallbacks={max_fallbacks}" if left > 0 else ""
    raise MissingCheckpoint(f"no loadable record in the checkpoint log: {why}{more}")


# --- rewriting the log --------------------------------------------------------------------------


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a platform without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _moved_entries(
    log_file: CheckpointLog, keep_through: int, reasons: Mapping[int, str], now: datetime
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for record in log_file.records:
        if record.line > keep_through:
            entries.append(
                {
                    "moved_at": now.isoformat(),
                    "reason": reasons.get(record.line, "saved after the resume point"),
                    "line": record.line,
                    "record": json.loads(record.raw),
                }
            )
    if log_file.torn_line is not None:
        entries.append({"moved_at": now.isoformat(), "reason": "torn last line", "raw": log_file.torn_line})
    return entries


def _rewrite(log_file: CheckpointLog, keep_through: int, moved: list[dict[str, Any]]) -> str:
    """Append ``moved`` to the sidecar (synced), then atomically replace the log with its records up
    to line ``keep_through``. Returns the sidecar's path."""
    directory = os.path.dirname(log_file.path)
    sidecar = os.path.join(directory, SIDECAR_FILE)
    with open(sidecar, "a", encoding="utf-8") as out:
        for entry in moved:
            out.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        out.flush()
        os.fsync(out.fileno())
    temporary = f"{log_file.path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as out:
            for record in log_file.records:
                if record.line <= keep_through:
                    out.write(record.raw + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, log_file.path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_dir(directory)
    return sidecar


def prepare_resume(
    log_path: str | os.PathLike[str],
    rest: Any,
    *,
    now: datetime | None = None,
    max_fallbacks: int = 2,
    expiry_margin_s: float = DEFAULT_EXPIRY_MARGIN_S,
) -> ResumePoint:
    """Make the newest loadable record of ``{log_path}/checkpoints.jsonl`` the one a rerun resumes from.

    ``rest``: a ``RestClient`` (anything with ``list_checkpoints(run_id)``); a run it answers 404
    for counts as "run not found", every other error it raises propagates (a TinkerRecoveryError;
    retry later). ``now``: an aware datetime, default the current UTC time. See ``select_resume``
    for ``max_fallbacks`` and ``expiry_margin_s``, and the module docstring for the rewrite.

    Without any record with a state path the file is left alone (a torn last line is still moved
    out) and the ResumePoint's ``record`` is None: the rerun starts from scratch. Raises
    MissingCheckpoint when records exist but none within the budget is loadable (the file is then
    left unchanged), CheckpointLogError for a malformed log, OSError if the file cannot be rewritten.
    """
    moment = now if now is not None else datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("now: must be an aware datetime")
    log_file = read_log(log_path)

    def listing_of(run_id: str) -> Sequence[Checkpoint] | None:
        try:
            return list(rest.list_checkpoints(run_id))
        except NotFound:
            return None

    candidates = log_file.resume_candidates()
    if not candidates:
        moved_lines = _moved_entries(log_file, keep_through=10**18, reasons={}, now=moment)
        sidecar = _rewrite(log_file, 10**18, moved_lines) if moved_lines else None
        return ResumePoint(log_file.path, None, None, (), len(moved_lines), sidecar)
    record, checkpoint, skipped = select_resume(
        candidates, listing_of, moment, max_fallbacks=max_fallbacks, expiry_margin_s=expiry_margin_s
    )
    reasons = {s.record.line: s.reason for s in skipped}
    moved_lines = _moved_entries(log_file, keep_through=record.line, reasons=reasons, now=moment)
    sidecar = _rewrite(log_file, record.line, moved_lines) if moved_lines else None
    for entry in skipped:
        log.warning(
            "%s: record %s (line %d, %s) is unusable: %s; moved to %s",
            log_file.path,
            escape_text(entry.record.name, 40),
            entry.record.line,
            escape_text(entry.record.state_path or "", 200),
            entry.reason,
            SIDECAR_FILE,
        )
    log.info(
        "%s: a rerun resumes from record %s (line %d, %s)",
        log_file.path,
        escape_text(record.name, 40),
        record.line,
        escape_text(record.state_path or "", 200),
    )
    return ResumePoint(log_file.path, record, checkpoint, skipped, len(moved_lines), sidecar)
