"""Periodic jobs in the monitor: timetable, last and next run, run now
(``monitor.views_scheduled.PeriodicView`` and ``PeriodicAction``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from jobqueue.periodic import build_periodic_job, parse_schedule
from tests.monitor_support import M, page_text

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]

SCHEDULE = {
    "add-every-minute": {"task": "tests.testapp.tasks.add", "every": 60, "args": [1, 2],
                         "queue": "periodic"},
    "nightly <b>report</b>": {"task": "tests.testapp.tasks.echo", "cron": "0 3 * * *"},
}


@pytest.fixture
def schedule(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "SCHEDULE": SCHEDULE}
    return {entry.name: entry for entry in parse_schedule(SCHEDULE)}


def _fire(jq, entry, tick):
    job, record = build_periodic_job(entry)
    assert jq.broker.fire_periodic(entry.name, tick, job, record)


def _minute_tick(now):
    return datetime.fromtimestamp(math.floor(now.timestamp() / 60) * 60, UTC)


def test_empty_state_without_a_schedule(jq, viewer):
    response = viewer.get(M + "periodic/")
    assert response.status_code == 200
    assert b"No periodic jobs" in response.content


def test_every_entry_with_timetable_queue_args_and_never_run(jq, viewer, schedule):
    text = page_text(viewer.get(M + "periodic/"))
    assert "add-every-minute" in text and "every 60 s" in text and "cron 0 3 * * *" in text
    assert "tests.testapp.tasks.add" in text and "[1,2]" in text and "periodic" in text
    assert text.count("never") == 2
    assert "nightly &lt;b&gt;report&lt;/b&gt;" in text and "<b>report</b>" not in text


def test_last_run_is_the_tick_enqueued_and_next_run_the_following_tick(jq, viewer, schedule):
    tick = _minute_tick(datetime.now(UTC))
    _fire(jq, schedule["add-every-minute"], tick)

    response = viewer.get(M + "periodic/")

    row = next(r for r in response.context["entries"] if r["name"] == "add-every-minute")
    assert row["last"] == tick
    assert row["next"] == tick + timedelta(seconds=60)
    assert row["overdue"] is None
    assert tick.strftime("%Y-%m-%d %H:%M:%S") in page_text(response)


def test_a_missed_tick_shows_as_due(jq, viewer, schedule):
    tick = _minute_tick(datetime.now(UTC)) - timedelta(minutes=10)
    _fire(jq, schedule["add-every-minute"], tick)

    response = viewer.get(M + "periodic/")

    row = next(r for r in response.context["entries"] if r["name"] == "add-every-minute")
    assert row["overdue"] is not None and row["overdue"] > tick
    assert b"due since" in response.content


def test_run_now_enqueues_the_job_logs_it_and_keeps_the_timetable(jq, manager, schedule):
    url = reverse("admin:jobqueue_monitor_periodic_action")

    response = manager.post(url, {"action": "run", "name": "add-every-minute"}, follow=True)

    assert b"Enqueued add-every-minute now" in response.content
    (job,) = jq.broker.peek("periodic", 0, 5)
    assert job.task_name == "tests.testapp.tasks.add" and job.args == [1, 2]
    assert jq.broker.periodic_last_runs() == {}
    entry = LogEntry.objects.get()
    assert entry.user.username == "manager" and "add-every-minute" in entry.change_message


def test_run_now_of_an_unknown_name_does_nothing(jq, manager, schedule):
    url = reverse("admin:jobqueue_monitor_periodic_action")
    response = manager.post(url, {"action": "run", "name": "nope"}, follow=True)
    assert b"no such periodic job" in response.content
    assert jq.broker.queue_sizes() == {}
    assert not LogEntry.objects.exists()


def test_run_now_needs_manage_permission(jq, viewer, schedule):
    url = reverse("admin:jobqueue_monitor_periodic_action")
    assert viewer.post(url, {"action": "run", "name": "add-every-minute"}).status_code == 403
    assert b'value="run"' not in viewer.get(M + "periodic/").content
    assert jq.broker.queue_sizes() == {}


def test_run_now_is_a_post_and_the_manager_sees_its_button(jq, manager, schedule):
    url = reverse("admin:jobqueue_monitor_periodic_action")
    assert manager.get(url).status_code == 405
    assert b'value="run"' in manager.get(M + "periodic/").content
    assert jq.broker.queue_sizes() == {}
