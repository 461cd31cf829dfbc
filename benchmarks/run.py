"""Throughput and latency of jobqueue against its floors and RQ, in one run on a private Redis.

    python benchmarks/run.py [--jobs N] [--quick] [--only NAME,...] [--json PATH]

(``benchmarks/run`` makes the virtualenv with the peers and runs this.) Prints a table and
writes ``benchmarks/results/latest.json``. ``--only`` takes sections (floors, rq, jobqueue)
and single benchmarks (see ``--list``). See ``benchmarks/README.md`` for what each number is.
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

from benchmarks import floors, jobqueue_bench, peers, report  # noqa: E402
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


#: In running order; the repeated ones run first, round after round, interleaved.
BENCHES: tuple[Entry, ...] = (
    Entry("floors", "redis-floor", lambda c: floors.redis_floor(c.server.client(), c.plan),
          True),
    Entry("floors", "fork-floor", lambda c: floors.fork_floor(c.env, c.plan), True),
    Entry("rq", "rq-enqueue", lambda c: peers.rq_enqueue(c.server, c.plan), True),
    Entry("rq", "rq-work", lambda c: peers.rq_work(c.server, c.env, c.plan), True),
    Entry("jobqueue", "jq-enqueue",
          _jq(lambda c: jobqueue_bench.jq_enqueue(c.server, c.plan)), True),
    Entry("jobqueue", "jq-work",
          _jq(lambda c: jobqueue_bench.jq_work(c.server, c.env, c.plan)), True),
    Entry("rq", "rq-start", lambda c: peers.rq_start(c.server, c.env, c.plan, c.tmp), False),
    Entry("jobqueue", "jq-start",
          _jq(lambda c: jobqueue_bench.jq_start(c.server, c.env, c.plan, c.tmp)), False),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs per worker run (default 2000, --quick 400); the floors "
                             "do 10x as many Redis operations")
    parser.add_argument("--quick", action="store_true", help="smaller run (under ~40 s)")
    parser.add_argument("--only", default="",
                        help="comma-separated sections or benchmarks (see --list)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--pin", choices=("split", "none"), default="split",
                        help="split (default): redis-server on the last core, this suite and "
                             "its workers on the others; none: let the scheduler place them")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
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
    plan = Plan.make(args.jobs, args.quick)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as tmp, PrivateRedis() as server:
        pinned = pin(server, args.pin)
        ctx = Context(server, child_env(server.url, Path(tmp)), plan, Path(tmp))
        rows, errors = run_all(ctx, benches)
    report.add_ratios(rows)
    targets = report.check_targets(rows)
    titles = {"Floors": "Floors (bare redis-py, bare fork)",
              "RQ": f"RQ {peers.rq_version()} (peer)",
              "jobqueue": f"jobqueue {jobqueue_bench.jobqueue_version()}"}
    machine = report.machine_info()
    seconds = time.perf_counter() - began
    print(f"\n{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
          f"Django {machine['django']}, redis-server {machine['redis_server']}\n"
          f"{plan.jobs} jobs per worker run, {plan.rounds} round(s), median; {pinned}; "
          f"{seconds:.0f}s\n")
    print(report.render_table(rows, targets, titles))
    if load > 0.5:
        print(f"note: load average was {load:.2f} when the run began (other processes).")
    for line in report.notes(rows):
        print(f"note: {line}")
    for name, message in errors.items():
        print(f"\nERROR in {name}: {message}")
    report.write_json(args.json, {
        "machine": machine, "plan": asdict(plan), "quick": args.quick, "pinning": pinned,
        "only": args.only, "seconds": seconds, "results": [row.to_json() for row in rows],
        "targets": targets, "notes": report.notes(rows), "errors": errors})
    print(f"\nwrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
