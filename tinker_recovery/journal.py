"""The recovery journal: a durable JSON-lines log of watched runs, and how a restarted watcher resumes.

One entry per line, built by ``entry_for`` from a signal's payload: ``time`` (ISO-8601, UTC),
``event`` (a signal's event name: ``detected`` ... ``poll_error``, ``watched``, ``unwatched``),
``run_id``, ``attempt``, and where they apply ``lineage_id``, ``recovery_id``, ``checkpoint`` (a
path), ``new_run_id``, ``error`` ("Type: text"), ``reason``, ``reason_class``, ``duration_s``. Never
the API key, metadata or clients. A compacted journal also holds ``lineage`` entries: one per live
lineage, with its head run, ``restarts`` and ``pending_recovery_id`` (what resume needs, nothing more).
Journals written by earlier versions (``watch`` / ``unwatch`` entries) are read too.

Durability: every entry is one ``write`` of a whole line, flushed (``fsync=True`` also syncs it to
disk). A torn or garbage line (a crash mid-write, a disk error) is skipped on reading with one
warning per read that counts them, and is never glued to: a journal that does not end in a newline
gets one before the next entry. A write error is logged once, kept in ``Journal.write_error`` and
counted in ``Journal.lost_entries``; recovery goes on and ``close()`` never raises.

Bounded: a run's poll errors are journaled when a streak starts or changes class (then at most once
per ``poll_error_every_s``); its end is seen at the run's next journaled event, which then carries
``poll_errors_suppressed``. When the file passes ``compact_bytes`` or ``compact_entries``, it is
rewritten atomically (a temporary file, then ``os.replace``) with one ``lineage`` entry per live
lineage. The first Journal to open a file holds its writer lock (``flock``) and alone compacts it;
another (in this process or another) appends whole lines too, follows the file when it is
replaced, and warns once; the owner then compacts from the file (an entry the other appends
during that rewrite can be lost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any

import attrs
from blinker import NamedSignal

from . import events, signals
from ._ids import check_run_id
from ._text import escape_text
from .clock import Clock, SystemClock

__all__ = [
    "Journal",
    "ResumeItem",
    "EVENTS",
    "entry_for",
    "iter_journal",
    "read_journal",
    "lineage_heads",
    "resume_plan",
]

log = logging.getLogger("tinker_recovery.journal")

_SIGNALS: tuple[NamedSignal, ...] = (*signals.ALL, signals.watched, signals.unwatched)
EVENTS: tuple[str, ...] = tuple(signal.name.rsplit(".", 1)[1] for signal in _SIGNALS)
"""The event names ``entry_for`` accepts: the 8 recovery signals, then ``watched`` and ``unwatched``."""

TEXT_LIMIT = 2000
"""At most this many characters of an error or a reason are journaled (``…`` marks a cut)."""

MAX_RESTARTS = 1000
"""At most this many restart times are kept per lineage (the newest)."""

_MAX_LINE = 1 << 20  # a longer line is garbage: skipped without holding it all in memory
_OPTIONAL_IDS = ("lineage_id", "recovery_id", "new_run_id")


# --- one entry ------------------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat()


def _error_text(error: Any) -> str:
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {escape_text(error, TEXT_LIMIT)}"
    return escape_text(error, TEXT_LIMIT)


def _checkpoint_path(checkpoint: Any) -> str:
    if isinstance(checkpoint, str):
        return checkpoint
    path = getattr(checkpoint, "tinker_path", None)
    if not isinstance(path, str):
        raise ValueError(
            f"payload field 'checkpoint': expected a Checkpoint or a path, got {type(checkpoint).__name__}"
        )
    return path


def entry_for(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The journal entry (a JSON-ready dict) for signal ``event`` sent with ``payload``.

    ``event``: one of ``EVENTS``. ``payload``: a signal's keyword payload (see ``events.payload``);
    it must hold ``run_id`` (str), ``attempt`` (int) and ``time`` (a datetime; naive is read as UTC).
    Fields that are None or absent are left out; ``metadata`` and clients are never copied. ``error``
    becomes "Type: text" and ``reason`` one line (``escape_text``, at most ``TEXT_LIMIT``
    characters); ``reason_class`` is derived from ``error`` when the payload has none. Raises
    ValueError naming the event or the field that is missing or of the wrong type.
    """
    if event not in EVENTS:
        raise ValueError(f"event: {escape_text(event, 80)!r} is not one of {', '.join(EVENTS)}")
    run_id = payload.get("run_id")
    if not isinstance(run_id, str):
        raise ValueError(f"payload field 'run_id' of {event}: expected str, got {type(run_id).__name__}")
    attempt = payload.get("attempt")
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise ValueError(f"payload field 'attempt' of {event}: expected int, got {type(attempt).__name__}")
    when = payload.get("time")
    if not isinstance(when, datetime):
        raise ValueError(f"payload field 'time' of {event}: expected a datetime, got {type(when).__name__}")
    entry: dict[str, Any] = {"time": _iso(when), "event": event, "run_id": run_id, "attempt": attempt}
    for key in _OPTIONAL_IDS:
        value = payload.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(
                    f"payload field {key!r} of {event}: expected str, got {type(value).__name__}"
                )
            entry[key] = value
    checkpoint = payload.get("checkpoint")
    if checkpoint is not None:
        entry["checkpoint"] = _checkpoint_path(checkpoint)
    error = payload.get("error")
    if error is not None:
        entry["error"] = _error_text(error)
    reason = payload.get("reason")
    if reason is not None:
        entry["reason"] = escape_text(reason, TEXT_LIMIT)
    label = payload.get("reason_class")
    if label is None and isinstance(error, BaseException):
        label = events.reason_class(error)
    if label is not None:
        entry["reason_class"] = escape_text(label, 40)
    duration = payload.get("duration_s")
    if duration is not None:
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or not math.isfinite(duration)
        ):
            raise ValueError(
                f"payload field 'duration_s' of {event}: expected a finite number, got {duration!r}"
            )
        entry["duration_s"] = round(float(duration), 6)
    return entry


def _line(entry: Mapping[str, Any]) -> bytes:
    """One journal line: ASCII JSON (so no raw newline or control character) and ``\\n``."""
    return (
        json.dumps(entry, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str).encode()
        + b"\n"
    )


# --- reading --------------------------------------------------------------------------------------


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("event"), str)
        or not isinstance(entry.get("run_id"), str)
    ):
        return None
    return entry


def _entries(file: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    """The entries of an open journal, streamed line by line; bad lines counted in one warning."""
    bad: list[int] = []
    number = 0
    try:
        while True:
            raw = file.readline(_MAX_LINE)
            if not raw:
                break
            number += 1
            if len(raw) == _MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of an over-long line
                    raw = file.readline(_MAX_LINE)
                bad.append(number)
                continue
            if not raw.strip():
                continue
            entry = _parse(raw)
            if entry is None:
                bad.append(number)
                continue
            yield entry
    finally:
        if bad:
            shown = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
            log.warning(
                "journal %s: skipped %d torn or garbage line(s) (line %s)", escape_text(name), len(bad), shown
            )


def iter_journal(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every entry of the journal at ``path``, oldest first, read one line at a time (memory does
    not grow with the file). A missing file gives nothing. Torn or garbage lines (not a JSON object
    with a str ``event`` and ``run_id``, or longer than 1 MiB) are skipped, with one warning at the
    end that counts them. OSError for a file that exists but cannot be read."""
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except FileNotFoundError:
        return
    with file:
        yield from _entries(file, os.fspath(path))


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``iter_journal(path)`` as a list (for small journals and tests; resume streams instead)."""
    return list(iter_journal(path))


# --- resume ---------------------------------------------------------------------------------------


def _utc_list(value: Any) -> tuple[datetime, ...]:
    return (
        tuple(sorted(when for when in (_parse_time(v) for v in value) if when is not None))
        if isinstance(value, list)
        else ()
    )


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


@attrs.frozen
class ResumeItem:
    """One lineage a restarted watcher must watch again.

    - ``run_id``: the lineage's head (the run it trains now).
    - ``lineage_id``: the run id the lineage started from.
    - ``restarts``: UTC times of its completed recoveries, oldest first (at most ``MAX_RESTARTS``),
      for ``Executor.seed_budget``; () when none.
    - ``pending_recovery_id``: a recovery that ``started`` and neither ``completed`` nor was given
      up (cut short by a crash or a shutdown), for ``Executor.recover(recovery_id=...)`` so the
      run it may have created is adopted; None when there is none.
    """

    run_id: str
    lineage_id: str
    restarts: tuple[datetime, ...] = ()
    pending_recovery_id: str | None = None


class _Lineage:
    __slots__ = ("head", "lineage_id", "pending", "restarts")

    def __init__(self, lineage_id: str, head: str) -> None:
        self.lineage_id = lineage_id
        self.head = head
        self.restarts: list[datetime] = []
        self.pending: str | None = None

    def item(self) -> ResumeItem:
        return ResumeItem(self.head, self.lineage_id, tuple(self.restarts), self.pending)


_NOT_GIVEN_UP = ("shutdown", "interrupted")


def _shutdown(entry: Mapping[str, Any]) -> bool:
    """True when an ``exhausted``/``unwatched`` entry was caused by a shutdown or an interrupt of the
    watching process (``reason_class`` "shutdown" or "interrupted", or a ``Shutdown`` error), not by
    a give-up, a user stop or a drop. Entries of earlier versions: a ``reason`` starting "shutdown"."""
    label = entry.get("reason_class")
    if label in _NOT_GIVEN_UP or str(entry.get("error", "")).startswith("Shutdown:"):
        return True
    return not isinstance(label, str) and str(entry.get("reason", "")).startswith("shutdown")


class _ResumeState:
    """The fold of entries into live lineages (a pure object): what resume and compaction need.

    - ``watched`` (or ``watch``) starts a lineage, or moves an existing one to that run;
    - ``started`` marks its recovery pending; ``completed`` counts a restart, clears it, and moves
      the lineage to ``new_run_id``;
    - ``exhausted`` ends it (unless caused by a shutdown or an interrupt: it is then resumed,
      still pending);
    - ``unwatched`` (or ``unwatch``) of its head ends it (a user stop, a drop), unless its
      ``reason_class`` is ``shutdown``;
    - entries of a lineage that ended or was never watched are ignored (a recovery completing
      after a user stop does not bring the lineage back); ``lineage`` entries restore a lineage.
    """

    def __init__(self) -> None:
        self.lineages: dict[str, _Lineage] = {}
        self._by_head: dict[str, str] = {}  # head run id -> lineage id (for entries without one)

    def _move(self, lineage: _Lineage, run_id: str) -> None:
        if self._by_head.get(lineage.head) == lineage.lineage_id:
            del self._by_head[lineage.head]
        lineage.head = run_id
        self._by_head[run_id] = lineage.lineage_id

    def _end(self, lineage: _Lineage) -> None:
        self.lineages.pop(lineage.lineage_id, None)
        if self._by_head.get(lineage.head) == lineage.lineage_id:
            del self._by_head[lineage.head]

    def apply(self, entry: Mapping[str, Any]) -> None:
        event, run_id = entry.get("event"), entry.get("run_id")
        if not isinstance(run_id, str):
            return
        lineage_id = entry.get("lineage_id")
        if not isinstance(lineage_id, str):
            lineage_id = self._by_head.get(run_id, run_id)
        lineage = self.lineages.get(lineage_id)
        if event in ("watched", "watch", "lineage"):
            if lineage is None:
                lineage = self.lineages[lineage_id] = _Lineage(lineage_id, run_id)
            self._move(lineage, run_id)
            if event == "lineage":
                lineage.restarts = list(_utc_list(entry.get("restarts")))[-MAX_RESTARTS:]
                pending = entry.get("pending_recovery_id")
                lineage.pending = pending if isinstance(pending, str) else None
            return
        if lineage is None:
            return
        if event == "started":
            recovery_id = entry.get("recovery_id")
            if isinstance(recovery_id, str):
                lineage.pending = recovery_id
        elif event == "completed":
            when = _parse_time(entry.get("time"))
            if when is not None:
                lineage.restarts.append(when)
                if len(lineage.restarts) > MAX_RESTARTS:
                    del lineage.restarts[0]
            recovery_id = entry.get("recovery_id")
            if recovery_id is None or recovery_id == lineage.pending:
                lineage.pending = None
            new_run_id = entry.get("new_run_id")
            if isinstance(new_run_id, str):
                self._move(lineage, new_run_id)
        elif event == "exhausted":
            if not _shutdown(entry):
                self._end(lineage)
        elif event in ("unwatched", "unwatch") and run_id == lineage.head and not _shutdown(entry):
            self._end(lineage)

    def plan(self) -> list[ResumeItem]:
        return [lineage.item() for lineage in self.lineages.values()]

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        """One ``lineage`` entry per live lineage: replayed, they give the same plan."""
        time = _iso(now)
        out = []
        for lineage in self.lineages.values():
            entry: dict[str, Any] = {
                "time": time,
                "event": "lineage",
                "run_id": lineage.head,
                "attempt": 0,
                "lineage_id": lineage.lineage_id,
                "restarts": [_iso(when) for when in lineage.restarts],
            }
            if lineage.pending is not None:
                entry["pending_recovery_id"] = lineage.pending
            out.append(entry)
        return out


def resume_plan(entries: Iterable[Mapping[str, Any]]) -> list[ResumeItem]:
    """What a restarted watcher must watch again after ``entries`` (oldest first): one item per
    lineage still live, in the order the lineages were first watched. A lineage the user stopped,
    the monitor dropped, or whose recovery was given up is absent; one whose recovery was cut short
    by a shutdown (``exhausted`` with ``reason_class`` "shutdown") or a crash is there, with its
    ``pending_recovery_id``. Pure: reads nothing but ``entries``."""
    state = _ResumeState()
    for entry in entries:
        state.apply(entry)
    return state.plan()


def lineage_heads(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The run ids still to watch after ``entries``: the ``run_id`` of each ``resume_plan`` item."""
    return [item.run_id for item in resume_plan(entries)]


# --- the journal ----------------------------------------------------------------------------------


def _open_append(path: str) -> IO[bytes]:
    return open(path, "ab", buffering=0, opener=lambda p, flags: os.open(p, flags, 0o600))


def _try_lock(file: IO[bytes]) -> bool:
    """Take the journal's writer lock (an advisory ``flock`` on the open file); False if another
    Journal (in this process or another) holds it. True where ``flock`` does not exist."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one writer is assumed
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class Journal:
    """Appends entries to a JSON-lines file; safe to call from any thread. See the module docstring.

    - ``path``: the file (created with mode 0600 if missing). It is read when the journal opens
      (at construction, or at ``attach``/``subscribe`` after a ``close``): a journal of 100,000
      entries takes about a second. OSError if it cannot be opened for appending.
    - ``clock``: stamps entries whose payload has no ``time`` and compacted entries (default: system).
    - ``compact_bytes`` / ``compact_entries``: compact once the file holds more (at least twice
      what the last compaction left, so a journal of many live lineages does not compact at every
      entry). 0 never compacts.
    - ``poll_error_every_s``: within one streak of poll errors of one class, at most one entry per
      this many seconds (0: only the first of the streak).
    - ``fsync``: also ``os.fsync`` each entry (survives a power cut; slower). False: flushed to the
      OS, which survives a crash or kill of the process.

    State: ``write_error`` (the error of the current run of failed writes, None once writes work
    again), ``lost_entries`` (entries that could not be written, in all), ``skipped_payloads``
    (signal payloads ``entry_for`` refused, each logged).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        compact_bytes: int = 8 * 1024 * 1024,
        compact_entries: int = 20_000,
        poll_error_every_s: float = 3600.0,
        fsync: bool = False,
    ) -> None:
        for name, value in (("compact_bytes", compact_bytes), ("compact_entries", compact_entries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
        if (
            isinstance(poll_error_every_s, bool)
            or not isinstance(poll_error_every_s, (int, float))
            or not (0 <= poll_error_every_s < math.inf)
        ):
            raise ValueError(f"poll_error_every_s: expected finite seconds >= 0, got {poll_error_every_s!r}")
        self.path = os.fspath(path)
        self._clock: Clock = clock or SystemClock()
        self._compact_bytes = compact_bytes
        self._compact_entries = compact_entries
        self._poll_error_every_s = float(poll_error_every_s)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._resync = False
        self._owner = True  # holds the writer lock: the only one that compacts
        self._torn = False  # the file may end in a partial line: start the next entry on a new one
        self._state = _ResumeState()
        self._file_bytes = 0
        self._file_entries = 0
        self._next_bytes = compact_bytes
        self._next_entries = compact_entries
        # run id -> (reason class, poll errors left out, monotonic time of the last one written)
        self._streaks: dict[str, tuple[str, int, float]] = {}
        self._receivers: list[tuple[NamedSignal, Any, Any]] = []
        self._warned_closed = False
        self._warned_payload: set[str] = set()
        self.write_error: OSError | None = None
        self.lost_entries = 0
        self.skipped_payloads = 0
        self._open()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"Journal({self.path!r}, {state})"

    @property
    def closed(self) -> bool:
        return self._file is None

    # --- opening --------------------------------------------------------------------------------

    def _open(self) -> None:
        """Read the file into the resume state, open it for appending, end a torn last line."""
        state = _ResumeState()
        count = 0
        for entry in iter_journal(self.path):
            state.apply(entry)
            count += 1
        file = _open_append(self.path)
        owner = _try_lock(file)
        if not owner:
            log.warning(
                "journal %s is written by another Journal too: this one appends but never compacts",
                self.path,
            )
        with self._lock:
            self._owner = owner
            self._state, self._file, self._file_entries = state, file, count
            self._file_bytes = os.fstat(file.fileno()).st_size
            self._next_bytes, self._next_entries = self._compact_bytes, self._compact_entries
            self._warned_closed = False
            self._torn = self._file_bytes > 0 and not self._ends_in_newline()
            if self._torn:
                self._write(b"")  # a newline now, so the fragment stays alone on its line
            self._maybe_compact()

    def _ends_in_newline(self) -> bool:
        with open(self.path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            return file.read(1) == b"\n"

    def _reopen_if_closed(self) -> None:
        if self._file is None:
            self._open()

    # --- the senders ----------------------------------------------------------------------------

    def subscribe(self, *senders: Any) -> None:
        """Journal every signal (the 8 of ``signals.ALL``, ``watched`` and ``unwatched``) that one of
        ``senders`` (Monitors, Executors) sends. Receivers are held strongly and disconnected by
        ``close()``; subscribing a sender twice does nothing. Reopens a closed journal."""
        self._reopen_if_closed()
        for sender in senders:
            if any(known is sender for _, _, known in self._receivers):
                continue
            for signal in _SIGNALS:
                receiver = self._receiver(signal.name.rsplit(".", 1)[1])
                signal.connect(receiver, sender=sender, weak=False)
                self._receivers.append((signal, receiver, sender))

    def attach(self, monitor: Any, executor: Any = None) -> list[ResumeItem]:
        """Subscribe to ``monitor`` and ``executor``, then resume what the journal lists.

        For each ``resume_plan`` item: ``executor.seed_budget(lineage_id, restarts)`` (when the
        executor has it and there are restarts), then ``monitor.monitor_run(run_id, monitor.service,
        lineage_id=..., pending_recovery_id=...)``. Returns the items resumed. When the monitor has
        no ``service`` and the plan is not empty: one warning and nothing resumed. An item whose run
        id is not valid, or whose ``monitor_run`` raises, is skipped with a warning.
        """
        self.subscribe(*(sender for sender in (monitor, executor) if sender is not None))
        with self._lock:
            plan = self._state.plan()
        if not plan:
            return []
        service = getattr(monitor, "service", None)
        if service is None:
            log.warning(
                "journal %s lists %d run(s) but the monitor has no service= to recover them; not resumed",
                self.path,
                len(plan),
            )
            return []
        seed = getattr(executor, "seed_budget", None)
        resumed = []
        for item in plan:
            try:
                check_run_id(item.run_id)
            except (TypeError, ValueError):
                log.warning(
                    "journal %s lists %r, not a valid run id; skipped",
                    self.path,
                    escape_text(item.run_id, 80),
                )
                continue
            try:
                if seed is not None and item.restarts:
                    seed(item.lineage_id, item.restarts)
                monitor.monitor_run(
                    item.run_id,
                    service,
                    lineage_id=item.lineage_id,
                    pending_recovery_id=item.pending_recovery_id,
                )
            except Exception as error:
                log.warning("journal %s: could not resume %s: %s", self.path, item.run_id, _error_text(error))
                continue
            resumed.append(item)
        log.info("resumed %d of %d run(s) from journal %s", len(resumed), len(plan), self.path)
        return resumed

    def resume_plan(self) -> list[ResumeItem]:
        """The plan of the journal as written so far (see ``resume_plan``), without reading the file."""
        with self._lock:
            return self._state.plan()

    def _receiver(self, event: str) -> Any:
        def receive(_sender: Any, **payload: Any) -> None:
            self.record(event, payload)

        return receive

    # --- writing --------------------------------------------------------------------------------

    def record(self, event: str, payload: Mapping[str, Any]) -> None:
        """Journal signal ``event`` sent with ``payload`` (see ``entry_for``); never raises. A
        payload without ``time`` is stamped with the journal's clock; one ``entry_for`` refuses is
        logged (once per event name) and counted in ``skipped_payloads``."""
        try:
            if payload.get("time") is None:
                payload = {**payload, "time": self._clock.now()}
            entry = entry_for(event, payload)
        except Exception as error:  # a bad payload, or an object in it whose str() or attribute raises
            kind = event if event in EVENTS else "unknown event"
            with self._lock:
                self.skipped_payloads += 1
                first = kind not in self._warned_payload
                self._warned_payload.add(kind)
            if first:
                log.warning(
                    "journal %s: a %s payload was not journaled: %s",
                    self.path,
                    escape_text(kind, 40),
                    _safe_text(error),
                )
            return
        self.write_entry(entry)

    def write(self, when: datetime, event: str, run_id: str, attempt: int = 0, **fields: Any) -> None:
        """Append one entry built from these fields (None fields are left out); never raises.
        Prefer ``record``/``subscribe``; kept for callers of earlier versions."""
        entry: dict[str, Any] = {"time": _iso(when), "event": event, "run_id": run_id, "attempt": attempt}
        entry.update((key, value) for key, value in fields.items() if value is not None)
        self.write_entry(entry)

    def write_entry(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` (a dict with str ``event`` and ``run_id``) as one line; never raises."""
        run_id = entry.get("run_id")
        event = entry.get("event")
        try:
            with self._lock:
                if isinstance(run_id, str) and self._throttled(event, run_id, entry):
                    return
                if isinstance(run_id, str) and event != "poll_error" and run_id in self._streaks:
                    suppressed = self._streaks.pop(run_id)[1]
                    if suppressed:
                        entry = {**entry, "poll_errors_suppressed": suppressed}
                if event in ("unwatched", "unwatch") and isinstance(run_id, str):
                    self._streaks.pop(run_id, None)
                line = _line(entry)
                self._state.apply(entry)
                if self._file is None:
                    self.lost_entries += 1
                    if not self._warned_closed:
                        self._warned_closed = True
                        log.warning(
                            "journal %s is closed; dropped a %s entry for %s (and any later ones)",
                            self.path,
                            escape_text(event, 40),
                            escape_text(run_id, 80),
                        )
                    return
                if self._write(line):
                    self._file_entries += 1
                    self._maybe_compact()
        except Exception:  # never let the journal break a sender (it runs inside signal receivers)
            log.error(
                "journal %s: could not journal a %s entry", self.path, escape_text(event, 40), exc_info=True
            )

    def _throttled(self, event: Any, run_id: str, entry: Mapping[str, Any]) -> bool:
        """True when this poll error continues a streak already journaled recently (lock held)."""
        if event != "poll_error":
            return False
        label = str(entry.get("reason_class", entry.get("error", "")))
        now = self._clock.monotonic()
        streak = self._streaks.get(run_id)
        if (
            streak is not None
            and streak[0] == label
            and (self._poll_error_every_s == 0 or now - streak[2] < self._poll_error_every_s)
        ):
            self._streaks[run_id] = (label, streak[1] + 1, streak[2])
            return True
        self._streaks[run_id] = (label, 0, now)
        return False

    def _write(self, line: bytes) -> bool:
        """Write ``line`` at the end of the file, on a fresh line (lock held); False on an error."""
        assert self._file is not None
        if not self._owner:
            self._follow_replaced_file()
        data = (b"\n" + line) if self._torn else line
        try:
            view = memoryview(data)
            while view:
                written = self._file.write(view)
                if written is None or written <= 0:
                    raise OSError("journal write wrote nothing")
                view = view[written:]
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as error:
            self._torn = True
            with contextlib.suppress(OSError):  # a partial write is not another writer's
                self._file_bytes = os.fstat(self._file.fileno()).st_size
            self.lost_entries += 1 if line else 0
            if self.write_error is None:
                log.error(
                    "journal %s: cannot write (%s); entries are lost until it can be written again, "
                    "recovery goes on",
                    self.path,
                    escape_text(error, 300),
                )
            self.write_error = error
            return False
        self._torn = False
        self._file_bytes += len(data)
        if self.write_error is not None:
            log.warning(
                "journal %s: writable again (%d entries lost in all; rewriting what resume needs)",
                self.path,
                self.lost_entries,
            )
            self.write_error = None
            self._resync = True  # compact, so the file again holds all that resume needs
        return True

    # --- compaction -----------------------------------------------------------------------------

    def _follow_replaced_file(self) -> None:
        """When the writer that owns the journal compacted it, append to the new file (lock held)."""
        assert self._file is not None
        try:
            if os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino:
                return
            file = _open_append(self.path)
        except OSError:
            return  # the write that follows reports the error
        old, self._file = self._file, file
        with contextlib.suppress(OSError):
            old.close()
        self._torn = False

    def _maybe_compact(self) -> None:
        if not self._owner:
            return
        over_bytes = self._compact_bytes and self._file_bytes > self._next_bytes
        over_entries = self._compact_entries and self._file_entries > self._next_entries
        if over_bytes or over_entries or self._resync:
            self._resync = False
            self._compact()

    def compact(self) -> None:
        """Rewrite the file now with only what resume needs (one ``lineage`` entry per live lineage),
        atomically: a reader sees the old file or the new one. An error is logged and the journal
        goes on appending to the old file; never raises."""
        with self._lock:
            self._compact()

    def _compact(self) -> None:
        if self._file is None:
            return
        try:
            size = os.fstat(self._file.fileno()).st_size
        except OSError:
            size = self._file_bytes
        if size != self._file_bytes:  # another writer appended: what resume needs is in the file
            state = _ResumeState()
            for entry in iter_journal(self.path):
                state.apply(entry)
            self._state = state
        entries = self._state.snapshot(self._clock.now())
        temporary = f"{self.path}.compact-{os.getpid()}"
        size = 0
        try:
            with open(temporary, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
                for entry in entries:
                    data = _line(entry)
                    out.write(data)
                    size += len(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
            _sync_directory(os.path.dirname(os.path.abspath(self.path)))
            file = _open_append(self.path)
        except OSError as error:
            log.error(
                "journal %s: compaction failed (%s); the journal goes on uncompacted",
                self.path,
                escape_text(error, 300),
            )
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            self._next_bytes, self._next_entries = 2 * self._next_bytes, 2 * self._next_entries
            return
        _try_lock(file)  # before the old file's lock goes with it
        old, self._file = self._file, file
        with contextlib.suppress(OSError):
            old.close()
        log.info("journal %s: compacted %d entries into %d", self.path, self._file_entries, len(entries))
        self._torn = False
        self._file_bytes, self._file_entries = size, len(entries)
        self._next_bytes = max(self._compact_bytes, 2 * size)
        self._next_entries = max(self._compact_entries, 2 * len(entries))

    # --- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect every receiver and close the file; never raises. Later entries are dropped
        (one warning); ``attach``/``subscribe`` reopen it. Calling it twice does nothing."""
        for signal, receiver, sender in self._receivers:
            try:
                signal.disconnect(receiver, sender=sender)
            except Exception:
                log.debug("journal %s: could not disconnect a receiver", self.path, exc_info=True)
        self._receivers.clear()
        with self._lock:
            file, self._file = self._file, None
            self._streaks.clear()
        if file is not None:
            try:
                file.close()
            except OSError as error:
                log.error("journal %s: closing failed: %s", self.path, escape_text(error, 300))

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _safe_text(error: BaseException) -> str:
    """``Type: text`` of an error whose own ``__str__`` may raise."""
    try:
        return f"{type(error).__name__}: {escape_text(error, 300)}"
    except Exception:
        return type(error).__name__


def _sync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable where the platform allows it (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
