"""Living through a Redis outage: back off, log once per outage, never give up on a job."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .exceptions import BrokerUnavailable

T = TypeVar("T")


class Outage:
    """Track one outage at a time: when it began, how long to wait next, whether it was logged."""

    def __init__(self, logger: logging.Logger, *, first_delay: float = 0.2,
                 max_delay: float = 10.0) -> None:
        self.logger = logger
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.since: float | None = None
        #: ``(ended, lasted)`` of the last outage, in monotonic seconds.
        self.last_outage: tuple[float, float] | None = None
        self._attempts = 0

    def failed(self, exc: Exception) -> None:
        """Note a failed call; the first of an outage is logged, the rest are not."""
        if self.since is None:
            self.since = time.monotonic()
            self.logger.error("Redis unavailable, retrying with backoff: %s", exc)
        self._attempts += 1

    def recovered(self, attempted_at: float | None = None) -> None:
        """Note a successful call; log the end of an outage.

        ``attempted_at`` (monotonic) is when the call that went through was made: a success
        from before the outage began (a job reserved before Redis went away) does not end it.
        """
        if attempted_at is not None and self.since is not None and attempted_at < self.since:
            return
        if self.since is not None:
            now = time.monotonic()
            self.logger.warning("Redis is back after %.1f s", now - self.since)
            self.last_outage = (now, now - self.since)
        self.since = None
        self._attempts = 0

    def delay(self) -> float:
        """Exponential backoff with jitter for the next attempt."""
        base = min(self.first_delay * (2 ** max(self._attempts - 1, 0)), self.max_delay)
        return base * random.uniform(0.5, 1.0)

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` until Redis answers; ``what`` names the step for the log.

        Only a call that failed here and then went through ends the outage: ``fn`` may
        succeed without reaching Redis at all (an acknowledgement held back for later).
        """
        failed_here = False
        while True:
            try:
                value = fn()
            except BrokerUnavailable as exc:
                failed_here = True
                self.failed(exc)
                self.logger.debug("Retrying %s", what)
                time.sleep(self.delay())
                continue
            if failed_here:
                self.recovered()
            return value
