"""The endpoint a service client talks to: REST access built from it, and the one-endpoint rule.

The official SDK's ``tinker.ServiceClient`` keeps its base URL and key as ``_base_url`` and
``_api_key``; a client built from the environment has ``_base_url`` None and reads
``TINKER_BASE_URL`` / ``TINKER_API_KEY`` itself, as ``Config()`` does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .config import Config, url_from_env
from .rest import RestClient

__all__ = ["check_same_host", "rest_from_service", "service_base_url"]


def service_base_url(service: Any) -> str | None:
    """The base URL ``service`` talks to: its ``_base_url``; for an SDK client built from the
    environment (``_base_url`` None), ``TINKER_BASE_URL`` or the official service, as the SDK
    reads it; None when the service does not tell."""
    url = getattr(service, "_base_url", None)
    if url is None and hasattr(service, "_base_url"):
        return url_from_env()
    return url if isinstance(url, str) else None


def rest_from_service(service: Any, *, pool_size: int) -> RestClient:
    """A RestClient for the endpoint ``service`` talks to. Raises ValueError naming what is
    missing when the service does not tell its endpoint, or when its URL or key is refused."""
    url, key = service_base_url(service), getattr(service, "_api_key", None)
    if getattr(service, "_base_url", None) is None:  # the SDK reads TINKER_API_KEY itself, as Config does
        key = None
    if url is None:
        raise ValueError(
            "Monitor needs REST access to poll runs: pass config= or rest=, or a "
            "service exposing its base URL (tinker.ServiceClient(base_url=...))"
        )
    try:
        config = Config(api_key=key if isinstance(key, str) else None, base_url=url)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Monitor: no REST access from the service: {error}") from None
    return RestClient(config, pool_size=pool_size)


def check_same_host(rest: Any, service: Any) -> None:
    """Raise ValueError naming both hosts when ``service`` talks to another host than ``rest``
    polls (the endpoint is given once). Says nothing when either does not tell its endpoint."""
    url = service_base_url(service)
    if url is None or not isinstance(getattr(rest, "config", None), Config):
        return
    mine, theirs = urlsplit(rest.config.base_url), urlsplit(url)
    if (mine.hostname, mine.port) != (theirs.hostname, theirs.port):
        raise ValueError(
            f"Monitor: the polled host {mine.netloc!r} differs from the service's "
            f"host {theirs.netloc!r}; give the endpoint once"
        )
