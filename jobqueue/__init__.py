"""jobqueue: background jobs for Django's Tasks framework, on Redis, in Resque's format.

Public API::

    from jobqueue import enqueue_to           # push a plain Resque job for Ruby/Node workers
    from jobqueue.broker import get_broker     # the storage behind a TASKS alias
    from jobqueue.worker import Worker         # what ``manage.py worker`` runs
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "enqueue_to"]


def enqueue_to(queue: str, class_name: str, *args: Any, backend: str = "default") -> None:
    """Push a plain Resque job ``{"class": class_name, "args": [...]}`` onto ``queue``.

    Byte for byte what Ruby's ``Resque.enqueue_to`` writes, so a Ruby or node-resque worker
    can run it. Arguments must survive a JSON round trip (``InvalidTaskArguments`` otherwise;
    nothing is written).
    """
    import json

    from .broker import get_broker
    from .exceptions import InvalidTaskArguments
    from .job import Job
    from .payload import dumps

    if not isinstance(queue, str) or not queue or not isinstance(class_name, str) or not class_name:
        raise ValueError("enqueue_to() needs a queue name and a class name (non-empty strings)")
    try:
        restored = json.loads(dumps(list(args)))
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(f"Arguments for {class_name} must be JSON: {exc}") from None
    if restored != list(args):
        raise InvalidTaskArguments(
            f"Arguments for {class_name} do not survive a JSON round trip: {list(args)!r} "
            f"comes back as {restored!r}"
        )
    get_broker(backend).push(Job(task_name=class_name, args=list(args), queue=queue), None)
