"""Real signals to a real ``manage.py worker``: QUIT, TERM, INT, USR1, USR2 and CONT.

What each signal promises is in ``docs/workers.md`` (Signals) and ``docs/guarantees.md``
(TERM or INT, QUIT): these tests send it with ``os.kill`` to a worker process that is idle or
running a job, in fork mode and with ``--no-fork``, and check the job's fate in Redis.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks
from tests.testapp import worker_tasks as wt
from tests.testapp.pool_hooks import hold
from tests.worker_support import TITLE, children, cmdline, exists, make_workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SHUTDOWN = "jobqueue.exceptions.WorkerShutdown"
MODES = ["fork", "no-fork"]


@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


def _mode_args(mode: str) -> list[str]:
    return ["--no-fork"] if mode == "no-fork" else []


def _queue(jq, name: str = "default") -> list[str]:
    return jq.redis.lrange(jq.key("queue", name), 0, -1)


def _failures(jq) -> list[dict]:
    return [json.loads(raw) for raw in jq.redis.lrange(jq.key("failed"), 0, -1)]


def _status(task, handle) -> TaskResultStatus:
    return task.get_result(handle.id).status


def _assert_unregistered(jq, worker_id: str) -> None:
    assert jq.worker_ids() == set()
    assert [k for k in jq.redis.scan_iter(match=jq.key("*")) if worker_id in k] == []


# ============================================================================ QUIT
@pytest.mark.parametrize("mode", MODES)
def test_quit_lets_the_running_job_finish_then_the_worker_exits(jq, workers, mode):
    handle = hold.enqueue("q")
    waiting = tasks.add.enqueue(1, 1)  # must not be started after QUIT
    proc = workers.spawn("-q", "default", *_mode_args(mode))
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)

    os.kill(proc.pid, signal.SIGQUIT)
    time.sleep(1)  # QUIT interrupts nothing: worker and job carry on
    assert proc.poll() is None
    assert workers.records("finally") == []
    workers.release("q")

    assert workers.wait_exit(proc) == 0
    assert workers.records("finished") == ["q"]
    assert _status(hold, handle) == TaskResultStatus.SUCCESSFUL
    assert _status(tasks.add, waiting) == TaskResultStatus.READY
    assert len(_queue(jq)) == 1
    _assert_unregistered(jq, worker_id)


# ============================================================================ TERM / INT
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("mode", MODES)
def test_term_or_int_interrupts_the_job_and_puts_it_back_at_the_head_of_its_queue(
        jq, workers, mode, signum):
    handle = wt.nap.enqueue(30, "t")
    behind = tasks.add.enqueue(2, 2)
    [job_raw, behind_raw] = _queue(jq)
    proc = workers.spawn("-q", "default", "--grace", "20", *_mode_args(mode))
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    child = workers.job_child(proc) if mode == "fork" else None

    started = time.monotonic()
    os.kill(proc.pid, signum)
    assert workers.wait_exit(proc) == 0
    assert time.monotonic() - started < 15  # not the 30 s job, not the 20 s grace

    # WorkerShutdown was raised inside the job: its finally block ran, the rest did not.
    assert workers.records("finally") == ["t"]
    assert workers.records("finished") == []
    assert _queue(jq) == [job_raw, behind_raw]  # the exact entry, back at the head
    result = wt.nap.get_result(handle.id)
    assert result.status == TaskResultStatus.READY
    [error] = result.errors
    assert error.exception_class_path == SHUTDOWN
    # Fork mode: the parent passed the signal on to the child as TERM.
    received = "SIGTERM" if mode == "fork" else signal.Signals(signum).name
    assert f"WorkerShutdown: worker received {received}" in error.traceback
    assert _status(tasks.add, behind) == TaskResultStatus.READY
    assert _failures(jq) == []
    _assert_unregistered(jq, worker_id)
    if child is not None:
        assert not exists(child)


def test_an_interrupted_job_runs_again_before_the_jobs_behind_it(jq, workers):
    handle = wt.wait_release.enqueue("again")
    tasks.record.enqueue("behind")
    proc = workers.spawn("-q", "default")
    workers.wait_started(proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert workers.wait_exit(proc) == 0
    assert workers.records("finally") == ["again"]

    workers.release("again")  # this time the job need not wait
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    assert workers.records("started") == ["again", "again"]
    assert workers.records("finished") == ["again"]
    assert [r.split(":")[0] for r in workers.records("record")] == ["behind"]
    result = wt.wait_release.get_result(handle.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert len(result.worker_ids) == 2  # the interrupted reservation counted as an attempt
    assert [e.exception_class_path for e in result.errors] == [SHUTDOWN]


@pytest.mark.parametrize("mode", MODES)
def test_term_during_the_jobs_task_started_receivers_still_puts_the_job_back(jq, workers,
                                                                             mode):
    workers.configure("tests.testapp.worker_tasks.connect_slow_task_started")
    handle = tasks.add.enqueue(1, 2)
    [job_raw] = _queue(jq)
    proc = workers.spawn("-q", "default", *_mode_args(mode))
    workers.wait(proc, lambda: workers.records("receiver"), 30, "the task_started receiver")
    os.kill(proc.pid, signal.SIGTERM)
    assert workers.wait_exit(proc) == 0
    assert _queue(jq) == [job_raw]
    result = tasks.add.get_result(handle.id)
    assert result.status == TaskResultStatus.READY
    assert [e.exception_class_path for e in result.errors] == [SHUTDOWN]
    assert _failures(jq) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_child_ignoring_term_is_killed_after_the_grace_and_its_job_put_back(jq, workers,
                                                                            signum):
    handle = tasks.stubborn.enqueue(60)
    [job_raw] = _queue(jq)
    proc = workers.spawn("-q", "default", "--grace", "1")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    child = workers.job_child(proc)

    started = time.monotonic()
    os.kill(proc.pid, signum)
    assert workers.wait_exit(proc) == 0
    assert time.monotonic() - started < 15  # 1 s grace, not the 60 s job
    assert not exists(child)

    assert _queue(jq) == [job_raw]
    result = tasks.stubborn.get_result(handle.id)
    assert result.status == TaskResultStatus.READY
    [error] = result.errors
    assert error.exception_class_path == SHUTDOWN
    assert "worker shut down; child killed after 1s grace" in error.traceback
    assert _failures(jq) == []
    _assert_unregistered(jq, worker_id)


def test_a_second_term_kills_the_child_at_once(jq, workers):
    handle = tasks.stubborn.enqueue(60)
    [job_raw] = _queue(jq)
    proc = workers.spawn("-q", "default", "--grace", "60")
    workers.wait_started(proc)
    child = workers.job_child(proc)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(1)
    assert proc.poll() is None and exists(child)  # still inside its 60 s grace

    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert workers.wait_exit(proc) == 0
    assert time.monotonic() - started < 15
    assert not exists(child)
    assert _queue(jq) == [job_raw]
    [error] = tasks.stubborn.get_result(handle.id).errors
    assert error.exception_class_path == SHUTDOWN


def test_a_job_that_completes_despite_the_term_is_recorded_as_completed(jq, workers):
    handle = tasks.stubborn.enqueue(1.5)  # ignores TERM and finishes well inside the grace
    proc = workers.spawn("-q", "default", "--grace", "30")
    workers.wait_started(proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert workers.wait_exit(proc) == 0
    result = tasks.stubborn.get_result(handle.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.errors == []
    assert _queue(jq) == []
    assert jq.redis.get(jq.key("stat", "processed")) == "1"


# ============================================================================ USR1
def test_usr1_kills_the_child_at_once_fails_the_job_and_the_worker_goes_on(jq, workers):
    handle = tasks.sleepy.enqueue(30, "u")
    proc = workers.spawn("-q", "default")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    child = workers.job_child(proc)

    os.kill(proc.pid, signal.SIGUSR1)
    workers.wait(proc, lambda: _status(tasks.sleepy, handle) == TaskResultStatus.FAILED, 10,
                 "the killed job to fail")
    workers.wait(proc, lambda: not exists(child), 10, "the child to be gone")
    assert workers.records("finally") == []  # SIGKILL: nothing in the child ran any more
    [failure] = _failures(jq)
    assert failure["exception"] == "DirtyExit"
    assert failure["error"] == ("Child process received unhandled signal SIGKILL "
                                "(killed by worker on USR1)")
    assert failure["worker"] == worker_id
    [error] = tasks.sleepy.get_result(handle.id).errors
    assert error.exception_class_path == "jobqueue.exceptions.DirtyExit"

    after = tasks.add.enqueue(5, 5)  # the worker keeps working
    workers.wait(proc, lambda: _status(tasks.add, after) == TaskResultStatus.SUCCESSFUL, 10,
                 "the next job")
    assert proc.poll() is None
    assert jq.worker_ids() == {worker_id}


def test_usr1_is_ignored_in_no_fork_mode(jq, workers):
    handle = tasks.sleepy.enqueue(1.5, "n")
    proc = workers.spawn("-q", "default", "--no-fork")
    workers.wait_started(proc)
    os.kill(proc.pid, signal.SIGUSR1)
    workers.wait(proc, lambda: _status(tasks.sleepy, handle) == TaskResultStatus.SUCCESSFUL,
                 15, "the job to finish")
    assert workers.records("finished") == ["n"]
    assert _failures(jq) == []
    assert proc.poll() is None


# ============================================================================ USR2 / CONT
@pytest.mark.parametrize("mode", MODES)
def test_usr2_pauses_an_idle_worker_and_cont_resumes_it(jq, workers, mode):
    proc = workers.spawn("-q", "default", *_mode_args(mode))
    workers.wait_idle(proc)
    os.kill(proc.pid, signal.SIGUSR2)
    assert workers.wait_title(proc, "Paused") == f"{TITLE}Paused"

    handle = tasks.add.enqueue(3, 4)
    time.sleep(2)  # wake-ups, polls and heartbeats come and go: nothing is taken
    assert _status(tasks.add, handle) == TaskResultStatus.READY
    assert cmdline(proc.pid) == f"{TITLE}Paused"
    assert len(_queue(jq)) == 1

    os.kill(proc.pid, signal.SIGCONT)
    workers.wait(proc, lambda: _status(tasks.add, handle) == TaskResultStatus.SUCCESSFUL, 10,
                 "the job after CONT")
    assert tasks.add.get_result(handle.id).return_value == 7
    workers.wait_idle(proc)


def test_usr2_while_a_job_runs_lets_it_finish_and_takes_no_new_job(jq, workers):
    first = hold.enqueue("p")
    second = tasks.add.enqueue(1, 2)
    proc = workers.spawn("-q", "default")
    workers.wait_started(proc)
    os.kill(proc.pid, signal.SIGUSR2)
    workers.wait_title(proc, "Paused")  # noted at once, while the child still runs
    assert workers.records("finished") == []
    workers.release("p")
    workers.wait(proc, lambda: _status(hold, first) == TaskResultStatus.SUCCESSFUL, 10,
                 "the running job to finish")
    time.sleep(2)
    assert cmdline(proc.pid) == f"{TITLE}Paused"
    assert _status(tasks.add, second) == TaskResultStatus.READY

    os.kill(proc.pid, signal.SIGCONT)
    workers.wait(proc, lambda: _status(tasks.add, second) == TaskResultStatus.SUCCESSFUL, 10,
                 "the next job after CONT")


# ============================================================================ idle signals
@pytest.mark.parametrize("signum", [signal.SIGQUIT, signal.SIGTERM, signal.SIGINT],
                         ids=["QUIT", "TERM", "INT"])
@pytest.mark.parametrize("mode", MODES)
def test_a_signal_to_an_idle_worker_wakes_it_and_it_exits_promptly(jq, workers, mode, signum):
    workers.configure(HEARTBEAT_INTERVAL=30)
    proc = workers.spawn("-q", "default", "--interval", "30", *_mode_args(mode))
    worker_id = workers.worker_id(proc, "default")
    workers.wait_idle(proc)
    os.kill(proc.pid, signum)
    assert workers.wait_exit(proc, timeout=5) == 0  # long before the 30 s interval
    _assert_unregistered(jq, worker_id)
    assert children(proc.pid) == []
