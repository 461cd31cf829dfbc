"""Property tests (hypothesis): payload round trips and delayed-job promotion.

Promotion runs against the session's real Redis with its own clock: items due in the past
must be moved exactly once, items due in the future must stay exactly once, whatever the
schedule, duplicates and number of concurrent promoters.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobqueue import payload
from jobqueue.broker.redis import RedisBroker
from jobqueue.connection import get_client
from jobqueue.job import Job

# Unicode text as any client may send it: everything but lone surrogates (not Unicode text).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
                | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
QUEUES = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.:é", min_size=1, max_size=12)
IDS = st.text("0123456789abcdef", min_size=1, max_size=63)
TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.just(UTC))
EXTRA = st.dictionaries(st.text("xyz_", min_size=1, max_size=8), JSON, max_size=3)


@st.composite
def jobs(draw: Any, queue: str | None = None) -> Job:
    """A job as jobqueue enqueues it (with an id) or as Ruby does (bare class and args)."""
    name = draw(NAMES)
    args = draw(st.lists(JSON, max_size=5))
    q = queue or draw(QUEUES)
    if draw(st.booleans()):  # bare Resque job: no id, so no kwargs, priority or times
        return Job(task_name=name, args=args, queue=q, extra=draw(EXTRA))
    return Job(task_name=name, args=args, kwargs=draw(st.dictionaries(TEXT, JSON, max_size=4)),
               id=draw(IDS), queue=q, enqueued_at=draw(st.none() | TIMES),
               priority=draw(st.integers(-100, 100)), extra=draw(EXTRA))


# --------------------------------------------------------------------------- pure round trips
@given(jobs())
def test_job_round_trips_through_its_resque_payload(job):
    raw = payload.encode_job(job)
    back = payload.decode_job(raw, job.queue)
    assert back == job
    assert back.raw == raw
    assert payload.encode_job(back) == raw  # stable bytes: LREM by value keeps working
    assert list(payload.json.loads(raw))[:2] == ["class", "args"]
    if job.id is None and not job.extra:
        assert raw == payload.dumps({"class": job.task_name, "args": job.args})  # Ruby's bytes


@given(jobs())
def test_job_round_trips_through_its_delayed_item(job):
    raw = payload.encode_delayed(job)
    body = payload.json.loads(raw)
    assert list(body)[:3] == ["class", "args", "queue"] and body["queue"] == job.queue
    assert payload.decode_job(raw, job.queue) == job


@given(st.binary(max_size=200))
def test_any_bytes_either_decode_or_raise_a_payload_error(raw):
    try:
        job = payload.decode_job(raw.decode("utf-8", "surrogateescape"), "q")
    except payload.PayloadError as exc:
        assert str(exc)
    else:
        assert isinstance(job.args, list) and job.task_name


@given(JSON)
def test_dumps_always_writes_utf8_json_that_reads_back(value):
    text = payload.dumps(value)
    text.encode("utf-8")  # never raises
    assert payload.json.loads(text) == value


# --------------------------------------------------------------------------- against Redis
@contextmanager
def _broker(url: str) -> Iterator[RedisBroker]:
    broker = RedisBroker(get_client(url), f"jqp{uuid.uuid4().hex[:10]}")
    try:
        yield broker
    finally:
        keys = list(broker.client.scan_iter(match=f"{broker.namespace}:*", count=1000))
        for start in range(0, len(keys), 500):
            broker.client.delete(*keys[start:start + 500])


def _server_now(broker: RedisBroker) -> float:
    seconds, micros = broker.client.time()
    return seconds + micros / 1e6


def _take_queued(broker: RedisBroker, queue: str) -> list[str]:
    """Everything on a queue (plain list, then the priority zset), removed."""
    client = broker.client
    plain = [raw.decode() for raw in client.lrange(broker.keys.queue(queue), 0, -1)]
    ranked = [raw.decode() for raw in client.zrange(broker.keys.priority_queue(queue), 0, -1)]
    client.delete(broker.keys.queue(queue), broker.keys.priority_queue(queue))
    return plain + ranked


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(job=jobs())
def test_delayed_job_round_trips_through_schedule_and_promotion(redis_server_url, job):
    with _broker(redis_server_url) as broker:
        broker.schedule(job, None, datetime.now(UTC) - timedelta(seconds=3))
        broker.schedule(job, None, datetime.now(UTC) + timedelta(days=1))  # stays put
        assert broker.promote_due() is not None
        [raw] = _take_queued(broker, job.queue)
        assert raw == payload.encode_delayed(job)
        assert payload.decode_job(raw, job.queue) == job
        [ts] = broker.client.zrange(broker.keys.delayed_schedule, 0, -1)
        assert broker.client.lrange(broker.keys.delayed(int(ts)), 0, -1) == [raw.encode()]


SCHEDULE = st.lists(
    st.tuples(st.integers(0, 40),  # job number (repeats are duplicates: Ruby allows them)
              st.integers(-40, -2) | st.integers(2, 40)),  # seconds from now, never "now"
    min_size=1, max_size=60)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schedule=SCHEDULE, promoters=st.integers(1, 4), cutoff=st.none() | st.integers(-45, 45))
def test_promotion_never_duplicates_or_drops_an_item(redis_server_url, schedule, promoters,
                                                     cutoff):
    with _broker(redis_server_url) as broker:
        now = _server_now(broker)
        until = None if cutoff is None else int(now) + cutoff
        expected_moved: Counter[str] = Counter()
        expected_left: Counter[tuple[int, str]] = Counter()
        for number, offset in schedule:
            job = Job(task_name="Archive", args=[number], queue=f"q{number % 3}")
            item = payload.encode_delayed(job)
            run_at = datetime.fromtimestamp(now + offset, UTC)
            broker.schedule(job, None, run_at)
            ts = math.ceil(run_at.timestamp())
            limit = int(now) if until is None else until
            if ts <= limit:  # due by the server clock (or the explicit cutoff)
                expected_moved[item] += 1
            else:
                expected_left[(ts, item)] += 1

        threads = [threading.Thread(target=broker.promote_due, args=(until,))
                   for _ in range(promoters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if until is None:
            assert _server_now(broker) - now < 1.5  # no second boundary crossed the schedule

        moved = Counter(raw for q in ("q0", "q1", "q2") for raw in _take_queued(broker, q))
        assert moved == expected_moved
        client = broker.client
        left: Counter[tuple[int, str]] = Counter()
        for ts in client.zrange(broker.keys.delayed_schedule, 0, -1):
            for raw in client.lrange(broker.keys.delayed(int(ts)), 0, -1):
                left[(int(ts), raw.decode())] += 1
        assert left == expected_left
        # The reverse index names exactly the buckets still holding each item.
        for item in {item for _, item in expected_left} | set(expected_moved):
            members = {m.decode() for m in client.smembers(broker.keys.timestamps(item))}
            assert members == {f"delayed:{ts}" for ts, i in expected_left if i == item}


def test_clock_is_the_servers(redis_server_url):
    with _broker(redis_server_url) as broker:
        assert abs(_server_now(broker) - time.time()) < 5
