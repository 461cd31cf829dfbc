"""Run one reserved job inside a clean unit of work and record how it ended.

Used in the forked child (fork mode) and in the worker itself (``--no-fork``). Sends Django's
``task_started``/``task_finished`` with the backend class as sender, robustly: a broken
receiver is logged and never fails the job's bookkeeping.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import close_old_connections

from . import registry
from .backends.results import restore_task
from .broker.base import Broker, ErrorInfo, Outcome
from .compat import Task, TaskContext, TaskResult, TaskResultStatus, task_finished, task_started
from .exceptions import InvalidTaskArguments, MalformedJob, UnknownTask, WorkerShutdown
from .job import BadJob, Job, Reservation
from .payload import dumps

logger = logging.getLogger("jobqueue.worker")
T = TypeVar("T")
Retry = Callable[[Callable[[], Any], str], Any]


def error_from(exc: BaseException) -> ErrorInfo:
    """Describe an exception for Django's ``TaskError`` and Resque's failure record."""
    cls = type(exc)
    return ErrorInfo(
        exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def failed(exc: BaseException) -> Outcome:
    """A FAILED outcome for ``exc``, stamped now."""
    return Outcome(status="FAILED", finished_at=datetime.now(UTC), error=error_from(exc))


def preflight(reservation: Reservation | BadJob) -> tuple[Task | None, Outcome | None]:
    """Resolve a reservation's task without running anything.

    Returns ``(task, None)`` when it can run, ``(None, outcome)`` when it must be failed at
    once: an undecodable entry, or a name that is neither registered nor mapped.
    """
    if isinstance(reservation, BadJob):
        return None, failed(MalformedJob(f"Malformed job on queue {reservation.queue!r}: "
                                         f"{reservation.error}"))
    name = reservation.job.task_name
    task = registry.resolve(name)
    if task is None:
        return None, failed(UnknownTask(
            f"Unknown task {name!r}: it is not a registered task and not mapped in "
            "JOBQUEUE['RESQUE_CLASSES']; nothing was imported or run"
        ))
    return task, None


class JobRunner:
    """Execute reservations for one worker and acknowledge them through the broker."""

    def __init__(self, broker: Broker, backend_class: type, worker_id: str,
                 retry: Retry | None = None) -> None:
        self.broker = broker
        self.backend_class = backend_class
        self.worker_id = worker_id
        # How to record an outcome when Redis is briefly gone: the job already ran, so the
        # worker keeps trying rather than lose what happened.
        self.retry: Retry = retry or (lambda fn, what: fn())

    def task_result(self, task: Task, reservation: Reservation) -> TaskResult:
        """The RUNNING ``TaskResult`` a task's context and signals see."""
        job = reservation.job
        if task.queue_name != reservation.queue or task.priority != job.priority:
            task = restore_task(task, queue_name=reservation.queue, priority=job.priority)
        return TaskResult(
            task=task,
            id=job.id or f"resque-{os.urandom(8).hex()}",
            status=TaskResultStatus.RUNNING,
            enqueued_at=job.enqueued_at,
            started_at=reservation.started_at or reservation.run_at,
            finished_at=None,
            last_attempted_at=reservation.run_at,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            backend=getattr(task, "backend", "default"),
            errors=[],
            worker_ids=list(reservation.worker_ids or (self.worker_id,)),
        )

    def run(self, task: Task, reservation: Reservation) -> Outcome:
        """Run the job, record the outcome (one broker round trip), return it.

        ``WorkerShutdown`` (TERM while running) puts the job back on its queue and re-raises.
        """
        result = self.task_result(task, reservation)
        job = reservation.job
        started = time.perf_counter()
        close_old_connections()
        task_started.send_robust(self.backend_class, task_result=result)
        try:
            outcome = self._call(task, result, job)
        except WorkerShutdown as exc:
            error = error_from(exc)
            self.retry(lambda: self.broker.requeue(self.worker_id, job, reservation.queue, error),
                       "requeue interrupted job")
            logger.warning("Job %s (%s) interrupted by shutdown; put back on %r",
                           result.id, job.task_name, reservation.queue)
            raise
        finally:
            close_old_connections()
        self.retry(lambda: self.broker.finish(self.worker_id, job, reservation.queue, outcome),
                   "record job outcome")
        logger.info("Job %s %s %s in %.1f ms", result.id, job.task_name, outcome.status,
                    (time.perf_counter() - started) * 1000)
        return outcome

    def _call(self, task: Task, result: TaskResult, job: Job) -> Outcome:
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *job.args, **job.kwargs)
            else:
                value = task.call(*job.args, **job.kwargs)
            value = _json_value(task, value)
        except WorkerShutdown:
            raise
        except BaseException as exc:
            outcome = failed(exc)
            _set(result, status=TaskResultStatus.FAILED, finished_at=outcome.finished_at)
            task_finished.send_robust(self.backend_class, task_result=result)
            return outcome
        outcome = Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC), return_value=value)
        _set(result, status=TaskResultStatus.SUCCESSFUL, finished_at=outcome.finished_at,
             _return_value=value)
        task_finished.send_robust(self.backend_class, task_result=result)
        return outcome


def _json_value(task: Task, value: Any) -> Any:
    """Normalise a return value to JSON, or raise naming the task."""
    import json

    from .compat import normalize_json

    try:
        normal = normalize_json(value)
        restored = json.loads(dumps(normal))
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(
            f"Return value of {task.module_path} is not JSON-serialisable: {exc}") from None
    if restored != normal:
        raise InvalidTaskArguments(
            f"Return value of {task.module_path} does not survive a JSON round trip: "
            f"{normal!r} comes back as {restored!r}")
    return normal


def _set(result: TaskResult, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(result, name, value)
