"""Property-based tests of the command line: whatever the arguments and whatever a server answers,
``cli.main`` returns an exit status from the README's table, prints at most one line on stderr and
never a traceback, and no server text reaches the terminal with a newline or control character.

The server is a scripted loopback socket server: each connection gets the raw bytes the test chose
(status line, headers, body), then the connection is closed. The CLI runs in-process, so a stray
exception fails the test with its traceback."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tinker_recovery import cli
from tinker_recovery.redact import contains_key

EXIT_TABLE = {cli.EXIT_OK, cli.EXIT_CORRUPTED, cli.EXIT_USAGE, cli.EXIT_API_ERROR}
KEY = "tml-hostile-cli-sentinel-key-7c1d9e"
RUN_ID = "r3-hostile:train:0"
HOSTILE_TEXT = ["\n2026-01-01 tinker_recovery.executor INFO forged", "\x1b[2J\x1b[31m", "\x1b]0;title\x07",
                "\r", "\u2028", "\u202e", "\x00", "\x9b31m", KEY, "\\u0074ml-hostile-cli-sentinel-key-7c1d9e",
                # the key as a server may echo it: without its prefix, \- escaped, URL-encoded twice, HTML
                KEY[4:], KEY.replace("-", "\\-"), quote(quote(KEY, safe=""), safe=""),
                "".join(f"&#{ord(char)};" for char in KEY)]
EXAMPLES = int(os.environ.get("CLI_HYPOTHESIS_EXAMPLES", "150"))
# No example database: a run leaves no .hypothesis/ folder behind.
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def no_tinker_env(monkeypatch, tmp_path):
    for name in [name for name in os.environ if name.startswith("TINKER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


def run(args: list[str]) -> tuple[int, str, str]:
    """``cli.main(args)`` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args)
    return code, out.getvalue(), err.getvalue()


def assert_well_behaved(code: int, out: str, err: str, *, key: str | None = KEY, max_lines: int = 1) -> None:
    """``max_lines``: ``status`` of N runs may report each unknown run on its own line."""
    assert code in EXIT_TABLE, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) <= max_lines and all(line.startswith("tinker-recovery: error: ") for line in lines), err
    assert (not lines or lines[0].startswith("tinker-recovery: error: ")), err
    assert (code in (cli.EXIT_OK, cli.EXIT_CORRUPTED)) == (not lines), (code, err)
    for line in (out + err).splitlines():
        for char in line:
            assert unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), (char, line)
    if key:
        assert key not in out + err
        if key == KEY:  # the sentinel, in every form a server may echo it (redact.scrub's)
            assert not contains_key(out + err, KEY), out + err


# --- a scripted server ----------------------------------------------------------------------------


class Scripted:
    """A loopback server answering every connection with ``self.answer`` (raw bytes), then closing."""

    def __init__(self) -> None:
        self.answer = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
        scripted = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                with contextlib.suppress(OSError):
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(rest) < length:
                        chunk = self.request.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                    self.request.sendall(scripted.answer)
                    self.request.shutdown(socket.SHUT_WR)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test.scripted_server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def http_answer(status: int, body: bytes, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever"]
    names = {name.lower() for name, _ in headers}
    if "content-length" not in names:
        headers = [*headers, ("Content-Length", str(len(body)))]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode("latin-1", "replace") + body


# --- strategies -----------------------------------------------------------------------------------

hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40),
                         st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20))
odd_dates = st.one_of(
    st.sampled_from(["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2026-01-01T00:00:00",
                     "2026-13-45T99:00:00Z", "", "yesterday", "2026-01-01T00:00:00.999999999999Z",
                     "+275760-09-13T00:00:00Z", "2026-01-01T00:00:00+24:00"]),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.integers(), st.floats(), st.none(), hostile_text,
)
huge_integers = st.integers(min_value=10**300, max_value=10**301)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), huge_integers, st.floats(allow_nan=False),
                      hostile_text)
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@st.composite
def checkpoint_json(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.one_of(st.just("step-000010"), hostile_text))
    checkpoint: dict[str, Any] = {
        "checkpoint_id": draw(st.one_of(st.just(f"weights/{name}"), st.just(name), hostile_text)),
        "checkpoint_type": draw(st.sampled_from(["training", "sampler", "weird", 3])),
        "time": draw(odd_dates),
        "tinker_path": draw(st.one_of(st.just(f"tinker://{RUN_ID}/weights/{name}"), hostile_text)),
        "size_bytes": draw(st.one_of(st.none(), st.integers(), st.just(10**400 // 10**300))),
        "public": draw(st.one_of(st.booleans(), json_leaf)),
        "user_metadata": draw(st.one_of(st.none(), st.dictionaries(hostile_text, hostile_text, max_size=2),
                                        json_any)),
        "expires_at": draw(st.one_of(st.none(), odd_dates)),
    }
    for field in draw(st.sets(st.sampled_from(sorted(checkpoint)))):
        if draw(st.booleans()):
            del checkpoint[field]
        else:
            checkpoint[field] = draw(json_any)
    return checkpoint


@st.composite
def run_json(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "training_run_id": draw(st.one_of(st.just(RUN_ID), hostile_text)),
        "base_model": draw(hostile_text),
        "model_owner": draw(hostile_text),
        "is_lora": draw(st.one_of(st.booleans(), json_leaf)),
        "last_request_time": draw(odd_dates),
        "corrupted": draw(st.one_of(st.booleans(), json_leaf)),
        "last_checkpoint": draw(st.one_of(st.none(), checkpoint_json(), json_any)),
    }


def deep(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


bodies = st.one_of(
    run_json().map(lambda data: json.dumps(data).encode()),
    st.lists(checkpoint_json(), max_size=4).map(lambda items: json.dumps({"checkpoints": items}).encode()),
    json_any.map(lambda data: json.dumps(data).encode()),
    st.builds(lambda detail: json.dumps({"detail": detail, "error": detail}).encode(), hostile_text),
    st.sampled_from([deep(200_000), b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xff\xfe\x00garbage",
                     b'{"detail": "\\u0074ml-hostile-cli-sentinel-key-7c1d9e"}', b"", b"null", b"[]",
                     b'{"checkpoints": ' + deep(100_000) + b"}", b'{"training_run_id": 1e999}']),
    st.binary(max_size=64),
)
headers = st.lists(st.tuples(
    st.sampled_from(["Content-Type", "Retry-After", "Content-Encoding", "Content-Length", "X-Other"]),
    st.one_of(st.sampled_from(["application/json", "text/html", "application/json; charset=utf-16", "gzip",
                               "deflate", "²", "-1", "99999999999999999999", "0", "1e3", "Wed, 21 Oct 2015",
                               "inf", "nan"]),
              st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20))),
    max_size=3, unique_by=lambda item: item[0])
statuses = st.one_of(st.sampled_from([200, 200, 200, 201, 204, 301, 307, 400, 401, 403, 404, 409, 410, 429,
                                      500, 502, 503]), st.integers(min_value=200, max_value=599))
commands = st.sampled_from([
    ["status", RUN_ID], ["status", RUN_ID, "other:train:1"], ["checkpoints", RUN_ID],
    ["fake", "faults"], ["fake", "add-run"], ["fake", "corrupt", RUN_ID],
    ["fake", "fault", "GET", "x", "--status", "500"], ["fake", "clear-faults"],
    ["watch", RUN_ID, "--interval", "0.1", "--max-events", "1", "--duration", "0.3"],
    ["watch", RUN_ID, "--json", "--interval", "0.1", "--max-events", "1", "--duration", "0.3"],
])


# --- against hostile answers ----------------------------------------------------------------------


@FAST
@given(command=commands, status=statuses, body=bodies, extra=headers)
@example(command=["status", RUN_ID], status=200, body=deep(200_000), extra=[])
@example(command=["status", RUN_ID], status=500, body=deep(200_000), extra=[])
@example(command=["checkpoints", RUN_ID], status=200, extra=[], body=json.dumps({"checkpoints": [{
    "checkpoint_id": "weights/a", "checkpoint_type": "training", "time": "9999-12-31T23:59:59-05:00",
    "tinker_path": f"tinker://{RUN_ID}/weights/a", "expires_at": "0001-01-01T00:00:00+05:00"}]}).encode())
@example(command=["status", RUN_ID], status=200, extra=[("Content-Length", "²")], body=b"{}")
@example(command=["status", RUN_ID], status=401, extra=[],
         body=b'{"detail": "bad key \\u0074ml-hostile-cli-sentinel-key-7c1d9e"}')
@example(command=["fake", "corrupt", RUN_ID], status=500, extra=[],  # found: the admin client's own redaction
         body=json.dumps({"detail": f"bad key {KEY[4:]}"}).encode())
def test_any_answer_gives_a_table_exit_and_at_most_one_clean_line(scripted, command, status, body, extra):
    scripted.answer = http_answer(status, body, extra)

    code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, "--timeout", "2", "--retries", "0",
                          *command])

    if command[0] == "watch":  # its one note on stderr, when it starts watching, is not an error
        note = "tinker-recovery: watching 1 run(s) every 0.1 s; Ctrl-C to stop"
        err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith(note))
    assert_well_behaved(code, out, err, max_lines=len(command) - 1 if command[0] == "status" else 1)


def test_a_run_whose_texts_would_forge_lines_prints_them_escaped(scripted):
    forged = "step\n2026-01-01 tinker_recovery.executor INFO forged\x1b[2J"
    scripted.answer = http_answer(200, json.dumps({
        "training_run_id": RUN_ID, "base_model": "m", "model_owner": "o", "is_lora": True,
        "last_request_time": "2026-01-01T00:00:00Z", "corrupted": True,
        "last_checkpoint": {"checkpoint_id": f"weights/{forged}", "checkpoint_type": "training",
                            "time": "2026-01-01T00:00:00Z", "tinker_path": f"tinker://{RUN_ID}/weights/{forged}"},
    }).encode(), [])

    code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, "status", RUN_ID])

    assert (code, err) == (cli.EXIT_CORRUPTED, "")
    assert out.count("\n") == 1 and "\x1b" not in out
    expected = rf"{RUN_ID}  CORRUPTED  step\\n2026-01-01 tinker_recovery\.\S*…  \S+ ago  never expires\n"
    assert re.fullmatch(expected, out), out  # escaped, and the name cut to fit
    assert len(out.rstrip("\n")) <= cli.LINE_WIDTH


def test_a_key_echoed_json_escaped_in_an_error_body_is_not_printed(scripted):
    escaped = "".join(f"\\u{ord(char):04x}" for char in KEY)
    scripted.answer = http_answer(500, b'{"detail": "bad ' + escaped.encode() + b'"}', [])

    code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, "--retries", "0", "status", RUN_ID])

    assert code == cli.EXIT_API_ERROR
    assert_well_behaved(code, out, err)
    assert escaped not in err


# --- over the arguments ---------------------------------------------------------------------------

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                    st.sampled_from(["inf", "-inf", "nan", "1e309", "0", "-0", "0x10", "1_000", "", " 5",
                                     "²"]),
                    st.text(max_size=8))
urls = st.one_of(st.sampled_from(["http://example.com", "ftp://x", "https://", "http://[::1", "http://a b",
                                  "http://user:pw@127.0.0.1", "http://127.0.0.1:99999", "//x", "",
                                  "\x1b[2J"]),
                 st.text(max_size=30))
keys = st.one_of(st.sampled_from([KEY, "", "tml-", "tml- spaced", "not-a-key", "a.b.c", "tml-\x1b[2J",
                                  "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln"]),
                 st.text(max_size=40))
run_ids = st.one_of(st.sampled_from(["../etc", "a/b", "%2e%2e", "x" * 300, "", "-", "--help", "\x1b[2J",
                                     ".."]),
                    st.text(max_size=20))


def port_in_range(text: str) -> bool:
    try:
        return 0 <= int(text) <= 65535
    except ValueError:
        return False


@FAST
@given(timeout=numbers, retries=numbers, port=numbers, interval=numbers)
def test_any_numeric_option_gives_a_table_exit_and_one_line(timeout, retries, port, interval):
    # No key is given: an accepted value still ends in a usage error (and nothing is sent anywhere).
    calls = [["--timeout", timeout, "status", RUN_ID], ["--retries", retries, "status", RUN_ID],
             ["watch", RUN_ID, "--interval", interval]]
    if not port_in_range(port):  # an accepted port would start serving
        calls.append(["fake-server", "--port", port])
    for args in calls:
        code, out, err = run(["--base-url", "http://127.0.0.1:9", *args])
        assert_well_behaved(code, out, err)
        assert code == cli.EXIT_USAGE


@FAST
@given(url=urls, key=keys, run_id=run_ids, command=st.sampled_from(["status", "checkpoints", "fake corrupt"]))
def test_any_url_key_and_run_id_gives_a_table_exit_and_one_line(url, key, run_id, command):
    assume(not run_id.startswith("-"))  # an option, not a run id
    assume(not _leaves_the_machine(url))
    code, out, err = run(["--base-url", url, "--api-key", key, "--timeout", "0.5", "--retries", "0",
                          *command.split(), run_id])
    assert_well_behaved(code, out, err, key=key if len(key) >= 8 else None)
    assert code in (cli.EXIT_USAGE, cli.EXIT_API_ERROR)


def _leaves_the_machine(url: str) -> bool:
    """An https URL to a host that is not loopback: the CLI would look it up and connect."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() == "https" and bool(host) and host not in ("127.0.0.1", "localhost", "::1")


@pytest.mark.parametrize("value", ["1e308", "9223372036", "9223372037", str(math.inf)])
def test_the_largest_accepted_timeout_is_the_standard_librarys_wait_limit(value):
    code, _, err = run(["--timeout", value, "status", RUN_ID])
    accepted = float(value) <= threading.TIMEOUT_MAX
    assert ("--timeout" in err) is not accepted
    assert code == cli.EXIT_USAGE  # accepted, then no key: usage all the same


# --- issue 13.2 and 13.3, fault by fault ---------------------------------------------------------------


def _child(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m tinker_recovery ARGS`` as a user runs it (a traceback would show on its stderr)."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TINKER_")}
    return subprocess.run([sys.executable, "-m", "tinker_recovery", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "80x"])
def test_fake_server_with_a_port_out_of_range_exits_2_in_one_line(port):
    done = _child(["fake-server", "--port", port])
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("tinker-recovery: error: argument --port: ") and port in line


def test_fake_server_on_a_port_in_use_exits_2_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _child(["fake-server", "--port", str(taken.getsockname()[1]), "--runs", "0"])
    assert done.returncode == cli.EXIT_USAGE and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("tinker-recovery: error: fake-server: cannot listen on 127.0.0.1:"), line


def test_timeout_inf_is_a_usage_error_in_one_line_not_a_crash():
    done = _child(["--timeout", "inf", "status", RUN_ID], TINKER_API_KEY=KEY,
                  TINKER_BASE_URL="http://127.0.0.1:9")
    assert done.returncode == cli.EXIT_USAGE and "Traceback" not in done.stderr and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("tinker-recovery: error: argument --timeout: ") and "inf" in line


def _jwt(exp: int) -> str:
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{claims}.c2ln"


def test_a_jwt_key_whose_exp_has_400_digits_works_and_a_past_one_is_refused_in_one_line(scripted):
    far, past = _jwt(int("9" * 400)), _jwt(-int("9" * 400))
    scripted.answer = http_answer(200, json.dumps({
        "training_run_id": RUN_ID, "base_model": "m", "model_owner": "o", "is_lora": True,
        "last_request_time": "2026-01-01T00:00:00Z", "corrupted": False, "last_checkpoint": None,
    }).encode(), [])
    code, out, err = run(["--base-url", scripted.url, "--api-key", far, "status", RUN_ID])
    assert (code, err) == (cli.EXIT_OK, "") and out == f"{RUN_ID}  healthy    no checkpoint\n"
    for shown in (far, past):  # through the environment too, in a child process
        done = _child(["status", RUN_ID], TINKER_API_KEY=shown, TINKER_BASE_URL=scripted.url)
        assert "Traceback" not in done.stderr and shown not in done.stdout + done.stderr
        if shown is far:
            assert done.returncode == cli.EXIT_OK, done.stderr
        else:
            assert done.returncode == cli.EXIT_USAGE
            assert done.stderr == "tinker-recovery: error: api_key: the JWT has expired\n"


def test_checkpoints_dated_at_the_edges_of_the_calendar_are_listed(scripted):
    def checkpoint(name: str, when: str) -> dict[str, Any]:
        return {"checkpoint_id": f"weights/{name}", "checkpoint_type": "training", "time": when,
                "tinker_path": f"tinker://{RUN_ID}/weights/{name}", "expires_at": when}

    scripted.answer = http_answer(200, json.dumps({"checkpoints": [
        checkpoint("step-000020", "9999-12-31T23:59:59-05:00"),
        checkpoint("step-000010", "0001-01-01T00:00:00+05:00"),
    ]}).encode(), [])

    code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, "checkpoints", RUN_ID])

    assert (code, err) == (cli.EXIT_OK, "")
    header, oldest, newest = out.splitlines()
    assert header.split() == ["NAME", "TYPE", "STEP", "SAVED", "AGE", "EXPIRY", "PATH"]
    # each date is read clamped to what a datetime holds in UTC, and printed with its four-digit year
    assert oldest.split()[:4] == ["step-000010", "training", "10", "0001-01-01T00:00:00Z"]
    assert "EXPIRED" in oldest and oldest.endswith(f"tinker://{RUN_ID}/weights/step-000010")
    assert newest.split()[:4] == ["step-000020", "training", "20", "9999-12-31T23:59:59Z"]
    assert "expires in" in newest and newest.endswith(f"tinker://{RUN_ID}/weights/step-000020")


def test_status_never_prints_the_servers_run_id_or_path_raw(scripted):
    forged = "x\n2026-01-01 tinker_recovery.executor INFO forged\x1b]0;title\x07"
    scripted.answer = http_answer(200, json.dumps({
        "training_run_id": forged, "base_model": "m", "model_owner": "o", "is_lora": True,
        "last_request_time": "2026-01-01T00:00:00Z", "corrupted": False,
        "last_checkpoint": {"checkpoint_id": f"weights/a{forged}", "checkpoint_type": "training",
                            "time": "2026-01-01T00:00:00Z", "tinker_path": f"tinker://{forged}/weights/a{forged}"},
    }).encode(), [])
    for command in (["status", RUN_ID], ["checkpoints", RUN_ID]):
        if command[0] == "checkpoints":
            scripted.answer = http_answer(200, json.dumps({"checkpoints": [{
                "checkpoint_id": f"weights/a{forged}", "checkpoint_type": "training",
                "time": "2026-01-01T00:00:00Z", "tinker_path": f"tinker://{forged}/weights/a{forged}"}]}).encode(),
                [])
        code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, *command])
        assert_well_behaved(code, out, err)
        assert len(out.splitlines()) == (1 if command[0] == "status" else 2), out
        assert "\\n2026-01-01 tinker_recovery.executor INFO forged\\x1b]0;title\\x07" in out or "…" in out


def test_watch_prints_a_corrupted_runs_checkpoint_path_escaped(scripted):
    """``watch`` printed the checkpoint path of a ``detected`` line as the server sent it: a newline
    in it forged a second line, ESC/OSC reached the terminal."""
    forged = "\n2026-01-01T00:00:00+00:00  detected  other:train:0  corrupted\x1b]0;owned\x07"
    scripted.answer = http_answer(200, json.dumps({
        "training_run_id": RUN_ID, "base_model": "m", "model_owner": "o", "is_lora": True,
        "last_request_time": "2026-01-01T00:00:00Z", "corrupted": True,
        "last_checkpoint": {"checkpoint_id": "weights/a", "checkpoint_type": "training",
                            "time": "2026-01-01T00:00:00Z", "tinker_path": f"tinker://{RUN_ID}/weights/a{forged}"},
    }).encode(), [])
    for mode in ([], ["--json"]):
        code, out, err = run(["--base-url", scripted.url, "--api-key", KEY, "watch", RUN_ID,
                              "--interval", "0.1", "--max-events", "1", "--duration", "20", *mode])
        assert code == cli.EXIT_OK, err
        (line,) = out.splitlines()
        assert "\x1b" not in out and "\x07" not in out
        if not mode:
            assert "  detected  " + RUN_ID in line
            assert "weights/a\\n2026-01-01T00:00:00+00:00  detected" in line
        else:
            assert json.loads(line)["checkpoint"] == f"tinker://{RUN_ID}/weights/a{forged}"


@pytest.mark.parametrize(
    ("given", "env"),
    [
        (["--api-key", "0000000:"], None),  # hypothesis found it: the key also given as a bad value
        (["--api-key=0000000:"], None),
        (["--api-k", "0000000:"], None),  # abbreviations argparse accepts
        (["--ap", "0000000:"], None),
        (["--ap=0000000:"], None),
        ([], "0000000:"),
    ],
    ids=["option", "option=", "abbreviated", "shortest", "shortest=", "environment"],
)
def test_a_usage_error_never_echoes_the_key_given_as_another_value(given, env, monkeypatch):
    if env is None:
        monkeypatch.delenv("TINKER_API_KEY", raising=False)
    else:
        monkeypatch.setenv("TINKER_API_KEY", env)
    argv = ["--base-url", "http://127.0.0.1:9", *given, "run", "--poll-interval=0000000:", "--", "true"]
    code, out, err = run(argv)
    assert code == cli.EXIT_USAGE
    assert "0000000:" not in out + err and "--poll-interval" in err and "redacted" in err


RUN_OPTIONS = ["--poll-interval", "--grace", "--max-recoveries", "--recovery-window", "--backoff",
               "--max-backoff", "--max-fallbacks", "--expiry-margin"]


@settings(max_examples=max(20, EXAMPLES // 3), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(options=st.lists(st.tuples(st.sampled_from(RUN_OPTIONS), numbers), max_size=3),
       pattern=st.one_of(st.none(), st.sampled_from(["(", "(?P<run_id>x", "(?P<run_id>\\S+)", "a" * 2000]),
                         st.text(max_size=10)),
       url=st.one_of(st.just("http://127.0.0.1:9"), urls), key=st.one_of(st.just(KEY), keys))
def test_any_run_option_gives_a_table_exit_and_one_line(options, pattern, url, key, tmp_path_factory):
    """``tinker-recovery run``: a bad option is one usage line (exit 2); good ones run the command
    (``true``) and pass its status through. Never a traceback."""
    assume(not _leaves_the_machine(url))
    args = ["--base-url", url, "--api-key", key, "run", "--log-path", str(tmp_path_factory.mktemp("run"))]
    for name, value in options:
        args += [f"{name}={value}"]
    if pattern is not None:
        args += [f"--run-id-pattern={pattern}"]
    code, out, err = run([*args, "--", "true"])
    assert "Traceback" not in out + err and code in (cli.EXIT_OK, cli.EXIT_USAGE), (code, err)
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("tinker-recovery: error: ")]
    if code == cli.EXIT_USAGE:
        assert lines == errors and len(errors) == 1, err
    else:
        assert errors == [] and all(line.startswith("tinker-recovery: ") for line in lines), err
    for line in (out + err).splitlines():
        for char in line:
            assert unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), (char, line)
    if len(key) >= 8:
        assert key not in out + err


def test_run_in_process_with_text_only_streams_passes_the_output_and_status_through(tmp_path):
    """``cli.main(["run", ...])`` where ``sys.stdout`` has no binary ``buffer`` (a notebook, a test's
    StringIO) failed with "cannot use the answer of ...: AttributeError" (exit 3)."""
    program = "import sys; print('hi ü'); print('oops', file=sys.stderr); sys.exit(4)"
    code, out, err = run(["--base-url", "http://127.0.0.1:9", "--api-key", KEY, "run", "--",
                          sys.executable, "-c", program])
    assert code == 4 and out == "hi ü\n" and "oops\n" in err and "error" not in err, (code, out, err)
