"""The key never leaves (issue 13.1): one test per channel, with a sentinel key, against real
servers on 127.0.0.1 that echo it back raw and re-encoded."""

from __future__ import annotations

import http.client
import json
import logging
import pickle
import traceback
import urllib.parse

import pytest
from hostile_server import http_answer, scripted_server

import tinker_recovery as tr
from tinker_recovery.events import reason_class
from tinker_recovery.redact import (
    REDACTED,
    RedactedError,
    contains_key,
    redact_error,
    scrub,
)
from tinker_recovery.testing import LoopbackService

KEY = "tml-KEYCHANNEL-sentinel-0123456789abcdef"


def forms(key: str = KEY) -> dict[str, str]:
    """The key as a hostile server may echo it."""
    return {
        "raw": key,
        "json-escaped": "".join(f"\\u{ord(c):04x}" if c in "tml" else c for c in key),
        "all-escaped": "".join(f"\\u{ord(c):04X}" for c in key),
        "solidus": key.replace("-", "\\-"),
        "url": urllib.parse.quote(key, safe=""),
        "url-all": "".join(f"%{ord(c):02x}" for c in key),
        "double-url": urllib.parse.quote(urllib.parse.quote("".join(f"%{ord(c):02X}" for c in key), safe="")),
        "double-json": json.dumps(json.dumps(key))[1:-1],
        "html": "".join(f"&#{ord(c)};" for c in key),
        "secret-only": key[4:],
    }


def leaks(text: str) -> bool:
    """The key in any form of ``forms()``, looked for literally (so a test still fails when the
    package's own matcher is broken) and with ``contains_key``. Doubled backslashes (an escaped
    ``\\u0074``) are read as one."""
    flat = text
    while "\\\\" in flat:
        flat = flat.replace("\\\\", "\\")
    flat = flat.lower()
    return any(form.lower() in flat for form in forms().values()) or contains_key(text, KEY)


def everything(error: BaseException) -> str:
    """What a user can see of an error: str, repr, traceback, and the whole chain's attributes."""
    seen = [str(error), repr(error), "".join(traceback.format_exception(error))]
    link: BaseException | None = error
    while link is not None:
        seen.append(repr(vars(link)) if hasattr(link, "__dict__") else "")
        link = link.__cause__ or link.__context__
    return "\n".join(seen)


# --- scrub ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(forms()))
def test_scrub_removes_every_encoding(form):
    text = f'{{"detail": "key {forms()[form]} refused"}}'
    clean = scrub(text, KEY)
    assert REDACTED in clean and not contains_key(clean, KEY)
    assert clean.startswith('{"detail": "key ') and clean.endswith(' refused"}')


def test_scrub_removes_base64_at_every_alignment():
    import base64

    for prefix in (b"", b"a", b"ab"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(prefix + KEY.encode() + b"tail").decode()
            assert REDACTED in scrub(blob, KEY), (prefix, encode)


def test_scrub_leaves_other_text_and_none_keys_alone():
    assert scrub("nothing to see", KEY) == "nothing to see"
    assert scrub(KEY, None) == KEY and scrub("", KEY) == ""


def test_scrub_fails_when_the_key_is_not_there_to_find():
    # the check can fail: a different key is not scrubbed
    assert scrub("tml-other-key-0000000000", KEY) == "tml-other-key-0000000000"


# --- exceptions and their chains --------------------------------------------------------------------


class _Request:
    def __init__(self) -> None:
        self.headers = {"X-API-Key": KEY}


class _Response:
    def __init__(self) -> None:
        self.request = _Request()
        self.status_code = 401


class SDKStatusError(Exception):
    """Shaped like the official SDK's APIStatusError: keyword-only init, response and body."""

    def __init__(self, message: str, *, response: _Response, body: object) -> None:
        super().__init__(message)
        self.response = response
        self.body = body
        self.status_code = response.status_code


def sdk_error() -> BaseException:
    body = {"error": f"key {forms()['json-escaped']} invalid", "detail": [KEY]}
    try:
        try:
            raise ConnectionError(f"while sending X-API-Key: {KEY}")
        except ConnectionError as inner:
            raise SDKStatusError(f"Error code: 401 - {body}", response=_Response(), body=body) from inner
    except SDKStatusError as error:
        return error


def test_redact_error_copies_an_sdk_error_without_the_key_or_its_chain():
    original = sdk_error()
    clean = redact_error(original, KEY)
    assert type(clean) is SDKStatusError and clean is not original
    assert clean.status_code == 401 and clean.response is None
    assert clean.__cause__ is None and clean.__context__ is None
    assert not leaks(everything(clean))
    assert not leaks(pickle.dumps(clean).decode("latin-1"))  # what a pickle of it would carry
    assert leaks(everything(original))  # the original is untouched (and the check can fail)


def test_redact_error_falls_back_when_a_copy_still_shows_the_key():
    class Stubborn(Exception):
        def __str__(self) -> str:
            return "always " + KEY

    clean = redact_error(Stubborn("x"), KEY)
    assert isinstance(clean, RedactedError) and clean.original_type == "Stubborn"
    assert not leaks(everything(clean)) and not leaks(repr(pickle.loads(pickle.dumps(clean))))


def test_package_errors_from_a_server_have_no_chain_and_no_key():
    with scripted_server() as server:
        body = json.dumps({"detail": " ".join(forms().values())}).encode()
        rest = tr.RestClient(tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=0))
        for status in (401, 500):
            server.answer(http_answer(status, body, {"WWW-Authenticate": KEY}))
            with pytest.raises(tr.ApiError) as info:
                rest.get_training_run("run-1")
            error = info.value
            assert error.__context__ is None and error.__cause__ is None
            assert not leaks(everything(error)) and not leaks(str(pickle.loads(pickle.dumps(error))))
        server.close()  # nothing listens now: a connection error
        with pytest.raises(tr.ConnectionFailed) as info:
            rest.get_training_run("run-1")
        assert info.value.__context__ is None and not leaks(everything(info.value))
        rest.close()


# --- log records, every level, the HTTP stack included -------------------------------------------


def test_no_log_record_holds_the_key(debug_log):
    debug = http.client.HTTPConnection.debuglevel
    http.client.HTTPConnection.debuglevel = 1  # a user turned http.client's header printing on
    try:
        with scripted_server() as server:
            body = json.dumps({"detail": forms()["json-escaped"]}).encode()
            server.answer(http_answer(401, body))
            config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=2)
            with tr.RestClient(config) as rest:
                server.answer(http_answer(503, body, {"Retry-After": "0"}))
                with pytest.raises(tr.ServerError) as info:
                    rest.get_training_run("run-1")
                logging.getLogger("tinker_recovery.test").warning("poll failed: %s", info.value)
    finally:
        http.client.HTTPConnection.debuglevel = debug
    texts = debug_log.texts
    assert any("urllib3" in text or "connectionpool" in text for text in texts)  # the stack did log
    assert [text for text in texts if leaks(text)] == []
    for record, _ in debug_log.records:
        assert not leaks(repr(record.args)) and not leaks(str(record.msg))


def test_http_client_debug_printing_stays_off_for_the_package(capfd):
    debug = http.client.HTTPConnection.debuglevel
    http.client.HTTPConnection.debuglevel = 1
    try:
        with scripted_server() as server:
            server.answer(http_answer(404, b"{}"))
            with (
                tr.RestClient(tr.Config(api_key=KEY, base_url=server.base_url, max_retries=0)) as rest,
                pytest.raises(tr.NotFound),
            ):
                rest.get_training_run("run-1")
    finally:
        http.client.HTTPConnection.debuglevel = debug
    out, err = capfd.readouterr()
    assert not leaks(out + err)


# --- proxies and redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_loopback_base_url_never_goes_through_a_proxy(monkeypatch, variable):
    with scripted_server() as proxy, scripted_server() as server:
        monkeypatch.setenv(variable, proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        server.answer(http_answer(404, b"{}"))
        proxy.answer(http_answer(404, b"{}"))
        with (
            tr.RestClient(tr.Config(api_key=KEY, base_url=server.base_url, max_retries=0)) as rest,
            pytest.raises(tr.NotFound),
        ):
            rest.get_training_run("run-1")
        with LoopbackService(server.base_url, KEY, timeout_s=2) as service, pytest.raises(tr.NotFound):
            service.create_session()
        # a session a caller supplies, reading the environment on each call
        import requests

        with (
            requests.Session() as session,
            tr.RestClient(tr.Config(api_key=KEY, base_url=server.base_url, max_retries=0), session) as rest,
            pytest.raises(tr.NotFound),
        ):
            rest.get_training_run("run-1")
        assert proxy.requests == []
        assert len(server.requests) == 3


def test_loopback_service_refuses_redirects_and_never_echoes_the_key():
    with scripted_server() as elsewhere, scripted_server() as server:
        elsewhere.answer(http_answer(200, b'{"session_id": "stolen"}'))
        body = json.dumps({"detail": f"moved; your key {forms()['json-escaped']}"}).encode()
        server.answer(
            http_answer(
                307,
                body,
                {"Location": f"{elsewhere.base_url}/api/v1/create_session"},
                reason="Temporary Redirect",
            )
        )
        with LoopbackService(server.base_url, KEY, timeout_s=2) as service:
            with pytest.raises(tr.ApiError) as info:
                service.create_session()
            assert info.value.status_code == 307
            assert not leaks(everything(info.value)) and not leaks(repr(service))
            with pytest.raises(TypeError, match="API key"):
                pickle.dumps(service)
        assert elsewhere.requests == []


def test_loopback_service_scrubs_a_failed_future_that_quotes_the_key():
    routes = {
        "/api/v1/create_session": http_answer(200, b'{"session_id": "s-1"}'),
        "/api/v1/load_weights": http_answer(200, b'{"request_id": "q-1"}'),
        "/api/v1/retrieve_future": http_answer(
            200, json.dumps({"error": f"bad key {forms()['url']}\nINFO forged", "category": "user"}).encode()
        ),
    }
    with scripted_server() as server:
        server.answer(http_answer(404, b"{}"), routes)
        with (
            LoopbackService(server.base_url, KEY, timeout_s=2) as service,
            pytest.raises(tr.UnprocessableEntity) as info,
        ):
            service.create_training_client_from_state("tinker://run-1/weights/x")
    assert not leaks(everything(info.value)) and "\n" not in str(info.value)


def official_sdk_errors() -> list[BaseException]:
    tinker = pytest.importorskip("tinker")
    httpx = pytest.importorskip("httpx")
    request = httpx.Request("POST", "https://tinker.test/api/v1/create_model", headers={"X-API-Key": KEY})
    body = {"detail": f"key {forms()['json-escaped']} refused", "echo": KEY}
    response = httpx.Response(401, request=request, json=body)
    status = tinker.AuthenticationError(f"Error code: 401 - {body}", response=response, body=body)
    try:
        raise tinker.APIConnectionError(request=request)
    except tinker.APIConnectionError as error:
        connection = error
    return [status, connection]


@pytest.mark.parametrize("index", [0, 1], ids=["status", "connection"])
def test_redact_error_on_the_official_sdks_errors(index):
    original = official_sdk_errors()[index]
    clean = redact_error(original, KEY)
    assert type(clean) is type(original)
    assert getattr(clean, "request", None) is None and getattr(clean, "response", None) is None
    assert getattr(clean, "status_code", None) == getattr(original, "status_code", None)
    assert not leaks(everything(clean))
    assert not leaks(pickle.dumps(clean).decode("latin-1"))
    assert reason_class(clean) == reason_class(original)


def test_key_filter_scrubs_messages_args_and_tracebacks():
    import io

    from tinker_recovery.redact import KeyFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(KeyFilter([KEY]))
    logger = logging.getLogger("tinker_recovery.test.keyfilter")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.warning("careless %s and %r", KEY, {"k": forms()["url"]})
        try:
            raise RuntimeError(f"boom {forms()['json-escaped']}")
        except RuntimeError:
            logger.exception("failed with %s", KEY[4:])
        logger.info("no key here")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    assert "careless <redacted>" in text and "no key here" in text and "RuntimeError" in text
    assert not leaks(text)


# --- issue 13.1, fault by fault, through the whole path ----------------------------------------------


def _run(run_id: str = "run-1", *, corrupted: bool = False) -> dict:
    return {
        "training_run_id": run_id,
        "base_model": "m",
        "model_owner": "o",
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


def _echo_body() -> bytes:
    """A 401 body quoting the key in every form, JSON-escaped ones first (fault 13.1, first case)."""
    body = {"detail": f"invalid key {forms()['json-escaped']}", "all": list(forms().values())}
    return json.dumps(body).encode()


def _headery(error: BaseException | None) -> list[str]:
    """Every link of ``error``'s chain that still holds a request or response object."""
    found = []
    while error is not None:
        for name, value in vars(error).items():
            if hasattr(value, "headers") or hasattr(value, "request"):
                found.append(f"{type(error).__name__}.{name}")
        error = error.__cause__ or error.__context__
    return found


def test_a_json_escaped_401_echo_reaches_no_poll_error_journal_line_or_warning_log(tmp_path, recorder):
    journal_path = tmp_path / "journal.jsonl"
    log_path = tmp_path / "plain.log"
    handler = logging.FileHandler(log_path)
    handler.setLevel(logging.WARNING)  # what a user's plain-text WARNING log holds
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    package = logging.getLogger("tinker_recovery")
    package.addHandler(handler)
    try:
        with scripted_server() as server:
            server.answer(http_answer(401, _echo_body(), {"WWW-Authenticate": f"Key {forms()['url']}"}))
            config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=0)
            policy = tr.Policy(enabled=True, poll_interval_ms=100)
            with tr.Executor(1, config=config) as executor, tr.Monitor(executor, policy, config) as monitor:
                journal = tr.Journal(journal_path)
                journal.attach(monitor, executor)
                monitor.monitor_run("run-1", LoopbackService(server.base_url, KEY, timeout_s=2))
                (payload,) = recorder.wait_for("poll_error")
                journal.close()
            assert server.requests, "the server was asked"
    finally:
        package.removeHandler(handler)
        handler.close()
    error = payload["error"]
    assert isinstance(error, tr.AuthenticationError)
    assert not leaks(everything(error)) and not leaks(repr(payload)) and _headery(error) == []
    lines = journal_path.read_text().splitlines()
    assert any('"poll_error"' in line for line in lines)
    assert [line for line in lines if leaks(line)] == []
    logged = log_path.read_text()
    assert "run-1" in logged and "WARNING" in logged  # the poll error was logged at WARNING
    assert not leaks(logged)


@pytest.mark.parametrize("status", [401, 500])
def test_status_prints_no_form_of_an_echoed_key(status, capsys):
    from tinker_recovery import cli

    with scripted_server() as server:
        server.answer(http_answer(status, _echo_body()))
        args = ["--base-url", server.base_url, "--api-key", KEY, "--retries", "0", "status", "run-1"]
        code = cli.main(args)
    out, err = capsys.readouterr()
    assert code == cli.EXIT_API_ERROR and len(err.splitlines()) == 1 and out == ""
    assert not leaks(out + err)


@pytest.mark.parametrize(
    "command",
    [["fake", "corrupt", "run-1"], ["fake", "faults"], ["fake", "add-run"], ["status", "run-1"]],
    ids=lambda command: "-".join(command),
)
@pytest.mark.parametrize("status", [400, 403, 404, 500])
def test_no_cli_command_prints_any_form_of_an_echoed_key(command, status, capsys):
    """The ``fake`` commands' admin client hid only the raw, ``\\u``- and %-escaped key: the key without
    its ``tml-`` prefix, ``\\-`` escapes, double URL encoding and HTML references went to stderr."""
    from tinker_recovery import cli

    with scripted_server() as server:
        for name, form in forms().items():
            body = json.dumps({"detail": f"key {form} bad", "error": form}).encode()
            server.answer(http_answer(status, body))
            code = cli.main(["--base-url", server.base_url, "--api-key", KEY, "--retries", "0", *command])
            out, err = capsys.readouterr()
            assert code == cli.EXIT_API_ERROR and len(err.splitlines()) == 1, (name, err)
            assert not leaks(out + err), (name, err)


def test_timeouts_and_refused_connections_reach_signals_and_futures_without_the_request(recorder):
    """``RequestTimeout``/``ConnectionFailed`` were raised ``from None`` with ``__context__`` still
    holding the request and its ``X-API-Key``; they reach poll_error payloads and Futures."""
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()  # nothing listens there now
    with scripted_server() as slow:
        slow.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"{" * 100, 0.5)
        errors: list[BaseException] = []
        for base_url in (closed, slow.base_url):
            config = tr.Config(api_key=KEY, base_url=base_url, timeout_s=0.5, max_retries=0)
            policy = tr.Policy(enabled=True, poll_interval_ms=100, max_attempts=1, jitter="none")
            with tr.Executor(1, config=config) as executor:
                executor.start()
                future = executor.recover("run-1", LoopbackService(base_url, KEY, timeout_s=0.5), policy)
                errors.append(future.exception(20))
                with tr.Monitor(executor, policy, config) as monitor:
                    before = recorder.count("poll_error")
                    monitor.monitor_run("run-2", LoopbackService(base_url, KEY, timeout_s=0.5))
                    errors.append(recorder.wait_for("poll_error", before + 1)[-1]["error"])
    kinds = [type(error) for error in errors]
    assert kinds[:2] == [tr.ConnectionFailed, tr.ConnectionFailed], kinds
    assert kinds[2:] == [tr.RequestTimeout, tr.RequestTimeout], kinds
    for error in errors:
        assert _headery(error) == [] and error.__context__ is None, (error, _headery(error))
        assert not leaks(everything(error)) and not leaks(pickle.dumps(error).decode("latin-1"))
    for _event, _sender, payload in recorder.events:
        assert not leaks(repr(payload))


def test_a_key_with_a_slash_echoed_with_json_backslash_solidus_is_redacted():
    """JSON may write ``/`` as ``\\/`` (PHP's json_encode does by default): a key holding a slash
    comes back that way, decoded or not."""
    key = "tml-slash/sentinel/0123456789abcdef"
    solidus = key.replace("/", "\\/")
    assert REDACTED in scrub(f"bad {solidus}", key) and not contains_key(scrub(f"bad {solidus}", key), key)
    with scripted_server() as server:
        echoed = urllib.parse.quote(solidus)
        body = ('{"detail": "bad key ' + solidus + '", "echo": "' + echoed + '"}').encode()
        server.answer(http_answer(401, body))
        rest = tr.RestClient(tr.Config(api_key=key, base_url=server.base_url, timeout_s=2, max_retries=0))
        with rest, pytest.raises(tr.AuthenticationError) as info:
            rest.get_training_run("run-1")
    shown = everything(info.value)
    assert key not in shown and solidus not in shown and not contains_key(shown, key)
    assert key[4:] not in shown


def test_no_pickle_of_the_packages_objects_carries_the_key(tmp_path):
    """Each object either pickles without the key or refuses with a message that holds none."""
    from tinker_recovery.testing import FakeTinker

    def check(name: str, obj: object) -> str:
        try:
            data = pickle.dumps(obj)
        except (TypeError, pickle.PicklingError, AttributeError) as refused:
            assert not leaks(str(refused)), name
            return "refused"
        assert not leaks(data.decode("latin-1")), name
        pickle.loads(data)
        return "pickled"

    seen: dict[str, str] = {}
    with FakeTinker(api_key=KEY) as fake:
        config = tr.Config(api_key=KEY, base_url=fake.base_url, timeout_s=5, max_retries=0)
        run_id = fake.add_run()
        service = LoopbackService(fake.base_url, KEY, timeout_s=5)
        policy = tr.Policy(enabled=True, poll_interval_ms=100, jitter="none")
        journal = tr.Journal(tmp_path / "journal.jsonl")
        with (
            service,
            tr.Executor(1, config=config) as executor,
            tr.Monitor(executor, policy, config) as monitor,
        ):
            handle = monitor.monitor_run(run_id, service)
            fake.corrupt(run_id)
            recovery = handle.wait_for_recovery(timeout=30)
            objects = {
                "Config": config,
                "RestClient": tr.RestClient(config),
                "LoopbackService": service,
                "Executor": executor,
                "Monitor": monitor,
                "RunHandle": handle,
                "Recovery": recovery,
                "Recovery.client": recovery.client,
                "Journal": journal,
                "FakeTinker": fake,
                "Policy": policy,
                "Checkpoint": recovery.checkpoint,
                "TrainingRun": tr.RestClient(config).get_training_run(recovery.new_run_id),
                "AuthenticationError": tr.AuthenticationError("HTTP 401: <redacted>", status_code=401),
            }
            for name, obj in objects.items():
                seen[name] = check(name, obj)
        journal.close()
    # the holders of the key refuse; plain values pickle
    assert seen["Config"] == seen["RestClient"] == seen["LoopbackService"] == "refused"
    assert seen["Recovery"] == seen["Executor"] == seen["Monitor"] == seen["RunHandle"] == "refused"
    assert seen["Policy"] == seen["Checkpoint"] == seen["TrainingRun"] == "pickled"


def test_the_fake_admin_client_never_follows_a_redirect(capsys):
    from tinker_recovery import cli

    with scripted_server() as elsewhere, scripted_server() as server:
        elsewhere.answer(http_answer(200, b"{}"))
        for status in (301, 302, 307, 308):
            server.answer(
                http_answer(status, b"{}", {"Location": f"{elsewhere.base_url}/_fake/runs/run-1/corrupt"})
            )
            code = cli.main(["--base-url", server.base_url, "--api-key", KEY, "fake", "corrupt", "run-1"])
            out, err = capsys.readouterr()
            assert code == cli.EXIT_API_ERROR and f"HTTP {status}" in err and not leaks(out + err)
            assert len(server.requests) == 1  # asked once, the 3xx taken as the answer
        assert elsewhere.requests == []


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_the_cli_never_sends_a_loopback_request_through_a_proxy(monkeypatch, capsys, variable):
    from tinker_recovery import cli

    with scripted_server() as proxy, scripted_server() as server:
        monkeypatch.setenv(variable, proxy.base_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        server.answer(http_answer(200, json.dumps(_run()).encode()))
        proxy.answer(http_answer(200, json.dumps(_run()).encode()))
        base = ["--base-url", server.base_url, "--api-key", KEY, "--retries", "0"]
        assert cli.main([*base, "status", "run-1"]) == cli.EXIT_OK
        server.answer(http_answer(200, b'{"faults": []}'))
        assert cli.main([*base, "fake", "faults"]) == cli.EXIT_OK
        assert len(server.requests) == 1 and proxy.requests == []
    assert not leaks("".join(capsys.readouterr()))


def test_the_rest_clients_requests_path_never_follows_a_redirect():
    """The poll path has its own test (test_rest_deadline); this is the path through ``requests``
    (a session the caller supplies, or a mocking library in place), against a real server."""
    import requests

    with scripted_server() as elsewhere, scripted_server() as server:
        elsewhere.answer(http_answer(200, json.dumps(_run()).encode()))
        location = {"Location": f"{elsewhere.base_url}/api/v1/training_runs/run-1"}
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=0)
        for status in (301, 302, 303, 307, 308):
            server.answer(http_answer(status, b"{}", location))
            with requests.Session() as session, tr.RestClient(config, session) as rest:
                assert rest._direct is None
                with pytest.raises(tr.ApiError) as info:
                    rest.get_training_run("run-1")
            assert info.value.status_code == status and len(server.requests) == 1
        assert elsewhere.requests == []
