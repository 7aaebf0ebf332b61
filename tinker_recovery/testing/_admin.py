"""Admin endpoints under ``/_fake/``: the HTTP mirror of FakeTinker's Python control surface.

| Request | Python equivalent |
|---|---|
| ``POST /_fake/runs`` (add_run's keyword arguments) | ``add_run(...)`` → ``{"run_id", "run"}`` |
| ``GET /_fake/runs/{run_id}`` | ``get_run(run_id)`` |
| ``POST /_fake/runs/{run_id}/corrupt`` (``{"corrupted": true}``) | ``corrupt(run_id, corrupted)`` |
| ``DELETE /_fake/runs/{run_id}/checkpoints/{segment}/{name}`` | ``delete_checkpoint(...)`` |
| ``GET /_fake/runs/{run_id}/load_weights_count`` | ``load_weights_count(run_id)`` |
| ``GET /_fake/faults`` / ``POST /_fake/faults`` (add_fault's arguments) | ``faults`` / ``add_fault(...)`` |
| ``DELETE /_fake/faults/{id}`` / ``DELETE /_fake/faults`` | ``remove_fault(id)`` / ``clear_faults()`` |
| ``GET /_fake/requests?since=N`` / ``DELETE /_fake/requests`` | ``requests`` / ``clear_requests()`` |

Errors: 400 for a bad argument, 404 for an unknown run, checkpoint or rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from ._api import Response, error_response
from ._state import ApiProblem, dump

if TYPE_CHECKING:
    from .fake_server import FakeTinker

__all__ = ["PREFIX", "handle_admin"]

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


def handle_admin(fake: FakeTinker, method: str, path: str, query: str, body: dict[str, Any]) -> Response:
    """Answer one admin request; never raises for bad input."""
    try:
        return _route(fake, method, [unquote(p) for p in path[len(PREFIX) :].split("/")], query, body)
    except ApiProblem as problem:
        return error_response(problem.status, problem.message)
    except KeyError as exc:
        return error_response(404, str(exc.args[0]) if exc.args else "not found")
    except (ValueError, TypeError) as exc:
        return error_response(400, str(exc))


def _route(fake: FakeTinker, method: str, parts: list[str], query: str, body: dict[str, Any]) -> Response:
    head, rest = parts[0], parts[1:]
    if head == "runs":
        return _runs(fake, method, rest, body)
    if head == "faults":
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
    if head == "requests" and not rest:
        if method == "GET":
            since = parse_qs(query).get("since", ["0"])[0]
            entries, next_index = fake._request_log.since(int(since))
            return Response(200, dump({"requests": [e.to_json() for e in entries], "next": next_index}))
        if method == "DELETE":
            fake.clear_requests()
            return Response(200, dump({}))
    return error_response(404, f"no such admin endpoint: {method} {PREFIX}{'/'.join(parts)}")


def _runs(fake: FakeTinker, method: str, rest: list[str], body: dict[str, Any]) -> Response:
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
        return Response(200, dump(fake.get_run(run_id)))
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
