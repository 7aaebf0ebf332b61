"""The log of requests FakeTinker served, for tests to assert on."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import attrs

__all__ = ["RequestLog", "ServedRequest"]


@attrs.frozen
class ServedRequest:
    """One request FakeTinker answered (admin ``/_fake/...`` requests are not logged).

    - ``status``: the HTTP status sent, or None when the connection was dropped.
    - ``latency_s``: time from reading the request to having the answer ready (it is logged just
      before it is sent), injected latency included.
    - ``fault``: None, or the applied rule's short name: ``status:503``, ``drop``, ``malformed``
      or ``latency``.
    - ``run_id``: for ``load_weights``, the run in the loaded tinker path; for
      ``/api/v1/training_runs/{id}[/...]``, that id; otherwise None.
    - ``checkpoint``: for ``load_weights``, the tinker path asked for (even when the load failed);
      otherwise None.
    - ``optimizer``: for ``load_weights``, whether the optimizer state was asked for; otherwise None.
    """

    method: str
    path: str
    status: int | None
    latency_s: float
    fault: str | None = None
    run_id: str | None = None
    checkpoint: str | None = None
    optimizer: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RequestLog:
    """A bounded, thread-safe log; the oldest entries are dropped beyond ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self._lock = threading.Lock()
        self._entries: deque[ServedRequest] = deque(maxlen=max_entries)
        self._total = 0

    def append(self, entry: ServedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            self._total += 1

    def snapshot(self) -> list[ServedRequest]:
        with self._lock:
            return list(self._entries)

    def since(self, index: int) -> tuple[list[ServedRequest], int]:
        """Entries with absolute index >= ``index`` still held, and the next index to ask for."""
        with self._lock:
            first = self._total - len(self._entries)
            start = max(index, first) - first
            return list(self._entries)[start:], self._total

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
