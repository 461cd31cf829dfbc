"""URLs of the benchmark project: the admin, where jobqueue's monitor lives."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
