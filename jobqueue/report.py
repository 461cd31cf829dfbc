"""What became of one attempt, as a value: decided where the job ran, applied by the worker.

In fork mode the child decides (it holds the exception, the task's retry policy and its
backoff callable) and sends the ``Report`` to its parent through a pipe; the parent applies it
to the broker over its own connection. The child never opens a Redis connection of its own,
and the parent can reserve the next job while the child is still exiting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import payload
from .broker.base import Broker, ErrorInfo, Outcome
from .job import Reservation
from .retry import RetryPolicy, next_attempt_at

logger = logging.getLogger("jobqueue.worker")


@dataclass(frozen=True, slots=True)
class Report:
    """``finish`` (with an outcome), ``retry`` (error and when) or ``requeue`` (shutdown)."""

    action: str
    outcome: Outcome | None = None
    error: ErrorInfo | None = None
    run_at: datetime | None = None

    @property
    def disposition(self) -> str:
        """``successful``, ``failed``, ``retry`` or ``requeue``."""
        if self.action == "finish" and self.outcome is not None:
            return "successful" if self.outcome.status == "SUCCESSFUL" else "failed"
        return self.action

    def to_bytes(self) -> bytes:
        """Serialise for the pipe from child to parent."""
        body: dict[str, Any] = {"action": self.action}
        if self.outcome is not None:
            body["status"] = self.outcome.status
            body["finished_at"] = payload.format_iso(self.outcome.finished_at)
            body["value"] = self.outcome.return_value
        error = self.error or (self.outcome.error if self.outcome else None)
        if error is not None:
            body["error"] = [error.exception_class_path, error.message, error.traceback]
        if self.run_at is not None:
            body["run_at"] = payload.format_iso(self.run_at)
        return payload.dumps(body).encode("utf-8", "surrogateescape")

    @classmethod
    def from_bytes(cls, data: bytes) -> Report:
        """Read what a child sent; raise ``ValueError`` if it is incomplete or garbled."""
        body = json.loads(data.decode("utf-8", "surrogateescape"))
        error = ErrorInfo(*body["error"]) if "error" in body else None
        outcome = None
        if "status" in body:
            outcome = Outcome(status=body["status"],
                              finished_at=payload.parse_time(body["finished_at"]) or _now(),
                              return_value=body.get("value"), error=error)
        run_at = payload.parse_time(body.get("run_at")) if "run_at" in body else None
        return cls(action=body["action"], outcome=outcome,
                   error=error if outcome is None else None, run_at=run_at)


def _now() -> datetime:
    return datetime.now(UTC)


def decide_failure(task: Any, reservation: Reservation, exc: BaseException, error: ErrorInfo,
                   defaults: dict[str, Any], task_result: Any = None) -> Report:
    """Retry later or fail for good, per the task's retry policy (``task`` may be None)."""
    when = None
    if task is not None:
        policy = RetryPolicy.for_task(task, defaults)
        try:
            when = next_attempt_at(policy, exc, task_result, reservation.attempts, _now())
        except Exception:  # a broken backoff callable must not lose the job
            logger.exception("backoff for %s raised; failing the job", reservation.job.task_name)
    if when is not None:
        return Report(action="retry", error=error, run_at=when)
    return Report(action="finish", outcome=Outcome(status="FAILED", finished_at=_now(),
                                                   error=error))


def apply_report(broker: Broker, worker_id: str, reservation: Reservation, report: Report, *,
                 only_if_in_flight: bool = False, defer: bool = False) -> bool:
    """Record a report in the broker; ``False`` if the job had already been settled.

    ``defer`` lets a finished job's acknowledgement ride along with the worker's next
    command (see ``Broker.finish``). Like ``only_if_in_flight`` it makes a finish or a retry
    act only while the worker's in-flight record still holds this very reservation.
    """
    job, queue = reservation.job, reservation.queue
    if report.action == "finish" and report.outcome is not None:
        return broker.finish(worker_id, job, queue, report.outcome,
                             only_if_in_flight=only_if_in_flight, defer=defer)
    if report.action == "retry" and report.error is not None and report.run_at is not None:
        # Conditional whenever finish is (``defer``: the worker's own report): if a reaper
        # settled this reservation meanwhile, it already scheduled the next attempt, and a
        # second one would run the job again and overwrite its result.
        done = broker.retry_later(worker_id, job, queue, report.error, report.run_at,
                                  only_if_in_flight=only_if_in_flight or defer)
        if done:
            logger.warning("Job %s (%s) attempt %d failed (%s); retry at %s", job.id,
                           job.task_name, reservation.attempts,
                           report.error.exception_class_path.rpartition(".")[2],
                           report.run_at.isoformat())
        else:
            logger.warning("Job %s (%s) attempt %d was settled elsewhere (its worker was "
                           "reaped?); no second retry", job.id, job.task_name,
                           reservation.attempts)
        return done
    if report.action == "requeue":
        done = broker.requeue(worker_id, job, queue, report.error)
        if done:
            logger.warning("Job %s (%s) interrupted by shutdown; put back on %r", job.id,
                           job.task_name, queue)
        return done
    raise ValueError(f"malformed report {report!r}")
