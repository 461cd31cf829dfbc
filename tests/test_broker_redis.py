"""The hot path of ``RedisBroker`` (``jobqueue/broker/redis.py`` and its Lua scripts) on a real
Redis: reserving, acknowledging, requeueing, waiting, and the worker registry.

Every record is checked in the shape Ruby Resque writes it (``worker:<id>``, ``<ns>:failed``,
the ``stat`` counters, ``workers``, ``worker:<id>:started``, ``workers:heartbeat``), because
Ruby workers and resque-web read the same keys. The monitor's half of the broker is covered by
``test_redis_inspect.py``.

Longer than 500 lines on purpose: one test per record and step of the hot path, each short;
the monitor's half already lives apart.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import jobqueue
from jobqueue import payload
from jobqueue.broker.base import ErrorInfo, Outcome, WorkerInfo
from jobqueue.broker.redis import RedisBroker
from jobqueue.connection import get_client
from jobqueue.exceptions import BrokerUnavailable
from jobqueue.job import BadJob, Job, Reservation
from tests.redis_support import sent_packets, start_waiter
from tests.testapp import tasks

W = "testhost:4242:default"
W2 = "testhost:4343:default"
RUBY_TIME_TO_S = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000$")
HEARTBEAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
FAILED_AT = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d UTC$")
ERROR = ErrorInfo(exception_class_path="builtins.ValueError", message="it broke",
                  traceback="Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                            "ValueError: it broke\n")


# ------------------------------------------------------------------ helpers
def _ok(value: Any = None) -> Outcome:
    return Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC), return_value=value)


def _failed(error: ErrorInfo = ERROR) -> Outcome:
    return Outcome(status="FAILED", finished_at=datetime.now(UTC), error=error)


def _reserve(jq, worker: str = W, queues: tuple[str, ...] = ("default",)) -> Reservation:
    found = jq.broker.reserve(worker, list(queues))
    assert isinstance(found, Reservation), found
    return found


def _queue(jq, queue: str = "default") -> list[str]:
    return jq.redis.lrange(jq.key("queue", queue), 0, -1)


def _result(jq, result_id: str) -> dict[str, str]:
    return jq.redis.hgetall(jq.key("jobqueue", "result", result_id))


def _stat(jq, *parts: str) -> int:
    return int(jq.redis.get(jq.key("stat", *parts)) or 0)


def _ordered_keys(raw: str) -> list[str]:
    return [key for key, _ in json.loads(raw, object_pairs_hook=list)]




def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _blocked_clients(jq) -> int:
    return int(jq.redis.info("clients")["blocked_clients"])


def _register(jq, worker: str = W, **extra: str) -> None:
    jq.broker.register_worker(WorkerInfo(id=worker, host="testhost", pid=4242,
                                         queues=["default"], extra=extra))


# ------------------------------------------------------------------ reserve
def test_reserve_moves_the_payload_to_the_worker_key_in_resque_shape(jq):
    result = tasks.add.enqueue(1, 2)
    [raw] = _queue(jq)
    reservation = _reserve(jq)
    assert _queue(jq) == []
    held = jq.redis.get(jq.key("worker", W))
    run_at = payload.format_run_at(reservation.run_at)
    # Ruby's record: queue, run_at, then the payload embedded byte for byte, last. (Fields
    # other Resque clients add, such as node-resque's "worker", may sit before the payload.)
    assert held.startswith(f'{{"queue":"default","run_at":"{run_at}",')
    assert held.endswith(f'"payload":{raw}}}')
    keys = _ordered_keys(held)
    assert keys[:2] == ["queue", "run_at"] and keys[-1] == "payload"
    assert json.loads(held)["payload"] == json.loads(raw)
    assert reservation.job.raw == raw
    assert (reservation.job.id, reservation.job.task_name) == (result.id,
                                                               "tests.testapp.tasks.add")
    assert (reservation.queue, reservation.worker_id) == ("default", W)


def test_reserve_marks_the_result_running_in_the_same_step(jq):
    result = tasks.add.enqueue(1, 2)
    reservation = _reserve(jq)
    stored = _result(jq, result.id)
    assert stored["status"] == "RUNNING"
    assert stored["worker_ids"] == json.dumps([W])
    assert stored["started_at"] == stored["last_attempted_at"]
    assert payload.parse_time(stored["started_at"]) == reservation.started_at
    assert reservation.worker_ids == (W,)
    assert reservation.attempts == 1


def test_reserve_is_one_round_trip(jq):
    assert jq.broker.reserve(W, ["default"]) is None  # loads the script
    tasks.add.enqueue(1, 2)
    with sent_packets(jq.broker.client) as packets:
        reservation = jq.broker.reserve(W, ["default"])
    assert isinstance(reservation, Reservation)
    assert len(packets) == 1 and b"EVALSHA" in packets[0]


def test_a_second_attempt_keeps_started_at_and_appends_the_worker(jq):
    result = tasks.add.enqueue(1, 2)
    first = _reserve(jq)
    assert jq.broker.requeue(W, first.job, "default", ERROR)
    second = _reserve(jq, W2)
    stored = _result(jq, result.id)
    assert json.loads(stored["worker_ids"]) == [W, W2]
    assert second.worker_ids == (W, W2) and second.attempts == 2
    assert second.started_at == first.started_at
    assert payload.parse_time(stored["last_attempted_at"]) >= second.started_at


def test_concurrent_reservers_never_share_a_job(jq):
    results = tasks.add.get_backend().enqueue_many(tasks.add, [((i, i), {}) for i in range(300)])
    taken: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        mine = taken.setdefault(worker, [])
        try:
            while (reservation := jq.broker.reserve(worker, ["default"])) is not None:
                assert isinstance(reservation, Reservation)
                mine.append(reservation.job.id)
                assert jq.broker.finish(worker, reservation.job, "default", _ok())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"host:{n}:default",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    every = [job_id for ids in taken.values() for job_id in ids]
    assert sorted(every) == sorted(r.id for r in results)  # each job exactly once
    assert _stat(jq, "processed") == 300


def test_the_queue_list_is_in_priority_order(jq):
    low = tasks.add.using(queue_name="low").enqueue(1, 1)
    high = tasks.add.using(queue_name="high").enqueue(2, 2)
    first = _reserve(jq, queues=("high", "low"))
    assert (first.job.id, first.queue) == (high.id, "high")
    jq.broker.finish(W, first.job, first.queue, _ok())
    second = _reserve(jq, queues=("high", "low"))
    assert (second.job.id, second.queue) == (low.id, "low")


def test_within_a_queue_positive_priorities_then_fifo_then_negative(jq):
    ids = {}
    for name, priority in [("neg", -5), ("a", 0), ("top", 90), ("b", 0), ("mid", 10),
                           ("mid2", 10), ("neg2", -1)]:
        ids[tasks.add.using(priority=priority).enqueue(1, 1).id] = name
    order = []
    while (reservation := jq.broker.reserve(W, ["default"])) is not None:
        order.append(ids[reservation.job.id])
        jq.broker.finish(W, reservation.job, "default", _ok())
    assert order == ["top", "mid", "mid2", "a", "b", "neg2", "neg"]


def test_reserve_on_empty_queues_returns_none_and_drops_stale_wake_tokens(jq):
    jq.redis.rpush(jq.key("jobqueue", "wake", "default"), "1", "1")
    assert jq.broker.reserve(W, ["default"]) is None
    assert not jq.redis.exists(jq.key("jobqueue", "wake", "default"))
    assert not jq.redis.exists(jq.key("worker", W))
    assert jq.broker.reserve(W, []) is None


def test_paused_workers_reserve_nothing(jq):
    result = tasks.add.enqueue(1, 2)
    jq.redis.set(jq.key("pause-all-workers"), "true")
    assert jq.broker.is_paused()
    assert jq.broker.reserve(W, ["default"]) is None
    assert len(_queue(jq)) == 1
    assert _result(jq, result.id)["status"] == "READY"
    assert not jq.redis.exists(jq.key("worker", W))
    jq.redis.set(jq.key("pause-all-workers"), "false")
    assert not jq.broker.is_paused()
    assert _reserve(jq).job.id == result.id


def test_a_lost_reply_redelivers_the_job_the_worker_already_holds(jq):
    first_result = tasks.add.enqueue(1, 2)
    second_result = tasks.add.enqueue(3, 4)
    first = _reserve(jq)
    again = _reserve(jq)  # as if the first reply had been lost to a dropped connection
    assert again.job.raw == first.job.raw
    assert again.job.id == first_result.id
    assert again.started_at == first.started_at
    assert again.worker_ids == (W,)
    assert json.loads(_result(jq, first_result.id)["worker_ids"]) == [W]  # not counted twice
    assert [json.loads(raw)["id"] for raw in _queue(jq)] == [second_result.id]


@pytest.mark.parametrize(("raw", "error"), [
    ("{not json", "not valid JSON"),
    ("[1,2,3]", "must be a JSON object, got list"),
    ('{"args":[1]}', 'no "class" string'),
])
def test_an_undecodable_entry_comes_back_as_a_bad_job_kept_verbatim(jq, raw, error):
    jq.redis.rpush(jq.key("queue", "default"), raw)
    bad = jq.broker.reserve(W, ["default"])
    assert isinstance(bad, BadJob)
    assert (bad.raw, bad.queue, bad.worker_id) == (raw, "default", W)
    assert error in bad.error
    held = json.loads(jq.redis.get(jq.key("worker", W)))
    assert held["queue"] == "default"
    # Valid JSON is embedded as is; anything else as a JSON string of the exact text.
    assert held["payload"] == (raw if raw.startswith("{not") else json.loads(raw))
    again = jq.broker.reserve(W, ["default"])  # a lost reply redelivers it, still verbatim
    assert isinstance(again, BadJob) and again.raw == raw
    assert jq.broker.finish(W, bad, "default", _failed())
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    kept = json.loads(record)["payload"]
    assert kept == raw  # the exact text, as a string
    assert not jq.redis.exists(jq.key("worker", W))


# ------------------------------------------------------------------ finish
def test_finish_records_a_success(jq):
    result = tasks.add.enqueue(1, 2)
    reservation = _reserve(jq)
    outcome = _ok({"sum": 3})
    assert jq.broker.finish(W, reservation.job, "default", outcome) is True
    assert not jq.redis.exists(jq.key("worker", W))
    stored = _result(jq, result.id)
    assert stored["status"] == "SUCCESSFUL"
    assert stored["return_value"] == '{"sum":3}'
    assert stored["finished_at"] == payload.format_iso(outcome.finished_at)
    assert 0 < jq.redis.ttl(jq.key("jobqueue", "result", result.id)) <= jq.broker.result_ttl
    assert (_stat(jq, "processed"), _stat(jq, "processed", W)) == (1, 1)
    assert (_stat(jq, "failed"), _stat(jq, "failed", W)) == (0, 0)
    assert jq.redis.llen(jq.key("failed")) == 0
    minute = int(outcome.finished_at.timestamp()) // 60
    assert jq.redis.get(jq.key("jobqueue", "history", "processed", str(minute))) == "1"


def test_finish_records_a_failure_in_rubys_shape(jq):
    result = tasks.boom.enqueue("x", why="because")
    [raw] = _queue(jq)
    reservation = _reserve(jq)
    outcome = _failed()
    assert jq.broker.finish(W, reservation.job, "default", outcome) is True
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert _ordered_keys(record) == ["failed_at", "payload", "exception", "error", "backtrace",
                                     "worker", "queue", "id"]
    body = json.loads(record)
    assert FAILED_AT.match(body["failed_at"])
    assert body["failed_at"] == payload.format_failed_at(outcome.finished_at)
    assert body["payload"] == json.loads(raw)
    assert record.index(raw) > 0  # the payload is embedded with its bytes unchanged
    assert (body["exception"], body["error"]) == ("ValueError", "it broke")
    assert body["backtrace"] == ERROR.traceback.splitlines()
    assert (body["worker"], body["queue"]) == (W, "default")
    assert re.match(r"^[0-9a-f]{24}$", body["id"])
    assert (_stat(jq, "failed"), _stat(jq, "failed", W)) == (1, 1)
    assert (_stat(jq, "processed"), _stat(jq, "processed", W)) == (1, 1)  # Ruby counts both
    stored = _result(jq, result.id)
    assert stored["status"] == "FAILED"
    assert json.loads(stored["errors"]) == [
        {"exception_class_path": "builtins.ValueError", "traceback": ERROR.traceback}]
    assert "return_value" not in stored
    assert not jq.redis.exists(jq.key("worker", W))


def test_a_failed_plain_resque_job_keeps_its_plain_payload(jq):
    jobqueue.enqueue_to("default", "Archive", 42, "tar")
    reservation = _reserve(jq)
    assert reservation.job.id is None and reservation.worker_ids == ()
    jq.broker.finish(W, reservation.job, "default", _failed())
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert record.startswith('{"failed_at":"')
    assert ',"payload":{"class":"Archive","args":[42,"tar"]},"exception":"ValueError",' in record
    assert not [k for k in jq.redis.scan_iter(f"{jq.namespace}:jobqueue:result:*")]


def test_errors_accumulate_over_attempts(jq):
    result = tasks.add.enqueue(1, 2)
    first = _reserve(jq)
    jq.broker.requeue(W, first.job, "default", ERROR)
    second = _reserve(jq)
    other = ErrorInfo("builtins.KeyError", "k", "Traceback\nKeyError: 'k'\n")
    jq.broker.finish(W, second.job, "default", _failed(other))
    errors = json.loads(_result(jq, result.id)["errors"])
    assert [e["exception_class_path"] for e in errors] == ["builtins.ValueError",
                                                          "builtins.KeyError"]


def test_finish_only_if_in_flight_skips_a_job_already_settled(jq):
    tasks.add.enqueue(1, 2)
    reservation = _reserve(jq)
    assert jq.broker.finish(W, reservation.job, "default", _ok())
    assert jq.broker.finish(W, reservation.job, "default", _failed(),
                            only_if_in_flight=True) is False
    assert (_stat(jq, "processed"), _stat(jq, "failed")) == (1, 0)
    assert jq.redis.llen(jq.key("failed")) == 0


def test_finish_only_if_in_flight_skips_when_another_job_is_held(jq):
    tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    first = _reserve(jq)
    jq.broker.finish(W, first.job, "default", _ok())
    second = _reserve(jq)
    assert jq.broker.finish(W, first.job, "default", _ok(), only_if_in_flight=True) is False
    assert json.loads(jq.redis.get(jq.key("worker", W)))["payload"]["id"] == second.job.id


# ------------------------------------------------------------------ deferred acknowledgements
def test_a_deferred_ack_rides_with_the_next_reserve(jq):
    first_result = tasks.add.enqueue(1, 2)
    second_result = tasks.add.enqueue(3, 4)
    first = _reserve(jq)
    assert jq.broker.finish(W, first.job, "default", _ok(3), defer=True) is True
    # Nothing sent yet: the job is still in flight and RUNNING.
    assert jq.redis.exists(jq.key("worker", W))
    assert _result(jq, first_result.id)["status"] == "RUNNING"
    assert _stat(jq, "processed") == 0
    with sent_packets(jq.broker.client) as packets:
        second = jq.broker.reserve(W, ["default"])
    assert len(packets) == 1
    assert isinstance(second, Reservation)
    assert second.job.id == second_result.id  # the next job, not a redelivery
    stored = _result(jq, first_result.id)
    assert (stored["status"], stored["return_value"]) == ("SUCCESSFUL", "3")
    assert _stat(jq, "processed") == 1


def test_a_deferred_ack_is_idempotent(jq):
    result = tasks.boom.enqueue()
    reservation = _reserve(jq)
    outcome = _failed()
    jq.broker.finish(W, reservation.job, "default", outcome, defer=True)
    jq.broker.finish(W, reservation.job, "default", outcome, defer=True)
    assert jq.broker.reserve(W, ["default"]) is None
    assert (_stat(jq, "processed"), _stat(jq, "failed")) == (1, 1)
    assert jq.redis.llen(jq.key("failed")) == 1
    assert len(json.loads(_result(jq, result.id)["errors"])) == 1


def test_a_deferred_ack_of_a_job_settled_meanwhile_is_dropped(jq):
    result = tasks.add.enqueue(1, 2)
    reservation = _reserve(jq)
    jq.broker.finish(W, reservation.job, "default", _ok(), defer=True)
    jq.redis.delete(jq.key("worker", W))  # e.g. a reaper settled it while we were away
    assert jq.broker.reserve(W, ["default"]) is None
    assert _stat(jq, "processed") == 0
    assert _result(jq, result.id)["status"] == "RUNNING"


def test_other_commands_send_deferred_acks_first_but_a_heartbeat_does_not(jq):
    result = tasks.add.enqueue(1, 2)
    _register(jq)
    reservation = _reserve(jq)
    jq.broker.finish(W, reservation.job, "default", _ok(), defer=True)
    jq.broker.heartbeat(W)  # may come from a --no-fork worker's heartbeat thread
    assert _result(jq, result.id)["status"] == "RUNNING"
    jq.broker.queue_sizes()
    assert _result(jq, result.id)["status"] == "SUCCESSFUL"
    assert not jq.redis.exists(jq.key("worker", W))


def test_flush_sends_deferred_acks_in_one_round_trip_and_then_nothing(jq):
    result = tasks.add.enqueue(1, 2)
    reservation = _reserve(jq)
    jq.broker.finish(W, reservation.job, "default", _ok(), defer=True)
    with sent_packets(jq.broker.client) as packets:
        jq.broker.flush()
        jq.broker.flush()
    assert len(packets) == 1
    assert _result(jq, result.id)["status"] == "SUCCESSFUL"


# ------------------------------------------------------------------ requeue
def test_requeue_puts_the_job_back_at_the_head(jq):
    first_result = tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    reservation = _reserve(jq)
    jq.redis.delete(jq.key("jobqueue", "wake", "default"))
    assert jq.broker.requeue(W, reservation.job, "default", ERROR) is True
    queue = _queue(jq)
    assert queue[0] == reservation.job.raw  # the same bytes, at the head
    assert json.loads(queue[1])["args"] == [3, 4]
    assert not jq.redis.exists(jq.key("worker", W))
    assert jq.redis.llen(jq.key("jobqueue", "wake", "default")) == 1
    stored = _result(jq, first_result.id)
    assert stored["status"] == "READY"
    assert [e["exception_class_path"] for e in json.loads(stored["errors"])] == [
        "builtins.ValueError"]
    assert jq.broker.requeue(W, reservation.job, "default", None) is False  # not held any more
    assert len(_queue(jq)) == 2


def test_requeue_of_a_prioritised_job_goes_ahead_of_its_equals(jq):
    first = tasks.add.using(priority=7).enqueue(1, 1)
    second = tasks.add.using(priority=7).enqueue(2, 2)
    reservation = _reserve(jq)
    assert reservation.job.id == first.id
    assert jq.broker.requeue(W, reservation.job, "default", None)
    order = [_reserve(jq).job.id]
    jq.broker.finish(W, reservation.job, "default", _ok())
    order.append(_reserve(jq).job.id)
    assert order == [first.id, second.id]


def test_requeue_restores_a_queue_that_was_removed(jq):
    tasks.add.using(queue_name="gone").enqueue(1, 1)
    reservation = _reserve(jq, queues=("gone",))
    jq.redis.srem(jq.key("queues"), "gone")
    jq.broker.requeue(W, reservation.job, "gone", None)
    assert jq.redis.sismember(jq.key("queues"), "gone")


# ------------------------------------------------------------------ the worker registry
def test_register_worker_writes_resques_records(jq):
    _register(jq, mode="fork", version="9.9")
    assert jq.redis.smembers(jq.key("workers")) == {W}
    started = jq.redis.get(jq.key("worker", W, "started"))
    assert RUBY_TIME_TO_S.match(started), started
    server_now = datetime.fromtimestamp(jq.redis.time()[0], UTC)
    assert abs(payload.parse_time(started) - server_now) < timedelta(minutes=1)
    beat = jq.redis.hget(jq.key("workers", "heartbeat"), W)
    assert HEARTBEAT.match(beat), beat
    assert jq.redis.hgetall(jq.key("jobqueue", "worker", W)) == {
        "pid": "4242", "host": "testhost", "queues": "default", "mode": "fork",
        "version": "9.9"}


def test_heartbeat_refreshes_the_heartbeat_hash(jq):
    _register(jq)
    jq.redis.hset(jq.key("workers", "heartbeat"), W, "2001-01-01T00:00:00+00:00")
    jq.broker.heartbeat(W)
    beat = jq.redis.hget(jq.key("workers", "heartbeat"), W)
    assert HEARTBEAT.match(beat)
    assert payload.parse_time(beat) > datetime(2001, 1, 2, tzinfo=UTC)


def test_unregister_worker_removes_every_record_of_it(jq):
    _register(jq)
    _register(jq, W2)
    tasks.add.enqueue(1, 2)
    tasks.boom.enqueue()
    for outcome in (_ok(), _failed()):
        reservation = _reserve(jq)
        jq.broker.finish(W, reservation.job, "default", outcome)
    tasks.add.enqueue(5, 5)
    _reserve(jq)  # holding a job: worker:<id> exists too
    jq.broker.unregister_worker(W)
    leftover = [k for k in jq.redis.scan_iter(f"{jq.namespace}:*") if W in k]
    assert leftover == []
    assert jq.redis.smembers(jq.key("workers")) == {W2}
    assert jq.redis.hkeys(jq.key("workers", "heartbeat")) == [W2]
    # Global counters are Resque's totals and stay.
    assert (_stat(jq, "processed"), _stat(jq, "failed")) == (2, 1)


# ------------------------------------------------------------------ waiting
def _waiter(jq, queues: list[str], timeout: float, fd: int | None) -> threading.Thread:
    return start_waiter(jq.broker, queues, timeout, fd)


def test_wait_for_job_wakes_when_jobqueue_pushes(jq):
    before = _blocked_clients(jq)
    thread = _waiter(jq, ["other", "default"], 60, None)
    jq.wait_for(lambda: _blocked_clients(jq) > before, message="the BLPOP to block")
    tasks.add.enqueue(1, 2)
    thread.join(15)
    assert not thread.is_alive(), "wait_for_job did not wake up on the push"
    assert thread.errors == []  # type: ignore[attr-defined]
    assert jq.redis.llen(jq.key("jobqueue", "wake", "default")) == 0  # it took the token
    assert len(_queue(jq)) == 1  # waking never takes the job itself


def test_wait_for_job_returns_at_once_when_a_token_is_waiting(jq):
    tasks.add.enqueue(1, 2)
    thread = _waiter(jq, ["default"], 60, None)
    thread.join(15)
    assert not thread.is_alive()


def test_wait_for_job_returns_when_the_interrupt_fd_becomes_readable(jq):
    read_fd, write_fd = os.pipe()
    try:
        before = _blocked_clients(jq)
        thread = _waiter(jq, ["default"], 60, read_fd)
        jq.wait_for(lambda: _blocked_clients(jq) > before, message="the BLPOP to block")
        os.write(write_fd, b"x")
        thread.join(15)
        assert not thread.is_alive(), "wait_for_job ignored its interrupt fd"
        assert thread.errors == []  # type: ignore[attr-defined]
        # The abandoned BLPOP is gone with its connection: it cannot eat a later token.
        jq.wait_for(lambda: _blocked_clients(jq) == before, message="the BLPOP to be dropped")
        tasks.add.enqueue(1, 2)
        assert jq.redis.llen(jq.key("jobqueue", "wake", "default")) == 1
        assert _reserve(jq).job.args == [1, 2]  # and the broker still works
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_wait_for_job_without_queues_sleeps_until_interrupted(jq):
    read_fd, write_fd = os.pipe()
    try:
        thread = _waiter(jq, [], 60, read_fd)
        os.write(write_fd, b"x")
        thread.join(15)
        assert not thread.is_alive()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_wait_for_job_returns_after_its_timeout(jq):
    thread = _waiter(jq, ["default"], 0.05, None)
    thread.join(15)
    assert not thread.is_alive() and thread.errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ producing
def _noop_job(i: int, **changes: Any) -> Job:
    values: dict[str, Any] = dict(task_name="tests.testapp.tasks.echo", args=[i], id=f"{i:032x}",
                                  enqueued_at=datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=UTC))
    values.update(changes)
    return Job(**values)


def _record_of(job: Job, **changes: Any) -> payload.ResultRecord:
    values: dict[str, Any] = dict(
        id=job.id, task_name=job.task_name, status="READY", queue=job.queue,
        priority=job.priority, backend="default", args=job.args, kwargs=job.kwargs,
        enqueued_at=job.enqueued_at)
    values.update(changes)
    return payload.ResultRecord(**values)


@pytest.mark.parametrize(("args", "kwargs", "extra"), [
    ([], {}, {}), ([1, "ü € 😀", None, 2.5], {}, {}), ([], {"k": [True, {"n": None}]}, {}),
    ([[1, [2]], {"a": "\"quoted\" \\ /"}], {"x": "é"}, {}), (["bad \udcff"], {}, {}),
    ([1], {}, {"attempts": 2}),
])
@pytest.mark.parametrize("priority", [0, -7])
def test_batch_encoding_writes_what_encode_job_writes(args, kwargs, extra, priority):
    from jobqueue.broker.redis_produce import batch_encoder

    template = _noop_job(0, priority=priority, extra=extra, queue="q")
    encode = batch_encoder(template)
    for result_id in ("0123456789abcdef0123456789abcdef", "not hex \"at\" all"):
        one = Job(task_name=template.task_name, args=args, kwargs=kwargs, id=result_id,
                  queue="q", enqueued_at=template.enqueued_at, priority=priority, extra=extra)
        assert encode(result_id, args, kwargs) == payload.encode_job(one)


def test_push_many_of_mixed_jobs_keeps_each_queue_in_order_in_one_round_trip(jq):
    items = [(_noop_job(1), None), (_noop_job(2, queue="other"), None),
             (_noop_job(3, priority=5), None), (_noop_job(4), None), (_noop_job(5), None)]
    items = [(job, _record_of(job) if job.args[0] % 2 else None) for job, _ in items]
    jq.broker.push_many(items[:1])  # loads the script
    with sent_packets(jq.broker.client) as packets:
        jq.broker.push_many(items[1:])
    assert len(packets) == 1
    assert [json.loads(raw)["args"] for raw in _queue(jq)] == [[1], [4], [5]]
    assert [json.loads(raw)["args"] for raw in _queue(jq, "other")] == [[2]]
    [prioritised] = jq.redis.zrange(jq.key("jobqueue", "priority", "default"), 0, -1)
    assert prioritised == payload.encode_job(items[2][0])
    for job, record in items:
        assert jq.broker.get_result(job.id) == record  # None where none was written
    assert jq.redis.smembers(jq.key("queues")) == {"default", "other"}


def test_push_many_survives_a_script_flush_with_several_calls_in_its_round_trip(jq):
    jq.broker.push_many([(_noop_job(1), None)])
    jq.redis.script_flush()
    jq.broker.push_many([(_noop_job(2), None), (_noop_job(3, queue="other"), None)])
    assert len(_queue(jq)) == 2 and len(_queue(jq, "other")) == 1


def test_push_runs_the_callers_work_while_redis_stores_the_job(jq, monkeypatch):
    jq.broker.push(_noop_job(0), None)  # Redis knows the script (else: NOSCRIPT, sent again)
    events: list[str] = []
    cls = jq.broker.client.connection_pool.connection_class
    send, read = cls.send_packed_command, cls.read_response

    def spy_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append("sent")
        return send(self, *args, **kwargs)

    def spy_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append("read")
        return read(self, *args, **kwargs)

    monkeypatch.setattr(cls, "send_packed_command", spy_send)
    monkeypatch.setattr(cls, "read_response", spy_read)
    jq.broker.push(_noop_job(1), None, meanwhile=lambda: events.append("meanwhile"))
    assert events == ["sent", "meanwhile", "read"]
    assert len(_queue(jq)) == 2
    events.clear()
    result = tasks.add.enqueue(1, 2)  # the backend builds its TaskResult in that gap
    assert events == ["sent", "read"] and result.status == "READY"
    assert json.loads(_queue(jq)[-1])["id"] == result.id


def test_wake_tokens_are_trimmed_when_nobody_takes_them(jq):
    wake = jq.key("jobqueue", "wake", "default")
    for i in range(200):
        jq.broker.push(_noop_job(i), None)
    assert 64 <= jq.redis.llen(wake) <= 128
    tasks.echo.get_backend().enqueue_many(tasks.echo, [((i,), {}) for i in range(1000)])
    assert 64 <= jq.redis.llen(wake) <= 128
    jq.redis.delete(wake)
    tasks.echo.get_backend().enqueue_many(tasks.echo, [((i,), {}) for i in range(3)])
    assert jq.redis.llen(wake) == 3  # one token per job (at most 64 per call)


def test_enqueue_reconnects_when_redis_closed_the_connection_meanwhile(jq):
    tasks.add.enqueue(1, 1)  # this thread now keeps a connection
    jq.redis.client_kill_filter(_type="normal", skipme=True)  # e.g. Redis' idle timeout
    with sent_packets(jq.broker.client) as packets:
        tasks.add.enqueue(2, 2)
    assert len(packets) == 1  # the dead socket was noticed before anything was sent
    assert [json.loads(raw)["args"] for raw in _queue(jq)] == [[1, 1], [2, 2]]


def _clients(jq) -> int:
    return int(jq.redis.info("clients")["connected_clients"])


def test_threads_enqueue_at_once_on_their_own_connections_and_give_them_back(jq):
    from jobqueue.connection import KEPT_CONNECTIONS, lane_for

    lane = lane_for(jq.broker.client)
    tasks.add.enqueue(0, 0)
    kept = lane._kept
    errors: list[BaseException] = []

    def enqueue(n: int) -> None:
        try:
            for i in range(20):
                tasks.add.enqueue(n, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(1, KEPT_CONNECTIONS + 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(_queue(jq)) == 1 + 20 * len(threads)
    jq.wait_for(lambda: lane._kept == kept, message="the threads' connections to come back")
    pool = jq.broker.client.connection_pool
    assert len(pool._in_use_connections) == kept  # only this thread's is still taken


def test_a_forked_child_enqueues_on_its_own_connection(jq):
    tasks.add.enqueue(1, 1)  # the parent keeps a connection
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            tasks.add.enqueue(2, 2)
            code = 0
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tasks.add.enqueue(3, 3)  # the parent's connection was not disturbed by the child
    assert [json.loads(raw)["args"] for raw in _queue(jq)] == [[1, 1], [2, 2], [3, 3]]


# ------------------------------------------------------------------ Redis not there
JOB = Job(task_name="tests.testapp.tasks.add", args=[1, 2], id="a" * 32)
CALLS = {
    "push": lambda b: b.push(JOB, None),
    "push_many": lambda b: b.push_many([(JOB, None)]),
    "get_result": lambda b: b.get_result("a" * 32),
    "reserve": lambda b: b.reserve(W, ["default"]),
    "finish": lambda b: b.finish(W, JOB, "default", _ok()),
    "requeue": lambda b: b.requeue(W, JOB, "default", None),
    "is_paused": lambda b: b.is_paused(),
    "register_worker": lambda b: b.register_worker(
        WorkerInfo(id=W, host="h", pid=1, queues=["default"])),
    "heartbeat": lambda b: b.heartbeat(W),
    "unregister_worker": lambda b: b.unregister_worker(W),
    "wait_for_job": lambda b: b.wait_for_job(["default"], 1, None),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_redis_that_is_not_there_raises_broker_unavailable(call):
    port = _closed_port()
    broker = RedisBroker(get_client(f"redis://127.0.0.1:{port}/0"), "jqabsent")
    with pytest.raises(BrokerUnavailable, match=rf"^Redis is unavailable: .*127\.0\.0\.1:{port}"):
        CALLS[call](broker)


# ------------------------------------------------------------------ NOSCRIPT
def test_every_script_survives_a_script_flush(jq):
    tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    jq.redis.script_flush()
    first = _reserve(jq)
    jq.redis.script_flush()
    assert jq.broker.requeue(W, first.job, "default", None)
    jq.redis.script_flush()
    first = _reserve(jq)
    jq.redis.script_flush()
    assert jq.broker.finish(W, first.job, "default", _ok())
    jq.redis.script_flush()
    tasks.add.using(priority=3).enqueue(5, 6)
    jq.redis.script_flush()
    tasks.add.get_backend().enqueue_many(tasks.add, [((7, 8), {})])
    assert [json.loads(raw)["args"] for raw in _queue(jq)] == [[3, 4], [7, 8]]
    assert _stat(jq, "processed") == 1


def test_deferred_acks_survive_a_script_flush(jq):
    first_result = tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    first = _reserve(jq)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    jq.redis.script_flush()
    second = _reserve(jq)  # the batched EVALSHAs meet NOSCRIPT, load, and are sent again
    assert second.job.args == [3, 4]
    assert _result(jq, first_result.id)["status"] == "SUCCESSFUL"
    assert _stat(jq, "processed") == 1
