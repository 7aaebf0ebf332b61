"""The poll settings of a Monitor: one frozen, validated value.

``confirm_polls`` and ``max_poll_errors`` stay in ``Policy``: they are part of a user's settings
file (``Policy.from_dict``), shared by every monitor built from one config, and they decide what a
poll *means* (the per-run state machine of ``run_state``), not when polls happen.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._checks import check_int, check_seconds

__all__ = ["POLL_MODES", "PollSettings", "default_timeout_s"]

POLL_MODES = ("auto", "per_run", "list")
"""``per_run``: one GET per run; ``list``: pages of the listing; ``auto``: whichever costs fewer requests."""

MAX_CONCURRENCY = 4096
"""The most poll workers a monitor may have (``PollSettings.concurrency``)."""

MAX_PAGE_SIZE = 10_000
"""The most runs per listing page (``PollSettings.page_size``)."""

MIN_INTERVAL_S = 0.001
"""The shortest poll interval accepted (``Policy.poll_interval_ms`` >= 1)."""


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
        check_int(attribute.name, value, minimum=1, maximum=maximum)

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
    - ``pages_per_job``: the most listing pages one poll worker reads one after the other in one
      job (1..1,000; 1: each page a job of its own); a listing's pages go in as few jobs as keep
      ``page_slots`` of them reading at once, each about ``PAGE_JOB_SHARE`` of the interval long
      at the least round trip measured (see ``poll_schedule.pages_per_job``).

    Every field raises TypeError (wrong kind) or ValueError (out of range, NaN and infinities
    included) naming it.
    """

    interval_s: float = attrs.field(validator=_seconds)
    timeout_s: float = attrs.field(validator=_seconds)
    concurrency: int = attrs.field(default=64, validator=_count(MAX_CONCURRENCY))
    mode: str = attrs.field(default="auto", validator=_mode)
    page_size: int = attrs.field(default=100, validator=_count(MAX_PAGE_SIZE))
    max_pages: int = attrs.field(default=1_000, validator=_count(100_000))
    page_concurrency: int = attrs.field(default=32, validator=_count(64))
    pages_per_job: int = attrs.field(default=25, validator=_count(1_000))

    @classmethod
    def for_monitor(
        cls,
        interval_s: float,
        *,
        poll_timeout_s: float | None,
        rest_timeout_s: float,
        poll_concurrency: int,
        poll_mode: str,
        list_page_size: int,
    ) -> PollSettings:
        """The settings of a ``Monitor`` built with these arguments; every error names the
        Monitor's argument (``poll_timeout_s``, ``poll_concurrency``, ...). ``poll_timeout_s``
        None: ``default_timeout_s(interval_s, rest_timeout_s)``. Raises ValueError or TypeError."""
        if poll_timeout_s is None:
            poll_timeout_s = default_timeout_s(interval_s, rest_timeout_s)
        check_seconds("poll_timeout_s", poll_timeout_s, minimum=MIN_INTERVAL_S)
        check_seconds("poll_interval_ms", interval_s, minimum=MIN_INTERVAL_S)
        check_int("poll_concurrency", poll_concurrency, minimum=1, maximum=MAX_CONCURRENCY)
        check_int("list_page_size", list_page_size, minimum=1, maximum=MAX_PAGE_SIZE)
        return cls(
            interval_s=interval_s,
            timeout_s=float(poll_timeout_s),
            concurrency=poll_concurrency,
            mode=poll_mode,
            page_size=list_page_size,
        )

    @property
    def slack_s(self) -> float:
        """Runs due within this many seconds go along with the ones due now (batching):
        ``min(0.05, interval_s / 20)``."""
        return min(0.05, self.interval_s / 20)

    @property
    def suspect_slots(self) -> int:
        """Workers runs whose last poll timed out may hold: a quarter, at least one."""
        return max(1, self.concurrency // 4)
