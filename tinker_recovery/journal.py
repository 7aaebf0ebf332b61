"""The recovery journal: one JSON line per event, so a restarted watcher knows its runs.

Each line holds ``time`` (ISO-8601, UTC), ``event`` (a signal's event name, or ``watch`` /
``unwatch``), ``run_id`` and ``attempt``, and where they apply ``checkpoint`` (a path),
``new_run_id``, ``error`` (the error's type and text) and ``reason``. Never the API key, metadata or
clients.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

__all__ = ["Journal", "read_journal", "lineage_heads"]

log = logging.getLogger("tinker_recovery.journal")


class Journal:
    """Appends entries to a JSON-lines file, flushing each line; safe to call from any thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"

    def write(self, when: datetime, event: str, run_id: str, attempt: int = 0, **fields: Any) -> None:
        """Append one entry; None fields are left out. A write error is logged, never raised."""
        entry: dict[str, Any] = {"time": when.isoformat(), "event": event, "run_id": run_id, "attempt": attempt}
        entry.update((key, value) for key, value in fields.items() if value is not None)
        line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file.closed:
                log.warning("journal %s is closed; dropped a %s entry for %s", self.path, event, run_id)
                return
            try:
                self._file.write(line)
                self._file.flush()
            except OSError:
                log.error("could not write to journal %s", self.path, exc_info=True)

    def close(self) -> None:
        """Close the file; later writes are dropped with a warning."""
        with self._lock:
            self._file.close()


def read_journal(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every entry of a journal, oldest first. A missing file gives []; a torn last line (a crash
    mid-write) is skipped with a warning; any other bad line raises ValueError naming its number."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().split("\n")
    except FileNotFoundError:
        return []
    entries = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
                raise ValueError("not a journal entry")
        except ValueError as error:
            if number - 1 == last:
                log.warning("journal %s: skipped a torn last line %d", os.fspath(path), number)
                continue
            raise ValueError(f"journal {os.fspath(path)}: line {number} is not a journal entry: {error}") from None
        entries.append(entry)
    return entries


def lineage_heads(entries: Iterable[dict[str, Any]]) -> list[str]:
    """The run ids still to watch after ``entries``: watched, and neither unwatched nor given up
    (a recovery cancelled by shutdown is not given up), each replaced by the run it was recovered into."""
    heads: dict[str, None] = {}
    for entry in entries:
        event, run_id = entry.get("event"), entry.get("run_id")
        if not isinstance(run_id, str):
            continue
        if event == "watch":
            heads[run_id] = None
        elif event == "unwatch" or (event == "exhausted" and not str(entry.get("reason", "")).startswith("shutdown")):
            heads.pop(run_id, None)
        elif event == "completed":
            heads.pop(run_id, None)
            new_run_id = entry.get("new_run_id")
            if isinstance(new_run_id, str):
                heads[new_run_id] = None
    return list(heads)
