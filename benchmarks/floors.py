"""Floors: what the bare machinery does with no queue library in the way.

* redis-py: RPUSH one payload per round trip; one process draining with BLPOP and doing
  nothing else; RPUSH in pipelines of 1,000.
* fork: a process that ran ``django.setup()`` with the benchmark settings (the size of a real
  worker) doing ``os.fork()``; child ``os._exit(0)``; parent ``os.waitpid`` in a loop. The
  same loop in a process the size of an RQ worker (redis-py and rq imported), since the cost
  of a fork grows with the parent's resident memory (its page tables are copied); and the
  Django loop again after ``jobqueue.hugepages.collapse_heap()``, which a fork-mode worker
  does before its first fork: what the machine's fork costs with that heap in huge pages.

* latency: a process blocked in ``BLPOP`` that, per item, RPUSHes ``time.time()`` back
  (``bare``: redis-py only), or forks a child that takes the time and reports it through a
  pipe before the parent RPUSHes it (``fork``: a Django-sized process, as a fork-per-job
  worker's). Their start-up time and idle memory are the floors of time to first job and of
  a worker's RSS.

Run as a child (``python -m benchmarks.floors fork-loop django|django-huge|plain N``,
``blpop-loop bare|fork``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import ROOT, Plan, PrivateRedis, Row, child_main, rate, rss_kib, run_child

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
                                ("django-huge", "floor.fork_huge",
                                 "Django process, heap in huge pages"),
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


LATENCY_QUEUE = "bench:floor:latency"


def latency_floor(server: PrivateRedis, env: dict[str, str], plan: Plan,
                  tmp: Path) -> list[Row]:
    """Time to first job, idle memory and idle latency of the bare BLPOP loops."""
    from benchmarks.measure import PARKED_AFTER, parked_row, start_and_latency, start_row

    client = server.client()

    def stamp(key: str) -> object:
        client.rpush(LATENCY_QUEUE, key)
        return lambda: True

    rows = []
    for profile, label in (("bare", "bare BLPOP loop (redis-py only)"),
                           ("fork", "BLPOP + fork per item, Django process")):
        command = [sys.executable, "-m", "benchmarks.floors", "blpop-loop", profile]
        # The fork floor also after seconds of idling, as far apart as jobqueue's parked rows.
        parked = PARKED_AFTER if profile == "fork" else 0.0
        out = start_and_latency(server, env, plan, command, stamp, tmp / f"floor-{profile}.log",
                                parked=parked)
        rows.append(start_row(SECTION, f"floor.latency_{profile}", label, out))
        if (row := parked_row(SECTION, f"floor.latency_{profile}_parked",
                              f"  the same, p50 after {parked + 1:g} s idle", out)) is not None:
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- child side
def _load(profile: str) -> None:
    """Import what a worker of ``profile`` holds, so the process has a worker's size.

    ``django``: ``django.setup()`` with the benchmark settings plus jobqueue's worker modules
    (``django-huge``: then its heap collapsed into huge pages, as a fork-mode worker's is);
    ``plain``: redis-py and rq, as ``rq worker`` has before its first job.
    """
    if profile == "bare":
        return
    if profile.startswith("django"):
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
    huge = None
    if profile == "django-huge":
        from jobqueue import hugepages

        done = hugepages.collapse_heap()
        huge = None if done is None else done.bytes >> 20
    rss = rss_kib()
    for _ in range(min(n // 10, 50)):  # warm up: page tables, allocator
        _fork_once()
    started = time.perf_counter()
    for _ in range(n):
        _fork_once()
    seconds = time.perf_counter() - started
    return {"forks": n, "seconds": seconds, "rss_kib": rss, "profile": profile,
            "huge_mib": huge}


def _fork_once() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def blpop_loop(profile: str) -> dict[str, Any]:
    """Serve LATENCY_QUEUE until killed: each item names the key to RPUSH the time onto."""
    _load("django" if profile == "fork" else "bare")
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    while True:
        # Waits of a second at most: redis-py 8 gives sockets a 5 s timeout by default.
        popped = client.blpop([LATENCY_QUEUE], timeout=1)
        if popped is None:
            continue
        client.rpush(popped[1], _forked_time() if profile == "fork" else repr(time.time()))


def _forked_time() -> bytes:
    """Fork; the child reads the clock (the job) and writes it to a pipe; reap it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_fd, repr(time.time()).encode())
        os._exit(0)
    os.close(write_fd)
    data = os.read(read_fd, 64)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return data


if __name__ == "__main__":
    os.chdir(ROOT)
    child_main({"fork-loop": fork_loop, "blpop-loop": blpop_loop})
