"""A small, thread-safe client for the Tinker REST endpoints that recovery needs."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import backoff
import requests
from requests.adapters import HTTPAdapter

from ._ids import check_run_id
from ._json import JsonObject
from ._version import __version__
from .config import Config
from .errors import (
    ConnectionFailed,
    RequestTimeout,
    ResponseError,
    TinkerRecoveryError,
    error_for_status,
)
from .models import Checkpoint, Cursor, ParsedCheckpointTinkerPath, TrainingRun

__all__ = ["RestClient", "MAX_RESPONSE_BYTES", "RETRY_AFTER_CAP_S"]

log = logging.getLogger("tinker_recovery.rest")

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""Largest response body accepted; a larger one raises ResponseError."""
RETRY_AFTER_CAP_S = 60.0
"""A server's Retry-After is obeyed up to this many seconds."""
_BACKOFF_FACTOR_S = 0.5
_BACKOFF_CAP_S = 8.0
_API = "/api/v1"


def retry_after_s(headers: Any, now: float) -> float | None:
    """The server's retry hint in seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or
    HTTP date, ``now`` being the wall-clock time), capped at RETRY_AFTER_CAP_S; None if absent or bad."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, min(float(raw_ms) / 1000.0, RETRY_AFTER_CAP_S))
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - now
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP_S))


def _error_detail(body: bytes) -> str:
    """A short, printable detail from an error body (its JSON ``detail``/``error``/``message``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        for key in ("detail", "error", "message"):
            if isinstance(data.get(key), str):
                return data[key][:200]
    return str(data)[:200]


class RestClient:
    """Reads training runs and checkpoints over one ``requests.Session`` (connections are reused).

    ``session``: a session to use (the client then leaves closing it to you); None builds one with a
    connection pool of ``pool_size``. ``sleep``, ``clock`` and ``rng`` are the wait between retries,
    the monotonic clock bounding them, and the jitter source; tests inject them.

    Retryable failures (connection errors, time-outs, 408/409/429/5xx and garbled bodies) are
    retried up to ``config.max_retries`` times within ``config.retry_max_time_s``, with capped
    exponential backoff and jitter, waiting at least the server's Retry-After (up to 60 s). Other
    errors raise at once. Every error is a ``TinkerRecoveryError``. Redirects are not followed (they
    would carry the API key elsewhere): a 3xx raises a non-retryable ApiError.
    """

    def __init__(
        self,
        config: Config,
        session: requests.Session | None = None,
        *,
        pool_size: int = 32,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"config: expected a Config, got {type(config).__name__}")
        self.config = config
        self._owns_session = session is None
        self._send_kwargs: dict[str, Any] = {}
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # The environment's proxies and CA bundle are read once, here, as Config reads its
            # settings: with trust_env, requests scans os.environ (and ~/.netrc) on every call,
            # about a quarter of the CPU a poll costs. The API key is the only credential sent.
            self._send_kwargs = {
                "proxies": requests.utils.get_environ_proxies(config.base_url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True,
            }
            session.trust_env = False
        self._session = session
        self._headers = {
            "X-API-Key": config.api_key,
            "User-Agent": f"tinker-recovery/{__version__} python-requests/{requests.__version__}",
            "Accept": "application/json",
        }
        self._max_response_bytes = max_response_bytes
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"RestClient(base_url={self.config.base_url!r})"

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client built it."""
        if self._owns_session:
            self._session.close()

    # --- endpoints ------------------------------------------------------------------------------

    def get_training_run(
        self, run_id: str, *, timeout_s: float | None = None, max_retries: int | None = None
    ) -> TrainingRun:
        """``GET /training_runs/{run_id}``. ``timeout_s``/``max_retries`` override the config's."""
        check_run_id(run_id)
        data = self._get_json(f"/training_runs/{run_id}", timeout_s=timeout_s, max_retries=max_retries)
        return TrainingRun.from_json(data)

    def get_training_run_by_tinker_path(self, tinker_path: str) -> TrainingRun:
        """The run a checkpoint path belongs to (ValueError if the path does not parse)."""
        return self.get_training_run(ParsedCheckpointTinkerPath.from_tinker_path(tinker_path).training_run_id)

    def list_training_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> tuple[list[TrainingRun], Cursor]:
        """One page of the caller's training runs, and the cursor that places it."""
        for name, value, minimum in (("limit", limit, 1), ("offset", offset, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
        data = self._get_json(
            "/training_runs",
            params={"limit": limit, "offset": offset},
            timeout_s=timeout_s,
            max_retries=max_retries,
        )
        page = JsonObject(data, "TrainingRunsResponse")
        return page.list("training_runs", TrainingRun.from_json), page.nested(
            "cursor", Cursor.from_json, required=True
        )

    def iter_training_runs(self, page_size: int = 100) -> Iterator[TrainingRun]:
        """Every training run, fetched ``page_size`` at a time."""
        offset = 0
        while True:
            runs, cursor = self.list_training_runs(limit=page_size, offset=offset)
            yield from runs
            offset += len(runs)
            if not runs or offset >= cursor.total_count:
                return

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Every checkpoint of ``run_id``, in the order the service lists them."""
        check_run_id(run_id)
        data = self._get_json(f"/training_runs/{run_id}/checkpoints")
        return JsonObject(data, "CheckpointsListResponse").list("checkpoints", Checkpoint.from_json)

    # --- transport ------------------------------------------------------------------------------

    def _get_json(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> Any:
        retries = self.config.max_retries if max_retries is None else max_retries
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + self.config.retry_max_time_s
        delays = backoff.expo(factor=_BACKOFF_FACTOR_S, max_value=_BACKOFF_CAP_S)
        next(delays)  # backoff's generators are primed before their first value
        for retry in range(retries + 1):
            try:
                return self._get_once(path, params, timeout)
            except TinkerRecoveryError as error:
                if not error.retryable or retry == retries:
                    raise
                delay = next(delays) * (1.0 - 0.25 * self._rng.random())
                hint = getattr(error, "retry_after_s", None)
                if hint is not None:
                    delay = max(delay, hint)
                if self._clock() + delay > deadline:
                    raise
                log.debug("GET %s failed (%s); retry %d in %.2f s", path, error, retry + 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(self, path: str, params: dict[str, Any] | None, timeout: float) -> Any:
        what = f"GET {_API}{path}"
        try:
            response = self._session.get(
                self.config.base_url + _API + path,
                params=params,
                headers=self._headers,
                timeout=timeout,
                stream=True,
                allow_redirects=False,  # a redirect would carry X-API-Key to wherever it points
                **self._send_kwargs,
            )
        except requests.Timeout:
            raise RequestTimeout(f"{what}: no answer within {timeout:g} s") from None
        except requests.RequestException as error:
            raise ConnectionFailed(f"{what}: {type(error).__name__}") from None
        with response:
            body = self._read_body(response, what)
            if response.status_code >= 300:
                body = body.replace(self.config.api_key.encode(), b"<redacted>")  # a server may echo it
                hint = retry_after_s(response.headers, time.time())
                raise error_for_status(
                    response.status_code,
                    f"{what}: HTTP {response.status_code}: {_error_detail(body)}",
                    retry_after_s=hint,
                )
        try:
            return json.loads(body)
        except ValueError:
            raise ResponseError(f"{what}: response is not JSON ({len(body)} bytes)") from None

    def _read_body(self, response: requests.Response, what: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_response_bytes:
            raise ResponseError(f"{what}: response of {declared} bytes exceeds {self._max_response_bytes}")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise ResponseError(f"{what}: response exceeds {self._max_response_bytes} bytes")
                chunks.append(chunk)
        except requests.Timeout:
            raise RequestTimeout(f"{what}: body not received within the time-out") from None
        except requests.RequestException as error:
            raise ConnectionFailed(f"{what}: connection broke while reading: {type(error).__name__}") from None
        return b"".join(chunks)
