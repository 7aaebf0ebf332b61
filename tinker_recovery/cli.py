"""The ``tinker-recovery`` command (also ``python -m tinker_recovery``).

    tinker-recovery [--base-url URL] [--api-key KEY] [--timeout S] [--retries N] COMMAND ...

    status RUN_ID...                       corrupted or healthy, the last checkpoint, its age and expiry
    checkpoints RUN_ID                     the run's checkpoints
    watch RUN_ID... [--interval S] [--json]  print each recovery signal until Ctrl-C (detection only)
    fake-server [--port P]                 serve a FakeTinker on loopback for tests and demos

``--base-url`` and ``--api-key`` fall back to ``TINKER_BASE_URL`` and ``TINKER_API_KEY``, as Config
does; the global options may also follow the command. The key is never printed.

Exit status: 0 ok; 1 ``status`` found a corrupted run; 2 usage: bad arguments, a missing or malformed
API key or base URL, or a port fake-server cannot listen on; 3 API error: an unknown run, an
unreachable service, a refused key. An API error wins over a corrupted run. Ctrl-C ends ``watch``
with 0 and any other command with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ._version import __version__
from .config import Config
from .errors import (
    AuthenticationError,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    TinkerRecoveryError,
)
from .models import Checkpoint, TrainingRun
from .rest import RestClient

__all__ = ["main", "EXIT_OK", "EXIT_CORRUPTED", "EXIT_USAGE", "EXIT_API_ERROR"]

EXIT_OK = 0
EXIT_CORRUPTED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3

PROG = "tinker-recovery"


class _UsageError(Exception):
    """A bad setting found after parsing: exit 2."""


# --- formatting -----------------------------------------------------------------------------------


def _span(delta: timedelta) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``6d23h``: a duration rounded down to two units."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expiry(checkpoint: Checkpoint, now: datetime) -> str:
    if checkpoint.expires_at is None:
        return "never expires"
    if checkpoint.is_expired(now):
        return f"EXPIRED {_span(now - checkpoint.expires_at)} ago"
    return f"expires in {_span(checkpoint.expires_at - now)}"


def _status_line(run: TrainingRun, now: datetime) -> str:
    state = "CORRUPTED" if run.corrupted else "healthy"
    last = run.last_checkpoint
    if last is None:
        return f"{run.training_run_id}  {state}  no checkpoint"
    return (f"{run.training_run_id}  {state}  last checkpoint {last.tinker_path}  "
            f"saved {_span(now - last.time)} ago  {_expiry(last, now)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _describe(error: TinkerRecoveryError, config: Config, run_id: str | None = None) -> str:
    """One line saying what went wrong, without the key."""
    if isinstance(error, NotFound) and run_id is not None:
        return f"run {run_id} not found at {config.base_url}"
    if isinstance(error, AuthenticationError):
        return f"the API key was refused by {config.base_url} (HTTP 401); check --api-key or TINKER_API_KEY"
    if isinstance(error, PermissionDenied):
        return f"access denied by {config.base_url} (HTTP 403): {error}"
    if isinstance(error, ConnectionFailed):
        return f"cannot reach {config.base_url}: {error}"
    return f"{type(error).__name__}: {error}"


# --- commands -------------------------------------------------------------------------------------


def _status(args: argparse.Namespace, rest: RestClient) -> int:
    now = datetime.now(timezone.utc)
    code = EXIT_OK
    for run_id in args.run_ids:
        try:
            run = rest.get_training_run(run_id)
        except NotFound as error:
            _error(_describe(error, rest.config, run_id))
            code = EXIT_API_ERROR
            continue
        print(_status_line(run, now), flush=True)
        if run.corrupted and code == EXIT_OK:
            code = EXIT_CORRUPTED
    return code


def _checkpoints(args: argparse.Namespace, rest: RestClient) -> int:
    try:
        checkpoints = rest.list_checkpoints(args.run_id)
    except NotFound as error:
        _error(_describe(error, rest.config, args.run_id))
        return EXIT_API_ERROR
    if not checkpoints:
        print(f"run {args.run_id} has no checkpoints")
        return EXIT_OK
    now = datetime.now(timezone.utc)
    rows = [("NAME", "TYPE", "STEP", "SAVED", "AGE", "EXPIRY", "PATH")]
    for checkpoint in sorted(checkpoints, key=lambda c: c.time):
        step = checkpoint.step
        rows.append((checkpoint.name, checkpoint.checkpoint_type, "-" if step is None else str(step),
                     _utc(checkpoint.time), _span(now - checkpoint.time), _expiry(checkpoint, now),
                     checkpoint.tinker_path))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return EXIT_OK


def _watch_entry(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The journal's entry for a signal (``journal.entry_for``): what ``watch --json`` prints."""
    from .journal import entry_for

    return entry_for(event, payload)


def _watch_line(entry: Mapping[str, Any]) -> str:
    """One human line for a journal entry (its texts are escaped by ``entry_for``)."""
    text = f"{entry['time']}  {entry['event']}  {entry['run_id']}"
    if entry["event"] == "detected":
        text += f"  corrupted; last checkpoint {entry.get('checkpoint', 'none')}"
    if "reason" in entry:
        text += f"  {entry['reason']}"
    if "error" in entry:
        text += f"  ({entry['error']})"
    return text


def _watch(args: argparse.Namespace, rest: RestClient) -> int:
    """Print ``detected`` (a run turned corrupted) and ``poll_error`` lines from a detect-only
    Monitor until Ctrl-C (or the hidden ``--max-events`` / ``--duration``); on a terminal, a short
    heartbeat line per interval while nothing happens.

    First every run is read once (with the config's retries): an unknown run or an unusable key
    fails at once. Later errors are printed as ``poll_error`` and polling goes on.
    """
    from . import signals
    from .monitor import Monitor
    from .policy import Policy

    for run_id in args.run_ids:
        try:
            rest.get_training_run(run_id)
        except TinkerRecoveryError as error:
            _error(_describe(error, rest.config, run_id))
            return EXIT_API_ERROR
    interval_ms = max(1, round(args.interval * 1000))
    monitor = Monitor(None, Policy(poll_interval_ms=interval_ms), rest=rest, detect_only=True,
                      poll_mode="per_run", name="tinker_recovery.watch")
    done, lock = threading.Event(), threading.Lock()
    printed = 0

    def printer(event: str) -> Any:
        def receive(sender: Any, **payload: Any) -> None:
            nonlocal printed
            entry = _watch_entry(event, payload)
            with lock:
                print(json.dumps(entry) if args.json else _watch_line(entry), flush=True)
                printed += 1
                if args.max_events is not None and printed >= args.max_events:
                    done.set()

        return receive

    receivers = [(signal, printer(signal.name.rsplit(".", 1)[1]))
                 for signal in (signals.detected, signals.poll_error)]
    for signal, receiver in receivers:
        signal.connect(receiver, sender=monitor, weak=False)
    heartbeat = sys.stdout.isatty() and not args.json
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        monitor.start()
        for run_id in args.run_ids:
            monitor.monitor_run(run_id, None)
        print(f"{PROG}: watching {len(args.run_ids)} run(s) every {args.interval:g} s; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        while True:
            wait = args.interval if end is None else min(args.interval, end - time.monotonic())
            if wait <= 0 or done.wait(min(wait, threading.TIMEOUT_MAX)):
                return EXIT_OK
            if heartbeat:
                with lock:
                    print(f"{_utc(datetime.now(timezone.utc))}  heartbeat  watching {len(monitor.watched)} "
                          "run(s)", flush=True)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        monitor.stop(timeout=2.0)
        for signal, receiver in receivers:
            signal.disconnect(receiver)


def _fake_server(args: argparse.Namespace) -> int:
    from .testing import fake_server

    argv = ["--host", args.host, "--port", str(args.port), "--seed", str(args.seed),
            "--runs", str(args.runs), "--checkpoints", str(args.checkpoints)]
    return EXIT_OK if fake_server.main(argv) == 0 else EXIT_USAGE


# --- parsing --------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    # The connection options are accepted before and after the command; SUPPRESS keeps an option
    # given before the command from being reset by the subcommand's default.
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--base-url", default=argparse.SUPPRESS, metavar="URL",
                       help="the Tinker service (default: TINKER_BASE_URL, else the official service)")
    group.add_argument("--api-key", default=argparse.SUPPRESS, metavar="KEY",
                       help="default: TINKER_API_KEY (prefer the variable: arguments show in `ps`)")
    group.add_argument("--timeout", type=_positive_float, default=argparse.SUPPRESS, metavar="S",
                       help="time-out of each HTTP request in seconds (default 10)")
    group.add_argument("--retries", type=_count, default=argparse.SUPPRESS, metavar="N",
                       help="retries of a failed retryable request (default 2)")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[connection],
        description="Inspect and watch Tinker training runs for corruption; serve a FakeTinker.",
        epilog="Exit status: 0 ok, 1 status found a corrupted run, 2 usage, 3 API error.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", parents=[connection],
                                 help="is the run corrupted; its last checkpoint",
                                 description="Show whether each run is corrupted, its last checkpoint, the "
                                             "checkpoint's age and expiry. Exit 1 if a run is corrupted.")
    status.add_argument("run_ids", nargs="+", metavar="RUN_ID")

    checkpoints = commands.add_parser("checkpoints", parents=[connection], help="list a run's checkpoints",
                                      description="List a run's checkpoints, oldest first.")
    checkpoints.add_argument("run_id", metavar="RUN_ID")

    watch = commands.add_parser(
        "watch", parents=[connection], help="print recovery signals until Ctrl-C (detection only)",
        description="Poll the runs and print each signal (detected, poll_error) as a line, until Ctrl-C. "
                    "It only detects: recovering needs your training process. A run is reported "
                    "when it turns corrupted (again only after it read healthy in between).",
    )
    watch.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    watch.add_argument("--interval", type=_positive_float, default=15.0, metavar="S",
                       help="seconds between two polls of a run (default 15)")
    watch.add_argument("--json", action="store_true", help="print JSON lines (the journal's fields)")
    watch.add_argument("--max-events", type=_count, default=None, help=argparse.SUPPRESS)
    watch.add_argument("--duration", type=_positive_float, default=None, help=argparse.SUPPRESS)

    fake = commands.add_parser("fake-server", help="serve a FakeTinker on loopback (tests and demos)",
                               description="Serve a fake Tinker service until Ctrl-C; print its URL and key.")
    fake.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--seed", type=int, default=0)
    fake.add_argument("--runs", type=_count, default=0, help="seed this many runs")
    fake.add_argument("--checkpoints", type=_count, default=1, help="training checkpoints per seeded run")
    return parser


def _config(args: argparse.Namespace) -> Config:
    api_key = getattr(args, "api_key", None)
    if api_key is None and not os.environ.get("TINKER_API_KEY"):
        raise _UsageError("no API key: pass --api-key or set TINKER_API_KEY")
    try:
        return Config(api_key=api_key, base_url=getattr(args, "base_url", None),
                      timeout_s=getattr(args, "timeout", 10.0), max_retries=getattr(args, "retries", 2))
    except (TypeError, ValueError) as error:  # the messages name the field, never the key
        raise _UsageError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: 0 after --help/--version, 2 on a usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "fake-server":
        return _fake_server(args)
    try:
        config = _config(args)
    except _UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    command = {"status": _status, "checkpoints": _checkpoints, "watch": _watch}[args.command]
    try:
        with RestClient(config) as rest:
            return command(args, rest)
    except TinkerRecoveryError as error:
        _error(_describe(error, config))
        return EXIT_API_ERROR
    except ValueError as error:  # a malformed run id, refused before any request
        _error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
