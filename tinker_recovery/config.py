"""Connection settings: API key, base URL, time-outs and the default recovery policy."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._checks import attrs_validator, check_int, check_seconds
from ._http import is_loopback_host
from ._text import escape_text
from .policy import Policy

__all__ = ["Config", "DEFAULT_BASE_URL", "url_from_env"]

DEFAULT_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"
_REDACTED = "'<redacted>'"
_MAX_KEY_CHARS = 16 * 1024
_MAX_TIMEOUT_S = 86_400.0 * 7
"""The longest ``timeout_s``/``retry_max_time_s`` accepted: a week; more is surely a typo."""
_TIME_CHECK = attrs_validator(check_seconds, minimum=0.0, inclusive=False, maximum=_MAX_TIMEOUT_S)


def _key_from_env() -> str | None:
    return os.environ.get("TINKER_API_KEY") or None


def url_from_env() -> str:
    """``TINKER_BASE_URL`` (as the official SDK reads it), else ``DEFAULT_BASE_URL``."""
    return os.environ.get("TINKER_BASE_URL") or DEFAULT_BASE_URL


def _key_or_env(value: Any) -> Any:
    return _key_from_env() if value is None else value


def _jwt_expiry(token: str) -> int | float | None:
    """The ``exp`` claim of an unverified JWT, or None if ``token`` is not a JWT with a finite one.

    Never raises: a payload that is not base64, not UTF-8, not JSON, nested too deep, or whose
    ``exp`` is a bool, NaN, infinite or not a number gives None. A huge integer ``exp`` (400 digits)
    is returned as an int, compared exactly (no float conversion, so no OverflowError).
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 64 * 1024:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    if isinstance(exp, float) and not math.isfinite(exp):
        return None
    return exp


def _check_api_key(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        raise ValueError("api_key: not given and TINKER_API_KEY is not set")
    if not isinstance(value, str):
        raise TypeError(f"api_key: expected str, got {type(value).__name__}")
    if len(value) > _MAX_KEY_CHARS:
        raise ValueError(f"api_key: longer than {_MAX_KEY_CHARS} characters ({len(value)})")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ValueError("api_key: contains whitespace, control or non-ASCII characters")
    if value.startswith("tml-") and len(value) > 4:
        return
    if value.startswith("eyJ"):
        expiry = _jwt_expiry(value)
        if expiry is None:
            raise ValueError("api_key: starts like a JWT but is not one with an 'exp' claim")
        if expiry <= time.time():
            raise ValueError("api_key: the JWT has expired")
        return
    raise ValueError("api_key: must start with 'tml-' or be a JWT")


def _to_policy(value: Any) -> Policy | None:
    if value is None or isinstance(value, Policy):
        return value
    if isinstance(value, Mapping):
        return Policy.from_dict(value)
    raise TypeError(f"recovery: expected a Policy, a mapping or None, got {type(value).__name__}")


def _strip_slash(value: Any) -> Any:
    if value is None:
        value = url_from_env()
    return value.rstrip("/") if isinstance(value, str) else value


@attrs.frozen(kw_only=True)
class Config:
    """Where and how to reach Tinker. The environment is read when a Config is built.

    - ``api_key``: when None or not given, ``TINKER_API_KEY``; must start with ``tml-`` or be an
      unexpired JWT, printable ASCII without spaces. It is never shown by ``repr`` or ``str``.
    - ``base_url``: when None or not given, ``TINKER_BASE_URL``, else the official service.
      ``http://`` is accepted only for loopback hosts unless ``allow_insecure_http=True``.
    - ``timeout_s``: the total time-out of every HTTP request (connect, headers and body, whatever
      the server's pace), in seconds, > 0 and at most a week (604800). Default 30.
    - ``max_retries``: retries of a failed retryable request, 0 (none) to 1000. Default 3.
    - ``retry_max_time_s``: the most time spent on one call, retries included; each request is
      capped to the time left (> 0, at most a week). Default 60.
    NaN and infinities are refused with a ValueError naming the field.
    - ``recovery``: the default Policy for monitors built from this config (a Policy, a mapping
      for ``Policy.from_dict``, or None).
    """

    api_key: str = attrs.field(
        factory=_key_from_env, converter=_key_or_env, validator=_check_api_key, repr=lambda _: _REDACTED
    )
    base_url: str = attrs.field(factory=url_from_env, converter=_strip_slash)
    timeout_s: float = attrs.field(
        default=30.0, validator=_TIME_CHECK
    )
    max_retries: int = attrs.field(default=3, validator=attrs_validator(check_int, minimum=0, maximum=1000))
    retry_max_time_s: float = attrs.field(
        default=60.0, validator=_TIME_CHECK
    )
    recovery: Policy | None = attrs.field(default=None, converter=_to_policy)
    allow_insecure_http: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @base_url.validator
    def _check_base_url(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"base_url: expected str, got {type(value).__name__}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = escape_text(value, 200)
            raise ValueError(f"base_url: expected an http(s) URL with a host, got {shown!r}")
        if parts.username or parts.password:
            raise ValueError("base_url: must not carry credentials")
        try:
            port_ok = isinstance(parts.port, (int, type(None)))
        except ValueError:
            port_ok = False
        if not port_ok:
            shown = escape_text(value, 200)
            raise ValueError(f"base_url: the port is not a number from 0 to 65535 in {shown}")
        if parts.query or parts.fragment:
            raise ValueError("base_url: must not have a query or a fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not self.allow_insecure_http:
            raise ValueError(
                f"base_url: plain http to {parts.hostname!r} would send the API key unencrypted; "
                "use https, a loopback host, or allow_insecure_http=True"
            )

    def __str__(self) -> str:
        return repr(self)

    def __reduce__(self) -> Any:
        raise TypeError(
            "Config holds the API key and is not pickled; rebuild it where it is needed "
            "(e.g. from TINKER_API_KEY)"
        )

    def __copy__(self) -> Config:
        return self  # frozen: a copy is the same value

    def __deepcopy__(self, memo: Any) -> Config:
        return self
