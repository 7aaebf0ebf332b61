"""The monitor's CPU use while its runs are healthy, and its memory per watched run.

Usage: python benchmarks/bench_resources.py [--seconds 10] [--sizes 100,1000,10000]

CPU: a Monitor (``poll_interval_ms=1000``) watches N healthy runs of a FakeTinker; after a settling
time, the CPU time of this process (``time.process_time()``: every thread, so the monitor thread,
its poll workers and the HTTP client) is measured over ``--seconds`` and given as a percentage of
one core. The fake server's own CPU (read from /proc) is shown beside it. The baseline is the
original's simple design: one thread polling the runs one after another (see bench_detection.py).

Memory, in a fresh child process (so the CPU runs' heap does not hide growth): the resident set
size (/proc/self/statm) before and after watching 1,000 and 10,000 more runs, with the monitor
polling them in list mode for a few seconds in between,
divided by the number of runs added; and, for the monitor's bookkeeping alone (no polling),
``tracemalloc``'s count of the bytes allocated per ``monitor_run``.

FakeTinker runs in its own process (``python -m tinker_recovery.testing.fake_server --port 0``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import threading
import time
import tracemalloc

from _common import InstantService, ServerProcess, machine, print_table, rss_bytes
from bench_detection import baseline_poller

import tinker_recovery as tr


def _monitor(server: ServerProcess, mode: str, executor: tr.Executor) -> tr.Monitor:
    config = tr.Config(api_key=server.api_key, base_url=server.base_url)
    policy = tr.Policy(enabled=True, poll_interval_ms=1000, jitter="none")
    return tr.Monitor(executor, policy, config, poll_mode=mode)


def cpu_row(server: ServerProcess, run_ids: list[str], design: str, seconds: float) -> list:
    stop = threading.Event()
    with tr.Executor(1) as executor:
        if design == "baseline":
            config = tr.Config(api_key=server.api_key, base_url=server.base_url, timeout_s=1.0)
            poller = threading.Thread(target=baseline_poller, name="baseline",
                                      args=(config, run_ids, 1.0, stop, lambda run_id: None, []))
            poller.start()
            mode = "one by one"
        else:
            monitor = _monitor(server, design, executor).start()
            service = InstantService(server)
            for run_id in run_ids:
                monitor.monitor_run(run_id, service)
            mode = monitor._mode_for(len(run_ids))
        try:
            stop.wait(3.0)  # settle
            first = server.request_index()
            cpu0, server0, wall0 = time.process_time(), server.cpu_seconds(), time.monotonic()
            stop.wait(seconds)
            cpu1, server1, wall1 = time.process_time(), server.cpu_seconds(), time.monotonic()
            requests = len(server.requests_since(first))
        finally:
            stop.set()
            if design == "baseline":
                poller.join()
            else:
                monitor.stop()
    wall = wall1 - wall0
    return [len(run_ids), design, mode, f"{100 * (cpu1 - cpu0) / wall:.1f}",
            f"{100 * (server1 - server0) / wall:.1f}", f"{requests / wall:.0f}"]


def memory_rows(server: ServerProcess, run_ids: list[str], steps: list[int]) -> list[list]:
    rows = []
    with tr.Executor(1) as executor, _monitor(server, "list", executor) as monitor:
        service = InstantService(server)
        watched = 10
        for run_id in run_ids[:watched]:  # warm every code path first
            monitor.monitor_run(run_id, service)
        threading.Event().wait(2.0)
        gc.collect()
        base = rss_bytes()
        for step in steps:
            for run_id in run_ids[watched:watched + step]:
                monitor.monitor_run(run_id, service)
            watched += step
            threading.Event().wait(3.0)  # polled a few times in list mode
            gc.collect()
            grown = rss_bytes() - base
            rows.append([f"{watched - 10:,}", "watched and polled (list)", f"{grown / 2**20:.1f}",
                         f"{grown / (watched - 10):,.0f}"])
    return rows


def bookkeeping_bytes(count: int) -> float:
    """Bytes allocated per monitor_run, the monitor not started (no polling)."""
    config = tr.Config(api_key="tml-bench", base_url="http://127.0.0.1:9")
    policy = tr.Policy(enabled=True, poll_interval_ms=1000)
    ids = [f"bench-session:train:{n}" for n in range(count)]
    service = InstantService(None)  # type: ignore[arg-type]  # never called: nothing is polled
    with tr.Executor(1) as executor:
        monitor = tr.Monitor(executor, policy, config)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for run_id in ids:
            monitor.monitor_run(run_id, service)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        monitor.stop()
    return (after - before) / count


def memory_table() -> list[list]:
    """The memory rows, measured in this (fresh) process before anything else grew its heap."""
    steps = [1000, 9000]
    with ServerProcess(10 + sum(steps)) as server:
        # The seeded runs are <session>:train:0..N-1. Build the ids from the first one rather than
        # reading 10,000 runs: the freed JSON would leave heap space that hides the growth.
        first = server._call("GET", "/api/v1/training_runs", params={"limit": 1})["training_runs"][0]
        session = first["training_run_id"].rsplit(":train:", 1)[0]
        run_ids = [f"{session}:train:{n}" for n in range(10 + sum(steps))]
        rows = memory_rows(server, run_ids, steps)
    per_watch = bookkeeping_bytes(10_000)
    rows.append(["10,000", "bookkeeping only (tracemalloc)", f"{per_watch * 10_000 / 2**20:.1f}",
                 f"{per_watch:,.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU measuring time per row (default 10)")
    parser.add_argument("--sizes", default="100,1000,10000", help="watched runs for the CPU table")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("tinker_recovery").setLevel(logging.ERROR)
    if args.memory_only:  # the child process: a fresh heap
        json.dump(memory_table(), sys.stdout)
        return
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"machine: {machine()}")
    print("FakeTinker in a separate process; poll_interval_ms=1000; all runs healthy\n")
    child = subprocess.run([sys.executable, __file__, "--memory-only"], capture_output=True, text=True,
                           timeout=300, check=True)
    memory = json.loads(child.stdout)
    cpu_rows = []
    for size in sizes:
        with ServerProcess(size) as server:
            run_ids = server.run_ids()
            designs = ["baseline", "per_run", "list", "auto"] if size <= 1000 else ["list", "auto"]
            for design in designs:
                cpu_rows.append(cpu_row(server, run_ids, design, args.seconds))
                row = cpu_rows[-1]
                print(f"  {size} runs, {design}: client {row[3]} %, server {row[4]} %", flush=True)
    print()
    print_table(["runs", "design", "mode used", "client CPU % of a core", "server CPU %", "requests/s"],
                cpu_rows)
    print("\nMemory (measured in a fresh process):\n")
    print_table(["runs added", "measured", "RSS growth MiB", "bytes per run"], memory)


if __name__ == "__main__":
    main()
