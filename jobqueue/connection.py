"""Redis clients for jobqueue backends, built from ``TASKS[alias]["OPTIONS"]``.

Clients are process-global and shared by every thread's backend instance (Django builds one
backend per thread). redis-py's connection pools notice a fork and reconnect in the child, so
a forked job never reuses its parent's socket.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings

from .exceptions import ConfigurationError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = {"redis", "rediss", "unix"}
_clients: dict[tuple[str, tuple[tuple[str, str], ...]], redis.Redis] = {}
_lock = threading.Lock()

#: Connection defaults: fail fast when Redis is gone, notice dead peers, keep bytes raw.
#: A forked job opens a fresh connection, so the handshake is kept to one round trip:
#: RESP2 (no HELLO), no CLIENT SETINFO, no PING health check.
CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 5.0,
    "socket_timeout": 30.0,
    "socket_keepalive": True,
    "health_check_interval": 0,
    "retry_on_timeout": False,
    "protocol": 2,
    "lib_name": None,
    "lib_version": None,
}


#: Defaults that only make sense for TCP connections (left out for ``unix://`` URLs).
_TCP_ONLY = frozenset({"socket_keepalive"})


@functools.cache
def _supported_defaults() -> dict[str, Any]:
    """Drop defaults this redis-py does not know (older releases lack some)."""
    import inspect

    known = set(inspect.signature(redis.Redis.__init__).parameters)
    defaults = {k: v for k, v in CLIENT_DEFAULTS.items() if k in known}
    if "driver_info" in known:  # redis-py 8+: ``driver_info=None`` disables CLIENT SETINFO
        defaults.pop("lib_name", None)
        defaults.pop("lib_version", None)
        defaults["driver_info"] = None
    if "maint_notifications_config" in known:  # redis-py 7+: RESP3-only feature, off
        try:
            from redis.maint_notifications import MaintNotificationsConfig

            defaults["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        except ImportError:  # pragma: no cover
            pass
    return defaults


def validate_url(url: Any, where: str) -> str:
    """Return ``url`` if it is a Redis URL redis-py can use; raise naming ``where`` otherwise."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{where} must be a Redis URL string, got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{where} = {url!r} is not a Redis URL: use redis://, rediss:// or unix://"
        )
    return url


def url_from_cache(alias: str, where: str) -> tuple[str, dict[str, Any]]:
    """Read the Redis URL (and password) of a django-redis or Django Redis cache alias."""
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(f"{where} names cache {alias!r}, which is not in CACHES")
    cache = caches[alias]
    location = cache.get("LOCATION")
    if isinstance(location, list | tuple):
        location = location[0] if location else None
    url = validate_url(location, f"CACHES[{alias!r}]['LOCATION']")
    extra: dict[str, Any] = {}
    password = (cache.get("OPTIONS") or {}).get("PASSWORD")
    if password:
        extra["password"] = password
    return url, extra


def get_client(url: str, kwargs: Mapping[str, Any] | None = None) -> redis.Redis:
    """Return the process-wide client for ``url`` (created on first use, never at import)."""
    defaults = _supported_defaults()
    if urlsplit(url).scheme == "unix":  # redis-py's unix socket connection rejects these
        defaults = {k: v for k, v in defaults.items() if k not in _TCP_ONLY}
    options = {**defaults, **(kwargs or {})}
    key = (url, tuple(sorted((k, repr(v)) for k, v in options.items())))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(url, decode_responses=False, **options)
                _clients[key] = client
    return client


def reset_clients() -> None:
    """Drop every cached client (tests, and after settings change)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
