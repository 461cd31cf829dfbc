"""jobqueue's exceptions, one tree.

Configuration mistakes subclass Django's ``ImproperlyConfigured``; faults a caller can meet at
run time subclass ``JobqueueError``; control flow inside a worker (``WorkerShutdown``) derives
from ``BaseException`` so a task's ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class JobqueueError(Exception):
    """Base class of jobqueue's run-time errors."""


class ConfigurationError(ImproperlyConfigured):
    """A setting (``TASKS`` options or ``JOBQUEUE``) is wrong; the message names it."""


class BrokerUnavailable(JobqueueError):
    """Redis did not answer; nothing was written. Safe to retry the call."""


class InvalidTaskArguments(JobqueueError, TypeError):
    """Task arguments or a return value do not survive a JSON round trip unchanged."""


class UnknownTask(JobqueueError):
    """A job names a task that is neither registered nor mapped in ``RESQUE_CLASSES``."""


class MalformedJob(JobqueueError):
    """A queue entry is not a Resque payload (bad JSON, wrong shapes)."""


class DirtyExit(JobqueueError):
    """The process running a job died without reporting (killed, crashed, ``os._exit``)."""


class WorkerShutdown(BaseException):
    """Raised inside a running job when its worker is told to stop (TERM/INT)."""


class Retry(JobqueueError):
    """Raise inside a task to ask for another attempt (counts against ``max_attempts``).

    ``delay`` (seconds or a ``timedelta``) overrides the task's backoff for this retry.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentFailure(JobqueueError):
    """Raise inside a task to fail it at once: no further attempts, whatever ``max_attempts``."""


class JobTimeout(JobqueueError):
    """A job ran longer than its task's ``timeout``."""


class WorkerLost(JobqueueError):
    """The worker running a job stopped heart-beating (killed, machine gone); found by a reaper."""
