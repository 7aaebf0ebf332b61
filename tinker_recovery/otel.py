"""OpenTelemetry metrics and traces of the recovery signals, built on ``opentelemetry-api`` only.

Install the extra (``pip install "tinker-recovery[otel]"``) and, in the application, an SDK with an
exporter; then ``instrument()`` connects one receiver to each signal of ``signals.ALL`` (any
sender, ``weak=False``) and ``uninstrument()`` disconnects them. Without an SDK every instrument is
OpenTelemetry's no-op. Meter and tracer are both named ``tinker_recovery`` (with the package version).

Metrics (attributes are low-cardinality: fixed words only, never a run id):

- ``tinker_recovery.events``: counter, unit ``{event}``; attributes ``event`` (detected, started,
  checkpoint_selected, client_created, completed, failed, exhausted, poll_error) and, on failed,
  exhausted and poll_error, ``reason_class`` (one of ``events.REASON_CLASSES``).
- ``tinker_recovery.recovery.duration``: histogram, unit ``s``; attributes ``outcome`` (completed,
  exhausted) and, when exhausted, ``reason_class``. Advised buckets: ``DURATION_BUCKETS_S``.
- ``tinker_recovery.recoveries.in_flight``: up-down counter, unit ``{recovery}``; no attributes.

- One counter for all events, told apart by ``event``, rather than eight counters: one query
  sums or splits them, and a new signal adds no instrument.
- The histogram records ``duration_s`` of ``completed`` and ``exhausted`` (seconds from
  ``recover()`` being called to the end). A payload without ``duration_s`` records nothing (logged
  once as a warning).
- The in-flight count goes up by 1 the first time an attempt of a recovery starts and down by 1
  when that same recovery completes or is exhausted, paired by ``recovery_id`` (by ``run_id`` when
  a payload has no ``recovery_id``): an end never seen started (instrumented mid-recovery, or
  exhausted before any attempt) takes nothing off, so the count never drifts below the truth.
  ``uninstrument()`` takes off what is still counted, leaving the count at 0.

Traces: one span ``tinker_recovery.attempt`` (kind INTERNAL) per attempt, from ``started`` to
``completed`` or ``failed``; it starts and ends at the payloads' ``time`` (the sender's clock) when
given, else when the signal arrives. Span attributes (these may be high-cardinality):
``tinker_recovery.run_id``, ``tinker_recovery.attempt``, ``tinker_recovery.strategy``,
``tinker_recovery.lineage_id``, ``tinker_recovery.recovery_id``, ``tinker_recovery.checkpoint.path``
(also a span event ``checkpoint_selected`` per checkpoint chosen), ``tinker_recovery.new_run_id``,
``tinker_recovery.outcome`` (completed, failed, or unknown when the span had to be closed without
its end: exhausted or uninstrumented first) and, on failure, ``tinker_recovery.reason_class``,
``error.type`` and status ERROR with the escaped ``reason`` as description. A success leaves the
status unset, as OpenTelemetry asks of libraries.

Nothing from ``metadata``, ``client`` or an error's text other than ``reason`` goes into a metric or
a span; no key is ever read. A receiver never raises into the sender: a failure is logged on
``tinker_recovery.otel`` with its traceback and the signal is otherwise unaffected.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as error:  # pragma: no cover - exercised in a child process by the tests
    raise ImportError(
        'tinker_recovery.otel needs opentelemetry-api: pip install "tinker-recovery[otel]"'
    ) from error

from . import signals
from ._text import escape_text
from ._version import __version__
from .events import REASON_CLASSES, reason_class

__all__ = [
    "ATTEMPT_SPAN",
    "DURATION_BUCKETS_S",
    "EVENTS",
    "IN_FLIGHT",
    "RECOVERY_DURATION",
    "SCOPE",
    "instrument",
    "is_instrumented",
    "uninstrument",
]

log = logging.getLogger("tinker_recovery.otel")

SCOPE = "tinker_recovery"
"""The name of the meter and of the tracer."""
EVENTS = "tinker_recovery.events"
RECOVERY_DURATION = "tinker_recovery.recovery.duration"
IN_FLIGHT = "tinker_recovery.recoveries.in_flight"
ATTEMPT_SPAN = "tinker_recovery.attempt"
DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Bucket bounds (seconds) advised for the duration histogram: restores take seconds to minutes."""

MAX_TRACKED = 10_000
"""At most this many recoveries in flight and open attempt spans are tracked; beyond it a new one is
neither counted nor traced (logged), so memory stays bounded if ends go missing."""

_REASONED = frozenset({"failed", "exhausted", "poll_error"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REASON_LIMIT = 200
_TEXT_LIMIT = 500

_Key = tuple[str, str]  # ("recovery", recovery_id) or ("run", run_id)


class _Receiver:
    """One signal's receiver; hashable by identity, so blinker can hold it strongly."""

    def __init__(self, owner: _Instrumentation, event: str) -> None:
        self._owner = owner
        self.event = event

    def __call__(self, sender: Any, **payload: Any) -> None:
        self._owner.receive(self.event, payload)


class _Instrumentation:
    """The instruments of one ``instrument()`` call and the state pairing starts with ends.

    Receivers run on the senders' threads (monitor, executor workers, a thread calling shutdown);
    ``_lock`` guards ``_in_flight``, ``_spans`` and ``_closed``. Spans are ended outside the lock,
    since ending one may export it synchronously.
    """

    def __init__(
        self, meter_provider: metrics.MeterProvider | None, tracer_provider: trace.TracerProvider | None
    ) -> None:
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self._events = meter.create_counter(
            EVENTS, unit="{event}", description="Recovery signals sent, by event."
        )
        self._duration = _histogram(meter)
        self._in_flight_counter = meter.create_up_down_counter(
            IN_FLIGHT, unit="{recovery}", description="Recoveries started and not yet completed or exhausted."
        )
        self._lock = threading.Lock()
        self._in_flight: set[_Key] = set()
        self._spans: dict[tuple[_Key, int], trace.Span] = {}
        self._closed = False
        self._warned: set[str] = set()
        self._receivers = [(signal, _Receiver(self, signals.event_of(signal))) for signal in signals.ALL]

    def connect(self) -> None:
        for signal, receiver in self._receivers:
            signal.connect(receiver, weak=False)

    def close(self) -> None:
        """Disconnect; end the open spans (outcome unknown); take the counted recoveries off."""
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)
        with self._lock:
            self._closed = True
            spans = list(self._spans.values())
            counted = len(self._in_flight)
            self._spans.clear()
            self._in_flight.clear()
        for span in spans:
            span.set_attribute("tinker_recovery.outcome", "unknown")
            span.end()
        if counted:
            self._in_flight_counter.add(-counted)

    # --- receiving ---------------------------------------------------------------------------

    def receive(self, event: str, payload: Mapping[str, Any]) -> None:
        """Record one signal; never raises (a failure is logged with its traceback)."""
        try:
            self._record(event, payload)
        except Exception:
            log.exception(
                "recording signal %s of run %s failed; the signal is unaffected",
                event,
                escape_text(payload.get("run_id"), _TEXT_LIMIT),
            )

    def _record(self, event: str, payload: Mapping[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
        label = self._reason_class(payload) if event in _REASONED else None
        attributes = {"event": event} if label is None else {"event": event, "reason_class": label}
        self._events.add(1, attributes)
        if event == "started":
            self._attempt_started(payload)
        elif event == "checkpoint_selected":
            self._checkpoint_selected(payload)
        elif event == "client_created":
            span = self._open_span(payload)
            if span is not None:
                self._set_new_run_id(span, payload)
        elif event == "completed":
            self._attempt_ended(payload, None)
            self._recovery_ended(payload, "completed", None)
        elif event == "failed":
            self._attempt_ended(payload, label)
        elif event == "exhausted":
            self._recovery_ended(payload, "exhausted", label)

    def _attempt_started(self, payload: Mapping[str, Any]) -> None:
        key, attempt = _key(payload), _attempt(payload)
        attributes: dict[str, str | int] = {
            "tinker_recovery.run_id": escape_text(payload.get("run_id"), _TEXT_LIMIT),
            "tinker_recovery.attempt": attempt,
            "tinker_recovery.strategy": escape_text(payload.get("strategy"), _TEXT_LIMIT),
        }
        for field in ("lineage_id", "recovery_id"):
            value = payload.get(field)
            if isinstance(value, str):
                attributes[f"tinker_recovery.{field}"] = escape_text(value, _TEXT_LIMIT)
        counted = False
        stale: trace.Span | None = None
        with self._lock:
            if self._closed:
                return
            room = len(self._in_flight) < MAX_TRACKED and len(self._spans) < MAX_TRACKED
            if key not in self._in_flight and room:
                self._in_flight.add(key)
                counted = True
            stale = self._spans.pop((key, attempt), None)
            if room:
                span = self._tracer.start_span(
                    ATTEMPT_SPAN,
                    kind=SpanKind.INTERNAL,
                    attributes=attributes,
                    start_time=_ns(payload.get("time")),
                )
                self._spans[(key, attempt)] = span
        if counted:
            self._in_flight_counter.add(1)
        if stale is not None:  # the same attempt started twice: close the first span
            stale.set_attribute("tinker_recovery.outcome", "unknown")
            stale.end()
        if not room:
            self._warn_once(
                "full",
                "more than %d recoveries tracked at once; attempt %d of %s is neither "
                "counted in flight nor traced",
                MAX_TRACKED,
                attempt,
                escape_text(key[1], _TEXT_LIMIT),
            )

    def _open_span(self, payload: Mapping[str, Any]) -> trace.Span | None:
        with self._lock:
            return self._spans.get((_key(payload), _attempt(payload)))

    def _checkpoint_selected(self, payload: Mapping[str, Any]) -> None:
        span = self._open_span(payload)
        path = _checkpoint_path(payload)
        if span is not None and path is not None:
            span.set_attribute("tinker_recovery.checkpoint.path", path)
            span.add_event(
                "checkpoint_selected",
                {"tinker_recovery.checkpoint.path": path},
                timestamp=_ns(payload.get("time")),
            )

    def _attempt_ended(self, payload: Mapping[str, Any], label: str | None) -> None:
        with self._lock:
            span = self._spans.pop((_key(payload), _attempt(payload)), None)
        if span is None:
            return
        path = _checkpoint_path(payload)
        if path is not None:
            span.set_attribute("tinker_recovery.checkpoint.path", path)
        if label is None:
            span.set_attribute("tinker_recovery.outcome", "completed")
            self._set_new_run_id(span, payload)
        else:
            span.set_attribute("tinker_recovery.outcome", "failed")
            span.set_attribute("tinker_recovery.reason_class", label)
            error = payload.get("error")
            if error is not None:
                span.set_attribute("error.type", _type_name(error))
            span.set_status(
                Status(StatusCode.ERROR, escape_text(payload.get("reason", label), _REASON_LIMIT))
            )
        span.end(end_time=_ns(payload.get("time")))

    def _recovery_ended(self, payload: Mapping[str, Any], outcome: str, label: str | None) -> None:
        key = _key(payload)
        with self._lock:
            counted = key in self._in_flight
            self._in_flight.discard(key)
            left = [span_key for span_key in self._spans if span_key[0] == key]
            spans = [self._spans.pop(span_key) for span_key in left]
        if counted:
            self._in_flight_counter.add(-1)
        for span in spans:  # an attempt whose own end was never sent (e.g. cut short by shutdown)
            span.set_attribute("tinker_recovery.outcome", "unknown")
            span.end(end_time=_ns(payload.get("time")))
        duration = payload.get("duration_s")
        if duration is None:
            self._warn_once(
                "no-duration",
                "%s payloads carry no duration_s: the %s histogram is not recorded",
                outcome,
                RECOVERY_DURATION,
            )
            return
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or not math.isfinite(duration)
            or duration < 0
        ):
            log.warning(
                "%s of run %s: duration_s %s is not a finite number >= 0; not recorded",
                outcome,
                escape_text(payload.get("run_id"), _TEXT_LIMIT),
                escape_text(repr(duration), _TEXT_LIMIT),
            )
            return
        attributes = {"outcome": outcome} if label is None else {"outcome": outcome, "reason_class": label}
        self._duration.record(float(duration), attributes)

    # --- helpers -------------------------------------------------------------------------------

    def _reason_class(self, payload: Mapping[str, Any]) -> str:
        """The payload's ``reason_class``; derived from ``error`` when absent; "other" (logged once)
        when it is not one of ``REASON_CLASSES``, so no free text becomes a label."""
        value = payload.get("reason_class")
        if value is None:
            return reason_class(payload.get("error"))
        if isinstance(value, str) and value in REASON_CLASSES:
            return value
        self._warn_once(
            f"class:{escape_text(value, 40)}",
            "reason_class %s is not one of REASON_CLASSES; recorded as 'other'",
            escape_text(repr(value), _TEXT_LIMIT),
        )
        return "other"

    def _set_new_run_id(self, span: trace.Span, payload: Mapping[str, Any]) -> None:
        new_run_id = payload.get("new_run_id")
        if isinstance(new_run_id, str):
            span.set_attribute("tinker_recovery.new_run_id", escape_text(new_run_id, _TEXT_LIMIT))

    def _warn_once(self, what: str, message: str, *args: object) -> None:
        with self._lock:
            if what in self._warned or len(self._warned) >= 100:
                return
            self._warned.add(what)
        log.warning(message, *args)


def _histogram(meter: metrics.Meter) -> metrics.Histogram:
    description = "Seconds from recover() being called to completed or exhausted."
    try:
        return meter.create_histogram(
            RECOVERY_DURATION,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
    except TypeError:  # opentelemetry-api before 1.23 takes no advice: the SDK's default buckets
        return meter.create_histogram(RECOVERY_DURATION, unit="s", description=description)


def _key(payload: Mapping[str, Any]) -> _Key:
    recovery_id = payload.get("recovery_id")
    if isinstance(recovery_id, str) and recovery_id:
        return ("recovery", recovery_id)
    return ("run", str(payload.get("run_id")))


def _attempt(payload: Mapping[str, Any]) -> int:
    attempt = payload.get("attempt")
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0


def _checkpoint_path(payload: Mapping[str, Any]) -> str | None:
    path = getattr(payload.get("checkpoint"), "tinker_path", None)
    return escape_text(path, _TEXT_LIMIT) if isinstance(path, str) else None


def _type_name(error: object) -> str:
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _ns(value: object) -> int | None:
    """A timezone-aware ``datetime`` as nanoseconds since the epoch; None (the SDK's now) otherwise."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return (value - _EPOCH) // timedelta(microseconds=1) * 1000


_lock = threading.Lock()
_active: _Instrumentation | None = None  # the one instrumentation connected now; owned by _lock


def instrument(
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Record the recovery signals as OpenTelemetry metrics and spans (see the module docstring).

    ``meter_provider`` / ``tracer_provider``: where the instruments and spans go; None uses
    OpenTelemetry's global providers (set by the application, e.g. ``metrics.set_meter_provider``;
    a no-op until then). Idempotent: calling it again with the same providers changes nothing;
    with other providers it first does ``uninstrument()``, so there is never more than one set of
    receivers. Raises TypeError naming the argument when a provider is not an OpenTelemetry one.
    """
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise TypeError(
            f"meter_provider: expected an opentelemetry.metrics.MeterProvider or None, "
            f"got {type(meter_provider).__name__}"
        )
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            f"tracer_provider: expected an opentelemetry.trace.TracerProvider or None, "
            f"got {type(tracer_provider).__name__}"
        )
    global _active
    with _lock:
        if _active is not None:
            if _active.meter_provider is meter_provider and _active.tracer_provider is tracer_provider:
                return
            _active.close()
        _active = _Instrumentation(meter_provider, tracer_provider)
        _active.connect()
    log.debug("instrumented the recovery signals with OpenTelemetry")


def uninstrument() -> None:
    """Disconnect the receivers ``instrument()`` connected; safe to call twice or before it.

    Attempt spans still open end with ``tinker_recovery.outcome`` "unknown"; the in-flight count
    goes back down by what this instrumentation counted.
    """
    global _active
    with _lock:
        active, _active = _active, None
        if active is not None:
            active.close()


def is_instrumented() -> bool:
    """True between ``instrument()`` and ``uninstrument()``."""
    with _lock:
        return _active is not None
