"""The keep-alive JSON server for bench_poll_cpu.py: prints its port, serves until killed."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUN = json.dumps(
    {
        "training_run_id": "run-1",
        "base_model": "Qwen/Qwen3-8B",
        "model_owner": "u",
        "is_lora": True,
        "last_request_time": "2025-03-01T12:00:00Z",
        "corrupted": False,
        "last_checkpoint": {
            "checkpoint_id": "weights/step-000010",
            "checkpoint_type": "training",
            "time": "2025-03-01T12:00:00Z",
            "tinker_path": "tinker://run-1/weights/step-000010",
        },
    }
).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(RUN)))
        self.end_headers()
        self.wfile.write(RUN)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
