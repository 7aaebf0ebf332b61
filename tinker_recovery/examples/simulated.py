"""Offline recovery demo: a corrupted run restored from its checkpoint, over real loopback HTTP.

    python -m tinker_recovery.examples.simulated

It starts a FakeTinker on 127.0.0.1, seeds a run with a checkpoint, flips the run to
``corrupted: true``, and lets a Monitor and an Executor detect it and restore it. The service is
``LoopbackService`` (a small requests-based client), so neither an API key, the network nor the
official ``tinker`` SDK is needed. Exit status 0 on success, 1 (with a one-line reason on stderr)
on failure or time-out, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import tinker_recovery as tr
from tinker_recovery.examples._common import Deadline, ExampleFailed, SignalLog, demo_policy, positive_seconds
from tinker_recovery.testing import FakeTinker, LoopbackService

__all__ = ["main"]

PROG = "python -m tinker_recovery.examples.simulated"


def run(timeout_s: float) -> None:
    """Run the demo, printing numbered steps; raise ExampleFailed if it cannot finish in time."""
    deadline = Deadline(timeout_s)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeTinker())
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0)
        service = stack.enter_context(LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0))
        executor = stack.enter_context(tr.Executor(max_concurrent=1, config=config))
        monitor = stack.enter_context(tr.Monitor(executor, demo_policy(), config))
        log = stack.enter_context(SignalLog(monitor, executor))

        run_id = fake.add_run(checkpoints=1)
        seeded = fake.get_run(run_id)["last_checkpoint"]["tinker_path"]
        print(f"1) checkpoint seeded: {seeded} (FakeTinker at {fake.base_url})", flush=True)

        handle = monitor.monitor_run(run_id, service)
        fake.corrupt(run_id)
        print(f"2) corruption flagged: run {run_id} now reads corrupted: true", flush=True)

        _, detected = log.wait_for(["detected"], deadline)
        last = detected["checkpoint"]
        print(f"3) detected: the monitor read {run_id} as corrupted "
              f"(last checkpoint {last.name if last else None})", flush=True)

        event, payload = log.wait_for(["completed", "exhausted"], deadline)
        if event == "exhausted":
            raise ExampleFailed(f"recovery of {run_id} was given up: {payload['reason']}: {payload['error']}")
        if not handle.wait(deadline.remaining()):
            raise ExampleFailed(f"the run handle did not take the recovery within {timeout_s:g} s")
        recovery = handle.take_recovery()
        if recovery is None:
            raise ExampleFailed("the run handle reported a recovery but held none")
        new_run_id = recovery.new_run_id
        if new_run_id is None:
            raise ExampleFailed("the recovery did not name the new run")
        print(f"4) recovered from {recovery.checkpoint.tinker_path} into {new_run_id} "
              f"(attempt {recovery.attempts}; signals: {', '.join(log.names)})", flush=True)

        resumed = recovery.client.save_state("after-recovery")
        loads = fake.load_weights_count(run_id)
        print(f"5) checkpoints processed: {seeded} (restored; loaded {loads} time(s)) -> "
              f"{resumed} (saved by the recovered client)", flush=True)

        old, new = fake.get_run(run_id), fake.get_run(new_run_id)
        print(f"6) final run status: {run_id} corrupted={old['corrupted']}; {new_run_id} "
              f"corrupted={new['corrupted']}, last checkpoint {new['last_checkpoint']['checkpoint_id']}; "
              f"monitor watching {monitor.watched}", flush=True)
        if loads != 1 or new["corrupted"] or monitor.watched != [new_run_id] or handle.run_id != new_run_id:
            raise ExampleFailed(
                f"unexpected final state: {loads} load(s), new run corrupted={new['corrupted']}, "
                f"watching {monitor.watched}, handle on {handle.run_id}"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the offline demo; return 0 on success, 1 on failure or time-out."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="S",
                        help="give up after this many seconds (default 30)")
    args = parser.parse_args(argv)
    try:
        run(args.timeout)
    except ExampleFailed as error:
        print(f"simulated: FAILED: {error}", file=sys.stderr)
        return 1
    print("simulated: OK, the corrupted run was recovered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
