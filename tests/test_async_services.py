"""Issue 14.1 at the Monitor: a service whose create calls are ``async def`` (the official SDK's
``*_async`` methods) is recovered through ``monitor_run`` with a real client, the Monitor goes on
watching the restored run, and the loop awaits the recovery without blocking its event loop. A
create call whose awaitables never end in a client fails the recovery: a coroutine is never
reported as a client."""

from __future__ import annotations

import asyncio
import gc
import warnings
from datetime import UTC, datetime

import pytest

import tinker_recovery as tr
from tinker_recovery.restore import resolve
from tinker_recovery.testing import FakeTinker

tinker = pytest.importorskip("tinker")


@pytest.fixture
def sdk_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("TINKER_API_KEY", "TINKER_BASE_URL", "TINKER_CREDENTIAL_CMD", "TINKER_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


class AsyncOnly:
    """The SDK's ``async def`` create calls under the names the Executor calls."""

    def __init__(self, sdk: object) -> None:
        self.create_training_client_from_state_with_optimizer = (
            sdk.create_training_client_from_state_with_optimizer_async  # type: ignore[attr-defined]
        )
        self.create_training_client_from_state = sdk.create_training_client_from_state_async  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
def test_an_async_only_service_is_recovered_through_the_monitor_which_follows_the_new_run(sdk_env, recorder):
    """On main this "completed" with a coroutine as the client, ``new_run_id=None``, no load on the
    server, and the Monitor stopped watching (a silent false success)."""
    with (
        FakeTinker(seed=2) as fake,
        tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as sdk,
    ):
        training = sdk.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).result()
        path = training.save_state("000004").result().path  # a tinker-cookbook name: step 4
        policy = tr.Policy(enabled=True, poll_interval_ms=100, attempt_timeout_ms=60_000)
        config = tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=10)
        with (
            warnings.catch_warnings(record=True) as caught,
            tr.Executor(1) as executor,
            tr.Monitor(executor, policy, config, service=AsyncOnly(sdk)) as monitor,
        ):
            warnings.simplefilter("always")

            async def loop() -> tuple[tr.Recovery, int]:
                handle = monitor.monitor_run(training.model_id, monitor.service, training_client=training)
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1
                        if ticks == 1:  # corrupted only once the wait below has begun: a fast
                            fake.corrupt(training.model_id)  # recovery cannot end before a tick

                ticker = asyncio.create_task(tick())
                recovery = await handle.wait_for_recovery_async(timeout=60)
                ticker.cancel()
                assert handle.client is recovery.client and handle.run_id == recovery.new_run_id
                return recovery, ticks

            recovery, ticks = asyncio.run(loop())
            assert monitor.watched == [recovery.new_run_id]  # still watching: the restored run
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        assert (
            isinstance(recovery.client, tinker.TrainingClient)
            and recovery.new_run_id == recovery.client.model_id
        )
        assert recovery.step == 4 and recovery.checkpoint.tinker_path == path
        assert [(load.checkpoint, load.optimizer) for load in fake.loads(training.model_id)] == [(path, True)]
        assert fake.source_checkpoint(recovery.new_run_id) == path
        assert ticks > 0  # the event loop ran while the recovery was awaited
    assert (
        recorder.count("completed") == 1
        and recorder.payloads("completed")[0]["new_run_id"] == recovery.new_run_id
    )


def test_awaitables_that_never_give_a_client_are_refused_not_reported_as_one(recorder):
    async def endless() -> object:
        return endless()  # a coroutine whose result is another coroutine, for ever

    with pytest.raises(TypeError, match="not a client"):
        resolve(endless(), timeout_s=5)

    class Service:
        def create_training_client_from_state_with_optimizer(self, path: str) -> object:
            return endless()

        create_training_client_from_state = create_training_client_from_state_with_optimizer

    checkpoint = tr.Checkpoint.from_path("tinker://run-1/weights/000004", time=datetime.now(UTC))
    with warnings.catch_warnings(record=True) as caught, tr.Executor(1) as executor:
        warnings.simplefilter("always")
        future = executor.recover(
            "run-1",
            Service(),
            tr.Policy(enabled=True, max_attempts=1, jitter="none"),
            last_checkpoint=checkpoint,
        )
        error = future.exception(10)
        gc.collect()
    assert error is not None and recorder.count("completed") == 0 and recorder.count("exhausted") == 1
    assert (
        "not a client" in str(error) or isinstance(error.__cause__, TypeError) or "TypeError" in repr(error)
    )
    assert not [w for w in caught if "never awaited" in str(w.message)]
