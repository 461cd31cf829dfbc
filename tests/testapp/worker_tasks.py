"""Tasks and hook receivers for the worker tests (``tests/test_worker*.py``, ``test_forking``).

The tests start workers with ``tests.settings_pool`` and a JSON file listing this module in
``TASK_MODULES`` and, as ``SETUP`` hooks, the ``connect_*`` functions they need. Receivers
record to the Redis list ``<namespace>:test:hooks`` as ``event:pid:ppid[:extra]``, so a test
can tell in which process each signal was sent. Task records go to ``<namespace>:test:<name>``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from typing import Any

from jobqueue import signals
from jobqueue.broker import get_broker
from jobqueue.compat import task, task_finished, task_started
from tests.testapp.procinfo import served_worker


def _client() -> Any:
    return get_broker().client  # type: ignore[attr-defined]


def _key(*parts: str) -> str:
    return ":".join((get_broker().namespace, *parts))  # type: ignore[attr-defined]


def _push(name: str, record: str) -> None:
    _client().rpush(_key("test", name), record)


def _hook(event: str, *extra: object) -> None:
    """Record ``event:pid:worker:...`` (``worker``: see ``served_worker``)."""
    _push("hooks", ":".join([event, str(os.getpid()), str(served_worker()), *map(str, extra)]))


# --------------------------------------------------------------------------- worker hooks
def connect_hooks() -> None:
    """SETUP hook: record every worker hook signal and where it was sent."""
    signals.before_first_fork.connect(_before_first_fork, dispatch_uid="wt-before-first-fork")
    signals.worker_started.connect(_worker_started, dispatch_uid="wt-worker-started")
    signals.before_fork.connect(_before_fork, dispatch_uid="wt-before-fork")
    signals.after_fork.connect(_after_fork, dispatch_uid="wt-after-fork")
    signals.worker_stopped.connect(_worker_stopped, dispatch_uid="wt-worker-stopped")
    task_started.connect(_task_started, dispatch_uid="wt-task-started")
    task_finished.connect(_task_finished, dispatch_uid="wt-task-finished")


def _registered(worker: Any) -> int:
    return int(_client().sismember(_key("workers"), worker.id))


def _before_first_fork(sender: Any, worker: Any, **kwargs: Any) -> None:
    _hook("before_first_fork", sender.__name__, _registered(worker))


def _worker_started(sender: Any, worker: Any, **kwargs: Any) -> None:
    _hook("worker_started", sender.__name__, _registered(worker))


def _before_fork(sender: Any, worker: Any = None, job: Any = None, **kwargs: Any) -> None:
    if worker is not None:  # the pool sends it too, with worker=None
        _hook("before_fork", sender.__name__, job.args[0])


def _after_fork(sender: Any, worker: Any = None, job: Any = None, **kwargs: Any) -> None:
    if worker is not None:
        _hook("after_fork", sender.__name__, job.args[0])


def _worker_stopped(sender: Any, worker: Any, **kwargs: Any) -> None:
    _hook("worker_stopped", sender.__name__, _registered(worker))


def _task_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _hook("task_started", task_result.args[0] if task_result.args else "")


def _task_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _hook("task_finished", task_result.args[0] if task_result.args else "",
          task_result.status.name if hasattr(task_result.status, "name")
          else task_result.status)


def connect_broken_hooks() -> None:
    """SETUP hook: per-job hook receivers (and Django's task signals) that note the call in
    ``test:hooks`` as ``broken-<name>:pid`` and then raise."""
    for name, signal in (("worker_started", signals.worker_started),
                         ("before_fork", signals.before_fork),
                         ("after_fork", signals.after_fork),
                         ("worker_stopped", signals.worker_stopped),
                         ("task_started", task_started), ("task_finished", task_finished)):
        signal.connect(_broken(name), weak=False, dispatch_uid=f"wt-broken-{name}")


def _broken(name: str) -> Any:
    def receiver(sender: Any, **kwargs: Any) -> None:
        _push("hooks", f"broken-{name}:{os.getpid()}")
        raise RuntimeError(f"receiver for {name} is broken")

    return receiver


def _raise(sender: Any, **kwargs: Any) -> None:
    raise RuntimeError("receiver is broken")


def connect_broken_first_fork() -> None:
    """SETUP hook: a ``before_first_fork`` receiver that raises (the worker must not start)."""
    signals.before_first_fork.connect(_raise, dispatch_uid="wt-broken-first-fork")


def connect_slow_task_started() -> None:
    """SETUP hook: a ``task_started`` receiver that announces itself and then takes 30 s (a
    signal can land while the job's bookkeeping, not the task itself, is running)."""
    task_started.connect(_slow_task_started, dispatch_uid="wt-slow-task-started")


def _slow_task_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _push("receiver", str(os.getpid()))
    time.sleep(30)


# --------------------------------------------------------------------------- database hooks
def use_pg_maintenance_db() -> None:
    """SETUP hook: point the ``pg`` alias at a database that exists (read-only use)."""
    from django.db import connections

    connections["pg"].settings_dict["NAME"] = os.environ.get("JOBQUEUE_TEST_PG_DBNAME",
                                                             "postgres")


def connect_db_hooks() -> None:
    """SETUP hook: open database connections in the worker itself, where tests want them.

    ``before_fork`` opens one in the parent just before a fork (a child must not inherit it;
    ``after_fork`` records what the child found); ``worker_started`` opens one before the
    first job (``--no-fork`` must close it as stale).
    """
    signals.before_fork.connect(_open_db_before_fork, dispatch_uid="wt-db-before-fork")
    signals.after_fork.connect(_db_after_fork, dispatch_uid="wt-db-after-fork")
    signals.worker_started.connect(_open_db_at_start, dispatch_uid="wt-db-worker-started")


def _aliases() -> list[str]:
    return [a for a in os.environ.get("JOBQUEUE_TEST_DB_ALIASES", "default").split(",") if a]


def _open_db(event: str) -> None:
    for alias in _aliases():
        _push("db", json.dumps({"event": event, "pid": os.getpid(), "alias": alias,
                                "backend": _backend_identity(alias)}))


def _open_db_before_fork(sender: Any, worker: Any = None, **kwargs: Any) -> None:
    if worker is not None:
        _open_db("before_fork")


def _db_after_fork(sender: Any, worker: Any = None, **kwargs: Any) -> None:
    """In the child, first thing: did it inherit an open connection object?"""
    from django.db import connections

    if worker is not None:
        for alias in _aliases():
            _push("db", json.dumps({"event": "after_fork", "pid": os.getpid(), "alias": alias,
                                    "inherited_open": connections[alias].connection
                                    is not None}))


def _open_db_at_start(sender: Any, worker: Any, **kwargs: Any) -> None:
    _open_db("worker_started")


def _backend_identity(alias: str) -> Any:
    """Run a query on ``alias``; return the server-side identity of the connection."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@task()
def db_probe(marker: str) -> None:
    """Record, per alias, whether a connection was already open when the job started and the
    server-side identity of the connection the job then uses."""
    from django.db import connections

    for alias in _aliases():
        was_open = connections[alias].connection is not None
        _push("db", json.dumps({"event": "job", "marker": marker, "pid": os.getpid(),
                                "alias": alias, "open_at_start": was_open,
                                "backend": _backend_identity(alias)}))


# --------------------------------------------------------------------------- tasks
@task()
def whoami(marker: str) -> dict[str, Any]:
    """Record and return the pid, parent pid and served worker of the process running the job."""
    record = {"marker": marker, "pid": os.getpid(), "ppid": os.getppid(),
              "worker": served_worker()}
    _push("whoami", json.dumps(record))
    return record


@task()
def nap(seconds: float, marker: str) -> str:
    """``sleepy`` for signal tests: the start is announced *inside* the ``try``, so a
    ``WorkerShutdown`` that lands while the announcement's reply is still being read runs
    the ``finally`` block too (``test:started``, ``test:finally``, ``test:finished``)."""
    client = _client()
    try:
        client.rpush(_key("test", "started"), marker)
        time.sleep(seconds)
    finally:
        client.rpush(_key("test", "finally"), marker)
    client.rpush(_key("test", "finished"), marker)
    return marker


@task()
def wait_release(marker: str, timeout: float = 25.0) -> str:
    """Run until the test pushes to ``test:release:<marker>``; announce like ``nap``."""
    client = _client()
    try:
        client.rpush(_key("test", "started"), marker)
        client.blpop([_key("test", "release", marker)], timeout=timeout)
    finally:
        client.rpush(_key("test", "finally"), marker)
    client.rpush(_key("test", "finished"), marker)
    return marker


@task()
def enqueue_record(marker: str, queue: str) -> None:
    """Enqueue ``tests.testapp.tasks.record(marker)`` onto ``queue`` (a job making a job)."""
    from tests.testapp.tasks import record

    record.using(queue_name=queue).enqueue(marker)


@task()
def garble_report() -> None:
    """Write garbage into the pipe the child reports through, then exit without reporting.

    The report pipe is the only write-only pipe a job child holds besides standard streams.
    """
    import fcntl

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
            write_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
        except OSError:
            continue
        if is_pipe and write_only:
            os.write(fd, b'{"action": "fin')  # truncated JSON
    os._exit(0)


class _SlowToClose(logging.Handler):
    """A log handler whose ``close`` (run by ``logging.shutdown`` as the child exits) hangs."""

    def emit(self, record: logging.LogRecord) -> None:
        pass

    def close(self) -> None:
        time.sleep(120)
        super().close()


@task()
def linger_after_report(marker: str) -> str:
    """Succeed, but leave the child hanging on its way out, after it has reported."""
    logging.getLogger(f"tests.worker_tasks.linger.{marker}").addHandler(_SlowToClose())
    _push("linger", str(os.getpid()))
    return marker


@task()
def lingering_alive() -> list[bool]:
    """Record whether each child noted in ``test:linger`` is still running (not a zombie)."""
    alive = []
    for pid in _client().lrange(_key("test", "linger"), 0, -1):
        try:
            with open(f"/proc/{int(pid)}/stat", encoding="utf-8") as file:
                alive.append(file.read().rpartition(")")[2].split()[0] != "Z")
        except FileNotFoundError:
            alive.append(False)
    _push("alive", json.dumps(alive))
    return alive
