"""FakeTinker tells what happened: which checkpoint each load read, with or without optimizer,
where a run came from, user metadata, and a clock that tests (and other processes) can move."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tinker_recovery import ManualClock
from tinker_recovery.testing import FakeTinker

REPO = Path(__file__).resolve().parents[1]
tinker = pytest.importorskip("tinker")


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


@pytest.fixture
def fake(sdk_env):
    with FakeTinker() as server:
        yield server


@pytest.fixture
def service(fake):
    with tinker.ServiceClient(base_url=fake.base_url, api_key=fake.api_key) as client:
        yield client


def _admin(fake: FakeTinker, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(
        method, fake.base_url + path, json=body, headers={"X-API-Key": fake.api_key}, timeout=10
    )


def test_loads_record_the_checkpoint_and_optimizer_flag_and_runs_show_their_source(fake, service):
    run_id = fake.add_run(checkpoints=2)
    older, newer = (f"tinker://{run_id}/weights/step-0000{n}0" for n in (1, 2))
    with_optimizer = service.create_training_client_from_state_with_optimizer(older).result()
    weights_only = service.create_training_client_from_state(newer).result()

    loads = fake.loads(run_id)
    assert [(load.checkpoint, load.optimizer, load.run_id) for load in loads] == [
        (older, True, with_optimizer.model_id),
        (newer, False, weights_only.model_id),
    ]
    assert all(load.source_run_id == run_id for load in loads) and fake.loads("other:train:0") == []
    assert fake.source_checkpoint(with_optimizer.model_id) == older
    assert fake.source_checkpoint(weights_only.model_id) == newer
    assert fake.source_checkpoint(run_id) is None
    described = fake.describe_run(weights_only.model_id)
    assert (described["source_checkpoint"], described["source_optimizer"]) == (newer, False)
    assert fake.describe_run(run_id)["load_weights_count"] == 2 == fake.load_weights_count(run_id)

    logged = [
        (r.checkpoint, r.optimizer, r.run_id) for r in fake.requests if r.path == "/api/v1/load_weights"
    ]
    assert logged == [(older, True, run_id), (newer, False, run_id)]
    assert all(
        r.checkpoint is None and r.optimizer is None
        for r in fake.requests
        if r.path != "/api/v1/load_weights"
    )

    over_http = _admin(fake, "GET", f"/_fake/loads?run_id={run_id}").json()["loads"]
    assert [(e["checkpoint"], e["optimizer"], e["run_id"]) for e in over_http] == [
        (older, True, with_optimizer.model_id),
        (newer, False, weights_only.model_id),
    ]
    assert _admin(fake, "GET", f"/_fake/runs/{with_optimizer.model_id}").json()["source_checkpoint"] == older
    requests_log = _admin(fake, "GET", "/_fake/requests").json()["requests"]
    assert [
        (e["checkpoint"], e["optimizer"]) for e in requests_log if e["path"] == "/api/v1/load_weights"
    ] == [
        (older, True),
        (newer, False),
    ]
    with pytest.raises(KeyError):
        fake.source_checkpoint("no:train:0")


def test_a_failed_or_faulted_load_is_logged_with_its_path_but_not_counted(fake, service):
    run_id = fake.add_run(checkpoints=1)
    missing = f"tinker://{run_id}/weights/missing"
    with pytest.raises(tinker.NotFoundError):
        service.create_training_client_from_state(missing).result()
    entry = [r for r in fake.requests if r.path == "/api/v1/load_weights"][-1]
    assert (entry.status, entry.checkpoint, entry.optimizer) == (404, missing, False)
    assert fake.loads() == []


@pytest.mark.filterwarnings("ignore:DEPRECATED. TrainingClient.load_state:FutureWarning")
def test_load_state_into_an_existing_client_is_a_load_too(fake, service):
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    path = training.save_state("mine").result().path
    training.load_state_with_optimizer(path).result()
    assert [(load.checkpoint, load.optimizer, load.run_id) for load in fake.loads()] == [
        (path, True, training.model_id)
    ]
    assert fake.source_checkpoint(training.model_id) == path


def test_user_metadata_is_stored_on_create_and_load_and_listed(fake, service):
    training = service.create_lora_training_client(
        base_model="Qwen/Qwen3-8B", user_metadata={"recovery_id": "r-1", "lineage": "L"}
    ).result()
    path = training.save_state("c").result().path
    restored = service.create_training_client_from_state_with_optimizer(
        path, user_metadata={"recovery_id": "r-2"}
    ).result()
    seeded = fake.add_run(user_metadata={"team": "x"})

    assert fake.get_run(training.model_id)["user_metadata"] == {"recovery_id": "r-1", "lineage": "L"}
    rest = tinker.RestClient(base_url=fake.base_url, api_key=fake.api_key)
    assert rest.get_training_run(restored.model_id).result().user_metadata == {"recovery_id": "r-2"}
    listed = {r.training_run_id: r.user_metadata for r in rest.list_training_runs().result().training_runs}
    assert listed == {
        training.model_id: {"recovery_id": "r-1", "lineage": "L"},
        restored.model_id: {"recovery_id": "r-2"},
        seeded: {"team": "x"},
    }
    created = _admin(fake, "POST", "/_fake/runs", {"user_metadata": {"a": "b"}}).json()
    assert created["run"]["user_metadata"] == {"a": "b"}


def test_an_injected_manual_clock_drives_timestamps_expiry_and_advance():
    clock = ManualClock(wall_start=datetime(2026, 3, 1, tzinfo=UTC))
    with FakeTinker(clock=clock) as fake:
        run_id = fake.add_run(checkpoints=2, ttl_seconds=3600)
        [first, _] = fake.list_checkpoints(run_id)
        assert (first["time"], first["expires_at"]) == ("2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z")
        clock.advance(3599)
        assert len(fake.list_checkpoints(run_id)) == 2
        assert fake.advance_clock(1.0) == 1.0
        assert fake.list_checkpoints(run_id) == [] and fake.get_run(run_id)["last_checkpoint"] is None
        assert fake.clock_json() == {"now": "2026-03-01T01:00:00Z", "offset_s": 1.0}
        assert fake.now() == datetime(2026, 3, 1, 1, tzinfo=UTC).timestamp()
        for bad in (-1, float("inf"), float("nan"), "10", True):
            with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
                fake.advance_clock(bad)


def test_the_admin_clock_endpoint_rejects_bad_bodies(fake):
    for body in ({}, {"seconds": -5}, {"seconds": "x"}, {"seconds": 1, "extra": 2}):
        response = _admin(fake, "POST", "/_fake/clock/advance", body)
        assert response.status_code == 400 and "seconds" in response.json()["detail"]
    assert _admin(fake, "GET", "/_fake/clock").json()["offset_s"] == 0.0


def test_a_fake_server_process_can_have_its_clock_moved_so_checkpoints_expire():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_recovery.testing.fake_server", "--port", "0"],
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
        headers = {"X-API-Key": banner[2].strip().removeprefix("TINKER_API_KEY=")}
        created = requests.post(
            url + "/_fake/runs", json={"checkpoints": 2, "ttl_seconds": 7200}, headers=headers, timeout=5
        )
        run_id = created.json()["run_id"]
        checkpoints = url + f"/api/v1/training_runs/{run_id}/checkpoints"
        assert len(requests.get(checkpoints, headers=headers, timeout=5).json()["checkpoints"]) == 2
        moved = requests.post(
            url + "/_fake/clock/advance", json={"seconds": 7200}, headers=headers, timeout=5
        )
        assert moved.status_code == 200 and moved.json()["offset_s"] == 7200.0
        assert requests.get(checkpoints, headers=headers, timeout=5).json()["checkpoints"] == []
        run = requests.get(url + f"/api/v1/training_runs/{run_id}", headers=headers, timeout=5).json()
        assert run["last_checkpoint"] is None
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        process.stdout.close()
        process.stderr.close()
