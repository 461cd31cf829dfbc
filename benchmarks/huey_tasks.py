"""The Huey instance and tasks the benchmark runs (the peers' twins of ``benchapp.tasks``).

``RedisHuey`` with its defaults: blocking BRPOP, results on (a task returning None stores
nothing, Huey's default ``store_none=False``).
"""

from __future__ import annotations

import os
import time

from huey import RedisHuey

from benchmarks.common import process_client

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # the suite always sets it

huey = RedisHuey("bench", url=URL)


@huey.task()
def noop() -> None:
    """Do nothing."""
    return None


@huey.task()
def stamp(key: str) -> None:
    """Record when the job's code started (``time.time()``) by RPUSHing it onto ``key``."""
    now = time.time()
    process_client(URL).rpush(key, repr(now))
