"""The Executor: restores corrupted runs from checkpoints on a bounded pool of worker threads."""

from __future__ import annotations

import logging
import math
import random
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import attrs

from . import events, signals
from ._checks import check_int, check_seconds
from ._ids import check_run_id
from ._text import escape_text
from .attempt import Body, Done, Failed, Mailbox, Selected, Unloadable
from .budget import RestartBudget
from .candidates import SOURCE_KEY
from .classify import classify
from .clock import MAX_WAIT_S, Clock, SystemClock, remaining
from .config import Config
from .errors import (
    AlreadyPending,
    AttemptTimeout,
    BudgetExhausted,
    RecoveryDisabled,
    RecoveryError,
    Shutdown,
)
from .models import Checkpoint, TrainingRun
from .policy import Policy
from .recovery import Recovery, new_recovery_id
from .redact import keys_of, redact_error_keys
from .rest import RestClient
from .restore import run_on_thread
from .scheduler import RetryScheduler, Scheduler
from .selection import as_checkpoint
from .service import check_service

__all__ = ["Executor", "MAX_LINEAGES", "RECOVERED_PER_LINEAGE"]

log = logging.getLogger("tinker_recovery.executor")
_PATH_LIMIT = 300  # characters of a server-given path or id in a log line

MAX_LINEAGES = 10_000
"""How many restored runs the executor remembers (their lineage id and source checkpoint), and how many
lineages' restart budgets it keeps; beyond it the least recently used are forgotten. A forgotten run
is its own lineage again, unless its ``user_metadata`` (written at restore) names its source."""

RECOVERED_PER_LINEAGE = 100
"""How many completed recoveries of one lineage the executor keeps to answer a second ``recover`` of
the same run (one truth per run); older ones, with the clients they hold, are forgotten. The same
bound as ``RunHandle.HISTORY_LIMIT``, so a lineage restored 1,000 times keeps 100 clients, not 1,000."""

_STOP = object()


@attrs.define
class _Request:
    """One run to recover, carried from attempt to attempt; written only by the thread that holds it
    (the caller of ``recover``, then one worker at a time, then the scheduler)."""

    run_id: str
    service: Any
    policy: Policy
    rest: RestClient | None
    metadata: dict[str, Any]
    given: Checkpoint | None
    run: TrainingRun | None
    future: Future[Recovery]
    lineage_id: str
    recovery_id: str
    resumed: bool
    began: float
    keys: tuple[str, ...] = ()  # the API keys scrubbed from every error this request passes on
    attempt: int = 1
    attempt_began: float = 0.0
    previous: tuple[threading.Thread, Mailbox] | None = None  # the last attempt's body, maybe still running


@attrs.frozen
class _Origin:
    """What the executor remembers of a run it restored."""

    lineage_id: str
    source_path: str


_LIVE: weakref.WeakSet[Executor] = weakref.WeakSet()


def _at_interpreter_exit() -> None:
    """Cut short every executor's work before ``concurrent.futures`` joins its pool workers."""
    for executor in list(_LIVE):
        try:
            executor._interrupt("interpreter exit")
        except BaseException:
            log.error("stopping %r at interpreter exit failed", executor, exc_info=True)


# Registered after concurrent.futures.thread (imported above), and threading runs these hooks in
# reverse order, so this one runs first: workers are told to stop before they are joined.
threading._register_atexit(_at_interpreter_exit)  # type: ignore[attr-defined]


def _guard(what: str, call: Callable[..., Any], *args: Any) -> None:
    """Call user code on a library thread: anything it raises, BaseException included, is logged and
    ignored, so no library thread dies of it. On the main thread (``shutdown`` called there), a
    KeyboardInterrupt or SystemExit is re-raised after being logged."""
    try:
        call(*args)
    except Exception:
        log.error("%s raised; ignored", what, exc_info=True)
    except BaseException:
        log.error("%s raised a BaseException; ignored on this library thread", what, exc_info=True)
        if threading.current_thread() is threading.main_thread():
            raise


class Executor:
    """Recovers runs handed to ``recover``, at most ``max_concurrent`` at a time.

    Requests wait in a ``queue``-like hand-off; a dispatcher thread submits them to a
    ``ThreadPoolExecutor(max_workers=max_concurrent)``, the one place that bounds concurrency. A
    worker runs one attempt: the attempt's I/O (REST look-ups, the create call) runs on a daemon thread
    of its own while the worker waits for it with the attempt's deadline, sends the signals and calls
    the callbacks. A failed attempt that may be retried waits out its backoff in one shared scheduler
    thread, holding no worker.

    - ``config``: used to build a RestClient when a recovery needs one (fetching the run or listing
      checkpoints). ``rest``: a RestClient to use instead.
    - ``clock``, ``scheduler``, ``rng``: time source, retry waiting room and jitter source; tests
      inject them. Defaults: the system clock, a ``RetryScheduler`` on it, and ``random.Random()``.

    Threads: signals and callbacks are sent on the worker thread (``<name>.worker_N``), except for
    requests cut short, which are reported on the thread that cut them (``shutdown``'s caller, the
    scheduler thread, or the interpreter's exit). Exceptions a receiver or callback raises,
    KeyboardInterrupt and SystemExit included, are logged and ignored.

    Interpreter exit (returning from main, or SIGINT's KeyboardInterrupt) cuts every attempt short:
    each is reported (``failed`` then ``exhausted``, with a Shutdown error) and its Future fails, and
    the process exits without waiting for a create call that hangs.

    Use as a context manager, or call ``start()`` and ``shutdown()``.
    """

    def __init__(
        self,
        max_concurrent: int = 1,
        *,
        config: Config | None = None,
        rest: RestClient | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        rng: random.Random | None = None,
        name: str = "tinker_recovery.executor",
    ) -> None:
        self.max_concurrent = check_int("max_concurrent", max_concurrent, minimum=1)
        self._config = config
        self._rest = rest
        self._rest_by_config: dict[Config, RestClient] = {}
        self._clock: Clock = clock or SystemClock()
        self._scheduler = scheduler or RetryScheduler(self._clock, name=f"{name}.scheduler")
        self._rng = rng or random.Random()
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix=f"{name}.worker")
        self._lock = threading.Condition()
        self._inbox: list[Any] = []  # requests for the dispatcher (and _STOP)
        self._pending: dict[str, _Request] = {}
        self._running = 0
        self._mailboxes: set[Mailbox] = set()
        self._origins: OrderedDict[str, _Origin] = OrderedDict()
        self._recovered: OrderedDict[str, Future[Recovery]] = OrderedDict()  # corrupted run -> its recovery
        self._recovered_runs: OrderedDict[str, deque[str]] = OrderedDict()  # lineage -> its keys above
        self._budgets: OrderedDict[str, RestartBudget] = OrderedDict()
        self._seeds: dict[str, list[float]] = {}
        self._stopped: str | None = None
        self._local = threading.local()
        self._started = False
        self._closed = False
        self._dispatcher: threading.Thread | None = None
        _LIVE.add(self)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"Executor(max_concurrent={self.max_concurrent}, pending={len(self._pending)}, "
                f"running={self._running}, closed={self._closed})"
            )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Executor:
        """Start the dispatcher and scheduler threads; calling it again does nothing.

        Raises Shutdown after ``shutdown``.
        """
        with self._lock:
            if self._closed:
                raise Shutdown("Executor: cannot start after shutdown")
            if self._started:
                return self
            self._started = True
            self._dispatcher = threading.Thread(
                target=self._dispatch, name=f"{self._name}.dispatch", daemon=True
            )
        self._scheduler.start()
        self._dispatcher.start()
        return self

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work and stop the threads; safe to call twice, from any thread, including a
        receiver or a callback (on_recovery, on_failure) of this executor.

        Retries still waiting and requests still queued (also those made before ``start``) are
        cancelled; each is reported with a ``failed`` and an ``exhausted`` signal carrying a
        ``Shutdown`` error. With ``wait``, waits up to ``timeout`` seconds (None: no limit) for
        running attempts; those still running then are cut short and reported the same way. Returns
        within ``timeout`` plus the time receivers take. Without ``wait``, running attempts go on.
        """
        if timeout is not None:  # a wait, not a setting: beyond MAX_WAIT_S (inf too) is clamped
            timeout = float(min(check_seconds("timeout", timeout, maximum=math.inf), MAX_WAIT_S))
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._lock:
            first = not self._closed
            self._closed = True
            if first:
                self._inbox.append(_STOP)
            self._lock.notify_all()
        if first:
            for run_id in self._scheduler.shutdown(self._remaining(deadline)):
                self._cancel(str(run_id), "cancelled at shutdown while waiting to retry")
            if not self._started:
                self._drain()
            self._pool.shutdown(wait=False, cancel_futures=True)  # queued work is cancelled and reported
        in_worker = getattr(self._local, "worker", False)
        if wait:
            dispatcher = self._dispatcher
            if dispatcher is not None and dispatcher is not threading.current_thread():
                dispatcher.join(self._remaining(deadline))
            with self._lock:
                mine = 1 if in_worker else 0
                while self._running > mine:
                    left = self._remaining(deadline)
                    if left is not None and left <= 0:
                        break
                    self._lock.wait(min(left, MAX_WAIT_S) if left is not None else MAX_WAIT_S)
                cut_short = self._running > mine
            if cut_short:
                self._stop_attempts("cut short at shutdown")
            elif not in_worker:
                self._pool.shutdown(wait=True)  # every worker is idle: they exit at once
        if first:
            for rest in self._rest_by_config.values():
                rest.close()

    def _interrupt(self, why: str) -> None:
        """Interpreter exit: refuse new work, cancel waiting retries, cut running attempts short."""
        with self._lock:
            self._closed = True
            self._inbox.append(_STOP)
            self._lock.notify_all()
        for run_id in self._scheduler.shutdown(0):
            self._cancel(str(run_id), f"cancelled at {why} while waiting to retry")
        self._stop_attempts(f"cut short at {why}")
        self._drain()

    def _stop_attempts(self, why: str) -> None:
        with self._lock:
            self._stopped = self._stopped or why
            boxes = list(self._mailboxes)
        for box in boxes:
            box.stop(why)

    def _remaining(self, deadline: float | None) -> float | None:
        return remaining(deadline, self._clock.monotonic())

    def join(self, timeout: float | None = None) -> bool:
        """Block until no recovery is queued, running or waiting to retry and every worker has returned
        from its callbacks; False if ``timeout`` (seconds, None: no limit) passed first. Raises
        ValueError for a negative or NaN ``timeout``."""
        if timeout is not None:  # a wait, not a setting: beyond MAX_WAIT_S (inf too) is clamped
            timeout = float(min(check_seconds("timeout", timeout, maximum=math.inf), MAX_WAIT_S))
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and self._running == 0, timeout)

    @property
    def pending(self) -> list[str]:
        """Run ids queued, recovering, or waiting for a retry."""
        with self._lock:
            return list(self._pending)

    # --- requests -------------------------------------------------------------------------------

    def recover(
        self,
        run_id: str,
        service: Any,
        policy: Policy,
        *,
        config: Config | None = None,
        metadata: Mapping[str, Any] | None = None,
        last_checkpoint: Checkpoint | Mapping[str, Any] | str | None = None,
        run: TrainingRun | None = None,
        lineage_id: str | None = None,
        recovery_id: str | None = None,
    ) -> Future[Recovery]:
        """Queue the recovery of ``run_id``; return a Future of its ``Recovery``.

        ``service`` makes the new training client (``create_training_client_from_state*``; calls
        that return an awaitable or a future are awaited on the attempt's own thread).
        ``metadata`` travels in every signal; ``metadata["training_client"]`` is the old client.
        ``last_checkpoint`` (a Checkpoint, its JSON, or a path) and ``run`` spare a REST look-up.
        ``lineage_id``: the run id the lineage started from (None: ``lineage_of(run_id)``).
        ``recovery_id``: the id of a recovery being resumed (read back from a journal): before
        creating anything, the first attempt looks for a run that recovery already created and
        adopts it. None: a fresh id (every retry still looks before creating).

        The Future fails with the last error if recovery is given up; a KeyboardInterrupt, SystemExit
        or GeneratorExit raised by the service or ``policy.restore`` fails it with a RecoveryError
        whose ``__cause__`` is that exception (it is not retried).

        A run this executor already recovered is not recovered twice: its completed recovery's Future
        is returned (so two monitors sharing the executor follow one recovery; the last
        ``RECOVERED_PER_LINEAGE`` of a lineage and ``MAX_LINEAGES`` in all are remembered).

        Raises RecoveryDisabled if the policy is not enabled, AlreadyPending if the run is queued,
        running or waiting to retry (``future_of`` gives that recovery's Future), Shutdown after
        ``shutdown``, TypeError/ValueError for bad arguments.
        """
        check_run_id(run_id)
        check_service(service)
        if not isinstance(policy, Policy):
            raise TypeError(f"policy: expected a Policy, got {type(policy).__name__}")
        if not policy.enabled:
            raise RecoveryDisabled(
                f"recovery of {run_id} refused: the policy is not enabled (Policy(enabled=True))"
            )
        for field, value in (("recovery_window_s", policy.recovery_window_s),):
            if not math.isfinite(value):  # a NaN window would never empty the budget
                raise ValueError(f"{field}: must be a finite number of seconds, got {value}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping or None, got {type(metadata).__name__}")
        if run is not None and not isinstance(run, TrainingRun):
            raise TypeError(f"run: expected a TrainingRun or None, got {type(run).__name__}")
        if lineage_id is not None:
            check_run_id(lineage_id)
        if recovery_id is not None and (not isinstance(recovery_id, str) or not 0 < len(recovery_id) <= 256):
            raise ValueError(
                f"recovery_id: expected a non-empty str of at most 256 characters, got {recovery_id!r}"
            )
        given = as_checkpoint(last_checkpoint, self._clock.now())
        rest = self._rest_for(config)
        with self._lock:
            if self._closed:
                raise Shutdown(f"recovery of {run_id} refused: the executor is shut down")
            if run_id in self._pending:
                raise AlreadyPending(f"run {run_id} is already queued, recovering or waiting to retry")
            done = self._recovered.get(run_id)
            if done is not None:  # one truth per run: a second monitor follows the recovery made
                log.info("recover(%s): already recovered by this executor; returning that recovery", run_id)
                return done
            request = _Request(
                run_id=run_id,
                service=service,
                policy=policy,
                rest=rest,
                metadata=dict(metadata or {}),
                given=given,
                run=run,
                future=Future(),
                lineage_id=lineage_id or self._lineage_locked(run_id),
                recovery_id=recovery_id or new_recovery_id(),
                resumed=recovery_id is not None,
                began=self._clock.monotonic(),
                keys=keys_of(config or self._config, rest, service),
            )
            self._pending[run_id] = request
            self._inbox.append(request)
            self._lock.notify_all()
            if not self._started:
                log.warning("recover(%s): the executor is not started; the request waits for start()", run_id)
        return request.future

    def future_of(self, run_id: str) -> Future[Recovery] | None:
        """The Future of ``run_id``'s recovery while it is queued, running or waiting to retry; else None."""
        with self._lock:
            request = self._pending.get(run_id)
            return None if request is None else request.future

    def lineage_of(self, run_id: str) -> str:
        """The id of the run ``run_id``'s lineage started from; ``run_id`` itself if it is not a run
        this executor restored (or one it has forgotten, see ``MAX_LINEAGES``)."""
        with self._lock:
            return self._lineage_locked(run_id)

    def _lineage_locked(self, run_id: str) -> str:
        origin = self._origins.get(run_id)
        return run_id if origin is None else origin.lineage_id

    def seed_budget(self, lineage_id: str, restarts: Sequence[datetime]) -> None:
        """Count past restarts of ``lineage_id`` (time-zone aware datetimes, e.g. read back from a
        journal) in its restart budget, so a restarted watcher keeps the budget. Restarts older than
        the window are forgotten once the budget is used. Raises TypeError/ValueError for bad values."""
        check_run_id(lineage_id)
        now_wall, now_mono = self._clock.now(), self._clock.monotonic()
        times = []
        for when in restarts:
            if not isinstance(when, datetime) or when.tzinfo is None:
                raise TypeError(f"restarts: expected time-zone aware datetimes, got {when!r}")
            times.append(now_mono - (now_wall - when).total_seconds())
        with self._lock:
            budget = self._budgets.get(lineage_id)
            if budget is None:
                self._seeds.setdefault(lineage_id, []).extend(times)
                while len(self._seeds) > MAX_LINEAGES:
                    del self._seeds[next(iter(self._seeds))]
            else:
                for when_mono in times:
                    budget.record(when_mono)

    def _has_rest(self) -> bool:
        """True when recoveries can reach REST without a config of their own."""
        return self._rest is not None or self._config is not None

    def _rest_for(self, config: Config | None) -> RestClient | None:
        """The REST client for a request: ``rest=``, else one built (once) from a config."""
        if config is None:
            if self._rest is not None or self._config is None:
                return self._rest
            config = self._config
        with self._lock:
            rest = self._rest_by_config.get(config)
            if rest is None:
                rest = self._rest_by_config[config] = RestClient(config)
            return rest

    # --- dispatcher -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: bool(self._inbox))
                request = self._inbox.pop(0)
            if request is _STOP:
                break
            self._submit(request)
        self._drain()

    def _submit(self, request: _Request) -> None:
        try:
            work = self._pool.submit(self._work, request)
        except RuntimeError:  # the pool is shut down (shutdown, or interpreter exit)
            self._cancel(request.run_id, "cancelled at shutdown while queued")
            return

        def cancelled(done: Future[None]) -> None:
            if done.cancelled():
                self._cancel(request.run_id, "cancelled at shutdown while queued")

        work.add_done_callback(cancelled)

    def _drain(self) -> None:
        """Report every request still in the inbox (after shutdown)."""
        with self._lock:
            left, self._inbox = [r for r in self._inbox if r is not _STOP], []
        for request in left:
            self._cancel(request.run_id, "cancelled at shutdown while queued")

    def _cancel(self, run_id: str, reason: str) -> None:
        with self._lock:
            request = self._pending.get(run_id)
        if request is not None:
            self._give_up(
                request, Shutdown(f"recovery of {run_id} {reason}"), f"shutdown: {reason}", attempted=False
            )

    # --- signals --------------------------------------------------------------------------------

    def _send(self, signal: Any, request: _Request, **extra: Any) -> None:
        payload = events.payload(
            run_id=request.run_id,
            attempt=request.attempt,
            strategy=request.policy.strategy_name,
            metadata=request.metadata,
            time=self._clock.now(),
            lineage_id=request.lineage_id,
            recovery_id=request.recovery_id,
            **extra,
        )
        _guard(f"a receiver of {signal.name}", lambda: signals.send_guarded(signal, self, **payload))

    # --- one attempt ----------------------------------------------------------------------------

    def _work(self, request: _Request) -> None:
        self._local.worker = True
        with self._lock:
            self._running += 1
        try:
            self._attempt(request)
        except BaseException as error:
            shown = redact_error_keys(error, request.keys)
            log.error("recovery attempt of %s crashed", request.run_id, exc_info=shown)
            wrapped = RecoveryError(f"internal error in the recovery attempt of {request.run_id}")
            wrapped.__cause__ = shown
            self._give_up(request, wrapped, "internal error")
        finally:
            with self._lock:
                self._running -= 1
                self._lock.notify_all()
            self._local.worker = False

    def _attempt(self, request: _Request) -> None:
        with self._lock:
            closed, stopped = self._closed, self._stopped
        if closed:
            self._cancel(request.run_id, f"{stopped or 'cancelled at shutdown'} while queued")
            return
        if request.attempt == 1:
            budget = self._budget(request)
            with self._lock:
                now = self._clock.monotonic()
                spent, reason = budget.spent(now), budget.describe(now)
            if spent:
                self._give_up(
                    request, BudgetExhausted(f"run {request.run_id}: {reason}"), reason, attempted=False
                )
                return
        request.attempt_began = self._clock.monotonic()
        self._send(signals.started, request)
        timeout_ms = request.policy.attempt_timeout_ms
        deadline = None if timeout_ms is None else request.attempt_began + timeout_ms / 1000
        box = Mailbox()
        with self._lock:
            self._mailboxes.add(box)
            if self._stopped is not None:
                box.stop(self._stopped)
        try:
            body = Body(
                run_id=request.run_id,
                service=request.service,
                policy=request.policy,
                rest=request.rest,
                given=request.given,
                run=request.run,
                attempt=request.attempt,
                look_first=request.attempt > 1 or request.resumed,
                lineage_id=request.lineage_id,
                recovery_id=request.recovery_id,
                clock=self._clock,
                source_of=self._source_of,
                previous=request.previous,
            )
            thread = run_on_thread(f"{self._name}.call", lambda: body.execute(box, deadline))
            request.previous = (thread, box)
            note = self._follow(request, box, deadline)
        finally:
            with self._lock:
                self._mailboxes.discard(box)
        if isinstance(note, Done):
            self._succeeded(request, note)
        else:
            self._attempt_failed(request, note.error, note.checkpoint)

    def _follow(self, request: _Request, box: Mailbox, deadline: float | None) -> Done | Failed:
        """Wait for the body's notes until it is done, the deadline passes, or the box is stopped."""
        current: Checkpoint | None = None
        while True:
            for note in box.take():
                if isinstance(note, Selected):
                    current = note.checkpoint
                    self._send(signals.checkpoint_selected, request, checkpoint=note.checkpoint)
                elif isinstance(note, Unloadable):
                    log.warning(
                        "run %s: checkpoint %s cannot be loaded (%s)",
                        request.run_id,
                        escape_text(note.checkpoint.tinker_path, _PATH_LIMIT),
                        type(note.error).__name__,
                    )
                else:
                    return note
            why = box.stopped
            if why is not None:
                return Failed(Shutdown(f"recovery of {request.run_id} {why}"), current)
            if deadline is None:
                box.wake.wait(MAX_WAIT_S)
                continue
            left = deadline - self._clock.monotonic()
            if left <= 0:
                box.stop("abandoned at its time-out")  # the body starts no create call after this
                timeout_ms = request.policy.attempt_timeout_ms
                error = AttemptTimeout(
                    f"run {request.run_id}: the attempt did not finish within {timeout_ms} ms"
                )
                return Failed(error, current)
            self._clock.wait(box.wake, left)

    def _remember_recovered_locked(self, request: _Request) -> None:
        """Keep the request's Future for a second ``recover`` of its run: at most
        ``RECOVERED_PER_LINEAGE`` per lineage and ``MAX_LINEAGES`` in all (each holds two clients)."""
        self._recovered[request.run_id] = request.future
        self._recovered.move_to_end(request.run_id)
        runs = self._recovered_runs.get(request.lineage_id)
        if runs is None:
            runs = self._recovered_runs[request.lineage_id] = deque()
        self._recovered_runs.move_to_end(request.lineage_id)
        runs.append(request.run_id)
        while len(runs) > RECOVERED_PER_LINEAGE:
            self._recovered.pop(runs.popleft(), None)
        while len(self._recovered) > MAX_LINEAGES:
            self._recovered.popitem(last=False)
        while len(self._recovered_runs) > MAX_LINEAGES:
            self._recovered_runs.popitem(last=False)

    def _source_of(self, run_id: str, run: TrainingRun | None) -> str | None:
        with self._lock:
            origin = self._origins.get(run_id)
        if origin is not None:
            return origin.source_path
        return None if run is None else (run.user_metadata or {}).get(SOURCE_KEY)

    # --- outcomes -------------------------------------------------------------------------------

    def _succeeded(self, request: _Request, done: Done) -> None:
        client, checkpoint = done.client, done.checkpoint
        new_run_id = getattr(client, "model_id", None)
        new_run_id = new_run_id if isinstance(new_run_id, str) else None
        old_client = request.metadata.get("training_client")
        recovery = Recovery(
            request.run_id,
            new_run_id,
            checkpoint,
            client,
            old_client,
            request.attempt,
            recovery_id=request.recovery_id,
            lineage_id=request.lineage_id,
            sampler_path=done.sampler_path,
        )
        now = self._clock.monotonic()
        with self._lock:
            self._budget_locked(request).record(now)
            if new_run_id is not None:
                self._origins[new_run_id] = _Origin(request.lineage_id, checkpoint.tinker_path)
                self._origins.move_to_end(new_run_id)
                while len(self._origins) > MAX_LINEAGES:
                    self._origins.popitem(last=False)
            self._remember_recovered_locked(request)
            self._pending.pop(request.run_id, None)
            self._lock.notify_all()
        extra = {"checkpoint": checkpoint, "client": client, "new_run_id": new_run_id}
        self._send(signals.client_created, request, **extra)
        self._send(signals.completed, request, **extra, duration_s=now - request.began)
        request.future.set_result(recovery)
        if request.policy.on_recovery is not None:
            callback = request.policy.on_recovery
            _guard(f"on_recovery callback {callback!r}", callback, old_client, client, checkpoint)
        log.info(
            "run %s recovered from %s into %s (attempt %d%s)",
            request.run_id,
            escape_text(checkpoint.tinker_path, _PATH_LIMIT),
            escape_text(new_run_id, _PATH_LIMIT),
            request.attempt,
            ", adopted" if done.adopted else "",
        )

    def _attempt_failed(self, request: _Request, error: BaseException, checkpoint: Checkpoint | None) -> None:
        # ``cause`` (the error as raised) is only classified; what leaves the executor (signals,
        # the Future, logs, on_failure, the journal through the signals) is its copy without the key.
        cause = error
        error = redact_error_keys(error, request.keys)
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit, GeneratorExit
            log.error(
                "run %s: the attempt raised %s; the recovery is given up",
                request.run_id,
                type(error).__name__,
                exc_info=error,
            )
            shown = error
            error = RecoveryError(
                f"run {request.run_id}: the attempt raised {type(error).__name__}; not retried"
            )
            error.__cause__ = shown
        verdict = classify(cause, request.policy.retry_on)
        if isinstance(cause, Shutdown):
            verdict = attrs.evolve(verdict, retryable=False, reason=f"shutdown: {cause}")
        self._send(
            signals.failed,
            request,
            error=error,
            reason=verdict.reason,
            reason_class=events.reason_class(cause),
            checkpoint=checkpoint,
            duration_s=self._clock.monotonic() - request.attempt_began,
        )
        attempts_left = request.attempt < request.policy.max_attempts
        if not verdict.retryable or not attempts_left:
            reason = verdict.reason
            if verdict.retryable:
                reason = f"{request.attempt} attempt(s) spent; {reason}"
            self._give_up(request, error, reason, failed_sent=True, cause=cause)
            return
        try:
            delay = request.policy.retry_delay_s(request.attempt, self._rng)
            log.warning(
                "run %s: attempt %d failed (%s); retry in %.2f s",
                request.run_id,
                request.attempt,
                verdict.reason,
                delay,
            )
            request.attempt += 1
            self._scheduler.schedule(delay, request.run_id, lambda: self._requeue(request))
        except RuntimeError:  # shut down between the failure and now
            self._give_up(
                request,
                Shutdown(f"recovery of {request.run_id} cancelled at shutdown"),
                "shutdown",
                failed_sent=True,
            )
        except Exception as bad:  # a delay the scheduler refuses: give up, saying why
            self._give_up(
                request,
                RecoveryError(f"run {request.run_id}: retry not scheduled: {bad}"),
                f"retry not scheduled: {bad}",
                failed_sent=True,
            )

    def _requeue(self, request: _Request) -> None:
        with self._lock:
            if not self._closed:
                self._inbox.append(request)
                self._lock.notify_all()
                return
        self._cancel(request.run_id, "cancelled at shutdown while waiting to retry")

    def _give_up(
        self,
        request: _Request,
        error: BaseException,
        reason: str,
        *,
        attempted: bool = True,
        failed_sent: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        """Send ``exhausted`` (and ``failed`` first, for a cancelled request), fail the Future, call
        on_failure; once per request (later calls do nothing)."""
        now = self._clock.monotonic()
        with self._lock:
            if self._pending.get(request.run_id) is not request:
                return  # already reported
            del self._pending[request.run_id]
            self._lock.notify_all()
        label = events.reason_class(cause if cause is not None else error)
        if isinstance(error, Shutdown) and not failed_sent:
            self._send(
                signals.failed,
                request,
                error=error,
                reason=reason,
                reason_class=label,
                checkpoint=None,
                duration_s=0.0,
            )
        self._send(
            signals.exhausted,
            request,
            error=error,
            reason=reason,
            reason_class=label,
            duration_s=now - request.began,
        )
        log.log(
            logging.ERROR if attempted else logging.WARNING,
            "recovery of %s given up: %s",
            request.run_id,
            reason,
        )
        request.future.set_exception(error)
        if request.policy.on_failure is not None:
            callback = request.policy.on_failure
            _guard(f"on_failure callback {callback!r}", callback, request.run_id, error)

    def _budget(self, request: _Request) -> RestartBudget:
        with self._lock:
            return self._budget_locked(request)

    def _budget_locked(self, request: _Request) -> RestartBudget:
        """The lineage's budget, sized by the policy of the lineage's first recovery; the caller holds
        the lock."""
        budget = self._budgets.get(request.lineage_id)
        if budget is None:
            policy = request.policy
            budget = self._budgets[request.lineage_id] = RestartBudget(
                policy.max_recoveries, policy.recovery_window_s
            )
            for when in self._seeds.pop(request.lineage_id, []):
                budget.record(when)
            while len(self._budgets) > MAX_LINEAGES:
                self._budgets.popitem(last=False)
        self._budgets.move_to_end(request.lineage_id)
        return budget
