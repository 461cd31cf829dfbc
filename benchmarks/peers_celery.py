"""Celery 5 (Redis broker) as a peer, on the same Redis, machine and run (``celery_tasks``).

* enqueue: ``noop.delay()`` one by one; in bulk ``noop.apply_async(producer=p)`` inside
  kombu's ``Producer.batch()`` (a non-transactional pipeline, kombu >= 5.7). The client has
  the Redis result backend configured, so each call also SUBSCRIBEs to the task's result
  channel, as a Celery client that may read results does;
* one worker process: ``celery worker --pool solo`` with the Redis result backend (a result
  per job, as jobqueue records), and once more without a backend (``task_ignore_result``);
* pool of 2: ``--pool prefork -c 2`` (a master and two children), with the result backend;
* start-up, idle memory and idle latency of ``--pool solo`` with the result backend.

Celery has no burst mode: every processing row is drained live (``measure.drain_live``).
Workers run ``--without-gossip --without-mingle --without-heartbeat`` (no cluster chatter,
no 1 s mingle wait at start-up) and ``-l WARNING``; default prefetch (4 per process), early
acknowledgement (Celery's default: a job is acked when received, so a worker killed
mid-job loses it; jobqueue keeps at-least-once delivery).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
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

SECTION = "Celery"
BATCH = 1000


def celery_version() -> str:
    try:
        import celery
    except ImportError:
        return ""
    return str(celery.__version__)


def _command(pool: str) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_tasks", "worker",
               "--pool", pool, "-Q", "bench", "-l", "WARNING", "--without-gossip",
               "--without-mingle", "--without-heartbeat", "-n", f"bench-{pool}@%h"]
    return command + (["-c", "2"] if pool == "prefork" else [])


@contextlib.contextmanager
def _no_subscriptions() -> Iterator[None]:
    """While filling (not measured), don't subscribe the driver to every result channel."""
    from benchmarks.celery_tasks import app

    backend = app.backend
    saved = backend.on_task_call
    backend.on_task_call = lambda producer, task_id: None
    try:
        yield
    finally:
        backend.on_task_call = saved


def _bulk(n: int, **options: Any) -> list[str]:
    from benchmarks.celery_tasks import app, noop

    ids = []
    with app.producer_or_acquire() as producer, producer.batch(BATCH):
        for _ in range(n):
            ids.append(noop.apply_async(producer=producer, **options).id)
    return ids


def celery_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    from benchmarks.celery_tasks import noop

    server.flush()
    for _ in range(20):  # warm up: connections, queue declared
        noop.delay()
    client = server.client()
    one = timed_enqueue(client, lambda n: [noop.delay() for _ in range(n)], plan.jobs)
    server.flush()
    bulk = timed_enqueue(client, _bulk, plan.bulk_jobs)
    return [enqueue_row(SECTION, "celery.enqueue", "noop.delay(), one by one", one),
            enqueue_row(SECTION, "celery.enqueue_bulk",
                        f"apply_async in Producer.batch({BATCH})", bulk)]


def _spec(server: PrivateRedis, pool: str, results: bool) -> LiveSpec:
    from benchmarks.celery_tasks import stamp

    client = server.client()
    options = {} if results else {"ignore_result": True}

    def fill(n: int) -> Any:
        with _no_subscriptions():
            stamp.apply_async((START_KEY,), **options)
            ids = _bulk(n, **options)
            stamp.apply_async((END_KEY,), **options)
        if not results:
            return lambda: client.llen("bench") == 0
        return lambda: _all_stored(client, ids)

    def warm(key: str) -> Any:
        with _no_subscriptions():
            return stamp.apply_async((key,), **options)

    return LiveSpec(_command(pool), ["bench"], fill, warm,
                    env={"BENCH_CELERY_RESULTS": "1" if results else "0"})


def _all_stored(client: Any, ids: list[str]) -> bool:
    """Every task's result is in the backend (``celery-task-meta-<id>``), checked pipelined."""
    for first in range(0, len(ids), 5000):
        pipe = client.pipeline(transaction=False)
        for task_id in ids[first:first + 5000]:
            pipe.exists(f"celery-task-meta-{task_id}")
        if not all(pipe.execute()):
            return False
    return True


def celery_work(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    rows = []
    for pool, results, key, label in (
        ("solo", True, "celery.solo", "worker --pool solo, Redis results"),
        ("solo", False, "celery.solo_noresult", "worker --pool solo, no result backend"),
        ("prefork", True, "celery.prefork", "worker --pool prefork -c 2, Redis results"),
    ):
        out, peak = drain_live(server, env, _spec(server, pool, results), plan.jobs,
                               tmp / f"celery-{key}.log")
        rows.append(process_row(SECTION, key, label, plan.jobs, out, peak))
    return rows


def celery_start(server: PrivateRedis, env: dict[str, str], plan: Plan, tmp: Path) -> list[Row]:
    from benchmarks.celery_tasks import stamp

    def enqueue_stamp(key: str) -> Any:
        result = stamp.delay(key)
        return result.ready

    out = start_and_latency(server, {**env, "BENCH_CELERY_RESULTS": "1"}, plan,
                            _command("solo"), enqueue_stamp, tmp / "celery-start.log")
    return [start_row(SECTION, "celery.start_solo", "celery worker --pool solo, results",
                      out)]
