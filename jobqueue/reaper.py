"""Find workers that died without saying so and settle the jobs they held.

Any worker may reap, at start-up and then every few heartbeats; a short Redis lock
makes one process do it at a time across every host. A worker is dead when its heartbeat is
older than its own interval allows (``Broker.stale_workers``). Its in-flight job goes back
to its queue or to the failed list according to the task's retry policy, with a
``WorkerLost`` error naming the worker, and every record of the worker is removed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from . import payload, registry
from .broker.base import Broker
from .exceptions import WorkerLost
from .job import BadJob, Reservation
from .runner import failed, settle_failure

logger = logging.getLogger("jobqueue.reaper")
HEARTBEATS_PER_REAP = 3
MIN_REAP_INTERVAL = 3.0


def reap_interval(heartbeat_interval: float) -> float:
    """Seconds between reaping passes for workers heart-beating at this interval."""
    return max(heartbeat_interval * HEARTBEATS_PER_REAP, MIN_REAP_INTERVAL)


def reap_dead_workers(broker: Broker, reaper_id: str, *, interval: float = MIN_REAP_INTERVAL,
                      now: datetime | None = None) -> list[str]:
    """Settle the jobs of dead workers and unregister them; return the ids reaped.

    Does nothing unless this process wins the cluster-wide reaper lock for ``interval``.
    """
    if not broker.acquire_reaper_lock(reaper_id, max(int(interval), 1)):
        return []
    if now is None:  # heartbeats are stamped with Redis's clock: compare with the same
        clock = getattr(broker, "now", None)
        now = clock() if callable(clock) else datetime.now(UTC)
    reaped = []
    for worker_id in broker.stale_workers(now):
        if worker_id == reaper_id:
            continue
        settle_in_flight(broker, worker_id)
        broker.unregister_worker(worker_id)
        reaped.append(worker_id)
        logger.warning("Reaped dead worker %s (no heartbeat)", worker_id)
    return reaped


def settle_in_flight(broker: Broker, worker_id: str, error: Exception | None = None) -> None:
    """Settle the job ``worker_id`` still holds, if any, per its task's retry policy.

    ``error`` (default: ``WorkerLost``, the worker stopped heart-beating) is what the
    attempt's result and failure record show.
    """
    held = broker.in_flight(worker_id)
    if held is None:
        return
    queue, raw = held
    lost = error or WorkerLost(f"Worker {worker_id} stopped heart-beating while running this job")
    try:
        job = payload.decode_job(raw, queue)
    except payload.PayloadError as exc:
        bad = BadJob(raw=raw, queue=queue, error=str(exc), run_at=None, worker_id=worker_id)
        broker.finish(worker_id, bad, queue, failed(lost), only_if_in_flight=True)
        return
    record = broker.get_result(job.id) if job.id else None
    reservation = Reservation(
        job=job, queue=queue, run_at=now_utc(), worker_id=worker_id,
        started_at=record.started_at if record else None,
        worker_ids=tuple(record.worker_ids) if record else (),
    )
    task = registry.resolve(job.task_name)
    outcome = settle_failure(broker, worker_id, task, reservation, lost, only_if_in_flight=True)
    logger.warning("Job %s (%s) of dead worker %s: %s", job.id, job.task_name, worker_id,
                   outcome)


def now_utc() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)
