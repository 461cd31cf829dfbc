"""``jobqueue/connection.py``: Redis URLs, clients shared per process, ``CACHE`` aliases, and a
backend that never connects until its first command.

A unix-socket Redis and a password-protected one are started here as private servers, so the
``unix://`` scheme and the shared cache password are exercised for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import jobqueue
from jobqueue.backends.redis import RedisBackend
from jobqueue.broker import get_broker
from jobqueue.connection import CLIENT_DEFAULTS, get_client, url_from_cache, validate_url
from jobqueue.exceptions import BrokerUnavailable, ConfigurationError
from jobqueue.redis_server import find_redis_server
from tests.redis_support import sent_packets
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
DJANGO_REDIS = "django_redis.cache.RedisCache"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _unix_redis(*config: str) -> Iterator[str]:
    """Run ``redis-server --port 0 --unixsocket <tmp>/r.sock``; yield the socket path."""
    found = find_redis_server()
    if found is None:
        pytest.skip("no redis-server binary")
    directory = tempfile.mkdtemp(prefix="jqconn")  # short: unix socket paths are limited
    path = os.path.join(directory, "r.sock")
    proc = subprocess.Popen(
        [found[0], "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
         "--dir", directory, *config],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not create its unix socket")
            time.sleep(0.02)
        yield path
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def unix_redis() -> Iterator[str]:
    with _unix_redis() as path:
        yield path


@pytest.fixture
def password_redis() -> Iterator[str]:
    with _unix_redis("--requirepass", "s3cret-pw") as path:
        yield path


def _use(settings, alias: str = "default", **options) -> None:
    settings.TASKS = {**settings.TASKS, alias: {
        "BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [], "OPTIONS": options}}




# ------------------------------------------------------------------ URLs
@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example:6380/2",
                                 "unix:///var/run/redis.sock", "unix:///tmp/r.sock?db=3"])
def test_redis_rediss_and_unix_urls_are_valid(url):
    assert validate_url(url, "where") == url


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "localhost:6379", "tcp://h:1", "r.sock"])
def test_other_schemes_are_refused_naming_the_setting(url):
    with pytest.raises(ConfigurationError) as caught:
        validate_url(url, "TASKS['x']['OPTIONS']['URL']")
    assert str(caught.value) == (f"TASKS['x']['OPTIONS']['URL'] = {url!r} is not a Redis URL: "
                                 "use redis://, rediss:// or unix://")


def test_a_rediss_url_makes_a_tls_client_without_connecting():
    client = get_client(f"rediss://127.0.0.1:{_closed_port()}/0")
    assert issubclass(client.connection_pool.connection_class, redis.SSLConnection)


# ------------------------------------------------------------------ clients
def test_one_client_per_url_and_options(jq):
    client = get_client(jq.url)
    assert get_client(jq.url) is client
    assert get_client(jq.url, {}) is client
    assert get_client(jq.url, {"socket_timeout": 7}) is not client
    assert get_client(jq.url, {"socket_timeout": 7}) is get_client(jq.url, {"socket_timeout": 7})


def test_the_broker_uses_the_shared_client(jq):
    assert get_broker().client is get_client(jq.url)


def test_clients_get_the_documented_defaults(jq):
    kwargs = get_client(jq.url).connection_pool.connection_kwargs
    for name, value in CLIENT_DEFAULTS.items():
        if name in ("lib_name", "lib_version") and "driver_info" in kwargs:
            continue  # redis-py 8 spells "send no CLIENT SETINFO" as driver_info=None
        assert kwargs[name] == value, name
    assert kwargs["decode_responses"] is False


def test_connection_kwargs_override_the_defaults(jq, settings):
    _use(settings, URL=jq.url, NAMESPACE=jq.namespace,
         CONNECTION_KWARGS={"socket_timeout": 11, "socket_keepalive": False})
    kwargs = get_broker().client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_keepalive"]) == (11, False)
    assert kwargs["socket_connect_timeout"] == CLIENT_DEFAULTS["socket_connect_timeout"]


def test_a_new_connection_costs_one_round_trip(jq):
    # No HELLO, no CLIENT SETINFO, no health-check PING: a forked job's first command is its
    # only round trip.
    client = get_client(jq.url, {"socket_timeout": 29.5})
    client.connection_pool.disconnect()
    with sent_packets(client) as packets:
        assert client.ping() is True
    assert len(packets) == 1
    assert b"PING" in packets[0]
    assert b"HELLO" not in packets[0] and b"SETINFO" not in packets[0]


# ------------------------------------------------------------------ unix sockets
def test_a_unix_socket_url_really_works(jq, settings, unix_redis):
    _use(settings, URL=f"unix://{unix_redis}", NAMESPACE=jq.namespace)
    result = tasks.add.enqueue(2, 3)
    raw = redis.Redis(unix_socket_path=unix_redis, decode_responses=True)
    [entry] = raw.lrange(f"{jq.namespace}:queue:default", 0, -1)
    assert f'"id":"{result.id}"' in entry
    assert raw.sismember(f"{jq.namespace}:queues", "default")
    assert tasks.add.get_result(result.id).status == "READY"
    # ...and the session's TCP Redis saw nothing of it
    assert jq.redis.llen(jq.key("queue", "default")) == 0


def test_a_unix_socket_url_selects_its_database(jq, settings, unix_redis):
    _use(settings, URL=f"unix://{unix_redis}?db=3", NAMESPACE=jq.namespace)
    tasks.add.enqueue(1, 1)
    assert redis.Redis(unix_socket_path=unix_redis, db=3).llen(
        f"{jq.namespace}:queue:default") == 1
    assert redis.Redis(unix_socket_path=unix_redis, db=0).llen(
        f"{jq.namespace}:queue:default") == 0


# ------------------------------------------------------------------ CACHE
def test_cache_shares_the_location_and_password_of_a_django_redis_cache(jq, settings,
                                                                       password_redis):
    url = f"unix://{password_redis}"
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": DJANGO_REDIS, "LOCATION": url, "OPTIONS": {"PASSWORD": "s3cret-pw"}}}
    _use(settings, CACHE="jobs", NAMESPACE=jq.namespace)
    backend = tasks.add.get_backend()
    assert backend.config.url == url
    assert backend.config.connection_kwargs == {"password": "s3cret-pw"}
    result = tasks.add.enqueue(4, 5)
    raw = redis.Redis(unix_socket_path=password_redis, password="s3cret-pw")
    assert raw.llen(f"{jq.namespace}:queue:default") == 1
    assert tasks.add.get_result(result.id).args == [4, 5]


def test_the_cache_really_is_the_same_redis(jq, settings, password_redis):
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": DJANGO_REDIS, "LOCATION": f"unix://{password_redis}",
        "OPTIONS": {"PASSWORD": "s3cret-pw"}}}
    _use(settings, CACHE="jobs", NAMESPACE=jq.namespace)
    from django.core.cache import caches

    caches["jobs"].set("greeting", "hello")
    client = get_broker().client
    assert any(b"greeting" in key for key in client.keys("*"))


def test_without_the_password_enqueue_says_redis_wants_one_and_writes_nothing(
        jq, settings, password_redis):
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": DJANGO_REDIS, "LOCATION": f"unix://{password_redis}"}}
    _use(settings, CACHE="jobs", NAMESPACE=jq.namespace)
    with pytest.raises(BrokerUnavailable, match="requires a password"):
        tasks.add.enqueue(1, 2)
    # A large command gets a protocol error, or Redis drops the connection while it is sent:
    # either way a BrokerUnavailable, and nothing written.
    with pytest.raises(BrokerUnavailable, match=r"requires a password|Connection reset"):
        tasks.add.enqueue("x" * 100_000)
    assert redis.Redis(unix_socket_path=password_redis, password="s3cret-pw").dbsize() == 0


def test_without_the_password_a_short_command_says_so_too(jq, settings, password_redis):
    # A command of few arguments gets NOAUTH, which redis-py raises as AuthenticationError.
    _use(settings, URL=f"unix://{password_redis}", NAMESPACE=jq.namespace)
    with pytest.raises(BrokerUnavailable, match="requires a password"):
        tasks.add.get_backend().get_result("0" * 32)


def test_with_a_wrong_password_enqueue_raises_broker_unavailable(jq, settings, password_redis):
    _use(settings, URL=f"unix://:wrong@{password_redis}", NAMESPACE=jq.namespace)
    with pytest.raises(BrokerUnavailable, match="password"):
        tasks.add.enqueue(1, 2)


def test_connection_kwargs_win_over_the_cache_password(settings):
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": DJANGO_REDIS, "LOCATION": "redis://cache:6379/1",
        "OPTIONS": {"PASSWORD": "from-cache"}}}
    backend = RedisBackend("default", {"OPTIONS": {
        "CACHE": "jobs", "CONNECTION_KWARGS": {"password": "mine", "db": 2}}})
    assert backend.config.url == "redis://cache:6379/1"
    assert backend.config.connection_kwargs == {"password": "mine", "db": 2}


def test_cache_takes_the_first_location_of_a_list(settings):
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": ["redis://primary:6379/0", "redis://replica:6379/0"]}}
    assert url_from_cache("jobs", "where") == ("redis://primary:6379/0", {})


def test_cache_alias_must_exist(settings):
    with pytest.raises(ConfigurationError) as caught:
        url_from_cache("nope", "TASKS['default']['OPTIONS']['CACHE']")
    assert str(caught.value) == ("TASKS['default']['OPTIONS']['CACHE'] names cache 'nope', "
                                 "which is not in CACHES")


@pytest.mark.parametrize(("cache", "message"), [
    ({"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "snowflake"},
     "CACHES['jobs']['LOCATION'] = 'snowflake' is not a Redis URL: "
     "use redis://, rediss:// or unix://"),
    ({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
     "CACHES['jobs']['LOCATION'] must be a Redis URL string, got None"),
    ({"BACKEND": DJANGO_REDIS, "LOCATION": []},
     "CACHES['jobs']['LOCATION'] must be a Redis URL string, got None"),
])
def test_a_cache_that_is_not_redis_is_refused(settings, cache, message):
    settings.CACHES = {**settings.CACHES, "jobs": cache}
    with pytest.raises(ConfigurationError) as caught:
        url_from_cache("jobs", "where")
    assert str(caught.value) == message


def test_a_cache_option_follows_its_cache_when_caches_change(jq, settings, unix_redis):
    settings.CACHES = {**settings.CACHES, "jobs": {"BACKEND": DJANGO_REDIS, "LOCATION": jq.url}}
    _use(settings, CACHE="jobs", NAMESPACE=jq.namespace)
    tasks.add.enqueue(1, 1)
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    settings.CACHES = {**settings.CACHES, "jobs": {
        "BACKEND": DJANGO_REDIS, "LOCATION": f"unix://{unix_redis}"}}
    tasks.add.enqueue(2, 2)
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert redis.Redis(unix_socket_path=unix_redis).llen(jq.key("queue", "default")) == 1


# ------------------------------------------------------------------ never connect early
def test_building_a_backend_never_connects(settings):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        _use(settings, URL=url, NAMESPACE="jqnever")
        backend = tasks.add.get_backend()
        assert backend.config.url == url
        assert backend.broker.namespace == "jqnever"  # the broker is built, still no socket
        assert list(backend.check()) == []
        backend.validate_task(tasks.add)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_an_unreachable_redis_constructs_and_fails_on_first_command(jq, settings):
    port = _closed_port()
    _use(settings, URL=f"redis://127.0.0.1:{port}/0", NAMESPACE=jq.namespace)
    backend = tasks.add.get_backend()
    assert isinstance(backend, RedisBackend)
    with pytest.raises(BrokerUnavailable) as caught:
        tasks.add.enqueue(1, 2)
    message = str(caught.value)
    assert message.startswith("Redis is unavailable: ")
    assert f"127.0.0.1:{port}" in message
    with pytest.raises(BrokerUnavailable):
        backend.get_result("0" * 32)
    with pytest.raises(BrokerUnavailable):
        jobqueue.enqueue_to("ruby", "Archive", 1)


def _manage(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update({"JOBQUEUE_TEST_REDIS_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings",
                "JOBQUEUE_TEST_NAMESPACE": "jqcheck",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_manage_py_check_passes_and_check_deploy_warns_for_an_unreachable_redis():
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    plain = _manage("check", url=url)
    assert plain.returncode == 0, plain.stderr
    assert "jobqueue" not in plain.stdout + plain.stderr
    deploy = _manage("check", "--deploy", url=url)
    assert deploy.returncode == 0, deploy.stderr
    assert f"(jobqueue.W001) Redis for TASKS['default'] ({url}) is unreachable" in deploy.stderr


def test_a_deferred_connection_collects_the_replies_due_oldest_first(jq):
    """``DeferredConnection``: packets sent now, replies read later, a few or all at once
    (a ``--no-fork`` worker keeps recent packets unread); an error reply takes its place."""
    from jobqueue.connection import DeferredConnection

    deferred = DeferredConnection(jq.redis)
    key = jq.key("test", "deferred")
    conn = jq.redis.connection_pool.get_connection()
    pack = conn.pack_command
    jq.redis.connection_pool.release(conn)
    for n in range(3):
        deferred.send(b"".join(pack("RPUSH", key, n)) + b"".join(pack("LLEN", key)), 2)
    deferred.send(b"".join(pack("INCR", jq.key("test", "deferred"))), 1)  # a list: an error
    assert deferred.outstanding == 7
    assert deferred.collect(3) == [1, 1, 2]
    assert deferred.outstanding == 4
    assert deferred.collect(0) == []
    rest = deferred.collect()
    assert rest[:3] == [2, 3, 3] and isinstance(rest[3], redis.ResponseError)
    assert deferred.outstanding == 0 and deferred.collect(5) == []
    deferred.reset()


# ------------------------------------------------------------------ spinning for a reply
def _kept_lane():
    """The test thread's kept connection of the default broker's lane (its spin counters)."""
    return get_broker()._lane._local.kept


def test_an_enqueue_spins_for_its_reply_and_the_reply_ends_the_spin(jq, settings, unix_redis):
    _use(settings, URL=f"unix://{unix_redis}", NAMESPACE=jq.namespace, REPLY_SPIN_US=10_000)
    first = tasks.add.enqueue(1, 1)  # connects, loads the script
    kept = _kept_lane()
    spins, caught = kept.spins, kept.caught
    results = [tasks.add.enqueue(i, 1) for i in range(30)]
    # Each enqueue and result read spun, and (10 ms is ample on loopback) the reply ended it.
    assert [tasks.add.get_result(r.id).status for r in results] == ["READY"] * 30
    assert kept.spins - spins == 60
    assert kept.caught - caught >= 58
    assert 0 < kept.wait < 0.01
    raw = redis.Redis(unix_socket_path=unix_redis)
    assert raw.llen(f"{jq.namespace}:queue:default") == 31
    assert tasks.add.get_result(first.id).args == [1, 1]


def test_reply_spin_zero_never_spins(jq, settings, unix_redis):
    _use(settings, URL=f"unix://{unix_redis}", NAMESPACE=jq.namespace, REPLY_SPIN_US=0)
    for i in range(10):
        tasks.add.enqueue(i, 1)
    kept = _kept_lane()
    assert (kept.spins, kept.caught, kept.wait) == (0, 0, 0.0)


def test_slow_replies_stop_the_spinning_and_fast_ones_bring_it_back(jq, settings, unix_redis):
    """A Redis whose replies take longer than the budget (here: paused by another client
    with CLIENT PAUSE, as a far-away Redis would be slow) is not spun for; once replies are
    fast again, the spinning resumes."""
    _use(settings, URL=f"unix://{unix_redis}", NAMESPACE=jq.namespace, REPLY_SPIN_US=1_000)
    tasks.add.enqueue(0, 0)
    kept = _kept_lane()
    other = redis.Redis(unix_socket_path=unix_redis)
    slow = []
    for i in range(8):
        other.execute_command("CLIENT", "PAUSE", 20, "ALL")
        started = time.monotonic()
        tasks.add.enqueue(i, 1)
        slow.append(time.monotonic() - started)
    assert min(slow) >= 0.015  # the pause really held each reply back
    spins_when_slow = kept.spins
    assert spins_when_slow < 8  # it gave up spinning after the first slow replies
    assert kept.wait > 0.001
    for i in range(40):
        tasks.add.enqueue(i, 2)
    assert kept.wait < 0.001
    assert kept.spins > spins_when_slow  # fast replies again: spinning again
    assert redis.Redis(unix_socket_path=unix_redis).llen(f"{jq.namespace}:queue:default") == 49


def _packer(client: redis.Redis):
    conn = client.connection_pool.get_connection()
    client.connection_pool.release(conn)
    return lambda *args: b"".join(conn.pack_command(*args))


def test_a_deferred_connection_spins_for_its_first_reply(unix_redis):
    """A ``--no-fork`` worker's stream spins for replies as producers do: once per collect,
    for the first reply due (the rest of a packet's replies are read from the buffer)."""
    from jobqueue.connection import DeferredConnection

    client = redis.Redis(unix_socket_path=unix_redis)
    pack = _packer(client)
    deferred = DeferredConnection(client, spin=0.01)
    for n in range(20):
        deferred.send(pack("RPUSH", "k", n) + pack("LLEN", "k"), 2)
        assert deferred.collect() == [n + 1, n + 1]
    assert deferred.spins == 20 and deferred.caught >= 18
    assert 0 < deferred.wait < 0.01
    never = DeferredConnection(client)  # spin 0 (the default): never spins, never measures
    never.send(pack("PING"), 1)
    assert never.collect() == [b"PONG"] and (never.spins, never.wait) == (0, 0.0)


def test_a_deferred_connection_stops_spinning_for_slow_replies(unix_redis):
    from jobqueue.connection import DeferredConnection

    client = redis.Redis(unix_socket_path=unix_redis)
    pack, other = _packer(client), redis.Redis(unix_socket_path=unix_redis)
    deferred = DeferredConnection(client, spin=0.001)
    for _ in range(8):
        other.execute_command("CLIENT", "PAUSE", 20, "ALL")
        deferred.send(pack("PING"), 1)
        assert deferred.collect() == [b"PONG"]
    assert deferred.spins < 8 and deferred.wait > 0.001
    slow_spins = deferred.spins
    for _ in range(40):
        deferred.send(pack("PING"), 1)
        deferred.collect()
    assert deferred.wait < 0.001 and deferred.spins > slow_spins


def test_the_brokers_stream_spins_as_configured(jq, settings):
    _use(settings, URL=jq.url, NAMESPACE=jq.namespace, REPLY_SPIN_US=300)
    assert get_broker()._async.spin == pytest.approx(300e-6)
    _use(settings, URL=jq.url, NAMESPACE=jq.namespace, REPLY_SPIN_US=0)
    assert get_broker()._async.spin == 0.0
