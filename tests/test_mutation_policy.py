"""Policy's validation with its exact messages and edges (written to kill the mutants mutmut made of
policy.py; see docs/mutation.md). The shared checks themselves are in test_mutation_checks.py."""

from __future__ import annotations

import attrs
import pytest

from tinker_recovery import Policy
from tinker_recovery.policy import DEFAULT_ATTEMPT_TIMEOUT_MS, POLL_INTERVAL_FLOOR_MS

KNOWN = ", ".join(field.name for field in attrs.fields(Policy))


def test_the_floor_and_default_constants():
    assert POLL_INTERVAL_FLOOR_MS == 100
    assert DEFAULT_ATTEMPT_TIMEOUT_MS == 600_000
    assert Policy().attempt_timeout_ms == 600_000


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"enabled": 1}, TypeError, "enabled: expected bool, got int 1"),
        ({"restore_optimizer": None}, TypeError, "restore_optimizer: expected bool, got NoneType None"),
        ({"max_attempts": True}, TypeError, "max_attempts: expected int, got bool True"),
        ({"max_attempts": 0}, ValueError, "max_attempts: must be at least 1, got 0"),
        ({"max_attempts": 10_001}, ValueError, "max_attempts: must be at most 10000, got 10001"),
        ({"max_fallbacks": -1}, ValueError, "max_fallbacks: must be at least 0, got -1"),
        ({"max_fallbacks": 10_001}, ValueError, "max_fallbacks: must be at most 10000, got 10001"),
        ({"max_recoveries": 0}, ValueError, "max_recoveries: must be at least 1, got 0"),
        (
            {"max_recoveries": 10**9 + 1},
            ValueError,
            "max_recoveries: must be at most 1000000000, got 1000000001",
        ),
        ({"confirm_polls": 10_001}, ValueError, "confirm_polls: must be at most 10000, got 10001"),
        ({"confirm_polls": 0}, ValueError, "confirm_polls: must be at least 1, got 0"),
        ({"max_poll_errors": 0}, ValueError, "max_poll_errors: must be at least 1, got 0"),
        (
            {"max_poll_errors": 10**9 + 1},
            ValueError,
            "max_poll_errors: must be at most 1000000000, got 1000000001",
        ),
        (
            {"poll_interval_ms": 99},
            ValueError,
            "poll_interval_ms: must be at least 100 ms, got 99"
            " (a floor of 100 ms; did you give seconds? 15 s is poll_interval_ms=15_000)",
        ),
        ({"backoff_ms": -1}, ValueError, "backoff_ms: must be at least 0 ms, got -1"),
        ({"max_backoff_ms": -1}, ValueError, "max_backoff_ms: must be at least 0 ms, got -1"),
        ({"attempt_timeout_ms": 0}, ValueError, "attempt_timeout_ms: must be at least 1 ms, got 0"),
        ({"recovery_window_s": 0}, ValueError, "recovery_window_s: must be at least 0.001 s, got 0"),
        ({"on_recovery": "notify"}, TypeError, "on_recovery: expected a callable or None, got str"),
        ({"restore": 3}, TypeError, "restore: expected a callable or None, got int"),
        (
            {"backoff_ms": 10, "max_backoff_ms": 9},
            ValueError,
            "max_backoff_ms: must be at least backoff_ms (10), got 9",
        ),
    ],
)
def test_exact_messages(kwargs, error, message):
    with pytest.raises(error) as info:
        Policy(**kwargs)
    assert str(info.value) == message


def test_edge_values_accepted():
    policy = Policy(
        poll_interval_ms=100, max_attempts=10_000, max_fallbacks=10_000, confirm_polls=10_000,
        max_recoveries=10**9, max_poll_errors=10**9, attempt_timeout_ms=None, recovery_window_s=0.001,
    )
    assert policy.attempt_timeout_ms is None and policy.poll_interval_ms == 100
    assert Policy(attempt_timeout_ms=1).attempt_timeout_ms == 1


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


@pytest.mark.parametrize(("attempt", "expected"), [(64, 60.0), (65, 60.0), (10**6, 60.0)])
def test_backoff_of_a_huge_attempt_is_the_cap(attempt, expected):
    assert Policy().backoff_s(attempt) == expected


@pytest.mark.parametrize("attempt", [1, 64, 65, 10**6])
def test_no_backoff_stays_no_backoff_for_every_attempt(attempt):
    # the shortcut for huge attempts used to return max_backoff_ms even when backoff_ms was 0
    assert Policy(backoff_ms=0, max_backoff_ms=7).backoff_s(attempt) == 0.0


def test_backoff_doubles_up_to_the_cap_around_the_shortcut():
    policy = Policy(backoff_ms=1, max_backoff_ms=10**12)
    assert policy.backoff_s(40) == 2**39 / 1000.0
    assert policy.backoff_s(64) == 10**9  # the cap, by the power
    assert policy.backoff_s(65) == 10**9  # the cap, by the shortcut
