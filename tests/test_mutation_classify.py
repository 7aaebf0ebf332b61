"""classify and is_unloadable, every rule with its exact verdict text (written to kill the mutants
mutmut made of classify.py; see docs/mutation.md)."""

from __future__ import annotations

import logging

import pytest

from tinker_recovery import errors
from tinker_recovery.classify import (
    FATAL_STATUSES,
    RETRYABLE_STATUSES,
    Verdict,
    classify,
    is_unloadable,
)


class Status(Exception):
    def __init__(self, status_code: object, category: object = None) -> None:
        super().__init__("status")
        self.status_code = status_code
        self.category = category


class Category(Exception):
    def __init__(self, category: object) -> None:
        super().__init__("category")
        self.category = category


def _named(name: str, base: type[BaseException] = Exception) -> BaseException:
    return type(name, (base,), {})()


def test_the_status_sets_are_exactly_these():
    assert {400, 401, 403, 404, 422} == FATAL_STATUSES
    assert {408, 409, 429} == RETRYABLE_STATUSES


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_fatal_statuses(status):
    assert classify(Status(status)) == Verdict(False, f"fatal: HTTP {status} from the service")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503, 599])
def test_retryable_statuses(status):
    assert classify(Status(status)) == Verdict(True, f"transient: HTTP {status} from the service")


@pytest.mark.parametrize("status", [402, 410, 499, 200, True, "503", None])
def test_other_statuses_are_unclassified_and_retried(status):
    assert classify(Status(status)) == Verdict(True, "transient: unclassified Status")


def test_a_status_wins_over_the_user_category():
    assert classify(Status(503, category="user")) == Verdict(True, "transient: HTTP 503 from the service")
    assert classify(Status(402, category="user")) == Verdict(
        False, "fatal: the service refused the request (Status, user error)"
    )


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (errors.MissingCheckpoint("x"), Verdict(False, "fatal: MissingCheckpoint")),
        (errors.AttemptTimeout("x"), Verdict(True, "transient: AttemptTimeout")),
        (errors.ConnectionFailed("x"), Verdict(True, "transient: ConnectionFailed")),
        (errors.ResponseError("x"), Verdict(True, "transient: ResponseError")),
        (errors.NotFound("x", status_code=404), Verdict(False, "fatal: HTTP 404 from the service")),
        (errors.RateLimited("x", status_code=429), Verdict(True, "transient: HTTP 429 from the service")),
    ],
)
def test_the_package_errors(error, verdict):
    assert classify(error) == verdict


@pytest.mark.parametrize(
    "name", ["APIConnectionError", "APITimeoutError", "RetryableException", "ConnectError", "ReadTimeout"]
)
def test_transient_names(name):
    assert classify(_named(name)) == Verdict(True, f"transient: {name}")


@pytest.mark.parametrize("error", [ConnectionResetError(), TimeoutError(), ConnectionError()])
def test_builtin_connection_and_timeout_errors(error):
    assert classify(error) == Verdict(True, f"transient: {type(error).__name__}")


@pytest.mark.parametrize("category", ["user", "User", "USER"])
def test_a_user_error_is_fatal(category):
    assert classify(Category(category)) == Verdict(
        False, "fatal: the service refused the request (Category, user error)"
    )


@pytest.mark.parametrize("category", [None, "server", "users", ""])
def test_other_categories_are_unclassified(category):
    assert classify(Category(category)) == Verdict(True, "transient: unclassified Category")


def test_an_unknown_exception_is_retried():
    assert classify(RuntimeError("x")) == Verdict(True, "transient: unclassified RuntimeError")


@pytest.mark.parametrize("opinion", [1, 0, "yes", "", [], None])
def test_retry_on_answers_other_than_true_false_are_no_opinion(opinion, caplog):
    with caplog.at_level(logging.ERROR, logger="tinker_recovery.classify"):
        assert classify(Status(400), lambda e: opinion) == Verdict(False, "fatal: HTTP 400 from the service")
    assert caplog.records == []


def test_retry_on_raising_logs_with_the_traceback(caplog):
    def retry_on(error):
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="tinker_recovery.classify"):
        classify(Status(400), retry_on)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.name == "tinker_recovery.classify"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_retry_on_is_called_with_the_error():
    seen = []
    error = Status(400)
    classify(error, lambda e: seen.append(e))
    assert seen == [error]


@pytest.mark.parametrize(
    ("error", "unloadable"),
    [
        (Status(404), True),
        (errors.NotFound("x", status_code=404), True),
        (Category("user"), True),
        (Category("USER"), True),
        (Status(400), False),
        (Status(500), False),
        (Status(True), False),
        (Category("server"), False),
        (Category(None), False),
        (RuntimeError("x"), False),
    ],
)
def test_is_unloadable(error, unloadable):
    assert is_unloadable(error) is unloadable
