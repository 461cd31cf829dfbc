"""Warm the job path in a fork-mode worker before it makes any job child.

CPython rewrites a function's bytecode in place the first times it runs (the specialising
interpreter, 3.11+), and caches fill on first use: a logger's level cache, json's scanners,
Django's connection handler. A fork-mode worker never runs a job itself, so every child did
all of that again for its one job, and each page it wrote cost a copy-on-write fault (about
3.4 µs each on the development VM; measured in docs/performance.md). ``warm_job_path`` runs
the child's per-job code a few times in the worker, on a made-up job of a stand-in task,
before the fork server is forked: the children inherit the warm state.

On Python 3.12 and 3.13 a child then takes 11-14% fewer page faults for its job (the test
suite's case: 345 → 298 and 393 → 350). On 3.11 it measured none fewer (426 → 446: the
warm-up's own allocations cost as many pages as it saved), so ``ENABLED`` is false there and
the worker skips it.

What it runs: payload decoding, the job pipe's encoding (assignment out, report back), and
``JobRunner.execute`` itself, with Django's ``task_started``/``task_finished`` replaced by
signals nobody listens to and the per-job log line by a silent logger. What it never does:
talk to the broker, send a signal anyone receives, write a log record, call a task, or open
a database connection.

``warm_while_idle`` does the same once more in a child forked ahead of its job, so that the
job does not pay the child's copy-on-write faults on arrival: at once when the worker may
run on more than one CPU (the child is forked while the job before it runs, and warms on
another CPU meanwhile), else after 20 ms without a job (on one CPU, warming would take the
running job's CPU, and in a stream a child gets its job sooner than that).
"""

from __future__ import annotations

import logging
import select
import sys
from datetime import UTC, datetime
from typing import Any

from django.dispatch import Signal

from . import payload, registry
from .childlink import decode_assignment, encode_assignment
from .job import Job, Reservation
from .process import spare_cpu
from .report import Report
from .runner import JobRunner

#: Whether a fork-mode worker warms up (see above: not on 3.11).
ENABLED = sys.version_info >= (3, 12)
#: Runs of the path: enough for the interpreter to specialise what it runs (it does so after
#: a couple of calls) and for every first-use cache to fill.
ROUNDS = 8
#: How long a child forked ahead of its job waits before it warms its own pages when the
#: worker has one CPU (with more it warms at once). Measured on a 2-core VM, 1,000 no-op jobs
#: in fork mode, medians of 3 interleaved runs: pinned to one core, warming at once made 176
#: jobs/s against 187 with the wait; with both cores, 300 against 275.
IDLE_SECONDS = 0.02
#: The stand-in task's name: not a registered task (resolving it exercises a miss).
NAME = "jobqueue.warmup.nothing"


class _StandIn:
    """The attributes of a Task that ``JobRunner.execute`` reads; its call does nothing."""

    module_path = NAME
    name = "nothing"
    queue_name = "default"
    priority = 0
    backend = "default"
    takes_context = False

    def call(self, *args: Any, **kwargs: Any) -> None:
        return None


def _silent_logger() -> logging.Logger:
    quiet = logging.Logger("jobqueue.warmup", level=logging.CRITICAL + 1)
    quiet.propagate = False
    return quiet


def warm_job_path(runner: JobRunner, worker_id: str, rounds: int = ROUNDS) -> None:
    """Run a child's per-job code ``rounds`` times here, without side effects (see above)."""
    warm = JobRunner(_NoBroker(), runner.backend_class, worker_id)
    warm.manage_connections = runner.manage_connections
    warm.started_signal, warm.finished_signal = Signal(), Signal()
    warm.job_log = _silent_logger()
    task = _StandIn()
    now = datetime.now(UTC)
    raw = payload.encode_job(Job(task_name=NAME, args=[], id="warmup", enqueued_at=now))
    for _ in range(rounds):
        job = payload.decode_job(raw, "default")
        reservation = Reservation(job=job, queue="default", run_at=now, worker_id=worker_id,
                                  started_at=now, worker_ids=(worker_id,))
        reservation, _ = decode_assignment(encode_assignment(reservation, None))
        registry.resolve(reservation.job.task_name)
        report = warm.execute(task, reservation)  # type: ignore[arg-type]
        Report.from_bytes(report.to_bytes())
    for signal in (runner.started_signal, runner.finished_signal):
        signal.has_listeners(runner.backend_class)  # the receivers' lookup, not a call
    for name in ("jobqueue.worker", "django.tasks"):
        logging.getLogger(name).isEnabledFor(logging.INFO)  # the level caches


def warm_while_idle(runner: JobRunner, worker_id: str, fd: int,
                    after: float | None = None) -> bool:
    """In a child forked ahead of its job: if nothing arrives on ``fd`` within ``after``
    seconds (by default none with a spare CPU, else ``IDLE_SECONDS``), run the job path
    once (no side effects, as above) and return True.

    The worker has warmed the interpreter, but each child still pays a copy-on-write fault
    for every shared page its job writes, and an idle worker's next job paid them on arrival
    (1.7 ms of its 4.5 ms idle latency on the development VM). A child that waits anyway pays
    them now. With a spare CPU it does so while the job before its own runs elsewhere; on
    one CPU only when it has waited long enough to call the worker idle (in a stream of
    jobs a child gets its job within a millisecond or two, and never warms).
    """
    if after is None:
        after = 0.0 if spare_cpu() else IDLE_SECONDS
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    if poller.poll(after * 1000):
        return False
    warm_job_path(runner, worker_id, rounds=1)
    return True


class _NoBroker:
    """A broker that must never be used: ``execute`` does not touch one."""

    task_defaults: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"warm_job_path used the broker ({name})")


__all__ = ["ENABLED", "IDLE_SECONDS", "ROUNDS", "warm_job_path", "warm_while_idle"]
