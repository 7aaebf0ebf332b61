"""Measuring tools of bench_scale.py that need no tinker_recovery: corruption trials timed to the
``detected`` signal, a sampler of the library threads' wake-ups, and a plain ``http.client`` poller
(the CPU floor a poll is compared with).

A thread's wake-ups are its voluntary context switches (``voluntary_ctxt_switches`` in
``/proc/self/task/<tid>/status``): each one is the thread blocking and being woken again. Python
3.11 does not give OS threads their Python names, so the library's threads are found through
``threading.enumerate()`` (name and ``native_id``) and sampled often enough to catch short-lived ones.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from urllib.parse import urlsplit

__all__ = ["Trial", "WakeupSampler", "http_client_cpu_per_request"]


class Trial:
    """Corrupt runs at random moments (Poisson arrivals) and time each to its ``detected`` signal."""

    def __init__(self, corrupt, candidates: list[str], rate: float, rng: random.Random) -> None:
        self._corrupt = corrupt  # corrupt(run_id, corrupted) through the fake's admin API
        self.rng = rng
        self.rate = rate
        self._cond = threading.Condition()
        self._armed = list(candidates)
        self._corrupted_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.touched: set[str] = set()

    def detected(self, run_id: str) -> None:
        now = time.monotonic()
        with self._cond:
            started = self._corrupted_at.pop(run_id, None)
            if started is not None:
                self.latencies.append(now - started)
            self._cond.notify_all()

    def rearm(self, run_id: str, successor: str | None = None) -> None:
        """``run_id``'s recovery completed: it may be corrupted again, or, when the recovery made a
        new run (``successor``), that run takes its place."""
        with self._cond:
            if run_id not in self._corrupted_at and run_id in self.touched:
                if successor is not None and successor != run_id:
                    self.touched.add(successor)
                    run_id = successor
                if run_id not in self._armed:
                    self._armed.append(run_id)
                    self._cond.notify_all()

    def corrupt_now(self, run_ids: list[str]) -> None:
        """Corrupt these runs now (then ``restart_clock`` to time them from a later moment)."""
        now = time.monotonic()
        with self._cond:
            for run_id in run_ids:
                if run_id in self._armed:
                    self._armed.remove(run_id)
                self._corrupted_at[run_id] = now
                self.touched.add(run_id)
        for run_id in run_ids:
            self._corrupt(run_id, True)

    def restart_clock(self, at: float) -> None:
        """Time every outstanding corruption from ``at`` (a ``time.monotonic()`` value)."""
        with self._cond:
            for run_id in self._corrupted_at:
                self._corrupted_at[run_id] = at

    def take_latencies(self) -> list[float]:
        """The latencies measured so far; the list starts again empty."""
        with self._cond:
            taken, self.latencies = self.latencies, []
            return taken

    def wait_rearmed(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` runs can be corrupted again (their recovery completed)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._armed) >= count, timeout)

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
            self._corrupt(run_id, True)
            sent += 1

    def wait_all(self, timeout: float) -> int:
        """Wait for the outstanding detections; return how many never came."""
        with self._cond:
            self._cond.wait_for(lambda: not self._corrupted_at, timeout)
            return len(self._corrupted_at)

    def reset(self) -> None:
        for run_id in self.touched:
            self._corrupt(run_id, False)


def _switches(tid: int) -> int | None:
    try:
        with open(f"/proc/self/task/{tid}/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        return None  # the thread ended
    return None


class WakeupSampler:
    """Counts the voluntary context switches of threads whose name starts with ``prefix``.

    ``start()`` begins a window; ``stop()`` ends it and returns the switches counted in it. A
    thread that appears during the window counts from 0; one that ends during it counts up to its
    last sample (taken every ``every_s``), so a few of its last switches may be missed.
    """

    def __init__(self, prefix: str = "tinker_recovery", every_s: float = 0.05) -> None:
        self._prefix = prefix
        self._every_s = every_s
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench.wakeup-sampler", daemon=True)

    def _sample(self, initial: bool) -> None:
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or not thread.name.startswith(self._prefix):
                continue
            value = _switches(tid)
            if value is None:
                continue
            if tid not in self._first:
                self._first[tid] = value if initial else 0
                self._names[tid] = thread.name
            self._last[tid] = value

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._sample(False)

    def start(self) -> WakeupSampler:
        self._sample(True)
        self._thread.start()
        return self

    def stop(self) -> tuple[int, int]:
        """(switches in the window, library threads seen)."""
        self._stop.set()
        self._thread.join()
        self._sample(False)
        return sum(self._last[t] - self._first[t] for t in self._first), len(self._first)


def http_client_cpu_per_request(base_url: str, api_key: str, run_ids: list[str], count: int) -> float:
    """CPU seconds per ``GET /api/v1/training_runs/{id}`` with bare ``http.client`` on one
    keep-alive connection, body read and parsed with ``json.loads`` (what any poll must do)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"X-API-Key": api_key}
    try:
        for warm in run_ids[:20]:
            connection.request("GET", f"/api/v1/training_runs/{warm}", headers=headers)
            json.loads(connection.getresponse().read())
        started = time.process_time()
        for n in range(count):
            connection.request("GET", f"/api/v1/training_runs/{run_ids[n % len(run_ids)]}", headers=headers)
            response = response_body = connection.getresponse()
            body = json.loads(response_body.read())
            if response.status != 200 or "corrupted" not in body:
                raise RuntimeError(f"unexpected answer {response.status}")
        return (time.process_time() - started) / count
    finally:
        connection.close()
