"""Enqueue only after the current database transaction commits.

A request that rolls back must not leave a job behind, and a job must not run before the
rows it reads are committed. Django's core leaves this to ``transaction.on_commit``; this
module adds what the bare recipe lacks: arguments are checked *now* (a bad argument fails the
request, not the commit hook), and the job's result id is known before the commit.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .backends.results import check_arguments
from .compat import Task


def enqueue_on_commit(task: Task, *args: Any, using: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``task(*args, **kwargs)`` when the transaction on ``using`` commits.

    Outside a transaction (autocommit) it enqueues at once, as ``on_commit`` does. On
    rollback nothing is enqueued. If Redis is down at commit time the error propagates from
    the commit (``BrokerUnavailable``): the rows are committed, the job is not, and the
    caller sees it.
    """
    task.get_backend().validate_task(task)
    check_arguments(task, args, kwargs)
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs), using=using)
