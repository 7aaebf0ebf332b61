"""The HTTP/1.1 side of FakeTinker: keep-alive connections on named daemon threads, each request
read fully and answered with one write, faults applied, every API request logged before its answer.

It serves any ``Served`` (FakeTinker); ``Server.close_connections`` lets ``stop()`` end idle
keep-alive connections at once and busy ones after their answer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from ._admin import PREFIX as _ADMIN_PREFIX
from ._api import Response, error_response, request_facts
from ._faults import FaultRule, FaultTable
from ._served import RequestLog, ServedRequest

__all__ = ["Served", "Server"]

logger = logging.getLogger("tinker_recovery.testing.fake_server")

MAX_BODY = 64 * 1024 * 1024
_MALFORMED_BODY = b'{"request_id": "fake-req-'  # cut off mid-string: not valid JSON
_IDLE_TIMEOUT_S = 300.0  # an idle keep-alive connection is closed after this long

Respond = Callable[[str, str, str, Any, bytes], Response]


class Served(Protocol):
    """What the connection threads need of FakeTinker."""

    _fault_table: FaultTable
    _request_log: RequestLog
    _stop_event: threading.Event
    _answer_delay_s: float

    def _respond_api(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response: ...

    def _respond_admin(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response: ...


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection. Reads each request fully, then answers with a single write."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT_S
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 (http.server's handler names)

    def _serve(self) -> None:
        self.server.request_started(self.connection)
        try:
            self._serve_request()
        finally:
            if self.server.request_finished(self.connection):
                self.close_connection = True  # the server is stopping: no further requests here

    def _serve_request(self) -> None:
        fake = self.server.fake
        started = time.monotonic()
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        if path.startswith(_ADMIN_PREFIX):
            self._send(self._guard(fake._respond_admin, path, query, body))
            return
        if fake._answer_delay_s > 0 and fake._stop_event.wait(fake._answer_delay_s):
            self.close_connection = True  # stopping: abandon the request
            return
        rule = fake._fault_table.match(self.command, path)
        if rule is not None and rule.latency_s > 0 and fake._stop_event.wait(rule.latency_s):
            self.close_connection = True  # stopping: abandon the request
            return
        response: Response | None
        if rule is not None and rule.drop:
            response = None
        elif rule is not None and rule.replaces_processing:
            response = _fault_response(rule)
        else:
            response = self._guard(fake._respond_api, path, query, body)
        # Log before answering, so a client that got its answer always finds the entry.
        facts = request_facts(self.command, path, body)
        fake._request_log.append(
            ServedRequest(
                method=self.command,
                path=path,
                status=None if response is None else response.status,
                latency_s=time.monotonic() - started,
                fault=None if rule is None else rule.name,
                run_id=facts.run_id,
                checkpoint=facts.checkpoint,
                optimizer=facts.optimizer,
            )
        )
        if response is None:
            self.close_connection = True
        else:
            self._send(response)

    def _guard(self, respond: Callable[..., Response], path: str, query: str, body: bytes) -> Response:
        try:
            return respond(self.command, path, query, self.headers, body)
        except Exception:
            logger.exception("FakeTinker failed on %s %s", self.command, path)
            return error_response(500, "internal error in FakeTinker")

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(error_response(411, "chunked request bodies are not supported; send Content-Length"))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(error_response(413 if length > MAX_BODY else 400, "bad Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> int:
        status = response.status
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        lines = [f"HTTP/1.1 {status} {reason}"]
        if status != 204:
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if status != 204:
            payload += response.body
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True
        return status


def _fault_response(rule: FaultRule) -> Response:
    headers: tuple[tuple[str, str], ...] = ()
    if rule.retry_after_s is not None:
        seconds = rule.retry_after_s
        headers = (("Retry-After", str(int(-(-seconds // 1)))), ("retry-after-ms", str(int(seconds * 1000))))
    if rule.malformed:
        return Response(rule.status or 200, _MALFORMED_BODY, headers=headers)
    assert rule.status is not None
    return error_response(rule.status, f"injected fault (rule {rule.id})", headers)


class Server(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so stop() can close and join them."""

    daemon_threads = True
    block_on_close = False  # we join our own threads, with a deadline
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: Served) -> None:
        self.fake = fake
        self._connections_changed = threading.Condition()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._busy: set[socket.socket] = set()  # connections in the middle of a request
        self._closing = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS look-up that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="tinker_recovery.fake_server.connection",
            daemon=True,
        )
        with self._connections_changed:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_changed:
                self._connections.pop(request, None)
                self._busy.discard(request)
                self._connections_changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # called from the except clause in _serve_connection, so the exception is current
        logger.debug("FakeTinker connection from %s failed", client_address, exc_info=True)  # noqa: LOG014

    def request_started(self, sock: socket.socket) -> None:
        with self._connections_changed:
            self._busy.add(sock)

    def request_finished(self, sock: socket.socket) -> bool:
        """Mark the connection idle; True when the server is closing (the connection should end)."""
        with self._connections_changed:
            self._busy.discard(sock)
            self._connections_changed.notify_all()
            return self._closing

    def close_connections(self, deadline: float) -> list[threading.Thread]:
        """Close idle connections now and busy ones once their answer is sent (or at ``deadline``).

        Returns every connection thread, for joining. Call after the accept loop has stopped.
        """
        with self._connections_changed:
            self._closing = True
            threads = list(self._connections.values())
            idle = [sock for sock in self._connections if sock not in self._busy]
        _shutdown_sockets(idle)
        with self._connections_changed:
            self._connections_changed.wait_for(lambda: not self._busy, max(0.0, deadline - time.monotonic()))
            remaining = list(self._connections)
        _shutdown_sockets(remaining)
        return threads


def _shutdown_sockets(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):  # already closed by its thread
            sock.shutdown(socket.SHUT_RDWR)
