"""Queues pages and their actions (``monitor.views_queues``, ``monitor.paging``,
``monitor.present``): sizes, pagination, escaping, delete one job, clear a queue."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobqueue.monitor.present import decode_raw, encode_raw
from tests.monitor_support import M
from tests.testapp.tasks import add, echo

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]


def test_queues_list_every_queue_with_its_size(jq, viewer):
    for i in range(3):
        add.enqueue(i, i)
    add.using(queue_name="mail").enqueue(1, 1)
    response = viewer.get(M + "queues/")
    assert [(q["name"], q["size"]) for q in response.context["queues"]] == [
        ("default", 3), ("mail", 1)]
    assert response.context["total"] == 4
    assert b'href="/admin/jobqueue/monitor/queues/mail/"' in response.content


def test_queue_page_is_paginated(jq, viewer):
    jq.broker.push_many([])  # no-op: the API accepts empty batches
    for i in range(60):
        add.enqueue(i, 0)
    first = viewer.get(M + "queues/default/")
    assert [j["args"] for j in first.context["jobs"]][:2] == ["[0,0]", "[1,0]"]
    assert len(first.context["jobs"]) == 25
    assert [link.get("number") for link in first.context["page"]["links"]] == [1, 2, 3]
    third = viewer.get(M + "queues/default/?p=3")
    assert [j["args"] for j in third.context["jobs"]] == [f"[{i},0]" for i in range(50, 60)]
    assert b">51<" in third.content  # row numbers continue across pages
    assert viewer.get(M + "queues/default/?p=99").context["page"]["page"].number == 3
    assert viewer.get(M + "queues/default/?p=abc").context["page"]["page"].number == 1


def test_queue_page_escapes_everything_from_redis(jq, viewer):
    echo.enqueue("<script>alert(1)</script>", note="<b>x</b>")
    jq.redis.rpush(jq.key("queue", "default"), '{"class":"<img src=x onerror=alert(2)>","args":[]}')
    html = viewer.get(M + "queues/default/").content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html


def test_unknown_queue_is_404(jq, viewer):
    assert viewer.get(M + "queues/nope/").status_code == 404


def test_delete_one_job_by_its_bytes(jq, manager):
    for i in range(3):
        add.enqueue(i, i)
    job = jq.broker.peek("default", 1, 1)[0]
    url = reverse("admin:jobqueue_monitor_queue_delete_job")
    response = manager.post(url, {"queue": "default", "job": encode_raw(job.raw),
                                  "next": M + "queues/default/"}, follow=True)
    assert b"Deleted one job" in response.content
    assert [j.args[0] for j in jq.broker.peek("default", 0, 5)] == [0, 2]
    again = manager.post(url, {"queue": "default", "job": encode_raw(job.raw)}, follow=True)
    assert b"no longer waiting" in again.content
    broken = manager.post(url, {"queue": "default", "job": "%%%"}, follow=True)
    assert b"incomplete" in broken.content
    assert jq.broker.queue_size("default") == 2


def test_clear_queue_asks_first(jq, manager):
    for i in range(4):
        add.enqueue(i, i)
    url = reverse("admin:jobqueue_monitor_queue_clear")
    page = manager.get(url + "?queue=default")
    assert b"Delete all 4 jobs waiting on queue" in page.content
    assert manager.post(url, {"queue": "default"}).status_code == 200  # not confirmed
    assert jq.broker.queue_size("default") == 4
    response = manager.post(url, {"queue": "default", "confirm": "yes"}, follow=True)
    assert b"4 jobs deleted" in response.content
    assert jq.broker.queue_size("default") == 0


def test_raw_payloads_round_trip_through_forms():
    for raw in ('{"class":"X","args":["é"]}', "bad \udcff bytes"):
        assert decode_raw(encode_raw(raw)) == raw
    assert decode_raw("***") is None
