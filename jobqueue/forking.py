"""Fork-per-job execution for ``Worker``: the child runs one job, the parent watches it.

The child runs the job, decides its fate (a ``Report``) and writes it to a pipe before it
exits; it never talks to Redis itself. The parent applies the report over its own connection
and moves on to the next job while the child is still exiting (it is reaped later). If no
complete report arrives, the child died: the parent settles the job (requeue after a
shutdown, ``JobTimeout`` after a timeout, ``DirtyExit`` otherwise).

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

from . import signals as hooks
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class ForkMixin:
    """The fork-mode half of ``Worker``."""

    def _fork_and_wait(self: Worker, task: Any, reservation: Reservation) -> None:
        from django.db import connections

        hooks.before_fork.send_robust(type(self), worker=self, job=reservation.job)
        connections.close_all()  # never share a DB socket with the child
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child must never return into the worker loop
            try:
                os.close(read_fd)
                self._child(task, reservation, write_fd)
            finally:
                os._exit(EXIT_CRASHED)
        os.close(write_fd)
        set_title(resque_title(f"Forked {pid} at {int(time.time())}"))
        watch = ChildWatch(pid, self.grace_period, timeout_at=self.runner.deadline)
        try:
            data = self._watch_child(watch, read_fd)
        finally:
            os.close(read_fd)
        report = _parse(data)
        if report is not None:
            watch.reported_at = time.monotonic()  # from now on it only has to exit
            self.outage.retry(lambda: apply_report(self.broker, self.id, reservation, report,
                                                   defer=True), "record job outcome")
            self._exiting.append(watch)
            self._reap_exiting()
            return
        status = watch.wait()
        self._after_child(watch, status, reservation, task)

    def _child(self: Worker, task: Any, reservation: Reservation, fd: int) -> None:
        code = EXIT_CRASHED
        try:
            self._child_signals()
            set_title(resque_title(f"Processing {reservation.queue} since "
                                   f"{int(time.time())} [{reservation.job.task_name}]"))
            hooks.after_fork.send_robust(type(self), worker=self, job=reservation.job)
            report = self.runner.execute(task, reservation)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the job is over: report it
            from django.db import connections

            connections.close_all()
            _write_all(fd, report.to_bytes())
            code = EXIT_REPORTED
        except BaseException:
            logger.exception("Child for job %s crashed", reservation.job.id)
        finally:
            try:
                os.close(fd)
            finally:
                logging.shutdown()
                os._exit(code)

    def _child_signals(self: Worker) -> None:
        if self.signals is not None:
            self.signals.restore()
            self.signals = None
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR2, signal.SIGCONT):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

        def raise_shutdown(signum: int, frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM is ignored
            raise WorkerShutdown(f"worker received {signal_name(signum)}")

        signal.signal(signal.SIGTERM, raise_shutdown)

    def _watch_child(self: Worker, watch: ChildWatch, read_fd: int) -> bytes:
        """Collect the child's report until EOF, acting on signals and deadlines meanwhile."""
        assert self.signals is not None
        poller = select.poll()
        poller.register(self.signals.fd, select.POLLIN)
        poller.register(read_fd, select.POLLIN | select.POLLHUP)
        chunks: list[bytes] = []
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
                    return b"".join(chunks)
                if chunk != b"?":
                    chunks.append(chunk)
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
