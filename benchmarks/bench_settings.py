"""Django settings of the throughput benchmark (``benchmarks/run.py``): a small real project.

Admin, auth, sessions and messages, jobqueue and the benchmark's app, so a worker process has
the size of a typical project's worker. ``BENCH_REDIS_URL`` (the suite's private Redis) and
``BENCH_DB`` come from ``benchmarks/run.py``; no job touches the database. ``BENCH_POOL``
(JSON) is ``JOBQUEUE["POOL"]`` for ``manage.py pool``. ``BENCH_IMMORTAL=0`` turns
``JOBQUEUE["IMMORTAL_HEAP"]`` off, ``BENCH_HUGE_PAGES=0`` ``JOBQUEUE["HUGE_PAGES"]`` and
``BENCH_FORK_SERVER=0`` ``JOBQUEUE["FORK_SERVER"]``, for side-by-side runs;
``BENCH_FORK_SERVER_IDLE_TIMEOUT`` sets ``JOBQUEUE["FORK_SERVER_IDLE_TIMEOUT"]``. The admin is
routed (``bench_urls``) so ``run.py --scale`` can render the monitor pages.
"""

from __future__ import annotations

import json
import os

from jobqueue.compat import TASKS_APP

SECRET_KEY = "bench-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.bench_urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "jobqueue",
    "benchmarks.benchapp",
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
                         "NAME": os.environ.get("BENCH_DB", "/tmp/jobqueue-bench.sqlite3")}}
TASKS = {"default": {
    "BACKEND": "jobqueue.backends.redis.RedisBackend",
    "QUEUES": [],
    "OPTIONS": {"URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                "NAMESPACE": "bench"},
}}
# Per-job INFO lines would measure the terminal; RQ's workers run at WARNING too. Django's
# own django.tasks logger makes an INFO record per task (dropped unless DEBUG): off as well.
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"jobqueue": {"level": "WARNING"}, "django.tasks": {"level": "WARNING"}}}
JOBQUEUE = {"POOL": json.loads(os.environ.get("BENCH_POOL", "{}")),
            "IMMORTAL_HEAP": os.environ.get("BENCH_IMMORTAL", "1") != "0",
            "HUGE_PAGES": os.environ.get("BENCH_HUGE_PAGES", "1") != "0",
            "FORK_SERVER": os.environ.get("BENCH_FORK_SERVER", "1") != "0"}
if os.environ.get("BENCH_FORK_SERVER_IDLE_TIMEOUT"):
    JOBQUEUE["FORK_SERVER_IDLE_TIMEOUT"] = float(os.environ["BENCH_FORK_SERVER_IDLE_TIMEOUT"])
