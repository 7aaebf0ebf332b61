"""The ``run`` subcommand of ``tinker-recovery``: its arguments and how they build a Supervisor."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._text import escape_text
from .config import Config
from .cookbook import DEFAULT_EXPIRY_MARGIN_S
from .policy import Policy
from .redact import scrub
from .signals import checkpoint_selected, completed, detected, exhausted, failed, poll_error, started
from .supervisor import DEFAULT_RUN_ID_PATTERN, EXIT_GAVE_UP, Supervisor, _LaunchFailed


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_run_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand to ``commands`` (an argparse subparsers object)."""
    run = commands.add_parser(
        "run",
        parents=list(parents),
        help="run a training command; rerun it from a checkpoint when corrupted",
        usage="tinker-recovery run [options] -- COMMAND ...",
        description="Run COMMAND; when the run it trains turns corrupted, stop it (SIGINT, SIGTERM, "
        "SIGKILL), prepare the resume point (--log-path) and run it again. Exit status: the command's own; "
        f"{EXIT_GAVE_UP} when restarts are given up; 2 usage.",
    )
    run.add_argument("--log-path", metavar="DIR", help="the loop's log_path (its checkpoints.jsonl)")
    run.add_argument("--run-id", metavar="ID", help="the run the first launch trains, if known")
    run.add_argument(
        "--run-id-pattern",
        metavar="REGEX",
        default=DEFAULT_RUN_ID_PATTERN,
        help="regex with a run_id group, searched in the command's output (default: a bare run id)",
    )
    run.add_argument("--poll-interval", type=_seconds, default=15.0, metavar="S", help="default 15")
    run.add_argument(
        "--grace",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="wait after SIGINT and after SIGTERM (default 10)",
    )
    run.add_argument(
        "--max-recoveries", type=_count, default=5, metavar="N", help="restarts per window (default 5)"
    )
    run.add_argument("--recovery-window", type=_seconds, default=3600.0, metavar="S", help="default 3600")
    run.add_argument(
        "--backoff",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="wait before the 2nd restart of a window, doubling after (default 5)",
    )
    run.add_argument("--max-backoff", type=_seconds, default=60.0, metavar="S", help="default 60")
    run.add_argument(
        "--max-fallbacks",
        type=_count,
        default=2,
        metavar="N",
        help="older checkpoint records to try when the newest is unusable (default 2)",
    )
    run.add_argument(
        "--expiry-margin",
        type=_seconds,
        default=DEFAULT_EXPIRY_MARGIN_S,
        metavar="S",
        help="a checkpoint expiring within S seconds counts as expired (default 60)",
    )
    run.add_argument("--answer", metavar="TEXT", help="written to a relaunch's stdin, e.g. resume")
    run.add_argument(
        "--relaunch-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="appended to the command when it is run again (repeatable)",
    )
    run.add_argument("--journal", metavar="PATH", help="append every signal to this JSON-lines journal")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    return run  # type: ignore[no-any-return]


class _StderrLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"tinker-recovery: {escape_text(record.getMessage())}\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - a closed stderr
            self.handleError(record)


def _journal(path: str) -> Any:
    from . import journal as journal_module

    made = journal_module.Journal(path)
    if hasattr(made, "subscribe"):
        return made
    return _JournalAdapter(made)


class _JournalAdapter:
    """Until the journal's ``subscribe`` lands: writes each signal with ``Journal.write``."""

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._receivers: list[tuple[Any, Callable[..., None]]] = []

    def subscribe(self, sender: Any) -> None:
        for sig in (detected, started, checkpoint_selected, completed, failed, exhausted, poll_error):
            event = sig.name.rsplit(".", 1)[1]

            def receiver(_sender: Any, _event: str = event, **fields: Any) -> None:
                checkpoint = fields.get("checkpoint")
                error = fields.get("error")
                self._journal.write(
                    fields["time"],
                    _event,
                    fields["run_id"],
                    fields["attempt"],
                    checkpoint=None if checkpoint is None else checkpoint.tinker_path,
                    error=None if error is None else escape_text(f"{type(error).__name__}: {error}"),
                    reason=fields.get("reason"),
                    recovery_id=fields.get("recovery_id"),
                )

            sig.connect(receiver, sender=sender, weak=False)
            self._receivers.append((sig, receiver))

    def close(self) -> None:
        for sig, receiver in self._receivers:
            sig.disconnect(receiver)
        self._journal.close()


def _error_line(error: BaseException, config: Config) -> None:
    """``run``'s one error line, with the key hidden (a value the user gave as the key may be in it)."""
    sys.stderr.write(f"tinker-recovery: error: run: {escape_text(scrub(str(error), config.api_key), 300)}\n")


def run_from_args(args: argparse.Namespace, config: Config) -> int:
    """``tinker-recovery run``: build the Supervisor from parsed arguments and run it."""
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.stderr.write("tinker-recovery: error: run: no command given; put it after `--`\n")
        return 2
    handler = _StderrLines(logging.INFO)
    logger = logging.getLogger("tinker_recovery")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    journal = None
    try:
        try:
            policy = Policy(
                enabled=True,
                poll_interval_ms=max(1, round(args.poll_interval * 1000)),
                max_recoveries=max(1, args.max_recoveries),
                recovery_window_s=args.recovery_window,
                backoff_ms=round(args.backoff * 1000),
                max_backoff_ms=round(args.max_backoff * 1000),
                max_fallbacks=args.max_fallbacks,
            )
            journal = None if args.journal is None else _journal(args.journal)
            supervisor = Supervisor(
                argv,
                config=config,
                policy=policy,
                log_path=args.log_path,
                run_id=args.run_id,
                run_id_pattern=args.run_id_pattern,
                answer=args.answer,
                relaunch_args=args.relaunch_arg,
                grace_s=args.grace,
                expiry_margin_s=args.expiry_margin,
                journal=journal,
            )
        except (TypeError, ValueError, OSError) as error:
            _error_line(error, config)
            return 2
        try:
            return supervisor.run()
        except _LaunchFailed as error:
            _error_line(error, config)
            return 127
    finally:
        if journal is not None:
            journal.close()
        logger.removeHandler(handler)
