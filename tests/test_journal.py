"""The journal: entry_for, reading, resume_plan / lineage_heads (pure, exact), durability, compaction."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker_recovery as tr
from tinker_recovery import events, signals
from tinker_recovery.journal import (
    EVENTS,
    Journal,
    ResumeItem,
    entry_for,
    iter_journal,
    lineage_heads,
    read_journal,
    resume_plan,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SECRET = "tml-journal-test-key-not-real"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pay(
    run_id: str = "run-1",
    *,
    attempt: int = 0,
    t: float = 0.0,
    lineage_id: str | None = None,
    recovery_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return events.payload(
        run_id=run_id,
        attempt=attempt,
        strategy="latest",
        metadata={"key": SECRET},
        time=at(t),
        lineage_id=lineage_id or run_id,
        recovery_id=recovery_id,
        **extra,
    )


def e(event: str, run_id: str, t: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A journal entry as read back from a file."""
    return {"time": at(t).isoformat(), "event": event, "run_id": run_id, "attempt": 0, **fields}


# --- entry_for ------------------------------------------------------------------------------------


def test_entry_for_a_completed_payload_gives_exactly_the_journal_fields():
    client = object()
    payload = pay(
        "run-1",
        attempt=2,
        t=5,
        lineage_id="run-0",
        recovery_id="rec-1",
        checkpoint=checkpoint("run-1", "step-000010"),
        client=client,
        new_run_id="run-2",
        duration_s=1.23456789,
    )
    assert entry_for("completed", payload) == {
        "time": "2026-01-01T00:00:05+00:00",
        "event": "completed",
        "run_id": "run-1",
        "attempt": 2,
        "lineage_id": "run-0",
        "recovery_id": "rec-1",
        "new_run_id": "run-2",
        "checkpoint": "tinker://run-1/weights/step-000010",
        "duration_s": 1.234568,
    }


def test_entry_for_an_error_writes_type_and_one_line_text_and_its_class():
    error = (
        tr.ServerError("boom\nsecond line\x1b[31m", status_code=503)
        if _takes_status()
        else tr.ServerError("x")
    )
    entry = entry_for("poll_error", pay(error=error, reason="server\nerror"))
    assert (
        entry["error"].startswith("ServerError: ")
        and "\n" not in entry["error"]
        and "\x1b" not in entry["error"]
    )
    assert entry["reason"] == "server\\nerror" and entry["reason_class"] == events.reason_class(error)
    assert "metadata" not in entry and SECRET not in json.dumps(entry)


def _takes_status() -> bool:
    try:
        tr.ServerError("x", status_code=503)
    except TypeError:
        return False
    return True


def test_entry_for_keeps_a_given_reason_class_and_converts_times_to_utc():
    paris = timezone(timedelta(hours=1))
    entry = entry_for(
        "exhausted",
        {
            **pay(error=tr.Shutdown("stop"), reason_class="shutdown"),
            "time": datetime(2026, 1, 1, 1, 0, tzinfo=paris),
        },
    )
    assert entry["reason_class"] == "shutdown" and entry["time"] == "2026-01-01T00:00:00+00:00"
    naive = entry_for("detected", {**pay(), "time": datetime(2026, 1, 1, 3)})
    assert naive["time"] == "2026-01-01T03:00:00+00:00"


def test_entry_for_cuts_long_text():
    entry = entry_for("failed", pay(reason="x" * 5000, error=ValueError("y" * 5000)))
    assert len(entry["reason"]) == 2000 and entry["reason"].endswith("…")
    assert len(entry["error"]) == len("ValueError: ") + 2000


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("nope", pay(), "event"),
        ("detected", {**pay(), "run_id": None}, "run_id"),
        ("detected", {**pay(), "attempt": True}, "attempt"),
        ("detected", {**pay(), "attempt": "1"}, "attempt"),
        ("detected", {**pay(), "time": "2026-01-01"}, "time"),
        ("detected", {k: v for k, v in pay().items() if k != "time"}, "time"),
        ("detected", {**pay(), "checkpoint": 3}, "checkpoint"),
        ("completed", {**pay(), "new_run_id": 7}, "new_run_id"),
        ("completed", {**pay(), "duration_s": float("nan")}, "duration_s"),
    ],
)
def test_entry_for_refuses_bad_payloads_naming_the_field(event, payload, field):
    with pytest.raises(ValueError, match=field):
        entry_for(event, payload)


def test_events_are_the_eight_signals_then_watched_and_unwatched():
    assert (*tuple(s.name.rsplit(".", 1)[1] for s in signals.ALL), "watched", "unwatched") == EVENTS
    assert signals.watched.name == "tinkex.recovery.watched" and signals.watched not in signals.ALL
    assert signals.unwatched.name == "tinkex.recovery.unwatched" and signals.unwatched not in signals.ALL


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "run_id",
                "attempt",
                "time",
                "error",
                "reason",
                "checkpoint",
                "new_run_id",
                "duration_s",
                "reason_class",
                "lineage_id",
            ]
        ),
        st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.datetimes(), st.booleans()),
    )
)
def test_entry_for_either_builds_an_entry_or_raises_value_error(payload):
    try:
        entry = entry_for("failed", payload)
    except ValueError:
        return
    line = json.dumps(entry, ensure_ascii=True, allow_nan=False)
    assert "\n" not in line and json.loads(line) == entry


# --- resume_plan and lineage_heads (pure) -------------------------------------------------------


def test_a_watched_run_is_resumed_as_its_own_lineage():
    assert resume_plan([e("watched", "a", lineage_id="a")]) == [ResumeItem("a", "a", (), None)]
    assert lineage_heads([e("watched", "a", lineage_id="a")]) == ["a"]


def test_completed_moves_the_head_and_counts_a_restart():
    entries = [
        e("watched", "a", 0, lineage_id="a", reason="monitor_run"),
        e("detected", "a", 5, lineage_id="a"),
        e("started", "a", 6, lineage_id="a", recovery_id="r1"),
        e("completed", "a", 9, lineage_id="a", recovery_id="r1", new_run_id="b"),
        e("watched", "b", 9, lineage_id="a", reason="recovered from a"),
        e("started", "b", 20, lineage_id="a", recovery_id="r2"),
        e("completed", "b", 30, lineage_id="a", recovery_id="r2", new_run_id="c"),
    ]
    assert resume_plan(entries) == [ResumeItem("c", "a", (at(9), at(30)), None)]
    assert lineage_heads(entries) == ["c"]


def test_a_recovery_started_and_never_finished_is_pending():
    entries = [
        e("watched", "a", lineage_id="a"),
        e("started", "a", 1, lineage_id="a", recovery_id="r1"),
        e("client_created", "a", 2, lineage_id="a", recovery_id="r1", new_run_id="b"),
    ]
    assert resume_plan(entries) == [ResumeItem("a", "a", (), "r1")]


def test_exhausted_by_shutdown_is_resumed_still_pending_but_a_give_up_is_not():
    base = [e("watched", "a", lineage_id="a"), e("started", "a", 1, lineage_id="a", recovery_id="r1")]
    shutdown = e(
        "exhausted",
        "a",
        2,
        lineage_id="a",
        recovery_id="r1",
        reason_class="shutdown",
        reason="budget? no: shutdown",
    )
    assert resume_plan([*base, shutdown]) == [ResumeItem("a", "a", (), "r1")]
    budget = e(
        "exhausted",
        "a",
        2,
        lineage_id="a",
        recovery_id="r1",
        reason_class="budget",
        reason="shutdown-looking text",
    )
    assert resume_plan([*base, budget]) == []
    for why in (
        {"reason_class": "interrupted"},
        {"reason_class": "connection", "error": "Shutdown: cancelled"},
    ):
        assert resume_plan([*base, e("exhausted", "a", 2, lineage_id="a", **why)]) == [
            ResumeItem("a", "a", (), "r1")
        ]
    old_style = e("exhausted", "a", 2, reason="shutdown: the executor stopped")  # no reason_class
    assert lineage_heads([e("watch", "a"), old_style]) == ["a"]
    assert lineage_heads([e("watch", "a"), e("exhausted", "a", reason="no checkpoint")]) == []


def test_a_user_stop_is_not_resumed_even_when_its_recovery_completes_later():
    entries = [
        e("watched", "a", lineage_id="a"),
        e("started", "a", 1, lineage_id="a", recovery_id="r1"),
        e("unwatched", "a", 2, lineage_id="a", reason="user"),
        e("completed", "a", 3, lineage_id="a", recovery_id="r1", new_run_id="b"),
    ]
    assert resume_plan(entries) == []


def test_a_dropped_run_is_not_resumed_and_an_unwatch_of_an_older_run_changes_nothing():
    assert (
        resume_plan(
            [
                e("watched", "a", lineage_id="a"),
                e("unwatched", "a", 1, lineage_id="a", reason="dropped: not found"),
            ]
        )
        == []
    )
    moved = [
        e("watched", "a", lineage_id="a"),
        e("completed", "a", 1, lineage_id="a", new_run_id="b"),
        e("unwatched", "a", 2, lineage_id="a", reason="recovered into b"),
    ]
    assert resume_plan(moved) == [ResumeItem("b", "a", (at(1),), None)]
    assert resume_plan(
        [e("watched", "a", lineage_id="a"), e("unwatched", "a", 1, lineage_id="a", reason_class="shutdown")]
    ) == [ResumeItem("a", "a", (), None)]


def test_entries_of_lineages_never_watched_are_ignored_and_order_is_first_watch():
    entries = [
        e("completed", "x", 0, lineage_id="x", new_run_id="y"),
        e("watched", "b", 1, lineage_id="b"),
        e("watched", "a", 2, lineage_id="a"),
        e("watched", "b", 3, lineage_id="b"),
        e("poll_error", "a", 4, lineage_id="a", reason_class="connection"),
    ]
    assert lineage_heads(entries) == ["b", "a"]


def test_a_journal_of_an_earlier_version_resumes_like_before():
    entries = [
        e("watch", "run-1", reason="monitor_run"),
        e("watch", "run-2"),
        e("watch", "run-3"),
        e("unwatch", "run-3", reason="stop_monitoring"),
        e("detected", "run-1"),
        e("completed", "run-1", 5, new_run_id="restored:1"),
        e("watch", "restored:1"),
    ]
    assert resume_plan(entries) == [
        ResumeItem("restored:1", "run-1", (at(5),), None),
        ResumeItem("run-2", "run-2", (), None),
    ]


def test_a_restored_lineage_entry_and_a_bad_time_are_read():
    snapshot = e(
        "lineage",
        "c",
        lineage_id="a",
        restarts=[at(30).isoformat(), "garbage", at(9).isoformat()],
        pending_recovery_id="r3",
    )
    assert resume_plan([snapshot]) == [ResumeItem("c", "a", (at(9), at(30)), "r3")]
    assert resume_plan([e("watched", "a"), {**e("completed", "a", new_run_id="b"), "time": "x"}]) == [
        ResumeItem("b", "a", (), None)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "event": st.sampled_from([*EVENTS, "watch", "unwatch", "lineage", "other"]),
                "run_id": st.sampled_from(["a", "b", "c"]),
            },
            optional={
                "lineage_id": st.sampled_from(["a", "b", 3]),
                "new_run_id": st.sampled_from(["b", "c", None]),
                "recovery_id": st.sampled_from(["r1", "r2", None]),
                "reason_class": st.sampled_from(["shutdown", "x"]),
                "time": st.one_of(st.text(max_size=5), st.just(T0.isoformat())),
                "restarts": st.one_of(st.none(), st.lists(st.just(T0.isoformat()))),
            },
        ),
        max_size=30,
    )
)
def test_resume_plan_takes_any_entries_and_its_compaction_replays_to_the_same_plan(entries):
    from tinker_recovery.journal import _ResumeState

    state = _ResumeState()
    for entry in entries:
        state.apply(entry)
    plan = state.plan()
    assert plan == resume_plan(entries)
    assert len({item.lineage_id for item in plan}) == len(plan)
    assert resume_plan(json.loads(json.dumps(x)) for x in state.snapshot(T0)) == plan


# --- reading ----------------------------------------------------------------------------------------


def test_read_skips_torn_garbage_binary_and_overlong_lines_with_one_warning(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    good = json.dumps(e("watched", "a")) + "\n"
    path.write_bytes(
        b"".join(
            [
                good.encode(),
                b'{"event":"watch',
                b"\n",
                b"\xff\xfe garbage\n",
                b"[1,2]\n",
                b'{"event":1,"run_id":"x"}\n',
                b"\n",
                b"x" * (3 << 20) + b"\n",
                good.encode(),
                b'{"run_id":"b"}\n',
                b'{"event":"detected","run_id":"a"',
            ]
        )
    )
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        entries = read_journal(path)
    assert [x["run_id"] for x in entries] == ["a", "a"]
    warnings = [r for r in caplog.records if r.name == "tinker_recovery.journal"]
    assert len(warnings) == 1 and "skipped 7 torn or garbage line(s)" in warnings[0].getMessage()


def test_read_a_missing_journal_gives_nothing_and_iter_streams(tmp_path):
    assert read_journal(tmp_path / "missing.jsonl") == []
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(e("watched", f"r{i}")) + "\n" for i in range(3)))
    stream = iter_journal(path)
    assert next(stream)["run_id"] == "r0"
    stream.close()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=40), st.just(json.dumps(e("watched", "ok")).encode())), max_size=12)
)
def test_any_bytes_read_without_raising_and_keep_only_whole_entries(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("j") / "j.jsonl"
    path.write_bytes(b"\n".join(chunks))
    for entry in read_journal(path):
        assert isinstance(entry["event"], str) and isinstance(entry["run_id"], str)


# --- the Journal: durability ----------------------------------------------------------------------


def test_open_ends_a_torn_last_line_so_the_next_entry_is_not_glued(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(e("watched", "a", lineage_id="a")) + '\n{"event":"started","run_id":"a","att')
    journal = Journal(path)
    journal.record("watched", pay("b"))
    journal.close()
    lines = path.read_text().split("\n")
    assert lines[1] == '{"event":"started","run_id":"a","att' and json.loads(lines[2])["run_id"] == "b"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert lineage_heads(read_journal(path)) == ["a", "b"]
    assert sum("skipped 1 torn" in r.getMessage() for r in caplog.records) == 1


def test_entries_are_one_flushed_line_each_with_mode_0600_and_no_secret(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.record(
        "client_created",
        pay(client=object(), checkpoint=checkpoint("run-1", "step-000001"), new_run_id="run-2", error=None),
    )
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["new_run_id"] == "run-2"  # flushed before close
    journal.close()
    assert SECRET not in path.read_text() and "object at" not in path.read_text()


class FailingFile:
    """A file whose writes fail like a full disk; ``fail`` switches it."""

    def __init__(self, real: Any) -> None:
        self.real, self.fail, self.closed_calls = real, True, 0

    def write(self, data: Any) -> int:
        if self.fail:
            self.real.write(bytes(data)[:3])  # a partial line first, as a full disk can leave
            raise OSError(28, "No space left on device")
        return int(self.real.write(data))

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.closed_calls += 1
        self.real.close()
        raise OSError(28, "No space left on device")


def test_a_write_error_is_reported_once_then_writing_resumes_on_a_fresh_line(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_entries=0, compact_bytes=0)
    journal.record("watched", pay("a", lineage_id="a"))
    failing = FailingFile(journal._file)
    journal._file = failing  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        for i in range(30):
            journal.record("detected", pay("a", t=i))
        assert isinstance(journal.write_error, OSError) and journal.lost_entries == 30
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "No space left" in errors[0].getMessage() and not errors[0].exc_info
        failing.fail = False
        journal.record("watched", pay("b", t=40))
    assert journal.write_error is None and journal.lost_entries == 30
    journal.close()  # the failing close is logged, not raised
    assert failing.closed_calls == 1
    entries = read_journal(path)
    assert lineage_heads(entries) == ["a", "b"] and all(x["run_id"] in ("a", "b") for x in entries)


def test_a_full_disk_for_real_on_a_tiny_tmpfs(tmp_path, caplog):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs root")
    try:
        path = mount / "j.jsonl"
        journal = Journal(path, compact_entries=0, compact_bytes=0)
        journal.record("watched", pay("a", lineage_id="a"))
        with caplog.at_level(logging.ERROR, logger="tinker_recovery.journal"):
            for i in range(2000):  # about 200 KB: more than the disk holds
                journal.record("detected", pay("a", t=i, reason="x" * 100))
        assert isinstance(journal.write_error, OSError) and journal.lost_entries > 0
        assert sum(r.levelno >= logging.ERROR for r in caplog.records) == 1
        journal.close()
        assert lineage_heads(read_journal(path)) == ["a"]
        filler = list(mount.iterdir())
        assert filler == [path]
        with open(path, "r+b") as file:  # free space, mid-line; a new journal appends on a fresh line
            file.truncate(os.path.getsize(path) // 2 + 5)
        again = Journal(path)
        again.record("watched", pay("b", lineage_id="b"))
        again.close()
        assert lineage_heads(read_journal(path)) == ["a", "b"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_close_never_raises_twice_and_later_entries_are_dropped_with_one_warning(tmp_path, caplog):
    journal = Journal(tmp_path / "j.jsonl")
    journal.close()
    journal.close()
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        journal.record("detected", pay())
        journal.record("detected", pay())
    assert journal.lost_entries == 2 and sum("closed" in r.getMessage() for r in caplog.records) == 1
    assert journal.closed and "closed" in repr(journal)


def test_an_unopenable_path_raises_at_construction(tmp_path):
    with pytest.raises(OSError):
        Journal(tmp_path / "missing-dir" / "j.jsonl")
    with pytest.raises(ValueError, match="compact_bytes"):
        Journal(tmp_path / "j.jsonl", compact_bytes=-1)
    with pytest.raises(ValueError, match="poll_error_every_s"):
        Journal(tmp_path / "j.jsonl", poll_error_every_s=float("inf"))


def test_a_refused_payload_is_logged_once_per_event_and_counted(tmp_path, caplog):
    journal = Journal(tmp_path / "j.jsonl")
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        journal.record("detected", {**pay(), "run_id": 5})
        journal.record("detected", {**pay(), "run_id": 6})
    journal.close()
    assert (
        journal.skipped_payloads == 2 and sum("not journaled" in r.getMessage() for r in caplog.records) == 1
    )


def test_a_payload_without_time_is_stamped_by_the_journal_clock(tmp_path):
    clock = tr.ManualClock()
    journal = Journal(tmp_path / "j.jsonl", clock=clock)
    journal.record("detected", {k: v for k, v in pay().items() if k != "time"})
    journal.close()
    assert read_journal(tmp_path / "j.jsonl")[0]["time"] == clock.now().isoformat()


# --- bounded: poll-error streaks and compaction -------------------------------------------------------


def test_poll_errors_are_journaled_when_a_streak_starts_or_changes_and_its_end_counts_them(tmp_path):
    clock = tr.ManualClock()
    journal = Journal(tmp_path / "j.jsonl", clock=clock, poll_error_every_s=60)
    down = tr.ConnectionFailed("refused")
    for _ in range(10):
        journal.record("poll_error", pay(error=down))
        clock.advance(1)
    journal.record("poll_error", pay(error=tr.RequestTimeout("slow")))  # a new class: journaled
    clock.advance(70)
    journal.record("poll_error", pay(error=tr.RequestTimeout("slow")))  # an hour-style reminder
    journal.record("poll_error", pay(error=tr.RequestTimeout("slow")))
    journal.record("detected", pay())  # the streak ended: the next entry counts what was left out
    journal.record("poll_error", pay(error=down))  # a new streak
    journal.record("poll_error", pay("run-2", error=down))  # another run has its own streak
    journal.close()
    got = [
        (x["event"], x["run_id"], x.get("reason_class"), x.get("poll_errors_suppressed"))
        for x in read_journal(tmp_path / "j.jsonl")
    ]
    assert got == [
        ("poll_error", "run-1", "connection", None),
        ("poll_error", "run-1", "timeout", None),
        ("poll_error", "run-1", "timeout", None),
        ("detected", "run-1", None, 1),
        ("poll_error", "run-1", "connection", None),
        ("poll_error", "run-2", "connection", None),
    ]


def test_compaction_rewrites_atomically_keeping_what_resume_needs(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_entries=50, compact_bytes=0)
    journal.record("watched", pay("keep", lineage_id="keep"))
    journal.record("started", pay("keep", t=1, recovery_id="r1"))
    journal.record("completed", pay("keep", t=2, recovery_id="r1", new_run_id="keep-2"))
    journal.record("started", pay("keep-2", t=3, lineage_id="keep", recovery_id="r2"))
    for i in range(30):
        journal.record("watched", pay(f"gone-{i}"))
        journal.record("unwatched", pay(f"gone-{i}", reason="user"))
    expected = [ResumeItem("keep-2", "keep", (at(2),), "r2")]
    assert resume_plan(read_journal(path)) == expected
    lines = path.read_text().splitlines()
    assert len(lines) < 20 and json.loads(lines[0])["event"] == "lineage"
    assert journal.resume_plan() == expected
    journal.record("watched", pay("late", lineage_id="late"))  # appends after the rewrite
    journal.close()
    assert lineage_heads(read_journal(path)) == ["keep-2", "late"]
    assert [p.name for p in tmp_path.iterdir()] == ["j.jsonl"]


def test_a_failed_compaction_is_logged_and_the_journal_goes_on(tmp_path, caplog, monkeypatch):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_entries=5, compact_bytes=0)

    def refuse(*_args: Any) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with caplog.at_level(logging.ERROR, logger="tinker_recovery.journal"):
        for i in range(8):
            journal.record("watched", pay(f"r{i}"))
    monkeypatch.undo()
    journal.close()
    assert (
        len(read_journal(path)) == 8
        and sum("compaction failed" in r.getMessage() for r in caplog.records) == 1
    )
    assert [p.name for p in tmp_path.iterdir()] == ["j.jsonl"]


def test_a_journal_over_its_threshold_is_compacted_when_opened(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(
        "".join(json.dumps(e("detected", "a", i, lineage_id="a")) + "\n" for i in range(100))
        + json.dumps(e("watched", "a", 100, lineage_id="a"))
        + "\n"
    )
    Journal(path, compact_entries=10).close()
    assert [x["event"] for x in read_journal(path)] == ["lineage"]


# --- subscribe and attach -------------------------------------------------------------------------------


class Sender:
    pass


def test_subscribe_journals_every_signal_of_its_senders_only_until_close(tmp_path):
    path = tmp_path / "j.jsonl"
    mine, other = Sender(), Sender()
    journal = Journal(path)
    journal.subscribe(mine, mine)
    for signal in (*signals.ALL, signals.watched, signals.unwatched):
        signals.send_guarded(signal, mine, **pay(reason="r"))
        signals.send_guarded(signal, other, **pay("other"))
    journal.close()
    signals.send_guarded(signals.detected, mine, **pay())
    assert [x["event"] for x in read_journal(path)] == list(EVENTS)
    assert not any(
        s.receivers
        for s in (*signals.ALL, signals.watched, signals.unwatched)
        if any(r for r in s.receivers_for(mine))
    )


class FakeMonitor:
    def __init__(self, service: Any = "service", refuse: str | None = None) -> None:
        self.service, self.calls, self.refuse = service, [], refuse

    def monitor_run(
        self, run_id: str, service: Any, *, lineage_id: str, pending_recovery_id: str | None
    ) -> None:
        if run_id == self.refuse:
            raise tr.NotFound("gone") if hasattr(tr, "NotFound") else ValueError("gone")
        self.calls.append((run_id, service, lineage_id, pending_recovery_id))
        signals.send_guarded(signals.watched, self, **pay(run_id, lineage_id=lineage_id, reason="resumed"))


class FakeExecutor:
    def __init__(self) -> None:
        self.seeded: list[tuple[str, list[datetime]]] = []

    def seed_budget(self, lineage_id: str, restarts: Any) -> None:
        self.seeded.append((lineage_id, list(restarts)))


def test_attach_subscribes_seeds_budgets_and_resumes_through_the_public_api(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(
        "".join(
            json.dumps(x) + "\n"
            for x in [
                e("watched", "a", 0, lineage_id="a"),
                e("completed", "a", 5, lineage_id="a", new_run_id="b"),
                e("watched", "c", 6, lineage_id="c"),
                e("started", "c", 7, lineage_id="c", recovery_id="rc"),
                e("watched", "../etc", 8),
                e("watched", "gone", 9),
            ]
        )
    )
    monitor, executor = FakeMonitor(refuse="gone"), FakeExecutor()
    journal = Journal(path)
    resumed = journal.attach(monitor, executor)
    assert monitor.calls == [("b", "service", "a", None), ("c", "service", "c", "rc")]
    assert executor.seeded == [("a", [at(5)])]
    assert [item.run_id for item in resumed] == ["b", "c"]
    signals.send_guarded(signals.detected, executor, **pay("b", lineage_id="a"))
    journal.close()
    tail = read_journal(path)[-3:]
    assert [(x["event"], x["run_id"]) for x in tail] == [
        ("watched", "b"),
        ("watched", "c"),
        ("detected", "b"),
    ]


def test_attach_without_a_service_resumes_nothing_with_one_warning(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(e("watched", "a")) + "\n")
    monitor = FakeMonitor(service=None)
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        assert Journal(path).attach(monitor) == []
    assert monitor.calls == [] and sum("no service" in r.getMessage() for r in caplog.records) == 1


def test_a_closed_journal_reopens_at_attach(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    monitor = FakeMonitor()
    journal.attach(monitor)
    signals.send_guarded(signals.watched, monitor, **pay("a", reason="monitor_run"))
    journal.close()
    journal.attach(monitor)
    journal.close()
    assert [c[0] for c in monitor.calls] == ["a"]


def test_many_threads_write_whole_lines(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_entries=0, compact_bytes=0)
    start = threading.Event()

    def writer(n: int) -> None:
        start.wait(10)
        for i in range(200):
            journal.record("detected", pay(f"run-{n}", t=i, reason="r" * (i % 50)))

    threads = [threading.Thread(target=writer, args=(n,), name=f"writer-{n}", daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(30)
    journal.close()
    assert len(read_journal(path)) == 800 and len(path.read_text().splitlines()) == 800


def test_watch_and_stop_cycles_leave_a_small_file_and_no_state(tmp_path):
    import tracemalloc

    path = tmp_path / "j.jsonl"
    journal = Journal(path, compact_entries=3000)
    journal.record("watched", pay("kept", lineage_id="kept"))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(5_000):
        journal.record("watched", pay(f"run-{i}", reason="monitor_run"))
        journal.record("poll_error", pay(f"run-{i}", error=ConnectionError("down")))
        journal.record("unwatched", pay(f"run-{i}", reason="user"))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    journal.close()
    assert grown < 64 * 1024, grown  # nothing kept per stopped run
    assert len(path.read_text().splitlines()) <= 3001 and lineage_heads(read_journal(path)) == ["kept"]


class Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class HostileCheckpoint:
    @property
    def tinker_path(self) -> str:
        raise RuntimeError("no path")


def test_payload_objects_that_raise_never_reach_the_sender(tmp_path, caplog):
    journal = Journal(tmp_path / "j.jsonl")
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        signals_sent = [
            ("failed", pay(error=Hostile())),
            ("detected", pay(checkpoint=HostileCheckpoint())),
            ("no-such-event", pay()),
        ]
        for event, payload in signals_sent:
            journal.record(event, payload)  # raises nothing
    journal.close()
    assert journal.skipped_payloads == 3 and read_journal(tmp_path / "j.jsonl") == []
    assert sum("not journaled" in r.getMessage() for r in caplog.records) == 3


def test_a_second_journal_on_the_same_file_appends_never_compacts_and_follows_a_compaction(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    owner = Journal(path, compact_entries=20)
    with caplog.at_level(logging.WARNING, logger="tinker_recovery.journal"):
        other = Journal(path, compact_entries=1)
    assert sum("another Journal" in r.getMessage() for r in caplog.records) == 1
    other.record("watched", pay("theirs", lineage_id="theirs"))
    for i in range(30):  # the owner compacts past 20 entries
        owner.record("watched", pay(f"r{i}"))
        owner.record("unwatched", pay(f"r{i}", reason="user"))
    assert len(path.read_text().splitlines()) <= 20
    other.record("watched", pay("late", lineage_id="late"))  # lands in the compacted file
    owner.close()
    other.close()
    assert lineage_heads(read_journal(path)) == ["theirs", "late"]
