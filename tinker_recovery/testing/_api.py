"""Routing of the Tinker ``/api/v1`` endpoints onto FakeState, independent of the HTTP server."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import attrs

from ._common import JSON, ApiProblem, dump, parse_path
from ._protobuf import ProtoError, decode_forward_backward_request
from ._state import FakeState

__all__ = ["Api", "LoggedFacts", "Response", "error_response", "request_facts"]

_PREFIX = "/api/v1/"
_RUNS = "/api/v1/training_runs"
_SAMPLERS = "/api/v1/samplers"

# The flags that keep the official client on its simplest path (plain httpx, no JWT, no zstd).
_CLIENT_CONFIG = {
    "pjwt_auth_enabled": False,
    "use_pyqwest_transport": False,
    "proto_compress_fwdbwd": False,
    "billing_exception_max_pause_duration_sec": 5,
}


@attrs.frozen
class Response:
    """What to send: status, body, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def error_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A JSON error body: ``{"error": "<reason phrase>", "detail": message}``."""
    try:
        reason = HTTPStatus(status).phrase.lower()
    except ValueError:
        reason = "error"
    return Response(status, dump({"error": reason, "detail": message}), headers=headers)


def _ok(data: Any, status: int = 200) -> Response:
    return Response(status, dump(data))


@attrs.frozen
class LoggedFacts:
    """What the request log records of a request beyond method, path and status (see ServedRequest)."""

    run_id: str | None = None
    checkpoint: str | None = None
    optimizer: bool | None = None


def request_facts(method: str, path: str, body: bytes) -> LoggedFacts:
    """The run a request concerns and, for ``load_weights``, the checkpoint path and optimizer flag."""
    if path.startswith(_RUNS + "/"):
        return LoggedFacts(run_id=unquote(path[len(_RUNS) + 1 :].split("/", 1)[0]) or None)
    if method == "POST" and path == "/api/v1/load_weights":
        try:
            data = json.loads(body)
        except ValueError:
            return LoggedFacts()
        if not isinstance(data, dict):
            return LoggedFacts()
        tinker_path = data.get("path")
        optimizer = data.get("optimizer", False)
        checkpoint = tinker_path if isinstance(tinker_path, str) else None
        try:
            run_id: str | None = parse_path(tinker_path).training_run_id
        except ApiProblem:
            run_id = None
        return LoggedFacts(run_id, checkpoint, optimizer if isinstance(optimizer, bool) else None)
    return LoggedFacts()


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiProblem(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiProblem(400, "the request body must be a JSON object")
    return data


def _optional_int_param(query: Mapping[str, list[str]], name: str) -> int | None:
    """A query parameter >= 0, or None when absent; ApiProblem(400) naming it when bad."""
    values = query.get(name)
    if not values:
        return None
    try:
        value = int(values[0])
    except ValueError:
        raise ApiProblem(400, f"query parameter {name} must be an integer") from None
    if value < 0:
        raise ApiProblem(400, f"query parameter {name} must be >= 0")
    return value


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    value = _optional_int_param(query, name)
    return default if value is None else value


class Api:
    """Answers one ``/api/v1/...`` request; ``hold_s`` is how long retrieve_future holds a try_again."""

    def __init__(self, state: FakeState, *, hold_s: float) -> None:
        self._state = state
        self._hold_s = hold_s
        self._post: dict[str, Callable[[bytes, Mapping[str, str]], Response]] = {
            "/api/v1/client/config": lambda body, headers: _ok(_CLIENT_CONFIG),
            "/api/v1/client/dynamic_config": lambda body, headers: _ok({}),
            "/api/v1/telemetry": lambda body, headers: _ok({"status": "accepted"}),
            "/api/v1/create_session": self._create_session,
            "/api/v1/session_heartbeat": self._heartbeat,
            "/api/v1/create_model": lambda body, headers: self._future(
                self._state.create_model(_json_body(body))
            ),
            "/api/v1/load_weights": lambda body, headers: self._future(
                self._state.load_weights(_json_body(body))
            ),
            "/api/v1/optim_step": self._model_op("optim_step"),
            "/api/v1/save_weights": self._model_op("save_weights"),
            "/api/v1/save_weights_for_sampler": self._model_op("save_weights_for_sampler"),
            "/api/v1/forward_backward": self._forward_backward,
            "/api/v1/retrieve_future": self._retrieve_future,
            "/api/v1/get_info": lambda body, headers: _ok(
                self._state.get_info(_json_body(body).get("model_id"))
            ),
            "/api/v1/weights_info": lambda body, headers: _ok(
                self._state.weights_info(_json_body(body).get("tinker_path"))
            ),
            "/api/v1/create_sampling_session": lambda body, headers: _ok(
                {
                    "type": "create_sampling_session",
                    "sampling_session_id": self._state.create_sampling_session(_json_body(body)),
                }
            ),
            "/api/v1/asample": self._asample,
        }
        self._get: dict[str, Callable[[Mapping[str, list[str]]], Response]] = {
            "/api/v1/healthz": lambda query: _ok({"status": "ok"}),
            "/api/v1/get_server_capabilities": lambda query: _ok({"supported_models": []}),
            "/api/v1/training_runs": self._list_runs,
            "/api/v1/checkpoints": self._list_user_checkpoints,
        }

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Response:
        try:
            return self._route(method, path, query, headers, body)
        except ApiProblem as problem:
            return error_response(problem.status, problem.message)

    def _route(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Response:
        if method == "POST" and path in self._post:
            return self._post[path](body, headers)
        if method == "GET" and path in self._get:
            return self._get[path](parse_qs(query))
        if path.startswith(_RUNS + "/"):
            return self._run_resource(method, unquote(path[len(_RUNS) + 1 :]), parse_qs(query))
        if method == "GET" and path.startswith(_SAMPLERS + "/"):
            return _ok(self._state.sampler(unquote(path[len(_SAMPLERS) + 1 :])))
        if method == "POST" and path.startswith("/api/v1/sessions/") and path.endswith("/finish"):
            return _ok({})
        if path in self._post or path in self._get:
            return error_response(405, f"{method} is not allowed on {path}")
        return error_response(404, f"no such endpoint: {method} {path}")

    # --- futures and training -------------------------------------------------------------------

    @staticmethod
    def _future(request_id: str) -> Response:
        return _ok({"request_id": request_id})

    def _model_op(self, kind: str) -> Callable[[bytes, Mapping[str, str]], Response]:
        return lambda body, headers: self._future(self._state.model_op(kind, _json_body(body)))

    def _forward_backward(self, body: bytes, headers: Mapping[str, str]) -> Response:
        if headers.get("Content-Encoding", "identity") != "identity":
            return error_response(415, "compressed forward_backward bodies are not supported by FakeTinker")
        if "application/x-protobuf" not in headers.get("Content-Type", ""):
            return error_response(415, "forward_backward takes an application/x-protobuf body")
        try:
            request = decode_forward_backward_request(body)
        except ProtoError as exc:
            return error_response(400, f"invalid ForwardBackwardRequest: {exc}")
        return self._future(self._state.forward_backward(request))

    def _retrieve_future(self, body: bytes, headers: Mapping[str, str]) -> Response:
        request_id = _json_body(body).get("request_id")
        result = self._state.retrieve(request_id, self._hold_s)
        if result is None:
            return _ok({"type": "try_again", "request_id": request_id, "queue_state": "active"})
        return Response(200, result.body, result.content_type)

    def _asample(self, body: bytes, headers: Mapping[str, str]) -> Response:
        request_id, sequence_ids = self._state.asample(_json_body(body))
        return _ok({"request_id": request_id, "sample_sequence_ids": sequence_ids})

    # --- sessions -------------------------------------------------------------------------------

    def _create_session(self, body: bytes, headers: Mapping[str, str]) -> Response:
        _json_body(body)
        return _ok({"type": "create_session", "session_id": self._state.create_session()})

    def _heartbeat(self, body: bytes, headers: Mapping[str, str]) -> Response:
        session_id = _json_body(body).get("session_id")
        if not self._state.has_session(session_id):
            return error_response(404, f"session {session_id!r} not found")
        return _ok({"type": "session_heartbeat"})

    # --- REST -----------------------------------------------------------------------------------

    def _list_runs(self, query: Mapping[str, list[str]]) -> Response:
        limit = _int_param(query, "limit", 20)
        offset = _int_param(query, "offset", 0)
        return _ok(self._state.list_runs(limit, offset))

    def _list_user_checkpoints(self, query: Mapping[str, list[str]]) -> Response:
        limit = _int_param(query, "limit", 100)
        offset = _int_param(query, "offset", 0)
        return _ok(self._state.list_user_checkpoints(limit, offset))

    def _run_resource(self, method: str, rest: str, query: Mapping[str, list[str]]) -> Response:
        parts = rest.split("/")
        run_id = parts[0]
        if len(parts) == 1 and method == "GET":
            return _ok(self._state.get_run(run_id))
        if len(parts) == 2 and parts[1] == "checkpoints" and method == "GET":
            limit = _optional_int_param(query, "limit")
            offset = _int_param(query, "offset", 0)
            return _ok(self._state.list_checkpoints(run_id, limit, offset))
        if len(parts) == 4 and parts[1] == "checkpoints" and method == "DELETE":
            self._state.delete_checkpoint(run_id, f"{parts[2]}/{parts[3]}")
            return Response(204)
        return error_response(404, f"no such endpoint: {method} /api/v1/training_runs/{rest}")
