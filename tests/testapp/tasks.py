"""Tasks the test suite runs in real workers."""

from __future__ import annotations

import os
import time
from typing import Any

from jobqueue.broker import get_broker
from jobqueue.compat import TASK_FORWARDS_KWARGS, TaskContext, task
from jobqueue.task import job_options


def _redis() -> Any:
    return get_broker().client  # type: ignore[attr-defined]


def _ns() -> str:
    return get_broker().namespace  # type: ignore[attr-defined]


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task()
def boom(message: str = "boom") -> None:
    raise ValueError(message)


@task()
def record(marker: str) -> int:
    """Append ``marker`` and this process's pid to a list, for cross-process assertions."""
    _redis().rpush(f"{_ns()}:test:record", f"{marker}:{os.getpid()}")
    return os.getpid()


@task()
def sleepy(seconds: float, marker: str = "") -> str:
    """Announce start, sleep, announce finish (to test signals while a job runs)."""
    r = _redis()
    r.rpush(f"{_ns()}:test:started", marker or "x")
    try:
        time.sleep(seconds)
    finally:
        r.rpush(f"{_ns()}:test:finally", marker or "x")
    r.rpush(f"{_ns()}:test:finished", marker or "x")
    return marker


@task(takes_context=True)
def with_context(context: TaskContext, value: int) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "value": value}


@task()
async def async_add(a: int, b: int) -> int:
    return a + b


@task()
def not_json() -> object:
    return object()


@task()
def crash_hard() -> None:
    os._exit(7)


@task()
def kill_self() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@task()
def archive(*args: Any) -> list[Any]:
    """Target of the Resque class name ``Archive`` (see settings.RESQUE_CLASSES)."""
    _redis().rpush(f"{_ns()}:test:archive", repr(args))
    return list(args)


@task(queue_name="mail")
def on_mail_queue() -> str:
    return "mail"


if TASK_FORWARDS_KWARGS:  # Django 6.1+ and the 5.2 backport; 6.0 raises TypeError

    @task(max_attempts=3, backoff=0)
    def flaky_forwarded(marker: str) -> int:
        return _flaky(marker)


@task()
@job_options(max_attempts=3, backoff=0)  # works on every Django version, 6.0 included
def flaky(marker: str) -> int:
    return _flaky(marker)


def _flaky(marker: str) -> int:
    """Fail until the third attempt; count attempts in Redis."""
    n = _redis().incr(f"{_ns()}:test:flaky:{marker}")
    if n < 3:
        raise RuntimeError(f"attempt {n} fails")
    return int(n)


@task()
@job_options(timeout=0.5)
def too_slow(seconds: float = 30.0) -> None:
    time.sleep(seconds)


@task()
def username_of(user_id: int) -> str:
    """Read a row from PostgreSQL (the transaction tests)."""
    from django.contrib.auth.models import User

    return User.objects.using("pg").get(pk=user_id).username


@task()
def chain(depth: int) -> int:
    """Enqueue itself until depth reaches 0 (testing helpers run follow-up jobs)."""
    if depth > 0:
        chain.enqueue(depth - 1)
    return depth
