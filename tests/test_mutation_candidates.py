"""Candidates: de-duplication, the expiry clock, sampler paths, lineage edges and their log lines
(written to kill the mutants mutmut made of candidates.py; see docs/mutation.md)."""

from __future__ import annotations

import logging
from datetime import timedelta

import attrs
import pytest
from conftest import checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery._text import escape_text
from tinker_recovery.candidates import Candidates

RUN = "run-1"
PARENT = "run-0"
C10 = checkpoint(RUN, "step-000010", minutes=10)
C20 = checkpoint(RUN, "step-000020", minutes=20)
C30 = checkpoint(RUN, "step-000030", minutes=30)
S30 = checkpoint(RUN, "step-000030", minutes=30, kind="sampler")
P10 = checkpoint(PARENT, "step-000010", minutes=10)
P20 = checkpoint(PARENT, "step-000020", minutes=20)
NOW = C30.time
LATER = 24 * 60  # minutes: expires long after NOW, so a comparison with the clock happens
LOG = "tinker_recovery.candidates"


def policy(**overrides):
    return tr.Policy(**{"enabled": True, **overrides})


class Rest:
    def __init__(self, listings=None, runs=None):
        self.listings = listings or {}
        self.runs = runs or {}

    def list_checkpoints(self, run_id):
        return self.listings.get(run_id, [])

    def get_training_run(self, run_id):
        return self.runs[run_id]


def make(pol, rest=None, *, given=None, run=None, sources=None, fetch=True):
    sources = sources or {}
    return Candidates(
        pol,
        run_id=RUN,
        given=given,
        run=run,
        fetch_run=None if rest is None or not fetch else rest.get_training_run,
        list_checkpoints=None if rest is None else rest.list_checkpoints,
        source_of=lambda run_id, r: sources.get(run_id),
        now=NOW,
    )


def messages(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOG]


def test_a_checkpoint_seen_again_is_skipped_and_the_next_ones_still_come():
    # the first choice is the parent's checkpoint the run was restored from, so the lineage meets it again
    rest = Rest({RUN: [C10], PARENT: [P10, P20]})
    cands = make(policy(max_fallbacks=5), rest, given=P20, sources={RUN: P20.tinker_path})
    assert list(cands) == [P20, C10, P10]
    assert cands.yielded == [P20, C10, P10]


def test_an_expired_first_choice_is_logged_with_its_run_path_and_time(caplog):
    expired = checkpoint(RUN, "step-000025", minutes=25, expires_in_min=26)
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert list(make(policy(max_fallbacks=1), Rest({RUN: [C10]}), given=expired)) == [C10]
    assert messages(caplog) == [
        ("WARNING", f"run {RUN}: checkpoint {expired.tinker_path} expired at {expired.expires_at}; skipped")
    ]


def test_expiry_is_judged_at_now_in_every_listing():
    soon = checkpoint(RUN, "step-000020", minutes=20, expires_in_min=LATER)
    parent_soon = checkpoint(PARENT, "step-000010", minutes=10, expires_in_min=LATER)
    rest = Rest({RUN: [soon], PARENT: [P20, parent_soon]})
    got = list(make(policy(max_fallbacks=5), rest, given=C30, sources={RUN: P20.tinker_path}))
    assert got == [C30, soon, P20, parent_soon]


def test_best_judges_expiry_at_now():
    soon = checkpoint(RUN, "step-000020", minutes=20, expires_in_min=LATER)
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: cp.step, max_fallbacks=1)
    assert list(make(pol, Rest({RUN: [C10, soon]}))) == [soon, C10]


def test_best_without_rest_or_without_anything_to_score_says_so_exactly():
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: 1.0)
    with pytest.raises(tr.MissingCheckpoint) as info:
        list(make(pol))
    assert str(info.value) == "strategy 'best' needs REST access (a config or RestClient) to list checkpoints"
    with pytest.raises(tr.MissingCheckpoint) as info:
        list(make(pol, Rest()))
    assert str(info.value) == "no unexpired training checkpoint to score for strategy 'best'"


def test_specific_gets_the_time_now():
    path = "tinker://run-0/weights/chosen"
    (got,) = list(make(policy(checkpoint_strategy=("specific", path))))
    assert got.tinker_path == path and got.time == NOW


def test_nothing_found_messages():
    with pytest.raises(tr.MissingCheckpoint) as info:
        list(make(policy()))
    assert str(info.value) == f"run {RUN} has no last_checkpoint and there is no REST access to look one up"
    loadable = f"run {RUN} has no loadable training checkpoint (nor has its lineage)"
    with pytest.raises(tr.MissingCheckpoint) as info:  # a run known, no REST
        list(make(policy(), run=training_run(RUN, None)))
    assert str(info.value) == loadable
    expired = checkpoint(RUN, "step-000025", minutes=25, expires_in_min=26)
    with pytest.raises(tr.MissingCheckpoint) as info:  # a checkpoint given, no run, no REST
        list(make(policy(), given=expired))
    assert str(info.value) == loadable
    with pytest.raises(tr.MissingCheckpoint) as info:  # REST but no run given
        list(make(policy(), Rest({RUN: []}, {RUN: training_run(RUN, None)})))
    assert str(info.value) == loadable


def test_sampler_path_from_the_run_when_nothing_was_listed():
    run = attrs.evolve(training_run(RUN, C30), last_sampler_checkpoint=S30)
    cands = make(policy(), Rest(), given=C30, run=run)
    assert cands.sampler_path(C30) == S30.tinker_path  # no listing made: falls back to the run
    assert cands.sampler_path(C10) is None  # another name
    assert cands.sampler_path(P20) is None  # another run
    bare = make(policy(), Rest(), given=C30, run=training_run(RUN, C30))
    assert bare.sampler_path(C30) is None  # the run shows no sampler checkpoint
    assert make(policy(), given=C30).sampler_path(C30) is None  # no run known
    other = attrs.evolve(training_run(PARENT, P20), last_sampler_checkpoint=S30)
    assert make(policy(), given=C30, run=other).sampler_path(C30) is None  # the run is not the owner


def test_sampler_path_of_a_path_that_does_not_parse_is_none():
    bad = attrs.evolve(C30, tinker_path="not a tinker path")
    assert make(policy(), given=C30).sampler_path(bad) is None


def test_a_source_that_is_not_a_tinker_path_stops_the_climb_with_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger=LOG):
        got = list(make(policy(), Rest({RUN: [C10]}), given=C30, sources={RUN: "s3://elsewhere"}))
    assert got == [C30, C10]
    assert messages(caplog) == [
        (
            "WARNING",
            f"run {RUN}: source checkpoint 's3://elsewhere' is not a tinker path; lineage not followed",
        )
    ]


def test_climbing_the_lineage_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger=LOG):
        list(make(policy(), Rest({RUN: [], PARENT: [P20]}), given=C30, sources={RUN: P20.tinker_path}))
    assert messages(caplog) == [("INFO", f"run {RUN}: going up the lineage to {P20.tinker_path}")]


def test_a_gone_source_is_logged(caplog):
    gone = f"tinker://{PARENT}/weights/step-000030"
    with caplog.at_level(logging.WARNING, logger=LOG):
        got = list(make(policy(), Rest({RUN: [], PARENT: [P10]}), given=C30, sources={RUN: gone}))
    assert got == [C30, P10]
    assert messages(caplog) == [
        ("WARNING", f"run {RUN}: source checkpoint {gone} is gone; older ones of {PARENT} are tried")
    ]


def test_a_listed_source_is_followed_by_strictly_older_ones_only():
    twin = checkpoint(PARENT, "step-000020-copy", minutes=20)  # saved at the same time as the source
    rest = Rest({RUN: [], PARENT: [P10, twin, P20]})
    got = list(make(policy(max_fallbacks=5), rest, given=C30, sources={RUN: P20.tinker_path}))
    assert got == [C30, P20, P10]


def test_a_gone_source_keeps_only_strictly_smaller_steps():
    same_step = checkpoint(PARENT, "copy-step-000030", minutes=5)
    no_step = checkpoint(PARENT, "final", minutes=6)
    rest = Rest({RUN: [], PARENT: [P10, same_step, no_step]})
    gone = f"tinker://{PARENT}/weights/step-000030"
    assert list(make(policy(max_fallbacks=5), rest, given=C30, sources={RUN: gone})) == [C30, P10]


def test_a_gone_source_without_a_step_keeps_every_listed_one():
    no_step = checkpoint(PARENT, "final", minutes=6)
    rest = Rest({RUN: [], PARENT: [P10, no_step]})
    gone = f"tinker://{PARENT}/weights/best"
    assert list(make(policy(max_fallbacks=5), rest, given=C30, sources={RUN: gone})) == [C30, P10, no_step]


def test_a_source_tried_by_its_path_gets_the_time_now():
    path = f"tinker://{PARENT}/weights/step-000020"
    got = list(make(policy(), None, run=training_run(RUN), sources={RUN: path}))
    assert [cp.tinker_path for cp in got] == [path] and got[0].time == NOW
    assert NOW - got[0].time == timedelta(0)


# --- the bug these mutants revealed: skipped fallbacks used to count against max_fallbacks ------


def test_a_fallback_seen_before_does_not_use_up_max_fallbacks():
    rest = Rest({RUN: [C10], PARENT: [P10, P20]})
    got = list(make(policy(max_fallbacks=2), rest, given=P20, sources={RUN: P20.tinker_path}))
    assert got == [P20, C10, P10]


def test_an_expired_lineage_source_does_not_use_up_max_fallbacks():
    expired = checkpoint(PARENT, "step-000020", minutes=20, expires_in_min=25)
    rest = Rest({RUN: [], PARENT: [P10, expired]})
    got = list(make(policy(max_fallbacks=1), rest, given=C30, sources={RUN: expired.tinker_path}))
    assert got == [C30, P10]


def test_a_fallback_met_twice_uses_up_max_fallbacks_once():
    # a listing that holds the lineage source already: the climb meets it again, uncounted
    rest = Rest({RUN: [P20], PARENT: [P10, P20]})
    got = list(make(policy(max_fallbacks=2), rest, given=C30, sources={RUN: P20.tinker_path}))
    assert got == [C30, P20, P10]


# --- server-given paths and ids in the log lines are escaped and cut at 300 characters (issue 13) ---

LONG_PARENT = "run-" + "p" * 400


def cut(text):
    shown = escape_text(text, 300)
    assert len(shown) == 300 and shown != escape_text(text, 301)
    return shown


def test_a_long_expired_path_is_cut_in_its_log_line(caplog):
    expired = checkpoint(RUN, "step-000025", minutes=25, expires_in_min=26)
    expired = attrs.evolve(expired, tinker_path=expired.tinker_path + "x" * 400)
    with caplog.at_level(logging.WARNING, logger=LOG):
        assert list(make(policy(max_fallbacks=1), Rest({RUN: [C10]}), given=expired)) == [C10]
    assert messages(caplog) == [
        (
            "WARNING",
            f"run {RUN}: checkpoint {cut(expired.tinker_path)} expired at {expired.expires_at}; skipped",
        )
    ]


def test_a_long_source_that_is_not_a_tinker_path_is_cut_in_its_log_line(caplog):
    source = "s3://" + "e" * 400
    with caplog.at_level(logging.WARNING, logger=LOG):
        list(make(policy(), Rest({RUN: [C10]}), given=C30, sources={RUN: source}))
    assert messages(caplog) == [
        (
            "WARNING",
            f"run {RUN}: source checkpoint {cut(repr(source))} is not a tinker path; lineage not followed",
        )
    ]


def test_a_long_gone_source_and_its_run_are_cut_in_the_log_lines(caplog):
    gone = f"tinker://{LONG_PARENT}/weights/step-000030"
    with caplog.at_level(logging.INFO, logger=LOG):
        list(make(policy(), Rest({RUN: [], LONG_PARENT: []}), given=C30, sources={RUN: gone}))
    assert messages(caplog) == [
        ("INFO", f"run {RUN}: going up the lineage to {cut(gone)}"),
        (
            "WARNING",
            f"run {RUN}: source checkpoint {cut(gone)} is gone; older ones of {cut(LONG_PARENT)} are tried",
        ),
    ]
