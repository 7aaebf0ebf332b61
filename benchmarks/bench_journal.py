"""The journal at scale: write cost, file size, and resume time and memory for 100,000 entries.

Usage: python benchmarks/bench_journal.py [--entries 100000] [--runs 100]

A journal of ``--entries`` entries is written through ``Journal.record`` (as the signal receivers
do) with compaction off, so the file really holds them all: ``--runs`` lineages watched, each with
detections, recoveries (started, checkpoint_selected, client_created, completed, watched of the
restored run) and poll errors (every one distinct, so none is left out as a streak), plus
watch/stop cycles of throwaway runs. Then, each in a fresh child process (so one measure's heap
does not hide another's):

- resume: ``resume_plan(iter_journal(path))``: wall time, tracemalloc peak, and the growth of the
  resident set size (ru_maxrss) over the process before it;
- open: ``Journal(path)`` with the default thresholds, which reads the file and compacts it
  (the size after compaction is shown);
- before: the same resume with today's main design (``lineage_heads(read_journal(path))`` of
  the checkout given by ``--before``, default /work/main), when it can read the file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from tinker_recovery import events  # noqa: E402
from tinker_recovery.clock import ManualClock  # noqa: E402
from tinker_recovery.errors import ConnectionFailed  # noqa: E402
from tinker_recovery.journal import Journal  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

MEASURE = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
path, what, trace = sys.argv[2], sys.argv[3], sys.argv[4] == "trace"
import tinker_recovery.journal  # imports are not what is measured
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if trace:
    tracemalloc.start()
start = time.perf_counter()
if what == "resume":
    from tinker_recovery.journal import iter_journal, resume_plan
    result = len(resume_plan(iter_journal(path)))
elif what == "open":
    from tinker_recovery.journal import Journal
    journal = Journal(path)
    result = len(journal.resume_plan())
    journal.close()
else:
    from tinker_recovery.journal import lineage_heads, read_journal
    result = len(lineage_heads(read_journal(path)))
elapsed = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1] if trace else 0
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"seconds": elapsed, "peak": peak, "rss_kib": grown, "lineages": result}))
"""


def write_journal(path: str, entries: int, runs: int) -> tuple[int, float]:
    """Write about ``entries`` entries; return how many and the seconds per entry."""
    clock = ManualClock(wall_start=T0)
    journal = Journal(path, clock=clock, compact_bytes=0, compact_entries=0, poll_error_every_s=0)
    written = 0

    def record(event: str, run_id: str, lineage: str, **extra: object) -> None:
        nonlocal written
        journal.record(
            event,
            events.payload(
                run_id=run_id,
                attempt=extra.pop("attempt", 0),
                strategy="latest",
                metadata={},
                time=T0 + timedelta(seconds=written),
                lineage_id=lineage,
                **extra,
            ),
        )
        written += 1

    heads = {f"run-{i}": f"run-{i}" for i in range(runs)}
    for lineage in heads:
        record("watched", lineage, lineage, reason="monitor_run")
    start = time.perf_counter()
    cycle = 0
    while written < entries:
        cycle += 1
        for lineage, head in list(heads.items()):
            if cycle % 4 == 0:  # a recovery: 6 entries
                recovery_id = f"rec-{lineage}-{cycle}"
                new = f"{lineage}-r{cycle}"
                record("detected", head, lineage)
                record("started", head, lineage, recovery_id=recovery_id, attempt=1)
                record(
                    "checkpoint_selected",
                    head,
                    lineage,
                    recovery_id=recovery_id,
                    attempt=1,
                    checkpoint=f"tinker://{head}/weights/step-{cycle:06d}",
                )
                record("client_created", head, lineage, recovery_id=recovery_id, attempt=1, new_run_id=new)
                record(
                    "completed",
                    head,
                    lineage,
                    recovery_id=recovery_id,
                    attempt=1,
                    new_run_id=new,
                    duration_s=1.5,
                )
                record("watched", new, lineage, reason=f"recovered from {head}")
                heads[lineage] = new
            else:  # a poll error of a different class each time (none throttled), and a watch/stop cycle
                error = ConnectionFailed(f"connection refused by 127.0.0.1 (cycle {cycle})")
                record(
                    "poll_error",
                    head,
                    lineage,
                    error=error,
                    reason="connection refused",
                    reason_class=("connection", "timeout")[cycle % 2],
                )
                record("watched", f"tmp-{lineage}-{cycle}", f"tmp-{lineage}-{cycle}", reason="monitor_run")
                record("unwatched", f"tmp-{lineage}-{cycle}", f"tmp-{lineage}-{cycle}", reason="user")
            if written >= entries:
                break
    per_entry = (time.perf_counter() - start) / max(1, written - runs)
    journal.close()
    return written, per_entry


def measure(path: str, what: str, root: str = _ROOT) -> dict[str, float] | None:
    """Seconds and RSS growth from a plain run; the tracemalloc peak from a second run (tracing
    slows Python's allocations several times, so it is never timed)."""
    result: dict[str, float] = {}
    for trace in ("plain", "trace"):
        copy = f"{path}.{trace}"
        shutil.copyfile(path, copy)  # "open" compacts its file: each run gets the same input
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, root, copy, what, trace],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            print(f"  {what}: failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        got = json.loads(done.stdout)
        if trace == "plain":
            result.update(seconds=got["seconds"], rss_kib=got["rss_kib"], lineages=got["lineages"])
        else:
            result["peak"] = got["peak"]
            result["compacted"] = os.path.getsize(copy)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--before", default="/work/main", help="a checkout of today's design to compare")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-journal-")
    try:
        path = os.path.join(directory, "journal.jsonl")
        written, per_entry = write_journal(path, args.entries, args.runs)
        size = os.path.getsize(path)
        print(
            f"journal: {written:,} entries, {size / 1e6:.1f} MB, {args.runs} live lineages; "
            f"Journal.record: {per_entry * 1e6:.1f} µs per entry"
        )
        rows = [("resume_plan(iter_journal(path))", measure(path, "resume"))]
        if os.path.isdir(os.path.join(args.before, "tinker_recovery")):
            rows.append(
                (
                    f"before: lineage_heads(read_journal(path)) of {args.before}",
                    measure(path, "before", args.before),
                )
            )
        opened = measure(path, "open")
        rows.append(("Journal(path): read + compact", opened))
        print(f"{'what':<62} {'seconds':>8} {'peak MB':>8} {'RSS +MB':>8} {'lineages':>8}")
        for name, result in rows:
            if result is not None:
                print(
                    f"{name:<62} {result['seconds']:>8.2f} {result['peak'] / 1e6:>8.1f} "
                    f"{result['rss_kib'] / 1024:>8.1f} {int(result['lineages']):>8}"
                )
        if opened is not None:
            print(f"after compaction: {opened['compacted'] / 1e3:.1f} kB")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
