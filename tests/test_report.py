"""``jobqueue.report``: what became of one attempt, its bytes on the child-to-parent pipe, the
retry decision made from the task's policy, and how the parent applies it to the broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobqueue import payload
from jobqueue.broker.base import ErrorInfo, Outcome
from jobqueue.exceptions import PermanentFailure, Retry
from jobqueue.job import Job, Reservation
from jobqueue.report import Report, apply_report, decide_failure
from tests.testapp import tasks

T = datetime(2026, 11, 23, 2, 27, 13, 123456, tzinfo=UTC)
ERROR = ErrorInfo("builtins.ValueError", "bad é \u2603",
                  "Traceback (most recent call last):\n  ...\nValueError: bad é \u2603")


def _reservation(attempts: int = 1, task: Any = None) -> Reservation:
    name = task.module_path if task is not None else "Archive"
    job = Job(task_name=name, args=["m"], id="r1", queue="default")
    return Reservation(job=job, queue=job.queue, run_at=T, worker_id="h:1:default",
                       worker_ids=tuple(f"h:{i}:default" for i in range(attempts)))


def _round_trip(report: Report) -> Report:
    return Report.from_bytes(report.to_bytes())


# --------------------------------------------------------------------------- bytes
def test_successful_finish_round_trips():
    report = Report(action="finish", outcome=Outcome(status="SUCCESSFUL", finished_at=T,
                                                     return_value={"n": [1, "ü", None]}))
    assert _round_trip(report) == report


def test_successful_finish_with_no_return_value_round_trips():
    report = Report(action="finish", outcome=Outcome(status="SUCCESSFUL", finished_at=T))
    assert _round_trip(report) == report


def test_failed_finish_round_trips_with_its_error():
    report = Report(action="finish", outcome=Outcome(status="FAILED", finished_at=T, error=ERROR))
    again = _round_trip(report)
    assert again == report
    assert again.outcome is not None and again.outcome.error == ERROR
    assert again.error is None  # the error travels inside the outcome


def test_retry_round_trips_with_error_and_run_at():
    report = Report(action="retry", error=ERROR, run_at=T + timedelta(seconds=30))
    assert _round_trip(report) == report


def test_requeue_round_trips_with_and_without_error():
    assert _round_trip(Report(action="requeue")) == Report(action="requeue")
    report = Report(action="requeue", error=ErrorInfo("jobqueue.exceptions.WorkerShutdown",
                                                      "shutdown", ""))
    assert _round_trip(report) == report


def test_report_bytes_are_compact_json():
    report = Report(action="retry", error=ERROR, run_at=T)
    assert report.to_bytes() == (
        '{"action":"retry","error":["builtins.ValueError","bad é \u2603",'
        '"Traceback (most recent call last):\\n  ...\\nValueError: bad é \u2603"],'
        '"run_at":"2026-11-23T02:27:13.123456Z"}'
    ).encode("utf-8")


def test_finish_bytes_carry_status_time_and_value():
    report = Report(action="finish", outcome=Outcome(status="SUCCESSFUL", finished_at=T,
                                                     return_value=3))
    assert json.loads(report.to_bytes()) == {
        "action": "finish", "status": "SUCCESSFUL",
        "finished_at": "2026-11-23T02:27:13.123456Z", "value": 3}


def test_lone_surrogates_in_an_error_do_not_break_the_pipe():
    error = ErrorInfo("builtins.ValueError", "bad \ud800 text", "tb \udcff")
    again = _round_trip(Report(action="retry", error=error, run_at=T))
    assert again.error == ErrorInfo("builtins.ValueError", "bad \ufffd text", "tb \ufffd")


def test_every_truncation_of_a_report_is_a_value_error():
    data = Report(action="finish", outcome=Outcome(status="FAILED", finished_at=T,
                                                   error=ERROR)).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            Report.from_bytes(data[:cut])


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"garbage", b"{", b'{"action":'])
def test_garbled_bytes_are_a_value_error(data: bytes):
    with pytest.raises(ValueError):
        Report.from_bytes(data)


@pytest.mark.parametrize("data", [
    b"{}",
    b'{"status":"SUCCESSFUL","finished_at":"2026-11-23T02:27:13Z"}',
    b'{"action":"finish","status":"SUCCESSFUL"}',
])
def test_a_report_missing_a_required_field_is_a_key_error(data: bytes):
    with pytest.raises(KeyError):
        Report.from_bytes(data)


def test_an_unreadable_finish_time_falls_back_to_now():
    before = datetime.now(UTC)
    report = Report.from_bytes(b'{"action":"finish","status":"SUCCESSFUL","finished_at":"x"}')
    assert report.outcome is not None and report.outcome.finished_at >= before


# --------------------------------------------------------------------------- disposition
@pytest.mark.parametrize("report, expected", [
    (Report(action="finish", outcome=Outcome(status="SUCCESSFUL", finished_at=T)), "successful"),
    (Report(action="finish", outcome=Outcome(status="FAILED", finished_at=T, error=ERROR)),
     "failed"),
    (Report(action="retry", error=ERROR, run_at=T), "retry"),
    (Report(action="requeue"), "requeue"),
])
def test_disposition_names_what_became_of_the_attempt(report: Report, expected: str):
    assert report.disposition == expected
    assert _round_trip(report).disposition == expected


def test_report_is_immutable():
    with pytest.raises(AttributeError):
        Report(action="requeue").action = "finish"  # type: ignore[misc]


# --------------------------------------------------------------------------- decide_failure
def _decide(task: Any, exc: BaseException, attempts: int = 1,
            defaults: dict[str, Any] | None = None) -> Report:
    return decide_failure(task, _reservation(attempts, task), exc, ERROR, defaults or {})


def _assert_failed(report: Report) -> None:
    assert report.action == "finish" and report.disposition == "failed"
    assert report.outcome is not None and report.outcome.status == "FAILED"
    assert report.outcome.error == ERROR
    assert report.run_at is None


def test_no_task_fails_for_good():
    _assert_failed(_decide(None, ValueError()))


def test_a_task_without_options_fails_on_its_first_attempt():
    _assert_failed(_decide(tasks.add, ValueError()))


def test_a_task_with_attempts_left_is_retried_after_its_backoff():
    before = datetime.now(UTC)
    report = _decide(tasks.flaky, RuntimeError(), attempts=1)  # max_attempts=3, backoff=0
    after = datetime.now(UTC)
    assert report.action == "retry" and report.disposition == "retry"
    assert report.error == ERROR and report.outcome is None
    assert report.run_at is not None and before <= report.run_at <= after


def test_the_last_attempt_fails_for_good():
    assert _decide(tasks.flaky, RuntimeError(), attempts=2).action == "retry"
    _assert_failed(_decide(tasks.flaky, RuntimeError(), attempts=3))


def test_a_fixed_backoff_sets_the_retry_time():
    before = datetime.now(UTC)
    report = _decide(tasks.fails_later, RuntimeError())  # backoff=3600
    after = datetime.now(UTC)
    assert report.run_at is not None
    assert before + timedelta(hours=1) <= report.run_at <= after + timedelta(hours=1)


def test_retry_exception_delay_overrides_the_backoff():
    before = datetime.now(UTC)
    report = _decide(tasks.fails_later, Retry("later", delay=5))
    after = datetime.now(UTC)
    assert report.run_at is not None
    assert before + timedelta(seconds=5) <= report.run_at <= after + timedelta(seconds=5)


def test_permanent_failure_fails_at_once_whatever_max_attempts_says():
    _assert_failed(_decide(tasks.give_up, PermanentFailure("no")))  # max_attempts=5


def test_backoff_callable_returning_none_stops_retrying(jq: Any):
    # backoff_probe's callable records its call in Redis: 0 s for ValueError, None otherwise.
    assert _decide(tasks.backoff_probe, ValueError("v")).action == "retry"
    _assert_failed(_decide(tasks.backoff_probe, KeyError("k")))
    assert jq.redis.lrange(jq.key("test", "backoff"), 0, -1) == [
        "ValueError:None", "KeyError:None"]


def test_a_broken_backoff_callable_fails_the_job_and_logs(caplog: pytest.LogCaptureFixture):
    with caplog.at_level("ERROR", logger="jobqueue.worker"):
        _assert_failed(_decide(tasks.broken_backoff, RuntimeError()))
    assert "backoff for tests.testapp.tasks.broken_backoff raised" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_backend_defaults_apply_to_a_task_without_options():
    before = datetime.now(UTC)
    report = _decide(tasks.add, ValueError(), defaults={"max_attempts": 2, "backoff": 7})
    after = datetime.now(UTC)
    assert report.action == "retry" and report.run_at is not None
    assert before + timedelta(seconds=7) <= report.run_at <= after + timedelta(seconds=7)
    _assert_failed(_decide(tasks.add, ValueError(), attempts=2,
                           defaults={"max_attempts": 2, "backoff": 7}))


def test_task_options_win_over_backend_defaults():
    # flaky says max_attempts=3: the backend default of 1 must not stop the retry.
    assert _decide(tasks.flaky, RuntimeError(), defaults={"max_attempts": 1}).action == "retry"


def test_attempts_of_a_job_without_worker_ids_come_from_its_payload():
    job = Job(task_name="tests.testapp.tasks.flaky", args=["m"], queue="default",
              extra={"attempts": 2})
    reservation = Reservation(job=job, queue="default", run_at=T, worker_id="h:1:default")
    _assert_failed(decide_failure(tasks.flaky, reservation, RuntimeError(), ERROR, {}))


def test_a_retry_decision_survives_the_pipe():
    report = _decide(tasks.fails_later, RuntimeError())
    assert _round_trip(report).run_at == report.run_at


# --------------------------------------------------------------------------- apply_report
class _NoBroker:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"broker.{name} must not be called")


@pytest.mark.parametrize("report", [
    Report(action="bogus"),
    Report(action="finish"),  # no outcome
    Report(action="retry", error=ERROR),  # no run_at
    Report(action="retry", run_at=T),  # no error
])
def test_a_malformed_report_is_refused_without_touching_the_broker(report: Report):
    with pytest.raises(ValueError, match="malformed report"):
        apply_report(_NoBroker(), "h:1:q", _reservation(), report)  # type: ignore[arg-type]


def _reserve(jq: Any, queue: str = "q") -> tuple[str, Reservation]:
    broker = jq.broker
    broker.push(Job(task_name="Archive", args=[1, "ü"], queue=queue), None)
    worker_id = f"testhost:1:{queue}"
    reservation = broker.reserve(worker_id, [queue])
    assert isinstance(reservation, Reservation)
    return worker_id, reservation


def test_applying_a_failure_writes_a_resque_failure_record(jq: Any):
    worker_id, reservation = _reserve(jq)
    report = Report(action="finish", outcome=Outcome(status="FAILED", finished_at=T, error=ERROR))
    assert apply_report(jq.broker, worker_id, reservation, report)
    records = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert len(records) == 1
    failure = payload.decode_failure(records[0])
    assert list(json.loads(records[0]))[:7] == [
        "failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]
    assert (failure.exception, failure.error, failure.worker, failure.queue) == (
        "ValueError", "bad é \u2603", worker_id, "q")
    assert failure.payload == {"class": "Archive", "args": [1, "ü"]}
    assert failure.failed_at == T.replace(microsecond=0)
    assert jq.redis.get(jq.key("worker", worker_id)) is None
    assert jq.redis.get(jq.key("stat", "processed")) == "1"
    assert jq.redis.get(jq.key("stat", "failed")) == "1"


def test_a_report_applied_twice_is_recorded_once(jq: Any):
    worker_id, reservation = _reserve(jq)
    report = Report(action="finish", outcome=Outcome(status="SUCCESSFUL", finished_at=T))
    assert apply_report(jq.broker, worker_id, reservation, report, only_if_in_flight=True)
    assert not apply_report(jq.broker, worker_id, reservation, report, only_if_in_flight=True)
    assert jq.redis.get(jq.key("stat", "processed")) == "1"


def test_applying_a_requeue_puts_the_job_back_at_the_head(jq: Any):
    worker_id, reservation = _reserve(jq)
    jq.broker.push(Job(task_name="Archive", args=[2], queue="q"), None)
    assert apply_report(jq.broker, worker_id, reservation, Report(action="requeue"))
    assert jq.redis.lrange(jq.key("queue", "q"), 0, -1) == [
        '{"class":"Archive","args":[1,"ü"]}', '{"class":"Archive","args":[2]}']
    assert jq.redis.get(jq.key("worker", worker_id)) is None


def test_applying_a_retry_schedules_a_delayed_item(jq: Any):
    worker_id, reservation = _reserve(jq)
    run_at = datetime(2030, 1, 1, tzinfo=UTC)
    report = Report(action="retry", error=ERROR, run_at=run_at)
    assert apply_report(jq.broker, worker_id, reservation, report)
    ts = int(run_at.timestamp())
    assert jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1) == [str(ts)]
    items = jq.redis.lrange(jq.key("delayed", str(ts)), 0, -1)
    # "attempts" counts the attempts made, so the next reservation is attempt 2.
    assert [json.loads(i) for i in items] == [
        {"class": "Archive", "args": [1, "ü"], "queue": "q", "attempts": 1}]
    again = Reservation(job=payload.decode_job(items[0], "q"), queue="q", run_at=T,
                        worker_id=worker_id)
    assert again.attempts == 2
    assert jq.redis.llen(jq.key("queue", "q")) == 0
    assert jq.redis.get(jq.key("worker", worker_id)) is None


def test_a_workers_retry_after_a_reaper_settled_the_job_is_not_scheduled_twice(jq: Any):
    """The worker looked dead (no heartbeat) and a reaper scheduled the next attempt; when
    the live worker's own retry report arrives later it must neither schedule a second copy
    nor touch the result again."""
    worker_id, reservation = _reserve(jq)
    reaper_run_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert jq.broker.retry_later(worker_id, reservation.job, "q", ERROR, reaper_run_at,
                                 only_if_in_flight=True)
    late = Report(action="retry", error=ERROR, run_at=datetime(2030, 1, 2, tzinfo=UTC))
    assert not apply_report(jq.broker, worker_id, reservation, late, defer=True)
    assert jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1) == [
        str(int(reaper_run_at.timestamp()))]
    assert jq.redis.llen(jq.key("delayed", str(int(reaper_run_at.timestamp())))) == 1
    assert jq.redis.get(jq.key("stat", "processed")) == "1"


def test_a_workers_own_retry_is_scheduled_while_it_holds_the_job(jq: Any):
    worker_id, reservation = _reserve(jq)
    run_at = datetime(2030, 1, 1, tzinfo=UTC)
    report = Report(action="retry", error=ERROR, run_at=run_at)
    assert apply_report(jq.broker, worker_id, reservation, report, defer=True)
    assert jq.redis.llen(jq.key("delayed", str(int(run_at.timestamp())))) == 1
    assert jq.redis.get(jq.key("worker", worker_id)) is None
