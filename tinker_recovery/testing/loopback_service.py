"""LoopbackService: a minimal Tinker service client over ``requests``, for restores in tests.

It speaks the official SDK 0.38 wire protocol for just what a restore needs: ``create_session``,
``load_weights`` (a training client from a checkpoint, with or without optimizer state) and
``save_weights``. Unlike the official SDK it never retries, and every HTTP call has a time-out, so
a recovery test or a soak against FakeTinker fails in seconds, not after a 300 s retry loop.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Self

import requests

from tinker_recovery import _http
from tinker_recovery._json import loads
from tinker_recovery._text import escape_text
from tinker_recovery._wire import error_detail, retry_after_s
from tinker_recovery.errors import RequestTimeout, ResponseError, error_for_status
from tinker_recovery.redact import scrub

__all__ = ["LoopbackService", "LoopbackTrainingClient"]

_SDK_VERSION = "tinker-recovery-loopback"
_MAX_MESSAGE = 300
_MAX_BODY = 8 * 1024 * 1024
_MAX_TIMEOUT_S = 86_400.0


class LoopbackService:
    """A service client for ``base_url`` (e.g. ``FakeTinker.base_url``) authenticated by ``api_key``.

    - ``timeout_s``: the total time-out of every HTTP call (connect, headers and body, however
      slowly the server sends them), and how long a future is polled before RequestTimeout (the
      poll under way then finishes, so a create call ends within 2 x ``timeout_s``). Must be > 0
      and at most a day.
    - ``session``: a ``requests.Session`` to use (not closed by ``close()``); None makes one.

    Errors (all from ``tinker_recovery.errors``): an HTTP error status raises the matching ApiError
    subclass (with ``retry_after_s`` from Retry-After); a future that resolves to an error raises
    UnprocessableEntity (category ``user``) or ServerError (otherwise); a time-out raises
    RequestTimeout; a refused or broken connection ConnectionFailed; a body that is not the expected
    JSON ResponseError. Nothing is retried. Redirects are never followed (a 3xx raises ApiError: the
    key would go with it); a loopback URL never goes through a proxy. The API key never appears in
    errors (scrubbed in every form, see ``tinker_recovery.redact``), their chains, or the repr;
    error text is one line.
    Thread-safe: the session is created once, and model sequence ids are handed out under a lock.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not 0 < timeout_s <= _MAX_TIMEOUT_S
            or not math.isfinite(timeout_s)
        ):
            raise ValueError(f"timeout_s must be > 0 and at most {_MAX_TIMEOUT_S:g} s, got {timeout_s!r}")
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = float(timeout_s)
        # a pool at least as large as an Executor's workers: a full pool discards kept-alive connections
        self._http = session if session is not None else _http.new_session(16)
        self._send_kwargs: dict[str, Any] = {}
        if session is None:  # read the environment once, as RestClient does
            self._send_kwargs = {
                "proxies": requests.utils.get_environ_proxies(self._base_url),
                "verify": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True,
            }
        self._owns_http = session is None
        self._lock = threading.Lock()
        self._session_id: str | None = None
        self._next_model_seq = 0

    def __repr__(self) -> str:
        return (
            f"LoopbackService(base_url={self._base_url!r}, timeout_s={self._timeout_s}, "
            f"session_id={self._session_id!r})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("LoopbackService holds the API key and a live session; it cannot be pickled")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it. Safe to call twice."""
        if self._owns_http:
            self._http.close()

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def session_id(self) -> str | None:
        """The service session id, or None before the first call that needed one."""
        return self._session_id

    def create_session(self) -> str:
        """Create the service session on first use (once, even across threads) and return its id."""
        with self._lock:
            if self._session_id is None:
                body = {
                    "tags": [],
                    "user_metadata": {},
                    "sdk_version": _SDK_VERSION,
                    "type": "create_session",
                }
                session_id = self._post("/api/v1/create_session", body).get("session_id")
                if not isinstance(session_id, str) or not session_id:
                    raise ResponseError("create_session answered without a session_id")
                self._session_id = session_id
            return self._session_id

    def create_training_client_from_state(self, path: str) -> LoopbackTrainingClient:
        """A training client holding the weights saved at ``path``, with a fresh optimizer."""
        return self._load(path, optimizer=False)

    def create_training_client_from_state_with_optimizer(self, path: str) -> LoopbackTrainingClient:
        """A training client holding the weights and optimizer state saved at ``path``."""
        return self._load(path, optimizer=True)

    # --- internals ------------------------------------------------------------------------------

    def _load(self, path: str, *, optimizer: bool) -> LoopbackTrainingClient:
        if not isinstance(path, str) or not path.startswith("tinker://"):
            raise ValueError(f"path must be a tinker:// path, got {path!r}")
        session_id = self.create_session()
        with self._lock:
            model_seq_id = self._next_model_seq
            self._next_model_seq += 1
        body = {
            "session_id": session_id,
            "model_seq_id": model_seq_id,
            "path": path,
            "optimizer": optimizer,
            "type": "load_weights",
        }
        self._wait(self._post("/api/v1/load_weights", body), "load_weights")
        model_id = f"{session_id}:train:{model_seq_id}"  # as the official client derives it
        info = self._post("/api/v1/get_info", {"model_id": model_id, "type": "get_info"})
        return LoopbackTrainingClient(self, model_id, info)

    def _wait(self, submitted: Mapping[str, Any], what: str) -> dict[str, Any]:
        """Poll ``retrieve_future`` until the future resolves; at most ``timeout_s`` in all."""
        request_id = submitted.get("request_id")
        if not isinstance(request_id, str):
            raise ResponseError(f"{what} answered without a request_id")
        deadline = time.monotonic() + self._timeout_s
        while True:
            # Each poll has its own deadline of timeout_s (so the wait ends within 2 x timeout_s): a
            # poll cut short would leave a load done on the server but unknown to the caller.
            result = self._post(
                "/api/v1/retrieve_future", {"request_id": request_id, "allow_metadata_only": False}
            )
            if result.get("type") == "try_again" or result.get("status") == "complete_metadata":
                if time.monotonic() >= deadline:
                    raise RequestTimeout(f"{what} did not finish within {self._timeout_s} s")
                continue  # the server holds try_again answers, so polling again at once is cheap
            if "error" in result:
                message = f"{what} failed: {_clip(_text_of(result['error']), self._api_key)}"
                status = 422 if result.get("category") == "user" else 500
                raise error_for_status(status, message)
            return result

    def _post(self, path: str, body: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        what = f"POST {path}"
        reply = _http.exchange(
            self._http,
            "POST",
            self._base_url + path,
            what=what,
            key=self._api_key,
            timeout_s=self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s),
            max_bytes=_MAX_BODY,
            headers={"X-API-Key": self._api_key},
            json_body=body,
            send_kwargs=self._send_kwargs,
        )
        if reply.status >= 300:
            raise error_for_status(
                reply.status,
                f"{what} answered {reply.status}: {error_detail(reply.body, self._api_key, _MAX_MESSAGE)}",
                retry_after_s(reply.headers, time.time()),
            )
        data = loads(reply.body, what)
        if not isinstance(data, dict):
            raise ResponseError(f"{what} answered JSON that is not an object")
        return data


class LoopbackTrainingClient:
    """A training client made by LoopbackService: its ``model_id``, ``info`` and ``save_state``."""

    def __init__(self, service: LoopbackService, model_id: str, info: Mapping[str, Any]) -> None:
        self._service = service
        self._model_id = model_id
        self._info = dict(info)
        self._lock = threading.Lock()
        self._next_seq = 1  # the model's first request after its load is seq_id 1

    def __repr__(self) -> str:
        return f"LoopbackTrainingClient(model_id={self._model_id!r})"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def info(self) -> dict[str, Any]:
        """The ``get_info`` answer fetched at creation (a copy)."""
        return dict(self._info)

    def save_state(self, name: str, *, ttl_seconds: int | None = None) -> str:
        """Save weights and optimizer state as ``name``; return the ``tinker://`` path.

        Raises the same errors as LoopbackService; an existing ``name`` fails (no overwrite).
        """
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
        with self._lock:
            seq_id = self._next_seq
            self._next_seq += 1
        body: dict[str, Any] = {
            "model_id": self._model_id,
            "path": name,
            "seq_id": seq_id,
            "overwrite": False,
            "type": "save_weights",
        }
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        service = self._service
        result = service._wait(service._post("/api/v1/save_weights", body), "save_weights")
        path = result.get("path")
        if not isinstance(path, str):
            raise ResponseError("save_weights resolved without a path")
        return path


def _clip(text: str, key: str | None = None) -> str:
    return escape_text(scrub(text, key), limit=_MAX_MESSAGE)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply>"
