"""Exactly one restored run per corruption: kill -9 of a real child process at random points of a
recovery (the child resumes with the recovery id a journal would have kept), and faults on the reads
after the load, with the official SDK against FakeTinker."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

import tinker_recovery as tr
from tinker_recovery.candidates import LINEAGE_KEY, RECOVERY_KEY
from tinker_recovery.testing import FakeTinker

tinker = pytest.importorskip("tinker")

CHILD = Path(__file__).with_name("_kill_child.py")
KILLS = 6


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKER_CREDENTIAL_CMD", "TINKER_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(sdk_env):
    with FakeTinker(seed=1) as server:
        yield server


def restored_from(fake: FakeTinker, run_id: str) -> list[str]:
    return [
        r for r in fake.run_ids if (fake.get_run(r).get("user_metadata") or {}).get(LINEAGE_KEY) == run_id
    ]


@pytest.mark.timeout(300)
def test_kill_9_at_random_points_never_makes_a_second_restored_run(fake, tmp_path):
    rng = random.Random(20261204)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # a child's whole recovery, measured here (a fixed 2.6 s, three times a recovery today, let most
    # children finish before their kill): each kill lands anywhere in it
    run_id = fake.add_run(checkpoints=2)
    fake.corrupt(run_id)
    args = [sys.executable, str(CHILD), fake.base_url, fake.api_key, run_id, str(tmp_path / "id-measure")]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    began = time.monotonic()
    assert child.wait(90) == 0
    recovery_s = time.monotonic() - began
    child.stdout.close()
    per_corruption, killed = [], 0
    for trial in range(KILLS):
        run_id = fake.add_run(checkpoints=2)
        fake.corrupt(run_id)
        args = [
            sys.executable,
            str(CHILD),
            fake.base_url,
            fake.api_key,
            run_id,
            str(tmp_path / f"id-{trial}"),
        ]
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            try:
                child.wait(timeout=rng.uniform(0, recovery_s))  # the kill point; not a wait for a thread
            except subprocess.TimeoutExpired:
                child.kill()
                killed += 1
        finally:
            child.kill()
            child.wait(10)
        again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=90)
        assert again.returncode == 0, again.stderr[-2000:]
        created = restored_from(fake, run_id)
        assert again.stdout.strip().endswith("attempts=1") and f"done {created[0]}" in again.stdout
        per_corruption.append(len(created))
    assert per_corruption == [1] * KILLS
    assert killed >= 1, (killed, recovery_s)  # kills did land mid-recovery


@pytest.mark.timeout(120)
@pytest.mark.parametrize("read", ["retrieve_future", "get_info"])
def test_a_failed_read_after_the_load_adopts_the_run_instead_of_loading_again(fake, recorder, read):
    run_id = fake.add_run(checkpoints=2, user_metadata={"renderer_name": "llama3"})
    fake.corrupt(run_id)
    # the load succeeds on the server; the read after it gets a body the SDK cannot parse, so the
    # attempt fails after the restored run was created
    fake.add_fault("POST", read, malformed=True, times=1)
    config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
    pol = tr.Policy(enabled=True, jitter="none", backoff_ms=10, max_backoff_ms=10, attempt_timeout_ms=30_000)
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as service:
        with tr.Executor(1, config=config) as ex:
            recovery = ex.recover(run_id, service, pol).result(60)
        created = restored_from(fake, run_id)
        assert created == [recovery.new_run_id]  # one restored run, adopted by the retry
        assert recovery.attempts == 2 and fake.load_weights_count(run_id) == 1
        metadata = fake.get_run(recovery.new_run_id)["user_metadata"]
        assert metadata["renderer_name"] == "llama3" and metadata[RECOVERY_KEY] == recovery.recovery_id
        assert recovery.checkpoint.tinker_path.endswith("/weights/step-000020") and recovery.step == 20
        datum = tinker.types.Datum(
            model_input=tinker.types.ModelInput.from_ints([1, 2, 3]),
            loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]},
        )
        assert recovery.client.forward_backward([datum], "cross_entropy").result(30) is not None  # it trains
    assert recorder.count("failed") == 1 and recorder.count("completed") == 1


@pytest.mark.timeout(120)
def test_a_policy_restore_forwarding_user_metadata_is_adopted_after_a_failed_read(fake, recorder):
    # 12.5 through Policy.restore: the load succeeds on the server, the read after it fails; the
    # retry adopts the run the first attempt created (found by the recovery id in the user_metadata
    # the callable forwarded), and the restored run keeps the original's metadata (12.2).
    run_id = fake.add_run(checkpoints=2, user_metadata={"renderer_name": "llama3"})
    fake.corrupt(run_id)
    fake.add_fault("POST", "get_info", malformed=True, times=1)
    calls = []

    def restore(service, checkpoint, run, *, user_metadata):
        calls.append(checkpoint.tinker_path)
        return service.create_training_client_from_state_with_optimizer(
            checkpoint.tinker_path, user_metadata=user_metadata
        )

    config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
    pol = tr.Policy(enabled=True, jitter="none", backoff_ms=10, max_backoff_ms=10, restore=restore)
    with (
        tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as service,
        tr.Executor(1, config=config) as ex,
    ):
        recovery = ex.recover(run_id, service, pol).result(60)
    assert restored_from(fake, run_id) == [recovery.new_run_id] and len(calls) == 1
    assert recovery.attempts == 2 and fake.load_weights_count(run_id) == 1
    metadata = fake.get_run(recovery.new_run_id)["user_metadata"]
    assert metadata["renderer_name"] == "llama3" and metadata[RECOVERY_KEY] == recovery.recovery_id


@pytest.mark.timeout(120)
def test_a_refused_plain_restore_is_done_the_users_way_with_a_lora_client_and_load_state(fake, recorder):
    # 12.2: the server refuses the plain restore with a deterministic 400 (a LoRA setting the
    # checkpoint does not carry); Policy.restore builds a LoRA client with the right settings and
    # loads the checkpoint into it, keeping the run's user_metadata.
    import warnings

    run_id = fake.add_run(checkpoints=2, user_metadata={"renderer_name": "llama3"})
    fake.corrupt(run_id)

    class Refusing:
        """The official SDK's service, whose plain restore the server refuses."""

        def __init__(self, sdk):
            self.sdk = sdk

        def create_training_client_from_state_with_optimizer(self, path, user_metadata=None):
            raise tr.BadRequest("HTTP 400: train_unembed is not in the checkpoint", status_code=400)

        create_training_client_from_state = create_training_client_from_state_with_optimizer

        def __getattr__(self, name):
            return getattr(self.sdk, name)

    def restore(service, checkpoint, run):
        client = service.create_lora_training_client(
            base_model=run.base_model,
            rank=8,
            train_unembed=False,
            user_metadata=dict(run.user_metadata or {}),
        ).result()
        client.load_state_with_optimizer(checkpoint.tinker_path).result()
        return client

    config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
    pol = tr.Policy(enabled=True, jitter="none", backoff_ms=10, max_backoff_ms=10)
    with (
        warnings.catch_warnings(),
        tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as sdk,
        tr.Executor(1, config=config) as ex,
    ):
        warnings.simplefilter("ignore", FutureWarning)  # the SDK deprecates load_state*
        with pytest.raises(tr.BadRequest):
            ex.recover(run_id, Refusing(sdk), pol).result(60)  # the plain way: given up at once
        recovery = ex.recover(run_id, Refusing(sdk), attrs.evolve(pol, restore=restore)).result(60)
    restored = fake.get_run(recovery.new_run_id)
    assert restored["lora_rank"] == 8 and restored["user_metadata"] == {"renderer_name": "llama3"}
    assert fake.source_checkpoint(recovery.new_run_id) == recovery.checkpoint.tinker_path
    assert recovery.step == 20 and recorder.count("completed") == 1


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # the SDK's async forms, used on purpose
def test_the_sdks_async_create_calls_are_awaited(fake):
    run_ids = {True: fake.add_run(checkpoints=1), False: fake.add_run(checkpoints=1)}  # one run per flag

    class AsyncOnly:
        """A service whose create calls are the SDK's ``async def`` ones."""

        def __init__(self, sdk):
            self.create_training_client_from_state_with_optimizer = (
                sdk.create_training_client_from_state_with_optimizer_async
            )
            self.create_training_client_from_state = sdk.create_training_client_from_state_async

    config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)
    with (
        tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as sdk,
        tr.Executor(1, config=config) as ex,
    ):
        for optimizer in (True, False):
            pol = tr.Policy(enabled=True, restore_optimizer=optimizer, attempt_timeout_ms=30_000)
            recovery = ex.recover(run_ids[optimizer], AsyncOnly(sdk), pol).result(60)
            assert isinstance(recovery.client, tinker.TrainingClient)
            assert recovery.new_run_id == recovery.client.model_id and recovery.new_run_id in fake.run_ids
    assert [fake.load_weights_count(run_id) for run_id in run_ids.values()] == [1, 1]
