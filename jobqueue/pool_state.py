"""The pool master's decisions, without processes or clocks (driven by ``jobqueue.pool``).

``PoolState`` is told what happened (a worker was spawned or exited, a signal arrived, time
passed) and answers with actions: spawn a worker for a queue list, send a signal to a pid,
reload, exit. The signal table is in ``jobqueue.pool``. Tests drive it with a fake clock.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field

from .pool_config import PoolConfig, WorkerSpec

FORWARDED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)
#: A worker that exits on its own sooner than this after starting counts as a crash.
MIN_UPTIME_SECONDS = 10.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
#: After TERM, workers get their grace period plus this before the master SIGKILLs them.
KILL_MARGIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Spawn:
    """Fork a worker for a queue list."""

    key: str


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``signum`` to the worker ``pid``."""

    pid: int
    signum: int


@dataclass(frozen=True, slots=True)
class Reload:
    """Check the new code and configuration, then re-exec."""


@dataclass(frozen=True, slots=True)
class Exit:
    """Every worker is gone: leave with ``code``."""

    code: int = 0


Action = Spawn | Send | Reload | Exit


@dataclass(slots=True)
class Member:
    """One worker process of the pool."""

    pid: int
    key: str
    started_at: float
    retiring: bool = False  #: started by the code before a HUP: QUIT once new ones run
    sent: int | None = None  #: the stop signal it was sent (QUIT, TERM), if any
    killed: bool = False


@dataclass(frozen=True, slots=True)
class ExitNote:
    """What ``PoolState.exited`` made of a worker's exit (for the log)."""

    member: Member
    expected: bool
    uptime: float
    crashes: int = 0
    restart_in: float = 0.0


@dataclass
class PoolState:
    """Decide what the master does; never touches a process or a clock itself."""

    config: PoolConfig
    grace_period: float
    min_uptime: float = MIN_UPTIME_SECONDS
    backoff_first: float = BACKOFF_FIRST_SECONDS
    backoff_max: float = BACKOFF_MAX_SECONDS
    members: dict[int, Member] = field(default_factory=dict)
    adjust: dict[str, int] = field(default_factory=dict)  #: TTIN/TTOU per queue list
    mode: str = "run"  #: ``run``, ``quit`` (drain and exit) or ``term`` (stop and exit)
    stopped: bool = False  #: WINCH: no workers until HUP
    paused: bool = False  #: USR2 seen (and no CONT since)
    reloading: bool = False
    kill_at: float | None = None
    crashes: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.specs: dict[str, WorkerSpec] = self.config.by_key()  #: specs by queue list

    def desired(self, key: str) -> int:
        """How many workers the queue list should have now."""
        spec = self.specs.get(key)
        if spec is None or self.stopped or self.mode != "run":
            return 0
        return max(spec.count + self.adjust.get(key, 0), 0)

    def live(self, key: str) -> list[Member]:
        """Current-generation workers of ``key`` that were not asked to stop, oldest first."""
        return sorted((m for m in self.members.values()
                       if m.key == key and not m.retiring and m.sent is None),
                      key=lambda m: (m.started_at, m.pid))

    # ------------------------------------------------------------------ events
    def spawned(self, pid: int, key: str, now: float) -> None:
        """A worker for ``key`` was forked."""
        self.members[pid] = Member(pid=pid, key=key, started_at=now)

    def adopt(self, pid: int, key: str, now: float) -> None:
        """Take over a worker of the previous image (after HUP); it retires."""
        self.members[pid] = Member(pid=pid, key=key, started_at=now, retiring=True)

    def exited(self, pid: int, now: float, *, clean: bool = False) -> ExitNote | None:
        """Forget a reaped worker; count a crash and set the backoff when it was unexpected.

        ``clean`` (exit status 0: e.g. ``max_jobs`` reached) is replaced at once and never
        counts as a crash; any other exit sooner than ``min_uptime`` after the start does.
        """
        member = self.members.pop(pid, None)
        if member is None:
            return None
        uptime = max(now - member.started_at, 0.0)
        expected = member.retiring or member.sent is not None or self.mode != "run"
        if expected:
            return ExitNote(member, expected=True, uptime=uptime)
        key = member.key
        quick = uptime < self.min_uptime and not clean
        crashes = self.crashes.get(key, 0) + 1 if quick else 0
        self.crashes[key] = crashes
        delay = self.backoff(crashes)
        self.not_before[key] = now + delay
        return ExitNote(member, expected=False, uptime=uptime, crashes=crashes,
                        restart_in=delay)

    def backoff(self, crashes: int) -> float:
        """Seconds before restarting after ``crashes`` quick exits in a row (0, 1, 2, 4...)."""
        if crashes <= 1:
            return 0.0
        return min(self.backoff_first * 2 ** (crashes - 2), self.backoff_max)

    def signal(self, signum: int, now: float) -> list[Action]:
        """Record one master signal; return what must happen at once."""
        if signum == signal.SIGHUP:
            if self.mode != "run" or self.reloading:
                return []
            self.reloading = True
            return [Reload()]
        if signum == signal.SIGQUIT and self.mode == "run":
            self.mode = "quit"
        elif signum in (signal.SIGINT, signal.SIGTERM):
            if self.mode == "term":  # a second TERM: workers kill their jobs at once
                return [Send(m.pid, signal.SIGTERM) for m in self.members.values()]
            self.mode = "term"
            self.kill_at = now + self.max_grace() + KILL_MARGIN_SECONDS
        elif signum == signal.SIGWINCH:
            self.stopped = True
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            self._resize(+1 if signum == signal.SIGTTIN else -1)
        elif signum in FORWARDED:
            if signum != signal.SIGUSR1:
                self.paused = signum == signal.SIGUSR2
            return [Send(m.pid, signum) for m in self.members.values()]
        return []

    def _resize(self, step: int) -> None:
        for spec in self.config.specs:
            self.adjust[spec.key] = max(self.adjust.get(spec.key, 0) + step, -spec.count)

    def reload_failed(self) -> None:
        """The HUP check failed: keep running as before."""
        self.reloading = False

    def max_grace(self) -> float:
        """The longest grace period any worker of the pool uses."""
        graces = [s.grace_period for s in self.config.specs if s.grace_period is not None]
        return max([self.grace_period, *graces])

    # ------------------------------------------------------------------ the step
    def tick(self, now: float) -> list[Action]:
        """Return the actions that bring the pool towards what it should be at ``now``."""
        if self.mode == "quit":
            return self._stop_all(signal.SIGQUIT) or ([] if self.members else [Exit(0)])
        if self.mode == "term":
            actions: list[Action] = list(self._stop_all(signal.SIGTERM))
            if self.kill_at is not None and now >= self.kill_at:
                for member in self.members.values():
                    if not member.killed:
                        member.killed = True
                        actions.append(Send(member.pid, signal.SIGKILL))
            return actions or ([] if self.members else [Exit(0)])
        actions = []
        for key in self.specs:
            live, want = self.live(key), self.desired(key)
            if len(live) < want and now >= self.not_before.get(key, 0.0):
                actions += [Spawn(key)] * (want - len(live))
            for member in reversed(live[want:]):  # too many: the newest go first
                member.sent = signal.SIGQUIT
                actions.append(Send(member.pid, signal.SIGQUIT))
        for member in self.members.values():  # after the spawns: old code drains last
            if member.sent is None and (member.retiring or member.key not in self.specs):
                member.sent = signal.SIGQUIT
                actions.append(Send(member.pid, signal.SIGQUIT))
        return actions

    def _stop_all(self, signum: int) -> list[Action]:
        actions: list[Action] = []
        for member in self.members.values():
            if member.sent != signum and member.sent != signal.SIGTERM:
                member.sent = signum
                actions.append(Send(member.pid, signum))
        return actions

    def seconds_to_next_event(self, now: float) -> float | None:
        """When ``tick`` may next have something to do without any event (backoff, kill)."""
        times = [t for key, t in self.not_before.items()
                 if t > now and len(self.live(key)) < self.desired(key)]
        if self.mode == "term" and self.kill_at is not None and self.members:
            times.append(self.kill_at)
        return max(min(times) - now, 0.0) if times else None

    def inherit_payload(self, pidfile_fd: int | None) -> str:
        """What the re-exec'd master needs: the workers to adopt, pause state, pidfile fd."""
        return json.dumps({"workers": {str(m.pid): m.key for m in self.members.values()},
                           "paused": self.paused, "pidfile_fd": pidfile_fd})
