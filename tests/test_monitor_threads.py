"""The Monitor never hangs: real threads, real sockets on 127.0.0.1, a child process for exit.

No sleeps: waits are on Events with time-outs; every thread and server started here is stopped.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FakeService, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery import signals

KEY = "tml-" + "t" * 40


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (a hung service)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="test.silent", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(5)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def policy(**overrides: Any) -> tr.Policy:
    return tr.Policy(**{"enabled": True, "jitter": "none", "poll_interval_ms": 1_000, **overrides})


class Rest:
    """Runs read from a dict of answers (bool: corrupted; exception: raised); ``gates`` hold a run's polls."""

    def __init__(self, answers: dict[str, Any], gates: dict[str, threading.Event] | None = None) -> None:
        self.answers = answers
        self.gates = gates or {}

    def get_training_run(self, run_id: str, **_: Any) -> tr.TrainingRun:
        gate = self.gates.get(run_id)
        if gate is not None:
            gate.wait(20)
        answer = self.answers.get(run_id, False)
        if isinstance(answer, BaseException):
            raise answer
        return training_run(run_id, checkpoint(run_id, "step-000010"), corrupted=answer)

    def list_training_runs(self, limit: int = 20, offset: int = 0, **_: Any) -> Any:
        ids = sorted(self.answers)[offset : offset + limit]
        return [self.get_training_run(i) for i in ids], tr.Cursor(
            offset=offset, limit=limit, total_count=len(self.answers)
        )


def connect(signal: Any, receiver: Any) -> Any:
    signal.connect(receiver, weak=False)
    return receiver


def test_stop_returns_within_its_time_out_while_a_poll_hangs(silent: SilentServer) -> None:
    config = tr.Config(api_key=KEY, base_url=silent.base_url, max_retries=0)
    monitor = tr.Monitor(None, policy(), config, detect_only=True, poll_timeout_s=30.0)
    monitor.monitor_run("run-1", None)
    assert silent.accepted.wait(10)
    began = time.monotonic()
    monitor.stop(timeout=0.5)
    assert time.monotonic() - began < 1.5


def test_poll_once_returns_when_stop_runs_meanwhile(silent: SilentServer) -> None:
    config = tr.Config(api_key=KEY, base_url=silent.base_url, max_retries=0)
    monitor = tr.Monitor(None, policy(), config, detect_only=True, poll_timeout_s=30.0)
    monitor.monitor_run("run-1", None)
    assert silent.accepted.wait(10)
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(monitor.poll_once()), name="test.poll_once")
    waiter.start()
    monitor.stop(timeout=0.5)
    waiter.join(5)
    assert not waiter.is_alive() and len(result) == 1


@pytest.mark.parametrize("signal_name", ["detected", "poll_error"])
def test_stop_may_be_called_from_a_receiver(signal_name: str) -> None:
    answers: dict[str, Any] = {
        "run-1": True if signal_name == "detected" else tr.ServerError("x", status_code=500)
    }
    monitor = tr.Monitor(None, policy(), rest=Rest(answers), detect_only=True)  # type: ignore[arg-type]
    returned = threading.Event()

    def receiver(sender: Any, **payload: Any) -> None:
        monitor.stop(timeout=5)
        returned.set()

    signal = getattr(signals, signal_name)
    connect(signal, receiver)
    try:
        monitor.monitor_run("run-1", None)
        assert returned.wait(10)
    finally:
        signal.disconnect(receiver)
        monitor.stop(timeout=5)


@pytest.mark.parametrize("mode", ["per_run", "list"])
def test_a_blocking_detected_receiver_never_delays_another_runs_detection(mode: str) -> None:
    release, blocked, other_seen = threading.Event(), threading.Event(), threading.Event()
    rest = Rest({"run-a": True, "run-b": False})
    monitor = tr.Monitor(None, policy(), rest=rest, detect_only=True, poll_mode=mode)  # type: ignore[arg-type]

    def receiver(sender: Any, **payload: Any) -> None:
        if payload["run_id"] == "run-a":
            blocked.set()
            release.wait(20)
        else:
            other_seen.set()

    connect(signals.detected, receiver)
    try:
        monitor.monitor_run("run-a", None)
        monitor.monitor_run("run-b", None)
        assert blocked.wait(10)
        rest.answers["run-b"] = True
        assert monitor.poll_now("run-b")
        assert other_seen.wait(10)  # while run-a's receiver still blocks
    finally:
        release.set()
        signals.detected.disconnect(receiver)
        monitor.stop(timeout=5)


def test_a_blocking_poll_error_receiver_never_delays_detection() -> None:
    release, blocked, detected = threading.Event(), threading.Event(), threading.Event()
    rest = Rest({"run-a": tr.ServerError("x", status_code=500), "run-b": False})
    monitor = tr.Monitor(None, policy(), rest=rest, detect_only=True)  # type: ignore[arg-type]

    def on_error(sender: Any, **payload: Any) -> None:
        blocked.set()
        release.wait(20)

    connect(signals.poll_error, on_error)
    on_detected = connect(signals.detected, lambda sender, **payload: detected.set())
    try:
        monitor.monitor_run("run-a", None)
        assert blocked.wait(10)
        monitor.monitor_run("run-b", None)
        rest.answers["run-b"] = True
        monitor.poll_now("run-b")
        assert detected.wait(10)
    finally:
        release.set()
        signals.poll_error.disconnect(on_error)
        signals.detected.disconnect(on_detected)
        monitor.stop(timeout=5)


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt()])
def test_a_receiver_raising_base_exception_drops_nothing(
    raised: BaseException, recorder: Any, scheduler: Any
) -> None:
    def receiver(sender: Any, **payload: Any) -> None:
        raise raised

    connect(signals.detected, receiver)
    rest = Rest({"run-1": True, "restored:1": False})
    executor = tr.Executor(1, scheduler=scheduler).start()
    monitor = tr.Monitor(executor, policy(), rest=rest)  # type: ignore[arg-type]
    try:
        handle = monitor.monitor_run("run-1", FakeService())
        assert handle.wait_for_recovery(10).run_id == "run-1"
        assert handle.watching and monitor.watched == ["restored:1"]
        assert monitor._poller.thread is not None and monitor._poller.thread.is_alive()
    finally:
        signals.detected.disconnect(receiver)
        monitor.stop(timeout=5)
        executor.shutdown(timeout=5)


def test_many_threads_calling_public_methods_at_once() -> None:
    rest = Rest({f"run-{n}": False for n in range(20)})
    monitor = tr.Monitor(None, policy(), rest=rest, detect_only=True)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(index: int) -> None:
        try:
            start.wait(10)
            for n in range(20):
                run_id = f"run-{(n + index) % 20}"
                monitor.monitor_run(run_id, None)
                monitor.poll_now(run_id)
                if n % 3 == 0:
                    monitor.stop_monitoring(run_id)
            monitor.poll_once(timeout=10)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(i,), name=f"test.hammer-{i}") for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    monitor.stop(timeout=5)
    assert errors == [] and not any(thread.is_alive() for thread in threads)


def test_a_run_no_longer_watched_leaves_nothing_behind() -> None:
    rest = Rest({})
    monitor = tr.Monitor(None, policy(), rest=rest, detect_only=True)  # type: ignore[arg-type]

    class Client:
        pass

    refs = []
    for n in range(500):
        client = Client()
        refs.append(weakref.ref(client))
        monitor.monitor_run(f"run-{n}", None, training_client=client)
        assert monitor.stop_monitoring(f"run-{n}")
        del client
    monitor.poll_once(timeout=10)  # every command handled
    assert monitor._watches._watched == {}
    assert monitor._poller._states == {} and len(monitor._poller._schedule) == 0
    monitor.stop(timeout=5)
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), threading.TIMEOUT_MAX * 2, -1])
def test_bad_time_outs_of_stop_and_poll_once_are_refused(value: float) -> None:
    monitor = tr.Monitor(None, policy(), rest=Rest({}), detect_only=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        monitor.poll_once(timeout=value)
    with pytest.raises(ValueError, match="timeout"):
        monitor.stop(timeout=value)
    monitor.stop()


def test_hanging_polls_do_not_delay_interpreter_exit(silent: SilentServer) -> None:
    script = textwrap.dedent(f"""
        import sys
        import tinker_recovery as tr
        config = tr.Config(api_key={KEY!r}, base_url={silent.base_url!r}, max_retries=0)
        monitor = tr.Monitor(None, tr.Policy(poll_interval_ms=1000), config, detect_only=True,
                             poll_timeout_s=60)
        for n in range(4):
            monitor.monitor_run(f"run-{{n}}", None)
        print("watching", flush=True)
        sys.stdin.readline()  # the parent says when the polls hang
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "watching\n"
        assert silent.accepted.wait(10)
        began = time.monotonic()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0  # a poll stays hung for 60 s: exit does not wait for it
        assert time.monotonic() - began < 2.0
    finally:
        child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_the_service_gives_the_rest_access_and_a_second_host_is_refused() -> None:
    class Service(FakeService):
        _base_url = "http://127.0.0.1:9"
        _api_key = KEY

    monitor = tr.Monitor(None, policy(), detect_only=True)
    monitor.monitor_run("run-1", Service())
    assert monitor._poller.rest is not None and monitor._poller.rest.config.base_url == "http://127.0.0.1:9"
    monitor.stop(timeout=5)
    config = tr.Config(api_key=KEY, base_url="http://127.0.0.1:10")
    other = tr.Monitor(None, policy(), config, detect_only=True)
    differs = r"'127\.0\.0\.1:10' differs from the service's host '127\.0\.0\.1:9'"
    with pytest.raises(ValueError, match=differs):
        other.monitor_run("run-1", Service())
    other.stop(timeout=5)
