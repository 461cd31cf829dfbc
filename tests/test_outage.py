"""Redis going away and coming back: workers keep running, log once, lose nothing.

Each test owns a private ``redis-server`` with AOF (``jobqueue.redis_server.RedisServer``) that
it kills with SIGKILL and starts again on the same port and data directory, while a real
``manage.py worker`` process is pointed at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobqueue.compat import TaskResultStatus, task_backends
from jobqueue.connection import reset_clients
from jobqueue.exceptions import BrokerUnavailable
from jobqueue.job import BadJob
from jobqueue.redis_server import RedisServer, find_redis_server
from tests.conftest import Harness
from tests.testapp import tasks

pytestmark = pytest.mark.skipif(find_redis_server() is None, reason="needs redis-server")

DOWN = "Redis unavailable, retrying with backoff"
BACK = "Redis is back after"


class Outage(Harness):
    """A ``Harness`` on a private Redis that the test can kill and restart."""

    server: RedisServer
    log: Path

    def kill(self) -> None:
        self.server.kill()

    def start(self) -> None:
        self.server.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, line: str) -> int:
        return self.log_text().count(line)


@pytest.fixture
def outage(settings: Any, tmp_path: Path) -> Iterator[Outage]:
    server = RedisServer(appendonly=True, data_dir=tmp_path / "redis")
    server.start()
    namespace = f"jqo{uuid.uuid4().hex[:10]}"
    settings.TASKS = {
        "default": {
            "BACKEND": "jobqueue.backends.redis.RedisBackend",
            "QUEUES": [],
            "OPTIONS": {"URL": server.url, "NAMESPACE": namespace,
                        # Fail fast while Redis is down (a refused connection is instant).
                        "CONNECTION_KWARGS": {"socket_connect_timeout": 1.0}},
        }
    }
    harness = Outage(url=server.url, namespace=namespace)
    harness.server = server
    harness.log = tmp_path / "worker.log"
    try:
        yield harness
    finally:
        for proc in harness.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        server.stop()
        reset_clients()


def _spawn(outage: Outage, *args: str) -> Any:
    with outage.log.open("ab") as log:
        proc = outage.spawn_worker("-q", "default", *args, stderr=log)
    outage.wait_for(lambda: len(outage.worker_ids()) == 1, timeout=30,
                    message="the worker to register")
    return proc


def _status(result_id: str) -> Any:
    try:
        return task_backends["default"].get_result(result_id).status
    except BrokerUnavailable:
        return None


def test_idle_worker_survives_an_outage_logs_it_once_and_then_works(outage):
    proc = _spawn(outage)
    outage.kill()
    outage.wait_for(lambda: outage.count(DOWN) >= 1, timeout=30, message="the outage log line")
    time.sleep(3)  # let the worker retry several times while Redis stays down
    assert proc.poll() is None, outage.log_text()[-3000:]

    outage.start()
    outage.wait_for(lambda: outage.count(BACK) >= 1, timeout=30, message="the recovery line")
    result = tasks.add.enqueue(20, 22)
    outage.wait_for(lambda: _status(result.id) == TaskResultStatus.SUCCESSFUL,
                    timeout=30, message="the job enqueued after the outage")
    assert proc.poll() is None
    assert outage.count(DOWN) == 1, outage.log_text()[-3000:]
    assert outage.count(BACK) == 1, outage.log_text()[-3000:]


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_job_that_ends_while_redis_is_down_is_recorded_when_it_returns(outage, tmp_path, mode):
    marker = str(tmp_path / "job")
    running = tasks.file_sleepy.enqueue(marker, 1.5)
    queued = tasks.add.enqueue(1, 2)
    proc = _spawn(outage, *(["--no-fork"] if mode == "no-fork" else []))
    outage.wait_for(lambda: Path(f"{marker}.started").exists(), timeout=30,
                    message="the job to start")
    outage.kill()
    outage.wait_for(lambda: Path(f"{marker}.done").exists(), timeout=30,
                    message="the job to end during the outage")
    time.sleep(1)  # the worker now holds an outcome it cannot record
    assert proc.poll() is None, outage.log_text()[-3000:]

    outage.start()
    outage.wait_for(lambda: _status(running.id)
                    == TaskResultStatus.SUCCESSFUL, timeout=30, message="the recorded outcome")
    outage.wait_for(lambda: _status(queued.id) == TaskResultStatus.SUCCESSFUL,
                    timeout=30, message="the job queued behind it")
    done = tasks.file_sleepy.get_result(running.id)
    assert done.return_value == int(Path(f"{marker}.done").read_text())
    assert len(done.worker_ids) == 1  # ran once: nothing re-ran it
    assert outage.redis.get(outage.key("stat", "processed")) == "2"
    assert outage.redis.llen(outage.key("failed")) == 0
    assert outage.count(DOWN) == 1, outage.log_text()[-3000:]


def test_redis_restart_with_aof_keeps_queued_delayed_and_running_jobs(outage, tmp_path):
    marker = str(tmp_path / "job")
    running = tasks.file_sleepy.enqueue(marker, 2.0)
    queued = [tasks.add.enqueue(i, i) for i in range(5)]
    later = tasks.add.using(run_after=timedelta(seconds=2)).enqueue(7, 7)
    proc = _spawn(outage)
    outage.wait_for(lambda: Path(f"{marker}.started").exists(), timeout=30,
                    message="the job to start")
    outage.server.restart()  # a clean restart: SIGTERM, AOF flushed, reloaded
    for result in [running, *queued, later]:
        outage.wait_for(lambda result=result: _status(result.id)
                        == TaskResultStatus.SUCCESSFUL, timeout=40,
                        message=f"job {result.id}")
    assert proc.poll() is None
    assert outage.redis.llen(outage.key("failed")) == 0
    assert outage.count(DOWN) <= 1


def test_enqueue_raises_broker_unavailable_while_redis_is_down(outage):
    outage.kill()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="Redis is unavailable"):
        tasks.add.enqueue(1, 2)
    with pytest.raises(BrokerUnavailable):
        tasks.add.using(run_after=timedelta(minutes=5)).enqueue(1, 2)
    with pytest.raises(BrokerUnavailable):
        tasks.add.get_result("0" * 32)
    assert time.monotonic() - started < 10
    outage.start()
    # Nothing half-written: the failed calls left no job behind.
    assert outage.redis.llen(outage.key("queue", "default")) == 0
    assert outage.redis.zcard(outage.key("delayed_queue_schedule")) == 0
    result = tasks.add.enqueue(1, 2)
    assert tasks.add.get_result(result.id).status == TaskResultStatus.READY


def test_after_a_long_outage_live_workers_stay_and_dead_ones_are_reaped(outage):
    procs = [_spawn(outage)]
    with outage.log.open("ab") as log:
        procs += [outage.spawn_worker("-q", "default", stderr=log) for _ in range(2)]
    outage.wait_for(lambda: len(outage.worker_ids()) == 3, timeout=30, message="3 workers")
    before = outage.worker_ids()
    dead = next(w for w in before if int(w.split(":")[1]) == procs[2].pid)
    outage.kill()
    os.killpg(procs[2].pid, signal.SIGKILL)  # dies during the outage
    time.sleep(8)  # longer than max(6 x 1 s heartbeat, 5 s): every heartbeat goes stale
    outage.start()
    outage.wait_for(lambda: outage.count(BACK) >= 2, timeout=60, message="both reconnected")
    outage.wait_for(lambda: dead not in outage.worker_ids(), timeout=60,
                    message="the dead worker to be reaped")
    time.sleep(3)  # another reaping pass
    assert procs[0].poll() is None and procs[1].poll() is None
    assert outage.worker_ids() == before - {dead}
    assert outage.log_text().count("Reaped dead worker") == 1, outage.log_text()[-3000:]


def test_a_reservation_whose_reply_was_lost_is_delivered_again(jq):
    first = tasks.add.enqueue(1, 1)
    second = tasks.add.enqueue(2, 2)
    worker_id = "host-x:1:default"
    lost = jq.broker.reserve(worker_id, ["default"])  # ran in Redis; the reply never came
    again = jq.broker.reserve(worker_id, ["default"])  # the worker's next attempt
    assert again is not None and again.job.id == first.id and again.queue == "default"
    assert again.job.raw == lost.job.raw
    assert again.worker_ids == (worker_id,)  # one reservation, counted once
    assert again.started_at == lost.started_at
    queued = jq.redis.lrange(jq.key("queue", "default"), 0, -1)
    assert [json.loads(raw)["id"] for raw in queued] == [second.id]  # not popped meanwhile


def test_an_undecodable_entry_whose_reply_was_lost_is_delivered_again(jq):
    jq.redis.rpush(jq.key("queue", "default"), "{oops")
    worker_id = "host-x:2:default"
    jq.broker.reserve(worker_id, ["default"])
    again = jq.broker.reserve(worker_id, ["default"])
    assert isinstance(again, BadJob) and again.raw == "{oops" and again.queue == "default"
