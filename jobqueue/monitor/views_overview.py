"""Overview page, its JSON twin for external monitoring, and the Prometheus endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import View

from ..broker import Broker
from .base import MonitorMixin, MonitorPage, base_context, monitor_broker
from .chart import throughput_svg
from .present import group_by_host, worker_row
from .prometheus import CONTENT_TYPE, render_metrics

CHART_MINUTES = 180


def overview_data(broker: Broker, now: datetime | None = None) -> dict[str, Any]:
    """Everything the overview shows, as plain values."""
    now = now or datetime.now(UTC)
    stats = broker.stats()
    sizes = broker.queue_sizes()
    stale = set(broker.stale_workers(now))
    rows = [worker_row(w, stale, now) for w in broker.workers()]
    return {
        "stats": stats,
        "queues": [{"name": name, "size": size} for name, size in sorted(sizes.items())],
        "working": [row for row in rows if row["job"]],
        "stale": len(stale),
        "scheduled": broker.scheduled_count(),
        "throughput": broker.throughput(CHART_MINUTES, now),
        "now": now,
    }


def overview_context(request: HttpRequest, admin_site: Any,
                     broker: Broker | None = None) -> dict[str, Any]:
    """The overview page's whole context (also used by the app index override)."""
    context = base_context(request, admin_site, "overview")
    data = overview_data(broker or monitor_broker())
    context.update(data, title="Job queue", crumbs=[], live=True,
                   working_hosts=group_by_host(data["working"]),
                   chart=throughput_svg(data["throughput"]))
    return context


def render_overview(request: HttpRequest, admin_site: Any) -> str:
    """The overview page as HTML, for the ``admin/jobqueue/app_index.html`` override."""
    return render_to_string("jobqueue/monitor/overview.html",
                            overview_context(request, admin_site), request=request)


class OverviewView(MonitorPage):
    template_name = "jobqueue/monitor/overview.html"
    nav = "overview"
    title = "Job queue"
    live = True

    def crumbs(self) -> list[dict[str, str]]:
        return []

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**kwargs, "view": self,
                **overview_context(self.request, self.admin_site, self.broker)}


class OverviewJSONView(MonitorMixin, View):
    """The overview numbers as JSON: for scripts, uptime checks and dashboards."""

    def unavailable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        return JsonResponse({"error": str(exc)}, status=503)

    def get(self, request: HttpRequest) -> HttpResponse:
        data = overview_data(self.broker)
        t = data["throughput"]
        return JsonResponse({
            "generated_at": data["now"].isoformat(),
            "stats": data["stats"],
            "queues": {q["name"]: q["size"] for q in data["queues"]},
            "workers": {"total": data["stats"]["workers"],
                        "working": data["stats"]["working"], "stale": data["stale"]},
            "working": [{"worker": row["id"], "queue": row["job"]["queue"],
                         "task": row["job"]["task"], "job_id": row["job"]["id"],
                         "run_at": row["job"]["run_at"].isoformat()
                         if row["job"]["run_at"] else None} for row in data["working"]],
            "scheduled_due_times": data["scheduled"],
            "throughput": {"start_minute": t.start_minute, "processed": t.processed,
                           "failed": t.failed},
        })


class MetricsView(MonitorMixin, View):
    """Prometheus text format of the same numbers."""

    def unavailable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        reason = " ".join(str(exc).split())  # one comment line
        return HttpResponse(f"# jobqueue unavailable: {reason}\n", status=503,
                            content_type=CONTENT_TYPE)

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(render_metrics(self.broker), content_type=CONTENT_TYPE)
