"""Working and Workers, grouped by host; one worker's page; pruning stale workers.

A worker is *stale* when its heartbeat is older than the broker's ``stale_workers`` rule,
the same rule the dead-worker reaper applies: six of the worker's own heartbeat intervals
(at least five seconds) for jobqueue workers, Ruby Resque's 300 seconds for workers of
other Resque clients, and never for a worker that has not sent any heartbeat.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin.models import DELETION
from django.http import Http404, HttpRequest

from .base import MonitorAction, MonitorPage, log_action, monitor_url
from .present import group_by_host, worker_row


def _rows(page: MonitorPage) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    stale = set(page.broker.stale_workers(now))
    rows = [worker_row(w, stale, now) for w in page.broker.workers()]
    for row in rows:
        row["url"] = monitor_url(page.request, "worker", row["id"])
    return rows


class WorkingView(MonitorPage):
    template_name = "jobqueue/monitor/working.html"
    nav = "working"
    title = "Working"
    live = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rows = _rows(self)
        working = [row for row in rows if row["job"]]
        context.update(total=len(rows), working=len(working), hosts=group_by_host(working))
        return context


class WorkersView(MonitorPage):
    template_name = "jobqueue/monitor/workers.html"
    nav = "workers"
    title = "Workers"
    live = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rows = _rows(self)
        context.update(total=len(rows), hosts=group_by_host(rows),
                       stale=sum(1 for row in rows if row["stale"]))
        return context


class WorkerView(MonitorPage):
    template_name = "jobqueue/monitor/worker.html"
    nav = "workers"
    live = True

    def crumbs(self) -> list[dict[str, str]]:
        return [{"label": "Workers", "url": monitor_url(self.request, "workers")},
                {"label": self.kwargs["worker_id"]}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        worker_id = self.kwargs["worker_id"]
        self.title = f"Worker {worker_id}"
        context = super().get_context_data(**kwargs)
        worker = self.broker.worker(worker_id)
        if worker is None:
            raise Http404("No such worker (it may have stopped)")
        now = datetime.now(UTC)
        stale = set(self.broker.stale_workers(now))
        context.update(worker=worker_row(worker, stale, now))
        return context


def _prune(request: HttpRequest, broker: Any, worker_id: str) -> tuple[bool, str]:
    result = broker.prune_worker(worker_id, datetime.now(UTC))
    if not result.pruned:
        return False, f"Worker {worker_id} was not pruned: {result.reason}."
    detail = (f"; its job went back to the head of queue {result.requeued_to!r}"
              if result.requeued_to else "")
    log_action(request, f"worker {worker_id}", f"Pruned stale worker {worker_id}{detail}",
               DELETION)
    return True, f"Pruned worker {worker_id}{detail}."


class PruneWorker(MonitorAction):
    """Unregister one stale worker; its in-flight job goes back to its queue."""

    default_next = "workers"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        done, text = _prune(request, self.broker, request.POST.get("worker", ""))
        return (messages.SUCCESS if done else messages.WARNING), text


class PruneStaleWorkers(MonitorAction):
    """Prune every worker that is stale now."""

    default_next = "workers"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        stale = self.broker.stale_workers(datetime.now(UTC))
        pruned = sum(1 for wid in stale if _prune(request, self.broker, wid)[0])
        if not stale:
            return messages.INFO, "No worker is stale."
        return messages.SUCCESS, f"Pruned {pruned} of {len(stale)} stale workers."
