"""Fork-per-job execution for ``Worker``, the parent's side: hand a job to a child, watch it.

The child (``jobchild``) runs the job, decides its fate (a ``Report``) and writes it up a
pipe; it never talks to Redis for jobqueue. The worker applies the report over its own
connection and moves on while the child exits (it is reaped later). If no complete report
arrives, the child died: the worker settles the job (requeue after a shutdown,
``JobTimeout`` after a timeout, ``DirtyExit`` otherwise).

Where children come from:

* **The fork server** (default, ``JOBQUEUE["FORK_SERVER"]``): a copy of the worker made at
  start-up forks them (``forkserver``), so the worker itself never forks and never pays
  copy-on-write faults for its own loop; and it forks the next child in advance (while the
  current job runs when the worker has a spare CPU, else just after it), so a new job goes
  to a child that is already there.
* **The worker itself** (``FORK_SERVER = False``): Resque's way, a fork after each
  reservation, with ``before_fork`` sent just before it in the worker.
* **Both, by turns** (``FORK_SERVER_IDLE_TIMEOUT``): after that long without a job the
  worker stops the server and its waiting child (an idle worker is one process), forks the
  next job's child itself, and starts a new server after that job.

With ``jobs_per_child`` N > 1 (Celery's max-tasks-per-child) a child that reported stays and
waits for the next job on its job pipe; after N jobs it exits. Every job is still reserved,
watched (timeout, signals) and recorded by the worker, one at a time.

While a child runs, the worker keeps heart-beating and handling signals: TERM/INT send TERM
to the child and start the grace period, USR1 kills it, QUIT waits for it.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import hugepages
from . import signals as hooks
from .childlink import ChildLink, FrameReader, encode_assignment, write_frame
from .exceptions import DirtyExit, JobTimeout, WorkerShutdown
from .forkserver import ForkServer, ForkServerGone
from .job import Reservation
from .jobchild import EXIT_CRASHED
from .process import (
    ChildWatch,
    describe_status,
    resque_title,
    set_title,
    signal_name,
    spare_cpu,
)
from .report import Report, apply_report
from .runner import error_from, settle_failure

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("jobqueue.worker")
READ_CHUNK = 65536
#: Seconds a parking worker waits for its waiting child and its fork server to exit.
PARK_WAIT = 2.0


class ForkMixin:
    """The fork-mode parent half of ``Worker``."""

    # ------------------------------------------------------------------ one job
    def _fork_and_wait(self: Worker, task: Any, reservation: Reservation) -> None:
        link = self._child_for(task, reservation)
        if link.jobs + 1 >= self.jobs_per_child and not self.shutdown and spare_cpu():
            # It exits after this job: the server forks the next child on another CPU while
            # this job runs (on one CPU that would only delay the job: after its report).
            self._waiting_child = self._request_child()
        set_title(resque_title(f"Forked {link.pid} at {int(time.time())}"))
        watch = self._watch(link.pid, timeout_at=self.runner.deadline)
        report = _parse(self._watch_child(watch, link.reports))
        if report is None:  # the child died with the job: settle it here
            link.close()
            status = watch.wait()
            self._served.pop(link.pid, None)
            self._after_child(watch, status, reservation, task)
        else:
            link.jobs += 1
            self.outage.retry(lambda: apply_report(self.broker, self.id, reservation, report,
                                                   defer=True), "record job outcome")
            if link.jobs < self.jobs_per_child and report.action != "requeue":
                self._waiting_child = link  # it waits for the next job
            else:  # it exits now: reap it later
                self._let_go(link)
        self._reap_exiting()
        if self._parked and not self.shutdown:
            self._unpark()
        if self._waiting_child is None and not self.shutdown:
            self._waiting_child = self._request_child()  # forked while we record and reserve

    def _watch(self: Worker, pid: int, timeout_at: float | None = None) -> ChildWatch:
        server = self._served.get(pid)  # the server that forked it reports its exit
        status_of: Callable[[int], int | None] | None = server.status_of if server else None
        return ChildWatch(pid, self.grace_period, timeout_at=timeout_at, status_of=status_of)

    def _child_for(self: Worker, task: Any, reservation: Reservation) -> ChildLink:
        """A child now holding ``reservation``: the one waiting, else a new one."""
        link, self._waiting_child = self._waiting_child, None
        if link is not None and self._hand(link, reservation):
            return link
        link = self._request_child()
        if link is not None and self._hand(link, reservation):
            return link
        return self._fork_child(task, reservation)

    def _hand(self: Worker, link: ChildLink, reservation: Reservation) -> bool:
        """Give the job to a waiting child; False (and the child let go) if it is gone."""
        try:
            if link.pid == 0:
                link.pid = self._server.next_pid()  # type: ignore[union-attr]
                self._served[link.pid] = self._server  # type: ignore[assignment]
            if link.jobs == 0:  # its first job: Resque's before_fork moment, in the worker
                hooks.before_fork.send_robust(type(self), worker=self, job=reservation.job)
            if self._watch(link.pid).reap() is None:
                write_frame(link.inbox, encode_assignment(reservation, self.runner.deadline))
                return True
        except ForkServerGone as exc:
            logger.warning("%s; starting a new one", exc)
            self._restart_server()
        except OSError as exc:  # it died while waiting (EPIPE)
            logger.warning("Child %d is gone (%s); using another", link.pid, exc)
        self._let_go(link)
        return False

    # ------------------------------------------------------------------ making children
    def _fork_child(self: Worker, task: Any, reservation: Reservation) -> ChildLink:
        """Fork the child ourselves, after the reservation (Resque's way)."""
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

    def _request_child(self: Worker) -> ChildLink | None:
        """Ask the fork server for a child that waits for its first job (pid comes later)."""
        if self._server is None:
            return None
        report_r, report_w = os.pipe()
        inbox_r, inbox_w = os.pipe()
        try:
            self._server.request(report_w, inbox_r)
        except ForkServerGone as exc:
            logger.warning("%s; starting a new one", exc)
            for fd in (report_r, inbox_w):
                os.close(fd)
            self._restart_server()
            return None
        finally:
            os.close(report_w)
            os.close(inbox_r)
        return ChildLink(pid=0, reports=report_r, inbox=inbox_w)

    def _start_server(self: Worker) -> None:
        """Fork the fork server (start-up, with database connections closed)."""
        from django.db import connections

        connections.close_all()
        self._server = ForkServer(self._child_main, title=self._server_title)
        self._server.start()

    def _server_title(self: Worker) -> None:
        set_title(resque_title(f"Fork server of {os.getppid()}"))

    def _check_server(self: Worker) -> None:
        """After a SIGCHLD: if the fork server died, start a new one (and a waiting child)."""
        server = self._server
        if server is None or server.pid is None:
            return
        try:
            done, status = os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            done, status = server.pid, 0
        if not done:
            return
        server.pid, server.gone = None, True
        code, signum = describe_status(status)
        logger.warning("Fork server %d ended (%s); starting a new one", done,
                       f"signal {signal_name(signum)}" if signum else f"exit {code}")
        self._restart_server()
        if self._waiting_child is not None and self._waiting_child.pid == 0:
            link, self._waiting_child = self._waiting_child, None
            link.close()  # asked of the dead server: it may never come
        if self._waiting_child is None and self._server is not None and not self.shutdown:
            self._waiting_child = self._request_child()

    def _restart_server(self: Worker) -> None:
        if self._server is not None:
            self._server.stop(timeout=1.0)
        self._server_restarts += 1
        if self._server_restarts > 5:
            logger.error("The fork server keeps dying; forking children from the worker")
            self._server = None
            return
        self._start_server()

    # ------------------------------------------------------------------ idle: one process
    def _maybe_park(self: Worker) -> float:
        """Stop the fork server once idle for ``fork_server_idle_timeout``; return the seconds
        until that is due (``math.inf`` when it is not: no server, or no timeout)."""
        if self._server is None or self.shutdown:
            return math.inf
        due = self._busy_at + self.fork_server_idle_timeout - time.monotonic()
        if due > 0:
            return due
        self._park()
        return math.inf

    def _park(self: Worker) -> None:
        """Let the waiting child and the fork server go: an idle worker is one process.

        The next job is forked by the worker itself (Resque's way, the cost of
        ``FORK_SERVER = False`` once), and a new server is started after it. The heap goes
        back into huge pages first: the server shared those pages, so the worker's own writes
        had split them, and the next fork copies from here.
        """
        if self._waiting_child is not None:
            link, self._waiting_child = self._waiting_child, None
            self._let_go(link)
        deadline = time.monotonic() + PARK_WAIT
        while self._exiting and time.monotonic() < deadline:  # the server reports their exits
            self._reap_exiting()
            time.sleep(0.002)
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=PARK_WAIT)
        self._parked = True
        if self.huge_pages:
            hugepages.collapse_heap()
        logger.info("Worker %s idle for %.1f s: fork server stopped, the next job is forked "
                    "by the worker", self.id, time.monotonic() - self._busy_at)

    def _unpark(self: Worker) -> None:
        """After the first job since parking: a new fork server for the jobs that follow."""
        self._parked = False
        self._start_server()

    def _let_go(self: Worker, link: ChildLink) -> None:
        """Close our ends of a child's pipes; it exits (if it lives), reaped later."""
        link.close()
        if link.pid == 0 and self._server is not None:
            try:  # its pid is the server's next answer: learn it, to reap it
                link.pid = self._server.next_pid(timeout=5.0)
                self._served[link.pid] = self._server
            except ForkServerGone:
                return
        if link.pid:
            watch = self._watch(link.pid)
            watch.reported_at = time.monotonic()  # from now on it only has to exit
            self._exiting.append(watch)

    def _stop_children(self: Worker) -> None:
        """At exit: let the waiting child go, reap every child, stop the fork server."""
        if self._waiting_child is not None:
            link, self._waiting_child = self._waiting_child, None
            self._let_go(link)
        self._reap_exiting(block=True)
        if self._server is not None:
            self._server.stop(timeout=self.grace_period + 1.0)
            self._server = None

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
        elif signum == signal.SIGCHLD:
            self._check_server()
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
                self._served.pop(watch.pid, None)
                continue
            if block:
                watch.wait(timeout=self.grace_period)
                self._served.pop(watch.pid, None)
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
    elif code is None:
        message = ("Child process ended without reporting (its exit status is unknown: the "
                   "fork server that reaped it is gone)")
    else:
        message = f"Child process exited with status {code} without reporting"
    if killed_reason:
        message += f" (killed by worker on {killed_reason})"
    return message
