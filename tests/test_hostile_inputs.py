"""Each fault of issues 13.2, 11.7, 12.5, 14.2 and 15.2 as a test: hostile answers, bad settings,
odd timestamps and checkpoint names. Pure functions get exact-number tests."""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import pickle
import re
import threading
from datetime import UTC, datetime

import pytest
from hostile_server import http_answer, scripted_server
from hypothesis import given
from hypothesis import strategies as st

import tinker_recovery as tr
from tinker_recovery._checks import MAX_WAIT_S, check_int, check_ms, check_seconds
from tinker_recovery._json import parse_timestamp
from tinker_recovery._wire import RETRY_AFTER_CAP_S, error_detail, retry_after_s
from tinker_recovery.candidates import RECOVERY_KEY, SOURCE_KEY
from tinker_recovery.models import RunBrief, step_of

KEY = "tml-INPUTS-sentinel-0123456789"
RUN = {
    "training_run_id": "run-1",
    "base_model": "m",
    "model_owner": "o",
    "is_lora": False,
    "last_request_time": "2025-03-01T12:00:00Z",
}


def jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln"


@pytest.fixture(scope="module")
def server():
    with scripted_server() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def rest(server):
    with tr.RestClient(
        tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=5, max_retries=0)
    ) as client:
        yield client


# --- answers that used to crash ---------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(200, tr.ResponseError), (500, tr.ServerError)])
def test_a_body_nested_200000_deep_is_a_named_error(server, rest, status, kind):
    server.answer(http_answer(status, b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(kind) as info:
        rest.get_training_run("run-1")
    assert info.value.__context__ is None
    if status == 200:
        assert "nested too deeply" in str(info.value)


def test_a_unicode_digit_content_length_is_ignored_not_a_crash(server, rest):
    body = json.dumps(RUN).encode()
    server.answer(http_answer(200, body, {"Content-Length": "\u00b2"}, length=False))
    try:
        run = rest.get_training_run("run-1")
    except tr.TinkerRecoveryError:
        return  # refused by the HTTP stack as malformed: a named error is fine too
    assert run.training_run_id == "run-1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9999-12-31T23:59:59-05:00", datetime.max.replace(tzinfo=UTC)),
        ("0001-01-01T00:00:00+05:00", datetime.min.replace(tzinfo=UTC)),
        ("2025-03-01T12:00:00", datetime(2025, 3, 1, 12, tzinfo=UTC)),
        ("2025-03-01T14:00:00+02:00", datetime(2025, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_read_as_utc_and_extreme_ones_are_clamped(text, expected):
    parsed = parse_timestamp(text, "Checkpoint.time")
    assert parsed == expected and parsed.tzinfo is UTC
    parsed < datetime.now(UTC)  # noqa: B015 -- comparing must not raise OverflowError


def test_extreme_checkpoint_dates_sort_and_compare(server, rest):
    def checkpoint(name: str, when: str) -> dict:
        return {
            "checkpoint_id": f"weights/{name}",
            "checkpoint_type": "training",
            "time": when,
            "tinker_path": f"tinker://run-1/weights/{name}",
            "expires_at": when,
        }

    body = json.dumps(
        {
            "checkpoints": [
                checkpoint("a", "9999-12-31T23:59:59-05:00"),
                checkpoint("b", "0001-01-01T00:00:00+05:00"),
            ]
        }
    ).encode()
    server.answer(http_answer(200, body))
    checkpoints = rest.list_checkpoints("run-1")
    assert [c.name for c in sorted(checkpoints, key=lambda c: c.time)] == ["b", "a"]
    assert checkpoints[1].is_expired(datetime.now(UTC)) and not checkpoints[0].is_expired(datetime.now(UTC))


@given(st.text(max_size=80))
def test_parse_timestamp_gives_utc_or_a_response_error(text):
    try:
        parsed = parse_timestamp(text, "T.f")
    except tr.ResponseError as error:
        assert str(error).startswith("T.f: ") and "\n" not in str(error)
    else:
        assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0


def test_a_jwt_key_whose_exp_has_400_digits():
    far = jwt({"exp": int("9" * 400)})
    assert tr.Config(api_key=far).api_key == far
    with pytest.raises(ValueError, match=r"^api_key: the JWT has expired"):
        tr.Config(api_key=jwt({"exp": -int("9" * 400)}))


@pytest.mark.parametrize("claims", [{"exp": "NaN"}, {"exp": True}, [1], {"exp": None}])
def test_a_jwt_without_a_usable_exp_is_refused_by_name(claims):
    with pytest.raises(ValueError, match=r"^api_key: starts like a JWT"):
        tr.Config(api_key=jwt(claims))


def test_a_jwt_nested_too_deep_is_refused_not_a_crash():
    body = base64.urlsafe_b64encode(b"[" * 50_000).decode().rstrip("=")
    with pytest.raises(ValueError, match=r"^api_key: "):
        tr.Config(api_key=f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln")


def test_non_utf8_and_wrong_content_types(server, rest):
    for raw in (
        http_answer(200, b"\xff\xfe\xfa not json"),
        http_answer(200, b"<html>busy</html>", {"Content-Type": "text/html"}),
    ):
        server.answer(raw)
        with pytest.raises(tr.ResponseError, match="not JSON"):
            rest.get_training_run("run-1")
    server.answer(http_answer(200, json.dumps(RUN).encode(), {"Content-Type": "text/plain"}))
    assert rest.get_training_run("run-1").training_run_id == "run-1"  # the type is not the point


def test_a_huge_integer_field_is_refused_by_name(server, rest):
    server.answer(http_answer(200, json.dumps({**RUN, "lora_rank": 10**30}).encode()))
    with pytest.raises(tr.ResponseError, match=r"^TrainingRun\.lora_rank: integer out of range"):
        rest.get_training_run("run-1")


def test_an_error_detail_cannot_forge_a_log_line(server, rest):
    forged = "boom\n2026-01-01 tinker_recovery.executor INFO recovered run-1\x1b[2J"
    server.answer(http_answer(500, json.dumps({"detail": forged}).encode()))
    with pytest.raises(tr.ServerError) as info:
        rest.get_training_run("run-1")
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text and "boom\\n2026" in text


def test_a_growing_total_count_does_not_keep_a_listing_going(server, rest):
    page = {"training_runs": [RUN], "cursor": {"offset": 0, "limit": 1, "total_count": 10**9}}
    server.answer(http_answer(200, json.dumps(page).encode()))
    runs = list(rest.iter_training_runs(page_size=1, max_pages=5))
    assert len(runs) == 5


def test_brief_listing_skips_and_counts_bad_items(server, rest):
    items = [
        RUN,
        {"training_run_id": 7},
        {**RUN, "training_run_id": "run-2", "corrupted": "yes"},
        {**RUN, "training_run_id": "run-3", "corrupted": True, "last_checkpoint": {"bad": 1}},
    ]
    page = {"training_runs": items, "cursor": {"offset": 0, "limit": 4, "total_count": 4}}
    server.answer(http_answer(200, json.dumps(page).encode()))
    briefs, cursor, skipped = rest.list_training_runs_brief(limit=4)
    assert [(b.training_run_id, b.corrupted) for b in briefs] == [("run-1", False), ("run-3", True)]
    assert skipped == 2 and cursor.total_count == 4
    assert briefs[0].last_checkpoint is None
    with pytest.raises(tr.ResponseError, match=r"^Checkpoint\.checkpoint_id"):
        briefs[1].last_checkpoint  # noqa: B018 -- parsed lazily, fails only when read


def test_run_brief_refuses_a_non_object_last_checkpoint():
    with pytest.raises(tr.ResponseError, match=r"last_checkpoint: expected a JSON object"):
        RunBrief.from_json({"training_run_id": "a", "last_checkpoint": "x"})


_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_FIELD = st.sampled_from(["training_run_id", "corrupted", "last_checkpoint", "other"])


@given(st.dictionaries(_FIELD, _JSON | st.text(max_size=8), max_size=4))
def test_run_brief_fast_path_agrees_with_the_checked_one(item):
    # a dict takes the inline checks; any other mapping the field-by-field reader with its messages
    from types import MappingProxyType

    def read(data):
        try:
            brief = RunBrief.from_json(data)
        except tr.ResponseError as error:
            return ("error", str(error))
        return (brief.training_run_id, brief.corrupted, brief._raw_last_checkpoint)

    fast, checked = read(item), read(MappingProxyType(item))
    assert fast == checked or (fast[0] == "error" and checked[0] == "error")


def test_a_run_brief_parses_in_full_from_the_answer_as_read():
    item = {**RUN, "user_metadata": {"renderer_name": "qwen3"}}
    assert RunBrief.from_json(item).full() == tr.TrainingRun.from_json(item)
    assert RunBrief("run-1", True).full() is None  # built without the answer: the caller reads it
    with pytest.raises(tr.ResponseError, match=r"^TrainingRun\.last_request_time"):
        RunBrief.from_json({**RUN, "last_request_time": 7}).full()


def test_training_run_exposes_user_metadata():
    run = tr.TrainingRun.from_json({**RUN, "user_metadata": {"renderer_name": "qwen3"}})
    assert run.user_metadata == {"renderer_name": "qwen3"}


# --- Retry-After and error details: one home, exact numbers -----------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "600"}, RETRY_AFTER_CAP_S),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "x", "retry-after": "4"}, 4.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 5.0),  # now = 5
        ({"retry-after": "Thu, 01 Jan 1970 00:00:01 GMT"}, 0.0),  # in the past
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "\u0663"}, None),
        ({"retry-after": "1e400"}, None),
        ({"retry-after": "Mon, 01 Jan 0001 00:00:00 +2359"}, RETRY_AFTER_CAP_S),  # read as 2001
        ({}, None),
    ],
)
def test_retry_after_exact(headers, expected):
    assert retry_after_s(headers, now=5.0) == expected


@given(
    st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), st.text(max_size=40)),
    st.floats(min_value=0, max_value=4e9),
)
def test_retry_after_never_raises_and_stays_in_bounds(headers, now):
    value = retry_after_s(headers, now)
    assert value is None or 0.0 <= value <= RETRY_AFTER_CAP_S


@given(st.binary(max_size=300))
def test_error_detail_is_one_line_and_never_raises(body):
    detail = error_detail(body, KEY)
    assert "\n" not in detail and "\r" not in detail and len(detail) <= 200


def test_error_detail_scrubs_a_key_cut_at_the_limit():
    body = json.dumps({"detail": "x" * 195 + KEY}).encode()
    assert KEY[:8] not in error_detail(body, KEY)


# --- settings: every time and count checked when given (issue 11.7) -------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout_s": math.inf},
        {"timeout_s": 1e300},
        {"timeout_s": math.nan},
        {"timeout_s": 0},
        {"retry_max_time_s": math.nan},
        {"retry_max_time_s": -1.0},
        {"max_retries": 10**9},
        {"timeout_s": True},
        {"timeout_s": "5"},
    ],
)
def test_config_refuses_bad_times_naming_the_field(settings):
    field = next(iter(settings))
    with pytest.raises((ValueError, TypeError), match=rf"^{field}: "):
        tr.Config(api_key=KEY, **settings)


@pytest.mark.parametrize(
    "settings",
    [
        {"poll_interval_ms": 10**13},
        {"poll_interval_ms": 99},
        {"poll_interval_ms": 15},
        {"backoff_ms": 10**13, "max_backoff_ms": 10**13},
        {"max_backoff_ms": 10**13},
        {"attempt_timeout_ms": 10**13},
        {"attempt_timeout_ms": 0},
        {"recovery_window_s": math.nan},
        {"recovery_window_s": math.inf},
        {"recovery_window_s": 1e300},
        {"max_attempts": 10**12},
        {"restore": "not callable"},
    ],
)
def test_policy_refuses_values_that_would_kill_a_thread(settings):
    field = next(iter(settings))
    with pytest.raises((ValueError, TypeError), match=rf"^{field}: "):
        tr.Policy(**settings)


def test_poll_interval_floor_suggests_seconds_vs_ms():
    with pytest.raises(ValueError, match=r"at least 100 ms, got 15 .*did you give seconds"):
        tr.Policy(poll_interval_ms=15)
    assert tr.Policy(poll_interval_ms=100).poll_interval_ms == 100


def test_attempt_timeout_defaults_to_ten_minutes_and_none_is_allowed():
    assert tr.Policy().attempt_timeout_ms == 600_000
    assert tr.Policy(attempt_timeout_ms=None).attempt_timeout_ms is None


def test_policy_restore_takes_a_callable_or_none():
    def restore(service, checkpoint, run):
        return None

    assert tr.Policy(restore=restore).restore is restore
    assert tr.Policy().restore is None
    assert tr.Policy.from_dict({"restore": None}).restore is None


def test_accepted_limits_fit_the_standard_librarys_waits():
    # the largest value accepted for every time can be waited on without OverflowError
    policy = tr.Policy(
        poll_interval_ms=int(MAX_WAIT_S * 1000),
        backoff_ms=int(MAX_WAIT_S * 1000),
        max_backoff_ms=int(MAX_WAIT_S * 1000),
        attempt_timeout_ms=int(MAX_WAIT_S * 1000),
        recovery_window_s=MAX_WAIT_S,
    )
    event = threading.Event()
    for seconds in (policy.poll_interval_ms / 1000, policy.backoff_s(64), policy.recovery_window_s):
        event.set()
        assert event.wait(seconds)  # returns at once (set), but validates the time-out value
    assert policy.backoff_s(10**6) == MAX_WAIT_S


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int("n", 1.0), "^n: expected int"),
        (lambda: check_int("n", True), "^n: expected int"),
        (lambda: check_int("n", 0, minimum=1), "^n: must be at least 1"),
        (lambda: check_int("n", 5, maximum=4), "^n: must be at most 4"),
        (lambda: check_seconds("s", math.nan), "^s: must be a number of seconds, got NaN"),
        (lambda: check_seconds("s", 10**400), "^s: must be at most"),
        (lambda: check_seconds("s", 0, inclusive=False), "^s: must be greater than 0"),
        (lambda: check_ms("m", 10**13), "^m: must be at most"),
        (lambda: check_ms("m", 1.5), "^m: expected int"),
    ],
)
def test_shared_checks_name_the_field(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


def test_shared_checks_return_good_values_unchanged():
    assert check_int("n", 3, minimum=1) == 3
    assert check_seconds("s", 0) == 0 and check_seconds("s", 2.5) == 2.5
    assert check_ms("m", 100, minimum=100) == 100


# --- checkpoint steps (issue 14.2) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "metadata", "step"),
    [
        ("step-000120", None, 120),
        ("000020", None, 20),
        ("final", None, None),
        ("ckpt_step120", None, 120),
        ("000020", {"step": "7"}, 7),
        ("final", {"step": "33"}, 33),
        ("final", {"training_step": "9"}, 9),
        ("final", {"step": "\u0662"}, None),
        ("\u0662\u0660", None, None),
        ("step-1-step-2", None, 2),
        ("1" * 19, None, None),
        ("best", {"step": "x"}, None),
    ],
)
def test_checkpoint_step(name, metadata, step):
    assert step_of(name, metadata) == step
    checkpoint = tr.Checkpoint.from_path(f"tinker://run-1/weights/{name}", time=datetime.now(UTC))
    if metadata is None:
        assert checkpoint.step == step


# --- pickles ------------------------------------------------------------------------------------------


def test_errors_pickle_and_clients_refuse_to(server):
    error = tr.AuthenticationError("GET x: HTTP 401: <redacted>", status_code=401, retry_after_s=None)
    assert pickle.loads(pickle.dumps(error)).status_code == 401
    config = tr.Config(api_key=KEY, base_url=server.base_url)
    for holder in (config, tr.RestClient(config)):
        with pytest.raises(TypeError, match="API key"):
            pickle.dumps(holder)


# --- property: any value a user gives is either safe or refused by name ---------------------------

USER_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**12, max_value=10**400),
    st.floats(),
    st.text(max_size=10),
    st.just(math.nan),
    st.just(-math.inf),
    st.lists(st.integers(), max_size=2),
)
POLICY_TIMES = ("poll_interval_ms", "backoff_ms", "max_backoff_ms", "attempt_timeout_ms", "recovery_window_s")
POLICY_COUNTS = ("max_attempts", "max_fallbacks", "max_recoveries", "confirm_polls", "max_poll_errors")


@given(field=st.sampled_from(POLICY_TIMES + POLICY_COUNTS), value=USER_VALUES)
def test_any_policy_value_is_safe_to_wait_on_or_refused_by_name(field, value):
    settings = {field: value}
    if field == "backoff_ms":
        settings["max_backoff_ms"] = (
            value if isinstance(value, int) and not isinstance(value, bool) else 60_000
        )
    try:
        policy = tr.Policy(**settings)
    except (TypeError, ValueError) as error:
        assert str(error).startswith(f"{field}: ") or str(error).startswith("max_backoff_ms: "), error
        return
    held = getattr(policy, field)
    if held is not None:
        seconds = held if field.endswith("_s") else held / 1000 if field.endswith("_ms") else 0
        assert math.isfinite(seconds) and 0 <= seconds <= MAX_WAIT_S
        threading.Event().wait(0 if seconds == 0 else min(seconds, 1e-9))  # the type is one waits accept


@given(field=st.sampled_from(["timeout_s", "retry_max_time_s", "max_retries"]), value=USER_VALUES)
def test_any_config_value_is_usable_or_refused_by_name(field, value):
    try:
        config = tr.Config(api_key=KEY, **{field: value})
    except (TypeError, ValueError) as error:
        assert str(error).startswith(f"{field}: "), error
        return
    held = getattr(config, field)
    assert math.isfinite(held) and 0 <= held <= 7 * 86_400
    if field != "max_retries":
        assert held > 0


# --- issue 13.3: no server text forges a log line -----------------------------------------------------

FORGED = "\n2026-01-01 00:00:00,000 tinker_recovery.executor INFO run run-1 recovered\x1b]0;owned\x07\x1b[2J"
LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} tinker_recovery\S* (DEBUG|INFO|WARNING|ERROR) "


def _forged_checkpoint(name: str, **extra: str) -> dict:
    return {
        "checkpoint_id": f"weights/{name}",
        "checkpoint_type": "training",
        "time": "2026-01-01T00:00:00Z",
        "tinker_path": f"tinker://run-1/weights/{name}{FORGED}",
        **extra,
    }


class _Client:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id


class _Service:
    """Create calls: NotFound for paths holding ``gone``, else a client whose model_id is forged."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def create_training_client_from_state_with_optimizer(self, path: str) -> _Client:
        self.paths.append(path)
        if "/gone" in path:
            raise tr.NotFound("checkpoint gone", status_code=404)
        return _Client("run-2" + FORGED)

    create_training_client_from_state = create_training_client_from_state_with_optimizer

    def training_client_for(self, run_id: str) -> _Client:
        return _Client(run_id)


def _plain_log() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    return handler, stream


def test_server_texts_cannot_forge_a_line_in_a_plain_text_log():
    """A checkpoint's ``tinker_path``, a restored client's ``model_id``, a run's source checkpoint and an
    adopted run's id come from the server; each reached a log line raw (executor, candidates, attempt),
    so a newline in one started a forged ``tinker_recovery.executor INFO`` line and ESC/OSC reached
    whoever tails the log."""
    handler, stream = _plain_log()
    package = logging.getLogger("tinker_recovery")
    saved = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    empty = {"training_runs": [], "cursor": {"offset": 0, "limit": 100, "total_count": 0}}
    corrupted = {**RUN, "corrupted": True}
    try:
        with scripted_server() as server:
            config = tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=0)
            policy = tr.Policy(enabled=True, jitter="none", max_attempts=1, max_fallbacks=5)
            # 1. the newest checkpoint is gone, an expired one is skipped, an older one loads
            checkpoints = [
                _forged_checkpoint("a", time="2026-01-01T00:00:00Z"),
                _forged_checkpoint("expired", time="2026-01-01T00:01:00Z", expires_at="2026-01-01T00:02:00Z"),
                _forged_checkpoint("gone", time="2026-01-01T00:03:00Z"),
            ]
            routes = {  # the run's last checkpoint is the expired one: skipped, then the listing
                "/api/v1/training_runs/run-1": http_answer(
                    200, json.dumps({**corrupted, "last_checkpoint": checkpoints[1]}).encode()
                ),
                "/api/v1/training_runs/run-1/checkpoints": http_answer(
                    200, json.dumps({"checkpoints": checkpoints}).encode()
                ),
                "/api/v1/training_runs": http_answer(200, json.dumps(empty).encode()),
            }
            server.answer(http_answer(404, b"{}"), routes)
            service = _Service()
            with tr.Executor(1, config=config) as executor:
                executor.start()
                recovery = executor.recover("run-1", service, policy).result(20)
            assert recovery.new_run_id == "run-2" + FORGED  # the value itself is kept as the server gave it
            assert [path.split("/")[-1][:4] for path in service.paths] == ["gone", "a\n20"]
            # 2. no checkpoint of its own: up the lineage to a source checkpoint that is gone
            source = f"tinker://parent-1/weights/src{FORGED}"
            routes = {
                "/api/v1/training_runs/run-1": http_answer(
                    200,
                    json.dumps(
                        {**corrupted, "last_checkpoint": None, "user_metadata": {SOURCE_KEY: source}}
                    ).encode(),
                ),
                "/api/v1/training_runs/run-1/checkpoints": http_answer(200, b'{"checkpoints": []}'),
                "/api/v1/training_runs/parent-1/checkpoints": http_answer(200, b'{"checkpoints": []}'),
                "/api/v1/training_runs": http_answer(200, json.dumps(empty).encode()),
            }
            server.answer(http_answer(404, b"{}"), routes)
            with tr.Executor(1, config=config) as executor:
                executor.start()
                error = executor.recover("run-1", _Service(), policy).exception(20)
            assert isinstance(error, tr.MissingCheckpoint), error
            # 3. a resumed recovery adopts the run it already created, whose id is forged
            adopted = {**RUN, "training_run_id": "run-9" + FORGED,
                       "user_metadata": {RECOVERY_KEY: "rec-1", SOURCE_KEY: "tinker://run-1/weights/a"}}
            listing = {"training_runs": [adopted], "cursor": {"offset": 0, "limit": 100, "total_count": 1}}
            routes["/api/v1/training_runs"] = http_answer(200, json.dumps(listing).encode())
            server.answer(http_answer(404, b"{}"), routes)
            with tr.Executor(1, config=config) as executor:
                executor.start()
                recovery = executor.recover("run-1", _Service(), policy, recovery_id="rec-1").result(20)
            assert recovery.new_run_id == "run-9" + FORGED
    finally:
        package.removeHandler(handler)
        package.setLevel(saved)
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    lines = text.splitlines()
    forged_lines = [
        line for line in lines if not re.match(LOG_LINE, line) or line.startswith("2026-01-01 00:00")
    ]
    assert forged_lines == []
    shown = "\n".join(lines)
    for expected in ("cannot be loaded", "expired at", "recovered from", "going up the lineage",
                     "is gone", "adopted instead"):
        assert expected in shown and "recovered\\x1b]0;owned" in shown, expected  # logged, escaped


@pytest.mark.parametrize(
    ("base_path", "sent"), [("/api v1", "/api%20v1"), ("/é", "/%C3%A9"), ("/a%20b", "/a%20b")]
)
def test_a_base_path_needing_percent_encoding_is_encoded_on_the_poll_path_too(base_path, sent):
    # Found in review: the poll path's urllib3 request step sends the target as given
    with scripted_server() as server:
        server.answer(http_answer(200, json.dumps(RUN).encode()))
        rest = tr.RestClient(tr.Config(api_key="tml-" + "k" * 40, base_url=server.base_url + base_path))
        assert rest._direct is not None  # the poll path, not requests
        assert rest.get_training_run_brief("run-1", max_retries=0).training_run_id == RUN["training_run_id"]
        assert rest.get_training_run("run-1", max_retries=0).training_run_id == RUN["training_run_id"]
        paths = [request.split(b" ", 2)[1].decode("ascii") for request in server.requests]
        assert paths == [f"{sent}/api/v1/training_runs/run-1"] * 2
        rest.close()
