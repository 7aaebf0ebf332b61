"""Recovery.sampling_client: an RL loop samples from the restored weights (official SDK on FakeTinker)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from test_fake_sampling import _sample, _train, fake, sdk_env, service  # noqa: F401 - fixtures

import tinker_recovery as tr

tinker = pytest.importorskip("tinker")


def test_the_recovered_client_gives_a_sampling_client_of_the_checkpoint_weights(fake, service):  # noqa: F811
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 2)
    path = training.save_state("step-000002").result().path
    expected = _sample(training.save_weights_and_get_sampling_client().result(), n=2, max_tokens=4, seed=3)
    _train(training, 2)  # steps after the checkpoint: lost to the corruption
    fake.corrupt(training.model_id)

    config = tr.Config(api_key=fake.api_key, base_url=fake.base_url)
    with tr.Executor(config=config) as executor:
        recovery = executor.recover(training.model_id, service, tr.Policy(enabled=True), last_checkpoint=path)
        recovery = recovery.result(60)
    sampler = recovery.sampling_client()
    again = _sample(sampler, n=2, max_tokens=4, seed=3)
    assert [s.tokens for s in again.sequences] == [s.tokens for s in expected.sequences]
    assert recovery.step == 2


def test_sampling_from_the_checkpoint_needs_a_sampler_path():
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    checkpoint = tr.Checkpoint.from_path("tinker://run-1:train:0/weights/step-000010", time=when)
    recovery = tr.Recovery("run-1:train:0", None, checkpoint, client=object(), old_client=None, attempts=1)
    with pytest.raises(ValueError, match="no sampler_path"):
        recovery.sampling_client(from_checkpoint=True)
    with pytest.raises(TypeError, match="save_weights_and_get_sampling_client"):
        recovery.sampling_client()
