"""The CLI's formatting rules as pure functions, with exact outputs: durations, expiry, the ``status``
line (the run id once, 100 columns) and dates at the edges of the calendar."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tinker_recovery import cli
from tinker_recovery.models import Checkpoint, TrainingRun

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=timezone.utc)
RUN_ID = "e3e70682-c209-4cac-a29f-6fbed82c07cd:train:0"  # the shape of the ids Tinker hands out
FAR_EAST = timezone(timedelta(hours=5))
FAR_WEST = timezone(timedelta(hours=-5))


def checkpoint(name: str = "step-000020", *, saved: datetime = NOW - timedelta(seconds=12),
               expires_at: datetime | None = None) -> Checkpoint:
    return Checkpoint(f"weights/{name}", "training", saved, f"tinker://{RUN_ID}/weights/{name}",
                      expires_at=expires_at)


def run(last: Checkpoint | None, corrupted: bool = False) -> TrainingRun:
    return TrainingRun(RUN_ID, "Qwen/Qwen3-8B", "owner", True, NOW, corrupted=corrupted, last_checkpoint=last)


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"),
    (86399, "23h59m"), (86400, "1d00h"), (6 * 86400 + 23 * 3600 + 3599, "6d23h"), (400 * 86400, "400d00h"),
])
def test_span_rounds_down_to_two_units(seconds, text):
    assert cli._span(timedelta(seconds=seconds)) == text


def test_expiry_in_the_future_in_the_past_and_never():
    soon = NOW + timedelta(minutes=59, seconds=58)
    assert cli._expiry(checkpoint(expires_at=soon), NOW) == "expires in 59m58s"
    assert cli._expiry(checkpoint(expires_at=NOW - timedelta(hours=2, minutes=5)), NOW) == "EXPIRED 2h05m ago"
    assert cli._expiry(checkpoint(expires_at=NOW), NOW) == "EXPIRED 0s ago"
    assert cli._expiry(checkpoint(), NOW) == "never expires"


def test_status_lines_print_the_run_id_once():
    healthy = cli._status_line(RUN_ID, run(checkpoint(expires_at=NOW + timedelta(hours=1))), NOW)
    assert healthy == f"{RUN_ID}  healthy    step-000020  12s ago  expires in 1h00m"
    corrupted = cli._status_line(RUN_ID, run(None, corrupted=True), NOW)
    assert corrupted == f"{RUN_ID}  CORRUPTED  no checkpoint"
    assert healthy.count(RUN_ID) == 1 and corrupted.count(RUN_ID) == 1


def test_the_widest_status_line_fits_100_columns_and_a_long_name_is_cut():
    old = NOW - timedelta(days=99, hours=23)
    widest = cli._status_line(RUN_ID, run(checkpoint(saved=old, expires_at=old), corrupted=True), NOW)
    assert widest == f"{RUN_ID}  CORRUPTED  step-000020  99d23h ago  EXPIRED 99d23h ago"
    assert len(widest) == cli.LINE_WIDTH

    older = NOW - timedelta(days=999, hours=23)
    cut = cli._status_line(RUN_ID, run(checkpoint(saved=older, expires_at=older)), NOW)
    assert cut == f"{RUN_ID}  healthy    step-000…  999d23h ago  EXPIRED 999d23h ago"
    assert len(cut) == cli.LINE_WIDTH

    long_name = "checkpoint-after-the-warmup-phase-000020"
    week = NOW + timedelta(days=6, hours=23)
    cut = cli._status_line(RUN_ID, run(checkpoint(long_name, expires_at=week)), NOW)
    assert cut == f"{RUN_ID}  healthy    checkpoint-afte…  12s ago  expires in 6d23h"
    assert len(cut) == cli.LINE_WIDTH


def test_dates_at_the_edges_of_the_calendar_print_without_overflow():
    first = datetime(1, 1, 1, tzinfo=FAR_EAST)  # 0000-12-31T19:00Z: before year 1 in UTC
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=FAR_WEST)  # past year 9999 in UTC
    assert cli._utc(last) == "9999-12-31T23:59:59-05:00"
    assert cli._utc(first) == "0001-01-01T00:00:00+05:00"
    assert cli._between(NOW, first) == "739953d17h"  # date.toordinal: 739953 days, then 12 h + 5 h
    # 2912105 days to 9999-12-31, then 23:59:59 + 5 h - 12 h
    assert cli._expiry(checkpoint(expires_at=last), NOW) == "expires in 2912105d16h"
    assert cli._sort_key(checkpoint(saved=first)) < cli._sort_key(checkpoint(saved=NOW)) < \
        cli._sort_key(checkpoint(saved=last))
    line = cli._status_line(RUN_ID, run(checkpoint(saved=first, expires_at=last)), NOW)
    # the name is cut to 8 characters at most; past that such dates may overrun the 100 columns
    assert line == f"{RUN_ID}  healthy    step-00…  739953d17h ago  expires in 2912105d16h"


def test_a_key_hidden_behind_json_or_url_escapes_is_redacted():
    key = "tml-format-test-key-0123"
    escaped = "".join(f"\\u{ord(char):04x}" for char in key)
    assert cli._hide_key(f"bad {key}!", key) == "bad <redacted>!"
    assert cli._hide_key(f'{{"detail": "bad {escaped}"}}', key) == '{"detail": "bad <redacted>"}'
    assert cli._hide_key("key=tml%2Dformat%2Dtest%2Dkey%2D0123", key) == "key=<redacted>"
    assert cli._hide_key("tml\\/x", key) == "tml\\/x"  # nothing to hide: the text is left as it was
    assert cli._hide_key("anything", None) == "anything"
