"""What a new user meets in the first ten minutes (issue 15) and no other file covers.

The endpoint is given once: a ``Monitor(config=...)`` whose host differs from the host the service
talks to is refused, also when that service is a ``tinker.ServiceClient()`` built from the
environment (its ``_base_url`` is None and the SDK reads ``TINKER_BASE_URL`` itself). The README's
signal table documents the payload fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeService

import tinker_recovery as tr

KEY = "tml-" + "t" * 40


class EnvService(FakeService):
    """Like ``tinker.ServiceClient()`` without arguments: no URL or key of its own."""

    _base_url = None
    _api_key = None


@pytest.fixture
def sdk_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    url = "http://127.0.0.1:9"  # nothing listens there; nothing is polled before the refusal
    monkeypatch.setenv("TINKER_BASE_URL", url)
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    return url


def test_without_config_the_monitor_polls_the_host_the_sdk_reads_from_the_environment(monkeypatch):
    from tinker_recovery.testing import FakeTinker

    with FakeTinker() as fake:
        monkeypatch.setenv("TINKER_BASE_URL", fake.base_url)
        monkeypatch.setenv("TINKER_API_KEY", fake.api_key)
        run_id = fake.add_run()
        monitor = tr.Monitor(None, tr.Policy(enabled=True), detect_only=True)
        try:
            handle = monitor.monitor_run(run_id, EnvService())
            assert handle.check() is False  # one GET, to the host the environment names
        finally:
            monitor.stop(timeout=5)
        assert any(r.method == "GET" and r.path == f"/api/v1/training_runs/{run_id}" for r in fake.requests)


def test_a_config_whose_host_differs_from_an_environment_built_service_is_refused(sdk_endpoint):
    config = tr.Config(api_key=KEY, base_url="http://127.0.0.1:10")
    monitor = tr.Monitor(None, tr.Policy(enabled=True), config, detect_only=True)
    try:
        differs = r"'127\.0\.0\.1:10' differs from the service's host '127\.0\.0\.1:9'"
        with pytest.raises(ValueError, match=differs):
            monitor.monitor_run("run-1", EnvService())
    finally:
        monitor.stop(timeout=5)


def test_the_readme_signal_table_documents_the_payload_fields():
    """Issue 15.7: ``time``, ``duration_s``, ``new_run_id``, the lineage id and ``reason_class``,
    documented in the README's signal table (and the common fields in the paragraph above it)."""
    from tinker_recovery import events, signals

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n### Signals\n", 1)[1].split("\n### ", 1)[0]
    intro, table = section.split("\n| signal |", 1)
    for field in ("run_id", "attempt", "strategy", "metadata", "time", "lineage_id", "recovery_id"):
        assert f"`{field}`" in intro, field
    rows = {
        row.split("|")[1].strip(" `"): row.split("|")[3]
        for row in table.splitlines()
        if row.startswith("| `")
    }
    assert set(rows) == {signal.name.rsplit(".", 1)[1] for signal in signals.ALL}
    expected = {
        "client_created": ["new_run_id"],
        "completed": ["new_run_id", "duration_s"],
        "failed": ["reason_class", "duration_s"],
        "exhausted": ["reason_class", "duration_s"],
        "poll_error": ["reason_class"],
    }
    for event, fields in expected.items():
        assert all(f"`{field}`" in rows[event] for field in fields), (event, rows[event])
    assert "tinker_recovery.events.REASON_CLASSES" in section and len(events.REASON_CLASSES) < 20


def test_forgetting_start_on_both_the_monitor_and_the_executor_still_recovers(monkeypatch):
    from tinker_recovery.testing import FakeTinker, LoopbackService

    for name in ("TINKER_API_KEY", "TINKER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with FakeTinker() as fake:
        run_id = fake.add_run()
        executor = tr.Executor()
        monitor = tr.Monitor(executor, tr.Policy(enabled=True, poll_interval_ms=100))
        try:
            handle = monitor.monitor_run(run_id, LoopbackService(fake.base_url, fake.api_key))
            fake.corrupt(run_id)
            assert handle.wait_for_recovery(timeout=5).run_id == run_id
        finally:
            monitor.stop(timeout=5)
            executor.shutdown(timeout=5)
