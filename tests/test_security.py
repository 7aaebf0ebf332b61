"""Security, end to end: Monitor, Executor and RestClient against real loopback servers.

The unit checks of each piece (redaction of an echoed key, run-id rules, body limits, the base_url
rules) are in test_rest.py and test_config.py. These drive the whole path over real sockets: a
hostile server that echoes the key back, a FakeTinker whose request log must stay empty, a server
on a non-loopback address, huge and endless bodies, and a TLS server with an untrusted certificate.
The fault soak (test_soak.py) checks the key over a long run against FakeTinker's faults.
"""

from __future__ import annotations

import collections
import json
import shutil
import socket
import ssl
import subprocess
import threading
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import responses

import tinker_recovery as tr
from tinker_recovery.testing import FakeTinker, LoopbackService

KEY = "tml-security-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MIB = 1024 * 1024


def policy(**overrides: Any) -> tr.Policy:
    return tr.Policy(
        **{
            "enabled": True,
            "jitter": "none",
            "poll_interval_ms": 100,
            "backoff_ms": 10,
            "max_backoff_ms": 100,
            **overrides,
        }
    )


def run_json(run_id: str, corrupted: bool = False) -> dict:
    return {
        "training_run_id": run_id,
        "base_model": "base",
        "model_owner": "me",
        "is_lora": True,
        "last_request_time": "2026-01-01T00:00:00Z",
        "corrupted": corrupted,
        "last_checkpoint": {
            "checkpoint_id": "weights/step-000010",
            "checkpoint_type": "training",
            "time": "2026-01-01T00:00:00Z",
            "tinker_path": f"tinker://{run_id}/weights/step-000010",
        },
    }


def shown(error: BaseException) -> str:
    """All a user can see of an exception: str, repr and the traceback with its causes."""
    return str(error) + repr(error) + "".join(traceback.format_exception(error))


class Client:
    """A restored training client: only its model_id."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id


class Service:
    """A service whose create call returns ``outcome`` (a client), or raises it (an exception)."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def create_training_client_from_state_with_optimizer(self, path: str) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    create_training_client_from_state = create_training_client_from_state_with_optimizer


# --- a scriptable loopback server ---------------------------------------------------------------

Route = Callable[[dict], tuple[int, dict, Iterable[bytes]]]


class Server:
    """An HTTP server on ``host`` answering each path from ``routes``: a function of the request's
    headers returning (status, headers, body chunks). It records what it was asked and how many
    body bytes it got out before the client hung up. ``tls``: an SSLContext to serve HTTPS."""

    def __init__(
        self, routes: dict[str, Route], host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.routes = routes
        self.seen: list[tuple[str, dict]] = []
        self.sent: dict[str, int] = {}
        self.hung_up: dict[str, threading.Event] = collections.defaultdict(threading.Event)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append((self.path, dict(self.headers)))
                route = owner.routes.get(self.path.split("?")[0])
                missing = (404, {"Content-Length": "2"}, [b"{}"])
                status, headers, chunks = route(dict(self.headers)) if route else missing
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        owner.sent[self.path] = owner.sent.get(self.path, 0) + len(chunk)
                except OSError:  # the client hung up
                    owner.hung_up[self.path].set()

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base_url = f"{scheme}://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="test.server", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def answer(status: int, body: bytes | str, content_type: str = "application/json", **headers: str) -> Route:
    data = body.encode() if isinstance(body, str) else body
    head = {"Content-Type": content_type, "Content-Length": str(len(data)), **headers}
    return lambda _headers: (status, head, [data])


@pytest.fixture
def servers():
    made: list[Server] = []

    def make(routes: dict[str, Route], **kwargs: Any) -> Server:
        made.append(Server(routes, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def fake():
    with FakeTinker(api_key=KEY, seed=3) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=KEY, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


# --- the key --------------------------------------------------------------------------------------


def test_a_key_echoed_by_a_hostile_server_surfaces_nowhere(servers, debug_log, recorder):
    elsewhere = servers({})

    def echo(status: int, template: str, content_type: str = "application/json", **headers: str) -> Route:
        """Answer ``template`` (and ``headers``) with every "KEY" replaced by the X-API-Key received."""

        def route(request_headers: dict) -> tuple[int, dict, list[bytes]]:
            key = request_headers.get("X-API-Key", "")
            body = template.replace("KEY", key).encode()
            extra = {name: value.replace("KEY", key) for name, value in headers.items()}
            return status, {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}, [body]

        return route

    runs = "/api/v1/training_runs/"
    hostile = servers(
        {
            runs + "echo-json": echo(500, '{"detail": "your key KEY is throttled"}'),
            runs + "echo-text": echo(503, "upstream said: X-API-Key: KEY", "text/plain"),
            runs + "echo-401": echo(
                401, '{"error": "KEY is not valid", "message": "KEY"}', **{"WWW-Authenticate": "Key KEY"}
            ),
            runs + "echo-redirect": echo(
                302, "moved, bring KEY", "text/plain", Location=f"{elsewhere.base_url}/steal?k=KEY"
            ),
            runs + "echo-big": echo(500, "KEY " * 20_000, "text/plain"),
            runs + "corrupted": answer(200, json.dumps(run_json("corrupted", corrupted=True))),
            runs + "corrupted/checkpoints": echo(500, '{"detail": "cannot list for KEY"}'),
        }
    )
    config = tr.Config(api_key=KEY, base_url=hostile.base_url, timeout_s=5.0, max_retries=0)
    gone = tr.NotFound("checkpoint gone", status_code=404)  # unloadable: the executor lists older ones
    with tr.Executor(1) as executor, tr.Monitor(executor, policy(max_attempts=1), config) as monitor:
        for run_id in ("echo-json", "echo-text", "echo-401", "echo-redirect", "echo-big"):
            monitor.monitor_run(run_id, Service(Client("new")))
        handle = monitor.monitor_run("corrupted", Service(gone))
        recorder.wait_for("exhausted")
        recorder.wait_for("poll_error", 5)
        assert handle.wait(10)
        objects = [monitor, executor, config, handle, tr.RestClient(config)]

    errors = {p["run_id"]: p["error"] for p in recorder.payloads("poll_error")}
    assert isinstance(errors["echo-json"], tr.ServerError) and "<redacted>" in str(errors["echo-json"])
    assert isinstance(errors["echo-401"], tr.AuthenticationError)
    assert isinstance(errors["echo-redirect"], tr.ApiError) and errors["echo-redirect"].status_code == 302
    assert isinstance(recorder.payloads("exhausted")[0]["error"], tr.ServerError)
    assert elsewhere.seen == []  # the redirect was not followed: the key went nowhere else
    assert all(headers.get("X-API-Key") == KEY for _, headers in hostile.seen)  # it was sent, and echoed

    texts = debug_log.texts + [repr(obj) + str(obj) for obj in objects]
    for _event, _sender, payload in recorder.events:
        texts.append(repr(payload))
        texts += [shown(value) for value in payload.values() if isinstance(value, BaseException)]
    assert any("echo-json" in text for text in debug_log.texts)  # the capture did see the polls
    assert [text[:200] for text in texts if KEY in text or KEY[4:] in text] == []


# --- plain http -----------------------------------------------------------------------------------


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, or None (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_plain_http_to_a_non_loopback_host_is_refused_unless_opted_in(servers, monkeypatch, recorder):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    routes = {"/api/v1/training_runs/run-1": answer(200, json.dumps(run_json("run-1")))}
    server = servers(routes, host=address)
    assert server.base_url.startswith(f"http://{address}:")

    with pytest.raises(ValueError, match=r"^base_url: plain http") as refused:
        tr.Config(api_key=KEY, base_url=server.base_url)
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setenv("TINKER_BASE_URL", server.base_url)
    with pytest.raises(ValueError, match=r"^base_url: plain http"):
        tr.Config()
    assert KEY not in shown(refused.value)
    assert server.seen == []

    # the opt-in is the only thing in the way: with it, polls reach the server
    config = tr.Config(allow_insecure_http=True, max_retries=0)
    with tr.Executor(1) as executor:
        monitor = tr.Monitor(executor, policy(), config)
        monitor.monitor_run("run-1", Service(Client("new")))
        assert monitor.poll_once(timeout=10) == 1
        monitor.stop()
    assert {path for path, _ in server.seen} == {
        "/api/v1/training_runs/run-1"
    }  # monitor_run polls at once too
    assert recorder.count("poll_error") == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8000",
        "http://127.1",
        "http://2130706433",
        "http://[::ffff:127.0.0.1]",
        "http://localhost.",
        "http://evil.example#@127.0.0.1",
        "http://evil.example?@127.0.0.1",
        "http://127.0.0.1:80@evil.example",
        "http://127.0.0.1\\@evil.example",
        "http://[::1]@evil.example",
    ],
)
def test_loopback_look_alikes_are_refused(url):
    with pytest.raises(ValueError, match=r"^base_url: "):
        tr.Monitor(None, policy(), tr.Config(api_key=KEY, base_url=url))


# --- run ids --------------------------------------------------------------------------------------

BAD_RUN_IDS = [
    "a/b",
    "../admin",
    "..",
    "a..b",
    "%2F",
    "run%2Fx",
    "a\nb",
    "run\r\nX-Injected: 1",
    "run/../../_fake/faults",
]


@pytest.mark.parametrize("bad", BAD_RUN_IDS)
def test_bad_run_ids_are_refused_before_any_request(fake, config, bad):
    service = LoopbackService(fake.base_url, KEY, timeout_s=5.0)
    rest = tr.RestClient(config)
    with (
        service,
        rest,
        tr.Executor(1, config=config) as executor,
        tr.Monitor(executor, policy(), config) as monitor,
    ):
        refused = [
            lambda: rest.get_training_run(bad),
            lambda: rest.list_checkpoints(bad),
            lambda: rest.get_training_run_by_tinker_path(f"tinker://{bad}/weights/step-000010"),
            lambda: monitor.monitor_run(bad, service),
            lambda: executor.recover(bad, service, policy()),
        ]
        for call in refused:
            with pytest.raises(ValueError):
                call()
        assert monitor.watched == [] and executor.pending == []
    assert fake.requests == []


def test_a_restored_client_with_a_bad_model_id_is_not_followed(fake, config, recorder):
    run_id = fake.add_run()
    fake.corrupt(run_id)
    with tr.Executor(1) as executor, tr.Monitor(executor, policy(), config) as monitor:
        handle = monitor.monitor_run(run_id, Service(Client("../_fake/faults")))
        recorder.wait_for("completed")
        assert handle.wait(10)
        assert monitor.watched == [] and not handle.watching
    assert {r.path for r in fake.requests} == {f"/api/v1/training_runs/{run_id}"}


@pytest.mark.skipif(
    not hasattr(tr.journal.Journal, "attach"), reason="resuming lives in Journal.attach (journal branch)"
)
def test_bad_run_ids_in_a_journal_are_not_resumed(fake, config, tmp_path):
    good = fake.add_run()
    journal = tmp_path / "recovery.jsonl"
    lines = [
        {"time": "2026-01-01T00:00:00+00:00", "event": "watch", "run_id": run_id, "attempt": 0}
        for run_id in (good, "../_fake/faults", "a\nb", "%2Fetc")
    ]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with tr.Executor(1) as executor:
        resumed = tr.Monitor(executor, policy(), config, journal=str(journal), service=Service(Client("x")))
        with resumed as monitor:
            assert monitor.watched == [good]
            monitor.poll_once(timeout=10)
    assert {r.path for r in fake.requests} == {f"/api/v1/training_runs/{good}"}


# --- hostile bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, path", [("per_run", None), ("list", r"^/api/v1/training_runs$")])
def test_malformed_json_is_a_poll_error_and_polling_goes_on(fake, config, recorder, mode, path):
    run_id = fake.add_run()
    fake.add_fault("GET", path or rf"^/api/v1/training_runs/{run_id}$", malformed=True, times=1)
    fake.corrupt(run_id)
    service = LoopbackService(fake.base_url, KEY, timeout_s=5.0)
    with (
        service,
        tr.Executor(1) as executor,
        tr.Monitor(executor, policy(), config, poll_mode=mode) as monitor,
    ):
        monitor.monitor_run(run_id, service)
        recorder.wait_for("completed")  # the poll after the garbled one saw the corruption
    (error,) = [p["error"] for p in recorder.payloads("poll_error")]
    assert isinstance(error, tr.ResponseError) and "not JSON" in str(error)
    assert fake.load_weights_count(run_id) == 1


def stream(chunk: bytes, total: int) -> Iterable[bytes]:
    for _ in range(total // len(chunk)):
        yield chunk


def test_huge_and_non_json_bodies_are_response_errors(servers, recorder):
    runs = "/api/v1/training_runs/"
    server = servers(
        {
            # 9 MiB announced: refused from the header
            runs + "declared": lambda _: (
                200,
                {"Content-Type": "application/json", "Content-Length": str(9 * MIB)},
                stream(b" " * 65536, 9 * MIB),
            ),
            # no length, 256 MiB on offer: the client must stop reading after 8 MiB
            runs + "endless": lambda _: (
                200,
                {"Content-Type": "application/json"},
                stream(b'{"training_run_id": "' + b"x" * 65515, 256 * MIB),
            ),
            runs + "html": answer(200, "<html><body>maintenance</body></html>", "text/html"),
            runs + "binary": answer(200, b"\xff\xfe\x00garbage", "application/octet-stream"),
        }
    )
    config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=10.0, max_retries=0)
    with tr.RestClient(config) as rest:
        for run_id, message in (
            ("declared", "exceeds"),
            ("endless", "exceeds"),
            ("html", "not JSON"),
            ("binary", "not JSON"),
        ):
            with pytest.raises(tr.ResponseError, match=message):
                rest.get_training_run(run_id)
    assert server.hung_up[runs + "endless"].wait(10)
    assert server.sent[runs + "endless"] < 32 * MIB  # it stopped reading, far from 256 MiB

    with tr.Executor(1) as executor, tr.Monitor(executor, policy(), config) as monitor:
        for run_id in ("declared", "endless", "html", "binary"):
            monitor.monitor_run(run_id, Service(Client("new")))
        recorder.wait_for("poll_error", 8)  # each run twice: the monitor kept polling
    assert {type(p["error"]) for p in recorder.payloads("poll_error")} == {tr.ResponseError}


# --- TLS ------------------------------------------------------------------------------------------


def test_every_request_verifies_tls(monkeypatch, recorder):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    base = "https://tinker.test"
    config = tr.Config(api_key=KEY, base_url=base, max_retries=0)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{base}/api/v1/training_runs/run-1", json=run_json("run-1", corrupted=True))
        mock.get(f"{base}/api/v1/training_runs/run-1/checkpoints", json={"checkpoints": []})
        empty = {"training_runs": [], "cursor": {"offset": 0, "limit": 100, "total_count": 0}}
        mock.get(f"{base}/api/v1/training_runs", json=empty)  # a retry first looks for a run it created
        service = Service(tr.ServerError("try again", status_code=503))
        with tr.Executor(1) as executor, tr.Monitor(executor, policy(max_attempts=2), config) as monitor:
            handle = monitor.monitor_run("run-1", service)
            recorder.wait_for("exhausted")  # after attempt 2, which fetched the run again over REST
            assert handle.wait(10) and isinstance(handle.error, tr.ServerError)
            rests = [monitor._poller.rest, *executor._rest_by_config.values()]
            sessions = [rest._session for rest in rests]
        assert len(mock.calls) >= 2
        assert [call.request.req_kwargs["verify"] for call in mock.calls] == [True] * len(mock.calls)
    assert sessions and all(session.verify is True for session in sessions)

    # a CA bundle named in the environment narrows what is trusted; verification stays on
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with responses.RequestsMock() as mock, tr.RestClient(config) as rest:
        mock.get(f"{base}/api/v1/training_runs/run-1", json=run_json("run-1"))
        rest.get_training_run("run-1")
        assert mock.calls[0].request.req_kwargs["verify"] == "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def test_an_untrusted_certificate_is_refused_and_the_key_never_sent(servers, self_signed, monkeypatch):
    context, cert = self_signed
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override session.verify
        monkeypatch.delenv(name, raising=False)
    server = servers({"/api/v1/training_runs/run-1": answer(200, json.dumps(run_json("run-1")))}, tls=context)
    config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=5.0, max_retries=0)
    with tr.RestClient(config) as rest, pytest.raises(tr.ConnectionFailed) as refused:
        rest.get_training_run("run-1")
    assert "SSLError" in str(refused.value) and KEY not in shown(refused.value)
    assert server.seen == []  # the handshake failed before any header, the key included, was sent

    # the same server is fine once its certificate is trusted: it was the verification that refused
    import requests

    session = requests.Session()
    session.verify = str(cert)
    with session, tr.RestClient(config, session=session) as rest:
        assert rest.get_training_run("run-1").training_run_id == "run-1"
    assert len(server.seen) == 1
