"""LoopbackService: restores over real HTTP against FakeTinker, with short time-outs and no retries."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import responses

from tinker_recovery.errors import (
    AuthenticationError,
    ConnectionFailed,
    NotFound,
    RateLimited,
    RequestTimeout,
    ResponseError,
    ServerError,
    UnprocessableEntity,
)
from tinker_recovery.testing import FakeTinker, LoopbackService


@pytest.fixture
def fake():
    before = {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}
    with FakeTinker(try_again_hold_s=0.05) as server:
        yield server
    after = {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}
    assert after - before == set()


@pytest.fixture
def service(fake):
    with LoopbackService(fake.base_url, fake.api_key, timeout_s=2.0) as client:
        yield client


def _count(fake: FakeTinker, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


def test_restores_create_one_session_and_sequential_model_ids(fake, service):
    run_id = fake.add_run(checkpoints=2, lora_rank=16)
    path = f"tinker://{run_id}/weights/step-000020"
    assert service.session_id is None
    first = service.create_training_client_from_state_with_optimizer(path)
    second = service.create_training_client_from_state(path)
    session_id = service.session_id
    assert (first.model_id, second.model_id) == (f"{session_id}:train:0", f"{session_id}:train:1")
    assert first.info["lora_rank"] == 16 and first.info["model_id"] == first.model_id
    assert _count(fake, "/api/v1/create_session") == 1
    assert fake.load_weights_count(run_id) == 2
    assert fake.get_run(first.model_id)["base_model"] == "Qwen/Qwen3-8B"


def test_save_state_returns_the_path_and_the_checkpoint_loads_again(fake, service):
    run_id = fake.add_run(checkpoints=1)
    client = service.create_training_client_from_state_with_optimizer(
        f"tinker://{run_id}/weights/step-000010"
    )
    path = client.save_state("restored-1", ttl_seconds=600)
    assert path == f"tinker://{client.model_id}/weights/restored-1"
    assert fake.get_run(client.model_id)["last_checkpoint"]["expires_at"] is not None
    assert client.save_state("restored-2").endswith("/restored-2")  # seq_id 2 follows seq_id 1
    again = service.create_training_client_from_state(path)
    assert fake.load_weights_count(client.model_id) == 1 and again.model_id.endswith(":train:1")
    with pytest.raises(UnprocessableEntity, match="already exists"):
        client.save_state("restored-1")
    with pytest.raises(ValueError):
        client.save_state("a/b")


def test_concurrent_restores_share_one_session(fake, service):
    run_id = fake.add_run(checkpoints=1)
    path = f"tinker://{run_id}/weights/step-000010"
    results: list[str] = []
    errors: list[BaseException] = []

    def restore() -> None:
        try:
            results.append(service.create_training_client_from_state(path).model_id)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=restore) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sorted(results) == [f"{service.session_id}:train:{n}" for n in range(4)]
    assert _count(fake, "/api/v1/create_session") == 1


def test_unknown_checkpoint_raises_not_found(fake, service):
    run_id = fake.add_run(checkpoints=1)
    with pytest.raises(NotFound, match="not found") as failure:
        service.create_training_client_from_state(f"tinker://{run_id}/weights/missing")
    assert failure.value.status_code == 404 and failure.value.retryable is False
    with pytest.raises(ValueError):
        service.create_training_client_from_state("s3://bucket/key")


def test_a_wrong_key_raises_authentication_error_without_the_key(fake):
    service = LoopbackService(fake.base_url, "tml-wrong-secret", timeout_s=2.0)
    with service, pytest.raises(AuthenticationError) as failure:
        service.create_session()
    assert failure.value.status_code == 401
    assert "tml-wrong-secret" not in str(failure.value) and "tml-wrong-secret" not in repr(failure.value)


def test_injected_server_error_is_raised_at_once_without_retry(fake, service):
    run_id = fake.add_run(checkpoints=1)
    service.create_session()
    fake.add_fault("POST", "load_weights", status=503)
    with pytest.raises(ServerError) as failure:
        service.create_training_client_from_state_with_optimizer(f"tinker://{run_id}/weights/step-000010")
    assert failure.value.retryable is True and failure.value.status_code == 503
    assert _count(fake, "/api/v1/load_weights") == 1
    assert fake.load_weights_count(run_id) == 0


def test_rate_limit_carries_retry_after(fake, service):
    fake.add_fault("POST", "create_session", status=429, retry_after_s=2.0, times=1)
    with pytest.raises(RateLimited) as failure:
        service.create_session()
    assert failure.value.retry_after_s == 2.0
    assert service.create_session()  # the rule was used up


def test_slow_server_raises_request_timeout_within_the_time_out(fake):
    fake.add_fault("POST", "create_session", latency_s=5.0)
    with LoopbackService(fake.base_url, fake.api_key, timeout_s=0.2) as service:
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as failure:
            service.create_session()
    assert time.monotonic() - started < 2.0
    assert failure.value.retryable is True
    assert (
        failure.value.__context__ is None and failure.value.__cause__ is None
    )  # no request (and key) attached


def test_dropped_connection_and_malformed_body(fake, service):
    fake.add_fault("POST", "create_session", drop=True, times=1)
    with pytest.raises(ConnectionFailed) as dropped:
        service.create_session()
    assert dropped.value.__context__ is None
    fake.add_fault("POST", "create_session", malformed=True, times=1)
    with pytest.raises(ResponseError, match="not JSON"):
        service.create_session()
    assert service.create_session()
    assert [r.fault for r in fake.requests] == ["drop", "malformed", None]


def test_a_stopped_server_raises_connection_failed():
    fake = FakeTinker().start()
    base_url, api_key = fake.base_url, fake.api_key
    fake.stop()
    service = LoopbackService(base_url, api_key, timeout_s=1.0)
    with service, pytest.raises(ConnectionFailed) as failure:
        service.create_session()
    assert api_key not in str(failure.value) and failure.value.__context__ is None


def test_a_corrupted_run_refuses_save_state(fake, service):
    run_id = fake.add_run(checkpoints=1)
    client = service.create_training_client_from_state(f"tinker://{run_id}/weights/step-000010")
    fake.corrupt(client.model_id)
    with pytest.raises(UnprocessableEntity, match="corrupted"):
        client.save_state("x")


@responses.activate
def test_wire_protocol_of_a_restore():
    base = "http://fake.invalid"
    responses.post(f"{base}/api/v1/create_session", json={"session_id": "S"})
    responses.post(f"{base}/api/v1/load_weights", json={"request_id": "r1"})
    responses.post(f"{base}/api/v1/retrieve_future", json={"type": "try_again", "request_id": "r1"})
    responses.post(f"{base}/api/v1/retrieve_future", json={"path": "p", "type": "load_weights"})
    responses.post(f"{base}/api/v1/get_info", json={"model_id": "S:train:0", "model_data": {}})
    responses.post(f"{base}/api/v1/load_weights", json={"request_id": "r2"})
    responses.post(f"{base}/api/v1/retrieve_future", json={"type": "load_weights"})
    responses.post(f"{base}/api/v1/get_info", json={"model_id": "S:train:1", "model_data": {}})
    responses.post(f"{base}/api/v1/save_weights", json={"request_id": "r3"})
    responses.post(f"{base}/api/v1/retrieve_future", json={"path": "tinker://S:train:1/weights/n"})
    service = LoopbackService(base + "/", "tml-secret", timeout_s=1.0)
    assert (
        service.create_training_client_from_state_with_optimizer("tinker://R/weights/c").model_id
        == "S:train:0"
    )
    client = service.create_training_client_from_state("tinker://R/weights/c")
    assert client.save_state("n") == "tinker://S:train:1/weights/n"
    service.close()

    sent = [(call.request.url.removeprefix(base), json.loads(call.request.body)) for call in responses.calls]
    assert all(call.request.headers["X-API-Key"] == "tml-secret" for call in responses.calls)
    assert sent[1] == (
        "/api/v1/load_weights",
        {
            "session_id": "S",
            "model_seq_id": 0,
            "path": "tinker://R/weights/c",
            "optimizer": True,
            "type": "load_weights",
        },
    )
    assert sent[2] == ("/api/v1/retrieve_future", {"request_id": "r1", "allow_metadata_only": False})
    assert sent[4] == ("/api/v1/get_info", {"model_id": "S:train:0", "type": "get_info"})
    assert sent[5][1]["optimizer"] is False and sent[5][1]["model_seq_id"] == 1
    assert sent[8] == (
        "/api/v1/save_weights",
        {"model_id": "S:train:1", "path": "n", "seq_id": 1, "overwrite": False, "type": "save_weights"},
    )


@responses.activate
def test_a_future_that_never_resolves_times_out_and_a_failed_one_raises():
    base = "http://fake.invalid"
    responses.post(f"{base}/api/v1/create_session", json={"session_id": "S"})
    responses.post(f"{base}/api/v1/load_weights", json={"request_id": "r1"})
    responses.post(f"{base}/api/v1/retrieve_future", json={"type": "try_again", "request_id": "r1"})
    # timeout_s bounds each exchange too: at 0.2 s one mocked exchange on a loaded 2-core machine
    # sometimes took longer and failed as a RequestTimeout of its own (1 run in ~50).
    with LoopbackService(base, "tml-secret", timeout_s=1.0) as service:
        with pytest.raises(RequestTimeout, match="load_weights did not finish"):
            service.create_training_client_from_state("tinker://R/weights/c")
        responses.replace(
            responses.POST, f"{base}/api/v1/retrieve_future", json={"error": "boom", "category": "server"}
        )
        with pytest.raises(ServerError, match="boom"):
            service.create_training_client_from_state("tinker://R/weights/c")


def test_constructor_validates_and_repr_hides_the_key():
    session = requests.Session()
    service = LoopbackService("http://127.0.0.1:9", "tml-topsecret", timeout_s=0.5, session=session)
    assert "tml-topsecret" not in repr(service) and "127.0.0.1:9" in repr(service)
    service.close()
    assert session.adapters  # a caller's session is left open
    session.close()
    for kwargs in ({"timeout_s": 0}, {"timeout_s": -1.0}, {"timeout_s": True}):
        with pytest.raises(ValueError):
            LoopbackService("http://127.0.0.1:9", "tml-x", **kwargs)
    with pytest.raises(ValueError):
        LoopbackService("127.0.0.1:9", "tml-x")
    with pytest.raises(ValueError):
        LoopbackService("http://127.0.0.1:9", "")
