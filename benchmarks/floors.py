"""Floors: what the bare machinery does with no queue library in the way.

* redis-py: RPUSH one payload per round trip; one process draining with BLPOP and doing
  nothing else; RPUSH in pipelines of 1,000.
* fork: a process that ran ``django.setup()`` with the benchmark settings (the size of a real
  worker) doing ``os.fork()``; child ``os._exit(0)``; parent ``os.waitpid`` in a loop. The
  same loop in a process the size of an RQ worker (redis-py and rq imported), since the cost
  of a fork grows with the parent's resident memory (its page tables are copied).

Run as a child (``python -m benchmarks.floors fork-loop django|plain N``) for the fork loop.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import Plan, Row, child_main, rate, rss_kib, run_child

SECTION = "Floors"
KEY = "bench:floor"
BATCH = 1000
#: About the size of a Resque job payload of a no-op task.
PAYLOAD = json.dumps({"class": "benchmarks.benchapp.tasks.noop", "args": [],
                      "id": uuid.uuid4().hex, "queue": "default",
                      "enqueued_at": 1700000000.123456}).encode()


def redis_floor(client: Any, plan: Plan) -> list[Row]:
    """RPUSH one by one, BLPOP drain, pipelined RPUSH: rates over ``plan.redis_ops``."""
    n = plan.redis_ops
    for _ in range(500):  # warm up: connection, allocator, CPU frequency
        client.rpush(KEY, PAYLOAD)
    client.delete(KEY)
    started = time.perf_counter()
    for _ in range(n):
        client.rpush(KEY, PAYLOAD)
    push_s = time.perf_counter() - started

    started = time.perf_counter()
    for _ in range(n):
        client.blpop([KEY], timeout=1)
    drain_s = time.perf_counter() - started
    if client.llen(KEY):
        raise RuntimeError("BLPOP drain left items behind")

    started = time.perf_counter()
    for first in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, n - first)):
            pipe.rpush(KEY, PAYLOAD)
        pipe.execute()
    bulk_s = time.perf_counter() - started
    client.delete(KEY)
    return [
        Row(SECTION, "floor.rpush", "redis-py RPUSH, one by one", rate(n, push_s), "ops/s",
            extra={"ops": n, "seconds": push_s, "payload_bytes": len(PAYLOAD)}),
        Row(SECTION, "floor.blpop", "redis-py BLPOP drain, one process", rate(n, drain_s),
            "ops/s", extra={"ops": n, "seconds": drain_s}),
        Row(SECTION, "floor.rpush_bulk", f"redis-py RPUSH, pipelined x{BATCH}",
            rate(n, bulk_s), "ops/s", extra={"ops": n, "seconds": bulk_s}),
    ]


def fork_floor(env: dict[str, str], plan: Plan) -> list[Row]:
    """The bare fork loop, in a child loaded like a jobqueue worker (Django) and in one loaded
    like an RQ worker (redis-py and rq): fork time grows with the parent's resident size."""
    rows = []
    for profile, key, label in (("django", "floor.fork", "Django process"),
                                ("plain", "floor.fork_plain", "plain process, rq imported")):
        out = run_child("benchmarks.floors", ["fork-loop", profile, str(plan.forks)], env)
        forks, seconds = int(out["forks"]), float(out["seconds"])
        rows += [
            Row(SECTION, key, f"fork + _exit + waitpid, {label}", rate(forks, seconds),
                "forks/s", extra=out),
            Row(SECTION, f"{key}_us", "  per fork", seconds / forks * 1e6, "µs"),
            Row(SECTION, f"{key}_rss", "  RSS of that process", out["rss_kib"] / 1024, "MiB"),
        ]
    return rows


# --------------------------------------------------------------------------- child side
def _load(profile: str) -> None:
    """Import what a worker of ``profile`` holds, so the process has a worker's size.

    ``django``: ``django.setup()`` with the benchmark settings plus jobqueue's worker modules;
    ``plain``: redis-py and rq, as ``rq worker`` has before its first job.
    """
    if profile == "django":
        import django

        django.setup()
        modules = ["jobqueue.worker", "jobqueue.broker", "benchmarks.benchapp.tasks"]
    else:
        modules = ["redis", "rq", "rq.worker", "benchmarks.rq_jobs"]
    for module in modules:
        with contextlib.suppress(ImportError):  # the floor stands without jobqueue or rq
            importlib.import_module(module)


def fork_loop(profile: str, count: str) -> dict[str, Any]:
    n = int(count)
    _load(profile)
    rss = rss_kib()
    for _ in range(min(n // 10, 50)):  # warm up: page tables, allocator
        _fork_once()
    started = time.perf_counter()
    for _ in range(n):
        _fork_once()
    seconds = time.perf_counter() - started
    return {"forks": n, "seconds": seconds, "rss_kib": rss, "profile": profile}


def _fork_once() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    child_main({"fork-loop": fork_loop})
