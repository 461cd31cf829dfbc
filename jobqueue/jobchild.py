"""What a forked job child does: take its job, run it, send the report up, exit.

A child gets its first job either in memory (the worker forked it after reserving, the
classic Resque way) or as a frame on its job pipe (it was forked in advance by the fork
server). It reports each job's fate up its report pipe and never talks to Redis for
jobqueue. With ``jobs_per_child`` N it then waits on the job pipe for the next one, up to N;
end of file on that pipe means "no more, exit".
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from . import registry, warmup
from . import signals as hooks
from .childlink import decode_assignment, read_frame, write_frame
from .exceptions import WorkerShutdown
from .job import Reservation
from .process import resque_title, set_title, signal_name

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("jobqueue.worker")
EXIT_REPORTED = 0
EXIT_CRASHED = 3


class ChildMixin:
    """The child half of ``Worker`` (fork mode)."""

    def _child_main(self: Worker, report_fd: int, inbox_fd: int) -> None:
        """Entry point of a child forked before its job is known (fork server)."""
        self._child(None, None, report_fd, inbox_fd)

    def _child(self: Worker, task: Any, reservation: Reservation | None, report_fd: int,
               inbox_fd: int | None) -> None:
        """Run jobs until the last one this child may take; never returns."""
        code = EXIT_CRASHED
        try:
            self._child_signals(armed=reservation is not None)
            if reservation is None:
                first = self._next_assignment(inbox_fd, warm=True)
                if first is None:  # let go before any job
                    code = EXIT_REPORTED
                    return
                task, reservation = first
            hooks.after_fork.send_robust(type(self), worker=self, job=reservation.job)
            done = 0
            while True:
                done += 1
                last = inbox_fd is None or done >= self.jobs_per_child
                self._child_job(task, reservation, report_fd, last=last)
                if last:
                    break
                following = self._next_assignment(inbox_fd)
                if following is None:  # the worker let us go
                    break
                task, reservation = following
            code = EXIT_REPORTED
        except BaseException:
            logger.exception("Child for job %s crashed",
                             reservation.job.id if reservation else "(none yet)")
        finally:
            try:
                os.close(report_fd)
            finally:
                logging.shutdown()
                os._exit(code)

    def _next_assignment(self: Worker, inbox_fd: int | None, *,
                         warm: bool = False) -> tuple[Any, Reservation] | None:
        """Wait for the next job on the job pipe; ``None`` when the worker let us go.

        ``warm``: a child forked ahead of its first job that waits longer than
        ``warmup.IDLE_SECONDS`` touches its job path's pages meanwhile (``warmup``)."""
        if inbox_fd is None:
            return None
        set_title(resque_title(f"Child of {os.getppid()}: waiting for a job"))
        if warm and warmup.ENABLED:
            warmup.warm_while_idle(self.runner, self.id, inbox_fd)
        message = read_frame(inbox_fd)
        if message is None:
            return None
        signal.signal(signal.SIGTERM, _raise_shutdown)  # this job may be stopped from now on
        reservation, self.runner.deadline = decode_assignment(message)
        task = registry.resolve(reservation.job.task_name)
        if task is None:  # the worker resolved it: a mismatch is a bug, not bad input
            raise LookupError(f"{reservation.job.task_name} is not registered here")
        return task, reservation

    def _child_job(self: Worker, task: Any, reservation: Reservation, report_fd: int, *,
                   last: bool) -> None:
        """Run one job in the child and send its report up."""
        set_title(resque_title(f"Processing {reservation.queue} since "
                               f"{int(time.time())} [{reservation.job.task_name}]"))
        signal.signal(signal.SIGTERM, _raise_shutdown)
        report = self.runner.execute(task, reservation)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the job is over: report it
        if last:
            from django.db import connections

            connections.close_all()
        write_frame(report_fd, report.to_bytes())

    def _child_signals(self: Worker, *, armed: bool) -> None:
        if armed and self.signals is not None:  # forked by the worker: drop its traps
            self.signals.restore()
            for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR2, signal.SIGCONT):
                signal.signal(signum, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # A fork server's child inherits the server's dispositions: everything ignored but
        # SIGCHLD (default). Its copy of the worker's signal pipe is simply never used.
        self.signals = None
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        # ``armed``: the child holds its job already. A child forked in advance ignores TERM
        # until its job comes (the worker only TERMs a child running a job; a waiting child
        # leaves when its job pipe closes), and between jobs (``_child_job``).
        signal.signal(signal.SIGTERM, _raise_shutdown if armed else signal.SIG_IGN)


def _raise_shutdown(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM is ignored
    raise WorkerShutdown(f"worker received {signal_name(signum)}")
