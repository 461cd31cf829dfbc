"""What ``jobqueue.prewarm.models`` buys a pool: per-job time, and memory per worker.

Starts a private ``redis-server`` on a free port and a migrated SQLite database with 200
articles, then runs real ``manage.py pool`` processes (settings:
``benchmarks/prewarm_app/settings.py``) whose fork-per-job task reads an ``Article`` row and
calls ``ContentType.objects.get_for_model`` on it.

1. Per-job time: a pool of one worker works through ``--jobs`` queued jobs, fork per job;
   time from the first job's end to the last one's, divided by the jobs in between, plus the
   median time inside the task. ``SETUP`` off vs ``["jobqueue.prewarm.models"]``, alternated
   for ``--rounds`` rounds; medians.
2. Memory: a pool of ``--workers`` workers runs ``--memory-jobs`` jobs; then each worker's
   ``/proc/<pid>/smaps_rollup`` gives RSS, PSS and USS (Private_Clean + Private_Dirty). No
   prewarm, the prewarm without its gc freeze (``warm_caches`` + ``close_connections``), and
   the full prewarm (with ``freeze_gc``).

    python benchmarks/bench_prewarm.py [--jobs 400] [--rounds 3] [--workers 8]
                                       [--memory-jobs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobqueue.redis_server import RedisServer  # noqa: E402

SETTINGS = "benchmarks.prewarm_app.settings"
CONFIGS = {
    "no prewarm": [],
    "prewarm, no gc freeze": ["jobqueue.prewarm.warm_caches", "jobqueue.prewarm.close_connections"],
    "prewarm (default, with gc freeze)": ["jobqueue.prewarm.models"],
}
ARTICLES = 200


class Bench:
    """The Redis, the database and a way to run pools against them."""

    def __init__(self, redis_url: str, db_path: Path) -> None:
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "BENCH_DB": str(db_path),
                    "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}

    def django(self, *args: str, jobqueue: dict | None = None) -> subprocess.Popen[bytes]:
        env = {**self.env, "BENCH_JOBQUEUE": json.dumps(jobqueue or {})}
        return subprocess.Popen([sys.executable, "-m", "django", *args], cwd=ROOT, env=env,
                                start_new_session=True)

    def prepare(self) -> None:
        code = self.django("migrate", "-v", "0").wait()
        if code:
            sys.exit("migrate failed")
        script = ("from benchmarks.prewarm_app.models import Article;"
                  f"Article.objects.bulk_create(Article(title=f't{{i}}', body='x' * 2000)"
                  f" for i in range({ARTICLES}))")
        if self.django("shell", "-c", script).wait():
            sys.exit("seeding articles failed")

    def setup_django(self) -> None:
        """Configure Django in this process too, to enqueue through the real backend."""
        import django

        os.environ.update(self.env)
        django.setup()

    @staticmethod
    def enqueue(count: int, rows: int = 0) -> None:
        """Queue ``count`` article jobs, or ``build_rows(rows)`` jobs if ``rows``."""
        from benchmarks.prewarm_app.tasks import build_rows, read_article

        for i in range(count):
            if rows:
                build_rows.enqueue(rows)
            else:
                read_article.enqueue(i % ARTICLES + 1)

    def reset(self) -> None:
        self.redis.flushdb()

    def start_pool(self, workers: int, setup: list[str],
                   fork: bool = True) -> subprocess.Popen[bytes]:
        pool = {"bench": {"count": workers, "fork": fork}}
        proc = self.django("pool", "-v", "0", "--appname", "bench",
                           jobqueue={"POOL": pool, "SETUP": setup})
        deadline = time.monotonic() + 60
        while self.redis.scard("bench:workers") < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("pool did not start")
            time.sleep(0.02)
        return proc

    def wait_done(self, count: int, timeout: float = 600.0) -> list[tuple[float, float, int]]:
        """``(ended at, seconds inside the task, job process USS kB)`` of each job, by end."""
        deadline = time.monotonic() + timeout
        while self.redis.llen("bench:bench:done") < count:
            if time.monotonic() > deadline:
                sys.exit(f"only {self.redis.llen('bench:bench:done')} of {count} jobs ran")
            time.sleep(0.05)
        rows = [line.split() for line in self.redis.lrange("bench:bench:done", 0, -1)]
        return sorted((float(at), float(took), int(uss)) for at, took, uss in rows)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def per_job(bench: Bench, setup: list[str], jobs: int) -> tuple[float, float]:
    """One round: (ms per job end to end, median ms inside the task)."""
    bench.reset()
    bench.enqueue(jobs)
    pool = bench.start_pool(1, setup)
    try:
        done = bench.wait_done(jobs)
    finally:
        bench.stop(pool)
    ends = [row[0] for row in done]
    return ((ends[-1] - ends[0]) / (len(ends) - 1) * 1000,
            statistics.median(row[1] for row in done) * 1000)


def smaps(pid: int) -> dict[str, int]:
    """kB figures of ``/proc/<pid>/smaps_rollup``."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as file:
        for line in file:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1])
    return {"rss": values["Rss"], "pss": values["Pss"],
            "uss": values["Private_Clean"] + values["Private_Dirty"]}


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == master and cmdline.startswith(b"resque-"):
            pids.append(int(entry))
    return pids


def memory(bench: Bench, setup: list[str], workers: int, jobs: int,
           fork: bool = True) -> dict[str, float]:
    """Mean kB per worker after ``jobs`` jobs, the job processes' median USS, the master's."""
    bench.reset()
    pool = bench.start_pool(workers, setup, fork)
    try:
        bench.enqueue(jobs)
        done = bench.wait_done(jobs)
        time.sleep(1.0)  # let the last job children exit; workers idle
        figures = [smaps(pid) for pid in worker_pids(pool.pid)]
        master = smaps(pool.pid)
    finally:
        bench.stop(pool)
    result = {k: statistics.mean(f[k] for f in figures) for k in ("rss", "pss", "uss")}
    result.update({f"master_{k}": v for k, v in master.items()}, workers=len(figures),
                  job_uss=statistics.median(row[2] for row in done))
    return result


def per_job_table(bench: Bench, jobs: int, rounds: int) -> None:
    timings: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for name, setup in (("off", []), ("on", ["jobqueue.prewarm.models"])):
            timings[name].append(per_job(bench, setup, jobs))
    print(f"\nPer-job time: fork per job, 1 worker, {jobs} jobs x {rounds} rounds (median of "
          "rounds)")
    print(f"{'SETUP':<36}{'ms/job end to end':>20}{'ms inside task':>18}")
    medians = {}
    for name, label in (("off", "[] (no prewarm)"), ("on", "['jobqueue.prewarm.models']")):
        medians[name] = (statistics.median(t[0] for t in timings[name]),
                         statistics.median(t[1] for t in timings[name]))
        print(f"{label:<36}{medians[name][0]:>20.2f}{medians[name][1]:>18.2f}")
    off, on = medians["off"], medians["on"]
    print(f"prewarm saves {off[0] - on[0]:.2f} ms per job end to end "
          f"({(off[0] - on[0]) / off[0]:.0%}), {off[1] - on[1]:.2f} ms inside the task "
          f"({(off[1] - on[1]) / off[1]:.0%})")


def memory_table(bench: Bench, workers: int, jobs: int, fork: bool) -> None:
    mode = "fork per job" if fork else "no fork ({'fork': False})"
    print(f"\nMemory: pool of {workers} workers, {mode}, after {jobs} jobs (kB; worker "
          "figures are means over workers, from smaps_rollup)")
    job = "job USS" if fork else ""
    print(f"{'SETUP':<36}{'RSS':>8}{'PSS':>8}{'USS':>8}{job:>9}{'master RSS':>12}")
    rows = {}
    for label, setup in CONFIGS.items():
        row = rows[label] = memory(bench, setup, workers, jobs, fork)
        job_uss = f"{row['job_uss']:>9.0f}" if fork else f"{'':>9}"
        print(f"{label:<36}{row['rss']:>8.0f}{row['pss']:>8.0f}{row['uss']:>8.0f}{job_uss}"
              f"{row['master_rss']:>12.0f}")
    cold, no_freeze, frozen = (rows[label] for label in CONFIGS)
    for what in ("uss", "job_uss") if fork else ("uss",):
        name = "worker USS" if what == "uss" else "USS of a running job's process"
        print(f"{name}: prewarm {_change(cold[what], frozen[what])} vs no prewarm; gc freeze "
              f"{_change(no_freeze[what], frozen[what])} vs the prewarm without it")


def _change(before: float, after: float) -> str:
    return f"{after - before:+.0f} kB ({(after - before) / before:+.1%})"


def heavy_table(bench: Bench, jobs: int, rows: int) -> None:
    print(f"\nA heavier job: build_rows({rows}) keeps {rows:,} dicts (a full collection runs "
          f"in the job's process); 1 worker, fork per job, {jobs} jobs (medians)")
    print(f"{'SETUP':<36}{'ms inside task':>16}{'job USS kB':>12}")
    rows_by = {}
    for label, setup in CONFIGS.items():
        bench.reset()
        bench.enqueue(jobs, rows=rows)
        pool = bench.start_pool(1, setup)
        try:
            done = bench.wait_done(jobs)
        finally:
            bench.stop(pool)
        took = statistics.median(row[1] for row in done) * 1000
        uss = statistics.median(row[2] for row in done)
        rows_by[label] = (took, uss)
        print(f"{label:<36}{took:>16.1f}{uss:>12.0f}")
    _, no_freeze, frozen = (rows_by[label] for label in CONFIGS)
    saved = frozen[0] - no_freeze[0]
    print(f"gc freeze: {saved:+.1f} ms ({saved / no_freeze[0]:+.0%}) inside the task and "
          f"{_change(no_freeze[1], frozen[1])} of job USS vs the prewarm without it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--memory-jobs", type=int, default=1000)
    parser.add_argument("--heavy-jobs", type=int, default=40)
    parser.add_argument("--heavy-rows", type=int, default=50_000)
    args = parser.parse_args()
    import django

    print(f"Python {platform.python_version()}, Django {django.get_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(server.url, Path(tmp) / "bench.sqlite3")
        bench.prepare()
        bench.setup_django()
        per_job_table(bench, args.jobs, args.rounds)
        memory_table(bench, args.workers, args.memory_jobs, fork=True)
        memory_table(bench, args.workers, args.memory_jobs, fork=False)
        heavy_table(bench, args.heavy_jobs, args.heavy_rows)


if __name__ == "__main__":
    main()
