"""``RedisBackend`` (``jobqueue/backends/redis.py``): Django's Tasks API on Redis, in Resque's
wire format, against a real Redis and real ``manage.py worker`` processes.

What is pinned here: the bytes ``enqueue()`` writes and that it writes them in one round trip;
that nothing is written for arguments JSON cannot carry; the ``TaskResult`` a caller gets back
at every stage; the feature flags and the behaviour behind each; Django's signals; the bulk,
async and ``enqueue_to`` entry points; and ``validate_task``'s refusals.

Longer than 500 lines on purpose: it is the one place that pins the Django-facing contract of
the backend, and splitting it would scatter one module's behaviour over several files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import gc
import json
import math
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from asgiref.sync import SyncToAsync

import jobqueue
from jobqueue.backends.redis import RedisBackend
from jobqueue.backends.results import gc_paused, result_copies
from jobqueue.compat import (
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
)
from jobqueue.exceptions import InvalidTaskArguments
from tests.redis_support import sent_packets
from tests.testapp import tasks

RESULT_ID = re.compile(r"^[0-9a-f]{32}$")
ISO_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
SIGNAL_PROBE = "tests.testapp.signal_probe"


def no_context(value: int) -> int:
    """Module level, but without the ``context`` parameter ``takes_context`` needs."""
    return value


# ------------------------------------------------------------------ helpers
def _queue(jq, queue: str = "default") -> list[str]:
    return jq.redis.lrange(jq.key("queue", queue), 0, -1)


def _ordered(raw: str) -> list[tuple[str, Any]]:
    return json.loads(raw, object_pairs_hook=list)


def _keys(jq) -> set[str]:
    return set(jq.redis.scan_iter(match=f"{jq.namespace}:*", count=1000))


def _raw_client(jq) -> redis.Redis:
    return redis.Redis.from_url(jq.url)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _set_options(settings, **options: Any) -> None:
    config = dict(settings.TASKS["default"])
    config["OPTIONS"] = {**config["OPTIONS"], **options}
    settings.TASKS = {**settings.TASKS, "default": config}


def _set_queues(settings, queues: list[str]) -> None:
    settings.TASKS = {**settings.TASKS, "default": {**settings.TASKS["default"], "QUEUES": queues}}




def _round_trips(jq: Any) -> Any:
    return sent_packets(jq.broker.client)


def _warm_up(jq) -> None:
    """Open the connection and load the scripts (a fresh Redis answers NOSCRIPT once)."""
    tasks.add.using(queue_name="warm-up").enqueue(0, 0)
    jq.broker.client.ping()


def _probe_worker(jq, monkeypatch, tmp_path, *queues: str):
    """Run a burst worker that imports ``signal_probe`` (so it records Django's signals)."""
    overrides = tmp_path / "jobqueue-overrides.json"
    overrides.write_text(json.dumps({"TASK_MODULES": [SIGNAL_PROBE]}))
    monkeypatch.setenv("JOBQUEUE_TEST_POOL_FILE", str(overrides))
    proc = jq.run_worker("--burst", "-q", ",".join(queues or ("default",)),
                         "--settings", "tests.settings_pool")
    assert proc.returncode == 0, proc.stderr
    return proc


def _run(jq, queue: str = "default") -> None:
    proc = jq.run_worker("--burst", "-q", queue)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ the payload
def test_enqueue_writes_resque_payload_with_class_and_args_first(jq):
    result = tasks.echo.enqueue(1, "two", flag=True)
    [raw] = _queue(jq)
    assert [key for key, _ in _ordered(raw)] == ["class", "args", "id", "kwargs", "enqueued_at"]
    body = json.loads(raw)
    assert body["class"] == "tests.testapp.tasks.echo"
    assert body["args"] == [1, "two"]
    assert body["id"] == result.id
    assert body["kwargs"] == {"flag": True}
    assert ISO_MICROS.match(body["enqueued_at"])
    assert body["enqueued_at"] == _iso(result.enqueued_at)


def test_enqueue_adds_the_queue_to_the_queues_set(jq):
    tasks.add.using(queue_name="reports").enqueue(1, 2)
    tasks.on_mail_queue.enqueue()
    assert jq.redis.smembers(jq.key("queues")) == {"reports", "mail"}
    assert len(_queue(jq, "reports")) == 1 and len(_queue(jq, "mail")) == 1
    assert _queue(jq) == []


def test_enqueue_writes_compact_raw_utf8_json_byte_for_byte(jq):
    result = tasks.echo.enqueue("ünïcødé € 😀", [1.5, None], note="naïve, \"quoted\"")
    [raw] = _raw_client(jq).lrange(jq.key("queue", "default"), 0, -1)
    expected = (
        '{"class":"tests.testapp.tasks.echo","args":["ünïcødé € 😀",[1.5,null]],'
        f'"id":"{result.id}","kwargs":{{"note":"naïve, \\"quoted\\""}},'
        f'"enqueued_at":"{_iso(result.enqueued_at)}"}}'
    ).encode()
    assert raw == expected
    assert b"\\u" not in raw  # raw UTF-8, never \u escapes


def test_a_prioritised_job_carries_its_priority_before_enqueued_at(jq):
    result = tasks.add.using(priority=10).enqueue(1, 2)
    assert _queue(jq) == []  # not on the plain Resque list
    [(raw, score)] = jq.redis.zrange(jq.key("jobqueue", "priority", "default"), 0, -1,
                                     withscores=True)
    assert [key for key, _ in _ordered(raw)] == [
        "class", "args", "id", "kwargs", "priority", "enqueued_at"]
    assert json.loads(raw)["priority"] == 10 and json.loads(raw)["id"] == result.id
    assert score > (100 - 10) * 10**12
    assert jq.redis.sismember(jq.key("queues"), "default")


@pytest.mark.parametrize("variant", ["plain", "priority", "delayed"])
def test_enqueue_is_one_round_trip(jq, variant):
    _warm_up(jq)
    chosen = {"plain": tasks.add, "priority": tasks.add.using(priority=5),
              "delayed": tasks.add.using(run_after=timedelta(hours=1))}[variant]
    with _round_trips(jq) as packets:
        result = chosen.enqueue(1, 2)
    assert len(packets) == 1, packets
    assert result.id.encode() in packets[0]  # job and result record in that same packet
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY


def test_enqueue_stores_the_ready_result_with_the_pending_ttl(jq, settings):
    _set_options(settings, PENDING_RESULT_TTL=900)
    result = tasks.echo.enqueue("x", key=(1, 2))
    key = jq.key("jobqueue", "result", result.id)
    stored = jq.redis.hgetall(key)
    # Compact: the status, and the queue entry's exact bytes (task, args, kwargs, priority
    # and enqueued_at are read from them); default queue and backend are left out.
    [raw] = _queue(jq)
    assert stored == {"status": "READY", "payload": raw}
    found = tasks.echo.get_result(result.id)
    assert found.task.module_path == "tests.testapp.tasks.echo"
    assert (found.args, found.kwargs) == (["x"], {"key": [1, 2]})
    assert 0 < jq.redis.ttl(key) <= 900


def test_a_result_names_its_queue_and_backend_when_not_the_default(jq, settings):
    settings.TASKS = {**settings.TASKS, "other": {**settings.TASKS["default"]}}
    chosen = tasks.echo.using(queue_name="reports", priority=-4, backend="other")
    result = chosen.enqueue(1)
    stored = jq.redis.hgetall(jq.key("jobqueue", "result", result.id))
    [raw] = jq.redis.zrange(jq.key("jobqueue", "priority", "reports"), 0, -1)
    assert stored == {"status": "READY", "payload": raw, "queue": "reports",
                      "backend": "other"}
    found = task_backends["other"].get_result(result.id)
    assert (found.task.queue_name, found.task.priority, found.backend) == ("reports", -4,
                                                                          "other")
    assert found.enqueued_at == result.enqueued_at and found.args == [1]


def test_a_result_stored_in_the_full_layout_is_still_read(jq):
    # What earlier versions wrote at enqueue: every field spelled out, no payload.
    key = jq.key("jobqueue", "result", "f" * 32)
    jq.redis.hset(key, mapping={
        "task": "tests.testapp.tasks.echo", "status": "READY", "queue": "mail",
        "priority": "7", "backend": "default", "args": '[1,"x"]', "kwargs": '{"k":true}',
        "errors": "[]", "worker_ids": "[]", "enqueued_at": "2026-01-02T03:04:05.000006Z"})
    found = tasks.echo.get_result("f" * 32)
    assert found.status == TaskResultStatus.READY
    assert (found.args, found.kwargs, found.backend) == ([1, "x"], {"k": True}, "default")
    assert (found.task.queue_name, found.task.priority) == ("mail", 7)
    assert found.enqueued_at == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (found.errors, found.worker_ids, found.started_at) == ([], [], None)


def test_enqueue_returns_a_ready_task_result(jq):
    before = datetime.now(UTC)
    result = tasks.echo.enqueue(1, (2, 3), key={"nested": (4,)})
    assert RESULT_ID.match(result.id)
    assert result.status == TaskResultStatus.READY
    assert result.task.func is tasks.echo.func
    assert result.args == [1, [2, 3]]  # tuples became lists (Django's rule)
    assert result.kwargs == {"key": {"nested": [4]}}
    assert result.backend == "default"
    assert before <= result.enqueued_at <= datetime.now(UTC)
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None,) * 3
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_every_enqueue_gets_a_new_id(jq):
    ids = {tasks.add.enqueue(1, 1).id for _ in range(20)}
    assert len(ids) == 20


# ------------------------------------------------------------------ arguments that are not JSON
NOT_JSON = [
    pytest.param((datetime(2030, 1, 1, tzinfo=UTC),), {}, "datetime", "args[0]", id="datetime"),
    pytest.param((1, {1, 2}), {}, "set", "args[1]", id="set"),
    pytest.param((object(),), {}, "object", "args[0]", id="object"),
    pytest.param((Decimal("1.5"),), {}, "Decimal", "args[0]", id="decimal"),
    pytest.param((b"raw",), {}, "bytes", "args[0]", id="bytes"),
    pytest.param(({1: "x"},), {}, "key 1 is a int", "args[0]", id="int-key"),
    pytest.param(({(1, 2): "x"},), {}, "tuple", "args[0]", id="tuple-key"),
    pytest.param((float("nan"),), {}, "nan", "args[0]", id="nan"),
    pytest.param((), {"ratio": float("inf")}, "inf", "kwargs['ratio']", id="inf"),
    pytest.param((), {"when": datetime(2030, 1, 1, tzinfo=UTC)}, "datetime", "kwargs['when']",
                 id="kwarg-datetime"),
    pytest.param((), {"a": [1, {"b": {1}}]}, "set", "kwargs['a'][1]['b']", id="nested"),
]


@pytest.mark.parametrize(("args", "kwargs", "what", "where"), NOT_JSON)
def test_arguments_json_cannot_carry_raise_naming_them_and_write_nothing(jq, args, kwargs,
                                                                         what, where):
    with pytest.raises(InvalidTaskArguments) as caught:
        tasks.echo.enqueue(*args, **kwargs)
    assert isinstance(caught.value, TypeError)
    message = str(caught.value)
    assert message.startswith("Arguments of tests.testapp.tasks.echo ")
    assert what in message and where in message
    assert _keys(jq) == set()  # no queue entry, no result, no queue name


def test_json_arguments_of_every_kind_are_accepted(jq):
    value = {"s": "x", "i": -3, "f": 2.5, "t": True, "n": None, "l": [1, [2]], "d": {"k": {}}}
    result = tasks.echo.enqueue(value, [value], big=12345678901234567890)
    stored = tasks.echo.get_result(result.id)
    assert stored.args == [value, [value]]
    assert stored.kwargs == {"big": 12345678901234567890}


class Level(enum.IntEnum):
    LOW = 1


class Label(str):
    pass


LEGAL = [
    pytest.param((), {}, id="nothing"),
    pytest.param((1, -2, 2.5, -0.0, True, None, "x"), {"s": "é", "big": 2**70}, id="scalars"),
    pytest.param(((1, (2, [3, (4,)])),), {"t": (1, 2)}, id="tuples"),
    pytest.param(([{"a": [{"b": {}}]}],), {"d": {"e": [[], {}]}}, id="nested"),
    pytest.param((Level.LOW, Label("x")), {"k": Level.LOW}, id="subclasses"),
    pytest.param(([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],), {},
                 id="deep"),
    pytest.param(({"ü": "😀", "\u2028": "/"},), {}, id="unicode-keys"),
]


@pytest.mark.parametrize(("args", "kwargs"), LEGAL)
def test_the_quick_argument_check_agrees_with_the_full_one(args, kwargs):
    from jobqueue.backends.results import _checked_arguments, json_arguments

    quick, full = json_arguments("t", args, kwargs), _checked_arguments("t", args, kwargs)
    assert quick == full
    assert [type(v) for v in quick[0]] == [type(v) for v in full[0]]
    assert quick[0] is not args and quick[1] is not kwargs  # copies, never the caller's


@pytest.mark.parametrize(("args", "kwargs"), [
    pytest.param(("bad \udcff",), {}, id="lone-surrogate"),
    pytest.param((), {"bad \ud800": 1}, id="lone-surrogate-key"),
    pytest.param((float("-inf"),), {}, id="inf"),
    pytest.param(([1, {2: "x"}],), {}, id="int-key"),
])
def test_what_the_quick_check_leaves_to_the_full_one_is_still_refused(jq, args, kwargs):
    with pytest.raises(InvalidTaskArguments, match=r"^Arguments of tests\.testapp\.tasks\.echo "):
        tasks.echo.enqueue(*args, **kwargs)
    assert _keys(jq) == set()


def test_a_task_is_validated_once_per_backend_unless_it_has_run_after(jq, monkeypatch):
    from jobqueue.compat import BaseTaskBackend

    backend = tasks.add.get_backend()
    calls: list[Any] = []
    original = BaseTaskBackend.validate_task

    def counting(self, task):
        calls.append(task)
        return original(self, task)

    monkeypatch.setattr(BaseTaskBackend, "validate_task", counting)
    chosen = tasks.add.using(queue_name="once")  # validated here, by Django
    for _ in range(3):
        chosen.enqueue(1, 2)
    assert calls == [chosen]
    later = tasks.add.using(run_after=timedelta(hours=1))
    later.enqueue(1, 2)
    later.enqueue(1, 2)
    assert calls[1:] == [later] * 3  # using() once, then each enqueue
    assert backend is tasks.add.get_backend()


# ------------------------------------------------------------------ get_result
def test_get_result_returns_the_stored_ready_result(jq):
    enqueued = tasks.echo.using(queue_name="reports", priority=3).enqueue(7, k="v")
    found = task_backends["default"].get_result(enqueued.id)
    for name in ("id", "status", "enqueued_at", "started_at", "finished_at",
                 "last_attempted_at", "args", "kwargs", "backend", "errors", "worker_ids"):
        assert getattr(found, name) == getattr(enqueued, name), name
    assert found.task.func is tasks.echo.func
    assert (found.task.queue_name, found.task.priority) == ("reports", 3)


def test_get_result_of_a_successful_job(jq):
    result = tasks.add.enqueue(20, 22)
    _run(jq)
    found = tasks.add.get_result(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL
    assert found.return_value == 42
    assert found.is_finished
    assert found.enqueued_at == result.enqueued_at
    assert found.enqueued_at <= found.started_at <= found.finished_at
    assert found.last_attempted_at == found.started_at  # first and only attempt
    [worker_id] = found.worker_ids
    assert re.match(r"^[^:]+:\d+:default$", worker_id)
    assert found.attempts == 1 and found.errors == []


def test_get_result_of_a_failed_job(jq):
    result = tasks.boom.enqueue("it broke")
    _run(jq)
    found = tasks.boom.get_result(result.id)
    assert found.status == TaskResultStatus.FAILED
    assert found.is_finished and found.finished_at is not None
    [error] = found.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "Traceback (most recent call last)" in error.traceback
    assert "ValueError: it broke" in error.traceback
    assert len(found.worker_ids) == 1
    with pytest.raises(ValueError, match="failed"):
        _ = found.return_value


def test_refresh_reloads_the_result(jq):
    result = tasks.add.enqueue(1, 2)
    assert result.status == TaskResultStatus.READY
    _run(jq)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert result.finished_at is not None and len(result.worker_ids) == 1


def test_an_unknown_id_raises_task_result_does_not_exist(jq):
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("0" * 32)
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("not-an-id")


def test_task_get_result_checks_the_task(jq):
    result = tasks.add.enqueue(1, 2)
    assert tasks.add.get_result(result.id).task.func is tasks.add.func
    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)


def test_a_finished_result_is_kept_for_a_day_by_default(jq):
    result = tasks.add.enqueue(1, 2)
    key = jq.key("jobqueue", "result", result.id)
    assert 86400 < jq.redis.ttl(key) <= 30 * 86400  # PENDING_RESULT_TTL while unfinished
    _run(jq)
    assert tasks.add.get_result(result.id).status == TaskResultStatus.SUCCESSFUL
    assert 0 < jq.redis.ttl(key) <= 86400


def test_a_finished_result_is_kept_for_the_configured_result_ttl(jq, settings):
    # The worker's own options decide, so this one runs in this process, with these settings.
    from jobqueue.worker import Worker

    _set_options(settings, RESULT_TTL=120, PENDING_RESULT_TTL=5000)
    ok, bad = tasks.add.enqueue(1, 2), tasks.boom.enqueue()
    for result in (ok, bad):
        assert 120 < jq.redis.ttl(jq.key("jobqueue", "result", result.id)) <= 5000
    worker = Worker(jq.broker, ["default"], fork=False, burst=True,
                    manage_db_connections=False, backend_class=RedisBackend)
    assert worker.work() == 2
    assert tasks.add.get_result(ok.id).status == TaskResultStatus.SUCCESSFUL
    assert tasks.boom.get_result(bad.id).status == TaskResultStatus.FAILED
    for result in (ok, bad):
        assert 0 < jq.redis.ttl(jq.key("jobqueue", "result", result.id)) <= 120


def test_an_expired_result_does_not_exist(jq):
    result = tasks.add.enqueue(1, 2)
    key = jq.key("jobqueue", "result", result.id)
    jq.redis.pexpire(key, 1)
    jq.wait_for(lambda: not jq.redis.exists(key), message="the result to expire")
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_the_result_of_a_task_no_longer_registered_can_still_be_read(jq):
    result = tasks.add.enqueue(1, 2)
    jq.redis.hset(jq.key("jobqueue", "result", result.id), "task", "gone.tasks.renamed")
    found = task_backends["default"].get_result(result.id)
    assert found.status == TaskResultStatus.READY
    assert found.task.module_path != tasks.add.module_path
    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(result.id)


# ------------------------------------------------------------------ feature flags
def test_the_feature_flags(jq):
    backend = task_backends["default"]
    assert isinstance(backend, RedisBackend)
    for flag in ("supports_defer", "supports_priority", "supports_async_task",
                 "supports_get_result"):
        assert getattr(RedisBackend, flag) is True, flag
        assert getattr(backend, flag) is True, flag


def test_defer_with_a_datetime_stores_a_delayed_job(jq):
    when = datetime.now(UTC) + timedelta(hours=2)
    result = tasks.add.using(run_after=when).enqueue(1, 2)
    assert _queue(jq) == []
    due = math.ceil(when.timestamp())
    assert jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1) == [str(due)]
    [item] = jq.redis.lrange(jq.key("delayed", str(due)), 0, -1)
    assert [key for key, _ in _ordered(item)][:3] == ["class", "args", "queue"]
    assert json.loads(item)["id"] == result.id
    found = tasks.add.get_result(result.id)
    assert found.status == TaskResultStatus.READY
    stored_run_after = jq.redis.hget(jq.key("jobqueue", "result", result.id), "run_after")
    assert stored_run_after == _iso(when)


def test_defer_with_a_timedelta_counts_from_now(jq):
    before = datetime.now(UTC)
    result = tasks.add.using(run_after=timedelta(minutes=10)).enqueue(1, 2)
    after = datetime.now(UTC)
    [due] = jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1)
    assert (before + timedelta(minutes=10)).timestamp() <= int(due)
    assert int(due) <= math.ceil((after + timedelta(minutes=10)).timestamp())
    assert _queue(jq) == []
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY


def test_a_run_after_in_the_past_is_queued_at_once(jq):
    tasks.add.using(run_after=datetime.now(UTC) - timedelta(minutes=1)).enqueue(1, 2)
    assert len(_queue(jq)) == 1
    assert jq.redis.zcard(jq.key("delayed_queue_schedule")) == 0


def test_a_naive_run_after_is_refused_with_use_tz(jq):
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))
    assert _keys(jq) == set()


def test_priority_orders_jobs_within_a_queue(jq):
    tasks.record.using(priority=-10).enqueue("low")
    tasks.record.enqueue("zero-1")
    tasks.record.using(priority=50).enqueue("high")
    tasks.record.enqueue("zero-2")
    tasks.record.using(priority=5).enqueue("medium")
    _run(jq)
    ran = [entry.split(":")[0] for entry in jq.redis.lrange(jq.key("test:record"), 0, -1)]
    assert ran == ["high", "medium", "zero-1", "zero-2", "low"]


def test_an_async_task_runs_in_the_worker(jq):
    result = tasks.async_add.enqueue(30, 12)
    _run(jq)
    found = tasks.async_add.get_result(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL and found.return_value == 42


def test_a_result_can_be_read_through_any_backend_instance(jq, settings):
    result = tasks.add.enqueue(1, 2)
    other = RedisBackend("default", settings.TASKS["default"])
    assert other.get_result(result.id).id == result.id


# ------------------------------------------------------------------ the task context
def test_a_context_task_sees_attempt_one_on_its_first_run(jq):
    result = tasks.with_context.enqueue(9)
    _run(jq)
    found = tasks.with_context.get_result(result.id)
    assert found.status == TaskResultStatus.SUCCESSFUL
    assert found.return_value == {"attempt": 1, "id": result.id, "value": 9}


# ------------------------------------------------------------------ signals
def test_task_enqueued_is_sent_with_the_backend_class(jq):
    seen: list[tuple[Any, Any]] = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    [(sender, task_result)] = seen
    assert sender is RedisBackend
    assert task_result.id == result.id and task_result.status == TaskResultStatus.READY


def test_a_receiver_that_raises_does_not_break_enqueue(jq):
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("receiver bug")

    task_enqueued.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(broken)
    assert result.status == TaskResultStatus.READY
    assert json.loads(_queue(jq)[0])["id"] == result.id


def test_task_started_and_finished_are_sent_in_the_worker(jq, monkeypatch, tmp_path):
    ok = tasks.add.enqueue(1, 2)
    bad = tasks.boom.enqueue()
    _probe_worker(jq, monkeypatch, tmp_path)
    records = [line.split("|") for line in jq.redis.lrange(jq.key("test:signals"), 0, -1)]
    sender = "jobqueue.backends.redis.RedisBackend"
    assert [r[:4] for r in records] == [
        ["started", sender, ok.id, "RUNNING"],
        ["finished", sender, ok.id, "SUCCESSFUL"],
        ["started", sender, bad.id, "RUNNING"],
        ["finished", sender, bad.id, "FAILED"],
    ]
    # Sent in the process that ran the job, never in this one.
    assert str(os.getpid()) not in {r[4] for r in records}


# ------------------------------------------------------------------ enqueue_many
def test_enqueue_many_writes_every_job_in_one_round_trip(jq):
    _warm_up(jq)
    backend = tasks.echo.get_backend()
    calls = [((i,), {"n": str(i)}) for i in range(50)]
    with _round_trips(jq) as packets:
        results = backend.enqueue_many(tasks.echo, calls)
    assert len(packets) == 1
    assert [r.args for r in results] == [[i] for i in range(50)]
    assert all(r.status == TaskResultStatus.READY for r in results)
    assert len({r.id for r in results}) == 50
    assert [json.loads(raw)["id"] for raw in _queue(jq)] == [r.id for r in results]
    assert tasks.echo.get_result(results[7].id).kwargs == {"n": "7"}


def test_enqueue_many_sends_a_round_trip_per_thousand_jobs(jq):
    _warm_up(jq)
    backend = tasks.add.get_backend()
    with _round_trips(jq) as packets:
        results = backend.enqueue_many(tasks.add, [((i, i), {}) for i in range(1500)])
    assert len(packets) == 2
    assert [json.loads(raw)["args"][0] for raw in _queue(jq)] == list(range(1500))
    assert len(results) == 1500


def test_enqueue_many_validates_every_call_before_writing_anything(jq):
    backend = tasks.echo.get_backend()
    calls = [((1,), {}), ((2,), {}), ((datetime.now(UTC),), {}), ((4,), {})]
    with pytest.raises(InvalidTaskArguments, match=r"args\[0\]"):
        backend.enqueue_many(tasks.echo, calls)
    assert _keys(jq) == set()


def test_enqueue_many_sends_task_enqueued_for_each_job(jq):
    seen: list[str] = []

    def receiver(sender, task_result, **kwargs):
        assert sender is RedisBackend
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        results = tasks.add.get_backend().enqueue_many(tasks.add, [((1, 2), {}), ((3, 4), {})])
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [r.id for r in results]


def test_enqueue_many_signals_each_job_once_after_redis_stored_it(jq):
    seen: list[tuple[str, str | None]] = []

    def receiver(sender, task_result, **kwargs):  # asks Redis over another connection
        key = jq.key("jobqueue", "result", task_result.id)
        seen.append((task_result.id, jq.redis.hget(key, "status")))

    task_enqueued.connect(receiver)
    try:  # two round trips: the first 1,000 are signalled while the rest are stored
        results = tasks.add.get_backend().enqueue_many(tasks.add,
                                                       [((i, i), {}) for i in range(1500)])
    finally:
        task_enqueued.disconnect(receiver)
    assert [result_id for result_id, _ in seen] == [r.id for r in results]
    assert {status for _, status in seen} == {"READY"}
    assert len({r.id for r in results}) == 1500 and all(len(r.id) == 32 for r in results)


def test_enqueue_many_results_equal_ordinary_task_results_with_lists_of_their_own(jq):
    calls = [((i, i), {}) for i in range(3)] + [((), {"a": [1, (2, 3)]})]
    results = tasks.echo.get_backend().enqueue_many(tasks.echo, calls)
    for result, (args, kwargs) in zip(results, calls, strict=True):
        ordinary = TaskResult(
            task=tasks.echo, id=result.id, status=TaskResultStatus.READY,
            enqueued_at=result.enqueued_at, started_at=None, finished_at=None,
            last_attempted_at=None, args=list(args), kwargs=kwargs, backend="default",
            errors=[], worker_ids=[])
        assert result == ordinary
        assert result.kwargs == ordinary.kwargs  # the tuple is a list, as Django makes it
    assert len({id(r.errors) for r in results}) == len({id(r.worker_ids) for r in results}) == 4
    results[0].errors.append("x")
    assert results[1].errors == []
    assert tasks.echo.get_backend().get_result(results[3].id).kwargs == {"a": [1, [2, 3]]}


@pytest.mark.parametrize("slots", [True, False])
def test_result_copies_set_every_field_with_or_without_slots(slots):
    @dataclasses.dataclass(frozen=True, slots=slots, kw_only=True)
    class Result:  # a stand-in: Django's TaskResult has slots, another class may not
        id: str
        args: list[Any]
        kwargs: dict[str, Any]
        status: str
        errors: list[str]

    template = Result(id="", args=[], kwargs={}, status="READY", errors=[])
    copy = result_copies(template)  # type: ignore[arg-type]
    first, second = copy("a", [1], {"k": 2}), copy("b", [], {})
    assert first == Result(id="a", args=[1], kwargs={"k": 2}, status="READY", errors=[])
    assert second == Result(id="b", args=[], kwargs={}, status="READY", errors=[])
    assert first.errors is not second.errors is not template.errors
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = "RUNNING"  # type: ignore[misc]


def test_enqueue_many_pauses_the_cyclic_collector_and_resumes_it(jq):
    seen: list[bool] = []

    def receiver(sender, task_result, **kwargs):
        seen.append(gc.isenabled())

    task_enqueued.connect(receiver)
    try:
        tasks.echo.get_backend().enqueue_many(tasks.echo, [((i,), {}) for i in range(3)])
        assert seen == [False, False, False] and gc.isenabled()
        gc.disable()  # a caller that turned it off keeps it off
        try:
            tasks.echo.get_backend().enqueue_many(tasks.echo, [((1,), {})])
            assert not gc.isenabled()
        finally:
            gc.enable()
        with pytest.raises(InvalidTaskArguments):  # a refused call leaves it on
            tasks.echo.get_backend().enqueue_many(tasks.echo, [((object(),), {})])
        assert gc.isenabled()
    finally:
        task_enqueued.disconnect(receiver)


def test_gc_paused_resumes_the_collector_after_an_error():
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_enqueue_many_refuses_run_after(jq):
    delayed = tasks.add.using(run_after=timedelta(hours=1))
    with pytest.raises(InvalidTask, match="run_after"):
        delayed.get_backend().enqueue_many(delayed, [((1, 2), {})])
    assert _keys(jq) == set()


def test_enqueue_many_on_prioritised_and_named_queues(jq):
    chosen = tasks.add.using(queue_name="bulk", priority=9)
    results = chosen.get_backend().enqueue_many(chosen, [((1, 1), {}), ((2, 2), {})])
    members = jq.redis.zrange(jq.key("jobqueue", "priority", "bulk"), 0, -1)
    assert [json.loads(m)["id"] for m in members] == [r.id for r in results]
    assert jq.redis.sismember(jq.key("queues"), "bulk")


def test_enqueue_many_returns_what_get_result_reads_back(jq):
    chosen = tasks.echo.using(queue_name="bulk", priority=-3)
    before = datetime.now(UTC)
    results = chosen.get_backend().enqueue_many(chosen, [
        ((1, (2, 3)), {"k": (4,)}), ((), {}), (("ü",), {"n": None})])
    assert before <= results[0].enqueued_at <= datetime.now(UTC)
    assert len({r.enqueued_at for r in results}) == 1  # one timestamp per call
    assert [r.args for r in results] == [[1, [2, 3]], [], ["ü"]]  # JSON-normalised
    assert [r.kwargs for r in results] == [{"k": [4]}, {}, {"n": None}]
    for result in results:
        found = tasks.echo.get_result(result.id)
        for name in ("id", "status", "enqueued_at", "started_at", "finished_at",
                     "last_attempted_at", "args", "kwargs", "backend", "errors", "worker_ids"):
            assert getattr(found, name) == getattr(result, name), name
        assert (found.task.queue_name, found.task.priority) == ("bulk", -3)
        assert result.task.func is tasks.echo.func
    stored = jq.redis.zrange(jq.key("jobqueue", "priority", "bulk"), 0, -1)
    assert [json.loads(raw)["id"] for raw in stored] == [r.id for r in results]
    assert [key for key, _ in _ordered(stored[0])] == [
        "class", "args", "id", "kwargs", "priority", "enqueued_at"]


def test_enqueue_many_resends_a_chunk_after_a_script_flush_and_stores_each_job_once(
        jq, monkeypatch):
    # The first chunk meets NOSCRIPT and is sent again: the next chunk, encoded while Redis
    # worked on the first, is encoded and sent once; every job is stored and signalled
    # once, in order.
    _warm_up(jq)
    seen: list[str] = []
    packed: list[str] = []
    evalsha = jq.broker._evalsha
    monkeypatch.setattr(jq.broker, "_evalsha",
                        lambda name, keys, args: packed.append(name) or evalsha(name, keys, args))

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    jq.redis.script_flush()
    task_enqueued.connect(receiver)
    try:
        with _round_trips(jq) as packets:
            results = tasks.add.get_backend().enqueue_many(
                tasks.add, [((i, i), {}) for i in range(2500)])
    finally:
        task_enqueued.disconnect(receiver)
    assert len(packets) == 3 + 2  # three chunks, and the NOSCRIPT one's load and resend
    assert packed == ["push"] * 3  # each chunk encoded once, the resend included
    assert [json.loads(raw)["args"][0] for raw in _queue(jq)] == list(range(2500))
    assert seen == [r.id for r in results]
    assert [json.loads(raw)["id"] for raw in _queue(jq)] == [r.id for r in results]


def test_enqueue_many_of_nothing_writes_nothing(jq):
    assert tasks.add.get_backend().enqueue_many(tasks.add, []) == []
    assert _keys(jq) == set()


# ------------------------------------------------------------------ async API
@pytest.fixture
def sync_to_async_thread_stopped() -> Iterator[None]:
    """When the test ends, stop the thread that ``sync_to_async`` started during it.

    Django's ``aenqueue`` and ``aget_result`` call the sync methods through asgiref's
    ``sync_to_async``, which runs them on a one-thread executor kept for the life of the
    process. Left running, that thread makes every later ``os.fork()`` of the pytest process a
    fork beside a live thread (a child may deadlock; Python 3.12+ warns), and several tests
    fork. asgiref reads the executor from its class attribute on each call, so a fresh,
    unstarted one takes its place.
    """
    yield
    SyncToAsync.single_thread_executor.shutdown(wait=True)
    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)


@pytest.mark.usefixtures("sync_to_async_thread_stopped")
def test_aenqueue_and_aget_result(jq):
    async def scenario():
        result = await tasks.add.aenqueue(2, 2)
        found = await tasks.add.aget_result(result.id)
        backend_found = await task_backends["default"].aget_result(result.id)
        return result, found, backend_found

    threads_before = threading.active_count()
    result, found, backend_found = asyncio.run(scenario())
    assert threading.active_count() == threads_before + 1  # the thread the fixture stops
    assert result.status == TaskResultStatus.READY
    assert found.id == backend_found.id == result.id
    assert json.loads(_queue(jq)[0])["id"] == result.id


@pytest.mark.usefixtures("sync_to_async_thread_stopped")
def test_aget_result_of_an_unknown_id(jq):
    with pytest.raises(TaskResultDoesNotExist):
        asyncio.run(tasks.add.aget_result("f" * 32))


# ------------------------------------------------------------------ validate_task
def test_a_queue_outside_queues_is_refused(jq, settings):
    _set_queues(settings, ["default", "mail"])
    tasks.on_mail_queue.enqueue()
    with pytest.raises(InvalidTask, match="Queue 'reports' is not valid"):
        tasks.add.using(queue_name="reports")
    assert _queue(jq, "reports") == []


def test_a_task_defined_on_a_queue_later_removed_from_queues_is_refused(jq, settings):
    _set_queues(settings, ["default"])
    with pytest.raises(InvalidTask, match="Queue 'mail' is not valid"):
        tasks.on_mail_queue.enqueue()
    assert _keys(jq) == set()


def test_empty_queues_allow_any_queue(jq):
    tasks.add.using(queue_name="anything-at-all").enqueue(1, 2)
    assert len(_queue(jq, "anything-at-all")) == 1


@pytest.mark.parametrize("priority", [101, -101, 1.5])
def test_a_priority_out_of_range_is_refused(jq, priority):
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        tasks.add.using(priority=priority)


def test_the_priority_limits_are_accepted(jq):
    tasks.add.using(priority=100).enqueue(1, 1)
    tasks.add.using(priority=-100).enqueue(2, 2)
    assert jq.redis.zcard(jq.key("jobqueue", "priority", "default")) == 2


def test_takes_context_needs_a_context_parameter(jq):
    with pytest.raises(InvalidTask, match="first argument of 'context'"):
        task(takes_context=True)(no_context)


def test_a_task_must_be_a_module_level_function(jq):
    def nested() -> None:
        pass

    with pytest.raises(InvalidTask, match="module level"):
        task()(nested)


def test_bad_jobqueue_task_options_are_refused(jq):
    with pytest.raises(InvalidTask, match="max_attempts must be a whole number >= 1, got 0"):
        dataclasses.replace(tasks.add, max_attempts=0)
    with pytest.raises(InvalidTask, match="timeout must be a number of seconds > 0"):
        dataclasses.replace(tasks.add, timeout=-1)


# ------------------------------------------------------------------ jobqueue.enqueue_to
def test_enqueue_to_pushes_a_plain_resque_job_byte_for_byte(jq):
    assert jobqueue.enqueue_to("ruby", "Archive", 42, "tar") is None
    assert _raw_client(jq).lrange(jq.key("queue", "ruby"), 0, -1) == [
        b'{"class":"Archive","args":[42,"tar"]}']
    assert jq.redis.smembers(jq.key("queues")) == {"ruby"}
    assert not [k for k in _keys(jq) if ":jobqueue:result:" in k]


def test_enqueue_to_writes_raw_utf8_and_nested_values(jq):
    jobqueue.enqueue_to("ruby", "Mailer::Deliver", "zoë €", {"a": [1, None, True]}, 2.5)
    assert _raw_client(jq).lrange(jq.key("queue", "ruby"), 0, -1) == [
        '{"class":"Mailer::Deliver","args":["zoë €",{"a":[1,null,true]},2.5]}'.encode()]


def test_enqueue_to_without_arguments(jq):
    jobqueue.enqueue_to("ruby", "Cleanup")
    assert _queue(jq, "ruby") == ['{"class":"Cleanup","args":[]}']


@pytest.mark.parametrize("bad", [datetime(2030, 1, 1, tzinfo=UTC), {1, 2}, object(), {1: "a"},
                                 float("nan")], ids=["datetime", "set", "object", "int-key",
                                                     "nan"])
def test_enqueue_to_rejects_arguments_json_cannot_carry_and_writes_nothing(jq, bad):
    with pytest.raises(InvalidTaskArguments, match=r"Arguments of Archive .*args\[1\]"):
        jobqueue.enqueue_to("ruby", "Archive", 1, bad)
    assert _keys(jq) == set()


def test_enqueue_to_turns_tuples_into_lists_as_task_enqueue_does(jq):
    jobqueue.enqueue_to("ruby", "Archive", (1, 2), {"k": (3,)})
    assert _queue(jq, "ruby") == ['{"class":"Archive","args":[[1,2],{"k":[3]}]}']


@pytest.mark.parametrize(("queue", "name"), [("", "Archive"), ("ruby", ""), (None, "Archive")])
def test_enqueue_to_needs_a_queue_and_a_class_name(jq, queue, name):
    with pytest.raises(ValueError, match="needs a queue name and a class name"):
        jobqueue.enqueue_to(queue, name, 1)
    assert _keys(jq) == set()


def test_enqueue_to_uses_the_named_backend(jq, settings):
    settings.TASKS = {**settings.TASKS, "ruby": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": jq.url, "NAMESPACE": f"{jq.namespace}:ruby"}}}
    jobqueue.enqueue_to("jobs", "Archive", 1, backend="ruby")
    assert jq.redis.lrange(jq.key("ruby", "queue", "jobs"), 0, -1) == [
        '{"class":"Archive","args":[1]}']
    assert _queue(jq, "jobs") == []


def test_a_job_from_enqueue_to_runs_its_mapped_task(jq):
    jobqueue.enqueue_to("default", "Archive", 7, "zip")
    _run(jq)
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["(7, 'zip')"]
