"""Dramatiq (Redis broker) as a peer, on the same Redis, machine and run (``dramatiq_actors``).

* enqueue: ``noop.send()`` one by one; in bulk ``dramatiq.group([...]).run()`` (Dramatiq has
  no pipelined enqueue: the group sends its messages one Lua call each);
* one worker process: ``dramatiq --processes 1 --threads 1`` (a master plus one worker
  process; the worker process also runs a consumer thread per queue and the middleware's
  threads, and prefetches messages);
* the same process with Dramatiq's default 8 worker threads (its consumer prefetches twice
  the thread count; with one thread it often waits out its poll back-off between jobs);
* pool of 2: ``--processes 2 --threads 1``;
* start-up, idle memory and idle latency of ``--processes 1 --threads 1``.

Dramatiq has no burst mode: processing rows are drained live (``measure.drain_live``). Its
Redis consumer polls (no blocking pop) with a back-off of up to ``worker_timeout`` (1 s by
default, not settable from its CLI), which sets its idle latency; the drain is timed from the
first job's start, so that back-off is not in the rate. Acknowledged after the job runs
(at-least-once); no results stored.
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

SECTION = "Dramatiq"
QUEUE_KEY = "dramatiq:bench"  # list of message ids; the messages are in QUEUE_KEY.msgs


def dramatiq_version() -> str:
    try:
        import dramatiq
    except ImportError:
        return ""
    return str(dramatiq.__version__)


def _command(processes: int, threads: int = 1) -> list[str]:
    return [sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_actors", "--processes",
            str(processes), "--threads", str(threads), "--queues", "bench"]


def _group(n: int) -> None:
    import dramatiq

    from benchmarks.dramatiq_actors import noop

    dramatiq.group([noop.message() for _ in range(n)]).run()


def dramatiq_enqueue(server: PrivateRedis, plan: Plan) -> list[Row]:
    from benchmarks.dramatiq_actors import noop

    server.flush()
    for _ in range(20):  # warm up: connection, scripts loaded
        noop.send()
    client = server.client()
    one = timed_enqueue(client, lambda n: [noop.send() for _ in range(n)], plan.jobs)
    server.flush()
    bulk = timed_enqueue(client, _group, plan.bulk_jobs)
    return [enqueue_row(SECTION, "dramatiq.enqueue", "noop.send(), one by one", one),
            enqueue_row(SECTION, "dramatiq.enqueue_group", "group([...]).run()", bulk)]


def _spec(server: PrivateRedis, processes: int, threads: int) -> LiveSpec:
    from benchmarks.dramatiq_actors import stamp

    client = server.client()

    def fill(n: int) -> Any:
        stamp.send(START_KEY)
        for first in range(0, n, 1000):
            _group(min(1000, n - first))
        stamp.send(END_KEY)
        return lambda: client.hlen(QUEUE_KEY + ".msgs") == 0  # every message acked

    return LiveSpec(_command(processes, threads), [QUEUE_KEY], fill, stamp.send)


def dramatiq_work(server: PrivateRedis, env: dict[str, str], plan: Plan,
                  tmp: Path) -> list[Row]:
    rows = []
    for processes, threads, key, label in (
        (1, 1, "dramatiq.p1", "dramatiq --processes 1 --threads 1"),
        (1, 8, "dramatiq.p1t8", "dramatiq --processes 1 --threads 8 (default)"),
        (2, 1, "dramatiq.p2", "dramatiq --processes 2 --threads 1"),
    ):
        out, peak = drain_live(server, env, _spec(server, processes, threads), plan.jobs,
                               tmp / f"dramatiq-{key}.log")
        rows.append(process_row(SECTION, key, label, plan.jobs, out, peak))
    return rows


def dramatiq_start(server: PrivateRedis, env: dict[str, str], plan: Plan,
                   tmp: Path) -> list[Row]:
    from benchmarks.dramatiq_actors import stamp

    client = server.client()

    def enqueue_stamp(key: str) -> Any:
        stamp.send(key)
        return lambda: client.hlen(QUEUE_KEY + ".msgs") == 0

    out = start_and_latency(server, env, plan, _command(1), enqueue_stamp,
                            tmp / "dramatiq-start.log", long_idle=max(3, plan.samples // 20))
    return [start_row(SECTION, "dramatiq.start", "dramatiq --processes 1 --threads 1", out)]
