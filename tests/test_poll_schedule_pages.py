"""A page answering the same runs again is read from its kept answer (``_PageRead``), without a
look-up per run: the schedule must then do exactly what reading each id would do.

The property test drives two schedules through the same random story (runs watched, dropped,
asked for, polled alone; an account whose runs are inserted, deleted and moved while listings
run) and compares every answer: one schedule as built, one whose kept answers never apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_recovery import poll_schedule
from tinker_recovery.poll_schedule import PollSchedule
from tinker_recovery.poll_settings import PollSettings

PAGE = 3


def list_schedule() -> PollSchedule:
    return PollSchedule(
        PollSettings(interval_s=1.0, timeout_s=5.0, concurrency=8, mode="list", page_size=PAGE)
    )


@contextmanager
def lookups_only() -> Iterator[None]:
    """Every page read id by id (the kept answer never applies)."""
    with mock.patch.object(poll_schedule._PageRead, "answered_again", lambda *_: False):
        yield


ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.05, 0.3, 0.6, 1.0, 1.2])),
        *[st.tuples(st.just("settle"), st.sampled_from([0.3, 1.0, 1.2]))] * 4,  # tick, then answer all
        st.tuples(st.just("answer"), st.integers(0, 3)),  # the n-th page or solo poll in flight
        st.tuples(st.just("watch"), st.integers(0, 11)),
        st.tuples(st.just("drop"), st.integers(0, 11)),
        st.tuples(st.just("poll_now"), st.integers(0, 11)),
        st.tuples(st.just("insert_front"), st.integers(0, 11)),  # a run (watched or not) shifts the pages
        st.tuples(st.just("delete"), st.integers(0, 11)),
        st.tuples(st.just("swap"), st.integers(0, 11)),  # with its neighbour: a moved run
    ),
    max_size=70,
)


def answer(schedule: PollSchedule, account: list[str], started: tuple[str, Any], now: float) -> Any:
    """End a page or a solo poll in flight; what the schedule answered."""
    what, key = started
    if what == "page":
        read, unread = schedule.page_read(key, len(account), account[key : key + PAGE], now)
        return ("page", key, list(read), unread, schedule.next_wake(now))
    schedule.finished(key, now)
    return ("run", key, schedule.next_wake(now))


def story(steps: list[tuple[str, int | float]]) -> list[Any]:
    """What one schedule answers to ``steps``, as comparable values."""
    account = [f"r{i}" for i in range(9)]  # ids on the server, in listing order
    schedule = list_schedule()
    now = 0.0
    flying: list[tuple[str, Any]] = []  # pages and solo polls in flight, in start order
    out: list[Any] = []
    for run in ("r0", "r1", "r4", "r7"):
        schedule.add(run, now)
    for kind, value in steps:
        if kind in ("tick", "settle"):
            now += float(value)
            answers = len(flying) + 1 if kind == "tick" else 100
            for _ in range(answers):  # plan; then answer the first in flight, plan again, and so on
                plan = schedule.plan(now)
                flying += [("page", offset) for offset in plan.pages]
                flying += [("run", run_id) for run_id in plan.alone]
                out.append(("plan", plan, schedule.next_wake(now)))
                if kind == "tick" or not flying:
                    break
                out.append(answer(schedule, account, flying.pop(0), now))
        elif kind == "answer" and flying:
            out.append(answer(schedule, account, flying.pop(int(value) % len(flying)), now))
        elif kind == "watch":
            schedule.add(f"r{value}", now)
        elif kind == "drop":
            schedule.remove(f"r{value}")
        elif kind == "poll_now":
            out.append(("poll_now", schedule.poll_now(f"r{value}", now)))
        elif kind == "insert_front":
            account.insert(0, f"r{value}" if f"r{value}" not in account else f"n{len(out)}")
        elif kind == "delete" and account:
            account.pop(int(value) % len(account))
        elif kind == "swap" and len(account) > 1:
            index = int(value) % (len(account) - 1)
            account[index], account[index + 1] = account[index + 1], account[index]
        out.append(sorted((run_id, schedule.busy(run_id), schedule.listed(run_id)) for run_id in account))
    return out


@settings(max_examples=300, deadline=None)
@given(ops)
def test_a_kept_answer_reads_as_reading_each_id_would(steps: list[tuple[str, int | float]]) -> None:
    with lookups_only():
        expected = story(steps)
    assert story(steps) == expected


def _listing_read_once(schedule: PollSchedule, account: list[str], now: float) -> list[list[str]]:
    """Run one listing at ``now`` to its end, answering each page from ``account`` at once;
    return what each page read, in the order asked."""
    reads = []
    plan = schedule.plan(now)
    pending = list(plan.pages)
    while pending:
        offset = pending.pop(0)
        read, _unread = schedule.page_read(offset, len(account), account[offset : offset + PAGE], now)
        reads.append(list(read))
        pending += schedule.plan(now).pages
    return reads


def test_a_run_watched_after_its_page_was_kept_is_read_by_that_page() -> None:
    # r2 is on page 0 but not watched when page 0's answer is kept; once watched, the same answer
    # must read it (a kept answer would skip it: it was not among the runs read)
    account = ["r0", "r1", "r2", "r3", "r4", "r5"]
    schedule = list_schedule()
    for run in ("r0", "r1", "r4"):
        schedule.add(run, 0.0)
    assert _listing_read_once(schedule, account, 0.0) == [["r0", "r1"], ["r4"]]
    assert _listing_read_once(schedule, account, 1.5) == [["r0", "r1"], ["r4"]]
    schedule.add("r2", 2.0)
    schedule.finished("r2", 2.0)  # (its first poll of its own, as a new run gets)
    assert _listing_read_once(schedule, account, 3.5) == [["r0", "r1", "r2"], ["r4"]]


def test_a_dropped_run_is_not_read_again_by_its_kept_page() -> None:
    account = ["r0", "r1", "r2"]
    schedule = list_schedule()
    for run in account:
        schedule.add(run, 0.0)
    _listing_read_once(schedule, account, 0.0)
    assert _listing_read_once(schedule, account, 1.5) == [["r0", "r1", "r2"]]
    schedule.remove("r1")
    assert _listing_read_once(schedule, account, 3.0) == [["r0", "r2"]]
    assert _listing_read_once(schedule, account, 4.5) == [["r0", "r2"]]


def test_the_same_answer_again_hands_back_the_same_list_of_runs_read() -> None:
    # the Poller keeps the runs' states per page while this list is the same object
    account = ["r0", "r1", "r2"]
    schedule = list_schedule()
    for run in account:
        schedule.add(run, 0.0)
    _listing_read_once(schedule, account, 0.0)
    schedule.plan(1.5)
    kept, _ = schedule.page_read(0, 3, list(account), 1.5)
    schedule.plan(3.0)
    again, _ = schedule.page_read(0, 3, list(account), 3.0)
    assert again is kept and again == account
    schedule.plan(4.5)
    changed, _ = schedule.page_read(0, 3, ["r0", "r2", "r1"], 4.5)  # same runs, another order
    assert changed is not kept and changed == ["r0", "r2", "r1"]


def _kept(schedule: PollSchedule, account: list[str], start: float) -> float:
    """Listings until page 0's answer is kept (runs placed, then read as before); the next time."""
    for listing in range(3):
        _listing_read_once(schedule, account, start + 1.5 * listing)
    return start + 4.5


def test_a_run_asked_for_during_the_listing_is_polled_alone_after_its_kept_page_answers() -> None:
    account = ["r0", "r1", "r2"]
    schedule = list_schedule()
    for run in account:
        schedule.add(run, 0.0)
    now = _kept(schedule, account, 0.0)
    assert schedule.plan(now).pages == (0,)
    assert schedule.poll_now("r1", now)  # in the listing: due again once the page answers
    read, _ = schedule.page_read(0, 3, list(account), now + 0.01)
    assert read == account
    assert schedule.plan(now + 0.01).pages == (0,)  # due at once: a listing starts for it
    assert schedule.listed("r1")


def test_a_run_in_a_poll_of_its_own_while_its_page_answers_is_read_by_that_page_next_time() -> None:
    account = ["r0", "r1", "r2"]
    schedule = list_schedule()
    for run in ("r0", "r1"):
        schedule.add(run, 0.0)
    now = _kept(schedule, account, 0.0)
    assert schedule.plan(now).pages == (0,)
    schedule.add("r2", now + 0.1)  # new while the listing is in flight: polled alone at once
    assert schedule.plan(now + 0.1).alone == ("r2",)
    read, _ = schedule.page_read(0, 3, list(account), now + 0.2)  # r2 is on it, but in its own poll
    assert read == ["r0", "r1"]
    schedule.finished("r2", now + 0.2)
    assert _listing_read_once(schedule, account, now + 1.5) == [account]  # found where it is


# --- the poll loop keeps the runs' states per page while the schedule hands back the same list ----


class _Watching:
    """A PollListener watching every run and recording nothing."""

    def is_watched(self, run_id: str) -> bool:
        return True

    def corrupted(self, run_id: str, run: object, report: bool) -> bool:
        return False

    def poll_failed(self, run_id: str, error: BaseException, reason: str) -> None:
        pass

    def dropped(self, run_id: str, reason: str, error: BaseException) -> None:
        pass


def _loop() -> Any:
    """A Poller driven by hand, as its thread would (not started)."""
    from tinker_recovery._poller import Poller
    from tinker_recovery.clock import ManualClock
    from tinker_recovery.policy import Policy

    settings = PollSettings(interval_s=1.0, timeout_s=5.0, mode="list", page_size=PAGE)
    policy = Policy(enabled=True, jitter="none", poll_interval_ms=1000, confirm_polls=2)
    return Poller(settings, policy, _Watching(), clock=ManualClock(), name="t", redact=lambda e: e)


def _listing(poller: Any, pages: dict[int, list[str]], total: int) -> None:
    """One listing now, each page answered healthy with ``pages[offset]`` through the loop's hot path."""
    now = poller._clock.monotonic()
    pending = list(poller._schedule.plan(now).pages)
    while pending:
        offset = pending.pop(0)
        poller._on_page(offset, pages[offset], [], total)
        pending += poller._schedule.plan(now).pages


def test_a_run_that_moves_to_a_kept_page_has_its_own_state_read_healthy() -> None:
    poller = _loop()
    for run_id in ("a", "b"):
        poller._on_add(run_id)
    pages = {0: ["a", "x", "y"], 3: ["b", "z"]}
    for _ in range(3):  # placed, then read as before: both pages kept
        _listing(poller, pages, 5)
        poller._clock.advance(1.5)
    poller._states["b"].read(True)  # one corrupted read of b (2 needed): its streak is 1
    now = poller._clock.monotonic()
    assert poller._schedule.plan(now).pages == (0,)
    poller._on_page(0, ["a", "b", "x"], [], 5)  # b moved to page 0 (read first)
    assert poller._states["b"].corrupted_streak == 0  # its healthy read ends the streak
    assert poller._schedule.plan(now).pages == (3,)
    poller._on_page(3, ["y", "z"], [], 5)
    assert not poller._schedule.listing
