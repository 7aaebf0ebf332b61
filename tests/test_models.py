"""The REST value types: validating constructors, path grammar, step and expiry helpers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest

from tinker_recovery import Checkpoint, Cursor, ParsedCheckpointTinkerPath, ResponseError, TrainingRun

RUN = "3f2a9c1e-0b7d-4c55-9a61-2d8e7f4b1c00:train:0"
UTC = timezone.utc


def checkpoint_json(name: str = "step-000120", *, segment: str = "weights", **extra) -> dict:
    kind = {"weights": "training", "sampler_weights": "sampler", "external_weights": "external"}[segment]
    data = {
        "checkpoint_id": f"{segment}/{name}",
        "checkpoint_type": kind,
        "time": "2025-03-01T12:30:00.123456Z",
        "tinker_path": f"tinker://{RUN}/{segment}/{name}",
    }
    data.update(extra)
    return data


def run_json(**extra) -> dict:
    data = {
        "training_run_id": RUN,
        "base_model": "Qwen/Qwen3-8B",
        "model_owner": "user-123",
        "is_lora": True,
        "last_request_time": "2025-03-01T12:31:05+00:00",
    }
    data.update(extra)
    return data


# --- TrainingRun ----------------------------------------------------------------------------------


def test_training_run_full_payload_with_unknown_keys_and_nested_checkpoints():
    data = run_json(
        corrupted=True,
        lora_rank=32,
        last_checkpoint=checkpoint_json(size_bytes=1234, public=True, user_metadata={"step": "120"},
                                        expires_at="2025-04-01T00:00:00Z", future_field=[1, 2]),
        last_sampler_checkpoint=checkpoint_json("s-7", segment="sampler_weights"),
        user_metadata={"team": "rl"},
        access_scope="owned",
        new_server_field={"nested": True},
    )
    run = TrainingRun.from_json(data)
    assert run.training_run_id == RUN
    assert run.base_model == "Qwen/Qwen3-8B"
    assert run.model_owner == "user-123"
    assert run.is_lora is True
    assert run.corrupted is True
    assert run.lora_rank == 32
    assert run.user_metadata == {"team": "rl"}
    assert run.last_request_time == datetime(2025, 3, 1, 12, 31, 5, tzinfo=UTC)
    ckpt = run.last_checkpoint
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.checkpoint_id == "weights/step-000120"
    assert ckpt.checkpoint_type == "training"
    assert ckpt.size_bytes == 1234 and ckpt.public is True
    assert ckpt.user_metadata == {"step": "120"}
    assert ckpt.expires_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert run.last_sampler_checkpoint.checkpoint_type == "sampler"
    assert run.last_sampler_checkpoint.tinker_path == f"tinker://{RUN}/sampler_weights/s-7"


def test_training_run_minimal_payload_defaults():
    run = TrainingRun.from_json(run_json())
    assert run.corrupted is False
    assert run.lora_rank is None
    assert run.last_checkpoint is None
    assert run.last_sampler_checkpoint is None
    assert run.user_metadata is None


def test_training_run_explicit_nulls_for_optional_fields():
    run = TrainingRun.from_json(
        run_json(corrupted=None, lora_rank=None, last_checkpoint=None, last_sampler_checkpoint=None,
                 user_metadata=None)
    )
    assert (run.corrupted, run.lora_rank, run.last_checkpoint, run.user_metadata) == (False, None, None, None)


REQUIRED_RUN_FIELDS = ["training_run_id", "base_model", "model_owner", "is_lora", "last_request_time"]


@pytest.mark.parametrize("field", REQUIRED_RUN_FIELDS)
def test_training_run_missing_required_field(field):
    data = run_json()
    del data[field]
    with pytest.raises(ResponseError, match=rf"TrainingRun\.{field}: missing"):
        TrainingRun.from_json(data)


@pytest.mark.parametrize("field", ["training_run_id", "is_lora", "last_request_time"])
def test_training_run_required_field_null_is_missing(field):
    with pytest.raises(ResponseError, match=rf"TrainingRun\.{field}: missing"):
        TrainingRun.from_json(run_json(**{field: None}))


@pytest.mark.parametrize(
    "field, value",
    [
        ("training_run_id", 17),
        ("base_model", ["Qwen"]),
        ("model_owner", 3.5),
        ("is_lora", "true"),
        ("is_lora", 1),
        ("last_request_time", 1740832265),
        ("corrupted", "false"),
        ("corrupted", 0),
        ("lora_rank", "32"),
        ("lora_rank", 32.0),
        ("lora_rank", True),
        ("user_metadata", {"step": 3}),
        ("user_metadata", ["a"]),
        ("last_checkpoint", "weights/x"),
        ("last_sampler_checkpoint", [1]),
    ],
)
def test_training_run_wrong_type_names_the_field(field, value):
    with pytest.raises(ResponseError, match=rf"TrainingRun\.{field}: expected"):
        TrainingRun.from_json(run_json(**{field: value}))


def test_training_run_nested_checkpoint_error_names_checkpoint_field():
    bad = checkpoint_json()
    del bad["time"]
    with pytest.raises(ResponseError, match=r"Checkpoint\.time: missing"):
        TrainingRun.from_json(run_json(last_checkpoint=bad))


@pytest.mark.parametrize("data", [None, [], "run", 3])
def test_training_run_not_an_object(data):
    with pytest.raises(ResponseError, match="TrainingRun: expected a JSON object"):
        TrainingRun.from_json(data)


# --- datetimes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-03-01T12:30:00Z", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        ("2025-03-01T12:30:00.5Z", datetime(2025, 3, 1, 12, 30, 0, 500000, tzinfo=UTC)),
        ("2025-03-01T12:30:00+00:00", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        ("2025-03-01T14:30:00+02:00", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        ("2025-03-01T07:00:00-05:30", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_iso8601_with_zone(text, expected):
    parsed = TrainingRun.from_json(run_json(last_request_time=text)).last_request_time
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize("text", ["2025-03-01T12:30:00", "2025-03-01"])
def test_naive_datetime_reads_as_utc(text):
    # as the official SDK's types accept it (issue 12.5): a timestamp without a zone is UTC
    run = TrainingRun.from_json(run_json(last_request_time=text))
    assert run.last_request_time == datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "", "2025-13-01T00:00:00Z"])
def test_unparseable_datetime_refused(text):
    with pytest.raises(ResponseError, match=r"Checkpoint\.time: not an ISO-8601"):
        Checkpoint.from_json(checkpoint_json(time=text))


def test_naive_optional_datetime_reads_as_utc():
    ckpt = Checkpoint.from_json(checkpoint_json(expires_at="2025-04-01T00:00:00"))
    assert ckpt.expires_at == datetime(2025, 4, 1, tzinfo=UTC)


# --- Checkpoint -----------------------------------------------------------------------------------


def test_checkpoint_minimal_payload_defaults():
    ckpt = Checkpoint.from_json(checkpoint_json())
    assert ckpt.size_bytes is None
    assert ckpt.public is False
    assert ckpt.user_metadata is None
    assert ckpt.expires_at is None
    assert ckpt.time == datetime(2025, 3, 1, 12, 30, 0, 123456, tzinfo=UTC)
    assert ckpt.name == "step-000120"
    assert ckpt.training_run_id == RUN


@pytest.mark.parametrize("field", ["checkpoint_id", "checkpoint_type", "time", "tinker_path"])
def test_checkpoint_missing_required_field(field):
    data = checkpoint_json()
    del data[field]
    with pytest.raises(ResponseError, match=rf"Checkpoint\.{field}: missing"):
        Checkpoint.from_json(data)


@pytest.mark.parametrize(
    "field, value",
    [
        ("checkpoint_id", 5),
        ("checkpoint_type", 1),
        ("time", 1.5),
        ("tinker_path", {"p": 1}),
        ("size_bytes", "1024"),
        ("size_bytes", True),
        ("size_bytes", 10.0),
        ("public", "yes"),
        ("public", 1),
        ("user_metadata", "step=1"),
        ("expires_at", 0),
    ],
)
def test_checkpoint_wrong_type_names_the_field(field, value):
    with pytest.raises(ResponseError, match=rf"Checkpoint\.{field}: expected"):
        Checkpoint.from_json(checkpoint_json(**{field: value}))


@pytest.mark.parametrize("kind", ["Training", "weights", "sampler_weights", "", "best"])
def test_checkpoint_type_outside_the_three_refused(kind):
    expected = r"Checkpoint\.checkpoint_type: expected one of training, sampler, external"
    with pytest.raises(ResponseError, match=expected):
        Checkpoint.from_json(checkpoint_json(checkpoint_type=kind))


@pytest.mark.parametrize("kind", ["training", "sampler", "external"])
def test_checkpoint_type_accepted(kind):
    assert Checkpoint.from_json(checkpoint_json(checkpoint_type=kind)).checkpoint_type == kind


def test_response_error_is_a_value_error_and_retryable():
    with pytest.raises(ValueError) as info:
        Checkpoint.from_json({})
    assert isinstance(info.value, ResponseError)
    assert info.value.retryable is True


@pytest.mark.parametrize(
    "name, metadata, expected",
    [
        ("step-000120", None, 120),
        ("ckpt_step120", None, 120),
        ("STEP_7", None, 7),
        ("step-10-then-step-20", None, 20),
        ("step-000120", {"step": "42"}, 42),
        ("step-000120", {"training_step": "43"}, 43),
        ("step-000120", {"step": " 44 "}, 44),
        ("step-000120", {"step": "not-a-number"}, 120),
        ("step-000120", {"step": "-3"}, 120),
        ("step-000120", {"step": "\u00b2"}, 120),  # isdigit() but not a decimal integer
        ("final", {"step": "42"}, 42),
        ("final", None, None),
        ("final", {"other": "1"}, None),
        ("epoch-3", None, None),
    ],
)
def test_checkpoint_step(name, metadata, expected):
    ckpt = Checkpoint.from_json(checkpoint_json(name, user_metadata=metadata))
    assert ckpt.step == expected


def test_checkpoint_is_expired():
    expires = datetime(2025, 4, 1, tzinfo=UTC)
    ckpt = Checkpoint.from_json(checkpoint_json(expires_at="2025-04-01T00:00:00Z"))
    assert ckpt.is_expired(expires - timedelta(seconds=1)) is False
    assert ckpt.is_expired(expires) is True
    assert ckpt.is_expired(expires + timedelta(days=1)) is True
    plus2 = timezone(timedelta(hours=2))  # the instant, not the wall-clock digits, decides
    assert ckpt.is_expired(datetime(2025, 4, 1, 1, 59, tzinfo=plus2)) is False
    assert ckpt.is_expired(datetime(2025, 4, 1, 2, 0, tzinfo=plus2)) is True
    never = Checkpoint.from_json(checkpoint_json())
    assert never.is_expired(datetime(2999, 1, 1, tzinfo=UTC)) is False


def test_checkpoint_to_json_round_trip():
    full = Checkpoint.from_json(
        checkpoint_json(size_bytes=99, public=True, user_metadata={"step": "5"},
                        expires_at="2025-04-01T00:00:00+02:00", unknown="dropped")
    )
    data = full.to_json()
    assert "unknown" not in data
    assert Checkpoint.from_json(data) == full
    minimal = Checkpoint.from_json(checkpoint_json())
    assert set(minimal.to_json()) == {"checkpoint_id", "checkpoint_type", "time", "tinker_path", "public"}
    assert Checkpoint.from_json(minimal.to_json()) == minimal


def test_training_run_to_json_round_trip():
    run = TrainingRun.from_json(
        run_json(
            lora_rank=8,
            corrupted=True,
            user_metadata={"a": "b"},
            last_checkpoint=checkpoint_json(),
            last_sampler_checkpoint=checkpoint_json(segment="sampler_weights"),
        )
    )
    assert TrainingRun.from_json(run.to_json()) == run
    minimal = TrainingRun.from_json(run_json())
    assert "last_checkpoint" not in minimal.to_json()
    assert TrainingRun.from_json(minimal.to_json()) == minimal


def test_checkpoint_from_path():
    at = datetime(2025, 1, 1, tzinfo=UTC)
    ckpt = Checkpoint.from_path(f"tinker://{RUN}/weights/step-5", time=at)
    assert (ckpt.checkpoint_id, ckpt.checkpoint_type, ckpt.time) == ("weights/step-5", "training", at)
    assert ckpt.step == 5
    with pytest.raises(ValueError):
        Checkpoint.from_path("tinker://run/weights", time=at)


def test_types_are_frozen():
    ckpt = Checkpoint.from_json(checkpoint_json())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ckpt.public = True  # type: ignore[misc]


# --- Cursor ---------------------------------------------------------------------------------------


def test_cursor():
    cursor = Cursor.from_json({"offset": 20, "limit": 20, "total_count": 45, "extra": 1})
    assert (cursor.offset, cursor.limit, cursor.total_count) == (20, 20, 45)
    assert cursor.has_more is True
    assert Cursor.from_json({"offset": 40, "limit": 20, "total_count": 45}).has_more is False


@pytest.mark.parametrize("field", ["offset", "limit", "total_count"])
def test_cursor_missing_field(field):
    data = {"offset": 0, "limit": 20, "total_count": 1}
    del data[field]
    with pytest.raises(ResponseError, match=rf"Cursor\.{field}: missing"):
        Cursor.from_json(data)


@pytest.mark.parametrize("value", [True, "3", 3.0])
def test_cursor_wrong_type(value):
    with pytest.raises(ResponseError, match=r"Cursor\.total_count: expected an integer"):
        Cursor.from_json({"offset": 0, "limit": 20, "total_count": value})


# --- ParsedCheckpointTinkerPath -------------------------------------------------------------------


@pytest.mark.parametrize(
    "segment, kind",
    [("weights", "training"), ("sampler_weights", "sampler"), ("external_weights", "external")],
)
def test_parse_tinker_path(segment, kind):
    path = f"tinker://{RUN}/{segment}/ckpt-1"
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    assert parsed == ParsedCheckpointTinkerPath(path, RUN, kind, f"{segment}/ckpt-1")
    assert parsed.name == "ckpt-1"


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tinker://",
        f"tinker://{RUN}",
        f"tinker://{RUN}/weights",
        f"tinker://{RUN}/weights/",
        f"tinker://{RUN}/weights/a/b",
        f"tinker://{RUN}//a",
        "tinker:///weights/a",
        f"tinker://{RUN}/checkpoints/a",
        f"tinker://{RUN}/Weights/a",
        f"http://{RUN}/weights/a",
        f"TINKER://{RUN}/weights/a",
        f"{RUN}/weights/a",
        f" tinker://{RUN}/weights/a",
        None,
        42,
    ],
)
def test_parse_malformed_tinker_path(path):
    with pytest.raises(ValueError, match="invalid tinker path"):
        ParsedCheckpointTinkerPath.from_tinker_path(path)


def test_checkpoint_training_run_id_none_for_unparseable_path():
    assert Checkpoint.from_json(checkpoint_json(tinker_path="s3://bucket/x")).training_run_id is None


def test_ids_and_corrupted_keeps_the_page_order_and_only_the_corrupted_runs():
    from tinker_recovery.models import RunBrief, ids_and_corrupted

    runs = [RunBrief("b", False), RunBrief("a", True), RunBrief("c", True)]
    assert ids_and_corrupted(runs) == (["b", "a", "c"], [runs[1], runs[2]])
    assert ids_and_corrupted([]) == ([], [])
