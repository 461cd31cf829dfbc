"""The fork server (``jobqueue.forkserver``): a quiet copy of the worker that forks its children.

First the server on its own, with a trivial child, in this process; then real
``manage.py worker`` processes: where children come from, the child forked in advance, and
what happens when the server, or the worker, is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from jobqueue.childlink import read_frame, write_frame
from jobqueue.forkserver import UNKNOWN_STATUS, ForkServer, ForkServerGone
from jobqueue.process import describe_status
from tests.testapp import tasks
from tests.testapp import worker_tasks as wt
from tests.worker_support import (
    children,
    cmdline,
    exists,
    is_fork_server,
    job_children,
    make_workers,
    proc_stat,
)

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def _echo_child(report_fd: int, inbox_fd: int) -> None:
    """A child that answers one frame with its pid, or exits with the code it is sent."""
    message = read_frame(inbox_fd)
    if message is not None and message.startswith(b"exit:"):
        os._exit(int(message[5:]))
    write_frame(report_fd, str(os.getpid()).encode())
    os._exit(0)


@pytest.fixture
def server():
    handle = ForkServer(_echo_child)
    handle.start()
    yield handle
    handle.stop(timeout=2.0)


def _child(server: ForkServer) -> tuple[int, int, int]:
    report_r, report_w = os.pipe()
    inbox_r, inbox_w = os.pipe()
    server.request(report_w, inbox_r)
    os.close(report_w)
    os.close(inbox_r)
    return server.next_pid(), report_r, inbox_w


def _status(server: ForkServer, pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (status := server.status_of(pid)) is None:
        assert time.monotonic() < deadline, f"no exit status for {pid}"
        time.sleep(0.005)
    return status


# ============================================================================ on its own
def test_the_server_forks_children_that_talk_through_the_pipes_it_was_given(server):
    pid, report_r, inbox_w = _child(server)
    assert children(server.pid) == [pid] and pid not in children(os.getpid())
    write_frame(inbox_w, b"hello")
    assert read_frame(report_r) == str(pid).encode()
    assert describe_status(_status(server, pid)) == (0, None)
    for fd in (report_r, inbox_w):
        os.close(fd)


def test_exit_statuses_and_signals_are_reported_by_pid(server):
    first, r1, w1 = _child(server)
    second, r2, w2 = _child(server)
    os.kill(second, signal.SIGKILL)
    write_frame(w1, b"exit:7")
    assert describe_status(_status(server, first)) == (7, None)
    assert describe_status(_status(server, second)) == (None, signal.SIGKILL)
    for fd in (r1, w1, r2, w2):
        os.close(fd)


def test_control_signals_do_not_touch_the_server(server):
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGHUP):
        os.kill(server.pid, signum)
    pid, report_r, inbox_w = _child(server)  # still serving
    write_frame(inbox_w, b"x")
    assert read_frame(report_r) == str(pid).encode()


def test_the_server_leaves_when_the_worker_closes_its_end_children_stay(server):
    pid, report_r, inbox_w = _child(server)
    server_pid = server.pid
    server.stop(timeout=5.0)
    assert not exists(server_pid)
    assert exists(pid)  # a child is never killed with the server: it may hold a job
    write_frame(inbox_w, b"x")
    assert read_frame(report_r) == str(pid).encode()


def test_a_killed_server_is_noticed_and_its_childrens_fate_is_unknown(server):
    pid, report_r, inbox_w = _child(server)
    os.kill(server.pid, signal.SIGKILL)
    os.waitpid(server.pid, 0)
    os.close(inbox_w)  # the orphan reads end of file and exits; init reaps it
    deadline = time.monotonic() + 10
    while exists(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.status_of(pid) == UNKNOWN_STATUS
    assert describe_status(UNKNOWN_STATUS) == (None, None)
    with pytest.raises(ForkServerGone):
        _child(server)
    os.close(report_r)


# ============================================================================ in a worker
@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


def _server_of(worker_pid: int) -> int:
    [server] = children(worker_pid)
    assert is_fork_server(server), cmdline(server)
    assert cmdline(server) == f"resque-3.0.0: Fork server of {worker_pid}"
    return server


def test_children_come_from_the_fork_server_and_the_next_one_is_forked_in_advance(
        jq, workers):
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    server = _server_of(proc.pid)
    # Idle, the worker already has a child waiting for its next job...
    spare = workers.wait(proc, lambda: job_children(proc.pid), 10, "a waiting child")[0]
    assert "waiting for a job" in cmdline(spare)
    assert children(server) == [spare]
    # ...which runs it: no fork between the job's arrival and its start.
    handle = wt.whoami.enqueue("first")
    # (The task records itself as it runs; its result is written after the child reports.)
    workers.wait(proc, lambda: wt.whoami.get_result(handle.id).status == "SUCCESSFUL", 30,
                 "the job")
    [record] = workers.json_records("whoami")
    assert (record["pid"], record["ppid"], record["worker"]) == (spare, server, proc.pid)
    assert _server_of(proc.pid) == server  # one server for the worker's life


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on")
def test_the_next_child_is_forked_while_the_job_runs(jq, workers):
    handle = wt.wait_release.enqueue("w")
    after = wt.whoami.enqueue("next")
    proc = workers.spawn("-q", "default")
    workers.wait_started(proc)
    server = _server_of(proc.pid)
    running = workers.job_child(proc)
    # While the job runs, the server has forked the child for the job after it already.
    spare = workers.wait(proc, lambda: [p for p in children(server, zombies=False)
                                        if p != running], 10, "a child forked in advance")
    assert len(spare) == 1 and "waiting for a job" in cmdline(spare[0])
    workers.release("w")
    workers.wait(proc, lambda: wt.whoami.get_result(after.id).status == "SUCCESSFUL", 30,
                 "the next job")
    assert wt.wait_release.get_result(handle.id).status == "SUCCESSFUL"
    [record] = workers.json_records("whoami")
    assert (record["pid"], record["ppid"]) == (spare[0], server)


def test_on_one_cpu_the_next_child_is_forked_after_the_job(jq, workers):
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    os.sched_setaffinity(proc.pid, {min(os.sched_getaffinity(0))})  # what taskset -c does
    handle = wt.wait_release.enqueue("w")
    workers.wait_started(proc)
    server = _server_of(proc.pid)
    running = workers.job_child(proc)
    time.sleep(0.5)  # a child forked in advance is asked for before the job even starts
    assert children(server, zombies=False) == [running]
    workers.release("w")
    workers.wait(proc, lambda: wt.wait_release.get_result(handle.id).status == "SUCCESSFUL",
                 30, "the job")
    spare = workers.wait(proc, lambda: [p for p in children(server, zombies=False)
                                        if p != running], 10, "the next child")
    assert len(spare) == 1 and "waiting for a job" in cmdline(spare[0])


def test_without_the_fork_server_the_worker_forks_each_child_itself(jq, workers):
    workers.configure(FORK_SERVER=False)
    handles = [wt.whoami.enqueue(f"j{i}") for i in range(2)]
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "forked by the worker" in done.stderr
    records = workers.json_records("whoami")
    [worker] = {r["ppid"] for r in records}
    assert {r["worker"] for r in records} == {worker}
    assert all(wt.whoami.get_result(h.id).status == "SUCCESSFUL" for h in handles)


def test_a_fork_server_killed_while_idle_is_replaced_and_nothing_is_lost(jq, workers):
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    server = _server_of(proc.pid)
    os.kill(server, signal.SIGKILL)
    workers.wait(proc, lambda: not exists(server), 10, "the server to be reaped")
    handles = [tasks.record.enqueue(f"r{i}") for i in range(3)]
    # The task records itself when it runs; its result is written after the child reports.
    workers.wait(proc, lambda: all(tasks.record.get_result(h.id).status == "SUCCESSFUL"
                                   for h in handles), 30, "the three jobs to succeed")
    assert len(workers.records("record")) == 3
    assert jq.redis.llen(jq.key("failed")) == 0
    replacement = _server_of(proc.pid)
    assert replacement != server
    assert "starting a new one" in workers.log(proc)


def test_a_fork_server_killed_while_a_job_runs_lets_the_job_finish(jq, workers):
    handle = wt.wait_release.enqueue("w")
    proc = workers.spawn("-q", "default")
    workers.wait_started(proc)
    child = workers.job_child(proc)
    os.kill(_server_of(proc.pid), signal.SIGKILL)
    workers.release("w")
    workers.wait(proc, lambda: wt.wait_release.get_result(handle.id).status == "SUCCESSFUL",
                 30, "the job to be recorded")
    after = tasks.record.enqueue("after")
    workers.wait(proc, lambda: tasks.record.get_result(after.id).status == "SUCCESSFUL", 30,
                 "the next job")
    workers.wait(proc, lambda: not exists(child), 10, "the orphaned child to go")
    assert jq.redis.llen(jq.key("failed")) == 0


def test_a_worker_killed_with_sigkill_takes_its_server_and_waiting_child_along(jq, workers):
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    server = _server_of(proc.pid)
    spare = workers.wait(proc, lambda: job_children(proc.pid), 10, "a waiting child")[0]
    proc.kill()
    proc.wait(10)
    workers.wait(proc, lambda: not exists(server) and not exists(spare), 10,
                 "the server and the waiting child to exit")


def test_the_worker_forgets_each_child_once_its_exit_is_known(jq):
    from jobqueue.worker import Worker

    handles = [tasks.add.enqueue(i, i) for i in range(40)]
    worker = Worker(jq.broker, ["default"], burst=True, interval=0.5,
                    manage_db_connections=False)
    worker.work()
    assert all(tasks.add.get_result(h.id).status == "SUCCESSFUL" for h in handles)
    assert worker._served == {}  # nothing kept per job: no growth over millions of jobs
    assert worker._server is None and worker._waiting_child is None


# ============================================================================ idle: one process
def _run_whoami(workers, proc, marker: str) -> dict:
    handle = wt.whoami.enqueue(marker)
    workers.wait(proc, lambda: wt.whoami.get_result(handle.id).status == "SUCCESSFUL", 30,
                 f"job {marker}")
    [record] = [r for r in workers.json_records("whoami") if r["marker"] == marker]
    return record


def _alone(proc) -> bool:
    return children(proc.pid, zombies=False) == []


def _parks(workers, proc, count: int = 1) -> None:
    workers.wait(proc, lambda: workers.log(proc).count("fork server stopped") == count, 10,
                 f"park number {count}")


def test_an_idle_worker_stops_its_fork_server_and_restarts_it_after_the_next_job(jq, workers):
    with workers.idle_worker(1.0) as proc:
        server = _server_of(proc.pid)
        spare = workers.wait(proc, lambda: job_children(proc.pid), 10, "a waiting child")[0]
        # A second without a job: the waiting child and the server go, the worker is alone.
        _parks(workers, proc)
        assert _alone(proc) and not exists(server) and not exists(spare)
        # The next job is forked by the worker itself, at once...
        first = _run_whoami(workers, proc, "after-idle")
        assert (first["ppid"], first["worker"]) == (proc.pid, proc.pid)
        # ...and a new server, with a child ready, serves the jobs after it.
        second = _run_whoami(workers, proc, "next")
        new_server = _server_of(proc.pid)
        assert new_server != server and second["ppid"] == new_server
        # Idle again, it parks again; nothing failed, no child left behind.
        _parks(workers, proc, 2)
        assert _alone(proc)
        assert jq.redis.llen(jq.key("failed")) == 0


def test_jobs_keep_the_fork_server_and_none_stops_it_ever(jq, workers):
    with workers.idle_worker(1.5) as proc:
        server = _server_of(proc.pid)
        for index in range(4):  # a job every 0.5 s: never a second and a half without one
            assert _run_whoami(workers, proc, f"busy{index}")["ppid"] == server
            time.sleep(0.5)
        assert exists(server) and "fork server stopped" not in workers.log(proc)
    with workers.idle_worker(None) as proc:
        server = _server_of(proc.pid)
        time.sleep(2.0)
        assert _server_of(proc.pid) == server and job_children(proc.pid)


def test_term_while_a_parked_worker_runs_a_job_puts_the_job_back(jq, workers):
    with workers.idle_worker(0.5) as proc:
        _parks(workers, proc)
        handle = wt.wait_release.enqueue("w")
        workers.wait_started(proc)
        child = workers.job_child(proc)
        assert proc_stat(child)[1] == proc.pid  # forked by the worker itself
    assert not exists(child)
    assert workers.records("finally") == ["w"] and workers.records("finished") == []
    assert wt.wait_release.get_result(handle.id).status == "READY"  # back on its queue
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert jq.redis.llen(jq.key("failed")) == 0


def test_a_parked_worker_with_jobs_per_child_reuses_its_own_child_then_parks_it(jq, workers):
    with workers.idle_worker(1.0, "--jobs-per-child", "3") as proc:
        _parks(workers, proc)
        first = _run_whoami(workers, proc, "a")  # forked by the worker, and it stays
        second = _run_whoami(workers, proc, "b")
        assert first["ppid"] == proc.pid and second["pid"] == first["pid"]
        # Idle again: that child is let go and reaped by the worker, not left as a zombie.
        _parks(workers, proc, 2)
        workers.wait(proc, lambda: _alone(proc) and not exists(first["pid"]), 10,
                     "the child to be reaped")
        assert jq.redis.llen(jq.key("failed")) == 0
