"""What one copy-on-write page fault costs on this machine: the price of each page a forked
job child writes (docs/performance.md, "Where the time goes").

A 64 MiB process forks; the child writes one byte into each of P pages and exits; the parent
waits. Rows for P = 0, 700 (about what a job child writes), 2,000 and 8,000; the slope is
the cost of one fault. Run: ``python benchmarks/cow_cost.py`` (no Redis, no Django).
"""

from __future__ import annotations

import os
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
BUFFER = bytearray(64 * 1024 * 1024)
ROUNDS = 50


def per_fork(pages: int) -> float:
    """Seconds per fork + ``pages`` writes in the child + exit + waitpid (mean of ROUNDS)."""
    started = time.perf_counter()
    for _ in range(ROUNDS):
        pid = os.fork()
        if pid == 0:
            for i in range(pages):
                BUFFER[i * PAGE] = 2
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - started) / ROUNDS


def main() -> None:
    for i in range(0, len(BUFFER), PAGE):  # every page resident in the parent
        BUFFER[i] = 1
    rows = [(pages, per_fork(pages)) for pages in (0, 700, 2000, 8000)]
    print(f"{'pages written by the child':>28}  {'µs per fork':>12}")
    for pages, seconds in rows:
        print(f"{pages:>28,}  {seconds * 1e6:>12,.0f}")
    (p0, t0), (p1, t1) = rows[0], rows[-1]
    print(f"one copy-on-write fault: {(t1 - t0) / (p1 - p0) * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
