"""The official tinker SDK (0.38, unmodified) trains, saves and restores against FakeTinker."""

from __future__ import annotations

import threading

import pytest

from tinker_recovery.testing import FakeTinker

tinker = pytest.importorskip("tinker")
types = tinker.types

ADAM = types.AdamParams(learning_rate=0.05)


def _datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


DATA = [_datum([1, 2, 3, 4, 5, 6]), _datum([7, 8, 9, 10])]


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    """No telemetry, no stored credentials, no ambient Tinker settings."""
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in (
        "TINKER_API_KEY",
        "TINKER_BASE_URL",
        "TINKER_CREDENTIAL_CMD",
        "TINKER_PROJECT_ID",
        "TINKER_TAGS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(sdk_env):
    before = {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}
    with FakeTinker() as server:
        yield server
    after = {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}
    assert after - before == set()


@pytest.fixture
def service(fake):
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as client:
        yield client


def _train(training_client, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        forward_backward = training_client.forward_backward(DATA, "cross_entropy")
        optim_step = training_client.optim_step(ADAM)  # submitted before the first result is read
        output = forward_backward.result()
        assert len(output.loss_fn_outputs) == len(DATA)
        assert output.loss_fn_outputs[0]["logprobs"].shape == [5]
        losses.append(output.metrics["loss:sum"])
        assert optim_step.result().metrics["grad_norm:mean"] > 0
    return losses


def test_official_sdk_trains_saves_and_restores_with_and_without_optimizer(fake, service):
    training_client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).result()
    session_id = training_client.model_id.split(":train:")[0]
    assert training_client.model_id == f"{session_id}:train:0"
    assert training_client.get_info().lora_rank == 8

    losses = _train(training_client, 3)
    assert losses[2] < losses[1] < losses[0]
    path = training_client.save_state("ckpt-1").result().path
    assert path == f"tinker://{training_client.model_id}/weights/ckpt-1"
    uninterrupted = _train(training_client, 3)

    with_optimizer = service.create_training_client_from_state_with_optimizer(path).result()
    assert with_optimizer.model_id == f"{session_id}:train:1"
    assert _train(with_optimizer, 3) == uninterrupted  # exactly: weights and Adam state restored

    weights_only = service.create_training_client_from_state(path).result()
    assert weights_only.model_id == f"{session_id}:train:2"
    restarted = _train(weights_only, 3)
    assert restarted[0] == uninterrupted[0]  # the same weights ...
    assert restarted[1:] != uninterrupted[1:]  # ... but Adam starts again
    assert fake.load_weights_count(training_client.model_id) == 2


def test_official_rest_client_sees_runs_checkpoints_and_deletes(fake, service):
    training_client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=4).result()
    run_id = training_client.model_id
    _train(training_client, 1)
    first = training_client.save_state("first", ttl_seconds=3600).result().path
    second = training_client.save_state("second").result().path
    seeded = fake.add_run(checkpoints=2)

    rest = tinker.RestClient(base_url=fake.base_url, api_key=fake.api_key)
    run = rest.get_training_run(run_id).result()
    assert (run.training_run_id, run.base_model, run.is_lora, run.lora_rank, run.corrupted) == (
        run_id,
        "Qwen/Qwen3-8B",
        True,
        4,
        False,
    )
    assert run.last_checkpoint.tinker_path == second and run.last_checkpoint.checkpoint_type == "training"

    page = rest.list_training_runs(limit=1, offset=1).result()
    assert [r.training_run_id for r in page.training_runs] == [seeded]
    assert (page.cursor.offset, page.cursor.limit, page.cursor.total_count) == (1, 1, 2)

    checkpoints = rest.list_checkpoints(run_id).result().checkpoints
    assert [c.checkpoint_id for c in checkpoints] == ["weights/first", "weights/second"]
    assert checkpoints[0].expires_at is not None and checkpoints[1].expires_at is None
    assert (checkpoints[0].expires_at - checkpoints[0].time).total_seconds() == pytest.approx(3600, abs=1)

    info = rest.get_weights_info_by_tinker_path(first).result()
    assert (info.base_model, info.is_lora, info.lora_rank) == ("Qwen/Qwen3-8B", True, 4)

    rest.delete_checkpoint(run_id, "weights/second").result()
    assert rest.get_training_run(run_id).result().last_checkpoint.tinker_path == first
    rest.delete_checkpoint_from_tinker_path(first).result()
    assert rest.list_checkpoints(run_id).result().checkpoints == []
    with pytest.raises(tinker.NotFoundError):
        rest.delete_checkpoint(run_id, "weights/second").result()
    with pytest.raises(tinker.NotFoundError):
        rest.get_training_run("no-such-session:train:0").result()


def test_official_sdk_is_refused_on_a_corrupted_run_and_restores_from_its_checkpoint(fake, service):
    training_client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training_client, 1)
    fake.corrupt(training_client.model_id)

    with pytest.raises(tinker.RequestFailedError, match="corrupted") as failure:
        training_client.forward_backward(DATA, "cross_entropy").result()
    assert failure.value.category == tinker.types.RequestErrorCategory.User
    with pytest.raises(tinker.RequestFailedError, match="corrupted"):
        training_client.save_state("after").result()

    seeded = fake.add_run(checkpoints=2, corrupted=True)
    rest = tinker.RestClient(base_url=fake.base_url, api_key=fake.api_key)
    corrupted_run = rest.get_training_run(seeded).result()
    assert corrupted_run.corrupted is True
    restored = service.create_training_client_from_state_with_optimizer(
        corrupted_run.last_checkpoint.tinker_path
    ).result()
    assert len(_train(restored, 2)) == 2
    assert rest.get_training_run(restored.model_id).result().corrupted is False
    assert fake.load_weights_count(seeded) == 1


def test_official_sdk_retries_through_injected_faults(fake, service):
    training_client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    fake.add_fault("POST", r"^/api/v1/forward_backward$", status=503, times=1)
    fake.add_fault("POST", r"^/api/v1/retrieve_future$", status=500, times=2)
    rest = tinker.RestClient(base_url=fake.base_url, api_key=fake.api_key)
    fake.add_fault("GET", r"^/api/v1/training_runs/[^/]+$", status=429, retry_after_s=0.1, times=1)

    assert len(_train(training_client, 1)) == 1
    assert (
        rest.get_training_run(training_client.model_id).result().training_run_id == training_client.model_id
    )
    faulted = [(r.method, r.path, r.status) for r in fake.requests if r.fault is not None]
    assert ("POST", "/api/v1/forward_backward", 503) in faulted
    assert faulted.count(("POST", "/api/v1/retrieve_future", 500)) == 2
    assert ("GET", f"/api/v1/training_runs/{training_client.model_id}", 429) in faulted
    assert fake.faults == []


def test_corrupt_after_saves_corrupts_a_new_run_after_its_nth_save_and_never_a_restored_one(sdk_env):
    """``FakeTinker(corrupt_after_saves=2)``: a client's new run reads corrupted right after its second
    ``save_state`` (which itself succeeds) and refuses the next step; the run restored from that save,
    and a seeded run, keep working through their saves."""
    with FakeTinker(corrupt_after_saves=2) as fake, tinker.ServiceClient(
        base_url=fake.base_url, api_key=fake.api_key
    ) as service:
        seeded = fake.add_run()
        client = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).result()
        _train(client, 1)
        client.save_state("step-000001").result()
        assert fake.get_run(client.model_id)["corrupted"] is False
        path = client.save_state("step-000002").result().path
        assert fake.get_run(client.model_id)["corrupted"] is True
        with pytest.raises(tinker.RequestFailedError):
            _train(client, 1)

        restored = service.create_training_client_from_state_with_optimizer(path).result()
        for step in range(3):
            _train(restored, 1)
            restored.save_state(f"again-{step}").result()
        assert fake.get_run(restored.model_id)["corrupted"] is False
        assert fake.get_run(seeded)["corrupted"] is False


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"])
def test_corrupt_after_saves_refuses_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="corrupt_after_saves"):
        FakeTinker(corrupt_after_saves=bad)
