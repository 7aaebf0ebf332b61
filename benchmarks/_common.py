"""Shared helpers of the benchmarks: FakeTinker in its own process, percentiles, tables, CPU and RSS.

The fake server always runs in a separate process (``python -m tinker_recovery.testing.fake_server
--port 0``), driven through its ``/_fake/`` admin endpoints, so the client under test and the
server do not share one GIL or one CPU account.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import requests

__all__ = [
    "ServerProcess",
    "InstantService",
    "percentile",
    "print_table",
    "machine",
    "process_cpu_seconds",
    "rss_bytes",
]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """A FakeTinker seeded with ``runs`` runs, serving from a child process until ``stop()``.

    ``answer_delay_ms`` delays every ``/api/v1`` answer like a remote service's round trip (the
    server's ``--answer-delay-ms``); 0 answers at once. The server is always this checkout's."""

    def __init__(
        self, runs: int, *, seed: int = 0, checkpoints: int = 1, answer_delay_ms: float = 0.0
    ) -> None:
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path)
        command = [sys.executable, "-m", "tinker_recovery.testing.fake_server", "--port", "0",
                   "--runs", str(runs), "--seed", str(seed), "--checkpoints", str(checkpoints)]
        if answer_delay_ms:
            command += ["--answer-delay-ms", f"{answer_delay_ms:g}"]
        self._child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        settings: dict[str, str] = {}
        assert self._child.stdout is not None
        while "TINKER_API_KEY" not in settings:
            line = self._child.stdout.readline()
            if not line:
                raise RuntimeError("the fake server exited before printing its URL")
            name, sep, value = line.strip().partition("=")
            if sep:
                settings[name] = value
        # drain the rest ("seeded run ..." lines), so a large seeding never blocks the server on a full pipe
        threading.Thread(target=self._child.stdout.read, name="bench.server-stdout", daemon=True).start()
        self.base_url = settings["TINKER_BASE_URL"]
        self.api_key = settings["TINKER_API_KEY"]
        self._local = threading.local()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.terminate()
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait(10)

    @property
    def pid(self) -> int:
        return self._child.pid

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        response = self._session().request(method, self.base_url + path, json=body, params=params,
                                           headers={"X-API-Key": self.api_key}, timeout=30)
        response.raise_for_status()
        return response.json()

    def corrupt(self, run_id: str, corrupted: bool = True) -> None:
        self._call("POST", f"/_fake/runs/{run_id}/corrupt", {"corrupted": corrupted})

    def add_run(self, **fields: Any) -> str:
        """A new run on the account (``POST /_fake/runs``; FakeTinker's defaults: one checkpoint)."""
        return str(self._call("POST", "/_fake/runs", fields)["run_id"])

    def add_fault(self, **rule: Any) -> int:
        return self._call("POST", "/_fake/faults", rule)["id"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_fake/faults")

    def load_weights_count(self, run_id: str) -> int:
        return self._call("GET", f"/_fake/runs/{run_id}/load_weights_count")["count"]

    def request_index(self) -> int:
        """The index the next logged request will get."""
        return self._call("GET", "/_fake/requests", params={"since": 1 << 62})["next"]

    def requests_since(self, index: int) -> list[dict]:
        return self._call("GET", "/_fake/requests", params={"since": index})["requests"]

    def run_ids(self) -> list[str]:
        ids: list[str] = []
        while True:
            page = self._call("GET", "/api/v1/training_runs", params={"limit": 1000, "offset": len(ids)})
            ids += [run["training_run_id"] for run in page["training_runs"]]
            if not page["training_runs"] or len(ids) >= page["cursor"]["total_count"]:
                return ids

    def slow_down(self, run_ids: Iterable[str], latency_s: float) -> None:
        """Make ``GET /training_runs/{id}`` of these runs answer after ``latency_s`` (one rule)."""
        alternatives = "|".join(re.escape(run_id) for run_id in run_ids)
        if alternatives:
            pattern = rf"^/api/v1/training_runs/({alternatives})$"
            self.add_fault(method="GET", path=pattern, latency_s=latency_s)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


class _Client:
    def __init__(self, model_id: str | None) -> None:
        self.model_id = model_id


class InstantService:
    """A service whose restore "recovers a run into itself": it marks the run healthy on the
    server, optionally waits ``delay_s``, and returns a client with the same ``model_id``, so the
    monitor goes on watching the same run id. For detection benchmarks: no load_weights traffic.

    ``new_runs=True``: the restore creates a fresh run on the server instead (``POST /_fake/runs``,
    one checkpoint, healthy) and returns its id, as a real restore does; ``successor(run_id)`` gives
    the run that replaced ``run_id``. Needed since 0.2.0's Executor recovers a run id at most once
    (a second ``recover`` of it returns the first recovery), so a run "recovered into itself" and
    corrupted again would never be restored again."""

    def __init__(self, server: ServerProcess, delay_s: float = 0.0, *, new_runs: bool = False) -> None:
        self._server = server
        self._delay_s = delay_s
        self._new_runs = new_runs
        self._successors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pause = threading.Event()

    def _restore(self, path: str) -> _Client:
        run_id = path[len("tinker://"):].split("/", 1)[0]
        self._server.corrupt(run_id, False)
        new_run_id = run_id
        if self._new_runs:
            new_run_id = self._server.add_run()
            with self._lock:
                self._successors[run_id] = new_run_id
        if self._delay_s:
            self._pause.wait(self._delay_s)
        return _Client(new_run_id)

    def successor(self, run_id: str) -> str:
        """The run a restore of ``run_id`` created (``run_id`` itself without ``new_runs``)."""
        with self._lock:
            return self._successors.get(run_id, run_id)

    create_training_client_from_state = create_training_client_from_state_with_optimizer = _restore


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A GitHub-flavoured Markdown table, so the output pastes into the README as is."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def machine() -> str:
    """One line describing this machine and interpreter."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, requests {requests.__version__}")


def process_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from /proc."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes() -> int:
    """This process's resident set size now, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
