"""The Monitor never hangs: real threads, real sockets on 127.0.0.1, a child process for exit.

No sleeps: waits are on Events with time-outs; every thread and server started here is stopped.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal as os_signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeService, checkpoint, training_run
from hostile_server import http_answer, scripted_server

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


@pytest.mark.parametrize("how", ["return", "sigint"])
def test_hanging_polls_do_not_delay_interpreter_exit(silent: SilentServer, how: str) -> None:
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
        if how == "sigint":  # Ctrl-C while polls hang (11.3)
            child.send_signal(os_signal.SIGINT)
        else:
            child.stdin.write("\n")
            child.stdin.flush()
        code = child.wait(10)  # a poll stays hung for 60 s: exit does not wait for it
        assert time.monotonic() - began < 2.0
        assert (code == 0) == (how == "return"), code
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


# --- issue 11.1 in the Monitor: drip-fed answers are time-outs, never a blind monitor -------------

DRIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"


def run_json(run_id: str, corrupted: bool) -> bytes:
    return (
        f'{{"training_run_id": "{run_id}", "base_model": "m", "model_owner": "o", "is_lora": false,'
        f' "last_request_time": "2026-01-01T00:00:00Z", "corrupted": {str(corrupted).lower()}}}'
    ).encode()


def test_drip_fed_polls_time_out_and_never_stop_another_runs_detection() -> None:
    # Two runs whose GET drips its body a byte every 0.5 s hold both poll workers
    # (poll_concurrency=2): each poll ends at its 1 s deadline as a time-out, and a third run is
    # still polled and detected.
    detected, timed_out = threading.Event(), threading.Event()
    reasons: list[tuple[str, str]] = []

    def on_error(sender: Any, **payload: Any) -> None:
        reasons.append((payload["run_id"], payload["reason_class"]))
        if payload["reason_class"] == "timeout":
            timed_out.set()

    def on_detected(sender: Any, **payload: Any) -> None:
        if payload["run_id"] == "run-c":
            detected.set()

    connect(signals.poll_error, on_error)
    connect(signals.detected, on_detected)
    with scripted_server() as server:
        server.answer(
            http_answer(404, b"{}"),
            {"/api/v1/training_runs/run-c": http_answer(200, run_json("run-c", True))},
        )
        server.drip(
            DRIP_HEAD, b" " * 500, 0.5, only={"/api/v1/training_runs/drip-a", "/api/v1/training_runs/drip-b"}
        )
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=1.0, max_retries=0)
        monitor = tr.Monitor(
            None,
            policy(),
            config,
            detect_only=True,
            poll_concurrency=2,
            poll_timeout_s=1.0,
            poll_mode="per_run",
        )
        try:
            monitor.monitor_run("drip-a", None)
            monitor.monitor_run("drip-b", None)
            assert server.wait_requests(1, "/api/v1/training_runs/drip-a")
            assert server.wait_requests(1, "/api/v1/training_runs/drip-b")  # both workers are held
            began = time.monotonic()
            monitor.monitor_run("run-c", None)
            assert detected.wait(10), reasons
            assert time.monotonic() - began < 3.0  # the fault: minutes (the drip's 250 s)
            assert timed_out.wait(10), reasons  # a drip-fed poll past its deadline is a time-out
            assert {run for run, kind in reasons if kind == "timeout"} <= {"drip-a", "drip-b"}
        finally:
            monitor.stop(timeout=5)
            signals.poll_error.disconnect(on_error)
            signals.detected.disconnect(on_detected)


def test_a_drip_fed_listing_never_stops_detection() -> None:
    # list mode: the listing drips; that cycle is read run by run, so the corrupted run is detected.
    detected = threading.Event()
    on_detected = connect(signals.detected, lambda sender, **payload: detected.set())
    with scripted_server() as server:
        server.answer(
            http_answer(404, b"{}"),
            {"/api/v1/training_runs/run-c": http_answer(200, run_json("run-c", True))},
        )
        server.drip(DRIP_HEAD, b" " * 500, 0.5, only={"/api/v1/training_runs"})
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=1.0, max_retries=0)
        monitor = tr.Monitor(None, policy(), config, detect_only=True, poll_timeout_s=1.0, poll_mode="list")
        try:
            began = time.monotonic()
            monitor.monitor_run("run-c", None)
            assert detected.wait(10)
            assert time.monotonic() - began < 4.0  # the fault: never (the listing held every detection)
            assert server.wait_requests(1, "/api/v1/training_runs")  # it did try the listing first
        finally:
            monitor.stop(timeout=5)
            signals.detected.disconnect(on_detected)


# --- issue 11.6: the README says on which thread each signal is sent ------------------------------


EVENTS = [signal.name.rsplit(".", 1)[1] for signal in signals.ALL]


def readme_threads() -> dict[str, str]:
    """The README's signal table: signal name -> its "sent on" cell."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    cells: dict[str, str] = {}
    for line in readme.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) >= 4 and parts[1].strip("`") in EVENTS and parts[1].startswith("`"):
            cells[parts[1].strip("`")] = parts[2]
    return cells


def test_signals_are_sent_on_the_threads_the_readme_names(scheduler: Any) -> None:
    cells = readme_threads()
    assert set(cells) == set(EVENTS)
    seen: list[tuple[str, str, str]] = []
    receivers = []
    for signal in signals.ALL:
        event = signal.name.rsplit(".", 1)[1]
        receivers.append(
            connect(
                signal,
                lambda sender, _e=event, **p: seen.append((_e, p["run_id"], threading.current_thread().name)),
            )
        )
    rest = Rest({"run-1": True, "run-2": tr.ServerError("x", status_code=500), "restored:2": False})
    gate = threading.Event()
    try:
        with tr.Executor(1) as executor:
            monitor = tr.Monitor(executor, policy(max_attempts=2, backoff_ms=10), rest=rest)  # type: ignore[arg-type]
            handle = monitor.monitor_run("run-1", FakeService([tr.ServerError("y", status_code=503)]))
            monitor.monitor_run("run-2", FakeService())
            assert handle.wait_for_recovery(10).new_run_id == "restored:2"
            monitor.stop(timeout=5)
        cut = tr.Executor(1, scheduler=scheduler).start()  # recoveries cut short by shutdown()
        hung = FakeService(gate=gate)
        cp = checkpoint("run-9", "step-000010")
        running = cut.recover("run-9", hung, policy(), last_checkpoint=cp)
        hung.wait_active(1)
        cut.recover("run-10", hung, policy(), last_checkpoint=cp)  # queued behind the hung one
        cut.shutdown(timeout=0.5)
        assert isinstance(running.exception(5), tr.Shutdown)
    finally:
        gate.set()
        for signal, receiver in zip(signals.ALL, receivers, strict=True):
            signal.disconnect(receiver)
    threads: dict[str, set[str]] = {}
    for event, _run_id, thread in seen:
        threads.setdefault(event, set()).add(thread)
    assert (
        threads["detected"] == {"tinker_recovery.monitor.detect"}
        and "`tinker_recovery.monitor.detect`" in cells["detected"]
    )
    assert (
        threads["poll_error"] == {"tinker_recovery.monitor.notify"}
        and "`tinker_recovery.monitor.notify`" in cells["poll_error"]
    )
    for event in ("started", "checkpoint_selected", "client_created", "completed"):
        assert cells[event].startswith("the executor worker"), cells[event]
        assert all(name.startswith("tinker_recovery.executor.worker") for name in threads[event]), threads
    main = threading.current_thread().name
    assert "shutdown`'s caller" in cells["failed"] and cells["exhausted"] == "as `failed`"
    # the queued request is cut short by shutdown's caller; the running one by its worker
    queued = [(e, t) for e, r, t in seen if r == "run-10"]
    assert [e for e, _ in queued] == ["failed", "exhausted"] and queued[0][1] == queued[1][1]
    assert queued[0][1] in (main, "tinker_recovery.executor.dispatch"), queued
    assert "`tinker_recovery.executor.dispatch`" in cells["failed"]
    assert {t for e, r, t in seen if r == "run-9"} == {"tinker_recovery.executor.worker_0"}


# --- issue 11.5: the public methods may be called from any receiver -------------------------------


@pytest.mark.parametrize(
    ("signal_name", "method"),
    [
        ("detected", "stop_monitoring"),
        ("detected", "poll_now"),
        ("poll_error", "stop_monitoring"),
        ("poll_error", "poll_now"),
        ("completed", "stop"),
        ("completed", "stop_monitoring"),
        ("completed", "poll_now"),
    ],
)
def test_stop_monitoring_poll_now_and_stop_from_a_receiver_return(signal_name: str, method: str) -> None:
    answers: dict[str, Any] = {
        "run-1": tr.ServerError("x", status_code=500) if signal_name == "poll_error" else True,
        "restored:1": False,
    }
    returned = threading.Event()
    box: dict[str, Any] = {}

    def receiver(sender: Any, **payload: Any) -> None:
        monitor = box["monitor"]
        if method == "stop":
            monitor.stop(timeout=5)
        else:
            getattr(monitor, method)(payload["run_id"])
        returned.set()

    signal = getattr(signals, signal_name)
    connect(signal, receiver)
    executor = tr.Executor(1).start() if signal_name == "completed" else None
    monitor = box["monitor"] = tr.Monitor(
        executor,
        policy(),
        rest=Rest(answers),  # type: ignore[arg-type]
        detect_only=executor is None,
    )
    try:
        monitor.monitor_run("run-1", FakeService() if executor else None)
        assert returned.wait(10)
        monitor.poll_once(timeout=5)  # the monitor still answers (or is stopped) after the call
    finally:
        signal.disconnect(receiver)
        monitor.stop(timeout=5)
        if executor is not None:
            executor.shutdown(timeout=5)


# --- issue 11.4 in the Monitor: a BaseException from the create call leaves the handle right -------


@pytest.mark.parametrize("raised", [KeyboardInterrupt("in create"), SystemExit(2), GeneratorExit()])
def test_a_base_exception_from_the_create_call_leaves_no_run_pending_and_the_handle_right(
    raised: BaseException, recorder: Any
) -> None:
    class Raising(FakeService):
        def create_training_client_from_state_with_optimizer(self, path: str) -> Any:
            raise raised

    rest = Rest({"run-1": True, "restored:1": False})
    with tr.Executor(1) as executor:
        monitor = tr.Monitor(executor, policy(), rest=rest)  # type: ignore[arg-type]
        try:
            handle = monitor.monitor_run("run-1", Raising())
            recorder.wait_for("exhausted")
            assert handle.wait(10)  # settled: never pending for ever
            assert isinstance(handle.error, tr.RecoveryError) and handle.error.__cause__ is raised
            assert not handle.recovering and not handle.watching and monitor.watched == []
            with pytest.raises(tr.RecoveryError):
                handle.wait_for_recovery(timeout=0)
            assert executor.join(10) and executor.pending == []
            assert recorder.payloads("exhausted")[0]["reason_class"] == "interrupted"
            again = monitor.monitor_run("run-1", FakeService())  # watched again: not AlreadyPending
            assert again.wait_for_recovery(10).new_run_id == "restored:1"
        finally:
            monitor.stop(timeout=5)


# --- issue 12.8: a lineage recovered 1,000 times keeps a bounded history ---------------------------


def test_a_lineage_recovered_1000_times_through_the_monitor_keeps_a_bounded_number_of_clients() -> None:
    refs: list[weakref.ref[Any]] = []

    class Tracked(FakeService):
        def _create(self, kind: str, path: str) -> Any:
            client = super()._create(kind, path)
            refs.append(weakref.ref(client))
            return client

    class Corruptible(Rest):
        def get_training_run(self, run_id: str, **_: Any) -> tr.TrainingRun:
            return training_run(run_id, checkpoint(run_id.replace(":", "-"), "step-000010"), corrupted=True)

    rest = Corruptible({})
    with tr.Executor(1) as executor:
        monitor = tr.Monitor(
            executor,
            policy(max_recoveries=10_000),
            rest=rest,
            clock=tr.ManualClock(),  # type: ignore[arg-type]
        )
        try:
            handle = monitor.monitor_run("run-0", Tracked(), training_client=object())
            for _ in range(1_000):
                recovery = handle.wait_for_recovery(10)
                assert handle.take_recovery() is recovery
                monitor.check(handle.run_id)  # the restored run reads corrupted too: recover it again
            del recovery
            assert handle.recovery_count >= 1_000 and len(handle.recoveries) == handle.HISTORY_LIMIT
            gc.collect()
            alive = sum(ref() is not None for ref in refs)
            assert alive <= handle.HISTORY_LIMIT + 2, alive  # the handle's history and the newest client
        finally:
            monitor.stop(timeout=5)


# --- issue 12.6 and 12.7 over real HTTP: odd listing items, the server's pace -----------------------


@pytest.mark.parametrize(
    "odd",
    [
        {
            "training_run_id": "not-mine",
            "base_model": "m",
            "model_owner": "o",
            "is_lora": False,
            "last_request_time": "2026-01-01T00:00:00",
            "corrupted": False,
        },  # no time zone
        {"training_run_id": "not-mine", "corrupted": "perhaps"},  # does not parse
        {"training_run_id": 7},
        "not an object",
    ],
    ids=["zone-less-time", "bad-corrupted", "bad-id", "not-an-object"],
)
def test_an_odd_item_in_a_listing_never_blinds_list_mode(odd: Any) -> None:
    import json

    detected = threading.Event()
    errors: list[str] = []
    on_detected = connect(signals.detected, lambda sender, **p: detected.set())
    on_error = connect(signals.poll_error, lambda sender, **p: errors.append(p["reason"]))
    page = {
        "training_runs": [odd, json.loads(run_json("run-b", True))],
        "cursor": {"offset": 0, "limit": 100, "total_count": 2},
    }
    with scripted_server() as server:
        server.answer(
            http_answer(404, b"{}"),
            {
                "/api/v1/training_runs": http_answer(200, json.dumps(page).encode()),
                "/api/v1/training_runs/run-b": http_answer(200, run_json("run-b", True)),
            },
        )
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2.0, max_retries=0)
        monitor = tr.Monitor(None, policy(), config, detect_only=True, poll_mode="list")
        try:
            monitor.monitor_run("run-b", None)
            assert detected.wait(10)
            assert server.wait_requests(1, "/api/v1/training_runs")
            assert errors == []
        finally:
            monitor.stop(timeout=5)
            signals.detected.disconnect(on_detected)
            signals.poll_error.disconnect(on_error)


@pytest.mark.parametrize("mode", ["per_run", "list"])
def test_a_429_with_retry_after_over_http_defers_the_next_poll(mode: str) -> None:
    # 12.7: polls answered 429 with Retry-After: 3 were repeated at the poll interval (100 ms).
    clock = tr.ManualClock()
    limited = http_answer(429, b'{"detail": "slow down"}', {"Retry-After": "3"})
    failed = threading.Event()
    on_error = connect(signals.poll_error, lambda sender, **p: failed.set())
    with scripted_server() as server:
        server.answer(limited)
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2.0, max_retries=0)
        monitor = tr.Monitor(
            None, tr.Policy(poll_interval_ms=100), config, detect_only=True, clock=clock, poll_mode=mode
        )
        try:
            monitor.monitor_run("run-1", None)
            assert failed.wait(10)
            clock.wait_for_deadline(1003.0)  # the monitor's next wake: the Retry-After, not 100 ms
            for _ in range(29):
                clock.advance(0.1)
            clock.wait_for_deadline(1003.0)  # it woke, found nothing due, and waits again
            assert len(server.requests) == 1
            clock.advance(0.1)
            assert server.wait_requests(2)
        finally:
            monitor.stop(timeout=5)
            signals.poll_error.disconnect(on_error)


def test_a_listing_whose_total_keeps_growing_ends_within_its_page_bound() -> None:
    # 11.8: a server whose total_count keeps growing was read page after page for ever by one
    # listing; now one listing reads at most max_pages (1,000) pages, then the run it did not
    # return is polled alone.
    import json

    from tinker_recovery.poll_settings import PollSettings

    page = {"training_runs": [], "cursor": {"offset": 0, "limit": 100, "total_count": 10**12}}
    with scripted_server() as server:
        server.answer(
            http_answer(200, json.dumps(page).encode()),
            {"/api/v1/training_runs/run-1": http_answer(200, run_json("run-1", False))},
        )
        config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2.0, max_retries=0)
        monitor = tr.Monitor(
            None, policy(), config, detect_only=True, poll_mode="list", clock=tr.ManualClock()
        )
        try:
            monitor.monitor_run("run-1", None)
            assert server.wait_requests(1, "/api/v1/training_runs/run-1", timeout=60)
            monitor.stop(timeout=5)
            pages = sum(r.startswith(b"GET /api/v1/training_runs?") for r in server.requests)
            assert 1 <= pages <= PollSettings(interval_s=1.0, timeout_s=1.0).max_pages, pages
        finally:
            monitor.stop(timeout=5)


def test_auto_mode_on_a_backend_without_the_list_endpoint_drops_no_run(caplog: Any) -> None:
    # 12.6: GET /training_runs answering 404 dropped every watched run after max_poll_errors polls
    # (auto lists from 20 watched runs). Now the monitor turns per-run, says so once, drops nothing.
    import logging

    from tinker_recovery.testing import FakeTinker

    detected = threading.Event()
    on_detected = connect(signals.detected, lambda sender, **p: detected.set())
    with FakeTinker(seed=8) as fake:
        runs = [fake.add_run() for _ in range(25)]
        fake.add_fault("GET", r"/api/v1/training_runs$", status=404)
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
        monitor = tr.Monitor(
            None,
            policy(max_poll_errors=1),
            config,
            detect_only=True,
            poll_mode="auto",
            clock=tr.ManualClock(),
        )
        try:
            with caplog.at_level(logging.INFO, logger="tinker_recovery.monitor"):
                for run_id in runs:
                    monitor.monitor_run(run_id, None)
                for _ in range(3):  # the first look, then cycles that would list
                    assert monitor.poll_once(timeout=20) == len(runs)
            listings = [r for r in fake.requests if r.path == "/api/v1/training_runs"]
            assert len(listings) == 1  # tried once, then per-run for good
            assert sorted(monitor.watched) == sorted(runs)  # a listing error never drops a run
            assert caplog.text.count("no list endpoint") == 1
            fake.corrupt(runs[7])
            monitor.poll_once(timeout=20)
            assert detected.wait(10)
        finally:
            monitor.stop(timeout=5)
            signals.detected.disconnect(on_detected)
