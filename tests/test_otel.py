"""tinker_recovery.otel against the OpenTelemetry SDK's in-memory reader and exporter, driven by the
real signals with payloads built by ``events.payload``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from conftest import T0, FakeClient, checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tinker_recovery import errors, otel, signals
from tinker_recovery.events import REASON_CLASSES, payload

REPO = Path(__file__).resolve().parents[1]
SECRET = "tml-otel-test-secret-0000"
RUN = "run-a"
CKPT = checkpoint(RUN, "step-000020")


class Telemetry:
    """An SDK meter and tracer provider that keep everything in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self) -> None:
        otel.instrument(meter_provider=self.meter_provider, tracer_provider=self.tracer_provider)

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "tinker_recovery"
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric
        return None

    def counts(self) -> dict[tuple[tuple[str, str], ...], int]:
        return {tuple(sorted(p.attributes.items())): p.value for p in self.points(otel.EVENTS) if p.value}

    def in_flight(self) -> int:
        return sum(p.value for p in self.points(otel.IN_FLIGHT))

    def durations(self) -> dict[tuple[tuple[str, str], ...], tuple[int, float]]:
        return {
            tuple(sorted(p.attributes.items())): (p.count, p.sum)
            for p in self.points(otel.RECOVERY_DURATION)
            if p.count
        }

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@pytest.fixture
def telemetry():
    tel = Telemetry()
    tel.instrument()
    yield tel
    otel.uninstrument()
    tel.close()


def send(
    event: str,
    *,
    run_id: str = RUN,
    attempt: int = 1,
    seconds: float = 0.0,
    recovery_id: str | None = "rec-1",
    **extra: Any,
) -> None:
    """Send one signal with blinker's own ``send``, which lets a receiver's exception through."""
    signal = getattr(signals, event)
    if event in ("detected", "poll_error"):
        attempt, recovery_id = 0, None
    signal.send(
        "sender",
        **payload(
            run_id=run_id,
            attempt=attempt,
            strategy="latest",
            metadata={"api_key": SECRET},
            time=T0 + timedelta(seconds=seconds),
            lineage_id=run_id,
            recovery_id=recovery_id,
            **extra,
        ),
    )


def key(**attributes: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(attributes.items()))


def ns(seconds: float) -> int:
    """Nanoseconds since the epoch of ``T0 + seconds`` (T0 is a whole second)."""
    return int(T0.timestamp()) * 10**9 + round(seconds * 10**9)


def recover_once(run_id: str = RUN, recovery_id: str = "rec-1", *, duration_s: float = 4.5) -> None:
    send("detected", run_id=run_id, checkpoint=CKPT)
    send("started", run_id=run_id, recovery_id=recovery_id, seconds=1.0)
    send("checkpoint_selected", run_id=run_id, recovery_id=recovery_id, seconds=1.5, checkpoint=CKPT)
    client = FakeClient("run-b")
    send(
        "client_created",
        run_id=run_id,
        recovery_id=recovery_id,
        seconds=4.0,
        checkpoint=CKPT,
        client=client,
        new_run_id="run-b",
    )
    send(
        "completed",
        run_id=run_id,
        recovery_id=recovery_id,
        seconds=4.5,
        checkpoint=CKPT,
        client=client,
        new_run_id="run-b",
        duration_s=duration_s,
    )


# --- metrics ------------------------------------------------------------------------------------


def test_a_recovery_counts_each_event_once_and_records_its_duration(telemetry):
    recover_once()

    assert telemetry.counts() == {
        key(event=e): 1 for e in ("detected", "started", "checkpoint_selected", "client_created", "completed")
    }
    assert telemetry.durations() == {key(outcome="completed"): (1, 4.5)}
    assert telemetry.in_flight() == 0
    assert telemetry.metric(otel.RECOVERY_DURATION).unit == "s"
    assert telemetry.metric(otel.EVENTS).unit == "{event}"
    assert telemetry.metric(otel.IN_FLIGHT).unit == "{recovery}"
    histogram = telemetry.points(otel.RECOVERY_DURATION)[0]
    assert tuple(histogram.explicit_bounds) == otel.DURATION_BUCKETS_S


def test_in_flight_is_one_between_the_first_start_and_the_end(telemetry):
    send("detected", checkpoint=CKPT)
    assert telemetry.in_flight() == 0
    send("started")
    assert telemetry.in_flight() == 1
    send(
        "failed",
        error=errors.ServerError("boom", status_code=503),
        reason="fatal: HTTP 503",
        reason_class="server_error",
        checkpoint=CKPT,
        duration_s=1.0,
    )
    send("started", attempt=2)  # a retry of the same recovery is not a second one
    assert telemetry.in_flight() == 1
    send("started", run_id="run-z", recovery_id="rec-2")
    assert telemetry.in_flight() == 2
    send("completed", attempt=2, checkpoint=CKPT, client=None, new_run_id="run-b", duration_s=9.0)
    assert telemetry.in_flight() == 1
    send(
        "exhausted",
        run_id="run-z",
        recovery_id="rec-2",
        error=errors.BudgetExhausted("spent"),
        reason="budget spent",
        reason_class="budget",
        duration_s=2.0,
    )
    assert telemetry.in_flight() == 0
    assert telemetry.durations() == {
        key(outcome="completed"): (1, 9.0),
        key(outcome="exhausted", reason_class="budget"): (1, 2.0),
    }
    assert telemetry.counts()[key(event="failed", reason_class="server_error")] == 1


def test_ends_never_seen_started_take_nothing_off(telemetry):
    send(
        "exhausted",
        error=errors.BudgetExhausted("spent"),
        reason="budget",
        reason_class="budget",
        duration_s=0.0,
    )  # refused before any attempt
    send("completed", checkpoint=CKPT, client=None, new_run_id="run-b", duration_s=1.0)
    assert telemetry.in_flight() == 0
    send("started")
    send("completed", checkpoint=CKPT, client=None, new_run_id="run-b", duration_s=1.0)
    send("completed", checkpoint=CKPT, client=None, new_run_id="run-b", duration_s=1.0)  # a duplicate end
    send(
        "exhausted", error=errors.Shutdown("stop"), reason="shutdown", reason_class="shutdown", duration_s=1.0
    )
    assert telemetry.in_flight() == 0
    assert telemetry.durations()[key(outcome="completed")] == (3, 3.0)


def test_without_a_recovery_id_a_recovery_is_paired_by_its_run(telemetry):
    send("started", recovery_id=None)
    send("started", run_id="run-z", recovery_id=None)
    assert telemetry.in_flight() == 2
    send("completed", recovery_id=None, checkpoint=CKPT, client=None, duration_s=1.0)
    assert telemetry.in_flight() == 1
    assert [s.attributes["tinker_recovery.run_id"] for s in telemetry.spans()] == [RUN]


def test_reason_class_is_derived_from_the_error_when_the_payload_has_none(telemetry):
    send("poll_error", error=errors.ConnectionFailed("refused"), reason="poll failed: ConnectionFailed")
    send("started")
    send("failed", error=errors.AttemptTimeout("slow"), reason="attempt timed out", checkpoint=None)
    assert telemetry.counts() == {
        key(event="poll_error", reason_class="connection"): 1,
        key(event="started"): 1,
        key(event="failed", reason_class="attempt_timeout"): 1,
    }


def test_an_unknown_reason_class_becomes_other_with_one_warning(telemetry, caplog):
    caplog.set_level(logging.WARNING, logger="tinker_recovery.otel")
    for _ in range(3):
        send("poll_error", error=RuntimeError("x"), reason="x", reason_class="free text\nwith a line")
    assert telemetry.counts() == {key(event="poll_error", reason_class="other"): 3}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "not one of REASON_CLASSES" in warnings[0] and "\n" not in warnings[0]


def test_a_missing_or_bad_duration_records_nothing_and_says_so(telemetry, caplog):
    caplog.set_level(logging.WARNING, logger="tinker_recovery.otel")
    for bad in (None, float("nan"), -1.0, "3", True):
        send("started")
        extra = {} if bad is None else {"duration_s": bad}
        send("completed", checkpoint=CKPT, client=None, new_run_id="run-b", **extra)
    assert telemetry.durations() == {}
    assert telemetry.in_flight() == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("carry no duration_s" in m for m in messages) == 1
    assert sum("is not a finite number >= 0" in m for m in messages) == 4


def test_metric_attributes_are_only_fixed_words(telemetry):
    recover_once()
    send("started", attempt=1, recovery_id="rec-9", run_id="run-9")
    send(
        "failed",
        run_id="run-9",
        recovery_id="rec-9",
        error=errors.ServerError("x", status_code=500),
        reason="fatal",
        reason_class="server_error",
        checkpoint=CKPT,
        duration_s=1.0,
    )
    send(
        "exhausted",
        run_id="run-9",
        recovery_id="rec-9",
        error=errors.ServerError("x", status_code=500),
        reason="fatal",
        reason_class="server_error",
        duration_s=2.0,
    )
    events = {
        "detected",
        "started",
        "checkpoint_selected",
        "client_created",
        "completed",
        "failed",
        "exhausted",
        "poll_error",
    }
    for name in (otel.EVENTS, otel.RECOVERY_DURATION, otel.IN_FLIGHT):
        for point in telemetry.points(name):
            for attribute, value in point.attributes.items():
                allowed = {
                    "event": events,
                    "reason_class": set(REASON_CLASSES),
                    "outcome": {"completed", "exhausted"},
                }[attribute]
                assert value in allowed, (name, attribute, value)


# --- spans --------------------------------------------------------------------------------------


def test_one_span_per_attempt_with_its_run_checkpoint_and_times(telemetry):
    recover_once()

    [span] = telemetry.spans()
    assert span.name == otel.ATTEMPT_SPAN and span.kind is SpanKind.INTERNAL
    assert span.instrumentation_scope.name == "tinker_recovery"
    assert dict(span.attributes) == {
        "tinker_recovery.run_id": RUN,
        "tinker_recovery.attempt": 1,
        "tinker_recovery.strategy": "latest",
        "tinker_recovery.lineage_id": RUN,
        "tinker_recovery.recovery_id": "rec-1",
        "tinker_recovery.checkpoint.path": CKPT.tinker_path,
        "tinker_recovery.new_run_id": "run-b",
        "tinker_recovery.outcome": "completed",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert (span.start_time, span.end_time) == (ns(1.0), ns(4.5))
    [event] = span.events
    assert event.name == "checkpoint_selected" and event.timestamp == ns(1.5)
    assert dict(event.attributes) == {"tinker_recovery.checkpoint.path": CKPT.tinker_path}


def test_a_failed_attempt_is_an_error_span_and_the_retry_has_its_own(telemetry):
    send("started", seconds=1.0)
    send("checkpoint_selected", seconds=1.2, checkpoint=CKPT)
    send(
        "failed",
        seconds=2.0,
        error=errors.ServerError("bad gateway", status_code=502),
        reason="retryable: HTTP 502\nfrom the server",
        reason_class="server_error",
        checkpoint=CKPT,
        duration_s=1.0,
    )
    send("started", attempt=2, seconds=3.0)
    send(
        "completed", attempt=2, seconds=5.0, checkpoint=CKPT, client=None, new_run_id="run-b", duration_s=4.0
    )

    first, second = telemetry.spans()
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "retryable: HTTP 502\\nfrom the server"
    assert first.attributes["tinker_recovery.outcome"] == "failed"
    assert first.attributes["tinker_recovery.reason_class"] == "server_error"
    assert first.attributes["error.type"] == "tinker_recovery.errors.ServerError"
    assert first.attributes["tinker_recovery.checkpoint.path"] == CKPT.tinker_path
    assert (first.start_time, first.end_time) == (ns(1.0), ns(2.0))
    assert second.attributes["tinker_recovery.attempt"] == 2
    assert second.attributes["tinker_recovery.outcome"] == "completed"
    assert (second.start_time, second.end_time) == (ns(3.0), ns(5.0))
    assert first.context.trace_id != second.context.trace_id  # each attempt is a root span


def test_an_attempt_cut_short_by_exhausted_is_closed_as_unknown(telemetry):
    send("started", seconds=1.0)
    send(
        "exhausted",
        seconds=2.0,
        error=errors.Shutdown("shutting down"),
        reason="shutdown",
        reason_class="shutdown",
        duration_s=1.0,
    )
    [span] = telemetry.spans()
    assert span.attributes["tinker_recovery.outcome"] == "unknown" and span.end_time == ns(2.0)
    assert telemetry.in_flight() == 0


def test_no_secret_metadata_or_client_reaches_a_metric_or_span(telemetry):
    class Leaky:
        def __repr__(self) -> str:
            return SECRET

        model_id = SECRET

    error = errors.ServerError(f"echoed {SECRET}", status_code=500)
    send("poll_error", error=error, reason="poll failed: ServerError")
    send("started", metadata_extra=SECRET)
    send("client_created", checkpoint=CKPT, client=Leaky(), new_run_id="run-b")
    send(
        "failed",
        error=error,
        reason="fatal: HTTP 500",
        reason_class="server_error",
        checkpoint=CKPT,
        duration_s=1.0,
    )
    send("started", attempt=2)
    send("completed", attempt=2, checkpoint=CKPT, client=Leaky(), new_run_id="run-b", duration_s=1.0)

    exported = [telemetry.reader.get_metrics_data().to_json()]
    exported += [span.to_json() for span in telemetry.spans()]
    assert len(exported) == 3
    assert all(SECRET not in text and "api_key" not in text for text in exported)


# --- connecting ----------------------------------------------------------------------------------


def receiver_counts() -> list[int]:
    return [len(signal.receivers) for signal in signals.ALL]


def test_instrument_is_idempotent_and_uninstrument_disconnects():
    before = receiver_counts()
    tel = Telemetry()
    try:
        tel.instrument()
        tel.instrument()
        assert receiver_counts() == [n + 1 for n in before] and otel.is_instrumented()
        send("detected", checkpoint=CKPT)
        assert tel.counts() == {key(event="detected"): 1}

        otel.uninstrument()
        otel.uninstrument()
        assert receiver_counts() == before and not otel.is_instrumented()
        send("detected", checkpoint=CKPT)
        assert tel.counts() == {key(event="detected"): 1}
    finally:
        otel.uninstrument()
        tel.close()


def test_instrument_with_other_providers_moves_to_them(telemetry):
    before = receiver_counts()
    send("started")
    other = Telemetry()
    try:
        other.instrument()
        assert receiver_counts() == before
        # the first provider's open span is closed and its in-flight count taken off
        [span] = telemetry.spans()
        assert span.attributes["tinker_recovery.outcome"] == "unknown"
        assert telemetry.in_flight() == 0
        send("detected", checkpoint=CKPT)
        assert other.counts() == {key(event="detected"): 1}
        assert telemetry.counts() == {key(event="started"): 1}
        send("completed", checkpoint=CKPT, client=None, duration_s=1.0)  # started before the move
        assert other.in_flight() == 0 and other.spans() == []
    finally:
        otel.uninstrument()
        other.close()


def test_uninstrument_closes_open_spans_and_zeroes_in_flight(telemetry):
    send("started")
    assert telemetry.in_flight() == 1
    otel.uninstrument()
    assert telemetry.in_flight() == 0
    [span] = telemetry.spans()
    assert span.attributes["tinker_recovery.outcome"] == "unknown"


GLOBAL_PROVIDERS_SCRIPT = """
from datetime import datetime, timezone
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tinker_recovery import otel, signals
from tinker_recovery.events import payload

otel.instrument()  # before the application sets its providers: the proxies forward to them later
reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
common = dict(run_id="r", attempt=1, strategy="latest", metadata={}, time=datetime.now(timezone.utc),
              lineage_id="r", recovery_id="x")
signals.started.send("s", **payload(**common))
signals.completed.send("s", **payload(**common, checkpoint=None, client=None, duration_s=2.0))
points = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
          for m in sm.metrics if m.name == otel.EVENTS for p in m.data.data_points]
print(sorted((dict(p.attributes)["event"], p.value) for p in points), len(exporter.get_finished_spans()))
"""


def test_global_providers_are_used_when_none_are_given(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDERS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[('completed', 1), ('started', 1)] 1\n"


@pytest.mark.parametrize("argument", ["meter_provider", "tracer_provider"])
def test_a_provider_of_the_wrong_kind_is_refused_by_name(argument):
    with pytest.raises(TypeError, match=rf"^{argument}: expected an opentelemetry\..*got str$"):
        otel.instrument(**{argument: "prometheus"})
    assert not otel.is_instrumented()


# --- never raising into the sender ---------------------------------------------------------------


class _Raising(otel_metrics.NoOpMeterProvider):
    """A meter provider whose counter raises on every add."""

    def get_meter(
        self, name: str, version: str | None = None, schema_url: str | None = None, attributes: Any = None
    ) -> otel_metrics.Meter:
        class Meter(otel_metrics.NoOpMeter):
            def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
                class Counter(otel_metrics.NoOpCounter):
                    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
                        raise RuntimeError("exporter broke")

                return Counter(name)

        return Meter(name)


def test_a_failing_instrument_is_logged_and_never_reaches_the_sender(caplog):
    caplog.set_level(logging.ERROR, logger="tinker_recovery.otel")
    otel.instrument(meter_provider=_Raising())
    try:
        send("detected", run_id="run\nforged", checkpoint=CKPT)  # blinker's send would let it through
    finally:
        otel.uninstrument()
    [record] = caplog.records
    assert record.exc_info and "recording signal detected of run run\\nforged failed" in record.getMessage()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "run_id",
                    "attempt",
                    "recovery_id",
                    "checkpoint",
                    "time",
                    "duration_s",
                    "reason_class",
                    "error",
                    "reason",
                    "new_run_id",
                ]
            ),
            st.one_of(
                st.none(),
                st.text(max_size=5),
                st.integers(-3, 3),
                st.floats(),
                st.booleans(),
                st.datetimes(),
                st.datetimes(timezones=st.just(UTC)),
                st.builds(object),
            ),
        ),
        max_size=6,
    ),
    st.lists(st.sampled_from([s.name.rsplit(".", 1)[1] for s in signals.ALL]), max_size=6),
)
def test_any_payload_is_recorded_without_raising(telemetry, payloads, events):
    for event, fields in zip(events, payloads, strict=False):
        getattr(signals, event).send("sender", **fields)
    assert telemetry.in_flight() >= 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["started", "completed", "exhausted", "failed"]),
            st.sampled_from(["rec-1", "rec-2", "rec-3"]),
            st.integers(1, 3),
        ),
        max_size=30,
    )
)
def test_in_flight_is_exactly_the_recoveries_started_and_not_ended(telemetry, steps):
    otel.uninstrument()  # a fresh count for each example
    telemetry.instrument()
    base = telemetry.in_flight()
    open_ = set()
    for event, recovery_id, attempt in steps:
        extra: dict[str, Any] = {"duration_s": 1.0} if event in ("completed", "exhausted") else {}
        if event in ("failed", "exhausted"):
            extra.update(error=errors.Shutdown("x"), reason="x", reason_class="shutdown")
        send(event, recovery_id=recovery_id, attempt=attempt, **extra)
        if event == "started":
            open_.add(recovery_id)
        elif event in ("completed", "exhausted"):
            open_.discard(recovery_id)
        assert telemetry.in_flight() - base == len(open_)
    otel.uninstrument()
    assert telemetry.in_flight() == base


def test_concurrent_senders_are_counted_exactly(telemetry):
    threads_n, recoveries = 8, 50
    go = threading.Event()
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        go.wait(10)
        try:
            for n in range(recoveries):
                recovery_id = f"rec-{index}-{n}"
                send("started", run_id=f"run-{index}", recovery_id=recovery_id)
                send(
                    "completed",
                    run_id=f"run-{index}",
                    recovery_id=recovery_id,
                    checkpoint=CKPT,
                    client=None,
                    new_run_id="x",
                    duration_s=0.5,
                )
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"otel-test-{i}", daemon=True)
        for i in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads) and failures == []
    total = threads_n * recoveries
    assert telemetry.counts() == {key(event="started"): total, key(event="completed"): total}
    assert telemetry.durations() == {key(outcome="completed"): (total, 0.5 * total)}
    assert telemetry.in_flight() == 0 and len(telemetry.spans()) == total


def test_instrumenting_and_uninstrumenting_while_signals_fly_never_raises_or_drifts(telemetry, caplog):
    caplog.set_level(logging.ERROR, logger="tinker_recovery.otel")
    stop = threading.Event()
    failures: list[BaseException] = []

    def sender(index: int) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                send("started", run_id=f"run-{index}", recovery_id=f"rec-{index}-{n}")
                send(
                    "completed",
                    run_id=f"run-{index}",
                    recovery_id=f"rec-{index}-{n}",
                    checkpoint=CKPT,
                    client=None,
                    duration_s=0.1,
                )
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=sender, args=(i,), name=f"otel-send-{i}", daemon=True) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(200):
            otel.uninstrument()
            telemetry.instrument()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    otel.uninstrument()
    assert not any(thread.is_alive() for thread in threads) and failures == []
    assert telemetry.in_flight() == 0
    assert caplog.records == []


def test_the_package_imports_without_opentelemetry_and_otel_names_the_extra(tmp_path):
    code = (
        "import sys; import tinker_recovery; assert 'opentelemetry' not in sys.modules; "
        "sys.modules['opentelemetry'] = None; import tinker_recovery.otel"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'ImportError: tinker_recovery.otel needs opentelemetry-api: pip install "tinker-recovery[otel]"'
    )
