"""Policy and Specific: defaults, validation naming the field, from_dict, backoff arithmetic."""

from __future__ import annotations

import json
import random

import attrs
import pytest

from tinker_recovery import Policy, Specific

TRAIN_PATH = "tinker://run-1:train:0/weights/step-000100"
SAMPLER_PATH = "tinker://run-1:train:0/sampler_weights/step-000100"


def test_defaults_exactly_as_the_issue_lists():
    policy = Policy()
    assert policy.enabled is False
    assert policy.checkpoint_strategy == "latest"
    assert policy.restore_optimizer is True
    assert policy.poll_interval_ms == 30_000
    assert policy.max_attempts == 3
    assert policy.backoff_ms == 5_000
    assert policy.max_backoff_ms == 60_000
    assert policy.on_recovery is None
    assert policy.on_failure is None
    assert policy.strategy_name == "latest"


def test_frozen():
    policy = Policy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.enabled = True  # type: ignore[misc]
    assert isinstance(attrs.exceptions.FrozenInstanceError(), AttributeError)
    changed = attrs.evolve(policy, enabled=True)
    assert changed.enabled is True and policy.enabled is False


def test_evolve_revalidates():
    with pytest.raises(ValueError, match="max_attempts"):
        attrs.evolve(Policy(), max_attempts=0)


def test_keyword_only():
    with pytest.raises(TypeError):
        Policy(True)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"poll_interval_ms": 0}, "poll_interval_ms"),
        ({"poll_interval_ms": -30_000}, "poll_interval_ms"),
        ({"backoff_ms": -1}, "backoff_ms"),
        ({"max_backoff_ms": 4_999}, "max_backoff_ms"),
        ({"backoff_ms": 10, "max_backoff_ms": 9}, "max_backoff_ms"),
        ({"max_fallbacks": -1}, "max_fallbacks"),
        ({"max_recoveries": 0}, "max_recoveries"),
        ({"recovery_window_s": 0}, "recovery_window_s"),
        ({"attempt_timeout_ms": 0}, "attempt_timeout_ms"),
        ({"confirm_polls": 0}, "confirm_polls"),
        ({"max_poll_errors": 0}, "max_poll_errors"),
        ({"jitter": "equal"}, "jitter"),
        ({"jitter": None}, "jitter"),
        ({"jitter": ""}, "jitter"),
    ],
)
def test_invalid_values_raise_value_error_naming_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        Policy(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"enabled": 1}, "enabled"),
        ({"enabled": "yes"}, "enabled"),
        ({"restore_optimizer": None}, "restore_optimizer"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 3.0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"poll_interval_ms": False}, "poll_interval_ms"),
        ({"poll_interval_ms": 1.5}, "poll_interval_ms"),
        ({"backoff_ms": True}, "backoff_ms"),
        ({"max_backoff_ms": None}, "max_backoff_ms"),
        ({"max_fallbacks": True}, "max_fallbacks"),
        ({"recovery_window_s": True}, "recovery_window_s"),
        ({"recovery_window_s": "60"}, "recovery_window_s"),
        ({"attempt_timeout_ms": True}, "attempt_timeout_ms"),
        ({"on_recovery": "notify"}, "on_recovery"),
        ({"on_failure": 3}, "on_failure"),
        ({"best_by": "size_bytes"}, "best_by"),
        ({"retry_on": True}, "retry_on"),
    ],
)
def test_wrong_types_raise_type_error_naming_field(kwargs, field):
    with pytest.raises(TypeError, match=rf"^{field}: "):
        Policy(**kwargs)


def test_valid_edge_values_accepted():
    policy = Policy(
        enabled=True,
        poll_interval_ms=100,
        max_attempts=1,
        backoff_ms=0,
        max_backoff_ms=0,
        max_fallbacks=0,
        recovery_window_s=1,
        attempt_timeout_ms=1,
        jitter="none",
        on_recovery=lambda old, new, ckpt: None,
        on_failure=print,
    )
    assert policy.backoff_s(1) == 0.0
    assert policy.recovery_window_s == 1


@pytest.mark.parametrize(
    "strategy", ["Latest", "newest", "", None, 3, ["latest"], ("specific",), ("other", TRAIN_PATH)]
)
def test_unknown_strategy(strategy):
    with pytest.raises(ValueError, match=r"^checkpoint_strategy: unknown strategy"):
        Policy(checkpoint_strategy=strategy)


def test_specific_strategy():
    policy = Policy(checkpoint_strategy=Specific(TRAIN_PATH))
    assert policy.checkpoint_strategy == Specific(TRAIN_PATH)
    assert policy.strategy_name == "specific"


@pytest.mark.parametrize("value", [("specific", TRAIN_PATH), ["specific", TRAIN_PATH]])
def test_specific_tuple_converted(value):
    policy = Policy(checkpoint_strategy=value)
    assert isinstance(policy.checkpoint_strategy, Specific)
    assert policy.checkpoint_strategy.path == TRAIN_PATH


@pytest.mark.parametrize(
    "path, message",
    [
        (SAMPLER_PATH, "sampler checkpoint"),
        ("tinker://run-1/external_weights/x", "external checkpoint"),
        ("tinker://run-1/weights", "invalid tinker path"),
        ("s3://bucket/weights/x", "invalid tinker path"),
        ("", "invalid tinker path"),
    ],
)
def test_specific_refuses_non_training_or_malformed_path(path, message):
    with pytest.raises(ValueError, match=rf"^checkpoint_strategy: .*{message}"):
        Specific(path)
    with pytest.raises(ValueError, match=rf"^checkpoint_strategy: .*{message}"):
        Policy(checkpoint_strategy=("specific", path))


def test_specific_path_must_be_str():
    with pytest.raises(TypeError, match=r"^checkpoint_strategy: "):
        Specific(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^checkpoint_strategy: "):
        Policy(checkpoint_strategy=("specific", 7))


def test_best_needs_best_by():
    with pytest.raises(ValueError, match=r"^checkpoint_strategy: 'best' needs best_by"):
        Policy(checkpoint_strategy="best")
    policy = Policy(checkpoint_strategy="best", best_by=lambda ckpt: 0.0)
    assert policy.strategy_name == "best"


# --- from_dict ------------------------------------------------------------------------------------


def test_from_dict_json_settings():
    settings = json.loads(
        '{"enabled": true, "checkpoint_strategy": ["specific", "%s"], "max_attempts": 5, '
        '"poll_interval_ms": 1000, "restore_optimizer": false}'.replace("%s", TRAIN_PATH)
    )
    policy = Policy.from_dict(settings)
    assert policy == Policy(
        enabled=True,
        checkpoint_strategy=Specific(TRAIN_PATH),
        max_attempts=5,
        poll_interval_ms=1000,
        restore_optimizer=False,
    )


def test_from_dict_empty_gives_defaults():
    assert Policy.from_dict({}) == Policy()


def test_from_dict_unknown_keys_listed_with_known_ones():
    with pytest.raises(ValueError) as info:
        Policy.from_dict({"enabled": True, "max_retries": 3, "pollInterval": 5})
    message = str(info.value)
    assert "'max_retries'" in message and "'pollInterval'" in message
    for known in ("enabled", "checkpoint_strategy", "restore_optimizer", "poll_interval_ms", "max_attempts",
                  "backoff_ms", "max_backoff_ms", "on_recovery", "on_failure"):
        assert known in message.split("known keys:")[1]


def test_from_dict_invalid_value_still_names_field():
    with pytest.raises(ValueError, match=r"^max_attempts: "):
        Policy.from_dict({"max_attempts": 0})


@pytest.mark.parametrize("settings", [None, [("enabled", True)], "enabled=true"])
def test_from_dict_needs_a_mapping(settings):
    with pytest.raises(TypeError, match=r"Policy.from_dict: expected a mapping"):
        Policy.from_dict(settings)


# --- backoff --------------------------------------------------------------------------------------


def test_backoff_exact_numbers():
    policy = Policy()
    assert [policy.backoff_s(n) for n in range(1, 8)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert policy.backoff_s(1000) == 60.0


def test_backoff_custom():
    policy = Policy(backoff_ms=250, max_backoff_ms=1_000)
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_attempt_starts_at_one(attempt):
    with pytest.raises(ValueError, match=r"^attempt: "):
        Policy().backoff_s(attempt)


class FixedRng(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


def test_retry_delay_no_jitter_is_exact():
    policy = Policy(jitter="none")
    rng = FixedRng(0.5)
    assert [policy.retry_delay_s(n, rng) for n in (1, 2, 3, 4, 5)] == [5.0, 10.0, 20.0, 40.0, 60.0]


def test_retry_delay_full_jitter_scales_by_rng():
    policy = Policy()
    assert policy.jitter == "full"
    assert policy.retry_delay_s(2, FixedRng(0.25)) == 2.5
    assert policy.retry_delay_s(5, FixedRng(0.5)) == 30.0
    assert policy.retry_delay_s(1, FixedRng(0.0)) == 0.0


def test_retry_delay_full_jitter_seeded_stays_in_range():
    policy = Policy()
    rng, expected = random.Random(1234), random.Random(1234)
    for attempt in range(1, 8):
        delay = policy.retry_delay_s(attempt, rng)
        assert delay == policy.backoff_s(attempt) * expected.random()
        assert 0.0 <= delay <= policy.backoff_s(attempt)
