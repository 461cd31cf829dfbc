"""The job: a small immutable value read from or written to a queue.

Persistence, scheduling and execution live elsewhere (``payload``, ``broker``, ``runner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work as it travels through a queue.

    ``task_name`` is Resque's ``class``: a jobqueue task's ``module_path`` or a class name that
    ``JOBQUEUE["RESQUE_CLASSES"]`` maps to a task. ``id`` is the TaskResult id, or ``None`` for a
    bare Resque job pushed by Ruby or Node. ``raw`` holds the exact bytes read from Redis so the
    broker can address the very same list entry later.
    """

    task_name: str
    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    queue: str = "default"
    enqueued_at: datetime | None = None
    priority: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    raw: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A job a worker has atomically taken off a queue, with when it took it."""

    job: Job
    queue: str
    run_at: datetime
    worker_id: str
    #: When the job's first attempt started and every worker that took it, this one included
    #: (empty for a job without a result record, e.g. pushed by Ruby).
    started_at: datetime | None = None
    worker_ids: tuple[str, ...] = ()

    @property
    def attempts(self) -> int:
        """Attempts so far, this one included."""
        if self.worker_ids:
            return len(self.worker_ids)
        return int(self.job.extra.get("attempts", 0) or 0) + 1


@dataclass(frozen=True, slots=True)
class BadJob:
    """A queue entry that could not be decoded: kept verbatim so it is failed, never dropped."""

    raw: str
    queue: str
    error: str
    run_at: datetime | None
    worker_id: str
