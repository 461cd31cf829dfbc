"""``jobqueue.compat``: the Tasks API comes from exactly one namespace, the installed one.

Django 6.x ships ``django.tasks``; on 5.2 the ``django-tasks`` backport provides
``django_tasks``. The two hold different classes, so every name must come from the same one.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.util import find_spec

import django
import pytest

from jobqueue import compat

CORE = find_spec("django.tasks") is not None
NAMESPACE = "django.tasks" if CORE else "django_tasks"


def test_core_tasks_detected_exactly_when_django_ships_them():
    assert compat.HAS_CORE_TASKS is CORE
    assert CORE is (django.VERSION >= (6, 0))


@pytest.mark.parametrize("name, module, attribute", [
    ("task", "", "task"),
    ("task_backends", "", "task_backends"),
    ("TaskResult", "", "TaskResult"),
    ("TaskResultStatus", "", "TaskResultStatus"),
    ("TaskContext", "", "TaskContext"),
    ("DEFAULT_TASK_BACKEND_ALIAS", "", "DEFAULT_TASK_BACKEND_ALIAS"),
    ("DEFAULT_TASK_QUEUE_NAME", "", "DEFAULT_TASK_QUEUE_NAME"),
    ("BaseTaskBackend", ".backends.base", "BaseTaskBackend"),
    ("Task", ".base", "Task"),
    ("TaskError", ".base", "TaskError"),
    ("DEFAULT_TASK_PRIORITY", ".base", "DEFAULT_TASK_PRIORITY"),
    ("TASK_MIN_PRIORITY", ".base", "TASK_MIN_PRIORITY"),
    ("TASK_MAX_PRIORITY", ".base", "TASK_MAX_PRIORITY"),
    ("TaskResultDoesNotExist", ".exceptions", "TaskResultDoesNotExist"),
    ("TaskResultMismatch", ".exceptions", "TaskResultMismatch"),
    ("InvalidTask", ".exceptions", "InvalidTask" if CORE else "InvalidTaskError"),
    ("InvalidTaskBackend", ".exceptions",
     "InvalidTaskBackend" if CORE else "InvalidTaskBackendError"),
    ("task_enqueued", ".signals", "task_enqueued"),
    ("task_started", ".signals", "task_started"),
    ("task_finished", ".signals", "task_finished"),
])
def test_each_name_is_the_installed_namespaces_own_object(name: str, module: str,
                                                          attribute: str):
    source = importlib.import_module(NAMESPACE + module)
    assert getattr(compat, name) is getattr(source, attribute)


def test_normalize_json_comes_from_the_matching_utils():
    source = importlib.import_module("django.utils.json" if CORE else "django_tasks.utils")
    assert compat.normalize_json is source.normalize_json


@pytest.mark.parametrize("name", ["Task", "TaskResult", "TaskContext", "TaskError",
                                  "BaseTaskBackend", "InvalidTask", "InvalidTaskBackend",
                                  "TaskResultDoesNotExist", "TaskResultMismatch"])
def test_classes_are_defined_in_the_installed_namespace(name: str):
    assert getattr(compat, name).__module__.startswith(NAMESPACE + ".")


def test_exceptions_are_exceptions():
    for name in ("InvalidTask", "InvalidTaskBackend", "TaskResultDoesNotExist",
                 "TaskResultMismatch"):
        assert issubclass(getattr(compat, name), Exception), name


def test_every_exported_name_exists():
    assert sorted(compat.__all__) == sorted(set(compat.__all__))
    for name in compat.__all__:
        assert hasattr(compat, name), name


def test_tasks_app_is_the_backport_app_only_on_django_5():
    if CORE:
        assert compat.TASKS_APP is None
    else:
        assert compat.TASKS_APP == "django_tasks"
        assert find_spec(compat.TASKS_APP) is not None


def test_tasks_app_is_installed_in_the_test_settings():
    from django.conf import settings

    if compat.TASKS_APP:
        assert compat.TASKS_APP in settings.INSTALLED_APPS
    else:
        assert "django_tasks" not in settings.INSTALLED_APPS


def test_task_forwards_kwargs_matches_the_installed_version():
    # Django 6.0's @task takes a fixed set of keywords; 6.1 and the backport forward the rest
    # to the backend's task_class.
    expected = django.VERSION[:2] != (6, 0)
    assert compat.TASK_FORWARDS_KWARGS is expected


def test_task_forwards_kwargs_agrees_with_the_decorators_signature():
    kinds = {p.kind for p in inspect.signature(compat.task).parameters.values()}
    assert compat.TASK_FORWARDS_KWARGS is (inspect.Parameter.VAR_KEYWORD in kinds)


def test_priorities_are_ordered():
    assert compat.TASK_MIN_PRIORITY < compat.DEFAULT_TASK_PRIORITY < compat.TASK_MAX_PRIORITY


def test_the_test_tasks_are_compat_tasks():
    from tests.testapp import tasks

    assert isinstance(tasks.add, compat.Task)
