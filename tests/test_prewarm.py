"""``JOBQUEUE["SETUP"]`` hooks and the shipped prewarm (``jobqueue.prewarm.models``)."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.urls import clear_url_caches, get_resolver

from jobqueue import prewarm
from jobqueue.exceptions import ConfigurationError
from tests.conftest import ROOT

CALLS: list[str] = []


def hook_a() -> None:
    CALLS.append("a")


def hook_b() -> None:
    CALLS.append("b")


def hook_fails() -> None:
    raise RuntimeError("set-up failed")


@pytest.fixture
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


@pytest.fixture
def unfreeze():
    yield
    gc.unfreeze()


# ------------------------------------------------------------------ run_setup_hooks
def test_setup_hooks_run_in_order(calls, settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE,
                         "SETUP": ["tests.test_prewarm.hook_b", "tests.test_prewarm.hook_a"]}
    assert prewarm.run_setup_hooks() == ["tests.test_prewarm.hook_b", "tests.test_prewarm.hook_a"]
    assert calls == ["b", "a"]
    assert prewarm.run_setup_hooks(["tests.test_prewarm.hook_a"]) == ["tests.test_prewarm.hook_a"]
    assert calls == ["b", "a", "a"]


def test_a_setup_entry_that_does_not_import_is_named(calls):
    nope = re.escape("'tests.test_prewarm.nope' cannot be imported")
    with pytest.raises(ConfigurationError, match=nope):
        prewarm.run_setup_hooks(["tests.test_prewarm.hook_a", "tests.test_prewarm.nope"])
    assert calls == ["a"]
    not_callable = re.escape("'tests.test_prewarm.CALLS' is not callable")
    with pytest.raises(ConfigurationError, match=not_callable):
        prewarm.run_setup_hooks(["tests.test_prewarm.CALLS"])


def test_a_failing_hook_stops_the_caller(calls):
    with pytest.raises(RuntimeError, match="set-up failed"):
        prewarm.run_setup_hooks(["tests.test_prewarm.hook_fails", "tests.test_prewarm.hook_a"])
    assert calls == []


# ------------------------------------------------------------------ the caches
@pytest.mark.django_db
def test_warm_caches_fills_contenttype_cache_without_creating_rows(django_assert_num_queries):
    ContentType.objects.clear_cache()
    ContentType.objects.filter(app_label="auth", model="permission").delete()
    rows = ContentType.objects.count()
    prewarm.warm_caches()
    assert ContentType.objects.count() == rows  # never creates a missing row
    with django_assert_num_queries(0):
        assert ContentType.objects.get_for_model(User).model == "user"
        ContentType.objects.get_for_id(ContentType.objects.get_for_model(User).id)
        ContentType.objects.get_for_models(*[m for m in apps.get_models()
                                             if m._meta.model_name != "permission"])


def test_warm_caches_builds_model_meta_and_url_resolver_caches():
    clear_url_caches()
    for model in apps.get_models(include_auto_created=True):
        model._meta._expire_cache()
    prewarm.warm_caches()
    for model in apps.get_models(include_auto_created=True):
        cached = model._meta.__dict__
        assert {"fields", "related_objects", "_forward_fields_map", "fields_map"} <= set(cached)
    assert "related_manager_cls" in User.__dict__["groups"].__dict__  # forward m2m
    assert "related_manager_cls" in Group.__dict__["user_set"].__dict__  # reverse m2m
    assert get_resolver()._populated


def test_a_database_outage_does_not_stop_the_prewarm(caplog):
    # No django_db mark: pytest-django refuses every query, as a dead database would.
    ContentType.objects.clear_cache()
    with caplog.at_level(logging.WARNING, logger="jobqueue.prewarm"):
        prewarm.warm_caches()
    assert "Prewarm: content types not warmed" in caplog.text


@pytest.mark.django_db(databases=["pg"], transaction=True)
def test_close_connections_leaves_no_open_database_connection():
    # PostgreSQL: Django never closes SQLite's in-memory test database.
    pg = connections["pg"]
    ContentType.objects.using("pg").count()
    assert pg.connection is not None
    prewarm.close_connections()
    assert pg.connection is None


def test_freeze_gc_moves_objects_to_the_permanent_generation(unfreeze):
    gc.unfreeze()
    prewarm.freeze_gc()
    assert gc.get_freeze_count() > 10_000


# ------------------------------------------------------------------ in real processes
@pytest.fixture
def migrated_db(tmp_path_factory):
    """A migrated SQLite file the subprocesses use as their default database."""
    path = tmp_path_factory.mktemp("prewarm") / "db.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "JOBQUEUE_TEST_SQLITE": str(path), "JOBQUEUE_TEST_PG": "0",
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=120)
    return path


def _worker_state(jq, tmp_path, migrated_db, setup: list[str],
                  **jobqueue: Any) -> tuple[int, dict]:
    from tests.testapp.pool_hooks import prewarm_state

    overrides = tmp_path / "jobqueue.json"
    overrides.write_text(json.dumps({"SETUP": setup,
                                     "TASK_MODULES": ["tests.testapp.pool_hooks"], **jobqueue}))
    prewarm_state.enqueue()
    env = {**jq.env, "DJANGO_SETTINGS_MODULE": "tests.settings_pool",
           "JOBQUEUE_TEST_POOL_FILE": str(overrides), "JOBQUEUE_TEST_SQLITE": str(migrated_db),
           "JOBQUEUE_TEST_PG": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "django", "worker", "--burst"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    states = jq.redis.lrange(jq.key("test", "prewarm"), 0, -1)
    assert len(states) == 1, err
    return proc.pid, json.loads(states[0])


def test_worker_runs_setup_hooks_once_before_its_first_fork(jq, tmp_path, migrated_db):
    pid, state = _worker_state(jq, tmp_path, migrated_db,
                               ["tests.testapp.pool_hooks.record_setup",
                                "jobqueue.prewarm.models"])
    assert jq.redis.lrange(jq.key("test", "hooks"), 0, -1) == [f"setup:{pid}"]
    assert state["worker"] == pid and state["pid"] != pid  # the job ran in a forked child
    assert state["content_types"] > 0 and state["frozen"] > 10_000
    assert state["user_fields_cached"] and state["resolver_populated"]


def test_without_the_prewarm_each_job_child_starts_cold(jq, tmp_path, migrated_db):
    # (the immortal heap freezes the collector too, on 3.12+: off here, to see the prewarm's)
    _, state = _worker_state(jq, tmp_path, migrated_db, [], IMMORTAL_HEAP=False)
    assert state["content_types"] == 0, state
    assert state["frozen"] < 1000, state  # what the interpreter freezes itself (3.12: 375)
