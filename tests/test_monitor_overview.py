"""The overview page, its JSON twin and the Prometheus endpoint (``monitor.views_overview``,
``monitor.chart``, ``monitor.prometheus``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jobqueue.broker.base import Throughput
from jobqueue.monitor.chart import throughput_svg
from jobqueue.monitor.prometheus import render_metrics
from tests.monitor_support import WORKER, M, fail_all, page_text, register_worker
from tests.testapp.tasks import add, boom

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(jq):
    """Two queues, a failure, and a worker in the middle of a job."""
    for i in range(3):
        add.enqueue(i, i)
    add.using(queue_name="mail").enqueue(5, 5)
    boom.using(queue_name="errors").enqueue("bad")
    fail_all(jq.broker, "errors")
    register_worker(jq.broker, WORKER)
    jq.broker.reserve(WORKER, ["default"])
    return jq


def test_overview_shows_queues_totals_and_who_is_working(busy, admin_client):
    response = admin_client.get(M)
    html = page_text(response)
    assert response.context["stats"]["pending"] == 3
    assert response.context["stats"]["failed"] == 1
    queues = {q["name"]: q["size"] for q in response.context["queues"]}
    assert queues == {"default": 2, "mail": 1, "errors": 0}
    (row,) = response.context["working"]
    assert row["id"] == WORKER and row["job"]["task"] == "tests.testapp.tasks.add"
    assert "testhost:4242" in html and "tests.testapp.tasks.add" in html
    assert "<svg" in html and 'class="jq-processed"' in html
    assert 'id="jq-live-toggle"' in html


def test_app_index_renders_the_same_overview(busy, admin_client):
    html = admin_client.get("/admin/jobqueue/").content.decode()
    assert 'data-queue="mail">1<' in html and "testhost:4242" in html


def test_overview_json(busy, admin_client):
    data = admin_client.get(M + "overview.json").json()
    assert data["queues"] == {"default": 2, "errors": 0, "mail": 1}
    assert data["stats"]["failed_records"] == 1
    assert data["workers"] == {"total": 1, "working": 1, "stale": 0}
    assert data["working"][0]["task"] == "tests.testapp.tasks.add"
    assert len(data["throughput"]["processed"]) == 180
    assert sum(data["throughput"]["failed"]) == 1
    json.dumps(data)  # plain JSON all the way down


def test_prometheus_text_format(busy, admin_client):
    response = admin_client.get(M + "metrics")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert "# TYPE jobqueue_jobs_processed_total counter" in text
    assert 'jobqueue_queue_jobs{queue="default"} 2' in text
    assert "jobqueue_workers_working 1" in text
    assert "jobqueue_failed_records 1" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("jobqueue_")


def test_prometheus_escapes_label_values(jq):
    jq.redis.sadd(jq.key("queues"), 'we"ird\\q\nx')
    text = render_metrics(jq.broker)
    assert 'jobqueue_queue_jobs{queue="we\\"ird\\\\q\\nx"} 0' in text


def test_chart_is_inline_svg_with_hour_marks():
    start = int(datetime(2026, 1, 1, 10, 30, tzinfo=UTC).timestamp()) // 60
    svg = str(throughput_svg(Throughput(start, [0] * 59 + [12] + [3] * 60, [1] * 120)))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert ">11:00<" in svg and ">12:00<" in svg
    assert ">20<" in svg  # the scale rounds 12 up to 20
    assert "<script" not in svg


def test_working_and_workers_pages_offer_live_refresh_and_others_do_not(jq, admin_client):
    for page in ("working/", "workers/"):
        assert b'id="jq-live-toggle"' in admin_client.get(M + page).content
    for page in ("queues/", "failed/", "stats/"):
        assert b'id="jq-live-toggle"' not in admin_client.get(M + page).content
