"""The worker: reserve a job, fork a child to run it, wait, repeat (Resque's model).

Duties, in order: register and heartbeat; reserve atomically from a priority-ordered queue
list; fail undecodable or unknown jobs without forking; fork a child per job (or run in
process with ``fork=False``); watch the child while handling signals; clean up after a child
that died; unregister on exit.

Signals (Resque's meanings; handlers only record, the loop acts):

======  ==================================================================================
QUIT    finish the current job, then exit
TERM    stop: the running child gets TERM (``WorkerShutdown`` is raised in the job, which
INT     puts the job back on its queue) and ``grace_period`` seconds before SIGKILL; exit
USR1    kill the running child at once (its job is failed as ``DirtyExit``), keep working
USR2    pause: take no new jobs
CONT    resume after USR2
======  ==================================================================================
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence

from . import __version__, hugepages, immortal, registry, warmup
from . import signals as hooks
from .broker.base import Broker, WorkerInfo
from .childlink import ChildLink
from .conf import get_config
from .exceptions import BrokerUnavailable, DirtyExit, WorkerShutdown
from .forking import ForkMixin
from .forkserver import ForkServer
from .job import BadJob, Reservation
from .jobchild import ChildMixin
from .outage import Outage
from .periodic import PeriodicRunner
from .process import (
    ChildWatch,
    SignalQueue,
    resque_title,
    set_title,
    signal_name,
)
from .reaper import reap_dead_workers, reap_interval, settle_in_flight
from .runner import JobRunner, preflight, timeout_of

logger = logging.getLogger("jobqueue.worker")

CONTROL_SIGNALS = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                   signal.SIGUSR2, signal.SIGCONT)
PROMOTE_INTERVAL = 1.0
EXIT_ACKED = 0
EXIT_NOT_ACKED = 3


class Worker(ForkMixin, ChildMixin):
    """One worker process serving a Resque queue list."""

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        *,
        fork: bool = True,
        burst: bool = False,
        interval: float | None = None,
        name: str | None = None,
        grace_period: float | None = None,
        heartbeat_interval: float | None = None,
        max_jobs: int | None = None,
        jobs_per_child: int = 1,
        fork_server: bool | None = None,
        fork_server_idle_timeout: float | None = None,
        prefetch: int | None = None,
        immortal_heap: bool | None = None,
        huge_pages: bool | None = None,
        backend_class: type | None = None,
        stop_when: Callable[[], bool] | None = None,
        manage_db_connections: bool = True,
    ) -> None:
        config = get_config()
        self.broker = broker
        self.patterns = list(queues) or ["*"]
        self.fork = fork
        self.burst = burst
        self.interval = config.interval if interval is None else interval
        self.grace_period = config.grace_period if grace_period is None else grace_period
        self.heartbeat_interval = (config.heartbeat_interval if heartbeat_interval is None
                                   else heartbeat_interval)
        self.host = name or socket.gethostname()
        self.max_jobs = max_jobs
        #: Fork mode: how many jobs one forked child runs before it exits (1: a fork per job).
        self.jobs_per_child = _whole_number("jobs_per_child", jobs_per_child)
        #: ``--no-fork``: jobs reserved per round trip (see ``broker.redis_prefetch``).
        self.prefetch = _whole_number(
            "prefetch", (config.prefetch if prefetch is None else prefetch) if not fork else 1)
        #: Fork mode: children come from a fork server, not from the worker itself.
        self.fork_server = config.fork_server if fork_server is None else fork_server
        #: Fork mode: stop the fork server and the child it has ready after this many seconds
        #: without a job (``math.inf``: never); the next job is forked by the worker itself.
        self.fork_server_idle_timeout = _idle_timeout(
            config.fork_server_idle_timeout if fork_server_idle_timeout is None
            else fork_server_idle_timeout)
        #: Fork mode: make the start-up heap immortal before the first fork (``immortal``).
        self.immortal_heap = config.immortal_heap if immortal_heap is None else immortal_heap
        #: Fork mode: back the start-up heap with huge pages before the first fork (``hugepages``).
        self.huge_pages = config.huge_pages if huge_pages is None else huge_pages
        self.backend_class = backend_class or type(None)
        # Checked between jobs and while waiting: e.g. a pooled worker whose master died.
        self.stop_when = stop_when
        self.manage_db_connections = manage_db_connections
        self._init_state()
        self.id = self._make_id()

    def _init_state(self) -> None:
        """What the worker keeps while it runs: children, fork server, timers, counters."""
        self._waiting_child: ChildLink | None = None  # a child waiting for a job
        self._server: ForkServer | None = None
        self._served: dict[int, ForkServer] = {}  # children of fork servers, by pid
        self._server_restarts = 0
        self._parked = False  # the fork server was stopped while idle: restart it after a job
        self._busy_at = time.monotonic()  # when the last job ended (or the worker started)
        self.processed = 0
        self.shutdown = False
        self.paused = False
        self.signals: SignalQueue | None = None
        self.periodic: PeriodicRunner | None = None
        self.outage = Outage(logger)
        self._in_job = False
        self._next_heartbeat = 0.0
        self._next_promote = 0.0
        self._next_reap = 0.0
        self._exiting: list[ChildWatch] = []  # children that reported and are exiting
        self._beater: tuple[threading.Event, threading.Thread] | None = None  # --no-fork

    def _make_id(self) -> str:
        return f"{self.host}:{os.getpid()}:{','.join(self.patterns)}"

    # ------------------------------------------------------------------ lifecycle
    def work(self) -> int:
        """Process jobs until told to stop (or, in burst mode, until the queues are empty)."""
        self.id = self._make_id()
        self.signals = SignalQueue()
        # SIGCHLD only wakes the loop (through the pipe) when a child exits.
        self.signals.install((*CONTROL_SIGNALS, signal.SIGCHLD), self._on_signal)
        try:
            self._startup()
            self._loop()
        finally:
            self._teardown()
        return self.processed

    def _startup(self) -> None:
        set_title(resque_title("Starting"))
        registry.autodiscover()
        hooks.before_first_fork.send(type(self), worker=self)
        schedule = list(get_config().schedule)
        self.periodic = PeriodicRunner(self.broker, schedule) if schedule else None
        self.runner = JobRunner(self.broker, self.backend_class, self.id, retry=self.outage.retry)
        self.runner.manage_connections = self.manage_db_connections
        self.runner.defer_acks = True
        self.outage.retry(self._register, "register worker")
        if not self.fork:
            self._start_beating()
        hooks.worker_started.send_robust(type(self), worker=self)
        if self.fork and warmup.ENABLED:
            warmup.warm_job_path(self.runner, self.id)  # children inherit a warm job path
        if self.fork and self.immortal_heap:
            immortal.immortalize()  # children stop copying pages to count references
        if self.fork and self.huge_pages:
            hugepages.collapse_heap()  # each fork copies fewer page-table entries
        if self.fork and self.fork_server:
            self._start_server()  # a copy of the worker as it is now forks the children
            self._waiting_child = self._request_child()
        self._busy_at = time.monotonic()
        mode = "no fork" if not self.fork else "fork per job" if self.jobs_per_child == 1 \
            else f"fork per {self.jobs_per_child} jobs"
        if self.fork:
            mode += ", fork server" if self.fork_server else ", forked by the worker"
        elif self.prefetch > 1:
            mode += f", prefetch {self.prefetch}"
        logger.info("Worker %s started (%s, queues %s)", self.id, mode, ",".join(self.patterns))

    def _register(self) -> None:
        info = WorkerInfo(id=self.id, host=self.host, pid=os.getpid(), queues=self.patterns,
                          extra={"mode": "fork" if self.fork else "nofork",
                                 "jobs_per_child": str(self.jobs_per_child),
                                 "version": __version__, "ppid": str(os.getppid()),
                                 "heartbeat_interval": str(self.heartbeat_interval)})
        self.broker.register_worker(info)
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval

    def _teardown(self) -> None:
        self._stop_children()
        self._stop_beating()
        try:
            # Normally nothing is held here; after a crash in this loop the reserved job would
            # vanish with our records, so settle it first (Resque fails it as a DirtyExit).
            settle_in_flight(self.broker, self.id, DirtyExit(
                f"Worker {self.id} stopped while holding this job"))
            self.broker.unregister_worker(self.id)
        except BrokerUnavailable as exc:  # records stay; a reaper settles them later
            logger.warning("Could not unregister %s: %s", self.id, exc)
        hooks.worker_stopped.send_robust(type(self), worker=self)
        if self.signals is not None:
            self.signals.restore()
            self.signals = None
        logger.info("Worker %s stopped after %d job(s)", self.id, self.processed)

    def _loop(self) -> None:
        while not self.shutdown:
            if self.stop_when is not None and self.stop_when():
                logger.warning("Worker %s stopping: stop condition met", self.id)
                self.shutdown = True
                break
            began = time.monotonic()
            try:
                did_work = self.work_once()
            except BrokerUnavailable as exc:
                self.outage.failed(exc)
                self._sleep(self.outage.delay())
                continue
            self.outage.recovered(began)
            if self.max_jobs is not None and self.processed >= self.max_jobs:
                break
            if not did_work:
                if self.burst and not self.paused:
                    break
                try:
                    self._idle()
                except BrokerUnavailable as exc:  # Redis went away while we waited
                    self.outage.failed(exc)
                    self._sleep(self.outage.delay())

    # ------------------------------------------------------------------ one step
    def work_once(self) -> bool:
        """Handle pending signals, heartbeat, then reserve and process at most one job."""
        self._handle_signals()
        self._maybe_heartbeat()
        if self._exiting:
            self._reap_exiting()
        if self.shutdown or self.paused:
            self.broker.flush()  # no reserve will carry the last job's acknowledgement
            self.broker.release(self.id)  # nor start what was prefetched: it goes back
            return False
        self._maybe_housekeeping()
        queues = self.broker.expand_queues(self.patterns)
        reservation = self.broker.reserve(self.id, queues, prefetch=self.prefetch)
        if reservation is None:
            return False
        self.process(reservation)
        self.processed += 1
        self._busy_at = time.monotonic()
        return True

    def _maybe_housekeeping(self) -> None:
        """Promote due delayed jobs (about every second) and reap dead workers (rarely)."""
        clock = time.monotonic()
        if clock >= self._next_promote:
            if self.periodic is not None:
                self.periodic.tick()
            next_due = self.broker.promote_due()
            wait = PROMOTE_INTERVAL
            if next_due is not None:
                wait = min(wait, max(next_due - time.time(), 0.0))
            self._next_promote = clock + wait
        if clock >= self._next_reap and not self._reaping_held(clock):
            interval = reap_interval(self.heartbeat_interval)
            self._next_reap = clock + interval
            reap_dead_workers(self.broker, self.id, interval=interval)

    def _reaping_held(self, clock: float) -> bool:
        """Hold off reaping just after an outage: every heartbeat went stale while Redis was
        away, and live workers still in their reconnect backoff must get to beat again."""
        if self.outage.since is not None:  # Redis answers again, but the outage is not over
            return True
        if self.outage.last_outage is None:
            return False
        ended, lasted = self.outage.last_outage
        backoff = min(lasted, self.outage.max_delay)  # longest sleep another worker is in
        return clock - ended < backoff + 2 * self.heartbeat_interval + 1.0

    def process(self, reservation: Reservation | BadJob) -> None:
        """Run one reserved job: fail it at once if it cannot run, else fork or run inline."""
        task, outcome = preflight(reservation)
        if outcome is not None:
            logger.error("Failing job from %r: %s", reservation.queue,
                         outcome.error.message if outcome.error else "")
            self.outage.retry(lambda: self.broker.finish(
                self.id, reservation.job if isinstance(reservation, Reservation)
                else reservation, reservation.queue, outcome), "record failure")
            return
        assert isinstance(reservation, Reservation) and task is not None
        timeout = timeout_of(task, self.broker)
        self.runner.deadline = time.monotonic() + timeout if timeout else None
        self.runner.alarm = not self.fork
        if self.fork:
            self._fork_and_wait(task, reservation)
        else:
            self._run_inline(task, reservation)

    def _run_inline(self, task: object, reservation: Reservation) -> None:
        set_title(resque_title(f"Processing {reservation.queue} since "
                               f"{int(time.time())} [{reservation.job.task_name}]"))
        self._in_job = True
        try:
            self.runner.run(task, reservation)  # type: ignore[arg-type]
        except WorkerShutdown:
            self.shutdown = True
        finally:
            self._in_job = False

    def _start_beating(self) -> None:
        """``--no-fork``: beat from a thread, because a running job holds the main thread.

        Without it a job longer than the stale limit would get this live worker reaped by
        another one. One thread for the worker's life (never one per job: that would cost
        every job a thread start). Fork mode keeps no thread: a forked child must not
        inherit one, and the parent beats while it watches its child.
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.broker.heartbeat(self.id)
                except BrokerUnavailable:
                    pass  # the main loop notices and reports outages
                except Exception:
                    logger.exception("Heartbeat of %s failed", self.id)

        thread = threading.Thread(target=beat, name="jobqueue-heartbeat", daemon=True)
        thread.start()
        self._beater = (stop, thread)

    def _stop_beating(self) -> None:
        """Stop the heartbeat thread (before unregistering, so no beat outlives the worker)."""
        if self._beater is not None:
            stop, thread = self._beater
            stop.set()
            thread.join()
            self._beater = None

    # ------------------------------------------------------------------ signals & waiting
    def _on_signal(self, signum: int) -> None:
        # Runs inside the handler. In --no-fork mode TERM/INT interrupt the running job.
        if self._in_job and not self.fork and signum in (signal.SIGTERM, signal.SIGINT):
            self._in_job = False
            raise WorkerShutdown(f"worker received {signal_name(signum)}")

    def _handle_signals(self) -> None:
        if self.signals is None:
            return
        for signum in self.signals.drain():
            if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.shutdown = True
            elif signum == signal.SIGCHLD:
                self._check_server()
            else:
                self._pause_signal(signum)

    def _pause_signal(self, signum: int) -> None:
        if signum == signal.SIGUSR2 and not self.paused:
            self.paused = True
            set_title(resque_title("Paused"))
            logger.info("Worker %s paused (USR2)", self.id)
        elif signum == signal.SIGCONT and self.paused:
            self.paused = False
            logger.info("Worker %s resumed (CONT)", self.id)

    def _idle(self) -> None:
        if self.shutdown:
            return
        timeout = min(self.interval, self._seconds_to_heartbeat(), self._maybe_park())
        if self.paused:
            self._sleep(timeout)
            return
        timeout = min(timeout, max(self._next_promote - time.monotonic(), 0.0))
        queues = self.broker.expand_queues(self.patterns)
        set_title(resque_title(f"Waiting for {','.join(queues)}"))
        fd = self.signals.fd if self.signals else None
        self.broker.wait_for_job(queues, max(timeout, 0.01), fd, worker_id=self.id,
                                 prefetch=self.prefetch)

    def _sleep(self, seconds: float) -> None:
        if self.signals is None:
            time.sleep(seconds)
            return
        poller = select.poll()
        poller.register(self.signals.fd, select.POLLIN)
        poller.poll(max(seconds, 0.0) * 1000)

    def _seconds_to_heartbeat(self) -> float:
        return max(self._next_heartbeat - time.monotonic(), 0.0)

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        try:
            self.broker.heartbeat(self.id)
        except BrokerUnavailable as exc:
            self.outage.failed(exc)


def _idle_timeout(value: float | None) -> float:
    """``fork_server_idle_timeout`` in seconds: ``None`` is never (``math.inf``), else > 0."""
    if value is not None and not value > 0:
        raise ValueError(f"fork_server_idle_timeout must be None or a number of seconds > 0, "
                         f"got {value!r}")
    return math.inf if value is None else float(value)


def _whole_number(name: str, value: object) -> int:
    """``value`` if it is an ``int`` of at least 1 (not a bool), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value
