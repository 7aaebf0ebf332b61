"""Benchmark FakeTinker: start-up time, and GET /api/v1/training_runs/{id} requests per second.

Usage: python benchmarks/bench_fake_server.py [--runs 1000] [--threads 4] [--seconds 3]

Client threads each use their own requests.Session (keep-alive) and cycle through the seeded runs.
Throughput is measured with the client threads in the server's process (they share its GIL, so this
is a lower bound) and in a separate client process, as when another process polls the fake. With
two cores the requests client itself is the bottleneck (about 1 ms of CPU per call), so a last run
uses the lighter stdlib http.client (still keep-alive HTTP/1.1) to show the server's own capacity.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import requests

from tinker_recovery.testing import FakeTinker


def _measure_startup(samples: int) -> list[float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        fake = FakeTinker().start()
        timings.append(time.perf_counter() - started)
        fake.stop()
    return timings


def _client(
    base_url: str, api_key: str, run_ids: list[str], offset: int, stop: threading.Event, out: list
) -> None:
    count = errors = 0
    headers = {"X-API-Key": api_key}
    with requests.Session() as session:
        i = offset
        while not stop.is_set():
            url = f"{base_url}/api/v1/training_runs/{run_ids[i % len(run_ids)]}"
            if session.get(url, headers=headers, timeout=5).status_code == 200:
                count += 1
            else:
                errors += 1
            i += 1
    out.append((count, errors))


def _light_client(
    base_url: str, api_key: str, run_ids: list[str], offset: int, stop: threading.Event, out: list
) -> None:
    count = errors = 0
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    i = offset
    try:
        while not stop.is_set():
            connection.request(
                "GET", f"/api/v1/training_runs/{run_ids[i % len(run_ids)]}", headers={"X-API-Key": api_key}
            )
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                count += 1
            else:
                errors += 1
            i += 1
    finally:
        connection.close()
    out.append((count, errors))


def poll(
    base_url: str, api_key: str, run_ids: list[str], threads: int, seconds: float, light: bool = False
) -> dict:
    """Poll from ``threads`` threads for ``seconds``; return counts and the elapsed time."""
    stop = threading.Event()
    results: list[tuple[int, int]] = []
    target = _light_client if light else _client
    workers = [
        threading.Thread(target=target, args=(base_url, api_key, run_ids, n * 97, stop, results))
        for n in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    stop.wait(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {
        "ok": sum(count for count, _errors in results),
        "errors": sum(errors for _count, errors in results),
        "elapsed": elapsed,
    }


def _report(where: str, result: dict, threads: int, runs: int) -> None:
    print(
        f"GET /api/v1/training_runs/{{id}} ({where}): {result['ok'] / result['elapsed']:,.0f} requests/s "
        f"({threads} threads, keep-alive, {runs} runs, {result['elapsed']:.1f} s, {result['errors']} errors)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="seeded training runs (default 1000)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per mode (default 3)")
    parser.add_argument("--client-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--light", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client_only:  # the separate client process: job on stdin, result on stdout
        job = json.load(sys.stdin)
        result = poll(job["base_url"], job["api_key"], job["run_ids"], args.threads, args.seconds, args.light)
        json.dump(result, sys.stdout)
        return

    startup = _measure_startup(20)
    median_ms, max_ms = statistics.median(startup) * 1000, max(startup) * 1000
    print(f"start-up: median {median_ms:.2f} ms, max {max_ms:.2f} ms (20 starts)")

    with FakeTinker() as fake:
        started = time.perf_counter()
        run_ids = [fake.add_run(checkpoints=2) for _ in range(args.runs)]
        print(f"add_run x{args.runs}: {(time.perf_counter() - started) * 1000:.1f} ms")
        _report(
            "in-process clients",
            poll(fake.base_url, fake.api_key, run_ids, args.threads, args.seconds),
            args.threads,
            args.runs,
        )

        job = json.dumps({"base_url": fake.base_url, "api_key": fake.api_key, "run_ids": run_ids})
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
        )
        command = [
            sys.executable,
            __file__,
            "--client-only",
            "--threads",
            str(args.threads),
            "--seconds",
            str(args.seconds),
        ]
        for where, extra in (("client process, requests", []), ("client process, http.client", ["--light"])):
            child = subprocess.run(
                command + extra,
                input=job,
                capture_output=True,
                text=True,
                env=env,
                timeout=args.seconds + 60,
                check=True,
            )
            _report(where, json.loads(child.stdout), args.threads, args.runs)


if __name__ == "__main__":
    main()
