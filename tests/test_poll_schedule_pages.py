"""A page answering the same runs again is read from its kept answer (``_PageRead``), without a
look-up per run: the schedule must then do exactly what reading each id would do.

Two schedules go through the same random story (runs watched, dropped, watched again, asked for,
polled alone, timing out; pages failing, repeating an id; an account whose runs are inserted,
deleted and moved while listings run; list and auto mode, short listing budgets, few pages) and
their every answer and whole state are compared after each step: one schedule as built, one whose
kept answers never apply. Hypothesis draws short stories; seeded long ones reach the kept path
thousands of times (a review's fuzzer found the short ones rarely do).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_recovery import poll_schedule
from tinker_recovery.poll_schedule import PollSchedule
from tinker_recovery.poll_settings import PollSettings

PAGE = 3


def list_schedule(mode: str = "list", timeout_s: float = 5.0, max_pages: int = 1000) -> PollSchedule:
    return PollSchedule(
        PollSettings(
            interval_s=1.0, timeout_s=timeout_s, concurrency=8, mode=mode, page_size=PAGE, max_pages=max_pages
        )
    )


@contextmanager
def lookups_only() -> Iterator[None]:
    """Every page read id by id (the kept answer never applies)."""
    with mock.patch.object(poll_schedule._PageRead, "answered_again", lambda *_: False):
        yield


TICKS = [0.0, 0.05, 0.3, 0.6, 1.0, 1.2, 2.5]
SETTLES = [0.3, 1.0, 1.2, 1.5]
KINDS = {  # kind: weight in the seeded stories
    "settle": 30, "tick": 8, "answer": 6, "fail_page": 3, "skip_page": 2, "return_page": 2, "fail_run": 3,
    "watch": 3, "drop": 2, "rewatch": 2, "poll_now": 3, "insert_front": 2, "delete": 2, "swap": 2,
    "repeat_id": 1,
}  # fmt: skip
SETTINGS = list(
    itertools.product(
        ["list", "auto"],
        [0.5, 1.0, 5.0],  # timeout_s: also the listing's time budget
        [1, 2, 1000],  # max_pages
        [("r0", "r1", "r4", "r7"), ("r0", "r1"), tuple(f"r{i}" for i in range(9)), ("r2",)],
    )
)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from(TICKS)),
        *[st.tuples(st.just("settle"), st.sampled_from(SETTLES))] * 8,  # tick, then answer all
        *[st.tuples(st.just(kind), st.integers(0, 15)) for kind in KINDS if kind not in ("tick", "settle")],
    ),
    max_size=70,
)


def snapshot(schedule: PollSchedule) -> Any:
    """The schedule's whole state (its kept answers aside), as comparable values."""
    runs = sorted((run_id, tuple(attrs_values(run))) for run_id, run in schedule._runs.items())
    listing = schedule._listing
    state = (
        runs, sorted(schedule._page_runs.items()), sorted(schedule._page_due.items()), schedule._floor,
        schedule._floor_exact, schedule._unseen, schedule._first_look, schedule._known_total,
        schedule._list_available, schedule._suspects_in_flight, schedule._solo_in_flight,
        schedule._looked_through, schedule._discover_at, schedule._next_listing, schedule.mode,
        schedule._held_until, schedule._waiting,
    )  # fmt: skip
    if listing is None:
        return state, None
    return state, tuple(
        sorted(value) if isinstance(value, (set, dict)) else value for value in attrs_values(listing)
    )


def attrs_values(instance: Any) -> list[Any]:
    return [getattr(instance, field.name) for field in attrs.fields(type(instance))]


def story(steps: list[tuple[str, Any]], mode: str = "list", timeout_s: float = 5.0, max_pages: int = 1000,
          watched: tuple[str, ...] = ("r0", "r1", "r4", "r7")) -> list[Any]:  # fmt: skip
    """What one schedule answers to ``steps``, and its state after each, as comparable values."""
    account = [f"r{i}" for i in range(9)]  # ids on the server, in listing order
    schedule = list_schedule(mode, timeout_s, max_pages)
    now = 0.0
    flying: list[tuple[str, Any]] = []  # pages and solo polls in flight, in start order
    repeated: int | None = None  # pages answer one of their ids twice while set
    out: list[Any] = []

    def answer(started: tuple[str, Any]) -> Any:
        what, key = started
        if what == "page":
            ids = account[key : key + PAGE]
            if repeated is not None and ids:
                ids = [*ids, ids[repeated % len(ids)]]
            read, unread = schedule.page_read(key, len(account), ids, now)
            return ("page", key, list(read), unread, schedule.next_wake(now))
        schedule.finished(key, now)
        return ("run", key, schedule.next_wake(now))

    def in_flight(what: str, value: int) -> tuple[str, Any] | None:
        indexes = [index for index, started in enumerate(flying) if started[0] == what]
        return flying.pop(indexes[value % len(indexes)]) if indexes else None

    for run in watched:
        schedule.add(run, now)
    for kind, value in steps:
        if kind in ("tick", "settle"):
            now += float(value)
            for _ in range(len(flying) + 1 if kind == "tick" else 100):  # plan; answer the first; again
                plan = schedule.plan(now)
                flying += [("page", offset) for offset in plan.pages]
                flying += [("run", run_id) for run_id in plan.alone]
                out.append(("plan", plan, schedule.next_wake(now)))
                if kind == "tick" or not flying:
                    break
                out.append(answer(flying.pop(0)))
        elif kind == "answer" and flying:
            out.append(answer(flying.pop(int(value) % len(flying))))
        elif kind == "fail_page" and (started := in_flight("page", int(value))):
            variant = int(value) % 4  # plain, Retry-After, no offset, no list endpoint
            unread = schedule.page_failed(
                now, unavailable=variant == 3, defer_s=0.5 if variant == 1 else None,
                offset=None if variant == 2 else started[1],
            )  # fmt: skip
            out.append(("failed", unread, schedule.next_wake(now)))
        elif kind == "skip_page" and (started := in_flight("page", int(value))):  # its job fell behind
            out.append(("skipped", schedule.page_skipped(started[1], now), schedule.next_wake(now)))
        elif kind == "return_page" and (started := in_flight("page", int(value))):  # its job ran late
            out.append(("returned", schedule.page_returned(started[1], now), schedule.next_wake(now)))
        elif kind == "fail_run" and (started := in_flight("run", int(value))):
            timed_out, defer_s = int(value) % 2 == 0, 0.7 if int(value) % 3 == 0 else None
            schedule.finished(started[1], now, timed_out=timed_out, defer_s=defer_s)
            out.append(("run failed", started[1], schedule.next_wake(now)))
        elif kind == "watch":
            schedule.add(f"r{value}", now)
        elif kind == "drop":
            schedule.remove(f"r{value}")
        elif kind == "rewatch":
            schedule.remove(f"r{value}")
            schedule.add(f"r{value}", now)
        elif kind == "poll_now":
            out.append(("poll_now", schedule.poll_now(f"r{value}", now)))
        elif kind == "insert_front":
            account.insert(0, f"r{value}" if f"r{value}" not in account else f"n{len(out)}")
        elif kind == "delete" and account:
            account.pop(int(value) % len(account))
        elif kind == "swap" and len(account) > 1:
            index = int(value) % (len(account) - 1)
            account[index], account[index + 1] = account[index + 1], account[index]
        elif kind == "repeat_id":
            repeated = None if repeated is not None else int(value)
        out.append(snapshot(schedule))
    return out


def assert_same_story(steps: list[tuple[str, Any]], *setting: Any) -> None:
    with lookups_only():
        expected = story(steps, *setting)
    got = story(steps, *setting)
    assert len(got) == len(expected)
    for index, (step, wanted) in enumerate(zip(got, expected, strict=True)):
        assert step == wanted, (index, setting)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from(SETTINGS))
def test_a_kept_answer_reads_as_reading_each_id_would(steps: list[tuple[str, Any]], setting: Any) -> None:
    assert_same_story(steps, *setting)


def seeded_story(seed: int) -> tuple[list[tuple[str, Any]], Any]:
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS.items(), strict=True)
    steps: list[tuple[str, Any]] = []
    for _ in range(rng.randrange(20, 200)):
        kind = rng.choices(kinds, weights)[0]
        value = (
            rng.choice(TICKS if kind == "tick" else SETTLES)
            if kind in ("tick", "settle")
            else rng.randrange(16)
        )
        steps.append((kind, value))
    return steps, rng.choice(SETTINGS)


def test_long_seeded_stories_take_the_kept_path_often_and_read_as_look_ups_would() -> None:
    taken = 0
    answered_again = poll_schedule._PageRead.answered_again

    def counted(page: Any, *args: Any) -> bool:
        nonlocal taken
        again = answered_again(page, *args)
        taken += again
        return again

    for seed in range(300):
        steps, setting = seeded_story(seed)
        with lookups_only():
            expected = story(steps, *setting)
        with mock.patch.object(poll_schedule._PageRead, "answered_again", counted):
            got = story(steps, *setting)
        assert got == expected, (seed, setting)
    assert taken > 3000  # (7,651 when written): the comparison above is of the kept path


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
        poller._on_page(offset, pages[offset], [], total, now, 0.001)
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
    poller._on_page(0, ["a", "b", "x"], [], 5, now, 0.001)  # b moved to page 0 (read first)
    assert poller._states["b"].corrupted_streak == 0  # its healthy read ends the streak
    assert poller._schedule.plan(now).pages == (3,)
    poller._on_page(3, ["y", "z"], [], 5, now, 0.001)
    assert not poller._schedule.listing
