"""RestartBudget: exact window boundaries, out-of-order records, bad values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinker_recovery.budget import RestartBudget


def test_a_restart_counts_until_exactly_one_window_later():
    budget = RestartBudget(limit=2, window_s=60)
    budget.record(100.0)
    assert budget.used(100.0) == 1
    assert budget.used(159.999) == 1
    assert budget.used(160.0) == 0  # the window is open at its old end


def test_spent_at_the_limit_and_free_again_when_the_oldest_leaves():
    budget = RestartBudget(limit=2, window_s=10)
    budget.record(0.0)
    budget.record(5.0)
    assert budget.spent(9.0)
    assert budget.describe(9.0) == "restart budget spent: 2 of 2 restarts within 10 s"
    assert not budget.spent(10.0) and budget.used(10.0) == 1
    assert budget.used(15.0) == 0


def test_records_out_of_order_are_counted_in_order():
    budget = RestartBudget(limit=5, window_s=10)
    for when in (50.0, 41.0, 45.0):
        budget.record(when)
    assert budget.used(50.5) == 3
    assert budget.used(51.0) == 2  # 41.0 left exactly at 51.0
    assert budget.used(55.0) == 1
    assert budget.used(60.0) == 0


@pytest.mark.parametrize(
    ("limit", "window", "error", "field"),
    [
        (0, 1, ValueError, "limit"),
        (True, 1, TypeError, "limit"),
        (1.5, 1, TypeError, "limit"),
        (1, 0, ValueError, "window_s"),
        (1, -1, ValueError, "window_s"),
        (1, math.nan, ValueError, "window_s"),
        (1, math.inf, ValueError, "window_s"),
        (1, "60", TypeError, "window_s"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(limit, window, error, field):
    with pytest.raises(error, match=field):
        RestartBudget(limit, window)


def test_nan_times_are_refused():
    budget = RestartBudget(1, 1)
    with pytest.raises(ValueError, match="when"):
        budget.record(math.nan)
    with pytest.raises(ValueError, match="now"):
        budget.used(math.nan)


@given(
    st.lists(st.floats(min_value=0, max_value=1e6), max_size=30),
    st.floats(min_value=0, max_value=2e6),
    st.floats(min_value=0.001, max_value=1e5),
)
def test_used_counts_exactly_the_restarts_inside_the_window(times, now, window):
    budget = RestartBudget(limit=1, window_s=window)
    for when in times:
        budget.record(when)
    assert budget.used(now) == sum(1 for when in times if when > now - window)
