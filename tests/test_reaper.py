"""Dead workers: found by heartbeat, their job settled per its retry policy, records cleaned.

Real processes killed with SIGKILL, a worker started later doing the reaping; "other machines"
are workers registered under another host name with a stale heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from jobqueue import payload
from jobqueue.broker.base import WorkerInfo
from jobqueue.compat import TaskResultStatus
from jobqueue.reaper import reap_dead_workers
from tests.testapp import tasks
from tests.worker_support import cmdline, job_children


def _kill_group(proc: Any) -> None:
    """``kill -9`` a spawned worker and its child at once (its whole session)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _records_of(jq, worker_id: str) -> dict[str, Any]:
    """Every record a worker leaves in Redis, by a name for the assertion message."""
    r = jq.redis
    return {
        "workers": r.sismember(jq.key("workers"), worker_id),
        "heartbeat": r.hexists(jq.key("workers", "heartbeat"), worker_id),
        "worker:<id>": r.exists(jq.key("worker", worker_id)),
        "started": r.exists(jq.key("worker", worker_id, "started")),
        "stat:processed:<id>": r.exists(jq.key("stat", "processed", worker_id)),
        "stat:failed:<id>": r.exists(jq.key("stat", "failed", worker_id)),
        "jobqueue:worker:<id>": r.exists(jq.key("jobqueue", "worker", worker_id)),
    }


def _assert_cleaned(jq, worker_id: str) -> None:
    left = {name: v for name, v in _records_of(jq, worker_id).items() if v}
    assert left == {}, f"records of {worker_id} left behind: {left}"


def _start_running(jq, task: Any, *args: Any, name: str | None = None) -> tuple[Any, str, Any]:
    """Enqueue a job, start a worker on it, wait until it runs; (result, worker id, proc)."""
    result = task.enqueue(*args)
    proc = jq.spawn_worker("-q", "default", *(["--name", name] if name else []))
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    [worker_id] = jq.worker_ids()
    assert jq.redis.exists(jq.key("worker", worker_id))
    jq.redis.incr(jq.key("stat", "failed", worker_id))  # a per-worker stat to be cleaned too
    return result, worker_id, proc


def _failures(jq) -> list[payload.Failure]:
    return [payload.decode_failure(raw) for raw in jq.redis.lrange(jq.key("failed"), 0, -1)]


def test_killed_worker_and_child_are_reaped_by_a_later_worker_and_the_job_failed(jq):
    result, dead, proc = _start_running(jq, tasks.sleepy, 60, "lost")
    _kill_group(proc)
    jq.spawn_worker("-q", "default")  # same host, a later worker
    jq.wait_for(lambda: dead not in jq.worker_ids(), timeout=40, message="the dead worker reaped")

    final = tasks.sleepy.get_result(result.id)
    assert final.status == TaskResultStatus.FAILED  # max_attempts is 1 by default
    assert final.worker_ids == [dead]  # the attempt is counted
    [error] = final.errors
    assert error.exception_class_path == "jobqueue.exceptions.WorkerLost"
    assert f"Worker {dead} stopped heart-beating" in error.traceback
    [failure] = _failures(jq)
    assert failure.exception == "WorkerLost" and failure.worker == dead
    assert failure.queue == "default" and failure.task_name == "tests.testapp.tasks.sleepy"
    assert failure.payload["args"] == [60, "lost"]
    _assert_cleaned(jq, dead)
    assert jq.redis.llen(jq.key("test:finished")) == 0


def test_killed_worker_on_another_machine_has_its_job_retried_per_policy(jq):
    result, dead, proc = _start_running(jq, tasks.sleepy_twice, 2, "again", name="machine-a")
    assert dead.startswith("machine-a:")
    _kill_group(proc)
    jq.spawn_worker("-q", "default", "--name", "machine-b")
    jq.wait_for(lambda: tasks.sleepy_twice.get_result(result.id).status
                == TaskResultStatus.SUCCESSFUL, timeout=40, message="the retried attempt")

    final = tasks.sleepy_twice.get_result(result.id)
    assert len(final.worker_ids) == 2 and final.worker_ids[0] == dead
    assert final.worker_ids[1].startswith("machine-b:")
    [error] = final.errors
    assert error.exception_class_path == "jobqueue.exceptions.WorkerLost"
    assert dead in error.traceback
    assert _failures(jq) == []
    assert jq.redis.lrange(jq.key("test:finished"), 0, -1) == ["again"]
    _assert_cleaned(jq, dead)


def test_killed_child_with_a_surviving_parent_is_handled_at_once(jq):
    result = tasks.sleepy_twice.enqueue(30, "child")
    jq.spawn_worker("-q", "default")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    [worker_id] = jq.worker_ids()
    child = _child_pid(int(worker_id.split(":")[1]))
    os.kill(child, signal.SIGKILL)
    # The parent sees the child die and settles the job itself: no heartbeat timeout involved.
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 2, timeout=15,
                message="the second attempt")
    final = tasks.sleepy_twice.get_result(result.id)
    assert [e.exception_class_path for e in final.errors] == ["jobqueue.exceptions.DirtyExit"]
    assert "SIGKILL" in final.errors[0].traceback
    assert final.worker_ids == [worker_id, worker_id]
    assert worker_id in jq.worker_ids()


def _child_pid(worker: int) -> int:
    """The worker's child running the job (forked by the worker or by its fork server)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = [pid for pid in job_children(worker) if "Processing" in cmdline(pid)]
        if running:
            return running[0]
        time.sleep(0.02)
    raise AssertionError(f"no job child of {worker}")


# --------------------------------------------------------------------------- in-process reaping
def _fake_worker(jq, worker_id: str, *, beat_age: float | None, jobqueue_info: bool = True,
                 interval: str = "1.0") -> None:
    host, pid, queues = worker_id.split(":", 2)
    if jobqueue_info:
        jq.broker.register_worker(WorkerInfo(id=worker_id, host=host, pid=int(pid),
                                             queues=queues.split(","),
                                             extra={"heartbeat_interval": interval}))
    else:  # what Ruby Resque registers: no jobqueue info hash
        jq.redis.sadd(jq.key("workers"), worker_id)
        jq.redis.set(jq.key("worker", worker_id, "started"), "2026-01-01 00:00:00 +0000")
    beats = jq.key("workers", "heartbeat")
    jq.redis.hdel(beats, worker_id)
    if beat_age is not None:
        seen = datetime.now(UTC) - timedelta(seconds=beat_age)
        jq.redis.hset(beats, worker_id, payload.format_heartbeat(seen))
    jq.redis.incr(jq.key("stat", "processed", worker_id))


def _reserve_as(jq, worker_id: str) -> Any:
    reservation = jq.broker.reserve(worker_id, ["default"])
    assert reservation is not None
    return reservation


def test_worker_of_another_machine_with_a_stale_heartbeat_is_reaped(jq):
    dead = "far-away-host:4242:default"
    result = tasks.sleepy_twice.enqueue(0, "far")
    _reserve_as(jq, dead)
    _fake_worker(jq, dead, beat_age=60)

    assert reap_dead_workers(jq.broker, "reaper:1:*") == [dead]
    _assert_cleaned(jq, dead)
    record = jq.broker.get_result(result.id)
    assert record.status == "READY" and record.worker_ids == [dead]
    assert [e["exception_class_path"] for e in record.errors] == [
        "jobqueue.exceptions.WorkerLost"]
    # The retry went to the delayed schedule (resque-scheduler's layout), attempt counted.
    [ts] = jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1)
    [item] = jq.redis.lrange(jq.key("delayed", ts), 0, -1)
    assert json.loads(item)["attempts"] == 1 and json.loads(item)["queue"] == "default"


def test_heartbeat_younger_than_the_workers_own_limit_is_not_reaped(jq):
    alive = "busy-host:1:default"
    tasks.add.enqueue(1, 1)
    _reserve_as(jq, alive)
    _fake_worker(jq, alive, beat_age=3)  # < max(6 x 1 s, 5 s)
    assert reap_dead_workers(jq.broker, "reaper:1:*") == []
    assert jq.redis.exists(jq.key("worker", alive))
    assert alive in jq.worker_ids()


def test_slow_heartbeat_interval_is_respected(jq):
    slow = "slow-host:1:default"
    _fake_worker(jq, slow, beat_age=100, interval="60")  # limit 6 x 60 s
    assert reap_dead_workers(jq.broker, "reaper:1:*") == []


def test_ruby_worker_is_reaped_only_after_resques_300_seconds(jq):
    young = "ruby-host:111:default"
    old = "ruby-host:222:default"
    client = jq.broker.client
    working = '{"queue":"default","run_at":"2026-01-01T00:00:00Z","payload":{"class":"Archive",' \
              '"args":[7]}}'
    for worker_id, age in ((young, 100), (old, 400)):
        _fake_worker(jq, worker_id, beat_age=age, jobqueue_info=False)
        client.set(jq.key("worker", worker_id), working)

    assert reap_dead_workers(jq.broker, "reaper:1:*") == [old]
    assert young in jq.worker_ids() and jq.redis.exists(jq.key("worker", young))
    _assert_cleaned(jq, old)
    [failure] = _failures(jq)
    assert failure.exception == "WorkerLost" and failure.worker == old
    assert failure.payload == {"class": "Archive", "args": [7]}  # the exact Ruby payload


def test_worker_without_a_heartbeat_is_never_reaped(jq):
    silent = "other-lib:9:default"
    tasks.add.enqueue(1, 1)
    _reserve_as(jq, silent)
    _fake_worker(jq, silent, beat_age=None)
    jq.redis.set(jq.key("worker", silent, "started"), "2000-01-01 00:00:00 +0000")
    assert reap_dead_workers(jq.broker, "reaper:1:*") == []
    assert jq.redis.exists(jq.key("worker", silent))
    assert silent in jq.worker_ids()


def test_only_one_reaper_at_a_time(jq):
    dead = "gone-host:77:default"
    tasks.always_fails.enqueue("once")
    _reserve_as(jq, dead)
    _fake_worker(jq, dead, beat_age=60)
    jq.broker.acquire_reaper_lock("someone-else", 30)
    assert reap_dead_workers(jq.broker, "reaper:1:*") == []  # the lock is held
    assert jq.redis.exists(jq.key("worker", dead))
    jq.redis.delete(jq.key("jobqueue", "reaper"))

    results: list[list[str]] = []
    barrier = threading.Barrier(8)

    def reap(n: int) -> None:
        barrier.wait()
        results.append(reap_dead_workers(jq.broker, f"reaper:{n}:*"))

    threads = [threading.Thread(target=reap, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=len) == [[]] * 7 + [[dead]]
    # Settled exactly once: one retry scheduled (always_fails has two attempts), no failure.
    assert sum(jq.redis.llen(jq.key("delayed", ts))
               for ts in jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1)) == 1
    assert _failures(jq) == []
    ttl = jq.redis.ttl(jq.key("jobqueue", "reaper"))
    assert 0 < ttl <= 3


def test_reaper_never_reaps_itself(jq):
    me = "me-host:1:default"
    _fake_worker(jq, me, beat_age=60)
    assert reap_dead_workers(jq.broker, me) == []
    assert me in jq.worker_ids()


# --------------------------------------------------------------------------- a crashing worker
def _crashing_worker(jq, monkeypatch) -> Any:
    """A real in-process worker with a bug: it dies right after reserving a job."""
    from jobqueue.worker import Worker

    worker = Worker(jq.broker, ["default"], fork=False, burst=True,
                    manage_db_connections=False)

    def process(reservation: Any) -> None:
        raise RuntimeError("a bug in the worker loop")

    monkeypatch.setattr(worker, "process", process)
    return worker


def test_worker_crashing_while_holding_a_job_settles_it_before_unregistering(jq, monkeypatch):
    result = tasks.sleepy_twice.enqueue(0, "crash")
    worker = _crashing_worker(jq, monkeypatch)
    try:
        worker.work()
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the worker should have crashed")
    _assert_cleaned(jq, worker.id)
    record = jq.broker.get_result(result.id)
    assert record.status == "READY" and record.worker_ids == [worker.id]  # a retry is due
    [error] = record.errors
    assert error["exception_class_path"] == "jobqueue.exceptions.DirtyExit"
    assert f"Worker {worker.id} stopped while holding this job" in error["traceback"]
    assert jq.redis.zcard(jq.key("delayed_queue_schedule")) == 1


def test_worker_crashing_while_holding_a_last_attempt_fails_it(jq, monkeypatch):
    result = tasks.add.enqueue(1, 2)
    worker = _crashing_worker(jq, monkeypatch)
    with contextlib.suppress(RuntimeError):
        worker.work()
    _assert_cleaned(jq, worker.id)
    assert jq.broker.get_result(result.id).status == "FAILED"
    [failure] = _failures(jq)
    assert failure.exception == "DirtyExit" and failure.worker == worker.id


def test_staleness_is_judged_by_the_redis_servers_clock(jq):
    beating, silent = "skewed-host:1:default", "skewed-host:2:default"
    _fake_worker(jq, beating, beat_age=100)  # "now" by the server's clock (below)
    _fake_worker(jq, silent, beat_age=110)  # 10 s old by the server's clock
    # This machine's clock runs 100 s ahead of Redis's (as measured at registration).
    jq.broker._clock_offset = timedelta(seconds=-100)
    try:
        assert reap_dead_workers(jq.broker, "reaper:1:*") == [silent]
    finally:
        jq.broker._clock_offset = timedelta(0)


# --------------------------------------------------------------------------- deploys
def test_term_puts_the_running_job_back_at_the_head_of_its_queue(jq):
    result = tasks.sleepy_twice.enqueue(30, "deploy")
    behind = tasks.add.enqueue(1, 1)
    proc = jq.spawn_worker("-q", "default", "--grace", "5")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    [worker_id] = jq.worker_ids()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    # The job saw WorkerShutdown (its finally ran) and went back first in line.
    assert jq.redis.lrange(jq.key("test:finally"), 0, -1) == ["deploy"]
    queued = jq.redis.lrange(jq.key("queue", "default"), 0, -1)
    assert [json.loads(raw)["id"] for raw in queued] == [result.id, behind.id]
    record = jq.broker.get_result(result.id)
    assert record.status == "READY" and record.worker_ids == [worker_id]
    assert [e["exception_class_path"] for e in record.errors] == [
        "jobqueue.exceptions.WorkerShutdown"]
    _assert_cleaned(jq, worker_id)
