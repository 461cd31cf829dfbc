"""The broker's monitoring API on a real Redis: bounded reads, filtered scans, and actions that
address their target by content so they never hit the wrong job (``redis_inspect`` and
``redis_manage`` with their Lua scripts)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from jobqueue import payload
from jobqueue.broker.base import FailedFilter
from jobqueue.broker.redis_manage import make_ref, parse_ref, retry_target
from jobqueue.job import Job
from tests.monitor_support import WORKER, fail_all, register_worker
from tests.testapp.tasks import add, boom, echo

BOOM = "tests.testapp.tasks.boom"


def _failures(jq, n: int = 10) -> None:
    for i in range(n):
        (boom if i % 2 else echo).enqueue(f"m{i}", big=12345678901234567890 + i)
    fail_all(jq.broker)


# ------------------------------------------------------------------ queues
def test_queue_sizes_count_prioritised_jobs(jq):
    add.enqueue(1, 1)
    add.using(priority=5).enqueue(2, 2)
    add.using(priority=-5).enqueue(3, 3)
    assert jq.broker.queue_sizes() == {"default": 3}
    assert jq.broker.queue_size("default") == 3
    assert jq.broker.queue_size("nope") == 0


def test_peek_lists_jobs_in_the_order_workers_take_them(jq):
    add.using(priority=-5).enqueue(0, 0)
    for i in range(1, 4):
        add.enqueue(i, i)
    add.using(priority=7).enqueue(9, 9)
    order = [job.args[0] for job in jq.broker.peek("default", 0, 10)]
    assert order == [9, 1, 2, 3, 0]
    assert [job.args[0] for job in jq.broker.peek("default", 1, 3)] == [1, 2, 3]
    assert [job.args[0] for job in jq.broker.peek("default", 3, 5)] == [3, 0]
    taken = []
    while (r := jq.broker.reserve(WORKER, ["default"])) is not None:
        taken.append(r.job.args[0])
        jq.broker.finish(WORKER, r.job, r.queue, _ok())
    assert taken == order


def _ok():
    from jobqueue.broker.base import Outcome

    return Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC))


def test_peek_keeps_undecodable_entries_verbatim(jq):
    jq.redis.rpush(jq.key("queue", "odd"), "not json")
    jq.redis.sadd(jq.key("queues"), "odd")
    (bad,) = jq.broker.peek("odd", 0, 5)
    assert bad.raw == "not json" and "not valid JSON" in bad.error


def test_delete_queued_removes_exactly_that_job_and_its_result(jq):
    results = [add.enqueue(i, i) for i in range(3)]
    target = jq.broker.peek("default", 1, 1)[0]
    assert jq.broker.delete_queued("default", target.raw) is True
    assert [j.args[0] for j in jq.broker.peek("default", 0, 5)] == [0, 2]
    assert jq.broker.get_result(results[1].id) is None
    assert jq.broker.get_result(results[0].id) is not None
    assert jq.broker.delete_queued("default", target.raw) is False


def test_delete_queued_finds_a_prioritised_job(jq):
    add.using(priority=3).enqueue(1, 2)
    job = jq.broker.peek("default", 0, 1)[0]
    assert jq.broker.delete_queued("default", job.raw) is True
    assert jq.broker.queue_size("default") == 0


def test_clear_queue_empties_it_and_keeps_the_name(jq):
    for i in range(5):
        add.enqueue(i, i)
    add.using(priority=2).enqueue(9, 9)
    assert jq.broker.clear_queue("default") == 6
    assert jq.broker.queue_sizes() == {"default": 0}
    assert jq.broker.clear_queue("default", forget=True) == 0
    assert jq.broker.queue_sizes() == {}


# ------------------------------------------------------------------ failed: reading
def test_failed_page_is_newest_first_with_refs_and_attempts(jq):
    _failures(jq, 5)
    page = jq.broker.failed_page(0, 3)
    assert [e.index for e in page] == [4, 3, 2]
    assert [e.failure.payload["args"] for e in page] == [["m4"], ["m3"], ["m2"]]
    assert all(e.attempts == 1 for e in page)
    raw = jq.redis.lindex(jq.key("failed"), 4).encode()
    assert page[0].ref == make_ref(4, raw)
    assert [e.index for e in jq.broker.failed_page(3, 10)] == [1, 0]
    assert jq.broker.failed_page(10, 5) == []


def test_failed_entry_follows_its_record_when_the_list_shifts(jq):
    _failures(jq, 4)
    entry = jq.broker.failed_page(0, 1)[0]  # index 3
    jq.redis.lpop(jq.key("failed"))  # someone removed the oldest: every index moved
    found = jq.broker.failed_entry(entry.ref)
    assert found is not None and found.index == 2
    assert found.failure.payload == entry.failure.payload
    jq.redis.lrem(jq.key("failed"), 1, entry.failure.raw)
    assert jq.broker.failed_entry(entry.ref) is None
    assert jq.broker.failed_entry("garbage") is None


@pytest.mark.parametrize(("where", "expected"), [
    (FailedFilter(task=BOOM), [9, 7, 5, 3, 1]),
    (FailedFilter(exception="ValueError"), list(range(9, -1, -1))),
    (FailedFilter(exception="KeyError"), []),
    (FailedFilter(queue="default", task="tests.testapp.tasks.echo"), [8, 6, 4, 2, 0]),
    (FailedFilter(queue="other"), []),
    (FailedFilter(search="m3"), [3]),
    (FailedFilter(search="12345678901234567897"), [7]),  # big integers match as written
    (FailedFilter(search="it broke"), []),  # in the message, not in the args
    (FailedFilter(search="default"), []),  # in the queue and worker, not in the args
])
def test_failed_scan_filters(jq, where, expected):
    _failures(jq, 10)
    scan = jq.broker.failed_scan(where, limit=20)
    assert [e.index for e in scan.entries] == expected
    assert scan.older is None and scan.newer is None and not scan.capped
    assert jq.broker.failed_count_matching(where) == (len(expected), True)


def test_failed_scan_pages_with_cursors_both_ways(jq):
    _failures(jq, 10)
    where = FailedFilter(task=BOOM)
    first = jq.broker.failed_scan(where, limit=2)
    assert [e.index for e in first.entries] == [9, 7] and first.newer is None
    second = jq.broker.failed_scan(where, before=first.older, limit=2)
    assert [e.index for e in second.entries] == [5, 3]
    last = jq.broker.failed_scan(where, before=second.older, limit=2)
    assert [e.index for e in last.entries] == [1] and last.older is None
    back = jq.broker.failed_scan(where, after=last.newer, limit=2)
    assert [e.index for e in back.entries] == [5, 3]
    top = jq.broker.failed_scan(where, after=back.newer, limit=2)
    assert [e.index for e in top.entries] == [9, 7] and top.newer is None


def test_failed_scan_stops_at_its_cap_and_says_so(jq):
    _failures(jq, 10)
    scan = jq.broker.failed_scan(FailedFilter(task="nope"), limit=5, max_scanned=4)
    assert scan.entries == [] and scan.capped and scan.scanned == 4
    assert scan.older == 6  # continue below the four records already examined
    rest = jq.broker.failed_scan(FailedFilter(task="nope"), before=scan.older, limit=5)
    assert rest.scanned == 6 and not rest.capped
    assert jq.broker.failed_count_matching(FailedFilter(task=BOOM), max_scanned=4) == (2, False)


def test_failed_scan_skips_malformed_records(jq):
    _failures(jq, 2)
    jq.redis.rpush(jq.key("failed"), "{not json", '"a string"')
    scan = jq.broker.failed_scan(FailedFilter(exception="ValueError"))
    assert [e.index for e in scan.entries] == [1, 0]
    assert jq.broker.failed_page(0, 1)[0].failure.exception == "MalformedFailureRecord"


# ------------------------------------------------------------------ failed: retry and remove
def test_retry_requeues_the_same_payload_and_removes_the_record(jq):
    result = boom.enqueue("x", flag=True)
    original = jq.broker.peek("default", 0, 1)[0].raw
    fail_all(jq.broker)
    assert jq.broker.get_result(result.id).status == "FAILED"
    entry = jq.broker.failed_page(0, 1)[0]
    assert jq.broker.retry_failed([entry.ref]) == 1
    assert jq.broker.failed_count() == 0
    (job,) = jq.broker.peek("default", 0, 5)
    assert job.raw == original  # id, kwargs, enqueued_at: every byte kept
    assert job.id == result.id and job.kwargs == {"flag": True}
    record = jq.broker.get_result(result.id)
    assert record.status == "READY" and record.finished_at is None
    assert len(record.errors) == 1  # the history of the failed attempt stays


def test_retry_twice_yields_one_job(jq):
    boom.enqueue("once")
    fail_all(jq.broker)
    ref = jq.broker.failed_page(0, 1)[0].ref
    assert jq.broker.retry_failed([ref]) == 1
    assert jq.broker.retry_failed([ref]) == 0
    assert jq.broker.queue_size("default") == 1


def test_concurrent_retries_of_one_record_yield_one_job(jq):
    boom.enqueue("race")
    fail_all(jq.broker)
    ref = jq.broker.failed_page(0, 1)[0].ref
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(jq.broker.retry_failed([ref])))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [1]
    assert jq.broker.queue_size("default") == 1


def test_retry_by_stale_ref_hits_the_right_record_after_the_list_moved(jq):
    _failures(jq, 5)
    target = jq.broker.failed_page(0, 5)[2]  # index 2, args m2
    jq.redis.lpop(jq.key("failed"))  # m0 gone: m2 is now at index 1, m3 at index 2
    assert jq.broker.retry_failed([target.ref]) == 1
    (job,) = jq.broker.peek("default", 0, 5)
    assert job.args == ["m2"]
    remaining = [e.failure.payload["args"][0] for e in jq.broker.failed_page(0, 10)]
    assert remaining == ["m4", "m3", "m1"]


def test_remove_by_ref_among_identical_records_removes_one(jq):
    record = jq.redis.lindex(jq.key("failed"), 0)
    assert record is None
    jq.redis.rpush(jq.key("failed"), "same", "same", "other")
    ref = make_ref(0, b"same")
    assert jq.broker.remove_failed([ref]) == 1
    assert jq.redis.lrange(jq.key("failed"), 0, -1) == ["same", "other"]
    assert jq.broker.remove_failed(["not-a-ref"]) == 0


def test_retry_preserves_priority(jq):
    boom.using(priority=9).enqueue("vip")
    fail_all(jq.broker)
    add.enqueue(1, 1)
    assert jq.broker.retry_failed([jq.broker.failed_page(0, 1)[0].ref]) == 1
    first = jq.broker.peek("default", 0, 1)[0]
    assert first.args == ["vip"] and first.priority == 9


def test_retry_and_remove_matching(jq):
    _failures(jq, 10)
    assert jq.broker.retry_failed_matching(FailedFilter(task=BOOM)) == 5
    assert sorted(j.args[0] for j in jq.broker.peek("default", 0, 10)) == [
        "m1", "m3", "m5", "m7", "m9"]
    assert jq.broker.remove_failed_matching(FailedFilter(search="m4")) == 1
    assert jq.broker.failed_count() == 4
    assert jq.broker.clear_failed() == 4
    assert jq.broker.failed_count() == 0


def test_remove_matching_many_records_across_scan_chunks(jq, monkeypatch):
    from jobqueue.broker import redis_manage

    monkeypatch.setattr(redis_manage, "SCAN_CHUNK", 7)
    _failures(jq, 40)
    assert jq.broker.remove_failed_matching(FailedFilter(task=BOOM)) == 20
    left = {e.failure.task_name for e in jq.broker.failed_page(0, 100)}
    assert left == {"tests.testapp.tasks.echo"}
    assert jq.broker.retry_failed_matching(FailedFilter()) == 20
    assert jq.broker.failed_count() == 0 and jq.broker.queue_size("default") == 20


def test_retry_target_reads_ruby_and_node_records():
    ruby = payload.dumps({"failed_at": "2026/11/23 02:27:07 UTC",
                          "payload": {"class": "Archive", "args": ["fail", 1]},
                          "exception": "RuntimeError", "error": "boom", "backtrace": [],
                          "worker": "vm:1:q", "queue": "file_serve"}).encode()
    assert retry_target(ruby) == ("file_serve", '{"class":"Archive","args":["fail",1]}', "", "")
    assert retry_target(b"{nope") is None
    nameless = payload.dumps({"payload": {"class": "X", "args": []}, "queue": ""}).encode()
    assert retry_target(nameless) is None
    assert parse_ref("1.2." + "a" * 40) == (1, 2, "a" * 40)


# ------------------------------------------------------------------ workers
def test_worker_and_prune_of_a_stale_worker_requeues_its_job_at_the_head(jq):
    for i in range(3):
        add.enqueue(i, i)
    register_worker(jq.broker, WORKER, age_seconds=0)
    held = jq.broker.reserve(WORKER, ["default"])
    assert jq.broker.worker(WORKER).current["payload"]["args"] == [0, 0]
    now = datetime.now(UTC)
    refused = jq.broker.prune_worker(WORKER, now)
    assert not refused.pruned and "not stale" in refused.reason
    later = now + timedelta(seconds=60)
    done = jq.broker.prune_worker(WORKER, later)
    assert done.pruned and done.requeued_to == "default"
    assert jq.broker.worker(WORKER) is None
    assert [j.args[0] for j in jq.broker.peek("default", 0, 5)] == [0, 1, 2]
    assert jq.broker.peek("default", 0, 1)[0].raw == held.job.raw
    assert jq.broker.get_result(held.job.id).status == "READY"
    assert jq.broker.prune_worker(WORKER, later).pruned is False


def test_prune_refuses_a_worker_that_came_back(jq):
    register_worker(jq.broker, WORKER, age_seconds=3600)
    future = datetime.now(UTC) + timedelta(hours=2)  # judged stale, then it beats again
    stale_beat = jq.redis.hget(jq.key("workers", "heartbeat"), WORKER)
    jq.broker.heartbeat(WORKER)
    assert jq.redis.hget(jq.key("workers", "heartbeat"), WORKER) != stale_beat
    keys = jq.broker.keys
    script_reply = jq.broker._script("worker_prune")(
        keys=[keys.workers, keys.worker(WORKER), keys.worker_started(WORKER), keys.heartbeats,
              keys.stat("processed", WORKER), keys.stat("failed", WORKER),
              keys.worker_info(WORKER), "", "", keys.queues, "", ""],
        args=[WORKER, stale_beat, b"", "", ""])
    assert script_reply == -1
    assert jq.broker.prune_worker(WORKER, future).pruned is True  # stale again by then


def test_workers_read_every_record(jq):
    register_worker(jq.broker, "h1:10:a,b", age_seconds=5)
    (w,) = jq.broker.workers()
    assert (w.host, w.pid, w.queues) == ("h1", 10, ["a", "b"])
    assert w.heartbeat_at is not None and w.started_at is not None
    assert w.extra["heartbeat_interval"] == "1.0"


def test_worker_counters_come_from_the_full_id_or_node_resques_name(jq):
    register_worker(jq.broker, "h1:10:a,b")
    register_worker(jq.broker, "nodehost:20:jobs")
    jq.redis.set(jq.key("stat", "processed", "h1:10:a,b"), 7)
    jq.redis.set(jq.key("stat", "failed", "h1:10:a,b"), 2)
    jq.redis.set(jq.key("stat", "processed", "nodehost:20"), 5)  # node-resque's key
    jq.redis.set(jq.key("stat", "failed", "nodehost:20"), 1)
    counts = {w.id: (w.processed, w.failed) for w in jq.broker.workers()}
    assert counts == {"h1:10:a,b": (7, 2), "nodehost:20:jobs": (5, 1)}


# ------------------------------------------------------------------ delayed jobs
def test_scheduled_pages_run_now_and_delete(jq):
    soon = datetime.now(UTC) + timedelta(hours=1)
    later = soon + timedelta(hours=1)
    r1 = add.using(run_after=soon).enqueue(1, 1)
    add.using(run_after=soon).enqueue(2, 2)
    r3 = add.using(run_after=later).enqueue(3, 3)
    assert jq.broker.scheduled_count() == 2
    first, second = jq.broker.scheduled_page(0, 10, per_bucket=1)
    assert first.size == 2 and len(first.items) == 1 and second.size == 1
    assert first.due_at <= second.due_at
    bucket = jq.broker.scheduled_bucket(first.timestamp, 0, 10)
    assert [j.args[0] for j in bucket.items] == [1, 2]
    assert jq.broker.run_scheduled_now(first.timestamp, bucket.items[0].raw) is True
    assert [j.id for j in jq.broker.peek("default", 0, 5)] == [r1.id]
    assert jq.broker.run_scheduled_now(first.timestamp, bucket.items[0].raw) is False
    only = jq.broker.scheduled_bucket(second.timestamp, 0, 1).items[0]
    assert jq.broker.delete_scheduled(second.timestamp, only.raw) is True
    assert jq.broker.get_result(r3.id) is None
    assert jq.broker.scheduled_count() == 1  # the emptied due time is gone


def test_run_now_refuses_an_item_without_a_queue(jq):
    jq.redis.rpush(jq.key("delayed", "100"), '{"class":"X","args":[]}')
    jq.redis.zadd(jq.key("delayed_queue_schedule"), {"100": 100})
    assert jq.broker.run_scheduled_now(100, '{"class":"X","args":[]}') is False
    assert jq.broker.scheduled_bucket(100, 0, 5).size == 1


# ------------------------------------------------------------------ counters and server
def test_throughput_reads_per_minute_history(jq):
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    minute = int(now.timestamp()) // 60
    jq.redis.set(jq.key("jobqueue", "history", "processed", str(minute)), 7)
    jq.redis.set(jq.key("jobqueue", "history", "failed", str(minute - 2)), 3)
    t = jq.broker.throughput(5, now)
    assert t.start_minute == minute - 4
    assert t.processed == [0, 0, 0, 0, 7] and t.failed == [0, 0, 3, 0, 0]


def test_server_info_and_key_counts(jq):
    _failures(jq, 3)
    add.enqueue(1, 1)
    info = jq.broker.server_info()
    assert info["redis_version"] and info["dbsize"] >= 1 and "keyspace" in info
    counts = jq.broker.key_counts()
    assert counts["failure records"] == 3 and counts["queued jobs"] == 1
    assert counts["queues"] == 1


def test_job_payload_survives_retry_byte_for_byte_for_bare_resque_jobs(jq):
    raw = '{"class":"Archive","args":["a/b",1.5]}'
    jq.redis.rpush(jq.key("queue", "files"), raw)
    jq.redis.sadd(jq.key("queues"), "files")
    fail_all(jq.broker, "files")
    assert jq.broker.retry_failed([jq.broker.failed_page(0, 1)[0].ref]) == 1
    assert jq.redis.lrange(jq.key("queue", "files"), 0, -1) == [raw]
    assert isinstance(jq.broker.peek("files", 0, 1)[0], Job)
