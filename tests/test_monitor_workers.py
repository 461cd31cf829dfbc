"""Working and Workers pages, one worker's page, and pruning stale workers
(``monitor.views_workers``)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.monitor_support import WORKER, M, page_text, register_worker
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]


def test_workers_are_grouped_by_host_and_stale_ones_marked(jq, viewer):
    register_worker(jq.broker, "alpha:1:default")
    register_worker(jq.broker, "alpha:2:mail")
    register_worker(jq.broker, "beta:3:*", age_seconds=600)
    response = viewer.get(M + "workers/")
    hosts = response.context["hosts"]
    assert [h["host"] for h in hosts] == ["alpha", "beta"]
    assert [w["pid"] for w in hosts[0]["workers"]] == [1, 2]
    (beta,) = hosts[1]["workers"]
    assert beta["stale"] and beta["state"] == "stale"
    assert response.context["stale"] == 1
    assert b"jq-badge-stale" in response.content
    assert b"Prune" not in response.content  # viewers get no buttons


def test_working_shows_only_busy_workers_with_their_job(jq, viewer):
    add.enqueue(2, 3)
    register_worker(jq.broker, WORKER)
    register_worker(jq.broker, "idle:9:default")
    jq.broker.reserve(WORKER, ["default"])
    response = viewer.get(M + "working/")
    assert response.context["working"] == 1 and response.context["total"] == 2
    (group,) = response.context["hosts"]
    assert group["host"] == "testhost"
    assert group["workers"][0]["job"]["args"] == "[2,3]"


def test_worker_page_shows_every_fact(jq, viewer):
    add.enqueue(1, 1)
    register_worker(jq.broker, WORKER, age_seconds=2)
    jq.broker.reserve(WORKER, ["default"])
    html = page_text(viewer.get(M + f"workers/{WORKER}/"))
    for text in ("testhost", "4242", "default", "Last heartbeat", "heartbeat_interval",
                 "tests.testapp.tasks.add", "Processed"):
        assert text in html
    assert viewer.get(M + "workers/nobody:1:x/").status_code == 404


def test_worker_ids_are_escaped(jq, viewer):
    register_worker(jq.broker, "<b>evil</b>:7:<i>q</i>")
    html = viewer.get(M + "workers/").content.decode()
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html


def test_prune_a_stale_worker_puts_its_job_back(jq, manager):
    for i in range(2):
        add.enqueue(i, i)
    register_worker(jq.broker, WORKER, age_seconds=0)
    jq.broker.reserve(WORKER, ["default"])
    url = reverse("admin:jobqueue_monitor_worker_prune")
    response = manager.post(url, {"worker": WORKER}, follow=True)
    assert b"was not pruned" in response.content  # it is alive
    beat = "2020-01-01T00:00:00+00:00"
    jq.redis.hset(jq.key("workers", "heartbeat"), WORKER, beat)
    assert b"Prune" in manager.get(M + "workers/").content
    response = manager.post(url, {"worker": WORKER}, follow=True)
    assert b"back to the head of queue" in response.content
    assert jq.broker.worker(WORKER) is None
    assert [j.args[0] for j in jq.broker.peek("default", 0, 5)] == [0, 1]


def test_prune_every_stale_worker(jq, manager):
    register_worker(jq.broker, "a:1:q", age_seconds=900)
    register_worker(jq.broker, "b:2:q", age_seconds=900)
    register_worker(jq.broker, "c:3:q")
    url = reverse("admin:jobqueue_monitor_workers_prune_stale")
    response = manager.post(url, follow=True)
    assert b"Pruned 2 of 2 stale workers" in response.content
    assert [w.id for w in jq.broker.workers()] == ["c:3:q"]
    assert b"No worker is stale" in manager.post(url, follow=True).content
