"""Settings for jobqueue's own test suite.

Redis comes from the test session (``conftest.py`` starts a private ``redis-server``); each test
gets its own key namespace. Subprocess workers read the same values from the environment.
"""

from __future__ import annotations

import os
import sys

from jobqueue.compat import TASKS_APP

SECRET_KEY = "jobqueue-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "jobqueue",
    "tests.testapp",
]
if TASKS_APP:
    INSTALLED_APPS.append(TASKS_APP)

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
STATIC_URL = "/static/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("JOBQUEUE_TEST_SQLITE", os.path.join(
            os.path.dirname(__file__), ".test-db.sqlite3")),
        "TEST": {"NAME": os.environ.get("JOBQUEUE_TEST_SQLITE_TEST")},
    }
}

# A real PostgreSQL for the transaction tests (trust auth on the CI machine); the test
# database name carries the pid so parallel runs never share it.
if os.environ.get("JOBQUEUE_TEST_PG", "1") != "0":
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "jobqueue",
        "HOST": os.environ.get("JOBQUEUE_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("JOBQUEUE_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("JOBQUEUE_TEST_PG_USER", "postgres"),
        "TEST": {"NAME": f"test_jobqueue_{os.getpid()}"},
    }

REDIS_URL = os.environ.get("JOBQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NAMESPACE = os.environ.get("JOBQUEUE_TEST_NAMESPACE", "jqtest")

TASKS = {
    "default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend",
        "QUEUES": [],
        "OPTIONS": {"URL": REDIS_URL, "NAMESPACE": NAMESPACE},
    }
}
JOBQUEUE = {
    "RESQUE_CLASSES": {"Archive": "tests.testapp.tasks.archive"},
    "HEARTBEAT_INTERVAL": 1.0,
    "INTERVAL": 1.0,
    # Some tests run fork-mode workers inside the pytest process: an immortal heap there would
    # keep every later test's objects alive. Workers started as processes (manage.py worker,
    # manage.py pool: no pytest imported) keep the default, so the suite runs them with it.
    "IMMORTAL_HEAP": "pytest" not in sys.modules,
    "HUGE_PAGES": "pytest" not in sys.modules,  # (the same: it would collapse pytest's heap)
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"jobqueue": {"handlers": ["console"], "level": "INFO"}},
}
