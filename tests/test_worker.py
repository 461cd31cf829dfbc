"""``manage.py worker`` as a real process: fork per job, queue lists, wake-ups, Resque's records,
process titles, hook signals, database connections, failures that never stop it.

Every worker here is a real ``python -m django worker`` against the session's real Redis, with
``tests.settings_pool`` so that ``tests.testapp.worker_tasks`` is a task module and its hook
receivers can be connected as ``SETUP`` hooks (see ``tests/worker_support.py``). Facts about
processes come from ``/proc``; facts about jobs from Redis.

Longer than 500 lines on purpose: each test starts real processes and needs its own set-up
lines; signals live apart in ``test_worker_signals.py``, pipes in ``test_forking.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import Counter

import pytest

from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks
from tests.testapp import worker_tasks as wt
from tests.testapp.pool_hooks import hold
from tests.worker_support import (
    TITLE,
    children,
    cmdline,
    exists,
    is_fork_server,
    job_children,
    make_workers,
    redis_clients_of,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

HOOKS = "tests.testapp.worker_tasks.connect_hooks"
ISO_HEARTBEAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
RUBY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000$")
FAILED_AT = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d UTC$")
RESQUE_FAILURE_KEYS = ["failed_at", "payload", "exception", "error", "backtrace", "worker",
                       "queue"]


@pytest.fixture
def workers(jq, tmp_path, monkeypatch):
    return make_workers(jq, tmp_path, monkeypatch)


def _mode_args(mode: str) -> list[str]:
    return ["--no-fork"] if mode == "no-fork" else []


def _whoami(workers) -> dict[str, dict]:
    return {r["marker"]: r for r in workers.json_records("whoami")}


def _record_order(workers) -> list[str]:
    return [r.split(":")[0] for r in workers.records("record")]


def _push_raw(jq, queue: str, raw: str | bytes) -> None:
    """Push a job the way another Resque client does: RPUSH, no wake token."""
    jq.redis.sadd(jq.key("queues"), queue)
    jq.redis.rpush(jq.key("queue", queue), raw)


def _failures(jq) -> list[dict]:
    return [json.loads(raw) for raw in jq.redis.lrange(jq.key("failed"), 0, -1)]


def _hooks(workers) -> list[list[str]]:
    return [r.split(":") for r in workers.records("hooks")]


def _done(result_of, handle) -> bool:
    return result_of.get_result(handle.id).status == TaskResultStatus.SUCCESSFUL


# ============================================================================ fork per job
def test_each_job_runs_in_its_own_forked_child_of_the_worker(jq, workers):
    handles = [wt.whoami.enqueue(f"job{i}") for i in range(3)]
    done = workers.run("--burst")
    assert done.returncode == 0, done.stderr[-3000:]

    seen = _whoami(workers)
    assert set(seen) == {"job0", "job1", "job2"}
    [worker_pid] = {r["worker"] for r in seen.values()}  # one worker's children, all
    child_pids = [r["pid"] for r in seen.values()]
    assert worker_pid not in child_pids
    assert len(set(child_pids)) == 3  # a new child for every job
    for handle in handles:
        result = wt.whoami.get_result(handle.id)
        assert result.status == TaskResultStatus.SUCCESSFUL
        [worker_id] = result.worker_ids
        assert worker_id.split(":")[1] == str(worker_pid)
    # The worker reaped every child before it exited: none is left, not even a zombie.
    assert [pid for pid in child_pids if exists(pid)] == []


def test_no_fork_runs_every_job_in_the_worker_process_itself(jq, workers):
    handles = [wt.whoami.enqueue(f"job{i}") for i in range(3)]
    done = workers.run("--burst", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]

    seen = _whoami(workers)
    assert len(seen) == 3
    [pid] = {r["pid"] for r in seen.values()}
    [worker_id] = wt.whoami.get_result(handles[0].id).worker_ids
    assert worker_id.split(":")[1] == str(pid)  # the registered worker ran them
    assert all(r["ppid"] != pid for r in seen.values())


def test_a_running_worker_reaps_each_child_and_leaves_no_zombie(jq, workers):
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    handles = [wt.whoami.enqueue(f"job{i}") for i in range(3)]
    workers.wait(proc, lambda: all(_done(wt.whoami, h) for h in handles), 30, "three jobs")
    child_pids = [r["pid"] for r in workers.json_records("whoami")]
    # Every job's child is reaped; what is left is the fork server and the one child it
    # forked in advance for the next job.
    workers.wait(proc, lambda: not any(exists(pid) for pid in child_pids), 10,
                 f"the job children to go (have {job_children(proc.pid)})")
    [server] = children(proc.pid)
    assert is_fork_server(server)
    [spare] = job_children(proc.pid)
    assert "waiting for a job" in cmdline(spare) and spare not in child_pids
    assert proc.poll() is None  # and the worker is still serving


def test_max_jobs_stops_the_worker_after_that_many_jobs(jq, workers):
    for i in range(3):
        tasks.record.enqueue(f"m{i}")
    proc = workers.spawn("-q", "default", "--max-jobs", "2")
    assert workers.wait_exit(proc) == 0
    assert _record_order(workers) == ["m0", "m1"]
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert jq.worker_ids() == set()


# ============================================================================ queue lists
def test_burst_exits_when_its_queues_are_empty(jq, workers):
    tasks.record.enqueue("only")
    tasks.record.using(queue_name="elsewhere").enqueue("not served")
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["only"]
    assert jq.redis.llen(jq.key("queue", "elsewhere")) == 1
    assert jq.worker_ids() == set()


def test_queue_list_order_is_priority_all_of_high_before_any_of_low(jq, workers):
    for i in range(3):  # low first: enqueue order must not matter, the list order does
        tasks.record.using(queue_name="low").enqueue(f"low{i}")
    for i in range(3):
        tasks.record.using(queue_name="high").enqueue(f"high{i}")
    done = workers.run("--burst", "-q", "high,low")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["high0", "high1", "high2", "low0", "low1", "low2"]


def test_each_job_starts_again_from_the_top_of_the_list(jq, workers):
    # A low job enqueues onto high while low still has work: the new high job runs next.
    tasks.record.using(queue_name="high").enqueue("high-first")
    wt.enqueue_record.using(queue_name="low").enqueue("made-by-low", "high")
    tasks.record.using(queue_name="low").enqueue("low-after")
    done = workers.run("--burst", "-q", "high,low")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["high-first", "made-by-low", "low-after"]


def test_star_serves_every_known_queue_alphabetically(jq, workers):
    for queue in ("charlie", "alpha", "bravo"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "*")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["alpha", "bravo", "charlie"]


def test_a_name_before_star_comes_first_then_the_rest_alphabetically(jq, workers):
    for queue in ("bravo", "critical", "alpha"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "critical,*")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["critical", "alpha", "bravo"]


def test_globs_serve_only_matching_queues(jq, workers):
    for queue in ("mail_b", "mail_a", "reports", "mailbox"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "mail_*")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["mail_a", "mail_b"]
    assert jq.redis.llen(jq.key("queue", "reports")) == 1
    assert jq.redis.llen(jq.key("queue", "mailbox")) == 1


def test_brace_alternatives_in_a_glob_match_either_name(jq, workers):
    for queue in ("low_mail", "high_mail", "mid_mail"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "{low,high}_mail")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["high_mail", "low_mail"]
    assert jq.redis.llen(jq.key("queue", "mid_mail")) == 1


def test_negation_excludes_matching_queues_from_the_rest_of_the_list(jq, workers):
    for queue in ("alpha", "reports", "mail_x", "zulu"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "*,!reports,!mail_*")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["alpha", "zulu"]
    assert jq.redis.llen(jq.key("queue", "reports")) == 1
    assert jq.redis.llen(jq.key("queue", "mail_x")) == 1


@pytest.mark.parametrize(("env", "expected"), [
    ({"QUEUE": "second,first"}, ["second", "first"]),
    ({"QUEUES": "first,second"}, ["first", "second"]),
    ({"QUEUES": "first", "QUEUE": "second"}, ["first"]),  # QUEUES wins over QUEUE
])
def test_queue_list_falls_back_to_the_queues_environment_variables(jq, workers, monkeypatch,
                                                                     env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for queue in ("first", "second", "third"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == expected
    assert jq.redis.llen(jq.key("queue", "third")) == 1


def test_the_queues_option_wins_over_the_environment(jq, workers, monkeypatch):
    monkeypatch.setenv("QUEUES", "first")
    for queue in ("first", "second"):
        tasks.record.using(queue_name=queue).enqueue(queue)
    done = workers.run("--burst", "-q", "second")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _record_order(workers) == ["second"]


# ============================================================================ waking up
def test_an_idle_worker_is_woken_by_enqueue_long_before_its_poll_interval(jq, workers):
    workers.configure(HEARTBEAT_INTERVAL=30)  # nothing else to wake it but the 1 s promotion
    proc = workers.spawn("-q", "default", "--interval", "30")
    workers.wait_idle(proc)
    if jq.url.startswith("redis://"):
        # Idle means blocked in BLPOP on the wake list, not sleeping.
        workers.wait(proc, lambda: any(c["cmd"] == "blpop" and "b" in c["flags"]
                                       for c in redis_clients_of(jq.redis, proc.pid)),
                     10, "the idle worker to block in BLPOP")
    for i in range(3):
        handle = tasks.add.enqueue(i, i)
        # A functional bound far below the 30 s interval (the wake-up takes milliseconds).
        workers.wait(proc, lambda h=handle: _done(tasks.add, h), 5, f"job {i} (30 s interval)")
        assert tasks.add.get_result(handle.id).return_value == 2 * i


def test_jobs_pushed_by_another_resque_client_are_found_by_polling(jq, workers):
    proc = workers.spawn("-q", "default", "--interval", "0.5")
    workers.wait_idle(proc)
    for i in range(3):
        _push_raw(jq, "default", json.dumps({"class": "Archive", "args": [i]}))
        workers.wait(proc, lambda n=i + 1: jq.redis.llen(jq.key("test", "archive")) == n, 10,
                     f"raw job {i}")
    assert workers.records("archive") == ["(0,)", "(1,)", "(2,)"]
    assert jq.redis.llen(jq.key("queue", "default")) == 0
    # The archive entry is the job's own side effect; the worker records the job after it
    # (the counter may lag the entry by one round trip), so wait for the count too.
    workers.wait(proc, lambda: jq.redis.get(jq.key("stat", "processed")) == "3", 10,
                 "three jobs counted as processed")


def test_pause_all_workers_key_stops_taking_jobs_until_deleted(jq, workers):
    jq.redis.set(jq.key("pause-all-workers"), "true")
    proc = workers.spawn("-q", "default")
    workers.wait_idle(proc)
    handle = tasks.add.enqueue(1, 1)
    time.sleep(2)  # several polls and wake-ups while the switch is on
    assert tasks.add.get_result(handle.id).status == TaskResultStatus.READY
    jq.redis.delete(jq.key("pause-all-workers"))
    workers.wait(proc, lambda: _done(tasks.add, handle), 10, "the job after unpausing")


# ============================================================================ Resque's records
def test_resque_records_while_a_job_runs_and_counters_after(jq, workers):
    handle = hold.enqueue("rec")
    [raw] = jq.redis.lrange(jq.key("queue", "default"), 0, -1)
    proc = workers.spawn("-q", "default", "--name", "box7")
    workers.wait_started(proc)
    worker_id = f"box7:{proc.pid}:default"

    assert jq.worker_ids() == {worker_id}
    # Resque's {queue, run_at, payload} in Ruby's order, with node-resque's "worker"
    # (host:pid) and the reservation token before the payload; the payload is the exact
    # bytes of the queue entry.
    working = jq.redis.get(jq.key("worker", worker_id))
    match = re.fullmatch(r'\{"queue":"default","run_at":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)",'
                         r'"worker":"([^"]*)","jq":"([0-9a-f]+)","payload":(.*)\}', working,
                         re.DOTALL)
    assert match, working
    assert match.group(2) == f"box7:{proc.pid}"
    assert match.group(4) == raw
    assert json.loads(working) == {"queue": "default", "run_at": match.group(1),
                                   "worker": f"box7:{proc.pid}", "jq": match.group(3),
                                   "payload": json.loads(raw)}
    assert RUBY_TIME.match(jq.redis.get(jq.key("worker", worker_id, "started")))
    first_beat = jq.redis.hget(jq.key("workers", "heartbeat"), worker_id)
    assert ISO_HEARTBEAT.match(first_beat), first_beat
    # Refreshed while the child runs the job (HEARTBEAT_INTERVAL is 1 s in the test settings).
    workers.wait(proc, lambda: jq.redis.hget(jq.key("workers", "heartbeat"), worker_id)
                 not in (None, first_beat), 10, "a fresh heartbeat")
    assert ISO_HEARTBEAT.match(jq.redis.hget(jq.key("workers", "heartbeat"), worker_id))
    assert workers.records("finished") == []  # refreshed while the job was still running
    assert jq.redis.get(jq.key("stat", "processed")) is None

    workers.release("rec")
    workers.wait(proc, lambda: _done(hold, handle), 30, "the job")
    workers.wait(proc, lambda: jq.redis.get(jq.key("stat", "processed")) == "1", 10,
                 "stat:processed")
    assert jq.redis.get(jq.key("stat", "processed", worker_id)) == "1"
    assert not jq.redis.exists(jq.key("worker", worker_id))  # nothing in flight any more
    assert jq.redis.get(jq.key("stat", "failed")) in (None, "0")
    assert proc.poll() is None


def test_no_fork_worker_keeps_its_heartbeat_fresh_while_a_job_runs(jq, workers):
    hold.enqueue("beat")
    proc = workers.spawn("-q", "default", "--no-fork")
    worker_id = workers.worker_id(proc, "default")
    workers.wait_started(proc)
    first_beat = jq.redis.hget(jq.key("workers", "heartbeat"), worker_id)
    workers.wait(proc, lambda: jq.redis.hget(jq.key("workers", "heartbeat"), worker_id)
                 not in (None, first_beat), 10, "a fresh heartbeat during the job")
    assert workers.records("finished") == []
    workers.release("beat")
    workers.wait(proc, lambda: workers.records("finished") == ["beat"], 10, "the job")


def test_a_long_no_fork_job_is_not_reaped_by_another_worker(jq, workers):
    # Stale after max(6 x 0.5 s, 5 s) = 5 s; the other worker looks every 3 s.
    workers.configure(HEARTBEAT_INTERVAL=0.5)
    handle = tasks.sleepy.enqueue(9, "long")
    busy = workers.spawn("-q", "default", "--no-fork")
    workers.wait_started(busy)
    other = workers.spawn("-q", "elsewhere")
    workers.wait(busy, lambda: _done(tasks.sleepy, handle), 30, "the long job")
    assert workers.records("finished") == ["long"]
    assert tasks.sleepy.get_result(handle.id).errors == []
    assert workers.worker_id(busy, "default") in jq.worker_ids()
    assert _failures(jq) == []
    assert other.poll() is None and busy.poll() is None


def test_a_failing_job_leaves_resques_failure_record_and_counts(jq, workers):
    tasks.boom.enqueue("kaput")
    [raw] = jq.redis.lrange(jq.key("queue", "default"), 0, -1)
    proc = workers.spawn("-q", "default")
    worker_id = workers.worker_id(proc, "default")
    workers.wait(proc, lambda: jq.redis.llen(jq.key("failed")) == 1, 30, "a failure record")
    workers.wait(proc, lambda: jq.redis.get(jq.key("stat", "failed", worker_id)) == "1", 10,
                 "stat:failed:<id>")

    [record_raw] = jq.redis.lrange(jq.key("failed"), 0, -1)
    record = json.loads(record_raw)
    assert list(record)[:7] == RESQUE_FAILURE_KEYS
    assert FAILED_AT.match(record["failed_at"]), record["failed_at"]
    assert record["payload"] == json.loads(raw)
    assert json.dumps(record["payload"], separators=(",", ":"), ensure_ascii=False) in \
        record_raw  # embedded key for key, as Ruby's json gem writes it
    assert record["exception"] == "ValueError"
    assert record["error"] == "kaput"
    assert isinstance(record["backtrace"], list)
    assert any("raise ValueError(message)" in line for line in record["backtrace"])
    assert record["worker"] == worker_id
    assert record["queue"] == "default"
    assert jq.redis.get(jq.key("stat", "failed")) == "1"
    assert jq.redis.get(jq.key("stat", "processed")) == "1"
    assert jq.redis.get(jq.key("stat", "processed", worker_id)) == "1"


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_every_record_of_the_worker_is_gone_after_it_exits(jq, workers, mode):
    tasks.add.enqueue(1, 2)
    tasks.boom.enqueue()
    proc = workers.spawn("-q", "default", *_mode_args(mode))
    worker_id = workers.worker_id(proc, "default")
    workers.wait(proc, lambda: jq.redis.get(jq.key("stat", "processed", worker_id)) == "2",
                 30, "both jobs counted")
    assert jq.redis.get(jq.key("stat", "failed", worker_id)) == "1"
    assert jq.redis.exists(jq.key("jobqueue", "worker", worker_id))
    assert jq.redis.exists(jq.key("worker", worker_id, "started"))

    os.kill(proc.pid, signal.SIGQUIT)
    assert workers.wait_exit(proc) == 0
    assert jq.worker_ids() == set()
    assert not jq.redis.hexists(jq.key("workers", "heartbeat"), worker_id)
    leftovers = [k for k in jq.redis.scan_iter(match=jq.key("*")) if worker_id in k]
    assert leftovers == []
    # The global counters stay.
    assert jq.redis.get(jq.key("stat", "processed")) == "2"
    assert jq.redis.get(jq.key("stat", "failed")) == "1"


# ============================================================================ process titles
def test_process_titles_follow_resque_while_idle_and_while_a_job_runs(jq, workers):
    proc = workers.spawn("-q", "high,low")
    assert workers.wait_idle(proc) == f"{TITLE}Waiting for high,low"

    tasks.sleepy.using(queue_name="low").enqueue(30, "t")
    before = int(time.time())
    workers.wait_started(proc)
    child = workers.job_child(proc)
    workers.wait_title(proc, "Forked")
    parent_title = cmdline(proc.pid)
    match = re.fullmatch(rf"{re.escape(TITLE)}Forked (\d+) at (\d+)", parent_title)
    assert match, parent_title
    assert int(match.group(1)) == child
    assert before - 1 <= int(match.group(2)) <= time.time() + 1
    match = re.fullmatch(rf"{re.escape(TITLE)}Processing low since (\d+) "
                         r"\[tests\.testapp\.tasks\.sleepy\]", cmdline(child))
    assert match, cmdline(child)
    assert before - 1 <= int(match.group(1)) <= time.time() + 1


def test_no_fork_worker_shows_processing_in_its_own_title(jq, workers):
    proc = workers.spawn("-q", "default", "--no-fork")
    assert workers.wait_idle(proc) == f"{TITLE}Waiting for default"
    tasks.sleepy.enqueue(30, "t")
    workers.wait_started(proc)
    assert re.fullmatch(rf"{re.escape(TITLE)}Processing default since \d+ "
                        r"\[tests\.testapp\.tasks\.sleepy\]", cmdline(proc.pid)), \
        cmdline(proc.pid)
    assert children(proc.pid) == []


def test_idle_title_shows_the_expanded_queue_list(jq, workers):
    jq.redis.sadd(jq.key("queues"), "beta", "alpha", "secret")
    proc = workers.spawn("-q", "critical,*,!secret")
    assert workers.wait_idle(proc) == f"{TITLE}Waiting for critical,alpha,beta"


# ============================================================================ hook signals
def test_hook_signals_fire_once_each_in_the_right_process_fork_mode(jq, workers):
    workers.configure(HOOKS)
    wt.whoami.enqueue("a")
    wt.whoami.enqueue("b")
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]

    children_by_marker = {m: r["pid"] for m, r in _whoami(workers).items()}
    worker_pid = next(iter(_whoami(workers).values()))["worker"]
    hooks = _hooks(workers)
    events = [h[0] for h in hooks]
    assert events == ["before_first_fork", "worker_started",
                      "before_fork", "after_fork", "task_started", "task_finished",
                      "before_fork", "after_fork", "task_started", "task_finished",
                      "worker_stopped"], events
    by_event: dict[str, list[list[str]]] = {}
    for hook in hooks:
        by_event.setdefault(hook[0], []).append(hook)

    # Worker-level hooks: in the worker process, with the Worker class as sender.
    for event, registered in [("before_first_fork", "0"), ("worker_started", "1"),
                              ("worker_stopped", "0")]:
        [(_, pid, _ppid, sender, is_registered)] = by_event[event]
        assert (int(pid), sender, is_registered) == (worker_pid, "Worker", registered), event
    # before_fork in the worker, after_fork in the child that then ran that very job.
    for _, pid, _ppid, sender, marker in by_event["before_fork"]:
        assert (int(pid), sender) == (worker_pid, "Worker")
        assert marker in children_by_marker
    for _, pid, served, sender, marker in by_event["after_fork"]:
        assert int(pid) == children_by_marker[marker]
        assert int(served) == worker_pid and sender == "Worker"
    # Django's task signals are sent by the process that runs the job: the child.
    for _, pid, _ppid, marker in by_event["task_started"]:
        assert int(pid) == children_by_marker[marker]
    for _, pid, _ppid, marker, status in by_event["task_finished"]:
        assert int(pid) == children_by_marker[marker] and status == "SUCCESSFUL"


def test_no_fork_sends_no_fork_hooks_and_the_rest_in_the_worker(jq, workers):
    workers.configure(HOOKS)
    wt.whoami.enqueue("a")
    done = workers.run("--burst", "-q", "default", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]
    worker_pid = _whoami(workers)["a"]["pid"]
    hooks = _hooks(workers)
    assert [h[0] for h in hooks] == ["before_first_fork", "worker_started", "task_started",
                                     "task_finished", "worker_stopped"]
    assert {int(h[1]) for h in hooks} == {worker_pid}


def test_broken_hook_receivers_never_stop_the_worker_or_lose_a_job(jq, workers):
    workers.configure("tests.testapp.worker_tasks.connect_broken_hooks")
    ok = tasks.add.enqueue(2, 2)
    bad = tasks.boom.enqueue("still recorded")
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    assert tasks.add.get_result(ok.id).return_value == 4
    failed = tasks.boom.get_result(bad.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    assert [f["exception"] for f in _failures(jq)] == ["ValueError"]  # not the receiver's
    assert jq.worker_ids() == set()
    # Every broken receiver was called (and raised), for each job where per job.
    calls = Counter(r.split(":")[0] for r in workers.records("hooks"))
    assert calls == {"broken-worker_started": 1, "broken-before_fork": 2,
                     "broken-after_fork": 2, "broken-task_started": 2,
                     "broken-task_finished": 2, "broken-worker_stopped": 1}


def test_a_raising_before_first_fork_receiver_stops_the_worker_before_any_job(jq, workers):
    workers.configure("tests.testapp.worker_tasks.connect_broken_first_fork")
    handle = tasks.add.enqueue(1, 1)
    done = workers.run("--burst", "-q", "default")
    assert done.returncode != 0
    assert "receiver is broken" in done.stderr
    assert tasks.add.get_result(handle.id).status == TaskResultStatus.READY
    assert jq.redis.llen(jq.key("queue", "default")) == 1
    assert jq.worker_ids() == set()
    assert _failures(jq) == []


# ============================================================================ database
def _db_records(workers) -> list[dict]:
    return workers.json_records("db")


def _use_sqlite(workers, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("JOBQUEUE_TEST_SQLITE", str(tmp_path / "worker-db.sqlite3"))
    monkeypatch.setenv("JOBQUEUE_TEST_PG", "0")
    monkeypatch.setenv("JOBQUEUE_TEST_DB_ALIASES", "default")
    workers.configure("tests.testapp.worker_tasks.connect_db_hooks")


def _use_postgres(workers, monkeypatch) -> None:
    if os.environ.get("JOBQUEUE_TEST_PG", "1") == "0":
        pytest.skip("JOBQUEUE_TEST_PG=0")
    try:
        import psycopg

        psycopg.connect(host=os.environ.get("JOBQUEUE_TEST_PG_HOST", "127.0.0.1"),
                        port=os.environ.get("JOBQUEUE_TEST_PG_PORT", "5432"),
                        user=os.environ.get("JOBQUEUE_TEST_PG_USER", "postgres"),
                        dbname=os.environ.get("JOBQUEUE_TEST_PG_DBNAME", "postgres"),
                        connect_timeout=3).close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL: {exc}")
    monkeypatch.setenv("JOBQUEUE_TEST_DB_ALIASES", "pg")
    workers.configure("tests.testapp.worker_tasks.use_pg_maintenance_db",
                      "tests.testapp.worker_tasks.connect_db_hooks")


def test_a_job_child_never_inherits_the_workers_open_sqlite_connection(jq, workers, monkeypatch,
                                                                         tmp_path):
    _use_sqlite(workers, monkeypatch, tmp_path)
    for marker in ("one", "two"):
        wt.db_probe.enqueue(marker)
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    records = _db_records(workers)
    assert [r["event"] for r in records] == ["worker_started", *["before_fork", "after_fork",
                                                                 "job"] * 2], records
    parents = [r for r in records if r["event"] == "before_fork"]
    forked = [r for r in records if r["event"] == "after_fork"]
    jobs = [r for r in records if r["event"] == "job"]
    # The worker had a connection open just before each fork; no child started with one.
    assert [f["inherited_open"] for f in forked] == [False, False]
    assert [j["open_at_start"] for j in jobs] == [False, False]
    assert [f["pid"] for f in forked] == [j["pid"] for j in jobs]
    assert {j["pid"] for j in jobs}.isdisjoint({p["pid"] for p in parents})


def test_no_fork_closes_stale_sqlite_connections_before_and_after_each_job(jq, workers,
                                                                             monkeypatch,
                                                                             tmp_path):
    _use_sqlite(workers, monkeypatch, tmp_path)
    for marker in ("one", "two"):
        wt.db_probe.enqueue(marker)
    done = workers.run("--burst", "-q", "default", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]
    records = _db_records(workers)
    assert [r["event"] for r in records] == ["worker_started", "job", "job"], records
    # Opened by worker_started, then by job one: each closed before the next job began.
    assert [r["open_at_start"] for r in records[1:]] == [False, False]
    assert len({r["pid"] for r in records}) == 1


def test_a_job_child_gets_its_own_postgresql_session_never_the_workers(jq, workers,
                                                                        monkeypatch):
    _use_postgres(workers, monkeypatch)
    for marker in ("one", "two"):
        wt.db_probe.enqueue(marker)
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    records = _db_records(workers)
    assert [r["event"] for r in records] == ["worker_started", *["before_fork", "after_fork",
                                                                 "job"] * 2], records
    parents = [r["backend"] for r in records if r["event"] == "before_fork"]
    jobs = [r for r in records if r["event"] == "job"]
    assert [r["inherited_open"] for r in records if r["event"] == "after_fork"] == [False] * 2
    assert [j["open_at_start"] for j in jobs] == [False, False]
    # pg_backend_pid() identifies the server session: a shared socket would show the same.
    assert {j["backend"] for j in jobs}.isdisjoint(parents)
    assert len({j["backend"] for j in jobs}) == 2


def test_no_fork_uses_a_fresh_postgresql_session_for_each_job(jq, workers, monkeypatch):
    _use_postgres(workers, monkeypatch)
    for marker in ("one", "two"):
        wt.db_probe.enqueue(marker)
    done = workers.run("--burst", "-q", "default", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]
    records = _db_records(workers)
    assert [r["event"] for r in records] == ["worker_started", "job", "job"], records
    assert [r["open_at_start"] for r in records[1:]] == [False, False]
    assert len({r["backend"] for r in records}) == 3  # stale sessions closed, not reused


# ============================================================================ failures
def test_bad_jobs_and_dying_children_never_stop_a_fork_mode_worker(jq, workers):
    _push_raw(jq, "default", b"{not json")
    _push_raw(jq, "default", json.dumps({"class": "No::Such::Job", "args": []}))
    tasks.boom.enqueue("kaput")
    tasks.crash_hard.enqueue()
    tasks.kill_self.enqueue()
    tasks.not_json.enqueue()
    good = tasks.add.enqueue(20, 22)
    proc = workers.spawn("-q", "default")
    workers.wait(proc, lambda: _done(tasks.add, good), 60, "the good job after the bad ones")
    assert proc.poll() is None  # still the same worker, still serving

    failures = _failures(jq)
    assert [(f["exception"], f["error"]) for f in failures[:5]] == [
        ("MalformedJob", failures[0]["error"]),
        ("UnknownTask", failures[1]["error"]),
        ("ValueError", "kaput"),
        ("DirtyExit", "Child process exited with status 7 without reporting"),
        ("DirtyExit", "Child process received unhandled signal SIGKILL"),
    ]
    assert "not valid JSON" in failures[0]["error"]
    assert "'No::Such::Job'" in failures[1]["error"]
    assert "nothing was imported or run" in failures[1]["error"]
    assert failures[5]["exception"] == "InvalidTaskArguments"
    assert "is not JSON-serialisable" in failures[5]["error"]
    assert len(failures) == 6
    assert {f["worker"] for f in failures} == {workers.worker_id(proc, "default")}
    assert jq.redis.get(jq.key("stat", "failed")) == "6"
    assert tasks.add.get_result(good.id).return_value == 42


def test_bad_jobs_never_stop_a_no_fork_worker(jq, workers):
    _push_raw(jq, "default", b"[1,2,3]")
    _push_raw(jq, "default", json.dumps({"class": "os.system", "args": ["true"]}))
    tasks.boom.enqueue("kaput")
    tasks.not_json.enqueue()
    good = tasks.add.enqueue(1, 2)
    done = workers.run("--burst", "-q", "default", "--no-fork")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [f["exception"] for f in _failures(jq)] == [
        "MalformedJob", "UnknownTask", "ValueError", "InvalidTaskArguments"]
    assert tasks.add.get_result(good.id).return_value == 3


def test_dirty_exit_is_recorded_on_the_result_too(jq, workers):
    crashed = tasks.crash_hard.enqueue()
    killed = tasks.kill_self.enqueue()
    done = workers.run("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-3000:]
    for task, handle, text in [(tasks.crash_hard, crashed, "exited with status 7"),
                               (tasks.kill_self, killed, "signal SIGKILL")]:
        result = task.get_result(handle.id)
        assert result.status == TaskResultStatus.FAILED
        [error] = result.errors
        assert error.exception_class_path == "jobqueue.exceptions.DirtyExit"
        assert text in error.traceback
    assert jq.redis.keys(jq.key("worker", "*")) == []  # nothing left in flight


def test_a_task_started_receiver_running_past_the_timeout_fails_the_job_as_a_timeout(jq,
                                                                                     workers):
    workers.configure("tests.testapp.worker_tasks.connect_slow_task_started")
    handle = tasks.too_slow.enqueue(30)  # 0.5 s timeout; the receiver alone takes 30 s
    done = workers.run("--burst", "-q", "default", "--grace", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    result = tasks.too_slow.get_result(handle.id)
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["jobqueue.exceptions.JobTimeout"]
    assert jq.redis.llen(jq.key("queue", "default")) == 0  # failed, not put back


def test_in_no_fork_mode_a_crashing_job_takes_the_worker_down_and_stays_in_flight(jq, workers):
    # Documented: the worker *is* the job's process; a reaper settles the job later.
    handle = tasks.crash_hard.enqueue()
    proc = workers.spawn("-q", "default", "--no-fork")
    assert workers.wait_exit(proc) == 7
    worker_id = workers.worker_id(proc, "default")
    assert jq.redis.exists(jq.key("worker", worker_id))
    assert tasks.crash_hard.get_result(handle.id).status == TaskResultStatus.RUNNING


# ============================================================================ kinds of task
@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_async_tasks_run_in_the_worker(jq, workers, mode):
    handle = tasks.async_add.enqueue(2, 3)
    done = workers.run("--burst", "-q", "default", *_mode_args(mode))
    assert done.returncode == 0, done.stderr[-3000:]
    result = tasks.async_add.get_result(handle.id)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_takes_context_gets_the_first_attempt_and_its_own_result_id(jq, workers, mode):
    handle = tasks.with_context.enqueue(7)
    done = workers.run("--burst", "-q", "default", *_mode_args(mode))
    assert done.returncode == 0, done.stderr[-3000:]
    result = tasks.with_context.get_result(handle.id)
    assert result.return_value == {"attempt": 1, "id": handle.id, "value": 7}


@pytest.mark.parametrize(("option", "value"), [
    ("jobs_per_child", 0), ("jobs_per_child", True), ("jobs_per_child", 2.0),
    ("prefetch", 0), ("prefetch", False), ("prefetch", "8"),
])
def test_worker_options_that_count_must_be_whole_numbers(jq, option: str, value: object):
    from jobqueue.worker import Worker

    with pytest.raises(ValueError, match=f"{option} must be a whole number >= 1, got "):
        Worker(jq.broker, ["default"], fork=option == "jobs_per_child", **{option: value})


@pytest.fixture
def jobqueue_logger():
    """The ``jobqueue`` logger, its level and handlers put back afterwards."""
    import logging

    logger = logging.getLogger("jobqueue")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.mark.parametrize(("configured", "verbosity", "expected"), [
    ("WARNING", 1, "WARNING"),  # the default -v: LOGGING's level stands
    ("ERROR", 1, "ERROR"),
    ("WARNING", 2, "DEBUG"),  # any other -v wins
    ("WARNING", 0, "ERROR"),
    ("NOTSET", 1, "INFO"),  # nothing configured: one line per job
    ("NOTSET", 3, "DEBUG"),
])
def test_worker_command_keeps_the_logging_level_of_settings_at_the_default_verbosity(
        jobqueue_logger, configured: str, verbosity: int, expected: str):
    import logging

    from jobqueue.management.commands.worker import Command

    jobqueue_logger.setLevel(configured)
    Command._configure_logging(verbosity)
    assert logging.getLevelName(jobqueue_logger.level) == expected
