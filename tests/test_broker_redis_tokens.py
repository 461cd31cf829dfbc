"""Reservation tokens (``jobqueue/broker/redis_tokens.py`` with ``reserve.lua``) on a real Redis.

Plain Resque jobs pushed twice with the same class and arguments (by Ruby, node-resque or
``enqueue_to``) have byte-identical payloads. Every conditional step on an in-flight job
matches the reservation's token, not the payload, so a step sent again after its reply was
lost acts on its own reservation only: the next identical job is neither acknowledged nor
started before it ran. Covered: the held-back acknowledgement pipelined with the next reserve,
a prefetched batch started by ``start.lua``, ``retry_later``/``requeue`` of a stale
reservation, the record's shape, a lost reserve reply, and records written without a token
(by an older jobqueue), which are still matched by their payload.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from jobqueue import payload
from jobqueue.broker.redis import RedisBroker
from jobqueue.job import Reservation
from tests.redis_support import sent_packets
from tests.test_broker_redis_prefetch import ERROR, _lose_replies, _ok, _send_raw

W = "testhost:4242:default"
PLAIN = '{"class":"Archive","args":[1]}'  # a Ruby job: no id, the same bytes every time


@pytest.fixture(autouse=True)
def _scripts_loaded(jq) -> None:
    """Redis knows every script: packets are counted and resent below, and a NOSCRIPT reply
    would add a resend of its own."""
    for script in jq.broker._scripts.values():
        jq.redis.script_load(script.script)


def _push_plain(jq, n: int) -> None:
    jq.redis.rpush(jq.key("queue", "default"), *([PLAIN] * n))


def _reserve(jq, prefetch: int = 1, broker: Any = None) -> Reservation:
    found = (broker or jq.broker).reserve(W, ["default"], prefetch=prefetch)
    assert isinstance(found, Reservation), found
    assert found.job.raw == PLAIN
    return found


def _record(jq) -> dict[str, Any] | None:
    held = jq.redis.get(jq.key("worker", W))
    return json.loads(held) if held else None


def _token(jq) -> str | None:
    record = _record(jq)
    return record["jq"] if record else None


def _waiting_tokens(jq) -> list[str]:
    return [json.loads(e)["jq"] for e in jq.redis.lrange(jq.key("jobqueue", "prefetch", W), 0, -1)]


def _processed(jq) -> int:
    return int(jq.redis.get(jq.key("stat", "processed")) or 0)


def _ordered_keys(raw: str) -> list[str]:
    return [key for key, _ in json.loads(raw, object_pairs_hook=list)]


# ------------------------------------------------------------------ resent acknowledgements
def test_a_resent_ack_of_a_plain_job_leaves_the_identical_next_one_in_flight(jq):
    _push_plain(jq, 2)
    first = _reserve(jq)
    first_token = _token(jq)
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    keys, args = jq.broker._deferred[0]
    finish = jq.broker._evalsha("finish", keys, args)
    with sent_packets(jq.broker.client) as packets:
        second = _reserve(jq)  # one packet: [finish(first), reserve]; both ran
    [packet] = packets
    assert packet.startswith(finish)
    second_token = _token(jq)
    assert second_token != first_token and _processed(jq) == 1
    # The replies were lost and the packet goes again, or only its acknowledgement: the ack
    # finds another reservation of the same bytes and leaves it alone.
    assert _send_raw(jq, finish, 1) == [0]
    again = _send_raw(jq, packet, 2)
    assert again[0] == 0 and again[1][0] == -1  # and the reserve redelivers the held job
    assert _token(jq) == second_token and _processed(jq) == 1
    assert jq.redis.llen(jq.key("queue", "default")) == 0
    assert jq.broker.finish(W, second.job, "default", _ok(), only_if_in_flight=True)
    assert _record(jq) is None and _processed(jq) == 2


def test_a_resent_packet_of_a_prefetched_batch_of_plain_jobs_acts_once_per_job(jq, caplog):
    _push_plain(jq, 3)
    taken = [_reserve(jq, 3)]
    base = _token(jq)
    assert _waiting_tokens(jq) == [f"{base}.1", f"{base}.2"]
    for k in (1, 2):
        jq.broker.finish(W, taken[-1].job, "default", _ok(), defer=True)
        with sent_packets(jq.broker.client) as packets:
            taken.append(_reserve(jq, 3))  # [finish(previous), start(next)], not waited for
        [packet] = packets
        jq.wait_for(lambda k=k: _token(jq) == f"{base}.{k}", message="Redis to run the packet")
        refill = int(k == 2)  # the batch's last start carries a refill (it finds nothing)
        # finish and start both acted
        assert _lose_replies(jq, 2 + refill) == b":1\r\n:1\r\n" + b"$-1\r\n" * refill
        jq.broker.flush()  # sent again on a new connection: the ack skips, the start is done
        assert _send_raw(jq, packet, 2 + refill) == [0, 2] + [None] * refill  # a third time
        assert _token(jq) == f"{base}.{k}" and _processed(jq) == k
        assert _waiting_tokens(jq) == [f"{base}.2"][k - 1:]
    jq.broker.finish(W, taken[-1].job, "default", _ok(), defer=True)
    assert jq.broker.reserve(W, ["default"], prefetch=3) is None
    jq.broker.flush()
    assert _record(jq) is None and _processed(jq) == 3
    assert jq.redis.llen(jq.key("failed")) == 0
    assert not [r for r in caplog.records if "moved away" in r.getMessage()]


def test_retry_and_requeue_of_a_stale_reservation_leave_an_identical_new_one_alone(jq):
    _push_plain(jq, 2)
    first = _reserve(jq)
    assert jq.broker.finish(W, first.job, "default", _ok())
    other = RedisBroker(jq.broker.client, jq.namespace)  # the same worker id, reserving again
    _reserve(jq, broker=other)
    held = _token(jq)
    later = datetime.now(UTC)
    assert not jq.broker.retry_later(W, first.job, "default", ERROR, later,
                                     only_if_in_flight=True)
    assert not jq.broker.requeue(W, first.job, "default", ERROR)
    assert not jq.broker.finish(W, first.job, "default", _ok(), only_if_in_flight=True)
    assert _token(jq) == held and _processed(jq) == 1
    assert other.requeue(W, first.job, "default", ERROR)  # its own reservation: same bytes
    assert _record(jq) is None and jq.redis.lrange(jq.key("queue", "default"), 0, -1) == [PLAIN]


# ------------------------------------------------------------------ the record
def test_the_record_carries_the_token_before_the_payload_and_stays_ruby_shaped(jq):
    _push_plain(jq, 4)
    first = _reserve(jq, 3)
    raw = jq.redis.get(jq.key("worker", W))
    assert _ordered_keys(raw) == ["queue", "run_at", "worker", "jq", "payload"]
    token = json.loads(raw)["jq"]
    assert raw == payload.encode_working("default", first.run_at, PLAIN, W, token)
    # What Ruby's Resque::Worker#job reads: the queue, run_at and the payload, verbatim.
    assert raw.startswith(f'{{"queue":"default","run_at":"{payload.format_run_at(first.run_at)}",')
    assert raw.endswith(f',"payload":{PLAIN}}}')
    assert json.loads(raw)["payload"] == {"class": "Archive", "args": [1]}
    for k, entry in enumerate(jq.redis.lrange(jq.key("jobqueue", "prefetch", W), 0, -1), 1):
        assert _ordered_keys(entry) == ["queue", "run_at", "worker", "jq", "payload"]
        assert json.loads(entry)["jq"] == f"{token}.{k}" and entry.endswith(f":{PLAIN}}}")
    jq.broker.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 3)
    jq.broker.flush()
    started = jq.redis.get(jq.key("worker", W))  # start.lua: run_at now, the rest kept
    assert _ordered_keys(started) == ["queue", "run_at", "worker", "jq", "payload"]
    assert started == payload.encode_working("default", second.run_at, PLAIN, W, f"{token}.1")
    jq.broker.release(W)
    jq.broker.finish(W, second.job, "default", _ok())
    _reserve(jq)
    assert _token(jq) not in (token, f"{token}.1", f"{token}.2")  # a new reserve, a new token


def test_a_lost_reserve_reply_hands_back_the_held_tokens(jq):
    _push_plain(jq, 3)
    _reserve(jq, 3)
    base = _token(jq)
    fresh = RedisBroker(jq.broker.client, jq.namespace)  # the reply never reached it
    again = _reserve(jq, 3, broker=fresh)
    assert [token for _, token in fresh._prefetched[W]] == [f"{base}.1", f"{base}.2"]
    fresh.finish(W, again.job, "default", _ok(), defer=True)
    _reserve(jq, 3, broker=fresh)
    fresh.flush()
    assert _token(jq) == f"{base}.1" and _processed(jq) == 1


# ------------------------------------------------------------------ records without a token
def test_a_record_without_a_token_is_still_settled_by_its_payload(jq):
    old = payload.encode_working("default", datetime.now(UTC), PLAIN, W)  # an older jobqueue
    jq.redis.set(jq.key("worker", W), old)
    broker = RedisBroker(jq.broker.client, jq.namespace)
    assert broker.in_flight(W) == ("default", PLAIN)
    job = payload.decode_job(PLAIN, "default")
    assert broker.finish(W, job, "default", _ok(), only_if_in_flight=True)
    assert _record(jq) is None and _processed(jq) == 1
    jq.redis.set(jq.key("worker", W), old)
    assert jq.broker.requeue(W, job, "default", None)  # a broker that never reserved for W
    assert jq.redis.lrange(jq.key("queue", "default"), 0, -1) == [PLAIN]


def test_a_prefetched_entry_without_a_token_is_started_by_its_payload(jq):
    now = datetime.now(UTC)
    jq.redis.set(jq.key("worker", W), payload.encode_working("default", now, PLAIN, W))
    jq.redis.rpush(jq.key("jobqueue", "prefetch", W),
                   payload.encode_working("default", now, PLAIN, W))
    fresh = RedisBroker(jq.broker.client, jq.namespace)
    first = _reserve(jq, 3, broker=fresh)  # held: redelivered, with its batch, no tokens
    assert [token for _, token in fresh._prefetched[W]] == [None]
    fresh.finish(W, first.job, "default", _ok(), defer=True)
    second = _reserve(jq, 3, broker=fresh)
    fresh.flush()
    assert "jq" not in _record(jq) and _processed(jq) == 1
    assert fresh.finish(W, second.job, "default", _ok(), only_if_in_flight=True)
    assert _record(jq) is None and _processed(jq) == 2


def test_a_reaper_settles_only_the_reservation_it_read(jq):
    _push_plain(jq, 2)
    first = _reserve(jq)
    reaper = RedisBroker(jq.broker.client, jq.namespace)  # judged the worker dead, read its job
    assert reaper.in_flight(W) == ("default", PLAIN)
    assert jq.broker.finish(W, first.job, "default", _ok())  # alive after all: it moves on
    _reserve(jq)
    held = _token(jq)
    job = payload.decode_job(PLAIN, "default")
    assert not reaper.finish(W, job, "default", _ok(), only_if_in_flight=True)
    assert not reaper.retry_later(W, job, "default", ERROR, datetime.now(UTC),
                                  only_if_in_flight=True)
    assert _token(jq) == held and _processed(jq) == 1
