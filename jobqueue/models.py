"""The monitor's permissions: one unmanaged model, no table, no rows.

Django attaches permissions to a content type, so the admin monitor needs a model to hang
``view_monitor`` and ``manage_monitor`` on; ``managed = False`` keeps it out of the
database. Registering it with the admin (``jobqueue.admin``) puts the monitor at
``/admin/jobqueue/`` on the admin index, with no URLconf line beyond ``admin.site.urls``.
"""

from __future__ import annotations

from django.db import models

VIEW_PERMISSION = "jobqueue.view_monitor"
MANAGE_PERMISSION = "jobqueue.manage_monitor"


class Monitor(models.Model):
    """Stands for the job queue in the admin: its permissions and its history entries."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_monitor", "Can view the job queue monitor"),
            ("manage_monitor", "Can retry, delete and clear jobs in the job queue monitor"),
        ]
        verbose_name = "monitor"
        verbose_name_plural = "monitor"

    def __str__(self) -> str:
        return getattr(self, "label", "") or "Job queue"

    @classmethod
    def target(cls, label: str) -> Monitor:
        """An unsaved stand-in naming what an admin action acted on (for ``LogEntry``)."""
        obj = cls()
        obj.label = label  # type: ignore[attr-defined]
        return obj
