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
        self._attempts = 0

    def failed(self, exc: Exception) -> None:
        """Note a failed call; the first of an outage is logged, the rest are not."""
        if self.since is None:
            self.since = time.monotonic()
            self.logger.error("Redis unavailable, retrying with backoff: %s", exc)
        self._attempts += 1

    def recovered(self) -> None:
        """Note a successful call; log the end of an outage."""
        if self.since is not None:
            self.logger.warning("Redis is back after %.1f s", time.monotonic() - self.since)
        self.since = None
        self._attempts = 0

    def delay(self) -> float:
        """Exponential backoff with jitter for the next attempt."""
        base = min(self.first_delay * (2 ** max(self._attempts - 1, 0)), self.max_delay)
        return base * random.uniform(0.5, 1.0)

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """Call ``fn`` until Redis answers; ``what`` names the step for the log."""
        while True:
            try:
                value = fn()
            except BrokerUnavailable as exc:
                self.failed(exc)
                self.logger.debug("Retrying %s", what)
                time.sleep(self.delay())
                continue
            self.recovered()
            return value
