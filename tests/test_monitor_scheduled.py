"""Scheduled (delayed) jobs: list by due time, one due time's page, run now, delete
(``monitor.views_scheduled``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from jobqueue.monitor.present import encode_raw
from tests.monitor_support import M
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]


def test_empty_state(jq, viewer):
    response = viewer.get(M + "scheduled/")
    assert b"No delayed jobs" in response.content


def test_due_times_soonest_first_with_their_jobs(jq, viewer):
    soon = datetime.now(UTC) + timedelta(minutes=5)
    for i in range(12):
        add.using(run_after=soon).enqueue(i, i)
    add.using(run_after=soon + timedelta(hours=2)).enqueue(99, 99)
    response = viewer.get(M + "scheduled/")
    first, second = response.context["buckets"]
    assert first["size"] == 12 and len(first["jobs"]) == 10 and first["more"] == 2
    assert second["jobs"][0]["args"] == "[99,99]"
    assert b"2 more due at this time" in response.content
    bucket = viewer.get(first["url"])
    assert len(bucket.context["jobs"]) == 12


def test_run_now_and_delete(jq, manager):
    later = datetime.now(UTC) + timedelta(hours=1)
    run = add.using(run_after=later).enqueue(1, 1)
    add.using(run_after=later).enqueue(2, 2)
    (bucket,) = jq.broker.scheduled_page(0, 5, 5)
    url = reverse("admin:jobqueue_monitor_scheduled_action")
    first, second = bucket.items
    response = manager.post(url, {"action": "run", "timestamp": bucket.timestamp,
                                  "job": encode_raw(first.raw)}, follow=True)
    assert b"Moved the job to its queue" in response.content
    assert [j.id for j in jq.broker.peek("default", 0, 5)] == [run.id]
    manager.post(url, {"action": "delete", "timestamp": bucket.timestamp,
                       "job": encode_raw(second.raw)})
    assert jq.broker.scheduled_count() == 0
    response = manager.post(url, {"action": "delete", "timestamp": bucket.timestamp,
                                  "job": encode_raw(second.raw)}, follow=True)
    assert b"no longer waiting" in response.content
