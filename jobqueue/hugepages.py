"""Back a forking process's heap with transparent huge pages, so each fork and exit costs less.

Why: ``fork()`` copies the parent's page tables, one entry and one page reference per 4 KiB
page, and the child's exit drops them again. For a Django worker's 40-45 MiB of anonymous
memory that is most of what a bare fork costs (``perf`` on the development VM: 82% of the fork
server's time per job in ``clone``, half of it in ``copy_page_range``). Memory backed by a
2 MiB huge page is one entry while it is mapped whole, and Linux 6.9+ copies and drops the 512
entries of a huge page that was split (a process wrote one of its pages while another shared
it) in one batch, so the gain outlives the splits: the fork server's own writes split most
ranges within its first few forks and the benchmark's rate stays up over thousands of jobs.

What ``collapse_heap()`` does: ``madvise(MADV_COLLAPSE)`` (Linux 6.1+) on every 2 MiB-aligned
range of the process's private anonymous memory (``[heap]`` and unnamed mappings: malloc's
heap, Python's arenas) where

* at least ``MIN_RESIDENT`` of its 512 pages are resident: collapsing fills the others with
  zeroes, so a range grows by at most 128 KiB;
* every resident page belongs to this process alone (``/proc/self/pagemap``'s exclusive bit):
  a page shared with a parent, such as a pool master's pages in its workers, would be
  copied into the new huge page, and the process would stop sharing it. (A range already
  backed by a huge page of this process's own is counted as collapsed: the kernel leaves it.)

So it costs no memory beyond those zero-filled pages, and it takes tens of milliseconds, once.
Python's arenas are 1 MiB mappings: only runs of them that happen to be adjacent (and malloc's
heap) hold a whole aligned 2 MiB range, about 60% of a Django worker's anonymous memory.

Measured (2026-12-07, 2-core AMD VM, kernel 6.18, Python 3.12, the benchmark's no-op job, fork
per job, Redis on the other core): see docs/workers.md, "Huge pages", and docs/performance.md.

It runs in fork mode, after the immortal heap, before the fork server is forked, again when
an idle worker has stopped its fork server (``FORK_SERVER_IDLE_TIMEOUT``), and in the pool
master (``JOBQUEUE["HUGE_PAGES"]``, default on). Where the kernel has no
``MADV_COLLAPSE``, transparent huge pages are ``never``, pages are not 4 KiB, or
``/proc/self/pagemap`` cannot be read, it does nothing.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger("jobqueue.hugepages")

MADV_COLLAPSE = 25  # <asm-generic/mman-common.h>, Linux 6.1
PAGE = 4096
#: Of a huge page's 512 small pages, how many must be resident for its range to be collapsed.
MIN_RESIDENT = 480
PRESENT = 1 << 63  # pagemap bits (Documentation/admin-guide/mm/pagemap.rst)
EXCLUSIVE = 1 << 56
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"


@dataclass(frozen=True, slots=True)
class Collapsed:
    """What one ``collapse_heap()`` did."""

    ranges: int  # huge pages made
    skipped_shared: int  # ranges left alone: a page of theirs is shared with another process
    failed: int  # ranges the kernel refused (no huge page free, or busy)
    seconds: float
    bytes: int  # what the huge pages made hold


def huge_page_size() -> int:
    """The PMD huge page size (2 MiB on x86-64 and on arm64 with 4 KiB pages)."""
    try:
        with open(f"{THP_SYSFS}/hpage_pmd_size", encoding="ascii") as size:
            return int(size.read())
    except (OSError, ValueError):
        return 2 << 20


def thp_mode() -> str:
    """``always``, ``madvise`` or ``never`` (the bracketed choice in sysfs); ``""`` if none."""
    try:
        with open(f"{THP_SYSFS}/enabled", encoding="ascii") as enabled:
            text = enabled.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def anonymous_ranges(maps: str, huge: int) -> Iterator[tuple[int, int]]:
    """The ``huge``-aligned ``(start, end)`` ranges that lie inside a private, writable,
    anonymous mapping (``[heap]`` or unnamed) of a ``/proc/<pid>/maps`` text."""
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[1].startswith("rw") or fields[1][3:4] != "p":
            continue
        if len(fields) > 5 and fields[5] != "[heap]":
            continue  # a file, the stack, vdso...
        low, high = (int(part, 16) for part in fields[0].split("-"))
        start = (low + huge - 1) // huge * huge
        while start + huge <= high:
            yield start, start + huge
            start += huge


def worth_collapsing(entries: memoryview) -> bool | None:
    """Whether a range's pagemap ``entries`` (one 64-bit word per page) make it worth a huge
    page: True; too sparse: False; shared with another process: None."""
    resident = 0
    for entry in entries:
        if entry & PRESENT:
            if not entry & EXCLUSIVE:
                return None
            resident += 1
    return resident >= MIN_RESIDENT


def collapse_heap() -> Collapsed | None:
    """Collapse this process's dense, unshared anonymous memory into huge pages.

    ``None`` where that cannot be done here (see the module's docstring). Call it in a process
    about to fork children, after its start-up.
    """
    madvise = _madvise()
    if madvise is None or thp_mode() in ("", "never") or os.sysconf("SC_PAGE_SIZE") != PAGE:
        return None
    huge = huge_page_size()
    started = time.perf_counter()
    made = shared = failed = 0
    unsupported = False  # the kernel (or its policy) refuses every range
    try:
        with open("/proc/self/maps", encoding="ascii") as maps_file:
            maps = maps_file.read()
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return None
    buffer = bytearray(huge // PAGE * 8)
    words = memoryview(buffer).cast("Q")
    try:
        for start, end in anonymous_ranges(maps, huge):
            try:  # (a mapping may go away under us: it is only skipped)
                if os.preadv(pagemap, [buffer], start // PAGE * 8) != len(buffer):
                    continue
            except OSError:
                continue
            verdict = worth_collapsing(words)
            if verdict is None:
                shared += 1
            elif verdict and madvise(start, end - start, MADV_COLLAPSE) == 0:
                made += 1
            elif verdict:  # refused: EAGAIN/ENOMEM (none to be had now), or no support
                failed += 1
                if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
                    unsupported = True
                    break
    finally:
        words.release()
        os.close(pagemap)
    if unsupported and made == 0:
        return None
    done = Collapsed(made, shared, failed, time.perf_counter() - started, made * huge)
    logger.info("Huge pages (pid %d): %d MiB of heap collapsed (%d ranges shared, %d refused), "
                "in %.0f ms", os.getpid(), done.bytes >> 20, shared, failed, done.seconds * 1000)
    return done


def _madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols, libc's among them (no ldconfig run to find it)
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
