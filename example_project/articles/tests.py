"""Tests of the example site without Redis: ``cd example_project && python manage.py test``.

Tasks run in-process on ``MemoryBackend`` (Django's immediate backend plus ``get_result``);
``scripts/run-example --smoke`` covers the real path through Redis and a forked worker.
"""

from __future__ import annotations

import struct
import zlib
from io import StringIO
from typing import Any
from unittest import mock

from django.core import mail
from django.core.management import call_command
from django.test import TestCase, override_settings
from django.urls import reverse

from jobqueue.compat import HAS_CORE_TASKS, TaskResult, TaskResultDoesNotExist
from jobqueue.exceptions import BrokerUnavailable

from . import tasks
from .models import Article
from .thumbnails import identicon

if HAS_CORE_TASKS:
    from django.tasks.backends.dummy import DummyBackend
    from django.tasks.backends.immediate import ImmediateBackend
else:
    from django_tasks.backends.dummy import DummyBackend
    from django_tasks.backends.immediate import ImmediateBackend


class MemoryBackend(ImmediateBackend):
    """Run tasks at once and remember their results, so result pages can be tested."""

    supports_get_result = True
    results: dict[str, TaskResult] = {}

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        result = super().enqueue(task, args, kwargs)
        self.results[result.id] = result
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            return self.results[result_id]
        except KeyError:
            raise TaskResultDoesNotExist(result_id) from None


class BrokenBackend(DummyBackend):
    """A backend whose Redis is down."""

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        raise BrokerUnavailable("connection refused")

    def get_result(self, result_id: str) -> TaskResult:
        raise BrokerUnavailable("connection refused")


def tasks_on(backend: str) -> dict[str, Any]:
    return {"default": {"BACKEND": f"{__name__}.{backend}", "QUEUES": []}}


@override_settings(TASKS=tasks_on("MemoryBackend"))
class PagesTests(TestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="Hello <b>world</b>", body="one two three")

    def post(self, action: str, *, follow: bool = False, **data: Any) -> Any:
        return self.client.post(reverse("home"), {"action": action, **data}, follow=follow)

    def test_home_lists_articles_escaped_with_csrf_forms(self) -> None:
        response = self.client.get(reverse("home"))
        self.assertContains(response, "Hello &lt;b&gt;world&lt;/b&gt;")
        self.assertNotContains(response, "<b>world</b>")
        self.assertContains(response, "csrfmiddlewaretoken")
        self.assertContains(response, f'name="article" value="{self.article.pk}"')

    def test_count_words_redirects_to_a_successful_result(self) -> None:
        response = self.post("count_words", article=self.article.pk)
        self.assertEqual(response.status_code, 302)
        page = self.client.get(response["Location"])
        self.assertContains(page, 'data-status="SUCCESSFUL"')
        self.assertContains(page, "articles.tasks.count_words")
        self.assertNotContains(page, 'http-equiv="refresh"')
        self.article.refresh_from_db()
        self.assertEqual(self.article.word_count, 3)
        home = self.client.get(reverse("home"))
        self.assertContains(home, "Your recent jobs")

    def test_flaky_shows_the_error(self) -> None:
        page = self.client.get(self.post("flaky", n=7)["Location"])
        self.assertContains(page, 'data-status="FAILED"')
        self.assertContains(page, "builtins.ValueError")
        self.assertContains(page, "flaky(7) failed on purpose")

    def test_thumbnail_is_stored_and_served_as_png(self) -> None:
        page = self.client.get(self.post("make_thumbnail", article=self.article.pk,
                                         size=16)["Location"])
        self.assertContains(page, "SUCCESSFUL")
        png = self.client.get(reverse("thumbnail", args=[self.article.pk]))
        self.assertEqual(png["Content-Type"], "image/png")
        self.assertTrue(png.content.startswith(b"\x89PNG"))

    def test_digest_is_mailed(self) -> None:
        self.client.get(self.post("send_digest", email="a@example.com")["Location"])
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["a@example.com"])
        self.assertIn("Hello <b>world</b>", mail.outbox[0].body)

    def test_slow_report_and_archive(self) -> None:
        self.assertContains(self.client.get(self.post("slow_report", seconds=0)["Location"]),
                            "words_counted")
        page = self.client.get(self.post("archive", article=self.article.pk)["Location"])
        self.assertContains(page, "from-django")

    def test_invalid_input_is_reported_not_enqueued(self) -> None:
        before = len(MemoryBackend.results)
        response = self.post("send_digest", email="not an email", follow=True)
        self.assertContains(response, "Could not enqueue send_digest")
        response = self.post("nope", follow=True)
        self.assertContains(response, "Unknown action")
        self.assertEqual(len(MemoryBackend.results), before)

    def test_resque_push_uses_enqueue_to(self) -> None:
        with mock.patch("jobqueue.enqueue_to") as enqueue_to:
            response = self.post("resque_archive", article=self.article.pk, follow=True)
        enqueue_to.assert_called_once_with("critical", "Archive", self.article.pk, "from-resque")
        self.assertContains(response, "Plain Resque jobs have no result page")

    def test_unknown_result_is_404(self) -> None:
        self.assertEqual(self.client.get("/results/deadbeef/").status_code, 404)
        self.assertEqual(self.client.get("/results/bad%20id/").status_code, 404)

    def test_new_article_form(self) -> None:
        response = self.client.post(reverse("article_new"),
                                    {"title": "New", "body": "a b c d", "count_now": "on"},
                                    follow=True)
        self.assertContains(response, "Added")
        self.assertEqual(Article.objects.get(title="New").word_count, 4)


@override_settings(TASKS=tasks_on("DummyBackend"))
class PendingResultTests(TestCase):
    def test_pending_result_page_refreshes(self) -> None:
        article = Article.objects.create(title="t", body="b")
        result = tasks.count_words.enqueue(article.pk)
        page = self.client.get(reverse("result", args=[result.id]))
        self.assertContains(page, 'data-status="READY"')
        self.assertContains(page, 'http-equiv="refresh"')


@override_settings(TASKS=tasks_on("BrokenBackend"))
class RedisDownTests(TestCase):
    def test_enqueue_and_result_pages_explain(self) -> None:
        article = Article.objects.create(title="t", body="b")
        response = self.client.post(reverse("home"), {"action": "count_words",
                                                      "article": article.pk}, follow=True)
        self.assertContains(response, "Redis did not answer")
        self.assertEqual(self.client.get("/results/abc/").status_code, 503)


class SeedAndThumbnailTests(TestCase):
    def test_seed_articles(self) -> None:
        call_command("seed_articles", stdout=StringIO())
        self.assertEqual(Article.objects.count(), 20)
        call_command("seed_articles", "--if-empty", stdout=StringIO())
        self.assertEqual(Article.objects.count(), 20)

    def test_identicon_is_a_valid_png(self) -> None:
        png = identicon("jobqueue", 20)
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", png[16:24])
        self.assertEqual((width, height), (20, 20))
        idat_len = struct.unpack(">I", png[33:37])[0]
        raw = zlib.decompress(png[41:41 + idat_len])
        self.assertEqual(len(raw), 20 * (1 + 3 * 20))
        self.assertEqual(identicon("jobqueue", 20), png)
        with self.assertRaises(ValueError):
            identicon("x", 2)


@override_settings(TASKS=tasks_on("MemoryBackend"))
class PeriodicTaskTests(TestCase):
    def test_count_uncounted_counts_only_articles_without_a_count(self) -> None:
        counted = Article.objects.create(title="done", body="a b", word_count=2)
        fresh = [Article.objects.create(title=f"new {i}", body="x " * (i + 1)) for i in range(3)]

        result = tasks.count_uncounted.enqueue(limit=2)

        self.assertEqual(result.return_value, 2)
        left = Article.objects.filter(word_count__isnull=True)
        self.assertEqual(left.count(), 1)
        self.assertEqual(tasks.count_uncounted.enqueue().return_value, 1)
        self.assertEqual([a.word_count for a in Article.objects.filter(pk__in=[f.pk for f in fresh])
                          .order_by("pk")], [1, 2, 3])
        counted.refresh_from_db()
        self.assertEqual(counted.word_count, 2)
