"""The journal survives kill -9 of the writing process: real child processes, real files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tinker_recovery.journal import Journal, ResumeItem, read_journal, resume_plan

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import sys, threading
    from datetime import datetime, timezone
    from tinker_recovery import events
    from tinker_recovery.journal import Journal, entry_for, _line

    path, mode, name = sys.argv[1], sys.argv[2], sys.argv[3]

    def pay(run_id, **extra):
        return events.payload(run_id=run_id, attempt=0, strategy="latest", metadata={},
                              time=datetime.now(timezone.utc), lineage_id=run_id, **extra)

    journal = Journal(path, compact_entries=400, compact_bytes=0)
    journal.record("watched", pay(name, reason="monitor_run"))
    if mode == "torn":
        line = _line(entry_for("started", pay(name, recovery_id="r-" + name)))
        journal._file.write(line[: len(line) // 2])  # the first half of a line, as a crash mid-write leaves
        print("ready", flush=True)
        threading.Event().wait()
    i = 0
    while True:
        journal.record("poll_error" if i % 3 else "detected", pay(name, reason="x" * (i % 300),
                       error=ConnectionError(str(i))))
        journal.record("watched", pay(f"{name}-{i}"))
        journal.record("unwatched", pay(f"{name}-{i}", reason="user"))
        i += 1
        if i % 20 == 0:
            print(i, flush=True)
""")


def child(path: Path, mode: str, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL
    if process.stdout is not None:
        process.stdout.close()
    if process.stderr is not None:
        process.stderr.close()


def test_a_child_killed_mid_line_leaves_a_torn_line_the_next_open_does_not_glue_to(tmp_path):
    path = tmp_path / "j.jsonl"
    process = child(path, "torn", "run-a")
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    finally:
        kill(process)
    assert not path.read_bytes().endswith(b"\n")  # torn for real
    journal = Journal(path)
    journal.record(
        "watched",
        {
            "run_id": "run-b",
            "attempt": 0,
            "lineage_id": "run-b",
            "time": __import__("datetime").datetime.now(__import__("datetime").timezone.utc),
        },
    )
    journal.close()
    lines = path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["run_id"] == "run-b" and lines[-1] == b""
    assert resume_plan(read_journal(path)) == [ResumeItem("run-a", "run-a"), ResumeItem("run-b", "run-b")]


def test_twenty_kills_at_random_points_keep_the_journal_readable_and_the_plan_exact(tmp_path):
    path = tmp_path / "j.jsonl"
    rng = random.Random(20261204)
    names = [f"run-{k}" for k in range(20)]
    for name in names:
        process = child(path, "stream", name)
        try:
            assert process.stdout is not None
            for _ in range(rng.randint(1, 6)):  # let it write a random number of batches, then kill it
                assert process.stdout.readline().strip().isdigit()
        finally:
            kill(process)
    entries = read_journal(path)
    assert entries, "nothing journaled"
    for line in path.read_bytes().split(b"\n")[:-1]:
        assert not line or json.loads(line)  # SIGKILL between whole-line writes tears nothing
    plan = resume_plan(entries)
    heads = [item.run_id for item in plan]
    # each child watched its run; a child killed between the watched and unwatched of a throwaway
    # run leaves that one watched: so exactly the 20 runs in order, plus at most one per child
    assert [h for h in heads if h in names] == names
    extra = [h for h in heads if h not in names]
    assert len(extra) == len({h.rsplit("-", 1)[0] for h in extra}) and all(
        h.rsplit("-", 1)[0] in names for h in extra
    )
    assert os.path.getsize(path) < 400 * 1024  # compaction kept it bounded across the restarts
