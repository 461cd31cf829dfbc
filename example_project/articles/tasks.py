"""The example's background tasks: plain Django tasks, run by ``manage.py worker``.

Arguments and return values go through JSON (Resque's wire format), so tasks take ids, not
model instances, and return numbers, strings, lists and dicts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Sum
from django.utils import timezone

from jobqueue.compat import task

from .models import Article
from .thumbnails import identicon

logger = logging.getLogger(__name__)

MAX_REPORT_SECONDS = 300


@task()
def count_words(article_id: int) -> int:
    """Count an article's words and store the count on it."""
    article = Article.objects.get(pk=article_id)
    count = len(article.body.split())
    Article.objects.filter(pk=article_id).update(word_count=count)
    logger.info("article %s has %s words", article_id, count)
    return count


@task(queue_name="mail")
def send_digest(email: str) -> dict[str, Any]:
    """Mail the five newest articles to ``email`` (the console backend prints it)."""
    articles = list(Article.objects.all()[:5])
    lines = [f"- {a.title} ({a.word_count if a.word_count is not None else '?'} words)"
             for a in articles]
    body = "The newest articles:\n\n" + "\n".join(lines or ["(none yet)"]) + "\n"
    sent = send_mail("Your article digest", body, settings.DEFAULT_FROM_EMAIL, [email])
    return {"to": email, "articles": len(articles), "sent": sent}


@task(queue_name="media")
def make_thumbnail(article_id: int, size: int = 64) -> dict[str, Any]:
    """Render a ``size`` x ``size`` PNG for an article (pure Python, see thumbnails.py)."""
    article = Article.objects.get(pk=article_id)
    png = identicon(article.title, size)
    Article.objects.filter(pk=article_id).update(thumbnail=png)
    return {"article": article_id, "size": size, "bytes": len(png)}


@task()
def slow_report(seconds: float) -> dict[str, Any]:
    """Take ``seconds`` to add up word counts: long enough to watch it run in the monitor."""
    if not 0 <= seconds <= MAX_REPORT_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_REPORT_SECONDS}")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        logger.info("slow_report: %.0f s to go", left)
        time.sleep(min(1.0, left))
    totals = Article.objects.aggregate(words=Sum("word_count"))
    return {
        "articles": Article.objects.count(),
        "words_counted": totals["words"] or 0,
        "uncounted": Article.objects.filter(word_count__isnull=True).count(),
        "seconds": seconds,
    }


@task()
def flaky(n: int) -> None:
    """Always fail, to put something in the failed list (and an error on the result page)."""
    raise ValueError(f"flaky({n}) failed on purpose")


@task(queue_name="critical")
def archive(*args: Any) -> dict[str, Any]:
    """Run by Python *and* by Resque jobs of the Ruby class ``Archive`` (see JOBQUEUE)."""
    logger.info("archive called with %r", args)
    titles = []
    if args and isinstance(args[0], int):
        titles = list(Article.objects.filter(pk=args[0]).values_list("title", flat=True))
    return {"args": list(args), "article": titles[0] if titles else None,
            "archived_at": timezone.now().isoformat()}


@task()
def count_uncounted(limit: int = 100) -> int:
    """Enqueue ``count_words`` for articles nobody counted yet (the periodic job's task)."""
    ids = list(Article.objects.filter(word_count__isnull=True)
               .values_list("pk", flat=True)[:limit])
    for article_id in ids:
        count_words.enqueue(article_id)
    return len(ids)
