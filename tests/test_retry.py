"""Retries: ``max_attempts``, ``backoff`` (seconds, timedelta, callable), default exponential
backoff with jitter, ``Retry`` and ``PermanentFailure``; each attempt appends to ``errors`` and
``worker_ids``; after the last one the job is in the failed list in Resque's record shape.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobqueue import payload
from jobqueue.compat import TaskResultStatus
from jobqueue.exceptions import PermanentFailure, Retry
from jobqueue.retry import (
    BACKOFF_CAP_SECONDS,
    RetryPolicy,
    default_backoff,
    next_attempt_at,
)
from tests.testapp import tasks

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _after(policy: RetryPolicy, exc: BaseException, attempts: int,
           result: Any = None) -> float | None:
    when = next_attempt_at(policy, exc, result, attempts, NOW)
    return None if when is None else (when - NOW).total_seconds()


# --------------------------------------------------------------------------- the policy
def test_one_attempt_by_default_means_no_retry():
    assert RetryPolicy().max_attempts == 1
    assert _after(RetryPolicy(), ValueError(), 1) is None


def test_attempts_count_the_first_one():
    policy = RetryPolicy(max_attempts=3, backoff=10)
    assert _after(policy, ValueError(), 1) == 10
    assert _after(policy, ValueError(), 2) == 10
    assert _after(policy, ValueError(), 3) is None


def test_backoff_as_seconds_or_timedelta():
    assert _after(RetryPolicy(2, 2.5), ValueError(), 1) == 2.5
    assert _after(RetryPolicy(2, timedelta(minutes=2)), ValueError(), 1) == 120
    assert _after(RetryPolicy(2, 0), ValueError(), 1) == 0


def test_default_backoff_is_exponential_with_jitter_and_capped():
    random.seed(5)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (10, 1024)]:
        delays = [default_backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempt
        assert len({round(d, 6) for d in delays}) > 150  # jittered, not a constant
    assert all(BACKOFF_CAP_SECONDS / 2 <= default_backoff(40) <= BACKOFF_CAP_SECONDS
               for _ in range(50))
    assert 1 <= _after(RetryPolicy(3), ValueError(), 1) <= 2
    assert 2 <= _after(RetryPolicy(3), ValueError(), 2) <= 4


def test_backoff_callable_gets_the_exception_and_the_result():
    seen: list[Any] = []

    def backoff(exc: BaseException, result: Any) -> float:
        seen.append((exc, result))
        return 7

    error, result = ValueError("x"), object()
    assert _after(RetryPolicy(3, backoff), error, 1, result) == 7
    assert seen == [(error, result)]


def test_backoff_callable_returning_none_stops_retrying():
    assert _after(RetryPolicy(5, lambda exc, result: None), ValueError(), 1) is None


def test_backoff_callable_may_return_a_timedelta_and_negative_means_now():
    assert _after(RetryPolicy(5, lambda e, r: timedelta(seconds=3)), ValueError(), 1) == 3
    assert _after(RetryPolicy(5, lambda e, r: -4), ValueError(), 1) == 0


def test_retry_exception_overrides_the_backoff_but_not_max_attempts():
    policy = RetryPolicy(max_attempts=2, backoff=600)
    assert _after(policy, Retry(delay=1.5), 1) == 1.5
    assert _after(policy, Retry(delay=timedelta(seconds=4)), 1) == 4
    assert _after(policy, Retry(), 1) == 600  # no delay given: the task's backoff
    assert _after(policy, Retry(delay=0), 2) is None


def test_permanent_failure_never_retries():
    assert _after(RetryPolicy(max_attempts=10, backoff=0), PermanentFailure("no"), 1) is None


# --------------------------------------------------------------------------- in real workers
def _result(result_id: str) -> Any:
    from jobqueue.compat import task_backends

    return task_backends["default"].get_result(result_id)


def _wait_final(jq, result_id: str, timeout: float = 40) -> Any:
    final = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    jq.wait_for(lambda: _result(result_id).status in final, timeout=timeout,
                message=f"job {result_id} to finish")
    return _result(result_id)


def _failures(jq) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in jq.redis.lrange(jq.key("failed"), 0, -1)]


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_flaky_task_succeeds_on_its_third_attempt(jq, mode):
    result = tasks.flaky.enqueue("m")
    jq.spawn_worker(*(["--no-fork"] if mode == "no-fork" else []))
    final = _wait_final(jq, result.id)
    assert final.status == TaskResultStatus.SUCCESSFUL and final.return_value == 3
    assert [e.exception_class_path for e in final.errors] == ["builtins.RuntimeError"] * 2
    assert "attempt 1 fails" in final.errors[0].traceback
    assert "attempt 2 fails" in final.errors[1].traceback
    assert len(final.worker_ids) == 3
    assert _failures(jq) == []
    # Ruby counts every reserved attempt as processed; only a final failure counts as failed.
    assert jq.redis.get(jq.key("stat", "processed")) == "3"
    assert jq.redis.get(jq.key("stat", "failed")) is None


def test_after_the_last_attempt_the_job_is_in_the_failed_list(jq):
    result = tasks.always_fails.enqueue("x")
    jq.spawn_worker()
    final = _wait_final(jq, result.id)
    assert final.status == TaskResultStatus.FAILED
    assert len(final.errors) == 2 and len(final.worker_ids) == 2
    [failure] = _failures(jq)
    assert list(failure) == ["failed_at", "payload", "exception", "error", "backtrace", "worker",
                             "queue", "id"]
    assert failure["exception"] == "RuntimeError" and failure["error"] == "always fails x"
    assert failure["payload"]["class"] == "tests.testapp.tasks.always_fails"
    assert failure["payload"]["args"] == ["x"] and failure["payload"]["id"] == result.id
    assert failure["payload"]["attempts"] == 1  # the payload of the last attempt
    assert failure["worker"] == final.worker_ids[-1] and failure["queue"] == "default"
    assert payload.parse_time(failure["failed_at"]) is not None
    assert isinstance(failure["backtrace"], list) and failure["backtrace"]
    assert jq.redis.lrange(jq.key("test:always_fails"), 0, -1) == ["x", "x"]
    assert jq.redis.get(jq.key("stat", "failed")) == "1"


def test_retry_exception_asks_for_another_attempt(jq):
    result = tasks.retry_me.enqueue("r", 3)
    jq.spawn_worker()
    final = _wait_final(jq, result.id)
    assert final.status == TaskResultStatus.SUCCESSFUL and final.return_value == 3
    assert [e.exception_class_path for e in final.errors] == ["jobqueue.exceptions.Retry"] * 2
    assert "not yet (1)" in final.errors[0].traceback


def test_retry_exception_counts_against_max_attempts(jq):
    result = tasks.retry_me.enqueue("never", 99)
    jq.spawn_worker()
    final = _wait_final(jq, result.id)
    assert final.status == TaskResultStatus.FAILED
    assert len(final.errors) == 3 and len(final.worker_ids) == 3
    assert _failures(jq)[0]["exception"] == "Retry"


def test_permanent_failure_fails_at_once(jq):
    result = tasks.give_up.enqueue("stop now")
    done = jq.run_worker("--burst")
    assert done.returncode == 0, done.stderr[-2000:]
    final = _result(result.id)
    assert final.status == TaskResultStatus.FAILED
    assert len(final.errors) == 1 and len(final.worker_ids) == 1
    assert jq.redis.get(jq.key("test:give_up")) == "1"
    [failure] = _failures(jq)
    assert failure["exception"] == "PermanentFailure" and failure["error"] == "stop now"
    assert jq.redis.zcard(jq.key("delayed_queue_schedule")) == 0


def test_backoff_callable_runs_with_the_exception_and_the_task_result(jq):
    retried = tasks.backoff_probe.enqueue("value")
    stopped = tasks.backoff_probe.enqueue("key")
    jq.spawn_worker()
    first, second = _wait_final(jq, retried.id), _wait_final(jq, stopped.id)
    # ValueError: the callable said 0 s twice, then max_attempts (3) ended it.
    assert first.status == TaskResultStatus.FAILED and len(first.worker_ids) == 3
    # KeyError: the callable returned None, so no retry at all.
    assert second.status == TaskResultStatus.FAILED and len(second.worker_ids) == 1
    seen = jq.redis.lrange(jq.key("test:backoff"), 0, -1)
    assert seen.count(f"ValueError:{retried.id}") == 2
    assert seen.count(f"KeyError:{stopped.id}") == 1


def test_broken_backoff_callable_fails_the_job_instead_of_losing_it(jq):
    result = tasks.broken_backoff.enqueue()
    done = jq.run_worker("--burst")
    assert done.returncode == 0, done.stderr[-2000:]
    final = _result(result.id)
    assert final.status == TaskResultStatus.FAILED and len(final.worker_ids) == 1
    assert _failures(jq)[0]["error"] == "task failed"
    assert "backoff for tests.testapp.tasks.broken_backoff raised" in done.stderr


def test_backend_defaults_apply_to_tasks_without_options(jq, settings):
    from jobqueue.worker import Worker

    settings.TASKS["default"]["OPTIONS"] = {**settings.TASKS["default"]["OPTIONS"],
                                            "MAX_ATTEMPTS": 2, "BACKOFF": 0}
    settings.TASKS = dict(settings.TASKS)  # re-read: a fresh backend and broker
    result = tasks.boom.enqueue("defaulted")
    worker = Worker(jq.broker, ["default"], fork=False, interval=0.1,
                    manage_db_connections=False,
                    stop_when=lambda: _result(result.id).status == TaskResultStatus.FAILED)
    worker.work()
    final = _result(result.id)
    assert final.status == TaskResultStatus.FAILED
    assert len(final.errors) == 2 and len(final.worker_ids) == 2


def test_a_retry_keeps_the_job_id_and_arguments(jq):
    result = tasks.flaky.using(priority=5).enqueue("keep")
    jq.spawn_worker()
    final = _wait_final(jq, result.id)
    assert final.id == result.id and final.args == ["keep"]
    assert final.enqueued_at == result.enqueued_at
    assert final.task.priority == 5
