"""Periodic jobs from ``JOBQUEUE["SCHEDULE"]``, fired by the workers themselves.

Every worker runs ``PeriodicScheduler.tick(now)`` about once a second; no extra process
exists. A tick is identified by its schedule name and fire time, and the broker claims and
enqueues it in one optimistic transaction, so it is enqueued exactly once however many
workers and hosts run.

Rules (also in docs/periodic.md):

* Cron expressions are read in ``settings.TIME_ZONE`` wall-clock time (croniter parses them).
  A time that does not exist (spring forward) runs once, shifted by the DST offset
  (02:30 → 03:30); a time that exists twice (fall back) runs once, at its first occurrence.
* ``every`` intervals are aligned to the Unix epoch, so all workers agree on the ticks.
* Missed ticks (everything was down) are coalesced: the most recent missed tick runs once
  when a worker comes back; older ones are skipped. A new schedule starts at its next tick.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from .exceptions import ConfigurationError

logger = logging.getLogger("jobqueue.periodic")
MAX_CATCH_UP_STEPS = 10_000
ENTRY_KEYS = {"task", "cron", "every", "args", "kwargs", "queue", "priority"}


@dataclass(frozen=True, slots=True)
class PeriodicEntry:
    """One validated schedule entry."""

    name: str
    task: str
    cron: str | None = None
    every: float | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None

    def describe(self) -> str:
        """``cron 0 3 * * *`` or ``every 300 s``."""
        return f"cron {self.cron}" if self.cron else f"every {self.every:g} s"


def _entry(name: str, raw: Any) -> PeriodicEntry:
    where = f"JOBQUEUE['SCHEDULE'][{name!r}]"
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must be a dict with 'task' and 'cron' or 'every'")
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise ConfigurationError(f"{where} has unknown keys: {', '.join(unknown)}")
    if not isinstance(raw.get("task"), str) or not raw["task"]:
        raise ConfigurationError(f"{where}['task'] must be the dotted path of a task")
    if ("cron" in raw) == ("every" in raw):
        raise ConfigurationError(f"{where} needs exactly one of 'cron' or 'every'")
    every = raw.get("every")
    if isinstance(every, timedelta):
        every = every.total_seconds()
    if every is not None and (isinstance(every, bool) or not isinstance(every, int | float)
                              or every < 1):
        raise ConfigurationError(f"{where}['every'] must be at least 1 second")
    cron = raw.get("cron")
    if cron is not None:
        from croniter import croniter

        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ConfigurationError(f"{where}['cron'] = {cron!r} is not a valid cron expression")
    args, kwargs = raw.get("args", []), raw.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise ConfigurationError(f"{where}: 'args' must be a list and 'kwargs' a dict")
    return PeriodicEntry(name=name, task=raw["task"], cron=cron,
                         every=float(every) if every is not None else None, args=list(args),
                         kwargs=dict(kwargs), queue=raw.get("queue"), priority=raw.get("priority"))


def parse_schedule(raw: Any) -> list[PeriodicEntry]:
    """Validate ``JOBQUEUE["SCHEDULE"]``; raise ``ConfigurationError`` naming the bad entry."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigurationError("JOBQUEUE['SCHEDULE'] must map names to entries")
    return [_entry(str(name), value) for name, value in raw.items()]


def local_zone() -> tzinfo:
    """``settings.TIME_ZONE`` as a zone (UTC when unset)."""
    from django.conf import settings

    return ZoneInfo(getattr(settings, "TIME_ZONE", None) or "UTC")


def next_fire(entry: PeriodicEntry, after: datetime, zone: tzinfo) -> datetime:
    """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
    if entry.every is not None:
        step = entry.every
        return datetime.fromtimestamp((math.floor(after.timestamp() / step) + 1) * step, UTC)
    from croniter import croniter

    local = after.astimezone(zone).replace(tzinfo=None)
    candidate: datetime = croniter(entry.cron, local).get_next(datetime)
    # fold=0: nonexistent times shift by the DST offset, ambiguous ones take the first.
    fired = candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if fired <= after:  # an ambiguous hour already passed: move on to the next tick
        return next_fire(entry, candidate.replace(tzinfo=zone, fold=1), zone)
    return fired


def latest_due(entry: PeriodicEntry, last: datetime, now: datetime,
               zone: tzinfo) -> datetime | None:
    """The most recent tick after ``last`` that is due by ``now`` (coalescing missed ones)."""
    tick = next_fire(entry, last, zone)
    if tick > now:
        return None
    for _ in range(MAX_CATCH_UP_STEPS):
        following = next_fire(entry, tick, zone)
        if following > now:
            break
        tick = following
    return tick


class PeriodicScheduler:
    """Decide which ticks are due and hand them to ``fire(entry, tick)``; clock injected."""

    def __init__(self, entries: list[PeriodicEntry], zone: tzinfo | None = None) -> None:
        self.entries = entries
        self.zone = zone or local_zone()
        self._next: dict[str, datetime] = {}

    def start(self, now: datetime, last_runs: Mapping[str, datetime]) -> None:
        """Plan each entry from its last recorded run (or from ``now`` if it never ran)."""
        for entry in self.entries:
            last = last_runs.get(entry.name)
            if last is None:
                self._next[entry.name] = next_fire(entry, now, self.zone)
            else:
                due = latest_due(entry, last, now, self.zone)
                self._next[entry.name] = due or next_fire(entry, last, self.zone)

    def due(self, now: datetime) -> list[tuple[PeriodicEntry, datetime]]:
        """Entries whose tick has come: ``(entry, tick)``, each tick at most once here."""
        fired = []
        for entry in self.entries:
            planned = self._next.get(entry.name)
            if planned is None or planned > now:
                continue
            tick = latest_due(entry, planned - timedelta(microseconds=1), now, self.zone) or planned
            fired.append((entry, tick))
            self._next[entry.name] = next_fire(entry, now, self.zone)
        return fired

    def seconds_until_next(self, now: datetime) -> float | None:
        """Seconds to the earliest planned tick, or ``None`` without entries."""
        if not self._next:
            return None
        return max(min(self._next.values()).timestamp() - now.timestamp(), 0.0)


class PeriodicRunner:
    """Connect a ``PeriodicScheduler`` to a broker: plan from Redis, fire due ticks."""

    def __init__(self, broker: Any, entries: list[PeriodicEntry]) -> None:
        self.broker = broker
        self.scheduler = PeriodicScheduler(entries)
        self.started = False

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire every due tick (exactly once cluster-wide); return the names this call fired."""
        now = now or datetime.now(UTC)
        if not self.started:
            from . import registry

            registry.autodiscover()
            self.scheduler.start(now, self.broker.periodic_last_runs())
            self.started = True
        fired = []
        for entry, tick in self.scheduler.due(now):
            job, record = build_periodic_job(entry)
            if job is not None and self.broker.fire_periodic(entry.name, tick, job, record):
                logger.info("Periodic %s (%s) enqueued for %s", entry.name, entry.task,
                            tick.isoformat())
                fired.append(entry.name)
        return fired


def build_periodic_job(entry: PeriodicEntry) -> tuple[Any, Any]:
    """The job and result record for one tick of ``entry`` (``(None, None)`` if unknown)."""
    from . import registry
    from .backends.redis import RedisBackend
    from .backends.results import check_arguments, restore_task

    task = registry.resolve(entry.task)
    if task is None:  # e.g. the monitor's "run now" in a web process that imported no tasks
        registry.autodiscover()
        task = registry.resolve(entry.task)
    if task is None:
        logger.error("Periodic %s names %r, which is not a registered task", entry.name,
                     entry.task)
        return None, None
    changes: dict[str, Any] = {}
    if entry.queue:
        changes["queue_name"] = entry.queue
    if entry.priority is not None:
        changes["priority"] = entry.priority
    if changes:
        task = restore_task(task, **changes)
    backend = task.get_backend()
    if not isinstance(backend, RedisBackend):
        logger.error("Periodic %s: task %r is not on a jobqueue backend", entry.name, entry.task)
        return None, None
    _, job, record = backend.build_job(task, *check_arguments(task, entry.args, entry.kwargs))
    return job, record
