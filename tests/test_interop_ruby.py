"""Interoperability with Ruby Resque 3.0, pinned by the exact bytes Ruby writes and reads.

Ruby cannot run here, so each test plays Ruby's part with the commands Ruby sends and the bytes
it was observed to write (``/work/shared/design/resque-wire.md``, sections 1 and 3), against
real ``manage.py worker`` processes: a Ruby-shaped job runs, ActiveJob's wrapper is handled as
``docs/interop.md`` says, Ruby's failure records are read and retried, ``Resque.dequeue``'s
by-value ``LREM`` finds ``enqueue_to`` jobs, and a running worker's records (id, heartbeat,
start time, in-flight job, process title) are what Ruby's readers and dead-worker pruner parse.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import jobqueue
from jobqueue import payload
from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks

HOST = socket.gethostname()
ROOT = Path(__file__).resolve().parent.parent
JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"
# Rails 7.2+ ``job.serialize`` as the Resque adapter enqueues it (resque-wire.md 1.3)
ACTIVE_JOB = (
    '{"class":"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",'
    '"args":[{"job_class":"HelloJob","job_id":"3b1c7d2e-5f0a-4b8e-9c61-2d4f8a9e0b17",'
    '"provider_job_id":null,"queue_name":"default","priority":null,"arguments":["World"],'
    '"executions":0,"exception_executions":{},"locale":"en","timezone":"UTC",'
    '"enqueued_at":"2026-01-12T20:23:55.123456789Z","scheduled_at":null}]}'
)
# Failure::Redis#save, observed (resque-wire.md 1.6)
RUBY_FAILURE = (
    '{"failed_at":"2026/11/23 02:27:07 UTC","payload":{"class":"Archive","args":["fail",1]},'
    '"exception":"RuntimeError","error":"boom é","backtrace":["t1.rb:7:in `perform\'"],'
    '"worker":"vm:31273:file_serve","queue":"file_serve"}'
)
# The same from a worker in US Pacific time, already retried once (Failure.requeue)
RUBY_FAILURE_PST = (
    '{"failed_at":"2026/11/24 09:00:00 PST","payload":{"class":"Archive","args":["west"]},'
    '"exception":"NoMethodError","error":"undefined method `x\' for nil",'
    '"backtrace":["app/jobs/archive.rb:3:in `perform\'"],"worker":"web2:811:file_serve",'
    '"queue":"file_serve","retried_at":"2026/11/24 09:05:00 PST"}'
)
# Ruby's pruner: ``ps -A -o pid,command | grep -E ...`` (worker.rb ``linux_worker_pids``)
RUBY_PS_PATTERN = r"[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]"


def _ruby_push(jq, queue: str, raw: str) -> None:
    """``Resque.push``: a pipeline of SADD queues and RPUSH queue:<q> (data_store.rb)."""
    pipe = jq.broker.client.pipeline(transaction=False)
    pipe.sadd(jq.key("queues"), queue)
    pipe.rpush(jq.key("queue", queue), raw.encode())
    pipe.execute()


def _run_worker_with(jq, tmp_path: Path, jobqueue_overrides: dict[str, Any], *args: str
                     ) -> subprocess.CompletedProcess[str]:
    """A real ``manage.py worker`` whose ``JOBQUEUE`` setting has these keys replaced
    (``tests.settings_pool`` reads them from ``JOBQUEUE_TEST_POOL_FILE``)."""
    overrides = tmp_path / "jobqueue-overrides.json"
    overrides.write_text(json.dumps(jobqueue_overrides), "utf-8")
    env = {**jq.env, "DJANGO_SETTINGS_MODULE": "tests.settings_pool",
           "JOBQUEUE_TEST_POOL_FILE": str(overrides)}
    return subprocess.run([sys.executable, "-m", "django", "worker", *args], cwd=ROOT,
                          env=env, timeout=60, capture_output=True, text=True, check=False)


def _title(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read().replace(b"\0", b" ").decode(errors="replace").strip()


def _ruby_worker_pids() -> set[int]:
    """The pids Ruby's ps-based pruner counts as live Resque workers on this host."""
    done = subprocess.run(["sh", "-c", f"ps -A -o pid,command | grep -E '{RUBY_PS_PATTERN}'"],
                          capture_output=True, text=True, timeout=30, check=False)
    return {int(line.split()[0]) for line in done.stdout.splitlines() if line.strip()}


# --------------------------------------------------------------------------- Ruby's jobs
@pytest.mark.parametrize("mode", [(), ("--no-fork",)], ids=["fork", "no-fork"])
def test_ruby_shaped_payload_pushed_raw_runs(jq, mode):
    # Resque.enqueue_to(:file_serve, Archive, 35, "tar", {"k" => "ü/x"}), observed bytes
    _ruby_push(jq, "file_serve", '{"class":"Archive","args":[35,"tar",{"k":"ü/x"}]}')
    done = jq.run_worker("--burst", "-q", "file_serve", *mode)
    assert done.returncode == 0, done.stderr[-2000:]
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["(35, 'tar', {'k': 'ü/x'})"]
    assert jq.redis.llen(jq.key("queue", "file_serve")) == 0
    assert jq.redis.llen(jq.key("failed")) == 0
    assert jq.redis.get(jq.key("stat", "processed")) == "1"


def test_active_job_wrapper_not_mapped_fails_as_unknown_task_with_its_payload_kept(jq):
    """docs/interop.md: a name neither registered nor mapped fails as ``UnknownTask``;
    nothing is imported from a payload, and the job is kept verbatim in its record."""
    _ruby_push(jq, "default", ACTIVE_JOB)
    done = jq.run_worker("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert f'"payload":{ACTIVE_JOB},' in record
    failure = payload.decode_failure(record)
    assert failure.exception == "UnknownTask" and failure.queue == "default"
    assert failure.task_name == JOB_WRAPPER
    assert JOB_WRAPPER in failure.error and "RESQUE_CLASSES" in failure.error
    assert jq.redis.llen(jq.key("queue", "default")) == 0
    # Ruby counts every reserved job as processed, and the failure once.
    assert jq.redis.get(jq.key("stat", "processed")) == "1"
    assert jq.redis.get(jq.key("stat", "failed")) == "1"


def test_active_job_wrapper_mapped_in_resque_classes_gets_the_serialized_job_hash(jq, tmp_path):
    """Mapped like any Resque class: the task gets ``args`` as is, one positional hash."""
    classes = {"Archive": "tests.testapp.tasks.archive", JOB_WRAPPER: "tests.testapp.tasks.archive"}
    _ruby_push(jq, "default", ACTIVE_JOB)
    done = _run_worker_with(jq, tmp_path, {"RESQUE_CLASSES": classes}, "--burst", "-q",
                            "default")
    assert done.returncode == 0, done.stderr[-2000:]
    [job_hash] = json.loads(ACTIVE_JOB)["args"]
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == [repr((job_hash,))]
    assert jq.redis.llen(jq.key("failed")) == 0


# --------------------------------------------------------------------------- failure records
def test_ruby_failure_records_are_readable_and_retried_by_jobqueue(jq):
    jq.redis.rpush(jq.key("failed"), RUBY_FAILURE, RUBY_FAILURE_PST)
    first, second = (payload.decode_failure(r) for r in jq.redis.lrange(jq.key("failed"), 0, -1))
    assert first.failed_at == datetime(2026, 11, 23, 2, 27, 7, tzinfo=UTC)
    assert first.payload == {"class": "Archive", "args": ["fail", 1]}
    assert (first.exception, first.error) == ("RuntimeError", "boom é")
    assert first.backtrace == ["t1.rb:7:in `perform'"]
    assert (first.worker, first.queue) == ("vm:31273:file_serve", "file_serve")
    assert first.retried_at is None and first.id is None and first.extra == {}
    # Ruby writes its local zone: PST is UTC-8
    assert second.failed_at == datetime(2026, 11, 24, 17, 0, 0, tzinfo=UTC)
    assert second.retried_at == datetime(2026, 11, 24, 17, 5, 0, tzinfo=UTC)

    assert jq.broker.failed_count() == 2
    newest, oldest = jq.broker.failed_page(0, 10)
    assert (newest.index, newest.failure) == (1, second)
    assert (oldest.index, oldest.failure) == (0, first)
    assert oldest.attempts == 1

    # The monitor's retry pushes Ruby's payload back byte for byte and removes the record.
    assert jq.broker.retry_failed([oldest.ref]) == 1
    assert jq.redis.lrange(jq.key("queue", "file_serve"), 0, -1) == [
        '{"class":"Archive","args":["fail",1]}']
    assert jq.redis.lrange(jq.key("failed"), 0, -1) == [RUBY_FAILURE_PST]
    done = jq.run_worker("--burst", "-q", "file_serve")
    assert done.returncode == 0, done.stderr[-2000:]
    assert jq.redis.lrange(jq.key("test:archive"), 0, -1) == ["('fail', 1)"]


def test_rubys_failure_requeue_of_a_jobqueue_record_runs_and_keeps_the_record(jq):
    """``Failure.requeue(i)``: LSET the record with ``retried_at`` added last, then push a
    rebuilt ``{"class","args"}`` (resque-wire.md 1.6). jobqueue runs the rebuilt job."""
    tasks.boom.enqueue("ruby retry")
    done = jq.run_worker("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = jq.redis.lrange(jq.key("failed"), 0, -1)
    assert json.loads(record)["payload"]["kwargs"] == {}

    client = jq.broker.client
    client.lset(jq.key("failed"), 0, record[:-1] + ',"retried_at":"2026/11/24 09:05:00 PST"}')
    _ruby_push(jq, "default", '{"class":"tests.testapp.tasks.boom","args":["ruby retry"]}')
    done = jq.run_worker("--burst", "-q", "default")
    assert done.returncode == 0, done.stderr[-2000:]

    retried, again = (payload.decode_failure(r) for r in jq.redis.lrange(jq.key("failed"), 0, -1))
    assert retried.retried_at == datetime(2026, 11, 24, 17, 5, 0, tzinfo=UTC)
    assert retried.id is not None  # jobqueue's own field survived Ruby's re-encoding
    assert again.payload == {"class": "tests.testapp.tasks.boom", "args": ["ruby retry"]}
    assert (again.exception, again.error) == ("ValueError", "ruby retry")
    assert jq.broker.failed_count() == 2


# --------------------------------------------------------------------------- remove by value
def test_resque_dequeue_lrem_removes_exactly_the_enqueue_to_jobs(jq):
    jobqueue.enqueue_to("ruby", "Archive", 42, "tar", {"k": "ü/x"})
    jobqueue.enqueue_to("ruby", "Archive", 43)
    jobqueue.enqueue_to("ruby", "Archive", 42, "tar", {"k": "ü/x"})
    django_job = tasks.archive.using(queue_name="ruby").enqueue(42, "tar", {"k": "ü/x"})
    # Resque.dequeue(Archive, 42, "tar", {"k" => "ü/x"}) -> Job.destroy: LREM queue 0 <json>,
    # the {class,args} hash re-encoded by MultiJson (the json gem)
    ruby_json = '{"class":"Archive","args":[42,"tar",{"k":"ü/x"}]}'.encode()
    assert jq.broker.client.lrem(jq.key("queue", "ruby"), 0, ruby_json) == 2
    left = jq.broker.client.lrange(jq.key("queue", "ruby"), 0, -1)
    assert left[0] == b'{"class":"Archive","args":[43]}'
    # A job enqueued through Django carries jobqueue's fields: Ruby's dequeue cannot match it.
    assert len(left) == 2 and json.loads(left[1])["id"] == django_job.id


# --------------------------------------------------------------------------- a running worker
def test_running_worker_records_are_what_rubys_readers_and_pruner_parse(jq):
    tasks.sleepy.using(queue_name="slow").enqueue(3, "ruby-eyes")
    [queued] = jq.redis.lrange(jq.key("queue", "slow"), 0, -1)
    proc = jq.spawn_worker("-q", "slow")
    jq.wait_for(lambda: jq.redis.llen(jq.key("test:started")) == 1, timeout=30,
                message="the job to start")
    [wid] = jq.worker_ids()

    # Worker id: Ruby splits it with split(':', 3) into host, pid, queue patterns.
    assert wid.split(":", 2) == [HOST, str(proc.pid), "slow"]

    # Heartbeat: ISO 8601 with a numeric offset, which Time.parse reads unambiguously, by
    # Redis' clock and well within Ruby's 300 s prune limit.
    beat = jq.redis.hget(jq.key("workers", "heartbeat"), wid)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", beat), beat
    seen = datetime.fromisoformat(beat)
    assert seen.utcoffset() is not None
    server_now, _ = jq.redis.time()
    assert abs(seen.timestamp() - server_now) < 10

    # worker:<id>:started is Ruby's Time#to_s; worker:<id> is Ruby's working_on record, with
    # the payload embedded verbatim (and node-resque's "worker" name and jobqueue's "jq"
    # reservation token, which Ruby ignores).
    started = jq.redis.get(jq.key("worker", wid, "started"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", started), started
    working = jq.redis.get(jq.key("worker", wid))
    m = re.fullmatch(r'\{"queue":"slow","run_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",'
                     r'"worker":"([^"]+)","jq":"[0-9a-f]+","payload":(.*)\}', working)
    assert m and m[2] == queued, working
    assert m[1] == wid.rsplit(":", 1)[0]
    assert set(json.loads(working)) == {"queue", "run_at", "worker", "jq", "payload"}

    # Process title: Ruby's ps-based pruner must count the registered pid as a live worker.
    assert re.match(r"resque-[0-9]", _title(proc.pid)), _title(proc.pid)
    assert proc.pid in _ruby_worker_pids()

    os.kill(proc.pid, signal.SIGQUIT)
    assert proc.wait(60) == 0
    assert jq.broker.get_result(json.loads(queued)["id"]).status == TaskResultStatus.SUCCESSFUL
    # Unregistered like Ruby: id, heartbeat, started and per-worker stats all gone.
    assert wid not in jq.worker_ids()
    assert not jq.redis.hexists(jq.key("workers", "heartbeat"), wid)
    assert not jq.redis.exists(jq.key("worker", wid), jq.key("worker", wid, "started"),
                               jq.key("stat", "processed", wid))


def test_idle_worker_title_is_resque_waiting_for_its_queues(jq):
    proc = jq.spawn_worker("-q", "one,two")
    jq.wait_for(lambda: _title(proc.pid) == "resque-3.0.0: Waiting for one,two", timeout=30,
                message="the idle title")
    assert proc.pid in _ruby_worker_pids()
    assert jq.worker_ids() == {f"{HOST}:{proc.pid}:one,two"}
