"""Runnable examples of tinker-recovery.

- ``python -m tinker_recovery.examples.simulated``: offline, a corrupted run recovered over loopback
  HTTP against FakeTinker. No API key, no network, no official SDK.
- ``python -m tinker_recovery.examples.live_injected``: the official ``tinker`` SDK against the real
  service (``TINKER_API_KEY``), or against FakeTinker with ``--local``.

``examples/training_loop.py`` and ``examples/recovery.ipynb`` in the repository import their shared
pieces (tiny datums, one training step, waiting for a recovery) from ``tinker_recovery.examples._common``.
None of this is part of the library's API.
"""
