"""tinker_recovery.otel end to end: a real Monitor and Executor recovering runs on FakeTinker over
loopback HTTP, and the metrics scraped through OpenTelemetry's Prometheus exporter over HTTP."""

from __future__ import annotations

import importlib
import os
import re
import urllib.request
from types import ModuleType

import pytest

pytest.importorskip("opentelemetry.sdk")

from test_otel import Telemetry, key

import tinker_recovery as tr
from tinker_recovery import otel
from tinker_recovery.testing import FakeTinker, LoopbackService


@pytest.fixture
def fake():
    with FakeTinker(seed=3) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


@pytest.fixture
def service(fake):
    svc = LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0)
    yield svc
    svc.close()


@pytest.fixture
def telemetry():
    tel = Telemetry()
    tel.instrument()
    yield tel
    otel.uninstrument()
    tel.close()


def policy(**overrides):
    return tr.Policy(
        **{
            "enabled": True,
            "jitter": "none",
            "poll_interval_ms": 100,
            "backoff_ms": 10,
            "max_backoff_ms": 100,
            **overrides,
        }
    )


LOAD = r"^/api/v1/load_weights$"


def recover(fake, config, service, run_id, *, wait_ok=True):
    """Watch ``run_id``, corrupt it and wait for the recovery to end; the Executor and Monitor are
    stopped on return, so every signal of the recovery has been sent (and recorded)."""
    with tr.Executor(1, config=config) as executor, tr.Monitor(executor, policy(), config) as monitor:
        handle = monitor.monitor_run(run_id, service, {"training_client": "old"})
        fake.corrupt(run_id)
        handle.poll_now()
        if wait_ok:
            return handle.wait_for_recovery(timeout=20)
        with pytest.raises(tr.TinkerRecoveryError):
            handle.wait_for_recovery(timeout=20)
        return None


def test_a_recovery_on_fake_tinker_is_counted_and_traced(fake, config, service, telemetry):
    run_id = fake.add_run(checkpoints=2)

    recovery = recover(fake, config, service, run_id)

    assert telemetry.counts() == {
        key(event=e): 1 for e in ("detected", "started", "checkpoint_selected", "client_created", "completed")
    }
    assert telemetry.in_flight() == 0
    [span] = telemetry.spans()
    assert span.attributes["tinker_recovery.run_id"] == run_id
    assert span.attributes["tinker_recovery.attempt"] == 1
    assert span.attributes["tinker_recovery.checkpoint.path"] == recovery.checkpoint.tinker_path
    assert span.attributes["tinker_recovery.outcome"] == "completed"
    assert span.end_time >= span.start_time


def test_a_failed_attempt_then_a_recovery_give_two_spans(fake, config, service, telemetry):
    run_id = fake.add_run(checkpoints=1)
    fake.add_fault("POST", LOAD, status=503, times=1)

    recover(fake, config, service, run_id)

    counts = telemetry.counts()
    assert counts[key(event="failed", reason_class="server_error")] == 1
    assert counts[key(event="started")] == 2 and counts[key(event="completed")] == 1
    assert telemetry.in_flight() == 0
    failed, done = telemetry.spans()
    assert failed.status.status_code.name == "ERROR" and "503" in failed.status.description
    assert failed.attributes["tinker_recovery.reason_class"] == "server_error"
    assert (failed.attributes["tinker_recovery.attempt"], done.attributes["tinker_recovery.attempt"]) == (
        1,
        2,
    )


def test_a_recovery_given_up_leaves_nothing_in_flight(fake, config, service, telemetry):
    run_id = fake.add_run(checkpoints=1)
    fake.add_fault("POST", LOAD, status=400)

    recover(fake, config, service, run_id, wait_ok=False)

    counts = telemetry.counts()
    assert counts[key(event="failed", reason_class="bad_request")] == 1
    assert counts[key(event="exhausted", reason_class="bad_request")] == 1
    assert telemetry.in_flight() == 0
    [span] = telemetry.spans()
    assert span.attributes["tinker_recovery.outcome"] == "failed"


def test_the_contract_fields_reach_the_histogram_and_the_span(fake, config, service, telemetry):
    run_id = fake.add_run(checkpoints=2)

    recovery = recover(fake, config, service, run_id)

    [(count, total)] = telemetry.durations().values()
    assert count == 1 and total > 0
    [span] = telemetry.spans()
    assert span.attributes["tinker_recovery.recovery_id"] == recovery.recovery_id
    assert span.attributes["tinker_recovery.lineage_id"] == run_id
    assert span.attributes["tinker_recovery.new_run_id"] == recovery.new_run_id


def needed(module: str) -> ModuleType:
    """The module; skip without it, except in CI, whose test extra installs it (so it never skips there)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def test_prometheus_scrapes_the_counts_over_http(fake, config, service):
    prometheus = needed("opentelemetry.exporter.prometheus")
    prometheus_client = needed("prometheus_client")
    from opentelemetry.sdk.metrics import MeterProvider

    registry = prometheus_client.CollectorRegistry()
    reader = prometheus.PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        otel.instrument(meter_provider=provider)
        run_id = fake.add_run(checkpoints=2)
        recover(fake, config, service, run_id)
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        otel.uninstrument()
        server.shutdown()
        server.server_close()
        thread.join(10)
        provider.shutdown()
    for event in ("detected", "started", "checkpoint_selected", "client_created", "completed"):
        assert re.search(
            rf'^tinker_recovery_events_total\{{[^}}]*event="{event}"[^}}]*\}} 1\.0$', text, re.MULTILINE
        ), (event, text)
    assert re.search(r"^tinker_recovery_recoveries_in_flight\{[^}]*\} 0\.0$", text, re.MULTILINE), text
    assert run_id not in text  # no run id as a label
