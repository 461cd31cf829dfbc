"""Ratios, the printed tables (one per measure group), machine info and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Row
from benchmarks.targets import fastest_single_peer

SECTIONS = ("Floors", "jobqueue", "RQ", "Celery", "Dramatiq", "Huey")
SINGLE_NOFORK = ("rq.work_simple", "celery.solo", "celery.solo_noresult", "dramatiq.p1",
                 "dramatiq.p1t8", "huey.thread1")

#: (row, column, base row, short name of the base). "floor" columns print a percentage of
#: the floor, "peer" columns the multiple of the base's number.
RATIOS: tuple[tuple[str, str, str, str], ...] = (
    *((f"{lib}.enqueue", "floor", "floor.rpush", "RPUSH")
      for lib in ("jq", "rq", "celery", "dramatiq", "huey")),
    ("jq.enqueue_nospin", "floor", "floor.rpush", "RPUSH"),
    *((key, "floor", "floor.rpush_bulk", "pipelined RPUSH") for key in (
        "jq.enqueue_many", "rq.enqueue_many", "celery.enqueue_bulk", "dramatiq.enqueue_group",
        "huey.enqueue_map")),
    ("jq.enqueue_many", "peer", "jq.enqueue", "one by one"),
    ("rq.work_fork", "floor", "floor.fork_plain", "fork loop (plain)"),
    # jobs_per_child > 1 forks once per N jobs: the fork loop is no floor for it
    *((key, "floor", "floor.fork", "fork loop") for key in ("jq.work_fork", "jq.work_jpc1",
                                                             "jq.work_fork_noserver")),
    ("jq.work_fork", "floor", "floor.fork_huge", "fork loop, huge pages"),
    *((f"jq.work_jpc{n}", "peer", "jq.work_fork", "fork per job") for n in (10, 100)),
    ("jq.work_fork", "peer", "rq.work_fork", "rq.Worker"),
    *((key, "floor", "floor.blpop", "BLPOP") for key in ("jq.work_nofork", "jq.work_nofork_p1",
                                                          *SINGLE_NOFORK)),
    ("jq.pool_fork", "peer", "rq.pool_fork", "rq pool"),
    ("jq.pool_nofork", "peer", "rq.pool_simple", "rq pool (Simple)"),
)


def add_ratios(rows: Sequence[Row]) -> None:
    by_key = {row.key: row for row in rows if row.available}
    for key, column, base, label in RATIOS:
        if key in by_key and base in by_key and by_key[base].value:
            by_key[key].ratios[f"{column}:{label}"] = by_key[key].value / by_key[base].value
    fastest = fastest_single_peer(by_key)
    if "jq.work_nofork" in by_key and fastest is not None:
        by_key["jq.work_nofork"].ratios[f"peer:{fastest[1]}"] = (
            by_key["jq.work_nofork"].value / fastest[0])


def notes(rows: Sequence[Row]) -> list[str]:
    """What the floors imply for the targets on this machine."""
    value = {row.key: row.value for row in rows if row.available}
    start = {row.key: row.metrics for row in rows if row.group == "start"}
    out = []
    if {"floor.fork_us", "floor.fork_plain_us", "floor.fork_rss", "floor.fork_plain_rss"} <= set(
            value) and value["floor.fork_rss"] > value["floor.fork_plain_rss"]:
        per_mib = ((value["floor.fork_us"] - value["floor.fork_plain_us"])
                   / (value["floor.fork_rss"] - value["floor.fork_plain_rss"]))
        out.append(f"fork cost grows ~{per_mib:.0f} µs per MiB of parent RSS on this machine "
                   f"(page tables are copied).")
    if "floor.fork" in value and value.get("rq.work_fork"):
        ceiling = value["floor.fork"] / value["rq.work_fork"]
        verdict = ("so fork per job cannot reach 5x rq.Worker here: the target is 70% of the "
                   "fork loop instead" if ceiling < 5 else "so 5x rq.Worker is within reach")
        out.append(f"the bare fork loop of a Django process is {ceiling:.2f}x rq.Worker's rate, "
                   f"{verdict}.")
    if "floor.fork_us" in value and "jq.start_fork" in start:
        out.append(f"idle latency p50, fork per job: {start['jq.start_fork']['p50_ms']:.2f} ms, "
                   f"of which one bare fork of a Django process is "
                   f"{value['floor.fork_us'] / 1000:.2f} ms.")
    return out


# --------------------------------------------------------------------------- table
def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _spread(row: Row) -> str:
    """Half the range of the rounds, relative to the median: how steady the number was."""
    rounds = row.extra.get("rounds")
    if not rounds or not row.available or not row.value:
        return ""
    return f"±{(max(rounds) - min(rounds)) / 2 / row.value * 100:.0f}%"


def _ratios(row: Row) -> str:
    out = []
    for name, ratio in row.ratios.items():
        column, label = name.split(":", 1)
        if column == "floor":
            out.append(f"{ratio * 100:.0f}% {label}")
        else:
            out.append(f"{ratio:.2f}x {label}" if ratio < 10 else f"{ratio:.1f}x {label}")
    return ", ".join(out)


def _value(row: Row) -> str:
    if not row.available:
        return "not available"
    return _num(row.value, 2 if row.unit == "ms" else 1)


def _metric(name: str, digits: int = 1) -> Callable[[Row], str]:
    return lambda row: _num(row.metrics.get(name), digits)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    left: bool = False


GROUPS: dict[str, tuple[str, tuple[Column, ...]]] = {
    "floor": ("Floors (the bare machinery, no queue library)", (
        Column("value", _value), Column("unit", lambda r: r.unit, True),
        Column("rounds", _spread))),
    "enqueue": ("Enqueue (N no-op jobs from one client process)", (
        Column("jobs/s", _value), Column("rounds", _spread),
        Column("cmds/job", _metric("cmds", 2)), Column("Redis µs/job", _metric("redis_cpu_us")),
        Column("client µs/job", _metric("client_cpu_us")),
        Column("vs", _ratios, True))),
    "process": ("Processing (drain N queued no-op jobs; CPU of the whole worker tree)", (
        Column("jobs/s", _value), Column("rounds", _spread),
        Column("CPU µs/job", _metric("cpu_us", 0)), Column("cmds/job", _metric("cmds", 2)),
        Column("Redis µs/job", _metric("redis_cpu_us")),
        Column("peak RSS", _metric("peak_rss_mib")), Column("peak PSS", _metric("peak_pss_mib")),
        Column("procs", _metric("peak_procs", 0)), Column("vs", _ratios, True))),
    "start": ("Start-up, idle latency, idle memory (ms, MiB)", (
        Column("first job", _metric("ttfj_ms", 0)), Column("p50", _metric("p50_ms", 2)),
        Column("p99", _metric("p99_ms", 2)), Column("idle RSS", _metric("rss_mib")),
        Column("idle PSS", _metric("pss_mib")), Column("procs", _metric("procs", 0)),
        Column("note", lambda r: _long_idle(r), True))),
}


def _long_idle(row: Row) -> str:
    value = row.metrics.get("p50_long_idle_ms")
    return "" if value is None else f"p50 {value:,.2f} after 1.5 s idle"


def _render(title: str, columns: Sequence[Column], blocks: list[tuple[str, list[Row]]]) -> str:
    header = ["", *(c.header for c in columns)]
    lines = [(section, [["  " + r.name, *(c.cell(r) for c in columns)] for r in rows])
             for section, rows in blocks]
    data = [line for _, block in lines for line in block]
    keep = [i for i in range(len(header)) if i == 0 or any(line[i] for line in data)]
    left = {0} | {i + 1 for i, c in enumerate(columns) if c.left}
    widths = {i: max(len(line[i]) for line in [header, *data]) for i in keep}

    def fmt(line: list[str]) -> str:
        return "  ".join(line[i].ljust(widths[i]) if i in left else line[i].rjust(widths[i])
                         for i in keep).rstrip()

    out = [title, fmt(header), "-" * sum(widths[i] + 2 for i in keep)]
    for section, block in lines:
        out.append(section)
        out += [fmt(line) for line in block]
    return "\n".join(out)


def render_table(rows: Sequence[Row], targets: Sequence[dict[str, Any]],
                 titles: dict[str, str]) -> str:
    out = []
    for group, (title, columns) in GROUPS.items():
        blocks = [(titles.get(section, section),
                   [r for r in rows if r.section == section and r.group == group])
                  for section in SECTIONS]
        blocks = [(name, block) for name, block in blocks if block]
        if blocks:
            out.append(_render(title, columns, blocks))
    out.append(render_targets(targets))
    return "\n\n".join(out)


def render_targets(targets: Sequence[dict[str, Any]]) -> str:
    """One line per target: the ratio against its base, and where the project's floor rule
    applies (the peer target lies beyond the floor) the share of the floor, which decides."""
    header = ["target", "measured", "needed", "floor", "rule", "verdict", "against"]
    lines = [header] + [[t["name"], t["shown"], t["needed"], t["floor_share"], t["rule"],
                         t["verdict"], t["basis"]] for t in targets]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 2, 3, 4}
    out = ["Targets (measured in this run; floor: jobqueue's share of the floor, which decides "
           "where the rule applies)"]
    for number, line in enumerate(lines):
        out.append("  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                             for i, cell in enumerate(line)).rstrip())
        if number == 0:
            out.append("-" * (sum(widths) + 2 * len(widths)))
    return "\n".join(out)


# --------------------------------------------------------------------------- machine, JSON
def _first(path: str, prefix: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _command(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    server = _command("redis-server", "--version")
    server_version = next((part[2:] for part in server.split() if part.startswith("v=")), "")
    return {
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory": _first("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": server_version,
        "git": _command("git", "describe", "--always", "--dirty"),
        "load_average": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **{name.replace("-", "_"): _version(dist) for name, dist in (
            ("django", "Django"), ("redis_py", "redis"), ("hiredis", "hiredis"), ("rq", "rq"),
            ("celery", "celery"), ("kombu", "kombu"), ("dramatiq", "dramatiq"),
            ("huey", "huey"), ("jobqueue", "django-jobqueue"))},
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
