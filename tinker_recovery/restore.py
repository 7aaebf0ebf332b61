"""Making the restored training client: the service's create call (or the policy's own ``restore``),
awaited or resolved to a client, and the adoption of a run an earlier attempt already created.

Everything here blocks and is meant to run on an attempt's own thread (see ``executor.py``); none of
it sends a signal or touches executor state.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Mapping
from typing import Any

from .candidates import LINEAGE_KEY, RECOVERY_KEY, SOURCE_KEY
from .errors import RecoveryError
from .models import Checkpoint, TrainingRun
from .policy import Policy

__all__ = [
    "restored_metadata",
    "create_client",
    "resolve",
    "find_created_run",
    "adopt_client",
    "MAX_ADOPT_RUNS",
]

log = logging.getLogger("tinker_recovery.restore")

MAX_ADOPT_RUNS = 1_000
"""How many training runs (from the start of the service's listing) are searched for a run created by
the same recovery before creating one."""

_MAX_RESOLVE = 4  # an awaitable that yields an awaitable ... is refused after this many layers


def restored_metadata(
    run: TrainingRun | None, *, lineage_id: str, recovery_id: str, checkpoint: Checkpoint
) -> dict[str, str]:
    """The ``user_metadata`` of the restored run: the corrupted run's own (None: none known), then
    the package's entries ``tinker_recovery.lineage_id``, ``.recovery_id`` and
    ``.source_checkpoint`` (the restored checkpoint's tinker path), which win over older ones."""
    metadata = dict(run.user_metadata or {}) if run is not None else {}
    metadata[LINEAGE_KEY] = lineage_id
    metadata[RECOVERY_KEY] = recovery_id
    metadata[SOURCE_KEY] = checkpoint.tinker_path
    return metadata


def _accepts_user_metadata(create: Any) -> bool:
    try:
        parameters = inspect.signature(create).parameters.values()
    except (TypeError, ValueError):  # a builtin or an odd callable: do not guess
        return False
    return any(p.name == "user_metadata" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def create_client(
    service: Any,
    policy: Policy,
    checkpoint: Checkpoint,
    run: TrainingRun | None,
    user_metadata: Mapping[str, str],
    timeout_s: float | None,
) -> Any:
    """Restore ``checkpoint`` and return the new training client (never an awaitable).

    ``policy.restore(service, checkpoint, run)`` when set; else the service's
    ``create_training_client_from_state_with_optimizer`` (``restore_optimizer``) or
    ``create_training_client_from_state``. Either is given ``user_metadata=`` when its signature
    takes it (so a restore of one's own can carry the run's identity and recovery id too).
    The result is resolved with ``resolve``. Raises whatever the call raises.
    """
    if policy.restore is not None:
        if _accepts_user_metadata(policy.restore):
            made = policy.restore(service, checkpoint, run, user_metadata=dict(user_metadata))
        else:
            made = policy.restore(service, checkpoint, run)
        return resolve(made, timeout_s)
    if policy.restore_optimizer:
        create = service.create_training_client_from_state_with_optimizer
    else:
        create = service.create_training_client_from_state
    if _accepts_user_metadata(create):
        value = create(checkpoint.tinker_path, user_metadata=dict(user_metadata))
    else:
        value = create(checkpoint.tinker_path)
    return resolve(value, timeout_s)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def resolve(value: Any, timeout_s: float | None) -> Any:
    """What a create call's result stands for: a coroutine or other awaitable is run to completion on
    a private event loop of this thread; a future-like value (``result`` callable, e.g. the SDK's
    ``APIFuture``) is waited for (``timeout_s``: its time-out, None: no limit).

    Raises TypeError when the value is still awaitable after a few layers (it is never a client).
    """
    for _ in range(_MAX_RESOLVE):
        if inspect.iscoroutine(value) or (
            inspect.isawaitable(value) and not callable(getattr(value, "result", None))
        ):
            value = asyncio.run(_awaited(value))
            continue
        result = getattr(value, "result", None)
        if callable(result):
            value = result() if timeout_s is None else result(timeout=timeout_s)
            continue
        return value
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError(
            f"the create call gave {type(value).__name__} awaitables nested too deep; not a client"
        )
    return value


def find_created_run(rest: Any, recovery_id: str) -> TrainingRun | None:
    """The run whose ``user_metadata["tinker_recovery.recovery_id"]`` is ``recovery_id`` among the
    first ``MAX_ADOPT_RUNS`` the service lists, or None (also when ``rest`` cannot list runs).
    Raises what the listing raises."""
    listing = getattr(rest, "iter_training_runs", None)
    if not callable(listing):
        return None
    for seen, run in enumerate(listing(page_size=100)):
        if (run.user_metadata or {}).get(RECOVERY_KEY) == recovery_id:
            return run  # type: ignore[no-any-return]
        if seen + 1 >= MAX_ADOPT_RUNS:
            log.warning(
                "recovery %s: no run of it among the first %d listed; a new one is created",
                recovery_id,
                MAX_ADOPT_RUNS,
            )
            return None
    return None


def adopt_client(service: Any, run_id: str, timeout_s: float | None) -> Any:
    """A training client on the existing run ``run_id`` (created by an earlier attempt).

    The service's ``training_client_for(run_id)`` when it has one (a hook a user's or a test's
    service may offer); else, for the official SDK's ``ServiceClient``, a ``TrainingClient`` on the
    run through the SDK's client holder. Raises RecoveryError when neither is possible (the run is
    then not created again: a second restored run is worse than a failed recovery).
    """
    hook = getattr(service, "training_client_for", None)
    if callable(hook):
        return resolve(hook(run_id), timeout_s)
    holder = getattr(service, "holder", None)
    seq = run_id.rsplit(":", 1)[-1]
    if holder is None or not seq.isdigit():
        raise RecoveryError(
            f"run {run_id} was already created by this recovery, and the service offers no way to open a "
            "client on an existing run (training_client_for); not creating a second one"
        )
    from tinker.lib.public_interfaces.training_client import TrainingClient, fetch_training_info

    info = holder.run_coroutine_threadsafe(fetch_training_info(holder, run_id)).result(timeout_s)
    return TrainingClient(holder, model_seq_id=int(seq), model_id=run_id, info=info)


def run_on_thread(name: str, target: Any) -> threading.Thread:
    """Start ``target`` on a new named daemon thread and return it."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
