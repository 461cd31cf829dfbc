"""Throughput, latency, CPU, Redis work and memory of jobqueue against its floors and peers
(RQ, Celery, Dramatiq, Huey), in one run on a private Redis.

    python benchmarks/run.py [--jobs N] [--quick] [--rounds R] [--only NAME,...] [--json PATH]
    python benchmarks/run.py --scale [--scale-jobs 1000000] [--scale-fork-jobs 100000]

(``benchmarks/run`` makes the virtualenv with the peers and runs this.) Prints tables and
writes ``benchmarks/results/latest.json`` (``--scale``: ``scale.json``). ``--only`` takes
sections (floors, rq, celery, dramatiq, huey, jobqueue) and single benchmarks (``--list``).
See ``benchmarks/README.md`` for what each number is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    floors,
    jobqueue_bench,
    peers,
    peers_celery,
    peers_dramatiq,
    peers_huey,
    report,
    scale,
    targets,
)
from benchmarks.common import (  # noqa: E402
    BenchError,
    Plan,
    PrivateRedis,
    Row,
    child_env,
    merge_rounds,
)

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"


@dataclass
class Context:
    server: PrivateRedis
    env: dict[str, str]
    plan: Plan
    tmp: Path


Bench = Callable[[Context], list[Row]]


def _jq(bench: Bench) -> Bench:
    """jobqueue benchmarks enqueue through Django: set it up in this process first."""
    def run(ctx: Context) -> list[Row]:
        jobqueue_bench.setup_django(ctx.env)
        return bench(ctx)
    return run


@dataclass(frozen=True)
class Entry:
    section: str
    name: str
    bench: Bench
    repeat: bool  # a throughput measurement: run in every round, the median is kept


J = jobqueue_bench
#: In running order; the repeated ones run first, round after round, interleaved.
BENCHES: tuple[Entry, ...] = (
    Entry("floors", "redis-floor", lambda c: floors.redis_floor(c.server.client(), c.plan),
          True),
    Entry("floors", "fork-floor", lambda c: floors.fork_floor(c.env, c.plan), True),
    Entry("rq", "rq-enqueue", lambda c: peers.rq_enqueue(c.server, c.plan), True),
    Entry("rq", "rq-work", lambda c: peers.rq_work(c.server, c.env, c.plan), True),
    Entry("rq", "rq-pool", lambda c: peers.rq_pool(c.server, c.env, c.plan, c.tmp), True),
    Entry("celery", "celery-enqueue", lambda c: peers_celery.celery_enqueue(c.server, c.plan),
          True),
    Entry("celery", "celery-work",
          lambda c: peers_celery.celery_work(c.server, c.env, c.plan, c.tmp), True),
    Entry("dramatiq", "dramatiq-enqueue",
          lambda c: peers_dramatiq.dramatiq_enqueue(c.server, c.plan), True),
    Entry("dramatiq", "dramatiq-work",
          lambda c: peers_dramatiq.dramatiq_work(c.server, c.env, c.plan, c.tmp), True),
    Entry("huey", "huey-enqueue", lambda c: peers_huey.huey_enqueue(c.server, c.plan), True),
    Entry("huey", "huey-work", lambda c: peers_huey.huey_work(c.server, c.env, c.plan, c.tmp),
          True),
    Entry("jobqueue", "jq-enqueue", _jq(lambda c: J.jq_enqueue(c.server, c.plan)), True),
    Entry("jobqueue", "jq-work", _jq(lambda c: J.jq_work(c.server, c.env, c.plan)), True),
    Entry("jobqueue", "jq-jobs-per-child",
          _jq(lambda c: J.jq_jobs_per_child(c.server, c.env, c.plan)), True),
    Entry("jobqueue", "jq-pool", _jq(lambda c: J.jq_pool(c.server, c.env, c.plan, c.tmp)),
          True),
    Entry("floors", "latency-floor",
          lambda c: floors.latency_floor(c.server, c.env, c.plan, c.tmp), False),
    Entry("rq", "rq-start", lambda c: peers.rq_start(c.server, c.env, c.plan, c.tmp), False),
    Entry("celery", "celery-start",
          lambda c: peers_celery.celery_start(c.server, c.env, c.plan, c.tmp), False),
    Entry("dramatiq", "dramatiq-start",
          lambda c: peers_dramatiq.dramatiq_start(c.server, c.env, c.plan, c.tmp), False),
    Entry("huey", "huey-start",
          lambda c: peers_huey.huey_start(c.server, c.env, c.plan, c.tmp), False),
    Entry("jobqueue", "jq-start", _jq(lambda c: J.jq_start(c.server, c.env, c.plan, c.tmp)),
          False),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs per worker run (default 2000, --quick 400); the floors "
                             "do 10x as many Redis operations")
    parser.add_argument("--quick", action="store_true", help="smaller run (under ~40 s)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds of the throughput benchmarks, median reported "
                             "(default 3, --quick 1); more rounds for a noisy machine")
    parser.add_argument("--only", default="",
                        help="comma-separated sections or benchmarks (see --list)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--pin", choices=("split", "none"), default="split",
                        help="split (default): redis-server on the last core, this suite and "
                             "its workers on the others; none: let the scheduler place them")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--scale", action="store_true",
                        help="only the scale run: enqueue_many of --scale-jobs, Redis memory "
                             "per pending job, admin pages, drain with a pool (slow)")
    parser.add_argument("--scale-jobs", type=int, default=1_000_000)
    parser.add_argument("--scale-fork-jobs", type=int, default=100_000,
                        help="jobs drained by a fork-per-job pool in --scale (0: skip)")
    parser.add_argument("--scale-failed", type=int, default=100_000,
                        help="failure records added for the admin pages in --scale")
    parser.add_argument("--scale-runs", type=int, default=3,
                        help="renders of each admin page in --scale (median, worst)")
    return parser.parse_args(argv)


def selected(only: str) -> list[Entry]:
    names = {name.strip() for name in only.split(",") if name.strip()}
    known = {e.section for e in BENCHES} | {e.name for e in BENCHES}
    if unknown := names - known:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; "
                 f"known: {', '.join(sorted(known))}")
    return [e for e in BENCHES if not names or e.section in names or e.name in names]


def pin(server: PrivateRedis, mode: str) -> str:
    """Apply ``--pin``; return how the cores were split, for the report.

    Unpinned, a client and Redis land on the same core (a round trip is a context switch) or
    on two (a cross-core wakeup, several times slower here) at random from one run to the
    next; the split keeps every round trip in one regime, like a Redis on another host.
    """
    cores = sorted(os.sched_getaffinity(0))
    if mode == "none" or len(cores) < 2:
        return "not pinned"
    server.pin({cores[-1]})
    os.sched_setaffinity(0, set(cores[:-1]))  # inherited by every child and worker
    suite = ",".join(map(str, cores[:-1]))
    return f"redis-server on core {cores[-1]}, suite on core(s) {suite}"


def run_one(ctx: Context, entry: Entry, errors: dict[str, str], label: str) -> list[Row]:
    """Run one benchmark on an empty Redis; on failure record the error and return no rows."""
    started = time.perf_counter()
    print(f"[bench] {label} ...", file=sys.stderr, flush=True)
    rows: list[Row] = []
    try:
        ctx.server.flush()
        rows = entry.bench(ctx)
    except (BenchError, ImportError) as exc:
        errors[entry.name] = str(exc)
        print(f"[bench] {entry.name} failed: {exc}", file=sys.stderr)
    except Exception as exc:  # keep the other numbers; show what broke
        errors[entry.name] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    print(f"[bench] {label} took {time.perf_counter() - started:.1f}s", file=sys.stderr,
          flush=True)
    return rows


def run_all(ctx: Context, entries: list[Entry]) -> tuple[list[Row], dict[str, str]]:
    """Throughput benchmarks in ``plan.rounds`` interleaved rounds (medians), then the rest."""
    errors: dict[str, str] = {}
    runs: list[list[Row]] = []
    rounds = ctx.plan.rounds
    for index in range(rounds):
        for entry in entries:
            if entry.repeat and entry.name not in errors:
                label = entry.name if rounds == 1 else f"{entry.name} (round {index + 1}/{rounds})"
                runs.append(run_one(ctx, entry, errors, label))
    rows = merge_rounds(runs)
    for entry in entries:
        if not entry.repeat:
            rows += run_one(ctx, entry, errors, entry.name)
    return rows, errors


def titles() -> dict[str, str]:
    return {"Floors": "Floors",
            "jobqueue": f"jobqueue {jobqueue_bench.jobqueue_version()}",
            "RQ": f"RQ {peers.rq_version()}",
            "Celery": f"Celery {peers_celery.celery_version()} (Redis broker)",
            "Dramatiq": f"Dramatiq {peers_dramatiq.dramatiq_version()} (Redis broker)",
            "Huey": f"Huey {peers_huey.huey_version()} (RedisHuey)"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for entry in BENCHES:
            print(f"{entry.section:10} {entry.name}")
        return 0
    benches = selected(args.only)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"[bench] warning: load average {load:.2f} before the run: other processes "
              "share the CPU and will lower and scatter the numbers", file=sys.stderr)
    plan = Plan.make(args.jobs, args.quick, args.rounds)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as tmp, PrivateRedis() as server:
        pinned = pin(server, args.pin)
        ctx = Context(server, child_env(server.url, Path(tmp)), plan, Path(tmp))
        os.environ["BENCH_REDIS_URL"] = server.url  # the peers' task modules read it
        if args.scale:
            jobqueue_bench.setup_django(ctx.env)
            return scale.main(ctx.server, ctx.env, ctx.tmp, args, pinned, load)
        rows, errors = run_all(ctx, benches)
    print_report(args, plan, pinned, load, rows, errors, time.perf_counter() - began)
    return 1 if errors else 0


def print_report(args: argparse.Namespace, plan: Plan, pinned: str, load: float,
                 rows: list[Row], errors: dict[str, str], seconds: float) -> None:
    report.add_ratios(rows)
    checked = targets.check_targets(rows)
    machine = report.machine_info()
    print(f"\n{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
          f"Django {machine['django']}, redis-server {machine['redis_server']}\n"
          f"N = {plan.jobs} jobs per run (rq.Worker rows {plan.rq_fork_jobs}), "
          f"{plan.rounds} round(s), median; {pinned}; {seconds:.0f}s\n")
    print(report.render_table(rows, checked, titles()))
    if load > 0.5:
        print(f"\nnote: load average was {load:.2f} when the run began (other processes).")
    for line in report.notes(rows):
        print(f"note: {line}")
    for name, message in errors.items():
        print(f"\nERROR in {name}: {message}")
    report.write_json(args.json, {
        "machine": machine, "plan": asdict(plan), "quick": args.quick, "pinning": pinned,
        "only": args.only, "seconds": seconds, "results": [row.to_json() for row in rows],
        "targets": checked, "notes": report.notes(rows), "errors": errors})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
