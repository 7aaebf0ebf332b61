"""A scripted HTTP server on 127.0.0.1 for hostile-input tests: it answers raw bytes, at any pace.

``ScriptedServer`` accepts connections on a real socket; each request is answered by the script
set with ``answer(raw)`` (the same bytes for every request until changed) or ``drip(head, body,
every_s)`` (headers and/or body sent one byte at a time). It records the raw requests it got.
Threads are named daemons, stopped by ``close()`` (waits on events, never sleeps to synchronise).

``KeptAliveServer`` keeps each connection open and answers every request, on any connection, with the
next of its scripted answers (a client's pool reuses connections, so what one answer leaves unread
shows in the next): it counts the connections it accepted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

__all__ = ["KeptAliveServer", "ScriptedServer", "http_answer", "kept_alive_server", "scripted_server"]


def http_answer(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    reason: str = "OK",
    length: bool = True,
) -> bytes:
    """Raw bytes of an HTTP/1.1 answer that closes the connection."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    fields = {"Content-Type": "application/json", "Connection": "close"}
    if length:
        fields["Content-Length"] = str(len(body))
    fields.update(headers or {})
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


class ScriptedServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._raw = http_answer(404, b'{"detail": "no script"}')
        self._drip: tuple[bytes, bytes, float] | None = None
        self._drip_only: frozenset[str] | None = None
        self._routes: dict[str, bytes] = {}
        self.requests: list[bytes] = []
        self._got = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="test.scripted-server", daemon=True)
        self._accept.start()

    def answer(self, raw: bytes, routes: dict[str, bytes] | None = None) -> None:
        """Answer ``raw`` to every request, or ``routes[path]`` when the request's path is there."""
        with self._lock:
            self._raw, self._drip, self._routes = raw, None, dict(routes or {})
            self.requests.clear()

    def drip(
        self,
        head: bytes,
        body: bytes,
        every_s: float,
        *,
        drip_head: bool = False,
        only: set[str] | None = None,
    ) -> None:
        """Send ``head`` (at once, or a byte every ``every_s`` with ``drip_head``), then ``body``
        one byte every ``every_s`` seconds; with ``only``, to requests for those paths only (the
        others are answered as ``answer`` set)."""
        with self._lock:
            self._drip = (head, body, every_s) if not drip_head else (b"", head + body, every_s)
            self._drip_only = None if only is None else frozenset(only)
            self.requests.clear()

    def wait_requests(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests (for ``path``, when given) have come in."""

        def enough() -> bool:
            return sum(path is None or _path_of(r) == path for r in self.requests) >= count

        with self._got:
            return self._got.wait_for(enough, timeout)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._handle, args=(conn,), name="test.scripted-conn", daemon=True
            )
            thread.start()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _read_request(self, conn: socket.socket) -> bytes:
        data = b""
        conn.settimeout(5)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest

    def _handle(self, conn: socket.socket) -> None:
        try:
            request = self._read_request(conn)
            with self._lock:
                self.requests.append(request)
                self._got.notify_all()
                raw, drip = self._raw, self._drip
                path = _path_of(request)
                raw = self._routes.get(path, raw)
                if self._drip_only is not None and path not in self._drip_only:
                    drip = None
            if drip is None:
                conn.sendall(raw)
                return
            head, body, every_s = drip
            conn.sendall(head)
            for byte in body:
                if self._stop.wait(every_s):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._accept.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)


def _path_of(request: bytes) -> str:
    parts = request.split(b" ", 2)
    return parts[1].decode("latin-1").split("?")[0] if len(parts) > 1 else ""


class KeptAliveServer:
    def __init__(self, answers: list[bytes]) -> None:
        self._answers = list(answers)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="test.kept-alive-server", daemon=True)
        self._accept.start()

    @property
    def left(self) -> int:
        """Scripted answers not sent yet."""
        with self._lock:
            return len(self._answers)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), name="test.kept-alive", daemon=True)
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
                self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        pending = b""
        with suppress(OSError):
            while True:
                while b"\r\n\r\n" not in pending:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                pending = pending.split(b"\r\n\r\n", 1)[1]  # GETs only: no request body
                with self._lock:
                    raw = self._answers.pop(0) if self._answers else http_answer(500, b"no script")
                conn.sendall(raw)

    def close(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accept.join(5)
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for conn in sockets:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes its blocked recv()
            conn.close()
        for thread in threads:
            thread.join(5)


@contextmanager
def kept_alive_server(answers: list[bytes]) -> Iterator[KeptAliveServer]:
    server = KeptAliveServer(answers)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()
