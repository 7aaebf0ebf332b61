"""Live recovery with an injected corruption flag, using the official ``tinker`` SDK.

    TINKER_API_KEY=tml-... python -m tinker_recovery.examples.live_injected
    python -m tinker_recovery.examples.live_injected --local      # against a local FakeTinker

It creates a LoRA training client and saves a real checkpoint, then wraps the REST client so that
the next poll of the run reads ``corrupted: true`` (the server is not changed). The Monitor detects
it, the Executor restores the run from that checkpoint through the official ServiceClient
(``create_training_client_from_state_with_optimizer``), and a second checkpoint is saved from the
recovered client to prove the restart.

Against the real service it needs ``TINKER_API_KEY`` (optional: ``TINKER_BASE_URL``,
``TINKER_BASE_MODEL``); it creates two small training runs there. Exit status: 0 success,
1 failure or time-out, 2 missing settings or SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import Any

import attrs

import tinker_recovery as tr
from tinker_recovery.examples._common import (
    Deadline,
    ExampleFailed,
    SignalLog,
    demo_policy,
    import_tinker,
    positive_seconds,
)

__all__ = ["InjectedCorruption", "main"]

PROG = "python -m tinker_recovery.examples.live_injected"
DEFAULT_BASE_MODEL = "Qwen/Qwen3-8B"


class InjectedCorruption(tr.RestClient):
    """A RestClient whose next ``get_training_run`` of an armed run reads ``corrupted: true``, once.

    Only the answer is changed; the run on the server stays healthy.
    """

    def __init__(self, config: tr.Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._lock = threading.Lock()
        self._armed: set[str] = set()

    def arm(self, run_id: str) -> None:
        """Make the next read of ``run_id`` report it corrupted."""
        with self._lock:
            self._armed.add(run_id)

    def get_training_run(self, run_id: str, **kwargs: Any) -> tr.TrainingRun:
        run = super().get_training_run(run_id, **kwargs)
        with self._lock:
            inject = run_id in self._armed
            self._armed.discard(run_id)
        return attrs.evolve(run, corrupted=True) if inject else run


class _Usage(Exception):
    """A setting or package is missing: exit 2."""


def _settings(local: bool, stack: contextlib.ExitStack) -> tuple[tr.Config, str, str]:
    """The Config, base model and a description of where the example runs."""
    if local:
        from tinker_recovery.testing import FakeTinker

        fake = stack.enter_context(FakeTinker())
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=10.0)
        return config, DEFAULT_BASE_MODEL, f"FakeTinker at {fake.base_url}"
    if not os.environ.get("TINKER_API_KEY"):
        raise _Usage("set TINKER_API_KEY to run against Tinker (optional: TINKER_BASE_URL, "
                     "TINKER_BASE_MODEL), or pass --local to run against a local FakeTinker")
    try:
        config = tr.Config()  # TINKER_API_KEY and TINKER_BASE_URL
    except (TypeError, ValueError) as error:
        raise _Usage(f"invalid setting: {error}") from None
    return config, os.environ.get("TINKER_BASE_MODEL") or DEFAULT_BASE_MODEL, config.base_url


def run(tinker: Any, local: bool, timeout_s: float | None) -> None:
    """Run the example with the ``tinker`` module, printing numbered steps.

    Raises _Usage, ExampleFailed, and the errors of tinker_recovery and of the SDK.
    """
    with contextlib.ExitStack() as stack:
        config, base_model, where = _settings(local, stack)
        deadline = Deadline(timeout_s if timeout_s is not None else (30.0 if local else 300.0))
        service = stack.enter_context(tinker.ServiceClient(base_url=config.base_url, api_key=config.api_key))
        training = service.create_lora_training_client(base_model=base_model, rank=8).result()
        run_id = training.model_id
        print(f"1) created a LoRA training client: run {run_id} on {base_model} ({where})", flush=True)

        first = training.save_state("recovery-live-1").result().path
        print(f"2) saved checkpoint {first}", flush=True)

        rest = stack.enter_context(InjectedCorruption(config))
        executor = tr.Executor(max_concurrent=1, rest=rest).start()
        stack.callback(executor.shutdown, timeout=10.0)  # on a time-out, do not wait long for a slow restore
        policy = demo_policy(poll_interval_ms=100 if local else 1_000, backoff_ms=100 if local else 2_000,
                             max_backoff_ms=500 if local else 10_000, max_attempts=5)
        monitor = tr.Monitor(executor, policy, rest=rest, poll_mode="per_run").start()
        stack.callback(monitor.stop, timeout=10.0)
        log = stack.enter_context(SignalLog(monitor, executor))
        rest.arm(run_id)
        print(f"3) injected: the next poll of {run_id} reads corrupted: true (the server is not changed)",
              flush=True)
        handle = monitor.monitor_run(run_id, service, metadata={"training_client": training})

        _, detected = log.wait_for(["detected"], deadline)
        last = detected["checkpoint"]
        print(f"4) detected: last checkpoint {last.tinker_path if last else 'not listed yet'}", flush=True)
        event, payload = log.wait_for(["completed", "exhausted"], deadline)
        if event == "exhausted":
            raise ExampleFailed(f"recovery of {run_id} was given up: {payload['reason']}: {payload['error']}")
        if not handle.wait(deadline.remaining()):
            raise ExampleFailed(f"the run handle did not take the recovery within {deadline.seconds:g} s")
        recovery = handle.take_recovery()
        if recovery is None:
            raise ExampleFailed("the run handle reported a recovery but held none")
        print(f"5) recovered from {recovery.checkpoint.tinker_path} into {recovery.new_run_id} "
              f"(attempt {recovery.attempts})", flush=True)

        second = handle.client.save_state("recovery-live-2").result().path
        print(f"6) second checkpoint saved from the recovered client: {second}", flush=True)
        on_new_run = second.startswith(f"tinker://{recovery.new_run_id}/")
        if recovery.checkpoint.tinker_path != first or not on_new_run:
            raise ExampleFailed(f"restored {recovery.checkpoint.tinker_path} (expected {first}); "
                                f"second checkpoint {second} not on the new run {recovery.new_run_id}")


def main(argv: list[str] | None = None) -> int:
    """Run the example; 0 on success, 1 on failure or time-out, 2 when a setting or the SDK is missing."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", action="store_true", help="run against a local FakeTinker (no key needed)")
    parser.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                        help="give up waiting for the recovery after S seconds (default 30 local, 300 live)")
    args = parser.parse_args(argv)
    try:
        tinker = import_tinker()
    except ExampleFailed as error:
        print(f"live_injected: {error}", file=sys.stderr)
        return 2
    try:
        run(tinker, args.local, args.timeout)
    except _Usage as error:
        print(f"live_injected: {error}", file=sys.stderr)
        return 2
    except ExampleFailed as error:
        print(f"live_injected: FAILED: {error}", file=sys.stderr)
        return 1
    except (tr.TinkerRecoveryError, tinker.TinkerError) as error:
        print(f"live_injected: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("live_injected: OK, restored from the injected corruption and saved a second checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
