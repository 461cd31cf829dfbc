"""The broker interface: everything the worker, pool, scheduler and monitor need from storage.

jobqueue's processes talk to a backend only through this class, so another store (a database
broker is planned) drops in without touching them. Three groups of methods:

* producing: ``push``, ``push_many``, ``push_raw``, ``get_result``;
* consuming: ``reserve``, ``wait_for_job``, ``finish``, ``requeue`` and the worker registry
  (``register_worker``, ``heartbeat``, ``unregister_worker``);
* inspecting and managing (the monitor and ``manage.py jobqueue``): read-only views plus a few
  explicit actions. The hot path never calls these.

Every method that can meet an unreachable store raises ``jobqueue.exceptions.BrokerUnavailable``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..job import BadJob, Job, Reservation
from ..payload import Failure, ResultRecord


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong in one attempt: enough for Django's ``TaskError`` and Resque's record."""

    exception_class_path: str
    message: str
    traceback: str

    @property
    def exception_name(self) -> str:
        """Resque's ``exception`` field: the class name without its module."""
        return self.exception_class_path.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended."""

    status: str  # "SUCCESSFUL" or "FAILED"
    finished_at: datetime
    return_value: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered worker as Resque and jobqueue record it."""

    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    processed: int = 0
    failed: int = 0
    current: dict[str, Any] | None = None  # {"queue", "run_at", "payload"} while working
    extra: dict[str, str] = field(default_factory=dict)


class Broker(ABC):
    """Storage for queues, in-flight jobs, results, failures and the worker registry."""

    #: Results of finished jobs expire after this many seconds.
    result_ttl: int = 86400
    #: Backend-wide task option defaults (max_attempts, backoff, timeout).
    task_defaults: dict[str, Any] = {}

    # ---------------------------------------------------------------- producing
    @abstractmethod
    def push(self, job: Job, result: ResultRecord | None, *,
             meanwhile: Callable[[], object] | None = None) -> None:
        """Append a job to its queue and store its READY result, atomically.

        ``meanwhile``, if given, is work of the caller's that does not depend on the write
        (building what it returns): a broker runs it while the write is on its way (Redis:
        between sending the command and reading the reply), or before returning. It may
        run more than once if the write is sent again, so it must be idempotent.
        """

    def push_many(self, items: Sequence[tuple[Job, ResultRecord | None]]) -> None:
        """Push many jobs; brokers override this to batch round trips."""
        for job, result in items:
            self.push(job, result)

    @abstractmethod
    def get_result(self, result_id: str) -> ResultRecord | None:
        """Return a stored result, or ``None`` when unknown or expired."""

    # ---------------------------------------------------------------- consuming
    @abstractmethod
    def reserve(
        self, worker_id: str, queues: Sequence[str], *, prefetch: int = 1
    ) -> Reservation | BadJob | None:
        """Take the first job of the first non-empty queue and record it as in flight.

        Returns ``None`` when every queue is empty or workers are paused, a ``BadJob`` for an
        entry that cannot be decoded (it is in flight and must be finished as failed).

        ``prefetch`` N > 1 (``--no-fork`` workers) lets the broker reserve up to N jobs of
        that queue at once, held for this worker and handed out by the next calls; they
        stay in flight (never lost) and go back with ``release`` or ``unregister_worker``.
        """

    def release(self, worker_id: str) -> int:
        """Put back the jobs ``reserve`` prefetched for ``worker_id`` and did not hand out
        (the worker pauses or stops); returns how many. Brokers that never prefetch: 0."""
        return 0

    @abstractmethod
    def is_paused(self) -> bool:
        """True while an operator has paused every worker."""

    @abstractmethod
    def wait_for_job(self, queues: Sequence[str], timeout: float, interrupt_fd: int | None,
                     *, worker_id: str | None = None, prefetch: int = 1) -> None:
        """Block until a job may be ready on ``queues``, ``timeout`` passes or ``interrupt_fd``
        becomes readable. Jobs pushed by other clients are only seen when the timeout ends.

        With ``worker_id`` a broker may reserve the job that ends the wait for that worker
        (as ``reserve(worker_id, queues, prefetch=prefetch)`` would) and hand it out at the
        worker's next ``reserve``; ``release`` puts it back if the worker stops first.
        Brokers that cannot simply ignore both arguments."""

    @abstractmethod
    def finish(
        self,
        worker_id: str,
        job: Job | BadJob,
        queue: str,
        outcome: Outcome,
        *,
        only_if_in_flight: bool = False,
        defer: bool = False,
    ) -> bool:
        """Acknowledge a job and record its outcome (and failure record); one atomic step.

        ``defer`` lets a broker hold the acknowledgement back and send it with this
        worker's next command (it must stay idempotent and conditional on the in-flight
        record); brokers without such batching simply record at once.

        With ``only_if_in_flight`` nothing happens unless the worker's in-flight record still
        holds this job; returns whether anything was recorded. "This job" means the very
        reservation this broker made (or read with ``in_flight``), not only the same bytes:
        the Redis broker checks the reservation token of ``redis_tokens``.
        """

    def flush(self) -> None:
        """Send acknowledgements held back by ``finish(defer=True)`` now.

        A worker calls this when it will not reserve again soon (paused, stopping), so a
        finished job's outcome never waits for a next reserve. Brokers that never defer
        have nothing to do.
        """
        return None

    @abstractmethod
    def requeue(self, worker_id: str, job: Job, queue: str, error: ErrorInfo | None) -> bool:
        """Put an unfinished in-flight job back at the head of its queue."""

    @abstractmethod
    def schedule(self, job: Job, result: ResultRecord | None, run_at: datetime) -> None:
        """Store a job to be pushed onto its queue at ``run_at`` (and its READY result)."""

    @abstractmethod
    def promote_due(self, until: float | None = None) -> float | None:
        """Move every due delayed job onto its queue, exactly once across all callers.

        ``until`` (epoch seconds) replaces the store's clock, for tests that make jobs due.
        Returns the epoch second of the next delayed job still waiting, or ``None``.
        """

    @abstractmethod
    def fire_periodic(self, name: str, tick: datetime, job: Job,
                      result: ResultRecord | None) -> bool:
        """Enqueue ``job`` for schedule ``name``'s ``tick`` unless that tick already ran.

        Atomic across every caller: exactly one of them enqueues each tick.
        """

    @abstractmethod
    def periodic_last_runs(self) -> dict[str, datetime]:
        """The last tick enqueued for each schedule name."""

    @abstractmethod
    def retry_later(
        self,
        worker_id: str,
        job: Job,
        queue: str,
        error: ErrorInfo,
        run_at: datetime,
        *,
        only_if_in_flight: bool = False,
    ) -> bool:
        """Acknowledge a failed attempt and schedule the next one at ``run_at``."""

    @abstractmethod
    def in_flight(self, worker_id: str) -> tuple[str, str] | None:
        """``(queue, exact payload)`` of the job a worker holds, or ``None``."""

    @abstractmethod
    def stale_workers(self, now: datetime) -> list[str]:
        """Ids of workers whose heartbeat is too old by their own interval's measure.

        jobqueue workers record their heartbeat interval; workers of other Resque clients
        (no such record) are judged by Ruby's own 300-second rule, and workers that never
        sent a heartbeat are left alone, as Ruby does.
        """

    @abstractmethod
    def acquire_reaper_lock(self, owner: str, ttl_seconds: int) -> bool:
        """Become the one process reaping dead workers for ``ttl_seconds``."""

    @abstractmethod
    def expand_queues(self, patterns: Sequence[str]) -> list[str]:
        """Resolve a Resque queue list (globs, ``!``) against the queues that exist."""

    @abstractmethod
    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker as alive (Resque's ``workers``, ``started``, heartbeat)."""

    @abstractmethod
    def heartbeat(self, worker_id: str) -> None:
        """Refresh a worker's heartbeat."""

    @abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove every record of a worker (jobs it prefetched go back to their queues)."""

    # ---------------------------------------------------------------- inspecting
    @abstractmethod
    def queue_sizes(self) -> dict[str, int]:
        """Every known queue and its length."""

    @abstractmethod
    def peek(self, queue: str, start: int, count: int) -> list[Job | BadJob]:
        """Jobs of a queue from ``start`` (0 = next to run), without removing them."""

    @abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every registered worker with its heartbeat, counters and current job."""

    @abstractmethod
    def failed_count(self) -> int:
        """Number of failure records."""

    @abstractmethod
    def failed_slice(self, start: int, count: int) -> list[Failure]:
        """Failure records, oldest first, from index ``start``."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: processed, failed, pending, queues, workers, working."""

    # ---------------------------------------------------------------- monitoring (admin, CLI)
    # Every read is bounded (a page, a capped scan); every action is one atomic step that
    # addresses its target by content (exact bytes, or a ``FailedEntry.ref``), never by a
    # list position alone.
    @abstractmethod
    def queue_size(self, queue: str) -> int:
        """Number of jobs waiting on one queue (prioritised ones included)."""

    @abstractmethod
    def throughput(self, minutes: int, now: datetime | None = None) -> Throughput:
        """Jobs processed and failed in each of the last ``minutes`` UTC minutes."""

    @abstractmethod
    def worker(self, worker_id: str) -> WorkerInfo | None:
        """One registered worker, or ``None`` when it is not registered."""

    @abstractmethod
    def failed_page(self, start: int, count: int) -> list[FailedEntry]:
        """Failure records newest first, skipping the ``start`` newest."""

    @abstractmethod
    def failed_scan(
        self,
        where: FailedFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 20,
        max_scanned: int = 100_000,
    ) -> FailedScan:
        """Up to ``limit`` records matching ``where``, newest first, examining at most
        ``max_scanned`` records: older than index ``before`` (default: from the newest), or
        the ``limit`` matches just newer than index ``after``."""

    @abstractmethod
    def failed_count_matching(self, where: FailedFilter,
                              max_scanned: int = 1_000_000) -> tuple[int, bool]:
        """``(matches, complete)``: how many records match, and whether every one was seen."""

    @abstractmethod
    def failed_entry(self, ref: str) -> FailedEntry | None:
        """The record a ``FailedEntry.ref`` addresses, wherever it is now, or ``None``."""

    @abstractmethod
    def retry_failed(self, refs: Sequence[str]) -> int:
        """Requeue each addressed job and remove its record, atomically per record.

        The job keeps its payload (id, kwargs, priority...) and its result goes back to
        READY. Records already gone are skipped. Returns the number retried.
        """

    @abstractmethod
    def remove_failed(self, refs: Sequence[str]) -> int:
        """Remove the addressed records; returns how many were still there."""

    @abstractmethod
    def retry_failed_matching(self, where: FailedFilter) -> int:
        """Retry every record matching ``where`` (as ``retry_failed``); returns the number."""

    @abstractmethod
    def remove_failed_matching(self, where: FailedFilter) -> int:
        """Remove every record matching ``where``; returns the number removed."""

    @abstractmethod
    def clear_failed(self) -> int:
        """Remove every failure record; returns how many there were."""

    @abstractmethod
    def delete_queued(self, queue: str, raw: str) -> bool:
        """Delete the waiting job whose payload is exactly ``raw`` (and its result)."""

    @abstractmethod
    def clear_queue(self, queue: str, *, forget: bool = False) -> int:
        """Delete every job waiting on ``queue`` (``forget``: drop the name too)."""

    @abstractmethod
    def prune_worker(self, worker_id: str, now: datetime) -> Pruned:
        """Unregister a stale worker and put its in-flight job back at its queue's head.

        Does nothing unless the worker is still stale (``stale_workers``) and still holds
        what it held when judged, checked atomically.
        """

    @abstractmethod
    def scheduled_count(self) -> int:
        """Number of distinct due times holding delayed jobs."""

    @abstractmethod
    def scheduled_page(self, start: int, count: int, per_bucket: int) -> list[ScheduledBucket]:
        """Due times from ``start`` (soonest first), each with up to ``per_bucket`` jobs."""

    @abstractmethod
    def scheduled_bucket(self, timestamp: int, start: int, count: int) -> ScheduledBucket:
        """The delayed jobs due at one epoch second, from ``start``."""

    @abstractmethod
    def run_scheduled_now(self, timestamp: int, raw: str) -> bool:
        """Move the delayed job ``raw`` due at ``timestamp`` onto its queue now."""

    @abstractmethod
    def delete_scheduled(self, timestamp: int, raw: str) -> bool:
        """Delete the delayed job ``raw`` due at ``timestamp`` (and its result)."""

    @abstractmethod
    def server_info(self) -> dict[str, Any]:
        """A summary of the store itself (version, memory, clients, uptime...)."""

    @abstractmethod
    def key_counts(self) -> dict[str, int]:
        """Sizes of jobqueue's records (queues, failed, workers, delayed...), no key scan."""


@dataclass(frozen=True, slots=True)
class Throughput:
    """Per-minute counters, oldest first; ``start_minute`` is epoch seconds // 60."""

    start_minute: int
    processed: list[int]
    failed: list[int]


@dataclass(frozen=True, slots=True)
class FailedFilter:
    """Which failure records to show or act on; empty fields match everything."""

    queue: str = ""
    task: str = ""
    exception: str = ""
    search: str = ""  # case-sensitive substring of the job's args/kwargs JSON text

    @property
    def active(self) -> bool:
        """True when any field narrows the selection."""
        return bool(self.queue or self.task or self.exception or self.search)


@dataclass(frozen=True, slots=True)
class FailedEntry:
    """A failure record with its address.

    ``index`` is its list position when read (0 = oldest): a hint, never an address. ``ref``
    names the exact record bytes for actions.
    """

    index: int
    ref: str
    failure: Failure
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class FailedScan:
    """One page of a filtered scan of the failed list, with cursors to continue."""

    entries: list[FailedEntry]
    older: int | None  # pass as ``before`` for the next older matches; None: none left
    newer: int | None  # pass as ``after`` for the previous, newer matches; None: at newest
    scanned: int  # records examined
    capped: bool  # the scan stopped at ``max_scanned`` before the end of the list


@dataclass(frozen=True, slots=True)
class ScheduledBucket:
    """Delayed jobs due at one epoch second."""

    timestamp: int
    size: int
    items: list[Job | BadJob]

    @property
    def due_at(self) -> datetime:
        """The due time as an aware UTC datetime."""
        from datetime import UTC

        return datetime.fromtimestamp(self.timestamp, UTC)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What ``prune_worker`` did."""

    pruned: bool
    requeued_to: str | None = None  # queue the in-flight job went back to
    reason: str = ""  # why nothing was done
