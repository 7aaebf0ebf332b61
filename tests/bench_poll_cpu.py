"""CPU per poll: RestClient.get_training_run against raw http.client, over keep-alive to a server
in a child process. Run: PYTHONPATH=. python tests/bench_poll_cpu.py (N=requests, WT=checkout)."""
import http.client, json, subprocess, sys, time, os
sys.path.insert(0, os.environ.get("WT", os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import tinker_recovery as tr
proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "bench_poll_server.py")], stdout=subprocess.PIPE, text=True)
port = int(proc.stdout.readline())
N = int(os.environ.get("N", "1500"))
try:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    def raw():
        conn.request("GET", "/api/v1/training_runs/run-1", headers={"X-API-Key": "tml-bench-key"})
        r = conn.getresponse(); json.loads(r.read())
    def rest_call(rest=tr.RestClient(tr.Config(api_key="tml-bench-key", base_url=f"http://127.0.0.1:{port}", max_retries=0))):
        rest.get_training_run("run-1")


    for name, f in (("http.client", raw), ("RestClient", rest_call), ("http.client", raw), ("RestClient", rest_call)):
        for _ in range(100): f()
        c0 = time.process_time(); w0 = time.perf_counter()
        for _ in range(N): f()
        c1 = time.process_time(); w1 = time.perf_counter()
        print(f"{name:12s} cpu/req {1e6*(c1-c0)/N:7.1f} us  wall/req {1e6*(w1-w0)/N:7.1f} us")
finally:
    proc.kill()
