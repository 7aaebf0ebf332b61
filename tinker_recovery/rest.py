"""A small, thread-safe client for the Tinker REST endpoints that recovery needs."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

import attrs
import backoff
import requests

from . import _http
from ._checks import check_int
from ._healthy_page import healthy_page
from ._ids import check_run_id
from ._json import JsonObject, loads
from ._version import __version__
from ._wire import RETRY_AFTER_CAP_S, error_detail, retry_after_s
from .config import Config
from .errors import ResponseError, TinkerRecoveryError, error_for_status
from .models import (
    Checkpoint,
    Cursor,
    ParsedCheckpointTinkerPath,
    RunBrief,
    TrainingRun,
    ids_and_corrupted,
)

__all__ = [
    "RestClient",
    "MAX_RESPONSE_BYTES",
    "RETRY_AFTER_CAP_S",
    "MAX_LIST_PAGES",
    "retry_after_s",
]

log = logging.getLogger("tinker_recovery.rest")

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""Largest response body accepted; a larger one raises ResponseError."""
MAX_LIST_PAGES = 1000
"""``iter_training_runs`` reads at most this many pages (a server whose total keeps growing
cannot keep one listing going for ever)."""
_BACKOFF_FACTOR_S = 0.5
_BACKOFF_CAP_S = 8.0
_API = "/api/v1"


class RestClient:
    """Reads training runs and checkpoints over one ``requests.Session`` (connections are reused).

    ``session``: a session to use (the client then leaves closing it to you); None builds one with a
    connection pool of ``pool_size``. ``sleep``, ``clock`` and ``rng`` are the wait between retries,
    the monotonic clock bounding them, and the jitter source; tests inject them.

    Every request has a total deadline of ``config.timeout_s`` (connect, headers and body, however
    slowly the server sends them), capped to what is left of ``config.retry_max_time_s``: a call with
    its retries ends within ``retry_max_time_s`` (plus the time to close the socket).
    Retryable failures (connection errors, time-outs, 408/409/429/5xx and garbled bodies) are
    retried up to ``config.max_retries`` times within ``config.retry_max_time_s``, with capped
    exponential backoff and jitter, waiting at least the server's Retry-After (up to 60 s). Other
    errors raise at once. Every error is a ``TinkerRecoveryError`` with one-line text, no chained
    context and no trace of the API key (see ``tinker_recovery.redact``). Redirects are not followed
    (they would carry the API key elsewhere): a 3xx raises a non-retryable ApiError. A loopback
    base URL never goes through a proxy. Not picklable (it holds the key).
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
            session = _http.new_session(pool_size)
            # The environment's proxies and CA bundle are read once, here, as Config reads its
            # settings: with trust_env, requests scans os.environ (and ~/.netrc) on every call,
            # about a quarter of the CPU a poll costs. The API key is the only credential sent.
            # A loopback URL never uses a proxy (``_http.exchange`` enforces it on every request).
            self._send_kwargs = {
                "proxies": requests.utils.get_environ_proxies(config.base_url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True,
            }
        self._session = session
        self._direct = (
            _http.DirectGet.for_session(
                session, config.base_url, self._send_kwargs["proxies"], self._send_kwargs["verify"]
            )
            if self._owns_session
            else None
        )
        self._headers = {
            "X-API-Key": config.api_key,
            "User-Agent": f"tinker-recovery/{__version__} python-requests/{requests.__version__}",
            "Accept": "application/json",
        }
        # what requests adds on its own path, for the direct one
        self._direct_headers = {
            **self._headers, "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"
        }
        self._max_response_bytes = max_response_bytes
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"RestClient(base_url={self.config.base_url!r})"

    def __reduce__(self) -> Any:
        raise TypeError("RestClient holds the API key and a live session; it cannot be pickled")

    def __enter__(self) -> Self:
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

    def get_training_run_brief(
        self, run_id: str, *, timeout_s: float | None = None, max_retries: int | None = None
    ) -> RunBrief:
        """``GET /training_runs/{run_id}`` read cheaply for monitoring: a RunBrief
        (``training_run_id``, ``corrupted``, ``last_checkpoint`` parsed on first access), not a
        full TrainingRun. Raises ResponseError when those fields are malformed; other fields are
        not looked at. ``timeout_s``/``max_retries`` override the config's."""
        check_run_id(run_id)
        data = self._get_json(f"/training_runs/{run_id}", timeout_s=timeout_s, max_retries=max_retries)
        return RunBrief.from_json(data)

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
        """One page of the caller's training runs, and the cursor that places it.

        ``limit`` >= 1, ``offset`` >= 0 (ValueError otherwise). Any malformed item fails the page
        with ResponseError; ``list_training_runs_brief`` skips such items instead."""
        data = self._get_page(limit, offset, timeout_s, max_retries)
        page = JsonObject(data, "TrainingRunsResponse")
        cursor = page.nested("cursor", Cursor.from_json, required=True)
        assert cursor is not None
        return page.items("training_runs", TrainingRun.from_json), cursor

    def list_training_runs_brief(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> tuple[list[RunBrief], Cursor, int]:
        """One page of runs read cheaply for monitoring: ``(briefs, cursor, skipped)``.

        Each item gives a RunBrief (``training_run_id``, ``corrupted``, and ``last_checkpoint``
        parsed lazily). An item that does not parse is skipped, counted in ``skipped`` and logged at
        DEBUG, rather than failing the page; a page whose envelope (list, cursor) is malformed
        raises ResponseError. ``limit`` >= 1, ``offset`` >= 0 (ValueError otherwise).
        """
        data = self._get_page(limit, offset, timeout_s, max_retries)
        return _briefs_of(data, offset)

    def list_training_runs_health(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> tuple[list[str], list[RunBrief], Cursor, int]:
        """One page of runs read for monitoring at the least CPU: ``(run_ids, corrupted, cursor,
        skipped)``.

        ``run_ids``: the id of every item that parses, in page order; ``corrupted``: a RunBrief of
        each corrupted one among them (kept whole: ``RunBrief.full()``); ``skipped``: items that do
        not parse, as in ``list_training_runs_brief``, whose answer this always equals. A page with
        no corrupted run is decoded for the ids alone (``_healthy_page``: about a tenth of the CPU
        of decoding every field, issue 16); any other page is read the tolerant way. Raises as
        ``list_training_runs_brief`` does (ValueError for ``limit`` < 1 or ``offset`` < 0).
        """
        data = self._get_page(limit, offset, timeout_s, max_retries, decode=_healthy_or_json)
        if type(data) is _Healthy:
            return data.run_ids, [], data.cursor, 0
        briefs, cursor, skipped = _briefs_of(data, offset)
        run_ids, corrupted = ids_and_corrupted(briefs)
        return run_ids, corrupted, cursor, skipped

    def iter_training_runs(
        self, page_size: int = 100, *, max_pages: int = MAX_LIST_PAGES
    ) -> Iterator[TrainingRun]:
        """Every training run, fetched ``page_size`` at a time, at most ``max_pages`` pages.

        Stops at an empty page, at the cursor's ``total_count``, or after ``max_pages`` pages
        (logged at WARNING: a server whose total keeps growing cannot hold a listing for ever).
        """
        offset = 0
        for _page in range(max_pages):
            runs, cursor = self.list_training_runs(limit=page_size, offset=offset)
            yield from runs
            offset += len(runs)
            if not runs or offset >= cursor.total_count:
                return
        log.warning("listing stopped after %d pages (%d runs); the server reports more", max_pages, offset)

    def _get_page(
        self,
        limit: Any,
        offset: Any,
        timeout_s: float | None,
        max_retries: int | None,
        decode: Callable[[bytes, str], Any] = loads,
    ) -> Any:
        """``GET /training_runs?limit=&offset=`` decoded by ``decode`` (``limit`` >= 1, ``offset``
        >= 0, ValueError otherwise)."""
        check_int("limit", limit, minimum=1)
        check_int("offset", offset, minimum=0)
        return self._get_json(
            "/training_runs",
            params={"limit": limit, "offset": offset},
            timeout_s=timeout_s,
            max_retries=max_retries,
            decode=decode,
        )

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Every checkpoint of ``run_id``, in the order the service lists them."""
        check_run_id(run_id)
        data = self._get_json(f"/training_runs/{run_id}/checkpoints")
        return JsonObject(data, "CheckpointsListResponse").items("checkpoints", Checkpoint.from_json)

    # --- transport ------------------------------------------------------------------------------

    def _get_json(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
        decode: Callable[[bytes, str], Any] = loads,
    ) -> Any:
        """GET ``path`` with retries; the body decoded by ``decode(body, what)`` (JSON by default),
        whose ResponseError is retried like a garbled body."""
        retries = self.config.max_retries if max_retries is None else max_retries
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + self.config.retry_max_time_s
        delays = backoff.expo(factor=_BACKOFF_FACTOR_S, max_value=_BACKOFF_CAP_S)
        next(delays)  # backoff's generators are primed before their first value
        for retry in range(retries + 1):
            # each request is capped to what is left of the call's budget
            left = deadline - self._clock()
            try:
                return self._get_once(path, params, min(timeout, max(left, 0.001)), decode)
            except TinkerRecoveryError as error:
                if not error.retryable or retry == retries:
                    raise
                delay = next(delays) * (1.0 - 0.25 * self._rng.random())
                hint = getattr(error, "retry_after_s", None)
                if hint is not None:
                    delay = max(delay, hint)
                if self._clock() + delay >= deadline:
                    raise
                log.debug("GET %s failed (%s); retry %d in %.2f s", path, error, retry + 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        timeout: float,
        decode: Callable[[bytes, str], Any] = loads,
    ) -> Any:
        what = f"GET {_API}{path}"
        key = self.config.api_key
        if self._direct is not None and self._direct.usable():
            reply = self._direct.get(
                _API + path,
                what=what,
                key=key,
                timeout_s=timeout,
                max_bytes=self._max_response_bytes,
                headers=self._direct_headers,
                params=params,
            )
        else:
            reply = _http.exchange(
                self._session,
                "GET",
                self.config.base_url + _API + path,
                what=what,
                key=key,
                timeout_s=timeout,
                max_bytes=self._max_response_bytes,
                headers=self._headers,
                params=params,
                send_kwargs=self._send_kwargs,
            )
        if reply.status >= 300:
            raise error_for_status(
                reply.status,
                f"{what}: HTTP {reply.status}: {error_detail(reply.body, key)}",
                retry_after_s=retry_after_s(reply.headers, time.time()),
            )
        return decode(reply.body, what)


@attrs.frozen
class _Healthy:
    """A listing page on which every run is healthy, decoded for its ids alone."""

    run_ids: list[str]
    cursor: Cursor


def _healthy_or_json(body: bytes, what: str) -> Any:
    """A ``_Healthy`` page when ``healthy_page`` reads one (and its cursor checks), else the body
    decoded as JSON for the tolerant path."""
    fast = healthy_page(body)
    if fast is not None:
        run_ids, raw_cursor = fast
        try:
            return _Healthy(run_ids, Cursor.from_json(raw_cursor))
        except ResponseError:
            pass  # the tolerant path raises the same error, from the same object
    return loads(body, what)


def _briefs_of(data: Any, offset: int) -> tuple[list[RunBrief], Cursor, int]:
    """A decoded ``TrainingRunsResponse`` as ``(briefs, cursor, skipped)``: an item that does not
    parse is skipped (logged at DEBUG); a malformed envelope raises ResponseError."""
    page = JsonObject(data, "TrainingRunsResponse")
    cursor = page.nested("cursor", Cursor.from_json, required=True)
    assert cursor is not None
    briefs: list[RunBrief] = []
    skipped = 0
    for index, item in enumerate(page.raw_list("training_runs")):
        try:
            briefs.append(RunBrief.from_json(item))
        except ResponseError as error:
            skipped += 1
            log.debug("listing at offset %d: item %d skipped: %s", offset, index, error)
    return briefs, cursor, skipped
