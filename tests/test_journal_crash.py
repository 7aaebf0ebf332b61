"""A watcher killed with kill -9 at each point of a recovery restarts from its journal and restores
the run exactly once: child processes watching a FakeTinker served by the test over 127.0.0.1.

Needs the redesigned Monitor (journal attach, ``pending_recovery_id``) and Executor (adoption by
recovery id); skipped otherwise. The watcher uses the official SDK, whose create calls carry the
``user_metadata`` a restarted executor finds its run by. ``JOURNAL_KILLS=N`` runs N kills (spread
over the points) and prints the figure: restored runs per corruption.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tinker_recovery as tr
from tinker_recovery.journal import read_journal, resume_plan
from tinker_recovery.testing import FakeTinker

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    "pending_recovery_id" not in inspect.signature(tr.Monitor.monitor_run).parameters
    or not hasattr(tr.Executor, "seed_budget"),
    reason="needs the redesigned Monitor and Executor (journal attach, adoption by recovery id)",
)

WATCHER = textwrap.dedent("""
    import os, sys, threading
    os.environ.setdefault("TINKER_TELEMETRY", "0")
    import tinker
    import tinker_recovery as tr
    from tinker_recovery import signals
    from tinker_recovery.journal import Journal

    base_url, key, path, run_id = sys.argv[1:5]

    signals.connect_all(lambda event, _sender, **payload: print(event, payload["run_id"], flush=True))
    config = tr.Config(api_key=key, base_url=base_url, timeout_s=5.0, max_retries=0)
    service = tinker.ServiceClient(base_url=base_url, api_key=key)  # stores the recovery id on the run
    policy = tr.Policy(enabled=True, jitter="none", poll_interval_ms=100, backoff_ms=10, max_backoff_ms=10)
    with tr.Executor(1, config=config) as executor, tr.Monitor(
            executor, policy, config, journal=Journal(path), service=service) as monitor:
        if run_id != "-":
            monitor.monitor_run(run_id, service)
        print("ready", flush=True)
        threading.Event().wait()  # until killed
""")

POINTS = ("detected", "started", "checkpoint_selected", "client_created", "completed")


def watcher(fake: FakeTinker, path: Path, run_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", WATCHER, fake.base_url, fake.api_key, str(path), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def read_until(process: subprocess.Popen[str], event: str, run_id: str | None = None) -> None:
    """Read the watcher's lines until ``event`` (of ``run_id`` when given); fail on its exhausted."""
    assert process.stdout is not None
    for line in process.stdout:
        words = line.split()
        if run_id is not None and words[1:2] != [run_id]:
            continue
        if words[:1] == [event]:
            return
        if words[:1] == ["exhausted"]:
            raise AssertionError(f"the recovery of {run_id} was given up")
    raise AssertionError(f"the watcher ended before {event!r}")


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    if process.stdout is not None:
        process.stdout.close()


def crash_and_resume(fake: FakeTinker, path: Path, point: str) -> int:
    """Corrupt a run, kill its watcher at ``point``, restart it from the journal; restored runs."""
    run_id = fake.add_run(checkpoints=1)
    first = watcher(fake, path, run_id)
    try:
        read_until(first, "ready")
        fake.corrupt(run_id)
        read_until(first, point)
    finally:
        kill(first)
    second = watcher(fake, path, "-")
    try:
        read_until(second, "ready")
        heads = {item.lineage_id: item for item in resume_plan(read_journal(path))}
        if heads[run_id].run_id == run_id:  # the recovery had not been journaled complete: it goes on
            read_until(second, "completed", run_id)
    finally:
        kill(second)
    return fake.load_weights_count(run_id)


@pytest.mark.parametrize("point", POINTS)
def test_a_watcher_killed_mid_recovery_restores_the_run_exactly_once(tmp_path, point):
    with FakeTinker(seed=5) as fake:
        assert crash_and_resume(fake, tmp_path / "journal.jsonl", point) == 1


@pytest.mark.skipif(not os.environ.get("JOURNAL_KILLS"), reason="set JOURNAL_KILLS=N for the figure")
def test_figure_restored_runs_per_corruption_over_many_kills(tmp_path, capsys):
    kills = int(os.environ["JOURNAL_KILLS"])
    counts = []
    with FakeTinker(seed=6) as fake:
        for k in range(kills):
            counts.append(crash_and_resume(fake, tmp_path / "journal.jsonl", POINTS[k % len(POINTS)]))
    with capsys.disabled():
        print(f"\n{kills} kills: restored runs per corruption {sum(counts) / kills:.2f} (each: {counts})")
    assert counts == [1] * kills
