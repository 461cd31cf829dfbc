"""``jobqueue.warmup``: the fork-mode worker runs the job path once before making children.

Checked: it sends no signal anyone receives (Django's task signals, jobqueue's hooks), writes
no log record, never uses the broker, opens no database connection; a fork-mode worker runs
it before its fork server exists (3.12+); and what it is for, measured in real forked children: a
child forked after it writes fewer pages (copy-on-write faults) for a job than one forked
before it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from jobqueue import signals as hooks
from jobqueue import warmup
from jobqueue.compat import task_backends, task_finished, task_started
from jobqueue.runner import JobRunner
from tests.conftest import ROOT


class _Untouchable:
    """A broker stand-in that fails the test when anything is asked of it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the warm-up used the broker: {name}")


@pytest.fixture
def received():
    seen: list[str] = []

    def recorder(name: str) -> Any:
        return lambda **kwargs: seen.append(name)

    receivers = {signal: recorder(name)
                 for name, signal in (("task_started", task_started),
                                      ("task_finished", task_finished),
                                      ("after_fork", hooks.after_fork),
                                      ("before_fork", hooks.before_fork))}
    for signal, receiver in receivers.items():
        signal.connect(receiver, weak=False)
    yield seen
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


@pytest.mark.django_db
def test_the_warm_up_has_no_side_effect(received, caplog):
    open_before = {conn.alias: conn.connection is not None for conn in connections.all()}
    runner = JobRunner(_Untouchable(), type(task_backends["default"]), "host:1:default")
    with CaptureQueriesContext(connections["default"]) as queries, \
            caplog.at_level(logging.DEBUG):
        warmup.warm_job_path(runner, "host:1:default")
    assert received == []
    assert caplog.records == []
    assert len(queries) == 0
    opened = [conn.alias for conn in connections.all()
              if conn.connection is not None and not open_before[conn.alias]]
    assert opened == []  # (a stale one may be closed: close_old_connections is on the path)


def test_a_fork_mode_worker_warms_up_before_its_fork_server_exists(jq, monkeypatch):
    from jobqueue.worker import Worker

    order: list[str] = []
    monkeypatch.setattr(warmup, "warm_job_path",
                        lambda runner, worker_id: order.append(f"warm:{worker_id}"))
    monkeypatch.setattr(Worker, "_start_server", lambda self: order.append("server"))
    monkeypatch.setattr(Worker, "_request_child", lambda self: None)
    worker = Worker(jq.broker, ["default"], fork=True, burst=True)
    worker._startup()
    try:  # (not on 3.11, where it measured no gain)
        assert order == [f"warm:{worker.id}", "server"][0 if warmup.ENABLED else 1:]
    finally:
        worker._teardown()
    no_fork = Worker(jq.broker, ["default"], fork=False, burst=True)
    order.clear()
    no_fork._startup()
    no_fork._teardown()
    assert order == []  # --no-fork warms itself by running jobs


CHILD_FAULTS = """
import json, os, resource
import django
django.setup()
from datetime import UTC, datetime
from jobqueue import payload
from jobqueue.compat import task_backends
from jobqueue.job import Job, Reservation
from jobqueue.runner import JobRunner
from jobqueue.warmup import warm_job_path, warm_while_idle
from tests.testapp import tasks

runner = JobRunner(None, type(task_backends["default"]), "host:1:default")
now = datetime.now(UTC)
raw = payload.encode_job(Job(task_name=tasks.add.module_path, args=[1, 2], id="x" * 32,
                             enqueued_at=now))

def child_faults(idle=False):
    r, w = os.pipe()
    inbox_r, inbox_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if idle:
            assert warm_while_idle(runner, "host:1:default", inbox_r, after=0.01)
        job = payload.decode_job(raw, "default")
        res = Reservation(job=job, queue="default", run_at=now, worker_id="host:1:default")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        runner.execute(tasks.add, res).to_bytes()
        os.write(w, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
        os._exit(0)
    os.close(w)
    faults = int(os.read(r, 64))
    for fd in (r, inbox_r, inbox_w):
        os.close(fd)
    os.waitpid(pid, 0)
    return faults

cold = [child_faults() for _ in range(3)]
warm_job_path(runner, "host:1:default")  # as the worker does before its fork server
print(json.dumps({"cold": cold, "warm": [child_faults() for _ in range(3)],
                  "idle": [child_faults(idle=True) for _ in range(3)]}))
"""


@functools.cache
def _child_faults() -> dict[str, list[int]]:
    """Page faults of a job in real forked children: forked before the worker's warm-up
    ("cold"), after it ("warm"), and after it having warmed while idle ("idle")."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "JOBQUEUE_TEST_PG": "0",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD_FAULTS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not warmup.ENABLED, reason="the warm-up is off on Python 3.11: it measured "
                    "no fewer faults there (426 -> 446)")
def test_a_child_forked_after_the_warm_up_writes_fewer_pages_for_its_job():
    faults = _child_faults()
    # Deterministic for one interpreter and tree; here 345 -> 298 (3.12), 393 -> 350 (3.13).
    assert max(faults["warm"]) < min(faults["cold"]), faults


def test_a_child_warms_while_idle_only_when_no_job_comes(monkeypatch):
    runs: list[int] = []
    monkeypatch.setattr(warmup, "warm_job_path",
                        lambda runner, worker_id, rounds=warmup.ROUNDS: runs.append(rounds))
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"job")  # its job is already there: no warm-up, no wait
        assert warmup.warm_while_idle(None, "host:1:default", read_fd, after=5.0) is False
        os.read(read_fd, 16)
        assert warmup.warm_while_idle(None, "host:1:default", read_fd, after=0.01) is True
        assert runs == [1]
    finally:
        os.close(write_fd)
    # The worker let it go (end of file): it leaves at once, without warming.
    assert warmup.warm_while_idle(None, "host:1:default", read_fd, after=5.0) is False
    os.close(read_fd)
    assert runs == [1]


@pytest.mark.parametrize("spare", [True, False])
def test_a_child_warms_at_once_with_a_spare_cpu_else_after_a_wait(monkeypatch, spare):
    runs: list[float] = []
    monkeypatch.setattr(warmup, "spare_cpu", lambda: spare)
    monkeypatch.setattr(warmup, "IDLE_SECONDS", 0.2)
    monkeypatch.setattr(warmup, "warm_job_path", lambda runner, worker_id, rounds=1:
                        runs.append(time.monotonic()))
    read_fd, write_fd = os.pipe()
    try:
        began = time.monotonic()
        assert warmup.warm_while_idle(None, "host:1:default", read_fd) is True
        waited = runs[0] - began
        # Another CPU can warm while the job before runs; one CPU waits until it is idle.
        assert waited < 0.15 if spare else waited >= 0.2, waited
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.skipif(not warmup.ENABLED, reason="the warm-up is off on Python 3.11")
def test_a_child_that_warmed_while_idle_writes_fewer_pages_for_its_job():
    faults = _child_faults()
    # Here 301 -> 153 (3.12): the job still writes the pages it allocates afresh.
    assert max(faults["idle"]) < min(faults["warm"]) * 0.7, faults
