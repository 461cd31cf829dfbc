"""Settings of the prewarm benchmark's pool (a typical small project: admin, auth, one app).

``BENCH_REDIS_URL``, ``BENCH_DB`` (SQLite file) and ``BENCH_JOBQUEUE`` (JSON merged into
``JOBQUEUE``) come from ``benchmarks/bench_prewarm.py``.
"""

from __future__ import annotations

import json
import os

from jobqueue.compat import TASKS_APP

SECRET_KEY = "bench-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.prewarm_app.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "jobqueue",
    "benchmarks.prewarm_app",
] + ([TASKS_APP] if TASKS_APP else [])
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("BENCH_DB", "/tmp/bench-prewarm.sqlite3")}}
TASKS = {"default": {
    "BACKEND": "jobqueue.backends.redis.RedisBackend",
    "QUEUES": [],
    "OPTIONS": {"URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                "NAMESPACE": "bench"},
}}
JOBQUEUE = {"HEARTBEAT_INTERVAL": 5.0, "INTERVAL": 1.0,
            **json.loads(os.environ.get("BENCH_JOBQUEUE", "{}"))}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"jobqueue": {"level": "WARNING"}}}
