"""Delayed jobs (``run_after``) in resque-scheduler's layout, promoted exactly once by workers.

Layout (resque-scheduler ``delaying_extensions.rb``): ``delayed_queue_schedule`` zset with
member = score = epoch seconds, ``delayed:<ts>`` list of ``{"class","args","queue"}`` items,
``timestamps:<item>`` set of ``delayed:<ts>``. Ruby and node write these three keys; jobqueue
must promote what they write and write what they promote.
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from jobqueue.compat import TaskResultStatus, task_backends
from jobqueue.job import Job
from tests.testapp import tasks


def _result(result_id: str) -> Any:
    return task_backends["default"].get_result(result_id)


def _ruby_delayed_push(jq, item: str, ts: int) -> None:
    """What resque-scheduler's ``delayed_push`` does: three commands, no MULTI."""
    client = jq.broker.client
    client.rpush(jq.key("delayed", str(ts)), item)
    client.sadd(jq.key("timestamps", item), f"delayed:{ts}")
    client.zadd(jq.key("delayed_queue_schedule"), {str(ts): ts})


def _assert_no_delayed_keys(jq) -> None:
    left = [k for k in jq.redis.scan_iter(match=jq.key("*"))
            if k.startswith((jq.key("delayed"), jq.key("timestamps")))]
    assert left == []


# --------------------------------------------------------------------------- the layout
def test_bare_resque_job_is_stored_byte_for_byte_like_resque_scheduler(jq):
    run_at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    ts = int(run_at.timestamp())
    jq.broker.schedule(Job(task_name="Mail", args=[{"user_id": 5}], queue="mail"), None, run_at)
    item = '{"class":"Mail","args":[{"user_id":5}],"queue":"mail"}'
    client = jq.broker.client
    assert client.lrange(jq.key("delayed", str(ts)), 0, -1) == [item.encode()]
    assert client.smembers(jq.key("timestamps", item)) == {f"delayed:{ts}".encode()}
    assert client.zrange(jq.key("delayed_queue_schedule"), 0, -1, withscores=True) == [
        (str(ts).encode(), float(ts))]
    assert client.type(jq.key("delayed_queue_schedule")) == b"zset"


def test_django_job_is_a_resque_scheduler_item_with_jobqueue_fields_after(jq):
    run_at = datetime.now(UTC) + timedelta(hours=1, seconds=0.25)
    result = tasks.add.using(run_after=run_at).enqueue(1, 2)
    ts = math.ceil(run_at.timestamp())  # rounded up: never early
    [raw] = jq.redis.lrange(jq.key("delayed", str(ts)), 0, -1)
    body = json.loads(raw)
    assert list(body)[:3] == ["class", "args", "queue"]
    assert body["class"] == "tests.testapp.tasks.add" and body["args"] == [1, 2]
    assert body["queue"] == "default" and body["id"] == result.id
    assert jq.redis.smembers(jq.key("timestamps", raw)) == {f"delayed:{ts}"}
    assert jq.redis.zscore(jq.key("delayed_queue_schedule"), str(ts)) == ts
    assert _result(result.id).status == TaskResultStatus.READY
    assert jq.redis.llen(jq.key("queue", "default")) == 0


def test_job_due_now_or_in_the_past_is_queued_at_once(jq):
    tasks.add.using(run_after=datetime.now(UTC) - timedelta(seconds=5)).enqueue(1, 1)
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert jq.redis.zcard(jq.key("delayed_queue_schedule")) == 0


# --------------------------------------------------------------------------- interop
def test_item_scheduled_by_ruby_is_promoted_and_run_by_a_worker(jq):
    due = int(time.time()) - 1
    ruby = '{"class":"Archive","args":[35,"tar",{"k":"ü/x"}],"queue":"default"}'
    node = '{"class":"Archive","queue":"default","args":[36]}'
    _ruby_delayed_push(jq, ruby, due)
    _ruby_delayed_push(jq, node, due)
    done = jq.run_worker("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-2000:]
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["(35, 'tar', {'k': 'ü/x'})",
                                                               "(36,)"]
    _assert_no_delayed_keys(jq)
    assert jq.redis.llen(jq.key("failed")) == 0


def test_promotion_pushes_the_exact_item_bytes_onto_the_queue(jq):
    item = '{"class":"Archive","args":[1,2.5,"é"],"queue":"default"}'
    _ruby_delayed_push(jq, item, int(time.time()) - 10)
    assert jq.broker.promote_due() is None
    assert jq.broker.client.lrange(jq.key("queue", "default"), 0, -1) == [item.encode()]
    assert "default" in jq.redis.smembers(jq.key("queues"))
    _assert_no_delayed_keys(jq)


def test_promote_due_returns_the_next_due_time_and_leaves_future_items(jq):
    now = int(time.time())
    _ruby_delayed_push(jq, '{"class":"Archive","args":[1],"queue":"default"}', now - 1)
    _ruby_delayed_push(jq, '{"class":"Archive","args":[2],"queue":"default"}', now + 100)
    assert jq.broker.promote_due() == now + 100
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1) == [str(now + 100)]
    # Test helpers may promote the future explicitly.
    assert jq.broker.promote_due(until=now + 100) is None
    assert jq.redis.llen(jq.key("queue", "default")) == 2


# --------------------------------------------------------------------------- exactly once
def test_concurrent_promoters_move_each_item_exactly_once(jq):
    now = int(time.time())
    client = jq.broker.client
    pipe = client.pipeline(transaction=False)
    items = []
    for n in range(3000):
        ts = now - 1 - n % 60
        item = json.dumps({"class": "Archive", "args": [n], "queue": f"q{n % 3}"},
                          separators=(",", ":"))
        items.append(item)
        pipe.rpush(jq.key("delayed", str(ts)), item)
        pipe.sadd(jq.key("timestamps", item), f"delayed:{ts}")
        pipe.zadd(jq.key("delayed_queue_schedule"), {str(ts): ts})
    pipe.execute()

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def promote() -> None:
        try:
            barrier.wait()
            jq.broker.promote_due()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    queued = []
    for q in ("q0", "q1", "q2"):
        queued += [raw.decode() for raw in client.lrange(jq.key("queue", q), 0, -1)]
    assert sorted(queued) == sorted(items)  # every item once: none lost, none doubled
    _assert_no_delayed_keys(jq)


def test_many_workers_on_many_hosts_run_each_delayed_job_once(jq):
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    results = [tasks.record.using(run_after=run_at).enqueue(f"d{n}") for n in range(150)]
    for host in ("host-a", "host-b", "host-c"):
        jq.spawn_worker("--name", host, "--no-fork")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:record")) >= 150, timeout=60,
                message="every delayed job to run")
    jq.wait_for(lambda: all(_result(r.id).status == TaskResultStatus.SUCCESSFUL
                            for r in results), timeout=30, message="every result")
    markers = [x.split(":")[0] for x in jq.redis.lrange(jq.key("test:record"), 0, -1)]
    assert sorted(markers) == sorted(f"d{n}" for n in range(150))
    hosts = {_result(r.id).worker_ids[0].split(":")[0] for r in results}
    assert hosts <= {"host-a", "host-b", "host-c"}
    _assert_no_delayed_keys(jq)


# --------------------------------------------------------------------------- timing
def test_delayed_job_runs_within_about_a_second_of_its_due_time_and_never_early(jq):
    jq.spawn_worker("--no-fork")
    jq.wait_for(lambda: len(jq.worker_ids()) == 1, timeout=30, message="the worker")
    lateness = []
    for n in range(3):
        run_at = datetime.now(UTC) + timedelta(seconds=1.3 + 0.3 * n)
        result = tasks.add.using(run_after=run_at).enqueue(n, n)
        jq.wait_for(lambda result=result: _result(result.id).status
                    == TaskResultStatus.SUCCESSFUL, timeout=30, message="the delayed job")
        started = _result(result.id).started_at
        lateness.append((started - run_at).total_seconds())
    assert all(late >= 0 for late in lateness), lateness
    # Rounded up to the whole second (resque-scheduler's resolution) plus the promotion loop.
    assert all(late < 1.5 for late in lateness), lateness


# --------------------------------------------------------------------------- retries
def test_retries_use_the_same_layout(jq):
    result = tasks.fails_later.enqueue("r")
    before = time.time()
    done = jq.run_worker("--burst")
    assert done.returncode == 0, done.stderr[-2000:]
    [ts] = jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1)
    assert before + 1800 <= int(ts) <= time.time() + 3601  # backoff 3600 s
    [item] = jq.redis.lrange(jq.key("delayed", ts), 0, -1)
    body = json.loads(item)
    assert list(body)[:3] == ["class", "args", "queue"]
    assert body["class"] == "tests.testapp.tasks.fails_later" and body["args"] == ["r"]
    assert body["queue"] == "default" and body["id"] == result.id and body["attempts"] == 1
    assert jq.redis.smembers(jq.key("timestamps", item)) == {f"delayed:{ts}"}
    record = _result(result.id)
    assert record.status == TaskResultStatus.READY
    stored = jq.broker.get_result(result.id)
    assert stored.run_after is not None and abs(stored.run_after.timestamp() - int(ts)) <= 1
    assert len(record.errors) == 1 and len(record.worker_ids) == 1

    # Made due, it runs its second (last) attempt and then fails for good.
    jq.broker.promote_due(until=int(ts))
    done = jq.run_worker("--burst")
    final = _result(result.id)
    assert final.status == TaskResultStatus.FAILED
    assert len(final.errors) == 2 and len(final.worker_ids) == 2
    _assert_no_delayed_keys(jq)
