"""Helpers for the tests of ``manage.py worker`` as a real process (``test_worker*.py``).

Workers run with ``tests.settings_pool``: ``JOBQUEUE`` overrides come from a JSON file that
lists ``tests.testapp.worker_tasks`` in ``TASK_MODULES`` and the ``SETUP`` hooks a test wants
(hook receivers that record where each signal was sent). Process facts come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER_TASKS = "tests.testapp.worker_tasks"
POOL_HOOKS = "tests.testapp.pool_hooks"  # for its ``hold`` task (runs until released)
SETTINGS = "tests.settings_pool"
TITLE = "resque-3.0.0: "


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            fields = file.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def exists(pid: int) -> bool:
    """True while ``pid`` is in the process table (zombies included)."""
    return proc_stat(pid) is not None


def cmdline(pid: int) -> str:
    """What ``ps`` shows for ``pid`` (its title once ``setproctitle`` changed it)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...), no zombies."""
    found, frontier = [], [pid]
    while frontier:
        kids = [kid for parent in frontier for kid in children(parent, zombies=False)]
        found += kids
        frontier = kids
    return sorted(found)


def is_fork_server(pid: int) -> bool:
    return "Fork server of" in cmdline(pid)


def job_children(worker_pid: int) -> list[int]:
    """A fork-mode worker's job children: forked by it, or by its fork server."""
    return [pid for pid in descendants(worker_pid) if not is_fork_server(pid)]


def children(pid: int, *, zombies: bool = True) -> list[int]:
    """Processes whose parent is ``pid`` (zombies included unless told otherwise)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = proc_stat(int(entry))
        if info and info[1] == pid and (zombies or info[0] != "Z"):
            found.append(int(entry))
    return sorted(found)


@dataclass
class Workers:
    """Start real workers for one test, with ``worker_tasks`` known and chosen SETUP hooks."""

    jq: Any
    tmp_path: Path
    overrides: Path
    logs: dict[int, Path] = field(default_factory=dict)

    def configure(self, *setup: str, **jobqueue: Any) -> None:
        """Set the SETUP hooks (dotted paths) and other JOBQUEUE keys of later workers."""
        self.overrides.write_text(json.dumps({"TASK_MODULES": [WORKER_TASKS, POOL_HOOKS],
                                              "SETUP": list(setup), **jobqueue}))

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``manage.py worker`` (its own process group); its stderr goes to a file."""
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        with log.open("wb") as file:
            proc = self.jq.spawn_worker("--settings", SETTINGS, *args, stderr=file)
        self.logs[proc.pid] = log
        return proc

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py worker`` to completion (with ``--burst``)."""
        return self.jq.run_worker("--settings", SETTINGS, *args, timeout=timeout)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        path = self.logs.get(proc.pid)
        return path.read_text(errors="replace")[-4000:] if path else ""

    def wait(self, proc: subprocess.Popen[bytes], predicate: Any, timeout: float,
             what: str) -> Any:
        """``jq.wait_for`` that shows the worker's log when it times out."""
        try:
            return self.jq.wait_for(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{self.log(proc)}") from None

    def worker_id(self, proc: subprocess.Popen[bytes], queues: str = "*") -> str:
        return f"{socket.gethostname()}:{proc.pid}:{queues}"

    def wait_title(self, proc: subprocess.Popen[bytes], prefix: str,
                   timeout: float = 30) -> str:
        """Wait until the worker's title starts with ``resque-3.0.0: <prefix>``."""
        return self.wait(proc, lambda: (t := cmdline(proc.pid)).startswith(TITLE + prefix)
                         and t, timeout, f"title {prefix!r} (now {cmdline(proc.pid)!r})")

    def wait_idle(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
        return self.wait_title(proc, "Waiting for", timeout)

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {proc.pid} did not exit within {timeout}s; "
                                 f"log:\n{self.log(proc)}") from None

    def records(self, name: str) -> list[str]:
        """The list ``<ns>:test:<name>`` the tasks and hooks write to."""
        return self.jq.redis.lrange(self.jq.key("test", name), 0, -1)

    def json_records(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.records(name)]

    def release(self, marker: str) -> None:
        """Let the ``hold`` job ``marker`` finish."""
        self.jq.redis.rpush(self.jq.key("test", "release", marker), "go")

    def wait_started(self, proc: subprocess.Popen[bytes], count: int = 1,
                     timeout: float = 30) -> list[str]:
        """Wait until ``count`` jobs announced their start in ``test:started``."""
        return self.wait(proc, lambda: len(s := self.records("started")) >= count and s,
                         timeout, f"{count} job(s) to start")

    @contextlib.contextmanager
    def idle_worker(self, idle_timeout: float | None,
                    *args: str) -> Iterator[subprocess.Popen[bytes]]:
        """A worker of queue ``default`` with this ``FORK_SERVER_IDLE_TIMEOUT``, once idle;
        TERM and a clean exit (status 0) after the block."""
        self.configure(FORK_SERVER_IDLE_TIMEOUT=idle_timeout)
        proc = self.spawn("-q", "default", *args)
        self.wait_idle(proc)
        try:
            yield proc
        finally:
            proc.terminate()
        assert self.wait_exit(proc) == 0

    def job_child(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """The pid of the child running the worker's current job (or the one waiting for a
        job, when that is the only one: a child between jobs, with ``--jobs-per-child``).

        With the fork server a second child is usually waiting for the next job beside the
        one running this job: the running one is the one titled ``Processing``.
        """
        def found() -> list[int]:
            kids = job_children(proc.pid)
            running = [pid for pid in kids if "Processing" in cmdline(pid)]
            return running or (kids if len(kids) == 1 else [])

        kids = self.wait(proc, found, timeout, "a job child")
        assert len(kids) == 1, kids
        return kids[0]


def make_workers(jq: Any, tmp_path: Path, monkeypatch: Any) -> Workers:
    overrides = tmp_path / "jobqueue-overrides.json"
    monkeypatch.setenv("JOBQUEUE_TEST_POOL_FILE", str(overrides))
    workers = Workers(jq, tmp_path, overrides)
    workers.configure()
    return workers


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets ``pid`` holds open (Linux ``/proc``)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with (contextlib.suppress(FileNotFoundError, ProcessLookupError),
              open(f"/proc/{pid}/net/{table}", encoding="ascii") as file):
            next(file)
            for line in file:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def redis_clients_of(client: Any, pid: int) -> list[dict[str, Any]]:
    """The ``CLIENT LIST`` entries of the connections process ``pid`` has to Redis."""
    ports = local_ports(pid)
    return [c for c in client.client_list() if int(c["addr"].rpartition(":")[2]) in ports]


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; return what it returned (JSON), or fail with its error.

    Refuses to fork beside another live thread: the child would inherit its locks held and
    may deadlock. Python 3.12+ warns (an error in this suite); 3.11 says nothing, hence this
    check. A test that leaves a thread behind is the bug.
    """
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    assert not others, f"in_child would fork beside live threads {others}: a test left them"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            try:
                out = {"value": fn()}
            except BaseException as exc:  # reported to the parent
                out = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_fd, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    out = json.loads(b"".join(chunks))
    assert "error" not in out, out["error"]
    return out["value"]
