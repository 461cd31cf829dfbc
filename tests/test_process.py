"""``jobqueue.process``: process titles, the signal self-pipe and watching forked children.

Everything here is real: titles are read back from ``/proc`` and ``ps``, signals are sent with
``os.kill``, children are ``os.fork()``-ed. Every child ends with ``os._exit`` and the
``children`` fixture kills and reaps whatever a test leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobqueue.process import (
    RESQUE_VERSION,
    ChildWatch,
    SignalQueue,
    describe_status,
    reset_child_signals,
    resque_title,
    set_title,
    signal_name,
    spare_cpu,
)

LONG = 60.0  # how long a child sleeps when the test means to stop it


def _wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError("condition not met in time")


def _readable(fd: int, timeout: float = 0.0) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _read_line(fd: int, timeout: float = 10.0) -> bytes:
    assert _readable(fd, timeout), "the child did not answer in time"
    return os.read(fd, 4096)


class Children:
    """Fork children that always ``os._exit``; kill and reap every one at teardown."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def fork(self, body: Callable[[], int | None]) -> int:
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 70
            try:
                code = body() or 0
            except BaseException:
                code = 71
            finally:
                os._exit(code)
        self.pids.append(pid)
        return pid

    def sleeper(self, *, ignore_term: bool = False) -> int:
        """A child that sleeps (optionally ignoring TERM), once it is ready for signals."""
        read, write = os.pipe()

        def body() -> int:
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.write(write, b"ready")
            time.sleep(LONG)
            return 0

        pid = self.fork(body)
        os.close(write)
        assert _read_line(read) == b"ready"
        os.close(read)
        return pid

    def cleanup(self) -> None:
        for pid in self.pids:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # reaped by the test: the pid is no longer ours to signal
            if done == 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.cleanup()


# --------------------------------------------------------------------------- titles
def test_resque_title_is_resque_procline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RESQUE_PROCLINE_PREFIX", raising=False)
    assert RESQUE_VERSION == "3.0.0"
    assert resque_title("Waiting for slow,other") == "resque-3.0.0: Waiting for slow,other"


def test_resque_title_matches_ruby_pruner_pattern(monkeypatch: pytest.MonkeyPatch):
    # Ruby keeps a worker alive if `ps` shows [r]esque-[0-9] (worker.rb linux_worker_pids).
    monkeypatch.delenv("RESQUE_PROCLINE_PREFIX", raising=False)
    assert re.search(r"resque-[0-9]", resque_title("Processing q since 1"))


def test_resque_title_starts_with_the_procline_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RESQUE_PROCLINE_PREFIX", "shop-")
    assert resque_title("Paused") == "shop-resque-3.0.0: Paused"


def test_empty_procline_prefix_is_no_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RESQUE_PROCLINE_PREFIX", "")
    assert resque_title("Paused") == "resque-3.0.0: Paused"


def test_set_title_changes_what_proc_and_ps_show(children: Children):
    title = "resque-3.0.0: Waiting for jobqueue-title-test"
    read, write = os.pipe()
    release_read, release_write = os.pipe()

    def body() -> int:
        set_title(title)
        os.write(write, b"set")
        os.read(release_read, 1)  # stay alive until the parent has looked
        return 0

    pid = children.fork(body)
    try:
        assert _read_line(read) == b"set"
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().rstrip(b"\0").decode()
        assert cmdline == title
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True,
                            text=True, check=True)
        assert ps.stdout.strip() == title
    finally:
        os.write(release_write, b"x")
        for fd in (read, write, release_read, release_write):
            os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == (0, None)


def test_set_title_again_leaves_the_title_alone_and_a_new_one_takes(children: Children):
    """A repeated title is not written again (a ``--no-fork`` worker sets one per job);
    here ``/proc`` shows that a title changed behind ``set_title``'s back stays until a
    different one comes."""
    from setproctitle import setproctitle

    read, write = os.pipe()
    release_read, release_write = os.pipe()

    def body() -> int:
        for title in ("resque-3.0.0: A", "resque-3.0.0: A", "resque-3.0.0: B"):
            set_title("resque-3.0.0: A")
            setproctitle("changed elsewhere")
            set_title(title)
            os.write(write, b"set")
            os.read(release_read, 1)
        return 0

    pid = children.fork(body)
    seen = []
    try:
        for _ in range(3):
            assert _read_line(read) == b"set"
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                seen.append(f.read().rstrip(b"\0").decode())
            os.write(release_write, b"x")
    finally:
        for fd in (read, write, release_read, release_write):
            os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == (0, None)
    assert seen == ["changed elsewhere", "changed elsewhere", "resque-3.0.0: B"]


# --------------------------------------------------------------------------- SignalQueue
@pytest.fixture
def queue() -> Iterator[SignalQueue]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    q = SignalQueue()
    try:
        yield q
    finally:
        q.restore()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_signal_is_recorded_and_makes_the_pipe_readable(queue: SignalQueue):
    queue.install([signal.SIGUSR1])
    assert not _readable(queue.fd)
    os.kill(os.getpid(), signal.SIGUSR1)
    _wait_until(lambda: queue.pending)
    assert list(queue.pending) == [signal.SIGUSR1]
    assert _readable(queue.fd, timeout=5)


def test_drain_returns_signals_in_order_and_empties_the_pipe(queue: SignalQueue):
    queue.install([signal.SIGUSR1, signal.SIGUSR2])
    os.kill(os.getpid(), signal.SIGUSR2)
    _wait_until(lambda: len(queue.pending) == 1)
    os.kill(os.getpid(), signal.SIGUSR1)
    _wait_until(lambda: len(queue.pending) == 2)
    assert queue.drain() == [signal.SIGUSR2, signal.SIGUSR1]
    assert not queue.pending
    assert not _readable(queue.fd)
    assert queue.drain() == []


def test_on_signal_runs_inside_the_handler(queue: SignalQueue):
    seen: list[int] = []
    queue.install([signal.SIGUSR1], on_signal=seen.append)
    os.kill(os.getpid(), signal.SIGUSR1)
    _wait_until(lambda: seen)
    assert seen == [signal.SIGUSR1]
    assert queue.drain() == [signal.SIGUSR1]


def test_wake_makes_the_pipe_readable_without_a_signal(queue: SignalQueue):
    queue.wake()
    assert _readable(queue.fd)
    assert queue.drain() == []
    assert not _readable(queue.fd)


def test_drain_reads_the_pipe_only_after_something_was_written(
        queue: SignalQueue, monkeypatch: pytest.MonkeyPatch):
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(fd) or real_read(fd, n))
    assert queue.drain() == []  # a worker drains once per job: no system call for nothing
    assert reads == []
    queue.wake()
    assert queue.drain() == [] and reads and not _readable(queue.fd)


def test_a_full_pipe_never_blocks_the_writer(queue: SignalQueue):
    for _ in range(70_000):  # more bytes than a Linux pipe holds
        queue.wake()
    assert queue.drain() == []
    assert not _readable(queue.fd)


def test_restore_puts_previous_handlers_back_and_closes_the_pipe():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    calls: list[int] = []

    def previous(signum: int, frame: Any) -> None:
        calls.append(signum)

    try:
        signal.signal(signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        queue = SignalQueue()
        fds = (queue.fd, queue._write)
        queue.install([signal.SIGUSR1, signal.SIGUSR2])
        assert signal.getsignal(signal.SIGUSR1) not in (previous, signal.SIG_DFL)
        queue.restore()
        assert signal.getsignal(signal.SIGUSR1) is previous
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        for fd in fds:
            with pytest.raises(OSError):
                os.fstat(fd)
        os.kill(os.getpid(), signal.SIGUSR1)  # reaches the old handler, not the queue
        _wait_until(lambda: calls)
        assert calls == [signal.SIGUSR1]
        assert not queue.pending
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------- child signals
def test_reset_child_signals_ignores_and_restores_default_actions(children: Children):
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()

    def body() -> int:
        signal.signal(signal.SIGUSR1, lambda *a: None)  # inherited-style Python handler
        reset_child_signals(ignore=[signal.SIGUSR2], defaults=[signal.SIGUSR1])
        os.write(to_parent_w, b"reset")
        os.read(to_child_r, 1)
        os.write(to_parent_w, b"alive")
        os.read(to_child_r, 1)
        return 5

    pid = children.fork(body)
    assert _read_line(to_parent_r) == b"reset"
    os.kill(pid, signal.SIGUSR2)  # pending before the child can read the next byte
    os.write(to_child_w, b"g")
    assert _read_line(to_parent_r) == b"alive"  # SIGUSR2 was ignored
    os.kill(pid, signal.SIGUSR1)
    watch = ChildWatch(pid, grace_period=0)
    assert describe_status(watch.wait()) == (None, signal.SIGUSR1)  # default action: die
    for fd in (to_parent_r, to_parent_w, to_child_r, to_child_w):
        os.close(fd)


# --------------------------------------------------------------------------- status
@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_describe_status_of_an_exit(children: Children, code: int):
    pid = children.fork(lambda: code)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == (code, None)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR2])
def test_describe_status_of_a_signal(children: Children, signum: int):
    def body() -> int:
        if signum != signal.SIGKILL:
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 0

    pid = children.fork(body)
    _, status = os.waitpid(pid, 0)
    assert describe_status(status) == (None, signum)


def test_describe_status_of_a_stopped_child_is_neither():
    stopped = (signal.SIGSTOP << 8) | 0x7F
    assert os.WIFSTOPPED(stopped)
    assert describe_status(stopped) == (None, None)


@pytest.mark.parametrize("signum, name", [
    (9, "SIGKILL"), (15, "SIGTERM"), (signal.SIGUSR1, "SIGUSR1"), (2, "SIGINT"), (999, "999"),
])
def test_signal_name(signum: int, name: str):
    assert signal_name(signum) == name


# --------------------------------------------------------------------------- ChildWatch
def test_reap_never_blocks_on_a_running_child(children: Children):
    pid = children.sleeper()
    watch = ChildWatch(pid, grace_period=10)
    assert watch.reap() is None
    assert watch.status is None
    watch.kill(reason="test over")
    assert describe_status(watch.wait()) == (None, signal.SIGKILL)


def test_reap_returns_the_status_once_exited_and_keeps_it(children: Children):
    watch = ChildWatch(children.fork(lambda: 3), grace_period=10)
    status = _wait_until(watch.reap)
    assert describe_status(status) == (3, None)
    assert watch.reap() == status and watch.status == status  # cached, not waited for again


def test_reap_of_a_child_reaped_elsewhere_reports_a_clean_exit(children: Children):
    pid = children.fork(lambda: 9)
    os.waitpid(pid, 0)  # someone else took the status
    assert ChildWatch(pid, grace_period=10).reap() == 0


def test_wait_blocks_until_exit(children: Children):
    watch = ChildWatch(children.fork(lambda: 4), grace_period=10)
    assert describe_status(watch.wait()) == (4, None)
    assert watch.killed_reason is None


def test_wait_with_a_timeout_kills_a_child_that_does_not_exit(children: Children):
    pid = children.sleeper(ignore_term=True)
    watch = ChildWatch(pid, grace_period=10)
    assert describe_status(watch.wait(timeout=0.05)) == (None, signal.SIGKILL)
    assert watch.killed_reason == "did not exit"


def test_terminate_sends_term_and_a_normal_child_dies_of_it(children: Children):
    pid = children.sleeper()
    watch = ChildWatch(pid, grace_period=LONG)
    watch.terminate()
    assert watch.terminated and watch.deadline is not None
    assert describe_status(watch.wait()) == (None, signal.SIGTERM)
    assert watch.killed_reason is None


def test_enforce_deadline_leaves_a_child_alone_during_its_grace_period(children: Children):
    pid = children.sleeper(ignore_term=True)
    watch = ChildWatch(pid, grace_period=LONG)
    watch.terminate()
    watch.enforce_deadline()
    assert watch.reap() is None
    assert watch.killed_reason is None
    assert 0 < watch.seconds_to_deadline() <= LONG


def test_a_child_ignoring_term_is_killed_when_the_grace_period_ends(children: Children):
    pid = children.sleeper(ignore_term=True)
    watch = ChildWatch(pid, grace_period=0.05)
    watch.terminate()

    def enforced() -> int | None:
        watch.enforce_deadline()
        return watch.reap()

    status = _wait_until(enforced)
    assert describe_status(status) == (None, signal.SIGKILL)
    assert watch.killed_reason == "grace period over"
    assert watch.deadline is None
    assert not watch.timed_out


def test_a_second_terminate_kills_at_once(children: Children):
    pid = children.sleeper(ignore_term=True)
    watch = ChildWatch(pid, grace_period=LONG)
    watch.terminate()
    watch.terminate()
    assert describe_status(watch.wait()) == (None, signal.SIGKILL)
    assert watch.killed_reason == "second TERM"


def test_job_timeout_sends_term_and_marks_the_child_timed_out(children: Children):
    pid = children.sleeper()
    watch = ChildWatch(pid, grace_period=LONG, timeout_at=time.monotonic())
    watch.enforce_deadline()
    assert watch.timed_out and watch.terminated
    assert describe_status(watch.wait()) == (None, signal.SIGTERM)
    assert watch.killed_reason is None


def test_job_timeout_then_grace_then_kill(children: Children):
    pid = children.sleeper(ignore_term=True)
    watch = ChildWatch(pid, grace_period=0.05, timeout_at=time.monotonic())

    def enforced() -> int | None:
        watch.enforce_deadline()
        return watch.reap()

    status = _wait_until(enforced)
    assert watch.timed_out
    assert describe_status(status) == (None, signal.SIGKILL)
    assert watch.killed_reason == "grace period over"


def test_a_timeout_in_the_future_does_nothing_yet(children: Children):
    pid = children.sleeper()
    watch = ChildWatch(pid, grace_period=10, timeout_at=time.monotonic() + 3600)
    watch.enforce_deadline()
    assert not watch.timed_out and not watch.terminated
    assert watch.reap() is None
    assert 3500 < watch.seconds_to_deadline() <= 3600


def test_kill_records_the_first_reason_only(children: Children):
    pid = children.sleeper()
    watch = ChildWatch(pid, grace_period=10)
    watch.kill(reason="first")
    watch.kill(reason="second")
    assert watch.killed_reason == "first"
    assert describe_status(watch.wait()) == (None, signal.SIGKILL)


def test_signals_to_a_child_that_already_exited_change_nothing(children: Children):
    pid = children.fork(lambda: 6)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    watch = ChildWatch(pid, grace_period=0)
    watch.terminate()
    watch.kill(reason="late")
    assert describe_status(watch.wait()) == (6, None)


def test_seconds_to_deadline_without_deadlines_is_large():
    assert ChildWatch(os.getpid(), grace_period=10).seconds_to_deadline() == 3600.0


def test_seconds_to_deadline_never_goes_negative():
    watch = ChildWatch(os.getpid(), grace_period=10, timeout_at=time.monotonic() - 5)
    assert watch.seconds_to_deadline() == 0.0


def test_lingered_counts_from_the_report_when_there_is_one():
    watch = ChildWatch(os.getpid(), grace_period=10)
    assert not watch.lingered(grace_period=10)  # just started, no report yet
    watch.reported_at = time.monotonic() - 30
    assert watch.lingered(grace_period=10)
    assert not watch.lingered(grace_period=100)


def test_lingered_without_a_report_allows_a_minute_beyond_the_grace_period():
    watch = ChildWatch(os.getpid(), grace_period=10)
    watch.started = time.monotonic() - 65
    assert watch.lingered(grace_period=1)
    assert not watch.lingered(grace_period=10)


def test_exited_children_reaps_every_exited_child_without_blocking():
    from jobqueue.process import exited_children

    assert list(exited_children()) == []  # no children at all: nothing, no error
    codes = {}
    for code in (0, 3, 7):
        pid = os.fork()
        if pid == 0:
            os._exit(code)
        codes[pid] = code
    sleeper = os.fork()
    if sleeper == 0:
        time.sleep(30)
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        seen: dict[int, int] = {}
        while len(seen) < 3 and time.monotonic() < deadline:
            seen.update((pid, os.waitstatus_to_exitcode(s)) for pid, s in exited_children())
            time.sleep(0.01)
        assert seen == codes  # the sleeper is still running: not reaped, no wait for it
    finally:
        os.kill(sleeper, signal.SIGKILL)
        os.waitpid(sleeper, 0)


def test_spare_cpu_follows_the_affinity_mask():
    cpus = os.sched_getaffinity(0)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child, so this process keeps its mask
        try:
            os.sched_setaffinity(0, {min(cpus)})
            answers = [spare_cpu()]
            os.sched_setaffinity(0, cpus)
            answers.append(spare_cpu())
            os.write(write_fd, repr(answers).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    answers = os.read(read_fd, 64).decode()
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert answers == repr([False, len(cpus) > 1])
