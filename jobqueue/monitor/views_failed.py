"""Failed jobs: newest first, filtered and searched server-side, retried or removed by record.

Unfiltered, the list pages by number (one ``LRANGE``). Filtered, ``failed_scan`` walks the
list in Redis a few thousand records per call and stops at ``SCAN_CAP`` records per page
view; the page says so when the cap cut it short and links to the next stretch. Actions
name records by ``FailedEntry.ref`` (their exact bytes), never by a position.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, DELETION
from django.http import Http404, HttpRequest
from django.utils.http import urlencode

from ..broker.base import FailedFilter
from .base import ConfirmedAction, MonitorAction, MonitorPage, log_action, monitor_url
from .forms import BULK_ACTIONS, FailedFilterForm, filter_from, filter_params, int_param, valid_refs
from .paging import paginate, query_with
from .present import failed_row

PER_PAGE = 20
SCAN_CAP = 100_000


def describe_filter(where: FailedFilter) -> str:
    """The filter in words, for messages and history entries."""
    parts = [f"{name} {value!r}" for name, value in (
        ("queue", where.queue), ("task", where.task), ("exception", where.exception),
        ("args containing", where.search)) if value]
    return ", ".join(parts) if parts else "all failed jobs"


class FailedView(MonitorPage):
    template_name = "jobqueue/monitor/failed.html"
    nav = "failed"
    title = "Failed jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = FailedFilterForm(self.request.GET)
        where = form.filter()
        total = self.broker.failed_count()
        if where.active:
            context.update(self._scan(where))
        else:
            page = paginate(self.request, total,
                            lambda start, count: self.broker.failed_page(start, count),
                            PER_PAGE)
            context.update(page=page, entries=page["items"])
        rows = [failed_row(entry) for entry in context.pop("entries")]
        for row in rows:
            row["url"] = monitor_url(self.request, "failed_entry", row["ref"])
        context.update(
            form=form, where=where, rows=rows, total=total,
            bulk_urls={action: monitor_url(self.request, "failed_bulk") + "?" + urlencode(
                {"action": action, **filter_params(where)}) for action in BULK_ACTIONS},
            known_queues=sorted(self.broker.queue_sizes()),
            known_tasks=sorted({row["task"] for row in rows}),
            known_exceptions=sorted({row["exception"] for row in rows}),
            here=self.request.get_full_path())
        return context

    def _scan(self, where: FailedFilter) -> dict[str, Any]:
        before = int_param(self.request.GET.get("before"))
        after = int_param(self.request.GET.get("after"))
        scan = self.broker.failed_scan(where, before=before, after=after, limit=PER_PAGE,
                                       max_scanned=SCAN_CAP)
        return {
            "scan": scan, "entries": scan.entries,
            "older_url": query_with(self.request, before=scan.older, after=None, p=None)
            if scan.older is not None else None,
            "newer_url": query_with(self.request, after=scan.newer, before=None, p=None)
            if scan.newer is not None else None,
            "newest_url": query_with(self.request, after=None, before=None, p=None)
            if before is not None or after is not None else None,
            "scan_cap": SCAN_CAP,
        }


class FailedEntryView(MonitorPage):
    template_name = "jobqueue/monitor/failed_entry.html"
    nav = "failed"
    title = "Failed job"

    def crumbs(self) -> list[dict[str, str]]:
        return [{"label": "Failed", "url": monitor_url(self.request, "failed")},
                {"label": self.title}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        entry = self.broker.failed_entry(self.kwargs["ref"])
        if entry is None:
            raise Http404("This failure record is gone: it was retried or removed.")
        row = failed_row(entry)
        self.title = f"{row['exception']} in {row['task']}"
        context = super().get_context_data(**kwargs)
        result = self.broker.get_result(row["job_id"]) if row["job_id"] else None
        context.update(row=row, result=result,
                       result_url=monitor_url(self.request, "results") + f"?id={row['job_id']}"
                       if row["job_id"] else "",
                       here=monitor_url(self.request, "failed"))
        return context


class FailedAction(MonitorAction):
    """Retry or remove one record (``one=retry:<ref>``) or the selected ones (``ref``)."""

    default_next = "failed"

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        one = request.POST.get("one", "")
        if one:
            action, _, ref = one.partition(":")
            refs = valid_refs([ref])
        else:
            action, refs = request.POST.get("action", ""), valid_refs(request.POST.getlist("ref"))
        if action not in ("retry", "remove"):
            return messages.ERROR, "Unknown action; nothing was done."
        if not refs:
            return messages.WARNING, "No failed job was selected; nothing was done."
        entries = [e for e in (self.broker.failed_entry(ref) for ref in refs) if e]
        if action == "retry":
            done = self.broker.retry_failed(refs)
        else:
            done = self.broker.remove_failed(refs)
        if not done:
            return messages.WARNING, ("Nothing was done: the failed job was already retried "
                                      "or removed." if len(refs) == 1 else
                                      "Nothing was done: those failed jobs were already gone.")
        names = ", ".join(sorted({e.failure.task_name or "?" for e in entries})) or "?"
        verb = "Retried" if action == "retry" else "Removed"
        ids = ", ".join(e.failure.id or e.ref for e in entries)
        log_action(request, f"failed jobs ({names})"[:200],
                   f"{verb} {done} failed job(s) of {names}: {ids}"[:1000],
                   CHANGE if action == "retry" else DELETION)
        return messages.SUCCESS, f"{verb} {done} failed job{'s' if done != 1 else ''}."


class FailedBulk(ConfirmedAction):
    """Retry or remove every record matching the current filter, or clear the list."""

    default_next = "failed"

    def _action(self, request: HttpRequest) -> str:
        action = request.POST.get("action") or request.GET.get("action", "")
        if action not in BULK_ACTIONS:
            raise Http404("Unknown action")
        return action

    def describe(self, request: HttpRequest) -> dict[str, Any]:
        action = self._action(request)
        where = FailedFilter() if action == "clear" else filter_from(
            request.GET if request.method == "GET" else request.POST)
        count, complete = self.broker.failed_count_matching(where)
        what = describe_filter(where)
        verb = {"retry": "Retry", "remove": "Remove", "clear": "Remove"}[action]
        question = (f"{verb} all {count}{'' if complete else '+'} failed jobs"
                    f"{'' if not where.active else ' matching ' + what}?")
        details = (["Each job goes back to the end of its queue and its record is removed, "
                    "one atomic step per record."] if action == "retry" else
                   ["The records are deleted for good."])
        return {"nav": "failed", "question": question, "details": details,
                "crumbs": [{"label": "Failed", "url": monitor_url(request, "failed")},
                           {"label": f"{BULK_ACTIONS[action]} all"}],
                "fields": {"action": action, **filter_params(where)},
                "button": f"Yes, {verb.lower()} {count} jobs", "danger": action != "retry",
                "cancel_url": monitor_url(request, "failed") + query_with(
                    request, action=None, next=None)}

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        action = self._action(request)
        where = filter_from(request.POST)
        what = describe_filter(where)
        if action == "clear":
            done = self.broker.clear_failed()
            what = "all failed jobs"
        elif action == "retry":
            done = self.broker.retry_failed_matching(where)
        else:
            done = self.broker.remove_failed_matching(where)
        verb = {"retry": "Retried", "remove": "Removed", "clear": "Cleared"}[action]
        log_action(request, f"failed jobs: {what}"[:200], f"{verb} {done} failed jobs ({what})",
                   CHANGE if action == "retry" else DELETION)
        return messages.SUCCESS, f"{verb} {done} failed jobs ({what})."
