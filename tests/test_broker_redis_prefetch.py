"""Prefetch for ``--no-fork`` workers (``jobqueue/broker/redis_prefetch.py`` with ``reserve.lua``,
``start.lua`` and ``release.lua``, and the worker's ``--prefetch``) on a real Redis.

Covered, step by step on the broker: a reserve with a prefetch takes the first job into
``worker:<id>`` and the next ones of the same queue, in order, into the prefetch list
``<ns>:jobqueue:prefetch:<id>``, in one round trip; later reserves hand them out in FIFO order,
each start sent in one packet with the previous job's held-back acknowledgement; results stay
``READY`` until their job starts; queue and priority order; ``release`` (back to the head, or
the priority set, without counting an attempt), ``requeue``, ``unregister_worker``, the reaper
and ``prune_worker``. Failures: replies lost with their connection (the packet is sent again and
acts once), a lost reserve reply (the batch is rebuilt from Redis), an undecodable entry in a
batch, the refill each batch's last start carries (the next batch behind the running job; sent
again after a lost reply, it finds its batch instead of taking another; it takes nothing
behind a failed start or while paused; queue order), a start that finds its job gone, a
script flush before an asynchronous start, an operator's pause in the middle of a batch.

With real ``manage.py worker --no-fork --prefetch N`` processes and real signals: FIFO in
burst mode, QUIT, SIGKILL then the reaper, USR2 then CONT, bad ``--prefetch`` values, and fork
mode ignoring the option.

Longer than 500 lines on purpose: one short test per step and failure of the prefetch path,
and the real-process tests need the same helpers; splitting would only scatter them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobqueue import payload
from jobqueue.broker.base import ErrorInfo, Outcome
from jobqueue.broker.redis import RedisBroker
from jobqueue.broker.redis_prefetch import ASYNC_DEPTH
from jobqueue.compat import TaskResultStatus
from jobqueue.job import BadJob, Reservation
from jobqueue.reaper import reap_dead_workers
from jobqueue.worker import Worker
from tests.monitor_support import register_worker
from tests.redis_support import sent_packets
from tests.testapp import tasks
from tests.testapp.pool_hooks import hold
from tests.worker_support import make_workers

W = "testhost:4242:default"
DEAD = "far-away-host:4242:default"
ERROR = ErrorInfo(exception_class_path="builtins.ValueError", message="it broke",
                  traceback="Traceback (most recent call last):\nValueError: it broke\n")


# ------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _scripts_loaded(jq) -> None:
    """Redis knows every script, as once a worker has run a while: packets are counted and
    replies lost below, and a first NOSCRIPT would add a resend (it has a test of its own)."""
    for script in jq.broker._scripts.values():
        jq.redis.script_load(script.script)


@pytest.fixture(autouse=True)
def _one_packet_in_flight(jq) -> None:
    """Every packet counts as old, so each is read before the next job, as after jobs that
    take longer than ``async_grace``: the steps below see each reply one job late, never
    later, whatever the machine's speed. The tests of ``pipelined`` set their own."""
    jq.broker.async_grace = 0.0


@pytest.fixture
def pipelined(jq) -> None:
    """Short jobs: no packet gets old, up to ``ASYNC_DEPTH`` stay unread."""
    jq.broker.async_grace = 60.0


def _ok() -> Outcome:
    return Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC), return_value=None)


def _failed() -> Outcome:
    return Outcome(status="FAILED", finished_at=datetime.now(UTC), error=ERROR)


def _broker(jq) -> RedisBroker:
    """Another broker on the same namespace: another process, knowing nothing of ours."""
    return RedisBroker(jq.broker.client, jq.namespace)


def _reserve(jq, prefetch: int, *, broker: Any = None, worker: str = W,
             queues: tuple[str, ...] = ("default",)) -> Reservation:
    found = (broker or jq.broker).reserve(worker, list(queues), prefetch=prefetch)
    assert isinstance(found, Reservation), found
    return found


def _enqueue(n: int, queue: str = "default", **using: Any) -> list[str]:
    return [tasks.echo.using(queue_name=queue, **using).enqueue(f"{queue}{i}").id
            for i in range(n)]


def _raws(jq, queue: str = "default") -> list[str]:
    return jq.redis.lrange(jq.key("queue", queue), 0, -1)


def _queued(jq, queue: str = "default") -> list[str]:
    return [json.loads(raw)["id"] for raw in _raws(jq, queue)]


def _prefetched(jq, worker: str = W) -> list[str]:
    return [json.loads(entry)["payload"]["id"]
            for entry in jq.redis.lrange(jq.key("jobqueue", "prefetch", worker), 0, -1)]


def _held(jq, worker: str = W) -> str | None:
    held = jq.redis.get(jq.key("worker", worker))
    return json.loads(held)["payload"]["id"] if held else None


def _result(jq, result_id: str) -> dict[str, str]:
    return jq.redis.hgetall(jq.key("jobqueue", "result", result_id))


def _stat(jq, *parts: str) -> int:
    return int(jq.redis.get(jq.key("stat", *parts)) or 0)


def _scripts_in(jq, packet: bytes) -> list[str]:
    """The scripts a packet runs, in the order it runs them."""
    shas = {jq.broker._scripts[name].sha.encode(): name for name in ("finish", "reserve", "start")}
    found = [(packet.find(sha), name) for sha, name in shas.items() if sha in packet]
    return [name for _, name in sorted(found)]


def _drain(jq, *, broker: Any = None, prefetch: int = 3, queues: tuple[str, ...] = ("default",),
           first: Reservation | None = None, packets: list[list[str]] | None = None) -> list[str]:
    """Run the worker's loop (reserve, then acknowledge with ``defer``) until nothing is left;
    the ids in the order handed out (and the scripts each reserve sent, into ``packets``)."""
    broker = broker or jq.broker
    taken = [first] if first else []
    while True:
        if taken:
            broker.finish(W, taken[-1].job, taken[-1].queue, _ok(), defer=True)
        with sent_packets(broker.client) as sent:
            found = broker.reserve(W, list(queues), prefetch=prefetch)
        if packets is not None:
            packets.append([name for packet in sent for name in _scripts_in(jq, packet)])
        if found is None:
            break
        taken.append(found)
    broker.flush()
    return [r.job.id for r in taken]


def _take_next(jq, running: Reservation, prefetch: int) -> Reservation | None:
    """One turn of the worker's loop: acknowledge ``running`` (held back), reserve the next."""
    jq.broker.finish(W, running.job, "default", _ok(), defer=True)
    found = jq.broker.reserve(W, ["default"], prefetch=prefetch)
    assert found is None or isinstance(found, Reservation)
    return found


def _paused_mid_batch(jq, jobs: int, prefetch: int) -> tuple[list[str], Reservation]:
    """``jobs`` queued; the worker ran the first and started the second (replies read), then
    an operator paused every worker. The ids, and the second job, running."""
    ids = _enqueue(jobs)
    second = _take_next(jq, _reserve(jq, prefetch), prefetch)
    assert second is not None
    jq.broker.flush()  # started before the pause
    jq.redis.set(jq.key("pause-all-workers"), "true")
    return ids, second


def _async_client_id(jq) -> str:
    """Redis's id for the broker's deferred connection (the one starts are sent on)."""
    port = jq.broker._async.conn._sock.getsockname()[1]
    [entry] = [c for c in jq.redis.client_list() if c["addr"].endswith(f":{port}")]
    return entry["id"]


def _lose_replies(jq, count: int) -> bytes:
    """Take ``count`` replies off the deferred connection unseen, then cut it (the replies
    are lost as with a dropped connection)."""
    sock = jq.broker._async.conn._sock
    got = b""
    while got.count(b"\r\n") < count:
        got += sock.recv(4096)
    jq.redis.client_kill_filter(_id=_async_client_id(jq))
    return got


def _send_raw(jq, packet: bytes, replies: int) -> list[Any]:
    conn = jq.broker.client.connection_pool.make_connection()
    try:
        conn.send_packed_command((packet,))
        return [conn.read_response() for _ in range(replies)]
    finally:
        conn.disconnect()


def _release_script(jq, worker: str = W) -> int:
    """Someone else (a reaper, an operator) puts ``worker``'s prefetch list back."""
    keys = jq.broker.keys
    return int(_broker(jq)._script("release")(keys=[keys.prefetch(worker)],
                                             args=[f"{keys.namespace}:"]))


# ------------------------------------------------------------------ reserve
def test_a_reserve_with_prefetch_holds_the_next_jobs_in_order_in_one_round_trip(jq):
    ids = _enqueue(6)
    raws = _raws(jq)
    with sent_packets(jq.broker.client) as packets:
        first = _reserve(jq, 4)
    assert len(packets) == 1
    assert (first.job.id, _held(jq)) == (ids[0], ids[0])
    assert _prefetched(jq) == ids[1:4]
    assert _queued(jq) == ids[4:]
    waiting = jq.redis.lrange(jq.key("jobqueue", "prefetch", W), 0, -1)
    for entry, raw in zip(waiting, raws[1:4], strict=True):  # in-flight records, Resque's shape
        assert entry.startswith('{"queue":"default","run_at":"')
        assert entry.endswith(f',"payload":{raw}}}')  # the exact bytes
    assert _result(jq, ids[0])["status"] == "RUNNING"
    for job_id in ids[1:4]:  # prefetched, not started: no attempt yet
        record = jq.broker.get_result(job_id)
        assert (record.status, record.worker_ids, record.started_at) == ("READY", [], None)


def test_prefetched_jobs_start_in_order_each_in_one_packet_with_the_last_ack(jq):
    ids = _enqueue(3)
    previous = _reserve(jq, 3)
    for expected in ids[1:]:
        jq.broker.finish(W, previous.job, "default", _ok(), defer=True)
        with sent_packets(jq.broker.client) as packets:
            taken = _reserve(jq, 3)
        [packet] = packets
        # The batch's last start carries its refill (the queue is empty: it takes nothing).
        refill = ["reserve"] if expected == ids[-1] else []
        assert _scripts_in(jq, packet) == ["finish", "start", *refill]
        assert (taken.job.id, taken.worker_ids) == (expected, (W,))
        jq.broker.flush()  # reads the replies (nothing else to send)
        assert _held(jq) == expected
        stored = _result(jq, expected)
        assert stored["status"] == "RUNNING"
        assert json.loads(stored["worker_ids"]) == [W]
        assert payload.parse_time(stored["started_at"]) == taken.started_at
        assert stored["last_attempted_at"] == stored["started_at"]
        assert _result(jq, previous.job.id)["status"] == "SUCCESSFUL"
        previous = taken
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", W))


def test_each_batch_is_refilled_with_its_last_start_and_each_job_counts_once(jq):
    ids = _enqueue(7)
    sent: list[list[str]] = []
    assert _drain(jq, prefetch=3, packets=sent) == ids
    # Each batch's last start refills it (two more, in the same packet); after the last
    # refill found the queue empty, a plain reserve finds it empty too.
    assert sent == [["reserve"], ["finish", "start"], ["finish", "start", "reserve"],
                    ["finish", "start"], ["finish", "start", "reserve"],
                    ["finish", "start"], ["finish", "start", "reserve"], ["finish", "reserve"]]
    assert (_stat(jq, "processed"), _stat(jq, "processed", W)) == (7, 7)
    assert {_result(jq, i)["status"] for i in ids} == {"SUCCESSFUL"}
    assert all(json.loads(_result(jq, i)["worker_ids"]) == [W] for i in ids)
    assert not jq.redis.exists(jq.key("worker", W), jq.key("jobqueue", "prefetch", W))


def test_a_second_attempt_from_a_batch_keeps_started_at_and_appends_the_worker(jq):
    [job_id] = _enqueue(1)
    first = _reserve(jq, 1, worker=DEAD)
    assert jq.broker.requeue(DEAD, first.job, "default", ERROR)
    [urgent] = _enqueue(1, priority=5)  # taken first: the requeued job waits in the batch
    ahead = _reserve(jq, 2)
    assert (ahead.job.id, _prefetched(jq)) == (urgent, [job_id])
    jq.broker.finish(W, ahead.job, "default", _ok(), defer=True)
    again = _reserve(jq, 2)
    jq.broker.flush()
    assert again.job.id == job_id
    assert again.started_at == first.started_at and again.worker_ids == (DEAD, W)
    stored = _result(jq, job_id)
    assert json.loads(stored["worker_ids"]) == [DEAD, W]
    assert payload.parse_time(stored["started_at"]) == first.started_at
    assert payload.parse_time(stored["last_attempted_at"]) >= first.started_at


def test_only_jobs_of_the_first_non_empty_queue_are_prefetched(jq):
    high = _enqueue(2, "high")
    low = _enqueue(3, "low")
    first = _reserve(jq, 4, queues=("high", "low"))
    assert (first.job.id, _prefetched(jq)) == (high[0], high[1:])
    assert _queued(jq, "low") == low
    assert _drain(jq, prefetch=4, queues=("high", "low"), first=first) == high + low


def test_a_job_of_an_earlier_queue_waits_until_the_batch_is_done(jq):
    low = _enqueue(3, "low")
    first = _reserve(jq, 3, queues=("high", "low"))
    [urgent] = _enqueue(1, "high")  # arrives while the batch of "low" is held
    assert _drain(jq, prefetch=3, queues=("high", "low"), first=first) == [*low, urgent]


def test_a_batch_follows_priorities_within_its_queue(jq):
    plain = _enqueue(1)
    low = _enqueue(1, priority=-3)
    top = _enqueue(1, priority=5)
    plain += _enqueue(1)
    assert _drain(jq, prefetch=4) == top + plain + low



# ------------------------------------------------------------------ refilling a batch
def _entries(jq, worker: str = W) -> list[dict[str, Any]]:
    return [json.loads(e) for e in jq.redis.lrange(jq.key("jobqueue", "prefetch", worker), 0, -1)]


def _run_batch(jq, first: Reservation, prefetch: int) -> Reservation:
    """Acknowledge and start the rest of ``first``'s batch; the last one started (its packet
    carried the refill) is returned, its replies read."""
    taken = first
    while jq.broker._prefetched.get(W):
        jq.broker.finish(W, taken.job, "default", _ok(), defer=True)
        taken = _reserve(jq, prefetch)
    jq.broker.flush()
    return taken


def test_the_refill_reserves_the_next_batch_behind_the_last_started_job(jq):
    ids = _enqueue(6)
    first = _reserve(jq, 3)
    first_token = json.loads(jq.redis.get(jq.key("worker", W)))["jq"]
    last = _run_batch(jq, first, 3)
    assert (last.job.id, _held(jq)) == (ids[2], ids[2])  # the running job is untouched
    assert (_prefetched(jq), _queued(jq)) == (ids[3:5], ids[5:])  # prefetch - 1 more
    tokens = [entry["jq"] for entry in _entries(jq)]
    base = tokens[0][:-2]
    assert tokens == [f"{base}.1", f"{base}.2"] and base != first_token
    for job_id in ids[3:5]:  # reserved, not started: no attempt yet
        record = jq.broker.get_result(job_id)
        assert (record.status, record.worker_ids, record.started_at) == ("READY", [], None)
    assert jq.broker.release(W) == 2  # a stop now puts them back at the head, in order
    assert _queued(jq) == ids[3:]


def test_a_refill_resent_after_its_reply_was_lost_reserves_nothing_more(jq, caplog):
    ids = _enqueue(7)
    first = _reserve(jq, 3)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 3)
    jq.broker.flush()
    jq.broker.finish(W, second.job, "default", _ok(), defer=True)
    with sent_packets(jq.broker.client) as packets:
        third = _reserve(jq, 3)
    [packet] = packets
    assert _scripts_in(jq, packet) == ["finish", "start", "reserve"]
    jq.wait_for(lambda: len(_prefetched(jq)) == 2, message="Redis to run the packet")
    _lose_replies(jq, 3)
    with sent_packets(jq.broker.client) as resent:
        jq.broker.flush()  # the ack skips, the start was done, the refill finds its batch
    assert resent[0] == packet  # then (rare: a lost reply) each job's result record is read
    assert all(b"HGETALL" in p for p in resent[1:])
    assert (_held(jq), _prefetched(jq), _queued(jq)) == (ids[2], ids[3:5], ids[5:])
    assert [len(batch) for batch in jq.broker._prefetched.values()] == [2]  # rebuilt
    assert _drain(jq, prefetch=3, first=third) == ids[2:]
    assert _stat(jq, "processed") == 7
    assert all(jq.broker.get_result(i).worker_ids == [W] for i in ids)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_refill_behind_a_start_that_found_its_job_gone_takes_nothing(jq, caplog):
    ids = _enqueue(4)
    first = _reserve(jq, 2)  # ids[1] prefetched: its start is the batch's last
    assert _release_script(jq) == 1  # a reaper or an operator put it back
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    with sent_packets(jq.broker.client) as packets:
        _reserve(jq, 2)
    assert _scripts_in(jq, packets[0]) == ["finish", "start", "reserve"]
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        jq.broker.flush()
    assert "Prefetched jobs were moved away" in caplog.text
    assert (_queued(jq), _prefetched(jq), _held(jq)) == (ids[1:], [], None)
    assert _drain(jq, prefetch=2) == ids[1:]


def test_a_refill_takes_from_the_first_non_empty_queue(jq):
    low = _enqueue(4, "low")
    first = _reserve(jq, 2, queues=("high", "low"))
    [high] = _enqueue(1, "high")  # arrives while the batch runs
    jq.broker.finish(W, first.job, "low", _ok(), defer=True)
    assert _reserve(jq, 2, queues=("high", "low")).job.id == low[1]  # with the refill
    jq.broker.flush()
    assert (_prefetched(jq), _queued(jq, "low")) == ([high], low[2:])


def test_a_refill_while_all_workers_are_paused_takes_nothing(jq):
    ids = _enqueue(4)
    first = _reserve(jq, 2)
    jq.redis.set(jq.key("pause-all-workers"), "true")
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 2)  # sent before the worker can know
    assert second.job.id == ids[1]
    jq.broker.flush()
    assert (_prefetched(jq), _queued(jq)) == ([], ids[2:])
    jq.broker.finish(W, second.job, "default", _ok(), defer=True)
    assert jq.broker.reserve(W, ["default"], prefetch=2) is None  # paused
    assert _queued(jq) == ids[2:]


def test_an_undecodable_entry_taken_by_a_refill_is_a_bad_job_in_its_turn(jq):
    ids = _enqueue(2)
    jq.redis.rpush(jq.key("queue", "default"), "not json")
    [after] = _enqueue(1)
    first = _reserve(jq, 2)  # ids[1] prefetched: its start carries the refill
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 2)
    jq.broker.flush()  # the refill took the undecodable entry, verbatim
    assert second.job.id == ids[1]
    jq.broker.finish(W, second.job, "default", _ok(), defer=True)
    bad = jq.broker.reserve(W, ["default"], prefetch=2)
    assert isinstance(bad, BadJob) and bad.raw == "not json" and "not valid JSON" in bad.error
    jq.broker.flush()
    jq.broker.finish(W, bad, "default", _failed())  # what the worker does with it
    assert _drain(jq, prefetch=2) == [after]
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert json.loads(record)["payload"] == "not json"
    assert (_stat(jq, "processed"), _stat(jq, "failed")) == (4, 1)


# ------------------------------------------------------------------ putting a batch back
def test_release_puts_the_prefetched_jobs_back_at_the_head_without_counting_an_attempt(jq):
    ids = _enqueue(5)
    raws = _raws(jq)
    _reserve(jq, 4)  # ids[0] runs, ids[1:4] prefetched, ids[4] still queued
    [later] = _enqueue(1)  # pushed meanwhile
    wake = jq.key("jobqueue", "wake", "default")
    jq.redis.delete(wake)
    assert jq.broker.release(W) == 3
    assert _raws(jq)[:4] == raws[1:]  # the exact entries, in their order, before the others
    assert _queued(jq) == [*ids[1:], later]
    assert _held(jq) == ids[0]  # the running job is not touched
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", W))
    assert jq.redis.llen(wake) == 3
    for job_id in ids[1:4]:
        record = jq.broker.get_result(job_id)
        assert (record.status, record.worker_ids, record.started_at) == ("READY", [], None)
    jq.broker.finish(W, _reserve(jq, 1).job, "default", _ok())  # the held job is redelivered
    assert _reserve(jq, 1).job.id == ids[1]  # the batch is forgotten: the queue's head next


def test_release_puts_prioritised_jobs_back_at_the_front_of_their_priority_class(jq):
    [first, a, b] = _enqueue(3, priority=5)
    [plain] = _enqueue(1)
    [low] = _enqueue(1, priority=-2)
    assert _reserve(jq, 5).job.id == first  # a, b, plain and low prefetched
    [newer] = _enqueue(1, priority=5)  # an equal pushed meanwhile
    assert jq.broker.release(W) == 4
    zset = dict(jq.redis.zrange(jq.key("jobqueue", "priority", "default"), 0, -1,
                                withscores=True))
    by_id = {json.loads(raw)["id"]: score for raw, score in zset.items()}
    assert (by_id[a], by_id[b], by_id[low]) == ((100 - 5) * 1e12,) * 2 + ((100 + 2) * 1e12,)
    assert _queued(jq) == [plain]
    jq.broker.finish(W, _reserve(jq, 1).job, "default", _ok())
    assert _drain(jq, prefetch=1) == [a, b, newer, plain, low]


def test_release_with_nothing_prefetched_sends_nothing(jq):
    _enqueue(1)
    _reserve(jq, 4)  # a batch of one: nothing held back
    with sent_packets(jq.broker.client) as packets:
        assert jq.broker.release(W) == 0
        assert jq.broker.release("never:1:seen") == 0
    assert packets == []


def test_requeue_of_a_job_started_from_the_batch_puts_it_before_the_rest(jq):
    ids = _enqueue(5)
    first = _reserve(jq, 4)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    running = _reserve(jq, 4)  # its start is in flight, the reply unread
    assert jq.broker.requeue(W, running.job, "default", ERROR)
    assert _queued(jq) == ids[1:]  # the interrupted job first, then what it had prefetched
    assert not jq.redis.exists(jq.key("worker", W), jq.key("jobqueue", "prefetch", W))
    assert jq.broker.get_result(ids[0]).status == "SUCCESSFUL"
    record = jq.broker.get_result(ids[1])
    assert (record.status, record.worker_ids) == ("READY", [W])
    assert [e["exception_class_path"] for e in record.errors] == ["builtins.ValueError"]
    assert jq.broker.get_result(ids[2]).worker_ids == []
    assert _drain(jq, prefetch=4) == ids[1:]


def test_unregister_worker_sends_the_held_back_ack_then_releases_the_batch(jq):
    register_worker(jq.broker, W)
    ids = _enqueue(4)
    first = _reserve(jq, 3)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    jq.broker.unregister_worker(W)
    assert _queued(jq) == ids[1:]
    assert jq.broker.get_result(ids[0]).status == "SUCCESSFUL"
    assert _stat(jq, "processed") == 1
    assert [k for k in jq.redis.scan_iter(match=jq.key("*")) if W in k] == []


def test_the_reaper_puts_a_dead_workers_batch_back_in_order(jq):
    ids = _enqueue(5)
    _reserve(jq, 4, broker=_broker(jq), worker=DEAD)  # in another process, which then died
    register_worker(jq.broker, DEAD, age_seconds=3600)
    assert reap_dead_workers(jq.broker, "reaper:1:*") == [DEAD]
    assert _queued(jq) == ids[1:]
    lost = jq.broker.get_result(ids[0])  # the running job: settled per its retry policy
    assert lost.status == "FAILED" and lost.worker_ids == [DEAD]
    assert [e["exception_class_path"] for e in lost.errors] == ["jobqueue.exceptions.WorkerLost"]
    assert {jq.broker.get_result(i).status for i in ids[1:]} == {"READY"}
    assert [k for k in jq.redis.scan_iter(match=jq.key("*")) if DEAD in k] == []


def test_prune_of_a_dead_worker_requeues_its_job_ahead_of_its_batch(jq):
    ids = _enqueue(5)
    _reserve(jq, 4, broker=_broker(jq), worker=DEAD)
    register_worker(jq.broker, DEAD, age_seconds=0)
    done = jq.broker.prune_worker(DEAD, datetime.now(UTC) + timedelta(seconds=60))
    assert done.pruned and done.requeued_to == "default"
    assert _queued(jq) == ids  # in flight first, then the batch, then the queue
    assert {jq.broker.get_result(i).status for i in ids} == {"READY"}
    assert jq.broker.get_result(ids[0]).worker_ids == [DEAD]
    assert [k for k in jq.redis.scan_iter(match=jq.key("*")) if DEAD in k] == []


# ------------------------------------------------------------------ lost replies
def test_a_packet_sent_again_after_its_replies_were_lost_acts_once(jq, caplog):
    ids = _enqueue(3)
    first = _reserve(jq, 3)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    with sent_packets(jq.broker.client) as packets:
        second = _reserve(jq, 3)
    [packet] = packets
    jq.wait_for(lambda: _held(jq) == ids[1], message="Redis to run the packet")
    assert _lose_replies(jq, 2) == b":1\r\n:1\r\n"  # finish and start both acted
    with sent_packets(jq.broker.client) as resent:
        jq.broker.flush()
    assert resent == [packet]  # sent once more, on a new connection
    # What the second delivery did, shown by a third: the ack is skipped (another job is in
    # flight) and the start reports the job already started.
    assert _send_raw(jq, packet, 2) == [0, 2]
    assert (_held(jq), _prefetched(jq)) == (ids[1], ids[2:])
    assert json.loads(_result(jq, ids[1])["worker_ids"]) == [W]
    assert _stat(jq, "processed") == 1
    assert _drain(jq, prefetch=3, first=second) == ids[1:]
    assert _stat(jq, "processed") == 3 and jq.redis.llen(jq.key("failed")) == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_packet_lost_with_its_connection_is_sent_again_and_acts(jq):
    ids = _enqueue(3)
    first = _reserve(jq, 3)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 3)
    jq.broker.flush()  # replies read: the connection is idle
    jq.redis.client_kill_filter(_id=_async_client_id(jq))  # e.g. Redis' idle timeout
    jq.broker.finish(W, second.job, "default", _ok(), defer=True)
    with sent_packets(jq.broker.client) as packets:
        third = _reserve(jq, 3)  # written to the dead connection
        jq.broker.flush()
    assert len(packets) == 2 and packets[0] == packets[1]  # then again on a new one
    assert third.job.id == ids[2] and _held(jq) == ids[2]
    assert jq.broker.get_result(ids[1]).status == "SUCCESSFUL"
    assert jq.broker.get_result(ids[2]).worker_ids == [W]
    assert _stat(jq, "processed") == 2


def test_a_lost_reserve_reply_redelivers_the_job_and_rebuilds_its_batch(jq):
    ids = _enqueue(4)
    first = _reserve(jq, 3)
    fresh = _broker(jq)  # the same worker, without the reply (as after a dropped connection)
    again = _reserve(jq, 3, broker=fresh)
    assert again.job.raw == first.job.raw
    assert (again.started_at, again.worker_ids) == (first.started_at, (W,))
    assert jq.broker.get_result(ids[0]).worker_ids == [W]  # not counted twice
    assert (_prefetched(jq), _queued(jq)) == (ids[1:3], ids[3:])  # nothing more reserved
    assert _drain(jq, broker=fresh, prefetch=3, first=again) == ids
    assert _stat(jq, "processed") == 4
    assert all(jq.broker.get_result(i).worker_ids == [W] for i in ids)


@pytest.mark.parametrize("lost_reply", [False, True], ids=["batch", "rebuilt-batch"])
def test_an_undecodable_entry_in_a_batch_is_a_bad_job_in_its_turn(jq, lost_reply):
    [before] = _enqueue(1)
    jq.redis.rpush(jq.key("queue", "default"), "not json")
    [after] = _enqueue(1)
    broker = _broker(jq) if lost_reply else jq.broker
    first = _reserve(jq, 3)
    if lost_reply:
        first = _reserve(jq, 3, broker=broker)
    broker.finish(W, first.job, "default", _ok(), defer=True)
    bad = broker.reserve(W, ["default"], prefetch=3)
    assert isinstance(bad, BadJob)
    assert (bad.raw, bad.queue, bad.worker_id) == ("not json", "default", W)
    assert "not valid JSON" in bad.error
    broker.flush()
    assert json.loads(jq.redis.get(jq.key("worker", W)))["payload"] == "not json"
    broker.finish(W, bad, "default", _failed())  # what the worker does with it
    assert _drain(jq, broker=broker, prefetch=3) == [after]
    assert first.job.id == before
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert json.loads(record)["payload"] == "not json"  # verbatim
    assert (_stat(jq, "processed"), _stat(jq, "failed")) == (3, 1)


def test_a_start_that_finds_its_job_gone_drops_the_batch_with_a_warning(jq, caplog):
    ids = _enqueue(4)
    first = _reserve(jq, 3)
    assert _release_script(jq) == 2  # a reaper or an operator put the batch back
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    started = _reserve(jq, 3)  # the worker runs it without waiting: it is in the queue too
    assert started.job.id == ids[1]
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        jq.broker.flush()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "Prefetched jobs were moved away" in warning.getMessage()
    assert "dropping 1 of them" in warning.getMessage()
    assert _queued(jq) == ids[1:]  # nothing lost, nothing moved by the start
    assert _held(jq) is None and jq.broker.get_result(ids[1]).status == "READY"
    jq.broker.finish(W, started.job, "default", _ok(), defer=True)  # skipped: not in flight
    assert _drain(jq, prefetch=3) == ids[1:]  # the batch was forgotten: the queue serves
    assert _stat(jq, "processed") == 4


def test_a_script_flush_before_an_asynchronous_start_is_survived(jq, caplog):
    ids = _enqueue(3)
    first = _reserve(jq, 3)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    jq.redis.script_flush()
    second = _reserve(jq, 3)  # finish and start meet NOSCRIPT
    jq.broker.flush()  # loaded, sent again, acted once
    assert (_held(jq), _prefetched(jq)) == (ids[1], ids[2:])
    assert jq.broker.get_result(ids[0]).status == "SUCCESSFUL"
    assert jq.broker.get_result(ids[1]).worker_ids == [W]
    assert _stat(jq, "processed") == 1
    assert _drain(jq, prefetch=3, first=second) == ids[1:]
    assert _stat(jq, "processed") == 3
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_pausing_all_workers_mid_batch_puts_the_rest_back_after_one_more_job(jq):
    ids, second = _paused_mid_batch(jq, 5, prefetch=4)
    third = _take_next(jq, second, 4)  # sent before the worker can know: it starts, says "paused"
    assert third is not None
    assert _take_next(jq, third, 4) is None
    assert third.job.id == ids[2]
    assert _queued(jq) == ids[3:]  # the rest went back, in order
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", W), jq.key("worker", W))
    assert jq.broker.get_result(ids[3]).worker_ids == []
    assert _stat(jq, "processed") == 3
    jq.redis.delete(jq.key("pause-all-workers"))
    assert _drain(jq, prefetch=4) == ids[3:]


# ------------------------------------------------------------------ several packets unread
def test_short_jobs_leave_up_to_three_packets_unread_and_an_old_one_is_read(jq, pipelined):
    ids = _enqueue(8)
    taken = [_reserve(jq, 8)]
    unread = []
    for _ in range(4):
        taken.append(_take_next(jq, taken[-1], 8))
        unread.append(len(jq.broker._unread))
    assert unread == [1, 2, ASYNC_DEPTH, ASYNC_DEPTH] == [1, 2, 3, 3]
    jq.broker.async_grace = 0.002
    time.sleep(0.005)  # a job longer than the grace: every packet is old, each is read
    taken.append(_take_next(jq, taken[-1], 8))
    assert len(jq.broker._unread) == 1
    assert _drain(jq, prefetch=8, first=taken.pop()) == ids[len(taken):]
    assert [r.job.id for r in taken] == ids[:len(taken)]
    assert _stat(jq, "processed") == 8
    assert {jq.broker.get_result(i).status for i in ids} == {TaskResultStatus.SUCCESSFUL}
    assert [jq.broker.get_result(i).worker_ids for i in ids] == [[W]] * 8


def test_pausing_all_workers_during_short_jobs_takes_effect_within_async_depth_jobs(
        jq, pipelined):
    ids, second = _paused_mid_batch(jq, 8, prefetch=6)
    taken = [second]
    while (found := _take_next(jq, taken[-1], prefetch=6)) is not None:
        taken.append(found)
    # The start that said "paused" and the ones sent before its reply was read ran.
    assert [r.job.id for r in taken[1:]] == ids[2:2 + ASYNC_DEPTH]
    assert _queued(jq) == ids[2 + ASYNC_DEPTH:]  # the rest went back, in order
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", W), jq.key("worker", W))
    assert _stat(jq, "processed") == 2 + ASYNC_DEPTH
    jq.redis.delete(jq.key("pause-all-workers"))
    assert _drain(jq, prefetch=6) == ids[2 + ASYNC_DEPTH:]


def test_packets_unread_when_their_connection_drops_are_all_sent_again_and_act_once(
        jq, pipelined):
    ids = _enqueue(6)
    taken = [_reserve(jq, 6)]
    for _ in range(3):
        taken.append(_take_next(jq, taken[-1], prefetch=6))
    assert len(jq.broker._unread) == 3
    jq.wait_for(lambda: _held(jq) == ids[3], message="Redis to run the packets")
    assert _lose_replies(jq, 6) == b":1\r\n" * 6  # each finish and start acted
    with sent_packets(jq.broker.client) as resent:
        jq.broker.flush()
    assert len(resent) == 3  # in order, on a new connection; each step finds itself done
    assert (_held(jq), _prefetched(jq)) == (ids[3], ids[4:])
    assert _stat(jq, "processed") == 3
    assert [jq.broker.get_result(i).worker_ids for i in ids[:4]] == [[W]] * 4
    assert _drain(jq, prefetch=6, first=taken[-1]) == ids[3:]
    assert _stat(jq, "processed") == 6 and jq.redis.llen(jq.key("failed")) == 0


def test_a_script_flush_behind_unread_packets_is_survived(jq, pipelined, caplog):
    ids = _enqueue(6)
    taken = [_reserve(jq, 6)]
    taken.append(_take_next(jq, taken[-1], prefetch=6))  # sent while Redis knows the scripts
    jq.wait_for(lambda: _held(jq) == ids[1], message="Redis to run the packet")
    jq.redis.script_flush()
    for _ in range(2):  # these two meet NOSCRIPT
        taken.append(_take_next(jq, taken[-1], prefetch=6))
    jq.broker.flush()  # loaded, all three sent again, each acted once
    assert (_held(jq), _prefetched(jq)) == (ids[3], ids[4:])
    assert _stat(jq, "processed") == 3
    assert [jq.broker.get_result(i).worker_ids for i in ids[:4]] == [[W]] * 4
    assert _drain(jq, prefetch=6, first=taken[-1]) == ids[3:]
    assert _stat(jq, "processed") == 6
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# ------------------------------------------------------------------ real workers
@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


def _make_stale(jq, worker_id: str) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    jq.redis.hset(jq.key("workers", "heartbeat"), worker_id, payload.format_heartbeat(old))


def _markers(jq) -> list[str]:
    return [entry.split(":")[0] for entry in jq.redis.lrange(jq.key("test", "record"), 0, -1)]


def _enqueue_records(*markers: str) -> list[str]:
    handles = tasks.record.get_backend().enqueue_many(tasks.record,
                                                      [((m,), {}) for m in markers])
    return [h.id for h in handles]


def test_a_prefetching_worker_runs_every_job_once_in_fifo_order(jq):
    markers = [str(i) for i in range(50)]
    ids = _enqueue_records(*markers)
    done = jq.run_worker("--no-fork", "--prefetch", "4", "--burst", "-q", "default")
    assert done.returncode == 0, done.stderr
    assert "prefetch 4" in done.stderr  # the start-up line names the mode
    assert _markers(jq) == markers
    pids = {entry.split(":")[1] for entry in jq.redis.lrange(jq.key("test", "record"), 0, -1)}
    assert len(pids) == 1  # all in the worker's own process
    assert {tasks.record.get_result(i).status for i in ids} == {TaskResultStatus.SUCCESSFUL}
    assert _stat(jq, "processed") == 50 and jq.redis.llen(jq.key("failed")) == 0
    assert list(jq.redis.scan_iter(match=jq.key("jobqueue", "prefetch", "*"))) == []


def test_quit_puts_the_jobs_prefetched_behind_the_running_one_back_in_order(jq, workers):
    held = hold.enqueue("q")
    ids = _enqueue_records(*(f"r{i}" for i in range(10)))
    raws = _raws(jq)[1:]
    proc = workers.spawn("-q", "default", "--no-fork", "--prefetch", "8")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    assert _prefetched(jq, worker_id) == ids[:7]
    os.kill(proc.pid, signal.SIGQUIT)
    workers.release("q")
    assert workers.wait_exit(proc) == 0
    assert hold.get_result(held.id).status == TaskResultStatus.SUCCESSFUL
    assert _raws(jq) == raws  # the exact entries, in their order
    assert _markers(jq) == []
    assert {tasks.record.get_result(i).status for i in ids} == {TaskResultStatus.READY}
    assert all(tasks.record.get_result(i).worker_ids == [] for i in ids)
    assert jq.redis.llen(jq.key("failed")) == 0
    assert [k for k in jq.redis.scan_iter(match=jq.key("*")) if worker_id in k] == []


def test_a_worker_killed_mid_batch_loses_no_job_once_reaped(jq, workers):
    ran = _enqueue_records("b0", "b1", "b2")
    held = hold.enqueue("k")
    behind = _enqueue_records(*(f"a{i}" for i in range(7)))
    proc = workers.spawn("-q", "default", "--no-fork", "--prefetch", "8")
    worker_id = workers.worker_id(proc, "default")
    workers.wait(proc, lambda: _held(jq, worker_id) == held.id, 30, "the held job to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert _prefetched(jq, worker_id) == behind[:4]  # b0..b2 done, hold running, a0..a3 held
    _make_stale(jq, worker_id)
    reaped = jq.wait_for(lambda: reap_dead_workers(jq.broker, "reaper:1:*"),  # once the dead
                         message="the reaper lock")  # worker's own reaper lock expired
    assert reaped == [worker_id]
    assert _queued(jq) == behind  # the batch back at the head, in order
    lost = hold.get_result(held.id)
    assert lost.status == TaskResultStatus.FAILED  # the running job: one attempt, WorkerLost
    assert [e.exception_class_path for e in lost.errors] == ["jobqueue.exceptions.WorkerLost"]
    done = workers.run("--no-fork", "--prefetch", "4", "--burst", "-q", "default")
    assert done.returncode == 0, done.stderr
    assert _markers(jq) == ["b0", "b1", "b2"] + [f"a{i}" for i in range(7)]  # each once
    assert {tasks.record.get_result(i).status
            for i in ran + behind} == {TaskResultStatus.SUCCESSFUL}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads titles from /proc")
def test_usr2_puts_the_prefetched_jobs_back_and_cont_runs_them(jq, workers):
    held = hold.enqueue("p")
    ids = _enqueue_records(*(f"r{i}" for i in range(5)))
    raws = _raws(jq)[1:]
    proc = workers.spawn("-q", "default", "--no-fork", "--prefetch", "8")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    os.kill(proc.pid, signal.SIGUSR2)
    workers.release("p")
    workers.wait_title(proc, "Paused")
    workers.wait(proc, lambda: _raws(jq) == raws, 10, "the batch back in the queue")
    assert hold.get_result(held.id).status == TaskResultStatus.SUCCESSFUL
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", worker_id))
    assert _markers(jq) == [] and proc.poll() is None
    os.kill(proc.pid, signal.SIGCONT)
    workers.wait(proc, lambda: len(_markers(jq)) == 5, 15, "the jobs after CONT")
    assert _markers(jq) == [f"r{i}" for i in range(5)]
    assert {tasks.record.get_result(i).status for i in ids} == {TaskResultStatus.SUCCESSFUL}


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--prefetch must be 1 or more"),
    ("-3", "--prefetch must be 1 or more"),
    ("x", "argument --prefetch: invalid int value: 'x'"),
])
def test_a_bad_prefetch_is_refused(jq, value, message):
    done = jq.run_worker("--no-fork", "--burst", "-q", "default", "--prefetch", value)
    assert done.returncode != 0
    assert message in done.stderr
    assert jq.worker_ids() == set()


def test_fork_mode_ignores_prefetch(jq, workers):
    assert Worker(jq.broker, ["default"], fork=True, prefetch=8).prefetch == 1
    assert Worker(jq.broker, ["default"], fork=False, prefetch=8).prefetch == 8
    held = hold.enqueue("f")
    ids = _enqueue_records("f0", "f1", "f2")
    proc = workers.spawn("-q", "default", "--prefetch", "8", "--burst")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    assert _queued(jq) == ids  # one job at a time
    assert not jq.redis.exists(jq.key("jobqueue", "prefetch", worker_id))
    workers.release("f")
    assert workers.wait_exit(proc) == 0
    assert hold.get_result(held.id).status == TaskResultStatus.SUCCESSFUL
    assert _markers(jq) == ["f0", "f1", "f2"]
