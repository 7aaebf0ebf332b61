"""The Executor: restores corrupted runs from checkpoints on a bounded pool of worker threads."""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from . import signals
from ._ids import check_run_id
from .budget import RestartBudget
from .classify import classify, is_unloadable
from .clock import Clock, SystemClock
from .config import Config
from .errors import (
    AlreadyPending,
    AttemptTimeout,
    BudgetExhausted,
    MissingCheckpoint,
    RecoveryDisabled,
    Shutdown,
)
from .models import Checkpoint, TrainingRun
from .policy import Policy
from .recovery import Recovery
from .rest import RestClient
from .service import check_service
from .scheduler import RetryScheduler, Scheduler
from .selection import as_checkpoint, check_training_checkpoint, first_choice, newest_first, ranked_by_score

__all__ = ["Executor"]

log = logging.getLogger("tinker_recovery.executor")

_STOP = object()


@attrs.define
class _Request:
    """One run to recover, carried from attempt to attempt."""

    run_id: str
    service: Any
    policy: Policy
    rest: RestClient | None
    metadata: dict[str, Any]
    given: Checkpoint | None
    run: TrainingRun | None
    future: Future
    lineage: str
    attempt: int = 1

    def payload(self, **extra: Any) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "strategy": self.policy.strategy_name,
            "metadata": self.metadata,
            **extra,
        }


def _call_user(what: str, callback: Callable[..., Any] | None, *args: Any) -> None:
    """Call a user callback; an exception it raises is logged and ignored."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.error("%s callback %r raised; ignored", what, callback, exc_info=True)


class Executor:
    """Recovers runs handed to ``recover``, at most ``max_concurrent`` at a time.

    Requests wait in a ``queue.Queue``; a dispatcher thread feeds them to a
    ``ThreadPoolExecutor(max_workers=max_concurrent)`` as workers free up. A failed attempt that may
    be retried waits out its backoff in one shared scheduler thread, holding no worker.

    - ``config``: used to build a RestClient when a recovery needs one (fetching the run or listing
      checkpoints). ``rest``: a RestClient to use instead.
    - ``clock``, ``scheduler``, ``rng``: time source, retry waiting room and jitter source; tests
      inject them. Defaults: the system clock, a ``RetryScheduler`` on it, and ``random.Random()``.

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
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise TypeError(f"max_concurrent: expected int, got {type(max_concurrent).__name__}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent: must be at least 1, got {max_concurrent}")
        self.max_concurrent = max_concurrent
        self._config = config
        self._rest = rest
        self._rest_by_config: dict[Config, RestClient] = {}
        self._clock = clock or SystemClock()
        self._scheduler = scheduler or RetryScheduler(self._clock, name=f"{name}.scheduler")
        self._rng = rng or random.Random()
        self._name = name
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix=f"{name}.worker")
        self._lock = threading.Condition()
        self._pending: dict[str, _Request] = {}
        self._running = 0
        self._lineage: dict[str, str] = {}
        self._budgets: dict[str, RestartBudget] = {}
        self._started = False
        self._closed = False
        self._dispatcher: threading.Thread | None = None

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"Executor(max_concurrent={self.max_concurrent}, pending={len(self._pending)}, "
                f"running={self._running}, closed={self._closed})"
            )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Executor:
        """Start the dispatcher and scheduler threads; calling it again does nothing."""
        with self._lock:
            if self._closed:
                raise Shutdown("Executor: cannot start after shutdown")
            if self._started:
                return self
            self._started = True
            self._dispatcher = threading.Thread(target=self._dispatch, name=f"{self._name}.dispatch", daemon=True)
        self._scheduler.start()
        self._dispatcher.start()
        return self

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work and stop the threads; safe to call twice.

        Retries still waiting and requests still queued are cancelled; each is reported with a
        ``failed`` and an ``exhausted`` signal carrying a ``Shutdown`` error. With ``wait``, waits up
        to ``timeout`` seconds (None: no limit) for running attempts to finish.
        """
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._lock:
            first = not self._closed
            self._closed = True
            self._lock.notify_all()
        if first:
            for run_id in self._scheduler.shutdown(self._remaining(deadline)):
                self._cancel(run_id, "cancelled at shutdown while waiting to retry")
            self._queue.put(_STOP)
        dispatcher = self._dispatcher
        if wait and dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join(self._remaining(deadline))
        if wait:
            with self._lock:
                self._lock.wait_for(lambda: self._running == 0, self._remaining(deadline))
        self._pool.shutdown(wait=wait and self._running == 0, cancel_futures=True)
        if first:
            for rest in self._rest_by_config.values():
                rest.close()

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._clock.monotonic())

    def join(self, timeout: float | None = None) -> bool:
        """Block until no recovery is queued, running or waiting to retry and every worker has returned
        from its callbacks; False if ``timeout`` passed first."""
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
    ) -> Future:
        """Queue the recovery of ``run_id``; return a Future of its ``Recovery``.

        ``service`` makes the new training client (``create_training_client_from_state*``).
        ``metadata`` travels in every signal; ``metadata["training_client"]`` is the old client.
        ``last_checkpoint`` (a Checkpoint, its JSON, or a path) and ``run`` spare a REST look-up.
        The Future fails with the last error if recovery is given up.

        Raises RecoveryDisabled if the policy is not enabled, AlreadyPending if the run is queued,
        running or waiting to retry, and Shutdown after ``shutdown``.
        """
        check_run_id(run_id)
        check_service(service)
        if not isinstance(policy, Policy):
            raise TypeError(f"policy: expected a Policy, got {type(policy).__name__}")
        if not policy.enabled:
            raise RecoveryDisabled(f"recovery of {run_id} refused: the policy is not enabled (Policy(enabled=True))")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping or None, got {type(metadata).__name__}")
        given = as_checkpoint(last_checkpoint, self._clock.now())
        rest = self._rest_for(config)
        with self._lock:
            if self._closed:
                raise Shutdown(f"recovery of {run_id} refused: the executor is shut down")
            if run_id in self._pending:
                raise AlreadyPending(f"run {run_id} is already queued, recovering or waiting to retry")
            request = _Request(
                run_id=run_id,
                service=service,
                policy=policy,
                rest=rest,
                metadata=dict(metadata or {}),
                given=given,
                run=run,
                future=Future(),
                lineage=self._lineage.get(run_id, run_id),
            )
            self._pending[run_id] = request
            if not self._started:
                log.warning("recover(%s): the executor is not started; the request waits for start()", run_id)
        self._queue.put(request)
        return request.future

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
            request = self._queue.get()
            if request is _STOP:
                break
            with self._lock:
                self._lock.wait_for(lambda: self._running < self.max_concurrent or self._closed)
                if self._closed:
                    stop = True
                else:
                    stop = False
                    self._running += 1
            if stop:
                self._cancel(request.run_id, "cancelled at shutdown while queued")
                continue
            try:
                self._pool.submit(self._work, request)
            except RuntimeError:  # the pool was shut down under us
                with self._lock:
                    self._running -= 1
                self._cancel(request.run_id, "cancelled at shutdown while queued")
        while True:  # report whatever is still queued
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not _STOP:
                self._cancel(request.run_id, "cancelled at shutdown while queued")

    def _cancel(self, run_id: str, reason: str) -> None:
        with self._lock:
            request = self._pending.get(run_id)
        if request is not None:
            self._give_up(request, Shutdown(f"recovery of {run_id} {reason}"), f"shutdown: {reason}", attempted=False)

    # --- one attempt ----------------------------------------------------------------------------

    def _work(self, request: _Request) -> None:
        try:
            self._attempt(request)
        except Exception:  # a bug here must not kill the worker or lose the request
            log.error("recovery attempt of %s crashed", request.run_id, exc_info=True)
            self._give_up(request, RuntimeError("internal error in the recovery attempt"), "internal error")
        finally:
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    def _attempt(self, request: _Request) -> None:
        policy = request.policy
        if request.attempt == 1:
            budget = self._budget(request)
            with self._lock:
                spent = budget.spent(self._clock.monotonic())
            if spent:
                reason = budget.describe(self._clock.monotonic())
                self._give_up(request, BudgetExhausted(f"run {request.run_id}: {reason}"), reason, attempted=False)
                return
        signals.send_guarded(signals.started, self, **request.payload())
        deadline = (
            None if policy.attempt_timeout_ms is None else self._clock.monotonic() + policy.attempt_timeout_ms / 1000
        )
        try:
            checkpoint, client = self._restore(request, deadline)
        except Exception as error:
            self._attempt_failed(request, error)
            return
        self._succeeded(request, checkpoint, client)

    def _restore(self, request: _Request, deadline: float | None) -> tuple[Checkpoint, Any]:
        """Try the chosen checkpoint, then older ones while the service reports them unloadable."""
        policy, rest, now = request.policy, request.rest, self._clock.now()
        refetch = request.attempt > 1 and rest is not None and policy.strategy_name == "latest"
        run = None if refetch else request.run
        given = None if refetch else request.given
        list_checkpoints = None if rest is None else (lambda: rest.list_checkpoints(request.run_id))
        fetch_run = None if rest is None else (lambda: rest.get_training_run(request.run_id))
        choice = first_choice(
            policy, given=given, run=run, fetch_run=fetch_run, list_checkpoints=list_checkpoints, now=now
        )
        tried: set[str] = set()
        fallbacks: list[Checkpoint] | None = None
        last_error: BaseException | None = None
        candidate: Checkpoint | None = choice
        while candidate is not None:
            tried.add(candidate.tinker_path)
            if candidate.is_expired(now):
                log.warning("run %s: checkpoint %s expired at %s; skipped", request.run_id,
                            candidate.tinker_path, candidate.expires_at)
                last_error = MissingCheckpoint(f"checkpoint {candidate.tinker_path} expired at {candidate.expires_at}")
            else:
                check_training_checkpoint(candidate)
                signals.send_guarded(signals.checkpoint_selected, self, **request.payload(checkpoint=candidate))
                try:
                    return candidate, self._create_client(request, candidate, deadline)
                except Exception as error:
                    if not is_unloadable(error):
                        raise _Failed(error, candidate) from error
                    log.warning("run %s: checkpoint %s cannot be loaded (%s)", request.run_id,
                                candidate.tinker_path, error)
                    last_error = _Failed(error, candidate)
            if fallbacks is None:
                fallbacks = self._fallbacks(request, tried, now)
            candidate = fallbacks.pop(0) if fallbacks else None
        assert last_error is not None
        raise last_error

    def _fallbacks(self, request: _Request, tried: set[str], now: Any) -> list[Checkpoint]:
        policy, rest = request.policy, request.rest
        if policy.strategy_name == "specific" or policy.max_fallbacks == 0 or rest is None:
            return []
        listed = rest.list_checkpoints(request.run_id)
        if policy.strategy_name == "best":
            ordered = ranked_by_score(listed, now, tried, policy.best_by)  # type: ignore[arg-type]
        else:
            ordered = newest_first(listed, now, tried)
        return ordered[: policy.max_fallbacks]

    def _create_client(self, request: _Request, checkpoint: Checkpoint, deadline: float | None) -> Any:
        service, path = request.service, checkpoint.tinker_path
        if request.policy.restore_optimizer:
            create = service.create_training_client_from_state_with_optimizer
        else:
            create = service.create_training_client_from_state

        def call() -> Any:
            value = create(path)
            result = getattr(value, "result", None)
            if callable(result):  # tinker 0.38 returns a future-like client; use what it resolves to
                value = result() if deadline is None else result(timeout=self._remaining(deadline))
            return value

        if deadline is None:
            return call()
        return self._call_with_deadline(call, deadline, request.run_id)

    def _call_with_deadline(self, call: Callable[[], Any], deadline: float, run_id: str) -> Any:
        """Run ``call`` on a helper daemon thread; give up on it at ``deadline`` to free the worker."""
        outcome: Future = Future()

        def run() -> None:
            try:
                outcome.set_result(call())
            except BaseException as error:  # handed to the waiting worker
                outcome.set_exception(error)
            if not outcome_taken.is_set():
                return
            log.warning("run %s: a timed-out create call finished late; its result is discarded", run_id)

        outcome_taken = threading.Event()
        threading.Thread(target=run, name=f"{self._name}.call", daemon=True).start()
        done = threading.Event()
        outcome.add_done_callback(lambda _: done.set())
        while not outcome.done() and self._clock.monotonic() < deadline:
            self._clock.wait(done, self._remaining(deadline))
        if not outcome.done():
            outcome_taken.set()
            raise AttemptTimeout(f"run {run_id}: the create call did not finish within the attempt's time-out")
        return outcome.result()

    # --- outcomes -------------------------------------------------------------------------------

    def _succeeded(self, request: _Request, checkpoint: Checkpoint, client: Any) -> None:
        new_run_id = getattr(client, "model_id", None)
        new_run_id = new_run_id if isinstance(new_run_id, str) else None
        old_client = request.metadata.get("training_client")
        recovery = Recovery(request.run_id, new_run_id, checkpoint, client, old_client, request.attempt)
        with self._lock:
            self._budget(request).record(self._clock.monotonic())
            if new_run_id is not None:
                self._lineage[new_run_id] = request.lineage
            self._pending.pop(request.run_id, None)
            self._lock.notify_all()
        payload = request.payload(checkpoint=checkpoint, client=client)
        signals.send_guarded(signals.client_created, self, **payload)
        signals.send_guarded(signals.completed, self, **payload)
        request.future.set_result(recovery)
        _call_user("on_recovery", request.policy.on_recovery, old_client, client, checkpoint)
        log.info("run %s recovered from %s into %s (attempt %d)", request.run_id, checkpoint.tinker_path,
                 new_run_id, request.attempt)

    def _attempt_failed(self, request: _Request, error: BaseException) -> None:
        checkpoint = None  # the checkpoint being loaded when it failed, if any
        if isinstance(error, _Failed):
            error, checkpoint = error.error, error.checkpoint
        verdict = classify(error, request.policy.retry_on)
        signals.send_guarded(
            signals.failed, self, **request.payload(error=error, reason=verdict.reason, checkpoint=checkpoint)
        )
        attempts_left = request.attempt < request.policy.max_attempts
        if not verdict.retryable or not attempts_left:
            reason = verdict.reason
            if verdict.retryable:
                reason = f"{request.attempt} attempt(s) spent; {reason}"
            self._give_up(request, error, reason, failed_sent=True)
            return
        delay = request.policy.retry_delay_s(request.attempt, self._rng)
        log.warning("run %s: attempt %d failed (%s); retry in %.2f s", request.run_id, request.attempt,
                    verdict.reason, delay)
        request.attempt += 1
        try:
            self._scheduler.schedule(delay, request.run_id, lambda: self._requeue(request))
        except RuntimeError:  # shut down between the failure and now
            self._give_up(request, Shutdown(f"recovery of {request.run_id} cancelled at shutdown"), "shutdown",
                          failed_sent=True)

    def _requeue(self, request: _Request) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            self._cancel(request.run_id, "cancelled at shutdown while waiting to retry")
        else:
            self._queue.put(request)

    def _give_up(
        self, request: _Request, error: BaseException, reason: str, *, attempted: bool = True,
        failed_sent: bool = False,
    ) -> None:
        """Send ``exhausted`` (and ``failed`` first, for a cancelled request), fail the Future, call on_failure."""
        with self._lock:
            if self._pending.get(request.run_id) is not request:
                return  # already reported
            del self._pending[request.run_id]
            self._lock.notify_all()
        if isinstance(error, Shutdown) and not failed_sent:
            signals.send_guarded(signals.failed, self, **request.payload(error=error, reason=reason, checkpoint=None))
        signals.send_guarded(signals.exhausted, self, **request.payload(error=error, reason=reason))
        log.log(logging.ERROR if attempted else logging.WARNING, "recovery of %s given up: %s", request.run_id, reason)
        request.future.set_exception(error)
        _call_user("on_failure", request.policy.on_failure, request.run_id, error)

    def _budget(self, request: _Request) -> RestartBudget:
        """The lineage's budget, sized by the policy of the lineage's first recovery."""
        with self._lock:
            budget = self._budgets.get(request.lineage)
            if budget is None:
                policy = request.policy
                budget = self._budgets[request.lineage] = RestartBudget(policy.max_recoveries, policy.recovery_window_s)
            return budget


class _Failed(Exception):
    """Carries an attempt's error together with the checkpoint it was trying."""

    def __init__(self, error: BaseException, checkpoint: Checkpoint) -> None:
        super().__init__(str(error))
        self.error = error
        self.checkpoint = checkpoint
