"""``JobqueueTask`` and per-task options: ``max_attempts``, ``backoff``, ``timeout``.

Three ways to set them, most specific first: ``@task(...)`` keyword arguments (Django 6.1+ and
the 5.2 backport forward them), ``@job_options(...)`` under ``@task()`` (every version), and the
backend's ``OPTIONS`` defaults.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from jobqueue.backends.options import parse_options
from jobqueue.broker import get_broker
from jobqueue.compat import TASK_FORWARDS_KWARGS, InvalidTask, task
from jobqueue.exceptions import ConfigurationError
from jobqueue.retry import RetryPolicy
from jobqueue.runner import timeout_of
from jobqueue.task import OPTIONS_ATTRIBUTE, JobqueueTask, job_options, task_option
from tests.testapp import tasks

forwarding = pytest.mark.skipif(not TASK_FORWARDS_KWARGS,
                                reason="this Django does not forward @task() keyword arguments")


@task()
@job_options(max_attempts=4, backoff=timedelta(seconds=30), timeout=12.5)
def with_options() -> None:
    """A task whose options come from ``@job_options``."""


def _five(exc: BaseException, result: Any) -> float:
    return 5


@task()
@job_options(backoff=_five)
def with_callable_backoff() -> None:
    """A task whose backoff is a callable."""


if TASK_FORWARDS_KWARGS:

    @task(max_attempts=2, timeout=3)
    @job_options(max_attempts=9, backoff=7, timeout=99)
    def both_ways() -> None:
        """Fields set by ``@task`` win over ``@job_options``; the rest fall through."""


def test_tasks_of_a_jobqueue_backend_are_jobqueue_tasks():
    assert isinstance(tasks.add, JobqueueTask)
    assert (tasks.add.max_attempts, tasks.add.backoff, tasks.add.timeout) == (None, None, None)


def test_task_without_options_uses_the_default():
    assert task_option(tasks.add, "max_attempts", 1) == 1
    assert task_option(tasks.add, "backoff") is None
    assert task_option(tasks.add, "timeout", 60) == 60


def test_job_options_are_read_from_the_function():
    assert getattr(with_options.func, OPTIONS_ATTRIBUTE) == {
        "max_attempts": 4, "backoff": timedelta(seconds=30), "timeout": 12.5}
    assert task_option(with_options, "max_attempts", 1) == 4
    assert task_option(with_options, "backoff") == timedelta(seconds=30)
    assert task_option(with_options, "timeout") == 12.5
    assert task_option(with_callable_backoff, "backoff") is _five


def test_job_options_leave_unset_options_out():
    assert getattr(with_callable_backoff.func, OPTIONS_ATTRIBUTE) == {"backoff": _five}


def test_options_survive_using():
    moved = with_options.using(queue_name="elsewhere", priority=5)
    assert task_option(moved, "max_attempts") == 4 and task_option(moved, "timeout") == 12.5


@forwarding
def test_task_keyword_arguments_are_forwarded_and_win_over_job_options():
    assert isinstance(both_ways, JobqueueTask)
    assert (both_ways.max_attempts, both_ways.timeout) == (2, 3)
    assert task_option(both_ways, "max_attempts") == 2
    assert task_option(both_ways, "timeout") == 3
    assert task_option(both_ways, "backoff") == 7  # not set on @task: from @job_options
    assert task_option(tasks.flaky_forwarded, "max_attempts") == 3
    assert task_option(both_ways.using(priority=1), "max_attempts") == 2


def test_where_task_keywords_are_not_forwarded_they_fail_loudly_and_job_options_works():
    """Django 6.0's ``@task`` takes no extra keywords: say so at import, never ignore them.

    (Every other version forwards them; the tests above cover that. This one pins what
    6.0 users meet, so each environment of the matrix runs one of the two branches.)
    """
    if TASK_FORWARDS_KWARGS:
        assert task(max_attempts=2)(with_options.func).max_attempts == 2
        return
    with pytest.raises(TypeError, match="max_attempts"):
        task(max_attempts=2)(with_options.func)
    assert task_option(tasks.flaky, "max_attempts") == 3  # @job_options under @task


@forwarding
@pytest.mark.parametrize("options", [{"max_attempts": 0}, {"timeout": -1}, {"backoff": "x"}])
def test_bad_forwarded_options_are_rejected_when_the_task_is_defined(options):
    with pytest.raises(InvalidTask, match=r"tests\.test_task\.with_options: \w+ must be"):
        task(**options)(with_options.func)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_attempts": 0}, "max_attempts must be a whole number >= 1, got 0"),
    ({"max_attempts": True}, "max_attempts must be a whole number >= 1, got True"),
    ({"max_attempts": 2.5}, "max_attempts must be a whole number >= 1, got 2.5"),
    ({"max_attempts": "3"}, "max_attempts must be a whole number >= 1, got '3'"),
    ({"backoff": -1}, "backoff must be seconds >= 0, a timedelta or a callable"),
    ({"backoff": timedelta(seconds=-1)}, "backoff must be seconds >= 0"),
    ({"backoff": "10"}, "backoff must be seconds >= 0"),
    ({"backoff": False}, "backoff must be seconds >= 0"),
    ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
    ({"timeout": -2.0}, "timeout must be a number of seconds > 0"),
    ({"timeout": True}, "timeout must be a number of seconds > 0"),
])
def test_job_options_reject_bad_values_at_once(options, message):
    with pytest.raises(InvalidTask, match=re.escape(message)):
        job_options(**options)


def test_job_options_accept_the_documented_forms():
    for backoff in (0, 2.5, timedelta(minutes=1), _five):
        job_options(max_attempts=1, backoff=backoff, timeout=0.1)


def _backend(settings: Any, **options: Any) -> None:
    settings.TASKS = {"default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": "redis://127.0.0.1:1/0", "NAMESPACE": "jqt-options", **options}}}


def test_backend_options_are_the_defaults_of_tasks_that_set_none(settings):
    _backend(settings, MAX_ATTEMPTS=4, BACKOFF=1.5, TIMEOUT=9)
    broker = get_broker()
    assert broker.task_defaults == {"max_attempts": 4, "backoff": 1.5, "timeout": 9}
    assert RetryPolicy.for_task(tasks.add, broker.task_defaults) == RetryPolicy(4, 1.5)
    assert timeout_of(tasks.add, broker) == 9.0
    # A task's own options win over the backend's.
    assert RetryPolicy.for_task(with_options, broker.task_defaults) == RetryPolicy(
        4, timedelta(seconds=30))
    assert timeout_of(with_options, broker) == 12.5
    assert RetryPolicy.for_task(tasks.flaky, broker.task_defaults) == RetryPolicy(3, 0)


def test_without_any_option_a_job_gets_one_attempt_and_no_timeout(settings):
    _backend(settings)
    broker = get_broker()
    assert RetryPolicy.for_task(tasks.add, broker.task_defaults) == RetryPolicy(1, None)
    assert timeout_of(tasks.add, broker) is None


@pytest.mark.parametrize(("options", "message"), [
    ({"MAX_ATTEMPTS": 0}, "max_attempts must be a whole number >= 1"),
    ({"BACKOFF": -3}, "backoff must be seconds >= 0"),
    ({"TIMEOUT": "soon"}, "timeout must be a number of seconds > 0"),
])
def test_bad_backend_defaults_are_configuration_errors(settings, options, message):
    assert message in (parse_options("default", {"NAMESPACE": "x", **options}).error or "")
    _backend(settings, **options)
    with pytest.raises(ConfigurationError, match=message):
        get_broker()


# --------------------------------------------------------------------------- get_backend
def test_get_backend_is_djangos_backend_and_is_kept_per_thread():
    from jobqueue.compat import task_backends

    first = tasks.add.get_backend()
    assert first is task_backends["default"]
    assert tasks.add.get_backend() is first
    assert tasks.add.using(priority=5).get_backend() is first  # kept per alias, not per task


def test_get_backend_follows_a_change_of_tasks_settings(settings):
    before = tasks.add.get_backend()
    settings.TASKS = {"default": {
        **settings.TASKS["default"],
        "OPTIONS": {**settings.TASKS["default"]["OPTIONS"], "NAMESPACE": "other"},
    }}
    after = tasks.add.get_backend()
    assert after is not before
    assert after.options["NAMESPACE"] == "other"
    assert tasks.add.get_backend() is after


def test_get_backend_of_another_thread_is_that_threads_backend():
    import threading

    from jobqueue.compat import task_backends

    mine = tasks.add.get_backend()
    seen: list[tuple[object, object]] = []
    thread = threading.Thread(
        target=lambda: seen.append((tasks.add.get_backend(), task_backends["default"])))
    thread.start()
    thread.join()
    theirs, djangos = seen[0]
    assert theirs is djangos
    assert theirs is not mine


def test_get_backend_keeps_only_backends_that_may_be_shared_in_a_thread(settings):
    from jobqueue import task as task_module
    from jobqueue.compat import task_backends

    settings.TASKS = {**settings.TASKS,
                      "dummy": {"BACKEND": "jobqueue.testing.DummyBackend"}}
    dummy = tasks.add.using(backend="dummy")
    assert dummy.get_backend() is task_backends["dummy"]
    assert "dummy" not in task_module._backends.__dict__  # Django's lookup, every time
    assert tasks.add.get_backend() is task_backends["default"]
    assert "default" in task_module._backends.__dict__
