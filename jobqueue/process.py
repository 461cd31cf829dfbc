"""Process plumbing: the self-pipe for signals, process titles, forking children.

No Redis and no job logic here. Signal handlers only *record* a signal (and wake the main loop
through a pipe); the loop decides what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

try:  # optional at run time; a declared dependency
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover
    _setproctitle = None

RESQUE_VERSION = "3.0.0"  # what Ruby's ps-based pruner looks for: "resque-<digit>"


_title: list[str] = [""]  # the last title set here (a forked child inherits it and the title)


def set_title(text: str) -> None:
    """Set the process title (what ``ps`` shows); the same title again costs nothing (a
    ``--no-fork`` worker sets one per job, and a stream of one task within a second repeats
    it: ``setproctitle`` rewrites the whole argv area each time)."""
    if _setproctitle is not None and text != _title[0]:
        _setproctitle(text)
        _title[0] = text


def resque_title(text: str) -> str:
    """Resque's procline: ``resque-3.0.0: <text>``, so Ruby's pruner sees a live worker."""
    prefix = os.environ.get("RESQUE_PROCLINE_PREFIX", "")
    return f"{prefix}resque-{RESQUE_VERSION}: {text}"


class SignalQueue:
    """Record signals and wake a ``poll`` through a non-blocking self-pipe."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self._dirty = False  # something was written to the pipe since the last drain
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous: dict[int, object] = {}
        self._on_signal: Callable[[int], None] | None = None

    @property
    def fd(self) -> int:
        """The read end: readable whenever a signal arrived."""
        return self._read

    def install(self, signals: Iterable[int], on_signal: Callable[[int], None] | None = None
                ) -> None:
        """Trap ``signals``; ``on_signal`` (optional) runs inside the handler: keep it tiny."""
        self._on_signal = on_signal
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)
        self._dirty = True
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")
        if self._on_signal is not None:
            self._on_signal(signum)

    def wake(self) -> None:
        """Make the read end readable without a signal (e.g. SIGCHLD-free waits)."""
        self._dirty = True
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")

    def drain(self) -> list[int]:
        """Return and forget the signals received so far (the pipe is read only when something
        was written to it: a worker drains once per job)."""
        if not self._dirty:
            return []
        self._dirty = False  # before reading: a signal landing now is seen now or next time
        while True:
            try:
                if not os.read(self._read, 4096):
                    break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
        received = []
        while self.pending:
            received.append(self.pending.popleft())
        return received

    def restore(self) -> None:
        """Put the previous handlers back and close the pipe."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def spare_cpu() -> bool:
    """Whether this process may run on more than one CPU (its affinity mask, which
    ``taskset`` or a container's cpuset narrows), so that a second process of its tree can
    work while the first does. Read each time: the mask may change under a running worker."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        return (os.cpu_count() or 1) > 1


def reset_child_signals(ignore: Iterable[int], defaults: Iterable[int]) -> None:
    """In a forked child: ignore the parent's control signals, restore default actions."""
    for signum in ignore:
        signal.signal(signum, signal.SIG_IGN)
    for signum in defaults:
        signal.signal(signum, signal.SIG_DFL)


def exited_children() -> Iterator[tuple[int, int]]:
    """``(pid, waitpid status)`` of every child that has exited, reaped without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def describe_status(status: int) -> tuple[int | None, int | None]:
    """``(exit_code, signal_number)`` of a ``waitpid`` status; ``(None, None)`` if unknown
    (a negative status: the fork server that reaped the child is gone)."""
    if status < 0:
        return None, None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class ChildWatch:
    """The child running a job: reap it, and enforce the TERM → grace → KILL sequence."""

    def __init__(self, pid: int, grace_period: float, timeout_at: float | None = None,
                 status_of: Callable[[int], int | None] | None = None) -> None:
        self.pid = pid
        #: How to learn the exit status without blocking: ``waitpid`` for our own children,
        #: the fork server's reports for its children.
        self.status_of = status_of
        self.grace_period = grace_period
        self.deadline: float | None = None
        #: Monotonic time at which the job's own timeout sends TERM.
        self.timeout_at = timeout_at
        self.timed_out = False
        self.terminated = False
        self.started = time.monotonic()
        self.reported_at: float | None = None
        self.killed_reason: str | None = None
        self.status: int | None = None

    def reap(self) -> int | None:
        """The child's wait status once it has exited, else ``None`` (never blocks)."""
        if self.status is None and self.status_of is not None:
            self.status = self.status_of(self.pid)
        elif self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.status if self.status is not None else 0
            if pid == self.pid:
                self.status = status
        return self.status

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child exits (SIGKILL it after ``timeout``); its wait status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.reap()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                self.kill(reason="did not exit")
                deadline = None
            time.sleep(0.001)
        return status

    def lingered(self, grace_period: float) -> bool:
        """True when the child has outlived its report by more than the grace period."""
        return time.monotonic() - self.started > grace_period + 60.0 if self.reported_at is None \
            else time.monotonic() - self.reported_at > grace_period

    def terminate(self) -> None:
        """Send TERM once and start the grace period; a second call kills at once."""
        if self.terminated:
            self.kill(reason="second TERM")
            return
        self.terminated = True
        self.deadline = time.monotonic() + self.grace_period
        self._send(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        """SIGKILL the child now."""
        self.killed_reason = self.killed_reason or reason
        self._send(signal.SIGKILL)

    def enforce_deadline(self) -> None:
        """TERM the child at its job timeout; KILL it when its grace period is over."""
        if (self.timeout_at is not None and not self.terminated
                and time.monotonic() >= self.timeout_at):
            self.timed_out = True
            self.terminate()
            return
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline = None
            self.kill(reason="grace period over")

    def seconds_to_deadline(self) -> float:
        """Seconds until the next timeout or grace deadline (large when none is set)."""
        deadlines = [d for d in (self.deadline, None if self.terminated else self.timeout_at)
                     if d is not None]
        if not deadlines:
            return 3600.0
        return max(min(deadlines) - time.monotonic(), 0.0)

    def _send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)
