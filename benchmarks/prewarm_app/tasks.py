"""The benchmark's job: read one model row and use ContentType, in a forked child."""

from __future__ import annotations

import time

from django.contrib.contenttypes.models import ContentType

from jobqueue.broker import get_broker
from jobqueue.compat import task

from .models import Article


def _unique_kb() -> int:
    """This process's USS (Private_Clean + Private_Dirty, kB): what the running job costs."""
    total = 0
    with open("/proc/self/smaps_rollup", encoding="ascii") as file:
        for line in file:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


@task(queue_name="bench")
def read_article(pk: int) -> int:
    """Load an article and its content type; record when it ended, its time and its USS."""
    started = time.perf_counter()
    article = Article.objects.get(pk=pk)
    content_type = ContentType.objects.get_for_model(article)
    elapsed = time.perf_counter() - started
    broker = get_broker()
    broker.client.rpush(f"{broker.namespace}:bench:done",  # type: ignore[attr-defined]
                        f"{time.time():.6f} {elapsed:.6f} {_unique_kb()}")
    return content_type.pk


@task(queue_name="bench")
def build_rows(count: int) -> int:
    """A heavier job: build ``count`` small records (say, a parsed CSV) and keep them to the end.

    Enough surviving objects make CPython run a full collection inside the job's process,
    which is where freezing the parent's objects pays.
    """
    started = time.perf_counter()
    rows = [{"id": i, "name": f"row {i}", "tags": [i % 7]} for i in range(count)]
    elapsed = time.perf_counter() - started
    broker = get_broker()
    broker.client.rpush(f"{broker.namespace}:bench:done",  # type: ignore[attr-defined]
                        f"{time.time():.6f} {elapsed:.6f} {_unique_kb()}")
    return len(rows)
