"""Brokers: the storage layer behind a jobqueue backend.

``get_broker(alias)`` returns the broker of a ``TASKS`` alias (one per process, fork-safe).
"""

from __future__ import annotations

from .base import Broker, ErrorInfo, Outcome, WorkerInfo

__all__ = ["Broker", "ErrorInfo", "Outcome", "WorkerInfo", "get_broker"]


def get_broker(alias: str = "default") -> Broker:
    """Return the broker behind the jobqueue backend configured as ``TASKS[alias]``."""
    from ..compat import task_backends
    from ..exceptions import ConfigurationError

    backend = task_backends[alias]
    broker = getattr(backend, "broker", None)
    if not isinstance(broker, Broker):
        raise ConfigurationError(
            f"TASKS[{alias!r}] uses {type(backend).__module__}.{type(backend).__name__}, "
            "which is not a jobqueue backend"
        )
    return broker
