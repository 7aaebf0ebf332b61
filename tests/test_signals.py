"""The recovery signals: names, the package's own namespace, guarded sending."""

from __future__ import annotations

import logging

import blinker
import pytest

from tinker_recovery import signals

EVENTS = ["detected", "started", "checkpoint_selected", "client_created", "completed", "failed", "exhausted",
          "poll_error"]


def test_the_eight_signal_names():
    assert [signal.name for signal in signals.ALL] == [f"tinkex.recovery.{event}" for event in EVENTS]
    for event in EVENTS:
        assert getattr(signals, event).name == f"tinkex.recovery.{event}"
    assert len(set(signals.ALL)) == 8


def test_signals_live_in_the_package_namespace():
    assert isinstance(signals.namespace, blinker.Namespace)
    assert signals.namespace is not blinker.default_namespace
    for signal in signals.ALL:
        assert signals.namespace[signal.name] is signal
        assert signal.name not in blinker.default_namespace
        assert blinker.signal(signal.name) is not signal
    extra = (signals.watched, signals.unwatched)  # what the journal records; not recovery signals
    assert set(signals.namespace) == {signal.name for signal in (*signals.ALL, *extra)}


def test_send_guarded_delivers_payload():
    seen = []

    def receiver(sender, **payload):
        seen.append((sender, payload))

    sender = object()
    with signals.completed.connected_to(receiver):
        signals.send_guarded(
            signals.completed, sender, run_id="r1", attempt=2, strategy="latest", metadata={}
        )
    assert seen == [(sender, {"run_id": "r1", "attempt": 2, "strategy": "latest", "metadata": {}})]


def test_send_guarded_without_receivers_is_a_no_op():
    lonely = blinker.Namespace().signal("tinkex.recovery.lonely")
    signals.send_guarded(lonely, object(), run_id="r1")


def test_send_guarded_survives_a_raising_receiver(caplog):
    calls = []

    def first(sender, **payload):
        calls.append("first")

    def broken(sender, **payload):
        calls.append("broken")
        raise RuntimeError("receiver bug")

    def last(sender, **payload):
        calls.append("last")

    with signals.failed.connected_to(first), signals.failed.connected_to(broken), \
            signals.failed.connected_to(last), caplog.at_level(logging.DEBUG, logger="tinker_recovery"):
        signals.send_guarded(signals.failed, "monitor", run_id="run-9", attempt=1)

    assert sorted(calls) == ["broken", "first", "last"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    record = errors[0]
    assert record.name.startswith("tinker_recovery")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "tinkex.recovery.failed" in record.getMessage() and "run-9" in record.getMessage()


def test_send_guarded_every_receiver_raising(caplog):
    def bad_one(sender, **payload):
        raise ValueError("one")

    def bad_two(sender, **payload):
        raise KeyError("two")

    with signals.exhausted.connected_to(bad_one), signals.exhausted.connected_to(bad_two), \
            caplog.at_level(logging.ERROR, logger="tinker_recovery"):
        signals.send_guarded(signals.exhausted, None, run_id="r")
    assert sorted(type(r.exc_info[1]).__name__ for r in caplog.records) == ["KeyError", "ValueError"]


def test_send_guarded_lets_base_exceptions_through():
    def interrupt(sender, **payload):
        raise KeyboardInterrupt

    with signals.started.connected_to(interrupt), pytest.raises(KeyboardInterrupt):
        signals.send_guarded(signals.started, None, run_id="r")


def test_send_guarded_respects_sender_filter():
    seen = []
    monitor_a, monitor_b = object(), object()

    def receiver(sender, **payload):
        seen.append(sender)

    with signals.detected.connected_to(receiver, sender=monitor_a):
        signals.send_guarded(signals.detected, monitor_b, run_id="r")
        signals.send_guarded(signals.detected, monitor_a, run_id="r")
    assert seen == [monitor_a]


def test_send_guarded_respects_muted():
    seen = []

    def receiver(sender, **payload):
        seen.append(sender)

    with signals.client_created.connected_to(receiver):
        with signals.client_created.muted():
            signals.send_guarded(signals.client_created, "x", run_id="r")
        signals.send_guarded(signals.client_created, "y", run_id="r")
    assert seen == ["y"]


def test_receivers_are_weak_by_default():
    seen = []

    def make():
        def receiver(sender, **payload):
            seen.append(1)
        return receiver

    signals.checkpoint_selected.connect(make())  # no reference kept: dropped
    strong = make()
    signals.checkpoint_selected.connect(strong, weak=False)
    try:
        signals.send_guarded(signals.checkpoint_selected, None, run_id="r")
    finally:
        signals.checkpoint_selected.disconnect(strong)
    assert seen == [1]
