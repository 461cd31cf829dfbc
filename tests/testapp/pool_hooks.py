"""``JOBQUEUE["SETUP"]`` hooks and a task for the pool and prewarm tests (they record in Redis).

Hook records go to the list ``<namespace>:test:hooks`` as ``event:pid:...``. The pool tests
list this module in ``TASK_MODULES`` so that workers know the ``hold`` task.
"""

from __future__ import annotations

import os
import random
from typing import Any

from jobqueue import signals
from jobqueue.broker import get_broker
from jobqueue.compat import task
from tests.testapp.procinfo import served_worker


def _push(record: str) -> None:
    broker = get_broker()
    broker.client.rpush(f"{broker.namespace}:test:hooks", record)  # type: ignore[attr-defined]


def record_setup() -> None:
    """Note that set-up ran, and in which process."""
    _push(f"setup:{os.getpid()}")


def connect_receivers() -> None:
    """Record the pool's hook signals (only those sent by the pool, not per job)."""
    signals.pool_started.connect(_pool_started, dispatch_uid="test-pool-started")
    signals.before_fork.connect(_before_fork, dispatch_uid="test-before-fork")
    signals.after_fork.connect(_after_fork, dispatch_uid="test-after-fork")
    signals.worker_exit.connect(_worker_exit, dispatch_uid="test-worker-exit")


def crash_on_start() -> None:
    """Make every worker die as it starts (to see the master's crash-loop backoff)."""
    signals.worker_started.connect(_die, dispatch_uid="test-crash-on-start")


def _pool_started(sender: Any, pool: Any, **kwargs: Any) -> None:
    _push(f"pool_started:{os.getpid()}:{sender.__name__}")


def _before_fork(sender: Any, pool: Any = None, spec: Any = None, **kwargs: Any) -> None:
    if pool is not None:
        _push(f"before_fork:{os.getpid()}:{spec.key}")


def _after_fork(sender: Any, pool: Any = None, spec: Any = None, **kwargs: Any) -> None:
    if pool is not None:
        _push(f"after_fork:{os.getpid()}:{os.getppid()}:{spec.key}:{random.random()}")


def _worker_exit(sender: Any, pool: Any, pid: int, status: int, **kwargs: Any) -> None:
    _push(f"worker_exit:{os.getpid()}:{pid}:{status}")


def _die(sender: Any, **kwargs: Any) -> None:
    os._exit(3)


@task()
def hold(marker: str, timeout: float = 25.0) -> int:
    """Run until the test pushes to ``<ns>:test:release:<marker>`` (a job that is "running").

    The start is announced inside the ``try``: a TERM that lands while the announcement's
    reply is still being read (the test saw it in Redis already) runs the ``finally`` too.
    """
    broker = get_broker()
    client, ns = broker.client, broker.namespace  # type: ignore[attr-defined]
    try:
        client.rpush(f"{ns}:test:started", f"{marker}:{os.getpid()}")
        client.blpop([f"{ns}:test:release:{marker}"], timeout=timeout)
    finally:
        client.rpush(f"{ns}:test:finally", marker)
    client.rpush(f"{ns}:test:finished", marker)
    return os.getpid()


@task()
def prewarm_state() -> None:
    """Record what this job child inherited warm from its parent (no query of its own)."""
    import gc
    import json

    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType
    from django.urls import get_resolver

    state = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "worker": served_worker(),
        "content_types": len(ContentType.objects._cache.get("default", {})),
        "user_fields_cached": "fields" in User._meta.__dict__,
        "resolver_populated": get_resolver()._populated,
        "frozen": gc.get_freeze_count(),
    }
    broker = get_broker()
    broker.client.rpush(f"{broker.namespace}:test:prewarm",  # type: ignore[attr-defined]
                        json.dumps(state))


def fail_setup() -> None:
    """A set-up hook that breaks (a HUP to code like this must keep the old pool)."""
    raise RuntimeError("warming failed")
