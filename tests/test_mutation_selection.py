"""selection.py's edges: the expiry clock, mismatched checkpoint types, exact messages, ties
(written to kill the mutants mutmut made of selection.py; see docs/mutation.md)."""

from __future__ import annotations

import attrs
import pytest
from conftest import checkpoint

import tinker_recovery as tr
from tinker_recovery._text import escape_text
from tinker_recovery.models import ParsedCheckpointTinkerPath
from tinker_recovery.selection import as_checkpoint, check_training_checkpoint, ranked_by_score

RUN = "run-1"
C10 = checkpoint(RUN, "step-000010", minutes=10)
C20 = checkpoint(RUN, "step-000020", minutes=20)
NOW = C20.time


def test_a_path_gets_the_time_now():
    assert as_checkpoint(C10.tinker_path, NOW).time == NOW


def test_as_checkpoint_names_the_type_refused():
    with pytest.raises(TypeError) as info:
        as_checkpoint(3, NOW)
    assert str(info.value) == "last_checkpoint: expected a Checkpoint, a mapping or a path, got int"


def test_a_path_that_does_not_parse_keeps_the_parser_message():
    bad = attrs.evolve(C10, tinker_path="s3://bucket/x")
    with pytest.raises(ValueError) as parsed:
        ParsedCheckpointTinkerPath.from_tinker_path("s3://bucket/x")
    with pytest.raises(tr.InvalidCheckpointPath) as info:
        check_training_checkpoint(bad)
    assert str(info.value) == str(parsed.value) and "s3://bucket/x" in str(info.value)


def test_path_and_type_must_both_say_training():
    sampler_path = attrs.evolve(C10, tinker_path=f"tinker://{RUN}/sampler_weights/step-000010")
    with pytest.raises(tr.InvalidCheckpointPath) as info:
        check_training_checkpoint(sampler_path)
    # the path says sampler: the message names that kind
    expected = f"{sampler_path.tinker_path!r} is a sampler checkpoint, not a training checkpoint"
    assert str(info.value) == expected
    sampler_type = attrs.evolve(C10, checkpoint_type="sampler")
    with pytest.raises(tr.InvalidCheckpointPath) as info:
        check_training_checkpoint(sampler_type)
    assert str(info.value) == f"{C10.tinker_path!r} is a sampler checkpoint, not a training checkpoint"


def test_ranked_by_score_judges_expiry_at_now():
    soon = checkpoint(RUN, "step-000030", minutes=30, expires_in_min=24 * 60)
    assert ranked_by_score([C10, soon], NOW, set(), lambda cp: cp.step) == [soon, C10]


def test_equal_scores_and_times_keep_the_listed_order():
    twin = checkpoint(RUN, "step-000010-copy", minutes=10)
    assert ranked_by_score([C10, twin], NOW, set(), lambda cp: 1.0) == [C10, twin]
    assert ranked_by_score([twin, C10], NOW, set(), lambda cp: 1.0) == [twin, C10]


def test_best_by_errors_name_the_checkpoint_and_the_error_each_cut_at_300_characters():
    # (issue 13: server texts are escaped and cut in messages; mutants of the cut survived)
    long_path = f"tinker://{RUN}/weights/" + "x" * 400
    long = attrs.evolve(C10, tinker_path=long_path)
    shown_path = escape_text(long_path, 300)
    assert len(shown_path) == 300 and shown_path != escape_text(long_path, 301)
    message = "bad\n" + "y" * 400

    def raises(cp):
        raise ValueError(message)

    with pytest.raises(tr.CheckpointStrategyNotSupported) as info:
        ranked_by_score([long], NOW, set(), raises)
    assert str(info.value) == f"best_by raised ValueError on {shown_path}: {escape_text(message, 300)}"
    assert len(escape_text(message, 300)) == 300 and "\n" not in str(info.value)
    with pytest.raises(tr.CheckpointStrategyNotSupported) as info:
        ranked_by_score([long], NOW, set(), lambda cp: float("nan"))
    assert str(info.value) == f"best_by scored {shown_path} NaN; scores must be numbers"
