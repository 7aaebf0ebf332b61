"""No answer crashes the library (issue 13.2): property-based tests for each REST call and for
LoopbackService against a scripted server on 127.0.0.1 that sends hypothesis-made raw answers.

Each answer gives a parsed value or a TinkerRecoveryError subclass whose text is one line and
holds no trace of the key; never another exception, never a hang past the deadline.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import pytest
from hostile_server import http_answer, scripted_server
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import tinker_recovery as tr
from tinker_recovery.errors import ResponseError
from tinker_recovery.testing import LoopbackService

KEY = "tml-HOSTILE-sentinel-0123456789"
EXAMPLES = int(os.environ.get("TR_HOSTILE_EXAMPLES", "100"))  # 150 for the figures in the report
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

# --- strategies ------------------------------------------------------------------------------------

ODD_DATES = st.sampled_from(
    [
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59.999999-23:59",
        "2025-03-01T12:00:00",
        "2025-03-01",
        "2025-02-30T00:00:00Z",
        "yesterday",
        "",
        "Z",
        "2025-03-01T12:00:00+99:00",
        "1" * 5000,
        "2025-03-01T12:00:00\n2025",
        "\u0662\u0660\u0662\u0665-01-01",
    ]
)
DATES = st.one_of(ODD_DATES, st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
HUGE_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**200),
    st.just(10**4000),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_INTS,
    st.floats(allow_nan=False),
    st.text(max_size=40),
    DATES,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def run_object(run_id: str = "run-1") -> dict:
    return {
        "training_run_id": run_id,
        "base_model": "m",
        "model_owner": "o",
        "is_lora": True,
        "last_request_time": "2025-03-01T12:00:00Z",
        "corrupted": False,
        "last_checkpoint": {
            "checkpoint_id": "weights/step-000010",
            "checkpoint_type": "training",
            "time": "2025-03-01T12:00:00Z",
            "tinker_path": f"tinker://{run_id}/weights/step-000010",
        },
    }


@st.composite
def mutated(draw, base: dict) -> dict:
    """``base`` with some fields (nested ones too) replaced by hostile values or removed."""
    data = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 3))):
        target = data
        if "last_checkpoint" in data and isinstance(data["last_checkpoint"], dict) and draw(st.booleans()):
            target = data["last_checkpoint"]
        name = draw(st.sampled_from([*sorted(target), "user_metadata", "expires_at", "size_bytes"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(JSON_VALUES)
    return data


def encode(value) -> bytes:
    try:
        return json.dumps(value).encode()
    except (ValueError, OverflowError):  # integers past the str conversion limit
        return b"[" + b"9" * 5000 + b"]"


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def bodies(draw, good: bytes) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return good
    if kind == 1:
        return deep(draw(st.sampled_from([10, 1_000, 5_000, 200_000])))
    if kind == 2:
        return draw(st.binary(max_size=64))
    if kind == 3:
        return draw(
            st.sampled_from(
                [
                    b"NaN",
                    b"Infinity",
                    b"1e400",
                    b"-" + b"1" * 5000,
                    b'{"a":1e999}',
                    b"\xff\xfe{\x00}\x00",
                    b"\xef\xbb\xbf{}",
                    b'{"detail": "a\\nb"}',
                    b"null",
                ]
            )
        )
    return encode(draw(JSON_VALUES)) if kind == 4 else good


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\r\n"), max_size=30
)


@st.composite
def answers(draw, good: bytes) -> bytes:
    """A raw HTTP answer: status, headers (length, Retry-After, type, encodings) and body."""
    body = draw(bodies(good))
    status = draw(
        st.sampled_from(
            [200, 200, 200, 201, 204, 301, 307, 400, 401, 403, 404, 409, 422, 429, 500, 503, 599, 999, 100]
        )
    )
    headers: dict[str, str] = {}
    length = True
    choice = draw(st.integers(0, 5))
    if choice == 1:
        headers["Content-Length"] = draw(
            st.sampled_from(
                ["\u00b2", "-1", "abc", "99999999999999999999", str(len(body) + 5), "0", " 3 ", "1,2", ""]
            )
        )
        length = False
    elif choice == 2:
        headers["Transfer-Encoding"] = draw(st.sampled_from(["chunked", "gzip", "identity", "x"]))
        length = False
    elif choice == 3:
        encoding = draw(st.sampled_from(["gzip", "deflate", "br", "zstd", "x-garbage", "gzip, gzip"]))
        headers["Content-Encoding"] = encoding
        if encoding == "deflate" and draw(st.booleans()):
            body = zlib.compress(body)
    if draw(st.booleans()):
        headers["Retry-After"] = draw(
            st.one_of(
                HEADER_TEXT,
                st.sampled_from(
                    [
                        "nan",
                        "inf",
                        "-5",
                        "1e400",
                        "\u0663",
                        "Wed, 21 Oct 9999 07:28:00 GMT",
                        "Mon, 01 Jan 0001 00:00:00 +2359",
                        "99999999999999999999",
                    ]
                ),
            )
        )
    if draw(st.booleans()):
        headers["retry-after-ms"] = draw(HEADER_TEXT)
    if draw(st.booleans()):
        headers["Content-Type"] = draw(
            st.one_of(
                HEADER_TEXT,
                st.sampled_from(["text/html", "application/json; charset=utf-16", "application/x-protobuf"]),
            )
        )
    if draw(st.integers(0, 9)) == 0:
        headers["Location"] = "http://127.0.0.1:1/elsewhere"
    raw = http_answer(status, body, headers, length=length)
    if draw(st.integers(0, 19)) == 0:
        raw = draw(
            st.sampled_from(
                [
                    b"HTTP/1.1 abc OK\r\n\r\n",
                    b"garbage\r\n\r\n",
                    b"",
                    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",
                ]
            )
        )
    return raw


# --- the checks ------------------------------------------------------------------------------------


def well_behaved(call) -> object:
    """Run ``call``; return its value, or the package error it raised after checking its text."""
    try:
        return call()
    except tr.TinkerRecoveryError as error:
        text = str(error) + repr(error)
        assert "\n" not in str(error) and "\r" not in str(error), text
        assert KEY not in text and KEY[4:] not in text
        assert error.__context__ is None or isinstance(error.__context__, tr.TinkerRecoveryError)
        return error


@pytest.fixture(scope="module")
def server():
    with scripted_server() as scripted:
        yield scripted


@pytest.fixture(scope="module", params=["direct", "requests"])
def rest(server, request):
    """A RestClient on its poll path (the urllib3 pool), or forced through ``requests``."""
    with tr.RestClient(
        tr.Config(api_key=KEY, base_url=server.base_url, timeout_s=2, max_retries=0)
    ) as client:
        if request.param == "requests":
            client._direct = None
        else:
            assert client._direct is not None
        yield client


RUN = encode(run_object())
PAGE = encode(
    {
        "training_runs": [run_object("a"), run_object("b")],
        "cursor": {"offset": 0, "limit": 2, "total_count": 2},
    }
)
CHECKPOINTS = encode({"checkpoints": [run_object()["last_checkpoint"]]})


@SETTINGS
@given(raw=answers(RUN), fields=mutated(run_object()))
def test_get_training_run(server, rest, raw, fields):
    server.answer(raw if raw else http_answer(200, encode(fields)))
    well_behaved(lambda: rest.get_training_run("run-1"))
    server.answer(http_answer(200, encode(fields)))
    result = well_behaved(lambda: rest.get_training_run("run-1"))
    if isinstance(result, tr.TrainingRun):
        assert result.last_request_time.utcoffset() is not None


@SETTINGS
@given(raw=answers(PAGE), item=mutated(run_object("c")))
def test_list_training_runs(server, rest, raw, item):
    server.answer(raw)
    well_behaved(lambda: rest.list_training_runs(limit=2))
    page = {"training_runs": [run_object("a"), item], "cursor": {"offset": 0, "limit": 2, "total_count": 2}}
    server.answer(http_answer(200, encode(page)))
    well_behaved(lambda: rest.list_training_runs(limit=2))


@SETTINGS
@given(raw=answers(PAGE), item=mutated(run_object("c")))
def test_list_training_runs_brief_skips_bad_items(server, rest, raw, item):
    server.answer(raw)
    well_behaved(lambda: rest.list_training_runs_brief(limit=2))
    page = {"training_runs": [run_object("a"), item], "cursor": {"offset": 0, "limit": 2, "total_count": 2}}
    server.answer(http_answer(200, encode(page)))
    result = well_behaved(lambda: rest.list_training_runs_brief(limit=2))
    assert isinstance(result, tuple)  # the page itself is fine: only the item may be skipped
    briefs, _cursor, skipped = result
    assert briefs[0].training_run_id == "a" and len(briefs) + skipped == 2
    for brief in briefs:
        well_behaved(lambda brief=brief: brief.last_checkpoint)


def _whole(brief: Any) -> Any:
    """``brief.full()``, or its ResponseError as ``(type, text)`` (an item whose other fields are
    malformed: a hypothesis example, a corrupted item with a list for its ``base_model``)."""
    try:
        return brief.full()
    except ResponseError as error:
        return type(error), str(error)


@SETTINGS
@given(raw=answers(PAGE), item=mutated(run_object("c")), corrupted=st.booleans())
def test_list_training_runs_health_answers_as_the_brief_listing_does(server, rest, raw, item, corrupted):
    page = {
        "training_runs": [run_object("a"), {**run_object("b"), "corrupted": corrupted}, item],
        "cursor": {"offset": 0, "limit": 3, "total_count": 3},
    }
    for answer in (raw, http_answer(200, encode(page))):
        server.answer(answer)
        health = well_behaved(lambda: rest.list_training_runs_health(limit=3))
        server.answer(answer)
        brief = well_behaved(lambda: rest.list_training_runs_brief(limit=3))
        if isinstance(brief, tuple):
            briefs, cursor, skipped = brief
            ids, flagged = [b.training_run_id for b in briefs], [b for b in briefs if b.corrupted]
            assert health == (ids, flagged, cursor, skipped)
            # kept whole: the same run, or the same error when the item is no valid TrainingRun
            assert [_whole(b) for b in health[1]] == [_whole(b) for b in flagged]
        else:
            assert (type(health), str(health)) == (type(brief), str(brief))


@SETTINGS
@given(raw=answers(CHECKPOINTS), item=mutated(run_object()["last_checkpoint"]))
def test_list_checkpoints(server, rest, raw, item):
    server.answer(raw)
    well_behaved(lambda: rest.list_checkpoints("run-1"))
    server.answer(http_answer(200, encode({"checkpoints": [item]})))
    result = well_behaved(lambda: rest.list_checkpoints("run-1"))
    if isinstance(result, list):
        for checkpoint in result:
            checkpoint.step  # noqa: B018 -- must not raise
            checkpoint.is_expired(result[0].time)


GOOD_STEPS = {
    "/api/v1/create_session": http_answer(200, b'{"session_id": "s-1"}'),
    "/api/v1/load_weights": http_answer(200, b'{"request_id": "q-1"}'),
    "/api/v1/retrieve_future": http_answer(
        200, b'{"type": "load_weights", "path": "tinker://s-1/weights/x"}'
    ),
    "/api/v1/get_info": http_answer(200, b'{"model_data": {}}'),
}


@SETTINGS
@given(
    step=st.sampled_from(sorted(GOOD_STEPS)),
    raw=answers(b'{"session_id": "s-1", "request_id": "q-1"}'),
    value=JSON_VALUES,
)
def test_loopback_service(server, step, raw, value):
    routes = dict(GOOD_STEPS)
    routes[step] = raw
    if step == "/api/v1/retrieve_future" and raw.endswith(b"}") is False:
        routes[step] = http_answer(200, encode({"error": value, "category": "user"}))
    server.answer(raw, routes)
    with LoopbackService(server.base_url, KEY, timeout_s=0.5) as service:
        result = well_behaved(lambda: service.create_training_client_from_state("tinker://run-1/weights/x"))
    assert result is not None


PATHS = st.one_of(
    st.just("tinker://run-1/weights/step-000010"),
    st.sampled_from(
        [
            "tinker://run-1/sampler_weights/x",
            "tinker://../weights/x",
            "tinker://run-1/weights/",
            "tinker://run%2F1/weights/x",
            "tinker://run-1/other/x",
            "tinker://run-1\n/weights/x",
            "",
            "tinker://",
        ]
    ),
    st.text(max_size=40).map(lambda text: f"tinker://{text}"),
    st.text(max_size=40),
)


@SETTINGS
@given(raw=answers(RUN), path=PATHS)
def test_get_training_run_by_tinker_path(server, rest, raw, path):
    server.answer(raw)
    try:
        result = well_behaved(lambda: rest.get_training_run_by_tinker_path(path))
    except ValueError as refused:  # a path that does not parse: refused by name before any request
        assert str(refused).startswith(("invalid tinker path ", "run_id: ")) and "\n" not in str(refused)
        assert server.requests == []
        return
    if isinstance(result, tr.TrainingRun):
        assert isinstance(result.training_run_id, str)


@SETTINGS
@given(
    raw=answers(PAGE),
    cursor=mutated({"offset": 0, "limit": 2, "total_count": 1000}),  # more than 3 pages hold
    item=mutated(run_object("c")),
)
def test_iter_training_runs(server, rest, raw, cursor, item):
    server.answer(raw)
    well_behaved(lambda: list(rest.iter_training_runs(page_size=2, max_pages=3)))
    page = {"training_runs": [run_object("a"), item], "cursor": cursor}
    server.answer(http_answer(200, encode(page)))
    result = well_behaved(lambda: list(rest.iter_training_runs(page_size=2, max_pages=3)))
    if isinstance(result, list):
        assert len(result) <= 6 and len(server.requests) <= 3  # never past max_pages


SAVE_STEPS = {
    **GOOD_STEPS,
    "/api/v1/save_weights": http_answer(200, b'{"request_id": "q-2"}'),
}


@SETTINGS
@given(
    step=st.sampled_from(["/api/v1/save_weights", "/api/v1/retrieve_future"]),
    raw=answers(b'{"request_id": "q-2", "path": "tinker://s-1:train:0/weights/step-000001"}'),
)
def test_loopback_training_client_save_state(server, step, raw):
    with LoopbackService(server.base_url, KEY, timeout_s=0.5) as service:
        server.answer(http_answer(404, b"{}"), GOOD_STEPS)
        client = well_behaved(lambda: service.create_training_client_from_state("tinker://run-1/weights/x"))
        assume(not isinstance(client, tr.TinkerRecoveryError))  # the good load timed out: a busy machine
        client.info  # noqa: B018 -- a copy of what get_info answered
        routes = dict(SAVE_STEPS)
        routes[step] = raw
        if step == "/api/v1/save_weights":  # the load's future answer must not end the save's
            routes["/api/v1/retrieve_future"] = http_answer(
                200, b'{"type": "save_weights", "path": "tinker://s-1:train:0/weights/step-000001"}'
            )
        server.answer(raw, routes)
        result = well_behaved(lambda: client.save_state("step-000001"))
    assert isinstance(result, (str, tr.TinkerRecoveryError))
