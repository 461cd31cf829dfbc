"""Bad input never stops a worker and is never dropped: each entry ends in the failed list.

Entries are written straight into Redis, the way a buggy producer in any language could write
them. A real ``manage.py worker --burst`` (fork and ``--no-fork``) then drains the queue; the
good job behind the bad ones proves the worker kept going.
"""

from __future__ import annotations

import json
import os

import pytest

from jobqueue import payload
from jobqueue.compat import TaskResultStatus
from tests.testapp import tasks

QUEUE = "bad"
HUGE = 5 * 1024 * 1024


def _entries() -> list[tuple[bytes, str, str]]:
    """(raw bytes, expected exception name, expected fragment of the message)."""
    add = "tests.testapp.tasks.add"
    return [
        (b"{not json", "MalformedJob", "not valid JSON"),
        (b"[1,2,3]", "MalformedJob", "must be a JSON object, got list"),
        (b'"just a string"', "MalformedJob", "must be a JSON object, got str"),
        (b"null", "MalformedJob", "must be a JSON object, got NoneType"),
        (b"", "MalformedJob", "not valid JSON"),
        (b'{"args":[1,2]}', "MalformedJob", 'no "class" string'),
        (b'{"class":42,"args":[]}', "MalformedJob", 'no "class" string'),
        (json.dumps({"class": add, "args": "1,2"}).encode(), "MalformedJob",
         '"args" must be a JSON array, got str'),
        (json.dumps({"class": add, "args": 7}).encode(), "MalformedJob",
         '"args" must be a JSON array, got int'),
        (json.dumps({"class": add, "args": [], "kwargs": [1]}).encode(), "MalformedJob",
         '"kwargs" must be a JSON object, got list'),
        (json.dumps({"class": add, "args": [1, 2], "id": 12}).encode(), "MalformedJob",
         '"id" must be a string'),
        (json.dumps({"class": add, "args": [1, 2], "priority": "high"}).encode(),
         "MalformedJob", '"priority" must be an integer'),
        (b'{"class":"tests.testapp.tasks.echo","args":["\xff\xfe"]}', "MalformedJob",
         "not valid UTF-8"),
        (b'\xff\xfe{"class"', "MalformedJob", "not valid UTF-8"),
        (b'{"class":"tests.testapp.tasks.echo","args":["\\ud83d"]}', "MalformedJob",
         "surrogate"),
        (json.dumps({"class": "No::Such::Job", "args": []}).encode(), "UnknownTask",
         "'No::Such::Job'"),
        # An importable callable that is not a registered task must never be imported or run.
        (json.dumps({"class": "os.system", "args": ["touch /tmp/jobqueue-pwned"]}).encode(),
         "UnknownTask", "nothing was imported or run"),
        (json.dumps({"class": add, "args": [1]}).encode(), "TypeError", "missing 1 required"),
        (json.dumps({"class": add, "args": [1, 2], "kwargs": {"c": 3}}).encode(),
         "TypeError", "unexpected keyword argument 'c'"),
        (b"{" + b'"x":' + b'"' + b"a" * HUGE + b'"', "MalformedJob", "not valid JSON"),
    ]


def _push_raw(jq, raw: bytes) -> None:
    client = jq.broker.client
    client.sadd(jq.key("queues"), QUEUE)
    client.rpush(jq.key("queue", QUEUE), raw)


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_every_bad_entry_is_failed_with_a_clear_message_and_the_worker_keeps_going(jq, mode):
    entries = _entries()
    for raw, _, _ in entries:
        _push_raw(jq, raw)
    good = tasks.add.using(queue_name=QUEUE).enqueue(2, 3)
    huge_ok = tasks.size_of.using(queue_name=QUEUE).enqueue("x" * HUGE)

    args = ["--burst", "-q", QUEUE] + (["--no-fork"] if mode == "no-fork" else [])
    done = jq.run_worker(*args, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    assert tasks.add.get_result(good.id).status == TaskResultStatus.SUCCESSFUL
    big = tasks.size_of.get_result(huge_ok.id)
    assert big.status == TaskResultStatus.SUCCESSFUL and big.return_value == HUGE
    assert jq.redis.llen(jq.key("queue", QUEUE)) == 0
    assert list(jq.redis.scan_iter(match=jq.key("worker", "*"))) == []  # nothing left in flight

    records = [payload.decode_failure(raw) for raw in
               jq.broker.client.lrange(jq.key("failed"), 0, -1)]
    assert len(records) == len(entries)
    for record, (raw, exception, fragment) in zip(records, entries, strict=True):
        assert record.exception == exception, (raw[:80], record.error[:300])
        assert fragment in record.error, (raw[:80], record.error[:300])
        assert record.queue == QUEUE
        assert record.worker.split(":")[-1] == QUEUE
        assert record.failed_at is not None and record.backtrace is not None
        assert len(record.error) < 1000  # clipped: a 5 MB payload is not repeated in the message
    assert not os.path.exists("/tmp/jobqueue-pwned")  # os.system was never called
    assert int(jq.redis.get(jq.key("stat", "failed"))) == len(entries)
    assert int(jq.redis.get(jq.key("stat", "processed"))) == len(entries) + 2


def test_undecodable_entry_is_kept_verbatim_in_its_failure_record(jq):
    raw = b'{"class":"Broken","args":[1,2'
    _push_raw(jq, raw)
    done = jq.run_worker("--burst", "-q", QUEUE)
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = jq.broker.client.lrange(jq.key("failed"), 0, -1)
    body = json.loads(record)
    assert list(body)[:7] == ["failed_at", "payload", "exception", "error", "backtrace",
                              "worker", "queue"]
    assert body["payload"] == raw.decode()
    assert body["exception"] == "MalformedJob"
    assert "Malformed job on queue 'bad'" in body["error"]


def test_invalid_utf8_is_failed_readably_and_never_loses_the_job(jq):
    _push_raw(jq, b'\xff{"class":"x"}')
    done = jq.run_worker("--burst", "-q", QUEUE)
    assert done.returncode == 0, done.stderr[-2000:]
    [record] = jq.broker.client.lrange(jq.key("failed"), 0, -1)
    body = json.loads(record.decode("utf-8"))  # the record itself is valid UTF-8 JSON
    assert body["payload"] == '\ufffd{"class":"x"}'  # readable by Ruby, node and Lua's cjson
    assert body["error"].endswith("payload is not valid UTF-8 text")
    assert body["exception"] == "MalformedJob"


def test_bad_delayed_item_is_failed_by_the_promoter_not_dropped(jq):
    client = jq.broker.client
    item = b'{"class":"NoQueue","args":[]}'
    client.rpush(jq.key("delayed", "1000"), item)
    client.sadd(jq.key("timestamps", item.decode()), "delayed:1000")
    client.zadd(jq.key("delayed_queue_schedule"), {"1000": 1000})
    jq.broker.promote_due()
    [record] = client.lrange(jq.key("failed"), 0, -1)
    body = json.loads(record)
    assert body["payload"] == item.decode()
    assert body["exception"] == "MalformedJob" and "queue" in body["error"]
    assert client.zcard(jq.key("delayed_queue_schedule")) == 0
    assert not client.exists(jq.key("timestamps", item.decode()))


@pytest.mark.parametrize("mode", ["fork", "no-fork"])
def test_a_lone_surrogate_in_a_return_value_or_error_never_stops_the_worker(jq, mode):
    returned = tasks.lone_surrogate.using(queue_name=QUEUE).enqueue("return")
    raised = tasks.lone_surrogate.using(queue_name=QUEUE).enqueue("raise")
    after = tasks.add.using(queue_name=QUEUE).enqueue(1, 1)
    args = ["--burst", "-q", QUEUE] + (["--no-fork"] if mode == "no-fork" else [])
    done = jq.run_worker(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    # Not Unicode text, so not a JSON value: failed with a clear message, like any bad value.
    bad_value = tasks.lone_surrogate.get_result(returned.id)
    assert bad_value.status == TaskResultStatus.FAILED
    assert "does not survive a JSON round trip" in bad_value.errors[0].traceback
    # The error message is stored with U+FFFD: records stay valid UTF-8 JSON.
    failed = tasks.lone_surrogate.get_result(raised.id)
    assert failed.status == TaskResultStatus.FAILED
    assert "bad \ufffd text" in failed.errors[0].traceback
    assert tasks.add.get_result(after.id).return_value == 2
