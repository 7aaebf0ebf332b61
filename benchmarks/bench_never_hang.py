"""Never hang (issue 11): how long a hostile server, Ctrl-C or a careless script holds a process.

Usage: python benchmarks/bench_never_hang.py [--reps 5] [--baseline /tmp/tr-0.1] [--baseline-reps 1]
                                             [--bound 20]

Four cases, each in a fresh child process (the library under test is the one on the child's
PYTHONPATH: this checkout, then, side by side, the baseline checkout given by ``--baseline``, the
0.1 design, commit dc76e6e), every one bounded by ``--bound`` seconds: a child still running then is
killed and shown as "> N s (hung, killed)".

- drip: a server on 127.0.0.1 (run by this script) sends its headers at once, then the body one byte
  every 0.5 s; the child times ``RestClient(Config(timeout_s=1, retry_max_time_s=2,
  max_retries=0)).get_training_run(id)`` until it returns or raises.
- sigint: a Monitor and an Executor watch a corrupted FakeTinker run (FakeTinker served by this
  script); the service's create call hangs for ever; the main thread is in
  ``handle.wait_for_recovery()``. Timed: from SIGINT to the child's exit.
- return: the same, but ``main`` returns without stopping the Monitor or the Executor. Timed: from
  the create call hanging to the child's exit.
- shutdown: an Executor whose create call hangs; the child times ``executor.shutdown(timeout=1)``
  (then leaves with ``os._exit`` so that an exit that would hang does not count here).

Prints the median and the max of ``--reps`` runs per case and design.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import suppress

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from tinker_recovery.testing import FakeTinker  # noqa: E402

KEY = "tml-" + "b" * 40

HANGING = """
import os, sys, threading, time
import tinker_recovery as tr
print("library", tr.__file__, flush=True)

hang, entered = threading.Event(), threading.Event()

class HangingService:
    def _hang(self, path, **kwargs):
        entered.set()
        hang.wait()  # never set: the create call hangs for ever

    create_training_client_from_state_with_optimizer = _hang
    create_training_client_from_state = _hang

def ready_when_entered():
    entered.wait(60)
    print("ready", flush=True)
"""

CHILDREN = {
    "drip": """
import sys, time
import tinker_recovery as tr
print("library", tr.__file__, flush=True)
base_url, key = sys.argv[1:3]
config = tr.Config(api_key=key, base_url=base_url, timeout_s=1, retry_max_time_s=2, max_retries=0)
rest = tr.RestClient(config)
print("ready", flush=True)
began = time.monotonic()
try:
    rest.get_training_run("run-1")
except Exception as error:
    print(f"error {type(error).__name__}", flush=True)
print(f"elapsed {time.monotonic() - began:.6f}", flush=True)
""",
    "sigint": HANGING
    + """
base_url, key, run_id = sys.argv[1:4]
config = tr.Config(api_key=key, base_url=base_url, timeout_s=5.0, max_retries=0)
ex = tr.Executor(1, config=config).start()
monitor = tr.Monitor(ex, tr.Policy(enabled=True, poll_interval_ms=100), config).start()
handle = monitor.monitor_run(run_id, HangingService())
threading.Thread(target=ready_when_entered, daemon=True).start()
handle.wait_for_recovery()
""",
    "return": HANGING
    + """
base_url, key, run_id = sys.argv[1:4]
config = tr.Config(api_key=key, base_url=base_url, timeout_s=5.0, max_retries=0)
ex = tr.Executor(1, config=config).start()
monitor = tr.Monitor(ex, tr.Policy(enabled=True, poll_interval_ms=100), config).start()
handle = monitor.monitor_run(run_id, HangingService())
ready_when_entered()
# main returns: neither monitor.stop() nor ex.shutdown()
""",
    "shutdown": HANGING
    + """
ex = tr.Executor(1).start()
future = ex.recover("run-1", HangingService(), tr.Policy(enabled=True),
                    last_checkpoint="tinker://run-1/weights/step-000010")
entered.wait(60)
print("ready", flush=True)
began = time.monotonic()
ex.shutdown(timeout=1)
print(f"elapsed {time.monotonic() - began:.6f}", flush=True)
os._exit(0)
""",
}


class DripServer:
    """Headers at once, then a 500-byte body one byte every 0.5 s, to every request."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="bench.drip", daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._drip, args=(conn,), name="bench.drip-conn", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n")
            for _ in range(500):
                if self._stop.wait(0.5):
                    return
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)


def run_child(case: str, library: str, args: list[str], bound_s: float) -> float | None:
    """Seconds the case took (None: still running after ``bound_s``, killed)."""
    env = {**os.environ, "PYTHONPATH": library, "TINKER_TELEMETRY": "0"}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILDREN[case]), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=library,  # sys.path[0] of ``-c`` is the working directory: the library under test, no other
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line.strip())
        lines.put(None)

    reader = threading.Thread(target=read, name="bench.reader", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # "ready": the hang is in place
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"{case}: the child ended before it was ready (exit {child.wait()})")
            if line.startswith("library "):
                loaded = os.path.realpath(line.split(" ", 1)[1])
                if not loaded.startswith(os.path.realpath(library) + os.sep):
                    raise RuntimeError(f"{case}: the child imported {loaded}, not the library under test")
            if line == "ready":
                break
        began = time.monotonic()
        if case == "sigint":
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            return None
        elapsed = time.monotonic() - began
        if case in ("drip", "shutdown"):  # timed inside the child, around the call itself
            reader.join(5)
            told = [line for line in list(lines.queue) if line and line.startswith("elapsed ")]
            if not told:
                raise RuntimeError(f"{case}: the child exited without its time (exit {child.returncode})")
            elapsed = float(told[-1].split()[1])
        return elapsed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        reader.join(5)
        if child.stdout is not None:
            child.stdout.close()


def figure(times: list[float | None], bound_s: float) -> tuple[str, str]:
    done = [t for t in times if t is not None]
    if len(done) < len(times):
        hung = f"> {bound_s:.0f} s (hung, killed)"
        return (hung if not done else f"{statistics.median(done):.3f} s; {len(times) - len(done)} hung"), hung
    return f"{statistics.median(done):.3f} s", f"{max(done):.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--baseline", default="/tmp/tr-0.1", help="a checkout of the 0.1 design ('': none)")
    parser.add_argument("--baseline-reps", type=int, default=1)
    parser.add_argument("--bound", type=float, default=20.0, help="seconds after which a child is killed")
    parser.add_argument("--cases", default="drip,sigint,return,shutdown")
    args = parser.parse_args()
    designs = [("this checkout", _ROOT, args.reps)]
    if args.baseline and os.path.isdir(os.path.join(args.baseline, "tinker_recovery")):
        designs.append((f"baseline {args.baseline}", args.baseline, args.baseline_reps))
    titles = {
        "drip": "drip-fed call returns (timeout_s=1, retry_max_time_s=2)",
        "sigint": "exit after SIGINT, create call hung",
        "return": "exit, main returned without stopping, create call hung",
        "shutdown": "shutdown(timeout=1), create call hung",
    }
    rows = []
    drip = DripServer()
    try:
        with FakeTinker(seed=1, api_key=KEY) as fake:
            for case in args.cases.split(","):
                for design, library, reps in designs:
                    times = []
                    for _ in range(reps):
                        if case == "drip":
                            child_args = [drip.base_url, KEY]
                        else:
                            run_id = fake.add_run(checkpoints=1)
                            fake.corrupt(run_id)
                            child_args = [fake.base_url, KEY, run_id]
                        times.append(run_child(case, library, child_args, args.bound))
                    median, worst = figure(times, args.bound)
                    rows.append((titles[case], design, str(reps), median, worst))
                    print(f"  {case:8s} {design}: {median} (max {worst})", file=sys.stderr, flush=True)
    finally:
        drip.close()
    table = [("case", "design", "runs", "median", "max"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
