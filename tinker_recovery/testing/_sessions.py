"""Client sessions and sampling sessions.

A session id is a seeded UUID. A sampling session pins one set of weights (a snapshot: later
training does not change what it samples) under an id ``<session>:sample:<n>``. Not thread-safe
on its own: ``FakeState`` holds its lock around every call.
"""

from __future__ import annotations

import random
import uuid
from array import array
from typing import Any

import attrs

from ._common import ApiProblem

__all__ = ["SamplingSession", "Sessions"]


@attrs.frozen(eq=False)
class SamplingSession:
    """What a sampler samples from: ``weights`` of ``base_model``, saved at ``model_path`` if any."""

    sampling_session_id: str
    base_model: str
    model_path: str | None
    weights: array[float]
    origin: tuple[str, int]  # (session_id, sampling_session_seq_id) that created it, for replays

    def to_json(self) -> dict[str, Any]:
        return {
            "sampler_id": self.sampling_session_id,
            "base_model": self.base_model,
            "model_path": self.model_path,
        }


class Sessions:
    """The sessions clients opened and the sampling sessions made in them; ``seed`` seeds the ids."""

    def __init__(self, seed: int) -> None:
        self._ids = random.Random(seed)
        self._sessions: set[str] = set()
        self._samplers: dict[str, SamplingSession] = {}

    def create(self) -> str:
        session_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        self._sessions.add(session_id)
        return session_id

    def exists(self, session_id: Any) -> bool:
        return isinstance(session_id, str) and session_id in self._sessions

    def add_sampler(
        self, session_id: str, seq_id: int, base_model: str, model_path: str | None, weights: array[float]
    ) -> SamplingSession:
        """Register ``<session>:sample:<seq_id>``; a repeat of the same request gets the first one.

        ApiProblem(400) when that id already names a sampler made from other weights.
        """
        sampling_session_id = f"{session_id}:sample:{seq_id}"
        existing = self._samplers.get(sampling_session_id)
        if existing is not None:
            if existing.model_path == model_path and existing.base_model == base_model:
                return existing
            raise ApiProblem(400, f"sampling session {sampling_session_id!r} already exists")
        sampler = SamplingSession(sampling_session_id, base_model, model_path, weights, (session_id, seq_id))
        self._samplers[sampling_session_id] = sampler
        return sampler

    def sampler(self, sampling_session_id: Any) -> SamplingSession:
        """The sampling session; ApiProblem(404) when unknown."""
        found = self._samplers.get(sampling_session_id) if isinstance(sampling_session_id, str) else None
        if found is None:
            raise ApiProblem(404, f"sampling session {sampling_session_id!r} not found")
        return found
