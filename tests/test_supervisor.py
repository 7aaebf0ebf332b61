"""tinker_recovery.supervisor: the pure rules with exact numbers, and the Supervisor driving real child
processes (signals to the whole process group, exit statuses, restart budget, answers on stdin) while
it polls a FakeTinker over HTTP."""

from __future__ import annotations

import io
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinker_recovery import Config, ManualClock, Policy, signals
from tinker_recovery.cookbook import CHECKPOINTS_FILE
from tinker_recovery.supervisor import (
    DEFAULT_RUN_ID_PATTERN,
    EXIT_GAVE_UP,
    Supervisor,
    exit_status,
    restart_delay_s,
    stop_sequence,
)
from tinker_recovery.testing import FakeTinker

REPO = Path(__file__).resolve().parents[1]

# A command that resumes by being run again, in a few lines. argv: run_id mode notes_file [extra...]
SCRIPT = textwrap.dedent(r"""
    import json, os, signal, subprocess, sys
    run_id, mode, notes = sys.argv[1], sys.argv[2], sys.argv[3]
    launch = os.environ.get("TINKER_RECOVERY_RESTARTS")

    def note(text):
        with open(notes, "a") as file:
            file.write(text + "\n")

    note(f"start {launch} {' '.join(sys.argv[4:])}".rstrip())
    if launch != "0":
        note(f"stdin {sys.stdin.readline().strip()!r}")
        note(f"resume {os.environ.get('TINKER_RECOVERY_RESUME_PATH')}")
    if mode in ("ignore_int", "ignore_all"):
        signal.signal(signal.SIGINT, lambda *_: note("SIGINT"))
    if mode == "ignore_int":
        signal.signal(signal.SIGTERM, lambda *_: (note("SIGTERM"), os._exit(143)))
    if mode == "ignore_all":
        signal.signal(signal.SIGTERM, lambda *_: note("SIGTERM"))
    if mode == "grandchild":
        code = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.pause()"
        child = subprocess.Popen([sys.executable, "-c", code])
        note(f"grandchild {child.pid}")
    if mode == "exit3":
        print(f"training run {run_id}", flush=True)
        sys.exit(3)
    if mode == "bigline":
        sys.stdout.write("x" * 1_000_000 + "\n")
    if mode == "selfkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "silent":  # says nothing of its run (only --run-id tells it); the relaunch ends at once
        if launch != "0":
            sys.exit(0)
        while True:
            signal.pause()
    if mode == "record":  # says which run it trains only through the checkpoint log
        with open(os.path.join(sys.argv[4], "checkpoints.jsonl"), "a") as file:
            file.write(json.dumps({"name": "000010", "batch": 10, "epoch": 0, "final": False,
                                   "state_path": f"tinker://{run_id}/weights/step-000010"}) + "\n")
    else:
        print(f"training run {run_id}", flush=True)
    while True:
        signal.pause()
""")


@pytest.fixture
def fake() -> Any:
    with FakeTinker() as server:
        yield server


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "loop.py"
    path.write_text(SCRIPT)
    return path


class Recorded:
    """Every recovery signal sent by one sender, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._disconnects: list[Any] = []
        self._changed = threading.Condition()

    def attach(self, sender: Any) -> Recorded:
        self._disconnects.append(signals.connect_all(self._record, sender=sender))
        return self

    def _record(self, event: str, _sender: Any, **fields: Any) -> None:
        with self._changed:
            self.events.append((event, fields))
            self._changed.notify_all()

    def wait_for(self, event: str, count: int, timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.names.count(event) >= count, timeout):
                raise AssertionError(f"{count} x {event} not sent within {timeout} s: {self.names}")

    def close(self) -> None:
        for disconnect in self._disconnects:
            disconnect()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def supervisor(fake: FakeTinker, argv: list[str], **kwargs: Any) -> tuple[Supervisor, Recorded]:
    policy = kwargs.pop(
        "policy",
        Policy(
            enabled=True,
            poll_interval_ms=100,
            max_recoveries=1,
            backoff_ms=0,
            max_backoff_ms=0,
            jitter="none",
        ),
    )
    made = Supervisor(
        argv,
        config=Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0),
        policy=policy,
        stdout=io.BytesIO(),
        stderr=io.BytesIO(),
        handle_signals=False,
        grace_s=kwargs.pop("grace_s", 5.0),
        **kwargs,
    )
    return made, Recorded().attach(made)


def notes(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def pid_gone(pid: int, timeout: float) -> bool:
    """True when ``pid`` has exited (or is gone) within ``timeout``, without sleeping."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


# --- pure rules ---------------------------------------------------------------------------------------


def test_exit_status_is_the_shells() -> None:
    assert [exit_status(code) for code in (0, 1, 3, 255, -2, -9, -15)] == [0, 1, 3, 255, 130, 137, 143]


def test_stop_sequence_exact() -> None:
    assert stop_sequence(2.5) == [(signal.SIGINT, 2.5), (signal.SIGTERM, 2.5), (signal.SIGKILL, 10.0)]
    assert stop_sequence(0) == [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGKILL, 10.0)]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="grace_s"):
            stop_sequence(bad)


def test_restart_delay_exact() -> None:
    policy = Policy(enabled=True, backoff_ms=1000, max_backoff_ms=5000, jitter="none")
    rng = random.Random(0)
    assert [restart_delay_s(policy, used, rng) for used in range(6)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    full = Policy(enabled=True, backoff_ms=1000, max_backoff_ms=5000, jitter="full")
    assert restart_delay_s(full, 2, random.Random(7)) == 2.0 * random.Random(7).random()
    with pytest.raises(ValueError, match="used"):
        restart_delay_s(policy, -1, rng)


RUN = "e3e70682-c209-4cac-a29f-6fbed82c07cd:train:0"


@pytest.mark.parametrize(
    ("line", "found"),
    [
        (f"training run {RUN}", [RUN]),
        (f"Created model_id={RUN}, rank 8", [RUN]),
        (f"resuming from tinker://{RUN}/weights/000004 at batch 4", []),
        (f"{RUN}:extra", []),
        (f"x{RUN}", []),
        (f"old {RUN} new {RUN[:-1]}7", [RUN, RUN[:-1] + "7"]),
    ],
)
def test_default_run_id_pattern(line: str, found: list[str]) -> None:
    assert [m.group("run_id") for m in re.finditer(DEFAULT_RUN_ID_PATTERN, line)] == found


@given(
    st.uuids(), st.integers(0, 10**6), st.text(max_size=20), st.sampled_from(["weights", "sampler_weights"])
)
def test_a_run_id_inside_a_tinker_path_never_matches(run: Any, n: int, name: str, segment: str) -> None:
    run_id = f"{run}:train:{n}"
    assert re.search(DEFAULT_RUN_ID_PATTERN, f"loading tinker://{run_id}/{segment}/{name}") is None
    assert re.search(DEFAULT_RUN_ID_PATTERN, f"run {run_id} ok").group("run_id") == run_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_id_pattern": "("}, "run_id_pattern: not a regular expression"),
        ({"run_id_pattern": r"\S+"}, "run_id_pattern: must have a group named run_id"),
        ({"answer": "a\nb"}, "answer: must be one line"),
        ({"grace_s": -1.0}, "grace_s"),
    ],
)
def test_bad_arguments_are_refused(fake: FakeTinker, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        supervisor(fake, ["true"], **kwargs)
    with pytest.raises(ValueError, match="command"):
        supervisor(fake, [])
    with pytest.raises(ValueError, match=r"run_id: '\.\./x' is not a valid training run id"):
        supervisor(fake, ["true"], run_id="../x")
    with pytest.raises(TypeError, match="relaunch_args"):
        supervisor(fake, ["true"], relaunch_args="resume")


# --- real child processes -----------------------------------------------------------------------------


def test_corruption_stops_and_relaunches_until_the_budget_is_spent(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(checkpoints=1, corrupted=True)
    record = tmp_path / "notes"
    sup, seen = supervisor(
        fake,
        [sys.executable, str(script), run_id, "plain", str(record)],
        answer="resume",
        relaunch_args=["again=1"],
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    assert notes(record) == ["start 0", "start 1 again=1", "stdin 'resume'", "resume None"]
    assert seen.names == ["detected", "started", "completed", "detected", "exhausted"]
    first = dict(seen.events)
    assert first["detected"]["run_id"] == run_id and first["detected"]["attempt"] == 0
    assert (
        first["started"]["recovery_id"]
        == first["completed"]["recovery_id"]
        != first["exhausted"]["recovery_id"]
    )
    assert first["exhausted"]["reason_class"] == "budget"
    assert "restart budget spent: 1 of 1 restarts" in first["exhausted"]["reason"]
    assert {fields["lineage_id"] for _, fields in seen.events} == {run_id}
    assert sup.restarts == 1


def test_a_run_given_with_run_id_is_watched_in_the_first_launch(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    """``--run-id``: a command that neither prints its run nor keeps a checkpoint log is watched
    through the run id given, in its first launch (a relaunch trains a new run)."""
    run_id = fake.add_run(checkpoints=1, corrupted=True)
    record = tmp_path / "notes"
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "silent", str(record)], run_id=run_id)
    try:
        assert sup.run() == 0  # the relaunch ended by itself with 0: passed through
    finally:
        seen.close()
    # the first launch may be stopped before it wrote its note (the run reads corrupted at once)
    assert notes(record)[-3:] == ["start 1", "stdin ''", "resume None"]
    assert seen.names == ["detected", "started", "completed"]  # the relaunch is not watched: no run known
    assert dict(seen.events)["detected"]["run_id"] == run_id and sup.restarts == 1


def test_sigint_ignored_is_followed_by_sigterm(fake: FakeTinker, script: Path, tmp_path: Path) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    sup, seen = supervisor(
        fake, [sys.executable, str(script), run_id, "ignore_int", str(record)], grace_s=0.3
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    assert notes(record).count("SIGINT") == 2  # each launch got SIGINT, ignored it, and died of SIGTERM
    assert notes(record).count("SIGTERM") == 2


def test_sigterm_ignored_is_followed_by_sigkill(fake: FakeTinker, script: Path, tmp_path: Path) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    sup, seen = supervisor(
        fake, [sys.executable, str(script), run_id, "ignore_all", str(record)], grace_s=0.2
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    lines = notes(record)
    assert lines.count("SIGINT") == 2 and lines.count("SIGTERM") == 2


def test_the_whole_process_group_is_stopped(fake: FakeTinker, script: Path, tmp_path: Path) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    sup, seen = supervisor(
        fake, [sys.executable, str(script), run_id, "grandchild", str(record)], grace_s=0.3
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    grandchildren = [int(line.split()[1]) for line in notes(record) if line.startswith("grandchild")]
    assert len(grandchildren) == 2
    assert all(pid_gone(pid, 5.0) for pid in grandchildren)  # they ignored SIGINT: killed with the group


def test_the_commands_own_exit_status_passes_through(fake: FakeTinker, script: Path, tmp_path: Path) -> None:
    run_id = fake.add_run()
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "exit3", str(tmp_path / "n")])
    try:
        assert sup.run() == 3
    finally:
        seen.close()
    assert seen.names == []
    assert sup.restarts == 0
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "selfkill", str(tmp_path / "n")])
    try:
        assert sup.run() == 128 + signal.SIGKILL
    finally:
        seen.close()


def test_a_command_that_fails_on_its_corrupted_run_is_restarted(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    policy = Policy(enabled=True, poll_interval_ms=60_000, max_recoveries=1, backoff_ms=0, max_backoff_ms=0)
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "exit3", str(record)], policy=policy)
    try:
        assert (
            sup.run() == EXIT_GAVE_UP
        )  # exit 3 on a corrupted run: restarted once, then the budget is spent
    finally:
        seen.close()
    assert [line.split()[:2] for line in notes(record) if line.startswith("start")] == [
        ["start", "0"],
        ["start", "1"],
    ]
    assert seen.names == ["detected", "started", "completed", "detected", "exhausted"]


def test_the_run_is_learned_from_the_log_and_the_resume_point_prepared(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(checkpoints=1)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    old = {
        "name": "000005",
        "batch": 5,
        "epoch": 0,
        "final": False,
        "state_path": f"tinker://{fake.add_run(checkpoints=0)}/weights/000005",
    }  # an older run's record
    (log_dir / CHECKPOINTS_FILE).write_text(json.dumps(old) + "\n")
    fake.corrupt(run_id)
    record = tmp_path / "notes"
    sup, seen = supervisor(
        fake,
        [sys.executable, str(script), run_id, "record", str(record), str(log_dir)],
        log_path=log_dir,
        answer="resume",
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    path = f"tinker://{run_id}/weights/step-000010"
    assert notes(record)[:4] == [
        f"start 0 {log_dir}",
        f"start 1 {log_dir}",
        "stdin 'resume'",
        f"resume {path}",
    ]
    assert seen.names == ["detected", "started", "checkpoint_selected", "completed", "detected", "exhausted"]
    selected = seen.events[2][1]
    assert selected["checkpoint"].tinker_path == path
    assert seen.events[3][1]["checkpoint"].tinker_path == path
    # the second launch appended its own record; the older run's record was never taken for the run watched
    assert seen.events[0][1]["run_id"] == run_id


def test_no_loadable_record_gives_up_with_75(fake: FakeTinker, script: Path, tmp_path: Path) -> None:
    run_id = fake.add_run(checkpoints=1)
    fake.delete_checkpoint(run_id, "weights/step-000010")
    fake.corrupt(run_id)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    sup, seen = supervisor(
        fake,
        [sys.executable, str(script), run_id, "record", str(tmp_path / "n"), str(log_dir)],
        log_path=log_dir,
        policy=Policy(enabled=True, poll_interval_ms=100, max_recoveries=3),
    )
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    assert seen.names == ["detected", "started", "failed", "exhausted"]
    assert seen.events[3][1]["reason_class"] == "missing_checkpoint"
    assert "000010 (line 1): deleted" in seen.events[3][1]["reason"]


# --- the command line, as a user runs it ------------------------------------------------------------


def cli_env(fake: FakeTinker) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TINKER_")}
    env.update(TINKER_API_KEY=fake.api_key, TINKER_BASE_URL=fake.base_url, PYTHONPATH=str(REPO))
    return env


def test_cli_usage_errors(fake: FakeTinker, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tinker_recovery", "run", *args],
            env=cli_env(fake),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )

    nothing = run("--log-path", str(tmp_path))
    assert nothing.returncode == 2 and "no command given" in nothing.stderr
    pattern = run("--run-id-pattern", "(", "--", "true")
    assert pattern.returncode == 2 and "run_id_pattern" in pattern.stderr
    missing = run("--", str(tmp_path / "no-such-program"))
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    assert "Traceback" not in nothing.stderr + pattern.stderr + missing.stderr
    passed = run("--", sys.executable, "-c", "import sys; print('hi'); sys.exit(4)")
    assert (passed.returncode, passed.stdout) == (4, "hi\n")


def test_cli_passes_sigint_on_and_exits_with_the_commands_status(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run()
    journal = tmp_path / "journal.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinker_recovery",
            "run",
            "--poll-interval",
            "0.1",
            "--journal",
            str(journal),
            "--",
            sys.executable,
            str(script),
            run_id,
            "plain",
            str(tmp_path / "n"),
        ],
        env=cli_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"training run {run_id}\n"  # passed through as it is printed
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err  # the command died of the SIGINT it was passed
    assert (
        "got signal 2: passing it to the command" in err
        and "Traceback (most recent" not in err.split("passing it")[0]
    )


# --- backoff and budget on an injected clock --------------------------------------------------------


def test_restarts_back_off_on_the_clock_then_the_budget_is_spent(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    clock = ManualClock()
    policy = Policy(
        enabled=True,
        poll_interval_ms=100,
        max_recoveries=3,
        backoff_ms=1000,
        max_backoff_ms=8000,
        jitter="none",
    )
    sup, seen = supervisor(
        fake, [sys.executable, str(script), run_id, "plain", str(record)], policy=policy, clock=clock
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sup.run()), name="test.supervisor", daemon=True)
    thread.start()
    try:
        clock.wait_for_waiters(1, timeout=30)  # restart 2 waits backoff_ms * 2**0 = 1 s
        assert starts(record) == 2
        clock.advance(0.999)
        assert starts(record) == 2
        clock.advance(0.001)
        seen.wait_for("completed", 2)  # the old wait is over: a new waiter is restart 3's
        clock.wait_for_waiters(1, timeout=30)  # restart 3 waits 2 s
        assert starts(record) == 3
        clock.advance(2.0)
        thread.join(30)
    finally:
        clock.advance(100.0)
        thread.join(30)
        seen.close()
    assert result == [EXIT_GAVE_UP] and starts(record) == 4
    assert seen.names.count("completed") == 3 and seen.names[-1] == "exhausted"
    assert "3 of 3 restarts within 3600 s" in seen.events[-1][1]["reason"]


def test_a_signal_during_the_backoff_stops_without_relaunching(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(corrupted=True)
    record = tmp_path / "notes"
    clock = ManualClock()
    policy = Policy(
        enabled=True,
        poll_interval_ms=100,
        max_recoveries=3,
        backoff_ms=1000,
        max_backoff_ms=8000,
        jitter="none",
    )
    sup, seen = supervisor(
        fake, [sys.executable, str(script), run_id, "plain", str(record)], policy=policy, clock=clock
    )
    sup._handle_signals = True  # installed by run() on this (the main) thread, restored when it returns

    def interrupt() -> None:
        clock.wait_for_waiters(1, timeout=30)
        sup._on_signal(signal.SIGINT, None)  # the handler run() installed (a real SIGINT: the CLI test)

    helper = threading.Thread(target=interrupt, name="test.interrupt", daemon=True)
    helper.start()
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert sup.run() == 128 + signal.SIGINT
    finally:
        helper.join(30)
        seen.close()
    assert signal.getsignal(signal.SIGINT) is previous
    assert starts(record) == 2  # the third launch never happened
    assert seen.names == ["detected", "started", "completed", "detected", "started"]


def starts(record: Path) -> int:
    return sum(1 for line in notes(record) if line.startswith("start"))


def test_output_passes_through_whole_and_a_huge_line_is_read_in_bounded_pieces(
    fake: FakeTinker, script: Path, tmp_path: Path
) -> None:
    run_id = fake.add_run(corrupted=True)
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "bigline", str(tmp_path / "n")])
    try:
        assert sup.run() == EXIT_GAVE_UP  # the run id after the huge line was still learned
    finally:
        seen.close()
    sink = sup._stdout
    assert isinstance(sink, io.BytesIO)
    out = sink.getvalue()
    line = b"x" * 1_000_000 + b"\n" + f"training run {run_id}\n".encode()
    assert out == line + line  # both launches' output, byte for byte


@pytest.mark.parametrize("use_monitor", [False, True], ids=["polling-loop", "detect-only-monitor"])
def test_both_detectors_find_a_corrupted_relaunch(
    fake: FakeTinker, script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_monitor: bool
) -> None:
    from tinker_recovery import _supervisor_detect as module

    monkeypatch.setattr(module, "_USE_MONITOR", use_monitor)
    if use_monitor and module._detector() is module._PollingDetector:
        pytest.skip("this Monitor has no detect-only form yet")
    run_id = fake.add_run(corrupted=True)
    sup, seen = supervisor(fake, [sys.executable, str(script), run_id, "plain", str(tmp_path / "n")])
    try:
        assert sup.run() == EXIT_GAVE_UP
    finally:
        seen.close()
    assert seen.names == ["detected", "started", "completed", "detected", "exhausted"]
