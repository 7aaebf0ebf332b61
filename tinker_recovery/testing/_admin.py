"""Admin endpoints under ``/_fake/``: the HTTP mirror of FakeTinker's Python control surface.

Every admin request needs the same ``X-API-Key`` as the API; admin requests are never faulted and
never logged. Bodies are JSON objects; answers are JSON.

| Request | Python equivalent |
|---|---|
| ``POST /_fake/runs`` (add_run's keyword arguments) | ``add_run(...)`` → ``{"run_id", "run"}`` |
| ``GET /_fake/runs/{run_id}`` | ``describe_run(run_id)``: the REST view plus ``source_checkpoint``, ``source_optimizer``, ``load_weights_count`` |
| ``POST /_fake/runs/{run_id}/corrupt`` (``{"corrupted": true}``, the default) | ``corrupt(run_id, corrupted)`` |
| ``DELETE /_fake/runs/{run_id}/checkpoints/{segment}/{name}`` | ``delete_checkpoint(...)`` |
| ``GET /_fake/runs/{run_id}/load_weights_count`` | ``load_weights_count(run_id)`` → ``{"run_id", "count"}`` |
| ``GET /_fake/loads`` (``?run_id=`` filters by the loaded checkpoints' run) | ``loads(run_id)`` → ``{"loads": [...]}`` |
| ``GET /_fake/faults`` / ``POST /_fake/faults`` (add_fault's arguments) | ``faults`` / ``add_fault(...)`` |
| ``DELETE /_fake/faults/{id}`` / ``DELETE /_fake/faults`` | ``remove_fault(id)`` / ``clear_faults()`` |
| ``GET /_fake/requests?since=N`` / ``DELETE /_fake/requests`` | ``requests`` / ``clear_requests()`` → ``{"requests", "next"}`` |
| ``GET /_fake/clock`` | ``{"now": ISO time, "offset_s": seconds advanced so far}`` |
| ``POST /_fake/clock/advance`` (``{"seconds": 7200}``) | ``advance_clock(seconds)`` → as ``GET /_fake/clock`` |

A load entry: ``{"checkpoint", "source_run_id", "run_id", "optimizer", "time"}``. A fault rule:
``{"id", "method", "path", "status", "retry_after_s", "latency_s", "drop", "malformed", "times",
"probability", "remaining"}``.

Errors: 400 for a bad argument, 404 for an unknown run, checkpoint, rule or endpoint, 405 for a
wrong method on ``/_fake/runs``; the body is ``{"error": reason, "detail": message}``.

Example, against ``python -m tinker_recovery.testing.fake_server --port 8000 --runs 1``::

    curl -H "X-API-Key: $TINKER_API_KEY" -X POST localhost:8000/_fake/runs/$RUN/corrupt -d '{}'
    curl -H "X-API-Key: $TINKER_API_KEY" -X POST localhost:8000/_fake/faults \\
         -d '{"method": "GET", "path": "training_runs", "status": 503, "times": 2}'
    curl -H "X-API-Key: $TINKER_API_KEY" -X POST localhost:8000/_fake/clock/advance -d '{"seconds": 7200}'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from ._api import Response, error_response
from ._common import ApiProblem, dump
from ._faults import FaultRule, FaultTable
from ._served import RequestLog
from ._store import Load

__all__ = ["PREFIX", "AdminTarget", "handle_admin"]

PREFIX = "/_fake/"
_ADD_RUN_FIELDS = frozenset(
    {
        "base_model",
        "checkpoints",
        "sampler_checkpoints",
        "corrupted",
        "ttl_seconds",
        "user_metadata",
        "lora_rank",
    }
)


class AdminTarget(Protocol):
    """What the admin endpoints drive: FakeTinker's control surface."""

    _fault_table: FaultTable
    _request_log: RequestLog

    @property
    def add_run(self) -> Callable[..., str]: ...

    def get_run(self, run_id: str) -> dict[str, Any]: ...

    def describe_run(self, run_id: str) -> dict[str, Any]: ...

    def corrupt(self, run_id: str, corrupted: bool = True) -> None: ...

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None: ...

    def load_weights_count(self, run_id: str) -> int: ...

    def loads(self, run_id: str | None = None) -> list[Load]: ...

    def remove_fault(self, rule: FaultRule | int) -> bool: ...

    def clear_faults(self) -> None: ...

    def clear_requests(self) -> None: ...

    def advance_clock(self, seconds: float) -> float: ...

    def clock_json(self) -> dict[str, Any]: ...


def handle_admin(fake: AdminTarget, method: str, path: str, query: str, body: Mapping[str, Any]) -> Response:
    """Answer one admin request; never raises for bad input."""
    try:
        return _route(fake, method, [unquote(p) for p in path[len(PREFIX) :].split("/")], query, body)
    except ApiProblem as problem:
        return error_response(problem.status, problem.message)
    except KeyError as exc:
        return error_response(404, str(exc.args[0]) if exc.args else "not found")
    except (ValueError, TypeError) as exc:
        return error_response(400, str(exc))


def _route(fake: AdminTarget, method: str, parts: list[str], query: str, body: Mapping[str, Any]) -> Response:
    head, rest = parts[0], parts[1:]
    if head == "runs":
        return _runs(fake, method, rest, body)
    if head == "faults":
        return _faults(fake, method, rest, body)
    if head == "requests" and not rest:
        if method == "GET":
            since = parse_qs(query).get("since", ["0"])[0]
            entries, next_index = fake._request_log.since(int(since))
            return Response(200, dump({"requests": [e.to_json() for e in entries], "next": next_index}))
        if method == "DELETE":
            fake.clear_requests()
            return Response(200, dump({}))
    if head == "loads" and not rest and method == "GET":
        run_id = parse_qs(query).get("run_id", [None])[0]
        return Response(200, dump({"loads": [load.to_json() for load in fake.loads(run_id)]}))
    if head == "clock":
        if method == "GET" and not rest:
            return Response(200, dump(fake.clock_json()))
        if method == "POST" and rest == ["advance"]:
            if set(body) != {"seconds"}:
                raise ValueError('clock/advance takes exactly {"seconds": <number >= 0>}')
            fake.advance_clock(body["seconds"])
            return Response(200, dump(fake.clock_json()))
    return error_response(404, f"no such admin endpoint: {method} {PREFIX}{'/'.join(parts)}")


def _faults(fake: AdminTarget, method: str, rest: list[str], body: Mapping[str, Any]) -> Response:
    if method == "GET" and not rest:
        return Response(200, dump({"faults": fake._fault_table.to_json()}))
    if method == "POST" and not rest:
        rule = fake._fault_table.add_json(body)
        return Response(201, dump(rule.to_json(rule.times)))
    if method == "DELETE" and not rest:
        fake.clear_faults()
        return Response(200, dump({}))
    if method == "DELETE" and len(rest) == 1:
        if not fake.remove_fault(int(rest[0])):
            raise KeyError(f"fault rule {rest[0]} not found")
        return Response(200, dump({}))
    return error_response(404, f"no such admin endpoint: {method} {PREFIX}faults/{'/'.join(rest)}")


def _runs(fake: AdminTarget, method: str, rest: list[str], body: Mapping[str, Any]) -> Response:
    if method == "POST" and not rest:
        unknown = set(body) - _ADD_RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown add_run fields: {sorted(unknown)}")
        run_id = fake.add_run(**body)
        return Response(201, dump({"run_id": run_id, "run": fake.get_run(run_id)}))
    if not rest:
        return error_response(405, f"{method} is not allowed on {PREFIX}runs")
    run_id = rest[0]
    if method == "GET" and len(rest) == 1:
        return Response(200, dump(fake.describe_run(run_id)))
    if method == "POST" and rest[1:] == ["corrupt"]:
        corrupted = body.get("corrupted", True)
        if not isinstance(corrupted, bool):
            raise ValueError("corrupted must be a boolean")
        fake.corrupt(run_id, corrupted=corrupted)
        return Response(200, dump(fake.get_run(run_id)))
    if method == "GET" and rest[1:] == ["load_weights_count"]:
        return Response(200, dump({"run_id": run_id, "count": fake.load_weights_count(run_id)}))
    if method == "DELETE" and len(rest) == 4 and rest[1] == "checkpoints":
        fake.delete_checkpoint(run_id, f"{rest[2]}/{rest[3]}")
        return Response(200, dump({}))
    return error_response(404, f"no such admin endpoint: {method} {PREFIX}runs/{'/'.join(rest)}")
