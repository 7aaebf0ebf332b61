"""Test doubles for code that talks to Tinker: a loopback fake service and a minimal client.

- ``FakeTinker``: a real HTTP/1.1 server on 127.0.0.1 that the official ``tinker`` SDK can train
  and sample against, with fault injection, corruption, a request log, a record of every load
  (``loads``, ``source_checkpoint``) and a clock tests can move (``advance_clock``); the same
  controls over HTTP under ``/_fake/`` (see ``tinker_recovery.testing._admin``).
- ``LoopbackService``: a small ``requests`` client for restoring training clients over real HTTP
  with short time-outs and no hidden retries.
- ``ServedRequest``: one entry of ``FakeTinker.requests``.
- ``Load``: one entry of ``FakeTinker.loads()``: checkpoint path, optimizer flag, target run, time.

Names are imported lazily, so ``python -m tinker_recovery.testing.fake_server`` runs cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FakeTinker", "FaultRule", "Load", "LoopbackService", "LoopbackTrainingClient", "ServedRequest"]

if TYPE_CHECKING:
    from ._faults import FaultRule
    from ._served import ServedRequest
    from ._store import Load
    from .fake_server import FakeTinker
    from .loopback_service import LoopbackService, LoopbackTrainingClient

_HOMES = {
    "FakeTinker": "fake_server",
    "LoopbackService": "loopback_service",
    "LoopbackTrainingClient": "loopback_service",
    "ServedRequest": "_served",
    "FaultRule": "_faults",
    "Load": "_store",
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
