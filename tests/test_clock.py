"""Clocks: ManualClock's waits and the ways a test parks on them; waits bounded for Event.wait."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone

import pytest

import tinker_recovery as tr
from tinker_recovery.clock import MAX_WAIT_S, bounded_wait_s


def test_bounded_wait_exact_values():
    assert bounded_wait_s(None) is None
    assert bounded_wait_s(-5) == 0.0
    assert bounded_wait_s(0) == 0.0
    assert bounded_wait_s(2.5) == 2.5
    assert bounded_wait_s(math.inf) == MAX_WAIT_S
    assert bounded_wait_s(1e13) == MAX_WAIT_S <= threading.TIMEOUT_MAX
    with pytest.raises(ValueError, match="NaN"):
        bounded_wait_s(math.nan)


def test_system_clock_waits_accept_huge_timeouts():
    event = threading.Event()
    event.set()
    assert tr.SystemClock().wait(event, 1e13) is True  # would be OverflowError in Event.wait


def test_manual_clock_time_moves_only_on_advance():
    clock = tr.ManualClock(start=10.0, wall_start=datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert clock.monotonic() == 10.0
    clock.advance(2.5)
    assert clock.monotonic() == 12.5
    assert clock.now() == datetime(2026, 5, 1, tzinfo=timezone.utc) + timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(-1)


def test_wait_wakes_exactly_at_its_deadline():
    clock = tr.ManualClock(start=0.0)
    event = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(clock.wait(event, 3.0)), daemon=True)
    thread.start()
    clock.wait_for_deadline(3.0)
    clock.advance(2.999)
    assert not event.is_set()
    clock.advance(0.001)
    thread.join(10)
    assert result == [True]


def test_waits_begun_counts_new_waits_not_threads_already_waiting():
    clock = tr.ManualClock(start=0.0)
    parked = threading.Event()
    first = threading.Thread(target=clock.wait, args=(parked, None), daemon=True)
    first.start()
    clock.wait_for_waits_begun(1)
    clock.wait_for_waiters(1)
    with pytest.raises(TimeoutError, match="1 wait"):
        clock.wait_for_waits_begun(2, timeout=0.05)  # the parked thread does not count twice
    other = threading.Event()
    second = threading.Thread(target=clock.wait, args=(other, 1.0), daemon=True)
    second.start()
    clock.wait_for_waits_begun(2)
    assert clock.waits_begun == 2
    parked.set()
    other.set()
    first.join(10)
    second.join(10)


def test_wait_for_deadline_times_out_naming_what_is_waited_for():
    clock = tr.ManualClock(start=0.0)
    with pytest.raises(TimeoutError, match="deadline 5"):
        clock.wait_for_deadline(5.0, timeout=0.05)


def test_zero_and_nan_timeouts():
    clock = tr.ManualClock()
    event = threading.Event()
    assert clock.wait(event, 0) is False
    with pytest.raises(ValueError, match="NaN"):
        clock.wait(event, math.nan)
