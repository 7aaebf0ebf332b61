"""Futures and the ``seq_id`` order in which each model's operations run.

The real service runs training operations asynchronously: a request gets a request id at once and
its result later. ``FutureTable`` holds those results; ``SeqOrder`` holds one model's queue: an
operation runs once every lower ``seq_id`` of that model has arrived. A client that gave up on a
submission leaves a gap; once a later operation has waited ``gap_timeout_s`` (on the injected
clock's ``monotonic()``) the gap is skipped, and a late arrival of a skipped ``seq_id`` fails.

Not thread-safe on their own: ``FakeState`` holds its lock around every call.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs

from ._common import ApiProblem, Result

__all__ = ["FutureTable", "Queued", "SeqOrder"]

_SEEN_SEQ_IDS = 256  # per model: remembered seq_ids, so a retried submission gets the same future


class FutureTable:
    """Request id -> result (None while queued).

    Keeps at most ``max_futures``, never dropping a queued one.
    """

    def __init__(self, max_futures: int = 100_000) -> None:
        if max_futures < 1:
            raise ValueError(f"max_futures must be >= 1, got {max_futures!r}")
        self._max = max_futures
        self._results: OrderedDict[str, Result | None] = OrderedDict()
        self._next = 1

    def new(self, result: Result | None = None) -> str:
        """A fresh request id (``fake-req-N``), resolved at once when ``result`` is given."""
        request_id = f"fake-req-{self._next}"
        self._next += 1
        self._results[request_id] = result
        if len(self._results) > self._max:  # forget the oldest resolved one, never one still queued
            oldest = next((rid for rid, done in self._results.items() if done is not None), None)
            if oldest is not None:
                del self._results[oldest]
        return request_id

    def resolve(self, request_id: str, result: Result) -> None:
        if request_id in self._results:
            self._results[request_id] = result

    def known(self, request_id: Any) -> bool:
        return isinstance(request_id, str) and request_id in self._results

    def result(self, request_id: str) -> Result | None:
        """The result, or None while still queued; ApiProblem(404) for an unknown id."""
        if not self.known(request_id):
            raise ApiProblem(404, f"request {request_id!r} not found")
        return self._results[request_id]


@attrs.frozen
class Queued:
    """One operation waiting for its turn: what to do, and which future gets the result."""

    kind: str
    request_id: str
    payload: Any


@attrs.define
class Submitted:
    """What ``SeqOrder.submit`` decided: the future to answer with, or a refusal to fail it with."""

    request_id: str | None = None
    refusal: str | None = None


class SeqOrder:
    """One model's ``seq_id`` queue. ``gap_timeout_s``: how long to wait for a missing ``seq_id``."""

    def __init__(self, gap_timeout_s: float) -> None:
        self._gap_timeout_s = gap_timeout_s
        self._next_seq = 1
        self._pending: dict[int, Queued] = {}
        self._seen: OrderedDict[int, tuple[str, str]] = OrderedDict()  # seq_id -> (kind, request_id)
        self._blocked_since: float | None = None

    def submit(self, seq_id: int, kind: str, new_future: Any, payload: Any) -> Submitted:
        """Queue ``kind`` at ``seq_id``; ``new_future()`` makes its request id.

        A retried submission (same ``seq_id`` and kind) gets the first one's request id; a reused
        ``seq_id`` or one already passed is refused (the caller fails a fresh future with it).
        """
        seen = self._seen.get(seq_id)
        if seen is not None:
            if seen[0] == kind:
                return Submitted(request_id=seen[1])
            return Submitted(refusal=f"seq_id {seq_id} was already used by a {seen[0]} request")
        if seq_id < self._next_seq:
            return Submitted(refusal=f"seq_id {seq_id} is below the next expected {self._next_seq}")
        request_id: str = new_future()
        self._seen[seq_id] = (kind, request_id)
        while len(self._seen) > _SEEN_SEQ_IDS:
            self._seen.popitem(last=False)
        self._pending[seq_id] = Queued(kind, request_id, payload)
        return Submitted(request_id=request_id)

    def ready(self, now: float) -> list[Queued]:
        """Take every operation whose predecessors have all arrived, in order; ``now`` is monotonic."""
        taken: list[Queued] = []
        while self._next_seq in self._pending:
            taken.append(self._pending.pop(self._next_seq))
            self._next_seq += 1
        if not self._pending:
            self._blocked_since = None
        elif taken or self._blocked_since is None:
            self._blocked_since = now
        return taken

    def gap_expiry(self) -> float | None:
        """When (monotonic) the current gap will be skipped; None when nothing waits."""
        if self._blocked_since is None:
            return None
        return self._blocked_since + self._gap_timeout_s

    def skip_gap(self, now: float) -> tuple[int, int] | None:
        """Skip the gap if it has expired at ``now``; return the skipped ``(first, last)`` seq_ids."""
        expiry = self.gap_expiry()
        if expiry is None or expiry > now or not self._pending:
            return None
        skipped = (self._next_seq, min(self._pending) - 1)
        self._next_seq = min(self._pending)
        return skipped
