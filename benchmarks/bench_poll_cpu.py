"""CPU per poll: RestClient.get_training_run against raw http.client, over keep-alive, with the
server in a child process (so only the client's CPU is counted).

Run: ``python benchmarks/bench_poll_cpu.py`` (``N``: requests per round, default 400; ``WT``: the
checkout to import, default this one). Not collected by pytest. Issue 16.4 asks for <= 2.5x.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("WT", os.path.dirname(HERE)))

import tinker_recovery as tr  # noqa: E402 -- after choosing the checkout

N = int(os.environ.get("N", "400"))


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "bench_poll_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        config = tr.Config(api_key="tml-bench-key", base_url=f"http://127.0.0.1:{port}", max_retries=0)
        rest = tr.RestClient(config)

        def raw() -> None:
            conn.request("GET", "/api/v1/training_runs/run-1", headers={"X-API-Key": "tml-bench-key"})
            json.loads(conn.getresponse().read())

        def poll() -> None:
            rest.get_training_run("run-1")

        results: dict[str, list[float]] = {"http.client": [], "RestClient": []}
        for _round in range(2):
            for name, call in (("http.client", raw), ("RestClient", poll)):
                for _ in range(50):
                    call()
                started = time.process_time()
                for _ in range(N):
                    call()
                results[name].append(1e6 * (time.process_time() - started) / N)
        for name, cpu in results.items():
            print(f"{name:12s} CPU per request: {min(cpu):7.1f} us (best of {len(cpu)} rounds of {N})")
        print(f"ratio: {min(results['RestClient']) / min(results['http.client']):.2f}x")
        rest.close()
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
