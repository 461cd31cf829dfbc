"""Chaos test: a pool works through jobs while we ``kill -9`` its processes and restart Redis.

Every job is ``tests.testapp.tasks.chaos_record(n)``, which RPUSHes ``n`` to a Redis list. A
real ``manage.py pool`` (master, forked workers, a forked child per job) runs against a private
``redis-server`` with AOF. While it works, this script SIGKILLs job children, workers and the
master at random (starting a new master after each master kill, as a supervisor would) and
restarts Redis. Afterwards every number must have been recorded at least once; duplicates
are counted and reported (at-least-once delivery allows them).

Full version (the issue's numbers)::

    python benchmarks/chaos.py                     # 4 workers, 5,000 jobs, 50 kills, 2 restarts
    python benchmarks/chaos.py --jobs 300 --kills 8 --restarts 1   # what CI runs
    python benchmarks/chaos.py --no-fork           # --no-fork workers: prefetch, refills

Exit status 0 when no job was lost. ``tests/test_chaos.py`` runs the small version.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "default"
KINDS = ("child", "worker", "master")


@dataclass
class ChaosConfig:
    """How much work and how much violence."""

    jobs: int = 5000
    kills: int = 50
    restarts: int = 2
    workers: int = 4
    job_seconds: float = 0.03
    kill_interval: tuple[float, float] = (0.5, 1.5)
    weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # child, worker, master
    grace_period: float = 2.0
    drain_timeout: float = 300.0
    seed: int | None = None
    #: ``--no-fork`` workers (prefetch 8 and its refills): no job children to kill, so the
    #: child kills go to workers.
    no_fork: bool = False


@dataclass
class ChaosReport:
    """What happened, for the table and the assertions."""

    jobs: int
    recorded: int = 0  # distinct ids recorded
    executions: int = 0  # list entries, duplicates included
    missing: list[int] = field(default_factory=list)
    duplicates: int = 0  # executions beyond the first
    duplicated_ids: int = 0
    failed_records: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    seconds: float = 0.0
    left_over: dict[str, int] = field(default_factory=dict)
    #: Seconds the settle waited (None: it timed out with work still queued or in flight).
    settled_after: float | None = None
    #: What was left over, item by item (delayed items with their due time and result).
    left_over_detail: str = ""
    log: str = ""

    @property
    def lost(self) -> bool:
        """True when some id was never recorded."""
        return bool(self.missing)

    def table(self) -> str:
        """The report as an aligned two-column table."""
        rows = [
            ("jobs enqueued", self.jobs),
            ("ids recorded (distinct)", self.recorded),
            ("missing ids", len(self.missing)),
            ("executions (with duplicates)", self.executions),
            ("duplicate executions", self.duplicates),
            ("ids run more than once", self.duplicated_ids),
            ("failed-list records", self.failed_records),
            *((f"kill -9 {kind}", self.kills.get(kind, 0)) for kind in KINDS),
            ("kills that found no target", self.kills.get("none", 0)),
            ("Redis restarts (AOF)", self.restarts),
            ("wall time (s)", f"{self.seconds:.1f}"),
            ("settled after (s)", "timed out" if self.settled_after is None
             else f"{self.settled_after:.1f}"),
            ("jobs per second", f"{self.jobs / self.seconds:.1f}" if self.seconds else "-"),
            *((f"left in {name}", count) for name, count in self.left_over.items()),
        ]
        width = max(len(str(name)) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# --------------------------------------------------------------------------- processes
def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                after = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if after[0] != b"Z":  # zombies are already dead
            found[int(entry)] = int(after[1])
    return found


def _children(parents: set[int], ppids: dict[int, int]) -> list[int]:
    return sorted(pid for pid, ppid in ppids.items() if ppid in parents)


def _is_ours(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read()
    except OSError:
        return False


class Pool:
    """The pool master under test: start, kill, restart; remember every pid it had."""

    def __init__(self, env: dict[str, str], log: Path, marker: bytes,
                 recorded: Callable[[], int] = lambda: 0) -> None:
        self.env = env
        self.recorded = recorded
        self.log = log
        self.marker = marker
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "django", "pool"], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.seen.add(self.proc.pid)

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        pids = _children({self.proc.pid}, _ppids())
        self.seen.update(pids)
        return pids

    def job_children(self) -> list[int]:
        ppids = _ppids()
        workers = set(_children({self.proc.pid}, ppids)) if self.proc else set()
        pids = _children(workers, ppids)
        self.seen.update(workers, pids)
        return pids

    def kill_master(self) -> None:
        assert self.proc is not None
        self.workers()  # remember them: they outlive the master for the grace period
        self.proc.kill()
        self.proc.wait(30)
        self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """TERM the master (workers put running jobs back), then kill whatever is left."""
        if self.proc is not None and self.proc.poll() is None:
            self.workers()
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        for pid in sorted(self.seen):
            if _is_ours(pid, self.marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- the run
def _plan(config: ChaosConfig, rng: random.Random) -> list[str]:
    """The kinds of the kills in random order, in proportion to the weights (each at least
    once when there are enough kills)."""
    weights = config.weights
    if config.no_fork:  # no job children: their share goes to the workers
        weights = (0.0, weights[0] + weights[1], weights[2])
    total = sum(weights)
    counts = [0 if w == 0 else max(round(config.kills * w / total),
                                   1 if config.kills >= len(KINDS) else 0)
              for w in weights]
    while sum(counts) > config.kills:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < config.kills:
        counts[counts.index(max(counts))] += 1
    kinds = [kind for kind, count in zip(KINDS, counts, strict=True) for _ in range(count)]
    rng.shuffle(kinds)
    return kinds


def _restart_points(config: ChaosConfig) -> set[int]:
    """After which kills Redis restarts: spread evenly through the run."""
    return {round(config.kills * (i + 1) / (config.restarts + 1))
            for i in range(config.restarts)}


def _kill_one(pool: Pool, kind: str, rng: random.Random, timeout: float = 10.0) -> str | None:
    """SIGKILL one process of ``kind`` (waiting briefly for one to exist); the kind killed."""
    if kind == "master":
        pool.kill_master()
        return kind
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = pool.job_children() if kind == "child" else pool.workers()
        if pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(pids), signal.SIGKILL)
                return kind
        time.sleep(0.01)
    return None


def _recorded(client: Any, key: str) -> Counter[int]:
    return Counter(int(x) for x in client.lrange(key, 0, -1))


def _count_or_none(client: Any, key: str) -> Any:
    try:
        return len(set(client.lrange(key, 0, -1)))
    except Exception:  # Redis restarting
        return "?"


def _leftovers(client: Any, namespace: str) -> dict[str, int]:
    def count(pattern: str) -> int:
        return sum(1 for _ in client.scan_iter(match=f"{namespace}:{pattern}", count=1000))

    moving = in_motion(client, namespace)
    return {
        "queue": moving["queue"],
        "delayed buckets": moving["delayed"],
        "prefetched records": moving["prefetched"],
        "in-flight records": moving["in flight"],
        "registered workers": client.scard(f"{namespace}:workers"),
        "timestamps keys": count("timestamps:*"),
        "results not SUCCESSFUL": _unsuccessful(client, namespace),
    }


def _unsuccessful(client: Any, namespace: str) -> int:
    """Results left READY, RUNNING or FAILED (a lost job shows up as RUNNING forever)."""
    keys = list(client.scan_iter(match=f"{namespace}:jobqueue:result:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "status")
    return sum(1 for status in pipe.execute() if status != b"SUCCESSFUL")


def run(config: ChaosConfig, server: Any, namespace: str,
        enqueue: Callable[[int, float], None], workdir: Path,
        progress: Callable[[str], None] = lambda line: None) -> ChaosReport:
    """Run one chaos session against ``server`` (a ``RedisServer`` with AOF) and report."""
    import redis

    rng = random.Random(config.seed)
    client = redis.Redis.from_url(server.url)
    record_key = f"{namespace}:test:chaos"
    report = ChaosReport(jobs=config.jobs)
    pool_file = workdir / "pool.json"
    workers: Any = {"count": config.workers, "fork": False} if config.no_fork else config.workers
    pool_file.write_text(json.dumps({"POOL": {QUEUE: workers},
                                     "GRACE_PERIOD": config.grace_period}))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings_pool",
               JOBQUEUE_TEST_POOL_FILE=str(pool_file), JOBQUEUE_TEST_REDIS_URL=server.url,
               JOBQUEUE_TEST_NAMESPACE=namespace, JOBQUEUE_TEST_PG="0", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pool = Pool(env, workdir / "pool.log", f"JOBQUEUE_TEST_NAMESPACE={namespace}".encode(),
                recorded=lambda: _count_or_none(client, record_key))

    enqueue(config.jobs, config.job_seconds)
    started = time.monotonic()
    pool.start()
    try:
        _violence(config, pool, server, rng, report, progress)
        progress(f"kills done after {time.monotonic() - started:.1f}s; draining")
        deadline = time.monotonic() + config.drain_timeout
        while time.monotonic() < deadline and len(_recorded(client, record_key)) < config.jobs:
            time.sleep(0.2)
        report.seconds = time.monotonic() - started
        # Let retries and reaping settle before the final count (duplicates may still land):
        # a worker that died just before the drain ended is reaped well within 60 s.
        report.settled_after = settle(client, namespace, timeout=60)
    finally:
        pool.stop(timeout=config.grace_period + 20)
        report.log = (workdir / "pool.log").read_text(errors="replace")[-20000:]
    counts = _recorded(client, record_key)
    report.recorded = len(counts)
    report.executions = sum(counts.values())
    report.missing = sorted(set(range(config.jobs)) - set(counts))
    report.duplicates = report.executions - report.recorded
    report.duplicated_ids = sum(1 for c in counts.values() if c > 1)
    report.failed_records = client.llen(f"{namespace}:failed")
    report.left_over = {k: v for k, v in _leftovers(client, namespace).items() if v}
    if report.left_over:
        report.left_over_detail = _leftover_detail(client, namespace)
    client.close()
    return report


def _violence(config: ChaosConfig, pool: Pool, server: Any, rng: random.Random,
              report: ChaosReport, progress: Callable[[str], None]) -> None:
    """Carry out the kill plan, restarting Redis at its points."""
    restarts = _restart_points(config)
    time.sleep(rng.uniform(*config.kill_interval) + 1.0)  # let the pool get going
    for number, kind in enumerate(_plan(config, rng), start=1):
        done = _kill_one(pool, kind, rng) or _kill_one(pool, "worker", rng)
        report.kills[done or "none"] += 1
        progress(f"kill {number}/{config.kills}: {done or 'nothing to kill'} "
                 f"({pool.recorded()} ids recorded so far)")
        if number in restarts:
            server.restart()
            report.restarts += 1
            progress(f"Redis restarted ({report.restarts}/{config.restarts})")
        time.sleep(rng.uniform(*config.kill_interval))


def settle(client: Any, namespace: str, timeout: float) -> float | None:
    """Wait until nothing is queued, delayed, prefetched or in flight; the seconds waited, or
    ``None`` when ``timeout`` passed first.

    The counts are read in one MULTI/EXEC: read one by one, a job moving between them (a
    reaper turning a dead worker's in-flight job into a delayed retry between the delayed
    count and the in-flight scan) would be missed by both and the run called settled.
    """
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if not any(in_motion(client, namespace).values()):
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def in_motion(client: Any, namespace: str) -> dict[str, int]:
    """Jobs queued, delayed, prefetched and in flight, counted atomically."""
    pipe = client.pipeline(transaction=True)
    pipe.llen(f"{namespace}:queue:{QUEUE}")
    pipe.zcard(f"{namespace}:delayed_queue_schedule")
    pipe.keys(f"{namespace}:jobqueue:prefetch:*")
    pipe.keys(f"{namespace}:worker:*")
    queued, delayed, prefetched, workers = pipe.execute()
    return {"queue": queued, "delayed": delayed, "prefetched": len(prefetched),
            "in flight": sum(1 for k in workers if not k.endswith(b":started"))}


def _leftover_detail(client: Any, namespace: str) -> str:
    """Every delayed item (due time against Redis's clock, its result's fields) and every
    result not SUCCESSFUL, for the failure message."""
    now = float(client.time()[0])
    lines = []
    for ts, _ in client.zrange(f"{namespace}:delayed_queue_schedule", 0, -1, withscores=True):
        for item in client.lrange(f"{namespace}:delayed:{ts.decode()}", 0, -1):
            lines.append(f"delayed:{ts.decode()} (due {int(ts) - now:+.0f}s): {item[:300]!r}")
    for key in client.scan_iter(match=f"{namespace}:jobqueue:result:*", count=1000):
        fields = client.hgetall(key)
        if fields.get(b"status") != b"SUCCESSFUL":
            shown = {k.decode(): v[:200] for k, v in fields.items()}
            lines.append(f"{key.decode()}: {shown!r}")
    return "\n".join(lines)


def enqueue_chaos_jobs(count: int, seconds: float) -> None:
    """Enqueue ``chaos_record(0..count-1)`` through the Django backend, 1,000 per round trip."""
    from jobqueue.compat import task_backends
    from tests.testapp.tasks import chaos_record

    backend = task_backends["default"]
    backend.enqueue_many(chaos_record, [((n, seconds), {}) for n in range(count)])


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """Run the full chaos test and print the report table; exit 1 if a job was lost."""
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--restarts", type=int, default=defaults.restarts)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--job-seconds", type=float, default=defaults.job_seconds)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-fork", action="store_true",
                        help="--no-fork workers (prefetch and refills); kills workers and masters")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--log", default=None, help="copy the pool's log to this file")
    args = parser.parse_args(argv)
    config = ChaosConfig(jobs=args.jobs, kills=args.kills, restarts=args.restarts,
                         workers=args.workers, job_seconds=args.job_seconds, seed=args.seed,
                         no_fork=args.no_fork)

    sys.path.insert(0, str(ROOT))
    from jobqueue.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="jobqueue-chaos-") as tmp:
        server = RedisServer(appendonly=True, data_dir=Path(tmp) / "redis")
        server.start()
        namespace = f"chaos{os.getpid()}"
        os.environ.update(JOBQUEUE_TEST_REDIS_URL=server.url, JOBQUEUE_TEST_NAMESPACE=namespace,
                          JOBQUEUE_TEST_PG="0", DJANGO_SETTINGS_MODULE="tests.settings")
        import django

        django.setup()
        say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
        try:
            report = run(config, server, namespace, enqueue_chaos_jobs, Path(tmp), say)
        finally:
            server.stop()
            if args.log:
                with contextlib.suppress(OSError):
                    Path(args.log).write_bytes((Path(tmp) / "pool.log").read_bytes())
    print(report.table())
    if report.missing:
        print(f"LOST: {report.missing[:50]}", file=sys.stderr)
        print(report.log[-5000:], file=sys.stderr)
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
