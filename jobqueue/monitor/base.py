"""What every monitor page and action shares: permissions, the broker, admin context, logging.

Pages answer ``GET`` with the ``view`` permission; actions answer ``POST`` only, with the
``manage`` permission (which implies ``view``, as the admin's *change* implies *view*). The
admin site's ``admin_view`` wraps both, so anonymous users go to the admin login, CSRF is
checked and nothing is cached; a staff member without the permission gets 403.
"""

from __future__ import annotations

from typing import Any

import django
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView

from ..broker import Broker, get_broker
from ..compat import DEFAULT_TASK_BACKEND_ALIAS
from ..exceptions import BrokerUnavailable, ConfigurationError
from ..models import MANAGE_PERMISSION, VIEW_PERMISSION, Monitor

NAV = (("overview", "Overview", "changelist"), ("queues", "Queues", "queues"),
       ("working", "Working", "working"), ("workers", "Workers", "workers"),
       ("failed", "Failed", "failed"), ("scheduled", "Scheduled", "scheduled"),
       ("periodic", "Periodic", "periodic"),
       ("results", "Results", "results"), ("stats", "Stats", "stats"))


def can_view(user: Any) -> bool:
    """True when ``user`` may open the monitor's pages."""
    return bool(user.is_active and user.is_staff
                and (user.has_perm(VIEW_PERMISSION) or user.has_perm(MANAGE_PERMISSION)))


def can_manage(user: Any) -> bool:
    """True when ``user`` may use the monitor's actions."""
    return bool(user.is_active and user.is_staff and user.has_perm(MANAGE_PERMISSION))


def monitor_broker() -> Broker:
    """The broker the monitor shows: the one behind the default ``TASKS`` alias."""
    return get_broker(DEFAULT_TASK_BACKEND_ALIAS)


def url_name(name: str) -> str:
    """The admin URL name of a monitor page (``admin:jobqueue_monitor_<name>``)."""
    return f"admin:jobqueue_monitor_{name}"


def monitor_url(request: HttpRequest, name: str, *args: Any, **kwargs: Any) -> str:
    """Reverse a monitor URL on the admin site serving ``request``."""
    return reverse(url_name(name), args=args, kwargs=kwargs,
                   current_app=getattr(request, "current_app", None))


def log_action(request: HttpRequest, label: str, message: str, flag: int = CHANGE) -> None:
    """Record an action in the admin's history (``LogEntry``) under the monitor model."""
    LogEntry.objects.log_actions(request.user.pk, [Monitor.target(label)], flag,
                                 change_message=message)


def base_context(request: HttpRequest, admin_site: AdminSite, nav: str = "") -> dict[str, Any]:
    """Context every monitor template needs: the admin's own, tabs and permissions."""
    context = dict(admin_site.each_context(request))
    context.update(
        opts=Monitor._meta,
        app_label="jobqueue",
        nav=nav,
        tabs=[{"key": key, "label": label, "url": monitor_url(request, name)}
              for key, label, name in NAV],
        can_manage=can_manage(request.user),
        ol_breadcrumbs=django.VERSION >= (6, 0),
    )
    return context


class MonitorMixin:
    """Permission check, broker lookup and outage handling for pages and actions."""

    admin_site: AdminSite = None  # type: ignore[assignment]  # given to as_view()
    permission = "view"
    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allowed = can_manage if self.permission == "manage" else can_view
        if not allowed(request.user):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        try:
            self.broker = monitor_broker()
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        except (BrokerUnavailable, ConfigurationError) as exc:
            return self.unavailable(request, exc)

    def unavailable(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        """The answer when Redis is down or the default backend is not jobqueue's."""
        context = base_context(request, self.admin_site)
        context.update(title="Job queue unavailable", error=str(exc), crumbs=[])
        return TemplateResponse(request, "jobqueue/monitor/unavailable.html", context,
                                status=503)


class MonitorPage(MonitorMixin, TemplateView):
    """A read-only monitor page rendered in the admin's look."""

    nav = ""
    title = ""
    live = False  # offers the live-refresh toggle

    def crumbs(self) -> list[dict[str, str]]:
        """Breadcrumbs after "Home > Job queue"; the last one is the current page."""
        label = dict((k, v) for k, v, _ in NAV).get(self.nav, self.title)
        return [{"label": label}]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(base_context(self.request, self.admin_site, self.nav))
        context.update(title=self.title, crumbs=self.crumbs(), live=self.live)
        return context


class MonitorAction(MonitorMixin, View):
    """A state-changing action: POST only, ``manage`` permission, logged, then redirect."""

    permission = "manage"
    http_method_names = ["post"]
    default_next = "changelist"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            level, text = self.act(request, *args, **kwargs)
        except BrokerUnavailable as exc:
            level, text = messages.ERROR, f"Redis is unavailable, nothing was done: {exc}"
        messages.add_message(request, level, text)
        return HttpResponseRedirect(self.next_url(request))

    def act(self, request: HttpRequest, *args: Any, **kwargs: Any) -> tuple[int, str]:
        """Do the action; return a message level and text for the user."""
        raise NotImplementedError

    def next_url(self, request: HttpRequest) -> str:
        """Where to go afterwards: a safe ``next`` from the form, else the default page."""
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(
                target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
            return target
        return monitor_url(request, self.default_next)


class ConfirmedAction(MonitorAction):
    """A destructive action: ``GET`` shows what it will do, ``POST`` with ``confirm`` does it."""

    http_method_names = ["get", "post"]
    template_name = "jobqueue/monitor/confirm.html"
    title = "Are you sure?"

    def describe(self, request: HttpRequest) -> dict[str, Any]:
        """Context for the confirmation page: ``question``, ``details``, ``fields``..."""
        raise NotImplementedError

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            described = self.describe(request)
        except BrokerUnavailable as exc:
            return self.unavailable(request, exc)
        context = base_context(request, self.admin_site, described.pop("nav", ""))
        context.update(title=self.title, crumbs=described.pop("crumbs", [{"label": "Confirm"}]))
        context.update(described)
        context.setdefault("next", request.GET.get("next", ""))
        return TemplateResponse(request, self.template_name, context)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("confirm") != "yes":
            return self.get(request, *args, **kwargs)
        return super().post(request, *args, **kwargs)
