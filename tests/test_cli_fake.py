"""``tinker-recovery fake ...`` and ``fake-server``: driving a running FakeTinker from the command line,
and the one-line errors of the connection options (``--allow-insecure-http``, ``--timeout``, ports)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tinker_recovery import cli
from tinker_recovery.testing import FakeTinker

TIME_OUT_S = 30
ERROR = "tinker-recovery: error: "


@pytest.fixture
def fake() -> Iterator[FakeTinker]:
    with FakeTinker() as server:
        yield server


@pytest.fixture(autouse=True)
def no_tinker_env(monkeypatch, tmp_path):
    for key in [key for key in os.environ if key.startswith("TINKER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))


def connect(fake: FakeTinker) -> list[str]:
    return ["--base-url", fake.base_url, "--api-key", fake.api_key]


def one_line_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(ERROR), lines[0]
    return lines[0][len(ERROR):]


def status_of(fake: FakeTinker, run_id: str) -> bool:
    return bool(fake.get_run(run_id)["corrupted"])


# --- fake corrupt / add-run ----------------------------------------------------------------------


def test_fake_corrupt_and_heal_flip_the_run_that_status_then_reads(fake, capsys):
    run_id = fake.add_run()

    assert cli.main(["fake", "corrupt", run_id, *connect(fake)]) == cli.EXIT_OK
    assert capsys.readouterr().out == f"run {run_id} corrupted\n"
    assert status_of(fake, run_id) is True
    assert cli.main([*connect(fake), "status", run_id]) == cli.EXIT_CORRUPTED
    capsys.readouterr()

    assert cli.main([*connect(fake), "fake", "corrupt", "--heal", run_id]) == cli.EXIT_OK
    assert capsys.readouterr().out == f"run {run_id} healthy\n"
    assert status_of(fake, run_id) is False


def test_fake_corrupt_of_an_unknown_run_is_a_one_line_api_error(fake, capsys):
    assert cli.main([*connect(fake), "fake", "corrupt", "nope:train:7"]) == cli.EXIT_API_ERROR
    message = one_line_error(capsys.readouterr().err)
    assert message.startswith("POST /_fake/runs/nope%3Atrain%3A7/corrupt: HTTP 404"), message


def test_fake_corrupt_refuses_a_malformed_run_id_before_any_request(fake, capsys):
    assert cli.main([*connect(fake), "fake", "corrupt", "../runs"]) == cli.EXIT_USAGE
    assert "is not a valid training run id" in one_line_error(capsys.readouterr().err)
    assert fake.requests == []


def test_fake_add_run_prints_only_the_new_id(fake, capsys):
    assert cli.main([*connect(fake), "fake", "add-run", "--checkpoints", "2", "--corrupted"]) == 0

    run_id = capsys.readouterr().out.strip()
    assert run_id in fake.run_ids
    assert status_of(fake, run_id) is True
    assert [c["checkpoint_id"] for c in fake.list_checkpoints(run_id)] == [
        "weights/step-000010", "weights/step-000020"]


def test_a_wrong_key_for_the_fake_says_which_key_to_pass(fake, capsys):
    secret = "tml-this-is-not-the-fakes-key-000000"
    assert cli.main(["--base-url", fake.base_url, "--api-key", secret, "fake", "faults"]) == 3

    out, err = capsys.readouterr()
    assert one_line_error(err) == (f"the API key was refused by {fake.base_url} (HTTP 401); pass the key "
                                   "fake-server printed (--api-key or TINKER_API_KEY)")
    assert secret not in out + err


# --- fake fault / faults / clear-faults ----------------------------------------------------------


def test_fake_fault_answers_the_next_matching_requests_then_is_used_up(fake, capsys):
    run_id = fake.add_run()
    args = [*connect(fake), "fake", "fault", "get", "^/api/v1/training_runs/",
            "--status", "503", "--times", "2"]

    assert cli.main(args) == cli.EXIT_OK
    assert capsys.readouterr().out == "fault 1: GET ^/api/v1/training_runs/ -> HTTP 503, 2 time(s) left\n"
    url = f"{fake.base_url}/api/v1/training_runs/{run_id}"
    codes = [requests.get(url, headers={"X-API-Key": fake.api_key}, timeout=10).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_fake_fault_with_every_option_and_the_listing(fake, capsys):
    assert cli.main([*connect(fake), "fake", "fault", "ANY", "/checkpoints", "--status", "429",
                     "--retry-after", "2", "--probability", "0.5"]) == 0
    assert cli.main([*connect(fake), "fake", "fault", "POST", "create_model", "--drop"]) == 0
    assert cli.main([*connect(fake), "fake", "fault", "*", "x", "--latency", "0.25", "--malformed"]) == 0
    capsys.readouterr()

    assert cli.main([*connect(fake), "fake", "faults"]) == cli.EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "fault 1: ANY /checkpoints -> HTTP 429, Retry-After 2.0 s, probability 0.5, every time",
        "fault 2: POST create_model -> connection dropped, every time",
        "fault 3: ANY x -> 0.25 s late, malformed body, every time",
    ]
    rules = fake.faults
    first = rules[0]
    assert (first.method, first.status, first.retry_after_s, first.probability) == (None, 429, 2.0, 0.5)
    assert (rules[1].method, rules[1].drop) == ("POST", True)
    assert (rules[2].latency_s, rules[2].malformed) == (0.25, True)

    assert cli.main([*connect(fake), "fake", "clear-faults"]) == cli.EXIT_OK
    assert cli.main([*connect(fake), "fake", "faults"]) == cli.EXIT_OK
    assert capsys.readouterr().out == "faults cleared\nno faults\n"
    assert fake.faults == []


def test_a_fault_the_fake_refuses_is_an_api_error_with_its_detail(fake, capsys):
    # --drop with --status: the fake refuses the combination (400), the CLI shows its reason
    assert cli.main([*connect(fake), "fake", "fault", "GET", "x", "--drop", "--status", "500"]) == 3
    assert one_line_error(capsys.readouterr().err) == (
        "POST /_fake/faults: HTTP 400: drop cannot be combined with status or malformed")
    assert fake.faults == []


@pytest.mark.parametrize(("args", "fragment"), [
    (["GET", "(unclosed", "--status", "500"], "PATH_REGEX '(unclosed' is not a regular expression"),
    (["GET", "x", "--status", "700"], "must be in 100..599"),
    (["GET", "x", "--times", "0"], "must be in 1..1000000"),
    (["GET", "x", "--probability", "1.5"], "must be in (0, 1]"),
    (["GET", "x", "--latency", "nan"], "must be > 0 and at most"),
    (["G E", "x", "--drop"], "expected an HTTP method"),
])
def test_bad_fault_arguments_are_usage_errors_sent_nowhere(fake, capsys, args, fragment):
    assert cli.main([*connect(fake), "fake", "fault", *args]) == cli.EXIT_USAGE
    assert fragment in one_line_error(capsys.readouterr().err)
    assert fake.requests == [] and fake.faults == []


# --- connection options ---------------------------------------------------------------------------


def test_plain_http_to_another_host_names_the_cli_flag_and_the_flag_lets_it_through(capsys):
    key = "tml-cli-insecure-test-key-00000000"
    url = "http://192.0.2.1:9"  # TEST-NET-1: never answers
    assert cli.main(["--api-key", key, "--base-url", url, "status", "r:train:0"]) == cli.EXIT_USAGE
    message = one_line_error(capsys.readouterr().err)
    assert message.endswith("use https, a loopback host, or --allow-insecure-http")

    code = cli.main(["--api-key", key, "--base-url", url, "--allow-insecure-http", "--timeout", "0.2",
                     "--retries", "0", "status", "r:train:0"])

    assert code == cli.EXIT_API_ERROR  # accepted: the request went out and could not be answered
    out, err = capsys.readouterr()
    assert one_line_error(err).startswith("cannot reach http://192.0.2.1:9")
    assert key not in out + err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "1e300", "ten", ""])
def test_a_timeout_that_no_wait_accepts_is_a_usage_error(value, capsys):
    assert cli.main(["--timeout", value, "status", "r:train:0"]) == cli.EXIT_USAGE
    assert "--timeout" in one_line_error(capsys.readouterr().err)


def test_retries_are_bounded(capsys):
    assert cli.main(["--retries", str(10**40), "status", "r"]) == cli.EXIT_USAGE
    assert "must be in 0..100" in one_line_error(capsys.readouterr().err)


def test_a_jwt_key_with_a_huge_expiry_is_one_line_and_not_printed(capsys):
    import base64
    import json

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    huge = json.loads("{\"exp\": " + "9" * 400 + "}")
    key = f"{part({'alg': 'none'})}.{part(huge)}.c2ln"

    code = cli.main(["--api-key", key, "--base-url", "http://127.0.0.1:9", "status", "r:train:0"])

    out, err = capsys.readouterr()
    assert code in (cli.EXIT_USAGE, cli.EXIT_API_ERROR)
    one_line_error(err)
    assert key not in out + err


# --- fake-server as a process ---------------------------------------------------------------------


def env_for(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(HOME=str(home), TINKER_TELEMETRY="0")
    return env


def run_cli(args: list[str], home: Path, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinker_recovery", *args], env={**env_for(home), **settings},
                          cwd=home, capture_output=True, text=True, timeout=TIME_OUT_S, check=False)


def test_fake_server_with_a_port_out_of_range_exits_2_with_one_line(tmp_path):
    result = run_cli(["fake-server", "--port", "99999"], tmp_path)

    assert result.returncode == cli.EXIT_USAGE
    assert one_line_error(result.stderr) == (
        "argument --port: must be in 0..65535, got 99999 (see tinker-recovery fake-server --help)")
    assert result.stdout == ""


@pytest.mark.parametrize("port", ["65536", "-1", "http", "1e3", ""])
def test_any_port_outside_0_to_65535_is_a_usage_error(port, capsys):
    assert cli.main(["fake-server", "--port", port]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert "argument --port: " in one_line_error(err) and out == ""


def test_fake_server_on_a_port_in_use_exits_2_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_cli(["fake-server", "--port", str(port)], tmp_path)

    assert result.returncode == cli.EXIT_USAGE
    assert one_line_error(result.stderr).startswith(f"fake-server: cannot listen on 127.0.0.1:{port}: ")


def test_the_readme_session_fake_server_then_fake_corrupt_then_status(tmp_path):
    """fake-server seeds a run by default; `fake corrupt` with the printed settings; `status` exits 1."""
    server = subprocess.Popen([sys.executable, "-m", "tinker_recovery", "fake-server", "--port", "0"],
                              env=env_for(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline().rstrip("\n") for _ in range(4)]
        assert re.fullmatch(r"FakeTinker serving at http://127\.0\.0\.1:\d+ \(Ctrl-C to stop\)", banner[0])
        settings = dict(line.split("=", 1) for line in banner[1:3])
        assert sorted(settings) == ["TINKER_API_KEY", "TINKER_BASE_URL"]
        run_id = banner[3].removeprefix("seeded run ")

        corrupt = run_cli(["fake", "corrupt", run_id], tmp_path, **settings)
        status = run_cli(["status", run_id], tmp_path, **settings)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=TIME_OUT_S)

    assert (corrupt.returncode, corrupt.stdout, corrupt.stderr) == (0, f"run {run_id} corrupted\n", "")
    assert status.returncode == cli.EXIT_CORRUPTED
    assert status.stdout.startswith(f"{run_id}  CORRUPTED  step-000010  "), status.stdout
    assert server.returncode == 0 and out == "FakeTinker stopped\n" and err == ""


def test_fake_server_corrupt_after_saves_is_announced_and_a_bad_count_is_a_usage_error(tmp_path):
    server = subprocess.Popen(
        [sys.executable, "-m", "tinker_recovery", "fake-server", "--port", "0", "--runs", "0",
         "--corrupt-after-saves", "1"],
        env=env_for(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline().rstrip("\n") for _ in range(4)]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=TIME_OUT_S)
    assert banner[3] == (
        "each new training run reads corrupted right after its first save_state (--corrupt-after-saves 1)"
    )

    result = run_cli(["fake-server", "--port", "0", "--corrupt-after-saves", "0"], tmp_path)
    assert result.returncode == cli.EXIT_USAGE
    assert "--corrupt-after-saves" in one_line_error(result.stderr)
