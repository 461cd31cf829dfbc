"""jobqueue, measured the way the peers are, through its public contract.

* enqueue: ``noop.enqueue()`` one by one; ``backend.enqueue_many(noop, calls)`` in bulk;
* one worker process: ``Worker(get_broker("default"), ["default"], fork=..., burst=True)``
  over queued jobs, timed around ``work()`` in a fresh child process: fork per job, no fork
  (prefetch 8, the default, and 1),
  and fork with ``jobs_per_child=N`` (N = 1, 10, 100; where ``Worker`` has that option);
* pool of 2: ``manage.py pool`` with ``JOBQUEUE["POOL"] = {"default": {"count": 2,
  "fork": ...}}`` (``BENCH_POOL`` in ``bench_settings``), drained live
  (``measure.drain_live``) until the last job ran and every result is SUCCESSFUL;
* start-up, idle memory and idle latency of ``manage.py worker`` and ``--no-fork``.

Run as a child: ``python -m benchmarks.jobqueue_bench work fork|nofork|nofork1 [JOBS_PER_CHILD]``
(``nofork1``: no fork with prefetch 1).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, BenchError, Plan, PrivateRedis, Row, child_main
from benchmarks.measure import (
    END_KEY,
    PARKED_AFTER,
    START_KEY,
    LiveSpec,
    drain_live,
    enqueue_row,
    measured_in_child,
    parked_row,
    process_row,
    run_child_sampled,
    start_and_latency,
    start_row,
    timed_enqueue,
)

SECTION = "jobqueue"
MANAGE = ROOT / "benchmarks" / "manage.py"
CHUNK = 10_000  # enqueue_many calls when filling (it pipelines 1,000 jobs per round trip)
JOBS_PER_CHILD = (1, 10, 100)
#: Environment of the rows for fork mode without its fork server (``bench_settings`` makes
#: it ``JOBQUEUE["FORK_SERVER"] = False``).
NO_FORK_SERVER = {"BENCH_FORK_SERVER": "0"}


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


def has_jobs_per_child() -> bool:
    from jobqueue.worker import Worker

    return "jobs_per_child" in inspect.signature(Worker).parameters


def _backend() -> Any:
    from jobqueue.compat import task_backends

    return task_backends["default"]


def enqueue_noops(count: int) -> list[str]:
    """Queue ``count`` no-op jobs with ``enqueue_many``; their result ids."""
    from benchmarks.benchapp.tasks import noop

    ids: list[str] = []
    for first in range(0, count, CHUNK):
        results = _backend().enqueue_many(noop, [((), {})] * min(CHUNK, count - first))
        ids += [result.id for result in results]
    return ids


def jq_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    from benchmarks.benchapp.tasks import noop

    server.flush()
    for _ in range(20):  # warm up: scripts loaded, connection open
        noop.enqueue()
    client = server.client()
    one = timed_enqueue(client, lambda n: [noop.enqueue() for _ in range(n)], plan.jobs)
    server.flush()
    # The same without spinning for the reply (REPLY_SPIN_US=0): the floor's RPUSH sleeps in
    # recv, so this row shows what the spin is worth in this run.
    broker = _backend().broker
    spin, broker.reply_spin = broker.reply_spin, 0.0  # type: ignore[attr-defined]
    try:
        sleeping = timed_enqueue(client, lambda n: [noop.enqueue() for _ in range(n)],
                                 plan.jobs)
    finally:
        broker.reply_spin = spin  # type: ignore[attr-defined]
    server.flush()
    bulk = timed_enqueue(client, lambda n: _backend().enqueue_many(noop, [((), {})] * n),
                         plan.bulk_jobs)
    return [enqueue_row(SECTION, "jq.enqueue", "noop.enqueue(), one by one", one),
            enqueue_row(SECTION, "jq.enqueue_nospin", "the same, REPLY_SPIN_US=0", sleeping),
            enqueue_row(SECTION, "jq.enqueue_many", "backend.enqueue_many()", bulk)]


def _burst(server: PrivateRedis, env: dict[str, str], plan: Plan, key: str, label: str,
           args: list[str]) -> Row:
    server.flush()
    enqueue_noops(plan.jobs)
    out, peak = run_child_sampled("benchmarks.jobqueue_bench", ["work", *args], env)
    if out["processed"] != plan.jobs:
        raise BenchError(f"jobqueue {' '.join(args)} processed {out['processed']} of "
                         f"{plan.jobs}")
    return process_row(SECTION, key, label, plan.jobs, out, peak)


def jq_work(server: PrivateRedis, env: dict[str, str], plan: Plan) -> list[Row]:
    return [_burst(server, env, plan, "jq.work_fork", "Worker, fork per job, burst", ["fork"]),
            _burst(server, {**env, **NO_FORK_SERVER}, plan, "jq.work_fork_noserver",
                   "  the same, FORK_SERVER = False", ["fork"]),
            _burst(server, env, plan, "jq.work_nofork", "Worker, no fork, burst (prefetch 8)",
                   ["nofork"]),
            _burst(server, env, plan, "jq.work_nofork_p1", "Worker, no fork, prefetch 1, burst",
                   ["nofork1"])]


def jq_jobs_per_child(server: PrivateRedis, env: dict[str, str], plan: Plan) -> list[Row]:
    """Fork mode with ``jobs_per_child=N``; rows "not available" while Worker lacks it."""
    rows = []
    for n in JOBS_PER_CHILD:
        key, label = f"jq.work_jpc{n}", f"Worker, fork, jobs_per_child={n}, burst"
        if has_jobs_per_child():
            rows.append(_burst(server, env, plan, key, label, ["fork", str(n)]))
        else:
            rows.append(Row(SECTION, key, label, math.nan, "jobs/s", group="process",
                            note="not available: Worker() has no jobs_per_child"))
    return rows


def _all_successful(client: Any, ids: list[str]) -> bool:
    """Every result hash says SUCCESSFUL (pipelined HGET, 5,000 per round trip)."""
    from jobqueue.keys import Keys

    keys = Keys("bench")
    for first in range(0, len(ids), 5000):
        pipe = client.pipeline(transaction=False)
        for result_id in ids[first:first + 5000]:
            pipe.hget(keys.result(result_id), "status")
        if any(status != b"SUCCESSFUL" for status in pipe.execute()):
            return False
    return True


def pool_spec(server: PrivateRedis, fork: bool, fill: Callable[[int], list[str]] | None = None,
              workers: int = 2) -> LiveSpec:
    """``manage.py pool`` with ``workers`` workers on "default"; ``fill`` queues the no-ops
    (default: ``enqueue_noops``) between the START and END stamps."""
    from benchmarks.benchapp.tasks import stamp
    from jobqueue.keys import Keys

    client = server.client()
    keys = Keys("bench")

    def fill_all(n: int) -> Callable[[], bool]:
        stamp.enqueue(START_KEY)
        ids = (fill or enqueue_noops)(n)
        stamp.enqueue(END_KEY)
        return lambda: _all_successful(client, ids)

    pool = {"default": {"count": workers, "fork": fork}}
    return LiveSpec([sys.executable, str(MANAGE), "pool"],
                    [keys.queue("default"), keys.wake("default")], fill_all,
                    lambda key: stamp.enqueue(key), env={"BENCH_POOL": json.dumps(pool)})


def jq_pool(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    rows = []
    for fork, key, label in ((True, "jq.pool_fork", "manage.py pool, 2 workers, fork per job"),
                             (False, "jq.pool_nofork", "manage.py pool, 2 workers, no fork")):
        out, peak = drain_live(server, env, pool_spec(server, fork), plan.jobs,
                               tmp / f"{key}.log")
        rows.append(process_row(SECTION, key, label, plan.jobs, out, peak))
    return rows


def _succeeded(task: Any, result_id: str) -> bool:
    from jobqueue.compat import TaskResultStatus

    status = task.get_result(result_id).status
    if status == TaskResultStatus.FAILED:
        raise BenchError(f"job {result_id} FAILED")
    return bool(status == TaskResultStatus.SUCCESSFUL)


def _enqueue_stamp(key: str) -> Any:
    from benchmarks.benchapp.tasks import stamp

    result = stamp.enqueue(key)
    return lambda: _succeeded(stamp, result.id)


#: The start-up rows: log name, key, label, extra worker arguments, extra environment.
#: ``FORK_SERVER = False`` is the lean fork mode (one process while idle, Resque's fork after
#: each reservation): the default's memory and latency against it, in the same run.
START_MODES: tuple[tuple[str, str, str, list[str], dict[str, str]], ...] = (
    ("fork", "jq.start_fork", "manage.py worker (fork per job)", [], {}),
    ("fork-noserver", "jq.start_fork_noserver", "  the same, FORK_SERVER = False", [],
     NO_FORK_SERVER),
    ("nofork", "jq.start_nofork", "manage.py worker --no-fork", ["--no-fork"], {}))


def jq_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    """Time to first job, idle memory, idle latency: ``manage.py worker`` (with and without
    its fork server) and ``--no-fork``."""
    rows = []
    for mode, key, label, extra_args, extra_env in START_MODES:
        command = [sys.executable, str(MANAGE), "worker", "--queues", "default", *extra_args]
        # Also a few samples 1.5 s apart: the 5 ms gap leaves a fork-mode worker still forking
        # its next child on a pinned core; after 1.5 s it is truly idle.
        # The default's fork server stops after FORK_SERVER_IDLE_TIMEOUT without a job: its
        # memory and latency are measured again in that state (the timeout shortened to
        # PARKED_AFTER s, which changes when the state begins, not what it is).
        parked = PARKED_AFTER if mode == "fork" else 0.0
        if parked:
            extra_env = {**extra_env, "BENCH_FORK_SERVER_IDLE_TIMEOUT": str(parked)}
        out = start_and_latency(server, {**env, **extra_env}, plan, command, _enqueue_stamp,
                                tmp / f"jq-{mode}.log", long_idle=max(3, plan.samples // 20),
                                parked=parked)
        rows.append(start_row(SECTION, key, label, out))
        if (row := parked_row(SECTION, f"{key}_parked", "  the same, fork server stopped "
                              f"(p50 after {parked + 1:g} s idle)", out)) is not None:
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- child side
def work(mode: str, jobs_per_child: str = "0") -> dict[str, Any]:
    """Run ``Worker(..., burst=True)`` in this process over the queued jobs; time ``work()``."""
    import django

    django.setup()
    from jobqueue.broker import get_broker
    from jobqueue.worker import Worker

    options: dict[str, Any] = {"jobs_per_child": int(jobs_per_child)} if int(
        jobs_per_child) else {}
    if mode == "nofork1":  # prefetch off: one reservation per job
        options["prefetch"] = 1
    worker = Worker(get_broker("default"), ["default"], fork=mode == "fork", burst=True,
                    interval=1.0, **options)

    def steady(restart: Callable[[], None]) -> None:  # the clock starts with the job loop
        loop = worker._loop

        def timed_loop() -> None:
            restart()
            loop()

        worker._loop = timed_loop  # type: ignore[method-assign]

    return measured_in_child(worker.work, steady)


if __name__ == "__main__":
    child_main({"work": work})
