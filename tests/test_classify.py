"""classify: BaseExceptions are fatal, retry_on that raises anything falls back to the built-in rules."""

from __future__ import annotations

import logging

import pytest

from tinker_recovery.classify import Verdict, classify
from tinker_recovery.errors import ServerError


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_base_exceptions_are_fatal(error):
    assert classify(error) == Verdict(False, f"fatal: {type(error).__name__} raised in the attempt")


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_retry_on_raising_anything_is_logged_and_ignored(raised, caplog):
    def retry_on(error):
        raise raised("from retry_on")

    with caplog.at_level(logging.ERROR, logger="tinker_recovery.classify"):
        verdict = classify(ServerError("x", status_code=503), retry_on)
    assert verdict == Verdict(True, "transient: HTTP 503 from the service")
    assert [r.getMessage() for r in caplog.records] == [
        "retry_on raised on ServerError; using the built-in classification"
    ]


def test_retry_on_opinions():
    error = ServerError("x", status_code=503)
    assert classify(error, lambda e: False) == Verdict(False, "fatal: retry_on refused to retry ServerError")
    assert classify(error, lambda e: True) == Verdict(True, "transient: retry_on chose to retry ServerError")
    assert classify(error, lambda e: None) == Verdict(True, "transient: HTTP 503 from the service")
