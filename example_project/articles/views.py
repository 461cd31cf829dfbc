"""Pages of the example: articles with enqueue buttons, a result page, a new-article form."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

from django import forms
from django.contrib import messages
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

import jobqueue
from jobqueue.compat import (
    DEFAULT_TASK_BACKEND_ALIAS,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from jobqueue.exceptions import BrokerUnavailable

from . import tasks
from .forms import (
    ArticleActionForm,
    ArticleForm,
    DigestForm,
    FlakyForm,
    SlowReportForm,
    ThumbnailForm,
)
from .models import Article

logger = logging.getLogger(__name__)

RECENT_KEY = "recent_results"
RECENT_MAX = 10
REDIS_DOWN = "Redis did not answer, nothing was enqueued: is it running? ({})"

Outcome: TypeAlias = TaskResult | str  # a result to show, or a message for jobs that have none
Enqueue: TypeAlias = Callable[[dict[str, Any]], Outcome]


def _push_archive_as_ruby(data: dict[str, Any]) -> str:
    """What ``Resque.enqueue(Archive, id)`` does in Ruby: a plain job, no Django result."""
    pk = data["article"].pk
    jobqueue.enqueue_to("critical", "Archive", pk, "from-resque")
    return (f'Pushed {{"class": "Archive", "args": [{pk}, "from-resque"]}} onto queue '
            '"critical", as a Ruby app would. Plain Resque jobs have no result page: '
            "watch the worker's log.")


ACTIONS: dict[str, tuple[type[forms.Form], Enqueue]] = {
    "count_words": (ArticleActionForm, lambda d: tasks.count_words.enqueue(d["article"].pk)),
    "make_thumbnail": (
        ThumbnailForm, lambda d: tasks.make_thumbnail.enqueue(d["article"].pk, size=d["size"])
    ),
    "archive": (ArticleActionForm, lambda d: tasks.archive.enqueue(d["article"].pk, "from-django")),
    "resque_archive": (ArticleActionForm, _push_archive_as_ruby),
    "send_digest": (DigestForm, lambda d: tasks.send_digest.enqueue(d["email"])),
    "slow_report": (SlowReportForm, lambda d: tasks.slow_report.enqueue(d["seconds"])),
    "flaky": (FlakyForm, lambda d: tasks.flaky.enqueue(d["n"])),
}


def _remember(request: HttpRequest, result: TaskResult) -> None:
    """Keep the visitor's last few results in the session, for the home page."""
    recent = [r for r in request.session.get(RECENT_KEY, []) if r.get("id") != result.id]
    recent.insert(0, {"id": result.id, "task": result.task.name,
                      "args": json.dumps(result.args)[:80]})
    request.session[RECENT_KEY] = recent[:RECENT_MAX]


def _enqueue(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect("home")
    form_class, enqueue = ACTIONS[action]
    form = form_class(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        messages.error(request, f"Could not enqueue {action}: {problems}")
        return redirect("home")
    try:
        outcome = enqueue(form.cleaned_data)
    except BrokerUnavailable as exc:
        messages.error(request, REDIS_DOWN.format(exc))
        return redirect("home")
    if isinstance(outcome, str):
        messages.success(request, outcome)
        return redirect("home")
    logger.info("enqueued %s as %s", outcome.task.name, outcome.id)
    _remember(request, outcome)
    return redirect("result", result_id=outcome.id)


@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """GET: the articles and the enqueue buttons. POST: enqueue one task (``action``)."""
    if request.method == "POST":
        return _enqueue(request)
    has_thumbnail = ExpressionWrapper(Q(thumbnail__isnull=False), output_field=BooleanField())
    articles = Article.objects.defer("thumbnail").annotate(has_thumbnail=has_thumbnail)
    return render(request, "articles/home.html", {
        "articles": articles,
        "recent": request.session.get(RECENT_KEY, []),
        "digest_form": DigestForm(),
        "report_form": SlowReportForm(),
        "flaky_form": FlakyForm(),
    })


def describe(result: TaskResult) -> dict[str, Any]:
    """What the result page shows, computed once (``return_value`` raises unless successful)."""
    successful = result.status == TaskResultStatus.SUCCESSFUL
    return {
        "id": result.id,
        "task": result.task.name,
        "module_path": result.task.module_path,
        "queue": result.task.queue_name,
        "status": result.status,
        "finished": result.is_finished,
        "successful": successful,
        "args": json.dumps(result.args),
        "kwargs": json.dumps(result.kwargs),
        "enqueued_at": result.enqueued_at,
        "started_at": result.started_at,
        "last_attempted_at": result.last_attempted_at,
        "finished_at": result.finished_at,
        "worker_ids": result.worker_ids,
        "return_value": json.dumps(result.return_value, indent=2) if successful else None,
        "errors": result.errors,
    }


@require_GET
def result_detail(request: HttpRequest, result_id: str) -> HttpResponse:
    """One TaskResult, refreshed every second until it has finished."""
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    try:
        result = backend.get_result(result_id)
    except TaskResultDoesNotExist:
        raise Http404("No such task result (or it has expired).") from None
    except BrokerUnavailable as exc:
        return render(request, "articles/redis_down.html", {"error": str(exc)}, status=503)
    return render(request, "articles/result.html", {"result": describe(result)})


@require_http_methods(["GET", "POST"])
def article_new(request: HttpRequest) -> HttpResponse:
    """Add an article, optionally counting its words in the background straight away."""
    form = ArticleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        article = form.save()
        messages.success(request, f"Added “{article.title}”.")
        if form.cleaned_data["count_now"]:
            try:
                result = tasks.count_words.enqueue(article.pk)
            except BrokerUnavailable as exc:
                messages.error(request, REDIS_DOWN.format(exc))
            else:
                _remember(request, result)
        return redirect("home")
    return render(request, "articles/article_form.html", {"form": form})


@require_GET
def thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    """The PNG ``make_thumbnail`` stored on an article."""
    article = get_object_or_404(Article, pk=pk)
    if article.thumbnail is None:
        raise Http404("No thumbnail yet: enqueue make_thumbnail.")
    return HttpResponse(bytes(article.thumbnail), content_type="image/png",
                        headers={"Cache-Control": "no-cache"})
