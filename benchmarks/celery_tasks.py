"""The Celery app and tasks the benchmark runs (the peers' twins of ``benchapp.tasks``).

Redis broker and, unless ``BENCH_CELERY_RESULTS=0``, a Redis result backend (jobqueue
records a result per job, so that is the like-for-like setting); JSON, no task events.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from benchmarks.common import process_client

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # the suite always sets it
RESULTS = os.environ.get("BENCH_CELERY_RESULTS", "1") == "1"
QUEUE = "bench"

app = Celery("bench", broker=URL, backend=URL if RESULTS else None)
app.conf.update(
    task_default_queue=QUEUE, task_ignore_result=not RESULTS, task_serializer="json",
    result_serializer="json", accept_content=["json"], worker_hijack_root_logger=False,
    worker_send_task_events=False, task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> None:
    """Do nothing."""
    return None


@app.task(name="bench.stamp")
def stamp(key: str) -> None:
    """Record when the job's code started (``time.time()``) by RPUSHing it onto ``key``."""
    now = time.time()
    process_client(URL).rpush(key, repr(now))
