"""The peer: RQ, on the same Redis, machine and run, with a no-op function.

* enqueue rate: ``Queue.enqueue(noop)`` one by one;
* processing rate: ``rq.Worker`` (fork per job) and ``rq.SimpleWorker`` (no fork), burst mode
  over queued jobs, timed around ``work()`` in a fresh child process;
* time to first job: spawn ``rq worker`` with one job queued, until the job is finished;
* worker RSS: that worker's VmRSS once it is idle after its first job;
* idle latency: enqueue one job at a time to the idle worker, until the job's code runs.

Workers log at WARNING (one INFO line per job would measure the terminal), as jobqueue's do.
Run as a child: ``python -m benchmarks.peers rq-work worker|simple``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchError,
    Plan,
    PrivateRedis,
    Row,
    Spawned,
    child_main,
    idle_latency,
    latency_rows,
    rate,
    rss_kib,
    run_child,
    wait_until,
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


def _fill(server: PrivateRedis, count: int) -> None:
    """Empty Redis, then queue ``count`` no-op jobs (pipelined: filling is not measured)."""
    from rq import Queue

    server.flush()
    queue = _queue(server)
    for first in range(0, count, 1000):
        batch = [Queue.prepare_data(NOOP) for _ in range(min(1000, count - first))]
        queue.enqueue_many(batch)
    if queue.count != count:
        raise BenchError(f"RQ queue holds {queue.count} jobs, expected {count}")


def rq_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    server.flush()
    queue = _queue(server)
    for _ in range(20):  # warm up
        queue.enqueue(NOOP)
    started = time.perf_counter()
    for _ in range(plan.jobs):
        queue.enqueue(NOOP)
    seconds = time.perf_counter() - started
    return [Row(SECTION, "rq.enqueue", "enqueue, one by one", rate(plan.jobs, seconds),
                "jobs/s", extra={"jobs": plan.jobs, "seconds": seconds})]


def rq_work(server: PrivateRedis, env: dict[str, str], plan: Plan) -> list[Row]:
    rows = []
    for kind, key, label, count in (
        ("worker", "rq.work_fork", "rq.Worker (fork per job), burst", plan.rq_fork_jobs),
        ("simple", "rq.work_simple", "rq.SimpleWorker (no fork), burst", plan.jobs),
    ):
        _fill(server, count)
        out = run_child("benchmarks.peers", ["rq-work", kind], env)
        if out["finished"] != count:
            raise BenchError(f"RQ {kind} finished {out['finished']} of {count} jobs")
        rows.append(Row(SECTION, key, label, rate(count, out["seconds"]), "jobs/s", extra=out))
    return rows


def _spawn_worker(server: PrivateRedis, env: dict[str, str], kind: str, log: Path) -> Spawned:
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", server.url,
               "--logging_level", "WARNING", "--worker-class", WORKER_CLASSES[kind], QUEUE]
    return Spawned(command, env, log)


def _first_job(server: PrivateRedis, env: dict[str, str], kind: str,
               log: Path) -> tuple[float, Spawned]:
    """Queue one job, spawn a worker, wait until the job is finished: (seconds, worker)."""
    server.flush()
    job = _queue(server).enqueue(NOOP)
    started = time.perf_counter()
    worker = _spawn_worker(server, env, kind, log)
    try:
        ended = wait_until(lambda: job.get_status(refresh=True) == "finished", 60,
                           "RQ's first job", alive=worker)
    except BaseException:
        worker.stop()
        raise
    return ended - started, worker


def rq_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    """rq.Worker: time to first job (median of ``plan.starts`` cold starts), RSS when idle,
    idle latency; rq.SimpleWorker: idle latency."""
    starts: list[float] = []
    for attempt in range(plan.starts):
        seconds, worker = _first_job(server, env, "worker", tmp / "rq-worker.log")
        starts.append(seconds)
        if attempt < plan.starts - 1:
            worker.stop()
    try:
        rows = [Row(SECTION, "rq.ttfj", "time to first job (spawn rq worker)",
                    sorted(starts)[len(starts) // 2] * 1e3, "ms",
                    extra={"starts_ms": [s * 1e3 for s in starts]})]
        time.sleep(0.5)
        rows.append(Row(SECTION, "rq.rss", "worker RSS, idle (rq.Worker)",
                        rss_kib(worker.pid) / 1024, "MiB"))
        rows += latency_rows(SECTION, "rq.latency_fork", "rq.Worker",
                             _latencies(server, plan, worker))
    finally:
        worker.stop()
    _, simple = _first_job(server, env, "simple", tmp / "rq-simple.log")
    try:
        rows += latency_rows(SECTION, "rq.latency_simple", "rq.SimpleWorker",
                             _latencies(server, plan, simple))
    finally:
        simple.stop()
    return rows


def _latencies(server: PrivateRedis, plan: Plan, worker: Spawned) -> list[float]:
    return idle_latency(server.client(), plan.samples,
                        lambda key: _enqueue_stamp(server, key), worker)


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
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - started
    finished = FinishedJobRegistry(queue=queue).count
    return {"seconds": seconds, "finished": finished, "left": queue.count,
            "rss_kib": rss_kib()}


if __name__ == "__main__":
    child_main({"rq-work": work})
