"""``jobqueue.hugepages``: which ranges are collapsed, and what the kernel then really holds.

The kernel tests run in real forked children (``_in_child``), allocate real memory and read
the result back from ``/proc/self/smaps``; they need Linux 6.1+ with transparent huge pages
not ``never`` (the development and CI machines), and say so where that is missing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import sys
from typing import Any

import pytest

from jobqueue import hugepages
from tests.testapp import tasks
from tests.worker_support import in_child, make_workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
HUGE = 2 << 20


def _kernel_collapses() -> bool:
    """Whether this kernel makes a huge page on ``MADV_COLLAPSE`` (probed in a child)."""
    def probe() -> bool:
        region = mmap.mmap(-1, 2 * HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        start = ctypes.addressof(ctypes.c_char.from_buffer(region))
        aligned = (start + HUGE - 1) // HUGE * HUGE
        region[aligned - start:aligned - start + HUGE] = b"x" * HUGE
        madvise = hugepages._madvise()
        return madvise is not None and madvise(aligned, HUGE, hugepages.MADV_COLLAPSE) == 0

    return hugepages.thp_mode() not in ("", "never") and in_child(probe)


needs_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _kernel_collapses(),
    reason="the kernel has no MADV_COLLAPSE (Linux 6.1+) or transparent huge pages are off")


# ============================================================================ pure logic
MAPS = """\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/python3.12
55d0c1f10000-55d0c2800000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000600000 rw-p 00000000 00:00 0
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
7f0000800000-7f0000c00000 rw-s 00000000 00:01 77 /dev/zero (deleted)
7f0000c00000-7f0001000000 rw-p 00001000 08:01 456 /usr/lib/libfoo.so
7f0001000000-7f0001400000 r--p 00000000 00:00 0
7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0 [stack]
"""


def test_only_whole_aligned_ranges_of_private_writable_anonymous_memory_are_candidates():
    ranges = list(hugepages.anonymous_ranges(MAPS, HUGE))
    assert ranges == [
        # [heap] starts unaligned: its first whole range starts at the next 2 MiB boundary
        (0x55D0C2000000, 0x55D0C2200000), (0x55D0C2200000, 0x55D0C2400000),
        (0x55D0C2400000, 0x55D0C2600000), (0x55D0C2600000, 0x55D0C2800000),
        # an unnamed mapping of 6 MiB: three ranges; the 1 MiB one after it holds none
        (0x7F0000000000, 0x7F0000200000), (0x7F0000200000, 0x7F0000400000),
        (0x7F0000400000, 0x7F0000600000),
    ]  # shared memory, files, read-only memory and the stack are never touched


def _entries(present: int, shared: int = 0) -> memoryview:
    words = [hugepages.PRESENT | hugepages.EXCLUSIVE] * present + [0] * (512 - present)
    for i in range(shared):
        words[i] = hugepages.PRESENT  # resident, not this process's alone
    return memoryview(bytearray(b"".join(w.to_bytes(8, "little") for w in words))).cast("Q")


@pytest.mark.parametrize(("present", "shared", "verdict"), [
    (512, 0, True), (hugepages.MIN_RESIDENT, 0, True),
    (hugepages.MIN_RESIDENT - 1, 0, False), (0, 0, False),
    (512, 1, None),  # one page shared with a parent: collapsing would copy it
])
def test_a_range_is_collapsed_when_dense_and_unshared(present: int, shared: int, verdict: Any):
    assert hugepages.worth_collapsing(_entries(present, shared)) is verdict


@pytest.mark.parametrize(("text", "mode"), [
    ("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"),
    ("always madvise [never]\n", "never"), ("garbage\n", "")])
def test_the_system_setting_is_read_from_sysfs(tmp_path, monkeypatch, text: str, mode: str):
    (tmp_path / "enabled").write_text(text)
    (tmp_path / "hpage_pmd_size").write_text("2097152\n")
    monkeypatch.setattr(hugepages, "THP_SYSFS", str(tmp_path))
    assert hugepages.thp_mode() == mode
    assert hugepages.huge_page_size() == HUGE


def test_nothing_is_done_where_huge_pages_are_off_or_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(hugepages, "THP_SYSFS", str(tmp_path / "missing"))
    assert hugepages.collapse_heap() is None
    (tmp_path / "enabled").write_text("always madvise [never]\n")
    monkeypatch.setattr(hugepages, "THP_SYSFS", str(tmp_path))
    assert hugepages.collapse_heap() is None


def test_pages_other_than_4_kib_are_left_alone(monkeypatch):
    monkeypatch.setattr(hugepages, "PAGE", 65536)  # as if this were an arm64 64 KiB kernel
    assert hugepages.collapse_heap() is None


def test_a_kernel_without_madv_collapse_leaves_everything_as_it_was(monkeypatch):
    calls: list[int] = []

    def refuse(address: int, length: int, advice: int) -> int:
        calls.append(advice)
        ctypes.set_errno(22)  # EINVAL: what Linux before 6.1 answers
        return -1

    monkeypatch.setattr(hugepages, "_madvise", lambda: refuse)
    if hugepages.thp_mode() in ("", "never"):
        pytest.skip("transparent huge pages are off here: collapse_heap() returns early")
    buffer = bytearray(3 * HUGE)  # a dense range for it to try
    buffer[::4096] = b"x" * len(buffer[::4096])
    assert hugepages.collapse_heap() is None
    assert calls == [hugepages.MADV_COLLAPSE]  # tried once, then gave up


# ============================================================================ the kernel
def _huge_kib() -> int:
    with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
        return int(re.search(r"AnonHugePages:\s+(\d+)", rollup.read())[1])


@needs_thp
def test_dense_heap_memory_becomes_huge_pages_and_keeps_its_contents():
    def run() -> dict[str, Any]:
        data = bytearray(os.urandom(5 * HUGE))  # malloc'd (an unnamed mapping), all resident
        before = _huge_kib()
        done = hugepages.collapse_heap()
        assert done is not None
        return {"before": before, "after": _huge_kib(), "ranges": done.ranges,
                "bytes": done.bytes, "size": len(data)}

    out = in_child(run)
    assert out["ranges"] >= 4 and out["bytes"] == out["ranges"] * HUGE
    assert out["after"] >= out["before"] + 4 * HUGE // 1024  # 4 of the 5 ranges at least


@needs_thp
def test_contents_survive_the_collapse_byte_for_byte():
    def run() -> bool:
        data = bytearray(os.urandom(3 * HUGE))
        copy = bytes(data)  # a second copy, collapsed too
        hugepages.collapse_heap()
        return data == copy and _huge_kib() > 0

    assert in_child(run) is True


@needs_thp
def test_memory_shared_with_the_parent_is_left_shared():
    data = bytearray(os.urandom(4 * HUGE))  # resident in this process (the parent)

    def run() -> dict[str, Any]:
        before = _huge_kib()
        done = hugepages.collapse_heap()
        assert done is not None
        return {"shared": done.skipped_shared, "grew_kib": _huge_kib() - before,
                "same": hash(bytes(data))}

    out = in_child(run)
    assert out["shared"] >= 3  # the buffer's ranges: every page is the parent's too
    assert out["grew_kib"] == 0  # nothing was copied into a huge page of the child's own
    assert out["same"] == hash(bytes(data))


# ============================================================================ in the worker
def test_the_setting_is_on_by_default_and_off_in_the_pytest_process():
    from jobqueue.conf import build_config, get_config
    from jobqueue.worker import Worker

    assert build_config({}).huge_pages is True
    assert build_config({"HUGE_PAGES": False}).huge_pages is False
    assert get_config().huge_pages is False  # tests/settings.py, like IMMORTAL_HEAP
    assert Worker(None, ["default"]).huge_pages is False
    assert Worker(None, ["default"], huge_pages=True).huge_pages is True


@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


@needs_thp
def test_a_real_fork_mode_worker_collapses_its_heap_and_runs_jobs(jq, workers):
    def run(**jobqueue: Any) -> tuple[str, list[dict[str, Any]]]:
        workers.configure(**jobqueue)
        handles = [tasks.heap_report.enqueue() for _ in range(4)]
        done = workers.run("--burst", "-q", "default", "-v", "2")
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr, [tasks.heap_report.get_result(h.id).return_value for h in handles]

    log, reports = run()  # the default
    collapsed = re.findall(r"Huge pages \(pid \d+\): (\d+) MiB of heap collapsed", log)
    assert len(collapsed) == 1 and int(collapsed[0]) >= 2, log[-3000:]
    assert len({r["pid"] for r in reports}) == 4  # a child per job, all done
    log, reports = run(HUGE_PAGES=False)
    assert "Huge pages" not in log and len(reports) == 4


@needs_thp
def test_a_parked_worker_puts_its_heap_back_into_huge_pages(jq, workers):
    with workers.idle_worker(0.5, "-v", "2") as proc:
        workers.wait(proc, lambda: "fork server stopped" in workers.log(proc), 30, "the park")
        # Start-up collapsed what was unshared; the server then shared every page, so the
        # worker's own writes split them. With the server and its child gone the pages are
        # the worker's alone again: no more ranges count as shared than before the first fork
        # (those hold pages no process owns alone, such as the shared zero page).
        collapsed = re.findall(rf"Huge pages \(pid {proc.pid}\): (\d+) MiB of heap collapsed "
                               r"\((\d+) ranges shared", workers.log(proc))
        assert len(collapsed) == 2, workers.log(proc)
        (_, shared_at_start), (mib, shared_parked) = collapsed
        assert int(mib) >= 2 and int(shared_parked) <= int(shared_at_start), collapsed
        handle = tasks.heap_report.enqueue()
        workers.wait(proc, lambda: tasks.heap_report.get_result(handle.id).status
                     == "SUCCESSFUL", 30, "a job after the park")
