"""The one home of value checks for what users pass: counts, seconds, milliseconds, callables.

Every check raises ``TypeError`` (wrong kind) or ``ValueError`` (wrong value) whose message starts
with the field's name, and returns the value unchanged. ``bool`` is never accepted as a number.
Times are refused when they are NaN, infinite, or too large for the standard library's waits
(``threading.TIMEOUT_MAX`` seconds, about 292 years on 64-bit Linux): such a value would make
``Event.wait`` raise OverflowError inside a library thread and kill it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "MAX_WAIT_S",
    "attrs_validator",
    "check_bool",
    "check_callable",
    "check_int",
    "check_ms",
    "check_seconds",
]

T = TypeVar("T")

MAX_WAIT_S: float = min(threading.TIMEOUT_MAX, 10.0**9)
"""The longest time in seconds any setting may hold (``threading.TIMEOUT_MAX``, capped at 1e9 s,
about 31 years, so a deadline ``time.monotonic() + value`` stays exact in a float)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else TypeError naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected bool, got {type(value).__name__} {_shown(value)}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) within ``[minimum, maximum]`` (None: unbounded).

    Raises TypeError for another kind (``1.0`` included), ValueError outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {_shown(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {_shown(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be at most {maximum}, got {_shown(value)}")
    return value


def check_seconds(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    inclusive: bool = True,
    maximum: float = MAX_WAIT_S,
) -> float:
    """``value`` (an int or float, seconds) if finite and within bounds; returned as given.

    ``minimum`` is allowed when ``inclusive`` (so ``minimum=0, inclusive=False`` means "> 0").
    NaN, infinities and values above ``maximum`` (default ``MAX_WAIT_S``) raise ValueError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number of seconds, got {type(value).__name__} {_shown(value)}")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if math.isnan(as_float):
        raise ValueError(f"{name}: must be a number of seconds, got NaN")
    if as_float < minimum or (not inclusive and as_float == minimum):
        bound = "at least" if inclusive else "greater than"
        raise ValueError(f"{name}: must be {bound} {minimum:g} s, got {_shown(value)}")
    if as_float > maximum:
        raise ValueError(f"{name}: must be at most {maximum:g} s, got {_shown(value)}")
    return value


def check_ms(
    name: str, value: Any, *, minimum: int = 0, maximum_s: float = MAX_WAIT_S, hint: str = ""
) -> int:
    """``value`` if it is an int of milliseconds in ``[minimum, maximum_s * 1000]``.

    ``hint`` is appended to the message of a value below ``minimum`` (e.g. "seconds given as ms?").
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int (milliseconds), got {type(value).__name__} {_shown(value)}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum} ms, got {_shown(value)}{hint}")
    if value > maximum_s * 1000:
        raise ValueError(f"{name}: must be at most {int(maximum_s * 1000)} ms, got {_shown(value)}")
    return value


def check_callable(name: str, value: T) -> T:
    """``value`` if it is callable or None, else TypeError naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name}: expected a callable or None, got {type(value).__name__}")
    return value


def attrs_validator(
    check: Callable[..., Any], *, optional: bool = False, **bounds: Any
) -> Callable[[Any, Any, Any], None]:
    """An attrs validator that runs ``check(attribute.name, value, **bounds)``; with ``optional``,
    None is accepted as well."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        check(attribute.name, value, **bounds)

    return validate
