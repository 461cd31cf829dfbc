"""``TASKS[alias]["OPTIONS"]`` of ``RedisBackend`` (``jobqueue/backends/options.py``).

Every option is validated and every mistake has a message naming the setting and the entry.
``parse_options`` never raises: it records the first problem, which the backend's ``check()``
reports as ``jobqueue.E001`` and which is raised as ``ConfigurationError`` on first use.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest

from jobqueue.backends.options import KNOWN_OPTIONS, BackendOptions, broker_for, parse_options
from jobqueue.backends.redis import RedisBackend
from jobqueue.broker import get_broker
from jobqueue.compat import task_backends
from jobqueue.connection import DEFAULT_REPLY_SPIN, DEFAULT_URL
from jobqueue.exceptions import ConfigurationError
from tests.testapp import tasks

WHERE = "TASKS['default']['OPTIONS']"


def _error(options, alias: str = "default") -> str | None:
    return parse_options(alias, options).error


def _backoff(exc: BaseException, result: object) -> float:
    return 1.0


# ------------------------------------------------------------------ defaults and values
def test_no_options_means_the_documented_defaults():
    config = parse_options("default", {})
    assert config == BackendOptions(url="redis://127.0.0.1:6379/0", namespace="resque",
                                    result_ttl=86400, pending_result_ttl=30 * 86400,
                                    connection_kwargs={}, task_defaults={},
                                    reply_spin=DEFAULT_REPLY_SPIN, error=None)
    assert config.url == DEFAULT_URL
    assert (200e-6 if (os.cpu_count() or 1) > 1 else 0.0) == DEFAULT_REPLY_SPIN


def test_every_documented_option_is_known():
    assert sorted(KNOWN_OPTIONS) == ["BACKOFF", "CACHE", "CONNECTION_KWARGS", "MAX_ATTEMPTS",
                                     "NAMESPACE", "PENDING_RESULT_TTL", "REPLY_SPIN_US",
                                     "RESULT_TTL", "TIMEOUT", "URL"]


def test_given_options_are_used():
    config = parse_options("default", {
        "URL": "redis://cache.internal:6380/3", "NAMESPACE": "shop:jobs", "RESULT_TTL": 60,
        "PENDING_RESULT_TTL": 600, "CONNECTION_KWARGS": {"socket_timeout": 10},
        "MAX_ATTEMPTS": 3, "BACKOFF": timedelta(seconds=5), "TIMEOUT": 30,
    })
    assert config.error is None
    assert config.url == "redis://cache.internal:6380/3"
    assert config.namespace == "shop:jobs"
    assert (config.result_ttl, config.pending_result_ttl) == (60, 600)
    assert config.connection_kwargs == {"socket_timeout": 10}
    assert config.task_defaults == {"max_attempts": 3, "backoff": timedelta(seconds=5),
                                    "timeout": 30}


def test_a_callable_backoff_default_is_accepted():
    assert parse_options("default", {"BACKOFF": _backoff}).task_defaults == {"backoff": _backoff}


def test_task_defaults_that_are_none_are_left_out():
    assert parse_options("default", {"MAX_ATTEMPTS": None, "TIMEOUT": None}).task_defaults == {}


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@host:6380/1",
                                 "unix:///run/redis/redis.sock?db=2"])
def test_redis_rediss_and_unix_urls_are_accepted(url):
    assert parse_options("default", {"URL": url}).url == url


@pytest.mark.parametrize("namespace", ["resque", "shop:jobs", "a:b:c", "with-dash_and.dot"])
def test_valid_namespaces(namespace):
    assert parse_options("default", {"NAMESPACE": namespace}).namespace == namespace


# ------------------------------------------------------------------ every error message
def test_options_that_are_not_a_dict():
    assert _error(["URL"]) == f"{WHERE} must be a dict"


def test_unknown_options_are_named_with_the_known_ones():
    assert _error({"RESULTS_TTL": 5, "URLS": "x"}) == (
        f"{WHERE} has unknown option(s) RESULTS_TTL, URLS; known: BACKOFF, CACHE, "
        "CONNECTION_KWARGS, MAX_ATTEMPTS, NAMESPACE, PENDING_RESULT_TTL, REPLY_SPIN_US, "
        "RESULT_TTL, TIMEOUT, URL")


def test_url_and_cache_together():
    assert _error({"URL": "redis://localhost", "CACHE": "default"}) == (
        f"{WHERE}: give URL or CACHE, not both")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "memcached://x"])
def test_a_url_that_is_not_a_redis_url(url):
    assert _error({"URL": url}) == (
        f"{WHERE}['URL'] = {url!r} is not a Redis URL: use redis://, rediss:// or unix://")


@pytest.mark.parametrize("url", ["", None, 6379, ["redis://localhost"]])
def test_a_url_that_is_not_a_string(url):
    assert _error({"URL": url}) == f"{WHERE}['URL'] must be a Redis URL string, got {url!r}"


@pytest.mark.parametrize("namespace", ["", "has space", "tab\there", "glob*", "what?", "[x]",
                                       "a::b", ":leading", "trailing:", 7, None])
def test_a_bad_namespace(namespace):
    assert _error({"NAMESPACE": namespace}) == (
        f"{WHERE}['NAMESPACE'] must be a non-empty string without spaces or glob characters, "
        f"got {namespace!r}")


@pytest.mark.parametrize("key", ["RESULT_TTL", "PENDING_RESULT_TTL"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "60", True, None])
def test_a_bad_ttl(key, value):
    assert _error({key: value}) == f"{WHERE}[{key!r}] must be a positive number of seconds"


@pytest.mark.parametrize(("options", "message"), [
    ({"MAX_ATTEMPTS": 0}, "max_attempts must be a whole number >= 1, got 0"),
    ({"MAX_ATTEMPTS": True}, "max_attempts must be a whole number >= 1, got True"),
    ({"MAX_ATTEMPTS": 2.5}, "max_attempts must be a whole number >= 1, got 2.5"),
    ({"BACKOFF": -1}, "backoff must be seconds >= 0, a timedelta or a callable"),
    ({"BACKOFF": "fast"}, "backoff must be seconds >= 0, a timedelta or a callable"),
    ({"BACKOFF": timedelta(seconds=-1)}, "backoff must be seconds >= 0, a timedelta or a callable"),
    ({"TIMEOUT": 0}, "timeout must be a number of seconds > 0, got 0"),
    ({"TIMEOUT": "1m"}, "timeout must be a number of seconds > 0, got '1m'"),
])
def test_bad_task_defaults(options, message):
    assert _error(options) == f"{WHERE}: {message}"


def test_the_message_names_the_alias():
    assert _error({"RESULT_TTL": 0}, alias="reports") == (
        "TASKS['reports']['OPTIONS']['RESULT_TTL'] must be a positive number of seconds")


def test_a_bad_option_leaves_the_defaults_and_the_error():
    config = parse_options("default", {"NAMESPACE": "bad space", "RESULT_TTL": 5})
    assert config.error is not None
    assert (config.namespace, config.result_ttl) == ("resque", 86400)


# ------------------------------------------------------------------ where an error surfaces
def test_a_backend_with_bad_options_constructs_and_reports_e001():
    backend = RedisBackend("default", {"QUEUES": [], "OPTIONS": {"RESULT_TTL": "a day"}})
    [message] = backend.check()
    assert message.id == "jobqueue.E001"
    assert message.msg == f"{WHERE}['RESULT_TTL'] must be a positive number of seconds"


def test_a_backend_with_bad_options_raises_configuration_error_on_first_use(jq, settings):
    settings.TASKS = {"default": {"BACKEND": "jobqueue.backends.redis.RedisBackend",
                                  "QUEUES": [], "OPTIONS": {"RESULTS_TTL": 5}}}
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) RESULTS_TTL"):
        tasks.add.enqueue(1, 2)
    with pytest.raises(ConfigurationError, match="RESULTS_TTL"):
        get_broker()


def test_configuration_error_is_improperly_configured():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        broker_for("default", parse_options("default", {"NAMESPACE": ""}))


# ------------------------------------------------------------------ options reach the broker
@pytest.mark.parametrize("value,seconds", [(0, 0.0), (1, 1e-6), (350, 350e-6),
                                           (10_000, 0.01)])
def test_reply_spin_is_taken_in_microseconds(value, seconds):
    config = parse_options("default", {"REPLY_SPIN_US": value})
    assert config.error is None
    assert config.reply_spin == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, 10_001, 2.5, "200", True])
def test_a_bad_reply_spin_names_the_range(value):
    config = parse_options("default", {"REPLY_SPIN_US": value})
    assert config.error == ("TASKS['default']['OPTIONS']['REPLY_SPIN_US'] must be a whole "
                            "number of microseconds from 0 (never spin) to 10,000, got "
                            f"{value!r}")


def test_options_reach_the_broker(jq, settings):
    settings.TASKS = {"default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": jq.url, "NAMESPACE": jq.namespace, "RESULT_TTL": 77,
                    "PENDING_RESULT_TTL": 777, "MAX_ATTEMPTS": 4, "TIMEOUT": 9,
                    "REPLY_SPIN_US": 50}}}
    broker = get_broker()
    assert broker.reply_spin == pytest.approx(50e-6)
    assert broker.namespace == jq.namespace
    assert (broker.result_ttl, broker.pending_result_ttl) == (77, 777)
    assert broker.task_defaults == {"max_attempts": 4, "timeout": 9}
    assert broker.backend_alias == "default"


def test_pending_result_ttl_is_the_lifetime_of_an_unfinished_result(jq, settings):
    settings.TASKS = {"default": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": jq.url, "NAMESPACE": jq.namespace, "PENDING_RESULT_TTL": 321}}}
    result = tasks.add.enqueue(1, 2)
    assert 0 < jq.redis.ttl(jq.key("jobqueue", "result", result.id)) <= 321


# ------------------------------------------------------------------ one broker per alias
def test_one_broker_per_alias_and_process(jq):
    first = get_broker()
    assert get_broker() is first
    assert task_backends["default"].broker is first
    seen = []
    thread = threading.Thread(target=lambda: seen.append(get_broker()))
    thread.start()
    thread.join(10)
    # Django builds one backend per thread; they share the process's broker.
    assert seen == [first]


def test_each_alias_has_its_own_broker(jq, settings):
    settings.TASKS = {**settings.TASKS, "reports": {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
        "OPTIONS": {"URL": jq.url, "NAMESPACE": f"{jq.namespace}:reports"}}}
    default, reports = get_broker("default"), get_broker("reports")
    assert default is not reports
    assert reports.namespace == f"{jq.namespace}:reports"
    assert reports.backend_alias == "reports"


def test_brokers_are_rebuilt_when_tasks_change(jq, settings):
    before = get_broker()
    settings.TASKS = {"default": {**settings.TASKS["default"],
                                  "OPTIONS": {"URL": jq.url, "NAMESPACE": f"{jq.namespace}x"}}}
    after = get_broker()
    assert after is not before
    assert after.namespace == f"{jq.namespace}x"


def test_brokers_are_rebuilt_when_caches_change(jq, settings):
    before = get_broker()
    settings.CACHES = {**settings.CACHES}
    assert get_broker() is not before
