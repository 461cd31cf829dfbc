"""The monitor's URLs, mounted by ``MonitorAdmin.get_urls`` under ``<admin>/jobqueue/monitor/``.

Every view is wrapped by the admin site's ``admin_view`` (staff login, CSRF, no caching).
``/admin/jobqueue/`` itself is the admin's app index, which the template
``admin/jobqueue/app_index.html`` turns into the overview.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from . import views_failed, views_misc, views_overview, views_queues, views_scheduled
from . import views_workers as workers

ROUTES: list[tuple[str, Any, str]] = [
    ("", views_overview.OverviewView, "changelist"),
    ("overview.json", views_overview.OverviewJSONView, "overview_json"),
    ("metrics", views_overview.MetricsView, "metrics"),
    ("queues/", views_queues.QueuesView, "queues"),
    ("queues/<path:queue>/", views_queues.QueueView, "queue"),
    ("actions/queue/delete-job/", views_queues.DeleteQueuedJob, "queue_delete_job"),
    ("actions/queue/clear/", views_queues.ClearQueue, "queue_clear"),
    ("working/", workers.WorkingView, "working"),
    ("workers/", workers.WorkersView, "workers"),
    ("workers/<path:worker_id>/", workers.WorkerView, "worker"),
    ("actions/workers/prune/", workers.PruneWorker, "worker_prune"),
    ("actions/workers/prune-stale/", workers.PruneStaleWorkers, "workers_prune_stale"),
    ("failed/", views_failed.FailedView, "failed"),
    ("failed/<str:ref>/", views_failed.FailedEntryView, "failed_entry"),
    ("actions/failed/", views_failed.FailedAction, "failed_action"),
    ("actions/failed/bulk/", views_failed.FailedBulk, "failed_bulk"),
    ("scheduled/", views_scheduled.ScheduledView, "scheduled"),
    ("scheduled/<int:timestamp>/", views_scheduled.ScheduledBucketView, "scheduled_bucket"),
    ("actions/scheduled/", views_scheduled.ScheduledAction, "scheduled_action"),
    ("periodic/", views_scheduled.PeriodicView, "periodic"),
    ("actions/periodic/", views_scheduled.PeriodicAction, "periodic_action"),
    ("results/", views_misc.ResultView, "results"),
    ("stats/", views_misc.StatsView, "stats"),
]


def monitor_urls(admin_site: Any) -> list[URLPattern]:
    """URL patterns of every monitor page and action, named ``jobqueue_monitor_<name>``."""
    return [
        path(route, admin_site.admin_view(view.as_view(admin_site=admin_site)),
             name=f"jobqueue_monitor_{name}")
        for route, view, name in ROUTES
    ]
