"""The ``JOBQUEUE`` setting: defaults, validation and one cached, typed view of it.

Backend-specific options (URL, namespace, result TTL) live in ``TASKS[alias]["OPTIONS"]`` and
are read by ``jobqueue.broker``; this module holds what the worker, pool and registry share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from .exceptions import ConfigurationError
from .periodic import parse_schedule

DEFAULTS: dict[str, Any] = {
    "RESQUE_CLASSES": {},  # Resque class name -> dotted path of a task
    "TASK_MODULES": [],  # modules to import besides every installed app's ``tasks``
    "INTERVAL": 5.0,  # seconds between polls for jobs other Resque clients push
    "GRACE_PERIOD": 10.0,  # seconds a running child gets after TERM before SIGKILL
    "HEARTBEAT_INTERVAL": 5.0,  # seconds between worker heartbeats
    "SETUP": [],  # dotted callables run once before the first fork
    "POOL": {},  # queue list -> number of workers (manage.py pool)
    "SCHEDULE": {},  # periodic jobs: name -> {"task", "cron" | "every", "args", ...}
    "FORK_SERVER": True,  # fork mode: a fork server forks job children, not the worker
    "FORK_SERVER_IDLE_TIMEOUT": 10.0,  # seconds without a job before it stops (None: never)
    "PREFETCH": 8,  # --no-fork: jobs a worker reserves per round trip
    "IMMORTAL_HEAP": True,  # fork mode and pools: make the start-up heap immortal (immortal.py)
    "HUGE_PAGES": True,  # fork mode and pools: back the start-up heap with huge pages
}


@dataclass(frozen=True, slots=True)
class JobqueueConfig:
    """Validated ``JOBQUEUE`` setting."""

    resque_classes: Mapping[str, str] = field(default_factory=dict)
    task_modules: tuple[str, ...] = ()
    interval: float = 5.0
    grace_period: float = 10.0
    heartbeat_interval: float = 5.0
    setup: tuple[str, ...] = ()
    pool: Mapping[str, Any] = field(default_factory=dict)
    schedule: tuple[Any, ...] = ()
    fork_server: bool = True
    fork_server_idle_timeout: float | None = 10.0
    prefetch: int = 8
    immortal_heap: bool = True
    huge_pages: bool = True
    raw: Mapping[str, Any] = field(default_factory=dict)


def _number(raw: Mapping[str, Any], key: str, *, minimum: float = 0.0) -> float:
    value = raw[key]
    # ``not >=`` rather than ``<``: NaN compares false both ways and must be refused too.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ConfigurationError(f"JOBQUEUE[{key!r}] must be a number >= {minimum}, got {value!r}")
    return float(value)


def _whole(raw: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"JOBQUEUE[{key!r}] must be a whole number >= {minimum}, "
                                 f"got {value!r}")
    return value


def _optional_number(raw: Mapping[str, Any], key: str, *, minimum: float) -> float | None:
    if raw[key] is None:
        return None
    try:
        return _number(raw, key, minimum=minimum)
    except ConfigurationError:
        raise ConfigurationError(f"JOBQUEUE[{key!r}] must be None or a number >= {minimum}, "
                                 f"got {raw[key]!r}") from None


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw[key]
    if not isinstance(value, bool):
        raise ConfigurationError(f"JOBQUEUE[{key!r}] must be True or False, got {value!r}")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw[key]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"JOBQUEUE[{key!r}] must be a list of dotted paths")
    return tuple(value)


def build_config(raw_setting: Mapping[str, Any] | None) -> JobqueueConfig:
    """Validate a ``JOBQUEUE`` dict; raise ``ConfigurationError`` naming the bad entry."""
    if raw_setting is None:
        raw_setting = {}
    if not isinstance(raw_setting, Mapping):
        raise ConfigurationError("JOBQUEUE must be a dict")
    unknown = sorted(set(raw_setting) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(f"JOBQUEUE has unknown keys: {', '.join(unknown)}")
    raw = {**DEFAULTS, **raw_setting}
    classes = raw["RESQUE_CLASSES"]
    if not isinstance(classes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in classes.items()
    ):
        raise ConfigurationError(
            "JOBQUEUE['RESQUE_CLASSES'] must map Resque class names to dotted task paths"
        )
    if not isinstance(raw["POOL"], Mapping):
        raise ConfigurationError("JOBQUEUE['POOL'] must map queue lists to worker counts")
    return JobqueueConfig(
        resque_classes=dict(classes),
        task_modules=_strings(raw, "TASK_MODULES"),
        interval=_number(raw, "INTERVAL", minimum=0.01),
        grace_period=_number(raw, "GRACE_PERIOD"),
        heartbeat_interval=_number(raw, "HEARTBEAT_INTERVAL", minimum=0.1),
        setup=_strings(raw, "SETUP"),
        pool=dict(raw["POOL"]),
        schedule=tuple(parse_schedule(raw["SCHEDULE"])),
        fork_server=_flag(raw, "FORK_SERVER"),
        fork_server_idle_timeout=_optional_number(raw, "FORK_SERVER_IDLE_TIMEOUT", minimum=0.1),
        prefetch=_whole(raw, "PREFETCH"),
        immortal_heap=_flag(raw, "IMMORTAL_HEAP"),
        huge_pages=_flag(raw, "HUGE_PAGES"),
        raw=raw,
    )


@lru_cache(maxsize=1)
def get_config() -> JobqueueConfig:
    """Return the validated ``settings.JOBQUEUE`` (cached until the setting changes)."""
    return build_config(getattr(settings, "JOBQUEUE", None))


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in {"JOBQUEUE", "TASKS"}:
        get_config.cache_clear()


setting_changed.connect(_reset, dispatch_uid="jobqueue.conf.reset")
