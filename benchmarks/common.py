"""Shared pieces of the benchmark suite: result rows, a private Redis, child processes, timing.

Everything here is plain Python plus redis-py, so the floor and RQ sections work without
jobqueue or Django being importable.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "benchmarks.bench_settings"
HOST = "127.0.0.1"


@dataclass
class Row:
    """One measured number. ``key`` is stable (JSON consumers and ratios use it)."""

    section: str
    key: str
    name: str
    value: float
    unit: str
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)  # column -> value, see report.py
    extra: dict[str, Any] = field(default_factory=dict)  # raw inputs (counts, seconds)
    group: str = "floor"  # which table: floor, enqueue, process, start (see report.py)
    metrics: dict[str, Any] = field(default_factory=dict)  # the table's other columns

    @property
    def available(self) -> bool:
        return not math.isnan(self.value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.available:  # JSON has no NaN: a benchmark that could not run
            data["value"] = None
            data["extra"].pop("rounds", None)
        return data


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does; derived from ``--jobs`` and ``--quick``."""

    jobs: int  # jobs a worker processes per throughput run
    redis_ops: int  # RPUSH / BLPOP floor operations
    bulk_jobs: int  # jobs of each bulk-enqueue row: as many as the pipelined RPUSH floor's
    forks: int  # iterations of the bare fork loop
    rq_fork_jobs: int  # RQ's forking Worker is slow: fewer jobs keep the run short
    samples: int  # idle-latency samples per worker kind
    starts: int  # cold starts for time to first job (median)
    rounds: int  # rounds of the throughput measurements, interleaved (median)

    @classmethod
    def make(cls, jobs: int | None, quick: bool, rounds: int | None = None) -> Plan:
        n = jobs or (400 if quick else 2000)
        return cls(jobs=n, redis_ops=10 * n, bulk_jobs=10 * n, forks=n,
                   rq_fork_jobs=max(n // 4, 50),
                   samples=100 if quick else 200, starts=1 if quick else 3,
                   rounds=rounds or (1 if quick else 3))


def merge_rounds(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per key, the round with the median value (the lower one for an even count);
    every round's value is kept in ``extra["rounds"]``. Keys keep their first-seen order."""
    by_key: dict[str, list[Row]] = {}
    for rows in runs:
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
    merged = []
    for rows in by_key.values():
        ordered = sorted(rows, key=lambda row: row.value)
        middle = ordered[(len(ordered) - 1) // 2]
        if len(rows) > 1:
            middle.extra["rounds"] = [row.value for row in rows]
        merged.append(middle)
    return merged


class BenchError(RuntimeError):
    """A measurement could not be taken (the run goes on; the row is missing)."""


# --------------------------------------------------------------------------- private Redis
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence, in a temporary directory."""

    def __init__(self, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise BenchError(f"{binary} not found (apt-get install redis-server)")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="jobqueue-bench-"))
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def pin(self, cores: set[int]) -> None:
        """Keep redis-server on ``cores`` (see ``run.py --pin``)."""
        assert self.process is not None
        os.sched_setaffinity(self.process.pid, cores)

    def start(self) -> PrivateRedis:
        command = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                   "--appendonly", "no", "--dir", str(self.dir),
                   "--logfile", str(self.dir / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def client(self, decode: bool = False) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=decode)

    def flush(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- child processes
def child_env(redis_url: str, tmp: Path) -> dict[str, str]:
    """Environment of every process the suite starts: bench settings and the private Redis."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "DJANGO_SETTINGS_MODULE": SETTINGS,
            "BENCH_REDIS_URL": redis_url, "BENCH_DB": str(tmp / "bench.sqlite3"),
            "PYTHONUNBUFFERED": "1"}


def run_child(module: str, args: Sequence[str], env: dict[str, str],
              timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON object on its last stdout line."""
    command = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{module} {' '.join(args)} timed out after {timeout:.0f}s") from exc
    return child_result(command, done.returncode, done.stdout, done.stderr)


def child_result(command: Sequence[str], code: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The JSON object on the last stdout line of a child that exited 0."""
    lines = stdout.strip().splitlines()
    if code != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise BenchError(f"{' '.join(command[2:])} exited {code}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(commands: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """Entry point of a module run as a child: ``python -m M COMMAND ARG...`` prints JSON."""
    name, *args = sys.argv[1:]
    result = commands[name](*args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Spawned:
    """A long-running child (a worker CLI) with its stderr kept in a file for diagnostics."""

    def __init__(self, command: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.process = subprocess.Popen(list(command), cwd=ROOT, env=env,
                                            stdout=subprocess.DEVNULL, stderr=err,
                                            start_new_session=True)
        self.pid = self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"process exited {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.pid, sig)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()


_CLIENTS: dict[str, tuple[int, redis.Redis]] = {}


def process_client(url: str) -> redis.Redis:
    """One Redis connection per process and URL (a forked child makes its own): the peers'
    ``stamp`` tasks use it."""
    held = _CLIENTS.get(url)
    if held is None or held[0] != os.getpid():
        held = _CLIENTS[url] = (os.getpid(), redis.Redis.from_url(url))
    return held[1]


# --------------------------------------------------------------------------- measuring
def rss_kib(pid: int | str = "self") -> int:
    """Resident set size from ``/proc/<pid>/status`` (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no samples")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               poll: float = 0.002, alive: Spawned | None = None) -> float:
    """Poll until ``predicate()``; return the ``time.perf_counter()`` when it first held."""
    deadline = time.perf_counter() + timeout
    while True:
        if predicate():
            return time.perf_counter()
        if alive is not None:
            alive.check_alive()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def idle_latency(client: redis.Redis, samples: int, enqueue_stamp: Callable[[str], Callable[[],
                 bool]], alive: Spawned, warmup: int = 5, gap: float = 0.005) -> list[float]:
    """Seconds from just before each enqueue to the moment the job's code ran.

    ``enqueue_stamp(key)`` enqueues one job that RPUSHes ``time.time()`` onto ``key`` and
    returns a predicate telling when that job is finished. One job at a time: the worker is
    idle (blocked waiting) when each is enqueued, ``gap`` seconds after the previous one.
    """
    key = "bench:stamps"
    client.delete(key)
    latencies: list[float] = []
    for index in range(samples + warmup):
        time.sleep(gap)  # the worker is back in its blocking wait
        sent = time.time()
        done = enqueue_stamp(key)
        popped = client.blpop([key], timeout=10)
        if popped is None:
            alive.check_alive()
            raise BenchError("a latency job did not run within 10 s")
        if index >= warmup:
            latencies.append(float(popped[1]) - sent)
        wait_until(done, 10, "a latency job to finish", poll=0.0005, alive=alive)
    return latencies


def latency_rows(section: str, prefix: str, label: str, latencies: Sequence[float]) -> list[Row]:
    """p50 and p99 rows (milliseconds) for one worker kind."""
    extra = {"samples": len(latencies), "max_ms": max(latencies) * 1e3,
             "mean_ms": sum(latencies) / len(latencies) * 1e3}
    return [Row(section, f"{prefix}_p50", f"idle latency p50, {label}",
                percentile(latencies, 50) * 1e3, "ms", extra=extra),
            Row(section, f"{prefix}_p99", f"idle latency p99, {label}",
                percentile(latencies, 99) * 1e3, "ms")]
