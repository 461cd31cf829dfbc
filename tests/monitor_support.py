"""Helpers shared by the monitor's test modules: users with each permission, failed jobs.

Failures are made the way a worker makes them (``reserve`` then ``finish`` with a real
exception), so records have jobqueue's exact shape. Fixtures are in ``monitor_fixtures``
(loaded with ``pytest_plugins``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobqueue.broker.base import WorkerInfo
from jobqueue.payload import format_heartbeat
from jobqueue.runner import failed

M = "/admin/jobqueue/monitor/"
WORKER = "testhost:4242:default"


def page_text(response: Any) -> str:
    """A response's HTML without the ``<wbr>`` hints that let dotted names wrap."""
    return response.content.decode().replace("<wbr>", "")


def fail_all(broker: Any, queue: str = "default", worker: str = WORKER,
             message: str = "it broke") -> int:
    """Reserve and fail every job on ``queue``; return how many."""
    n = 0
    while (r := broker.reserve(worker, [queue])) is not None:
        broker.finish(worker, r.job, r.queue, failed(ValueError(f"{message} {r.job.args}")))
        n += 1
    return n


def make_user(django_user_model: Any, name: str, *perms: str, staff: bool = True) -> Any:
    """A user with the given ``jobqueue`` permissions (codenames)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw",
                                                 is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="jobqueue",
                                                         codename=codename))
    return user


def register_worker(broker: Any, worker_id: str = WORKER, *, age_seconds: float = 0.0,
                    interval: float = 1.0) -> None:
    """Register a worker whose last heartbeat is ``age_seconds`` old."""
    host, pid, queues = worker_id.split(":", 2)
    broker.register_worker(WorkerInfo(id=worker_id, host=host, pid=int(pid),
                                      queues=queues.split(","),
                                      extra={"heartbeat_interval": str(interval)}))
    beat = datetime.now(UTC) - timedelta(seconds=age_seconds)
    broker.client.hset(broker.keys.heartbeats, worker_id, format_heartbeat(beat))
