"""Sampling clients of the official tinker SDK (0.38, unmodified) against FakeTinker's tiny model."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from tinker_recovery.testing import FakeTinker
from tinker_recovery.testing._model import VOCAB

tinker = pytest.importorskip("tinker")
types = tinker.types

ADAM = types.AdamParams(learning_rate=0.05)
PROMPT = [1, 2, 3, 4]


def _datum(tokens: list[int]) -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


DATA = [_datum([1, 2, 3, 4, 5, 6]), _datum([7, 8, 9, 10])]


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
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


def _fake_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tinker_recovery.fake_server")}


@pytest.fixture
def fake(sdk_env):
    before = _fake_threads()
    with FakeTinker(seed=5) as server:
        yield server
    assert _fake_threads() - before == set()


@pytest.fixture
def service(fake):
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as client:
        yield client


def _train(training_client, steps: int) -> None:
    for _ in range(steps):
        forward_backward = training_client.forward_backward(DATA, "cross_entropy")
        training_client.optim_step(ADAM).result()
        forward_backward.result()


def _sample(sampler, prompt=PROMPT, n=1, **params):
    return sampler.sample(types.ModelInput.from_ints(prompt), n, types.SamplingParams(**params)).result()


def test_sampled_logprobs_agree_with_compute_logprobs_and_the_training_forward_pass(service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).result()
    _train(training, 3)
    sampler = training.save_weights_and_get_sampling_client().result()

    response = _sample(sampler, n=2, max_tokens=6, seed=11)
    assert [s.stop_reason for s in response.sequences] == ["length", "length"]
    for sequence in response.sequences:
        assert len(sequence.tokens) == len(sequence.logprobs) == 6
        assert all(0 <= t < VOCAB for t in sequence.tokens)
        # each sampled token's logprob is the model's, as compute_logprobs scores the whole text
        scored = sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT + sequence.tokens)).result()
        assert scored[0] is None
        assert scored[len(PROMPT) :] == pytest.approx(sequence.logprobs, abs=1e-5)

    # compute_logprobs scores token i given token i - 1, exactly what forward_backward computes
    forward = training.forward([_datum(PROMPT)], "cross_entropy").result()
    by_training = forward.loss_fn_outputs[0]["logprobs"].tolist()
    assert sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result()[1:] == pytest.approx(
        by_training, abs=1e-5
    )


def test_sampling_is_deterministic_given_the_seed_and_a_sampler_is_a_snapshot(service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 2)
    sampler = training.save_weights_and_get_sampling_client().result()
    first = [s.tokens for s in _sample(sampler, n=3, max_tokens=8, seed=42).sequences]
    assert [s.tokens for s in _sample(sampler, n=3, max_tokens=8, seed=42).sequences] == first
    assert [s.tokens for s in _sample(sampler, n=3, max_tokens=8, seed=43).sequences] != first
    assert len(set(map(tuple, first))) > 1  # the three samples differ from each other

    before = sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result()
    _train(training, 3)
    assert sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result() == before
    fresh = training.save_weights_and_get_sampling_client().result()
    assert fresh.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result() != before


def test_greedy_sampling_follows_the_most_likely_token_and_stops_on_a_stop_token(service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 2)
    sampler = training.save_weights_and_get_sampling_client().result()
    greedy = _sample(sampler, max_tokens=5, temperature=0.0).sequences[0]
    assert _sample(sampler, max_tokens=5, temperature=0.0, seed=1).sequences[0].tokens == greedy.tokens
    stopped = _sample(sampler, max_tokens=5, temperature=0.0, stop=[greedy.tokens[1]]).sequences[0]
    assert (stopped.tokens, stopped.stop_reason) == (greedy.tokens[:2], "stop")
    last_two = sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT), prompt_logprobs_last_n=2).result()
    assert last_two[:2] == [None, None] and all(isinstance(v, float) for v in last_two[2:])


def test_sampling_clients_from_a_saved_path_a_training_checkpoint_and_a_base_model(fake, service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 2)
    sampler_path = training.save_weights_for_sampler("for-eval").result().path
    assert sampler_path == f"tinker://{training.model_id}/sampler_weights/for-eval"
    state_path = training.save_state("state").result().path
    live = training.save_weights_and_get_sampling_client().result()
    expected = live.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result()

    from_sampler_path = service.create_sampling_client(model_path=sampler_path).result()
    from_state_path = service.create_sampling_client(model_path=state_path).result()
    for sampler in (from_sampler_path, from_state_path):
        assert sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result() == expected
    assert fake.get_run(training.model_id)["last_sampler_checkpoint"]["tinker_path"] == sampler_path

    base = service.create_sampling_client(base_model="Qwen/Qwen3-8B").result()
    untrained = base.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result()
    assert untrained[1:] == pytest.approx([-math.log(VOCAB)] * 3, abs=0.2)  # near uniform
    assert untrained != expected


def test_a_restored_training_client_samples_what_the_checkpoint_held(fake, service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 2)
    path = training.save_state("before-corruption").result().path
    at_save = training.save_weights_and_get_sampling_client().result()
    expected = _sample(at_save, n=2, max_tokens=4, seed=7)
    _train(training, 2)
    fake.corrupt(training.model_id)

    restored = service.create_training_client_from_state_with_optimizer(path).result()
    sampler = restored.save_weights_and_get_sampling_client().result()
    again = _sample(sampler, n=2, max_tokens=4, seed=7)
    assert [s.tokens for s in again.sequences] == [s.tokens for s in expected.sequences]
    assert fake.source_checkpoint(restored.model_id) == path


def test_unsupported_or_bad_sampling_requests_fail_with_a_clear_400(fake, service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(PROMPT)
    with pytest.raises(tinker.BadRequestError, match="topk_prompt_logprobs is not supported"):
        sampler.sample(
            prompt,
            1,
            types.SamplingParams(max_tokens=1),
            include_prompt_logprobs=True,
            topk_prompt_logprobs=2,
        ).result()
    with pytest.raises(tinker.BadRequestError, match="no tokenizer"):
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, stop=["\n"])).result()
    assert [r.status for r in fake.requests if r.path == "/api/v1/asample"] == [400, 400]


def test_async_sampling_does_not_block_the_event_loop(service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()

    async def main() -> list[list[int]]:
        sampler = await training.save_weights_and_get_sampling_client()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        responses = await asyncio.gather(
            *(
                sampler.sample(
                    types.ModelInput.from_ints(PROMPT), 1, types.SamplingParams(max_tokens=3, seed=s)
                )
                for s in range(3)
            )
        )
        ticker.cancel()
        assert ticks > 0
        return [r.sequences[0].tokens for r in responses]

    tokens = asyncio.run(main())
    assert len(tokens) == 3 and all(len(t) == 3 for t in tokens)


def test_an_rl_step_on_sampled_tokens_has_importance_ratio_one(service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    _train(training, 1)
    sampler = training.save_weights_and_get_sampling_client().result()
    sequences = _sample(sampler, n=4, max_tokens=5, seed=3).sequences
    advantages = [1.0, -0.5, 0.25, 2.0]
    data = []
    for sequence, advantage in zip(sequences, advantages, strict=True):
        tokens = PROMPT + sequence.tokens
        n_prompt = len(PROMPT) - 1  # positions predicting prompt tokens carry no advantage
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "logprobs": [0.0] * n_prompt + list(sequence.logprobs),
                    "advantages": [0.0] * n_prompt + [advantage] * len(sequence.tokens),
                },
            )
        )
    output = training.forward_backward(data, "importance_sampling").result()
    # loss = -sum(advantage * exp(logprob - sampler_logprob)); the weights did not move, so ratio 1
    expected = -sum(a * len(s.tokens) for s, a in zip(sequences, advantages, strict=True))
    assert output.metrics["loss:sum"] == pytest.approx(expected, rel=1e-5)
    assert training.optim_step(ADAM).result().metrics["grad_norm:mean"] > 0


def _unseeded_samples(seed: int) -> list[list[int]]:
    with (
        FakeTinker(seed=seed) as server,
        tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key) as sc,
    ):
        training = sc.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
        sampler = training.save_weights_and_get_sampling_client().result()
        return [s.tokens for s in _sample(sampler, n=3, max_tokens=6).sequences]


def test_without_a_sampling_seed_the_fake_seed_decides(sdk_env):
    first = _unseeded_samples(seed=5)
    assert _unseeded_samples(seed=5) == first
    assert _unseeded_samples(seed=6) != first
