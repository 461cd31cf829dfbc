"""Which pages a fork-per-job child writes for its job, and what it wrote in them.

Every page a job child writes that it shares with the fork server costs a copy-on-write
fault (``cow_cost.py`` prices one). This tool says where those pages are. It runs a
fork-per-job burst worker over ``--jobs`` queued no-op jobs (the suite's settings, a private
Redis) and stops each child whose pid is a multiple of ``--every`` twice with ``SIGSTOP``:
when jobqueue's own code starts in it (after Python's at-fork handlers, which a bare fork
runs too) and just before it exits. At the first stop this process takes the child's
writable memory as it is; at the second, the pages that became the child's alone
(``/proc/PID/pagemap``'s exclusive bit) in between are those the job path wrote, and the
words that changed on them say what (a page the fork server wrote meanwhile becomes the
child's alone too, unchanged): a word inside a code object (the worker lists them just
before its fork server starts) is the specialising interpreter's counters and caches in the
bytecode (Python 3.11+), anything else is data (allocations, reference counts, dicts). The
fault counts come from ``/proc/PID/stat`` at both stops.

    benchmarks/.venv/bin/python benchmarks/child_pages.py [--jobs 200] [--every 10]

Linux, as root or with ptrace rights over the worker's children (it reads their memory).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, PrivateRedis, child_env
from benchmarks.measure import tree_pids
from jobqueue.hugepages import EXCLUSIVE, PAGE, PRESENT


# --------------------------------------------------------------------------- the worker side
def worker(jobs: int, every: int, code_map: str) -> None:
    """In the child process: queue the jobs, arm the stops, run a fork-mode burst worker."""
    import types

    import django

    django.setup()
    import gc

    from benchmarks.jobqueue_bench import enqueue_noops
    from jobqueue.broker import get_broker
    from jobqueue.forking import ForkMixin
    from jobqueue.worker import Worker

    enqueue_noops(jobs)
    start_server = ForkMixin._start_server

    def list_code_then_start(self: Any) -> None:
        gc.unfreeze()  # the immortal heap froze everything; put it back as it was
        found = gc.get_objects()
        gc.freeze()
        codes: dict[int, tuple[int, str]] = {}
        todo = [o.__code__ if isinstance(o, types.FunctionType) else o for o in found
                if isinstance(o, types.FunctionType | types.CodeType)]
        while todo:
            code = todo.pop()
            if id(code) not in codes:
                codes[id(code)] = (sys.getsizeof(code), _module_of(code.co_filename))
                todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        Path(code_map).write_text(json.dumps(sorted((a, n, m) for a, (n, m) in codes.items())))
        start_server(self)

    child_main = Worker._child_main

    def stopped_child_main(self: Any, *args: Any) -> None:
        if os.getpid() % every == 0:
            os.kill(os.getpid(), signal.SIGSTOP)  # first stop: the baseline
            real_exit = os._exit

            def stop_then_exit(code: int) -> None:
                os.kill(os.getpid(), signal.SIGSTOP)  # second stop: the comparison
                real_exit(code)

            os._exit = stop_then_exit  # type: ignore[assignment]
        child_main(self, *args)

    ForkMixin._start_server = list_code_then_start  # type: ignore[method-assign]
    Worker._child_main = stopped_child_main  # type: ignore[method-assign]
    done = Worker(get_broker("default"), ["default"], fork=True, burst=True).work()
    print(json.dumps({"processed": done}))


def _module_of(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3."):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            if marker.startswith("/lib/"):
                return "stdlib"
            return rest.split("/", 1)[0].removesuffix(".py")
    return filename  # "<string>": dataclasses' generated methods, and the like


# --------------------------------------------------------------------------- the watcher side
def writable_ranges(pid: int) -> list[tuple[int, int]]:
    ranges = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if "w" in parts[1] and not (len(parts) > 5 and parts[5].startswith("[v")):
            low, high = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((low, high))
    return ranges


def exclusive_pages(pid: int) -> set[int]:
    pages = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for low, high in writable_ranges(pid):
            pagemap.seek(low // PAGE * 8)
            entries = pagemap.read((high - low) // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", entries)):
                if entry & PRESENT and entry & EXCLUSIVE:
                    pages.add(low + i * PAGE)
    return pages


def snapshot(pid: int) -> dict[int, bytes]:
    pages = {}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for low, high in writable_ranges(pid):
            try:
                memory.seek(low)
                data = memory.read(high - low)
            except OSError:
                continue
            for offset in range(0, len(data), PAGE):
                pages[low + offset] = data[offset:offset + PAGE]
    return pages


def stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: state first, minor faults at 7."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def minor_faults(pid: int) -> int:
    return int(stat_fields(pid)[7])


class Watcher:
    """Takes each sampled child's baseline at its first stop, compares at its second."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.baselines: dict[int, tuple[int, set[int], dict[int, bytes]]] = {}
        self.results: list[dict[str, Any]] = []
        self.seen: set[int] = set()

    def poll(self) -> None:
        """Handle the worker's stopped descendants (its job children: nothing else stops)."""
        for pid in tree_pids(self.root)[1:]:
            try:
                if stat_fields(pid)[0] != "T":
                    continue
            except OSError:  # exited meanwhile
                continue
            try:
                if pid in self.baselines:
                    self.results.append(self.compare(pid))
                elif pid not in self.seen:
                    self.seen.add(pid)
                    self.baselines[pid] = (minor_faults(pid), exclusive_pages(pid),
                                           snapshot(pid))
            finally:
                os.kill(pid, signal.SIGCONT)

    def compare(self, pid: int) -> dict[str, Any]:
        faults, before, baseline = self.baselines.pop(pid)
        written = sorted(exclusive_pages(pid) - before)
        changed: dict[int, list[int]] = {}
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            for page in written:
                memory.seek(page)
                now, then = memory.read(PAGE), baseline.get(page)
                changed[page] = [] if then is None else [
                    page + offset for offset in range(0, PAGE, 8)
                    if now[offset:offset + 8] != then[offset:offset + 8]]
        return {"pid": pid, "faults_before": faults,
                "faults_job": minor_faults(pid) - faults, "changed": changed}


def classify(result: dict[str, Any], codes: list[list[Any]], starts: list[int]
             ) -> Counter[str]:
    """Pages written: by the module whose code object changed on them, else 'data'.
    ``codes``: (address, size, module), sorted; ``starts`` their addresses."""
    kinds: Counter[str] = Counter()
    for words in result["changed"].values():
        modules = set()
        for word in words:
            i = bisect.bisect_right(starts, word) - 1
            if i >= 0 and word < codes[i][0] + codes[i][1]:
                modules.add(codes[i][2])
        if not words:
            kinds["unchanged"] += 1
        elif modules:
            kinds["code: " + ", ".join(sorted(modules))] += 1
        else:
            kinds["data"] += 1
    return kinds


def report(results: list[dict[str, Any]], codes: list[list[Any]]) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    starts = [code[0] for code in codes]
    kinds = [classify(result, codes, starts) for result in results]
    by_module: Counter[str] = Counter()
    for counted in kinds:
        for kind, pages in counted.items():
            if kind.startswith("code: "):
                for module in kind[6:].split(", "):
                    by_module[module] += pages
    code_pages = [sum(v for k, v in c.items() if k.startswith("code: ")) for c in kinds]
    rows = [
        ("children sampled", len(results)),
        ("faults before jobqueue's code runs (at-fork handlers)",
         median([r["faults_before"] for r in results])),
        ("faults from there to its exit (the job path)",
         median([r["faults_job"] for r in results])),
        ("pages that became the child's alone meanwhile",
         median([len(r["changed"]) for r in results])),
        ("  with a change inside a code object", median(code_pages)),
        ("  with changed data only", median([c["data"] for c in kinds])),
        ("  unchanged (the server wrote its copy, or a value came back)",
         median([c["unchanged"] for c in kinds])),
    ]
    for label, value in rows:
        print(f"{label:<64} {value:>7,.0f}")
    print("code-object pages by module (mean per child; a page may count for two):")
    for module, pages in by_module.most_common(10):
        print(f"  {module:<62} {pages / max(len(results), 1):>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="sample children whose pid "
                        "is a multiple of this")
    args = parser.parse_args()
    with PrivateRedis() as server, tempfile.TemporaryDirectory() as tmp:
        code_map = Path(tmp) / "codes.json"
        command = [sys.executable, "-m", "benchmarks.child_pages", "--worker",
                   str(args.jobs), str(args.every), str(code_map)]
        child = subprocess.Popen(command, cwd=ROOT, env=child_env(server.url, Path(tmp)),
                                 start_new_session=True)
        watcher = Watcher(child.pid)
        try:
            while child.poll() is None:
                watcher.poll()
                time.sleep(0.002)
        finally:  # interrupted: no worker, fork server or stopped child left behind
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if child.returncode != 0:
            sys.exit(f"the worker exited {child.returncode}")
        report(watcher.results, json.loads(code_map.read_text()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
