"""RestClient against `responses`: endpoints, headers, time-outs, errors, retries, limits, redaction."""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
import traceback

import pytest
import requests
import responses
from responses import matchers

import tinker_recovery
from tinker_recovery import (
    ApiError,
    AuthenticationError,
    BadRequest,
    Checkpoint,
    Config,
    Conflict,
    ConnectionFailed,
    Cursor,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ResponseError,
    RestClient,
    ServerError,
    TinkerRecoveryError,
    TrainingRun,
    UnprocessableEntity,
)

KEY = "tml-REDACTME-0123456789abcdef"
BASE = "https://tinker.test/services/prod"
API = f"{BASE}/api/v1"
RUN = "sess-1:train:0"
RUN_URL = f"{API}/training_runs/{RUN}"

@contextlib.contextmanager
def raises(kind, match=None):
    """pytest.raises that also checks the key is nowhere in the error as a user would see it."""
    with pytest.raises(kind, match=match) as info:
        yield info
    error = info.value
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert KEY not in shown
    assert KEY[4:] not in shown


def run_json(run_id: str = RUN, **extra) -> dict:
    data = {
        "training_run_id": run_id,
        "base_model": "Qwen/Qwen3-8B",
        "model_owner": "user-1",
        "is_lora": True,
        "last_request_time": "2025-03-01T12:00:00Z",
        "unknown_new_field": {"x": 1},
    }
    data.update(extra)
    return data


def checkpoint_json(name: str) -> dict:
    return {
        "checkpoint_id": f"weights/{name}",
        "checkpoint_type": "training",
        "time": "2025-03-01T12:00:00+00:00",
        "tinker_path": f"tinker://{RUN}/weights/{name}",
        "size_bytes": 10,
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FixedRng(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class Harness:
    """A client with a fake clock; its sleep records the delay and advances the clock."""

    def __init__(self, rng_value: float = 0.0, **config) -> None:
        settings = {"api_key": KEY, "base_url": BASE, "timeout_s": 7.5}
        settings.update(config)
        self.config = Config(**settings)
        self.clock = FakeClock()
        self.sleeps: list[float] = []
        self.client = RestClient(
            self.config, sleep=self.sleep, clock=self.clock, rng=FixedRng(rng_value), max_response_bytes=1000
        )

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.client.close()


# --- endpoints and headers ------------------------------------------------------------------------


def test_get_training_run(rsps, h):
    rsps.get(RUN_URL, json=run_json(corrupted=True, last_checkpoint=checkpoint_json("step-3")))
    run = h.client.get_training_run(RUN)
    assert isinstance(run, TrainingRun)
    assert run.training_run_id == RUN and run.corrupted is True
    assert run.last_checkpoint.step == 3
    assert rsps.calls[0].request.url == RUN_URL  # base path prefix kept, ':' not encoded
    assert rsps.calls[0].request.method == "GET"
    assert h.sleeps == []


def test_get_training_run_brief_reads_only_what_a_poll_needs(rsps, h):
    body = run_json(corrupted=True, last_checkpoint=checkpoint_json("step-3"))
    body["last_request_time"] = "not a date"  # a full TrainingRun would refuse this; a poll does not
    rsps.get(RUN_URL, json=body)
    brief = h.client.get_training_run_brief(RUN, timeout_s=2.0, max_retries=0)
    assert (brief.training_run_id, brief.corrupted, brief.last_checkpoint.step) == (RUN, True, 3)
    assert rsps.calls[0].request.url == RUN_URL
    with pytest.raises(ResponseError, match=r"TrainingRun\.last_request_time"):
        h.client.get_training_run(RUN)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"corrupted": "yes"}, r"TrainingRun\.corrupted"),
        ({"training_run_id": 7}, r"TrainingRun\.training_run_id"),
    ],
)
def test_get_training_run_brief_refuses_the_fields_it_reads_when_malformed(rsps, h, change, field):
    rsps.get(RUN_URL, json={**run_json(), **change})
    with pytest.raises(ResponseError, match=field):
        h.client.get_training_run_brief(RUN)


def test_headers_sent(rsps, h):
    rsps.get(RUN_URL, json=run_json())
    h.client.get_training_run(RUN)
    headers = rsps.calls[0].request.headers
    assert headers["X-API-Key"] == KEY
    assert headers["User-Agent"].startswith(f"tinker-recovery/{tinker_recovery.__version__}")
    assert headers["Accept"] == "application/json"
    assert "Authorization" not in headers


def test_list_training_runs(rsps, h):
    rsps.get(
        f"{API}/training_runs",
        match=[matchers.query_param_matcher({"limit": "2", "offset": "4"})],
        json={
            "training_runs": [run_json("a"), run_json("b")],
            "cursor": {"offset": 4, "limit": 2, "total_count": 9},
        },
    )
    runs, cursor = h.client.list_training_runs(limit=2, offset=4)
    assert [run.training_run_id for run in runs] == ["a", "b"]
    assert cursor == Cursor(4, 2, 9)


def test_list_training_runs_default_page(rsps, h):
    rsps.get(
        f"{API}/training_runs",
        match=[matchers.query_param_matcher({"limit": "20", "offset": "0"})],
        json={"training_runs": [], "cursor": {"offset": 0, "limit": 20, "total_count": 0}},
    )
    assert h.client.list_training_runs() == ([], Cursor(0, 20, 0))


def test_list_training_runs_needs_cursor(rsps, h):
    rsps.get(f"{API}/training_runs", json={"training_runs": []})
    with raises(ResponseError, match=r"TrainingRunsResponse\.cursor: missing"):
        h.client.list_training_runs()


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"offset": -1}, {"limit": True}, {"offset": 1.0}, {"limit": "5"}]
)
def test_list_training_runs_arguments_checked_before_request(rsps, h, kwargs):
    # a wrong kind is a TypeError, a value out of range a ValueError (the shared _checks)
    with raises((TypeError, ValueError), match="^(limit|offset): "):
        h.client.list_training_runs(**kwargs)
    assert len(rsps.calls) == 0


def test_iter_training_runs_over_pages(rsps, h):
    pages = [(0, ["r0", "r1"]), (2, ["r2", "r3"]), (4, ["r4"])]
    for offset, ids in pages:
        rsps.get(
            f"{API}/training_runs",
            match=[matchers.query_param_matcher({"limit": "2", "offset": str(offset)})],
            json={
                "training_runs": [run_json(i) for i in ids],
                "cursor": {"offset": offset, "limit": 2, "total_count": 5},
            },
        )
    ids = [run.training_run_id for run in h.client.iter_training_runs(page_size=2)]
    assert ids == ["r0", "r1", "r2", "r3", "r4"]
    assert len(rsps.calls) == 3


def test_iter_training_runs_stops_on_empty_page(rsps, h):
    rsps.get(
        f"{API}/training_runs",
        match=[matchers.query_param_matcher({"limit": "100", "offset": "0"})],
        json={"training_runs": [run_json("only")], "cursor": {"offset": 0, "limit": 100, "total_count": 50}},
    )
    rsps.get(
        f"{API}/training_runs",
        match=[matchers.query_param_matcher({"limit": "100", "offset": "1"})],
        json={"training_runs": [], "cursor": {"offset": 1, "limit": 100, "total_count": 50}},
    )
    assert [run.training_run_id for run in h.client.iter_training_runs()] == ["only"]
    assert len(rsps.calls) == 2


def test_list_checkpoints(rsps, h):
    rsps.get(
        f"{RUN_URL}/checkpoints",
        match=[matchers.query_string_matcher("")],
        json={"checkpoints": [checkpoint_json("step-1"), checkpoint_json("step-2")], "cursor": None},
    )
    checkpoints = h.client.list_checkpoints(RUN)
    assert all(isinstance(c, Checkpoint) for c in checkpoints)
    assert [c.name for c in checkpoints] == ["step-1", "step-2"]


def test_list_checkpoints_bad_shape_names_field(rsps, h):
    rsps.get(f"{RUN_URL}/checkpoints", json={"items": []})
    with raises(ResponseError, match=r"CheckpointsListResponse\.checkpoints: missing"):
        h.client.list_checkpoints(RUN)
    assert len(rsps.calls) == 1  # a shape error is not retried


def test_get_training_run_by_tinker_path(rsps, h):
    rsps.get(RUN_URL, json=run_json())
    run = h.client.get_training_run_by_tinker_path(f"tinker://{RUN}/sampler_weights/s-1")
    assert run.training_run_id == RUN
    assert rsps.calls[0].request.url == RUN_URL


@pytest.mark.parametrize("path", ["tinker://run/weights", "s3://run/weights/x", "tinker://a b/weights/x",
                                  "tinker://../weights/x", "tinker://%2F/weights/x"])
def test_get_training_run_by_bad_tinker_path(rsps, h, path):
    with raises(ValueError):
        h.client.get_training_run_by_tinker_path(path)
    assert len(rsps.calls) == 0


def test_wrong_shape_names_the_field_and_is_not_retried(rsps, h):
    data = run_json()
    del data["base_model"]
    rsps.get(RUN_URL, json=data)
    with raises(ResponseError, match=r"TrainingRun\.base_model: missing"):
        h.client.get_training_run(RUN)
    assert len(rsps.calls) == 1


# --- time-outs and sessions -----------------------------------------------------------------------


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.kwargs: list[dict] = []
        self.closed = 0

    def request(self, method, url, **kwargs):
        self.kwargs.append(kwargs)
        return super().request(method, url, **kwargs)

    def close(self) -> None:
        self.closed += 1
        super().close()


def test_every_request_has_a_timeout(rsps, h):
    rsps.get(RUN_URL, json=run_json())
    rsps.get(f"{RUN_URL}/checkpoints", json={"checkpoints": []})
    empty = {"training_runs": [], "cursor": {"offset": 0, "limit": 20, "total_count": 0}}
    rsps.get(f"{API}/training_runs", json=empty)
    h.client.get_training_run(RUN)
    h.client.list_checkpoints(RUN)
    h.client.list_training_runs()
    h.client.get_training_run(RUN, timeout_s=2.0)
    assert [call.request.req_kwargs["timeout"] for call in rsps.calls] == [7.5, 7.5, 7.5, 2.0]


def test_supplied_session_used_with_timeout_and_left_open(rsps):
    session = RecordingSession()
    client = RestClient(Config(api_key=KEY, base_url=BASE, timeout_s=3.0), session=session)
    rsps.get(RUN_URL, json=run_json())
    rsps.get(f"{RUN_URL}/checkpoints", json={"checkpoints": []})
    client.get_training_run(RUN)
    client.list_checkpoints(RUN)
    assert [kw["timeout"] for kw in session.kwargs] == [3.0, 3.0]
    assert all(kw["headers"]["X-API-Key"] == KEY for kw in session.kwargs)
    with client:
        pass
    assert session.closed == 0


def test_own_session_reused_and_closed(rsps, monkeypatch):
    made: list[requests.Session] = []
    closed: list[requests.Session] = []
    real_init = requests.Session.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(requests.Session, "__init__", init)
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    rsps.get(RUN_URL, json=run_json())
    rsps.get(f"{RUN_URL}/checkpoints", json={"checkpoints": []})
    with RestClient(Config(api_key=KEY, base_url=BASE)) as client:
        client.get_training_run(RUN)
        client.list_checkpoints(RUN)
    assert len(made) == 1 and closed == made


def test_client_needs_a_config():
    with raises(TypeError, match="^config: "):
        RestClient({"api_key": KEY})  # type: ignore[arg-type]


def test_client_repr_hides_key(h):
    assert KEY not in repr(h.client) and BASE in repr(h.client)


# --- error statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, cls, retryable",
    [
        (400, BadRequest, False),
        (401, AuthenticationError, False),
        (403, PermissionDenied, False),
        (404, NotFound, False),
        (408, ApiError, True),
        (409, Conflict, True),
        (418, ApiError, False),
        (422, UnprocessableEntity, False),
        (429, RateLimited, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
    ],
)
def test_status_mapped_to_class(rsps, h, status, cls, retryable):
    rsps.get(RUN_URL, status=status, json={"detail": f"detail for {status}"})
    with raises(cls) as info:
        h.client.get_training_run(RUN, max_retries=0)
    error = info.value
    assert type(error) is cls
    assert isinstance(error, ApiError) and isinstance(error, TinkerRecoveryError)
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.retry_after_s is None
    assert f"HTTP {status}" in str(error) and f"detail for {status}" in str(error)
    assert len(rsps.calls) == 1 and h.sleeps == []


def test_error_classes_also_builtin_kinds(rsps, h):
    rsps.get(RUN_URL, status=404, json={"detail": "no such run"})
    with raises(LookupError):
        h.client.get_training_run(RUN)
    rsps.get(f"{RUN_URL}/checkpoints", status=400, body="bad")
    with raises(ValueError, match="HTTP 400: bad"):
        h.client.list_checkpoints(RUN)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 418, 422])
def test_non_retryable_4xx_not_retried(rsps, h, status):
    rsps.get(RUN_URL, status=status, json={"detail": "no"})
    rsps.get(RUN_URL, json=run_json())  # would be returned if the client retried
    with raises(ApiError):
        h.client.get_training_run(RUN)
    assert len(rsps.calls) == 1
    assert h.sleeps == []
    rsps.assert_all_requests_are_fired = False


def test_redirect_not_followed(rsps, h):
    rsps.get(RUN_URL, status=302, headers={"Location": "https://elsewhere.test/steal"})
    with raises(ApiError) as info:
        h.client.get_training_run(RUN)
    assert info.value.status_code == 302 and info.value.retryable is False
    assert [call.request.url for call in rsps.calls] == [RUN_URL]


def test_key_echoed_by_server_is_redacted(rsps, h):
    rsps.get(RUN_URL, status=401, json={"detail": f"invalid api key {KEY}"})
    with raises(AuthenticationError, match="<redacted>"):
        h.client.get_training_run(RUN)


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "json": {"detail": "busy"}},
        {"status": 429, "json": {"detail": "slow down"}},
        {"status": 409, "body": ""},
        {"status": 408, "body": ""},
        {"body": requests.ConnectionError("connection refused")},
        {"body": requests.ConnectTimeout("connect timed out")},
        {"body": requests.ReadTimeout("read timed out")},
        {"status": 200, "body": "<html>proxy error</html>"},
    ],
)
def test_retry_then_success(rsps, h, failure):
    rsps.get(RUN_URL, **failure)
    rsps.get(RUN_URL, **failure)
    rsps.get(RUN_URL, json=run_json())
    assert h.client.get_training_run(RUN).training_run_id == RUN
    assert len(rsps.calls) == 3
    assert h.sleeps == [0.5, 1.0]  # capped exponential backoff, rng 0 -> no jitter reduction


def test_backoff_sequence_capped_with_jitter(rsps):
    harness = Harness(rng_value=1.0, max_retries=6, retry_max_time_s=100)
    for _ in range(7):
        rsps.get(RUN_URL, status=500)
    with raises(ServerError):
        harness.client.get_training_run(RUN)
    assert harness.sleeps == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]  # 0.5 * 2**n capped at 8, times 0.75
    assert len(rsps.calls) == 7


def test_connection_errors_mapped(rsps, h):
    rsps.get(RUN_URL, body=requests.ConnectionError("refused"))
    with raises(ConnectionFailed) as info:
        h.client.get_training_run(RUN, max_retries=0)
    assert type(info.value) is ConnectionFailed and info.value.retryable is True
    assert isinstance(info.value, ConnectionError)
    rsps.get(RUN_URL, body=requests.ReadTimeout("slow"))
    with raises(RequestTimeout, match="7.5 s") as info:
        h.client.get_training_run(RUN, max_retries=0)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, ConnectionFailed)
    assert info.value.retryable is True


@pytest.mark.parametrize(
    "headers, at_least",
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "3250"}, 3.25),
        ({"retry-after-ms": "1500", "Retry-After": "30"}, 1.5),  # ms wins
        ({"Retry-After": "120"}, 60.0),  # capped
        ({"retry-after-ms": "999999"}, 60.0),
    ],
)
def test_retry_after_honoured(rsps, headers, at_least):
    harness = Harness(retry_max_time_s=300)
    rsps.get(RUN_URL, status=429, headers=headers)
    rsps.get(RUN_URL, json=run_json())
    harness.client.get_training_run(RUN)
    assert len(harness.sleeps) == 1
    assert harness.sleeps[0] == at_least  # the hint exceeds the 0.5 s backoff, so it is the wait


def test_retry_after_on_503_and_exposed_on_error(rsps, h):
    rsps.get(RUN_URL, status=503, headers={"Retry-After": "4"})
    with raises(ServerError) as info:
        h.client.get_training_run(RUN, max_retries=0)
    assert info.value.retry_after_s == 4.0
    rsps.get(RUN_URL, status=503, headers={"Retry-After": "4"})
    rsps.get(RUN_URL, json=run_json())
    h.client.get_training_run(RUN)
    assert h.sleeps == [4.0]


def test_retry_after_http_date(rsps, h):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    rsps.get(RUN_URL, status=429, headers={"Retry-After": when})
    rsps.get(RUN_URL, json=run_json())
    h.client.get_training_run(RUN)
    assert 28.0 <= h.sleeps[0] <= 30.0


@pytest.mark.parametrize("headers", [{"Retry-After": "soon"}, {"Retry-After": "0"}, {"retry-after-ms": "x"}])
def test_useless_retry_after_falls_back_to_backoff(rsps, h, headers):
    rsps.get(RUN_URL, status=429, headers=headers)
    rsps.get(RUN_URL, json=run_json())
    h.client.get_training_run(RUN)
    assert h.sleeps == [0.5]


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_bounded_by_max_retries(rsps, max_retries):
    harness = Harness(max_retries=max_retries)
    rsps.get(RUN_URL, status=503)
    with raises(ServerError):
        harness.client.get_training_run(RUN)
    assert len(rsps.calls) == max_retries + 1
    assert len(harness.sleeps) == max_retries


def test_per_call_max_retries_override(rsps, h):
    rsps.get(RUN_URL, status=503)
    with raises(ServerError):
        h.client.get_training_run(RUN, max_retries=1)
    assert len(rsps.calls) == 2


def test_retries_bounded_by_total_time(rsps):
    harness = Harness(max_retries=10, retry_max_time_s=3)
    rsps.get(RUN_URL, status=503)
    with raises(ServerError):
        harness.client.get_training_run(RUN)
    # waits 0.5 then 1.0 (1.5 s spent); the next 2.0 s wait would pass the 3 s budget
    assert harness.sleeps == [0.5, 1.0]
    assert len(rsps.calls) == 3


def test_slow_requests_count_against_total_time(rsps):
    harness = Harness(max_retries=10, retry_max_time_s=60)

    def slow_failure(request):
        harness.clock.now += 50  # the request itself took 50 s
        return 503, {}, ""

    rsps.add_callback(responses.GET, RUN_URL, callback=slow_failure)
    with raises(ServerError):
        harness.client.get_training_run(RUN)
    assert len(rsps.calls) == 2
    assert harness.sleeps == [0.5]


def test_retry_after_beyond_budget_raises_without_waiting(rsps):
    harness = Harness(retry_max_time_s=5)
    rsps.get(RUN_URL, status=429, headers={"Retry-After": "10"})
    with raises(RateLimited) as info:
        harness.client.get_training_run(RUN)
    assert info.value.retry_after_s == 10.0
    assert harness.sleeps == [] and len(rsps.calls) == 1


# --- body limits ----------------------------------------------------------------------------------


def test_oversized_body_by_content_length(rsps, h):
    rsps.get(RUN_URL, body=b"{}", headers={"Content-Length": "5000"})
    with raises(ResponseError, match="response of 5000 bytes exceeds 1000") as info:
        h.client.get_training_run(RUN, max_retries=0)
    assert info.value.retryable is True


def test_oversized_body_streamed(rsps, h):
    body = b'{"training_run_id": "' + b"x" * 2000 + b'"}'
    rsps.get(RUN_URL, body=body)
    with raises(ResponseError, match="response exceeds 1000 bytes"):
        h.client.get_training_run(RUN, max_retries=0)
    assert "content-length" not in {k.lower() for k in rsps.calls[0].response.headers}


def test_oversized_error_body_is_a_response_error(rsps, h):
    rsps.get(RUN_URL, status=500, body=b"e" * 5000)
    with raises(ResponseError):
        h.client.get_training_run(RUN, max_retries=0)


def test_default_body_limit_is_8_mib(rsps):
    client = RestClient(Config(api_key=KEY, base_url=BASE), sleep=lambda s: None)
    rsps.get(RUN_URL, body=b"{}", headers={"Content-Length": str(8 * 1024 * 1024 + 1)})
    with raises(ResponseError, match="exceeds 8388608"):
        client.get_training_run(RUN, max_retries=0)


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b'{"truncated": ', b"\xff\xfe"])
def test_non_json_body(rsps, h, body):
    rsps.get(RUN_URL, body=body)
    with raises(ResponseError, match="not JSON"):
        h.client.get_training_run(RUN, max_retries=0)


def test_json_but_not_an_object(rsps, h):
    rsps.get(RUN_URL, json=[1, 2])
    with raises(ResponseError, match="TrainingRun: expected a JSON object"):
        h.client.get_training_run(RUN)


# --- run id validation ----------------------------------------------------------------------------


BAD_RUN_IDS = ["a/b", "/etc", "..", "a..b", "%2F", "run%2Fx", "a\nb", "a b", " run", "run\t", "a\x00b",
               "", "x" * 257, "r\u00e9sum\u00e9", "a?b=1", "a#b"]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_bad_run_id_rejected_before_any_request(rsps, h, run_id):
    with raises(ValueError, match="^run_id: "):
        h.client.get_training_run(run_id)
    with raises(ValueError, match="^run_id: "):
        h.client.list_checkpoints(run_id)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("run_id", [None, 7, b"run"])
def test_run_id_must_be_str(rsps, h, run_id):
    with raises(TypeError, match="^run_id: "):
        h.client.get_training_run(run_id)
    assert len(rsps.calls) == 0


def test_good_run_ids_accepted(rsps, h):
    for run_id in ("a", "x" * 256, "S:train:0", "user@x+y=z_1.2-3"):
        rsps.get(f"{API}/training_runs/{run_id}", json=run_json(run_id))
        assert h.client.get_training_run(run_id).training_run_id == run_id


# --- the key never leaks --------------------------------------------------------------------------


def test_key_not_in_connection_error_even_if_requests_puts_it_there(rsps, h):
    rsps.get(RUN_URL, body=requests.ConnectionError(f"failed with headers {{'X-API-Key': '{KEY}'}}"))
    with raises(ConnectionFailed):
        h.client.get_training_run(RUN, max_retries=0)


def test_the_leak_check_itself_can_fail():
    with pytest.raises(AssertionError), raises(ValueError):
        raise ValueError(f"bad key {KEY}")
