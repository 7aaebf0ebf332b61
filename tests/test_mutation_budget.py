"""RestartBudget's exact error messages (written to kill the mutants mutmut made of budget.py)."""

from __future__ import annotations

import math

import pytest

from tinker_recovery.budget import RestartBudget


def test_type_errors_name_the_type_given():
    with pytest.raises(TypeError) as info:
        RestartBudget("3", 60)
    assert str(info.value) == "limit: expected int, got str '3'"
    with pytest.raises(TypeError) as info:
        RestartBudget(3, "60")
    assert str(info.value) == "window_s: expected a number of seconds, got str '60'"


def test_nan_messages():
    budget = RestartBudget(1, 1)
    with pytest.raises(ValueError) as info:
        budget.record(math.nan)
    assert str(info.value) == "when: must be a number of seconds, got NaN"
    with pytest.raises(ValueError) as info:
        budget.spent(math.nan)
    assert str(info.value) == "now: must be a number of seconds, got NaN"
