"""Policy's validators with their exact messages and edges (written to kill the mutants mutmut made
of policy.py; see docs/mutation.md). ``_strict`` runs when the class is defined, so its checks are
also tested by building validators directly."""

from __future__ import annotations

import attrs
import pytest

from tinker_recovery import Policy
from tinker_recovery.policy import _strict

KNOWN = ", ".join(field.name for field in attrs.fields(Policy))


class Field:
    name = "field_x"


def check(validator, value):
    validator(None, Field(), value)


def test_strict_int_exact_messages_and_edges():
    at_least_1 = _strict(int, minimum=1)
    check(at_least_1, 1)  # the minimum itself is accepted
    check(at_least_1, 10**12)
    with pytest.raises(ValueError) as info:
        check(at_least_1, 0)
    assert str(info.value) == "field_x: must be at least 1, got 0"
    for value, shown in [(True, "bool True"), (1.5, "float 1.5"), ("3", "str '3'"), (None, "NoneType None")]:
        with pytest.raises(TypeError) as info:
            check(at_least_1, value)
        assert str(info.value) == f"field_x: expected int, got {shown}"


def test_strict_without_minimum_accepts_any_int():
    check(_strict(int), -5)
    check(_strict(int), 0)


def test_strict_float_takes_ints_but_never_bools():
    positive = _strict(float, minimum=0.001)
    check(positive, 3)
    check(positive, 0.001)
    with pytest.raises(TypeError) as info:
        check(positive, False)
    assert str(info.value) == "field_x: expected float, got bool False"
    with pytest.raises(ValueError) as info:
        check(positive, 0)
    assert str(info.value) == "field_x: must be at least 0.001, got 0"


def test_strict_bool_takes_bools_only():
    flag = _strict(bool)
    check(flag, True)
    check(flag, False)
    with pytest.raises(TypeError) as info:
        check(flag, 1)
    assert str(info.value) == "field_x: expected bool, got int 1"


def test_strict_optional_takes_none_but_still_checks_values():
    maybe = _strict(int, minimum=1, optional=True)
    check(maybe, None)
    check(maybe, 1)
    with pytest.raises(ValueError, match=r"^field_x: must be at least 1, got 0$"):
        check(maybe, 0)
    with pytest.raises(TypeError, match=r"^field_x: expected int, got bool True$"):
        check(maybe, True)
    with pytest.raises(TypeError, match=r"^field_x: expected int, got NoneType None$"):
        check(_strict(int), None)  # not optional by default


def test_policy_messages_name_the_field_and_the_value():
    with pytest.raises(TypeError) as info:
        Policy(max_attempts=True)
    assert str(info.value) == "max_attempts: expected int, got bool True"
    with pytest.raises(ValueError) as info:
        Policy(max_attempts=0)
    assert str(info.value) == "max_attempts: must be at least 1, got 0"
    with pytest.raises(TypeError) as info:
        Policy(on_recovery="notify")
    assert str(info.value) == "on_recovery: expected a callable or None, got str"
    assert Policy(attempt_timeout_ms=None).attempt_timeout_ms is None


def test_unknown_strategy_message():
    with pytest.raises(ValueError) as info:
        Policy(checkpoint_strategy="newest")
    assert str(info.value) == (
        "checkpoint_strategy: unknown strategy 'newest'; use 'latest', 'best', "
        "Specific('tinker://...') or ('specific', 'tinker://...')"
    )


def test_from_dict_messages():
    with pytest.raises(TypeError) as info:
        Policy.from_dict([("enabled", True)])
    assert str(info.value) == "Policy.from_dict: expected a mapping, got list"
    with pytest.raises(ValueError) as info:
        Policy.from_dict({"zeta": 1, "alpha": 2, "enabled": True})
    assert str(info.value) == f"Policy: unknown key(s) 'alpha', 'zeta'; known keys: {KNOWN}"


def test_from_dict_lists_unknown_keys_of_any_type():
    with pytest.raises(ValueError) as info:
        Policy.from_dict({2: "x", "b": "y"})
    assert str(info.value) == f"Policy: unknown key(s) 2, 'b'; known keys: {KNOWN}"
