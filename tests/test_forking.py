"""Fork mode's pipe between child and worker: what a worker does with what a child sends.

The child reports its job's fate as one JSON document on a pipe and exits; the worker records
it and moves on while the child exits. A report that is incomplete or garbled is no report:
the job is settled as a ``DirtyExit``. A child that hangs after reporting is killed once it
has outlived its report by the grace period. Real workers and children, except for the
parser of the report itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime

import pytest

from jobqueue.broker.base import ErrorInfo, Outcome
from jobqueue.compat import TaskResultStatus
from jobqueue.forking import _parse
from jobqueue.report import Report
from tests.testapp import tasks
from tests.testapp import worker_tasks as wt
from tests.worker_support import cmdline, exists, make_workers, proc_stat

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


# ============================================================================ in real workers
def test_a_garbled_report_is_a_dirty_exit_and_the_worker_goes_on(jq, workers):
    garbled = wt.garble_report.enqueue()
    after = tasks.add.enqueue(4, 5)
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Garbled report from child" in done.stderr

    result = wt.garble_report.get_result(garbled.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "jobqueue.exceptions.DirtyExit"
    [failure] = [json.loads(r) for r in jq.redis.lrange(jq.key("failed"), 0, -1)]
    assert failure["exception"] == "DirtyExit"
    assert failure["error"] == "Child process exited with status 0 without reporting"
    assert tasks.add.get_result(after.id).return_value == 9


def test_a_child_hanging_after_its_report_is_recorded_and_killed_after_the_grace(jq, workers):
    first = wt.linger_after_report.enqueue("L")
    wt.lingering_alive.enqueue()
    proc = workers.spawn("-q", "default", "--grace", "2")
    workers.wait(proc, lambda: workers.records("alive"), 30, "the next job")

    # The outcome was recorded, and the next job ran, while the first child still hung.
    result = wt.linger_after_report.get_result(first.id)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "L"
    assert workers.records("alive") == ["[true]"]
    [child] = [int(pid) for pid in workers.records("linger")]
    # Killed about 2 s after its report (the job itself hangs for two minutes).
    workers.wait(proc, lambda: not exists(child), 20, f"the hanging child {child} to go")
    assert "reported but did not exit; killing it" in workers.log(proc)
    assert proc.poll() is None
    assert [json.loads(r)["exception"] for r in jq.redis.lrange(jq.key("failed"), 0, -1)] == []


def test_a_burst_worker_does_not_wait_long_for_a_child_hanging_after_its_report(jq, workers):
    handle = wt.linger_after_report.enqueue("B")
    done = workers.run("--burst", "-q", "default", "--grace", "1", timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert wt.linger_after_report.get_result(handle.id).status == TaskResultStatus.SUCCESSFUL
    [child] = [int(pid) for pid in workers.records("linger")]
    assert not exists(child)


# ============================================================================ the report
def _round_trip(report: Report) -> Report:
    parsed = _parse(report.to_bytes())
    assert parsed is not None
    return parsed


def test_every_kind_of_report_survives_the_pipe():
    now = datetime(2026, 11, 24, 19, 18, 45, 123456, tzinfo=UTC)
    error = ErrorInfo("builtins.ValueError", "bad \u00e9", "Traceback...\nValueError: bad")
    success = Report(action="finish", outcome=Outcome("SUCCESSFUL", now, {"a": [1, "x"]}))
    failure = Report(action="finish", outcome=Outcome("FAILED", now, error=error))
    retry = Report(action="retry", error=error, run_at=now)
    requeue = Report(action="requeue", error=error)
    for report in (success, failure, retry, requeue):
        assert _round_trip(report) == report
    assert [r.disposition for r in (success, failure, retry, requeue)] == [
        "successful", "failed", "retry", "requeue"]


@pytest.mark.parametrize("data", [
    b'{"action": "fin',  # cut off
    b"\xff\xfe not json",
    b"[1, 2]",
    b'{"status": "SUCCESSFUL"}',  # no action, no finished_at
    b'{"action": "retry", "error": ["only", "two"]}',
    b'{"action": "finish", "status": "SUCCESSFUL", "finished_at": "x", "error": 5}',
])
def test_an_incomplete_or_garbled_report_is_no_report(data):
    assert _parse(data) is None


def test_no_bytes_at_all_is_no_report():
    assert _parse(b"") is None


# ============================================================================ jobs per child
def _pids(workers) -> list[int]:
    return [int(r.rpartition(":")[2]) for r in workers.records("record")]


def test_a_child_runs_up_to_n_jobs_then_a_fresh_one_takes_over(jq, workers):
    results = [tasks.record.enqueue(f"m{i}") for i in range(7)]
    done = workers.run("--burst", "-q", "default", "--jobs-per-child", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fork per 3 jobs" in done.stderr

    pids = _pids(workers)
    assert len(pids) == 7
    assert [pids[0]] * 3 + [pids[3]] * 3 + [pids[6]] == pids  # runs of 3, 3 and 1
    assert len(set(pids)) == 3
    assert all(tasks.record.get_result(r.id).status == TaskResultStatus.SUCCESSFUL
               for r in results)
    assert jq.redis.get(jq.key("stat", "processed")) == "7"
    assert not any(exists(pid) for pid in pids)


def test_a_failing_job_keeps_its_child_and_a_dying_one_gets_a_fresh_child(jq, workers):
    tasks.record.enqueue("a")
    tasks.boom.enqueue("kaput")
    tasks.record.enqueue("b")
    tasks.kill_self.enqueue()
    tasks.record.enqueue("c")
    done = workers.run("--burst", "-q", "default", "--jobs-per-child", "10")
    assert done.returncode == 0, done.stderr[-3000:]

    a, b, c = _pids(workers)
    assert a == b != c  # boom was failed in the same child; kill_self took its child along
    failures = [json.loads(r) for r in jq.redis.lrange(jq.key("failed"), 0, -1)]
    assert [(f["exception"], f["error"]) for f in failures] == [
        ("ValueError", "kaput"),
        ("DirtyExit", "Child process received unhandled signal SIGKILL")]


def test_each_job_in_a_long_lived_child_still_gets_its_own_timeout(jq, workers):
    first = tasks.record.enqueue("before")
    slow = tasks.too_slow.enqueue(30)
    after = tasks.record.enqueue("after")
    done = workers.run("--burst", "-q", "default", "--jobs-per-child", "5", "--grace", "1")
    assert done.returncode == 0, done.stderr[-3000:]

    result = tasks.too_slow.get_result(slow.id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "jobqueue.exceptions.JobTimeout"
    before, later = _pids(workers)
    assert before == later  # the child caught the TERM, reported the timeout and stayed
    assert tasks.record.get_result(first.id).status == TaskResultStatus.SUCCESSFUL
    assert tasks.record.get_result(after.id).status == TaskResultStatus.SUCCESSFUL


def test_term_during_a_later_job_of_a_child_puts_that_job_back(jq, workers):
    tasks.record.enqueue("first")
    held = wt.wait_release.enqueue("w")
    proc = workers.spawn("-q", "default", "--jobs-per-child", "5", "--grace", "5")
    workers.wait_started(proc)
    [pid] = _pids(workers)
    assert workers.job_child(proc) == pid  # the same child runs the second job

    os.kill(proc.pid, signal.SIGTERM)
    assert workers.wait_exit(proc) == 0
    assert wt.wait_release.get_result(held.id).status == TaskResultStatus.READY
    assert held.id in jq.redis.lrange(jq.key("queue", "default"), 0, -1)[0]
    assert not exists(pid)
    assert jq.worker_ids() == set()


def test_a_child_waiting_for_its_next_job_exits_with_the_worker(jq, workers):
    tasks.record.enqueue("only")
    proc = workers.spawn("-q", "default", "--jobs-per-child", "5")
    workers.wait(proc, lambda: workers.records("record"), 30, "the job")
    workers.wait_idle(proc)
    [pid] = _pids(workers)
    assert exists(pid) and workers.job_child(proc) == pid  # alive, waiting for a job
    assert "waiting for a job" in cmdline(pid)

    os.kill(proc.pid, signal.SIGQUIT)
    assert workers.wait_exit(proc) == 0
    workers.wait(proc, lambda: not exists(pid), 10, f"the waiting child {pid} to exit")


def test_a_waiting_child_killed_meanwhile_is_replaced_and_nothing_is_lost(jq, workers):
    tasks.record.enqueue("one")
    proc = workers.spawn("-q", "default", "--jobs-per-child", "5")
    workers.wait(proc, lambda: workers.records("record"), 30, "the first job")
    workers.wait_idle(proc)
    [first] = _pids(workers)
    os.kill(first, signal.SIGKILL)
    workers.wait(proc, lambda: not exists(first) or proc_state(first) == "Z", 10, "the kill")

    second = tasks.record.enqueue("two")
    workers.wait(proc, lambda: _done(second), 30, "the second job")
    [_, other] = _pids(workers)
    assert other != first
    assert jq.redis.llen(jq.key("failed")) == 0
    assert proc.poll() is None


def _done(handle) -> bool:
    return tasks.record.get_result(handle.id).status == TaskResultStatus.SUCCESSFUL


def proc_state(pid: int) -> str:
    found = proc_stat(pid)
    return found[0] if found else ""


@pytest.mark.parametrize(("args", "message"), [
    (["--jobs-per-child", "0"], "--jobs-per-child must be 1 or more"),
    (["--jobs-per-child", "2", "--no-fork"], "--jobs-per-child needs fork mode")])
def test_bad_jobs_per_child_options_are_refused(jq, workers, args, message):
    done = workers.run("--burst", "-q", "default", *args)
    assert done.returncode != 0
    assert message in done.stderr
