"""``tinker-recovery run``: run a training command, and rerun it from a checkpoint when its run is corrupted.

For loops that resume by being run again (tinker-cookbook's recipes, or any script that restores from
its last checkpoint when restarted), and that cannot take a restored client in-process::

    tinker-recovery run --log-path /tmp/sl-run --answer resume -- python -m my_recipe log_path=/tmp/sl-run

1. The command runs in its own process group; its output is passed through line by line.
2. Which run it trains is learned, newest first, from: a line it prints that matches ``--run-id-pattern``
   (default: a bare Tinker run id ``<uuid>:train:<n>``, not part of a ``tinker://`` path); a record it
   appends to ``{--log-path}/checkpoints.jsonl`` (the run of its ``state_path``); ``--run-id`` (the first
   launch only). Records already in the log when a launch starts belong to earlier runs and are ignored.
3. The run is polled every ``--poll-interval`` seconds. When it reads ``corrupted`` (or the command exits
   non-zero and one look shows its run corrupted), the command's process group gets SIGINT, then
   SIGTERM after ``--grace`` seconds, then SIGKILL after another ``--grace``; what is left of the group once
   the command has exited is killed.
4. With ``--log-path``, ``cookbook.prepare_resume`` makes the newest loadable record the last of the log
   (unusable newer ones go to ``checkpoints.unusable.jsonl``); then the command is run again, after the
   restart backoff, with ``TINKER_RECOVERY_RESTARTS=<n>`` and ``TINKER_RECOVERY_RESUME_PATH=<state path>`` in
   its environment, ``--relaunch-arg`` arguments appended, and ``--answer`` text (e.g. ``resume``, for the
   cookbook's ``behavior_if_exists="ask"`` prompt) written to its stdin.

At most ``max_recoveries`` restarts within ``recovery_window_s`` (``--max-recoveries``,
``--recovery-window``); restart ``k`` of the window waits ``min(backoff * 2**(k-2), max_backoff)`` for
k >= 2 (the first is at once). Signals ``detected``, ``started``, ``checkpoint_selected``, ``completed``
(the command was relaunched; ``client`` and ``new_run_id`` None), ``failed``, ``exhausted`` and
``poll_error`` are sent with the Supervisor as sender; ``--journal PATH`` records them.

Exit status: the command's own when it ends by itself (128 + N if a signal N ended it); 75
(``EXIT_GAVE_UP``) when the restart budget is spent or no resume point could be prepared; 2 usage; when
the supervisor itself gets SIGINT/SIGTERM it passes the signal to the command and exits with the command's
status; 127 when the command cannot be started.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any

from ._ids import check_run_id
from ._supervisor_detect import _detector
from ._text import escape_text
from .budget import RestartBudget
from .clock import Clock, SystemClock
from .config import Config
from .cookbook import DEFAULT_EXPIRY_MARGIN_S, CheckpointLogError, ResumePoint, prepare_resume, read_log
from .errors import BudgetExhausted, MissingCheckpoint, TinkerRecoveryError
from .events import payload, reason_class
from .models import Checkpoint
from .policy import Policy
from .rest import RestClient
from .signals import (
    checkpoint_selected,
    completed,
    detected,
    exhausted,
    failed,
    poll_error,
    send_guarded,
    started,
)

__all__ = [
    "EXIT_GAVE_UP",
    "DEFAULT_RUN_ID_PATTERN",
    "Supervisor",
    "exit_status",
    "restart_delay_s",
    "stop_sequence",
]

log = logging.getLogger("tinker_recovery.supervisor")

EXIT_GAVE_UP = 75
"""Exit status when restarts are given up (budget spent, no resume point): EX_TEMPFAIL."""
DEFAULT_RUN_ID_PATTERN = (
    r"(?<![\w/.:-])"
    r"(?P<run_id>[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}:train:[0-9]+)"
    r"(?![\w/-]|:\w)"
)
"""A bare Tinker run id ``<uuid>:train:<n>`` anywhere in a line, not inside a ``tinker://`` path."""
RESTARTS_ENV = "TINKER_RECOVERY_RESTARTS"
RESUME_PATH_ENV = "TINKER_RECOVERY_RESUME_PATH"
_MAX_LINE = 64 * 1024  # a longer line is passed on (and searched for a run id) in pieces of this size
_TICK_S = 0.25  # the longest the main thread blocks at once, so it runs signal handlers in time
_PUMP_JOIN_S = 5.0  # how long output still flowing after the command exited is passed on


# --- pure rules -----------------------------------------------------------------------------------


def exit_status(returncode: int) -> int:
    """A child's ``returncode`` as a shell reports it: ``-N`` (killed by signal N) becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def stop_sequence(grace_s: float) -> list[tuple[signal.Signals, float]]:
    """The signals that stop a command and how long to wait after each: SIGINT and SIGTERM
    ``grace_s`` each, SIGKILL at most 10 s more (it cannot be refused). ``grace_s`` >= 0."""
    if not grace_s >= 0 or grace_s > threading.TIMEOUT_MAX:
        raise ValueError(f"grace_s: must be a number of seconds >= 0, got {grace_s!r}")
    return [(signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)]


def restart_delay_s(policy: Policy, used: int, rng: random.Random) -> float:
    """The wait before a restart when ``used`` restarts are already in the window: 0 for the first,
    else ``policy.retry_delay_s(used)`` (``min(backoff_ms * 2**(used-1), max_backoff_ms)`` ms, jittered
    by the policy's ``jitter``). ``used`` >= 0."""
    if used < 0:
        raise ValueError(f"used: must be >= 0, got {used}")
    return 0.0 if used == 0 else policy.retry_delay_s(used, rng)


# --- one launch of the command ----------------------------------------------------------------------


class _Launch:
    """One run of the command: the process, its output pumps, what it told us."""

    def __init__(
        self,
        number: int,
        proc: subprocess.Popen[bytes],
        log_lines: int,
        run_id: str | None,
        wake: threading.Event,
    ) -> None:
        self.number = number
        self.proc = proc
        self.log_lines = log_lines  # records in the log before it started: not its own
        self.printed_run_id: str | None = None
        self.given_run_id = run_id
        self.exited = threading.Event()
        self.pumps: list[threading.Thread] = []
        self._wake = wake
        waiter = threading.Thread(target=self._wait, name="tinker_recovery.supervisor.wait", daemon=True)
        waiter.start()

    def _wait(self) -> None:
        self.proc.wait()
        self.exited.set()
        self._wake.set()

    def pump(self, source: IO[bytes], sink: IO[bytes], pattern: re.Pattern[str], name: str) -> None:
        def loop() -> None:
            try:
                for line in iter(lambda: source.readline(_MAX_LINE), b""):  # bounded: no line can eat memory
                    try:
                        sink.write(line)
                        sink.flush()
                    except (OSError, ValueError):
                        pass
                    found = None
                    for match in pattern.finditer(line.decode("utf-8", "replace")):
                        found = match.group("run_id")
                    if found is not None and not _valid_run_id(found):
                        log.warning("ignored a printed run id that is not one: %s", escape_text(found, 80))
                    elif found is not None and found != self.printed_run_id:
                        self.printed_run_id = found
                        log.info("the command trains run %s", escape_text(found, 200))
            except (OSError, ValueError):
                log.debug("output pump %s ended", name, exc_info=True)
            finally:
                source.close()

        thread = threading.Thread(target=loop, name=f"tinker_recovery.supervisor.{name}", daemon=True)
        thread.start()
        self.pumps.append(thread)

    def join_pumps(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.pumps:
            thread.join(max(0.0, deadline - time.monotonic()))


class _TextSink:
    """The command's output bytes written to a text stream that has no binary ``buffer`` (a notebook's
    ``sys.stdout``, an ``io.StringIO``), decoded as UTF-8."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


def _binary(stream: Any) -> Any:
    """``stream.buffer`` when it has one, else ``stream`` behind a ``_TextSink``."""
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)


def _valid_run_id(text: str) -> bool:
    try:
        check_run_id(text)
    except ValueError:
        return False
    return True


def _kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the group's ids were reused by another user
        log.warning("cannot signal process group %d", pgid)
        return False
    return True


# --- the supervisor ---------------------------------------------------------------------------------


class Supervisor:
    """Runs ``command`` and reruns it from a checkpoint when its run is corrupted (see the module doc).

    - ``command``: the argv to run (non-empty). ``config``: REST access (key, base URL, time-outs).
    - ``policy``: ``poll_interval_ms``, ``max_recoveries``/``recovery_window_s`` (restart budget),
      ``backoff_ms``/``max_backoff_ms``/``jitter`` (restart delay), ``max_attempts`` (tries to prepare the
      resume point when the REST API fails), ``max_fallbacks`` (older records tried). ``enabled`` is not
      consulted: running the supervisor is the opt-in.
    - ``log_path``: the cookbook ``log_path`` (None: the command resumes by its own means; nothing is
      prepared). ``run_id``: the run the first launch trains, if known. ``run_id_pattern``: a regex with a
      ``run_id`` group, searched in every output line. ``answer``: text (plus newline) written to a
      relaunch's stdin (None: stdin is inherited). ``relaunch_args``: appended to the argv on relaunches.
    - ``grace_s``: wait after SIGINT and after SIGTERM. ``expiry_margin_s``: see ``cookbook.select_resume``.
    - ``journal``: an object with ``subscribe(sender)`` (tinker_recovery.journal.Journal), or None.
    - ``stdout``/``stderr``: binary streams the command's output is copied to (default: this process's).
    - ``handle_signals``: install SIGINT/SIGTERM handlers that pass the signal on to the command (only
      possible on the main thread; restored when ``run`` returns).

    Raises ValueError/TypeError for a bad argument, naming it. ``run()`` returns the exit status.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        config: Config,
        policy: Policy | None = None,
        log_path: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        run_id_pattern: str = DEFAULT_RUN_ID_PATTERN,
        answer: str | None = None,
        relaunch_args: Sequence[str] = (),
        grace_s: float = 10.0,
        expiry_margin_s: float = DEFAULT_EXPIRY_MARGIN_S,
        journal: Any = None,
        rest: RestClient | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if isinstance(command, str) or not command or not all(isinstance(part, str) for part in command):
            raise ValueError("command: expected a non-empty list of strings (the argv after `--`)")
        if not isinstance(config, Config):
            raise TypeError(f"config: expected a Config, got {type(config).__name__}")
        self.command = tuple(command)
        self.policy = policy if policy is not None else Policy(enabled=True)
        if not isinstance(self.policy, Policy):
            raise TypeError(f"policy: expected a Policy, got {type(self.policy).__name__}")
        try:
            self._pattern = re.compile(run_id_pattern)
        except re.error as error:
            raise ValueError(f"run_id_pattern: not a regular expression: {error}") from None
        if "run_id" not in self._pattern.groupindex:
            raise ValueError("run_id_pattern: must have a group named run_id, e.g. (?P<run_id>\\S+)")
        stop_sequence(grace_s)  # validates grace_s
        if answer is not None and ("\n" in answer or "\r" in answer):
            raise ValueError("answer: must be one line (a newline is added)")
        if run_id is not None:
            check_run_id(run_id)
        if isinstance(relaunch_args, str) or not all(isinstance(arg, str) for arg in relaunch_args):
            raise TypeError("relaunch_args: expected a list of strings")
        self.log_path = None if log_path is None else os.fspath(log_path)
        self._given_run_id = run_id
        self._answer = answer
        self._relaunch_args = tuple(relaunch_args)
        self._grace_s = float(grace_s)
        self._expiry_margin_s = expiry_margin_s
        self._journal = journal
        self._owns_rest = rest is None
        self._rest = rest if rest is not None else RestClient(config)
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._stdout = stdout if stdout is not None else _binary(sys.stdout)
        self._stderr = stderr if stderr is not None else _binary(sys.stderr)
        self._handle_signals = handle_signals
        self._budget = RestartBudget(self.policy.max_recoveries, self.policy.recovery_window_s)
        self._wake = threading.Event()  # set by: the command's exit, a detection, a signal
        self._interrupt = threading.Event()  # set by a signal to the supervisor itself
        self._waker = threading.Event()  # the event the current backoff wait is on
        self._lock = threading.Lock()  # guards the three fields below (poll thread vs. main thread)
        self._corrupted: tuple[int, str] | None = None  # (launch number, run id)
        self._interrupted: int | None = None
        self._launch: _Launch | None = None
        self._lineage_id: str | None = None
        self.restarts = 0
        """Relaunches so far."""

    def __repr__(self) -> str:
        return (
            f"Supervisor(command={self.command[0]!r}, log_path={self.log_path!r}, restarts={self.restarts})"
        )

    # --- what the command trains ------------------------------------------------------------

    def current_run(self) -> str | None:
        """The run the current launch trains, newest knowledge first (see the module doc); None if unknown."""
        launch = self._launch
        if launch is None:
            return None
        if launch.printed_run_id is not None:
            return launch.printed_run_id
        if self.log_path is not None:
            try:
                records = read_log(self.log_path).records
            except (CheckpointLogError, OSError) as error:
                log.warning("cannot read the checkpoint log: %s", escape_text(error, 300))
                records = ()
            own = [record for record in records[launch.log_lines :] if record.run_id is not None]
            if own:
                return own[-1].run_id
        return launch.given_run_id

    def _target(self) -> tuple[int, str] | None:
        launch = self._launch
        run_id = self.current_run()
        return None if launch is None or run_id is None else (launch.number, run_id)

    # --- signals ------------------------------------------------------------------------------

    def _send(self, signal_: Any, run_id: str, attempt: int, recovery_id: str | None, **extra: Any) -> None:
        fields = payload(
            run_id=run_id,
            attempt=attempt,
            strategy=self.policy.strategy_name,
            metadata={},
            time=self._clock.now(),
            lineage_id=self._lineage_id or run_id,
            recovery_id=recovery_id,
            **extra,
        )
        send_guarded(signal_, self, **fields)

    def _on_corrupted(self, launch_number: int, run_id: str, checkpoint: Checkpoint | None) -> None:
        self._send(detected, run_id, 0, None, checkpoint=checkpoint)
        with self._lock:
            self._corrupted = (launch_number, run_id)
        self._wake.set()

    def _on_poll_error(self, run_id: str, error: TinkerRecoveryError) -> None:
        log.warning("poll of %s failed: %s", escape_text(run_id, 200), escape_text(error, 300))
        self._send(
            poll_error,
            run_id,
            0,
            None,
            error=error,
            reason=f"poll failed: {type(error).__name__}",
            reason_class=reason_class(error),
        )

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._interrupted = signum
        self._interrupt.set()
        self._waker.set()
        self._wake.set()

    # --- running ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the command until it ends by itself or restarts are given up; return the exit status."""
        previous: dict[int, Any] = {}
        if self._handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        if self._journal is not None:
            self._journal.subscribe(self)
        detector = _detector()(
            self._rest,
            self.policy.poll_interval_ms / 1000.0,
            self._target,
            self._on_corrupted,
            self._on_poll_error,
        )
        try:
            self._start(restart=False, resume=None)
            detector.start()
            return self._supervise()
        finally:
            detector.stop()
            launch = self._launch
            if launch is not None and not launch.exited.is_set():
                self._stop_command(launch)
            if launch is not None:
                launch.join_pumps(_PUMP_JOIN_S)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._owns_rest:
                self._rest.close()

    def _supervise(self) -> int:
        while True:
            # a tick, not a bare wait: a signal the kernel hands to another thread runs its Python
            # handler only when the main thread next runs, so an untimed wait could miss Ctrl-C
            if not self._wake.wait(_TICK_S):
                continue
            self._wake.clear()
            launch = self._launch
            assert launch is not None
            if self._interrupted is not None:
                return self._pass_interrupt(launch, self._interrupted)
            with self._lock:
                found, self._corrupted = self._corrupted, None
            corrupted = found[1] if found is not None and found[0] == launch.number else None
            if corrupted is None and launch.exited.is_set():
                launch.join_pumps(_PUMP_JOIN_S)
                code = exit_status(launch.proc.returncode)
                corrupted = self._corrupted_after_exit(code)
                if corrupted is None:
                    log.info("the command exited with status %d", code)
                    return code
            if corrupted is not None:
                code_or_none = self._restart(launch, corrupted)
                if code_or_none is not None:
                    return code_or_none

    def _corrupted_after_exit(self, code: int) -> str | None:
        """After a non-zero exit, one look at the run: was it corrupted (then restart)?"""
        run_id = self.current_run()
        if code == 0 or run_id is None:
            return None
        try:
            run = self._rest.get_training_run(run_id)
        except TinkerRecoveryError as error:
            log.warning(
                "the command exited with %d; could not check run %s: %s",
                code,
                escape_text(run_id, 200),
                escape_text(error, 300),
            )
            return None
        if not run.corrupted:
            return None
        log.warning(
            "the command exited with %d and its run %s reads corrupted", code, escape_text(run_id, 200)
        )
        self._send(detected, run.training_run_id, 0, None, checkpoint=run.last_checkpoint)
        return run.training_run_id

    def _pass_interrupt(self, launch: _Launch, signum: int) -> int:
        log.warning("got signal %d: passing it to the command", signum)
        if not launch.exited.is_set():
            _kill_group(launch.proc.pid, signal.Signals(signum))
            if not launch.exited.wait(self._grace_s):
                self._stop_command(launch, first=signal.SIGTERM)
        launch.join_pumps(_PUMP_JOIN_S)
        return exit_status(launch.proc.returncode) if launch.proc.returncode is not None else 128 + signum

    def _stop_command(self, launch: _Launch, first: signal.Signals = signal.SIGINT) -> None:
        """SIGINT, SIGTERM, SIGKILL to the command's group, each after the previous one's grace."""
        pgid = launch.proc.pid
        sequence = stop_sequence(self._grace_s)
        if first == signal.SIGTERM:
            sequence = sequence[1:]
        for sig, wait_s in sequence:
            if launch.exited.is_set():
                break
            log.info("stopping the command: %s to process group %d", sig.name, pgid)
            if not _kill_group(pgid, sig):
                break
            if launch.exited.wait(wait_s):
                break
        if launch.exited.is_set() and _kill_group(pgid, signal.SIGKILL):
            log.info("killed what was left of process group %d", pgid)

    def _restart(self, launch: _Launch, run_id: str) -> int | None:
        """Stop, prepare, relaunch; the exit status when restarts are given up, else None."""
        self._lineage_id = self._lineage_id or run_id
        recovery_id = uuid.uuid4().hex
        began = self._clock.monotonic()
        now = self._clock.monotonic()
        if self._budget.spent(now):
            error = BudgetExhausted(self._budget.describe(now))
            self._stop_command(launch)
            self._send(
                exhausted,
                run_id,
                0,
                recovery_id,
                error=error,
                reason=str(error),
                reason_class="budget",
                duration_s=0.0,
            )
            log.error("giving up: %s", error)
            return EXIT_GAVE_UP
        used = self._budget.used(now)
        self._send(started, run_id, 1, recovery_id)
        self._stop_command(launch)
        launch.join_pumps(_PUMP_JOIN_S)
        log.info("the command stopped (status %s); preparing the restart", launch.proc.returncode)
        resume = None
        if self.log_path is not None:
            outcome = self._prepare(run_id, recovery_id, began)
            if isinstance(outcome, int):
                return outcome
            resume = outcome
            if resume.checkpoint is not None:
                self._send(checkpoint_selected, run_id, 1, recovery_id, checkpoint=resume.checkpoint)
        self._budget.record(self._clock.monotonic())
        delay = restart_delay_s(self.policy, used, self._rng)
        if delay > 0:
            log.info("restart %d of the window in %.2f s", used + 1, delay)
            if self._wait_interruptible(delay):
                return 128 + (self._interrupted or signal.SIGINT)
        if self._interrupted is not None:  # interrupted while stopping or preparing: do not relaunch
            return 128 + self._interrupted
        self._start(restart=True, resume=resume)
        self._send(
            completed,
            run_id,
            1,
            recovery_id,
            checkpoint=None if resume is None else resume.checkpoint,
            client=None,
            new_run_id=None,
            duration_s=self._clock.monotonic() - began,
        )
        return None

    def _prepare(self, run_id: str, recovery_id: str, began: float) -> ResumePoint | int:
        assert self.log_path is not None
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                return prepare_resume(
                    self.log_path,
                    self._rest,
                    now=self._clock.now(),
                    max_fallbacks=self.policy.max_fallbacks,
                    expiry_margin_s=self._expiry_margin_s,
                )
            except (TinkerRecoveryError, CheckpointLogError, OSError) as error:
                retry = (
                    isinstance(error, TinkerRecoveryError)
                    and error.retryable
                    and attempt < self.policy.max_attempts
                )
                self._send(
                    failed,
                    run_id,
                    attempt,
                    recovery_id,
                    error=error,
                    reason=escape_text(error, 300),
                    reason_class=reason_class(error),
                    checkpoint=None,
                    duration_s=self._clock.monotonic() - began,
                )
                log.warning(
                    "preparing the resume point failed (attempt %d): %s", attempt, escape_text(error, 300)
                )
                if retry:
                    if self._wait_interruptible(self.policy.retry_delay_s(attempt, self._rng)):
                        return 128 + (self._interrupted or signal.SIGINT)
                    continue
                if not isinstance(error, (TinkerRecoveryError, MissingCheckpoint)):
                    error = MissingCheckpoint(f"cannot prepare the resume point: {escape_text(error, 300)}")
                self._send(
                    exhausted,
                    run_id,
                    attempt,
                    recovery_id,
                    error=error,
                    reason=escape_text(error, 300),
                    reason_class=reason_class(error),
                    duration_s=self._clock.monotonic() - began,
                )
                log.error("giving up: %s", escape_text(error, 300))
                return EXIT_GAVE_UP
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_interruptible(self, seconds: float) -> bool:
        """Wait ``seconds`` on the clock; True when the supervisor was interrupted meanwhile."""
        end = self._clock.monotonic() + seconds
        while not self._interrupt.is_set():
            left = end - self._clock.monotonic()
            if left <= 0:
                return False
            waker = self._waker = threading.Event()  # a clock may set it at the deadline: its own per wait
            if self._interrupt.is_set():
                break
            # on the real clock in ticks, for the signal handler's sake (see _supervise)
            self._clock.wait(waker, min(left, _TICK_S) if isinstance(self._clock, SystemClock) else left)
        return True

    def _start(self, *, restart: bool, resume: ResumePoint | None) -> None:
        number = 0 if self._launch is None else self._launch.number + 1
        argv = list(self.command) + (list(self._relaunch_args) if restart else [])
        env = dict(os.environ)
        env[RESTARTS_ENV] = str(number)
        if resume is not None and resume.record is not None and resume.record.state_path is not None:
            env[RESUME_PATH_ENV] = resume.record.state_path
        else:
            env.pop(RESUME_PATH_ENV, None)
        log_lines = 0
        if self.log_path is not None:
            try:
                log_lines = len(read_log(self.log_path).records)
            except (CheckpointLogError, OSError) as error:
                log.warning("cannot read the checkpoint log: %s", escape_text(error, 300))
        stdin = subprocess.PIPE if restart and self._answer is not None else None
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            raise _LaunchFailed(
                f"cannot run {escape_text(argv[0], 200)}: {error.strerror or error}"
            ) from None
        launch = _Launch(number, proc, log_lines, self._given_run_id if number == 0 else None, self._wake)
        assert proc.stdout is not None and proc.stderr is not None
        launch.pump(proc.stdout, self._stdout, self._pattern, "stdout")
        launch.pump(proc.stderr, self._stderr, self._pattern, "stderr")
        if stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write((self._answer or "").encode() + b"\n")
                proc.stdin.close()
            except OSError:
                log.warning("could not write the answer to the command's stdin")
        self._launch = launch
        if restart:
            self.restarts += 1
        log.info(
            "launch %d: pid %d%s", number, proc.pid, "" if not restart else f" (restart {self.restarts})"
        )


class _LaunchFailed(Exception):
    """The command could not be started (no such file, not executable)."""
