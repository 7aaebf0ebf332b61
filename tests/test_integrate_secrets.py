"""Issue 13.1: an error from the service (shaped like the official SDK's 401, its body quoting the key)
never carries the key out of the Executor or the Monitor, through any channel."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import pytest
from conftest import FakeService, checkpoint

import tinker_recovery as tr
from tinker_recovery import journal
from tinker_recovery.redact import contains_key

KEY = "tml-SENTINELsentinel0123456789abcdef"
CP = checkpoint("run-1", "step-000010", minutes=10)


class FakeResponse:
    """What the SDK's errors hold: a response whose request carries the key in its headers."""

    def __init__(self) -> None:
        self.headers = {"X-API-Key": KEY}
        self.request = self


class AuthenticationError(Exception):
    """Shaped like the official SDK's 401: ``Error code: 401 - {body}``, with body and response."""

    def __init__(self) -> None:
        body = {"detail": f"invalid api key {KEY}", "echo": json.dumps({"key": KEY})}
        super().__init__(f"Error code: 401 - {body}")
        self.status_code = 401
        self.body = body
        self.response = FakeResponse()


def raising_error() -> BaseException:
    try:
        raise KeyError(f"lookup of {KEY}")
    except KeyError:
        try:
            raise AuthenticationError()
        except AuthenticationError as error:
            return error


def leaks(error: BaseException | None) -> bool:
    """True if the key shows in the error's text, repr, traceback text or anywhere in its chain."""
    seen = 0
    while error is not None and seen < 50:
        text = str(error) + repr(error) + repr(getattr(error, "__dict__", {}))
        text += "".join(traceback.format_exception(error))
        if contains_key(text, KEY) or any(hasattr(v, "headers") for v in vars(error).values()):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


@pytest.fixture
def failed_recovery(recorder: Any, caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG, logger="tinker_recovery")
    config = tr.Config(api_key=KEY, base_url="http://127.0.0.1:9")
    policy = tr.Policy(enabled=True, jitter="none", max_attempts=1)
    with tr.Executor(1, config=config) as executor:
        executor.start()
        future = executor.recover("run-1", FakeService([raising_error()]), policy, last_checkpoint=CP)
        recorder.wait_for("exhausted")
        error = future.exception(10)
    return recorder, error, caplog


def test_the_raised_error_holds_the_key_so_the_tests_can_fail() -> None:
    assert leaks(raising_error())


def test_future_exception_text_and_chain(failed_recovery: Any) -> None:
    _, error, _ = failed_recovery
    assert error is not None and type(error).__name__ in ("AuthenticationError", "RedactedError")
    assert getattr(error, "status_code", None) == 401
    assert not leaks(error)
    assert "<redacted>" in str(error)


def test_signal_payloads(failed_recovery: Any) -> None:
    recorder, _, _ = failed_recovery
    for event in ("failed", "exhausted"):
        (payload,) = recorder.payloads(event)
        assert not leaks(payload["error"])
        assert not contains_key(repr(payload), KEY)


def test_journal_failed_and_exhausted_lines(failed_recovery: Any) -> None:
    recorder, _, _ = failed_recovery
    for event in ("failed", "exhausted"):
        (payload,) = recorder.payloads(event)
        line = json.dumps(journal.entry_for(event, payload))
        assert "AuthenticationError" in line or "RedactedError" in line
        assert not contains_key(line, KEY)


def test_log_records_at_debug(failed_recovery: Any) -> None:
    _, _, caplog = failed_recovery
    records = caplog.get_records("setup")  # the recovery ran in the fixture
    assert records
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        assert not contains_key(text, KEY), text


def test_monitor_handle_error_and_repr(recorder: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tinker_recovery")
    from test_monitor import ScriptedRest

    rest = ScriptedRest({"run-1": [True]})
    rest.config = tr.Config(api_key=KEY, base_url="http://127.0.0.1:9")
    policy = tr.Policy(enabled=True, jitter="none", max_attempts=1, poll_interval_ms=100)
    service = FakeService([raising_error()])
    with tr.Executor(1) as executor:
        executor.start()
        monitor = tr.Monitor(executor=executor, rest=rest, policy=policy, config=rest.config)
        try:
            handle = monitor.monitor_run("run-1", service)
            recorder.wait_for("exhausted")
            assert handle.wait(10)
            assert handle.error is not None and not leaks(handle.error)
            assert not contains_key(repr(handle) + repr(monitor) + repr(executor), KEY)
        finally:
            monitor.stop()
    for record in caplog.records:
        assert not contains_key(record.getMessage(), KEY)
