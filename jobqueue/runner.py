"""Run one reserved job inside a clean unit of work and record how it ended.

Used in the forked child (fork mode) and in the worker itself (``--no-fork``). Sends Django's
``task_started``/``task_finished`` with the backend class as sender, robustly: a broken
receiver is logged and never fails the job's bookkeeping. ``settle_failure`` is the one place
that applies the retry policy, for failures seen by the child, the parent or a reaper.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections

from . import registry
from .backends.results import restore_task, unsupported_json
from .broker.base import Broker, ErrorInfo, Outcome
from .compat import (
    Task,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from .exceptions import (
    InvalidTaskArguments,
    JobTimeout,
    MalformedJob,
    UnknownTask,
    WorkerShutdown,
)
from .job import BadJob, Job, Reservation
from .payload import dumps
from .report import Report, apply_report, decide_failure
from .task import task_option

logger = logging.getLogger("jobqueue.worker")
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


def timeout_of(task: Task, broker: Broker) -> float | None:
    """The task's timeout in seconds (its own, else the backend default), or ``None``."""
    value = task_option(task, "timeout", broker.task_defaults.get("timeout"))
    return float(value) if value else None


def settle_failure(broker: Broker, worker_id: str, task: Task | None, reservation: Reservation,
                   exc: BaseException, *, only_if_in_flight: bool = False,
                   task_result: Any = None) -> str:
    """Schedule another attempt or fail for good, per the task's retry policy.

    Returns ``"retry"``, ``"failed"`` or ``"skipped"`` (already settled by someone else).
    """
    report = decide_failure(task, reservation, exc, error_from(exc), broker.task_defaults,
                            task_result)
    done = apply_report(broker, worker_id, reservation, report,
                        only_if_in_flight=only_if_in_flight)
    return report.disposition if done else "skipped"


class JobRunner:
    """Execute reservations for one worker and acknowledge them through the broker."""

    #: Django's signals and the log of each job: ``warmup`` runs ``execute`` with silent ones.
    started_signal = task_started
    finished_signal = task_finished
    job_log = logger

    def __init__(self, broker: Broker, backend_class: type, worker_id: str,
                 retry: Retry | None = None) -> None:
        self.broker = broker
        self.backend_class = backend_class
        self.worker_id = worker_id
        # How to record an outcome when Redis is briefly gone: the job already ran, so the
        # worker keeps trying rather than lose what happened.
        self.retry: Retry = retry or (lambda fn, what: fn())
        #: Monotonic deadline of the running job (set by the worker, shared with the child).
        self.deadline: float | None = None
        #: Let acknowledgements ride along with the next reserve (one round trip per job).
        self.defer_acks = False
        #: Close stale DB connections around each job (off in test helpers, whose test
        #: transaction must survive the job).
        self.manage_connections = True
        #: Enforce the deadline in-process with SIGALRM (``--no-fork``); in fork mode the
        #: parent sends TERM at the deadline instead.
        self.alarm = False

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

    def run(self, task: Task, reservation: Reservation) -> str:
        """Run the job and record what happened (``--no-fork``); return the disposition.

        ``WorkerShutdown`` (TERM while running) puts the job back and is re-raised.
        """
        report = self.execute(task, reservation)
        self.retry(lambda: apply_report(self.broker, self.worker_id, reservation, report,
                                        defer=self.defer_acks), "record job outcome")
        if report.action == "requeue":
            raise WorkerShutdown("worker is shutting down")
        return report.disposition

    def execute(self, task: Task, reservation: Reservation) -> Report:
        """Run the job in this process and decide its fate, without touching the broker."""
        result = self.task_result(task, reservation)
        job = reservation.job
        started = time.perf_counter()
        try:
            # Inside the try: a shutdown landing in a receiver still puts the job back (and
            # the parent's TERM at the job's deadline still counts as its timeout).
            if self.manage_connections:
                close_old_connections()
            self.started_signal.send_robust(self.backend_class, task_result=result)
            report = self._call(task, result, reservation)
        except WorkerShutdown as exc:
            if self.deadline is not None and time.monotonic() >= self.deadline - 0.01:
                report = self._failed(task, result, reservation, JobTimeout(_timeout_text(task)))
            else:
                report = Report(action="requeue", error=error_from(exc))
        finally:
            if self.manage_connections:
                close_old_connections()
        self.job_log.info("Job %s %s %s in %.1f ms", result.id, job.task_name,
                          report.disposition, (time.perf_counter() - started) * 1000)
        return report

    def _call(self, task: Task, result: TaskResult, reservation: Reservation) -> Report:
        job = reservation.job
        try:
            with _alarm(self.deadline if self.alarm else None):
                if task.takes_context:
                    value = task.call(TaskContext(task_result=result), *job.args, **job.kwargs)
                else:
                    value = task.call(*job.args, **job.kwargs)
            value = _json_value(task, value)
        except WorkerShutdown:
            if self.deadline is not None and time.monotonic() >= self.deadline - 0.01:
                return self._failed(task, result, reservation, JobTimeout(_timeout_text(task)))
            raise
        except BaseException as exc:
            return self._failed(task, result, reservation, exc)
        outcome = Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC), return_value=value)
        _set(result, status=TaskResultStatus.SUCCESSFUL, finished_at=outcome.finished_at,
             _return_value=value)
        self.finished_signal.send_robust(self.backend_class, task_result=result)
        return Report(action="finish", outcome=outcome)

    def _failed(self, task: Task, result: TaskResult, reservation: Reservation,
                exc: BaseException) -> Report:
        # Called inside the ``except`` block, so Django's task_finished logger sees exc_info.
        report = decide_failure(task, reservation, exc, error_from(exc),
                                self.broker.task_defaults, result)
        if report.action == "finish":
            _set(result, status=TaskResultStatus.FAILED, finished_at=datetime.now(UTC))
            self.finished_signal.send_robust(self.backend_class, task_result=result)
        return report


class _alarm:
    """Raise ``JobTimeout`` in the running job at a monotonic deadline (main thread only)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.previous: Any = None

    def __enter__(self) -> None:
        if self.deadline is None:
            return
        self.previous = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, max(self.deadline - time.monotonic(), 0.001))

    def __exit__(self, *exc: object) -> None:
        if self.deadline is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous or signal.SIG_DFL)


def _raise_timeout(signum: int, frame: object) -> None:
    raise JobTimeout("job ran past its timeout")


def _timeout_text(task: Task) -> str:
    return f"{task.module_path} ran past its timeout"


def _json_value(task: Task, value: Any) -> Any:
    """Normalise a return value to JSON, or raise naming the task (arguments' rule)."""
    if value is None or type(value) is bool or type(value) is int:  # the common case
        return value
    problem = unsupported_json("the return value", value)
    if problem:
        raise InvalidTaskArguments(
            f"Return value of {task.module_path} is not JSON-serialisable: {problem}")
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


__all__ = [
    "Job",
    "JobRunner",
    "error_from",
    "failed",
    "preflight",
    "settle_failure",
    "timeout_of",
]
