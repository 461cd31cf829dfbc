"""Per-task ``timeout``: TERM at the deadline and KILL after the grace period (fork mode),
SIGALRM raising ``JobTimeout`` in the worker itself (``--no-fork``); retries follow the policy.
"""

from __future__ import annotations

import time

import pytest

from jobqueue import payload
from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks

TIMEOUT = "jobqueue.exceptions.JobTimeout"


def _failure(jq) -> payload.Failure:
    [raw] = jq.redis.lrange(jq.key("failed"), 0, -1)
    return payload.decode_failure(raw)


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_job_past_its_timeout_fails_with_job_timeout_and_the_worker_goes_on(jq, mode):
    slow = tasks.too_slow.enqueue(30)
    after = tasks.add.enqueue(2, 2)
    started = time.monotonic()
    done = jq.run_worker("--burst", "--grace", "5",
                         *(["--no-fork"] if mode == "no-fork" else []))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 20  # 0.5 s timeout, not the 30 s sleep nor the 5 s grace

    result = tasks.too_slow.get_result(slow.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == TIMEOUT
    assert "ran past its timeout" in error.traceback
    failure = _failure(jq)
    assert failure.exception == "JobTimeout" and failure.task_name.endswith("too_slow")
    assert tasks.add.get_result(after.id).return_value == 4


def test_fork_mode_terms_the_child_at_the_deadline_and_it_can_clean_up(jq):
    slow = tasks.too_slow.enqueue(30)
    done = jq.run_worker("--burst", "--grace", "10")
    assert done.returncode == 0, done.stderr[-3000:]
    [error] = tasks.too_slow.get_result(slow.id).errors
    # TERM raised inside the job: the child reported the timeout itself (no KILL needed, so
    # the message is the runner's, not "child killed after ... grace").
    assert "ran past its timeout" in error.traceback
    assert "child killed" not in error.traceback


def test_child_ignoring_term_is_killed_after_the_grace_period(jq):
    stuck = tasks.stubborn_with_timeout.enqueue(60)
    after = tasks.add.enqueue(3, 3)
    started = time.monotonic()
    done = jq.run_worker("--burst", "--grace", "1")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 20  # 0.5 s timeout + 1 s grace, not the 60 s sleep

    result = tasks.stubborn_with_timeout.get_result(stuck.id)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == TIMEOUT
    assert "child killed after 1s grace" in error.traceback
    assert _failure(jq).exception == "JobTimeout"
    assert tasks.add.get_result(after.id).return_value == 6


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_timeouts_follow_the_retry_policy(jq, mode):
    slow = tasks.too_slow_twice.enqueue(30)
    proc = jq.spawn_worker(*(["--no-fork"] if mode == "no-fork" else []))
    jq.wait_for(lambda: tasks.too_slow_twice.get_result(slow.id).status
                == TaskResultStatus.FAILED, timeout=40, message="both attempts to time out")
    result = tasks.too_slow_twice.get_result(slow.id)
    assert [e.exception_class_path for e in result.errors] == [TIMEOUT, TIMEOUT]
    assert len(result.worker_ids) == 2
    assert jq.redis.llen(jq.key("test:started")) == 2
    assert _failure(jq).exception == "JobTimeout"
    assert proc.poll() is None


def test_no_fork_timeout_is_raised_inside_the_worker_process(jq):
    slow = tasks.too_slow.enqueue(30)
    done = jq.run_worker("--burst", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]
    [error] = tasks.too_slow.get_result(slow.id).errors
    # SIGALRM raised JobTimeout in the task's own frame (time.sleep): the traceback shows it.
    assert "time.sleep(seconds)" in error.traceback
    assert "JobTimeout: job ran past its timeout" in error.traceback
