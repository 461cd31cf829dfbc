"""System checks (``jobqueue/checks.py`` and the backend's own ``check()``): every documented id
fires for the mistake it names, and a correct configuration is silent.

Checks run through Django's registry (``run_checks``) or ``manage.py check`` itself, so what is
tested is what a user sees.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from io import StringIO

import pytest
import redis
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from jobqueue.redis_server import find_redis_server

DOCUMENTED = {"jobqueue.E001", "jobqueue.E002", "jobqueue.E003", "jobqueue.E004",
              "jobqueue.E005", "jobqueue.E006", "jobqueue.E010", "jobqueue.E011",
              "jobqueue.E012", "jobqueue.W001", "jobqueue.W002"}


def _jobqueue_messages(*, deploy: bool = False) -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in run_checks(include_deployment_checks=deploy)
            if (m.id or "").startswith("jobqueue.")]


def _ids(*, deploy: bool = False) -> list[str]:
    return [i for i, _ in _jobqueue_messages(deploy=deploy)]


def _jobqueue(settings, **entries) -> None:
    settings.JOBQUEUE = {**settings.JOBQUEUE, **entries}


def _options(settings, **options) -> None:
    tasks_setting = {alias: dict(config) for alias, config in settings.TASKS.items()}
    tasks_setting["default"]["OPTIONS"] = {**tasks_setting["default"]["OPTIONS"], **options}
    settings.TASKS = tasks_setting


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _private_redis(*config: str) -> Iterator[str]:
    """A redis-server of our own on a unix socket; yields its URL."""
    found = find_redis_server()
    if found is None:
        pytest.skip("no redis-server binary")
    directory = tempfile.mkdtemp(prefix="jqchk")
    path = os.path.join(directory, "r.sock")
    proc = subprocess.Popen(
        [found[0], "--port", "0", "--unixsocket", path, "--dir", directory,
         "--save", "", "--appendonly", "no", *config],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        client = redis.Redis(unix_socket_path=path)
        while True:
            try:
                client.ping()
                break
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield f"unix://{path}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ silence
def test_every_id_the_code_uses_is_documented_at_the_top_of_checks_py():
    import inspect

    import jobqueue.backends.redis
    import jobqueue.checks

    used = set()
    for module in (jobqueue.checks, jobqueue.backends.redis):
        used |= set(re.findall(r'id="(jobqueue\.[EW]\d{3})"', inspect.getsource(module)))
    assert used == DOCUMENTED
    doc = jobqueue.checks.__doc__ or ""
    for check_id in DOCUMENTED - {"jobqueue.E001"}:
        assert re.search(rf"^{check_id.split('.')[1]}\s", doc, re.MULTILINE), check_id
    assert "``jobqueue.E001``" in doc


def test_a_correct_configuration_is_silent(jq):
    assert _jobqueue_messages() == []


def test_a_correct_configuration_with_every_feature_is_silent(jq, settings):
    _jobqueue(settings,
              RESQUE_CLASSES={"Archive": "tests.testapp.tasks.archive"},
              TASK_MODULES=["tests.testapp.pool_hooks"],
              SETUP=["tests.testapp.pool_hooks.record_setup"],
              POOL={"critical": 1, "default,mail": {"count": 2, "backend": "default"}},
              SCHEDULE={"tick": {"task": "tests.testapp.tasks.add", "every": 60,
                                 "args": [1, 2]}})
    _options(settings, RESULT_TTL=60, MAX_ATTEMPTS=3, BACKOFF=1, TIMEOUT=30)
    assert _jobqueue_messages() == []


def test_manage_py_check_passes_for_a_correct_configuration(jq):
    out = StringIO()
    call_command("check", stdout=out, stderr=StringIO())
    assert "no issues" in out.getvalue()


# ------------------------------------------------------------------ E001: backend OPTIONS
@pytest.mark.parametrize(("options", "fragment"), [
    ({"RESULTS_TTL": 5}, "has unknown option(s) RESULTS_TTL"),
    ({"CACHE": "default"}, "give URL or CACHE, not both"),
    ({"URL": "http://127.0.0.1:6379/0"}, "is not a Redis URL"),
    ({"NAMESPACE": "has space"}, "['NAMESPACE'] must be a non-empty string"),
    ({"RESULT_TTL": 0}, "['RESULT_TTL'] must be a positive number of seconds"),
    ({"MAX_ATTEMPTS": 0}, "max_attempts must be a whole number >= 1"),
])
def test_e001_reports_invalid_backend_options(jq, settings, options, fragment):
    _options(settings, **options)
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E001"
    assert message.startswith("TASKS['default']['OPTIONS']")
    assert fragment in message


def test_e001_reports_a_cache_alias_that_is_not_in_caches(jq, settings):
    tasks_setting = dict(settings.TASKS)
    tasks_setting["default"] = {**tasks_setting["default"],
                                "OPTIONS": {"CACHE": "nope", "NAMESPACE": jq.namespace}}
    settings.TASKS = tasks_setting
    assert _jobqueue_messages() == [(
        "jobqueue.E001",
        "TASKS['default']['OPTIONS']['CACHE'] names cache 'nope', which is not in CACHES")]


def test_e001_fails_manage_py_check(jq, settings):
    _options(settings, RESULTS_TTL=5)
    with pytest.raises(SystemCheckError, match=r"jobqueue\.E001.*RESULTS_TTL"):
        call_command("check", stdout=StringIO(), stderr=StringIO())


# ------------------------------------------------------------------ E002..E006: JOBQUEUE
def test_e002_reports_an_unknown_jobqueue_key(jq, settings):
    _jobqueue(settings, WORKERS=3)
    assert _jobqueue_messages() == [("jobqueue.E002", "JOBQUEUE has unknown keys: WORKERS")]


@pytest.mark.parametrize(("entries", "fragment"), [
    ({"INTERVAL": "soon"}, "JOBQUEUE['INTERVAL'] must be a number"),
    ({"HEARTBEAT_INTERVAL": 0}, "JOBQUEUE['HEARTBEAT_INTERVAL'] must be a number >= 0.1"),
    ({"TASK_MODULES": "myapp.jobs"}, "JOBQUEUE['TASK_MODULES'] must be a list of dotted paths"),
    ({"RESQUE_CLASSES": {"Archive": 3}}, "JOBQUEUE['RESQUE_CLASSES'] must map"),
    ({"SCHEDULE": {"x": {"task": "tests.testapp.tasks.add"}}}, "JOBQUEUE['SCHEDULE']"),
])
def test_e002_reports_a_jobqueue_value_of_the_wrong_type(jq, settings, entries, fragment):
    _jobqueue(settings, **entries)
    messages = _jobqueue_messages()
    assert [i for i, _ in messages] == ["jobqueue.E002"]
    assert fragment in messages[0][1]


def test_e003_reports_a_resque_class_mapped_to_something_that_is_not_a_task(jq, settings):
    _jobqueue(settings, RESQUE_CLASSES={"Archive": "tests.testapp.tasks.archive",
                                        "Flaky": "tests.testapp.tasks._flaky"})
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E003"
    assert "JOBQUEUE['RESQUE_CLASSES']['Flaky'] = 'tests.testapp.tasks._flaky'" in message


def test_e004_reports_a_task_module_that_cannot_be_imported(jq, settings):
    _jobqueue(settings, TASK_MODULES=["tests.testapp.no_such_module"])
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E004"
    assert "tests.testapp.no_such_module" in message


def test_e004_reports_the_module_of_a_resque_class_that_cannot_be_imported(jq, settings):
    _jobqueue(settings, RESQUE_CLASSES={"Ghost": "tests.testapp.ghosts.haunt"})
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E004"
    assert "tests.testapp.ghosts" in message


def test_e005_reports_a_schedule_entry_whose_task_is_not_registered(jq, settings):
    _jobqueue(settings, SCHEDULE={"ghost": {"task": "tests.testapp.tasks._flaky", "every": 60}})
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E005"
    assert "JOBQUEUE['SCHEDULE']['ghost']['task'] = 'tests.testapp.tasks._flaky'" in message


def test_e006_reports_a_schedule_entry_on_a_queue_the_backend_does_not_allow(jq, settings):
    tasks_setting = dict(settings.TASKS)
    tasks_setting["default"] = {**tasks_setting["default"], "QUEUES": ["default", "mail"]}
    settings.TASKS = tasks_setting
    _jobqueue(settings, SCHEDULE={
        "ok": {"task": "tests.testapp.tasks.add", "every": 60, "queue": "mail"},
        "wrong": {"task": "tests.testapp.tasks.add", "every": 60, "queue": "reports"},
    })
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E006"
    assert "JOBQUEUE['SCHEDULE']['wrong'] uses queue 'reports'" in message
    assert "(default, mail)" in message


# ------------------------------------------------------------------ E010..E012: POOL and SETUP
def test_e010_reports_an_invalid_pool_entry(jq, settings):
    _jobqueue(settings, POOL={"critical": 2, "default,mail": "three"})
    assert _jobqueue_messages() == [(
        "jobqueue.E010",
        "JOBQUEUE['POOL']['default,mail']: the worker count must be a whole number >= 0, "
        "got 'three'")]


def test_e011_reports_setup_hooks_that_cannot_be_imported_or_called(jq, settings):
    _jobqueue(settings, SETUP=["tests.testapp.pool_hooks.record_setup",
                               "tests.testapp.nope.warm", "jobqueue.conf.DEFAULTS"])
    messages = _jobqueue_messages()
    assert [i for i, _ in messages] == ["jobqueue.E011", "jobqueue.E011"]
    assert "'tests.testapp.nope.warm'" in messages[0][1]
    assert "'jobqueue.conf.DEFAULTS' is not callable" in messages[1][1]


def test_e012_reports_a_pool_entry_on_an_unknown_backend(jq, settings):
    _jobqueue(settings, POOL={"critical": {"count": 1, "backend": "reports"}})
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E012"
    assert "JOBQUEUE['POOL']['critical'] uses backend 'reports'" in message


def test_e012_reports_a_pool_entry_on_a_backend_that_is_not_jobqueue(jq, settings):
    settings.TASKS = {**settings.TASKS,
                      "dummy": {"BACKEND": "jobqueue.testing.DummyBackend", "QUEUES": []}}
    _jobqueue(settings, POOL={"critical": {"count": 1, "backend": "dummy"}})
    [(check_id, message)] = _jobqueue_messages()
    assert check_id == "jobqueue.E012"
    assert "uses backend 'dummy'" in message and "not a jobqueue backend" in message


# ------------------------------------------------------------------ W001, W002: --deploy
def test_w001_reports_an_unreachable_redis_on_deploy_only(jq, settings):
    port = _closed_port()
    _options(settings, URL=f"redis://127.0.0.1:{port}/0")
    assert _ids() == []  # plain ``check`` never connects
    messages = _jobqueue_messages(deploy=True)
    assert [i for i, _ in messages] == ["jobqueue.W001"]
    assert f"Redis for TASKS['default'] (redis://127.0.0.1:{port}/0) is unreachable" in (
        messages[0][1])


def test_w001_is_printed_by_manage_py_check_deploy(jq, settings):
    _options(settings, URL=f"redis://127.0.0.1:{_closed_port()}/0")
    err = StringIO()
    call_command("check", deploy=True, stdout=StringIO(), stderr=err)
    assert "(jobqueue.W001)" in err.getvalue()


def test_w002_reports_a_redis_without_persistence(jq, settings):
    with _private_redis() as url:  # ``--save ""`` and ``--appendonly no``
        _options(settings, URL=url)
        assert _ids() == []
        messages = _jobqueue_messages(deploy=True)
    assert [i for i, _ in messages] == ["jobqueue.W002"]
    assert messages[0][1] == ("Redis for TASKS['default'] has no persistence: queued jobs are "
                              "lost if it restarts")


@pytest.mark.parametrize("config", [("--appendonly", "yes"), ("--save", "900 1")],
                         ids=["aof", "rdb"])
def test_deploy_checks_are_silent_for_a_redis_that_persists(jq, settings, config):
    with _private_redis(*config) as url:
        _options(settings, URL=url)
        assert _ids(deploy=True) == []


def test_deploy_checks_skip_a_backend_whose_options_are_invalid(jq, settings):
    _options(settings, RESULTS_TTL=5, URL=f"redis://127.0.0.1:{_closed_port()}/0")
    assert _ids(deploy=True) == ["jobqueue.E001"]
