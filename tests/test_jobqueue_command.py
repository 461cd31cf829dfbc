"""``manage.py jobqueue``: the monitor on the command line (stats, queues, workers, failed
list, retry/remove by filter or reference, clear, prune)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.monitor_support import WORKER, fail_all, register_worker
from tests.testapp.tasks import add, boom, echo

BOOM = "tests.testapp.tasks.boom"


def run(*args: str) -> str:
    out = StringIO()
    call_command("jobqueue", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def failures(jq):
    for i in range(6):
        (boom if i % 2 else echo).enqueue(f"n{i}")
    fail_all(jq.broker)
    return jq


def test_stats_and_queues(failures):
    add.enqueue(1, 1)
    add.using(queue_name="mail").enqueue(1, 1)
    stats = json.loads(run("stats", "--json"))
    assert stats["pending"] == 2 and stats["failed_records"] == 6
    assert "failed records" in run("stats")
    assert json.loads(run("queues", "--json")) == {"default": 1, "mail": 1}
    lines = run("queues").splitlines()
    assert lines[0].split() == ["default", "1"] and lines[-1].split() == ["failed", "6"]


def test_failed_list_with_filters(failures):
    rows = json.loads(run("failed", "--task", BOOM, "--json"))
    assert [r["full_args"] for r in rows] == ['["n5"]', '["n3"]', '["n1"]']
    text = run("failed", "--limit", "1")
    assert "n5" in text and "ValueError" in text and "ref=" in text


def test_retry_needs_a_selection(failures):
    with pytest.raises(CommandError, match="Say which failed jobs"):
        run("retry-failed", "--no-input")


def test_retry_by_filter_and_by_ref(failures):
    assert "Retried 3 failed job(s)." in run("retry-failed", "--task", BOOM, "--no-input")
    assert failures.broker.queue_size("default") == 3
    ref = json.loads(run("failed", "--json"))[0]["ref"]
    assert "Retried 1" in run("retry-failed", "--ref", ref, "--no-input")
    assert "Retried 0" in run("retry-failed", "--ref", ref, "--no-input")


def test_destructive_actions_ask_first(failures, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Cancelled"):
        run("remove-failed", "--all")
    assert failures.broker.failed_count() == 6
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    assert "Removed 6" in run("remove-failed", "--all")


def test_clear_failed_and_clear_queue(failures):
    add.enqueue(1, 1)
    assert "Cleared 6" in run("clear-failed", "--no-input")
    assert "Deleted 1 job(s) from 'default'" in run("clear-queue", "default", "--yes")


def test_workers_and_prune_stale(jq):
    register_worker(jq.broker, WORKER, age_seconds=900)
    register_worker(jq.broker, "fresh:1:q")
    text = run("workers")
    assert "stale    testhost:4242:default" in text and "idle     fresh:1:q" in text
    assert "fresh" not in run("workers", "--stale")
    assert f"Pruned {WORKER}" in run("prune-stale", "--no-input")
    assert "No worker is stale" in run("prune-stale", "--no-input")


def test_redis_down_is_a_command_error(jq, settings):
    settings.TASKS = {"default": {"BACKEND": "jobqueue.backends.redis.RedisBackend",
                                  "QUEUES": [], "OPTIONS": {"URL": "redis://127.0.0.1:9/0"}}}
    with pytest.raises(CommandError, match="Redis is unavailable"):
        run("stats")
