"""Settings of the jobqueue example site: a development setup, not a production template.

Environment variables:

* ``REDIS_URL`` - the Redis that queues jobs (default ``redis://127.0.0.1:6379/0``);
* ``JOBQUEUE_NAMESPACE`` - the Resque key prefix (default ``resque``, what Ruby's Resque uses);
* ``EXAMPLE_DB`` - the SQLite file (default ``db.sqlite3`` beside ``manage.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from jobqueue.compat import TASKS_APP

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-jobqueue-example-not-for-production"
)
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Django 5.2 needs the django-tasks backport installed as an app; Django 6 has it built in.
    *([TASKS_APP] if TASKS_APP else []),
    "jobqueue",
    "articles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        # Web server and forked workers write at the same time: wait instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# --------------------------------------------------------------------------- jobqueue
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

TASKS = {
    "default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend",
        "QUEUES": [],  # any queue name: this site uses critical, default, mail and media
        "OPTIONS": {
            "URL": REDIS_URL,
            "NAMESPACE": os.environ.get("JOBQUEUE_NAMESPACE", "resque"),
        },
    }
}

JOBQUEUE = {
    # A Ruby app calling ``Resque.enqueue(Archive, 42)`` runs ``articles.tasks.archive(42)``.
    "RESQUE_CLASSES": {"Archive": "articles.tasks.archive"},
    # ``manage.py pool`` (what scripts/run-example starts): queue list -> number of workers.
    "POOL": {"critical,default": 2, "mail,media": 1},
    # Run once in the pool master before it forks: warm model and URL caches, freeze the gc.
    "SETUP": ["jobqueue.prewarm.models"],
    # Periodic jobs, fired by the workers themselves (no beat process), once per tick.
    "SCHEDULE": {
        "count-new-articles": {"task": "articles.tasks.count_uncounted", "every": 300},
    },
}

# --------------------------------------------------------------------------- email & logs
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "digest@example.com"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "jobqueue": {"level": "INFO"},
        # Django's own "django" logger prints to the console too (DEBUG on): don't say it twice.
        "django.tasks": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "django_tasks": {"level": "INFO"},
        "articles": {"level": "INFO"},
    },
}
