"""FakeTinker over real HTTP, driven with plain ``requests``.

JSON endpoints need nothing else; the protobuf bodies of ``forward_backward`` are built and read
with the official SDK's generated module and converters, as the SDK itself does.
"""

from __future__ import annotations

import http.client
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tinker_recovery.testing import FakeTinker, ServedRequest
from tinker_recovery.testing._model import (
    VOCAB,
    AdamParams,
    BigramModel,
    Datum,
    Tensor,
    bucket,
    initial_snapshot,
)

REPO = Path(__file__).resolve().parents[1]
DATUM = Datum(
    tokens=(1, 2, 3, 4, 5),
    loss_fn_inputs={
        "target_tokens": Tensor((2, 3, 4, 5, 6), "int64", (5,)),
        "weights": Tensor((1.0, 1.0, 1.0, 1.0, 1.0), "float32", (5,)),
    },
)


class Output:
    """A forward_backward result read with the SDK's own converter: per-datum value lists, metrics."""

    def __init__(self, body: bytes) -> None:
        from tinker.proto.response_conv import deserialize_forward_backward_output

        sdk = deserialize_forward_backward_output(body)
        self.metrics = sdk.metrics
        self.loss_fn_outputs = [{k: tuple(v.data) for k, v in out.items()} for out in sdk.loss_fn_outputs]


def encode_forward_backward(model_id: str, seq_id: int, data, *, forward_only: bool = False) -> bytes:
    """A ForwardBackwardRequest built with the official generated module, dense tensors."""
    import numpy as np
    from tinker.proto import tinker_public_pb2 as pb

    message = pb.ForwardBackwardRequest(
        model_id=model_id, seq_id=seq_id, loss_fn="cross_entropy", forward_only=forward_only
    )
    dtypes = {"int64": (pb.DTYPE_INT64, np.int64), "float32": (pb.DTYPE_FLOAT32, np.float32)}
    for datum in data:
        entry = message.data.add()
        entry.model_input.add().encoded_text.tokens = np.asarray(datum.tokens, dtype=np.int32).tobytes()
        for name, tensor in datum.loss_fn_inputs.items():
            code, np_type = dtypes[tensor.dtype]
            target = entry.loss_fn_inputs[name]
            target.dtype, target.dense = code, np.asarray(tensor.values, dtype=np_type).tobytes()
            target.shape.extend(tensor.shape)
    return message.SerializeToString()


FAST_ADAM = {
    "learning_rate": 0.05,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "grad_clip_norm": 0.0,
}


class Client:
    """A thin test client that speaks the fake's wire protocol with requests."""

    def __init__(self, fake: FakeTinker, api_key: str | None = None) -> None:
        self.base = fake.base_url
        self.http = requests.Session()
        self.headers = {"X-API-Key": api_key or fake.api_key}

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict | None = None, **kwargs) -> requests.Response:
        return self.http.post(self.base + path, json=body or {}, headers=self.headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.base + path, headers=self.headers, timeout=10, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.base + path, headers=self.headers, timeout=10)

    def ok(self, path: str, body: dict | None = None) -> dict:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def result(self, request_id: str, deadline_s: float = 10.0) -> requests.Response:
        """Poll retrieve_future until it is no longer try_again."""
        deadline = time.monotonic() + deadline_s
        while True:
            response = self.post(
                "/api/v1/retrieve_future", {"request_id": request_id, "allow_metadata_only": True}
            )
            assert response.status_code == 200, response.text
            if "protobuf" in response.headers["Content-Type"] or response.json().get("type") != "try_again":
                return response
            assert time.monotonic() < deadline, f"future {request_id} never resolved"

    def session(self) -> str:
        return self.ok("/api/v1/create_session", {"tags": [], "user_metadata": {}, "type": "create_session"})[
            "session_id"
        ]

    def create_model(self, session_id: str, model_seq_id: int, seed: int | None = None) -> str:
        lora = {"rank": 8, "train_mlp": True, "train_attn": True, "train_unembed": True}
        if seed is not None:
            lora["seed"] = seed
        body = {
            "session_id": session_id,
            "model_seq_id": model_seq_id,
            "base_model": "Qwen/Qwen3-8B",
            "lora_config": lora,
        }
        return self.result(self.ok("/api/v1/create_model", body)["request_id"]).json()["model_id"]

    def submit_forward_backward(
        self, model_id: str, seq_id: int, data=(DATUM,), forward_only: bool = False
    ) -> str:
        response = self.http.post(
            self.base + "/api/v1/forward_backward",
            data=encode_forward_backward(model_id, seq_id, data, forward_only=forward_only),
            headers={**self.headers, "Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["request_id"]

    def forward_backward(self, model_id: str, seq_id: int, **kwargs) -> Output:
        response = self.result(self.submit_forward_backward(model_id, seq_id, **kwargs))
        assert response.headers["Content-Type"] == "application/x-protobuf", response.text
        return Output(response.content)

    def submit(self, kind: str, model_id: str, seq_id: int, **fields) -> str:
        return self.ok(f"/api/v1/{kind}", {"model_id": model_id, "seq_id": seq_id, "type": kind, **fields})[
            "request_id"
        ]

    def optim_step(self, model_id: str, seq_id: int) -> dict:
        return self.result(self.submit("optim_step", model_id, seq_id, adam_params=FAST_ADAM)).json()

    def save(self, model_id: str, seq_id: int, name: str, **fields) -> dict:
        return self.result(self.submit("save_weights", model_id, seq_id, path=name, **fields)).json()

    def load(self, session_id: str, model_seq_id: int, path: str, optimizer: bool) -> requests.Response:
        body = {
            "session_id": session_id,
            "model_seq_id": model_seq_id,
            "path": path,
            "optimizer": optimizer,
            "type": "load_weights",
        }
        return self.post("/api/v1/load_weights", body)

    def train(self, model_id: str, first_seq: int, steps: int) -> list[float]:
        """forward_backward + optim_step ``steps`` times; return the losses."""
        losses = []
        for i in range(steps):
            losses.append(self.forward_backward(model_id, first_seq + 2 * i).metrics["loss:sum"])
            assert "metrics" in self.optim_step(model_id, first_seq + 2 * i + 1)
        return losses


def _fake_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}


@pytest.fixture
def fake():
    before = _fake_threads()
    with FakeTinker(try_again_hold_s=0.05) as server:
        yield server
    assert _fake_threads() - before == set(), "FakeTinker left threads running"


@pytest.fixture
def client(fake):
    c = Client(fake)
    yield c
    c.close()


# --- lifecycle ----------------------------------------------------------------------------------


def test_starts_fast_keeps_alive_and_stops_every_thread():
    before = _fake_threads()
    started = time.perf_counter()
    fake = FakeTinker().start()
    startup_s = time.perf_counter() - started
    try:
        assert startup_s < 0.25
        assert fake.base_url == f"http://127.0.0.1:{fake.port}"
        assert fake.api_key.startswith("tml-fake-") and fake.api_key not in repr(fake)
        connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
        for _ in range(3):  # three requests over one connection: keep-alive works
            connection.request("GET", "/api/v1/healthz", headers={"X-API-Key": fake.api_key})
            response = connection.getresponse()
            assert response.status == 200 and response.read() == b'{"status":"ok"}'
            assert response.getheader("Connection") is None
        assert len(_fake_threads() - before) == 2  # the accept loop and this connection
    finally:
        fake.stop()
        connection.close()
    assert _fake_threads() - before == set()
    probe = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=2)
    with pytest.raises(ConnectionRefusedError):
        probe.request("GET", "/api/v1/healthz")
    probe.close()
    fake.stop()  # idempotent
    with pytest.raises(RuntimeError):
        fake.start()


def test_stop_wakes_a_held_future_poll_and_a_latency_fault(monkeypatch):
    fake = FakeTinker(try_again_hold_s=30.0, seq_gap_timeout_s=60.0).start()
    client = Client(fake)
    session_id = client.session()
    model_id = client.create_model(session_id, 0)
    waiting = client.submit("optim_step", model_id, 2, adam_params=FAST_ADAM)  # seq 1 never comes
    fake.add_fault("GET", "healthz", latency_s=30.0)
    outcomes: queue.Queue[str] = queue.Queue()
    polling, delayed = threading.Event(), threading.Event()
    retrieve, match = fake._state.retrieve, fake._fault_table.match

    def spy_retrieve(*args):
        polling.set()
        return retrieve(*args)

    def spy_match(*args):
        rule = match(*args)
        if rule is not None:
            delayed.set()
        return rule

    monkeypatch.setattr(fake._state, "retrieve", spy_retrieve)
    monkeypatch.setattr(fake._fault_table, "match", spy_match)

    def call(fn):
        try:
            fn()
            outcomes.put("answered")
        except requests.RequestException:
            outcomes.put("closed")

    threads = [
        threading.Thread(
            target=call, args=(lambda: Client(fake).post("/api/v1/retrieve_future", {"request_id": waiting}),)
        ),
        threading.Thread(target=call, args=(lambda: Client(fake).get("/api/v1/healthz"),)),
    ]
    for thread in threads:
        thread.start()
    assert polling.wait(5) and delayed.wait(5)  # both requests are inside the server
    started = time.monotonic()
    fake.stop()
    for thread in threads:
        thread.join(5)
    client.close()
    assert time.monotonic() - started < 3
    # the held poll is answered (try_again) at once; the delayed request's connection is closed
    assert sorted(outcomes.get_nowait() for _ in threads) == ["answered", "closed"]
    assert not any(t.is_alive() for t in threads) and not _fake_threads()


# --- auth and basic endpoints -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "tml-wrong"])
@pytest.mark.parametrize(
    "method, path",
    [("GET", "/api/v1/training_runs"), ("POST", "/api/v1/create_session"), ("GET", "/_fake/requests")],
)
def test_missing_or_wrong_key_gets_401_with_json_body(fake, method, path, key):
    headers = {} if key is None else {"X-API-Key": key}
    response = requests.request(method, fake.base_url + path, headers=headers, json={}, timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": "unauthorized", "detail": "missing or invalid X-API-Key"}
    assert fake.api_key not in response.text


def test_client_config_keeps_the_official_client_on_plain_httpx(client):
    config = client.ok("/api/v1/client/config", {"sdk_version": "0.38.0"})
    assert config["use_pyqwest_transport"] is False
    assert config["pjwt_auth_enabled"] is False
    assert config["proto_compress_fwdbwd"] is False
    assert client.ok("/api/v1/client/dynamic_config") == {}


def test_model_ids_are_session_train_seq_and_get_info_describes_them(client):
    session_id = client.session()
    model_id = client.create_model(session_id, 3)
    assert model_id == f"{session_id}:train:3"
    info = client.ok("/api/v1/get_info", {"model_id": model_id, "type": "get_info"})
    assert (
        info["model_id"] == model_id
        and info["lora_rank"] == 8
        and info["model_data"]["model_name"] == "Qwen/Qwen3-8B"
    )
    assert client.ok("/api/v1/session_heartbeat", {"session_id": session_id}) == {"type": "session_heartbeat"}
    assert client.post("/api/v1/session_heartbeat", {"session_id": "nope"}).status_code == 404
    run = client.get(f"/api/v1/training_runs/{model_id}").json()
    assert run["training_run_id"] == model_id and run["lora_rank"] == 8 and run["last_checkpoint"] is None


def test_unknown_session_and_duplicate_model_are_refused(client):
    body = {"session_id": "no-such-session", "model_seq_id": 0, "base_model": "m"}
    assert client.post("/api/v1/create_model", body).status_code == 404
    session_id = client.session()
    body["session_id"] = session_id
    first = client.ok("/api/v1/create_model", body)["request_id"]
    assert client.ok("/api/v1/create_model", body)["request_id"] == first  # a retried submission
    clash = client.load(session_id, 0, "tinker://x/weights/y", optimizer=False)
    assert clash.status_code == 400 and "already exists" in clash.json()["detail"]


# --- the model, futures and ordering ------------------------------------------------------------


def test_forward_backward_answers_protobuf_with_a_real_cross_entropy(client):
    model_id = client.create_model(client.session(), 0)
    output = client.forward_backward(model_id, 1, forward_only=True)
    logprobs = output.loss_fn_outputs[0]["logprobs"]
    assert len(logprobs) == 5 and all(lp < 0 for lp in logprobs)
    assert output.metrics["loss:sum"] == pytest.approx(-sum(logprobs), rel=1e-6)
    # the initial weights are small, so each prediction is close to uniform over the buckets
    assert output.metrics["loss:sum"] == pytest.approx(5 * math.log(VOCAB), rel=0.05)
    half = Datum(
        tokens=DATUM.tokens,
        loss_fn_inputs={**DATUM.loss_fn_inputs, "weights": Tensor((1.0, 0, 0, 0, 0), "float32", (5,))},
    )
    weighted = client.forward_backward(model_id, 2, data=[half], forward_only=True)
    assert weighted.metrics["loss:sum"] == pytest.approx(
        -weighted.loss_fn_outputs[0]["logprobs"][0], rel=1e-6
    )


def test_training_lowers_the_loss(client):
    model_id = client.create_model(client.session(), 0)
    losses = client.train(model_id, 1, 4)
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.5


def test_a_datum_without_targets_fails_its_future_as_a_user_error(client):
    model_id = client.create_model(client.session(), 0)
    bad = Datum(tokens=(1, 2), loss_fn_inputs={})
    result = client.result(client.submit_forward_backward(model_id, 1, data=[bad])).json()
    assert result["category"] == "user" and "target_tokens" in result["error"]
    garbage = client.http.post(
        client.base + "/api/v1/forward_backward",
        data=b"\xff\xff",
        headers={**client.headers, "Content-Type": "application/x-protobuf"},
        timeout=5,
    )
    assert garbage.status_code == 400 and "ForwardBackwardRequest" in garbage.json()["detail"]


def test_futures_resolve_in_seq_id_order_whatever_the_arrival_order(client):
    session_id = client.session()
    reordered, reference = client.create_model(session_id, 0), client.create_model(session_id, 1)
    third = client.submit_forward_backward(reordered, 3)
    second = client.submit("optim_step", reordered, 2, adam_params=FAST_ADAM)
    pending = client.post("/api/v1/retrieve_future", {"request_id": third}).json()
    assert pending == {"type": "try_again", "request_id": third, "queue_state": "active"}
    first = client.submit_forward_backward(reordered, 1)
    losses = [Output(client.result(rid).content).metrics["loss:sum"] for rid in (first, third)]
    assert "metrics" in client.result(second).json()
    # the same three operations sent in order give the same losses: the step ran between them
    in_order = client.train(reference, 1, 1)
    assert losses == [*in_order, client.forward_backward(reference, 3).metrics["loss:sum"]]
    assert losses[1] < losses[0]


def test_a_retried_submission_gets_the_same_future_and_a_reused_seq_id_fails(client):
    model_id = client.create_model(client.session(), 0)
    first = client.submit("optim_step", model_id, 1, adam_params=FAST_ADAM)
    assert client.submit("optim_step", model_id, 1, adam_params=FAST_ADAM) == first
    clash = client.submit("save_weights", model_id, 1, path="x")
    assert "already used" in client.result(clash).json()["error"]


def test_a_seq_id_gap_is_skipped_after_the_timeout():
    with FakeTinker(try_again_hold_s=0.05, seq_gap_timeout_s=0.2) as fake:
        client = Client(fake)
        model_id = client.create_model(client.session(), 0)
        started = time.monotonic()
        waiting = client.submit("optim_step", model_id, 2, adam_params=FAST_ADAM)
        assert "metrics" in client.result(waiting).json()
        assert time.monotonic() - started >= 0.2
        late = client.submit("optim_step", model_id, 1, adam_params=FAST_ADAM)
        assert "below the next expected" in client.result(late).json()["error"]
        client.close()


def test_restore_with_optimizer_continues_exactly_and_weights_only_does_not(client):
    session_id = client.session()
    model_id = client.create_model(session_id, 0)
    client.train(model_id, 1, 3)
    path = client.save(model_id, 7, "ckpt")["path"]
    assert path == f"tinker://{model_id}/weights/ckpt"
    uninterrupted = client.train(model_id, 8, 3)

    assert client.load(session_id, 1, path, optimizer=True).status_code == 200
    with_optimizer = client.train(f"{session_id}:train:1", 1, 3)
    assert client.load(session_id, 2, path, optimizer=False).status_code == 200
    weights_only = client.train(f"{session_id}:train:2", 1, 3)

    assert with_optimizer == uninterrupted  # bit for bit
    assert weights_only[0] == uninterrupted[0]  # same weights ...
    assert weights_only[1:] != uninterrupted[1:]  # ... but a fresh optimizer steps differently


def test_save_weights_refuses_an_existing_name_unless_overwrite(client):
    model_id = client.create_model(client.session(), 0)
    assert client.save(model_id, 1, "a")["path"].endswith("/weights/a")
    assert "already exists" in client.save(model_id, 2, "a")["error"]
    assert client.save(model_id, 3, "a", overwrite=True)["path"].endswith("/weights/a")
    sampler = client.result(client.submit("save_weights_for_sampler", model_id, 4, path="s")).json()
    assert sampler["path"] == f"tinker://{model_id}/sampler_weights/s"
    session_id = client.session()
    refused = client.load(session_id, 0, sampler["path"], optimizer=False)
    assert refused.status_code == 400 and "not a training checkpoint" in refused.json()["detail"]


# --- corruption ---------------------------------------------------------------------------------


def test_a_corrupted_run_refuses_training_but_its_checkpoints_load(fake, client):
    run_id = fake.add_run(checkpoints=2, corrupted=True)
    assert fake.get_run(run_id)["corrupted"] is True
    refused = [
        client.result(client.submit("optim_step", run_id, 1, adam_params=FAST_ADAM)).json(),
        client.result(client.submit_forward_backward(run_id, 2)).json(),
        client.result(client.submit("save_weights", run_id, 3, path="z")).json(),
    ]
    for result, kind in zip(refused, ("optim_step", "forward_backward", "save_weights"), strict=True):
        assert result["category"] == "user" and f"corrupted and cannot {kind}" in result["error"]
    assert [c["checkpoint_id"] for c in fake.list_checkpoints(run_id)] == [
        "weights/step-000010",
        "weights/step-000020",
    ]

    session_id = client.session()
    load = client.load(session_id, 0, f"tinker://{run_id}/weights/step-000020", optimizer=True)
    assert load.status_code == 200
    restored = f"{session_id}:train:0"
    assert client.result(load.json()["request_id"]).json() == {
        "path": f"tinker://{run_id}/weights/step-000020",
        "model_id": restored,
        "type": "load_weights",
    }
    assert fake.get_run(restored)["corrupted"] is False
    assert len(client.train(restored, 1, 1)) == 1
    assert fake.load_weights_count(run_id) == 1

    fake.corrupt(run_id, corrupted=False)
    assert "metrics" in client.optim_step(run_id, 4)
    with pytest.raises(KeyError):
        fake.corrupt("no:train:0")


# --- REST views ---------------------------------------------------------------------------------


def test_training_runs_paginate_with_a_cursor(fake, client):
    run_ids = [fake.add_run(checkpoints=0) for _ in range(5)]
    seen = []
    for offset in (0, 2, 4):
        page = client.get("/api/v1/training_runs", params={"limit": 2, "offset": offset}).json()
        assert page["cursor"] == {"offset": offset, "limit": 2, "total_count": 5}
        seen += [run["training_run_id"] for run in page["training_runs"]]
    assert seen == run_ids
    assert len(client.get("/api/v1/training_runs").json()["training_runs"]) == 5  # default limit 20
    assert client.get("/api/v1/training_runs", params={"limit": "x"}).status_code == 400
    assert client.get("/api/v1/training_runs", params={"offset": -1}).status_code == 400


def test_checkpoints_list_last_checkpoints_and_user_listing(fake, client):
    run_id = fake.add_run(checkpoints=3, sampler_checkpoints=2, user_metadata={"team": "a"}, lora_rank=16)
    run = client.get(f"/api/v1/training_runs/{run_id}").json()
    assert run["last_checkpoint"]["checkpoint_id"] == "weights/step-000030"
    assert run["last_checkpoint"]["tinker_path"] == f"tinker://{run_id}/weights/step-000030"
    assert run["last_sampler_checkpoint"]["checkpoint_type"] == "sampler"
    assert run["last_sampler_checkpoint"]["checkpoint_id"] == "sampler_weights/step-000020"
    assert (run["user_metadata"], run["lora_rank"], run["model_owner"], run["is_lora"]) == (
        {"team": "a"},
        16,
        "fake-owner",
        True,
    )
    listing = client.get(f"/api/v1/training_runs/{run_id}/checkpoints").json()
    assert [c["checkpoint_id"] for c in listing["checkpoints"]] == [
        "weights/step-000010",
        "weights/step-000020",
        "weights/step-000030",
        "sampler_weights/step-000010",
        "sampler_weights/step-000020",
    ]
    assert listing["cursor"]["total_count"] == 5
    page = client.get(f"/api/v1/training_runs/{run_id}/checkpoints", params={"limit": 2, "offset": 1}).json()
    assert [c["checkpoint_id"] for c in page["checkpoints"]] == ["weights/step-000020", "weights/step-000030"]
    other = fake.add_run(checkpoints=1)
    mine = client.get("/api/v1/checkpoints", params={"limit": 10}).json()
    assert mine["cursor"] == {"offset": 0, "limit": 10, "total_count": 6}
    assert mine["checkpoints"][-1]["tinker_path"] == f"tinker://{other}/weights/step-000010"
    info = client.ok("/api/v1/weights_info", {"tinker_path": f"tinker://{run_id}/weights/step-000010"})
    assert (info["base_model"], info["is_lora"], info["lora_rank"]) == ("Qwen/Qwen3-8B", True, 16)


def test_ttl_sets_expires_at_and_expired_checkpoints_are_gone():
    now = [1_700_000_000.0]
    with FakeTinker(clock=lambda: now[0]) as fake:
        client = Client(fake)
        run_id = fake.add_run(checkpoints=1, ttl_seconds=60)
        checkpoint = client.get(f"/api/v1/training_runs/{run_id}").json()["last_checkpoint"]
        assert checkpoint["time"] == "2023-11-14T22:13:20Z"
        assert checkpoint["expires_at"] == "2023-11-14T22:14:20Z"
        now[0] += 61
        assert client.get(f"/api/v1/training_runs/{run_id}").json()["last_checkpoint"] is None
        assert client.get(f"/api/v1/training_runs/{run_id}/checkpoints").json()["checkpoints"] == []
        assert client.load(client.session(), 0, checkpoint["tinker_path"], optimizer=False).status_code == 404
        client.close()


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/v1/training_runs/nope:train:0", None),
        ("GET", "/api/v1/training_runs/nope:train:0/checkpoints", None),
        ("DELETE", "/api/v1/training_runs/nope:train:0/checkpoints/weights/a", None),
        ("POST", "/api/v1/retrieve_future", {"request_id": "nope"}),
        ("POST", "/api/v1/weights_info", {"tinker_path": "tinker://nope:train:0/weights/a"}),
        ("POST", "/api/v1/get_info", {"model_id": "nope:train:0"}),
        ("POST", "/api/v1/optim_step", {"model_id": "nope:train:0", "seq_id": 1}),
        ("GET", "/api/v1/no_such_endpoint", None),
    ],
)
def test_unknown_things_get_404_with_json(client, method, path, body):
    response = client.http.request(method, client.base + path, json=body, headers=client.headers, timeout=5)
    assert response.status_code == 404
    assert response.json()["error"] == "not found" and response.json()["detail"]


def test_delete_checkpoint_over_http_and_in_python(fake, client):
    run_id = fake.add_run(checkpoints=2)
    response = client.delete(f"/api/v1/training_runs/{run_id}/checkpoints/weights/step-000020")
    assert response.status_code == 204 and response.content == b""
    assert (
        client.get(f"/api/v1/training_runs/{run_id}").json()["last_checkpoint"]["checkpoint_id"]
        == "weights/step-000010"
    )
    assert client.delete(f"/api/v1/training_runs/{run_id}/checkpoints/weights/step-000020").status_code == 404
    fake.delete_checkpoint(run_id, "weights/step-000010")
    assert fake.get_run(run_id)["last_checkpoint"] is None and fake.list_checkpoints(run_id) == []
    with pytest.raises(KeyError):
        fake.delete_checkpoint(run_id, "weights/step-000010")


def test_load_weights_rejects_malformed_paths(client):
    session_id = client.session()
    for path in ("s3://bucket/x", "tinker://run/weights", "tinker://run/other/x"):
        response = client.load(session_id, 0, path, optimizer=False)
        assert response.status_code == 400 and "invalid tinker path" in response.json()["detail"]


# --- faults and the request log -----------------------------------------------------------------


def test_status_fault_applies_to_the_next_n_matching_requests_only(fake, client):
    run_id = fake.add_run()
    rule = fake.add_fault("GET", r"^/api/v1/training_runs/[^/]+$", status=503, times=2)
    statuses = [client.get(f"/api/v1/training_runs/{run_id}").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert client.get(f"/api/v1/training_runs/{run_id}/checkpoints").status_code == 200  # no match
    assert fake.faults == [] and fake.remove_fault(rule) is False  # used up
    log = [r for r in fake.requests if r.path == f"/api/v1/training_runs/{run_id}"]
    assert [(r.status, r.fault, r.run_id) for r in log] == [(503, "status:503", run_id)] * 2 + [
        (200, None, run_id)
    ]


def test_fault_time_limits_are_inclusive(fake, client):
    assert fake.add_fault("GET", "nothing-matches", latency_s=3600).latency_s == 3600
    assert fake.add_fault("GET", "healthz", status=429, retry_after_s=86_400, times=1).retry_after_s == 86_400
    response = client.get("/api/v1/healthz")
    assert response.headers["Retry-After"] == "86400" and response.headers["retry-after-ms"] == "86400000"


def test_429_fault_sends_retry_after(fake, client):
    fake.add_fault("GET", "training_runs", status=429, retry_after_s=1.5, times=1)
    response = client.get("/api/v1/training_runs")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2" and response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"] == "too many requests"


def test_latency_alone_delays_then_processes(fake, client):
    fake.add_fault("POST", "create_session", latency_s=0.2, times=1)
    started = time.monotonic()
    response = client.post("/api/v1/create_session")
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200 and response.json()["session_id"]
    entry = fake.requests[-1]
    assert entry.fault == "latency" and entry.status == 200 and entry.latency_s >= 0.2


def test_latency_with_status_delays_and_does_not_process(fake, client):
    session_id = client.session()
    fake.add_fault("POST", "create_model$", status=500, latency_s=0.1, times=1)
    body = {"session_id": session_id, "model_seq_id": 0, "base_model": "m"}
    started = time.monotonic()
    assert client.post("/api/v1/create_model", body).status_code == 500
    assert time.monotonic() - started >= 0.1
    assert f"{session_id}:train:0" not in fake.run_ids


def test_drop_closes_the_connection_without_processing(fake, client):
    run_id = fake.add_run()
    fake.add_fault("POST", "load_weights", drop=True, times=1)
    session_id = client.session()
    with pytest.raises(requests.ConnectionError):
        client.load(session_id, 0, f"tinker://{run_id}/weights/step-000010", optimizer=False)
    assert f"{session_id}:train:0" not in fake.run_ids
    dropped = fake.requests[-1]
    assert (dropped.status, dropped.fault, dropped.run_id) == (None, "drop", run_id)
    assert fake.load_weights_count(run_id) == 0
    assert (
        client.load(session_id, 0, f"tinker://{run_id}/weights/step-000010", optimizer=False).status_code
        == 200
    )
    assert fake.load_weights_count(run_id) == 1


def test_malformed_answers_truncated_json_without_processing(fake, client):
    fake.add_fault(None, "create_session", malformed=True, times=1)
    response = client.post("/api/v1/create_session")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert fake.requests[-1].fault == "malformed"
    fake.add_fault("POST", "create_session", malformed=True, status=502, times=1)
    assert client.post("/api/v1/create_session").status_code == 502


def test_probability_faults_are_seeded_and_method_filtered():
    def pattern(seed: int) -> list[int]:
        with FakeTinker(seed=seed) as fake:
            client = Client(fake)
            fake.add_fault("GET", "healthz", status=503, probability=0.5)
            statuses = [client.get("/api/v1/healthz").status_code for _ in range(40)]
            assert client.post("/api/v1/client/dynamic_config").status_code == 200  # POST not matched
            client.close()
            return statuses

    first = pattern(seed=7)
    assert 5 < first.count(503) < 35 and set(first) == {200, 503}
    assert pattern(seed=7) == first


def test_faults_can_be_removed_and_cleared_and_admin_is_exempt(fake, client):
    rule = fake.add_fault(None, ".*", status=500)
    assert client.get("/api/v1/healthz").status_code == 500
    assert client.get("/_fake/requests").status_code == 200
    assert fake.remove_fault(rule) is True
    assert client.get("/api/v1/healthz").status_code == 200
    fake.add_fault("GET", "healthz", status=404)
    fake.add_fault("GET", "healthz", status=503)
    assert client.get("/api/v1/healthz").status_code == 404  # first matching rule wins
    fake.clear_faults()
    assert client.get("/api/v1/healthz").status_code == 200 and fake.faults == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "x", "status": 200},
        {"path": "x", "drop": True, "status": 500},
        {"path": "x"},
        {"path": "(", "status": 500},
        {"path": "x", "status": 500, "times": 0},
        {"path": "x", "status": 500, "probability": 1.5},
        {"path": "x", "drop": True, "retry_after_s": 1.0},
        {"method": "FETCH", "path": "x", "status": 500},
        {"path": "x", "latency_s": 3600.5},
        {"path": "x", "latency_s": float("inf")},
        {"path": "x", "status": 429, "retry_after_s": 86_401},
        {"path": "x", "status": 500, "times": 1.5},
        {"path": "x", "status": 500, "probability": True},
        {"path": "x", "drop": "yes"},
    ],
)
def test_bad_fault_rules_are_refused(fake, kwargs):
    with pytest.raises((ValueError, TypeError)):
        fake.add_fault(**kwargs)


def test_load_weights_count_counts_only_loads_carried_out(fake, client):
    run_id = fake.add_run(checkpoints=1)
    path = f"tinker://{run_id}/weights/step-000010"
    session_id = client.session()
    fake.add_fault("POST", "load_weights", status=503, times=1)
    assert client.load(session_id, 0, path, optimizer=True).status_code == 503
    assert client.load(session_id, 0, f"tinker://{run_id}/weights/missing", optimizer=True).status_code == 404
    assert client.load(session_id, 0, path, optimizer=True).status_code == 200
    assert client.load(session_id, 0, path, optimizer=True).status_code == 200  # a retry: same future
    assert fake.load_weights_count(run_id) == 1
    loads = [r for r in fake.requests if r.path == "/api/v1/load_weights"]
    assert [(r.status, r.run_id) for r in loads] == [
        (503, run_id),
        (404, run_id),
        (200, run_id),
        (200, run_id),
    ]
    assert all(isinstance(r, ServedRequest) for r in loads)
    fake.clear_requests()
    assert fake.requests == []


# --- admin endpoints ----------------------------------------------------------------------------


def test_admin_endpoints_mirror_the_python_control_surface(fake, client):
    created = client.post("/_fake/runs", {"checkpoints": 2, "base_model": "Qwen/Qwen3-30B"})
    assert created.status_code == 201
    run_id = created.json()["run_id"]
    assert created.json()["run"]["last_checkpoint"]["checkpoint_id"] == "weights/step-000020"
    assert client.get(f"/_fake/runs/{run_id}").json() == fake.describe_run(run_id)
    assert fake.describe_run(run_id).items() >= fake.get_run(run_id).items()
    corrupted = client.post(f"/_fake/runs/{run_id}/corrupt", {"corrupted": True}).json()
    assert corrupted["corrupted"] is True and fake.get_run(run_id)["corrupted"] is True
    assert client.delete(f"/_fake/runs/{run_id}/checkpoints/weights/step-000020").status_code == 200
    assert [c["checkpoint_id"] for c in fake.list_checkpoints(run_id)] == ["weights/step-000010"]

    rule = client.post(
        "/_fake/faults", {"method": "GET", "path": "healthz", "status": 503, "times": 2}
    ).json()
    assert (rule["status"], rule["remaining"]) == (503, 2)
    assert client.get("/api/v1/healthz").status_code == 503
    assert client.get("/_fake/faults").json()["faults"][0]["remaining"] == 1
    assert client.delete(f"/_fake/faults/{rule['id']}").status_code == 200
    assert client.delete(f"/_fake/faults/{rule['id']}").status_code == 404
    client.post("/_fake/faults", {"path": "x", "status": 500})
    assert client.delete("/_fake/faults").status_code == 200 and fake.faults == []

    session_id = client.session()
    client.load(session_id, 0, f"tinker://{run_id}/weights/step-000010", optimizer=False)
    assert client.get(f"/_fake/runs/{run_id}/load_weights_count").json() == {"run_id": run_id, "count": 1}
    log = client.get("/_fake/requests").json()
    assert [r["path"] for r in log["requests"]][-2:] == ["/api/v1/create_session", "/api/v1/load_weights"]
    assert log["requests"][-1]["run_id"] == run_id and all(
        not r["path"].startswith("/_fake") for r in log["requests"]
    )
    assert client.get("/_fake/requests", params={"since": log["next"]}).json()["requests"] == []
    assert client.delete("/_fake/requests").status_code == 200 and fake.requests == []


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "/_fake/runs", {"checkpoints": -1}, 400),
        ("POST", "/_fake/runs", {"bogus": 1}, 400),
        ("GET", "/_fake/runs/nope", None, 404),
        ("POST", "/_fake/runs/nope/corrupt", {}, 404),
        ("POST", "/_fake/faults", {"path": "x", "status": 200}, 400),
        ("POST", "/_fake/faults", {"status": 500}, 400),
        ("GET", "/_fake/nothing", None, 404),
    ],
)
def test_admin_errors(client, method, path, body, status):
    response = client.http.request(method, client.base + path, json=body, headers=client.headers, timeout=5)
    assert response.status_code == status and response.json()["detail"]


# --- the protobuf codec and the model -----------------------------------------------------------


def test_protobuf_requests_decode_dense_sparse_and_both_config_maps():
    np = pytest.importorskip("numpy")
    pb = pytest.importorskip("tinker.proto.tinker_public_pb2")
    from tinker_recovery.testing._protobuf import decode_forward_backward_request

    message = pb.ForwardBackwardRequest(
        model_id="s:train:0", seq_id=-3, loss_fn="cross_entropy", forward_only=True
    )
    datum = message.data.add()
    datum.model_input.add().encoded_text.tokens = np.asarray([1, 2, 70000], dtype=np.int32).tobytes()
    datum.model_input.add().encoded_text.tokens = np.asarray([9], dtype=np.int32).tobytes()
    targets = datum.loss_fn_inputs["target_tokens"]
    targets.dense, targets.dtype = np.asarray([2, 3, 4, 5], dtype=np.int64).tobytes(), pb.DTYPE_INT64
    targets.shape.extend([4])
    weights = datum.loss_fn_inputs["weights"]
    weights.sparse_csr.values = np.asarray([0.5, 2.0], dtype=np.float32).tobytes()
    weights.sparse_csr.crow_indices = np.asarray([0, 2], dtype=np.int64).tobytes()
    weights.sparse_csr.col_indices = np.asarray([1, 3], dtype=np.int64).tobytes()
    weights.dtype = pb.DTYPE_FLOAT32
    weights.shape.extend([4])
    message.loss_fn_config["clip"] = 0.25
    message.loss_fn_config_v2["mode"].text = "x"

    decoded = decode_forward_backward_request(message.SerializeToString())
    assert (decoded.model_id, decoded.seq_id, decoded.loss_fn, decoded.forward_only) == (
        "s:train:0",
        -3,
        "cross_entropy",
        True,
    )
    assert decoded.data[0].tokens == (1, 2, 70000, 9)
    assert decoded.data[0].loss_fn_inputs["target_tokens"] == Tensor((2, 3, 4, 5), "int64", (4,))
    assert decoded.data[0].loss_fn_inputs["weights"].values == (0.0, 0.5, 0.0, 2.0)
    assert decoded.loss_fn_config == {"clip": 0.25, "mode": "x"}


def test_protobuf_outputs_read_back_with_the_sdk_converter():
    pytest.importorskip("tinker.proto.response_conv")
    from tinker_recovery.testing._protobuf import encode_forward_backward_output

    body = encode_forward_backward_output(
        [{"logprobs": Tensor((-0.5, -1.0), "float32", (2,))}, {"logprobs": Tensor((-2.0,), "float32", (1,))}],
        {"loss:sum": 3.5},
    )
    output = Output(body)
    assert output.metrics == {"loss:sum": 3.5}
    assert output.loss_fn_outputs == [{"logprobs": (-0.5, -1.0)}, {"logprobs": (-2.0,)}]


def test_protobuf_decoding_refuses_truncated_input_and_other_chunks():
    pb = pytest.importorskip("tinker.proto.tinker_public_pb2")
    from tinker_recovery.testing._protobuf import (
        ProtoError,
        decode_forward_backward_request,
    )

    whole = encode_forward_backward("m", 1, [DATUM])
    with pytest.raises(ProtoError):
        decode_forward_backward_request(whole[:-3])
    image = pb.ForwardBackwardRequest(model_id="m", seq_id=1, loss_fn="cross_entropy")
    image.data.add().model_input.add().image.data = b"png"
    with pytest.raises(ProtoError, match="'image' are not supported"):
        decode_forward_backward_request(image.SerializeToString())


def test_model_gradients_match_finite_differences_and_adam_is_deterministic():
    snapshot = initial_snapshot(3)
    model = BigramModel(snapshot)
    loss, _ = model.forward_backward([DATUM], "cross_entropy")
    target_index = bucket(1) * VOCAB + bucket(2)
    other_index = bucket(1) * VOCAB + (bucket(2) + 1) % VOCAB
    for index in (target_index, other_index):
        nudged = BigramModel(snapshot)
        nudged._weights[index] += 1e-6
        nudged_loss, _ = nudged.forward_backward([DATUM], "cross_entropy", forward_only=True)
        assert model._grad[index] == pytest.approx((nudged_loss - loss) / 1e-6, rel=1e-4)
    params = AdamParams(learning_rate=0.1, grad_clip_norm=0.5, weight_decay=0.01)
    model.optim_step(params)
    twin = BigramModel(snapshot)
    twin.forward_backward([DATUM], "cross_entropy")
    twin.optim_step(params)
    assert model.snapshot().weights == twin.snapshot().weights and model.step == twin.step == 1


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_module_entry_point_prints_url_and_key_and_exits_cleanly(sig):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_recovery.testing.fake_server", "--port", "0", "--runs", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    try:
        banner = [lines.get(timeout=20) for _ in range(3)]
        url = banner[1].strip().removeprefix("TINKER_BASE_URL=")
        key = banner[2].strip().removeprefix("TINKER_API_KEY=")
        assert url.startswith("http://127.0.0.1:") and key.startswith("tml-fake-") and url in banner[0]
        seeded = [lines.get(timeout=20).strip().removeprefix("seeded run ") for _ in range(2)]
        runs = requests.get(url + "/api/v1/training_runs", headers={"X-API-Key": key}, timeout=5).json()
        assert runs["cursor"]["total_count"] == 2
        assert sorted(run["training_run_id"] for run in runs["training_runs"]) == sorted(seeded)
        process.send_signal(sig)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
    stderr = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert "Traceback" not in stderr


def test_serving_json_clients_imports_neither_tinker_nor_protobuf():
    code = (
        "import sys\n"
        "from tinker_recovery.testing import FakeTinker\n"
        "with FakeTinker() as fake:\n"
        "    run_id = fake.add_run(checkpoints=2)\n"
        "    fake.get_run(run_id)\n"
        "loaded = sorted(m for m in sys.modules if m == 'tinker' or m.startswith(('tinker.', 'google')))\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
