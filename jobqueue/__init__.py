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
    can run it. Arguments follow the rule of task arguments: tuples become lists, anything
    else that does not survive a JSON round trip raises ``InvalidTaskArguments`` and nothing
    is written.
    """
    from .backends.results import json_arguments
    from .broker import get_broker
    from .job import Job

    if not isinstance(queue, str) or not queue or not isinstance(class_name, str) or not class_name:
        raise ValueError("enqueue_to() needs a queue name and a class name (non-empty strings)")
    normal, _ = json_arguments(class_name, args, {})
    get_broker(backend).push(Job(task_name=class_name, args=normal, queue=queue), None)
