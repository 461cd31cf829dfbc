"""``jobqueue.job``: the immutable job values and how a reservation counts attempts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from jobqueue.job import BadJob, Job, Reservation

NOW = datetime(2026, 11, 23, 2, 27, 13, tzinfo=UTC)


def _reservation(job: Job | None = None, **changes: Any) -> Reservation:
    return Reservation(job=job or Job(task_name="t.x", args=[]), queue="default", run_at=NOW,
                       worker_id="h:1:default", **changes)


# --------------------------------------------------------------------------- Job
def test_job_defaults_are_a_bare_resque_job_on_default():
    job = Job(task_name="Archive", args=[1])
    assert (job.kwargs, job.id, job.queue, job.enqueued_at, job.priority, job.extra, job.raw) == (
        {}, None, "default", None, 0, {}, None)


def test_job_defaults_are_not_shared_between_instances():
    a, b = Job(task_name="A", args=[]), Job(task_name="B", args=[])
    a.kwargs["k"] = 1
    a.extra["e"] = 1
    assert b.kwargs == {} and b.extra == {}


def test_job_is_immutable():
    job = Job(task_name="A", args=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.queue = "other"  # type: ignore[misc]


def test_values_use_slots_not_an_instance_dict():
    job = Job(task_name="A", args=[])
    for value in (job, _reservation(job)):
        assert not hasattr(value, "__dict__")


def test_job_equality_ignores_the_raw_bytes():
    a = Job(task_name="A", args=[1], raw='{"class":"A","args":[1]}')
    b = Job(task_name="A", args=[1], raw='{"args":[1],"class":"A"}')
    assert a == b
    assert "raw" not in repr(a)


def test_job_equality_compares_every_other_field():
    base = Job(task_name="A", args=[1])
    assert base != dataclasses.replace(base, args=[2])
    assert base != dataclasses.replace(base, queue="q")
    assert base != dataclasses.replace(base, id="x")
    assert base != dataclasses.replace(base, extra={"attempts": 1})


# --------------------------------------------------------------------------- Reservation
def test_first_attempt_of_a_bare_job_is_one():
    assert _reservation().attempts == 1


def test_worker_ids_count_the_attempts():
    assert _reservation(worker_ids=("h:1:q",)).attempts == 1
    assert _reservation(worker_ids=("h:1:q", "h:2:q", "h:1:q")).attempts == 3


def test_worker_ids_win_over_the_attempts_field():
    job = Job(task_name="t.x", args=[], extra={"attempts": 7})
    assert _reservation(job, worker_ids=("a", "b")).attempts == 2


def test_without_worker_ids_the_payload_attempts_field_counts_earlier_attempts():
    job = Job(task_name="t.x", args=[], extra={"attempts": 2})
    assert _reservation(job).attempts == 3


@pytest.mark.parametrize("value", [0, None, ""])
def test_an_empty_attempts_field_means_first_attempt(value: Any):
    job = Job(task_name="t.x", args=[], extra={"attempts": value})
    assert _reservation(job).attempts == 1


def test_reservation_defaults():
    r = _reservation()
    assert r.started_at is None and r.worker_ids == ()


def test_reservation_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _reservation().queue = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- BadJob
def test_bad_job_keeps_the_entry_verbatim():
    bad = BadJob(raw="{not json", queue="q", error="payload is not valid JSON", run_at=NOW,
                 worker_id="h:1:q")
    assert bad.raw == "{not json"
    with pytest.raises(dataclasses.FrozenInstanceError):
        bad.raw = ""  # type: ignore[misc]
