"""Receivers for Django's ``task_started``/``task_finished`` that record what a worker sent.

``tests/test_backend.py`` runs a real worker with this module in ``JOBQUEUE["TASK_MODULES"]``
(through ``tests.settings_pool`` and ``JOBQUEUE_TEST_POOL_FILE``), so the worker imports it and
its forked children inherit the receivers. Each signal appends one record to the list
``<namespace>:test:signals``: ``<signal>|<sender module.qualname>|<result id>|<status>|<pid>``.
"""

from __future__ import annotations

import os
from typing import Any

from jobqueue.broker import get_broker
from jobqueue.compat import task_finished, task_started


def _record(signal_name: str, sender: Any, task_result: Any) -> None:
    broker = get_broker()
    sender_path = f"{sender.__module__}.{sender.__qualname__}"
    broker.client.rpush(  # type: ignore[attr-defined]
        f"{broker.namespace}:test:signals",
        f"{signal_name}|{sender_path}|{task_result.id}|{task_result.status}|{os.getpid()}")


def _started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("started", sender, task_result)


def _finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("finished", sender, task_result)


task_started.connect(_started, dispatch_uid="jobqueue-tests-signal-probe-started")
task_finished.connect(_finished, dispatch_uid="jobqueue-tests-signal-probe-finished")
