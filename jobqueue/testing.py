"""Helpers for your project's tests: capture what was enqueued and run it in-process.

With a real Redis (the one your ``TASKS`` point at), under a private key namespace::

    from jobqueue.testing import capture_jobs

    def test_signup_sends_welcome(client):                      # pytest-django
        with capture_jobs() as jobs:
            client.post("/signup/", {"email": "a@example.com"})
            jobs.assert_enqueued(send_welcome, kwargs={"email": "a@example.com"})
            jobs.run_all()                                     # runs follow-ups, retries too

Or use the ``jobqueue_jobs`` fixture after adding ``pytest_plugins = ["jobqueue.testing"]``
to your ``conftest.py``; in a ``TestCase``, use ``capture_jobs()`` as a context manager.

``ImmediateBackend`` and ``DummyBackend`` here are Django's own test backends with jobqueue's
``task_class``, so modules using ``@task(max_attempts=...)`` import under them too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.test.utils import override_settings

from .compat import DEFAULT_TASK_BACKEND_ALIAS, HAS_CORE_TASKS, Task, task_backends
from .job import Job
from .task import JobqueueTask

if HAS_CORE_TASKS:
    from django.tasks.backends.dummy import DummyBackend as _Dummy
    from django.tasks.backends.immediate import ImmediateBackend as _Immediate
else:  # pragma: no cover - Django 5.2
    from django_tasks.backends.dummy import DummyBackend as _Dummy  # type: ignore[no-redef]
    from django_tasks.backends.immediate import (  # type: ignore[no-redef]
        ImmediateBackend as _Immediate,
    )


class ImmediateBackend(_Immediate):  # type: ignore[misc,valid-type]
    """Django's ImmediateBackend that accepts jobqueue's task options."""

    task_class = JobqueueTask


class DummyBackend(_Dummy):  # type: ignore[misc,valid-type]
    """Django's DummyBackend that accepts jobqueue's task options."""

    task_class = JobqueueTask


@dataclass
class CapturedJobs:
    """What a block enqueued, and a way to run it all."""

    alias: str
    namespace: str
    ran: int = 0
    _seen: list[Job] = field(default_factory=list)

    @property
    def broker(self) -> Any:
        from .broker import get_broker

        return get_broker(self.alias)

    def enqueued(self, task: Task | None = None, *, queue: str | None = None) -> list[Job]:
        """Jobs waiting now (queued, prioritised and delayed), oldest first, optionally filtered."""
        jobs = [*self._queued(), *self._delayed()]
        if task is not None:
            jobs = [j for j in jobs if j.task_name == task.module_path]
        if queue is not None:
            jobs = [j for j in jobs if j.queue == queue]
        return jobs

    def _queued(self) -> list[Job]:
        from .payload import decode_job

        client, keys = self.broker.client, self.broker.keys
        jobs = []
        for name in self.broker.queue_names():
            for raw in client.zrange(keys.priority_queue(name), 0, -1):
                jobs.append(decode_job(raw, name))
            for raw in client.lrange(keys.queue(name), 0, -1):
                jobs.append(decode_job(raw, name))
        return jobs

    def _delayed(self) -> list[Job]:
        from .payload import decode_job

        client, keys = self.broker.client, self.broker.keys
        jobs = []
        for ts in client.zrange(keys.delayed_schedule, 0, -1):
            for raw in client.lrange(keys.delayed(int(ts)), 0, -1):
                job = decode_job(raw, "")
                jobs.append(decode_job(raw, str(job.extra.get("queue") or "")))
        return jobs

    def assert_enqueued(self, task: Task, *, args: list[Any] | None = None,
                        kwargs: dict[str, Any] | None = None, count: int | None = None) -> None:
        """Fail unless ``task`` is waiting (with these args/kwargs, ``count`` times if given)."""
        matches = [j for j in self.enqueued(task)
                   if (args is None or j.args == list(args))
                   and (kwargs is None or j.kwargs == kwargs)]
        if (count is None and not matches) or (count is not None and len(matches) != count):
            waiting = [(j.task_name, j.args, j.kwargs) for j in self.enqueued()]
            raise AssertionError(
                f"expected {count if count is not None else 'at least one'} job(s) of "
                f"{task.module_path} args={args} kwargs={kwargs}; waiting: {waiting}")

    def assert_nothing_enqueued(self) -> None:
        """Fail if any job is waiting."""
        waiting = self.enqueued()
        if waiting:
            raise AssertionError(f"expected no jobs, found {[j.task_name for j in waiting]}")

    def run_all(self, *, max_jobs: int = 1000, include_delayed: bool = True) -> int:
        """Run every waiting job in this process until none is left; return how many ran.

        Jobs those jobs enqueue run too; with ``include_delayed`` delayed jobs and retries
        are made due at once instead of waiting for their time.
        """
        from .worker import Worker

        ran = 0
        while ran < max_jobs:
            if include_delayed:
                self.broker.promote_due(until=time.time() + 10 * 365 * 86400)
            if not self.enqueued() or not self._queued():
                break
            worker = Worker(self.broker, ["*"], fork=False, burst=True,
                            max_jobs=max_jobs - ran, manage_db_connections=False,
                            backend_class=type(task_backends[self.alias]))
            done = worker.work()
            ran += done
            if done == 0:
                break
        self.ran += ran
        return ran


@contextmanager
def capture_jobs(alias: str = DEFAULT_TASK_BACKEND_ALIAS,
                 namespace: str | None = None) -> Iterator[CapturedJobs]:
    """Point ``TASKS[alias]`` at a private namespace for the block; clean it up afterwards."""
    from django.conf import settings

    namespace = namespace or f"jqtest-{os.getpid()}-{os.urandom(4).hex()}"
    tasks_setting = {k: dict(v) for k, v in settings.TASKS.items()}
    tasks_setting[alias]["OPTIONS"] = {**tasks_setting[alias].get("OPTIONS", {}),
                                      "NAMESPACE": namespace}
    with override_settings(TASKS=tasks_setting):
        captured = CapturedJobs(alias=alias, namespace=namespace)
        try:
            yield captured
        finally:
            _delete_namespace(captured.broker.client, namespace)


def _delete_namespace(client: Any, namespace: str) -> None:
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


try:  # pytest fixtures, when pytest is installed (``pytest_plugins = ["jobqueue.testing"]``)
    import pytest

    @pytest.fixture
    def jobqueue_jobs() -> Iterator[CapturedJobs]:
        """Capture and run jobs of the default backend (see ``capture_jobs``)."""
        with capture_jobs() as jobs:
            yield jobs

except ImportError:  # pragma: no cover
    pass
