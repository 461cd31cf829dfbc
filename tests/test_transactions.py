"""enqueue_on_commit against a real PostgreSQL commit and rollback."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from jobqueue.exceptions import InvalidTaskArguments
from jobqueue.testing import capture_jobs
from jobqueue.transactions import enqueue_on_commit
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(databases=["default", "pg"], transaction=True)


class Boom(Exception):
    pass


def test_rolled_back_transaction_leaves_no_job():
    with capture_jobs() as jobs:
        with pytest.raises(Boom), transaction.atomic(using="pg"):
            user = User.objects.db_manager("pg").create_user("ghost")
            enqueue_on_commit(tasks.username_of, user.pk, using="pg")
            assert jobs.enqueued() == []  # nothing before the commit
            raise Boom
        assert not User.objects.using("pg").filter(username="ghost").exists()
        jobs.assert_nothing_enqueued()


def test_committed_transaction_enqueues_once_and_the_job_sees_the_row():
    with capture_jobs() as jobs:
        with transaction.atomic(using="pg"):
            user = User.objects.db_manager("pg").create_user("alice")
            enqueue_on_commit(tasks.username_of, user.pk, using="pg")
            assert jobs.enqueued() == []
        jobs.assert_enqueued(tasks.username_of, args=[user.pk], count=1)
        assert jobs.run_all() == 1
        [key] = jobs.broker.client.scan_iter(match=f"{jobs.namespace}:jobqueue:result:*")
        result = tasks.username_of.get_result(key.decode().rsplit(":", 1)[1])
        assert result.return_value == "alice"


def test_savepoint_rollback_drops_only_its_own_jobs():
    with capture_jobs() as jobs:
        with transaction.atomic(using="pg"):
            enqueue_on_commit(tasks.add, 1, 1, using="pg")
            with pytest.raises(Boom), transaction.atomic(using="pg"):
                enqueue_on_commit(tasks.add, 2, 2, using="pg")
                raise Boom
        jobs.assert_enqueued(tasks.add, args=[1, 1], count=1)
        jobs.assert_enqueued(tasks.add, args=[2, 2], count=0)


def test_bad_arguments_fail_at_call_time_not_at_commit():
    from datetime import datetime

    with (capture_jobs() as jobs, transaction.atomic(using="pg"),
          pytest.raises(InvalidTaskArguments)):
        enqueue_on_commit(tasks.echo, datetime.now(), using="pg")
    jobs.assert_nothing_enqueued()
