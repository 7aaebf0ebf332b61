"""The shared value checks of ``_checks``: exact messages, both sides of every bound (written to
kill the mutants mutmut made of _checks.py; see docs/mutation.md)."""

from __future__ import annotations

import math
import threading

import pytest

from tinker_recovery._checks import (
    MAX_WAIT_S,
    attrs_validator,
    check_bool,
    check_callable,
    check_int,
    check_ms,
    check_seconds,
)

LONG = "x" * 100
LONG_SHOWN = repr(LONG)[:57] + "..."


def message(error_type, check, *args, **kwargs):
    with pytest.raises(error_type) as info:
        check(*args, **kwargs)
    return str(info.value)


def test_max_wait():
    assert MAX_WAIT_S == min(threading.TIMEOUT_MAX, 1e9) == 1e9


def test_check_bool():
    assert check_bool("f", True) is True and check_bool("f", False) is False
    assert message(TypeError, check_bool, "f", 1) == "f: expected bool, got int 1"
    assert message(TypeError, check_bool, "f", LONG) == f"f: expected bool, got str {LONG_SHOWN}"


def test_a_shown_value_is_cut_at_60_characters():
    sixty = "y" * 58  # repr adds two quotes: exactly 60 characters, shown whole
    assert message(TypeError, check_bool, "f", sixty) == f"f: expected bool, got str {sixty!r}"
    sixty_one = "y" * 59
    assert message(TypeError, check_bool, "f", sixty_one) == (
        f"f: expected bool, got str {repr(sixty_one)[:57]}..."
    )
    assert len(repr(sixty_one)[:57] + "...") == 60


def test_check_int():
    assert check_int("f", 5) == 5 and check_int("f", -(10**30)) == -(10**30)
    assert check_int("f", 1, minimum=1, maximum=1) == 1
    assert message(TypeError, check_int, "f", True) == "f: expected int, got bool True"
    assert message(TypeError, check_int, "f", 1.0) == "f: expected int, got float 1.0"
    assert message(ValueError, check_int, "f", 0, minimum=1) == "f: must be at least 1, got 0"
    assert message(ValueError, check_int, "f", 3, maximum=2) == "f: must be at most 2, got 3"
    assert message(ValueError, check_int, "f", 10**70, maximum=2) == (
        f"f: must be at most 2, got {str(10**70)[:57]}..."
    )


def test_check_seconds():
    assert check_seconds("f", 0) == 0 and check_seconds("f", 2.5) == 2.5
    assert check_seconds("f", MAX_WAIT_S) == MAX_WAIT_S
    assert isinstance(check_seconds("f", 3), int)  # returned as given
    assert message(TypeError, check_seconds, "f", True) == "f: expected a number of seconds, got bool True"
    assert message(TypeError, check_seconds, "f", "1") == "f: expected a number of seconds, got str '1'"
    assert message(ValueError, check_seconds, "f", math.nan) == "f: must be a number of seconds, got NaN"
    assert message(ValueError, check_seconds, "f", -0.5) == "f: must be at least 0 s, got -0.5"
    assert message(ValueError, check_seconds, "f", math.inf) == "f: must be at most 1e+09 s, got inf"
    assert message(ValueError, check_seconds, "f", 10**400) == (
        f"f: must be at most 1e+09 s, got {str(10**400)[:57]}..."
    )
    assert message(ValueError, check_seconds, "f", MAX_WAIT_S * 1.0001) == (
        f"f: must be at most 1e+09 s, got {MAX_WAIT_S * 1.0001!r}"
    )
    assert message(ValueError, check_seconds, "f", 5, maximum=4) == "f: must be at most 4 s, got 5"
    assert check_seconds("f", 4, maximum=4) == 4


def test_check_seconds_exclusive_minimum():
    assert check_seconds("f", 0.001, minimum=0, inclusive=False) == 0.001
    assert message(ValueError, check_seconds, "f", 0, minimum=0, inclusive=False) == (
        "f: must be greater than 0 s, got 0"
    )
    assert message(ValueError, check_seconds, "f", -1, minimum=0, inclusive=False) == (
        "f: must be greater than 0 s, got -1"
    )
    assert check_seconds("f", 0.5, minimum=0.5) == 0.5
    assert message(ValueError, check_seconds, "f", 0.25, minimum=0.5) == "f: must be at least 0.5 s, got 0.25"


def test_check_ms():
    assert check_ms("f", 0) == 0 and check_ms("f", 10**12) == 10**12
    assert check_ms("f", 7, minimum=7) == 7
    assert message(TypeError, check_ms, "f", 1.5) == "f: expected int (milliseconds), got float 1.5"
    assert message(TypeError, check_ms, "f", False) == "f: expected int (milliseconds), got bool False"
    assert message(ValueError, check_ms, "f", 6, minimum=7) == "f: must be at least 7 ms, got 6"
    assert message(ValueError, check_ms, "f", 6, minimum=7, hint=" (hint)") == (
        "f: must be at least 7 ms, got 6 (hint)"
    )
    assert message(ValueError, check_ms, "f", 10**12 + 1) == (
        "f: must be at most 1000000000000 ms, got 1000000000001"
    )
    assert check_ms("f", 2000, maximum_s=2) == 2000
    assert message(ValueError, check_ms, "f", 2001, maximum_s=2) == "f: must be at most 2000 ms, got 2001"
    assert message(ValueError, check_ms, "f", 1501, maximum_s=1.5) == "f: must be at most 1500 ms, got 1501"


def test_check_callable():
    assert check_callable("f", None) is None and check_callable("f", len) is len
    assert message(TypeError, check_callable, "f", 3) == "f: expected a callable or None, got int"


class Field:
    name = "field_x"


def test_attrs_validator_passes_the_name_and_bounds():
    validate = attrs_validator(check_int, minimum=1)
    validate(None, Field(), 1)
    assert message(ValueError, validate, None, Field(), 0) == "field_x: must be at least 1, got 0"
    assert message(TypeError, validate, None, Field(), None) == "field_x: expected int, got NoneType None"


def test_attrs_validator_optional_takes_none_only():
    validate = attrs_validator(check_int, optional=True, minimum=1)
    validate(None, Field(), None)
    assert message(ValueError, validate, None, Field(), 0) == "field_x: must be at least 1, got 0"
