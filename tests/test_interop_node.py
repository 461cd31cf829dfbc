"""Interoperability with the real node-resque (npm, pinned in ``tests/interop/node``).

Real processes on the session's private Redis and the test's namespace: node scripts from
``tests/interop/node`` (``enqueue.js``, ``enqueue_delayed.js``, ``work.js``, ``schedule.js``,
``inspect.js``) next to real ``manage.py worker`` processes. Each side enqueues what the other
runs, reads the other's failure records, promotes the other's delayed jobs, and sees the
other's workers; the shapes node writes are those quoted in ``resque-wire.md`` section 3.5.

node and ``npm ci --prefix tests/interop/node`` are required: without node the module is
skipped, except in CI (``CI`` set), where ``.ci/run`` installs both and a missing piece fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import jobqueue
from jobqueue import payload
from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks

NODE_DIR = Path(__file__).resolve().parent / "interop" / "node"
NPM_CI = "npm ci --prefix tests/interop/node"
HOST = socket.gethostname()
NODE_DATE = re.compile(r"\w{3} \w{3} \d\d \d{4} \d\d:\d\d:\d\d GMT[+-]\d{4} \(.+\)")


@pytest.fixture(scope="module", autouse=True)
def node_ready() -> str:
    """The ``node`` binary, with the pinned node-resque installed; fail loudly in CI."""
    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: .ci/run installs it (apt-get install nodejs npm), "
                        f"then run `{NPM_CI}`")
        pytest.skip(f"node is not installed (apt-get install nodejs npm, then `{NPM_CI}`); "
                    "CI runs these tests")
    pins = json.loads((NODE_DIR / "package.json").read_text("utf-8"))["dependencies"]
    for name, version in pins.items():
        manifest = NODE_DIR / "node_modules" / name / "package.json"
        if not manifest.exists():
            pytest.fail(f"{name} is not installed for the interop tests: run `{NPM_CI}`")
        installed = json.loads(manifest.read_text("utf-8"))["version"]
        if installed != version:
            pytest.fail(f"{name} {installed} is installed but package.json pins {version}: "
                        f"run `{NPM_CI}`")
    return exe


# --------------------------------------------------------------------------- helpers
def _node_cmd(jq, script: str, *args: Any) -> list[str]:
    return [shutil.which("node") or "node", script, jq.url, jq.namespace, *map(str, args)]


def _node(jq, script: str, *args: Any, env: dict[str, str] | None = None,
          timeout: float = 60.0) -> list[dict[str, Any]]:
    """Run one of the node scripts to completion; its JSON lines."""
    done = subprocess.run(_node_cmd(jq, script, *args), cwd=NODE_DIR,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, (f"node {script} exited {done.returncode}\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _node_enqueue(jq, queue: str, cls: str, args: list[Any]) -> None:
    [out] = _node(jq, "enqueue.js", queue, cls, _js(args))
    assert out["enqueued"] is True


def _node_work(jq, queues: str, *options: Any, env: dict[str, str] | None = None
               ) -> list[dict[str, Any]]:
    """Run a node-resque worker until its queues are empty; the jobs it finished."""
    events = _node(jq, "work.js", queues, *options, env=env)
    assert events[0]["event"] == "start" and events[-1]["event"] == "idle"
    return [e for e in events if e["event"] in ("success", "failure")]


def _node_api(jq, what: str, *args: Any) -> tuple[Any, list[str]]:
    """What node-resque's Queue API answers: (result, errors the queue emitted)."""
    [out] = _node(jq, "inspect.js", what, *args)
    return out["result"], out["errors"]


def _result(jq, result_id: str) -> Any:
    return jq.broker.get_result(result_id)


def _delayed_keys(jq) -> list[str]:
    return sorted(k for k in jq.redis.scan_iter(match=jq.key("*"))
                  if k.startswith((jq.key("delayed"), jq.key("timestamps"))))


def _stop(proc: Any) -> None:
    """QUIT a spawned worker (finish the current job, then exit) and wait for it."""
    os.kill(proc.pid, signal.SIGQUIT)
    assert proc.wait(60) == 0


def _only_worker(jq) -> str:
    return jq.wait_for(lambda: next(iter(jq.worker_ids()), None), timeout=30,
                       message="the worker to register")


# --------------------------------------------------------------------------- node -> jobqueue
@pytest.mark.parametrize("mode", [(), ("--no-fork",)], ids=["fork", "no-fork"])
def test_job_enqueued_by_node_runs_in_a_jobqueue_worker_through_resque_classes(jq, mode):
    args = [35, "tar", {"k": "ü/x"}, None, True, 2.5, [1, [2]]]
    _node_enqueue(jq, "files", "Archive", args)
    # node's own shape: class, queue, args (resque-wire.md 3.5, item 1)
    assert jq.redis.lrange(jq.key("queue", "files"), 0, -1) == [
        '{"class":"Archive","queue":"files","args":[35,"tar",{"k":"ü/x"},null,true,2.5,[1,[2]]]}']
    assert jq.redis.smembers(jq.key("queues")) == {"files"}

    done = jq.run_worker("--burst", "-q", "files", *mode)
    assert done.returncode == 0, done.stderr[-2000:]
    # RESQUE_CLASSES maps Archive to tests.testapp.tasks.archive, which records repr(args)
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == [
        "(35, 'tar', {'k': 'ü/x'}, None, True, 2.5, [1, [2]])"]
    assert jq.redis.llen(jq.key("queue", "files")) == 0
    assert jq.redis.llen(jq.key("failed")) == 0
    assert jq.redis.get(jq.key("stat", "processed")) == "1"


# --------------------------------------------------------------------------- jobqueue -> node
def test_enqueue_to_job_runs_in_a_node_worker_with_its_exact_args(jq):
    args = [42, "tar", {"k": "ü/x"}, [1.5, None], False]
    jobqueue.enqueue_to("nodeq", "Archive", *args)
    assert jq.redis.lrange(jq.key("queue", "nodeq"), 0, -1) == [
        '{"class":"Archive","args":[42,"tar",{"k":"ü/x"},[1.5,null],false]}']

    [ran] = _node_work(jq, "nodeq")
    assert ran["event"] == "success" and ran["class"] == "Archive"
    assert ran["queue"] == "nodeq" and ran["args"] == args
    assert ran["result"] == {"archived": args}
    assert ran["worker"].startswith(f"{HOST}:")
    assert jq.redis.llen(jq.key("queue", "nodeq")) == 0
    assert jq.redis.get(jq.key("stat", "processed")) == "1"
    assert jq.redis.get(jq.key("stat", "failed")) is None
    # node unregistered cleanly: nothing of its worker is left
    assert jq.worker_ids() == set()
    assert [k for k in jq.redis.scan_iter(match=jq.key("worker*"))] == []


def test_node_remove_by_value_matches_only_nodes_own_encoding(jq):
    """node's ``queue.del`` LREMs ``{"class","queue","args"}``: a Ruby-shaped ``enqueue_to``
    job (``{"class","args"}``) never matches it (resque-wire.md 3.5, item 1)."""
    jobqueue.enqueue_to("byval", "Archive", 7, "é")
    _node_enqueue(jq, "byval", "Archive", [7, "é"])
    removed, errors = _node_api(jq, "del", "byval", "Archive", _js([7, "é"]))
    assert (removed, errors) == (1, [])
    assert jq.redis.lrange(jq.key("queue", "byval"), 0, -1) == [
        '{"class":"Archive","args":[7,"é"]}']


def test_jobqueue_task_fails_in_a_node_worker_and_jobqueue_reads_and_retries_the_record(jq):
    result = tasks.echo.using(queue_name="mixed").enqueue(1, "é", k="v")
    [raw] = jq.redis.lrange(jq.key("queue", "mixed"), 0, -1)
    body = json.loads(raw)
    assert list(body) == ["class", "args", "id", "kwargs", "enqueued_at"]
    _node_enqueue(jq, "mixed", "Archive", ["after"])

    # node lacks the task: it fails that job and goes on with the next one. A non-UTC zone
    # (+05:30) checks that jobqueue reads node's Date#toString() offset.
    ran = _node_work(jq, "mixed", env={"TZ": "Asia/Kolkata"})
    assert [(e["event"], e["class"]) for e in ran] == [
        ("failure", "tests.testapp.tasks.echo"), ("success", "Archive")]
    assert ran[0]["error"] == 'No job defined for class "tests.testapp.tasks.echo"'
    assert ran[0]["args"] == [1, "é"]

    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    node_record = json.loads(record)
    assert list(node_record) == ["worker", "queue", "payload", "exception", "error",
                                 "backtrace", "failed_at"]
    assert f'"payload":{raw},' in record  # node keeps the payload's bytes (key order too)
    assert NODE_DATE.fullmatch(node_record["failed_at"])
    assert "GMT+0530 (India Standard Time)" in node_record["failed_at"]

    failure = payload.decode_failure(record)
    assert failure.payload == body and failure.task_name == "tests.testapp.tasks.echo"
    assert failure.exception == "Error"
    assert failure.error == 'No job defined for class "tests.testapp.tasks.echo"'
    assert failure.queue == "mixed" and failure.worker == ran[0]["worker"]
    assert failure.backtrace and all(line.startswith("    at ") for line in failure.backtrace)
    assert failure.failed_at is not None
    assert abs((datetime.now(UTC) - failure.failed_at).total_seconds()) < 60
    assert failure.retried_at is None and failure.id is None

    # The monitor's API reads it like its own records.
    assert jq.broker.failed_count() == 1
    [entry] = jq.broker.failed_page(0, 10)
    assert entry.failure == failure and entry.attempts == 1 and entry.index == 0
    assert _result(jq, result.id).status == TaskResultStatus.READY  # node never touched it

    # ... and retries the exact payload: id and kwargs survive, so the task runs in full.
    assert jq.broker.retry_failed([entry.ref]) == 1
    assert jq.redis.lrange(jq.key("queue", "mixed"), 0, -1) == [raw]
    assert jq.broker.failed_count() == 0
    done = jq.run_worker("--burst", "-q", "mixed")
    assert done.returncode == 0, done.stderr[-2000:]
    final = _result(jq, result.id)
    assert final.status == TaskResultStatus.SUCCESSFUL
    assert final.return_value == {"args": [1, "é"], "kwargs": {"k": "v"}}


# --------------------------------------------------------------------------- failure records
def test_failure_of_a_node_job_is_readable_by_jobqueue(jq):
    args = [1, "é", {"deep": [None]}]
    _node_enqueue(jq, "nfail", "Explode", args)
    [ran] = _node_work(jq, "nfail")
    assert ran["event"] == "failure"

    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    failure = payload.decode_failure(record)
    assert failure.payload == {"class": "Explode", "queue": "nfail", "args": args}
    assert failure.exception == "Error"
    assert failure.error == 'node says no: [1,"é",{"deep":[null]}]'
    assert failure.queue == "nfail" and failure.worker == ran["worker"]
    assert failure.backtrace and "work.js" in failure.backtrace[0]
    assert abs((datetime.now(UTC) - failure.failed_at).total_seconds()) < 60
    # node counts a failure as failed only, never as processed (resque-wire.md 3.5, item 8)
    assert jq.redis.get(jq.key("stat", "failed")) == "1"
    assert jq.redis.get(jq.key("stat", "processed")) is None
    stats = jq.broker.stats()
    assert (stats["failed"], stats["failed_records"], stats["processed"]) == (1, 1, 0)

    # jobqueue's retry puts node's payload back byte for byte: node's by-value del finds it.
    [entry] = jq.broker.failed_page(0, 10)
    assert entry.failure.task_name == "Explode"
    assert jq.broker.retry_failed([entry.ref]) == 1
    assert jq.redis.lrange(jq.key("queue", "nfail"), 0, -1) == [
        '{"class":"Explode","queue":"nfail","args":[1,"é",{"deep":[null]}]}']
    assert _node_api(jq, "del", "nfail", "Explode", _js(args)) == (1, [])


def test_jobqueue_failure_record_has_rubys_key_order_and_node_retries_it_by_value(jq):
    jobqueue.enqueue_to("jqfail", "NodeOnly", 1, "é")  # a class jobqueue does not map
    done = jq.run_worker("--burst", "-q", "jqfail")
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    body = json.loads(record)
    # Ruby's Failure::Redis order (node and resque-web read these keys), jobqueue's id last
    assert list(body) == ["failed_at", "payload", "exception", "error", "backtrace", "worker",
                          "queue", "id"]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d UTC", body["failed_at"])
    assert body["payload"] == {"class": "NodeOnly", "args": [1, "é"]}
    assert body["exception"] == "UnknownTask" and body["queue"] == "jqfail"
    assert isinstance(body["backtrace"], list)
    assert re.fullmatch(rf"{re.escape(HOST)}:\d+:jqfail", body["worker"])

    failed, errors = _node_api(jq, "failed")
    assert (failed, errors) == ([body], [])
    count, _ = _node_api(jq, "failedCount")
    assert count == 1
    # retryAndRemoveFailed LREMs JSON.stringify(record): it only works if node re-encodes
    # jobqueue's record to the very same bytes.
    retried, errors = _node_api(jq, "retryAndRemoveFailed", 0)
    assert (retried, errors) == (True, [])
    assert jq.redis.llen(jq.key("failed")) == 0
    assert jq.redis.lrange(jq.key("queue", "jqfail"), 0, -1) == [
        '{"class":"NodeOnly","queue":"jqfail","args":[1,"é"]}']
    [ran] = _node_work(jq, "jqfail")
    assert (ran["event"], ran["args"]) == ("success", [1, "é"])


# --------------------------------------------------------------------------- delayed jobs
def test_node_delayed_jobs_are_promoted_and_run_by_jobqueue_workers(jq):
    [out] = _node(jq, "enqueue_delayed.js", "in", 1000, "soon", "Archive", _js([5, "later"]))
    [ts] = out["timestamps"]
    item = '{"class":"Archive","queue":"soon","args":[5,"later"]}'
    # resque-scheduler's layout, as node writes it
    assert jq.redis.lrange(jq.key("delayed", str(ts)), 0, -1) == [item]
    assert jq.redis.smembers(jq.key("timestamps", item)) == {f"delayed:{ts}"}
    assert jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1, withscores=True) == [
        (str(ts), float(ts))]

    proc = jq.spawn_worker("-q", "soon", "--no-fork")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:archive")) == 1, timeout=30,
                message="the delayed node job to run")
    assert time.time() >= ts  # promoted when due by Redis' clock, never early
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["(5, 'later')"]
    assert _delayed_keys(jq) == []
    _stop(proc)

    # enqueueAt in the past: due at once, promoted by a burst worker before it reserves
    past_ms = int((time.time() - 5) * 1000)
    _node(jq, "enqueue_delayed.js", "at", past_ms, "soon", "Archive", _js([6]))
    done = jq.run_worker("--burst", "-q", "soon")
    assert done.returncode == 0, done.stderr[-2000:]
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["(5, 'later')", "(6,)"]
    assert _delayed_keys(jq) == []
    assert jq.redis.llen(jq.key("failed")) == 0


def test_jobqueue_delayed_job_is_promoted_by_nodes_scheduler_and_run_by_jobqueue(jq):
    result = tasks.record.using(run_after=timedelta(seconds=1)).enqueue("via-node")
    [ts] = jq.redis.zrange(jq.key("delayed_queue_schedule"), 0, -1)
    [item] = jq.redis.lrange(jq.key("delayed", ts), 0, -1)
    body = json.loads(item)
    assert list(body)[:3] == ["class", "args", "queue"]

    events = _node(jq, "schedule.js")
    [moved] = [e for e in events if e["event"] == "transferred"]
    assert moved["timestamp"] == int(ts) and moved["job"] == body
    assert _delayed_keys(jq) == []  # bucket, zset entry and reverse index all cleaned up
    # node re-enqueues what it promotes in its own shape: jobqueue's id and kwargs are gone
    # (docs/interop.md, "resque-scheduler and node-resque's scheduler")
    assert jq.redis.lrange(jq.key("queue", "default"), 0, -1) == [
        '{"class":"tests.testapp.tasks.record","queue":"default","args":["via-node"]}']

    done = jq.run_worker("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-2000:]
    [marker] = jq.redis.lrange(jq.key("test:record"), 0, -1)
    assert marker.startswith("via-node:")
    assert _result(jq, result.id).status == TaskResultStatus.READY  # as documented
    assert jq.redis.llen(jq.key("failed")) == 0


def test_node_worker_with_scheduler_promotes_and_runs_its_own_and_jobqueues_bare_jobs(jq):
    """A node Scheduler and Worker on a namespace where jobqueue scheduled a bare job."""
    from jobqueue.job import Job

    jq.broker.schedule(Job(task_name="Archive", args=[9, "é"], queue="nsched"), None,
                       datetime.now(UTC) + timedelta(seconds=1))
    _node(jq, "enqueue_delayed.js", "in", 1000, "nsched", "Archive", _js([10]))
    ran = _node_work(jq, "nsched", "--jobs", 2, "--scheduler", 1)
    assert sorted((e["event"], e["args"][0]) for e in ran) == [("success", 9), ("success", 10)]
    assert [e["args"] for e in ran if e["args"][0] == 9] == [[9, "é"]]
    assert _delayed_keys(jq) == []


# --------------------------------------------------------------------------- workers
def test_node_sees_a_live_jobqueue_worker_and_never_prunes_it(jq):
    proc = jq.spawn_worker("-q", "watched")
    wid = _only_worker(jq)
    host, pid, queues = wid.split(":", 2)
    name = f"{host}:{pid}"
    assert (host, pid, queues) == (HOST, str(proc.pid), "watched")

    assert _node_api(jq, "workers") == ({name: "watched"}, [])
    assert _node_api(jq, "allWorkingOn") == ({name: "started"}, [])
    # cleanOldWorkers judges workers by the age of the job they run: an idle one has none.
    assert _node_api(jq, "cleanOldWorkers", 0) == ({}, [])
    # The scheduler's stuck-worker sweep reads worker:ping:<name>, which jobqueue does not
    # write (its liveness is the heartbeat hash): nothing to clean, however short the limit.
    assert _node_api(jq, "checkStuckWorkers", 1000) == ([], [])

    beat = jq.redis.hget(jq.key("workers", "heartbeat"), wid)
    jq.wait_for(lambda: jq.redis.hget(jq.key("workers", "heartbeat"), wid) != beat,
                timeout=15, message="the next heartbeat")
    assert wid in jq.worker_ids()
    assert jq.redis.exists(jq.key("worker", wid, "started"))
    assert jq.redis.exists(jq.key("jobqueue", "worker", wid))

    # Busy with a job younger than the age node is given: still left alone.
    result = tasks.sleepy.using(queue_name="watched").enqueue(2, "busy")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    assert _node_api(jq, "workers") == ({name: "watched"}, [])
    assert _node_api(jq, "cleanOldWorkers", 600_000) == ({}, [])
    assert _node_api(jq, "checkStuckWorkers", 1000) == ([], [])
    assert wid in jq.worker_ids() and jq.redis.exists(jq.key("worker", wid))
    _stop(proc)
    assert _result(jq, result.id).status == TaskResultStatus.SUCCESSFUL
    assert jq.redis.get(jq.key("stat", "failed")) is None
    assert jq.redis.llen(jq.key("failed")) == 0


def test_node_all_working_on_shows_the_job_a_busy_jobqueue_worker_runs(jq):
    tasks.sleepy.using(queue_name="busy").enqueue(4, "b")
    jq.spawn_worker("-q", "busy")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    wid = _only_worker(jq)
    name = wid.rsplit(":", 1)[0]
    record = json.loads(jq.redis.get(jq.key("worker", wid)))
    try:
        assert _node_api(jq, "allWorkingOn") == ({name: record}, [])
    finally:
        # Whatever node does with a job older than 1 ms, its counters must match its records.
        _, errors = _node_api(jq, "cleanOldWorkers", 1)
        failed = int(jq.redis.get(jq.key("stat", "failed")) or 0)
        assert (errors, failed) == ([], jq.redis.llen(jq.key("failed")))


def test_jobqueue_sees_a_busy_node_worker_and_its_reaper_leaves_it_alone(jq):
    _node_enqueue(jq, "nslow", "Sleep", [4000, "ü/x"])  # node ignores the extra argument
    proc = subprocess.Popen(_node_cmd(jq, "work.js", "nslow", "--jobs", "1"), cwd=NODE_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wid = f"{HOST}:{proc.pid}:nslow"
        jq.wait_for(lambda: jq.redis.exists(jq.key("worker", wid)), timeout=30,
                    message="the node worker to take its job")
        [info] = [w for w in jq.broker.workers() if w.id == wid]
        assert (info.host, info.pid, info.queues) == (HOST, proc.pid, ["nslow"])
        assert info.heartbeat_at is None  # node never writes workers:heartbeat
        assert info.started_at is not None  # node writes epoch seconds
        assert abs((datetime.now(UTC) - info.started_at).total_seconds()) < 60
        assert info.current is not None
        assert info.current["queue"] == "nslow" and info.current["worker"] == f"{HOST}:{proc.pid}"
        # node's record is re-encoded by Lua cjson: any key order, "\/" escapes
        assert "\\/" in jq.redis.get(jq.key("worker", wid))
        assert info.current["payload"] == {"class": "Sleep", "queue": "nslow",
                                           "args": [4000, "ü/x"]}
        assert NODE_DATE.fullmatch(info.current["run_at"])
        run_at = payload.parse_time(info.current["run_at"])
        assert run_at is not None and abs((datetime.now(UTC) - run_at).total_seconds()) < 60
        assert jq.broker.stats()["working"] == 1

        # A jobqueue worker starting now looks for dead workers first; a worker that never
        # heartbeats (node's) is never one of them.
        done = jq.run_worker("--burst", "-q", "other")
        assert done.returncode == 0, done.stderr[-2000:]
        assert wid in jq.worker_ids() and jq.redis.exists(jq.key("worker", wid))
        assert jq.redis.llen(jq.key("failed")) == 0

        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-2000:]
    finished = [json.loads(line) for line in out.splitlines()
                if json.loads(line)["event"] == "success"]
    assert [(e["class"], e["result"]) for e in finished] == [("Sleep", 4000)]
    assert wid not in jq.worker_ids()


# --------------------------------------------------------------------------- counters
def test_stat_counters_agree_between_node_and_jobqueue(jq):
    jobqueue.enqueue_to("jqstats", "Archive", 1)
    tasks.boom.using(queue_name="jqstats").enqueue("no")
    done = jq.run_worker("--burst", "-q", "jqstats")
    assert done.returncode == 0, done.stderr[-2000:]
    _node_enqueue(jq, "nstats", "Archive", [2])
    _node_enqueue(jq, "nstats", "Explode", [3])
    assert [e["event"] for e in _node_work(jq, "nstats")] == ["success", "failure"]

    # jobqueue counts both of its attempts as processed (Ruby's meaning), node only its
    # success; failures count once each. Per-worker counters are gone with the workers.
    stats, errors = _node_api(jq, "stats")
    assert (stats, errors) == ({"processed": "3", "failed": "2"}, [])
    mine = jq.broker.stats()
    assert (mine["processed"], mine["failed"], mine["failed_records"]) == (3, 2, 2)
    assert _node_api(jq, "failedCount") == (2, [])
    assert jq.broker.failed_count() == 2
    exceptions = sorted(f.failure.exception for f in jq.broker.failed_page(0, 10))
    assert exceptions == ["Error", "ValueError"]
