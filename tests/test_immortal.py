"""``jobqueue.immortal``: what becomes immortal, what stays mortal, and where it runs.

The heap-level tests run in a real forked child, so the pytest process's own heap is never
made immortal (``_in_child``). On Python 3.11, where objects cannot be immortal, the same
tests check that nothing changes.
"""

from __future__ import annotations

import gc
import statistics
import sys
import sysconfig
from typing import Any

import pytest

from jobqueue import immortal
from tests.testapp import tasks
from tests.worker_support import in_child, make_workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks")


def sample_function() -> int:
    return 1


class Plain:
    pass


def test_supported_on_64_bit_cpython_3_12_and_3_13_with_the_gil():
    expected = (sys.implementation.name == "cpython" and sys.version_info[:2] in {(3, 12), (3, 13)}
                and sys.maxsize > 2**32 and not sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert immortal.SUPPORTED is expected


def test_live_objects_become_immortal_and_references_stop_counting():
    def run() -> dict[str, Any]:
        instance, table, items = Plain(), {"k": [1.5]}, [Plain()]
        before = sys.getrefcount(sample_function)
        done = immortal.immortalize()
        refs = [sample_function] * 3  # three more references
        return {"done": None if done is None else [done.objects, done.seconds],
                "immortal": [immortal.is_immortal(o) for o in (
                    sample_function, Plain, instance, table, table["k"], items[0],
                    sample_function.__code__)],
                "before": before, "after": sys.getrefcount(sample_function), "refs": len(refs),
                "frozen": gc.get_freeze_count()}

    out = in_child(run)
    if not immortal.SUPPORTED:
        assert out["done"] is None and out["immortal"] == [False] * 7
        assert out["after"] == out["before"] + 3
        return
    objects, seconds = out["done"]
    assert objects > 10_000 and seconds > 0  # the whole heap of a Django test process
    assert out["immortal"] == [True] * 7  # functions, classes, instances, containers, code
    assert out["after"] == immortal.IMMORTAL_REFCNT  # not written by the three references
    assert out["frozen"] > 0  # and the collector never traverses them in a child


class Finalized:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name, self.payload = log, name, Plain()

    def __del__(self) -> None:
        self.log.append(self.name)


def test_objects_with_a_finalizer_frames_and_generators_stay_mortal_and_are_finalized():
    def run() -> dict[str, Any]:
        log: list[str] = []
        holder = {"finalized": Finalized(log, "gone")}
        gen = (i for i in range(3))
        frame = sys._getframe()
        immortal.immortalize()
        kept = [immortal.is_immortal(o) for o in (holder, holder["finalized"],
                                                  holder["finalized"].payload, gen, frame)]
        del holder["finalized"]  # an immortal dict still drops its references
        return {"kept": kept, "log": log}

    out = in_child(run)
    assert out["log"] == ["gone"]  # the finalizer ran when the object died
    if immortal.SUPPORTED:
        # (what the finalized object held is immortal: it outlives it, as the docs say)
        assert out["kept"] == [True, False, True, False, False]
    else:
        assert out["kept"] == [False] * 5


def test_a_second_pass_writes_and_walks_only_what_is_new():
    def run() -> list[int] | None:
        first = immortal.immortalize()
        fresh = [Plain() for _ in range(50)]
        second = immortal.immortalize()
        if first is None or second is None:
            return None
        return [first.objects, second.objects, sum(map(immortal.is_immortal, fresh))]

    out = in_child(run)
    if not immortal.SUPPORTED:
        assert out is None
        return
    first, second, fresh = out
    assert fresh == 50
    assert 50 < second < first / 20  # the new objects and a little of the pass's own


def test_where_objects_cannot_be_immortal_it_does_nothing(monkeypatch):
    monkeypatch.setattr(immortal, "SUPPORTED", False)
    frozen = gc.get_freeze_count()
    assert immortal.immortalize() is None
    assert not immortal.is_immortal(sample_function)
    assert gc.get_freeze_count() == frozen


# ============================================================================ in the worker
def test_a_fork_mode_worker_warms_then_makes_its_heap_immortal_then_huge_then_forks(
        jq, monkeypatch):
    from jobqueue import hugepages, warmup
    from jobqueue.worker import Worker

    order: list[str] = []
    monkeypatch.setattr(warmup, "warm_job_path", lambda runner, worker_id: order.append("warm"))
    monkeypatch.setattr(immortal, "immortalize", lambda: order.append("immortal"))
    monkeypatch.setattr(hugepages, "collapse_heap", lambda: order.append("huge"))
    monkeypatch.setattr(Worker, "_start_server", lambda self: order.append("server"))
    monkeypatch.setattr(Worker, "_request_child", lambda self: None)
    on = {"immortal_heap": True, "huge_pages": True}
    for options, expected in (
        ({"fork": True, **on}, ["warm", "immortal", "huge", "server"]),
        ({"fork": True, "immortal_heap": False, "huge_pages": True}, ["warm", "huge", "server"]),
        ({"fork": True, "immortal_heap": True, "huge_pages": False},
         ["warm", "immortal", "server"]),
        ({"fork": True, "fork_server": False, **on}, ["warm", "immortal", "huge"]),
        ({"fork": False, **on}, []),  # --no-fork never forks a job
    ):
        order.clear()
        worker = Worker(jq.broker, ["default"], burst=True, **options)
        worker._startup()
        worker._teardown()
        assert order == [step for step in expected if step != "warm" or warmup.ENABLED]


def test_the_setting_is_the_default_and_the_pytest_process_turns_it_off(settings):
    from jobqueue.conf import build_config, get_config

    assert build_config({}).immortal_heap is True
    assert get_config().immortal_heap is False  # tests/settings.py: see why there
    from jobqueue.worker import Worker

    assert Worker(None, ["default"]).immortal_heap is False
    assert Worker(None, ["default"], immortal_heap=True).immortal_heap is True


@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


def _reports(jq, workers, count: int, **jobqueue: Any) -> list[dict[str, Any]]:
    workers.configure(**jobqueue)
    handles = [tasks.heap_report.enqueue() for _ in range(count)]
    done = workers.run("--burst", "-q", "default", "-v", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [tasks.heap_report.get_result(h.id).return_value for h in handles]
    assert len({r["pid"] for r in reports}) == count  # a child per job
    return reports


def test_job_children_of_a_real_worker_run_on_an_immortal_heap_and_copy_fewer_pages(
        jq, workers):
    on = _reports(jq, workers, 6)
    off = _reports(jq, workers, 6, IMMORTAL_HEAP=False)
    assert {r["immortal"] for r in off} == {False}
    assert {r["immortal"] for r in on} == {immortal.SUPPORTED}
    faults_on = statistics.median(r["faults"] for r in on[1:])
    faults_off = statistics.median(r["faults"] for r in off[1:])
    if immortal.SUPPORTED:  # (about 40% fewer measured: counts, not times)
        assert faults_on < 0.85 * faults_off, (faults_on, faults_off)
