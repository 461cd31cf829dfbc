"""Huey (``RedisHuey``) as a peer, on the same Redis, machine and run (``huey_tasks``).

* enqueue: ``noop()`` one by one; in bulk ``noop.map(...)`` (Huey has no pipelined enqueue:
  ``map`` LPUSHes each task);
* one worker process: ``huey_consumer -w 1 -k thread`` (one process: the consumer's
  scheduler loop plus one worker thread);
* pool of 2: ``-w 2 -k process`` (a consumer process plus two worker processes);
* start-up, idle memory and idle latency of ``-w 1 -k thread``.

Huey has no burst mode: processing rows are drained live (``measure.drain_live``). Workers
take a job with BRPOP (``blocking=True``, Huey's default) and run with ``-q`` (warnings only).
No result is stored for a task returning None (Huey's ``store_none=False``); a job is removed
from Redis when taken (a worker killed mid-job loses it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.common import Plan, PrivateRedis, Row
from benchmarks.measure import (
    END_KEY,
    START_KEY,
    LiveSpec,
    drain_live,
    enqueue_row,
    process_row,
    start_and_latency,
    start_row,
    timed_enqueue,
)

SECTION = "Huey"
QUEUE_KEY = "huey.redis.bench"


def huey_version() -> str:
    try:
        import huey
    except ImportError:
        return ""
    return str(huey.__version__)


def _command(workers: int, kind: str) -> list[str]:
    return [sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.huey_tasks.huey",
            "-w", str(workers), "-k", kind, "-q"]


def huey_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    from benchmarks.huey_tasks import noop

    server.flush()
    for _ in range(20):  # warm up
        noop()
    client = server.client()
    one = timed_enqueue(client, lambda n: [noop() for _ in range(n)], plan.jobs)
    server.flush()
    bulk = timed_enqueue(client, lambda n: noop.map([()] * n), plan.bulk_jobs)
    return [enqueue_row(SECTION, "huey.enqueue", "noop(), one by one", one),
            enqueue_row(SECTION, "huey.enqueue_map", "noop.map([...])", bulk)]


def _spec(server: PrivateRedis, workers: int, kind: str) -> LiveSpec:
    from benchmarks.huey_tasks import noop, stamp

    client = server.client()

    def fill(n: int) -> Any:
        stamp(START_KEY)
        noop.map([()] * n)
        stamp(END_KEY)
        return lambda: client.llen(QUEUE_KEY) == 0

    return LiveSpec(_command(workers, kind), [QUEUE_KEY], fill, stamp)


def huey_work(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    rows = []
    for workers, kind, key, label in (
        (1, "thread", "huey.thread1", "huey_consumer -w 1 -k thread"),
        (2, "process", "huey.process2", "huey_consumer -w 2 -k process"),
    ):
        out, peak = drain_live(server, env, _spec(server, workers, kind), plan.jobs,
                               tmp / f"huey-{kind}.log")
        rows.append(process_row(SECTION, key, label, plan.jobs, out, peak))
    return rows


def huey_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    from benchmarks.huey_tasks import stamp

    def enqueue_stamp(key: str) -> Any:
        stamp(key)
        return lambda: True  # no result is stored: the job is done once its code ran

    out = start_and_latency(server, env, plan, _command(1, "thread"), enqueue_stamp,
                            tmp / "huey-start.log")
    return [start_row(SECTION, "huey.start", "huey_consumer -w 1 -k thread", out)]
