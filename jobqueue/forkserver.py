"""The fork server: a quiet copy of the worker that forks the worker's job children.

Why: a process that forks pays twice for every page it writes afterwards while the child
lives (copy-on-write faults), and a worker writes hundreds of pages per job (its Redis
reply, the report, the next reservation). Forking from a process that does nothing else
keeps that cost at the floor's: the worker never forks, so its own loop faults nothing.
The server is forked once, right after the worker's start-up (task modules imported,
``SETUP`` hooks run, database connections closed), so its children start from the same
prewarmed state the worker would have given them.

Protocol, over a ``SOCK_SEQPACKET`` socket pair (message boundaries kept, descriptors
passed with ``SCM_RIGHTS``):

* worker → server ``S`` with two descriptors (the child's report-pipe write end and its
  job-pipe read end): fork a child running ``child_main(report_fd, inbox_fd)``;
* server → worker ``P<pid>``: the child of the oldest unanswered ``S``;
* server → worker ``X<pid><status>``: a child exited (its raw ``waitpid`` status).

The server exits when the worker's end closes (the worker stopped or died); its children
are not killed (a running job may still finish and report, as with a worker killed by
``kill -9``). It ignores every control signal: the worker decides what children get.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from .process import exited_children

logger = logging.getLogger("jobqueue.worker")

ChildMain = Callable[[int, int], None]
SPAWN = b"S"
PID = struct.Struct(">ci")
EXIT = struct.Struct(">cii")
IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGCONT, signal.SIGHUP, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU)
#: What ``status_of`` answers for a child whose fork server died before reporting its exit.
UNKNOWN_STATUS = -1


class ForkServerGone(Exception):
    """The fork server stopped answering (it died, or its socket closed)."""


class ForkServer:
    """The worker's handle on its fork server: start it, ask for children, learn exits."""

    def __init__(self, child_main: ChildMain, title: Callable[[], None] | None = None) -> None:
        self.child_main = child_main
        self.title = title
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self.statuses: dict[int, int] = {}
        self.pids: deque[int] = deque()  # answers to requests, oldest first, not yet taken
        self.gone = False

    @property
    def fd(self) -> int:
        """The worker's end of the socket (readable when the server reported something)."""
        assert self.sock is not None
        return self.sock.fileno()

    def start(self) -> int:
        """Fork the server; return its pid (in the worker; the server never returns)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Blocked across the fork, so the server never dies of a signal sent before it could
        # ignore it (the signals stay pending in the worker, which handles them as usual).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, IGNORED)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                mine.close()
                code = _serve(theirs, self.child_main, self.title, previous)
            except BaseException:
                logger.exception("Fork server crashed")
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        theirs.close()
        self.pid, self.sock, self.gone = pid, mine, False
        self.statuses.clear()
        self.pids.clear()
        return pid

    def request(self, report_fd: int, inbox_fd: int) -> None:
        """Ask for a child with these pipe ends; its pid comes later (``next_pid``)."""
        assert self.sock is not None
        try:
            socket.send_fds(self.sock, [SPAWN], [report_fd, inbox_fd])
        except OSError as exc:
            self.gone = True
            raise ForkServerGone(f"fork server is gone: {exc}") from None

    def next_pid(self, timeout: float = 30.0) -> int:
        """The pid of the child of the oldest unanswered request (waits for it)."""
        deadline = time.monotonic() + timeout
        while not self.pids:
            self._receive(max(deadline - time.monotonic(), 0.0))
            if not self.pids and time.monotonic() >= deadline:
                raise ForkServerGone(f"fork server {self.pid} did not answer in {timeout:g}s")
        return self.pids.popleft()

    def status_of(self, pid: int) -> int | None:
        """The exit status of child ``pid`` once the server reported it (never blocks).

        ``UNKNOWN_STATUS`` when the server is gone and the child no longer exists.
        """
        if pid not in self.statuses and not self.gone:
            with contextlib.suppress(ForkServerGone):
                while self._receive(0.0)[0] is not None:
                    pass
        if pid in self.statuses:
            return self.statuses.pop(pid)
        if self.gone and not _exists(pid):
            return UNKNOWN_STATUS
        return None

    def _receive(self, timeout: float) -> tuple[bytes | None, int]:
        """Read one message; exits are recorded. ``(None, 0)`` when nothing came in time."""
        assert self.sock is not None
        if self.gone:
            raise ForkServerGone("fork server is gone")
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None, 0
        try:
            data = self.sock.recv(64)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return None, 0
            data = b""
        if not data:
            self.gone = True
            raise ForkServerGone(f"fork server {self.pid} exited")
        if data[:1] == b"X":
            _, pid, status = EXIT.unpack(data)
            self.statuses[pid] = status
            return b"X", pid
        _, pid = PID.unpack(data)
        self.pids.append(pid)
        return b"P", pid

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket (the server exits on its own) and reap the server."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                timeout, deadline = 0.0, float("inf")
            time.sleep(0.005)
        self.pid = None
        self.gone = True


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- the server
def _serve(sock: socket.socket, child_main: ChildMain, title: Callable[[], None] | None,
           mask: set[signal.Signals]) -> int:
    """The server's loop: fork on request, report exits, leave when the worker does."""
    for signum in IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD reaches the pipe
    if title is not None:
        title()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake_r in ready:
            with contextlib.suppress(OSError):
                while os.read(wake_r, 4096):
                    pass
            _report_exits(sock)
        if sock.fileno() in ready and not _answer(sock, child_main, (wake_r, wake_w)):
            _report_exits(sock)
            return 0


def _answer(sock: socket.socket, child_main: ChildMain, own: tuple[int, int]) -> bool:
    """Handle one request; False when the worker has gone."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, 16, 2)
    except OSError:
        return False
    if not data:
        return False
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            for fd in own:
                os.close(fd)
            child_main(fds[0], fds[1])
            code = 0
        except BaseException:
            logger.exception("Job child crashed")
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        sock.send(PID.pack(b"P", pid))
    return True


def _report_exits(sock: socket.socket) -> None:
    for pid, status in exited_children():
        with contextlib.suppress(OSError):
            sock.send(EXIT.pack(b"X", pid, status))
