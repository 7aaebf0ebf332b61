"""FakeTinker: a loopback HTTP/1.1 server that speaks the Tinker wire protocol (SDK 0.38).

The official ``tinker`` SDK, unmodified, can train against it: sessions, LoRA training clients,
forward_backward (protobuf) and optim_step on a tiny real model, save_state, training clients from
state (with or without optimizer), sampling clients (``save_weights_and_get_sampling_client``,
``create_sampling_client``, ``sample``, ``compute_logprobs``) and the RestClient views. Tests and
demos control it through Python (``add_run``, ``corrupt``, ``add_fault``, ``requests``, ``loads``,
``advance_clock``) or the ``/_fake/...`` admin endpoints (the table is in ``_admin.py``'s docstring
and below).

Run it by hand with ``python -m tinker_recovery.testing.fake_server --port 8000 --runs 1``; it
prints its URL and key. Then, with ``H="X-API-Key: $TINKER_API_KEY"`` and ``F=$TINKER_BASE_URL/_fake``:

- corrupt a run: ``curl -H "$H" -X POST $F/runs/$RUN/corrupt -d '{}'``
- add a fault: ``curl -H "$H" -X POST $F/faults -d '{"path": "training_runs", "status": 503, "times": 2}'``
- move the clock (checkpoint expiry): ``curl -H "$H" -X POST $F/clock/advance -d '{"seconds": 7200}'``
- see what was loaded: ``curl -H "$H" $F/loads``
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

from ._admin import handle_admin
from ._api import Api, Response, error_response
from ._clock import ClockLike, FakeClock
from ._common import ApiProblem, iso
from ._faults import FaultRule, FaultTable
from ._http import Server
from ._served import RequestLog, ServedRequest
from ._state import FakeState
from ._store import Load

__all__ = ["FakeTinker", "corrupt_after_saves_banner", "main"]

logger = logging.getLogger("tinker_recovery.testing.fake_server")


class FakeTinker:
    """A fake Tinker service on ``host``:``port`` (0 picks a free port), for tests and demos.

    - ``api_key``: the only key accepted in ``X-API-Key``; None makes a random ``tml-fake-...`` key.
    - ``seed``: seeds the models' initial weights, the session ids and fault probabilities.
    - ``clock``: FakeTinker's time, for timestamps, checkpoint expiry and the ``seq_id`` gap
      time-out: a ``tinker_recovery`` clock (``ManualClock``: its ``now()`` and ``monotonic()``),
      or a callable returning epoch seconds (used for both), or None (``time.time`` and
      ``time.monotonic``). ``advance_clock`` (or ``POST /_fake/clock/advance``) moves it forward.
      Injected latency and the ``try_again`` hold always wait in real time.
    - ``try_again_hold_s``: how long ``retrieve_future`` holds an unfinished future before answering
      ``try_again`` (the official client re-polls at once). 0 answers at once.
    - ``seq_gap_timeout_s``: operations run in each model's ``seq_id`` order; when a client gave up
      on a ``seq_id`` (e.g. after a malformed answer), later ones wait this long, then the gap is
      skipped and a late arrival of the missing ``seq_id`` fails.
    - ``max_logged_requests``: the request log keeps only the most recent entries.
    - ``answer_delay_s``: every ``/api/v1`` answer waits this long first (0 to 60 s; admin
      ``/_fake/`` answers never wait), like a remote service's round trip; fault latency adds to it.
    - ``corrupt_after_saves``: N >= 1 makes every training run a client creates
      (``create_lora_training_client``) read ``corrupted: true`` right after its N-th ``save_state``,
      so that a script run unchanged against the fake sees a recovery. Runs restored from a
      checkpoint and runs seeded by ``add_run`` are never corrupted by it. None (default): off.

    Sampling: ``save_weights_and_get_sampling_client``, ``create_sampling_client(model_path=...)``
    (a sampler or training checkpoint) or ``(base_model=...)`` give samplers that hold a snapshot of
    the weights. ``sample`` continues the prompt with the bigram model (ids ``0 .. 63``; honours
    ``max_tokens``, ``temperature`` (0: greedy), ``top_k``, ``top_p``, ``seed`` and integer ``stop``
    tokens) and reports the same logprobs ``forward_backward`` would; ``compute_logprobs`` scores a
    prompt. Without ``seed`` the draw is decided by FakeTinker's ``seed``, the sampler and ``seq_id``.
    String ``stop`` sequences, top-k logprobs, ``target_prompt_logprobs`` and ``prompt_alt_tokens_k``
    are refused with a 400 naming the option.

    What happened: ``requests`` (each load with its checkpoint path and optimizer flag), ``loads()``,
    ``source_checkpoint(run_id)``, ``describe_run(run_id)`` and ``load_weights_count(run_id)``.

    ``start()`` (or ``with``) binds and serves on named daemon threads; ``stop()`` closes the
    listening socket and every keep-alive connection and joins all threads. Not restartable.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: ClockLike | None = None,
        try_again_hold_s: float = 0.5,
        seq_gap_timeout_s: float = 2.0,
        max_logged_requests: int = 100_000,
        answer_delay_s: float = 0.0,
        corrupt_after_saves: int | None = None,
    ) -> None:
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty string or None")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        if not try_again_hold_s >= 0:
            raise ValueError(f"try_again_hold_s must be >= 0, got {try_again_hold_s!r}")
        if not seq_gap_timeout_s >= 0:
            raise ValueError(f"seq_gap_timeout_s must be >= 0, got {seq_gap_timeout_s!r}")
        if isinstance(answer_delay_s, bool) or not isinstance(answer_delay_s, (int, float)) or not (
            0 <= answer_delay_s <= 60
        ):
            raise ValueError(f"answer_delay_s must be a number in [0, 60] seconds, got {answer_delay_s!r}")
        if corrupt_after_saves is not None and (
            isinstance(corrupt_after_saves, bool)
            or not isinstance(corrupt_after_saves, int)
            or corrupt_after_saves < 1
        ):
            raise ValueError(
                f"corrupt_after_saves must be an integer >= 1 or None, got {corrupt_after_saves!r}"
            )
        self._answer_delay_s = float(answer_delay_s)
        self._api_key = api_key or f"tml-fake-{secrets.token_hex(16)}"
        self._host = host
        self._port = port
        self._clock = FakeClock(clock)
        self._state = FakeState(
            seed=seed,
            clock=self._clock,
            seq_gap_timeout_s=seq_gap_timeout_s,
            corrupt_after_saves=corrupt_after_saves,
        )
        self._api = Api(self._state, hold_s=try_again_hold_s)
        self._fault_table = FaultTable(seed)
        self._request_log = RequestLog(max_logged_requests)
        self._stop_event = threading.Event()
        self._lifecycle = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeTinker:
        """Bind and start serving; returns self. Idempotent while running; raises after stop()."""
        with self._lifecycle:
            if self._stopped:
                raise RuntimeError("FakeTinker was stopped and cannot be restarted")
            if self._server is None:
                server = Server((self._host, self._port), self)
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="tinker_recovery.fake_server",
                    daemon=True,
                )
                thread.start()
                self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close all connections and join the threads (each wait bounded by ``timeout``).

        Safe to call twice, or without start().
        """
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            server, thread = self._server, self._thread
        self._stop_event.set()
        self._state.stop()
        if server is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        server.shutdown()
        thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        for connection_thread in server.close_connections(deadline):
            connection_thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "not started"
        return f"FakeTinker({where}, runs={len(self._state.run_ids())}, stopped={self._stopped})"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``; raises RuntimeError before start()."""
        if self._server is None:
            raise RuntimeError("FakeTinker is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTinker is not started")
        return self._server.server_address[1]

    @property
    def api_key(self) -> str:
        return self._api_key

    # --- runs -----------------------------------------------------------------------------------

    def add_run(
        self,
        base_model: str = "Qwen/Qwen3-8B",
        checkpoints: int = 1,
        sampler_checkpoints: int = 0,
        corrupted: bool = False,
        ttl_seconds: float | None = None,
        user_metadata: Mapping[str, str] | None = None,
        lora_rank: int = 32,
    ) -> str:
        """Create a training run without a client and return its id (``<session>:train:<n>``).

        The run gets ``checkpoints`` training and ``sampler_checkpoints`` sampler checkpoints named
        ``step-000010``, ``step-000020``, ...; they hold the run's initial weights and a fresh
        optimizer. ``ttl_seconds`` sets their ``expires_at``. Raises ValueError/TypeError on bad values.
        """
        return self._state.add_run(
            base_model=base_model,
            checkpoints=checkpoints,
            sampler_checkpoints=sampler_checkpoints,
            corrupted=corrupted,
            ttl_seconds=ttl_seconds,
            user_metadata=user_metadata,
            lora_rank=lora_rank,
        )

    def corrupt(self, run_id: str, corrupted: bool = True) -> None:
        """Mark a run corrupted (or healthy again). Raises KeyError for an unknown run."""
        _lookup(lambda: self._state.corrupt(run_id, corrupted))

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run as ``GET /api/v1/training_runs/{id}`` shows it. Raises KeyError if unknown."""
        result: dict[str, Any] = _lookup(lambda: self._state.get_run(run_id))
        return result

    def describe_run(self, run_id: str) -> dict[str, Any]:
        """``get_run`` plus ``source_checkpoint`` (the tinker path this run's weights were loaded
        from, None for a run made by ``create_model`` or ``add_run``), ``source_optimizer`` (whether
        that load restored the optimizer; None without a load) and ``load_weights_count``.
        Raises KeyError if unknown. ``GET /_fake/runs/{id}`` answers the same."""
        result: dict[str, Any] = _lookup(lambda: self._state.admin_run(run_id))
        return result

    def source_checkpoint(self, run_id: str) -> str | None:
        """The checkpoint path the run's weights came from (a training client made from state, or
        the last ``load_state`` into it); None if never loaded. Raises KeyError if unknown."""
        load: Load | None = _lookup(lambda: self._state.source_checkpoint(run_id))
        return None if load is None else load.checkpoint

    def loads(self, run_id: str | None = None) -> list[Load]:
        """Every load carried out, oldest first, each with its checkpoint path, optimizer flag,
        the run it went into and the time; with ``run_id``, only loads of that run's checkpoints.

        As for ``load_weights_count``, only loads FakeTinker performed count (not faulted ones)."""
        return self._state.loads(run_id)

    def list_checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's live checkpoints, oldest first, as the REST API shows them."""
        page: dict[str, Any] = _lookup(lambda: self._state.list_checkpoints(run_id, None, 0))
        checkpoints: list[dict[str, Any]] = page["checkpoints"]
        return checkpoints

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Delete e.g. ``weights/step-000010``. Raises KeyError if the run or checkpoint is unknown."""
        _lookup(lambda: self._state.delete_checkpoint(run_id, checkpoint_id))

    @property
    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""
        return self._state.run_ids()

    def load_weights_count(self, run_id: str) -> int:
        """How many loads of this run's checkpoints were carried out successfully.

        A load counts when the fake actually performed it: requests answered by a fault rule
        (status, drop, malformed) never count; a latency-only rule does not stop a count.
        """
        return len(self._state.loads(run_id))

    # --- time -----------------------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> float:
        """Move FakeTinker's clock forward by ``seconds`` (finite, >= 0) and return the total offset.

        Checkpoints whose ``expires_at`` is passed are gone at once; timestamps move too. Raises
        ValueError for a negative or non-finite value.
        """
        offset = self._clock.advance(seconds)
        self._state.clock_moved()
        return offset

    def now(self) -> float:
        """FakeTinker's current time in epoch seconds (its clock plus any ``advance_clock``)."""
        return self._clock.time()

    def clock_json(self) -> dict[str, Any]:
        """``{"now": ISO time, "offset_s": seconds advanced}``, as ``GET /_fake/clock`` answers."""
        return {"now": iso(self._clock.time()), "offset_s": self._clock.offset_s}

    # --- faults and the request log -------------------------------------------------------------

    def add_fault(
        self,
        method: str | None = None,
        path: str = "",
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        latency_s: float = 0.0,
        drop: bool = False,
        malformed: bool = False,
        times: int | None = None,
        probability: float | None = None,
    ) -> FaultRule:
        """Add a fault rule (see FaultRule for each argument) and return it.

        ``path`` is a regular expression searched in the request path (no query string); ``method``
        None matches any method. Admin ``/_fake/`` requests are never faulted.
        """
        return self._fault_table.add(
            method=None if method is None else method.upper(),
            path=path,
            status=status,
            retry_after_s=retry_after_s,
            latency_s=latency_s,
            drop=drop,
            malformed=malformed,
            times=times,
            probability=probability,
        )

    def remove_fault(self, rule: FaultRule | int) -> bool:
        """Remove a rule; False if it was already gone (e.g. its ``times`` were used up)."""
        return self._fault_table.remove(rule)

    def clear_faults(self) -> None:
        self._fault_table.clear()

    @property
    def faults(self) -> list[FaultRule]:
        """The rules still active, in the order added."""
        return self._fault_table.rules()

    @property
    def requests(self) -> list[ServedRequest]:
        """A copy of the request log, oldest first."""
        return self._request_log.snapshot()

    def clear_requests(self) -> None:
        self._request_log.clear()

    # --- request handling (called by the connection threads) ------------------------------------

    def _authorized(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode("utf-8", "replace"), self._api_key.encode())

    def _respond_api(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response:
        if not self._authorized(headers.get("X-API-Key")):
            return error_response(401, "missing or invalid X-API-Key")
        return self._api.handle(method, path, query, headers, body)

    def _respond_admin(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Response:
        if not self._authorized(headers.get("X-API-Key")):
            return error_response(401, "missing or invalid X-API-Key")
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return error_response(400, "the request body is not valid JSON")
        if not isinstance(data, dict):
            return error_response(400, "the request body must be a JSON object")
        return handle_admin(self, method, path, query, data)


def corrupt_after_saves_banner(saves: int) -> str:
    """The line fake-server prints when ``--corrupt-after-saves`` is given."""
    which = "first save_state" if saves == 1 else f"save_state number {saves}"
    return f"each new training run reads corrupted right after its {which} (--corrupt-after-saves {saves})"


def _lookup(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiProblem as problem:
        if problem.status == 404:
            raise KeyError(problem.message) from None
        raise ValueError(problem.message) from None


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve a FakeTinker until Ctrl-C or SIGTERM; print its URL and key first."""
    parser = argparse.ArgumentParser(
        prog="python -m tinker_recovery.testing.fake_server",
        description="Serve a fake Tinker service on loopback for tests and demos.",
        epilog=(
            "Control it over HTTP with the printed key (header X-API-Key): POST /_fake/runs, "
            "POST /_fake/runs/RUN/corrupt, POST /_fake/faults, GET /_fake/requests, GET /_fake/loads, "
            'POST /_fake/clock/advance {"seconds": N}. The full table is in the docstring of '
            "tinker_recovery.testing._admin."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    parser.add_argument("--api-key", default=None, help="default: a random tml-fake-... key")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=0, help="seed this many runs with add_run()")
    parser.add_argument("--checkpoints", type=int, default=1, help="training checkpoints per seeded run")
    parser.add_argument(
        "--answer-delay-ms",
        type=float,
        default=0.0,
        help="delay every /api/v1 answer this long, like a remote service (default 0; max 60000)",
    )
    parser.add_argument(
        "--corrupt-after-saves",
        type=int,
        default=None,
        metavar="N",
        help="every training run a client creates reads corrupted right after its N-th save_state "
        "(restored runs never): a script run unchanged sees a recovery",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.answer_delay_ms <= 60_000:
        parser.error(f"--answer-delay-ms must be in [0, 60000], got {args.answer_delay_ms:g}")
    if args.corrupt_after_saves is not None and args.corrupt_after_saves < 1:
        parser.error(f"--corrupt-after-saves must be >= 1, got {args.corrupt_after_saves}")

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda _signum, _frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    fake = FakeTinker(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        seed=args.seed,
        answer_delay_s=args.answer_delay_ms / 1000.0,
        corrupt_after_saves=args.corrupt_after_saves,
    )
    try:
        fake.start()
        seeded = [fake.add_run(checkpoints=args.checkpoints) for _ in range(args.runs)]
        print(f"FakeTinker serving at {fake.base_url} (Ctrl-C to stop)", flush=True)
        print(f"TINKER_BASE_URL={fake.base_url}", flush=True)
        print(f"TINKER_API_KEY={fake.api_key}", flush=True)
        for run_id in seeded:
            print(f"seeded run {run_id}", flush=True)
        if args.corrupt_after_saves is not None:
            print(corrupt_after_saves_banner(args.corrupt_after_saves), flush=True)
        while not stop.wait(0.5):
            pass
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        fake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("FakeTinker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
