"""Fork-per-job execution for ``Worker``: the child runs the job, the parent watches it.

The child runs the job, decides its fate (a ``Report``) and writes it up a pipe; it never
talks to Redis itself. The parent applies the report over its own connection and moves on to
the next job while the child is still exiting (it is reaped later). If no complete report
arrives, the child died: the parent settles the job (requeue after a shutdown,
``JobTimeout`` after a timeout, ``DirtyExit`` otherwise).

With ``jobs_per_child`` N > 1 (Celery's max-tasks-per-child) a child that reported stays
and waits on a second pipe: the parent reserves the next job as always and hands it down;
after N jobs the child exits and the next job gets a fresh fork. Isolation is per child
instead of per job, and the fork's cost is paid once per N jobs. Every job is still
reserved, watched (timeout, signals) and recorded by the parent, one at a time.

While a child runs, the parent keeps heart-beating and handling signals: TERM/INT send TERM
to the child and start the grace period, USR1 kills it, QUIT waits for it.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import time
from typing import TYPE_CHECKING, Any

from . import registry
from . import signals as hooks
from .childlink import (
    ChildLink,
    FrameReader,
    decode_assignment,
    encode_assignment,
    read_frame,
    write_frame,
)
from .exceptions import DirtyExit, JobTimeout, WorkerShutdown
from .job import Reservation
from .process import ChildWatch, describe_status, resque_title, set_title, signal_name
from .report import Report, apply_report
from .runner import error_from, settle_failure

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("jobqueue.worker")
EXIT_REPORTED = 0
EXIT_CRASHED = 3
READ_CHUNK = 65536


class ForkMixin:
    """The fork-mode half of ``Worker``."""

    def _fork_and_wait(self: Worker, task: Any, reservation: Reservation) -> None:
        link = self._hand_to_resident(reservation) or self._fork_child(task, reservation)
        set_title(resque_title(f"Forked {link.pid} at {int(time.time())}"))
        watch = ChildWatch(link.pid, self.grace_period, timeout_at=self.runner.deadline)
        report = _parse(self._watch_child(watch, link.reports))
        if report is None:  # the child died with the job: settle it here
            link.close()
            status = watch.wait()
            self._after_child(watch, status, reservation, task)
            return
        link.jobs += 1
        self.outage.retry(lambda: apply_report(self.broker, self.id, reservation, report,
                                               defer=True), "record job outcome")
        if link.inbox is not None and link.jobs < self.jobs_per_child \
                and report.action != "requeue":
            self._resident = link  # it waits for the next job
        else:  # it exits now: reap it later
            link.close()
            watch.reported_at = time.monotonic()  # from now on it only has to exit
            self._exiting.append(watch)
        self._reap_exiting()

    def _fork_child(self: Worker, task: Any, reservation: Reservation) -> ChildLink:
        from django.db import connections

        hooks.before_fork.send_robust(type(self), worker=self, job=reservation.job)
        connections.close_all()  # never share a DB socket with the child
        report_r, report_w = os.pipe()
        inbox_r, inbox_w = os.pipe() if self.jobs_per_child > 1 else (None, None)
        pid = os.fork()
        if pid == 0:  # the child must never return into the worker loop
            try:
                os.close(report_r)
                if inbox_w is not None:
                    os.close(inbox_w)
                self._child(task, reservation, report_w, inbox_r)
            finally:
                os._exit(EXIT_CRASHED)
        os.close(report_w)
        if inbox_r is not None:
            os.close(inbox_r)
        return ChildLink(pid=pid, reports=report_r, inbox=inbox_w)

    def _hand_to_resident(self: Worker, reservation: Reservation) -> ChildLink | None:
        """Give the job to the child waiting for one, if it is still there."""
        link, self._resident = self._resident, None
        if link is None or link.inbox is None:
            return None
        if ChildWatch(link.pid, self.grace_period).reap() is None:
            try:
                write_frame(link.inbox, encode_assignment(reservation, self.runner.deadline))
                return link
            except OSError as exc:  # it died while waiting (EPIPE): fork a fresh one
                logger.warning("Child %d is gone (%s); forking a new one", link.pid, exc)
        link.close()
        ChildWatch(link.pid, self.grace_period).reap()
        return None

    def _retire_resident(self: Worker) -> None:
        """Let the waiting child go (end of file on its pipe) and reap it."""
        if self._resident is not None:
            link, self._resident = self._resident, None
            link.close()
            watch = ChildWatch(link.pid, self.grace_period)
            watch.reported_at = time.monotonic()
            self._exiting.append(watch)

    def _child(self: Worker, task: Any, reservation: Reservation, report_fd: int,
               inbox_fd: int | None) -> None:
        code = EXIT_CRASHED
        try:
            self._child_signals()
            hooks.after_fork.send_robust(type(self), worker=self, job=reservation.job)
            done = 0
            while True:
                self._child_job(task, reservation, report_fd, last=inbox_fd is None
                                or done + 1 >= self.jobs_per_child)
                done += 1
                if inbox_fd is None or done >= self.jobs_per_child:
                    break
                set_title(resque_title(f"Child of {os.getppid()}: waiting for a job"))
                message = read_frame(inbox_fd)
                if message is None:  # the worker let us go
                    break
                reservation, self.runner.deadline = decode_assignment(message)
                task = registry.resolve(reservation.job.task_name)
                if task is None:  # the parent resolved it: a mismatch is a bug, not input
                    raise LookupError(f"{reservation.job.task_name} is not registered here")
            code = EXIT_REPORTED
        except BaseException:
            logger.exception("Child for job %s crashed", reservation.job.id)
        finally:
            try:
                os.close(report_fd)
            finally:
                logging.shutdown()
                os._exit(code)

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

    def _child_signals(self: Worker) -> None:
        if self.signals is not None:
            self.signals.restore()
            self.signals = None
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR2, signal.SIGCONT):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, _raise_shutdown)  # ignored between jobs (_child_job)

    def _watch_child(self: Worker, watch: ChildWatch, read_fd: int) -> bytes:
        """Collect the child's report frame, acting on signals and deadlines meanwhile.

        Returns the frame's body, or whatever came before end of file without one (nothing,
        or garbage): no report.
        """
        assert self.signals is not None
        poller = select.poll()
        poller.register(self.signals.fd, select.POLLIN)
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        reader = FrameReader()
        while True:
            timeout = min(watch.seconds_to_deadline(), self._seconds_to_heartbeat(), 1.0)
            ready = {fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)}
            if read_fd in ready:
                try:
                    chunk = os.read(read_fd, READ_CHUNK)
                except OSError as exc:
                    if exc.errno != errno.EINTR:
                        raise
                    chunk = b"?"
                if not chunk:
                    return reader.leftover()
                if chunk != b"?":
                    reader.feed(chunk)
                    body = reader.complete()
                    if body is not None:
                        return body
            for signum in self.signals.drain():
                self._child_signal(watch, signum)
            watch.enforce_deadline()
            self._maybe_heartbeat()

    def _child_signal(self: Worker, watch: ChildWatch, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.shutdown = True
            watch.terminate()
        elif signum == signal.SIGQUIT:
            self.shutdown = True
        elif signum == signal.SIGUSR1:
            watch.kill(reason="USR1")
        else:
            self._pause_signal(signum)

    def _after_child(self: Worker, watch: ChildWatch, status: int, reservation: Reservation,
                     task: Any) -> None:
        """Settle a job whose child died without a report."""
        code, signum = describe_status(status)
        job = reservation.job
        if watch.timed_out:
            exc: Exception = JobTimeout(
                f"{job.task_name} ran past its timeout; child killed after "
                f"{self.grace_period:g}s grace")
        elif watch.terminated and watch.killed_reason != "USR1":
            report = Report(action="requeue", error=error_from(WorkerShutdown(
                f"worker shut down; child killed after {self.grace_period:g}s grace")))
            self.outage.retry(lambda: apply_report(self.broker, self.id, reservation, report),
                              "requeue interrupted job")
            return
        else:
            exc = DirtyExit(_dirty_message(code, signum, watch.killed_reason))
        disposition = self.outage.retry(lambda: settle_failure(
            self.broker, self.id, task, reservation, exc, only_if_in_flight=True),
            "record dirty exit")
        logger.error("Job %s (%s): %s (%s)", job.id, job.task_name, exc, disposition)

    def _reap_exiting(self: Worker, *, block: bool = False) -> None:
        """Reap children that reported and are exiting; kill any that linger past grace."""
        still = []
        for watch in self._exiting:
            if watch.reap() is not None:
                continue
            if block:
                watch.wait(timeout=self.grace_period)
                continue
            if watch.lingered(self.grace_period):
                logger.warning("Child %d reported but did not exit; killing it", watch.pid)
                watch.kill(reason="lingering after its report")
            still.append(watch)
        self._exiting = still


def _raise_shutdown(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM is ignored
    raise WorkerShutdown(f"worker received {signal_name(signum)}")


def _parse(data: bytes) -> Report | None:
    if not data:
        return None
    try:
        return Report.from_bytes(data)
    except (ValueError, KeyError, TypeError, IndexError):
        logger.error("Garbled report from child (%d bytes); treating as a dirty exit", len(data))
        return None


def _dirty_message(code: int | None, signum: int | None, killed_reason: str | None) -> str:
    if signum is not None:
        message = f"Child process received unhandled signal {signal_name(signum)}"
    else:
        message = f"Child process exited with status {code} without reporting"
    if killed_reason:
        message += f" (killed by worker on {killed_reason})"
    return message
