"""Queues: every queue with its size, one queue's jobs page by page, delete one, clear."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.models import DELETION
from django.http import Http404, HttpRequest

from .base import ConfirmedAction, MonitorAction, MonitorPage, log_action, monitor_url
from .paging import paginate
from .present import decode_raw, job_row

QUEUES_PER_PAGE = 100
JOBS_PER_PAGE = 25


class QueuesView(MonitorPage):
    template_name = "jobqueue/monitor/queues.html"
    nav = "queues"
    title = "Queues"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        sizes = sorted(self.broker.queue_sizes().items())
        page = paginate(self.request, len(sizes),
                        lambda start, count: sizes[start:start + count], QUEUES_PER_PAGE)
        context.update(page=page, queues=[
            {"name": name, "size": size, "url": monitor_url(self.request, "queue", name)}
            for name, size in page["items"]],
            total=sum(size for _, size in sizes), failed_count=self.broker.failed_count())
        return context


class QueueView(MonitorPage):
    template_name = "jobqueue/monitor/queue.html"
    nav = "queues"

    def crumbs(self) -> list[dict[str, str]]:
        return [{"label": "Queues", "url": monitor_url(self.request, "queues")},
                {"label": self.kwargs["queue"]}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        queue = self.kwargs["queue"]
        self.title = f"Queue {queue}"
        context = super().get_context_data(**kwargs)
        size = self.broker.queue_size(queue)
        if not size and queue not in self.broker.queue_sizes():
            raise Http404("No such queue")
        page = paginate(self.request, size,
                        lambda start, count: self.broker.peek(queue, start, count),
                        JOBS_PER_PAGE)
        context.update(queue=queue, size=size, page=page,
                       jobs=[job_row(job) for job in page["items"]])
        return context


class DeleteQueuedJob(MonitorAction):
    """Delete one waiting job, named by its exact bytes."""

    default_next = "queues"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        queue = request.POST.get("queue", "")
        raw = decode_raw(request.POST.get("job", ""))
        if not queue or raw is None:
            return messages.ERROR, "Nothing was deleted: the form was incomplete."
        if not self.broker.delete_queued(queue, raw):
            return messages.WARNING, ("That job was no longer waiting (a worker took it or "
                                      "someone deleted it); nothing was deleted.")
        label = f"queued job on {queue}"
        log_action(request, label, f"Deleted a waiting job from queue {queue!r}: {raw[:150]}",
                   DELETION)
        return messages.SUCCESS, f"Deleted one job from queue “{queue}”."


class ClearQueue(ConfirmedAction):
    """Empty a queue (after confirmation)."""

    default_next = "queues"

    def describe(self, request: HttpRequest) -> dict[str, Any]:
        queue = request.GET.get("queue") or request.POST.get("queue", "")
        size = self.broker.queue_size(queue)
        return {"nav": "queues", "crumbs": [
            {"label": "Queues", "url": monitor_url(request, "queues")},
            {"label": queue, "url": monitor_url(request, "queue", queue)},
            {"label": "Clear"}],
            "question": f"Delete all {size} jobs waiting on queue “{queue}”?",
            "details": ["Their results stay until they expire; no worker will run them."],
            "fields": {"queue": queue}, "button": "Yes, clear the queue", "danger": True,
            "cancel_url": monitor_url(request, "queue", queue)}

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        queue = request.POST.get("queue", "")
        if not queue:
            return messages.ERROR, "No queue was named; nothing was cleared."
        removed = self.broker.clear_queue(queue)
        log_action(request, f"queue {queue}", f"Cleared queue {queue!r}: {removed} jobs deleted",
                   DELETION)
        return messages.SUCCESS, f"Cleared queue “{queue}”: {removed} jobs deleted."
