"""``RedisBackend``: Django's Tasks API on Redis, in Resque's wire format.

Configured the Django way::

    TASKS = {"default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend",
        "QUEUES": [],                                   # [] = any queue name
        "OPTIONS": {"URL": "redis://127.0.0.1:6379/0",  # or "CACHE": "<django-redis alias>"
                    "NAMESPACE": "resque"},
    }}

The backend only validates, encodes and hands jobs to its broker; workers run them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core import checks

from .. import registry
from ..broker.base import Broker
from ..compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from ..exceptions import BrokerUnavailable
from ..job import Job
from ..payload import ResultRecord
from ..task import OPTION_NAMES, JobqueueTask, task_option, validate_options
from .options import BackendOptions, broker_for, generation, parse_options
from .results import check_arguments, gc_paused, result_copies, to_task_result

logger = logging.getLogger("jobqueue.backend")
#: Tasks a backend remembers as validated (``using()`` makes new ones; then it starts over).
VALIDATED_TASKS = 256


def normalise_run_after(task: Task) -> None:
    """Accept ``run_after`` as a ``timedelta`` (from now) and naive times with USE_TZ off.

    Django documents a ``timedelta`` but its own validation crashes on one; a naive
    datetime with ``USE_TZ = False`` means ``TIME_ZONE`` local time. Stored times are UTC.
    """
    from django.conf import settings
    from django.utils import timezone

    value = task.run_after
    if isinstance(value, timedelta):
        object.__setattr__(task, "run_after", datetime.now(UTC) + value)
    elif isinstance(value, datetime) and timezone.is_naive(value) and not settings.USE_TZ:
        aware = timezone.make_aware(value, timezone.get_default_timezone())
        object.__setattr__(task, "run_after", aware)


def new_result_id() -> str:
    """A random 32-character hex id (Django requires ids shorter than 64 characters)."""
    return os.urandom(16).hex()


def new_result_ids(count: int) -> list[str]:
    """``count`` ids like ``new_result_id``'s, from one read of the system's randomness."""
    pool = os.urandom(16 * count).hex()
    return [pool[at : at + 32] for at in range(0, 32 * count, 32)]


class RedisBackend(BaseTaskBackend):
    """Enqueue Django tasks onto Resque-compatible Redis queues."""

    task_class = JobqueueTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    #: One instance may serve every async context of a thread (``JobqueueTask.get_backend``
    #: keeps it): its state is its parsed options and the process-wide broker.
    shared_in_thread = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Parse now so a bad option fails loudly at start-up, but never connect here: the
        # backend is built at import time of any module with an @task.
        self._generation = generation()
        self._config: BackendOptions = parse_options(alias, self.options)
        self._broker: Broker | None = None
        self._validated: dict[int, Task] = {}

    @property
    def config(self) -> BackendOptions:
        """The parsed options (parsed again after ``CACHES`` change: a ``CACHE`` may move)."""
        if self._generation != generation():
            self._generation = generation()
            self._config = parse_options(self.alias, self.options)
            self._broker = None
        return self._config

    @property
    def broker(self) -> Broker:
        """The process-wide broker of this alias (connects lazily, on first command)."""
        config = self.config
        if self._broker is None:
            self._broker = broker_for(self.alias, config)
        return self._broker

    # ------------------------------------------------------------------ Django API
    def validate_task(self, task: Task) -> None:
        """Django's checks and jobqueue's options; remembered per task for this backend.

        Django validates a task when it is defined and again at every ``using()``; jobqueue
        validates again at each enqueue, in case settings changed. Django builds a new
        backend when ``TASKS`` changes, and what else the checks read is fixed per task, so
        a task without ``run_after`` (which depends on the clock and ``USE_TZ``) that passed
        here once is not checked again by this backend.
        """
        if task.run_after is None:
            if self._validated.get(id(task)) is task:
                return
        else:
            normalise_run_after(task)
        super().validate_task(task)
        validate_options({name: task_option(task, name) for name in OPTION_NAMES},
                         task.module_path)
        registry.register(task)
        if task.run_after is None:
            if len(self._validated) >= VALIDATED_TASKS:
                self._validated.clear()
            self._validated[id(task)] = task  # the value keeps the id from being reused

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        self.validate_task(task)
        args_list, kwargs_dict = check_arguments(task, args, kwargs)
        job, record = self._job_and_record(task, args_list, kwargs_dict, datetime.now(UTC))
        built: list[TaskResult] = []

        def build() -> None:  # while Redis stores the job
            if not built:
                built.append(self._ready_result(task, job))

        if task.run_after is not None and task.run_after > job.enqueued_at:
            self.broker.schedule(job, record, task.run_after)
        else:
            self.broker.push(job, record, meanwhile=build)
        build()
        task_enqueued.send_robust(type(self), task_result=built[0])
        return built[0]

    def enqueue_many(
        self, task: Task, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue many calls of one task: one round trip and one script call per 1,000 jobs.

        Every call is validated before anything is written: one bad argument list raises and
        enqueues nothing. The jobs share one ``enqueued_at``, the time of the call. While
        Redis stores each 1,000, their ``TaskResult``s are built, ``task_enqueued`` is sent
        for the ones stored before them and the next 1,000 are encoded (one chunk in flight
        at a time: a failed chunk leaves the later ones unsent).

        The cyclic garbage collector is paused meanwhile (``gc_paused``): the call makes no
        cycles but five tracked objects a job that outlive it (seven while it runs), and in a
        Django-sized process the full collections they set off cost 30-40% of the call's CPU
        at 20,000 jobs.
        """
        self.validate_task(task)
        if task.run_after is not None and task.run_after > datetime.now(UTC):
            raise InvalidTask("enqueue_many() does not take run_after; enqueue delayed jobs "
                              "one by one")
        with gc_paused():
            return self._enqueue_checked(task, [check_arguments(task, a, k) for a, k in calls])

    def _enqueue_checked(self, task: Task, arguments: list[tuple[list[Any], dict[str, Any]]]
                         ) -> list[TaskResult]:
        checked = [(result_id, a, k) for result_id, (a, k)
                   in zip(new_result_ids(len(arguments)), arguments, strict=True)]
        now = datetime.now(UTC)
        template, job, record = self.build_job(task, [], {}, now)
        copy = result_copies(template)
        results: list[TaskResult] = [None] * len(checked)  # type: ignore[list-item]
        done = {"built": 0, "signalled": 0}
        send, sender = task_enqueued.send_robust, type(self)

        def signal(upto: int) -> None:  # jobs before ``upto`` are stored: Django is told
            for at in range(done["signalled"], upto):
                send(sender, task_result=results[at])
            done["signalled"] = max(done["signalled"], upto)

        def build(start: int, end: int) -> None:  # while Redis stores calls[start:end]
            if start >= done["built"]:  # (may run again for the same calls: a resend)
                results[start:end] = [copy(*call) for call in checked[start:end]]
                done["built"] = end
            signal(start)  # what came before is stored: its signals go meanwhile too

        broker = self.broker
        if hasattr(broker, "push_batch"):  # RedisBroker: one template for every job
            broker.push_batch(job, record, checked, build)
        else:
            broker.push_many([(replace(job, id=i, args=a, kwargs=k),
                               replace(record, id=i, args=a, kwargs=k)) for i, a, k in checked])
            build(0, len(checked))
        signal(len(checked))
        return results

    def build_job(
        self, task: Task, args: list[Any], kwargs: dict[str, Any], now: datetime | None = None
    ) -> tuple[TaskResult, Job, ResultRecord]:
        """The READY ``TaskResult``, queue ``Job`` and stored record for one call (enqueued
        ``now``, by default the present)."""
        job, record = self._job_and_record(task, args, kwargs, now or datetime.now(UTC))
        return self._ready_result(task, job), job, record

    def _job_and_record(self, task: Task, args: list[Any], kwargs: dict[str, Any],
                        now: datetime) -> tuple[Job, ResultRecord]:
        result_id = new_result_id()
        name, queue, priority = task.module_path, task.queue_name, task.priority
        record = ResultRecord(
            id=result_id, task_name=name, status="READY", queue=queue, priority=priority,
            backend=self.alias, args=args, kwargs=kwargs, enqueued_at=now,
            run_after=task.run_after,
        )
        job = Job(task_name=name, args=args, kwargs=kwargs, id=result_id, queue=queue,
                  enqueued_at=now, priority=priority)
        return job, record

    def _ready_result(self, task: Task, job: Job) -> TaskResult:
        assert job.id is not None
        return TaskResult(
            task=task, id=job.id, status=TaskResultStatus.READY, enqueued_at=job.enqueued_at,
            started_at=None, finished_at=None, last_attempted_at=None, args=job.args,
            kwargs=job.kwargs, backend=self.alias, errors=[], worker_ids=[],
        )

    def get_result(self, result_id: str) -> TaskResult:
        try:
            record = self.broker.get_result(result_id)
        except BrokerUnavailable:
            raise
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return to_task_result(record)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages = list(super().check(**kwargs))
        if self.config.error:
            messages.append(checks.Error(self.config.error, id="jobqueue.E001"))
        return messages


__all__ = ["RedisBackend", "TaskResultStatus"]
