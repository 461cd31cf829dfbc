"""The pool master's decisions, driven with a fake clock: no processes, no sleeps."""

from __future__ import annotations

import json
import signal

from jobqueue.pool_config import parse_pool
from jobqueue.pool_state import (
    KILL_MARGIN_SECONDS,
    Exit,
    PoolState,
    Reload,
    Send,
    Spawn,
)

QUIT, TERM, KILL = signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL


class Sim:
    """A PoolState plus a pid counter: perform its Spawn actions like the plumbing would."""

    def __init__(self, pool: dict, grace: float = 10.0) -> None:
        self.state = PoolState(parse_pool(pool), grace_period=grace)
        self.next_pid = 100

    def step(self, now: float, *signums: int) -> list:
        actions = []
        for signum in signums:
            actions += self.state.signal(signum, now)
        actions += self.state.tick(now)
        for action in actions:
            if isinstance(action, Spawn):
                self.next_pid += 1
                self.state.spawned(self.next_pid, action.key, now)
        return actions

    def counts(self) -> dict[str, int]:
        return {key: len(self.state.live(key)) for key in self.state.specs}

    def sent(self, actions: list, signum: int) -> list[int]:
        return sorted(a.pid for a in actions if isinstance(a, Send) and a.signum == signum)

    def die(self, pid: int, now: float, clean: bool = False):
        return self.state.exited(pid, now, clean=clean)


def test_first_tick_spawns_the_configured_counts_then_nothing():
    sim = Sim({"critical": 2, "default,mail": 3, "*": 1, "idle": 0})
    actions = sim.step(0.0)
    assert [a.key for a in actions] == ["critical"] * 2 + ["default,mail"] * 3 + ["*"]
    assert sim.counts() == {"critical": 2, "default,mail": 3, "*": 1, "idle": 0}
    assert sim.step(1.0) == []


def test_a_worker_killed_after_running_a_while_is_replaced_at_once():
    sim = Sim({"critical": 2})
    sim.step(0.0)
    note = sim.die(101, now=60.0)
    assert not note.expected and note.restart_in == 0 and note.uptime == 60.0
    assert sim.step(60.0) == [Spawn("critical")]
    assert sim.counts() == {"critical": 2}


def test_crash_loop_restarts_with_growing_backoff_not_in_a_tight_loop():
    sim = Sim({"critical": 1})
    sim.step(0.0)
    now, delays = 0.0, []
    for _ in range(9):
        pid = max(sim.state.members)
        note = sim.die(pid, now + 0.5)  # dies half a second after each start
        now += 0.5
        delays.append(note.restart_in)
        if note.restart_in:
            assert sim.state.seconds_to_next_event(now) == note.restart_in
            assert sim.step(now + note.restart_in - 0.01) == []  # not before the backoff
        now += note.restart_in
        assert sim.step(now) == [Spawn("critical")]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_a_long_lived_worker_resets_the_crash_count():
    sim = Sim({"critical": 1})
    sim.step(0.0)
    sim.die(101, 1.0)
    sim.step(1.0)
    assert sim.die(102, 2.0).restart_in == 1.0
    sim.step(3.0)
    assert sim.die(103, 3.0 + 3600).restart_in == 0.0
    assert sim.state.crashes["critical"] == 0


def test_a_worker_that_exits_cleanly_on_its_own_is_replaced_without_backoff():
    sim = Sim({"critical": {"count": 1, "max_jobs": 10}})
    sim.step(0.0)
    for now in (0.5, 1.0, 1.5):  # recycled after max_jobs, quickly: not a crash loop
        note = sim.die(max(sim.state.members), now, clean=True)
        assert not note.expected and note.restart_in == 0 and note.crashes == 0
        assert sim.step(now) == [Spawn("critical")]


def test_workers_asked_to_stop_are_not_crashes():
    sim = Sim({"critical": 2})
    sim.step(0.0)
    actions = sim.step(1.0, signal.SIGTTOU)
    assert sim.sent(actions, QUIT) == [102]  # the newest goes first
    note = sim.die(102, 1.5)
    assert note.expected and "critical" not in sim.state.crashes
    assert sim.step(2.0) == [] and sim.counts() == {"critical": 1}


def test_ttin_and_ttou_change_every_queue_list_by_one_and_never_below_zero():
    sim = Sim({"critical": 2, "low": 1})
    sim.step(0.0)
    assert [a.key for a in sim.step(1.0, signal.SIGTTIN)] == ["critical", "low"]
    assert sim.counts() == {"critical": 3, "low": 2}
    for now in (2.0, 3.0, 4.0):
        sim.step(now, signal.SIGTTOU)
    assert sim.counts() == {"critical": 0, "low": 0}
    assert sim.state.adjust == {"critical": -2, "low": -1}
    assert [a.key for a in sim.step(5.0, signal.SIGTTIN)] == ["critical", "low"]


def test_quit_drains_every_worker_then_exits():
    sim = Sim({"critical": 2})
    sim.step(0.0)
    actions = sim.step(1.0, QUIT)
    assert sim.sent(actions, QUIT) == [101, 102]
    assert sim.step(2.0) == []  # waits, sends nothing twice, spawns nothing
    sim.die(101, 3.0)
    assert sim.step(3.0) == []
    sim.die(102, 60.0)
    assert sim.step(60.0) == [Exit(0)]


def test_term_stops_workers_then_kills_them_after_the_grace_period():
    sim = Sim({"critical": 1, "slow": {"count": 1, "grace_period": 30}}, grace=10.0)
    sim.step(0.0)
    actions = sim.step(1.0, TERM)
    assert sim.sent(actions, TERM) == [101, 102]
    deadline = 1.0 + 30 + KILL_MARGIN_SECONDS
    assert sim.state.seconds_to_next_event(1.0) == deadline - 1.0
    sim.die(101, 2.0)
    assert sim.step(deadline - 0.1) == []
    assert sim.step(deadline) == [Send(102, KILL)]
    assert sim.step(deadline + 1) == []  # killed once
    sim.die(102, deadline + 1)
    assert sim.step(deadline + 1) == [Exit(0)]


def test_quit_then_term_escalates_and_a_second_term_is_forwarded():
    sim = Sim({"critical": 1})
    sim.step(0.0)
    sim.step(1.0, QUIT)
    assert sim.sent(sim.step(2.0, TERM), TERM) == [101]
    assert sim.sent(sim.step(3.0, signal.SIGINT), TERM) == [101]


def test_winch_stops_all_workers_but_keeps_the_master():
    sim = Sim({"critical": 2, "low": 1})
    sim.step(0.0)
    actions = sim.step(1.0, signal.SIGWINCH)
    assert sim.sent(actions, QUIT) == [101, 102, 103]
    for pid in (101, 102, 103):
        sim.die(pid, 2.0)
    assert sim.step(3.0) == [] and sim.step(100.0) == []  # no Exit, no respawn
    assert sim.step(101.0, signal.SIGHUP) == [Reload()]


def test_hup_asks_for_one_reload_at_a_time_and_none_while_stopping():
    sim = Sim({"critical": 1})
    sim.step(0.0)
    assert sim.step(1.0, signal.SIGHUP) == [Reload()]
    assert sim.step(2.0, signal.SIGHUP) == []
    sim.state.reload_failed()
    assert sim.step(3.0, signal.SIGHUP) == [Reload()]
    sim.state.reload_failed()
    sim.step(4.0, QUIT)
    assert Reload() not in sim.step(5.0, signal.SIGHUP)


def test_adopted_workers_of_the_old_image_get_quit_after_the_new_ones_spawn():
    sim = Sim({"critical": 1, "default": 2})
    for pid, key in ((50, "critical"), (51, "critical"), (52, "gone")):
        sim.state.adopt(pid, key, 0.0)
    actions = sim.step(0.0)
    spawns = [a.key for a in actions if isinstance(a, Spawn)]
    assert spawns == ["critical", "default", "default"]
    first_quit = next(i for i, a in enumerate(actions) if isinstance(a, Send))
    assert all(isinstance(a, Spawn) for a in actions[:first_quit])  # new ones first
    assert sim.sent(actions, QUIT) == [50, 51, 52]
    assert sim.die(50, 30.0).expected  # an old worker finishing is not a crash
    assert sim.step(31.0) == []


def test_usr1_usr2_cont_are_passed_on_and_pause_is_remembered():
    sim = Sim({"critical": 2})
    sim.step(0.0)
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT):
        assert sim.sent(sim.step(1.0, signum), signum) == [101, 102]
    sim.step(2.0, signal.SIGUSR2)
    assert sim.state.paused
    assert json.loads(sim.state.inherit_payload(7)) == {
        "workers": {"101": "critical", "102": "critical"}, "paused": True, "pidfile_fd": 7}
    sim.step(3.0, signal.SIGCONT)
    assert not sim.state.paused


def test_unknown_pids_and_sigchld_are_ignored():
    sim = Sim({"critical": 1})
    sim.step(0.0)
    assert sim.state.exited(999, 1.0) is None
    assert sim.step(1.0, signal.SIGCHLD) == []
