"""The poll settings of a Monitor: one frozen, validated value.

``confirm_polls`` and ``max_poll_errors`` stay in ``Policy``: they are part of a user's settings
file (``Policy.from_dict``), shared by every monitor built from one config, and they decide what a
poll *means* (the per-run state machine of ``run_state``), not when polls happen.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import attrs

__all__ = ["POLL_MODES", "PollSettings", "check_count", "check_seconds", "default_timeout_s"]

POLL_MODES = ("auto", "per_run", "list")
"""``per_run``: one GET per run; ``list``: pages of the listing; ``auto``: whichever costs fewer requests."""

MIN_INTERVAL_S = 0.001
"""The shortest poll interval accepted (``Policy.poll_interval_ms`` >= 1)."""


def check_seconds(field: str, value: Any, *, minimum: float = 0.0, allow_zero: bool = False) -> float:
    """``value`` as a float number of seconds, or ValueError naming ``field``.

    Refused: bools, non-numbers, NaN, infinities, values above ``threading.TIMEOUT_MAX`` (what
    ``Event.wait`` accepts), negatives, and 0 unless ``allow_zero``; values below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field}: expected a number of seconds, got {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{field}: must be finite, got {value!r}")
    if seconds > threading.TIMEOUT_MAX:
        raise ValueError(
            f"{field}: at most {threading.TIMEOUT_MAX:g} s (threading.TIMEOUT_MAX), got {value!r}"
        )
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds < minimum:
        bound = f">= {minimum:g}" if minimum else (">= 0" if allow_zero else "> 0")
        raise ValueError(f"{field}: must be {bound} s, got {value!r}")
    return seconds


def check_count(field: str, value: Any, *, minimum: int = 1, maximum: int = 1_000_000) -> int:
    """``value`` as an int in [minimum, maximum], or ValueError naming ``field`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{field}: expected an int in [{minimum}, {maximum}], got {value!r}")
    return value


def default_timeout_s(interval_s: float, rest_timeout_s: float) -> float:
    """A poll's time-out when none is given: the REST time-out, but at most the interval (and at
    least 1 s, so a short interval does not turn a normal round trip into a time-out).

    >>> default_timeout_s(30.0, 30.0), default_timeout_s(0.1, 30.0), default_timeout_s(5.0, 2.0)
    (30.0, 1.0, 2.0)
    """
    return min(rest_timeout_s, max(interval_s, 1.0))


def _seconds(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_seconds(attribute.name, value, minimum=MIN_INTERVAL_S)


def _count(maximum: int) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_count(attribute.name, value, maximum=maximum)

    return check


def _mode(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in POLL_MODES:
        raise ValueError(f"poll_mode: expected one of {', '.join(POLL_MODES)}, got {value!r}")


@attrs.frozen
class PollSettings:
    """When and how a Monitor polls. Frozen; change it with ``attrs.evolve``.

    - ``interval_s``: seconds between two polls of a run (>= 0.001, finite, <= TIMEOUT_MAX).
    - ``timeout_s``: the time-out of one poll request, and the time budget of one listing.
    - ``concurrency``: the most poll workers (1..4096); runs whose last poll timed out hold at most
      ``suspect_slots`` of them.
    - ``mode``: one of ``POLL_MODES``.
    - ``page_size``: runs per listing page (1..10,000).
    - ``max_pages``: the most pages one listing reads (1..100,000), whatever ``total_count`` says.
    - ``page_concurrency``: the most listing pages read at once (1..64); a listing reads as many
      as it needs to finish in half an interval at the measured round trip, within this cap and
      ``concurrency - suspect_slots`` (see ``poll_schedule.page_slots``).

    Every field raises ValueError naming it when out of range (NaN and infinities included).
    """

    interval_s: float = attrs.field(validator=_seconds)
    timeout_s: float = attrs.field(validator=_seconds)
    concurrency: int = attrs.field(default=64, validator=_count(4096))
    mode: str = attrs.field(default="auto", validator=_mode)
    page_size: int = attrs.field(default=100, validator=_count(10_000))
    max_pages: int = attrs.field(default=1_000, validator=_count(100_000))
    page_concurrency: int = attrs.field(default=32, validator=_count(64))

    @property
    def slack_s(self) -> float:
        """Runs due within this many seconds go along with the ones due now (batching):
        ``min(0.05, interval_s / 20)``."""
        return min(0.05, self.interval_s / 20)

    @property
    def suspect_slots(self) -> int:
        """Workers runs whose last poll timed out may hold: a quarter, at least one."""
        return max(1, self.concurrency // 4)
