"""``JobRunner.execute`` in this process: return values follow the arguments' JSON rule.

(Workers, forks and signals around the runner are covered by ``test_worker*.py``; this pins
what the runner decides, which needs no second process.)
"""

from __future__ import annotations

from typing import Any

import pytest

from jobqueue.compat import task
from jobqueue.runner import JobRunner


@task()
def returns(kind: str) -> Any:
    values: dict[str, Any] = {"bytes": b"raw", "tuple": (1, (2, 3)), "nested_bytes": {"a": [b"x"]},
                              "set": {1}, "nan": float("nan"), "dict": {"k": [1, "two"]}}
    return values[kind]


def _execute(jq: Any, kind: str) -> Any:
    returns.enqueue(kind)
    reservation = jq.broker.reserve("host:1:default", ["default"])
    runner = JobRunner(jq.broker, type(returns.get_backend()), "host:1:default")
    runner.manage_connections = False  # no database here (workers' connections: test_worker)
    return runner.execute(returns, reservation)


@pytest.mark.parametrize(("kind", "where"), [
    ("bytes", "at the return value (pass text, not bytes)"),
    ("nested_bytes", "at the return value['a'][0] (pass text, not bytes)"),
    ("set", "Unsupported type: <class 'set'> at the return value"),
    ("nan", "Out of range float values are not JSON compliant: nan at the return value"),
])
def test_a_return_value_json_cannot_carry_fails_the_job_naming_where(jq, kind, where):
    report = _execute(jq, kind)
    assert report.disposition == "failed"
    error = report.outcome.error
    assert error.exception_class_path == "jobqueue.exceptions.InvalidTaskArguments"
    assert error.message.startswith("Return value of tests.test_runner.returns is not "
                                    "JSON-serialisable")
    assert where in error.message


@pytest.mark.parametrize(("kind", "value"), [("tuple", [1, [2, 3]]),
                                             ("dict", {"k": [1, "two"]})])
def test_json_return_values_succeed_normalised(jq, kind, value):
    report = _execute(jq, kind)
    assert report.disposition == "successful"
    assert report.outcome.return_value == value
