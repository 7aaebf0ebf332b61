"""Every HTTP request has a total deadline, whatever the server's pace (issue 11.1).

Against a real server on 127.0.0.1 that drips its headers or body one byte every 0.5 s. The bounds
asserted are generous (the fault was minutes); the measured times are in the report.
"""

from __future__ import annotations

import time

import pytest
from hostile_server import http_answer, kept_alive_server, scripted_server

import tinker_recovery as tr
from tinker_recovery.testing import LoopbackService

KEY = "tml-DEADLINE-sentinel-0123456789"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY = b" " * 500


def config(server, **settings) -> tr.Config:
    return tr.Config(api_key=KEY, base_url=server.base_url, **settings)


def timed(call) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(tr.TinkerRecoveryError) as info:
        call()
    return info.value, time.monotonic() - started


@pytest.mark.parametrize("drip_head", [False, True], ids=["body", "headers"])
def test_a_drip_fed_answer_ends_at_the_request_deadline(drip_head):
    with scripted_server() as server:
        server.drip(HEAD, BODY, 0.5, drip_head=drip_head)
        with tr.RestClient(config(server, timeout_s=1, retry_max_time_s=2, max_retries=0)) as rest:
            error, elapsed = timed(lambda: rest.get_training_run("run-1"))
    assert isinstance(error, tr.RequestTimeout)
    assert error.__context__ is None and error.__cause__ is None
    assert 0.9 <= elapsed < 2.5, elapsed


def test_a_drip_fed_chunked_body_ends_at_the_deadline():
    with scripted_server() as server:
        server.drip(CHUNKED, b"1f4\r\n" + BODY + b"\r\n0\r\n\r\n", 0.5)
        with tr.RestClient(config(server, timeout_s=1, retry_max_time_s=2, max_retries=0)) as rest:
            error, elapsed = timed(lambda: rest.get_training_run("run-1"))
    assert isinstance(error, tr.RequestTimeout)
    assert elapsed < 2.5, elapsed


def test_one_request_is_capped_to_the_time_left_of_retry_max_time():
    # timeout_s=2 but only 1 s of budget: the request ends after about 1 s, not 2
    with scripted_server() as server:
        server.drip(HEAD, BODY, 0.5)
        with tr.RestClient(config(server, timeout_s=2, retry_max_time_s=1, max_retries=0)) as rest:
            error, elapsed = timed(lambda: rest.get_training_run("run-1"))
    assert isinstance(error, tr.RequestTimeout)
    assert 0.9 <= elapsed < 1.8, elapsed


def test_a_call_with_its_retries_is_bounded_by_retry_max_time():
    with scripted_server() as server:
        server.drip(HEAD, BODY, 0.5)
        with tr.RestClient(config(server, timeout_s=1, retry_max_time_s=2.5, max_retries=10)) as rest:
            error, elapsed = timed(lambda: rest.get_training_run("run-1"))
        attempts = len(server.requests)
    assert isinstance(error, tr.RequestTimeout)
    assert attempts >= 2  # it did retry, within the budget
    assert elapsed < 3.5, elapsed


def test_a_fast_answer_after_a_drip_reuses_nothing_broken():
    run = (
        b'{"training_run_id": "run-1", "base_model": "m", "model_owner": "o", "is_lora": false,'
        b' "last_request_time": "2025-03-01T12:00:00"}'
    )
    with (
        scripted_server() as server,
        tr.RestClient(config(server, timeout_s=1, retry_max_time_s=2, max_retries=0)) as rest,
    ):
        server.drip(HEAD, BODY, 0.5)
        with pytest.raises(tr.RequestTimeout):
            rest.get_training_run("run-1")
        server.answer(http_answer(200, run))
        assert rest.get_training_run("run-1").training_run_id == "run-1"


@pytest.mark.parametrize("drip_head", [False, True], ids=["body", "headers"])
def test_loopback_service_calls_have_a_total_deadline(drip_head):
    with scripted_server() as server:
        server.drip(HEAD, BODY, 0.5, drip_head=drip_head)
        with LoopbackService(server.base_url, KEY, timeout_s=1.0) as service:
            error, elapsed = timed(service.create_session)
    assert isinstance(error, tr.RequestTimeout)
    assert error.__context__ is None
    assert elapsed < 2.5, elapsed


def test_the_direct_poll_path_sends_what_requests_would():
    run = (
        b'{"training_run_id": "run-1", "base_model": "m", "model_owner": "o", "is_lora": false,'
        b' "last_request_time": "2025-03-01T12:00:00Z"}'
    )
    page = b'{"training_runs": [], "cursor": {"offset": 5, "limit": 2, "total_count": 5}}'
    with scripted_server() as server, tr.RestClient(config(server, max_retries=0)) as rest:
        assert rest._direct is not None and rest._direct.usable()  # the poll path in use here
        server.answer(http_answer(200, run))
        for _ in range(3):  # one kept-alive connection or new ones: both work
            assert rest.get_training_run("run-1").training_run_id == "run-1"
        server.answer(http_answer(200, page))
        rest.list_training_runs_brief(limit=2, offset=5)
        request = server.requests[-1].decode("latin-1")
    first_line, _, rest_of_head = request.partition("\r\n")
    assert first_line == "GET /api/v1/training_runs?limit=2&offset=5 HTTP/1.1"
    head = rest_of_head.lower()
    assert f"x-api-key: {KEY}".lower() in head and "user-agent: tinker-recovery/" in head
    assert "accept: application/json" in head


def test_a_redirect_on_the_direct_path_is_not_followed():
    with scripted_server() as elsewhere, scripted_server() as server:
        server.answer(
            http_answer(307, b"{}", {"Location": f"{elsewhere.base_url}/api/v1/training_runs/run-1"})
        )
        with tr.RestClient(config(server, max_retries=0)) as rest, pytest.raises(tr.ApiError) as info:
            rest.get_training_run("run-1")
        assert info.value.status_code == 307 and elsewhere.requests == []


def test_loopback_future_polling_ends_by_its_time_out():
    with scripted_server() as server:
        routes = {
            "/api/v1/create_session": http_answer(200, b'{"session_id": "s-1"}'),
            "/api/v1/load_weights": http_answer(200, b'{"request_id": "q-1"}'),
        }
        server.answer(http_answer(200, b'{"type": "try_again"}'), routes)
        with LoopbackService(server.base_url, KEY, timeout_s=1.0) as service:
            error, elapsed = timed(lambda: service.create_training_client_from_state("tinker://r/weights/x"))
    assert isinstance(error, tr.RequestTimeout) and "load_weights did not finish" in str(error)
    assert elapsed < 3.0, elapsed  # within 2 x timeout_s


def test_a_refused_connection_is_connection_failed_on_both_paths():
    """urllib3 2 makes ``NewConnectionError`` (connection refused) a subclass of its TimeoutError: the
    poll path reported a refused connection as ``RequestTimeout`` "no complete answer within 2 s" at
    once, so a run whose server is down was counted as a hanging one."""
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()  # nothing listens there now
    with tr.RestClient(tr.Config(api_key=KEY, base_url=url, timeout_s=2, max_retries=0)) as rest:
        assert rest._direct is not None
        direct, elapsed = timed(lambda: rest.get_training_run("run-1"))
        rest._direct = None
        through_requests, _ = timed(lambda: rest.get_training_run("run-1"))
    for error in (direct, through_requests):
        assert type(error) is tr.ConnectionFailed, repr(error)
        assert "within" not in str(error) and error.__context__ is None
    assert elapsed < 1.0


@pytest.mark.parametrize("path", ["direct", "requests"])
@pytest.mark.parametrize("sent", [0, 1, 250, 499])
def test_a_body_cut_short_of_its_declared_length_is_connection_failed(path, sent):
    """The poll path reads a body of declared length in one read (issue 16): a server that closes
    before the length is reached is a broken connection, on either path, not an answer."""
    head = HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with scripted_server() as server, tr.RestClient(config(server, timeout_s=2, max_retries=0)) as rest:
        if path == "requests":
            rest._direct = None
        else:
            assert rest._direct is not None and rest._direct.usable()
        server.answer(head + b'{"training_run_id": "run-1", "corrupted": false}'.ljust(500))
        assert rest.get_training_run_brief("run-1").training_run_id == "run-1"  # all 500 bytes: read
        server.answer(head + BODY[:sent])
        error, elapsed = timed(lambda: rest.get_training_run("run-1"))
    assert isinstance(error, tr.ConnectionFailed), error
    assert error.__context__ is None and error.__cause__ is None
    assert elapsed < 1.5, elapsed


def test_the_poll_path_reads_pages_and_runs_over_one_kept_alive_connection():
    """A page read in one read of its declared length leaves the connection reusable (issue 16)."""
    from tinker_recovery.testing import FakeTinker

    fake = FakeTinker().start()
    try:
        for _ in range(250):
            fake.add_run()
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
        with tr.RestClient(config) as rest:
            assert rest._direct is not None
            pool = rest._direct._get_pool()
            seen, ports = [], set()
            for offset in (0, 100, 200, 0):
                run_ids, _, _, _ = rest.list_training_runs_health(limit=100, offset=offset)
                seen.append(len(run_ids))
                assert rest.get_training_run_brief(run_ids[0]).training_run_id == run_ids[0]
                connection = pool.pool.queue[-1]
                ports.add(connection.sock.getsockname()[1])  # this end of the TCP connection
            assert seen == [100, 100, 50, 100]
            assert len(ports) == 1
    finally:
        fake.stop()


# --- framing the poll path leaves to http.client or urllib3 (a review of the one-read path) --------

RUN = b'{"training_run_id": "run-1", "corrupted": false}'


def kept(head: str, body: bytes = RUN) -> bytes:
    """An answer that keeps the connection open: ``head``'s header lines, then ``body`` as is."""
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}\r\n\r\n".encode() + body


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def on_path(rest: tr.RestClient, path: str) -> None:
    if path == "requests":
        rest._direct = None
    else:
        assert rest._direct is not None and rest._direct.usable()


@pytest.mark.parametrize("path", ["direct", "requests"])
@pytest.mark.parametrize(
    "lengths",
    ["Content-Length: 48, 49", "Content-Length: 48\r\nContent-Length: 49", "Content-Length: 49, 48"],
    ids=["one-header", "two-headers", "first-longer"],
)
def test_unequal_content_lengths_are_connection_failed_and_retried_like_a_broken_answer(path, lengths):
    # urllib3 refuses them (InvalidHeader): it must reach the caller as this package's error (so a
    # call retries it), and the connection must not be lost to the pool
    good = kept(f"Content-Length: {len(RUN)}")
    with (
        kept_alive_server([kept(lengths), kept(lengths), good, kept(lengths), good]) as server,
        tr.RestClient(config(server, timeout_s=2, max_retries=2, retry_max_time_s=10)) as rest,
    ):
        on_path(rest, path)
        assert rest.get_training_run_brief("run-1").training_run_id == "run-1"  # the third answer
        with pytest.raises(tr.ConnectionFailed) as refused:
            rest.get_training_run_brief("run-1", max_retries=0)
        assert rest.get_training_run_brief("run-1", max_retries=0).training_run_id == "run-1"
        assert server.left == 0
    assert KEY not in str(refused.value) and refused.value.__context__ is None


@pytest.mark.parametrize("path", ["direct", "requests"])
@pytest.mark.parametrize("declared", [len(RUN), 10, len(RUN) + 10])
def test_a_chunked_answer_with_a_content_length_is_read_by_its_chunks_and_its_connection_reused(
    path, declared
):
    # RFC 9112: Transfer-Encoding wins over Content-Length; the one-read path must not read the
    # declared length of a chunked body (it left the last chunk unread on a connection it reused)
    answers = [
        kept(f"Transfer-Encoding: chunked\r\nContent-Length: {declared}", chunked(RUN)),
        kept(f"Content-Length: {len(RUN)}"),
        kept(f"Content-Length: {len(RUN)}"),
    ]
    with (
        kept_alive_server(answers) as server,
        tr.RestClient(config(server, timeout_s=2, max_retries=0)) as rest,
    ):
        on_path(rest, path)
        for _ in answers:
            assert rest.get_training_run_brief("run-1").training_run_id == "run-1"
        if path == "direct":  # (requests closes a chunked answer's connection once read)
            assert server.connections == 1


@pytest.mark.parametrize("path", ["direct", "requests"])
def test_a_repeated_content_encoding_is_left_to_urllib3_on_both_paths(path):
    # identity, then gzip: urllib3 cannot undo it (DecodeError); the one-read path must not hand the
    # gzip bytes on as the body either
    import gzip

    body = gzip.compress(RUN)
    answer = kept(
        f"Content-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}", body
    )
    with (
        kept_alive_server([answer]) as server,
        tr.RestClient(config(server, timeout_s=2, max_retries=0)) as rest,
    ):
        on_path(rest, path)
        with pytest.raises(tr.ConnectionFailed, match="DecodeError"):
            rest.get_training_run_brief("run-1")
