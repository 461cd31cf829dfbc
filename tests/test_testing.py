"""The public test helpers: capture_jobs, the jobqueue_jobs fixture, test backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import SimpleTestCase, override_settings

from jobqueue.testing import capture_jobs
from tests.testapp import tasks

# The jobqueue_jobs fixture comes from ``-p jobqueue.testing`` in pyproject's addopts, the
# way a project enables it (or ``pytest_plugins = ["jobqueue.testing"]`` in its root conftest).


def test_fixture_captures_and_runs_follow_up_jobs(jobqueue_jobs, jq):
    tasks.chain.enqueue(3)
    jobqueue_jobs.assert_enqueued(tasks.chain, args=[3], count=1)
    assert jobqueue_jobs.run_all() == 4  # 3 -> 2 -> 1 -> 0
    jobqueue_jobs.assert_nothing_enqueued()


def test_delayed_jobs_and_retries_are_made_due(jq):
    with capture_jobs() as jobs:
        tasks.add.using(run_after=timedelta(hours=3)).enqueue(1, 2)
        tasks.flaky.enqueue("helper")
        assert {j.task_name.rsplit(".", 1)[1] for j in jobs.enqueued()} == {"add", "flaky"}
        assert jobs.run_all() == 4  # add once, flaky three attempts
        jobs.assert_nothing_enqueued()


def test_assertion_messages_list_what_is_waiting(jq):
    with capture_jobs() as jobs:
        tasks.add.enqueue(1, 2)
        with pytest.raises(AssertionError, match=r"tests.testapp.tasks.add"):
            jobs.assert_enqueued(tasks.add, args=[9, 9])
        with pytest.raises(AssertionError):
            jobs.assert_nothing_enqueued()


def test_namespace_is_removed_afterwards(jq):
    with capture_jobs() as jobs:
        tasks.add.enqueue(1, 2)
        client, namespace = jobs.broker.client, jobs.namespace
    assert list(client.scan_iter(match=f"{namespace}:*")) == []


class CaptureInTestCase(SimpleTestCase):
    """The same helpers in a Django ``TestCase``."""

    def test_capture_jobs_in_a_testcase(self):
        with capture_jobs() as jobs:
            tasks.echo.enqueue("hi", n=1)
            jobs.assert_enqueued(tasks.echo, args=["hi"], kwargs={"n": 1})
            self.assertEqual(jobs.run_all(), 1)


def _seven() -> int:
    return 7


@override_settings(TASKS={"default": {"BACKEND": "jobqueue.testing.ImmediateBackend"}})
def test_immediate_test_backend_accepts_jobqueue_task_options():
    from jobqueue.compat import TASK_FORWARDS_KWARGS, task

    if not TASK_FORWARDS_KWARGS:
        pytest.skip("Django 6.0 does not forward @task keyword arguments at all")

    bound = task(max_attempts=4, backoff=1)(_seven)
    assert bound.enqueue().return_value == 7
