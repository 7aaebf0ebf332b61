"""One HTTP exchange with a total deadline, a body cap, and errors of this package only.

``exchange()`` is what RestClient and LoopbackService send every request through:

- **Total deadline.** ``requests``' time-out bounds each socket operation, not the request: a server
  that drips its headers or body one byte at a time holds a plain ``requests`` call for ever. Here
  the whole exchange (connect, headers, body) ends by ``timeout_s``: connections made by
  ``new_session``'s adapter read every response through a reader that sets the socket's time-out
  to the time left before each read (headers included); the body is read in small reads with the
  deadline checked between them (this part holds for any session, e.g. one a caller supplies).
- **No redirects, no proxy for loopback.** A 3xx is returned as is (callers raise for it: following
  it would carry ``X-API-Key`` elsewhere). A loopback URL (127.0.0.0/8, ::1, localhost) never goes
  through a proxy, whatever ``HTTP_PROXY``/``ALL_PROXY`` say.
- **Errors.** Every failure is RequestTimeout, ConnectionFailed or ResponseError, built outside any
  ``except`` block, so no ``__context__`` carries the request (and its headers); their text is
  scrubbed of the key.
- ``http.client``'s debug printing (which prints headers) is off on this package's connections.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import attrs
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import ConnectionFailed, RequestTimeout, ResponseError, TinkerRecoveryError
from .redact import scrub

__all__ = ["NO_PROXY", "DeadlineAdapter", "Reply", "exchange", "is_loopback_host"]

log = logging.getLogger("tinker_recovery.http")

READ_SIZE = 64 * 1024
"""Largest single read of a body; the deadline is checked between reads."""
NO_PROXY: dict[str, str | None] = {"http": None, "https": None, "all": None}
"""``proxies=`` for requests that must not use a proxy (None removes what the environment sets)."""


def is_loopback_host(host: str | None) -> bool:
    """True for exactly ``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed); nothing else,
    not even ``localhost.`` or an IPv4-mapped address (look-alikes may resolve elsewhere)."""
    if not host:
        return False
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the deadline, enforced on every read of this package's connections ------------------------


class _Entry:
    """One exchange in flight on this thread: its deadline, on ``time.monotonic()``."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


_current = threading.local()  # the entry of the exchange running on this thread, if any


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with its time-out set, before each read, to the time left before
    ``deadline``: a server that drips bytes cannot hold a readline (headers) or a read (body)
    past it. Past the deadline, a read raises ``TimeoutError`` (``socket.timeout``)."""

    def __init__(self, raw: Any, sock: Any, deadline: float) -> None:
        super().__init__()
        self._raw = raw  # the socket's SocketIO: it holds the reference that keeps the fd open
        self._sock = sock
        self._deadline = deadline
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline has passed")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
        return int(self._raw.readinto(buffer))

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response reading through a ``_DeadlineReader`` when an exchange is running."""

    def __init__(
        self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, 0, method, url)  # debuglevel 0: its debug output prints headers
        entry = getattr(_current, "entry", None)
        if entry is not None and isinstance(self.fp, io.BufferedReader):
            # read through the same SocketIO (detached, not closed: it keeps the fd open; nothing
            # has been buffered yet), under the deadline
            raw = self.fp.detach()
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, entry.deadline), 64 * 1024)


class _Bound:
    """Mixin for urllib3 connections: responses read under the exchange's deadline."""

    debuglevel = 0  # http.client prints headers (the key) when this is > 0; keep it off for us
    response_class: Any = _DeadlineResponse


class _Connection(_Bound, HTTPConnection):
    pass


class _TLSConnection(_Bound, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections read every response under the exchange's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager


def new_session(pool_size: int) -> requests.Session:
    """A session with a DeadlineAdapter of ``pool_size`` connections, not reading the environment
    on each call (``trust_env`` off; callers pass proxies and CA bundle explicitly)."""
    session = requests.Session()
    adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    return session


# --- one exchange ---------------------------------------------------------------------------------


class Headers(Protocol):
    """An answer's headers, looked up by name whatever its case: ``requests``' and urllib3's
    case-insensitive dicts, or ``http.client``'s ``HTTPMessage`` (the first of repeated names)."""

    def get(self, name: str, /) -> str | None: ...


@attrs.frozen
class Reply:
    """An answer: ``status`` code, ``headers`` and the whole ``body``."""

    status: int
    headers: Headers
    body: bytes


def declared_length(headers: Headers) -> int | None:
    """The ``Content-Length`` as an int when it is plain ASCII digits; else None (ignored)."""
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    key: str | None,
    timeout_s: float,
    max_bytes: int,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    send_kwargs: Mapping[str, Any] | None = None,
) -> Reply:
    """Send one request and read its whole answer within ``timeout_s`` seconds in all (> 0).

    ``what`` names the request in error messages (e.g. ``"GET /api/v1/training_runs"``); ``key`` is
    scrubbed from them. A body over ``max_bytes`` (declared or streamed) raises ResponseError.
    Raises RequestTimeout past the deadline, ConnectionFailed when the connection fails or breaks,
    ResponseError for an answer that cannot be read; nothing else.
    """
    entry = _Entry(time.monotonic() + timeout_s)
    outer = getattr(_current, "entry", None)
    _current.entry = entry
    try:
        reply, failure = _send_and_read(
            session, method, url, what, entry, timeout_s, max_bytes, headers, params, json_body,
            send_kwargs or {},
        )
    finally:
        _current.entry = outer
    if failure is not None:
        raise _scrubbed(failure, key)
    assert reply is not None
    return reply


def _scrubbed(error: TinkerRecoveryError, key: str | None) -> TinkerRecoveryError:
    text = str(error)
    clean = scrub(text, key)
    return error if clean == text else type(error)(clean)


def _timed_out(what: str, timeout_s: float, phase: str) -> RequestTimeout:
    return RequestTimeout(f"{what}: no complete answer within {timeout_s:.3g} s ({phase})")


def _send_and_read(
    session: requests.Session,
    method: str,
    url: str,
    what: str,
    entry: _Entry,
    timeout_s: float,
    max_bytes: int,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None,
    json_body: Any,
    send_kwargs: Mapping[str, Any],
) -> tuple[Reply | None, TinkerRecoveryError | None]:
    kwargs = dict(send_kwargs)
    if is_loopback_host(urlsplit(url).hostname):
        kwargs["proxies"] = dict(NO_PROXY)
    response: requests.Response | None = None
    failure: TinkerRecoveryError | None = None
    try:
        response = session.request(
            method,
            url,
            params=params,
            json=json_body,
            headers=dict(headers),
            timeout=timeout_s,
            stream=True,
            allow_redirects=False,  # a redirect would carry X-API-Key to wherever it points
            **kwargs,
        )
    except requests.Timeout:
        failure = _timed_out(what, timeout_s, "no answer")
    except requests.RequestException as error:
        failure = (
            _timed_out(what, timeout_s, "cut at the deadline")
            if entry.deadline <= time.monotonic()
            else ConnectionFailed(f"{what}: {type(error).__name__}")
        )
    except (RecursionError, MemoryError):
        failure = ResponseError(f"{what}: the answer's headers could not be read")
    except Exception as error:
        log.warning("%s: unexpected %s while sending; reported as ConnectionFailed", what,
                    type(error).__name__)
        failure = ConnectionFailed(f"{what}: {type(error).__name__}")
    if failure is not None or response is None:
        return None, failure or ConnectionFailed(f"{what}: no response")
    try:
        body, failure = _read_body(response, what, entry, timeout_s, max_bytes)
    finally:
        response.close()
    if failure is not None:
        return None, failure
    assert body is not None
    return Reply(response.status_code, response.headers, body), None


def _read_body(
    response: requests.Response, what: str, entry: _Entry, timeout_s: float, max_bytes: int
) -> tuple[bytes | None, TinkerRecoveryError | None]:
    return _read_raw(response.raw, response.headers, what, entry, timeout_s, max_bytes)


def _one_read(head: Any, declared: int | None) -> bool:
    """True when ``head`` (``http.client``'s response) can give its body in one read: its length
    declared (``declared``, the first ``Content-Length``) and framed by it alone (not chunked, every
    ``Content-Length`` the same: urllib3 refuses others, and a chunked body read by its length
    left its last chunk on a connection given back to the pool), no content coding to undo (at
    most one ``Content-Encoding``, ``identity``), and read through this package's deadline reader
    (``_DeadlineResponse``). One read costs a sixth of urllib3's chunked ``read1`` loop on a 56 kB
    listing page (issue 16); the deadline still holds, as every read of the socket under it waits
    at most the time left. Any other answer is read through urllib3's ``HTTPResponse``."""
    if declared is None or type(head) is not _DeadlineResponse or head.chunked or head.length != declared:
        return False
    if not isinstance(head.fp, io.BufferedReader) or not isinstance(head.fp.raw, _DeadlineReader):
        return False
    lengths = head.msg.get_all("Content-Length") or ()
    if len({value.strip() for value in lengths}) > 1:
        return False
    codings = head.msg.get_all("Content-Encoding") or ()
    return len(codings) == 0 or (len(codings) == 1 and codings[0].strip().lower() == "identity")


def _read_raw(
    raw: Any, headers: Headers, what: str, entry: _Entry, timeout_s: float, max_bytes: int
) -> tuple[bytes | None, TinkerRecoveryError | None]:
    """The whole body of urllib3's response ``raw`` (content codings undone), within the
    deadline and ``max_bytes``: ``(body, None)`` or ``(None, failure)``."""
    declared = declared_length(headers)
    if declared is not None and declared > max_bytes:
        return None, ResponseError(f"{what}: response of {declared} bytes exceeds {max_bytes}")
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    head = getattr(raw, "_fp", None)  # http.client's response under urllib3's
    if declared is not None and _one_read(head, declared):
        assert head is not None
        return _read_declared(head, declared, what, entry, timeout_s)
    chunks: list[bytes] = []
    size = 0
    failure: TinkerRecoveryError | None = None
    try:
        while True:
            left = entry.deadline - time.monotonic()
            if left <= 0:
                failure = _timed_out(what, timeout_s, f"body after {size} bytes")
                break
            if sock is not None:
                sock.settimeout(left)
            chunk = raw.read1(READ_SIZE, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                failure = ResponseError(f"{what}: response exceeds {max_bytes} bytes")
                break
            chunks.append(chunk)
    except Exception as error:
        failure = _read_failure(error, what, entry, timeout_s, size)
    if failure is not None:
        return None, failure
    return b"".join(chunks), None


def _read_declared(
    head: http.client.HTTPResponse, declared: int, what: str, entry: _Entry, timeout_s: float
) -> tuple[bytes | None, TinkerRecoveryError | None]:
    """The ``declared`` bytes of ``head``'s body in one read (``_one_read`` holds), within the
    deadline; fewer bytes before the connection ends is a ConnectionFailed. The deadline reader
    under ``head`` sets the socket's time-out before each read of it (none when the body came
    with the head): no time-out is set here, a system call a page fewer (issue 16)."""
    if entry.deadline - time.monotonic() <= 0:
        return None, _timed_out(what, timeout_s, "body after 0 bytes")
    try:
        body = head.read(declared)
        if len(body) < declared:
            raise http.client.IncompleteRead(body, declared - len(body))
    except Exception as error:
        return None, _read_failure(error, what, entry, timeout_s, 0)
    return body, None


_TIMED_OUT = (TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout)
_BROKEN = (
    OSError, urllib3.exceptions.HTTPError, http.client.HTTPException, requests.RequestException, ValueError
)


def _read_failure(
    error: Exception, what: str, entry: _Entry, timeout_s: float, size: int
) -> TinkerRecoveryError:
    """What a failed read of a body (after ``size`` bytes) is reported as: a time-out, a broken
    connection (a time-out if the deadline has passed), or, for anything else, a ResponseError
    with a log line."""
    if isinstance(error, _TIMED_OUT):
        return _timed_out(what, timeout_s, f"body after {size} bytes")
    if isinstance(error, _BROKEN):
        if entry.deadline <= time.monotonic():
            return _timed_out(what, timeout_s, f"body cut at the deadline after {size} bytes")
        return ConnectionFailed(f"{what}: connection broke while reading: {type(error).__name__}")
    log.warning("%s: unexpected %s while reading the body", what, type(error).__name__)
    return ResponseError(f"{what}: the body could not be read ({type(error).__name__})")


# --- the poll path: the session's urllib3 pool, without requests' per-call work ----------------------


def _open(
    pool: Any, target: str, headers: Mapping[str, str], timeout_s: float
) -> tuple[Any, http.client.HTTPResponse]:
    """Send GET ``target`` on a connection of urllib3's ``pool``; return ``(connection, head)``:
    ``http.client``'s response with its status line and headers read, its body not.

    The request goes out through urllib3's own ``HTTPConnection.request`` (its header rules, its
    connect and TLS checks on first use); the head is read by ``http.client``'s ``getresponse``,
    below urllib3's, which on each answer copies the headers into a second dict, checks their
    parsing for a log line and wraps the response for content decoding: about two fifths of a
    listing page's HTTP CPU (issue 16). The caller decodes only bodies that need no decoding
    itself and hands the others to urllib3's ``HTTPResponse`` (``_wrapped``). Our targets need no
    percent-encoding: run ids are checked before they reach a path (letters, digits and
    ``_ . : @ + = -``) and a query is written by ``_query``. On a failure the connection is closed
    and its slot given back, as ``urlopen`` does."""
    conn = pool._get_conn()
    try:
        conn.timeout = timeout_s  # connect, and each socket operation (the deadline reader cuts it)
        conn.request("GET", target, headers=headers, preload_content=False, decode_content=False)
        head = http.client.HTTPConnection.getresponse(conn)
    except BaseException:
        _discard(pool, conn)
        raise
    return conn, head


def _discard(pool: Any, conn: Any) -> None:
    """Close ``conn``, which cannot be reused, and give its slot in urllib3's ``pool`` back."""
    conn.close()
    pool._put_conn(None)


def _wrapped(pool: Any, conn: Any, head: http.client.HTTPResponse) -> urllib3.HTTPResponse:
    """``head`` as urllib3 would have answered it (an ``HTTPResponse`` that undoes content
    codings and gives ``conn`` back to ``pool`` on ``release_conn``), for a body ``_read_raw``
    cannot take in one read."""
    return urllib3.HTTPResponse(
        body=head,
        headers=urllib3.HTTPHeaderDict(head.msg.items()),
        status=head.status,
        version=head.version,
        reason=head.reason,
        preload_content=False,
        decode_content=False,
        original_response=head,
        pool=pool,
        connection=conn,
        request_method="GET",
    )


def _query(params: Mapping[str, Any]) -> str:
    """``urlencode(params)``, written out directly when every name is a plain word and every value
    an int (a listing page's ``limit`` and ``offset``: nothing to percent-encode), as ``urlencode``
    cost a twentieth of a page's HTTP exchange (issue 16)."""
    if all(type(value) is int and name.isidentifier() and name.isascii() for name, value in params.items()):
        return "&".join(f"{name}={value}" for name, value in params.items())
    return urlencode(params)


_SESSION_SEND = requests.Session.send
_ADAPTER_SEND = HTTPAdapter.send


class DirectGet:
    """GETs to one base URL through the urllib3 pool of ``session``'s adapter, skipping what
    ``requests`` does on every call (merging settings, hooks, cookies, preparing the request): about
    a third of a poll's CPU. Same deadline, cap, redirect and error rules as ``exchange``.

    Built only for a session this package made (a ``DeadlineAdapter``) and a URL no proxy applies
    to; ``None`` from ``for_session`` otherwise, and callers use ``exchange``. ``usable()`` is False
    while something has replaced ``requests``' send methods (a mocking library such as
    ``responses``, or an instrumentation): then callers go through ``exchange``, so it sees the call.
    """

    def __init__(self, adapter: HTTPAdapter, base_url: str, verify: Any) -> None:
        self._adapter = adapter
        self._base_url = base_url
        # percent-encoded once, as requests would on every call (a space or a non-ASCII letter in
        # the base path); the rest of a target needs none (checked run ids, ``urlencode``d queries)
        self._base_path = requests.utils.requote_uri(urlsplit(base_url).path)
        self._verify = verify
        self._lock = threading.Lock()
        self._pool: Any = None

    @classmethod
    def for_session(
        cls, session: requests.Session, base_url: str, proxies: Mapping[str, Any], verify: Any
    ) -> DirectGet | None:
        adapter = session.get_adapter(base_url)
        if not isinstance(adapter, DeadlineAdapter):
            return None
        if not is_loopback_host(urlsplit(base_url).hostname) and any(proxies.values()):
            return None
        return cls(adapter, base_url, verify)

    @staticmethod
    def usable() -> bool:
        """True unless ``requests.Session.send`` or ``HTTPAdapter.send`` has been replaced."""
        return requests.Session.send is _SESSION_SEND and HTTPAdapter.send is _ADAPTER_SEND

    def _get_pool(self) -> Any:
        with self._lock:
            if self._pool is None or self._pool.pool is None:  # none yet, or closed (evicted)
                request = requests.Request("GET", self._base_url).prepare()
                self._pool = self._adapter.get_connection_with_tls_context(request, self._verify, None, None)
            return self._pool

    def get(
        self,
        path: str,
        *,
        what: str,
        key: str | None,
        timeout_s: float,
        max_bytes: int,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
    ) -> Reply:
        """GET ``base_url + path`` (``params`` as the query); see ``exchange`` for the rules."""
        target = self._base_path + path
        if params:
            target += "?" + _query(params)
        entry = _Entry(time.monotonic() + timeout_s)
        outer = getattr(_current, "entry", None)
        _current.entry = entry
        try:
            reply, failure = self._get(target, what, entry, timeout_s, max_bytes, headers)
        finally:
            _current.entry = outer
        if failure is not None:
            raise _scrubbed(failure, key)
        assert reply is not None
        return reply

    def _get(
        self,
        target: str,
        what: str,
        entry: _Entry,
        timeout_s: float,
        max_bytes: int,
        headers: Mapping[str, str],
    ) -> tuple[Reply | None, TinkerRecoveryError | None]:
        failure: TinkerRecoveryError | None = None
        pool = self._get_pool()
        try:
            conn, head = _open(pool, target, headers, timeout_s)
        except urllib3.exceptions.NewConnectionError as error:  # refused: urllib3 2 makes it a TimeoutError
            failure = ConnectionFailed(f"{what}: {type(error).__name__}")
        except (urllib3.exceptions.TimeoutError, TimeoutError):  # (the head not in by the deadline)
            failure = _timed_out(what, timeout_s, "no answer")
        except ssl.SSLError as error:  # named as urllib3 names it on the other path
            failure = (
                _timed_out(what, timeout_s, "no answer")
                if "timed out" in str(error)
                else ConnectionFailed(f"{what}: SSLError")
            )
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            failure = (
                _timed_out(what, timeout_s, "cut at the deadline")
                if entry.deadline <= time.monotonic()
                else ConnectionFailed(f"{what}: {type(error).__name__}")
            )
        except (RecursionError, MemoryError):
            failure = ResponseError(f"{what}: the answer's headers could not be read")
        except Exception as error:
            log.warning("%s: unexpected %s while sending; reported as ConnectionFailed", what,
                    type(error).__name__)
            failure = ConnectionFailed(f"{what}: {type(error).__name__}")
        if failure is not None:
            return None, failure
        declared = declared_length(head.msg)
        if declared is not None and declared <= max_bytes and _one_read(head, declared):
            body, failure = _read_declared(head, declared, what, entry, timeout_s)
            if body is not None and head.isclosed():
                pool._put_conn(conn)
            else:  # a half-read answer, or (defensively) one not over: not to be reused
                _discard(pool, conn)
            return (None, failure) if body is None else (Reply(head.status, head.msg, body), None)
        try:
            response = _wrapped(pool, conn, head)
        except Exception as error:  # urllib3's checks of the head (InvalidHeader: unequal lengths)
            _discard(pool, conn)
            return None, ConnectionFailed(f"{what}: {type(error).__name__}")
        complete = False
        try:
            body, failure = _read_raw(response, response.headers, what, entry, timeout_s, max_bytes)
            complete = failure is None
        finally:
            if not complete:
                response.close()  # a half-read answer: the connection cannot be reused
            response.release_conn()
        if failure is not None:
            return None, failure
        assert body is not None
        return Reply(response.status, response.headers, body), None
