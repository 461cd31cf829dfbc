"""The Dramatiq broker and actors the benchmark runs (the peers' twins of ``benchapp.tasks``).

Dramatiq's Redis broker with its default middleware; no Results middleware (Dramatiq stores
no result unless asked to).
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.common import process_client

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # the suite always sets it
QUEUE = "bench"

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop() -> None:
    """Do nothing."""
    return None


@dramatiq.actor(queue_name=QUEUE)
def stamp(key: str) -> None:
    """Record when the job's code started (``time.time()``) by RPUSHing it onto ``key``."""
    now = time.time()
    process_client(URL).rpush(key, repr(now))
