"""Fault rules: which requests FakeTinker answers badly, and how."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["FaultRule", "FaultTable"]

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _check_status(_instance: Any, _attribute: Any, value: int | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599
    ):
        raise ValueError(f"status must be an HTTP error status (400-599) or None, got {value!r}")


MAX_LATENCY_S = 3600.0  # a longer wait is a hung connection, not a fault worth simulating
MAX_RETRY_AFTER_S = 86_400.0


def _check_seconds(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    limit = MAX_LATENCY_S if attribute.name == "latency_s" else MAX_RETRY_AFTER_S
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= limit:
        raise ValueError(f"{attribute.name} must be a number in [0, {limit:g}] seconds, got {value!r}")


@attrs.frozen
class FaultRule:
    """One fault rule; a value object, built by ``FakeTinker.add_fault``.

    - ``method``: HTTP method to match, or None for any.
    - ``path``: regular expression searched in the request path (without the query string).
    - ``status``: answer this error status with a JSON body instead of processing the request.
    - ``retry_after_s``: with ``status``, also send ``Retry-After`` (whole seconds, rounded up) and
      ``retry-after-ms``; 0 to 86400 s. None sends neither.
    - ``latency_s``: wait this long first (0 to 3600 s). Alone, the request is then processed normally.
    - ``drop``: close the connection without any answer (the request is not processed).
    - ``malformed``: answer ``status`` (200 if None) with a truncated JSON body (not processed).
    - ``times``: apply to the next N matching requests, then the rule is removed. None: no limit.
    - ``probability``: apply to each matching request with this probability (seeded). None: always.
    """

    id: int
    method: str | None
    path: str
    status: int | None = attrs.field(default=None, validator=_check_status)
    retry_after_s: float | None = attrs.field(default=None, validator=_check_seconds)
    latency_s: float = attrs.field(default=0.0, validator=_check_seconds)
    drop: bool = False
    malformed: bool = False
    times: int | None = None
    probability: float | None = None
    _regex: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.method is not None and self.method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)} or None, got {self.method!r}")
        try:
            object.__setattr__(self, "_regex", re.compile(self.path))
        except re.error as exc:
            raise ValueError(f"path is not a valid regular expression: {exc}") from None
        for flag in ("drop", "malformed"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a boolean, got {getattr(self, flag)!r}")
        if self.drop and (self.status is not None or self.malformed):
            raise ValueError("drop cannot be combined with status or malformed")
        if not (self.drop or self.malformed or self.status is not None or self.latency_s > 0):
            raise ValueError("a fault needs status, drop, malformed or a positive latency_s")
        if self.retry_after_s is not None and self.status is None:
            raise ValueError("retry_after_s needs a status")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError(f"times must be an integer >= 1 or None, got {self.times!r}")
        if self.probability is not None and (
            isinstance(self.probability, bool)
            or not isinstance(self.probability, (int, float))
            or not 0.0 < self.probability <= 1.0
        ):
            raise ValueError(f"probability must be in (0, 1] or None, got {self.probability!r}")

    @property
    def replaces_processing(self) -> bool:
        """True when the request is answered by the fault and never carried out."""
        return self.drop or self.malformed or self.status is not None

    @property
    def name(self) -> str:
        """Short name for the request log: ``status:503``, ``drop``, ``malformed`` or ``latency``."""
        if self.drop:
            return "drop"
        if self.malformed:
            return "malformed"
        if self.status is not None:
            return f"status:{self.status}"
        return "latency"

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self._regex.search(path) is not None

    def to_json(self, remaining: int | None) -> dict[str, Any]:
        data = attrs.asdict(self, filter=lambda attribute, _value: attribute.name != "_regex")
        data["remaining"] = remaining
        return data

    @classmethod
    def from_json(cls, rule_id: int, data: Mapping[str, Any]) -> FaultRule:
        """Build from the admin endpoint's JSON (the keyword arguments of ``add_fault``)."""
        known = {
            "method",
            "path",
            "status",
            "retry_after_s",
            "latency_s",
            "drop",
            "malformed",
            "times",
            "probability",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "path" not in data:
            raise ValueError("a fault needs a path pattern")
        return cls(id=rule_id, **data)


class FaultTable:
    """The active rules, in the order added; the first live rule that matches a request wins.

    Thread-safe. ``seed`` seeds the random source used for ``probability``.
    """

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: dict[int, FaultRule] = {}
        self._remaining: dict[int, int | None] = {}
        self._next_id = 1

    def add(self, **kwargs: Any) -> FaultRule:
        """Validate and add a rule; raises ValueError/TypeError on a bad argument."""
        with self._lock:
            rule = FaultRule(id=self._next_id, **kwargs)
            self._next_id += 1
            self._rules[rule.id] = rule
            self._remaining[rule.id] = rule.times
            return rule

    def add_json(self, data: Mapping[str, Any]) -> FaultRule:
        with self._lock:
            rule = FaultRule.from_json(self._next_id, data)
            self._next_id += 1
            self._rules[rule.id] = rule
            self._remaining[rule.id] = rule.times
            return rule

    def remove(self, rule: FaultRule | int) -> bool:
        """Remove a rule (or rule id); False when it was not there (e.g. already used up)."""
        rule_id = rule.id if isinstance(rule, FaultRule) else rule
        with self._lock:
            self._remaining.pop(rule_id, None)
            return self._rules.pop(rule_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._remaining.clear()

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json(self._remaining[rule.id]) for rule in self._rules.values()]

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules.values())

    def match(self, method: str, path: str) -> FaultRule | None:
        """The rule to apply to this request, counting it against ``times``; None if none applies."""
        if not self._rules:  # fast path; a racing add only affects this one request
            return None
        with self._lock:
            for rule in self._rules.values():
                if not rule.matches(method, path):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                remaining = self._remaining[rule.id]
                if remaining is not None:
                    if remaining <= 1:
                        del self._rules[rule.id]
                        del self._remaining[rule.id]
                    else:
                        self._remaining[rule.id] = remaining - 1
                return rule
            return None
