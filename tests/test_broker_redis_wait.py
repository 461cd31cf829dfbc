"""An idle worker's wait with the reserve queued behind the pop (``broker/redis_wait.py``), on a
real Redis: the job that ends the wait is reserved by Redis at once and handed out by the next
``reserve`` without a round trip; a stopping worker puts it back; interrupts leave nothing
unread; the reserve's times are Redis's clock when it ran.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest

from jobqueue import payload
from jobqueue.broker.base import Outcome
from jobqueue.compat import TaskResultStatus, task_backends
from jobqueue.job import Reservation
from tests.redis_support import start_waiter
from tests.testapp import tasks

W = "testhost:4242:default"


def _waiter(jq: Any, timeout: float = 60, fd: int | None = None, queues: tuple[str, ...] = (
        "default",), prefetch: int = 1) -> threading.Thread:
    return start_waiter(jq.broker, list(queues), timeout, fd, worker_id=W, prefetch=prefetch)


def _blocked(jq: Any) -> int:
    return int(jq.redis.info("clients")["blocked_clients"])


def _block(jq: Any, **kwargs: Any) -> threading.Thread:
    """Wait like an idle worker: after a reserve that found nothing (which loads the script
    into Redis, as a worker's first reserve does)."""
    assert jq.broker.reserve(W, ["default"]) is None
    before = _blocked(jq)
    thread = _waiter(jq, **kwargs)
    jq.wait_for(lambda: _blocked(jq) > before, message="the BLPOP to block")
    return thread


def _ended(thread: threading.Thread) -> None:
    thread.join(15)
    assert not thread.is_alive(), "the wait did not end"
    assert thread.errors == []  # type: ignore[attr-defined]


def _evalsha_calls(jq: Any) -> int:
    stats = jq.redis.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


def test_the_job_that_ends_the_wait_is_reserved_by_redis_and_handed_out_without_a_round_trip(
        jq: Any) -> None:
    thread = _block(jq)
    result = tasks.add.enqueue(2, 3)
    _ended(thread)
    # Reserved while the worker was still waking: in flight, off the queue, RUNNING.
    assert jq.redis.llen(jq.key("queue", "default")) == 0
    assert jq.redis.exists(jq.key("worker", W))
    assert tasks.add.get_result(result.id).status == TaskResultStatus.RUNNING
    calls = _evalsha_calls(jq)
    reservation = jq.broker.reserve(W, ["default"])
    assert isinstance(reservation, Reservation)
    assert reservation.job.id == result.id and reservation.job.args == [2, 3]
    assert _evalsha_calls(jq) == calls  # no reserve was sent for it
    assert jq.broker._waited == {}  # handed out once


def test_the_reserve_behind_the_wait_stamps_the_time_it_ran_not_the_time_it_was_sent(
        jq: Any) -> None:
    thread = _block(jq)
    time.sleep(1.2)  # longer than a second: run_at has one-second resolution
    pushed = datetime.now(UTC).replace(microsecond=0)
    result = tasks.add.enqueue(1, 1)
    _ended(thread)
    record = jq.redis.get(jq.key("worker", W))
    run_at = payload.parse_time(payload.json.loads(record)["run_at"])
    assert run_at is not None and run_at >= pushed - timedelta(seconds=1)
    started = tasks.add.get_result(result.id).started_at
    assert started is not None
    assert result.enqueued_at - timedelta(milliseconds=50) <= started
    assert started - result.enqueued_at < timedelta(seconds=1)


def test_a_wait_that_times_out_reserves_nothing(jq: Any) -> None:
    _ended(_waiter(jq, timeout=0.05))
    assert not jq.redis.exists(jq.key("worker", W))
    assert jq.broker.reserve(W, ["default"]) is None


def test_a_prefetching_wait_reserves_a_batch_behind_the_pop(jq: Any) -> None:
    thread = _block(jq, prefetch=3)
    # One script call stores all four, so the reserve behind the pop finds them all.
    ids = [r.id for r in task_backends["default"].enqueue_many(
        tasks.add, [((i, i), {}) for i in range(4)])]
    _ended(thread)
    assert jq.redis.llen(jq.key("jobqueue", "prefetch", W)) == 2
    got = []
    for _ in range(4):
        reservation = jq.broker.reserve(W, ["default"], prefetch=3)
        assert isinstance(reservation, Reservation)
        got.append(reservation.job.id)
        jq.broker.finish(W, reservation.job, "default",
                         Outcome(status="SUCCESSFUL", finished_at=datetime.now(UTC)))
    assert got == ids  # the batch of three in order, then the fourth
    assert jq.broker.reserve(W, ["default"], prefetch=3) is None


def test_a_stopping_worker_puts_the_job_its_wait_reserved_back_at_the_head(jq: Any) -> None:
    thread = _block(jq)
    first = tasks.add.enqueue(1, 0)
    _ended(thread)
    second = tasks.add.enqueue(2, 0)
    assert jq.broker.release(W) == 1
    assert not jq.redis.exists(jq.key("worker", W))
    queued = [payload.json.loads(x)["id"] for x in jq.redis.lrange(jq.key("queue", "default"),
                                                                    0, -1)]
    assert queued == [first.id, second.id]
    assert tasks.add.get_result(first.id).status == TaskResultStatus.READY
    assert jq.broker.reserve(W, ["default"]).job.id == first.id  # type: ignore[union-attr]


def test_unregistering_puts_the_job_a_wait_reserved_back(jq: Any) -> None:
    thread = _block(jq)
    result = tasks.add.enqueue(1, 0)
    _ended(thread)
    jq.broker.unregister_worker(W)
    assert [payload.json.loads(x)["id"] for x in
            jq.redis.lrange(jq.key("queue", "default"), 0, -1)] == [result.id]


def test_an_interrupted_wait_unblocks_its_pop_and_reads_what_the_reserve_did(jq: Any) -> None:
    read_fd, write_fd = os.pipe()
    try:
        before = _blocked(jq)
        thread = _block(jq, fd=read_fd)
        os.write(write_fd, b"x")
        _ended(thread)
        assert _blocked(jq) == before  # no pop left blocking, no connection dropped for it
        assert jq.broker._lost_waits == set()
        assert not jq.redis.exists(jq.key("worker", W))
        result = tasks.add.enqueue(1, 2)  # the broker goes on as before
        assert jq.broker.reserve(W, ["default"]).job.id == result.id  # type: ignore[union-attr]
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_wait_abandoned_unread_leaves_its_reservation_to_release(jq: Any) -> None:
    """Redis went silent and the connection was dropped after the reserve ran: the worker
    does not know what it holds. Stopping, it puts back whatever its record holds."""
    result = tasks.add.enqueue(1, 2)
    jq.broker.reserve(W, ["default"])  # stands in for the reserve whose reply was lost
    jq.broker._tokens.forget(W)
    jq.broker._lost_waits.add(W)
    assert jq.broker.release(W) == 1
    assert not jq.redis.exists(jq.key("worker", W))
    assert [payload.json.loads(x)["id"] for x in
            jq.redis.lrange(jq.key("queue", "default"), 0, -1)] == [result.id]


def test_a_wait_abandoned_unread_is_redelivered_by_the_next_reserve(jq: Any) -> None:
    result = tasks.add.enqueue(1, 2)
    jq.broker.reserve(W, ["default"])  # stands in for the reserve whose reply was lost
    jq.broker._tokens.forget(W)
    jq.broker._lost_waits.add(W)
    again = jq.broker.reserve(W, ["default"])
    assert isinstance(again, Reservation) and again.job.id == result.id
    assert jq.broker._lost_waits == set()


def test_a_wait_after_redis_lost_its_scripts_reserves_nothing_and_breaks_nothing(jq: Any) -> None:
    thread = _block(jq)
    jq.redis.script_flush()  # e.g. Redis restarted meanwhile
    job = '{"class":"tests.testapp.tasks.add","args":[1,2]}'  # pushed by another client
    jq.redis.rpush(jq.key("queue", "default"), job)
    jq.redis.rpush(jq.key("jobqueue", "wake", "default"), "1")
    _ended(thread)  # the reserve behind the pop got NOSCRIPT: it did not run
    assert not jq.redis.exists(jq.key("worker", W))
    assert jq.broker.reserve(W, ["default"]).job.args == [1, 2]  # type: ignore[union-attr]


# ------------------------------------------------------------------ reserve.lua's own clock
def _clock_script() -> str:
    """reserve.lua's clock block, fed epoch seconds and microseconds instead of TIME."""
    source = files("jobqueue.broker").joinpath("lua", "reserve.lua").read_text("utf-8")
    start = source.index("if ARGV[2] == '' then")
    end = source.index("\nend\n", start) + len("\nend\n")
    block = source[start:end].replace("redis.call('TIME')", "{ARGV[4], ARGV[5]}")
    return block + "return {ARGV[2], ARGV[3]}"


@pytest.mark.parametrize("seed", [1, 2])
def test_reserve_lua_formats_the_server_clock_exactly_as_python_does(jq: Any, seed: int) -> None:
    script = jq.redis.register_script(_clock_script())
    rng = random.Random(seed)
    moments = [0, 951782400, 951868799, 1709164800, 4102444799, 4107542400 + 86399,
               *(rng.randrange(0, 4_102_444_800) for _ in range(300))]
    for secs in moments:
        micros = rng.randrange(0, 1_000_000)
        when = datetime.fromtimestamp(secs, UTC).replace(microsecond=micros)
        run_at, now = script(args=["", "", "", secs, micros])
        assert (run_at, now) == (payload.format_run_at(when), payload.format_iso(when)), secs
