"""jobqueue, measured the way ``peers.py`` measures RQ, through its public contract.

* enqueue rate: ``noop.enqueue()`` one by one (and ``backend.enqueue_many`` when present);
* processing rate: ``Worker(get_broker("default"), ["default"], fork=..., burst=True)`` over
  queued jobs, timed around ``work()`` in a fresh child process, fork per job and no fork;
* time to first job: spawn ``manage.py worker`` with one job queued, until the job's result is
  SUCCESSFUL; worker RSS (VmRSS of that process) once it is idle;
* idle latency: enqueue one ``stamp`` job at a time to the idle worker, until the job's code
  runs (it RPUSHes ``time.time()``), fork per job and ``--no-fork``.

Run as a child: ``python -m benchmarks.jobqueue_bench work fork|nofork``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
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

SECTION = "jobqueue"
MANAGE = ROOT / "benchmarks" / "manage.py"


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process (once) to enqueue through the real backend."""
    from django.conf import settings

    if settings.configured:
        return
    for name in ("DJANGO_SETTINGS_MODULE", "BENCH_REDIS_URL", "BENCH_DB"):
        os.environ[name] = env[name]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def jobqueue_version() -> str:
    try:
        import jobqueue
    except ImportError:
        return ""
    return str(getattr(jobqueue, "__version__", ""))


def _backend() -> Any:
    from jobqueue.compat import task_backends

    return task_backends["default"]


def _fill(server: PrivateRedis, count: int) -> None:
    """Empty Redis, then queue ``count`` no-op jobs (bulk when the backend can)."""
    from benchmarks.benchapp.tasks import noop

    server.flush()
    backend = _backend()
    if hasattr(backend, "enqueue_many"):
        for first in range(0, count, 1000):
            backend.enqueue_many(noop, [((), {})] * min(1000, count - first))
    else:
        for _ in range(count):
            noop.enqueue()


def jq_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    from benchmarks.benchapp.tasks import noop

    server.flush()
    for _ in range(20):  # warm up: scripts loaded, connection open
        noop.enqueue()
    started = time.perf_counter()
    for _ in range(plan.jobs):
        noop.enqueue()
    seconds = time.perf_counter() - started
    rows = [Row(SECTION, "jq.enqueue", "enqueue, noop.enqueue() one by one",
                rate(plan.jobs, seconds), "jobs/s", extra={"jobs": plan.jobs, "seconds": seconds})]
    backend = _backend()
    if hasattr(backend, "enqueue_many"):
        server.flush()
        started = time.perf_counter()
        backend.enqueue_many(noop, [((), {})] * plan.jobs)
        seconds = time.perf_counter() - started
        rows.append(Row(SECTION, "jq.enqueue_many", "enqueue, backend.enqueue_many()",
                        rate(plan.jobs, seconds), "jobs/s",
                        extra={"jobs": plan.jobs, "seconds": seconds}))
    return rows


def jq_work(server: PrivateRedis, env: dict[str, str], plan: Plan) -> list[Row]:
    rows = []
    for mode, key, label in (("fork", "jq.work_fork", "Worker, fork per job, burst"),
                             ("nofork", "jq.work_nofork", "Worker, no fork, burst")):
        _fill(server, plan.jobs)
        out = run_child("benchmarks.jobqueue_bench", ["work", mode], env)
        if out["processed"] != plan.jobs:
            raise BenchError(f"jobqueue {mode} processed {out['processed']} of {plan.jobs}")
        rows.append(Row(SECTION, key, label, rate(plan.jobs, out["seconds"]), "jobs/s",
                        extra=out))
    return rows


def _spawn_worker(env: dict[str, str], mode: str, log: Path) -> Spawned:
    command = [sys.executable, str(MANAGE), "worker", "--queues", "default"]
    if mode == "nofork":
        command.append("--no-fork")
    return Spawned(command, env, log)


def _first_job(server: PrivateRedis, env: dict[str, str], mode: str,
               log: Path) -> tuple[float, Spawned]:
    """Queue one job, spawn ``manage.py worker``, wait for SUCCESSFUL: (seconds, worker)."""
    from benchmarks.benchapp.tasks import noop

    server.flush()
    result = noop.enqueue()
    started = time.perf_counter()
    worker = _spawn_worker(env, mode, log)
    try:
        ended = wait_until(lambda: _succeeded(noop, result.id), 60, "jobqueue's first job",
                           alive=worker)
    except BaseException:
        worker.stop()
        raise
    return ended - started, worker


def _succeeded(task: Any, result_id: str) -> bool:
    from jobqueue.compat import TaskResultStatus

    status = task.get_result(result_id).status
    if status == TaskResultStatus.FAILED:
        raise BenchError(f"job {result_id} FAILED")
    return bool(status == TaskResultStatus.SUCCESSFUL)


def jq_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    """Fork mode: time to first job (median of ``plan.starts``), idle RSS, idle latency;
    ``--no-fork``: idle latency and RSS."""
    starts: list[float] = []
    for attempt in range(plan.starts):
        seconds, worker = _first_job(server, env, "fork", tmp / "jq-fork.log")
        starts.append(seconds)
        if attempt < plan.starts - 1:
            worker.stop()
    try:
        rows = [Row(SECTION, "jq.ttfj", "time to first job (spawn manage.py worker)",
                    sorted(starts)[len(starts) // 2] * 1e3, "ms",
                    extra={"starts_ms": [s * 1e3 for s in starts]})]
        time.sleep(0.5)
        rows.append(Row(SECTION, "jq.rss", "worker RSS, idle (parent, fork mode)",
                        rss_kib(worker.pid) / 1024, "MiB"))
        rows += latency_rows(SECTION, "jq.latency_fork", "fork per job",
                             _latencies(server, plan, worker))
    finally:
        worker.stop()
    _, nofork = _first_job(server, env, "nofork", tmp / "jq-nofork.log")
    try:
        rows += latency_rows(SECTION, "jq.latency_nofork", "--no-fork",
                             _latencies(server, plan, nofork))
    finally:
        nofork.stop()
    return rows


def _latencies(server: PrivateRedis, plan: Plan, worker: Spawned) -> list[float]:
    from benchmarks.benchapp.tasks import stamp

    def enqueue_stamp(key: str) -> Any:
        result = stamp.enqueue(key)
        return lambda: _succeeded(stamp, result.id)

    return idle_latency(server.client(), plan.samples, enqueue_stamp, worker)


# --------------------------------------------------------------------------- child side
def work(mode: str) -> dict[str, Any]:
    """Run ``Worker(..., burst=True)`` in this process over the queued jobs; time ``work()``."""
    import django

    django.setup()
    from jobqueue.broker import get_broker
    from jobqueue.worker import Worker

    worker = Worker(get_broker("default"), ["default"], fork=mode == "fork", burst=True,
                    interval=1.0)
    started = time.perf_counter()
    processed = worker.work()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "processed": processed, "rss_kib": rss_kib()}


if __name__ == "__main__":
    child_main({"work": work})
