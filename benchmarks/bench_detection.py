"""Detection latency (p50/p99) and HTTP requests per poll cycle, against FakeTinker.

Usage: python benchmarks/bench_detection.py [--sizes 10,100,1000] [--seconds 5]
                                            [--designs baseline,per_run,list]

For each number of watched runs, with and without 5% slow runs (their ``GET /training_runs/{id}``
answers after 2 s, longer than the 1 s poll time-out), and for each design:

- ``baseline``: the original's simple design, one thread reading the runs one after another with
  a RestClient (time-out 1 s, no retries), then waiting out the rest of the interval;
- ``per_run`` / ``list``: a ``Monitor`` with that ``poll_mode`` (defaults otherwise).

Runs are corrupted at random moments (Poisson arrivals, only runs whose look-up is not slow); the
latency of one is the time from sending ``corrupt`` to the ``detected`` signal. The service
"recovers" a run into itself at once (it marks the run healthy and returns a client with the same
``model_id``), so the same runs stay watched and can be corrupted again. The requests one poll
cycle costs are counted in the server's log around one ``Monitor.poll_once()`` (one sweep for the
baseline), also for ``poll_mode="auto"`` with all, 50 or 5 of the account's runs watched.

FakeTinker runs in its own process (``python -m tinker_recovery.testing.fake_server --port 0``), so
client and server do not share one GIL. ``poll_interval_ms`` is 1000 throughout.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import threading
import time
from collections.abc import Callable

import attrs
from _common import InstantService, ServerProcess, machine, percentile, print_table

import tinker_recovery as tr
from tinker_recovery import signals

INTERVAL_S = 1.0
SLOW_LATENCY_S = 2.0
SLOW_FRACTION = 0.05


def baseline_poller(config: tr.Config, run_ids: list[str], interval_s: float, stop: threading.Event,
                    on_detected: Callable[[str], None], sweeps: list[float]) -> None:
    """The original design: one thread polls every run in turn, then waits out the interval."""
    with tr.RestClient(config) as rest:
        while not stop.is_set():
            started = time.monotonic()
            if not baseline_sweep(rest, run_ids, stop, on_detected):
                return
            sweeps.append(time.monotonic() - started)
            stop.wait(max(0.0, started + interval_s - time.monotonic()))


def baseline_sweep(rest: tr.RestClient, run_ids: list[str], stop: threading.Event,
                   on_detected: Callable[[str], None]) -> bool:
    """Read every run once, one after another; False if stopped half-way."""
    for run_id in run_ids:
        if stop.is_set():
            return False
        try:
            run = rest.get_training_run(run_id, max_retries=0)
        except tr.TinkerRecoveryError:
            continue  # the original sent :poll_error and went on with the next run
        if run.corrupted:
            on_detected(run_id)
    return True


class Trial:
    """One measurement: corrupt runs at random moments and time their detection."""

    def __init__(self, server: ServerProcess, candidates: list[str], rate: float, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.rate = rate
        self._cond = threading.Condition()
        self._armed = list(candidates)
        self._corrupted_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.touched: set[str] = set()  # every run corrupted at some point

    def reset(self) -> None:
        """Mark every run corrupted in this trial healthy again (a recovery may have been cut short)."""
        for run_id in self.touched:
            self.server.corrupt(run_id, False)

    def detected(self, run_id: str) -> None:
        now = time.monotonic()
        with self._cond:
            started = self._corrupted_at.pop(run_id, None)
            if started is not None:
                self.latencies.append(now - started)
            self._cond.notify_all()

    def rearm(self, run_id: str) -> None:
        with self._cond:
            self._armed.append(run_id)

    def corrupt_for(self, seconds: float) -> int:
        end = time.monotonic() + seconds
        sent = 0
        pause = threading.Event()
        while True:
            pause.wait(self.rng.expovariate(self.rate))
            if time.monotonic() >= end:
                return sent
            with self._cond:
                if not self._armed:
                    continue
                run_id = self._armed.pop(self.rng.randrange(len(self._armed)))
                self._corrupted_at[run_id] = time.monotonic()
                self.touched.add(run_id)
            self.server.corrupt(run_id)
            sent += 1

    def wait_all(self, timeout: float) -> int:
        """Wait for the outstanding detections; return how many never came."""
        with self._cond:
            self._cond.wait_for(lambda: not self._corrupted_at, timeout)
            return len(self._corrupted_at)


def requests_per_cycle(server: ServerProcess, run_ids: list[str], design: str) -> tuple[str, int]:
    """The mode used and the requests one poll cycle over ``run_ids`` costs, counted in the
    server's log: ``Monitor.poll_once()`` (the second one, once "auto" knows the run count), or one
    sweep of the baseline."""
    config = tr.Config(api_key=server.api_key, base_url=server.base_url, timeout_s=1.0)
    if design == "baseline":
        with tr.RestClient(config) as rest:
            first = server.request_index()
            baseline_sweep(rest, run_ids, threading.Event(), lambda run_id: None)
            return "one by one", len(server.requests_since(first))
    policy = tr.Policy(enabled=True, poll_interval_ms=int(INTERVAL_S * 1000))
    service = InstantService(server)
    with tr.Executor(1) as executor:
        monitor = tr.Monitor(executor, policy, config, poll_mode=design)  # not started: no polling of its own
        try:
            for run_id in run_ids:
                monitor.monitor_run(run_id, service)
            monitor.poll_once(timeout=60)
            first = server.request_index()
            monitor.poll_once(timeout=60)
            return monitor._mode_for(len(run_ids)), len(server.requests_since(first))
        finally:
            monitor.stop()


def run_design(design: str, server: ServerProcess, run_ids: list[str], slow: set[str], seconds: float,
               seed: int) -> dict:
    rng = random.Random(seed)
    candidates = [r for r in run_ids if r not in slow]
    rate = min(20.0, max(1.0, len(candidates) / 4))  # corruptions per second
    trial = Trial(server, candidates, rate, rng)
    stop = threading.Event()
    sweeps: list[float] = []
    config = tr.Config(api_key=server.api_key, base_url=server.base_url)
    if design == "baseline":
        def on_detected(run_id: str) -> None:
            trial.detected(run_id)
            server.corrupt(run_id, False)  # "recovered" at once
            trial.rearm(run_id)

        poller = threading.Thread(target=baseline_poller, name="baseline",
                                  args=(attrs.evolve(config, timeout_s=1.0), run_ids, INTERVAL_S, stop,
                                        on_detected, sweeps))
        poller.start()
        try:
            return _measure(trial, seconds, lambda: _grace(sweeps), mode="one by one", sweeps=sweeps)
        finally:
            stop.set()
            poller.join()
            trial.reset()

    policy = tr.Policy(enabled=True, poll_interval_ms=int(INTERVAL_S * 1000), jitter="none",
                       max_recoveries=10**6)
    service = InstantService(server)

    def on_detected(_sender: object, run_id: str, **_: object) -> None:
        trial.detected(run_id)

    def on_completed(_sender: object, run_id: str, **_: object) -> None:
        trial.rearm(run_id)

    try:
        with tr.Executor(4) as executor, tr.Monitor(executor, policy, config, poll_mode=design) as monitor:
            signals.detected.connect(on_detected, sender=monitor)
            signals.completed.connect(on_completed, sender=executor)
            try:
                for run_id in run_ids:
                    monitor.monitor_run(run_id, service)
                # settle into the steady state: at first no run is known to be slow, and the slow
                # ones hold poll workers until their time-out
                threading.Event().wait(6.0 if slow and design == "per_run" else 2.5)
                mode = monitor._mode_for(len(run_ids))
                return _measure(trial, seconds, lambda: 3 * INTERVAL_S + 2.0, mode=mode)
            finally:
                signals.detected.disconnect(on_detected)
                signals.completed.disconnect(on_completed)
    finally:
        trial.reset()


def _grace(sweeps: list[float]) -> float:
    """How long to wait for the last detections: a sweep may take a minute with slow runs."""
    return 2 * max(sweeps[-3:]) + 2.0 if sweeps else 90.0


def _measure(trial: Trial, seconds: float, grace: Callable[[], float], *, mode: str,
             sweeps: list[float] | None = None) -> dict:
    sent = trial.corrupt_for(seconds)
    missed = trial.wait_all(grace())
    result = {"mode": mode, "sent": sent, "missed": missed, "latencies": trial.latencies}
    if sweeps:
        result["sweep"] = max(sweeps[-3:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="watched runs (default 10,100,1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="corruption window per design (default 5)")
    parser.add_argument("--designs", default="baseline,per_run,list")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.getLogger("tinker_recovery").setLevel(logging.CRITICAL)  # slow runs log a poll error each second

    print(f"machine: {machine()}")
    print(f"FakeTinker in a separate process; poll_interval_ms=1000; "
          f"slow runs answer after {SLOW_LATENCY_S:g} s\n")
    rows: list[list] = []
    cycle_rows: list[list] = []
    started = time.monotonic()
    for size in [int(s) for s in args.sizes.split(",")]:
        for slow_on in (False, True):
            with ServerProcess(size, seed=args.seed) as server:
                run_ids = server.run_ids()
                count = math.ceil(SLOW_FRACTION * size) if slow_on else 0
                slow = set(random.Random(args.seed).sample(run_ids, count))
                server.slow_down(slow, SLOW_LATENCY_S)
                for design in args.designs.split(","):
                    result = run_design(design, server, run_ids, slow, args.seconds, args.seed)
                    lat = result["latencies"]
                    rows.append([
                        size, f"{len(slow)} ({SLOW_FRACTION:.0%})" if slow else "0", design, result["mode"],
                        len(lat), result["missed"],
                        f"{percentile(lat, 50):.2f}", f"{percentile(lat, 99):.2f}",
                        f"{max(lat, default=math.nan):.2f}",
                        f"{result['sweep']:.2f}" if "sweep" in result else "-",
                    ])
                    print(f"  [{time.monotonic() - started:5.0f} s] {size} runs, slow={len(slow)}, {design}: "
                          f"p50 {rows[-1][6]} s, p99 {rows[-1][7]} s", flush=True)
                if not slow_on:
                    for watched in sorted({size, *(w for w in (5, 50) if w < size)}):
                        designs = ["baseline", "per_run", "list", "auto"] if watched == size else ["auto"]
                        for design in designs:
                            mode, count = requests_per_cycle(server, run_ids[:watched], design)
                            cycle_rows.append([size, watched, design, mode, count])
    print()
    print_table(["runs", "slow runs", "design", "mode used", "n", "missed", "p50 s", "p99 s", "max s",
                 "sweep s"], rows)
    print("\nHTTP requests per poll cycle (every watched run read once; list_page_size=100):\n")
    print_table(["runs on the account", "runs watched", "design", "mode used", "requests"], cycle_rows)
    print(f"\ntarget: p99 <= interval + 1 s = {INTERVAL_S + 1:g} s; total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
