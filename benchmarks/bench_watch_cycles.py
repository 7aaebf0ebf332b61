"""Memory left behind by watch/unwatch cycles (issue 12.8): ``monitor_run`` then ``stop_monitoring``.

Usage: python benchmarks/bench_watch_cycles.py [--cycles 50000] [--baseline /tmp/tr-0.1]

A started Monitor (per-run polls, ``poll_interval_ms=1000``, an Executor behind it) watches a run,
with a fresh object as its ``training_client`` (``metadata["training_client"]``, which both designs
accept), and stops watching it, ``--cycles`` times; a REST stand-in answers every poll at once with a
healthy run (no network). Then every command is let through (``poll_once``) and the garbage collected.
Measured, in a fresh child process per design and measure (the library under test is the one on the
child's PYTHONPATH):

- tracemalloc: bytes allocated and still alive after the cycles, over those before the first;
- RSS: the resident set size (/proc/self/statm) after the cycles, over that before (a second child,
  without tracemalloc, whose own bookkeeping would inflate it);
- clients: the ``training_client`` objects still alive (each counts its own ``__del__``), of ``--cycles``.

The monitor is still running when measured: what a long-lived watcher keeps. Side by side with the
baseline checkout given by ``--baseline`` (the 0.1 design, commit dc76e6e).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import gc, json, os, sys, time, tracemalloc
from datetime import datetime, timezone
import tinker_recovery as tr

cycles, trace = int(sys.argv[1]), sys.argv[2] == "trace"
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

class Rest:  # answers every poll at once: a healthy run
    def get_training_run(self, run_id, **_):
        return tr.TrainingRun(training_run_id=run_id, base_model="m", model_owner="o", is_lora=True,
                              last_request_time=datetime(2026, 1, 1, tzinfo=timezone.utc), corrupted=False)

class Service:
    def create_training_client_from_state_with_optimizer(self, path, **kwargs):
        raise AssertionError("never called")
    create_training_client_from_state = create_training_client_from_state_with_optimizer

freed = 0

class Client:  # counts its own end: a weak reference per client would itself be memory left
    def __del__(self):
        global freed
        freed += 1

executor = tr.Executor(1).start()
policy = tr.Policy(enabled=True, poll_interval_ms=1000)
monitor = tr.Monitor(executor, policy, rest=Rest(), poll_mode="per_run").start()
service = Service()
monitor.monitor_run("warm-up", service)  # the first watch builds what every later one shares
monitor.stop_monitoring("warm-up")
monitor.poll_once()
gc.collect()
if trace:
    tracemalloc.start()
before_rss, before_traced = rss(), tracemalloc.get_traced_memory()[0]
began = time.monotonic()
for n in range(cycles):
    client = Client()
    monitor.monitor_run(f"run-{n}", service, {"training_client": client})
    monitor.stop_monitoring(f"run-{n}")
    del client
elapsed = time.monotonic() - began
monitor.poll_once()  # every command handled
gc.collect()
after_rss, after_traced = rss(), tracemalloc.get_traced_memory()[0]
print(json.dumps({
    "library": tr.__file__,
    "seconds": elapsed,
    "traced": after_traced - before_traced,
    "rss": after_rss - before_rss,
    "rss_after": after_rss,
    "clients": cycles - freed,
}), flush=True)
monitor.stop(timeout=5)
executor.shutdown(timeout=5)
"""


def measure(library: str, cycles: int, trace: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": library, "TINKER_TELEMETRY": "0"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(cycles), "trace" if trace else "plain"],
        capture_output=True,
        text=True,
        env=env,
        cwd=library,  # sys.path[0] of ``-c`` is the working directory: the library under test, no other
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{library}: exit {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    loaded = os.path.realpath(result["library"])
    if not loaded.startswith(os.path.realpath(library) + os.sep):
        raise RuntimeError(f"the child imported {loaded}, not {library}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50_000)
    parser.add_argument("--baseline", default="/tmp/tr-0.1", help="a checkout of the 0.1 design ('': none)")
    args = parser.parse_args()
    designs = [("this checkout", _ROOT)]
    if args.baseline and os.path.isdir(os.path.join(args.baseline, "tinker_recovery")):
        designs.append((f"baseline {args.baseline}", args.baseline))
    mib = 2**20
    table = [("design", "cycles", "seconds", "tracemalloc left", "RSS growth", "RSS after", "clients alive")]
    for design, library in designs:
        traced = measure(library, args.cycles, trace=True)
        plain = measure(library, args.cycles, trace=False)
        table.append(
            (
                design,
                f"{args.cycles:,}",
                f"{plain['seconds']:.2f}",
                f"{traced['traced'] / mib:.2f} MiB",
                f"{plain['rss'] / mib:.1f} MiB",
                f"{plain['rss_after'] / mib:.1f} MiB",
                f"{plain['clients']:,}",
            )
        )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
