"""``manage.py pool`` as a real process: counts, crashes, signals, reload, pidfile, hooks.

Each test starts a pool master with ``tests.settings_pool`` (``JOBQUEUE`` overrides from a
JSON file the test writes, so HUP can change them) and watches the process table (/proc) and
Redis. Workers run the ``hold`` task of ``tests.testapp.pool_hooks`` when a test needs a job
that is "running" until the test releases it: no timing guesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jobqueue.pool_config import parse_pool
from tests.conftest import ROOT
from tests.test_hugepages import needs_thp
from tests.testapp import tasks
from tests.testapp.pool_hooks import hold
from tests.worker_support import children, descendants, is_fork_server
from tests.worker_support import cmdline as _cmdline
from tests.worker_support import proc_stat as _stat

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
START_TIMEOUT = 60.0
HOOKS = "tests.testapp.pool_hooks"


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _children(pid: int) -> list[int]:
    return children(pid, zombies=False)


@dataclass
class PoolProc:
    """One ``manage.py pool`` process and ways to look at it."""

    jq: Any
    proc: subprocess.Popen[bytes]
    log_path: Path
    settings_path: Path
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def configure(self, **jobqueue: Any) -> None:
        self.settings_path.write_text(json.dumps({"TASK_MODULES": [HOOKS], **jobqueue}))

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def workers(self) -> list[int]:
        """Worker processes of the master (its children with a Resque title)."""
        pids = [p for p in _children(self.pid) if _cmdline(p).startswith("resque-")]
        self.seen.update(pids)
        return pids

    def by_list(self, exclude: set[int] = frozenset()) -> dict[str, int]:
        """Live workers per queue list, as registered in Redis (``host:pid:queues``)."""
        live = set(self.workers()) - exclude
        counts: Counter[str] = Counter()
        for worker_id in self.jq.worker_ids():
            _host, pid, queues = worker_id.split(":", 2)
            if int(pid) in live:
                counts[queues] += 1
        return dict(counts)

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        """Poll ``predicate``; on timeout fail with the pool's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := predicate():
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; pool log:\n"
                             f"{self.log()[-4000:]}")

    def wait_counts(self, expected: dict[str, int], exclude: set[int] = frozenset(),
                    timeout: float = START_TIMEOUT) -> list[int]:
        """Wait until Redis and the process table both show ``expected``; the worker pids."""
        want = {k: v for k, v in expected.items() if v}

        def matches() -> bool:
            pids = set(self.workers()) - exclude
            return self.by_list(exclude) == want and len(pids) == sum(want.values())

        self.wait(matches, timeout, f"workers {want} (have {self.by_list(exclude)})")
        return sorted(set(self.workers()) - exclude)

    def wait_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        self.wait(lambda: text in self.log(), timeout, f"{text!r} in the log")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pool did not exit; log:\n{self.log()[-3000:]}") from None

    def title(self) -> str:
        return _cmdline(self.pid)

    def kill_everything(self) -> None:
        """SIGKILL the master, every worker ever seen and their job children."""
        family = set(self.seen) | set(descendants(self.pid))
        family |= {c for pid in family for c in descendants(pid)}
        for pid in [self.pid, *family]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def start_pool(jq, tmp_path):
    """Start ``manage.py pool`` with a POOL (and other JOBQUEUE keys); wait for its workers."""
    pools: list[PoolProc] = []

    def start(pool: dict[str, Any], *args: str, wait: bool = True,
              **jobqueue: Any) -> PoolProc:
        n = len(pools)
        settings_path = tmp_path / f"pool-settings-{n}.json"
        log_path = tmp_path / f"pool-{n}.log"
        env = {**jq.env, "DJANGO_SETTINGS_MODULE": "tests.settings_pool",
               "JOBQUEUE_TEST_POOL_FILE": str(settings_path)}
        settings_path.write_text(json.dumps({"TASK_MODULES": [HOOKS], "POOL": pool,
                                             **jobqueue}))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "pool", "--appname", "jqtest", *args],
                cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        pool_proc = PoolProc(jq, proc, log_path, settings_path)
        pools.append(pool_proc)
        if wait:
            pool_proc.wait_counts({s.key: s.count for s in parse_pool(pool).specs})
        return pool_proc

    yield start
    for pool_proc in pools:
        pool_proc.kill_everything()


def _list(jq, name: str) -> list[str]:
    return jq.redis.lrange(jq.key("test", name), 0, -1)


def _release(jq, marker: str) -> None:
    jq.redis.rpush(jq.key("test", "release", marker), "go")


def _holder(pool: PoolProc, jq, marker: str) -> int:
    entry = pool.wait(lambda: [e for e in _list(jq, "started") if e.startswith(f"{marker}:")],
                        START_TIMEOUT, f"job {marker} to start")
    return int(entry[0].split(":")[1])


def _worker_of(child: int) -> int:
    """The worker a job child works for: its parent, or the parent of its fork server."""
    parent = _stat(child)[1]
    return _stat(parent)[1] if is_fork_server(parent) else parent


def _records(jq) -> Counter[str]:
    return Counter(e.split(":")[0] for e in _list(jq, "record"))


# ============================================================================ counts
def test_pool_keeps_the_configured_workers_per_queue_list(jq, start_pool):
    pool = start_pool({"critical": 2, "default, mail": 1})
    pids = pool.wait_counts({"critical": 2, "default,mail": 1})
    title = f"jobqueue-pool-master[jqtest]: managing [{', '.join(map(str, pids))}]"
    pool.wait(lambda: pool.title() == title, START_TIMEOUT, f"title {title!r}")
    for pid in pids:
        assert _stat(pid)[1] == pool.pid
        info = jq.redis.hgetall(jq.key("jobqueue", "worker", next(
            w for w in jq.worker_ids() if f":{pid}:" in w)))
        assert info["ppid"] == str(pool.pid)
    tasks.record.using(queue_name="critical").enqueue("c")
    tasks.record.using(queue_name="mail").enqueue("m")
    pool.wait(lambda: _records(jq) == {"c": 1, "m": 1}, START_TIMEOUT, "jobs to run")
    pool.send(signal.SIGTERM)
    assert pool.wait_exit() == 0


def test_worker_killed_with_sigkill_is_reaped_and_replaced(jq, start_pool):
    pool = start_pool({"critical": 2, "default,mail": 1})
    before = pool.wait_counts({"critical": 2, "default,mail": 1})
    victim = next(w for w in jq.worker_ids() if w.endswith(":critical")).split(":")[1]
    os.kill(int(victim), signal.SIGKILL)
    pool.wait_log(f"Worker {victim} (critical) was killed by SIGKILL")
    after = pool.wait_counts({"critical": 2, "default,mail": 1})
    assert int(victim) not in after and _stat(int(victim)) is None  # reaped, not a zombie
    assert len(set(after) - set(before)) == 1
    assert "replacing it" in pool.log()


def test_per_worker_options_no_fork_and_recycling_after_max_jobs(jq, start_pool):
    pool = start_pool({"critical": {"count": 1, "fork": False, "max_jobs": 2}})
    for i in range(5):
        tasks.record.using(queue_name="critical").enqueue(f"r{i}")
    pool.wait(lambda: len(_list(jq, "record")) == 5, START_TIMEOUT, "five jobs")
    pids = [int(entry.split(":")[1]) for entry in _list(jq, "record")]
    assert len(set(pids)) == 3  # in the worker itself (no fork); a new one every 2 jobs
    pool.wait_counts({"critical": 1})
    assert "crash" not in pool.log() and "replacing" not in pool.log()


def test_per_worker_jobs_per_child_runs_several_jobs_in_each_forked_child(jq, start_pool):
    pool = start_pool({"critical": {"count": 1, "jobs_per_child": 3}})
    [worker] = pool.wait_counts({"critical": 1})
    for i in range(6):
        tasks.record.using(queue_name="critical").enqueue(f"j{i}")
    pool.wait(lambda: len(_list(jq, "record")) == 6, START_TIMEOUT, "six jobs")
    pids = [int(entry.split(":")[1]) for entry in _list(jq, "record")]
    assert pids == [pids[0]] * 3 + [pids[3]] * 3 and pids[0] != pids[3]
    assert worker not in pids  # forked children, not the worker itself
    [wid] = jq.worker_ids()
    assert jq.redis.hget(jq.key("jobqueue", "worker", wid), "jobs_per_child") == "3"
    pool.send(signal.SIGTERM)
    assert pool.wait_exit() == 0


def test_crash_looping_worker_is_restarted_with_backoff(jq, start_pool):
    started = time.monotonic()
    pool = start_pool({"critical": 1}, wait=False, SETUP=[f"{HOOKS}.crash_on_start"])
    pool.wait_log("crash 4 in a row, restarting in 4 s")
    elapsed = time.monotonic() - started
    log = pool.log()
    assert "crash 2 in a row, restarting in 1 s" in log
    assert "crash 3 in a row, restarting in 2 s" in log
    assert log.count("Spawned worker") <= 5  # not a tight loop: the 5th waits 4 s
    assert elapsed >= 3.0  # 1 s + 2 s of backoff at least
    assert _alive(pool.pid)


# ============================================================================ signals
def test_hup_with_changed_settings_changes_counts_and_loses_no_job(jq, start_pool):
    pool = start_pool({"critical": 2})
    old = set(pool.wait_counts({"critical": 2}))
    hold.using(queue_name="critical").enqueue("long")
    holder_worker = _worker_of(_holder(pool, jq, "long"))
    assert holder_worker in old
    for i in range(5):
        tasks.record.using(queue_name="critical").enqueue(f"a{i}")
    pool.configure(POOL={"critical": 1, "default": 2})
    pool.send(signal.SIGHUP)
    for i in range(5):  # while the master reloads
        tasks.record.using(queue_name="critical").enqueue(f"b{i}")
        tasks.record.enqueue(f"c{i}")
    new = pool.wait_counts({"critical": 1, "default": 2}, exclude=old)
    assert _alive(holder_worker)  # the old worker is still running its job
    assert _alive(pool.pid) and pool.proc.poll() is None  # same master pid
    for i in range(5):
        tasks.record.using(queue_name="critical").enqueue(f"d{i}")
        tasks.record.enqueue(f"e{i}")
    _release(jq, "long")
    pool.wait(lambda: not any(_alive(p) for p in old), START_TIMEOUT, "old workers to exit")
    expected = {f"{p}{i}": 1 for p in "abcde" for i in range(5)}
    pool.wait(lambda: _records(jq) == expected, START_TIMEOUT,
                f"every job once (have {_records(jq)})")
    assert _list(jq, "finished") == ["long"] and len(_list(jq, "started")) == 1
    assert pool.wait_counts({"critical": 1, "default": 2}) == new
    assert "re-executing the pool master with 2 worker(s) draining" in pool.log()


def test_term_during_a_reload_is_not_lost(jq, start_pool):
    pool = start_pool({"critical": 2})
    old = pool.wait_counts({"critical": 2})
    pool.send(signal.SIGHUP)
    pool.wait_log("HUP: checking")
    pool.wait(lambda: "re-executing" in pool.log() or "abandoned" in pool.log(),
              START_TIMEOUT, "the re-exec")
    pool.send(signal.SIGTERM)  # lands in the old image, during the exec or in the new one
    assert pool.wait_exit() == 0  # handled, never the default action (-15)
    assert not any(_alive(p) for p in old + pool.workers())
    assert jq.worker_ids() == set()


@pytest.mark.parametrize(("broken", "reason"), [
    ({"POOL": {"critical": "two"}}, "jobqueue.E010"),
    ({"POOL": {"critical": 2}, "SETUP": [f"{HOOKS}.fail_setup"]}, "warming failed"),
])
def test_hup_with_broken_settings_keeps_the_running_pool(jq, start_pool, broken, reason):
    pool = start_pool({"critical": 2})
    pids = pool.wait_counts({"critical": 2})
    pool.configure(**broken)
    pool.send(signal.SIGHUP)
    pool.wait_log("does not load")
    assert reason in pool.log()
    assert pool.wait_counts({"critical": 2}) == pids
    tasks.record.using(queue_name="critical").enqueue("still")
    pool.wait(lambda: _records(jq) == {"still": 1}, START_TIMEOUT, "the job")


def test_quit_waits_for_the_running_job_then_exits(jq, start_pool):
    pool = start_pool({"critical": 1})
    (worker,) = pool.wait_counts({"critical": 1})
    hold.using(queue_name="critical").enqueue("q")
    _holder(pool, jq, "q")
    pool.send(signal.SIGQUIT)
    pool.wait_log("Pool master got SIGQUIT")
    assert pool.proc.poll() is None and _alive(worker)  # still waiting for the job
    _release(jq, "q")
    assert pool.wait_exit() == 0
    assert _list(jq, "finished") == ["q"]
    assert not _alive(worker) and jq.worker_ids() == set()


def test_term_gives_running_jobs_the_grace_period_and_requeues_them(jq, start_pool):
    pool = start_pool({"critical": 1}, GRACE_PERIOD=1.0)
    (worker,) = pool.wait_counts({"critical": 1})
    hold.using(queue_name="critical").enqueue("t")
    child = _holder(pool, jq, "t")
    pool.send(signal.SIGTERM)
    assert pool.wait_exit() == 0
    assert not _alive(worker) and not _alive(child)
    assert _list(jq, "finally") == ["t"] and _list(jq, "finished") == []
    queued = jq.redis.lrange(jq.key("queue", "critical"), 0, -1)
    assert len(queued) == 1 and json.loads(queued[0])["args"] == ["t"]  # back on its queue
    assert jq.worker_ids() == set()


def test_winch_stops_workers_and_hup_brings_them_back(jq, start_pool):
    pool = start_pool({"critical": 2})
    old = set(pool.wait_counts({"critical": 2}))
    pool.send(signal.SIGWINCH)
    pool.wait(lambda: pool.workers() == [] and jq.worker_ids() == set(), START_TIMEOUT,
                "workers to stop")
    pool.wait(lambda: pool.title() == "jobqueue-pool-master[jqtest]: managing []",
              START_TIMEOUT, "the title to show no workers")
    assert pool.proc.poll() is None
    pool.send(signal.SIGHUP)
    assert not set(pool.wait_counts({"critical": 2})) & old


def test_ttin_and_ttou_add_and_remove_one_worker_per_queue_list(jq, start_pool):
    pool = start_pool({"critical": 1, "low": 2})
    pool.send(signal.SIGTTIN)
    pool.wait_counts({"critical": 2, "low": 3})
    pool.send(signal.SIGTTOU)
    pool.wait_counts({"critical": 1, "low": 2})
    pool.send(signal.SIGTTOU)
    pool.wait_counts({"critical": 0, "low": 1})


def test_usr2_and_cont_are_passed_on_to_workers(jq, start_pool):
    pool = start_pool({"critical": 1})
    (worker,) = pool.wait_counts({"critical": 1})
    pool.send(signal.SIGUSR2)
    pool.wait(lambda: "Paused" in _cmdline(worker), START_TIMEOUT, "the worker to pause")
    tasks.record.using(queue_name="critical").enqueue("p")
    assert jq.redis.llen(jq.key("queue", "critical")) == 1
    pool.send(signal.SIGCONT)
    pool.wait(lambda: _records(jq) == {"p": 1}, START_TIMEOUT, "the job after CONT")


def test_master_killed_with_sigkill_leaves_no_orphans(jq, start_pool):
    pool = start_pool({"critical": 2}, GRACE_PERIOD=1.0)
    workers = pool.wait_counts({"critical": 2})
    hold.using(queue_name="critical").enqueue("orphan")
    child = _holder(pool, jq, "orphan")
    pool.proc.kill()
    pool.proc.wait(10)
    pool.wait(lambda: not any(_alive(p) for p in [*workers, child]), 30.0,
                "workers and their job to exit")
    pool.wait(lambda: jq.worker_ids() == set(), 10.0, "workers to unregister")
    queued = jq.redis.lrange(jq.key("queue", "critical"), 0, -1)
    assert [json.loads(q)["args"] for q in queued] == [["orphan"]]  # requeued, not lost


# ============================================================================ start-up
def test_pidfile_refuses_a_second_master_and_replaces_a_stale_one(jq, start_pool, tmp_path):
    pidfile = tmp_path / "pool.pid"
    first = start_pool({"critical": 1}, "--pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(first.pid)
    second = subprocess.run(
        [sys.executable, "-m", "django", "pool", "--pidfile", str(pidfile)], cwd=ROOT,
        env={**jq.env, "DJANGO_SETTINGS_MODULE": "tests.settings_pool",
             "JOBQUEUE_TEST_POOL_FILE": str(first.settings_path)},
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    assert second.returncode != 0
    assert f"another pool master (pid {first.pid}) holds the pidfile" in second.stderr
    workers = first.wait_counts({"critical": 1})
    first.proc.kill()  # leaves its pid in the file
    first.proc.wait(10)
    assert pidfile.read_text().strip() == str(first.pid)
    first.wait(lambda: not any(_alive(p) for p in workers), 30.0, "orphans to exit")
    third = start_pool({"critical": 1}, "--pidfile", str(pidfile))
    third.wait_log(f"Replacing stale pidfile {pidfile} (pid {first.pid} is gone)")
    assert pidfile.read_text().strip() == str(third.pid)
    third.send(signal.SIGTERM)
    assert third.wait_exit() == 0
    assert not pidfile.exists()


def test_invalid_pool_setting_stops_start_up_with_a_system_check_error(jq, tmp_path):
    settings_path = tmp_path / "bad.json"
    settings_path.write_text(json.dumps({"POOL": {"critical": 2, "default,mail": "three"}}))
    result = subprocess.run(
        [sys.executable, "-m", "django", "pool"], cwd=ROOT,
        env={**jq.env, "DJANGO_SETTINGS_MODULE": "tests.settings_pool",
             "JOBQUEUE_TEST_POOL_FILE": str(settings_path)},
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    assert result.returncode != 0
    assert "(jobqueue.E010) JOBQUEUE['POOL']['default,mail']: the worker count" in result.stderr


def test_resque_pool_yml_with_environment_section(jq, start_pool, tmp_path):
    pytest.importorskip("yaml")
    config = tmp_path / "resque-pool.yml"
    config.write_text('critical: 1\n"default,mail": 1\nproduction:\n  critical: 2\n'
                      'staging:\n  critical: 5\n')
    pool = start_pool({}, "--config", str(config), "-E", "production", wait=False)
    pool.wait_counts({"critical": 2, "default,mail": 1})
    assert f"from {config}" in pool.log()


def test_hooks_run_in_the_master_and_after_fork_in_each_worker(jq, start_pool):
    pool = start_pool({"critical": 2},
                      SETUP=[f"{HOOKS}.connect_receivers", f"{HOOKS}.record_setup"])
    workers = pool.wait_counts({"critical": 2})
    hooks = pool.wait(lambda: (h := jq.redis.lrange(jq.key("test", "hooks"), 0, -1))
                        and sum(e.startswith("after_fork") for e in h) == 2 and h,
                        START_TIMEOUT, "hook records")
    master = str(pool.pid)
    in_master = [e for e in hooks if not e.startswith("after_fork")]  # children interleave
    assert in_master[:4] == [f"setup:{master}", f"pool_started:{master}:Pool",
                             f"before_fork:{master}:critical", f"before_fork:{master}:critical"]
    after = [e.split(":") for e in hooks if e.startswith("after_fork")]
    assert sorted(int(a[1]) for a in after) == workers
    assert {a[2] for a in after} == {master} and {a[3] for a in after} == {"critical"}
    assert len({a[4] for a in after}) == 2  # random is reseeded in each child
    os.kill(workers[0], signal.SIGTERM)
    pool.wait(lambda: any(e.startswith(f"worker_exit:{master}:{workers[0]}:")
                            for e in jq.redis.lrange(jq.key("test", "hooks"), 0, -1)),
                START_TIMEOUT, "worker_exit")
    pool.wait_counts({"critical": 2})


def test_the_master_makes_its_heap_immortal_and_each_worker_walks_only_its_own(jq, start_pool):
    from jobqueue import immortal

    pool = start_pool({"default": 1})
    [worker] = pool.wait_counts({"default": 1})
    handle = tasks.heap_report.enqueue()
    pool.wait(lambda: tasks.heap_report.get_result(handle.id).status == "SUCCESSFUL",
              START_TIMEOUT, "the job")
    assert tasks.heap_report.get_result(handle.id).return_value["immortal"] is immortal.SUPPORTED
    if not immortal.SUPPORTED:
        assert "Immortal heap" not in pool.log()
        return
    pool.wait_log(f"Immortal heap (pid {worker})")
    made = {int(pid): int(n) for pid, n in re.findall(
        r"Immortal heap \(pid (\d+)\): (\d+) objects", pool.log())}
    assert made[pool.pid] > 10_000
    assert made[worker] < made[pool.pid] / 2  # the master's objects are not written again


@needs_thp
def test_the_master_backs_its_heap_with_huge_pages_and_workers_keep_sharing_them(jq, start_pool):
    pool = start_pool({"default": 1})
    [worker] = pool.wait_counts({"default": 1})
    pool.wait_log(f"Huge pages (pid {worker})")
    done = {int(pid): (int(mib), int(shared)) for pid, mib, shared in re.findall(
        r"Huge pages \(pid (\d+)\): (\d+) MiB of heap collapsed \((\d+) ranges shared",
        pool.log())}
    assert done[pool.pid][0] >= 2  # the master's start-up heap
    # The worker finds those ranges shared with the master and leaves them so: collapsing
    # them would give it a copy of its own.
    assert done[worker][1] >= done[pool.pid][0] // 4, done  # (MiB // 2 = ranges; half)
    assert done[worker][0] < done[pool.pid][0], done
