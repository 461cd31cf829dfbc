"""The functions RQ's workers run in the benchmark (the peers' twins of ``benchapp.tasks``)."""

from __future__ import annotations

import time

from rq import get_current_job


def noop() -> None:
    """Do nothing."""
    return None


def stamp(key: str) -> None:
    """Record when the job's code started (``time.time()``) by RPUSHing it onto ``key``."""
    now = time.time()
    job = get_current_job()
    assert job is not None
    job.connection.rpush(key, repr(now))
