"""Django's ``priority`` (-100..100, higher first) within a queue, FIFO among equals."""

from __future__ import annotations

import json

import pytest

from jobqueue.compat import InvalidTask
from tests.testapp import tasks


def _order(jq) -> list[str]:
    return [x.split(":")[0] for x in jq.redis.lrange(jq.key("test:record"), 0, -1)]


def test_higher_priority_runs_first_and_equal_priorities_keep_fifo(jq):
    for priority, marker in [(0, "z1"), (-5, "n1"), (10, "p1"), (0, "z2"), (50, "p2"),
                             (10, "p3"), (-5, "n2"), (100, "top"), (-100, "bottom")]:
        tasks.record.using(priority=priority).enqueue(marker)
    jq.run_worker("--burst", "--no-fork")
    assert _order(jq) == ["top", "p2", "p1", "p3", "z1", "z2", "n1", "n2", "bottom"]


def test_default_priority_jobs_stay_plain_resque_jobs(jq):
    tasks.add.enqueue(1, 2)
    tasks.add.using(priority=7).enqueue(3, 4)
    plain = jq.redis.lrange(jq.key("queue", "default"), 0, -1)
    assert len(plain) == 1 and json.loads(plain[0])["args"] == [1, 2]
    assert "priority" not in json.loads(plain[0])
    ranked = jq.redis.zrange(jq.key("jobqueue", "priority", "default"), 0, -1)
    assert len(ranked) == 1 and json.loads(ranked[0])["priority"] == 7
    assert "default" in jq.redis.smembers(jq.key("queues"))


def test_priority_out_of_range_is_rejected():
    with pytest.raises(InvalidTask):
        tasks.add.using(priority=101)


def test_prioritised_delayed_job_is_promoted_into_priority_order(jq):
    from datetime import timedelta

    tasks.record.using(priority=-1).enqueue("low")
    tasks.record.using(priority=9, run_after=timedelta(seconds=1)).enqueue("high-later")
    jq.wait_for(lambda: jq.broker.promote_due() is None and jq.redis.zcard(
        jq.key("jobqueue", "priority", "default")) == 2, timeout=10, message="promotion")
    jq.run_worker("--burst", "--no-fork")
    assert _order(jq) == ["high-later", "low"]
