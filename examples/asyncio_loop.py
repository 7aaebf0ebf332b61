"""An asyncio training loop that survives a corrupted run, with the official ``tinker`` SDK's awaited calls.

    python examples/asyncio_loop.py [--steps 12] [--save-every 4] [--corrupt-at 10]
                                    [--poll-interval-ms 1000] [--no-check] [--restore-latency S]

It runs against a local FakeTinker (no API key, no network). ``main`` runs under ``asyncio.run``, as
tinker-cookbook's recipes do: each step submits ``forward_backward`` and ``optim_step`` and then awaits
both, and a ``step-NNNNNN`` checkpoint is awaited every ``--save-every`` steps. Before step
``--corrupt-at`` the run is marked corrupted on the server, so that step is refused. The loop asks
``handle.check()`` (one GET, run off the event loop) whether the refusal is corruption, then awaits
``handle.wait_for_recovery_async(...)``, which never blocks the event loop: a ticker task keeps running
meanwhile and the longest gap between its ticks is printed. With ``--no-check`` the loop leaves
detection to the Monitor's poll (``--poll-interval-ms``).

At the end it checks that steps 0..N-1 were each applied once, in order, with the losses of an
uninterrupted run, and prints the time from the corruption to the next successful step.
Exit status: 0 verified, 1 failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import tinker_recovery as tr
from tinker_recovery.examples._common import (
    ExampleFailed,
    StepLedger,
    adam_params,
    checkpoint_name,
    demo_policy,
    import_tinker,
    make_datums,
)
from tinker_recovery.testing import FakeTinker

BASE_MODEL = "Qwen/Qwen3-8B"


async def train_step(client: Any, datums: list[Any], adam: Any) -> float:
    """One optimizer step: both requests submitted, then both awaited (no failed future left unread)."""
    forward_backward, optim = client.forward_backward(datums, "cross_entropy"), client.optim_step(adam)
    results = await asyncio.gather(forward_backward, optim, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return float(results[0].metrics["loss:sum"])


class Ticker:
    """A task ticking every 10 ms while the loop waits: ``ticks`` and ``longest_gap_s`` show whether
    the wait blocked the event loop (a blocking wait lets it tick not once)."""

    def __init__(self) -> None:
        self.longest_gap_s, self.ticks = 0.0, 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest_gap_s, self.ticks = max(self.longest_gap_s, now - last), self.ticks + 1
            last = now

    def start(self) -> None:
        self.longest_gap_s, self.ticks = 0.0, 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def train(
    handle: tr.RunHandle, fake: FakeTinker, args: argparse.Namespace, ledger: StepLedger
) -> dict[str, float]:
    """The loop; returns timings (``corrupted_to_next_step_s``, ``longest_loop_gap_s``)."""
    tinker = import_tinker()
    datums, adam = make_datums(), adam_params()
    client, step = handle.client, 0
    corrupted_at: float | None = None
    timings: dict[str, float] = {}
    ticker = Ticker()
    while step < args.steps:
        if (recovery := handle.take_recovery()) is not None:
            if recovery.step is None:
                raise ExampleFailed(f"restored {recovery.checkpoint.tinker_path}, which names no step")
            client, step = recovery.client, recovery.step
            ledger.restored(step)
            print(
                f"recovered from {recovery.checkpoint.tinker_path} into run {recovery.new_run_id}; "
                f"resuming at step {step}",
                flush=True,
            )
        if step == args.corrupt_at and corrupted_at is None:
            if args.restore_latency > 0:  # the restore's load answers this much later
                fake.add_fault("POST", r"^/api/v1/load_weights$", latency_s=args.restore_latency, times=1)
            fake.corrupt(handle.run_id)
            corrupted_at = time.monotonic()
            print(f"          (run {handle.run_id} marked corrupted on the server)", flush=True)
        try:
            loss = await train_step(client, datums, adam)
        except tinker.RequestFailedError:
            print(f"step {step:3d}  refused", flush=True)
            # healthy, and not recovered meanwhile (then handle.client is already the new client):
            if not args.no_check and not await asyncio.to_thread(handle.check) and client is handle.client:
                raise  # the error is the loop's own
            ticker.start()
            began = time.monotonic()
            try:
                await handle.wait_for_recovery_async(timeout=args.timeout)
            finally:
                timings["wait_s"] = time.monotonic() - began
                await ticker.stop()
            timings["longest_loop_gap_s"], timings["ticks"] = ticker.longest_gap_s, ticker.ticks
            continue
        if corrupted_at is not None and "corrupted_to_next_step_s" not in timings:
            timings["corrupted_to_next_step_s"] = time.monotonic() - corrupted_at
        ledger.applied(step, loss)
        print(f"step {step:3d}  loss {loss:.6f}", flush=True)
        step += 1
        if step % args.save_every == 0:
            saved = await client.save_state(checkpoint_name(step))
            print(f"          saved {saved.path}", flush=True)
    return timings


async def run(args: argparse.Namespace) -> dict[str, float]:
    """Start FakeTinker, train with recovery on, verify; raise ExampleFailed if anything is off."""
    tinker = import_tinker()
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeTinker())
        service = stack.enter_context(tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key))
        training_client = await service.create_lora_training_client(base_model=BASE_MODEL, rank=8)
        print(
            f"training {args.steps} steps on run {training_client.model_id} (FakeTinker at {fake.base_url}); "
            f"a checkpoint every {args.save_every} steps; corruption before step {args.corrupt_at}; "
            f"poll interval {args.poll_interval_ms} ms; detection by "
            f"{'the poll' if args.no_check else 'handle.check()'}",
            flush=True,
        )
        policy = demo_policy(poll_interval_ms=args.poll_interval_ms)
        executor = stack.enter_context(tr.Executor())
        monitor = stack.enter_context(tr.Monitor(executor, policy))  # REST access from the service
        handle = monitor.monitor_run(training_client.model_id, service, training_client=training_client)
        ledger = StepLedger()
        timings = await train(handle, fake, args, ledger)
        if handle.recovery_count != 1:
            raise ExampleFailed(f"expected one recovery, saw {handle.recovery_count}")
        reference_client = await service.create_lora_training_client(base_model=BASE_MODEL, rank=8)
        datums, adam = make_datums(), adam_params()
        reference = [await train_step(reference_client, datums, adam) for _ in range(args.steps)]
    problems = ledger.problems(args.steps, reference)
    if problems:
        raise ExampleFailed("; ".join(problems))
    repeated = list(range(ledger.restored_at or 0, args.corrupt_at))
    print(
        f"verified: steps 0..{args.steps - 1} applied once each on the final weights, in order, with an "
        f"uninterrupted run's losses; steps {repeated} ran twice "
        f"(after {checkpoint_name(ledger.restored_at or 0)}, lost with the corrupted run)"
    )
    print(
        f"corruption -> next successful step: {timings['corrupted_to_next_step_s']:.3f} s "
        f"(poll interval {args.poll_interval_ms} ms); while awaiting the recovery "
        f"({timings.get('wait_s', 0.0) * 1000:.0f} ms) "
        f"the event loop ticked {timings.get('ticks', 0):.0f} times, longest gap "
        f"{timings.get('longest_loop_gap_s', 0.0) * 1000:.0f} ms",
        flush=True,
    )
    return timings


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python examples/asyncio_loop.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps to train (default 12)")
    parser.add_argument(
        "--save-every", type=int, default=4, metavar="K", help="save every K steps (default 4)"
    )
    parser.add_argument(
        "--corrupt-at",
        type=int,
        default=10,
        metavar="STEP",
        help="mark the run corrupted before this step (default 10)",
    )
    parser.add_argument(
        "--poll-interval-ms",
        type=int,
        default=1000,
        metavar="MS",
        help="the Monitor's poll interval (default 1000, at least 100)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="do not call handle.check(): leave detection to the poll"
    )
    parser.add_argument(
        "--restore-latency",
        type=float,
        default=0.0,
        metavar="S",
        help="make FakeTinker answer the restore's load S seconds late (default 0)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="longest wait for a recovery, in seconds (default 30)",
    )
    args = parser.parse_args(argv)
    if (
        args.save_every < 1
        or args.timeout <= 0
        or args.poll_interval_ms < 100
        or not 0 <= args.restore_latency < 60
    ):
        parser.error(
            "need --save-every >= 1, --timeout > 0, --poll-interval-ms >= 100 and 0 <= --restore-latency < 60"
        )
    if not args.save_every <= args.corrupt_at < args.steps:
        parser.error(
            "need --save-every <= --corrupt-at < --steps, so a checkpoint exists before the corruption"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        asyncio.run(run(args))
    except ExampleFailed as error:
        print(f"asyncio_loop: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
