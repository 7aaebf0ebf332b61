"""events.payload and events.reason_class, every branch with its exact label (written to kill the
mutants mutmut made of events.py; see docs/mutation.md)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tinker_recovery import errors
from tinker_recovery.events import REASON_CLASSES, payload, reason_class

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_payload_holds_the_common_fields_then_the_extra_ones():
    metadata = {"team": "a"}
    got = payload(run_id="r", attempt=2, strategy="latest", metadata=metadata, time=T, lineage_id="r0")
    assert got == {
        "run_id": "r",
        "attempt": 2,
        "strategy": "latest",
        "metadata": metadata,
        "time": T,
        "lineage_id": "r0",
        "recovery_id": None,
    }
    assert got["metadata"] is metadata
    assert list(got) == ["run_id", "attempt", "strategy", "metadata", "time", "lineage_id", "recovery_id"]
    with_extra = payload(
        run_id="r", attempt=0, strategy="best", metadata={}, time=T, lineage_id="r",
        recovery_id="rec-1", checkpoint=None, duration_s=1.5,
    )
    assert with_extra["recovery_id"] == "rec-1"
    assert with_extra["checkpoint"] is None and with_extra["duration_s"] == 1.5
    assert list(with_extra)[-2:] == ["checkpoint", "duration_s"]


class Status(Exception):
    def __init__(self, status_code: object) -> None:
        super().__init__("status")
        self.status_code = status_code


class Category(Exception):
    def __init__(self, category: object) -> None:
        super().__init__("category")
        self.category = category


def _named(name: str, base: type[BaseException] = Exception) -> BaseException:
    return type(name, (base,), {})()


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (None, "other"),
        (KeyboardInterrupt(), "interrupted"),
        (SystemExit(1), "interrupted"),
        (GeneratorExit(), "interrupted"),
        (errors.Shutdown("x"), "shutdown"),
        (errors.BudgetExhausted("x"), "budget"),
        (errors.AttemptTimeout("x"), "attempt_timeout"),
        (errors.MissingCheckpoint("x"), "missing_checkpoint"),
        (errors.InvalidCheckpointPath("x"), "missing_checkpoint"),
        (errors.RequestTimeout("x"), "timeout"),
        (errors.ConnectionFailed("x"), "connection"),
        (errors.ResponseError("x"), "response"),
        (Status(401), "auth"),
        (Status(403), "auth"),
        (Status(402), "bad_request"),
        (Status(404), "not_found"),
        (Status(429), "rate_limited"),
        (Status(500), "server_error"),
        (Status(503), "server_error"),
        (Status(499), "bad_request"),
        (Status(400), "bad_request"),
        (Status(399), "other"),
        (Status(200), "other"),
        (Status(True), "other"),
        (Status("503"), "other"),
        (errors.ServerError("x", status_code=502), "server_error"),
        (errors.NotFound("x", status_code=404), "not_found"),
        (_named("APITimeoutError"), "timeout"),
        (_named("ReadTimeout"), "timeout"),
        (TimeoutError(), "timeout"),
        (_named("APIConnectionError"), "connection"),
        (_named("ConnectError"), "connection"),
        (ConnectionResetError(), "connection"),
        (Category("user"), "user_error"),
        (Category("USER"), "user_error"),
        (Category("server"), "other"),
        (Category(None), "other"),
        (RuntimeError("x"), "other"),
    ],
)
def test_reason_class_labels(error, label):
    assert reason_class(error) == label
    assert label in REASON_CLASSES


def test_reason_classes_are_exactly_these():
    assert REASON_CLASSES == (
        "timeout", "connection", "rate_limited", "server_error", "auth", "not_found", "bad_request",
        "response", "attempt_timeout", "missing_checkpoint", "budget", "shutdown", "user_error",
        "interrupted", "internal", "other",
    )
