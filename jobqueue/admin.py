"""Put the job queue monitor in the Django admin.

Registers the permission-only ``Monitor`` model on ``admin.site`` (whatever site the
project's admin app uses), so the monitor appears on the admin index and lives at
``/admin/jobqueue/`` with no URLconf line beyond ``admin.site.urls``. Another admin site can
offer it too: ``my_site.register(Monitor, MonitorAdmin)``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Monitor
from .monitor.base import can_manage, can_view
from .monitor.urls import monitor_urls


class MonitorAdmin(admin.ModelAdmin):
    """The monitor's pages in place of a changelist; no add, change or delete of rows."""

    def get_urls(self) -> list[Any]:
        return monitor_urls(self.admin_site)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {"view": can_view(request.user), "change": can_manage(request.user),
                "add": False, "delete": False}


admin.site.register(Monitor, MonitorAdmin)
