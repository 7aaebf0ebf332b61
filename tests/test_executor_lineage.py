"""Second corruption: a restored run with no checkpoint of its own is restored from its lineage, over
real HTTP against FakeTinker, from the executor's memory or from the run's own user_metadata."""

from __future__ import annotations

import pytest

import tinker_recovery as tr
from tinker_recovery.candidates import SOURCE_KEY
from tinker_recovery.testing import FakeTinker, LoopbackService


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("HOME", str(tmp_path))
    with FakeTinker(seed=1) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


def policy(**overrides):
    return tr.Policy(
        **{
            "enabled": True,
            "jitter": "none",
            "backoff_ms": 10,
            "max_backoff_ms": 10,
            "attempt_timeout_ms": 30_000,
            **overrides,
        }
    )


def test_a_second_corruption_before_any_save_restores_from_the_parents_checkpoint(fake, config, recorder):
    first_run = fake.add_run(checkpoints=2)
    with (
        LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0) as service,
        tr.Executor(1, config=config) as ex,
    ):
        first = ex.recover(first_run, service, policy()).result(30)
        assert first.checkpoint.name == "step-000020" and fake.list_checkpoints(first.new_run_id) == []
        second = ex.recover(first.new_run_id, service, policy()).result(30)
    assert second.checkpoint.tinker_path == f"tinker://{first_run}/weights/step-000020"
    assert second.step == 20 and second.lineage_id == first_run
    assert fake.load_weights_count(first_run) == 2
    assert [p["checkpoint"].name for p in recorder.payloads("checkpoint_selected")] == ["step-000020"] * 2


def test_the_parents_older_checkpoint_when_the_source_is_gone_within_max_fallbacks(fake, config):
    first_run = fake.add_run(checkpoints=3)
    with (
        LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0) as service,
        tr.Executor(1, config=config) as ex,
    ):
        first = ex.recover(first_run, service, policy()).result(30)
        assert first.checkpoint.name == "step-000030"
        fake.delete_checkpoint(first_run, "weights/step-000030")
        second = ex.recover(first.new_run_id, service, policy(max_fallbacks=1)).result(30)
        assert second.checkpoint.name == "step-000020" and second.step == 20
        fake.delete_checkpoint(first_run, "weights/step-000020")  # the source of the third run
        third = ex.recover(second.new_run_id, service, policy(max_fallbacks=1)).result(30)
        assert third.checkpoint.name == "step-000010"  # a gone source is skipped, not counted
        fake.delete_checkpoint(first_run, "weights/step-000010")
        fourth = ex.recover(third.new_run_id, service, policy(max_fallbacks=1))
        with pytest.raises(tr.MissingCheckpoint, match="no loadable training checkpoint"):
            fourth.result(30)


def test_a_restarted_executor_follows_the_lineage_from_user_metadata(fake, config):
    tinker = pytest.importorskip("tinker")
    first_run = fake.add_run(checkpoints=1, user_metadata={"renderer_name": "qwen3"})
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as service:
        with tr.Executor(1, config=config) as ex:
            first = ex.recover(first_run, service, policy()).result(60)
        restored = fake.get_run(first.new_run_id)["user_metadata"]
        assert restored[SOURCE_KEY] == first.checkpoint.tinker_path and restored["renderer_name"] == "qwen3"
        with tr.Executor(1, config=config) as fresh:  # knows nothing of the first recovery
            second = fresh.recover(first.new_run_id, service, policy()).result(60)
    assert second.checkpoint.tinker_path == first.checkpoint.tinker_path
    assert fake.get_run(second.new_run_id)["user_metadata"]["renderer_name"] == "qwen3"


def test_recovery_gives_the_sampler_path_saved_with_the_checkpoint(fake, config):
    run_id = fake.add_run(checkpoints=2, sampler_checkpoints=2)
    plain = fake.add_run(checkpoints=1)
    with (
        LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0) as service,
        tr.Executor(1, config=config) as ex,
    ):
        recovery = ex.recover(run_id, service, policy()).result(30)
        assert recovery.sampler_path == f"tinker://{run_id}/sampler_weights/step-000020"
        assert ex.recover(plain, service, policy()).result(30).sampler_path is None
