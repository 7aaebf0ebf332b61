"""Time from detection to ``completed`` for a burst of corrupted runs, by ``max_concurrent``.

Usage: python benchmarks/bench_recovery.py [--runs 16] [--create-ms 200] [--rounds 3] [--concurrency 1,4,16]

A Monitor (``poll_interval_ms=250``) watches healthy runs of a FakeTinker; then ``--runs`` of them
are corrupted at once. The service is a ``LoopbackService``: each restore is a real
``load_weights`` over HTTP, to which a FakeTinker latency fault adds ``--create-ms`` (the fault
delays the request, then it is carried out), so one create call takes about that long. For each
run, the time from its ``detected`` signal to its ``completed`` signal is measured; "all done" is
from the first ``detected`` to the last ``completed`` of the burst (the runs are detected over one
poll interval, so it includes up to 250 ms of detection spread). ``max_concurrent=1`` is the
simple design: one recovery at a time.

FakeTinker runs in its own process (``python -m tinker_recovery.testing.fake_server --port 0``).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from _common import ServerProcess, machine, percentile, print_table

import tinker_recovery as tr
from tinker_recovery import signals
from tinker_recovery.testing import LoopbackService


def burst(server: ServerProcess, run_ids: list[str], max_concurrent: int, timeout_s: float = 60.0) -> dict:
    """Corrupt ``run_ids`` at once; return the detected->completed times and the burst's span."""
    detected: dict[str, float] = {}
    completed: dict[str, float] = {}
    cond = threading.Condition()

    def on_detected(_sender: object, run_id: str, **_: object) -> None:
        with cond:
            detected.setdefault(run_id, time.monotonic())

    def on_completed(_sender: object, run_id: str, **_: object) -> None:
        with cond:
            completed.setdefault(run_id, time.monotonic())
            cond.notify_all()

    config = tr.Config(api_key=server.api_key, base_url=server.base_url)
    policy = tr.Policy(enabled=True, poll_interval_ms=250, jitter="none")
    service = LoopbackService(server.base_url, server.api_key, timeout_s=10.0)
    with service, tr.Executor(max_concurrent, config=config) as executor, \
            tr.Monitor(executor, policy, config) as monitor:
        signals.detected.connect(on_detected, sender=monitor)
        signals.completed.connect(on_completed, sender=executor)
        try:
            for run_id in run_ids:
                monitor.monitor_run(run_id, service)
            threading.Event().wait(0.5)  # every run polled once, healthy
            for run_id in run_ids:
                server.corrupt(run_id)
            with cond:
                if not cond.wait_for(lambda: len(completed) == len(run_ids), timeout_s):
                    raise RuntimeError(f"only {len(completed)} of {len(run_ids)} recoveries completed")
        finally:
            signals.detected.disconnect(on_detected)
            signals.completed.disconnect(on_completed)
    times = [completed[r] - detected[r] for r in run_ids]
    span = max(completed.values()) - min(detected.values())
    loads = [server.load_weights_count(r) for r in run_ids]
    if loads != [1] * len(run_ids):
        raise RuntimeError(f"expected one load_weights per run, got {loads}")
    return {"times": times, "span": span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16, help="runs corrupted at once (default 16)")
    parser.add_argument("--create-ms", type=int, default=200, help="added to each create call (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per setting (default 3)")
    parser.add_argument("--concurrency", default="1,4,16", help="max_concurrent values (default 1,4,16)")
    args = parser.parse_args()
    logging.getLogger("tinker_recovery").setLevel(logging.ERROR)
    settings = [int(c) for c in args.concurrency.split(",")]

    print(f"machine: {machine()}")
    print(f"FakeTinker in a separate process; {args.runs} runs corrupted at once; "
          f"create call +{args.create_ms} ms (latency fault on POST /api/v1/load_weights)\n")
    rows = []
    with ServerProcess(args.runs * args.rounds * len(settings)) as server:
        server.add_fault(method="POST", path=r"^/api/v1/load_weights$", latency_s=args.create_ms / 1000)
        pool = server.run_ids()
        for max_concurrent in settings:
            times: list[float] = []
            spans: list[float] = []
            for _ in range(args.rounds):
                run_ids, pool = pool[: args.runs], pool[args.runs:]
                result = burst(server, run_ids, max_concurrent)
                times += result["times"]
                spans.append(result["span"])
            ideal = -(-args.runs // max_concurrent) * args.create_ms / 1000
            rows.append([max_concurrent, len(times), f"{percentile(times, 50):.2f}",
                         f"{percentile(times, 99):.2f}", f"{max(spans):.2f}", f"{ideal:.2f}"])
            print(f"  max_concurrent={max_concurrent}: all done in {max(spans):.2f} s", flush=True)
    print()
    print_table(["max_concurrent", "recoveries", "detected->completed p50 s", "p99 s",
                 "all done (worst burst) s", "ceil(runs/max_concurrent) x create s"], rows)


if __name__ == "__main__":
    main()
