"""``jobqueue.conf``: the ``JOBQUEUE`` setting's defaults, validation messages and cache."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from jobqueue.conf import DEFAULTS, JobqueueConfig, build_config, get_config
from jobqueue.exceptions import ConfigurationError


def _error(raw: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        build_config(raw)
    return str(info.value)


# --------------------------------------------------------------------------- defaults
@pytest.mark.parametrize("raw", [None, {}])
def test_defaults_when_unset_or_empty(raw: Any):
    config = build_config(raw)
    assert config.resque_classes == {}
    assert config.task_modules == ()
    assert config.interval == 5.0
    assert config.grace_period == 10.0
    assert config.heartbeat_interval == 5.0
    assert config.setup == ()
    assert config.pool == {}
    assert config.schedule == ()
    assert config.fork_server is True
    assert config.fork_server_idle_timeout == 10.0
    assert config.raw == DEFAULTS


def test_documented_defaults():
    assert DEFAULTS == {"RESQUE_CLASSES": {}, "TASK_MODULES": [], "INTERVAL": 5.0,
                        "GRACE_PERIOD": 10.0, "HEARTBEAT_INTERVAL": 5.0, "SETUP": [],
                        "POOL": {}, "SCHEDULE": {}, "FORK_SERVER": True,
                        "FORK_SERVER_IDLE_TIMEOUT": 10.0, "PREFETCH": 8,
                        "IMMORTAL_HEAP": True, "HUGE_PAGES": True}


@pytest.mark.parametrize("key", ["IMMORTAL_HEAP", "HUGE_PAGES"])
@pytest.mark.parametrize("value", [True, False])
def test_heap_options_are_flags(key: str, value: bool):
    assert getattr(build_config({key: value}), key.lower()) is value


@pytest.mark.parametrize("key", ["IMMORTAL_HEAP", "HUGE_PAGES"])
@pytest.mark.parametrize("value", [1, "no", None])
def test_heap_options_must_be_true_or_false(key: str, value: Any):
    with pytest.raises(ConfigurationError, match=rf"JOBQUEUE\['{key}'\] must be True or False"):
        build_config({key: value})


@pytest.mark.parametrize("value", [True, False])
def test_fork_server_is_a_flag(value: bool):
    assert build_config({"FORK_SERVER": value}).fork_server is value


@pytest.mark.parametrize("value", [1, "yes", None])
def test_fork_server_must_be_true_or_false(value: Any):
    with pytest.raises(ConfigurationError, match=r"JOBQUEUE\['FORK_SERVER'\] must be True or "
                                                 "False"):
        build_config({"FORK_SERVER": value})


@pytest.mark.parametrize("value, read", [(None, None), (0.1, 0.1), (30, 30.0)])
def test_fork_server_idle_timeout_is_seconds_or_none(value: Any, read: float | None):
    assert build_config({"FORK_SERVER_IDLE_TIMEOUT": value}).fork_server_idle_timeout == read


@pytest.mark.parametrize("value", [0, 0.05, -1, "10", True, float("nan"), [1]])
def test_fork_server_idle_timeout_must_be_none_or_at_least_a_tenth(value: Any):
    assert _error({"FORK_SERVER_IDLE_TIMEOUT": value}) == (
        f"JOBQUEUE['FORK_SERVER_IDLE_TIMEOUT'] must be None or a number >= 0.1, got {value!r}")


def test_the_worker_reads_the_idle_timeout_and_none_means_never(settings: Any):
    from jobqueue.worker import Worker

    assert Worker(None, ["default"]).fork_server_idle_timeout == 10.0
    assert Worker(None, ["default"], fork_server_idle_timeout=2).fork_server_idle_timeout == 2
    settings.JOBQUEUE = {"FORK_SERVER_IDLE_TIMEOUT": None}
    assert Worker(None, ["default"]).fork_server_idle_timeout == math.inf
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="fork_server_idle_timeout must be None or"):
            Worker(None, ["default"], fork_server_idle_timeout=bad)


@pytest.mark.parametrize("value", [1, 8, 64])
def test_prefetch_is_a_whole_number(value: int):
    assert build_config({"PREFETCH": value}).prefetch == value


@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True, None])
def test_prefetch_must_be_a_whole_number_of_at_least_one(value: Any):
    with pytest.raises(ConfigurationError, match=r"JOBQUEUE\['PREFETCH'\] must be a whole "
                                                 r"number >= 1"):
        build_config({"PREFETCH": value})


def test_every_key_is_read():
    config = build_config({
        "RESQUE_CLASSES": {"Archive": "shop.tasks.archive"},
        "TASK_MODULES": ["shop.jobs"],
        "INTERVAL": 2,
        "GRACE_PERIOD": 0,
        "HEARTBEAT_INTERVAL": 0.5,
        "SETUP": ("jobqueue.prewarm.models",),
        "POOL": {"critical": 2, "default,mail": 3},
        "SCHEDULE": {"nightly": {"task": "shop.tasks.nightly", "cron": "0 3 * * *"}},
    })
    assert config.resque_classes == {"Archive": "shop.tasks.archive"}
    assert config.task_modules == ("shop.jobs",)
    assert config.interval == 2.0 and isinstance(config.interval, float)
    assert config.grace_period == 0.0
    assert config.heartbeat_interval == 0.5
    assert config.setup == ("jobqueue.prewarm.models",)
    assert config.pool == {"critical": 2, "default,mail": 3}
    assert [(e.name, e.task, e.cron) for e in config.schedule] == [
        ("nightly", "shop.tasks.nightly", "0 3 * * *")]


def test_given_keys_override_defaults_and_the_rest_stay():
    config = build_config({"INTERVAL": 1})
    assert config.interval == 1.0 and config.grace_period == 10.0
    assert config.raw["INTERVAL"] == 1 and config.raw["GRACE_PERIOD"] == 10.0


def test_the_config_does_not_share_the_settings_dicts():
    classes = {"Archive": "shop.tasks.archive"}
    config = build_config({"RESQUE_CLASSES": classes})
    classes["Other"] = "x.y"
    assert config.resque_classes == {"Archive": "shop.tasks.archive"}


def test_numbers_at_their_minimum_are_accepted():
    config = build_config({"INTERVAL": 0.01, "GRACE_PERIOD": 0, "HEARTBEAT_INTERVAL": 0.1})
    assert (config.interval, config.grace_period, config.heartbeat_interval) == (0.01, 0.0, 0.1)


# --------------------------------------------------------------------------- validation
def test_configuration_error_is_improperly_configured():
    assert issubclass(ConfigurationError, ImproperlyConfigured)


@pytest.mark.parametrize("raw", [[], "x", 5])
def test_setting_must_be_a_dict(raw: Any):
    assert _error(raw) == "JOBQUEUE must be a dict"


def test_unknown_keys_are_named_in_order():
    assert _error({"INTERVALS": 1, "GRACE": 2, "INTERVAL": 1}) == (
        "JOBQUEUE has unknown keys: GRACE, INTERVALS")


@pytest.mark.parametrize("classes", [
    ["Archive"], "Archive", {"Archive": 5}, {5: "shop.tasks.archive"}, {"Archive": None},
])
def test_resque_classes_must_map_names_to_paths(classes: Any):
    assert _error({"RESQUE_CLASSES": classes}) == (
        "JOBQUEUE['RESQUE_CLASSES'] must map Resque class names to dotted task paths")


@pytest.mark.parametrize("pool", [["critical"], "critical:2", 2])
def test_pool_must_be_a_dict(pool: Any):
    assert _error({"POOL": pool}) == "JOBQUEUE['POOL'] must map queue lists to worker counts"


@pytest.mark.parametrize("key", ["TASK_MODULES", "SETUP"])
@pytest.mark.parametrize("value", ["shop.jobs", ["shop.jobs", 5], [None], 5, None, {"a": 1}])
def test_path_lists_must_be_lists_of_strings(key: str, value: Any):
    assert _error({key: value}) == f"JOBQUEUE[{key!r}] must be a list of dotted paths"


@pytest.mark.parametrize("key, minimum", [
    ("INTERVAL", 0.01), ("GRACE_PERIOD", 0.0), ("HEARTBEAT_INTERVAL", 0.1),
])
@pytest.mark.parametrize("value", ["5", None, True, False, [1], -1, float("nan")])
def test_numbers_must_be_numbers_at_least_their_minimum(key: str, minimum: float, value: Any):
    assert _error({key: value}) == (
        f"JOBQUEUE[{key!r}] must be a number >= {minimum}, got {value!r}")


@pytest.mark.parametrize("key, below", [
    ("INTERVAL", 0.005), ("GRACE_PERIOD", -0.1), ("HEARTBEAT_INTERVAL", 0.05),
])
def test_numbers_below_their_minimum_are_refused(key: str, below: float):
    assert f"JOBQUEUE[{key!r}] must be a number >= " in _error({key: below})


def test_schedule_errors_come_through_as_configuration_errors():
    assert _error({"SCHEDULE": {"n": {"task": "t.x"}}}) == (
        "JOBQUEUE['SCHEDULE']['n'] needs exactly one of 'cron' or 'every'")
    assert _error({"SCHEDULE": ["x"]}) == "JOBQUEUE['SCHEDULE'] must map names to entries"


def test_config_is_immutable():
    with pytest.raises(AttributeError):
        JobqueueConfig().interval = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- the cache
def test_get_config_reads_settings_jobqueue(settings: Any):
    settings.JOBQUEUE = {"INTERVAL": 2.5}
    assert get_config().interval == 2.5


def test_get_config_is_cached(settings: Any):
    settings.JOBQUEUE = {"INTERVAL": 2.5}
    assert get_config() is get_config()


def test_changing_jobqueue_resets_the_cache(settings: Any):
    settings.JOBQUEUE = {"INTERVAL": 2.5}
    first = get_config()
    settings.JOBQUEUE = {"INTERVAL": 3.5, "GRACE_PERIOD": 1}
    second = get_config()
    assert second is not first
    assert (second.interval, second.grace_period) == (3.5, 1.0)


def test_changing_tasks_resets_the_cache(settings: Any):
    first = get_config()
    settings.TASKS = {**settings.TASKS}
    assert get_config() is not first


def test_other_settings_keep_the_cache(settings: Any):
    first = get_config()
    settings.DEBUG = not settings.DEBUG
    assert get_config() is first


def test_missing_setting_gives_defaults(settings: Any):
    # Deleting a setting sends no ``setting_changed`` (neither on delete nor on restore), so
    # the cache is cleared by hand here and again afterwards for the tests that follow.
    try:
        del settings.JOBQUEUE
        get_config.cache_clear()
        assert get_config() == build_config(None)
    finally:
        get_config.cache_clear()


def test_an_invalid_setting_raises_when_first_used(settings: Any):
    settings.JOBQUEUE = {"INTERVAL": 0}
    with pytest.raises(ConfigurationError, match="INTERVAL"):
        get_config()


def test_the_test_settings_are_read(settings: Any):
    # tests/settings.py: the mapping used by the interop tests, fast heartbeats and polls.
    config = get_config()
    assert config.resque_classes == {"Archive": "tests.testapp.tasks.archive"}
    assert (config.heartbeat_interval, config.interval) == (1.0, 1.0)
