"""Retry policy: how many attempts a job gets and how long to wait between them.

Shaped after Django's retry proposal (new-features#142): ``max_attempts`` counts every
attempt including the first; ``backoff`` is seconds, a ``timedelta`` or a callable
``backoff(exception, task_result) -> seconds | None`` (``None`` stops retrying). The default
backoff is exponential with full jitter. ``Retry`` asks for another attempt explicitly,
``PermanentFailure`` fails at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .exceptions import PermanentFailure, Retry
from .task import Backoff, task_option

DEFAULT_MAX_ATTEMPTS = 1
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The options that decide a failed attempt's fate."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff | None = None

    @classmethod
    def for_task(cls, task: Any, defaults: dict[str, Any] | None = None) -> RetryPolicy:
        """A task's policy: its own options over the backend's defaults."""
        defaults = defaults or {}
        return cls(
            max_attempts=task_option(task, "max_attempts",
                                     defaults.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            backoff=task_option(task, "backoff", defaults.get("backoff")),
        )


def default_backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about 2 s, 4 s, 8 s... capped at an hour."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0), BACKOFF_CAP_SECONDS)
    return random.uniform(ceiling / 2, ceiling)


def _seconds(value: float | int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def next_attempt_at(policy: RetryPolicy, exc: BaseException, task_result: Any,
                    attempts: int, now: datetime) -> datetime | None:
    """When to run the next attempt after ``exc``, or ``None`` to fail for good.

    ``attempts`` is the number of attempts made so far, this one included.
    """
    if isinstance(exc, PermanentFailure):
        return None
    if attempts >= policy.max_attempts:
        return None
    if isinstance(exc, Retry) and exc.delay is not None:
        delay = _seconds(exc.delay)
    elif callable(policy.backoff):
        chosen = policy.backoff(exc, task_result)
        if chosen is None:
            return None
        delay = _seconds(chosen)
    elif policy.backoff is not None:
        delay = _seconds(policy.backoff)
    else:
        delay = default_backoff(attempts)
    return now + timedelta(seconds=max(delay, 0.0))
