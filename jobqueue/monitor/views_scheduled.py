"""Scheduled jobs: delayed ones in resque-scheduler's layout (run now, delete) and periodic ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, DELETION
from django.http import HttpRequest

from ..payload import dumps
from .base import MonitorAction, MonitorPage, log_action, monitor_url
from .paging import paginate
from .present import decode_raw, job_row

DUE_TIMES_PER_PAGE = 20
JOBS_PER_DUE_TIME = 10
JOBS_PER_PAGE = 50


def _bucket_row(request: HttpRequest, bucket: Any) -> dict[str, Any]:
    return {"timestamp": bucket.timestamp, "due_at": bucket.due_at, "size": bucket.size,
            "jobs": [job_row(item) for item in bucket.items],
            "more": bucket.size - len(bucket.items),
            "url": monitor_url(request, "scheduled_bucket", bucket.timestamp)}


class ScheduledView(MonitorPage):
    template_name = "jobqueue/monitor/scheduled.html"
    nav = "scheduled"
    title = "Scheduled jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = paginate(self.request, self.broker.scheduled_count(),
                        lambda start, count: self.broker.scheduled_page(
                            start, count, JOBS_PER_DUE_TIME), DUE_TIMES_PER_PAGE)
        context.update(page=page, buckets=[_bucket_row(self.request, b) for b in page["items"]],
                       here=self.request.get_full_path())
        return context


class ScheduledBucketView(MonitorPage):
    template_name = "jobqueue/monitor/scheduled_bucket.html"
    nav = "scheduled"

    def crumbs(self) -> list[dict[str, str]]:
        return [{"label": "Scheduled", "url": monitor_url(self.request, "scheduled")},
                {"label": str(self.kwargs["timestamp"])}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        ts = self.kwargs["timestamp"]
        self.title = "Jobs due at one time"
        context = super().get_context_data(**kwargs)
        bucket = self.broker.scheduled_bucket(ts, 0, 0)
        page = paginate(self.request, bucket.size,
                        lambda start, count: self.broker.scheduled_bucket(ts, start, count).items,
                        JOBS_PER_PAGE)
        context.update(bucket={"timestamp": ts, "due_at": bucket.due_at, "size": bucket.size},
                       page=page, jobs=[job_row(item) for item in page["items"]],
                       here=self.request.get_full_path())
        return context


class ScheduledAction(MonitorAction):
    """Run a delayed job now, or delete it; the job is named by its exact bytes."""

    default_next = "scheduled"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        action = request.POST.get("action", "")
        ts = request.POST.get("timestamp", "")
        raw = decode_raw(request.POST.get("job", ""))
        if action not in ("run", "delete") or not ts.isdigit() or raw is None:
            return messages.ERROR, "Nothing was done: the form was incomplete."
        if action == "run":
            done = self.broker.run_scheduled_now(int(ts), raw)
        else:
            done = self.broker.delete_scheduled(int(ts), raw)
        if not done:
            return messages.WARNING, ("That delayed job was no longer waiting (already due, "
                                      "run or deleted); nothing was done.")
        verb = "Ran now" if action == "run" else "Deleted"
        log_action(request, f"delayed job due {ts}", f"{verb} a delayed job due at {ts}: "
                   f"{raw[:150]}", CHANGE if action == "run" else DELETION)
        return messages.SUCCESS, ("Moved the job to its queue." if action == "run"
                                  else "Deleted the delayed job.")


def _periodic_row(entry: Any, last: datetime | None, now: datetime, zone: Any) -> dict[str, Any]:
    from ..periodic import latest_due, next_fire

    due = latest_due(entry, last, now, zone) if last is not None else None
    upcoming = next_fire(entry, last if last is not None and due is None else now, zone)
    return {"name": entry.name, "task": entry.task, "timetable": entry.describe(),
            "queue": entry.queue or "", "args": dumps(entry.args), "kwargs": dumps(entry.kwargs),
            "last": last, "next": upcoming, "overdue": due}


class PeriodicView(MonitorPage):
    """``JOBQUEUE["SCHEDULE"]``: each entry's timetable, last tick enqueued and next tick."""

    template_name = "jobqueue/monitor/periodic.html"
    nav = "periodic"
    title = "Periodic jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from ..conf import get_config
        from ..periodic import local_zone

        context = super().get_context_data(**kwargs)
        entries = list(get_config().schedule)
        last_runs = self.broker.periodic_last_runs() if entries else {}
        now, zone = datetime.now(UTC), local_zone()
        context.update(entries=[_periodic_row(e, last_runs.get(e.name), now, zone)
                                for e in entries], zone=str(zone), now=now)
        return context


class PeriodicAction(MonitorAction):
    """Enqueue one periodic entry's job now, outside its timetable (the timetable is kept)."""

    default_next = "periodic"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        from ..conf import get_config
        from ..periodic import build_periodic_job

        name = request.POST.get("name", "")
        entry = next((e for e in get_config().schedule if e.name == name), None)
        if request.POST.get("action") != "run" or entry is None:
            return messages.ERROR, "Nothing was done: no such periodic job."
        job, record = build_periodic_job(entry)
        if job is None:
            return messages.ERROR, (f"Nothing was done: {entry.task} is not a registered task "
                                    "on a jobqueue backend.")
        self.broker.push(job, record)
        log_action(request, f"periodic {name}", f"Enqueued periodic job {name} ({entry.task}) "
                   f"now, as job {job.id}", CHANGE)
        return messages.SUCCESS, f"Enqueued {name} now (job {job.id})."
