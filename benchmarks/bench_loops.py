"""Time from a corruption to the training loop's next successful step, for each kind of loop (issue 14).

Usage: python benchmarks/bench_loops.py [--runs 5] [--kinds blocking,asyncio,asyncio-poll,rl,cookbook-hung,
                                         cookbook-crash,cookbook-expired]

Each kind is run ``--runs`` times as a reader would run it, each against a FakeTinker on loopback, corrupted
once mid-run; the median and the range are printed with the poll interval used:

- ``blocking``: ``python examples/training_loop.py`` (the loop's ``handle.check()`` detects at once).
- ``asyncio``: ``python examples/asyncio_loop.py --poll-interval-ms 1000`` (``await asyncio.to_thread(
  handle.check)``, then ``await handle.wait_for_recovery_async(...)``).
- ``asyncio-poll``: the same with ``--no-check``: detection is left to the Monitor's poll.
- ``rl``: ``python examples/rl_sampling_loop.py`` (samples from the restored checkpoint's sampler weights).
- ``cookbook-*``: ``tinker-recovery run --log-path D ... -- python examples/cookbook_style_sl.py log_path=D``
  against a FakeTinker in its own process (``python -m tinker_recovery.testing.fake_server``): ``hung``
  holds after batch 5 (found by the supervisor's poll, 0.2 s), ``crash`` crashes on the refused call (found
  by the look after its exit; poll 30 s), ``expired`` holds after batch 6 with the newest record an expired
  rolling save
  (the fake's clock moved 2 h through its admin API). The time runs to the first batch the relaunched
  program finishes (its ``metrics.jsonl``), so it includes stopping the program, preparing the resume
  point and the new program's start-up (Python, ``import tinker``, the restore).

The examples print their own figure (``corruption -> next successful step: X s (poll interval N ms)``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ServerProcess, machine, print_table

ROOT = Path(__file__).resolve().parent.parent
TIMING = re.compile(r"corruption -> next successful step: ([0-9.]+) s \(poll interval (\d+) ms\)")
EXAMPLES = {
    "blocking": (["examples/training_loop.py"], "100 ms (check() detects at once)"),
    "asyncio": (
        ["examples/asyncio_loop.py", "--poll-interval-ms", "1000"],
        "1000 ms (check() detects at once)",
    ),
    "asyncio-poll": (
        ["examples/asyncio_loop.py", "--no-check", "--poll-interval-ms", "1000"],
        "1000 ms (poll only)",
    ),
    "rl": (["examples/rl_sampling_loop.py"], "1000 ms (check() detects at once)"),
}
COOKBOOK = {  # program arguments, supervisor options, the line to corrupt after, poll interval shown
    "cookbook-hung": (
        ["n_batches=10", "save_every=2", "hold_after=5"],
        ["--poll-interval", "0.2", "--answer", "resume"],
        r"^holding after batch 5$",
        "0.2 s",
    ),
    "cookbook-crash": (
        ["n_batches=14", "save_every=2"],
        ["--poll-interval", "30", "--relaunch-arg", "behavior_if_exists=resume"],
        r"^batch 5 loss",
        "30 s (not reached: found at the exit)",
    ),
    "cookbook-expired": (
        ["n_batches=10", "save_every=4", "rolling_save_every=3", "hold_after=6"],
        ["--poll-interval", "0.2", "--answer", "resume"],
        r"^holding after batch 6$",
        "0.2 s",
    ),
}


def env() -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TINKER_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**clean, "TINKER_TELEMETRY": "0", "PYTHONWARNINGS": "ignore::FutureWarning"}


def run_example(args: list[str]) -> float:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300, check=False
    )
    found = TIMING.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"{args[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return float(found.group(1))


class Lines:
    """The output lines of a child, read by two threads into one queue."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            self.seen.append(line)
            if (found := re.search(pattern, line)) is not None:
                return found


def run_cookbook(kind: str) -> float:
    program, options, corrupt_after, _ = COOKBOOK[kind]
    with ServerProcess(0) as server, tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "sl"
        argv = [
            sys.executable,
            "-m",
            "tinker_recovery",
            "run",
            "--log-path",
            str(log_dir),
            *options,
            "--grace",
            "5",
            "--backoff",
            "0",
            "--",
            sys.executable,
            str(ROOT / "examples/cookbook_style_sl.py"),
            f"log_path={log_dir}",
            *program,
        ]
        child_env = {**env(), "TINKER_BASE_URL": server.base_url, "TINKER_API_KEY": server.api_key}
        proc = subprocess.Popen(
            argv, cwd=tmp, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        lines = Lines(proc)
        try:
            run_id = lines.wait_for(r"^training run (\S+)$").group(1)
            lines.wait_for(corrupt_after)
            if kind == "cookbook-expired":
                server._call("POST", "/_fake/clock/advance", {"seconds": 7201})  # the rolling save's 2 h TTL
            corrupted_at = time.monotonic()
            server.corrupt(run_id)
            code = proc.wait(300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if code != 0:
            raise RuntimeError(f"{kind}: exit {code}\n" + "\n".join(lines.seen[-40:]))
        rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
        relaunched = [row for row in rows if row["launch"] == 1]
        # the resume point: 000004 (the hung loop's last record; past the expired rolling 000006)
        expected = {"cookbook-hung": 4, "cookbook-expired": 4}.get(kind)
        if expected is not None and relaunched[0]["batch"] != expected:
            raise RuntimeError(f"{kind}: resumed at batch {relaunched[0]['batch']}, expected {expected}")
        return float(relaunched[0]["t"]) - corrupted_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kinds", default=",".join([*EXAMPLES, *COOKBOOK]))
    args = parser.parse_args()
    print(machine())
    rows = []
    for kind in args.kinds.split(","):
        seconds = []
        for _ in range(args.runs):
            seconds.append(run_example(EXAMPLES[kind][0]) if kind in EXAMPLES else run_cookbook(kind))
            print(f"  {kind}: {seconds[-1]:.3f} s", flush=True)
        poll = EXAMPLES[kind][1] if kind in EXAMPLES else COOKBOOK[kind][3]
        rows.append(
            (
                kind,
                poll,
                f"{statistics.median(seconds):.2f} s",
                f"{min(seconds):.2f}-{max(seconds):.2f} s",
                str(len(seconds)),
            )
        )
    print_table(["loop", "poll interval", "median", "range", "runs"], rows)


if __name__ == "__main__":
    main()
