"""``TASKS[alias]["OPTIONS"]`` of jobqueue backends: parsing, validation, broker cache."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import setting_changed

from ..broker.base import Broker
from ..compat import InvalidTask
from ..connection import (
    DEFAULT_REPLY_SPIN,
    DEFAULT_URL,
    get_client,
    url_from_cache,
    validate_url,
)
from ..exceptions import ConfigurationError
from ..task import validate_options

KNOWN_OPTIONS = {"URL", "CACHE", "NAMESPACE", "RESULT_TTL", "PENDING_RESULT_TTL",
                 "CONNECTION_KWARGS", "MAX_ATTEMPTS", "BACKOFF", "TIMEOUT", "REPLY_SPIN_US"}
#: The most ``REPLY_SPIN_US`` accepts: longer spins only burn the caller's CPU.
MAX_REPLY_SPIN_US = 10_000
_NAMESPACE = re.compile(r"^[^\s:*?\[\]]+(:[^\s:*?\[\]]+)*$")


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Validated options; ``error`` holds the first problem (reported by system checks)."""

    url: str = DEFAULT_URL
    namespace: str = "resque"
    result_ttl: int = 86400
    pending_result_ttl: int = 30 * 86400
    connection_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Defaults for tasks that set none: max_attempts, backoff, timeout.
    task_defaults: dict[str, Any] = field(default_factory=dict)
    #: Seconds an enqueue or result read polls for Redis' reply before sleeping.
    reply_spin: float = DEFAULT_REPLY_SPIN
    error: str | None = None


def _ttl(options: dict[str, Any], key: str, default: int, where: str) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{where}[{key!r}] must be a positive number of seconds")
    return value


def _reply_spin(options: dict[str, Any], where: str) -> float:
    value = options.get("REPLY_SPIN_US")
    if value is None:
        return DEFAULT_REPLY_SPIN
    if isinstance(value, bool) or not isinstance(value, int) or not (
            0 <= value <= MAX_REPLY_SPIN_US):
        raise ConfigurationError(f"{where}['REPLY_SPIN_US'] must be a whole number of "
                                 f"microseconds from 0 (never spin) to {MAX_REPLY_SPIN_US:,}, "
                                 f"got {value!r}")
    return value / 1e6


def _parse(alias: str, options: dict[str, Any]) -> BackendOptions:
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where} must be a dict")
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    if "URL" in options and "CACHE" in options:
        raise ConfigurationError(f"{where}: give URL or CACHE, not both")
    kwargs = dict(options.get("CONNECTION_KWARGS") or {})
    if "CACHE" in options:
        url, extra = url_from_cache(options["CACHE"], f"{where}['CACHE']")
        kwargs = {**extra, **kwargs}
    else:
        url = validate_url(options.get("URL", DEFAULT_URL), f"{where}['URL']")
    namespace = options.get("NAMESPACE", "resque")
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigurationError(
            f"{where}['NAMESPACE'] must be a non-empty string without spaces or glob "
            f"characters, got {namespace!r}"
        )
    defaults = {name.lower(): options[name] for name in ("MAX_ATTEMPTS", "BACKOFF", "TIMEOUT")
                if options.get(name) is not None}
    try:
        validate_options(defaults, where)
    except InvalidTask as exc:
        raise ConfigurationError(str(exc)) from None
    return BackendOptions(
        url=url, namespace=namespace, task_defaults=defaults,
        result_ttl=_ttl(options, "RESULT_TTL", 86400, where),
        pending_result_ttl=_ttl(options, "PENDING_RESULT_TTL", 30 * 86400, where),
        connection_kwargs=kwargs,
        reply_spin=_reply_spin(options, where),
    )


def parse_options(alias: str, options: dict[str, Any]) -> BackendOptions:
    """Parse options; on a mistake return defaults with ``error`` set instead of raising."""
    try:
        return _parse(alias, options)
    except ConfigurationError as exc:
        return BackendOptions(error=str(exc))


_brokers: dict[tuple[str, str, str], Broker] = {}
_lock = threading.Lock()
#: Bumped when ``TASKS`` or ``CACHES`` change, so backends re-read their options (a ``CACHE``
#: option follows its cache's new ``LOCATION``).
_generation = 0


def generation() -> int:
    """How many times the settings brokers depend on have changed in this process."""
    return _generation


def broker_for(alias: str, config: BackendOptions) -> Broker:
    """The one broker per process for an alias and its options."""
    if config.error:
        raise ConfigurationError(config.error)
    key = (alias, config.url, repr(config))
    broker = _brokers.get(key)
    if broker is None:
        from ..broker.redis import RedisBroker

        with _lock:
            broker = _brokers.get(key)
            if broker is None:
                broker = RedisBroker(
                    get_client(config.url, config.connection_kwargs),
                    config.namespace,
                    result_ttl=config.result_ttl,
                    pending_result_ttl=config.pending_result_ttl,
                    backend_alias=alias,
                    task_defaults=config.task_defaults,
                    reply_spin=config.reply_spin,
                )
                _brokers[key] = broker
    return broker


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _generation
    if setting in {"TASKS", "CACHES"}:
        with _lock:
            _brokers.clear()
            _generation += 1


setting_changed.connect(_reset, dispatch_uid="jobqueue.backends.options.reset")
