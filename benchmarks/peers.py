"""The first peer: RQ, on the same Redis, machine and run, with a no-op function.

* enqueue: ``Queue.enqueue(noop)`` one by one; ``Queue.enqueue_many`` (pipelined) in bulk;
* one worker process: ``rq.Worker`` (fork per job) and ``rq.SimpleWorker`` (no fork), burst
  mode over queued jobs, timed around ``work()`` in a fresh child process (its CPU, with the
  reaped work horses, from getrusage; Redis commands from ``INFO`` in that child);
* pool of 2: ``rq worker-pool -n 2`` (forking ``Worker`` and ``SimpleWorker``), drained live
  (``measure.drain_live``: the pool starts on an empty queue, then the queue is put back);
* start-up, idle memory and idle latency: ``rq worker`` and ``rq worker -w SimpleWorker``.

Workers log at WARNING (one INFO line per job would measure the terminal), as jobqueue's do.
Run as a child: ``python -m benchmarks.peers rq-work worker|simple``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import BenchError, Plan, PrivateRedis, Row, child_main
from benchmarks.measure import (
    END_KEY,
    START_KEY,
    WARMUPS,
    LiveSpec,
    drain_live,
    enqueue_row,
    measured_in_child,
    process_row,
    run_child_sampled,
    start_and_latency,
    start_row,
    timed_enqueue,
)

SECTION = "RQ"
QUEUE = "bench"
NOOP = "benchmarks.rq_jobs.noop"
STAMP = "benchmarks.rq_jobs.stamp"
WORKER_CLASSES = {"worker": "rq.worker.Worker", "simple": "rq.worker.SimpleWorker"}


def rq_version() -> str:
    try:
        import rq
    except ImportError:
        return ""
    return str(rq.__version__)


def _queue(server: PrivateRedis) -> Any:
    from rq import Queue

    return Queue(QUEUE, connection=server.client())


def _enqueue_many(queue: Any, count: int) -> None:
    from rq import Queue

    for first in range(0, count, 1000):
        queue.enqueue_many([Queue.prepare_data(NOOP) for _ in range(min(1000, count - first))])


def _fill(server: PrivateRedis, count: int) -> None:
    """Empty Redis, then queue ``count`` no-op jobs (pipelined: filling is not measured)."""
    server.flush()
    queue = _queue(server)
    _enqueue_many(queue, count)
    if queue.count != count:
        raise BenchError(f"RQ queue holds {queue.count} jobs, expected {count}")


def rq_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    server.flush()
    queue = _queue(server)
    for _ in range(20):  # warm up
        queue.enqueue(NOOP)
    client = server.client()
    one = timed_enqueue(client, lambda n: [queue.enqueue(NOOP) for _ in range(n)], plan.jobs)
    server.flush()
    bulk = timed_enqueue(client, lambda n: _enqueue_many(queue, n), plan.bulk_jobs)
    return [enqueue_row(SECTION, "rq.enqueue", "Queue.enqueue(), one by one", one),
            enqueue_row(SECTION, "rq.enqueue_many", "Queue.enqueue_many(), x1000", bulk)]


def rq_work(server: PrivateRedis, env: dict[str, str], plan: Plan) -> list[Row]:
    rows = []
    for kind, key, label, count in (
        ("worker", "rq.work_fork", "rq.Worker (fork per job), burst", plan.rq_fork_jobs),
        ("simple", "rq.work_simple", "rq.SimpleWorker (no fork), burst", plan.jobs),
    ):
        _fill(server, count)
        out, peak = run_child_sampled("benchmarks.peers", ["rq-work", kind], env)
        if out["finished"] != count:
            raise BenchError(f"RQ {kind} finished {out['finished']} of {count} jobs")
        rows.append(process_row(SECTION, key, label, count, out, peak))
    return rows


def _pool_spec(server: PrivateRedis, kind: str, count: int) -> LiveSpec:
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    queue = _queue(server)

    def fill(n: int) -> Any:
        queue.enqueue(STAMP, START_KEY)
        _enqueue_many(queue, n)
        queue.enqueue(STAMP, END_KEY)
        registry = FinishedJobRegistry(queue=queue)
        return lambda: registry.count >= n + 2 + WARMUPS

    command = [sys.executable, "-m", "rq.cli", "worker-pool", "-n", str(count), "--url",
               server.url, "--logging-level", "WARNING", "--worker-class",
               WORKER_CLASSES[kind], QUEUE]
    return LiveSpec(command, [Queue(QUEUE, connection=server.client()).key], fill,
                    lambda key: queue.enqueue(STAMP, key))


def rq_pool(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    rows = []
    for kind, key, label, count in (
        ("worker", "rq.pool_fork", "rq worker-pool -n 2 (rq.Worker)", plan.rq_fork_jobs),
        ("simple", "rq.pool_simple", "rq worker-pool -n 2 (SimpleWorker)", plan.jobs),
    ):
        out, peak = drain_live(server, env, _pool_spec(server, kind, 2), count,
                               tmp / f"rq-pool-{kind}.log")
        rows.append(process_row(SECTION, key, label, count, out, peak))
    return rows


def rq_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    """Time to first job, idle memory, idle latency: ``rq worker`` and its SimpleWorker."""
    rows = []
    for kind, key, label in (("worker", "rq.start_fork", "rq worker (rq.Worker)"),
                             ("simple", "rq.start_simple", "rq worker -w SimpleWorker")):
        command = [sys.executable, "-m", "rq.cli", "worker", "--url", server.url,
                   "--logging_level", "WARNING", "--worker-class", WORKER_CLASSES[kind], QUEUE]
        out = start_and_latency(server, env, plan, command, lambda k: _enqueue_stamp(server, k),
                                tmp / f"rq-{kind}.log")
        rows.append(start_row(SECTION, key, label, out))
    return rows


def _enqueue_stamp(server: PrivateRedis, key: str) -> Any:
    job = _queue(server).enqueue(STAMP, key)
    return lambda: job.get_status(refresh=True) == "finished"


# --------------------------------------------------------------------------- child side
def work(kind: str) -> dict[str, Any]:
    """Run an RQ worker of ``kind`` in burst mode over the queued jobs; time ``work()``."""
    import redis
    from rq import Queue, SimpleWorker, Worker
    from rq.registry import FinishedJobRegistry

    connection = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    queue = Queue(QUEUE, connection=connection)
    worker_class = Worker if kind == "worker" else SimpleWorker
    worker = worker_class([queue], connection=connection)
    bootstrap = worker.bootstrap

    def steady(restart: Callable[[], None]) -> None:  # the clock starts after bootstrap()
        def timed_bootstrap(*args: Any, **kwargs: Any) -> None:
            bootstrap(*args, **kwargs)
            restart()

        worker.bootstrap = timed_bootstrap  # type: ignore[method-assign]

    out = measured_in_child(lambda: worker.work(burst=True, logging_level="WARNING"), steady)
    return {**out, "finished": FinishedJobRegistry(queue=queue).count, "left": queue.count}


if __name__ == "__main__":
    child_main({"rq-work": work})
