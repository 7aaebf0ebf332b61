"""tinker_recovery.cookbook: reading checkpoints.jsonl, choosing the newest loadable record, rewriting
the log so that a plain rerun resumes there. REST look-ups go over real HTTP to a FakeTinker."""

from __future__ import annotations

import json
import logging
import os
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_recovery import Config, RestClient
from tinker_recovery.cookbook import (
    CHECKPOINTS_FILE,
    SIDECAR_FILE,
    CheckpointLogError,
    CheckpointRecord,
    prepare_resume,
    read_checkpoints,
    read_log,
    record_step,
    select_resume,
)
from tinker_recovery.errors import MissingCheckpoint, ServerError
from tinker_recovery.models import Checkpoint
from tinker_recovery.testing import FakeTinker

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
RUN = "11111111-2222-3333-4444-555555555555:train:0"


def record(
    name: str,
    *,
    run: str = RUN,
    batch: int | None = None,
    state: bool = True,
    sampler: bool = True,
    **extras: Any,
) -> dict[str, Any]:
    """A record as tinker-cookbook writes it."""
    data: dict[str, Any] = {
        "name": name,
        "batch": int(name) if batch is None and name.isdigit() else batch,
        "epoch": 0,
        "final": name == "final",
    }
    if state:
        data["state_path"] = f"tinker://{run}/weights/{name}"
    if sampler:
        data["sampler_path"] = f"tinker://{run}/sampler_weights/{name}"
    data.update(extras)
    return data


def write_log(directory: Path, lines: list[Any], tail: str = "") -> Path:
    path = directory / CHECKPOINTS_FILE
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text + tail, encoding="utf-8")
    return path


def listed(
    name: str, *, run: str = RUN, expires_at: datetime | None = None, kind: str = "training"
) -> Checkpoint:
    segment = "weights" if kind == "training" else "sampler_weights"
    return Checkpoint(
        f"{segment}/{name}",
        kind,  # type: ignore[arg-type]
        NOW - timedelta(hours=1),
        f"tinker://{run}/{segment}/{name}",
        expires_at=expires_at,
    )


def candidates(*names: str) -> list[CheckpointRecord]:
    """Records for ``names`` (oldest first), returned newest first as select_resume takes them."""
    records = [CheckpointRecord.from_json(record(n), line=i + 1) for i, n in enumerate(names)]
    return list(reversed(records))


# --- reading ----------------------------------------------------------------------------------------


def test_a_missing_log_has_no_records(tmp_path: Path) -> None:
    assert read_log(tmp_path).records == ()
    assert read_checkpoints(tmp_path) == {}


def test_records_are_read_with_their_fields_and_keyed_by_state_path(tmp_path: Path) -> None:
    write_log(
        tmp_path,
        [
            record("000010", elapsed_tokens=40960),
            record("000015", state=False),  # a sampler-only save
            "",
            record("000020", elapsed_tokens=81920),
        ],
    )
    log_file = read_log(tmp_path)
    assert [r.name for r in log_file.records] == ["000010", "000015", "000020"]
    first = log_file.records[0]
    assert (first.batch, first.epoch, first.final, first.line) == (10, 0, False, 1)
    assert first.state_path == f"tinker://{RUN}/weights/000010" == first.tinker_path
    assert first.sampler_path == f"tinker://{RUN}/sampler_weights/000010"
    assert first.extras == {"elapsed_tokens": 40960}
    assert first.run_id == RUN
    assert log_file.records[2].line == 4  # the blank line is counted, not read
    by_path = read_checkpoints(tmp_path)
    assert list(by_path) == [f"tinker://{RUN}/weights/000010", f"tinker://{RUN}/weights/000020"]
    assert [r.name for r in log_file.resume_candidates()] == ["000020", "000010"]
    assert first.to_json() == record("000010", elapsed_tokens=40960)


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torn = json.dumps(record("000030"))[:25]
    write_log(tmp_path, [record("000010"), record("000020")], tail=torn)
    with caplog.at_level(logging.WARNING, "tinker_recovery.cookbook"):
        log_file = read_log(tmp_path)
    assert [r.name for r in log_file.records] == ["000010", "000020"]
    assert log_file.torn_line == torn
    assert "torn last line 3" in caplog.text


def test_a_bad_line_before_the_last_names_its_line(tmp_path: Path) -> None:
    write_log(tmp_path, [record("000010"), '{"name": "0000', record("000030")])
    with pytest.raises(CheckpointLogError, match=r"checkpoints\.jsonl: line 2: not JSON"):
        read_log(tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"batch": 3}, r"line 1: 'name' must be a non-empty string"),
        ({"name": "000010", "batch": "3"}, r"line 1: 'batch' must be an integer, got '3'"),
        ({"name": "000010", "epoch": True}, r"'epoch' must be an integer"),
        ({"name": "000010", "final": "no"}, r"'final' must be true or false"),
        ({"name": "000010", "state_path": "s3://bucket/x"}, r"'state_path' is not a tinker:// path"),
        (
            {"name": "000010", "state_path": f"tinker://{RUN}/sampler_weights/x"},
            r"'state_path' must be a tinker://<run>/weights/<name> path",
        ),
        ({"name": "000010", "sampler_path": 7}, r"'sampler_path' must be a tinker:// path, got int"),
        ([1, 2], r"line 1: expected a JSON object, got list"),
    ],
)
def test_a_record_of_the_wrong_shape_is_refused_naming_the_field(
    tmp_path: Path, line: Any, message: str
) -> None:
    write_log(tmp_path, [line])
    with pytest.raises(CheckpointLogError, match=message):
        read_log(tmp_path)


def test_record_step_reads_zero_padded_names() -> None:
    def step(name: str, **kw: Any) -> int | None:
        return record_step(
            CheckpointRecord.from_json(record(name, batch=kw.pop("batch", None), **kw)), kw.pop("bpe", None)
        )

    assert step("000020") == 20
    assert step("0") == 0
    assert step("000000") == 0
    assert step("final") is None
    assert step("step-000020") is None  # not a cookbook name: Checkpoint.step reads that one
    final = CheckpointRecord.from_json({"name": "final", "epoch": 2, "batch": 5})
    assert record_step(final, batches_per_epoch=10) == 25
    assert record_step(final) is None
    with pytest.raises(ValueError, match="batches_per_epoch"):
        record_step(final, batches_per_epoch=0)


# --- choosing (pure) ------------------------------------------------------------------------------


class Listings:
    """``listing_of`` for select_resume: answers from a dict and counts the calls per run."""

    def __init__(self, by_run: dict[str, list[Checkpoint] | None]) -> None:
        self.by_run = by_run
        self.calls: list[str] = []

    def __call__(self, run_id: str) -> list[Checkpoint] | None:
        self.calls.append(run_id)
        return self.by_run[run_id]


def test_the_newest_loadable_record_is_chosen() -> None:
    listings = Listings({RUN: [listed("000010"), listed("000020")]})
    chosen, checkpoint, skipped = select_resume(candidates("000010", "000020"), listings, NOW)
    assert chosen.name == "000020" and checkpoint.tinker_path == chosen.state_path
    assert skipped == ()
    assert listings.calls == [RUN]


def test_deleted_expired_and_soon_expiring_records_are_skipped_newest_first() -> None:
    listings = Listings(
        {
            RUN: [
                listed("000010", expires_at=NOW + timedelta(days=7)),
                listed("000030", expires_at=NOW - timedelta(seconds=1)),  # expired
                listed("000040", expires_at=NOW + timedelta(seconds=59)),  # within the 60 s margin
                listed("000050", kind="sampler"),  # only its sampler weights left
            ]
        }
    )
    chosen, _, skipped = select_resume(
        candidates("000010", "000020", "000030", "000040", "000050"), listings, NOW, max_fallbacks=4
    )
    assert chosen.name == "000010"
    assert [(s.record.name, s.reason) for s in skipped] == [
        ("000050", "deleted"),
        ("000040", "expires within 60 s"),
        ("000030", "expired"),
        ("000020", "deleted"),
    ]
    assert listings.calls == [RUN]  # one listing per run


def test_expiry_exactly_at_the_margin_is_refused_and_margin_zero_accepts_it() -> None:
    at_margin = Listings({RUN: [listed("000010", expires_at=NOW + timedelta(seconds=60))]})
    with pytest.raises(MissingCheckpoint, match=r"000010 \(line 1\): expires within 60 s"):
        select_resume(candidates("000010"), at_margin, NOW)
    chosen, _, _ = select_resume(candidates("000010"), at_margin, NOW, expiry_margin_s=0)
    assert chosen.name == "000010"
    expired_now = Listings({RUN: [listed("000010", expires_at=NOW)]})
    with pytest.raises(MissingCheckpoint, match="expired"):
        select_resume(candidates("000010"), expired_now, NOW, expiry_margin_s=0)


def test_the_fallback_budget_limits_how_far_back_it_looks() -> None:
    listings = Listings({RUN: [listed("000010")]})
    with pytest.raises(MissingCheckpoint) as caught:
        select_resume(candidates("000010", "000020", "000030", "000040"), listings, NOW, max_fallbacks=2)
    assert str(caught.value) == (
        "no loadable record in the checkpoint log: 000040 (line 4): deleted; "
        "000030 (line 3): deleted; 000020 (line 2): deleted; "
        "1 older record(s) beyond max_fallbacks=2"
    )
    chosen, _, _ = select_resume(
        candidates("000010", "000020", "000030", "000040"), listings, NOW, max_fallbacks=3
    )
    assert chosen.name == "000010"
    with pytest.raises(
        MissingCheckpoint, match=r"000020 \(line 2\): deleted; 1 older record\(s\) beyond max_fallbacks=0$"
    ):
        select_resume(candidates("000010", "000020"), listings, NOW, max_fallbacks=0)


def test_records_of_an_unknown_run_are_skipped() -> None:
    other = "99999999-2222-3333-4444-555555555555:train:0"
    old = CheckpointRecord.from_json(record("000010", run=other), line=1)
    new = CheckpointRecord.from_json(record("000020"), line=2)
    listings = Listings({RUN: None, other: [listed("000010", run=other)]})
    chosen, _, skipped = select_resume([new, old], listings, NOW)
    assert chosen is old and [s.reason for s in skipped] == ["run not found"]
    assert listings.calls == [RUN, other]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_fallbacks": -1}, "max_fallbacks"),
        ({"max_fallbacks": True}, "max_fallbacks"),
        ({"expiry_margin_s": float("nan")}, "expiry_margin_s"),
        ({"expiry_margin_s": float("inf")}, "expiry_margin_s"),
        ({"expiry_margin_s": -1.0}, "expiry_margin_s"),
    ],
)
def test_bad_budget_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_resume(candidates("000010"), Listings({RUN: []}), NOW, **kwargs)


def test_no_candidates_is_a_missing_checkpoint() -> None:
    with pytest.raises(MissingCheckpoint, match="no record with a state_path"):
        select_resume([], Listings({}), NOW)


# --- prepare_resume against FakeTinker over HTTP ------------------------------------------------


class WallClock:
    """The fake's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now

    @property
    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, timezone.utc)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def fake(wall: WallClock) -> Any:
    with FakeTinker(clock=wall) as server:
        yield server


@pytest.fixture
def rest(fake: FakeTinker) -> Any:
    with RestClient(
        Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
    ) as client:
        yield client


def seeded_records(fake: FakeTinker, run_id: str) -> list[dict[str, Any]]:
    """Cookbook records for the seeded checkpoints step-000010, step-000020, ... of ``run_id``."""
    out = []
    for checkpoint in fake.list_checkpoints(run_id):
        if checkpoint["checkpoint_type"] != "training":
            continue
        step = int(checkpoint["checkpoint_id"].rsplit("-", 1)[1])
        out.append(
            {
                "name": f"{step:06d}",
                "batch": step,
                "epoch": 0,
                "final": False,
                "state_path": checkpoint["tinker_path"],
                "elapsed_tokens": step * 100,
            }
        )
    return out


def test_a_log_whose_last_record_is_loadable_is_left_alone(
    tmp_path: Path, fake: FakeTinker, rest: Any
) -> None:
    run_id = fake.add_run(checkpoints=2)
    path = write_log(tmp_path, seeded_records(fake, run_id))
    before = path.read_bytes()
    point = prepare_resume(tmp_path, rest, now=NOW)
    assert point.record is not None and point.record.name == "000020" and point.step == 20
    assert point.checkpoint is not None and point.checkpoint.tinker_path == point.record.state_path
    assert (point.skipped, point.moved, point.sidecar) == ((), 0, None)
    assert path.read_bytes() == before
    assert not (tmp_path / SIDECAR_FILE).exists()


def test_a_deleted_newest_record_is_moved_to_the_sidecar(tmp_path: Path, fake: FakeTinker, rest: Any) -> None:
    run_id = fake.add_run(checkpoints=3)
    records = seeded_records(fake, run_id)
    sampler_only = {
        "name": "000035",
        "batch": 35,
        "epoch": 0,
        "final": False,
        "sampler_path": f"tinker://{run_id}/sampler_weights/000035",
    }
    path = write_log(tmp_path, [records[0], records[1], records[2], sampler_only])
    kept = path.read_text().splitlines()[:2]
    fake.delete_checkpoint(run_id, "weights/step-000030")  # a rolling save deleted by the next one
    point = prepare_resume(tmp_path, rest, now=NOW)
    assert point.record is not None and point.record.name == "000020"
    assert [(s.record.name, s.reason) for s in point.skipped] == [("000030", "deleted")]
    assert point.moved == 2 and point.sidecar == str(tmp_path / SIDECAR_FILE)
    assert path.read_text().splitlines() == kept  # byte for byte, nothing else
    assert read_log(tmp_path).resume_candidates()[0].name == "000020"  # what a rerun resumes from
    moved = [json.loads(line) for line in (tmp_path / SIDECAR_FILE).read_text().splitlines()]
    assert moved == [
        {"moved_at": NOW.isoformat(), "reason": "deleted", "line": 3, "record": records[2]},
        {
            "moved_at": NOW.isoformat(),
            "reason": "saved after the resume point",
            "line": 4,
            "record": sampler_only,
        },
    ]
    again = prepare_resume(tmp_path, rest, now=NOW)  # idempotent
    assert again.record == point.record and again.moved == 0
    assert not list(tmp_path.glob("*.tmp-*"))


def test_an_expired_rolling_record_falls_back_to_an_older_periodic_one(
    tmp_path: Path, fake: FakeTinker, rest: Any, wall: WallClock
) -> None:
    periodic = fake.add_run(checkpoints=1, ttl_seconds=7 * 86400)
    rolling = fake.add_run(checkpoints=1, ttl_seconds=7200)
    records = seeded_records(fake, periodic) + seeded_records(fake, rolling)
    records[1]["name"] = "000015"
    write_log(tmp_path, records)
    wall.now += 7201  # the rolling save's 2 h are over
    point = prepare_resume(tmp_path, rest, now=wall.utc)
    assert point.record is not None and point.record.state_path == records[0]["state_path"]
    assert [s.reason for s in point.skipped] == ["deleted"]  # the service no longer lists it


def test_torn_line_only_log_is_cleaned_and_starts_fresh(tmp_path: Path, rest: Any) -> None:
    path = write_log(tmp_path, [], tail='{"name": "000')
    point = prepare_resume(tmp_path, rest, now=NOW)
    assert point.record is None and point.step is None and point.moved == 1
    assert path.read_text() == ""
    assert json.loads((tmp_path / SIDECAR_FILE).read_text()) == {
        "moved_at": NOW.isoformat(),
        "reason": "torn last line",
        "raw": '{"name": "000',
    }


def test_nothing_loadable_raises_and_leaves_the_log_unchanged(
    tmp_path: Path, fake: FakeTinker, rest: Any
) -> None:
    run_id = fake.add_run(checkpoints=1)
    path = write_log(tmp_path, seeded_records(fake, run_id))
    fake.delete_checkpoint(run_id, "weights/step-000010")
    before = path.read_bytes()
    with pytest.raises(MissingCheckpoint, match=r"000010 \(line 1\): deleted"):
        prepare_resume(tmp_path, rest, now=NOW)
    assert path.read_bytes() == before and not (tmp_path / SIDECAR_FILE).exists()


def test_a_server_error_propagates_as_the_packages_error(tmp_path: Path, fake: FakeTinker, rest: Any) -> None:
    run_id = fake.add_run(checkpoints=1)
    path = write_log(tmp_path, seeded_records(fake, run_id))
    before = path.read_bytes()
    fake.add_fault("GET", r"/checkpoints$", status=503, times=1)
    with pytest.raises(ServerError):
        prepare_resume(tmp_path, rest, now=NOW)
    assert path.read_bytes() == before


def test_a_naive_now_is_refused(tmp_path: Path, rest: Any) -> None:
    with pytest.raises(ValueError, match="aware"):
        prepare_resume(tmp_path, rest, now=datetime(2026, 1, 1))


# --- properties -------------------------------------------------------------------------------------

_names = st.one_of(
    st.integers(0, 999_999).map(lambda n: f"{n:06d}"),
    st.just("final"),
    st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12),
)
_extras = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
        lambda k: k not in ("name", "batch", "epoch", "final", "state_path", "sampler_path")
    ),
    st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()),
    max_size=3,
)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(_names)
    data: dict[str, Any] = {"name": name}
    for field in ("batch", "epoch"):
        if draw(st.booleans()):
            data[field] = draw(st.integers(0, 10**6))
    if draw(st.booleans()):
        data["final"] = draw(st.booleans())
    if draw(st.booleans()):
        data["state_path"] = f"tinker://{RUN}/weights/{name}"
    if draw(st.booleans()):
        data["sampler_path"] = f"tinker://{RUN}/sampler_weights/{name}"
    data.update(draw(_extras))
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_records(), max_size=8), cut=st.integers(1, 200), torn=st.booleans())
def test_any_cookbook_log_reads_back_and_a_torn_tail_is_only_skipped(
    tmp_path_factory: pytest.TempPathFactory, lines: list[dict[str, Any]], cut: int, torn: bool
) -> None:
    directory = tmp_path_factory.mktemp("log")
    tail = ""
    if torn:
        full = json.dumps({"name": "000099", "state_path": f"tinker://{RUN}/weights/000099"})
        tail = full[: min(cut, len(full) - 1)]
    write_log(directory, lines, tail=tail)
    log_file = read_log(directory)
    assert [r.to_json() for r in log_file.records] == [{"final": False, **line} for line in lines]
    assert log_file.torn_line == (tail or None)
    assert [r.line for r in log_file.records] == list(range(1, len(lines) + 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.integers(0, 99_999), min_size=1, max_size=8, unique=True),
    alive=st.lists(st.booleans(), min_size=8, max_size=8),
    fallbacks=st.integers(0, 8),
)
def test_prepare_resume_keeps_an_exact_prefix_and_moves_the_rest(
    tmp_path_factory: pytest.TempPathFactory, names: list[int], alive: list[bool], fallbacks: int
) -> None:
    directory = tmp_path_factory.mktemp("log")
    records = [record(f"{n:06d}") for n in names]
    path = write_log(directory, records)
    lines = path.read_text().splitlines()

    class Rest:
        def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
            return [listed(f"{n:06d}") for n, ok in zip(names, alive[: len(names)], strict=True) if ok]

    loadable = [i for i in range(len(names)) if alive[i]]
    newest_ok = loadable[-1] if loadable else None
    if newest_ok is None or len(names) - 1 - newest_ok > fallbacks:
        with pytest.raises(MissingCheckpoint):
            prepare_resume(directory, Rest(), now=NOW, max_fallbacks=fallbacks)
        assert path.read_text().splitlines() == lines
        return
    point = prepare_resume(directory, Rest(), now=NOW, max_fallbacks=fallbacks)
    assert point.record is not None and point.record.line == newest_ok + 1
    assert path.read_text().splitlines() == lines[: newest_ok + 1]
    moved = (directory / SIDECAR_FILE).read_text().splitlines() if point.moved else []
    assert [json.loads(m)["record"] for m in moved] == records[newest_ok + 1 :]
    assert len(point.skipped) == len(names) - 1 - newest_ok
    assert not [n for n in os.listdir(directory) if ".tmp-" in n]
