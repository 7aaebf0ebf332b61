"""A plain blocking training loop that survives a corrupted run, with the official ``tinker`` SDK.

    python examples/training_loop.py [--steps 12] [--save-every 4] [--corrupt-at 10] [--poll-interval-ms 100]

It runs against a local FakeTinker (no API key, no network). The loop trains ``--steps`` optimizer
steps on tiny data and saves a ``step-NNNNNN`` checkpoint every ``--save-every`` steps. Before step
``--corrupt-at`` the run is marked corrupted on the server, so that step is refused. The Monitor
detects the corruption, the Executor restores the latest checkpoint into a new run, and the loop
picks the new client and the checkpoint's step up from its run handle and goes on from there.

At the end it checks that steps 0..N-1 were each applied once, in order, and that every loss equals
the loss of an uninterrupted run of N steps, and prints the time from the corruption to the next
successful step. Exit status: 0 verified, 1 failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable

import tinker_recovery as tr
from tinker_recovery.examples._common import (
    Deadline,
    ExampleFailed,
    StepLedger,
    adam_params,
    checkpoint_name,
    demo_policy,
    import_tinker,
    make_datums,
    save_checkpoint,
    train_step,
    wait_for_recovery,
)
from tinker_recovery.testing import FakeTinker

BASE_MODEL = "Qwen/Qwen3-8B"


def train(
    handle: tr.RunHandle,
    steps: int,
    save_every: int,
    ledger: StepLedger,
    before_step: Callable[[int, str], None] = lambda step, run_id: None,
    recovery_timeout_s: float = 30.0,
    on_step: Callable[[], None] = lambda: None,
) -> None:
    """Train ``steps`` steps on ``handle.client``; resume from the checkpoint after a recovery.
    ``on_step`` is called after each successful step.

    The client changes only together with the step, when the loop takes a recovery: a client read
    from ``handle.client`` mid-step could be the restored one while ``step`` is still the old one.
    """
    tinker = import_tinker()
    datums, adam = make_datums(), adam_params()
    step = 0
    client = handle.client
    while step < steps:
        recovery = handle.take_recovery()
        if recovery is not None:
            if recovery.step is None:
                raise ExampleFailed(f"restored {recovery.checkpoint.tinker_path}, which names no step")
            # switch the client and rewind together: the restored client holds the checkpoint's state
            client, step = recovery.client, recovery.step  # saved after this many steps: go on from here
            ledger.restored(step)
            print(f"recovered from {recovery.checkpoint.tinker_path} into run {recovery.new_run_id}; "
                  f"resuming at step {step}", flush=True)
        before_step(step, handle.run_id)
        try:
            loss = train_step(client, datums, adam)
            on_step()
            ledger.applied(step, loss)
            print(f"step {step:3d}  loss {loss:.6f}", flush=True)
            if (step + 1) % save_every == 0:
                print(f"          saved {save_checkpoint(client, step + 1)}", flush=True)
        except tinker.RequestFailedError as error:
            reason = str(error) if len(str(error)) <= 100 else str(error)[:97] + "..."
            print(f"step {step:3d}  refused: {reason}", flush=True)
            # one GET: a healthy run (not recovered meanwhile, or handle.client would be the new client)
            # means the error is the loop's own
            if not handle.check() and client is handle.client:
                raise
            print("          corrupted; waiting for the recovery ...", flush=True)
            wait_for_recovery(handle, Deadline(recovery_timeout_s))
            continue
        step += 1


def run(steps: int, save_every: int, corrupt_at: int, timeout_s: float, poll_interval_ms: int = 100) -> None:
    """Start FakeTinker, train with recovery on, verify; raise ExampleFailed if anything is off."""
    tinker = import_tinker()
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeTinker())
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=10.0)
        service = stack.enter_context(tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key))
        training_client = service.create_lora_training_client(base_model=BASE_MODEL, rank=8).result()
        print(f"training {steps} steps on run {training_client.model_id} (FakeTinker at {fake.base_url}); "
              f"a checkpoint every {save_every} steps; corruption before step {corrupt_at}", flush=True)

        executor = stack.enter_context(tr.Executor(max_concurrent=1, config=config))
        policy = demo_policy(poll_interval_ms=poll_interval_ms)
        monitor = stack.enter_context(tr.Monitor(executor, policy, config))
        handle = monitor.monitor_run(training_client.model_id, service,
                                     metadata={"training_client": training_client})

        corrupted: list[str] = []
        timings: dict[str, float] = {}

        def corrupt_once(step: int, run_id: str) -> None:
            if step == corrupt_at and not corrupted:
                fake.corrupt(run_id)
                timings["corrupted_at"] = time.monotonic()
                corrupted.append(run_id)
                print(f"          (run {run_id} marked corrupted on the server)", flush=True)

        def first_step_after() -> None:
            if "corrupted_at" in timings and "to_next_step_s" not in timings:
                timings["to_next_step_s"] = time.monotonic() - timings["corrupted_at"]
                print(f"          corruption -> next successful step: {timings['to_next_step_s']:.3f} s "
                      f"(poll interval {poll_interval_ms} ms)", flush=True)

        ledger = StepLedger()
        train(handle, steps, save_every, ledger, before_step=corrupt_once, recovery_timeout_s=timeout_s,
              on_step=first_step_after)
        if not handle.recoveries:
            raise ExampleFailed("the run was never recovered")

        reference_client = service.create_lora_training_client(base_model=BASE_MODEL, rank=8).result()
        datums, adam = make_datums(), adam_params()
        reference = [train_step(reference_client, datums, adam) for _ in range(steps)]

    restored = ledger.restored_at
    if restored is None:
        raise ExampleFailed("the loop never resumed from the restored checkpoint")
    since = ", ".join(map(str, ledger.since_restore))
    print(f"steps run after restoring {checkpoint_name(restored)}: {since}")
    problems = ledger.problems(steps, reference)
    if problems:
        raise ExampleFailed("; ".join(problems))
    repeated = list(range(restored, corrupt_at))
    print(f"verified: steps 0..{steps - 1} applied once each, in order, none skipped or repeated on the "
          f"final weights; every loss equals an uninterrupted {steps}-step run's; steps {repeated} ran twice "
          f"(after {checkpoint_name(restored)}, lost with the corrupted run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python examples/training_loop.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps to train (default 12)")
    parser.add_argument("--save-every", type=int, default=4, metavar="K",
                        help="save a checkpoint every K steps (default 4)")
    parser.add_argument("--corrupt-at", type=int, default=10, metavar="STEP",
                        help="mark the run corrupted before this step (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="longest wait for a recovery, in seconds (default 30)")
    parser.add_argument("--poll-interval-ms", type=int, default=100, metavar="MS",
                        help="the Monitor's poll interval (default 100, at least 100); the loop's "
                             "handle.check() detects the corruption at once whatever it is")
    args = parser.parse_args(argv)
    if args.save_every < 1 or args.timeout <= 0 or args.poll_interval_ms < 100:
        parser.error("--save-every must be >= 1, --timeout > 0 and --poll-interval-ms >= 100")
    if not args.save_every <= args.corrupt_at < args.steps:
        parser.error("need --save-every <= --corrupt-at < --steps, "
                     "so a checkpoint exists before the corruption")
    try:
        run(args.steps, args.save_every, args.corrupt_at, args.timeout, args.poll_interval_ms)
    except ExampleFailed as error:
        print(f"training_loop: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
