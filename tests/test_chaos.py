"""The chaos test, small enough for CI: no job is lost whatever gets ``kill -9``-ed.

A real ``manage.py pool`` of 4 workers works 300 jobs against a private Redis with AOF, while
8 random SIGKILLs hit job children, workers and the master (a new master is started after each
master kill) and Redis restarts once; then the same with ``--no-fork`` workers, whose prefetched
batches and refills are in flight when they are killed. Every job id must be recorded at
least once; duplicates are reported. The full version (5,000 jobs, 50 kills, 2 restarts) is
``benchmarks/chaos.py`` (``--no-fork`` for the second kind).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from benchmarks.chaos import ChaosConfig, enqueue_chaos_jobs, in_motion, run, settle
from jobqueue.connection import reset_clients
from jobqueue.redis_server import RedisServer, find_redis_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_redis_server() is None, reason="needs redis-server"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("no_fork", [False, True], ids=["fork", "no-fork"])
def test_no_job_is_lost_under_kill_9_and_a_redis_restart(settings: Any, tmp_path: Path,
                                                        capsys: Any, no_fork: bool) -> None:
    server = RedisServer(appendonly=True, data_dir=tmp_path / "redis")
    server.start()
    namespace = f"jqc{uuid.uuid4().hex[:10]}"
    settings.TASKS = {"default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": server.url, "NAMESPACE": namespace}}}
    config = ChaosConfig(jobs=300, kills=8, restarts=1, workers=4, job_seconds=0.1,
                         kill_interval=(0.5, 1.2), drain_timeout=120, no_fork=no_fork)
    lines: list[str] = []
    try:
        report = run(config, server, namespace, enqueue_chaos_jobs, tmp_path, lines.append)
    finally:
        server.stop()
        reset_clients()
    with capsys.disabled():
        print("\n" + "\n".join(lines) + "\n" + report.table())

    assert report.missing == [], f"lost {report.missing[:20]}\n{report.log[-4000:]}"
    assert report.recorded == config.jobs
    assert sum(report.kills.values()) == config.kills
    assert set(report.kills) == ({"worker", "master"} if no_fork else {"child", "worker", "master"})
    assert report.restarts == 1
    assert report.failed_records == 0, report.log[-4000:]
    left = f"{report.left_over}\n{report.left_over_detail}\n{report.log[-4000:]}"
    assert report.left_over.get("queue", 0) == 0, left
    assert report.left_over.get("delayed buckets", 0) == 0, left
    assert report.left_over.get("results not SUCCESSFUL", 0) == 0, left


def test_settling_counts_every_place_a_job_can_be_in_one_transaction(jq: Any) -> None:
    """The settle waits for queued, delayed, prefetched and in-flight jobs (a worker's
    ``:started`` stamp is not a job), read atomically so a job moving between two of them is
    never missed."""
    client = redis.Redis.from_url(jq.url)
    try:
        assert not any(in_motion(client, jq.namespace).values())
        client.rpush(jq.key("queue", "default"), "{}")
        client.zadd(jq.key("delayed_queue_schedule"), {"1": 1})
        client.rpush(jq.key("jobqueue", "prefetch", "w1"), "{}")
        client.set(jq.key("worker", "w1"), "{}")
        client.set(jq.key("worker", "w2", "started"), "now")
        assert in_motion(client, jq.namespace) == {
            "queue": 1, "delayed": 1, "prefetched": 1, "in flight": 1}
        assert settle(client, jq.namespace, timeout=0.3) is None
        client.delete(jq.key("queue", "default"), jq.key("delayed_queue_schedule"),
                      jq.key("jobqueue", "prefetch", "w1"), jq.key("worker", "w1"))
        assert settle(client, jq.namespace, timeout=5) is not None
    finally:
        client.close()
