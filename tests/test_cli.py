"""The tinker-recovery command line, through its entry points (``python -m tinker_recovery``, the
console script, and ``cli.main``) against a FakeTinker started by each test."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinker_recovery import Config, RestClient, cli
from tinker_recovery.testing import FakeTinker

TIME_OUT_S = 30
SECRET = "tml-never-print-this-key-0123456789"
ERROR = "tinker-recovery: error:"


@pytest.fixture
def fake() -> Iterator[FakeTinker]:
    with FakeTinker() as server:
        yield server


@pytest.fixture(autouse=True)
def no_tinker_env(monkeypatch, tmp_path):
    """No ambient TINKER_* setting (never a real key) for in-process calls."""
    for key in [key for key in os.environ if key.startswith("TINKER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


def env_for(home: Path, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(HOME=str(home), TINKER_TELEMETRY="0", **settings)
    return env


def cli_run(args: list[str], home: Path, **settings: str) -> subprocess.CompletedProcess:
    """``python -m tinker_recovery ARGS`` in a clean environment."""
    return subprocess.run([sys.executable, "-m", "tinker_recovery", *args], env=env_for(home, **settings),
                          cwd=home, capture_output=True, text=True, timeout=TIME_OUT_S, check=False)


def connect(fake: FakeTinker) -> list[str]:
    return ["--base-url", fake.base_url, "--api-key", fake.api_key]


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("tinker-recovery: error: "), lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LineReader:
    """Reads a pipe's lines on a thread; ``next_line`` waits for one with a time-out."""

    def __init__(self, pipe) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), name="test.line_reader", daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self, timeout: float = 10.0) -> str:
        line = self._lines.get(timeout=timeout)
        assert line is not None, "the stream closed"
        return line

    def join(self) -> None:
        self._thread.join(TIME_OUT_S)
        assert not self._thread.is_alive()

    def rest(self) -> list[str]:
        """The remaining lines, once the stream has closed."""
        self.join()
        lines = []
        while (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        return lines


@pytest.fixture
def spawn(tmp_path):
    """Start ``python -m tinker_recovery ARGS`` with piped output; killed at teardown if still running."""
    started = []

    def start(args: list[str]) -> tuple[subprocess.Popen, LineReader, LineReader]:
        process = subprocess.Popen([sys.executable, "-m", "tinker_recovery", *args], env=env_for(tmp_path),
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        readers = (LineReader(process.stdout), LineReader(process.stderr))
        started.append((process, readers))
        return (process, *readers)

    yield start
    for process, readers in started:
        if process.poll() is None:
            process.kill()
        process.wait(TIME_OUT_S)
        for reader in readers:
            reader.join()
        process.stdout.close()
        process.stderr.close()


# --- status ---------------------------------------------------------------------------------------


def test_status_of_a_healthy_run_reads_the_env_and_exits_0(fake, monkeypatch, capsys):
    run_id = fake.add_run(checkpoints=2, ttl_seconds=3600)
    monkeypatch.setenv("TINKER_BASE_URL", fake.base_url)
    monkeypatch.setenv("TINKER_API_KEY", fake.api_key)

    assert cli.main(["status", run_id]) == cli.EXIT_OK

    out, err = capsys.readouterr()
    assert re.fullmatch(
        rf"{re.escape(run_id)}  healthy    step-000020  \d+s ago  expires in (59m\d\ds|1h00m)\n", out), out
    assert len(out.rstrip("\n")) <= cli.LINE_WIDTH and out.count(run_id) == 1
    assert err == ""


def test_status_exits_1_when_a_run_is_corrupted(fake, tmp_path):
    healthy, corrupted = fake.add_run(), fake.add_run(checkpoints=0)
    fake.corrupt(corrupted)

    result = cli_run([*connect(fake), "status", healthy, corrupted], tmp_path)

    assert result.returncode == cli.EXIT_CORRUPTED, result
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"{re.escape(healthy)}  healthy    step-000010  \d+s ago  never expires", lines[0])
    assert lines[1] == f"{corrupted}  CORRUPTED  no checkpoint"
    assert result.stderr == ""


def test_status_of_an_unknown_run_is_a_one_line_api_error(fake, tmp_path):
    known = fake.add_run()

    result = cli_run(["status", known, "nope:train:9", *connect(fake)], tmp_path)  # options after the command

    assert result.returncode == cli.EXIT_API_ERROR
    assert one_line_error(result.stderr) == f"{ERROR} run nope:train:9 not found at {fake.base_url}"
    assert result.stdout.startswith(f"{known}  healthy ")


def test_an_unreachable_url_is_a_one_line_api_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"

    result = cli_run(["--retries", "0", "status", "run:train:0"], tmp_path,
                     TINKER_BASE_URL=url, TINKER_API_KEY=SECRET)

    assert result.returncode == cli.EXIT_API_ERROR
    assert one_line_error(result.stderr).startswith(f"tinker-recovery: error: cannot reach {url}: ")
    assert SECRET not in result.stdout + result.stderr


def test_a_missing_key_is_a_one_line_usage_error(tmp_path, fake):
    result = cli_run(["--base-url", fake.base_url, "status", "run:train:0"], tmp_path)

    assert result.returncode == cli.EXIT_USAGE
    assert one_line_error(result.stderr) == f"{ERROR} no API key: pass --api-key or set TINKER_API_KEY"
    assert fake.requests == []


def test_a_malformed_key_or_url_is_a_usage_error_and_the_key_is_never_printed(fake, capsys):
    malformed_key = ["--api-key", "not-a-key " + SECRET, "--base-url", fake.base_url]
    assert cli.main([*malformed_key, "status", "r"]) == cli.EXIT_USAGE
    insecure_url = ["--api-key", SECRET, "--base-url", "http://example.com"]
    assert cli.main([*insecure_url, "status", "r"]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and SECRET not in err
    assert err.splitlines() == [
        f"{ERROR} api_key: contains whitespace, control or non-ASCII characters",
        (f"{ERROR} base_url: plain http to 'example.com' would send the API key unencrypted; "
         "use https, a loopback host, or --allow-insecure-http"),
    ]


def test_a_refused_key_is_an_api_error_that_does_not_show_the_key(fake, capsys):
    run_id = fake.add_run()

    assert cli.main(["--api-key", SECRET, "--base-url", fake.base_url, "status", run_id]) == 3

    out, err = capsys.readouterr()
    assert one_line_error(err) == (f"{ERROR} the API key was refused by {fake.base_url} (HTTP 401); "
                                   "check --api-key or TINKER_API_KEY")
    assert SECRET not in out + err


@pytest.mark.parametrize("args", [
    [],
    ["bogus"],
    ["status"],
    ["checkpoints", "a", "b"],
    ["watch", "run", "--interval", "0"],
    ["--retries", "-1", "status", "run"],
])
def test_bad_arguments_exit_2_with_one_line(args, capsys):
    assert cli.main(args) == cli.EXIT_USAGE
    line = one_line_error(capsys.readouterr().err)
    assert line.endswith("--help)"), line


def test_a_malformed_run_id_is_refused_before_any_request(fake, capsys):
    assert cli.main([*connect(fake), "status", "../etc"]) == cli.EXIT_USAGE
    assert "is not a valid training run id" in one_line_error(capsys.readouterr().err)
    assert fake.requests == []


def test_help_lists_the_commands_and_exit_codes(tmp_path):
    result = cli_run(["--help"], tmp_path)

    assert result.returncode == 0
    for word in ("status", "checkpoints", "watch", "fake-server", "--base-url", "--api-key", "3 API error"):
        assert word in result.stdout


def test_the_console_script_is_the_same_command(fake, tmp_path):
    script = Path(sys.executable).with_name("tinker-recovery")
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    run_id = fake.add_run()
    fake.corrupt(run_id)

    result = subprocess.run([str(script), *connect(fake), "status", run_id], env=env_for(tmp_path),
                            capture_output=True, text=True, timeout=TIME_OUT_S, check=False)

    assert result.returncode == cli.EXIT_CORRUPTED and f"{run_id}  CORRUPTED" in result.stdout


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoints_lists_each_with_its_step_age_expiry_and_path(fake, tmp_path):
    run_id = fake.add_run(checkpoints=2, ttl_seconds=7200)

    result = cli_run([*connect(fake), "checkpoints", run_id], tmp_path)

    assert result.returncode == cli.EXIT_OK, result
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "STEP", "SAVED", "AGE", "EXPIRY", "PATH"]
    assert len(rows) == 2
    for row, step in zip(rows, (10, 20), strict=True):
        saved = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
        path = f"tinker://{re.escape(run_id)}/weights/step-0000{step}"
        expiry = "expires in (1h59m|2h00m)"
        assert re.fullmatch(rf"step-0000{step}  training  {step}  +{saved}  \d+s +{expiry}  {path}", row), row


def test_checkpoints_of_a_run_without_any_and_of_an_unknown_run(fake, capsys):
    empty = fake.add_run(checkpoints=0)

    assert cli.main([*connect(fake), "checkpoints", empty]) == cli.EXIT_OK
    assert capsys.readouterr().out == f"run {empty} has no checkpoints\n"
    assert cli.main([*connect(fake), "checkpoints", "nope:train:0"]) == cli.EXIT_API_ERROR
    assert one_line_error(capsys.readouterr().err) == (
        f"{ERROR} run nope:train:0 not found at {fake.base_url}")


# --- watch ----------------------------------------------------------------------------------------


def test_watch_json_prints_poll_errors_and_detected_once_until_ctrl_c(fake, spawn):
    run_id, other = fake.add_run(), fake.add_run()
    process, stdout, stderr = spawn([*connect(fake), "watch", run_id, other, "--interval", "0.1", "--json"])
    assert stderr.next_line() == "tinker-recovery: watching 2 run(s) every 0.1 s; Ctrl-C to stop"

    fake.add_fault("GET", rf"^/api/v1/training_runs/{re.escape(run_id)}$", status=500, times=1)
    poll_error = json.loads(stdout.next_line())
    fake.corrupt(run_id)
    detected = json.loads(stdout.next_line())
    # Two more rounds (run_id is polled before other in each): run_id, still corrupted, is not reported again.
    fake.add_fault("GET", rf"^/api/v1/training_runs/{re.escape(other)}$", status=503, times=2)
    later = [json.loads(stdout.next_line()) for _ in range(2)]
    process.send_signal(signal.SIGINT)

    assert process.wait(TIME_OUT_S) == cli.EXIT_OK
    assert {k: poll_error[k] for k in ("event", "run_id", "attempt", "reason")} == {
        "event": "poll_error", "run_id": run_id, "attempt": 0, "reason": "poll failed: ServerError"}
    assert poll_error["error"].startswith(f"ServerError: GET /api/v1/training_runs/{run_id}: HTTP 500")
    assert {k: v for k, v in detected.items() if k != "time"} == {
        "event": "detected", "run_id": run_id, "attempt": 0, "lineage_id": run_id,
        "checkpoint": f"tinker://{run_id}/weights/step-000010"}
    assert [(entry["event"], entry["run_id"]) for entry in later] == [("poll_error", other)] * 2
    assert stderr.rest() == ["tinker-recovery: stopped"]
    assert all(json.loads(line)["run_id"] == other for line in stdout.rest())


def test_watch_in_process_stops_after_max_events(fake, capsys):
    run_id, other = fake.add_run(), fake.add_run()
    codes: list[int] = []
    args = [*connect(fake), "watch", other, run_id, "--interval", "0.1", "--max-events", "1",
            "--duration", "20"]
    thread = threading.Thread(target=lambda: codes.append(cli.main(args)))
    thread.start()
    fake.corrupt(run_id)
    thread.join(TIME_OUT_S)

    assert not thread.is_alive() and codes == [cli.EXIT_OK]
    line = capsys.readouterr().out
    assert re.fullmatch(rf"\S+  detected  {re.escape(run_id)}  corrupted; last checkpoint "
                        rf"tinker://{re.escape(run_id)}/weights/step-000010\n", line), line


def on_a_terminal(args: list[str], home: Path) -> tuple[int, list[str]]:
    """``python -m tinker_recovery ARGS`` with its stdout on a pseudo-terminal: exit status, lines."""
    import pty

    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "tinker_recovery", *args], env=env_for(home), cwd=home,
                               stdin=subprocess.DEVNULL, stdout=child, stderr=subprocess.DEVNULL)
    os.close(child)
    chunks = []
    try:
        while chunk := os.read(main, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(main)
    return process.wait(TIME_OUT_S), b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def test_watch_on_a_terminal_prints_a_heartbeat_per_quiet_interval_and_a_pipe_gets_none(fake, tmp_path):
    run_id = fake.add_run()
    args = [*connect(fake), "watch", run_id, "--interval", "0.2", "--duration", "1.1"]

    code, lines = on_a_terminal(args, tmp_path)
    piped = cli_run(args, tmp_path)

    assert code == cli.EXIT_OK
    assert len(lines) >= 3 and all(re.fullmatch(rf"{SECOND}  heartbeat  watching 1 run\(s\)", line)
                                   for line in lines), lines
    assert (piped.returncode, piped.stdout) == (cli.EXIT_OK, "")


def test_watch_on_a_terminal_skips_the_heartbeat_of_an_interval_that_printed_a_signal(fake, tmp_path):
    run_id = fake.add_run(corrupted=True)
    code, lines = on_a_terminal([*connect(fake), "watch", run_id, "--interval", "0.4", "--duration", "1"],
                                tmp_path)

    assert code == cli.EXIT_OK
    assert re.fullmatch(rf"{SECOND}  detected  {re.escape(run_id)}  corrupted; last checkpoint \S+", lines[0])
    # Three intervals (0.4, 0.4, 0.2 s; fewer on a loaded machine, never more): the first printed
    # `detected`, so its heartbeat is skipped and the quiet ones after it are printed.
    assert 1 <= len(lines[1:]) <= 2 and all("  heartbeat  " in line for line in lines[1:]), lines


def test_watch_of_an_unknown_run_fails_at_once(fake, capsys):
    assert cli.main([*connect(fake), "watch", "nope:train:0", "--interval", "0.1"]) == cli.EXIT_API_ERROR
    assert one_line_error(capsys.readouterr().err) == (
        f"{ERROR} run nope:train:0 not found at {fake.base_url}")


# --- fake-server ----------------------------------------------------------------------------------


def test_fake_server_prints_its_url_and_serves_until_ctrl_c(spawn, capsys):
    process, stdout, _ = spawn(["fake-server", "--port", "0", "--runs", "1"])
    first = stdout.next_line()
    url = re.fullmatch(r"FakeTinker serving at (http://127\.0\.0\.1:\d+) \(Ctrl-C to stop\)", first).group(1)
    assert stdout.next_line() == f"TINKER_BASE_URL={url}"
    key = stdout.next_line().removeprefix("TINKER_API_KEY=")
    seeded_run = stdout.next_line().removeprefix("seeded run ")

    assert cli.main(["--base-url", url, "--api-key", key, "status", "nope:train:0"]) == cli.EXIT_API_ERROR
    with RestClient(Config(api_key=key, base_url=url)) as rest:
        assert [run.training_run_id for run in rest.list_training_runs()[0]] == [seeded_run]
    status = cli.main(["--base-url", url, "--api-key", key, "status", seeded_run])
    process.send_signal(signal.SIGINT)

    assert status == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(f"{seeded_run}  healthy    step-000010  ")
    assert process.wait(TIME_OUT_S) == 0
    assert stdout.rest() == ["FakeTinker stopped"]
