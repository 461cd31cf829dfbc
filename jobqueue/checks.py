"""System checks (``manage.py check``) with stable ids.

======  ===========================================================================
E002    ``JOBQUEUE`` setting invalid (unknown key, wrong type)
E003    a ``RESQUE_CLASSES`` entry does not point at a registered task
E004    a ``TASK_MODULES`` / ``RESQUE_CLASSES`` module cannot be imported
E005    a ``SCHEDULE`` entry names something that is not a registered task
E006    a ``SCHEDULE`` entry names a queue its backend's ``QUEUES`` does not allow
E010    ``POOL`` invalid (an entry's queue list, count or options; the message names it)
E011    a ``SETUP`` entry cannot be imported or is not callable
E012    a ``POOL`` entry names a ``backend`` that is not a jobqueue backend in ``TASKS``
W001    (deploy) Redis of a jobqueue backend is unreachable
W002    (deploy) Redis of a jobqueue backend has no persistence (RDB or AOF)
======  ===========================================================================

Backend option errors (``TASKS[alias]["OPTIONS"]``) are reported by the backend's own
``check()`` as ``jobqueue.E001`` through Django's task checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core import checks

from .exceptions import ConfigurationError


def _jobqueue_backends() -> list[Any]:
    from .backends.redis import RedisBackend
    from .compat import task_backends

    found = []
    for alias in task_backends.settings:
        try:
            backend = task_backends[alias]
        except Exception:
            continue
        if isinstance(backend, RedisBackend):
            found.append(backend)
    return found


@checks.register("jobqueue")
def check_settings(app_configs: Any = None, **kwargs: Any) -> Iterable[checks.CheckMessage]:
    """Validate ``JOBQUEUE`` and that every mapped Resque class names a task."""
    from . import registry
    from .conf import get_config

    try:
        config = get_config()
    except ConfigurationError as exc:
        return [checks.Error(str(exc), id="jobqueue.E002")]
    try:
        registry.autodiscover()
    except ImportError as exc:
        return [checks.Error(f"Cannot import a task module: {exc}", id="jobqueue.E004",
                             hint="Check JOBQUEUE['TASK_MODULES'] and JOBQUEUE['RESQUE_CLASSES']")]
    errors = []
    for resque_name, path in config.resque_classes.items():
        if registry.resolve(path) is None:
            errors.append(checks.Error(
                f"JOBQUEUE['RESQUE_CLASSES'][{resque_name!r}] = {path!r} is not a task "
                "registered on a jobqueue backend",
                hint="Point it at a function decorated with @task, e.g. 'myapp.tasks.archive'",
                id="jobqueue.E003"))
    errors += _check_schedule(config.schedule)
    return errors


def _check_schedule(entries: Any) -> list[checks.CheckMessage]:
    from . import registry

    errors: list[checks.CheckMessage] = []
    for entry in entries:
        task = registry.resolve(entry.task)
        where = f"JOBQUEUE['SCHEDULE'][{entry.name!r}]"
        if task is None:
            errors.append(checks.Error(
                f"{where}['task'] = {entry.task!r} is not a task registered on a jobqueue "
                "backend", id="jobqueue.E005"))
            continue
        queue = entry.queue or task.queue_name
        allowed = task.get_backend().queues
        if allowed and queue not in allowed:
            errors.append(checks.Error(
                f"{where} uses queue {queue!r}, which TASKS[{task.backend!r}]['QUEUES'] does "
                f"not allow ({', '.join(sorted(allowed))})", id="jobqueue.E006"))
    return errors


@checks.register("jobqueue")
def check_pool(app_configs: Any = None, **kwargs: Any) -> Iterable[checks.CheckMessage]:
    """Validate ``JOBQUEUE["POOL"]`` (``manage.py pool``) and ``JOBQUEUE["SETUP"]`` hooks."""
    from .broker import get_broker
    from .conf import get_config
    from .pool_config import parse_pool
    from .prewarm import resolve_hook

    try:
        config = get_config()
    except ConfigurationError:
        return []  # reported as E002 by check_settings
    errors: list[checks.CheckMessage] = []
    try:
        pool = parse_pool(config.pool)
    except ConfigurationError as exc:
        errors.append(checks.Error(
            str(exc), id="jobqueue.E010",
            hint="Map queue lists to worker counts, e.g. {'critical': 2, 'default,mail': 3}, "
                 "or to options: {'count': 2, 'fork': False, 'interval': 0.5}"))
        pool = None
    for spec in pool.specs if pool is not None else ():
        try:
            get_broker(spec.backend)
        except Exception as exc:
            errors.append(checks.Error(
                f"JOBQUEUE['POOL'][{spec.key!r}] uses backend {spec.backend!r}: {exc}",
                id="jobqueue.E012"))
    for path in config.setup:
        try:
            resolve_hook(path)
        except ConfigurationError as exc:
            errors.append(checks.Error(str(exc), id="jobqueue.E011",
                                       hint="A SETUP entry is the dotted path of a callable "
                                            "taking no arguments"))
    return errors


@checks.register("jobqueue", deploy=True)
def check_redis(app_configs: Any = None, **kwargs: Any) -> Iterable[checks.CheckMessage]:
    """Warn when a backend's Redis is unreachable or keeps nothing on disk."""
    messages: list[checks.CheckMessage] = []
    for backend in _jobqueue_backends():
        if backend.config.error:
            continue
        client = backend.broker.client  # type: ignore[attr-defined]
        try:
            info = client.info("persistence")
        except Exception as exc:
            messages.append(checks.Warning(
                f"Redis for TASKS[{backend.alias!r}] ({backend.config.url}) is unreachable: {exc}",
                id="jobqueue.W001"))
            continue
        if not int(info.get("aof_enabled", 0)) and not _rdb_configured(client):
            messages.append(checks.Warning(
                f"Redis for TASKS[{backend.alias!r}] has no persistence: queued jobs are lost "
                "if it restarts", hint="Enable appendonly yes (AOF) or RDB snapshots",
                id="jobqueue.W002"))
    return messages


def _rdb_configured(client: Any) -> bool:
    try:
        save = client.config_get("save").get("save", "")
    except Exception:
        return True
    return bool(save and str(save).strip())
