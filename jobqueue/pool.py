"""The pool master (resque-pool for Django): load once, fork workers, keep their counts.

Two halves. ``jobqueue.pool_state.PoolState`` decides (pure: events in, actions out). ``Pool``
here is the plumbing: signal traps that only record (a self-pipe), ``waitpid``, ``fork``,
``exec``, the process title and the pidfile. Each worker is a fork of the master running a
``Worker`` (which itself forks per job unless configured not to).

Master signals (handlers only record; the loop acts):

======  ==================================================================================
HUP     reload new code and configuration: check it in a subprocess, then re-exec in place
        (same pid); the new image starts new workers, then sends QUIT to the old ones, which
        finish their current job and exit
QUIT    send QUIT to every worker, wait until all have finished their jobs, exit
INT     send TERM to every worker (each gives its running job the grace period, then kills
TERM    it; the job goes back on its queue), wait, SIGKILL what is left after grace + 5 s
WINCH   send QUIT to every worker but keep the master; HUP starts workers again
TTIN    one more worker for every queue list
TTOU    one worker fewer for every queue list (the newest gets QUIT)
USR1    passed on to every worker (kill the running job's child)
USR2    passed on to every worker (pause); workers started while paused start paused
CONT    passed on to every worker (resume)
======  ==================================================================================
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable

from . import hugepages, immortal
from . import signals as hooks
from .pool_config import PoolConfig, WorkerSpec, describe
from .pool_state import Action, Exit, ExitNote, PoolState, Reload, Send, Spawn
from .process import SignalQueue, describe_status, exited_children, set_title, signal_name

logger = logging.getLogger("jobqueue.pool")

MASTER_SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGWINCH,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)
#: Environment variable carrying the old workers (and pidfile) across a HUP re-exec.
INHERIT_ENV = "JOBQUEUE_POOL_INHERIT"
#: How long the HUP check subprocess may take before the reload is abandoned.
RELOAD_CHECK_TIMEOUT_SECONDS = 300.0


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # pragma: no cover
        return None


_PRCTL = _prctl()  # looked up before any fork
PR_SET_PDEATHSIG = 1
_abandoned: list[object] = []  # inherited DB connections a child must never close


def reexec_argv() -> list[str]:
    """The command line that started this process (``python -m django pool ...`` too)."""
    return [sys.executable, *sys.orig_argv[1:]]


class Pool:
    """Run the master loop for a ``PoolConfig``."""

    def __init__(self, config: PoolConfig, *, app_name: str = "", grace_period: float = 10.0,
                 inherited: str | None = None, pidfile_fd: int | None = None,
                 setup: Callable[[], object] | None = None,
                 immortal_heap: bool = False, huge_pages: bool = False) -> None:
        self.config = config
        self.app_name = app_name or os.path.basename(os.getcwd())
        self.state = PoolState(config, grace_period)
        self.master_pid = os.getpid()
        self.pidfile_fd = pidfile_fd
        self.setup = setup
        #: Make the heap immortal after ``setup``, before the first worker is forked: the
        #: workers then keep sharing its pages (``immortal``), and each walks only its own.
        self.immortal_heap = immortal_heap
        #: Then back that heap with huge pages (``hugepages``): cheaper forks, shared likewise.
        self.huge_pages = huge_pages
        self.signals: SignalQueue | None = None
        self.check_pid: int | None = None
        self.check_deadline = 0.0
        self._title = ""
        self._inherited = json.loads(inherited) if inherited else None

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Run until QUIT/INT/TERM have stopped every worker; return the exit code."""
        self.signals = SignalQueue()
        self.signals.install((*MASTER_SIGNALS, signal.SIGCHLD))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (*MASTER_SIGNALS, signal.SIGCHLD))
        self._adopt()
        self._retitle()
        if self.setup is not None:
            self.setup()
        if self.immortal_heap:
            immortal.immortalize()
        if self.huge_pages:
            hugepages.collapse_heap()
        hooks.pool_started.send(type(self), pool=self)
        logger.info("Pool master %d started: %s (from %s)", self.master_pid,
                    describe(self.config), self.config.source)
        try:
            return self._loop()
        finally:
            if self.check_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.check_pid, signal.SIGKILL)
            self.signals.restore()
            self.signals = None

    def _loop(self) -> int:
        assert self.signals is not None
        while True:
            self._reap()
            now = time.monotonic()
            actions: list[Action] = []
            for signum in self.signals.drain():
                if signum != signal.SIGCHLD:
                    logger.info("Pool master got %s", signal_name(signum))
                actions += self.state.signal(signum, now)
            actions += self.state.tick(now)
            for action in actions:
                if isinstance(action, Exit):
                    logger.info("Pool master %d exiting", self.master_pid)
                    return action.code
                self._act(action)
            self._check_reload_timeout()
            self._retitle()
            wait = self.state.seconds_to_next_event(time.monotonic())
            self._wait(5.0 if wait is None else min(wait, 5.0))

    def _act(self, action: Action) -> None:
        if isinstance(action, Spawn):
            spec = self.state.specs[action.key]
            pid = self._fork_worker(spec)
            self.state.spawned(pid, spec.key, time.monotonic())
            logger.info("Spawned worker %d for %s", pid, spec.key)
        elif isinstance(action, Send):
            with contextlib.suppress(ProcessLookupError):
                os.kill(action.pid, action.signum)
        elif isinstance(action, Reload):
            self._start_reload_check()

    def _wait(self, seconds: float) -> None:
        import select

        assert self.signals is not None
        poller = select.poll()
        poller.register(self.signals.fd, select.POLLIN)
        poller.poll(max(seconds, 0.0) * 1000)

    def _reap(self) -> None:
        for pid, status in exited_children():
            if pid == self.check_pid:
                self._reload_checked(status)
                continue
            clean = describe_status(status) == (0, None)
            note = self.state.exited(pid, time.monotonic(), clean=clean)
            if note is None:  # e.g. an orphaned job child, when we run as PID 1
                continue
            self._log_exit(note, status)
            hooks.worker_exit.send_robust(type(self), pool=self, pid=pid, status=status)

    @staticmethod
    def _log_exit(note: ExitNote, status: int) -> None:
        code, signum = describe_status(status)
        how = f"was killed by {signal_name(signum)}" if signum else f"exited with status {code}"
        member = note.member
        if note.expected or (code == 0 and not note.restart_in):  # asked to, or max_jobs
            logger.info("Worker %d (%s) %s", member.pid, member.key, how)
        elif note.restart_in:
            logger.error("Worker %d (%s) %s after %.1f s; crash %d in a row, restarting in "
                         "%.0f s", member.pid, member.key, how, note.uptime, note.crashes,
                         note.restart_in)
        else:
            logger.warning("Worker %d (%s) %s after %.1f s; replacing it", member.pid,
                           member.key, how, note.uptime)

    def _retitle(self) -> None:
        pids = ", ".join(str(pid) for pid in sorted(self.state.members))
        title = f"jobqueue-pool-master[{self.app_name}]: managing [{pids}]"
        if title != self._title:
            self._title = title
            set_title(title)

    # ------------------------------------------------------------------ HUP: check, then exec
    def _adopt(self) -> None:
        data, self._inherited = self._inherited, None
        if not data:
            return
        self.state.paused = bool(data.get("paused"))
        now = time.monotonic()
        for raw_pid, key in data.get("workers", {}).items():
            pid = int(raw_pid)
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (any more)
                continue
            if done == 0:
                self.state.adopt(pid, key, now)
        logger.info("Reloaded: %d old worker(s) finish their jobs while new ones start",
                    len(self.state.members))

    def _start_reload_check(self) -> None:
        argv = [*reexec_argv(), "--check-reload"]
        env = {k: v for k, v in os.environ.items() if k != INHERIT_ENV}
        try:
            self.check_pid = os.posix_spawn(sys.executable, argv, env)
        except OSError as exc:
            logger.error("HUP: cannot start the reload check: %s", exc)
            self.state.reload_failed()
            return
        self.check_deadline = time.monotonic() + RELOAD_CHECK_TIMEOUT_SECONDS
        logger.info("HUP: checking the new code and configuration (pid %d)", self.check_pid)

    def _check_reload_timeout(self) -> None:
        if self.check_pid is not None and time.monotonic() > self.check_deadline:
            logger.error("HUP: the reload check did not finish; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.check_pid, signal.SIGKILL)
            self.check_deadline = float("inf")

    def _reload_checked(self, status: int) -> None:
        self.check_pid = None
        code, signum = describe_status(status)
        if code == 0 and self.state.mode == "run":
            self._reexec()  # returns only if exec failed
        elif code != 0:
            logger.error("HUP: the new code or configuration does not load (%s); still "
                         "running the old one",
                         f"status {code}" if signum is None else signal_name(signum))
        self.state.reload_failed()

    def _reexec(self) -> None:
        """Replace this process image (same pid, so the workers stay our children)."""
        env = dict(os.environ)
        env[INHERIT_ENV] = self.state.inherit_payload(self.pidfile_fd)
        # Signals arriving before the new image traps them stay pending, not lost or fatal.
        signal.pthread_sigmask(signal.SIG_BLOCK, (*MASTER_SIGNALS, signal.SIGCHLD))
        assert self.signals is not None
        if any(signum != signal.SIGCHLD for signum in self.signals.pending):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, (*MASTER_SIGNALS, signal.SIGCHLD))
            logger.warning("HUP: reload abandoned: a signal arrived first")
            return
        logger.info("HUP: re-executing the pool master with %d worker(s) draining",
                    len(self.state.members))
        _flush_logs()
        if self.pidfile_fd is not None:  # keep the pidfile locked across the exec
            os.set_inheritable(self.pidfile_fd, True)
        try:
            os.execve(sys.executable, reexec_argv(), env)
        except OSError as exc:
            if self.pidfile_fd is not None:
                os.set_inheritable(self.pidfile_fd, False)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, (*MASTER_SIGNALS, signal.SIGCHLD))
            logger.error("HUP: exec failed (%s)", exc)

    # ------------------------------------------------------------------ the worker child
    def _fork_worker(self, spec: WorkerSpec) -> int:
        from .prewarm import close_connections

        hooks.before_fork.send_robust(type(self), pool=self, spec=spec, worker=None, job=None)
        close_connections()  # a child must never share a database or cache socket
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            self._child_setup(spec)
            code = self._run_worker(spec)
        except BaseException:
            logger.exception("Pooled worker for %s crashed", spec.key)
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
            os._exit(code)

    def _child_setup(self, spec: WorkerSpec) -> None:
        """In the forked worker: forget the master's traps, pidfile and connections."""
        if self.signals is not None:
            self.signals.restore()
            self.signals = None
        for signum in (*MASTER_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if self.pidfile_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfile_fd)
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the master only; it stops us in order
        die_with_parent(signal.SIGTERM)
        if os.getppid() != self.master_pid:
            raise SystemExit("pool master is gone")
        random.seed()
        abandon_inherited_connections()
        hooks.after_fork.send_robust(type(self), pool=self, spec=spec, worker=None, job=None)

    def _run_worker(self, spec: WorkerSpec) -> int:
        from .broker import get_broker
        from .compat import task_backends
        from .worker import Worker

        master = self.master_pid
        worker = Worker(
            get_broker(spec.backend), spec.queues, fork=spec.fork, interval=spec.interval,
            grace_period=spec.grace_period, max_jobs=spec.max_jobs,
            jobs_per_child=spec.jobs_per_child, prefetch=spec.prefetch,
            backend_class=type(task_backends[spec.backend]),
            stop_when=lambda: os.getppid() != master,
        )
        worker.paused = self.state.paused
        worker.work()
        return 0


def _flush_logs() -> None:
    for name in (None, "jobqueue", "jobqueue.pool"):
        for handler in logging.getLogger(name).handlers:
            with contextlib.suppress(Exception):
                handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def die_with_parent(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies (PR_SET_PDEATHSIG)."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_PDEATHSIG, int(signum)) == 0


def abandon_inherited_connections() -> None:
    """Drop (never close) database connections copied from the parent.

    Closing would send the server a goodbye on a socket the parent still uses; the master
    closes its connections before forking, so normally there is nothing to drop.
    """
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _abandoned.append(conn.connection)
            conn.connection = None



def inherited_from_environment() -> str | None:
    """Pop the HUP hand-over (set when a pool master re-exec'd itself into this process)."""
    return os.environ.pop(INHERIT_ENV, None)


def inherited_pidfile_fd(payload: str | None) -> int | None:
    """The pidfile descriptor the previous image kept locked, if any."""
    if not payload:
        return None
    fd = json.loads(payload).get("pidfile_fd")
    return int(fd) if fd is not None else None


class PidFile:
    """A pidfile held under ``flock`` for the master's life (a kill -9 releases it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, inherited_fd: int | None = None) -> None:
        """Lock the file and write our pid; raise ``PoolRunning`` if another master holds it."""
        fd = inherited_fd if inherited_fd is not None else os.open(
            self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(fd)
            os.close(fd)
            raise PoolRunning(f"another pool master (pid {other or 'unknown'}) holds the "
                              f"pidfile {self.path}") from None
        old = _read_pid(fd)
        if old and old != os.getpid():
            logger.warning("Replacing stale pidfile %s (pid %d is gone)", self.path, old)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.set_inheritable(fd, False)
        self.fd = fd

    def release(self) -> None:
        """Remove the file if it is still ours, and unlock it."""
        if self.fd is None:
            return
        if _read_pid(self.fd) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


class PoolRunning(Exception):
    """Another pool master holds the pidfile."""


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None
