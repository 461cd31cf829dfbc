"""Measuring a worker: its process tree's CPU and memory (from /proc), Redis commands and CPU
(``INFO``), and the two procedures every peer shares: draining a queue with a live worker tree
and timing its start-up and idle latency.

* **Tree**: the worker process and all its descendants, found through
  ``/proc/<pid>/task/<tid>/children``. CPU is ``utime+stime+cutime+cstime`` summed over it
  (children that exited count through their parent's ``cutime``), memory is the sum of VmRSS
  and of PSS (``/proc/<pid>/smaps_rollup``; shared pages split between the sharers).
* **Redis**: ``INFO commandstats`` calls (commands inside Lua scripts and MULTI count one each)
  and ``used_cpu_user+used_cpu_sys``, before and after; the suite's own commands (``INFO``,
  the driver's RENAME/BLPOP) are taken out.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import (
    ROOT,
    BenchError,
    Plan,
    PrivateRedis,
    Row,
    Spawned,
    child_result,
    idle_latency,
    percentile,
    wait_until,
)

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
START_KEY, END_KEY, WARM_KEY, FIRST_KEY = "bench:t0", "bench:t1", "bench:warm", "bench:first"
STASH_SUFFIX = ":bench-stash"
WARMUPS = 2  # stamp jobs a live worker tree runs before the drain


# --------------------------------------------------------------------------- process tree
def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant."""
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as file:
                    stack.extend(int(child) for child in file.read().split())
        except OSError:  # exited meanwhile
            continue
    return pids


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(value) for value in fields[11:15])  # utime stime cutime cstime


def tree_cpu(root: int) -> float:
    """CPU seconds the tree has used, its reaped children included."""
    return sum(_cpu_ticks(pid) for pid in tree_pids(root)) / TICK


def _memory(pid: int) -> tuple[int, int | None]:
    """(RSS, PSS) of one process in bytes; PSS None where smaps_rollup is unreadable."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as file:
            rss = int(file.read().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0, 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return rss, int(line.split()[1]) * 1024
    except PermissionError:
        return rss, None
    except OSError:  # exited meanwhile
        return 0, 0
    return rss, 0  # a zombie: nothing mapped


@dataclass
class TreeMemory:
    rss: int = 0
    pss: int | None = 0
    procs: int = 0

    def mib(self) -> dict[str, float | None]:
        return {"rss_mib": self.rss / 2**20,
                "pss_mib": None if self.pss is None else self.pss / 2**20, "procs": self.procs}


def tree_memory(root: int) -> TreeMemory:
    total = TreeMemory()
    for pid in tree_pids(root):
        rss, pss = _memory(pid)
        if rss == 0:
            continue
        total.rss += rss
        total.procs += 1
        total.pss = None if pss is None or total.pss is None else total.pss + pss
    return total


class TreeSampler:
    """Samples the tree's memory every ``interval`` seconds in a thread; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root, self.interval = root, interval
        self.peak = TreeMemory()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = tree_memory(self.root)
            self.samples += 1
            self.peak.rss = max(self.peak.rss, now.rss)
            self.peak.procs = max(self.peak.procs, now.procs)
            if now.pss is None or self.peak.pss is None:
                self.peak.pss = None
            else:
                self.peak.pss = max(self.peak.pss, now.pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_child_sampled(module: str, args: Sequence[str], env: dict[str, str],
                      timeout: float = 900) -> tuple[dict[str, Any], TreeMemory]:
    """``common.run_child`` while sampling the child's tree: (its JSON, peak memory)."""
    command = [sys.executable, "-m", module, *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    with TreeSampler(process.pid) as sampler:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise BenchError(f"{module} {' '.join(args)} timed out after {timeout:.0f}s") from exc
    return child_result(command, process.returncode, stdout, stderr), sampler.peak


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (getrusage)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# --------------------------------------------------------------------------- Redis counters
@dataclass
class RedisSnapshot:
    calls: Counter[str]
    cpu: float
    used_memory: int = 0

    @classmethod
    def take(cls, client: redis.Redis) -> RedisSnapshot:
        stats = client.info("commandstats")
        calls = Counter({name.removeprefix("cmdstat_"): int(value["calls"])
                         for name, value in stats.items()})
        info = client.info()
        return cls(calls, float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                   int(info["used_memory"]))

    def since(self, before: RedisSnapshot, driver: Counter[str] | None = None) -> dict[str, Any]:
        """Commands and Redis CPU between two snapshots, less INFO and ``driver``'s calls."""
        delta = self.calls - before.calls
        delta.pop("info", None)
        if driver:
            delta -= driver
        return {"commands": sum(delta.values()), "redis_cpu_seconds": self.cpu - before.cpu,
                "top_commands": dict(delta.most_common(8))}


def measured_in_child(run: Callable[[], int],
                      steady: Callable[[Callable[[], None]], None] | None = None
                      ) -> dict[str, Any]:
    """Run ``run()`` (returns jobs done) in a child; time it, count its CPU and Redis work.

    ``steady(restart)``, if given, makes the worker call ``restart()`` once its start-up is
    over: time, CPU and Redis work then cover its processing alone, as the live drains' do
    (start-up is what the start-up rows measure); ``startup_seconds`` says what was left out.
    """
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    mark: dict[str, Any] = {}

    def restart() -> None:
        mark.update(before=RedisSnapshot.take(client), cpu=own_cpu(),
                    started=time.perf_counter())

    restart()
    called = mark["started"]
    if steady is not None:
        steady(restart)
    processed = run()
    seconds = time.perf_counter() - mark["started"]
    cpu = own_cpu() - mark["cpu"]
    return {"seconds": seconds, "processed": processed, "cpu_seconds": cpu,
            "startup_seconds": mark["started"] - called,
            **RedisSnapshot.take(client).since(mark["before"])}


def per_job(out: dict[str, Any], jobs: int, peak: TreeMemory | None) -> dict[str, Any]:
    """The process table's columns from raw counts."""
    metrics: dict[str, Any] = {
        "cpu_us": out["cpu_seconds"] / jobs * 1e6, "cmds": out["commands"] / jobs,
        "redis_cpu_us": out["redis_cpu_seconds"] / jobs * 1e6}
    if peak is not None:
        metrics.update(peak_rss_mib=peak.rss / 2**20,
                       peak_pss_mib=None if peak.pss is None else peak.pss / 2**20,
                       peak_procs=peak.procs)
    return metrics


def process_row(section: str, key: str, name: str, jobs: int, out: dict[str, Any],
                peak: TreeMemory | None) -> Row:
    rate = jobs / out["seconds"] if out["seconds"] > 0 else float("inf")
    return Row(section, key, name, rate, "jobs/s", group="process",
               metrics=per_job(out, jobs, peak), extra={**out, "jobs": jobs})


def timed_enqueue(client: redis.Redis, enqueue: Callable[[int], object], n: int) -> dict[str, Any]:
    """Time ``enqueue(n)`` in this process: seconds, this process's CPU, Redis commands."""
    before = RedisSnapshot.take(client)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    enqueue(n)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    return {"jobs": n, "seconds": seconds, "client_cpu_seconds": cpu,
            **RedisSnapshot.take(client).since(before)}


def enqueue_row(section: str, key: str, name: str, out: dict[str, Any]) -> Row:
    jobs = out["jobs"]
    return Row(section, key, name, jobs / out["seconds"], "jobs/s", group="enqueue",
               metrics={"cmds": out["commands"] / jobs,
                        "client_cpu_us": out["client_cpu_seconds"] / jobs * 1e6,
                        "redis_cpu_us": out["redis_cpu_seconds"] / jobs * 1e6}, extra=out)


# --------------------------------------------------------------------------- helpers
def pop_stamp(client: redis.Redis, key: str, worker: Spawned, timeout: float,
              calls: Counter[str] | None = None) -> float:
    """BLPOP one ``time.time()`` stamp a job pushed onto ``key``, watching the worker."""
    deadline = time.monotonic() + timeout
    while True:
        if calls is not None:
            calls["blpop"] += 1
        popped = client.blpop([key], timeout=1)
        if popped is not None:
            return float(popped[1])
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"no job pushed {key} within {timeout:.0f}s")


def wait_quiet(root: int, timeout: float = 10.0, ticks: int = 1, streak: int = 3) -> float:
    """Wait until the tree uses at most ``ticks`` CPU ticks per 0.1 s, ``streak`` times in a
    row (it has finished starting up); return the seconds waited."""
    started = time.monotonic()
    last, calm = tree_cpu(root), 0
    while calm < streak and time.monotonic() - started < timeout:
        time.sleep(0.1)
        now = tree_cpu(root)
        calm = calm + 1 if (now - last) * TICK <= ticks else 0
        last = now
    return time.monotonic() - started


def stash(client: redis.Redis, keys: Sequence[str], back: bool = False) -> list[str]:
    """Rename the pending-job keys away (or back), atomically; return the keys moved."""
    pairs = [(key, key + STASH_SUFFIX) for key in keys]
    if back:
        pairs = [(new, old) for old, new in pairs]
    moved = [(old, new) for old, new in pairs if client.exists(old)]
    pipe = client.pipeline(transaction=True)
    for old, new in moved:
        pipe.rename(old, new)
    pipe.execute()
    return [old for old, _ in moved]


# --------------------------------------------------------------------------- live drains
@dataclass
class LiveSpec:
    """How to drain a queue with a long-running worker tree of one library."""

    command: list[str]
    #: Redis keys holding the pending jobs (renamed away while the workers start)
    stash_keys: Sequence[str]
    #: enqueue stamp(START_KEY), n no-ops, stamp(END_KEY); return an "all n done" check
    fill: Callable[[int], Callable[[], bool] | None]
    #: enqueue one stamp job pushing onto the given key
    stamp: Callable[[str], Any]
    warmups: int = WARMUPS
    env: dict[str, str] = field(default_factory=dict)


def drain_live(server: PrivateRedis, env: dict[str, str], spec: LiveSpec, n: int,
               log: Path, timeout: float | None = None) -> tuple[dict[str, Any], TreeMemory]:
    """Fill the queue and rename it away; start the workers and let them settle (warm-up
    jobs, then a quiet tree); rename the queue back and time from the first job to the last
    (stamps the jobs push: ``time.time()`` in the job's code). Returns raw counts and the
    tree's peak memory over the drain."""
    client = server.client()
    server.flush()
    done = spec.fill(n)
    stashed = stash(client, spec.stash_keys)
    worker = Spawned(spec.command, {**env, **spec.env}, log)
    try:
        for _ in range(spec.warmups):
            spec.stamp(WARM_KEY)
        for _ in range(spec.warmups):
            pop_stamp(client, WARM_KEY, worker, 120)
        settle = wait_quiet(worker.pid)
        out, peak = _timed(client, worker, stashed, timeout or max(120.0, n / 20))
        if done is not None:
            began = time.perf_counter()
            out["verify_seconds"] = wait_until(done, 120, "every job's result", poll=0.05,
                                               alive=worker) - began
    finally:
        worker.stop()
    out["settle_seconds"] = settle
    return out, peak


def _timed(client: redis.Redis, worker: Spawned, stashed: Sequence[str],
           timeout: float) -> tuple[dict[str, Any], TreeMemory]:
    driver: Counter[str] = Counter(multi=1, exec=1, rename=len(stashed))
    with TreeSampler(worker.pid) as sampler:
        before, cpu = RedisSnapshot.take(client), tree_cpu(worker.pid)
        began = time.time()
        stash(client, stashed, back=True)
        driver["exists"] += len(stashed)
        first = pop_stamp(client, START_KEY, worker, 60, driver)
        last = pop_stamp(client, END_KEY, worker, timeout, driver)
        cpu = tree_cpu(worker.pid) - cpu
        after = RedisSnapshot.take(client)
        wall = time.time() - began
    out = {"seconds": last - first, "wall_seconds": wall, "wakeup_seconds": first - began,
           "cpu_seconds": cpu, "memory_samples": sampler.samples,
           **after.since(before, driver)}
    return out, sampler.peak


# --------------------------------------------------------------------------- start-up, latency
#: Jobs sent to a parked worker (each after ``FORK_SERVER_IDLE_TIMEOUT`` + 1 s of idling).
PARKED_SAMPLES = 5
#: The ``FORK_SERVER_IDLE_TIMEOUT`` of the benchmark's parked rows (the default is 10 s), and
#: of the fork floor's samples as far apart (an idle VM wakes slower after seconds).
PARKED_AFTER = 3.0


def start_and_latency(server: PrivateRedis, env: dict[str, str], plan: Plan,
                      command: list[str], stamp: Callable[[str], Callable[[], bool]],
                      log: Path, long_idle: int = 0, parked: float = 0.0) -> dict[str, Any]:
    """Time to first job (spawn with one stamp job queued, until its code runs; median of
    ``plan.starts``), the idle tree's memory 0.5 s later, then idle latency samples 5 ms
    apart (and ``long_idle`` more 1.5 s apart, for a worker that polls with a back-off).

    ``parked``: the worker's ``FORK_SERVER_IDLE_TIMEOUT``. Then, ``parked`` + 1 s after the
    last sample, the tree's memory again and ``PARKED_SAMPLES`` samples as far apart: each job
    finds the worker parked (one process) and restarts its fork server.
    """
    client = server.client()
    starts: list[float] = []
    worker: Spawned | None = None
    for _ in range(plan.starts):
        if worker is not None:
            worker.stop()
        server.flush()
        done = stamp(FIRST_KEY)
        began = time.time()
        worker = Spawned(command, env, log)
        try:
            starts.append(pop_stamp(client, FIRST_KEY, worker, 60) - began)
            wait_until(done, 30, "the first job to finish", alive=worker)
        except BaseException:
            worker.stop()
            raise
    assert worker is not None
    try:
        time.sleep(0.5)
        memory = tree_memory(worker.pid)
        latencies = idle_latency(client, plan.samples, stamp, worker)
        slow = idle_latency(client, long_idle, stamp, worker, warmup=0, gap=1.5)
        parked_memory, parked_ms = None, []
        if parked:
            time.sleep(parked + 1.0)
            parked_memory = tree_memory(worker.pid).mib()
            parked_ms = [s * 1e3 for s in idle_latency(
                client, PARKED_SAMPLES, stamp, worker, warmup=0, gap=parked + 1.0)]
    finally:
        worker.stop()
    return {"starts_ms": [s * 1e3 for s in starts], "idle": memory.mib(),
            "latencies_ms": [s * 1e3 for s in latencies],
            "long_idle_ms": [s * 1e3 for s in slow],
            "parked": parked_memory, "parked_ms": parked_ms}


def start_row(section: str, key: str, name: str, out: dict[str, Any]) -> Row:
    latencies = out["latencies_ms"]
    starts = sorted(out["starts_ms"])
    metrics = {"ttfj_ms": starts[len(starts) // 2], "p50_ms": percentile(latencies, 50),
               "p99_ms": percentile(latencies, 99), **out["idle"]}
    if out["long_idle_ms"]:
        metrics["p50_long_idle_ms"] = percentile(out["long_idle_ms"], 50)
    extra = {"starts_ms": out["starts_ms"], "samples": len(latencies),
             "max_ms": max(latencies), "mean_ms": sum(latencies) / len(latencies),
             "long_idle_ms": out["long_idle_ms"]}
    return Row(section, key, name, metrics["ttfj_ms"], "ms", group="start", metrics=metrics,
               extra=extra)


def parked_row(section: str, key: str, name: str, out: dict[str, Any]) -> Row | None:
    """The same worker once its fork server stopped (``start_and_latency(parked=...)``):
    latency of the jobs that found it so, and its memory before them."""
    latencies = out.get("parked_ms")
    if not latencies or not out.get("parked"):
        return None
    metrics = {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
               **out["parked"]}
    return Row(section, key, name, metrics["p50_ms"], "ms", group="start", metrics=metrics,
               extra={"samples": len(latencies), "latencies_ms": latencies})
