"""Issue 16's figures at scale, today's design and this checkout side by side, in one run.

Usage: python benchmarks/bench_scale.py --baseline DIR [--current DIR] [--quick] [--cases 1,2,3,4,5,6]

``--baseline DIR`` is a checkout of the design to compare with, e.g. the package as of dc76e6e:
``git worktree add /tmp/tr-0.1 dc76e6e``. ``--current`` defaults to this checkout. Every case runs
once per design, each in its own child process with ``PYTHONPATH`` set to that design's checkout (the
child checks which ``tinker_recovery`` it imported), one design after the other on the same machine.
The fake server is always this checkout's FakeTinker, in another process
(``python -m tinker_recovery.testing.fake_server --answer-delay-ms 44``), answering every ``/api/v1``
request 44 ms late like a remote service, or at once ("fast server") where a case says so.
The benchmark uses only the public API (Config, Policy, Executor, Monitor, signals), so the same
code drives both designs. ``poll_interval_ms=1000`` throughout.

Cases (``--quick`` runs reduced sizes and shorter windows, about 3 minutes for both designs; the
full run about 12 minutes):

1. 10,000 watched runs, ``poll_mode="auto"`` (it lists), 5% of run look-ups slow (their
   ``GET /training_runs/{id}`` answers after 2 s): detection p99.
2. A 30,000-run account with 20 watched runs (spread over the account): ``auto``: the 20 runs are
   corrupted before ``start()``, the first detection after start is the latest of their detections
   timed from ``start()``; then the p99 of random corruptions. ``list``: p99 and the longest
   detection latency (a run corrupted just after it was read waits the longest it stays unread).
3. ``per_run`` at 1,000 runs, default poll settings: detection p99.
4. CPU, fast server: a ``per_run`` poll's CPU per request (100 runs; the whole process's CPU over a
   window divided by the requests the server logged) beside bare ``http.client``'s (one keep-alive
   connection, body parsed with ``json.loads``); ``list`` mode's CPU per listed run (every run of
   the account watched, 100-run pages; a single-run read, if the design makes any while listing,
   counts as one run); wake-ups of library threads per poll (voluntary context
   switches of the threads named ``tinker_recovery*``, from ``/proc/self/task/*/status``, ``per_run``,
   100 runs, over a separate window so the sampling costs no CPU in the first).
5. Memory per watched run, at 1,000 and 10,000 watched runs, each in a fresh process. RSS growth of a
   started ``list`` monitor (fast server), read once the monitor has taken up 210 runs (10, then 200)
   and polled them, so what a monitor pays once is not charged to the runs; with the poll pool held at
   ``MEMORY_POOL`` workers (a size reached before the base), so the figure is memory per watched run,
   and again with the default pool, whose growth during the steps (its threads, and what the malloc
   arenas keep of their reads: some 100 to 200 kB a thread here, a per-monitor cost up to
   ``poll_concurrency`` threads) lands on the runs added. The cell gives both, each with the poll
   threads at the base and at the step. (Read from 10 runs with the default pool, the figure swung
   from 700 B to 3.3 kB a run at 1,000 runs, with the pool's growth.) ``tracemalloc``: a second
   monitor (default settings), the Python memory ``monitor_run`` leaves allocated, from a base read
   after the same 210 runs (0.1.0 does not start that monitor; this design's ``monitor_run`` does, so
   each reading is the least of ten samples, leaving out the pages and polls in flight).
6. No regression: 1,000 runs, ``auto``, fast server: detection p99.

Latency is the time from the corruption (sent through the fake's admin API at random moments,
Poisson arrivals, never to a slow run) to the ``detected`` signal. The service "recovers" a run at
once: it marks the run healthy and creates a new healthy run on the account (``POST /_fake/runs``),
whose id the restored client's ``model_id`` gives, so the monitor follows it and the benchmark may
corrupt it in turn. (Returning the same run id would not do: 0.2.0's Executor recovers a run id at
most once, so a run corrupted a second time would stay corrupted, detected over and over.)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import InstantService, ServerProcess, machine, percentile, print_table, rss_bytes
from _scale_probe import Trial, WakeupSampler, http_client_cpu_per_request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INTERVAL_S = 1.0
REMOTE_MS = 44.0
SLOW_S = 2.0

# --- the child: one case, one design ----------------------------------------------------------------


def _spread(ids: list[str], count: int) -> list[str]:
    """``count`` ids spread evenly over the account (so they sit on different list pages)."""
    if count >= len(ids):
        return list(ids)
    step = len(ids) / count
    return [ids[int(n * step)] for n in range(count)]


def _quiet_logs() -> None:
    import logging

    logging.getLogger("tinker_recovery").setLevel(logging.CRITICAL)  # slow runs log poll errors


def _policy(tr: Any) -> Any:
    return tr.Policy(
        enabled=True, poll_interval_ms=int(INTERVAL_S * 1000), jitter="none", max_recoveries=10**6
    )


def case_detect(p: dict[str, Any]) -> dict[str, Any]:
    """Detection latencies of a started Monitor over ``p["watched"]`` of ``p["runs"]`` runs."""
    import tinker_recovery as tr
    from tinker_recovery import signals

    rng = random.Random(p["seed"])
    with ServerProcess(p["runs"], seed=p["seed"], answer_delay_ms=p["delay_ms"]) as server:
        ids = server.run_ids()
        watched = _spread(ids, p["watched"])
        slow = set(rng.sample(watched, math.ceil(p.get("slow_fraction", 0.0) * len(watched))))
        server.slow_down(slow, SLOW_S)
        candidates = [r for r in watched if r not in slow]
        trial = Trial(server.corrupt, candidates, min(20.0, max(1.0, len(candidates) / 4)), rng)
        config = tr.Config(api_key=server.api_key, base_url=server.base_url)
        service = InstantService(server, new_runs=True)
        result: dict[str, Any] = {}

        def on_detected(_sender: object, run_id: str, **_: object) -> None:
            trial.detected(run_id)

        def on_completed(_sender: object, run_id: str, **_: object) -> None:
            trial.rearm(run_id, service.successor(run_id))

        with tr.Executor(4) as executor:
            monitor = tr.Monitor(executor, _policy(tr), config, poll_mode=p["mode"])
            signals.detected.connect(on_detected, sender=monitor)
            signals.completed.connect(on_completed, sender=executor)
            try:
                if p.get("initial"):
                    trial.corrupt_now(candidates)
                    started = time.monotonic()
                    trial.restart_clock(started)
                monitor.start()
                for run_id in watched:
                    monitor.monitor_run(run_id, service)
                if p.get("initial"):
                    result["initial_missed"] = trial.wait_all(p["grace"])
                    result["first"] = trial.take_latencies()
                    trial.wait_rearmed(len(candidates), p["grace"])
                threading.Event().wait(p["settle"])
                result["sent"] = trial.corrupt_for(p["seconds"])
                result["missed"] = trial.wait_all(p["grace"])
                result["latencies"] = trial.take_latencies()
            finally:
                signals.detected.disconnect(on_detected)
                signals.completed.disconnect(on_completed)
                monitor.stop()
        trial.reset()
    return result


def case_cpu(p: dict[str, Any]) -> dict[str, Any]:
    """per_run CPU per request and wake-ups per poll, list CPU per listed run (fast server)."""
    import tinker_recovery as tr

    result: dict[str, Any] = {}
    with ServerProcess(p["per_run_runs"], seed=p["seed"]) as server:
        ids = server.run_ids()
        result["http_client_s"] = http_client_cpu_per_request(
            server.base_url, server.api_key, ids, p["http_requests"]
        )
        config = tr.Config(api_key=server.api_key, base_url=server.base_url)
        service = InstantService(server)
        pause = threading.Event()
        with (
            tr.Executor(1) as executor,
            tr.Monitor(executor, _policy(tr), config, poll_mode="per_run") as monitor,
        ):
            for run_id in ids:
                monitor.monitor_run(run_id, service)
            pause.wait(p["settle"])
            first, cpu0, wall0 = server.request_index(), time.process_time(), time.monotonic()
            pause.wait(p["seconds"])
            cpu1, wall1, last = time.process_time(), time.monotonic(), server.request_index()
            result["per_run_cpu_s"] = (cpu1 - cpu0) / max(1, last - first)
            result["per_run_requests_per_s"] = (last - first) / (wall1 - wall0)
            first, wall0 = server.request_index(), time.monotonic()
            sampler = WakeupSampler("tinker_recovery").start()
            pause.wait(p["seconds"])
            switches, threads = sampler.stop()
            wall1, last = time.monotonic(), server.request_index()
            result["wakeups_per_poll"] = switches / max(1, last - first)
            result["wakeups_per_s"] = switches / (wall1 - wall0)
            result["library_threads"] = threads
    with ServerProcess(p["list_runs"], seed=p["seed"]) as server:
        ids = server.run_ids()
        config = tr.Config(api_key=server.api_key, base_url=server.base_url)
        service = InstantService(server)
        pause = threading.Event()
        with (
            tr.Executor(1) as executor,
            tr.Monitor(executor, _policy(tr), config, poll_mode="list") as monitor,
        ):
            for run_id in ids:
                monitor.monitor_run(run_id, service)
            pause.wait(p["settle"])
            first, cpu0, wall0 = server.request_index(), time.process_time(), time.monotonic()
            pause.wait(p["seconds"])
            cpu1, wall1 = time.process_time(), time.monotonic()
            served = server.requests_since(first)
            pages = sum(1 for r in served if r["path"] == "/api/v1/training_runs")
            # every page is full (the account is a multiple of 100 runs); single-run reads count as one run
            others = len(served) - pages
            result["list_pages_per_s"] = pages / (wall1 - wall0)
            result["list_single_reads_per_s"] = others / (wall1 - wall0)
            result["list_cpu_per_run_s"] = (cpu1 - cpu0) / max(1, pages * 100 + others)
    return result


MEMORY_POOL = 5
"""Poll workers case 5's first child holds the pool at: a listing at a fast server reads 4 pages at once
(this design's least), plus one for polls of a run's own; the monitor reaches it while it takes up its
first runs, before the base (0.1.0's list mode uses one)."""


def _poll_threads() -> int:
    """The monitor's poll workers alive now (both designs name them ``tinker_recovery.monitor.poll…``)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("tinker_recovery.monitor.poll"))


def case_memory(p: dict[str, Any]) -> dict[str, Any]:
    """RSS growth per watched run of a started list monitor, and tracemalloc bytes per monitor_run.

    RSS: the monitor takes up runs in the bursts of ``warm`` (10, then 200), each polled ``settle``
    seconds, and only then is the base read: what a monitor pays once (its first listings, its poll
    pool growing as runs join while it lists, the allocator arenas of those threads) is not charged to
    the runs measured. Each step then adds runs (counted from the base) and reads RSS after ``settle``
    seconds of polling. ``pool`` (an int) caps the poll pool (``poll_concurrency``) at a size the
    monitor reaches before the base, so the growth is the runs' own; None leaves the design's default
    pool, which may grow during a step (a burst of ``monitor_run`` calls keeps the CPU busy, the
    measured round trips lengthen, more pages and jobs go at once) and keeps its threads, and what the
    allocators hold of their reads, for good: that is charged to the runs added. ``threads`` gives the
    poll workers at the base and at each step, to tell the two apart.
    tracemalloc (unless ``tracemalloc`` is False): a second monitor, default settings, the Python
    memory left by each step of ``monitor_run`` calls, traced from before its first ``warm`` runs.
    0.1.0's ``monitor_run`` does not start the monitor: its readings are its bookkeeping. This design's
    starts it, and it polls (in ``auto`` it lists the account: a few decoded pages, some 120 kB each,
    are always in flight): so the base is read after the ``warm`` runs, and each reading is the least
    of ten samples 0.1 s apart (polls in flight hold memory for a moment, the runs' bookkeeping for
    good).
    """
    import tracemalloc

    import tinker_recovery as tr

    steps, warm = p["steps"], sum(p["warm"])
    pool = p.get("pool")
    result: dict[str, Any] = {"rss": {}, "tracemalloc": {}, "threads": [], "pool": pool}
    pause = threading.Event()

    def settled_rss() -> int:
        pause.wait(p["settle"])  # polled a few times
        gc.collect()
        result["threads"].append(_poll_threads())
        return rss_bytes()

    with ServerProcess(warm + steps[-1], seed=p["seed"]) as server:
        # the runs are <session>:train:0..N-1; build the ids rather than read them (freed JSON would
        # leave heap space that hides the growth)
        first = server._call("GET", "/api/v1/training_runs", params={"limit": 1})["training_runs"][0]
        session = first["training_run_id"].rsplit(":train:", 1)[0]
        ids = [f"{session}:train:{n}" for n in range(warm + steps[-1])]
        config = tr.Config(api_key=server.api_key, base_url=server.base_url)
        service = InstantService(server)
        options = {} if pool is None else {"poll_concurrency": pool}
        with (
            tr.Executor(1) as executor,
            tr.Monitor(executor, _policy(tr), config, poll_mode="list", **options) as monitor,
        ):
            taken = 0
            for burst in p["warm"]:
                for run_id in ids[taken : taken + burst]:
                    monitor.monitor_run(run_id, service)
                taken += burst
                base = settled_rss()
            result["threads"] = result["threads"][-1:]  # the pool at the base
            done = 0
            for step in steps:
                for run_id in ids[warm + done : warm + step]:
                    monitor.monitor_run(run_id, service)
                done = step
                result["rss"][str(step)] = (settled_rss() - base) / step
        if not p.get("tracemalloc", True):
            return result
        with tr.Executor(1) as executor:
            monitor = tr.Monitor(executor, _policy(tr), config)

            def traced() -> int:  # the least of ten samples: polls in flight hold memory for a moment
                gc.collect()
                least = tracemalloc.get_traced_memory()[0]
                for _ in range(9):
                    pause.wait(0.1)
                    least = min(least, tracemalloc.get_traced_memory()[0])
                return least

            try:
                tracemalloc.start()
                for run_id in ids[:warm]:  # this design starts the monitor here: not charged to the runs
                    monitor.monitor_run(run_id, service)
                pause.wait(p["settle"])
                before = traced()
                done = 0
                for step in steps:
                    for run_id in ids[warm + done : warm + step]:
                        monitor.monitor_run(run_id, service)
                    done = step
                    pause.wait(p["settle"])
                    result["tracemalloc"][str(step)] = (traced() - before) / step
                tracemalloc.stop()
            finally:
                monitor.stop()
    return result


CHILD_CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "detect": case_detect,
    "cpu": case_cpu,
    "memory": case_memory,
}


def child_main(kind: str, params: str, expect_root: str) -> None:
    _quiet_logs()
    import tinker_recovery

    imported = os.path.realpath(tinker_recovery.__file__)
    if not imported.startswith(os.path.realpath(expect_root) + os.sep):
        raise SystemExit(f"imported {imported}, expected a package under {expect_root}")
    result = CHILD_CASES[kind](json.loads(params))
    result["package"] = os.path.dirname(imported)
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: cases, designs, table --------------------------------------------------------------


def plan(quick: bool) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per case number, the child runs it needs: (kind, params)."""
    q = quick
    window = 5.0 if q else 30.0
    grace = 40.0
    memory = {"steps": [1000, 10_000], "settle": 1.5 if q else 3.0, "warm": [10, 200]}
    return {
        "1": [
            (
                "detect",
                {
                    "runs": 5000 if q else 10_000,
                    "watched": 5000 if q else 10_000,
                    "mode": "auto",
                    "delay_ms": REMOTE_MS,
                    "slow_fraction": 0.05,
                    "seconds": window,
                    "settle": 3.0 if q else 10.0,
                    "grace": grace,
                },
            )
        ],
        "2": [
            (
                "detect",
                {
                    "runs": 10_000 if q else 30_000,
                    "watched": 20,
                    "mode": "auto",
                    "delay_ms": REMOTE_MS,
                    "initial": True,
                    "seconds": window,
                    "settle": 1.0,
                    "grace": grace,
                },
            ),
            (
                "detect",
                {
                    "runs": 10_000 if q else 30_000,
                    "watched": 20,
                    "mode": "list",
                    "delay_ms": REMOTE_MS,
                    "seconds": 8.0 if q else 45.0,
                    "settle": 2.0,
                    "grace": grace,
                },
            ),
        ],
        "3": [
            (
                "detect",
                {
                    "runs": 1000,
                    "watched": 1000,
                    "mode": "per_run",
                    "delay_ms": REMOTE_MS,
                    "seconds": window,
                    "settle": 3.0 if q else 6.0,
                    "grace": grace,
                },
            )
        ],
        "4": [
            (
                "cpu",
                {
                    "per_run_runs": 100,
                    "list_runs": 5000 if q else 10_000,
                    "http_requests": 2000 if q else 5000,
                    "seconds": 3.0 if q else 10.0,
                    "settle": 2.0 if q else 4.0,
                },
            )
        ],
        "5": [
            ("memory", dict(memory, pool=MEMORY_POOL)),  # RSS per run, and tracemalloc
            ("memory", dict(memory, tracemalloc=False)),  # RSS with the default pool
        ],
        "6": [
            (
                "detect",
                {
                    "runs": 1000,
                    "watched": 1000,
                    "mode": "auto",
                    "delay_ms": 0.0,
                    "seconds": 4.0 if q else 20.0,
                    "settle": 2.5 if q else 3.0,
                    "grace": grace,
                },
            )
        ],
    }


def run_child(
    design_root: str, kind: str, params: dict[str, Any], seed: int, timeout: float
) -> dict[str, Any]:
    params = dict(params, seed=seed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([design_root, HERE]))
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kind,
        "--params",
        json.dumps(params),
        "--expect-root",
        design_root,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(
        f"{kind} {params} under {design_root} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    )


def _lat(result: dict[str, Any] | None, key: str = "latencies", what: str = "p99") -> str:
    if result is None:
        return "failed"
    values = result.get(key, [])
    missed = result.get("missed" if key == "latencies" else "initial_missed", 0)
    value = percentile(values, 99) if what == "p99" else max(values, default=math.nan)
    text = f"{value:.2f} s (n={len(values)})"
    return text + (f", {missed} missed" if missed else "")


def rows_for(case: str, results: list[dict[str, Any] | None], sizes: dict[str, Any]) -> list[list[str]]:
    """The table rows of one case for one design, as (label, cell, goal)."""
    r = results
    if case == "1":
        n = f"{sizes['1'][0][1]['runs']:,}"
        return [
            [
                f"{n} watched runs, auto (lists), 5% slow look-ups, 44 ms: detection p99",
                _lat(r[0]),
                "<= 2.00 s",
            ]
        ]
    if case == "2":
        n = f"{sizes['2'][0][1]['runs']:,}"
        return [
            [
                f"{n}-run account, 20 watched, auto, 44 ms: first detection after start (max)",
                _lat(r[0], "first", "max"),
                "<= 2.00 s",
            ],
            [f"{n}-run account, 20 watched, auto, 44 ms: detection p99", _lat(r[0]), "<= 2.00 s"],
            [f"{n}-run account, 20 watched, list, 44 ms: detection p99", _lat(r[1]), "<= 2.00 s"],
            [
                f"{n}-run account, 20 watched, list, 44 ms: longest unread (max detection latency)",
                _lat(r[1], what="max"),
                "<= 1 s + a round trip",
            ],
        ]
    if case == "3":
        return [["1,000 runs, per_run, default pool, 44 ms: detection p99", _lat(r[0]), "<= 2.00 s"]]
    if case == "4":
        c = r[0]
        if c is None:
            return [["CPU (case 4)", "failed", ""]]
        http_us = c["http_client_s"] * 1e6
        per_run_us = c["per_run_cpu_s"] * 1e6
        n = f"{sizes['4'][0][1]['list_runs']:,}"
        singles = c["list_single_reads_per_s"]
        extra = f" + {singles:,.0f} single-run reads/s" if singles else ""
        return [
            [
                "per_run poll, CPU per request (fast server)",
                f"{per_run_us:,.0f} µs = {per_run_us / http_us:.1f}x http.client ({http_us:.0f} µs)",
                f"<= 2.5x http.client ({2.5 * http_us:.0f} µs)",
            ],
            [
                f"list mode, CPU per listed run ({n} runs, 100-run pages, fast server)",
                f"{c['list_cpu_per_run_s'] * 1e6:.1f} µs ({c['list_pages_per_s']:.0f} pages/s{extra})",
                "<= 5 µs",
            ],
            [
                "per_run, 100 runs at 1 s: wake-ups of library threads per poll",
                f"{c['wakeups_per_poll']:.2f} ({c['wakeups_per_s']:,.0f}/s, {c['library_threads']} threads)",
                "<= 1.5",
            ],
        ]
    if case == "5":
        held, default = r
        steps = sizes["5"][0][1]["steps"]
        label = "memory per watched run, {}, {:,} runs"
        rows = []
        for index, step in enumerate(steps, 1):
            cells = []
            for name, c in ((f"pool of {MEMORY_POOL}", held), ("default pool", default)):
                if c is None:
                    cells.append(f"{name}: failed")
                    continue
                threads = f"{c['threads'][0]}→{c['threads'][index]} poll threads"
                cells.append(f"{c['rss'][str(step)]:,.0f} B ({name}, {threads})")
            cell = "; ".join(cells)
            rows.append([label.format("RSS, list monitor polling", step), cell, "<= 1,024 B"])
        for step in steps:
            cell = "failed" if held is None else f"{held['tracemalloc'][str(step)]:,.0f} B"
            rows.append([label.format("tracemalloc, bookkeeping", step), cell, "<= 1,024 B"])
        return rows
    if case == "6":
        return [["1,000 runs, auto, fast server: detection p99 (no regression)", _lat(r[0]), "<= 2.00 s"]]
    raise ValueError(case)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", help="checkout of today's design (e.g. git worktree add /tmp/tr-0.1 dc76e6e)"
    )
    parser.add_argument(
        "--current", default=ROOT, help="checkout of the design under test (default: this one)"
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes and windows")
    parser.add_argument("--cases", default="1,2,3,4,5,6")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="also write every raw result (latencies too) here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--expect-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.params, args.expect_root)
        return
    if not args.baseline:
        parser.error("--baseline DIR is required (a checkout of the design to compare with)")
    designs = [("baseline", os.path.abspath(args.baseline)), ("this checkout", os.path.abspath(args.current))]
    for option, (_label, root) in zip(("--baseline", "--current"), designs, strict=True):
        if not os.path.isfile(os.path.join(root, "tinker_recovery", "__init__.py")):
            parser.error(f"{option}: no tinker_recovery package in {root}")

    command = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__), *sys.argv[1:]])
    sizes = plan(args.quick)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in sizes]
    if unknown:
        parser.error(f"--cases: unknown case(s) {unknown}; known: {sorted(sizes)}")
    print(f"machine: {machine()}")
    for label, root in designs:
        described = subprocess.run(
            ["git", "-C", root, "log", "-1", "--format=%h %s"], capture_output=True, text=True
        ).stdout.strip()
        print(f"{label}: {root} ({described or 'not a git checkout'})")
    print(
        f"server: this checkout's FakeTinker in another process; remote = --answer-delay-ms {REMOTE_MS:g}; "
        f"poll_interval_ms={int(INTERVAL_S * 1000)}; {'quick' if args.quick else 'full'} run\n",
        flush=True,
    )
    started = time.monotonic()
    table: list[list[str]] = []
    raw: dict[str, dict[str, list[dict[str, Any] | None]]] = {}
    for case in cases:
        per_design: list[list[list[str]]] = []
        for label, root in designs:
            results: list[dict[str, Any] | None] = []
            for kind, params in sizes[case]:
                t0 = time.monotonic()
                try:
                    results.append(run_child(root, kind, params, args.seed, timeout=600))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"  case {case} {label}: {exc}", file=sys.stderr)
                    results.append(None)
                print(
                    f"  [{time.monotonic() - started:4.0f} s] case {case} ({kind}), {label}: "
                    f"{time.monotonic() - t0:.0f} s",
                    flush=True,
                )
            per_design.append(rows_for(case, results, sizes))
            raw.setdefault(case, {})[label] = results
        for base_row, this_row in zip(*per_design, strict=True):
            table.append([base_row[0], base_row[1], this_row[1], base_row[2]])
    print()
    print_table(["case", "baseline", "this checkout", "goal"], table)
    print(f"\ncommand: {command}\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"command": command, "quick": args.quick, "plan": sizes, "results": raw}, out)


if __name__ == "__main__":
    main()
