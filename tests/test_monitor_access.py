"""Who may see and do what in the admin monitor (``monitor.base``, ``jobqueue.admin``,
``jobqueue.models``): login, the two permissions, CSRF, POST-only actions, history entries,
safe redirects, and a Redis outage."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from jobqueue.models import Monitor
from tests.monitor_support import M, fail_all, make_user
from tests.testapp.tasks import add, boom

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.monitor_fixtures"]

PAGES = [M, M + "queues/", M + "queues/other/", M + "working/", M + "workers/",
         M + "failed/", M + "scheduled/", M + "periodic/", M + "results/", M + "stats/",
         M + "overview.json",
         M + "metrics"]
ACTIONS = ["queue_delete_job", "queue_clear", "worker_prune", "workers_prune_stale",
           "failed_action", "failed_bulk", "scheduled_action", "periodic_action"]


@pytest.fixture(autouse=True)
def other_queue(jq):
    add.using(queue_name="other").enqueue(1, 2)


@pytest.fixture
def failure(jq):
    boom.enqueue("x")
    fail_all(jq.broker)
    return jq.broker.failed_page(0, 1)[0]


def _action(name: str) -> str:
    return reverse(f"admin:jobqueue_monitor_{name}")


@pytest.mark.parametrize("url", [*PAGES, "/admin/jobqueue/"])
def test_anonymous_users_go_to_the_admin_login(jq, client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize("name", ACTIONS)
def test_anonymous_posts_go_to_the_admin_login(jq, client, name):
    response = client.post(_action(name), {"queue": "default", "confirm": "yes"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_non_staff_users_with_the_permission_go_to_the_login(jq, client, django_user_model):
    client.force_login(make_user(django_user_model, "outsider", "manage_monitor", staff=False))
    assert client.get(M).status_code == 302


@pytest.mark.parametrize("url", PAGES)
def test_staff_without_the_permission_get_403(jq, client, django_user_model, url):
    client.force_login(make_user(django_user_model, "plain"))
    assert client.get(url).status_code == 403


def test_staff_without_the_permission_do_not_see_the_app(jq, client, django_user_model):
    client.force_login(make_user(django_user_model, "plain"))
    assert client.get("/admin/jobqueue/").status_code == 404  # the admin's own answer
    assert b"/admin/jobqueue/" not in client.get("/admin/").content


@pytest.mark.parametrize("name", ACTIONS)
def test_staff_without_manage_cannot_act(jq, viewer, failure, name):
    response = viewer.post(_action(name), {"one": f"retry:{failure.ref}", "queue": "default",
                                           "action": "retry", "confirm": "yes"})
    assert response.status_code == 403
    assert jq.broker.failed_count() == 1


@pytest.mark.parametrize("url", PAGES)
def test_viewers_see_every_page(jq, viewer, url):
    assert viewer.get(url).status_code == 200


def test_viewers_see_no_action_buttons(jq, viewer, failure):
    html = viewer.get(M + "failed/").content.decode()
    assert 'name="one"' not in html and "Retry" not in html and 'name="ref"' not in html
    assert viewer.get(_action("failed_bulk") + "?action=clear").status_code == 403


def test_managers_can_view_and_act(jq, manager, failure):
    assert manager.get(M + "failed/").status_code == 200
    response = manager.post(_action("failed_action"), {"one": f"retry:{failure.ref}"})
    assert response.status_code == 302
    assert jq.broker.failed_count() == 0 and jq.broker.queue_size("default") == 1


def test_superusers_have_both_permissions(jq, admin_client, failure):
    assert admin_client.get(M).status_code == 200
    admin_client.post(_action("failed_action"), {"one": f"remove:{failure.ref}"})
    assert jq.broker.failed_count() == 0


@pytest.mark.parametrize("name", ACTIONS)
def test_actions_refuse_get_or_ask_for_confirmation(jq, manager, name):
    response = manager.get(_action(name) + "?queue=default&action=retry")
    if name in ("queue_clear", "failed_bulk"):
        assert response.status_code == 200 and b'name="confirm"' in response.content
    else:
        assert response.status_code == 405


def test_posts_without_a_csrf_token_are_refused(jq, django_user_model, failure):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(django_user_model, "csrf", "manage_monitor"))
    response = client.post(_action("failed_action"), {"one": f"retry:{failure.ref}"})
    assert response.status_code == 403
    assert jq.broker.failed_count() == 1
    page = client.get(M + "failed/")
    token = page.context["csrf_token"]
    response = client.post(_action("failed_action"), {"one": f"retry:{failure.ref}",
                                                     "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert jq.broker.failed_count() == 0


def test_actions_are_recorded_in_the_admin_history(jq, manager, failure):
    manager.post(_action("failed_action"), {"one": f"retry:{failure.ref}"})
    entry = LogEntry.objects.get()
    assert entry.user.username == "manager"
    assert entry.content_type == ContentType.objects.get_for_model(Monitor)
    assert entry.is_change()
    assert "Retried 1 failed job" in entry.get_change_message()
    assert "tests.testapp.tasks.boom" in entry.object_repr
    assert failure.failure.id in entry.change_message
    manager.post(_action("queue_clear"), {"queue": "default", "confirm": "yes"})
    latest = LogEntry.objects.order_by("-pk").first()
    assert latest.is_deletion() and "Cleared queue 'default'" in latest.change_message


def test_unsafe_next_urls_are_ignored(jq, manager, failure):
    response = manager.post(_action("failed_action"), {"one": f"remove:{failure.ref}",
                                                      "next": "https://evil.example/"})
    assert response["Location"] == reverse("admin:jobqueue_monitor_failed")
    response = manager.post(_action("failed_action"), {"one": "remove:x",
                                                      "next": M + "failed/?queue=a"})
    assert response["Location"] == M + "failed/?queue=a"


def test_the_monitor_is_on_the_admin_index(jq, admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/jobqueue/"' in html and "Job queue" in html
    assert 'href="/admin/jobqueue/monitor/"' in html


def test_the_app_index_is_the_overview(jq, admin_client):
    html = admin_client.get("/admin/jobqueue/").content.decode()
    assert 'id="jq-live"' in html and "Jobs per minute" in html


def test_a_redis_outage_shows_a_503_page(jq, admin_client, settings):
    settings.TASKS = {"default": {"BACKEND": "jobqueue.backends.redis.RedisBackend",
                                  "QUEUES": [], "OPTIONS": {"URL": "redis://127.0.0.1:9/0"}}}
    response = admin_client.get(M + "queues/")
    assert response.status_code == 503 and b"Redis" in response.content
    assert admin_client.get(M + "overview.json").status_code == 503
    metrics = admin_client.get(M + "metrics")
    assert metrics.status_code == 503 and metrics.content.startswith(b"# jobqueue unavailable")
    assert admin_client.get("/admin/jobqueue/").status_code == 200  # says so, in the page
    response = admin_client.post(_action("queue_clear"), {"queue": "q", "confirm": "yes"},
                                 follow=True)
    assert b"Redis is unavailable" in response.content


def test_a_default_backend_that_is_not_jobqueue_is_explained(jq, admin_client, settings):
    settings.TASKS = {"default": {"BACKEND": "jobqueue.testing.DummyBackend"}}
    response = admin_client.get(M + "failed/")
    assert response.status_code == 503 and b"not a jobqueue backend" in response.content
