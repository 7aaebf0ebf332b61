"""The ``tinker-recovery`` command (also ``python -m tinker_recovery``).

    tinker-recovery [--base-url URL] [--api-key KEY] [--timeout S] [--retries N]
                    [--allow-insecure-http] COMMAND ...

    status RUN_ID...                       corrupted or healthy, the last checkpoint, its age and expiry
    checkpoints RUN_ID                     the run's checkpoints
    watch RUN_ID... [--interval S] [--json]  print each recovery signal until Ctrl-C (detection only)
    fake-server [--port P] [--runs N] [--corrupt-after-saves N]
                                           serve a FakeTinker on loopback for tests and demos
    fake corrupt RUN_ID [--heal]           drive a running FakeTinker through its /_fake/ admin API;
    fake add-run | fault | faults | clear-faults   (--base-url and --api-key: the fake's)

``--base-url`` and ``--api-key`` fall back to ``TINKER_BASE_URL`` and ``TINKER_API_KEY``, as Config
does; the global options may also follow the command. The key is never printed.

Exit status: 0 ok; 1 ``status`` found a corrupted run; 2 usage: bad arguments, a missing or malformed
API key or base URL, or a port fake-server cannot listen on; 3 API error: an unknown run, an
unreachable service, a refused key, an answer that cannot be read. An API error wins over a corrupted
run. Ctrl-C ends ``watch`` and ``fake-server`` with 0 and any other command with 130.

Every failure is one line on stderr (``tinker-recovery: error: ...``), never a traceback, and every
text that comes from a server (ids, paths, names, error details) is printed through
``tinker_recovery._text.escape_text``: no newline or control character reaches the terminal as itself.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote

from ._ids import check_run_id
from ._text import escape_text
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
from .redact import REDACTED as _REDACTED
from .redact import scrub
from .rest import RestClient

__all__ = ["EXIT_API_ERROR", "EXIT_CORRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

logger = logging.getLogger("tinker_recovery.cli")

EXIT_OK = 0
EXIT_CORRUPTED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_INTERRUPTED = 130

PROG = "tinker-recovery"
LINE_WIDTH = 100  # a ``status`` line fits this many columns for the ids Tinker hands out
_ERROR_LIMIT = 400  # characters of an error message (a server's body can be megabytes)
_MAX_RETRIES = 100
_MAX_SECONDS = threading.TIMEOUT_MAX  # the longest wait the standard library accepts
_ADMIN_ANSWER_LIMIT = 1 << 20  # bytes read of an admin answer


class _UsageError(Exception):
    """A bad setting found after parsing: exit 2."""


class _AdminError(Exception):
    """An admin request to a FakeTinker failed: exit 3. The message is one line, without the key."""


# --- text -----------------------------------------------------------------------------------------

_KEYS_GIVEN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("keys_given", default=())
"""The API keys the command line being run carries (``_keys_given``), hidden from every error line:
a usage error comes before the arguments are known, and may echo a value that is the key."""


def _keys_given(argv: Sequence[str]) -> tuple[str, ...]:
    """Every API key ``argv`` carries (``--api-key KEY``, ``--api-key=KEY``, or any abbreviation of
    the option, down to ``--a``: argparse accepts the ones no other option shares, e.g. ``--ap``),
    and ``TINKER_API_KEY``; empty ones left out."""
    keys = [os.environ.get("TINKER_API_KEY", "")]
    for index, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if len(name) < len("--a") or not "--api-key".startswith(name):
            continue
        if equals:
            keys.append(value)
        elif index + 1 < len(argv):
            keys.append(argv[index + 1])
    return tuple(key for key in keys if key)


def _hide_key(text: str, key: str | None) -> str:
    """``text`` with ``key`` replaced in every form ``redact.scrub`` knows (raw, without its ``tml-``
    prefix, backslash, JSON, URL and HTML escapes, base64), and also where it hides behind JSON
    (``\\u0074``, ``\\/``) or URL escapes in a mix scrub does not read (the text is shown decoded then).
    None or an empty key: ``text`` unchanged."""
    if not key:
        return text
    text = scrub(text, key)
    decoded = re.sub(r"\\u([0-9a-fA-F]{4})", lambda match: chr(int(match.group(1), 16)), text)
    decoded = decoded.replace("\\/", "/")
    for candidate in (decoded, unquote(decoded)):
        if key in candidate:
            return candidate.replace(key, _REDACTED)
    return text


def _line(value: object, limit: int | None = None) -> str:
    """One safe line of server or user text (see ``escape_text``)."""
    return escape_text(value, limit)


def _one_line(text: str) -> str:
    return _line(" ".join(str(text).split()))


def _error(message: str) -> None:
    """One error line on stderr, with any API key the command line carries hidden (``_KEYS_GIVEN``:
    a value the user gave both as the key and elsewhere, a bad option say, is not echoed)."""
    text = str(message)
    for key in _KEYS_GIVEN.get():
        text = _hide_key(text, key)
    print(f"{PROG}: error: {escape_text(' '.join(text.split()), _ERROR_LIMIT)}", file=sys.stderr, flush=True)


# --- formatting -----------------------------------------------------------------------------------


def _span(delta: timedelta) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``6d23h``: a duration rounded down to two units (0 if negative)."""
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


def _between(later: datetime, earlier: datetime) -> str:
    """``_span(later - earlier)``; ``?`` when the two cannot be subtracted (a date at the edge of
    the calendar, e.g. year 1 with a positive offset)."""
    try:
        return _span(later - earlier)
    except (OverflowError, ValueError, TypeError):
        return "?"


def _utc(moment: datetime) -> str:
    """``2026-01-01T12:00:00Z`` (a four-digit year, which ``strftime("%Y")`` does not give on every
    platform); a moment that has no UTC form in a datetime is shown as given."""
    try:
        return moment.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    except (OverflowError, ValueError):  # 9999-12-31T23:59:59-05:00 is past year 9999 in UTC
        return _line(moment.isoformat())


def _expiry(checkpoint: Checkpoint, now: datetime) -> str:
    expires_at = checkpoint.expires_at
    if expires_at is None:
        return "never expires"
    try:
        expired = expires_at <= now
    except (OverflowError, TypeError):
        return "expiry unknown"
    if expired:
        return f"EXPIRED {_between(now, expires_at)} ago"
    return f"expires in {_between(expires_at, now)}"


def _name(checkpoint: Checkpoint) -> str:
    """The checkpoint's name (the part of its id after ``weights/``), as the server sent it."""
    return checkpoint.checkpoint_id.rpartition("/")[2] or checkpoint.checkpoint_id


def _step(checkpoint: Checkpoint) -> str:
    try:
        step = checkpoint.step
    except Exception:  # a server's odd name or metadata: the table still prints
        return "?"
    return "-" if step is None else str(step)


def _status_line(run_id: str, run: TrainingRun, now: datetime) -> str:
    """``RUN_ID  healthy    step-000020  12s ago  expires in 59m58s``: the run id (as asked) once,
    the state, the last checkpoint's name, its age and expiry. The checkpoint's name is cut (``…``)
    so that the line fits ``LINE_WIDTH`` columns."""
    state = "CORRUPTED" if run.corrupted else "healthy  "
    head = f"{_line(run_id)}  {state}"
    last = run.last_checkpoint
    if last is None:
        return f"{head}  no checkpoint"
    tail = f"{_between(now, last.time)} ago  {_expiry(last, now)}"
    room = max(8, LINE_WIDTH - len(head) - len(tail) - 4)  # 8: a cut name still reads as one
    return f"{head}  {escape_text(_name(last), room)}  {tail}"


def _describe(error: TinkerRecoveryError, config: Config, run_id: str | None = None) -> str:
    """One line saying what went wrong, without the key."""
    where = _line(config.base_url)
    if isinstance(error, NotFound) and run_id is not None:
        text = f"run {run_id} not found at {where}"
    elif isinstance(error, AuthenticationError):
        text = f"the API key was refused by {where} (HTTP 401); check --api-key or TINKER_API_KEY"
    elif isinstance(error, PermissionDenied):
        text = f"access denied by {where} (HTTP 403): {error}"
    elif isinstance(error, ConnectionFailed):
        text = f"cannot reach {where}: {error}"
    else:
        text = f"{type(error).__name__}: {error}"
    return _hide_key(text, config.api_key)


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
        print(_status_line(run_id, run, now), flush=True)
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
        print(f"run {_line(args.run_id)} has no checkpoints")
        return EXIT_OK
    now = datetime.now(timezone.utc)
    rows = [("NAME", "TYPE", "STEP", "SAVED", "AGE", "EXPIRY", "PATH")]
    for checkpoint in sorted(checkpoints, key=_sort_key):
        rows.append((_line(_name(checkpoint)), _line(checkpoint.checkpoint_type), _step(checkpoint),
                     _utc(checkpoint.time), _between(now, checkpoint.time), _expiry(checkpoint, now),
                     _line(checkpoint.tinker_path)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return EXIT_OK


def _sort_key(checkpoint: Checkpoint) -> float:
    """Oldest first; a date the platform cannot turn into a timestamp sorts by its year."""
    try:
        return checkpoint.time.timestamp()
    except (OverflowError, ValueError, OSError):
        return (checkpoint.time.year - 1970) * 31_556_952.0


def _watch_entry(event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The journal's entry for a signal (``journal.entry_for``): what ``watch --json`` prints."""
    from .journal import entry_for

    return entry_for(event, payload)


def _watch_time(text: Any) -> str:
    """A journal entry's ISO time as the heartbeat shows time (``2026-12-07T11:06:17Z``)."""
    try:
        return _utc(datetime.fromisoformat(str(text)))
    except (TypeError, ValueError):
        return str(text)


def _watch_line(entry: Mapping[str, Any]) -> str:
    """One human line for a journal entry, its time to the second in UTC like the heartbeat's
    (``--json`` keeps the entry's exact time). ``entry_for`` escapes the reason and the error; the
    checkpoint path is the server's as sent (the journal is JSON), so it is escaped here."""
    text = f"{_watch_time(entry['time'])}  {entry['event']}  {_line(entry['run_id'])}"
    if entry["event"] == "detected":
        text += f"  corrupted; last checkpoint {_line(entry.get('checkpoint', 'none'), 300)}"
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

    receivers = [(sig, printer(sig.name.rsplit(".", 1)[1])) for sig in (signals.detected, signals.poll_error)]
    for sig, receiver in receivers:
        sig.connect(receiver, sender=monitor, weak=False)
    heartbeat = sys.stdout.isatty() and not args.json
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        monitor.start()
        for run_id in args.run_ids:
            monitor.monitor_run(run_id, None)
        print(f"{PROG}: watching {len(args.run_ids)} run(s) every {args.interval:g} s; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        seen = 0
        while True:
            wait = args.interval if end is None else min(args.interval, end - time.monotonic())
            if wait <= 0 or done.wait(min(wait, threading.TIMEOUT_MAX)):
                return EXIT_OK
            with lock:
                quiet, seen = printed == seen, printed
                if heartbeat and quiet:  # an interval that printed a signal needs no heartbeat
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
    """Serve a FakeTinker until Ctrl-C or SIGTERM; print its URL, key and seeded runs first."""
    from .testing import FakeTinker

    stop = threading.Event()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if on_main_thread:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda _signum, _frame: stop.set())
    try:
        fake = FakeTinker(host=args.host, port=args.port, seed=args.seed,
                          corrupt_after_saves=args.corrupt_after_saves)
    except (TypeError, ValueError) as error:
        _restore(previous)
        _error(f"fake-server: {error}")
        return EXIT_USAGE
    try:
        try:
            fake.start()
        except OSError as error:
            _error(f"fake-server: cannot listen on {args.host}:{args.port}: {error.strerror or error}")
            return EXIT_USAGE
        seeded = [fake.add_run(checkpoints=args.checkpoints) for _ in range(args.runs)]
        print(f"FakeTinker serving at {fake.base_url} (Ctrl-C to stop)", flush=True)
        print(f"TINKER_BASE_URL={fake.base_url}", flush=True)
        print(f"TINKER_API_KEY={fake.api_key}", flush=True)
        for run_id in seeded:
            print(f"seeded run {run_id}", flush=True)
        if args.corrupt_after_saves is not None:
            from .testing.fake_server import corrupt_after_saves_banner

            print(corrupt_after_saves_banner(args.corrupt_after_saves), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # the handlers could not be installed (not the main thread)
        pass
    finally:
        fake.stop()
        _restore(previous)
    print("FakeTinker stopped", flush=True)
    return EXIT_OK


def _restore(previous: dict[int, Any]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


# --- fake: the /_fake/ admin API of a running FakeTinker ------------------------------------------


def _admin(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin request to the FakeTinker at ``config.base_url``; the decoded JSON answer.

    No proxy, no redirect, the config's time-out; raises _AdminError with a one-line message naming
    the request for any failure (unreachable, non-2xx, an answer that is not JSON)."""
    import requests

    url = f"{config.base_url}/_fake/{path}"
    what = f"{method} /_fake/{path}"
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no ~/.netrc: the key goes only to the fake
        try:
            response = session.request(method, url, json=body, timeout=config.timeout_s, stream=True,
                                       allow_redirects=False, headers={"X-API-Key": config.api_key})
            with response:
                raw = response.raw.read(_ADMIN_ANSWER_LIMIT + 1, decode_content=True)
                status = response.status_code
        except requests.RequestException as error:
            raise _AdminError(f"cannot reach {config.base_url}: {type(error).__name__}") from None
    if len(raw) > _ADMIN_ANSWER_LIMIT:
        raise _AdminError(f"{what}: the answer is larger than {_ADMIN_ANSWER_LIMIT} bytes")
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        data = None
        if 200 <= status < 300:
            raise _AdminError(f"{what}: HTTP {status} with an answer that is not JSON") from None
    if status == 401:
        raise _AdminError(f"the API key was refused by {config.base_url} (HTTP 401); pass the key "
                          "fake-server printed (--api-key or TINKER_API_KEY)")
    if not 200 <= status < 300:
        detail = data.get("detail") if isinstance(data, dict) else None
        text = f"{what}: HTTP {status}" + ("" if detail is None else f": {detail}")
        raise _AdminError(_hide_key(text, config.api_key))
    return data


def _fake_corrupt(args: argparse.Namespace, config: Config) -> int:
    run_id = check_run_id(args.run_id)
    _admin(config, "POST", f"runs/{quote(run_id, safe='')}/corrupt", {"corrupted": not args.heal})
    print(f"run {run_id} {'healthy' if args.heal else 'corrupted'}", flush=True)
    return EXIT_OK


def _fake_add_run(args: argparse.Namespace, config: Config) -> int:
    answer = _admin(config, "POST", "runs", {"checkpoints": args.checkpoints, "corrupted": args.corrupted})
    run_id = answer.get("run_id") if isinstance(answer, dict) else None
    if not isinstance(run_id, str):
        raise _AdminError("POST /_fake/runs: the answer names no run_id")
    print(_line(run_id), flush=True)
    return EXIT_OK


def _fake_fault(args: argparse.Namespace, config: Config) -> int:
    try:
        re.compile(args.path)
    except re.error as error:
        raise _UsageError(f"PATH_REGEX {args.path!r} is not a regular expression: {error}") from None
    method = None if args.method in ("*", "ANY") else args.method
    rule: dict[str, Any] = {"method": method, "path": args.path, "status": args.status,
                            "retry_after_s": args.retry_after, "latency_s": args.latency, "drop": args.drop,
                            "malformed": args.malformed, "times": args.times,
                            "probability": args.probability}
    answer = _admin(config, "POST", "faults", rule)
    rule_id = answer.get("id") if isinstance(answer, dict) else None
    print(f"fault {_line(rule_id)}: {_fault_text(answer if isinstance(answer, dict) else rule)}", flush=True)
    return EXIT_OK


def _fake_faults(args: argparse.Namespace, config: Config) -> int:
    answer = _admin(config, "GET", "faults")
    rules = answer.get("faults") if isinstance(answer, dict) else None
    if not isinstance(rules, list):
        raise _AdminError("GET /_fake/faults: the answer holds no list of faults")
    if not rules:
        print("no faults", flush=True)
    for rule in rules:
        if isinstance(rule, dict):
            print(f"fault {_line(rule.get('id'))}: {_fault_text(rule)}", flush=True)
    return EXIT_OK


def _fake_clear_faults(args: argparse.Namespace, config: Config) -> int:
    _admin(config, "DELETE", "faults")
    print("faults cleared", flush=True)
    return EXIT_OK


def _fault_text(rule: dict[str, Any]) -> str:
    """``GET ^/api/v1/training_runs/ -> HTTP 503, 2 time(s) left``: a fault rule on one line."""
    effects = []
    if rule.get("status") is not None:
        effects.append(f"HTTP {_line(rule['status'])}")
    if rule.get("retry_after_s") is not None:
        effects.append(f"Retry-After {_line(rule['retry_after_s'])} s")
    if rule.get("latency_s"):
        effects.append(f"{_line(rule['latency_s'])} s late")
    if rule.get("drop"):
        effects.append("connection dropped")
    if rule.get("malformed"):
        effects.append("malformed body")
    if rule.get("probability") is not None:
        effects.append(f"probability {_line(rule['probability'])}")
    remaining = rule.get("remaining", rule.get("times"))
    effects.append("every time" if remaining is None else f"{_line(remaining)} time(s) left")
    method = rule.get("method") or "ANY"
    return f"{_line(method)} {_line(rule.get('path'))} -> {', '.join(effects)}"


_FAKE_COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "corrupt": _fake_corrupt,
    "add-run": _fake_add_run,
    "fault": _fake_fault,
    "faults": _fake_faults,
    "clear-faults": _fake_clear_faults,
}


# --- parsing --------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    """A number of seconds > 0, finite and at most ``threading.TIMEOUT_MAX``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most {_MAX_SECONDS:.0f} seconds, got {text!r}")
    return value


def _non_negative_seconds(text: str) -> float:
    """Like ``_seconds``, and 0 is allowed."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return _seconds(text)


_positive_float = _seconds  # the name the watch command's options use


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {text}")
        return value

    parse.__name__ = "integer"
    return parse


def _count(text: str) -> int:
    """An integer >= 0 (and at most 10**6: a count larger than that is a typing mistake)."""
    return _bounded_int(0, 1_000_000)(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _method(text: str) -> str:
    method = text.upper()
    if not re.fullmatch(r"[A-Z]{1,16}|\*", method):
        raise argparse.ArgumentTypeError(f"expected an HTTP method (GET, POST, ...) or ANY, got {text!r}")
    return method


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line: ``tinker-recovery: error: ...`` and exit 2."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        _error(f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    # The connection options are accepted before and after the command; SUPPRESS keeps an option
    # given before the command from being reset by the subcommand's default.
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--base-url", default=argparse.SUPPRESS, metavar="URL",
                       help="the Tinker service (default: TINKER_BASE_URL, else the official service)")
    group.add_argument("--api-key", default=argparse.SUPPRESS, metavar="KEY",
                       help="default: TINKER_API_KEY (prefer the variable: arguments show in `ps`)")
    group.add_argument("--timeout", type=_seconds, default=argparse.SUPPRESS, metavar="S",
                       help="time-out of each HTTP request in seconds (default 10)")
    group.add_argument("--retries", type=_bounded_int(0, _MAX_RETRIES), default=argparse.SUPPRESS,
                       metavar="N",
                       help=f"retries of a failed retryable request, 0..{_MAX_RETRIES} (default 2)")
    group.add_argument("--allow-insecure-http", action="store_true", default=argparse.SUPPRESS,
                       help="allow a plain-http base URL that is not loopback (sends the key unencrypted)")

    parser = _Parser(
        prog=PROG, parents=[connection],
        description="Inspect and watch Tinker training runs for corruption; serve and drive a FakeTinker.",
        epilog="Exit status: 0 ok, 1 status found a corrupted run, 2 usage, 3 API error.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

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
                               description="Serve a fake Tinker service until Ctrl-C; print its URL, its key "
                                           "and the ids of the runs it seeded.")
    fake.add_argument("--port", type=_bounded_int(0, 65535), default=8000,
                      help="0..65535; 0 picks a free port (default 8000)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--seed", type=_bounded_int(0, 2**63 - 1), default=0)
    fake.add_argument("--runs", type=_count, default=1, help="seed this many runs (default 1; 0 for none)")
    fake.add_argument("--checkpoints", type=_count, default=1, help="training checkpoints per seeded run")
    fake.add_argument("--corrupt-after-saves", type=_bounded_int(1, 1_000_000), default=None, metavar="N",
                      help="every training run a client creates reads corrupted right after its N-th "
                           "save_state (restored runs never): a script run unchanged sees a recovery")

    _fake_parsers(commands, connection)
    from ._supervisor_cli import add_run_parser  # `run`: supervise a training command (supervisor.py)

    add_run_parser(commands, [connection])
    return parser


def _fake_parsers(commands: Any, connection: argparse.ArgumentParser) -> None:
    control = commands.add_parser(
        "fake", help="corrupt a run or add a fault on a running FakeTinker",
        description="Drive a running FakeTinker (fake-server) through its /_fake/ admin API. --base-url and "
                    "--api-key (or TINKER_BASE_URL and TINKER_API_KEY) are the ones fake-server printed.")
    actions = control.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)

    corrupt = actions.add_parser("corrupt", parents=[connection], help="mark a run corrupted (or healthy)",
                                 description="Mark a run corrupted; --heal marks it healthy again.")
    corrupt.add_argument("run_id", metavar="RUN_ID")
    corrupt.add_argument("--heal", action="store_true", help="mark the run healthy instead")

    add_run = actions.add_parser("add-run", parents=[connection], help="seed a run; print its id",
                                 description="Seed a training run and print its id.")
    add_run.add_argument("--checkpoints", type=_count, default=1, help="training checkpoints (default 1)")
    add_run.add_argument("--corrupted", action="store_true", help="seed it corrupted")

    fault = actions.add_parser(
        "fault", parents=[connection], help="answer matching requests with a fault",
        description="Add a fault rule: requests whose method is METHOD (ANY for all) and whose path matches "
                    "PATH_REGEX (searched, e.g. '^/api/v1/training_runs/') get the fault. Prints its id.")
    fault.add_argument("method", type=_method, metavar="METHOD")
    fault.add_argument("path", metavar="PATH_REGEX")
    fault.add_argument("--status", type=_bounded_int(100, 599), default=None, help="answer this HTTP status")
    fault.add_argument("--retry-after", type=_non_negative_seconds, default=None, metavar="S",
                       help="with --status: a Retry-After header")
    fault.add_argument("--latency", type=_non_negative_seconds, default=0.0, metavar="S",
                       help="answer this many seconds late")
    fault.add_argument("--drop", action="store_true", help="close the connection without answering")
    fault.add_argument("--malformed", action="store_true", help="answer a body that is not valid JSON")
    fault.add_argument("--times", type=_bounded_int(1, 1_000_000), default=None,
                       help="only the next N matching requests (default: every one)")
    fault.add_argument("--probability", type=_probability, default=None, help="fault each request with P")

    actions.add_parser("faults", parents=[connection], help="list the active fault rules")
    actions.add_parser("clear-faults", parents=[connection], help="remove every fault rule")


def _config(args: argparse.Namespace) -> Config:
    api_key = getattr(args, "api_key", None)
    if api_key is None and not os.environ.get("TINKER_API_KEY"):
        raise _UsageError("no API key: pass --api-key or set TINKER_API_KEY")
    try:
        return Config(api_key=api_key, base_url=getattr(args, "base_url", None),
                      timeout_s=getattr(args, "timeout", 10.0), max_retries=getattr(args, "retries", 2),
                      allow_insecure_http=getattr(args, "allow_insecure_http", False))
    except Exception as error:  # the messages name the field, never the key; none is a traceback
        message = str(error).replace("allow_insecure_http=True", "--allow-insecure-http")
        if not isinstance(error, (TypeError, ValueError)):
            message = f"the settings cannot be used: {type(error).__name__}: {message}"
        raise _UsageError(_hide_key(message, api_key or os.environ.get("TINKER_API_KEY"))) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring).

    Never raises (SystemExit included) and never prints a traceback: a failure is one line on stderr."""
    try:
        return _main(None if argv is None else list(argv))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    given = _KEYS_GIVEN.set(_keys_given(sys.argv[1:] if argv is None else argv))
    try:
        return _command(argv)
    finally:
        _KEYS_GIVEN.reset(given)


def _command(argv: list[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: 0 after --help/--version, 2 on a usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    config: Config | None = None
    try:
        if args.command == "fake-server":
            return _fake_server(args)
        config = _config(args)
        if args.command == "fake":
            return _FAKE_COMMANDS[args.action](args, config)
        if args.command == "run":  # the supervisor keeps its own REST client and exit statuses
            from ._supervisor_cli import run_from_args

            return run_from_args(args, config)
        command = {"status": _status, "checkpoints": _checkpoints, "watch": _watch}[args.command]
        with RestClient(config) as rest:
            return command(args, rest)
    except _UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except TinkerRecoveryError as error:
        _error(_describe(error, config) if config is not None else f"{type(error).__name__}: {error}")
        return EXIT_API_ERROR
    except _AdminError as error:
        _error(str(error))
        return EXIT_API_ERROR
    except ValueError as error:  # a malformed run id, refused before any request
        _error(_hide_key(str(error), None if config is None else config.api_key))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug, or an answer nothing above expected: still one line, exit 3
        logger.debug("%s failed", args.command, exc_info=True)
        where = "the service" if config is None else config.base_url
        _error(_hide_key(f"cannot use the answer of {where}: {type(error).__name__}: {error}",
                         None if config is None else config.api_key))
        return EXIT_API_ERROR
