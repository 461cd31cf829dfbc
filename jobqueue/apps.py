"""Django app configuration."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig


class JobqueueConfig(AppConfig):
    name = "jobqueue"
    verbose_name = "Job queue"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers system checks
        from .compat import TASKS_APP

        if TASKS_APP:  # Django 5.2: the backport's checks and log receivers, even if its
            import_module(f"{TASKS_APP}.checks")  # app is not in INSTALLED_APPS
            import_module(f"{TASKS_APP}.signals")
