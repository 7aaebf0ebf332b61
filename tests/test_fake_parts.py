"""FakeTinker's parts on their own: seq_id ordering on an injected clock, futures, the clock,
the sampler, and the parsers fed by clients (property-based)."""

from __future__ import annotations

import math
import random

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_recovery import ManualClock
from tinker_recovery.testing import FakeTinker
from tinker_recovery.testing._clock import FakeClock
from tinker_recovery.testing._common import ApiProblem, Result, parse_path
from tinker_recovery.testing._futures import FutureTable, SeqOrder
from tinker_recovery.testing._model import (
    VOCAB,
    SamplingParams,
    bucket,
    initial_snapshot,
    prompt_logprobs,
    sample,
    token_of_bucket,
)
from tinker_recovery.testing._ops import parse_sample_request

WEIGHTS = initial_snapshot(1).weights


# --- seq_id order ---------------------------------------------------------------------------------


def _ids():
    counter = iter(range(1, 1000))
    return lambda: f"r{next(counter)}"


def test_seq_order_runs_in_order_and_times_a_gap_on_the_given_clock():
    order, new = SeqOrder(gap_timeout_s=2.0), _ids()
    assert order.submit(3, "optim_step", new, "c").request_id == "r1"
    assert order.ready(now=10.0) == [] and order.gap_expiry() == 12.0
    assert order.submit(2, "forward_backward", new, "b").request_id == "r2"
    assert order.ready(now=11.0) == [] and order.gap_expiry() == 12.0  # nothing ran: the gap is as old
    assert order.skip_gap(now=11.999) is None
    assert order.skip_gap(now=12.0) == (1, 1)
    assert [(q.kind, q.request_id, q.payload) for q in order.ready(now=12.0)] == [
        ("forward_backward", "r2", "b"),
        ("optim_step", "r1", "c"),
    ]
    assert order.gap_expiry() is None
    refused = order.submit(1, "save_weights", new, "late")
    assert (refused.request_id, refused.refusal) == (None, "seq_id 1 is below the next expected 4")


def test_seq_order_restarts_the_gap_clock_when_something_ran_and_replays_retries():
    order, new = SeqOrder(gap_timeout_s=2.0), _ids()
    order.submit(1, "forward_backward", new, None)
    order.submit(3, "optim_step", new, None)
    assert [q.request_id for q in order.ready(now=5.0)] == ["r1"] and order.gap_expiry() == 7.0
    assert order.submit(3, "optim_step", new, None).request_id == "r2"  # a retry: same future
    assert (
        order.submit(3, "save_weights", new, None).refusal
        == "seq_id 3 was already used by a optim_step request"
    )
    assert order.ready(now=6.5) == [] and order.gap_expiry() == 7.0


def test_future_table_never_forgets_a_queued_future():
    table = FutureTable(max_futures=2)
    queued = table.new()
    done = table.new(Result(b"1"))
    table.new(Result(b"2"))  # over the limit: the oldest resolved one goes, the queued one stays
    assert table.result(queued) is None
    with pytest.raises(ApiProblem) as missing:
        table.result(done)
    assert missing.value.status == 404
    table.resolve(queued, Result(b"x"))
    assert table.result(queued) == Result(b"x")
    with pytest.raises(ValueError, match="max_futures"):
        FutureTable(0)


def test_a_seq_id_gap_waits_for_the_injected_clock_not_for_real_time():
    clock = ManualClock()
    with FakeTinker(clock=clock, try_again_hold_s=0.0, seq_gap_timeout_s=5.0) as fake:
        run_id = fake.add_run(checkpoints=0)
        session = requests.Session()
        session.headers["X-API-Key"] = fake.api_key

        def post(path: str, body: dict) -> dict:
            response = session.post(fake.base_url + path, json=body, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()

        waiting = post("/api/v1/optim_step", {"model_id": run_id, "seq_id": 2, "adam_params": {}})[
            "request_id"
        ]
        for _ in range(3):
            assert post("/api/v1/retrieve_future", {"request_id": waiting})["type"] == "try_again"
        clock.advance(4.9)
        assert post("/api/v1/retrieve_future", {"request_id": waiting})["type"] == "try_again"
        fake.advance_clock(0.1)  # FakeTinker's own offset moves the same clock
        assert "metrics" in post("/api/v1/retrieve_future", {"request_id": waiting})
        session.close()


# --- the clock ------------------------------------------------------------------------------------


def test_fake_clock_reads_its_source_plus_the_offset():
    now = [100.0]
    clock = FakeClock(lambda: now[0])
    assert (clock.time(), clock.monotonic(), clock.offset_s) == (100.0, 100.0, 0.0)
    assert clock.advance(7200) == 7200.0 and clock.advance(0) == 7200.0
    now[0] = 101.0
    assert (clock.time(), clock.monotonic()) == (7301.0, 7301.0)
    manual = FakeClock(ManualClock(start=50.0))
    assert manual.monotonic() == 50.0 and manual.time() == 1767225600.0  # 2026-01-01T00:00:00Z
    with pytest.raises(TypeError, match="clock must be"):
        FakeClock(42)  # type: ignore[arg-type]


# --- the sampler ----------------------------------------------------------------------------------


def test_bucket_is_a_permutation_of_the_vocabulary():
    assert sorted(bucket(t) for t in range(VOCAB)) == list(range(VOCAB))
    assert all(bucket(token_of_bucket(b)) == b for b in range(VOCAB))


@settings(max_examples=150, deadline=None)
@given(
    prompt=st.lists(st.integers(0, 10**6), min_size=1, max_size=6),
    max_tokens=st.integers(1, 12),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    top_k=st.sampled_from([-1, 1, 3, 64]),
    top_p=st.sampled_from([0.1, 0.9, 1.0]),
    stop=st.frozensets(st.integers(0, VOCAB - 1), max_size=4),
    seed=st.integers(0, 2**32),
)
def test_sample_respects_its_parameters(prompt, max_tokens, temperature, top_k, top_p, stop, seed):
    params = SamplingParams(
        max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop
    )
    result = sample(WEIGHTS, prompt, params, random.Random(seed))
    assert result == sample(WEIGHTS, prompt, params, random.Random(seed))  # deterministic
    assert 1 <= len(result.tokens) <= max_tokens and len(result.logprobs) == len(result.tokens)
    assert all(0 <= t < VOCAB for t in result.tokens) and all(lp <= 0 for lp in result.logprobs)
    assert not set(result.tokens[:-1]) & stop  # only the last token may be a stop token
    if result.stop_reason == "stop":
        assert result.tokens[-1] in stop
    else:
        assert result.stop_reason == "length" and len(result.tokens) == max_tokens
    scored = prompt_logprobs(WEIGHTS, list(prompt) + list(result.tokens))
    assert scored[len(prompt) :] == pytest.approx(result.logprobs, abs=1e-12)
    if top_k == 1 or temperature == 0.0:  # greedy: the most likely next bucket every time
        assert (
            result.tokens
            == sample(
                WEIGHTS,
                prompt,
                SamplingParams(max_tokens=max_tokens, temperature=0.0, stop_tokens=stop),
                random.Random(0),
            ).tokens
        )


def test_prompt_logprobs_exact_positions():
    scored = prompt_logprobs(WEIGHTS, [5, 6, 7, 8], last_n=2)
    assert math.isnan(scored[0]) and math.isnan(scored[1]) and not any(math.isnan(v) for v in scored[2:])
    full = prompt_logprobs(WEIGHTS, [5, 6, 7, 8])
    assert full[2:] == scored[2:] and math.isnan(full[0])
    assert prompt_logprobs(WEIGHTS, [9]) == [pytest.approx(math.nan, nan_ok=True)]


# --- parsers fed by clients -----------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_sample_bodies = st.fixed_dictionaries(
    {},
    optional={
        "num_samples": _json,
        "prompt": st.one_of(_json, st.just({"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]})),
        "sampling_params": st.one_of(
            _json,
            st.fixed_dictionaries(
                {},
                optional={
                    "max_tokens": _json,
                    "temperature": _json,
                    "top_k": _json,
                    "top_p": _json,
                    "stop": _json,
                    "seed": _json,
                },
            ),
        ),
        "prompt_logprobs": _json,
        "prompt_logprobs_last_n": _json,
        "topk_prompt_logprobs": _json,
        "target_prompt_logprobs": _json,
    },
)


@settings(max_examples=150, deadline=None)
@given(body=_sample_bodies)
def test_any_sample_body_parses_or_is_refused_with_a_400(body):
    try:
        request = parse_sample_request(body)
    except ApiProblem as problem:
        assert problem.status == 400 and problem.message
        return
    assert 1 <= request.num_samples <= 128 and 1 <= request.params.max_tokens <= 4096 and request.tokens


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_decode_or_raise_proto_error_only(data):
    pytest.importorskip("tinker.proto.tinker_public_pb2")
    from tinker_recovery.testing._protobuf import (
        ProtoError,
        decode_forward_backward_request,
    )

    try:
        decoded = decode_forward_backward_request(data)
    except ProtoError:
        return
    assert isinstance(decoded.model_id, str) and isinstance(decoded.data, tuple)


@settings(max_examples=100, deadline=None)
@given(path=st.one_of(_json, st.text(max_size=40).map(lambda s: "tinker://" + s)))
def test_any_tinker_path_parses_or_is_refused_with_a_400(path):
    try:
        parsed = parse_path(path)
    except ApiProblem as problem:
        assert problem.status == 400 and "invalid tinker path" in problem.message
        return
    assert parsed.checkpoint_id.split("/")[0] in ("weights", "sampler_weights")


@pytest.fixture(scope="module")
def served():
    with FakeTinker() as fake:
        session = requests.Session()
        session.headers["X-API-Key"] = fake.api_key
        run_id = fake.add_run(sampler_checkpoints=1)
        sid = session.post(fake.base_url + "/api/v1/create_session", json={}, timeout=10).json()["session_id"]
        created = session.post(
            fake.base_url + "/api/v1/create_sampling_session",
            json={
                "session_id": sid,
                "sampling_session_seq_id": 0,
                "model_path": f"tinker://{run_id}/sampler_weights/step-000010",
            },
            timeout=10,
        )
        yield fake, session, created.json()["sampling_session_id"]
        session.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_sample_bodies)
def test_asample_over_http_answers_200_or_400_never_500(served, body):
    fake, session, sampler_id = served
    response = session.post(
        fake.base_url + "/api/v1/asample", json={**body, "sampling_session_id": sampler_id}, timeout=10
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert len(response.json()["sample_sequence_ids"]) >= 1
    else:
        assert response.json()["detail"]


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"num_samples": 128}, None),
        ({"num_samples": 129}, "num_samples must be at most 128"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1"),
        ({"sampling_params": {"max_tokens": 4096}}, None),
        ({"sampling_params": {"max_tokens": 4097}}, "max_tokens must be at most 4096"),
        ({"sampling_params": {"max_tokens": None}}, None),
        ({"prompt": {"chunks": [{"type": "encoded_text", "tokens": [1] * 32_768}]}}, None),
        ({"prompt": {"chunks": [{"type": "encoded_text", "tokens": [1] * 32_769}]}}, "at most 32768"),
        ({"prompt": {"chunks": [{"type": "image", "data": "x"}]}}, "'image' are not supported"),
        ({"sampling_params": {"temperature": math.nan}}, "temperature must be a finite number"),
        ({"sampling_params": {"stop": "\n"}}, "no tokenizer"),
        ({"prompt_logprobs_last_n": 2}, "at most len(prompt) - 1 = 1"),
    ],
)
def test_sample_request_limits_are_exact(overrides, error):
    body = {
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
        "sampling_params": {},
        **overrides,
    }
    if error is None:
        request = parse_sample_request(body)
        assert request.params.max_tokens == (body["sampling_params"].get("max_tokens") or 16)
        return
    with pytest.raises(ApiProblem, match=error.replace("(", r"\(").replace(")", r"\)")) as refused:
        parse_sample_request(body)
    assert refused.value.status == 400


_admin_bodies = st.dictionaries(
    st.sampled_from(
        [
            "base_model",
            "checkpoints",
            "sampler_checkpoints",
            "corrupted",
            "ttl_seconds",
            "user_metadata",
            "lora_rank",
            "method",
            "path",
            "status",
            "retry_after_s",
            "latency_s",
            "drop",
            "malformed",
            "times",
            "probability",
            "seconds",
            "bogus",
        ]
    ),
    st.one_of(
        _json, st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1.0, 0, 2**70])
    ),
    max_size=5,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["/_fake/runs", "/_fake/faults", "/_fake/clock/advance"]), body=_admin_bodies)
def test_admin_bodies_are_accepted_or_refused_never_a_500(served, where, body):
    fake, session, _ = served
    response = session.post(fake.base_url + where, json=body, timeout=10)
    assert response.status_code in (200, 201, 400), response.text
    fake.clear_faults()  # an accepted rule must not fault the next example's requests


def test_the_testing_package_has_no_import_circle():
    import ast
    from pathlib import Path

    import tinker_recovery.testing as package

    root = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        if path.name == "__init__.py":
            continue
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                edges.add(node.module.split(".")[0])
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import circle: {' -> '.join((*trail, name))}"
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            visit(target, (*trail, name))
        state[name] = "done"

    for module in sorted(graph):
        visit(module, ())
    assert {"_protobuf", "_state", "_store", "_futures", "_sessions", "_ops"} <= set(graph)
    assert "_proto" not in graph  # the hand-written codec is gone


@pytest.mark.parametrize(
    "body",
    [{"checkpoints": 2**70}, {"sampler_checkpoints": 10**9}, {"lora_rank": 2**40}, {"ttl_seconds": 1e308}],
)
def test_admin_add_run_refuses_sizes_that_would_exhaust_memory(served, body):
    # Found by the hypothesis test above: an admin body asking for 2**70 checkpoints or a huge LoRA rank
    # made the server allocate until the OOM killer ended the whole test process.
    fake, session, _ = served
    response = session.post(fake.base_url + "/_fake/runs", json=body, timeout=10)
    assert response.status_code == 400
    assert next(iter(body)) in response.text


def test_the_clock_cannot_be_advanced_past_what_a_timestamp_can_show(served):
    # Found by the hypothesis test above in a fresh clone: examples advanced the shared fake's clock by
    # 1e308 s in total, and every later answer that prints a time failed with OverflowError (a 500).
    fake, session, _ = served
    refused = session.post(fake.base_url + "/_fake/clock/advance", json={"seconds": 1e300}, timeout=10)
    assert refused.status_code == 400 and "seconds" in refused.text
    assert session.get(fake.base_url + "/_fake/clock", timeout=10).status_code == 200
