"""The failed list, its filters and search, one entry, and retry/remove by record, one at a
time, selected, or every match (``monitor.views_failed``, ``monitor.forms``)."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from jobqueue.monitor.forms import FailedFilterForm
from tests.monitor_support import M, fail_all
from tests.testapp.tasks import boom, echo

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]
ACT = "/admin/jobqueue/monitor/actions/failed/"
BOOM = "tests.testapp.tasks.boom"


@pytest.fixture
def failures(jq):
    """45 failures: boom on default (even), echo on mail (odd), newest last."""
    for i in range(45):
        if i % 2:
            echo.using(queue_name="mail").enqueue(f"user-{i}")
        else:
            boom.enqueue(f"user-{i}", big=900000000000000000 + i)
    fail_all(jq.broker, "default")
    fail_all(jq.broker, "mail")
    return jq


def _args(response):
    return [row["args"] for row in response.context["rows"]]


def test_list_is_newest_first_and_paginated(failures, viewer):
    first = viewer.get(M + "failed/")
    assert len(first.context["rows"]) == 20
    assert _args(first)[0] == '["user-43"]'  # mail jobs failed last
    assert first.context["total"] == 45
    assert [link.get("number") for link in first.context["page"]["links"]] == [1, 2, 3]
    third = viewer.get(M + "failed/?p=3")
    assert len(third.context["rows"]) == 5
    assert _args(third)[-1] == '["user-0"] {"big":900000000000000000}'


@pytest.mark.parametrize(("query", "count", "first"), [
    ("queue=mail", 22, '["user-43"]'),
    (f"task={BOOM}", 23, '["user-44"] {"big":900000000000000044}'),
    ("exception=ValueError&queue=default", 23, '["user-44"] {"big":900000000000000044}'),
    ("exception=KeyError", 0, None),
    ("q=user-1", 11, '["user-19"]'),  # user-1, user-1x: all odd, so on mail
    ("q=900000000000000030", 1, '["user-30"] {"big":900000000000000030}'),
    ("q=it+broke", 0, None),  # the message, not the args
])
def test_filters_and_search(failures, viewer, query, count, first):
    response = viewer.get(M + f"failed/?{query}")
    rows = response.context["rows"]
    assert len(rows) == min(count, 20)
    if first:
        assert rows[0]["args"] == first
    else:
        assert b"No failed job matches" in response.content
    total, complete = failures.broker.failed_count_matching(response.context["where"])
    assert (total, complete) == (count, True)


def test_filtered_results_page_with_cursors(failures, viewer):
    first = viewer.get(M + "failed/?queue=default")
    assert first.context["newer_url"] is None and first.context["older_url"]
    second = viewer.get(M + "failed/" + first.context["older_url"])
    assert len(second.context["rows"]) == 3 and second.context["older_url"] is None
    back = viewer.get(M + "failed/" + second.context["newer_url"])
    assert _args(back) == _args(first)
    assert b"Older" in first.content and b"Newer" in second.content


def test_filter_form_keeps_values_and_trims():
    form = FailedFilterForm({"queue": " mail ", "q": "x"})
    where = form.filter()
    assert where.queue == "mail" and where.search == "x" and where.active
    assert not FailedFilterForm({"queue": "x" * 500}).filter().active


def test_entries_show_exception_message_traceback_attempts_and_worker(jq, viewer):
    boom.enqueue("<script>alert('x')</script>")
    fail_all(jq.broker, message="<img src=x onerror=alert(1)>")
    html = viewer.get(M + "failed/").content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    entry = jq.broker.failed_page(0, 1)[0]
    detail = viewer.get(M + f"failed/{entry.ref}/")
    text = detail.content.decode()
    assert "ValueError" in text and "Traceback" in text and "testhost:4242:default" in text
    assert detail.context["row"]["attempts"] == 1
    assert detail.context["row"]["backtrace"].startswith("ValueError: <img")
    assert "<script>alert" not in text


def test_a_missing_entry_is_404(jq, viewer):
    assert viewer.get(M + "failed/0.1." + "0" * 40 + "/").status_code == 404


def test_retry_one_moves_it_back_to_its_queue(failures, manager):
    entry = failures.broker.failed_page(0, 1)[0]
    response = manager.post(ACT, {"one": f"retry:{entry.ref}", "next": M + "failed/"},
                            follow=True)
    assert b"Retried 1 failed job." in response.content
    assert failures.broker.failed_count() == 44
    assert failures.broker.peek("mail", 0, 1)[0].args == ["user-43"]
    again = manager.post(ACT, {"one": f"retry:{entry.ref}"}, follow=True)
    assert b"already retried or removed" in again.content
    assert failures.broker.queue_size("mail") == 1


def test_remove_one_and_selected(failures, manager):
    page = failures.broker.failed_page(0, 3)
    manager.post(ACT, {"one": f"remove:{page[0].ref}"})
    assert failures.broker.failed_count() == 44
    response = manager.post(ACT, {"action": "retry", "ref": [page[1].ref, page[2].ref]},
                            follow=True)
    assert b"Retried 2 failed jobs" in response.content
    assert failures.broker.failed_count() == 42
    assert b"No failed job was selected" in manager.post(ACT, {"action": "retry"},
                                                         follow=True).content
    assert b"Unknown action" in manager.post(ACT, {"one": f"zap:{page[0].ref}"},
                                             follow=True).content


def test_bulk_retry_for_the_current_filter_asks_then_acts(failures, manager):
    url = reverse("admin:jobqueue_monitor_failed_bulk")
    page = manager.get(url + "?action=retry&queue=mail")
    assert b"Retry all 22 failed jobs matching queue &#x27;mail&#x27;?" in page.content
    response = manager.post(url, {"action": "retry", "queue": "mail", "confirm": "yes"},
                            follow=True)
    assert b"Retried 22 failed jobs" in response.content
    assert failures.broker.queue_size("mail") == 22
    assert failures.broker.failed_count() == 23
    entry = LogEntry.objects.get()
    assert "queue 'mail'" in entry.change_message


def test_bulk_remove_and_clear(failures, manager):
    url = reverse("admin:jobqueue_monitor_failed_bulk")
    manager.post(url, {"action": "remove", "q": "user-1", "confirm": "yes"})
    assert failures.broker.failed_count() == 34
    page = manager.get(url + "?action=clear")
    assert b"Remove all 34 failed jobs?" in page.content
    manager.post(url, {"action": "clear", "confirm": "yes"})
    assert failures.broker.failed_count() == 0
    assert manager.get(url + "?action=explode").status_code == 404
