"""The pure checkpoint rules and the candidates generator, tested directly (no executor)."""

from __future__ import annotations

import math

import attrs
import pytest
from conftest import T0, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery.candidates import SOURCE_KEY, Candidates
from tinker_recovery.selection import as_checkpoint, check_training_checkpoint, newest_first, ranked_by_score

RUN = "run-1"
C10 = checkpoint(RUN, "step-000010", minutes=10)
C20 = checkpoint(RUN, "step-000020", minutes=20)
C30 = checkpoint(RUN, "step-000030", minutes=30)
S30 = checkpoint(RUN, "step-000030", minutes=30, kind="sampler")
EXPIRED = checkpoint(RUN, "step-000025", minutes=25, expires_in_min=26)
NOW = C30.time


def policy(**overrides):
    return tr.Policy(**{"enabled": True, **overrides})


def names(cps):
    return [cp.name for cp in cps]


# --- selection.py -----------------------------------------------------------------------------


def test_newest_first_keeps_usable_training_checkpoints_only():
    listed = [C10, S30, EXPIRED, C30, C20]
    assert newest_first(listed, NOW, set()) == [C30, C20, C10]
    assert newest_first(listed, NOW, {C30.tinker_path}) == [C20, C10]
    assert newest_first(listed, EXPIRED.time, set()) == [C30, EXPIRED, C20, C10]  # not yet expired


def test_ranked_by_score_breaks_ties_by_time_and_refuses_nan():
    scores = {"step-000010": 1.0, "step-000020": 2.0, "step-000030": 1.0}
    assert ranked_by_score([C10, C20, C30], NOW, set(), lambda cp: scores[cp.name]) == [C20, C30, C10]
    with pytest.raises(tr.CheckpointStrategyNotSupported, match="NaN"):
        ranked_by_score([C10], NOW, set(), lambda cp: math.nan)
    with pytest.raises(tr.CheckpointStrategyNotSupported, match="KeyError"):
        ranked_by_score([C10], NOW, set(), lambda cp: {}["x"])


def test_as_checkpoint_and_the_training_check():
    assert as_checkpoint(None, NOW) is None and as_checkpoint(C10, NOW) is C10
    assert as_checkpoint(C10.to_json(), NOW) == C10
    assert as_checkpoint(C10.tinker_path, NOW).tinker_path == C10.tinker_path
    with pytest.raises(TypeError, match="last_checkpoint"):
        as_checkpoint(3, NOW)
    assert check_training_checkpoint(C10) is C10
    with pytest.raises(tr.InvalidCheckpointPath, match="sampler"):
        check_training_checkpoint(S30)


# --- candidates.py ----------------------------------------------------------------------------


class Rest:
    def __init__(self, listings=None, runs=None):
        self.listings = listings or {}
        self.runs = runs or {}
        self.calls = []

    def list_checkpoints(self, run_id):
        self.calls.append(("list", run_id))
        return self.listings.get(run_id, [])

    def get_training_run(self, run_id):
        self.calls.append(("get", run_id))
        return self.runs[run_id]


def make(pol, rest=None, *, given=None, run=None, sources=None):
    sources = sources or {}
    return Candidates(
        pol,
        run_id=RUN,
        given=given,
        run=run,
        fetch_run=None if rest is None else rest.get_training_run,
        list_checkpoints=None if rest is None else rest.list_checkpoints,
        source_of=lambda run_id, r: (
            sources.get(run_id) or ((r.user_metadata or {}).get(SOURCE_KEY) if r else None)
        ),
        now=NOW,
    )


def test_latest_first_choice_is_yielded_before_any_listing():
    rest = Rest({RUN: [C10, C20, C30]})
    it = iter(make(policy(), rest, given=C30))
    assert next(it) == C30 and rest.calls == []  # lazy: no listing until a fallback is needed
    assert next(it) == C20 and rest.calls == [("list", RUN)]
    assert list(it) == [C10]


def test_max_fallbacks_bounds_the_fallbacks_not_the_first_choice():
    rest = Rest({RUN: [C10, C20, C30]})
    assert names(make(policy(max_fallbacks=1), rest, given=C30)) == ["step-000030", "step-000020"]
    assert names(make(policy(max_fallbacks=0), rest, given=C30)) == ["step-000030"]


def test_the_run_is_fetched_when_nothing_is_given():
    rest = Rest({RUN: [C10]}, {RUN: training_run(RUN, C20)})
    assert list(make(policy(), rest)) == [C20, C10]
    assert rest.calls[0] == ("get", RUN)


def test_an_expired_first_choice_is_skipped_without_counting():
    rest = Rest({RUN: [C10, C20]})
    assert list(make(policy(max_fallbacks=1), rest, given=EXPIRED)) == [C20]


def test_no_checkpoint_and_no_rest_says_so():
    with pytest.raises(tr.MissingCheckpoint, match="no REST access"):
        list(make(policy()))


def test_specific_yields_its_path_only():
    path = "tinker://run-0/weights/chosen"
    assert [cp.tinker_path for cp in make(policy(checkpoint_strategy=("specific", path)), Rest())] == [path]


def test_best_yields_by_score_within_max_fallbacks():
    scores = {"step-000010": 3, "step-000020": 1, "step-000030": 2}
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: scores[cp.name], max_fallbacks=1)
    assert names(make(pol, Rest({RUN: [C10, C20, C30, S30]}))) == ["step-000010", "step-000030"]
    with pytest.raises(tr.MissingCheckpoint, match="REST"):
        list(make(pol))
    with pytest.raises(tr.MissingCheckpoint, match="best"):
        list(make(pol, Rest()))


def test_a_run_without_checkpoints_goes_up_its_lineage():
    parent = "run-0"
    p10 = checkpoint(parent, "step-000010", minutes=10)
    p20 = checkpoint(parent, "step-000020", minutes=20)
    p30 = checkpoint(parent, "step-000030", minutes=30)  # saved after the source: not a fallback
    rest = Rest({RUN: [], parent: [p10, p30, p20]})
    run = training_run(RUN, None)
    got = list(make(policy(max_fallbacks=2), rest, run=run, sources={RUN: p20.tinker_path}))
    assert got == [p20, p10]
    assert ("list", parent) in rest.calls


def test_lineage_from_user_metadata_when_the_executor_forgot():
    parent = "run-0"
    p20 = checkpoint(parent, "step-000020", minutes=20)
    run = attrs.evolve(training_run(RUN, None), user_metadata={SOURCE_KEY: p20.tinker_path})
    assert list(make(policy(), Rest({parent: [p20]}), run=run)) == [p20]


def test_lineage_climbs_more_than_one_run_within_max_fallbacks():
    g10 = checkpoint("run-g", "step-000010", minutes=10)
    p20 = checkpoint("run-p", "step-000020", minutes=20)
    rest = Rest({RUN: [], "run-p": [p20], "run-g": [g10]})
    sources = {RUN: p20.tinker_path, "run-p": g10.tinker_path}
    assert list(make(policy(max_fallbacks=5), rest, run=training_run(RUN), sources=sources)) == [p20, g10]
    assert list(make(policy(max_fallbacks=1), rest, run=training_run(RUN), sources=sources)) == [p20]


def test_a_source_not_listed_is_tried_by_its_path():
    path = "tinker://run-0/weights/step-000020"
    got = list(make(policy(), None, given=None, run=training_run(RUN), sources={RUN: path}))
    assert [cp.tinker_path for cp in got] == [path] and got[0].step == 20


def test_sampler_path_of_the_same_name():
    rest = Rest({RUN: [C10, C30, S30]})
    cands = make(policy(), rest, given=C30)
    assert list(cands)[:1] == [C30]
    assert cands.sampler_path(C30) == S30.tinker_path and cands.sampler_path(C10) is None
    assert T0 < NOW


def test_a_gone_source_is_skipped_without_counting_and_older_ones_go_by_step():
    parent = "run-0"
    p10 = checkpoint(parent, "step-000010", minutes=50)  # listed times can lie; steps decide here
    p20 = checkpoint(parent, "step-000020", minutes=20)
    p40 = checkpoint(parent, "step-000040", minutes=40)
    rest = Rest({RUN: [], parent: [p10, p20, p40]})
    source = f"tinker://{parent}/weights/step-000030"  # deleted: not listed
    got = list(make(policy(max_fallbacks=1), rest, run=training_run(RUN), sources={RUN: source}))
    assert got == [p10]  # newest first by time among the older-by-step ones: p10 (minutes=50) before p20
