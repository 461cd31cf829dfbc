"""Ratios, targets, the printed table and the JSON file of a benchmark run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Row

SECTIONS = ("Floors", "RQ", "jobqueue")

#: (row, column, base row, short name of the base). "floor" columns print a percentage of the
#: floor, "peer" columns the multiple of RQ's number (for ms and MiB, lower is better).
RATIOS: tuple[tuple[str, str, str, str], ...] = (
    ("rq.enqueue", "floor", "floor.rpush", "RPUSH"),
    ("rq.work_fork", "floor", "floor.fork_plain", "fork loop (plain)"),
    ("rq.work_simple", "floor", "floor.blpop", "BLPOP drain"),
    ("jq.enqueue", "floor", "floor.rpush", "RPUSH"),
    ("jq.enqueue", "peer", "rq.enqueue", "RQ"),
    ("jq.enqueue_many", "floor", "floor.rpush_bulk", "pipelined RPUSH"),
    ("jq.work_fork", "floor", "floor.fork", "fork loop"),
    ("jq.work_fork", "peer", "rq.work_fork", "rq.Worker"),
    ("jq.work_nofork", "floor", "floor.blpop", "BLPOP drain"),
    ("jq.work_nofork", "peer", "rq.work_simple", "rq.SimpleWorker"),
    ("jq.ttfj", "peer", "rq.ttfj", "RQ"),
    ("jq.rss", "peer", "rq.rss", "RQ"),
    ("jq.latency_fork_p50", "peer", "rq.latency_fork_p50", "rq.Worker"),
    ("jq.latency_fork_p99", "peer", "rq.latency_fork_p99", "rq.Worker"),
    ("jq.latency_nofork_p50", "peer", "rq.latency_simple_p50", "rq.SimpleWorker"),
    ("jq.latency_nofork_p99", "peer", "rq.latency_simple_p99", "rq.SimpleWorker"),
)


@dataclass(frozen=True)
class Target:
    name: str
    key: str  # row whose value (or ratio) is checked
    ratio_of: str | None  # base row: check value/base; None: check the value itself
    op: str  # ">=" or "<"
    threshold: float
    unit: str  # how to print the checked number: "x", "%", "ms"


TARGETS = (
    Target("fork per job ≥ 5x rq.Worker", "jq.work_fork", "rq.work_fork", ">=", 5, "x"),
    Target("--no-fork ≥ 5x rq.SimpleWorker", "jq.work_nofork", "rq.work_simple", ">=", 5,
           "x"),
    Target("idle latency p50 < 3 ms (fork per job)", "jq.latency_fork_p50", None, "<", 3,
           "ms"),
    Target("idle latency p50 < 3 ms (--no-fork)", "jq.latency_nofork_p50", None, "<", 3,
           "ms"),
    Target("--no-fork ≥ 70% of bare BLPOP drain", "jq.work_nofork", "floor.blpop", ">=", 0.7,
           "%"),
    Target("fork per job ≥ 70% of bare fork loop", "jq.work_fork", "floor.fork", ">=", 0.7,
           "%"),
)


def add_ratios(rows: Sequence[Row]) -> None:
    by_key = {row.key: row for row in rows}
    for key, column, base, label in RATIOS:
        if key in by_key and base in by_key and by_key[base].value:
            by_key[key].ratios[f"{column}:{label}"] = by_key[key].value / by_key[base].value


def check_targets(rows: Sequence[Row]) -> list[dict[str, Any]]:
    by_key = {row.key: row.value for row in rows}
    checked = []
    for target in TARGETS:
        value: float | None = by_key.get(target.key)
        if value is not None and target.ratio_of is not None:
            base = by_key.get(target.ratio_of)
            value = value / base if base else None
        passed = None
        if value is not None:
            passed = value >= target.threshold if target.op == ">=" else value < target.threshold
        checked.append({"name": target.name, "value": value, "threshold": target.threshold,
                        "op": target.op, "unit": target.unit, "passed": passed})
    return checked


def notes(rows: Sequence[Row]) -> list[str]:
    """What the floors imply for the targets on this machine."""
    value = {row.key: row.value for row in rows}
    out = []
    if {"floor.fork_us", "floor.fork_plain_us", "floor.fork_rss", "floor.fork_plain_rss"} <= set(
            value) and value["floor.fork_rss"] > value["floor.fork_plain_rss"]:
        per_mib = ((value["floor.fork_us"] - value["floor.fork_plain_us"])
                   / (value["floor.fork_rss"] - value["floor.fork_plain_rss"]))
        out.append(f"fork cost grows ~{per_mib:.0f} µs per MiB of parent RSS on this machine "
                   f"(page tables are copied).")
    if "floor.fork" in value and value.get("rq.work_fork"):
        ceiling = value["floor.fork"] / value["rq.work_fork"]
        verdict = ("so fork per job cannot reach 5x rq.Worker here" if ceiling < 5
                   else "so 5x rq.Worker is within reach")
        out.append(f"the bare fork loop of a Django process is {ceiling:.2f}x rq.Worker's rate, "
                   f"{verdict}.")
    if "floor.fork_us" in value and "jq.latency_fork_p50" in value:
        out.append(f"idle latency p50, fork per job: {value['jq.latency_fork_p50']:.2f} ms, of "
                   f"which one bare fork of a Django process is "
                   f"{value['floor.fork_us'] / 1000:.2f} ms.")
    return out


# --------------------------------------------------------------------------- table
def fmt_value(value: float, unit: str) -> str:
    if unit in ("ms",):
        return f"{value:,.2f}"
    if unit == "MiB":
        return f"{value:,.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _fmt_ratio(column: str, label: str, ratio: float) -> str:
    if column == "floor":
        return f"{ratio * 100:.0f}% of {label}"
    return f"{ratio:.2f}x {label}" if ratio < 10 else f"{ratio:.1f}x {label}"


def _cells(row: Row) -> list[str]:
    floor = [_fmt_ratio("floor", k.split(":", 1)[1], v) for k, v in row.ratios.items()
             if k.startswith("floor:")]
    peer = [_fmt_ratio("peer", k.split(":", 1)[1], v) for k, v in row.ratios.items()
            if k.startswith("peer:")]
    return ["  " + row.name, fmt_value(row.value, row.unit), row.unit, _spread(row),
            ", ".join(floor), ", ".join(peer)]


def _spread(row: Row) -> str:
    """Half the range of the rounds, relative to the median: how steady the number was."""
    rounds = row.extra.get("rounds")
    if not rounds or not row.value:
        return ""
    return f"±{(max(rounds) - min(rounds)) / 2 / row.value * 100:.0f}%"


def _target_cells(target: dict[str, Any]) -> list[str]:
    value = target["value"]
    if value is None:
        return ["  " + target["name"], "n/a", "", "", "", "not measured"]
    shown = {"x": f"{value:.2f}x", "%": f"{value * 100:.0f}%", "ms": f"{value:.2f}"}
    unit = "ms" if target["unit"] == "ms" else ""
    return ["  " + target["name"], shown[target["unit"]], unit, "", "",
            "PASS" if target["passed"] else "MISS"]


def render_table(rows: Sequence[Row], targets: Sequence[dict[str, Any]],
                 titles: dict[str, str]) -> str:
    header = ["", "value", "unit", "rounds", "vs floor", "vs peer"]
    blocks: list[tuple[str, list[list[str]]]] = []
    for section in SECTIONS:
        lines = [_cells(row) for row in rows if row.section == section]
        if lines:
            blocks.append((titles.get(section, section), lines))
    blocks.append(("Targets", [_target_cells(t) for t in targets]))
    data = [line for _, lines in blocks for line in lines]
    keep = [i for i in range(len(header)) if i < 3 or any(line[i] for line in data)]
    header = [header[i] for i in keep]
    blocks = [(title, [[line[i] for i in keep] for line in lines]) for title, lines in blocks]
    every = [header] + [line for _, lines in blocks for line in lines]
    widths = [max(len(line[i]) for line in every) for i in range(len(header))]
    right = {1} | ({keep.index(3)} if 3 in keep else set())

    def fmt(line: list[str]) -> str:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                 for i, cell in enumerate(line)]
        return "  ".join(cells).rstrip()

    out = [fmt(header), "-" * len(fmt(["x" * w for w in widths]))]
    for title, lines in blocks:
        out.append(title)
        out += [fmt(line) for line in lines]
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
        "django": _version("Django"),
        "redis_server": server_version,
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "rq": _version("rq"),
        "jobqueue": _version("django-jobqueue"),
        "git": _command("git", "describe", "--always", "--dirty"),
        "load_average": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
