"""``run.py --scale``: jobqueue with a million pending jobs (separate from the main run: slow).

1. ``backend.enqueue_many`` of ``--scale-jobs`` no-op jobs (10,000 per call; it pipelines
   1,000 per round trip): time, and Redis ``used_memory`` growth per pending job (with
   ``MEMORY USAGE`` of the queue list and wake list, and of a sample of result hashes);
2. the admin monitor's pages with those jobs pending plus ``--scale-failed`` failure records,
   rendered through Django's test client as a superuser (``bench_monitor.fill`` adds the
   failures, 40 workers and 3 h of history; ``bench_monitor.pages`` is the page list; the
   added workers and failures are removed before the drain);
3. the drain: ``manage.py pool`` with two ``--no-fork`` workers (``jobqueue_bench.pool_spec``
   and ``measure.drain_live``: the pool starts on an empty queue, the queue is put back, timed
   from the first job's start to the last one's), then every result checked SUCCESSFUL;
4. the same with two fork-per-job workers over ``--scale-fork-jobs`` jobs (a million forks
   would take most of an hour on two cores).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.common import PrivateRedis, Row
from benchmarks.jobqueue_bench import enqueue_noops, pool_spec
from benchmarks.measure import RedisSnapshot, drain_live, process_row

SECTION = "jobqueue"


def _enqueue(client: Any, n: int, out: dict[str, Any]) -> list[str]:
    """The measured bulk enqueue, and what the pending jobs cost Redis."""
    from jobqueue.keys import Keys

    keys = Keys("bench")
    before = RedisSnapshot.take(client)
    started = time.perf_counter()
    ids = enqueue_noops(n)
    seconds = time.perf_counter() - started
    after = RedisSnapshot.take(client)
    sample = random.sample(ids, min(200, len(ids)))
    results = sum(int(client.memory_usage(keys.result(i)) or 0) for i in sample) / len(sample)
    out["enqueue"] = {
        "jobs": n, "seconds": seconds, "rate": n / seconds,
        "used_memory_delta": after.used_memory - before.used_memory,
        "bytes_per_job": (after.used_memory - before.used_memory) / n,
        "queue_list_bytes": int(client.memory_usage(keys.queue("default"), samples=0) or 0),
        "wake_list_bytes": int(client.memory_usage(keys.wake("default"), samples=0) or 0),
        "result_hash_bytes_sampled": results,
        **after.since(before)}
    print(f"[scale] enqueue_many: {n:,} jobs in {seconds:.1f}s ({n / seconds:,.0f}/s), "
          f"{out['enqueue']['bytes_per_job']:.0f} bytes of Redis memory per pending job",
          file=sys.stderr, flush=True)
    return ids


def _monitor(client: Any, pending: int, failed: int, runs: int) -> list[dict[str, Any]]:
    """Render every monitor page ``runs`` times with the jobs pending (bench_monitor's list)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from benchmarks import bench_monitor

    bench_monitor.fill(client, 0, failed)
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    browser = Client()
    browser.force_login(user)
    timings = []
    for label, url in bench_monitor.pages(pending, failed):
        times, size = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            response = browser.get(url)
            times.append((time.perf_counter() - started) * 1e3)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            size = len(response.content)
        timings.append({"page": label, "url": url, "median_ms": statistics.median(times),
                        "worst_ms": max(times), "kib": size / 1024})
    _forget_monitor_fixtures(client)
    return timings


def _forget_monitor_fixtures(client: Any) -> None:
    """Drop the failures and pretend workers ``bench_monitor.fill`` added (a real worker's
    reaper would otherwise settle the pretend workers' jobs during the drain)."""
    from jobqueue.keys import Keys

    keys = Keys("bench")
    pipe = client.pipeline(transaction=False)
    for wid in client.smembers(keys.workers):
        name = wid.decode()
        pipe.delete(keys.worker(name), keys.worker_started(name), keys.worker_info(name))
    pipe.delete(keys.workers, keys.heartbeats, keys.failed)
    pipe.execute()


def run_scale(server: PrivateRedis, env: dict[str, str], tmp: Path,
              args: argparse.Namespace) -> tuple[dict[str, Any], list[Row]]:
    out: dict[str, Any] = {}
    client = server.client()

    def fill(n: int) -> list[str]:
        ids = _enqueue(client, n, out)
        print("[scale] rendering the admin pages ...", file=sys.stderr, flush=True)
        out["monitor"] = _monitor(client, n, args.scale_failed, args.scale_runs)
        print("[scale] draining with manage.py pool, 2 workers, --no-fork ...",
              file=sys.stderr, flush=True)
        return ids

    n = args.scale_jobs
    drained, peak = drain_live(server, env, pool_spec(server, False, fill), n,
                               tmp / "scale-nofork.log")
    rows = [process_row(SECTION, "scale.pool_nofork",
                        f"manage.py pool, 2 workers, no fork, {n:,} jobs", n, drained, peak)]
    if args.scale_fork_jobs:
        m = args.scale_fork_jobs
        print(f"[scale] draining {m:,} with manage.py pool, 2 workers, fork per job ...",
              file=sys.stderr, flush=True)
        drained, peak = drain_live(server, env, pool_spec(server, True), m,
                                   tmp / "scale-fork.log")
        rows.append(process_row(SECTION, "scale.pool_fork",
                                f"manage.py pool, 2 workers, fork per job, {m:,} jobs", m,
                                drained, peak))
    return out, rows


def render(out: dict[str, Any], rows: list[Row]) -> str:
    enqueue = out["enqueue"]
    lines = [
        f"enqueue_many: {enqueue['jobs']:,} jobs in {enqueue['seconds']:.1f} s "
        f"({enqueue['rate']:,.0f} jobs/s, {enqueue['commands'] / enqueue['jobs']:.2f} Redis "
        f"commands/job)",
        f"Redis memory per pending job: {enqueue['bytes_per_job']:,.0f} bytes (used_memory "
        f"+{enqueue['used_memory_delta'] / 2**20:,.0f} MiB; queue list "
        f"{enqueue['queue_list_bytes'] / enqueue['jobs']:,.0f} B/job, wake list "
        f"{enqueue['wake_list_bytes']:,} B in all (bounded), result hash "
        f"~{enqueue['result_hash_bytes_sampled']:,.0f} B)", ""]
    for row in rows:
        extra, metrics = row.extra, row.metrics
        lines.append(f"{row.name}: drained in {extra['seconds']:,.1f} s ({row.value:,.0f} "
                     f"jobs/s; {extra['wall_seconds']:,.1f} s from putting the queue back), "
                     f"CPU {metrics['cpu_us']:,.0f} µs/job, {metrics['cmds']:.2f} cmds/job, "
                     f"peak RSS {metrics.get('peak_rss_mib', 0):,.0f} MiB")
    width = max(len(page["page"]) for page in out["monitor"])
    lines += ["", f"Admin monitor with {enqueue['jobs']:,} pending (ms):",
              f"  {'page':<{width}}  {'median':>8}  {'worst':>8}  {'KiB':>6}"]
    lines += [f"  {p['page']:<{width}}  {p['median_ms']:>8,.1f}  {p['worst_ms']:>8,.1f}  "
              f"{p['kib']:>6,.0f}" for p in out["monitor"]]
    return "\n".join(lines)


def main(server: PrivateRedis, env: dict[str, str], tmp: Path, args: argparse.Namespace,
         pinned: str, load: float) -> int:
    began = time.perf_counter()
    out, rows = run_scale(server, env, tmp, args)
    machine = report.machine_info()
    print(f"\n{machine['cpu_model']}, {machine['cores']} cores, redis-server "
          f"{machine['redis_server']}; {pinned}; load average {load:.2f} at the start; "
          f"{time.perf_counter() - began:.0f}s\n")
    print(render(out, rows))
    path = args.json if args.json.name != "latest.json" else args.json.with_name("scale.json")
    report.write_json(path, {"machine": machine, "pinning": pinned, "scale": out,
                             "results": [row.to_json() for row in rows],
                             "seconds": time.perf_counter() - began})
    print(f"\nwrote {path}")
    return 0
