"""The recovery policy: what to restore, how often to look, how hard to try.

Recovery is opt-in: nothing happens unless ``Policy(enabled=True)``. Every value is checked when the
policy is built; a bad one raises ValueError or TypeError naming the field (no silent defaults).
Times are refused when NaN, infinite or beyond what the standard library's waits accept (see
``tinker_recovery._checks.MAX_WAIT_S``): no value can later kill a library thread.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import attrs

from ._checks import attrs_validator as _check
from ._checks import check_bool, check_callable, check_int, check_ms, check_seconds
from .models import ParsedCheckpointTinkerPath

__all__ = [
    "Policy",
    "Specific",
    "Strategy",
    "DEFAULT_ATTEMPT_TIMEOUT_MS",
    "POLL_INTERVAL_FLOOR_MS",
]

_LATEST = "latest"
_BEST = "best"
_JITTERS = ("full", "none")


@attrs.frozen
class Specific:
    """Restore from one given training checkpoint path, ``tinker://<run>/weights/<name>``."""

    path: str = attrs.field()

    @path.validator
    def _check_path(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"checkpoint_strategy: Specific path must be a str, got {type(value).__name__}")
        try:
            parsed = ParsedCheckpointTinkerPath.from_tinker_path(value)
        except ValueError as error:
            problem = str(error)
        else:
            problem = ""
        if problem:
            raise ValueError(f"checkpoint_strategy: {problem}")
        if parsed.checkpoint_type != "training":
            raise ValueError(
                f"checkpoint_strategy: {value!r} is a {parsed.checkpoint_type} checkpoint; a training client "
                "can only be restored from a training checkpoint (tinker://<run>/weights/<name>)"
            )


Strategy = Union[Literal["latest", "best"], Specific]  # noqa: UP007 -- a runtime alias, kept as in 3.9


def _to_strategy(value: Any) -> Any:
    """Accept ``"latest"``, ``"best"``, ``Specific(path)`` and ``("specific", path)``."""
    pair = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if pair and value[0] == "specific":
        return Specific(value[1])
    return value


def _check_strategy(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value in (_LATEST, _BEST) or isinstance(value, Specific):
        return
    raise ValueError(
        f"checkpoint_strategy: unknown strategy {value!r}; use 'latest', 'best', "
        "Specific('tinker://...') or ('specific', 'tinker://...')"
    )


POLL_INTERVAL_FLOOR_MS = 100
"""The shortest ``poll_interval_ms`` accepted: a smaller value is almost always seconds given as
milliseconds (``poll_interval_ms=15`` would send 66 requests a second for one run)."""
DEFAULT_ATTEMPT_TIMEOUT_MS = 600_000
"""Ten minutes: long enough for the restore of a large model, short enough that a create call that
never returns cannot hang shutdown and interpreter exit for ever."""


def _callable_or_none(_instance: Any, attribute: Any, value: Any) -> None:
    check_callable(attribute.name, value)


_POLL_HINT = (
    f" (a floor of {POLL_INTERVAL_FLOOR_MS} ms; did you give seconds? 15 s is poll_interval_ms=15_000)"
)


@attrs.frozen(kw_only=True)
class Policy:
    """How corrupted runs are recovered. Frozen; change it with ``attrs.evolve``.

    - ``enabled``: recovery happens only when True. Default False.
    - ``checkpoint_strategy``: ``"latest"`` (the run's newest training checkpoint, falling back to
      older ones), ``"best"`` (the one ``best_by`` scores highest) or ``Specific(path)``
      (``("specific", path)`` is accepted too).
    - ``restore_optimizer``: True restores the optimizer state too; False restores weights only.
    - ``poll_interval_ms``: time between two polls of a watched run, at least
      ``POLL_INTERVAL_FLOOR_MS`` (100 ms: a smaller value is nearly always seconds given as ms).
    - ``max_attempts``: attempts per detected corruption, the first included (>= 1).
    - ``backoff_ms`` / ``max_backoff_ms`` (ms, 0 allowed): the wait before retry ``n`` is
      ``min(backoff_ms * 2**(n-1), max_backoff_ms)``, then jittered (see ``jitter``).
    - ``on_recovery(old_client, new_client, checkpoint)`` / ``on_failure(run_id, error)``: called on
      the attempt's worker thread; an exception they raise is logged and ignored. None: no call.
    - ``best_by(checkpoint) -> float``: the score for ``"best"``, higher is better. Required by "best".
    - ``retry_on(error) -> bool | None``: True retries the error, False makes it fatal, None keeps
      the built-in classification. None (default): built-in classification only.
    - ``max_fallbacks``: with ``"latest"``, how many older checkpoints to try when the newest cannot
      be loaded (0 disables fallback).
    - ``max_recoveries`` within ``recovery_window_s``: the restart budget of a run and every run
      recovered from it; once spent the lineage is not restarted again.
    - ``jitter``: ``"full"`` waits a uniform random time in [0, delay]; ``"none"`` waits exactly delay.
    - ``attempt_timeout_ms``: an attempt still running after this fails with AttemptTimeout and frees
      its worker. Default 600_000 (10 min): a create call that never returns is what would hang
      shutdown and interpreter exit, while a real restore of a large model may take minutes.
      None: no limit (not advised).
    - ``confirm_polls``: consecutive corrupted polls needed before recovery starts (>= 1).
    - ``max_poll_errors``: consecutive 404 polls after which a run is dropped from monitoring (>= 1).
    - ``restore(service, checkpoint, run) -> client``: restore your own way instead of the service's
      ``create_training_client_from_state*`` (``run``: the corrupted TrainingRun, or None when not
      fetched); its result may be a client, a future of one or an awaitable. None: the service's call.
      E.g. build a LoRA client with the right settings, then ``load_state``. A callable that also
      takes a ``user_metadata`` keyword is given the restored run's metadata (the original's plus
      the lineage, recovery id and source checkpoint): pass it to the call that creates the run
      with the checkpoint's weights, and a retry after a failed read adopts that run instead of
      creating another. A run created with it but without the weights would be adopted as restored.
    """

    enabled: bool = attrs.field(default=False, validator=_check(check_bool))
    checkpoint_strategy: Strategy = attrs.field(
        default=_LATEST, converter=_to_strategy, validator=_check_strategy
    )
    restore_optimizer: bool = attrs.field(default=True, validator=_check(check_bool))
    poll_interval_ms: int = attrs.field(
        default=30_000, validator=_check(check_ms, minimum=POLL_INTERVAL_FLOOR_MS, hint=_POLL_HINT)
    )
    max_attempts: int = attrs.field(default=3, validator=_check(check_int, minimum=1, maximum=10_000))
    backoff_ms: int = attrs.field(default=5_000, validator=_check(check_ms))
    max_backoff_ms: int = attrs.field(default=60_000, validator=_check(check_ms))
    on_recovery: Callable[[Any, Any, Any], Any] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    on_failure: Callable[[str, BaseException], Any] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    best_by: Callable[[Any], float] | None = attrs.field(default=None, validator=_callable_or_none)
    retry_on: Callable[[BaseException], bool | None] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    max_fallbacks: int = attrs.field(default=2, validator=_check(check_int, minimum=0, maximum=10_000))
    max_recoveries: int = attrs.field(default=5, validator=_check(check_int, minimum=1, maximum=10**9))
    recovery_window_s: float = attrs.field(default=3600.0, validator=_check(check_seconds, minimum=0.001))
    jitter: str = attrs.field(default="full")
    attempt_timeout_ms: int | None = attrs.field(
        default=DEFAULT_ATTEMPT_TIMEOUT_MS, validator=_check(check_ms, minimum=1, optional=True)
    )
    confirm_polls: int = attrs.field(default=1, validator=_check(check_int, minimum=1, maximum=10_000))
    max_poll_errors: int = attrs.field(default=5, validator=_check(check_int, minimum=1, maximum=10**9))
    restore: Callable[..., Any] | None = attrs.field(default=None, validator=_callable_or_none)

    @jitter.validator
    def _check_jitter(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in _JITTERS:
            raise ValueError(f"jitter: expected one of {', '.join(_JITTERS)}, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.max_backoff_ms < self.backoff_ms:
            raise ValueError(
                f"max_backoff_ms: must be at least backoff_ms ({self.backoff_ms}), got {self.max_backoff_ms}"
            )
        if self.checkpoint_strategy == _BEST and self.best_by is None:
            raise ValueError(
                "checkpoint_strategy: 'best' needs best_by=callable(checkpoint) -> float (higher is better)"
            )

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Policy:
        """Build a policy from a mapping such as a parsed settings file.

        Unknown keys raise ValueError listing the known ones. A strategy may be written
        ``"latest"``, ``"best"`` or ``["specific", "tinker://..."]``.
        """
        if not isinstance(settings, Mapping):
            raise TypeError(f"Policy.from_dict: expected a mapping, got {type(settings).__name__}")
        known = [field.name for field in attrs.fields(cls)]
        unknown = sorted(set(settings) - set(known), key=str)
        if unknown:
            raise ValueError(
                f"Policy: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(known)}"
            )
        return cls(**settings)

    @property
    def strategy_name(self) -> str:
        """``"latest"``, ``"best"`` or ``"specific"``: the strategy as signals report it."""
        return "specific" if isinstance(self.checkpoint_strategy, Specific) else str(self.checkpoint_strategy)

    def backoff_s(self, attempt: int) -> float:
        """The wait before retrying after failed attempt ``attempt`` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError(f"attempt: must be at least 1, got {attempt}")
        if attempt > 64:  # 2**64 ms is beyond any cap: skip the big power (0 stays 0)
            return (self.max_backoff_ms if self.backoff_ms else 0) / 1000.0
        delay_ms: int = min(self.backoff_ms * 2 ** (attempt - 1), self.max_backoff_ms)
        return delay_ms / 1000.0

    def retry_delay_s(self, attempt: int, rng: random.Random) -> float:
        """``backoff_s(attempt)`` with this policy's jitter applied, drawing from ``rng``."""
        delay = self.backoff_s(attempt)
        return delay * rng.random() if self.jitter == "full" else delay
