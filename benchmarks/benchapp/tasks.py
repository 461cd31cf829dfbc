"""The benchmark's tasks: ``noop`` for throughput, ``stamp`` for latency."""

from __future__ import annotations

import time

from jobqueue.broker import get_broker
from jobqueue.compat import task


@task()
def noop() -> None:
    """Do nothing: what is measured is the queue's own cost per job."""
    return None


@task()
def stamp(key: str) -> None:
    """Record when the job's code started (``time.time()``) by RPUSHing it onto ``key``."""
    now = time.time()
    get_broker().client.rpush(key, repr(now))  # type: ignore[attr-defined]
