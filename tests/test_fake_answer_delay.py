"""FakeTinker's answer delay (``answer_delay_s`` / ``--answer-delay-ms``): every /api/v1 answer
waits like a remote service's round trip; admin answers do not; stop() cuts a waiting answer short."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time

import pytest

from tinker_recovery.testing import FakeTinker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _get(fake: FakeTinker, path: str) -> tuple[int, float]:
    """Status and elapsed seconds of one GET on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=30)
    try:
        started = time.monotonic()
        connection.request("GET", path, headers={"X-API-Key": fake.api_key})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def test_api_answers_wait_the_delay_and_admin_answers_do_not():
    with FakeTinker(answer_delay_s=0.3) as fake:
        run_id = fake.add_run()
        status, elapsed = _get(fake, f"/api/v1/training_runs/{run_id}")
        assert status == 200 and elapsed >= 0.3
        status, elapsed = _get(fake, f"/_fake/runs/{run_id}")
        assert status == 200 and elapsed < 0.3


def test_no_delay_by_default():
    with FakeTinker() as fake:
        run_id = fake.add_run()
        status, elapsed = _get(fake, f"/api/v1/training_runs/{run_id}")
        assert status == 200 and elapsed < 0.3  # generous: a loaded machine still answers in ms


@pytest.mark.parametrize("value", [-0.001, 60.5, float("nan"), True, "0.1", None])
def test_a_bad_delay_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match="answer_delay_s"):
        FakeTinker(answer_delay_s=value)


def test_stop_cuts_a_waiting_answer_short():
    fake = FakeTinker(answer_delay_s=30.0).start()
    run_id = fake.add_run()
    answered = threading.Event()
    outcome: list[object] = []

    def ask() -> None:
        try:
            outcome.append(_get(fake, f"/api/v1/training_runs/{run_id}"))
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)
        answered.set()

    asker = threading.Thread(target=ask, name="test.asker", daemon=True)
    asker.start()
    try:
        # the request is logged only after the delay, so wait until the server holds the connection
        deadline = time.monotonic() + 10
        while not fake._server._busy and time.monotonic() < deadline:  # type: ignore[union-attr]
            answered.wait(0.01)
    finally:
        started = time.monotonic()
        fake.stop()
    assert time.monotonic() - started < 10
    assert answered.wait(10)
    asker.join(10)
    assert not isinstance(outcome[0], tuple)  # the connection was closed without an answer


def test_command_line_option_reaches_the_server():
    command = [
        sys.executable,
        "-m",
        "tinker_recovery.testing.fake_server",
        "--port",
        "0",
        "--runs",
        "1",
        "--answer-delay-ms",
        "300",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        settings: dict[str, str] = {}
        assert child.stdout is not None
        while "seeded run" not in settings:
            line = child.stdout.readline()
            assert line, "the fake server exited early"
            name, sep, value = line.strip().partition("=")
            if sep:
                settings[name] = value
            elif line.startswith("seeded run "):
                settings["seeded run"] = line.split()[-1]
        host_port = settings["TINKER_BASE_URL"].removeprefix("http://")
        connection = http.client.HTTPConnection(host_port, timeout=30)
        started = time.monotonic()
        connection.request(
            "GET",
            f"/api/v1/training_runs/{settings['seeded run']}",
            headers={"X-API-Key": settings["TINKER_API_KEY"]},
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200 and time.monotonic() - started >= 0.3
    finally:
        child.terminate()
        child.wait(10)


def test_command_line_refuses_a_negative_delay():
    command = [
        sys.executable,
        "-m",
        "tinker_recovery.testing.fake_server",
        "--port",
        "0",
        "--answer-delay-ms",
        "-5",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "--answer-delay-ms" in done.stderr
