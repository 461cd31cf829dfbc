"""Fork mode's pipe between child and worker: what a worker does with what a child sends.

The child reports its job's fate as one JSON document on a pipe and exits; the worker records
it and moves on while the child exits. A report that is incomplete or garbled is no report:
the job is settled as a ``DirtyExit``. A child that hangs after reporting is killed once it
has outlived its report by the grace period. Real workers and children, except for the
parser of the report itself.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pytest

from jobqueue.broker.base import ErrorInfo, Outcome
from jobqueue.compat import TaskResultStatus
from jobqueue.forking import _parse
from jobqueue.report import Report
from tests.testapp import tasks
from tests.testapp import worker_tasks as wt
from tests.worker_support import exists, make_workers

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
