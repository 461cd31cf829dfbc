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


# --------------------------------------------------------------------------- reliability (issue 5)
@task()
@job_options(max_attempts=25, backoff=0.2)
def chaos_record(job_no: int, seconds: float = 0.0) -> int:
    """Record ``job_no`` once per execution (the chaos test wants every number at least once).

    Retries generously: while Redis restarts the RPUSH itself fails, and that attempt must not
    end in the failed list.
    """
    if seconds:
        time.sleep(seconds)
    _redis().rpush(f"{_ns()}:test:chaos", job_no)
    return job_no


@task()
def stubborn(seconds: float = 30.0) -> None:
    """Ignore TERM (only KILL stops it); announce the start."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _redis().rpush(f"{_ns()}:test:started", "stubborn")
    time.sleep(seconds)


@task()
@job_options(timeout=0.5)
def stubborn_with_timeout(seconds: float = 30.0) -> None:
    """``stubborn`` with a half-second timeout: TERM is ignored, so KILL ends it."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _redis().rpush(f"{_ns()}:test:started", "stubborn")
    time.sleep(seconds)


@task()
@job_options(timeout=0.5, max_attempts=2, backoff=0)
def too_slow_twice(seconds: float = 30.0) -> None:
    """Time out on each of two attempts."""
    _redis().rpush(f"{_ns()}:test:started", "too_slow_twice")
    time.sleep(seconds)


@task()
@job_options(max_attempts=3)
def retry_me(marker: str, succeed_on: int = 2) -> int:
    """Ask for a retry explicitly (``Retry(delay=0)``) until attempt ``succeed_on``."""
    from jobqueue.exceptions import Retry

    n = _redis().incr(f"{_ns()}:test:retry_me:{marker}")
    if n < succeed_on:
        raise Retry(f"not yet ({n})", delay=0)
    return int(n)


@task()
@job_options(max_attempts=5, backoff=0)
def give_up(message: str = "no point retrying") -> None:
    """Fail at once, whatever ``max_attempts`` says."""
    from jobqueue.exceptions import PermanentFailure

    _redis().incr(f"{_ns()}:test:give_up")
    raise PermanentFailure(message)


@task()
@job_options(max_attempts=2, backoff=0)
def always_fails(marker: str = "") -> None:
    """Fail on every attempt (two of them)."""
    _redis().rpush(f"{_ns()}:test:always_fails", marker)
    raise RuntimeError(f"always fails {marker}")


def _seen_backoff(exc: BaseException, task_result: Any) -> float | None:
    """Backoff callable: note what it was given; 0 s for ValueError, stop for anything else."""
    result_id = getattr(task_result, "id", None)
    _redis().rpush(f"{_ns()}:test:backoff", f"{type(exc).__name__}:{result_id}")
    return 0 if isinstance(exc, ValueError) else None


@task()
@job_options(max_attempts=3, backoff=_seen_backoff)
def backoff_probe(kind: str = "value") -> None:
    """Fail with ``ValueError`` (retried by the callable) or ``KeyError`` (not retried)."""
    _redis().rpush(f"{_ns()}:test:backoff_probe", kind)
    raise ValueError(kind) if kind == "value" else KeyError(kind)


def _broken_backoff(exc: BaseException, task_result: Any) -> float:
    raise ZeroDivisionError("broken backoff")


@task()
@job_options(max_attempts=3, backoff=_broken_backoff)
def broken_backoff() -> None:
    """Fail; its backoff callable raises too (the job must still end in the failed list)."""
    raise RuntimeError("task failed")


@task()
@job_options(max_attempts=2, backoff=0)
def sleepy_twice(seconds: float, marker: str = "") -> str:
    """``sleepy`` with two attempts (the reaper puts a lost first attempt back)."""
    return sleepy.func(seconds, marker)


@task()
@job_options(max_attempts=2, backoff=3600)
def fails_later(marker: str = "") -> None:
    """Fail; the retry is an hour away (its delayed item can be inspected)."""
    raise RuntimeError(f"fails later {marker}")


@task()
def file_sleepy(path: str, seconds: float) -> int:
    """Announce start and end through files (works while Redis is down); return the pid."""
    with open(f"{path}.started", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    with open(f"{path}.done", "w") as f:
        f.write(str(os.getpid()))
    return os.getpid()


@task()
def size_of(*args: Any) -> int:
    """Return the total length of the string arguments (a huge payload, a small result)."""
    return sum(len(a) for a in args if isinstance(a, str))


@task()
def lone_surrogate(kind: str = "return") -> str:
    """Return (or raise with) a string no UTF-8 encoder accepts."""
    if kind == "raise":
        raise ValueError("bad \ud800 text")
    return "bad \ud800 text"


@task()
def heap_report() -> dict[str, Any]:
    """Whether the process running this job has an immortal heap, and its page faults so far
    (a job child's count starts at its fork)."""
    import resource

    from jobqueue import immortal, runner

    return {"immortal": immortal.is_immortal(runner.JobRunner.execute), "pid": os.getpid(),
            "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}
