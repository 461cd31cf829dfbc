"""``jobqueue.payload``: the bytes jobqueue writes to Redis and what it reads back.

Golden strings come from Resque's wire format as Ruby Resque 3.0, resque-scheduler 5.0 and
node-resque 9.7 actually write it (``/work/shared/design/resque-wire.md``): a byte that
differs breaks Ruby's remove-by-value operations, resque-web, or node's tooling.

Longer than 500 lines on purpose: mostly golden strings and parametrised cases, one per wire
format fact; they belong beside each other.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobqueue.job import Job
from jobqueue.payload import (
    Failure,
    PayloadError,
    ResultRecord,
    decode_failure,
    decode_job,
    decode_result,
    dumps,
    encode_delayed,
    encode_enqueued_result,
    encode_failure,
    encode_job,
    encode_result,
    encode_working,
    format_failed_at,
    format_heartbeat,
    format_iso,
    format_run_at,
    format_started,
    parse_time,
    run_at_of_iso,
    worker_name,
)

T = datetime(2026, 11, 23, 2, 27, 13, tzinfo=UTC)
PST = timezone(timedelta(hours=-8))


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------- dumps
def test_dumps_is_compact_raw_utf8_with_unescaped_slash():
    assert dumps({"k": "ü/x", "n": [1, 2.5, None, True]}) == '{"k":"ü/x","n":[1,2.5,null,true]}'


def test_dumps_keeps_insertion_order_of_keys():
    assert dumps({"b": 1, "a": 2, "c": {"z": 0, "y": 1}}) == '{"b":1,"a":2,"c":{"z":0,"y":1}}'


def test_dumps_replaces_lone_surrogates_with_replacement_character():
    text = dumps({"bad\udcff": ["x\ud800y"]})
    assert text == '{"bad\ufffd":["x\ufffdy"]}'
    text.encode("utf-8")  # strict UTF-8: would raise if a surrogate were left


def test_dumps_keeps_valid_astral_characters():
    assert dumps("😀") == '"😀"'


def test_dumps_raises_what_json_dumps_raises():
    circular: list[Any] = []
    circular.append(circular)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    for bad, error, text in [(circular, ValueError, "Circular reference detected"),
                             (looped, ValueError, "Circular reference detected"),
                             (float("nan"), ValueError, "Out of range float values"),
                             ({"when": object()}, TypeError, "is not JSON serializable"),
                             ({(1, 2): 3}, TypeError, "keys must be str")]:
        with pytest.raises(error, match=text):
            json.dumps(bad, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        with pytest.raises(error, match=text):
            dumps(bad)


def test_dumps_is_the_same_after_an_error():
    # the encoder is built once: a value that failed half-way leaves nothing behind
    shared = ["x"]
    with pytest.raises(TypeError):
        dumps([shared, object()])
    assert dumps([shared, shared]) == '[["x"],["x"]]'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_dumps_rejects_nan_and_infinity(value: float):
    with pytest.raises(ValueError):
        dumps({"args": [value]})


# --------------------------------------------------------------------------- writing times
def test_format_iso_is_utc_with_microseconds_and_z():
    assert format_iso(_utc(2026, 11, 24, 19, 23, 21, 277068)) == "2026-11-24T19:23:21.277068Z"
    assert format_iso(T) == "2026-11-23T02:27:13.000000Z"


def test_format_run_at_is_resque_run_at_to_the_second():
    assert format_run_at(T.replace(microsecond=999999)) == "2026-11-23T02:27:13Z"


def test_format_heartbeat_is_iso_with_numeric_offset():
    assert format_heartbeat(T) == "2026-11-23T02:27:13+00:00"


def test_format_started_is_ruby_time_to_s():
    assert format_started(T) == "2026-11-23 02:27:13 +0000"


def test_format_failed_at_is_resque_strftime_with_zone():
    assert format_failed_at(_utc(2026, 11, 23, 2, 27, 7)) == "2026/11/23 02:27:07 UTC"


@pytest.mark.parametrize("fmt, expected", [
    (format_iso, "2026-11-24T17:00:00.000000Z"),
    (format_run_at, "2026-11-24T17:00:00Z"),
    (format_heartbeat, "2026-11-24T17:00:00+00:00"),
    (format_started, "2026-11-24 17:00:00 +0000"),
    (format_failed_at, "2026/11/24 17:00:00 UTC"),
])
def test_every_writer_converts_other_zones_to_utc(fmt: Any, expected: str):
    assert fmt(datetime(2026, 11, 24, 9, 0, tzinfo=PST)) == expected


# --------------------------------------------------------------------------- reading times
@pytest.mark.parametrize("text, expected", [
    # ISO 8601: what jobqueue, Ruby's heartbeat and ActiveJob write
    ("2026-11-23T02:27:13Z", _utc(2026, 11, 23, 2, 27, 13)),
    ("2026-11-23T02:27:13+00:00", _utc(2026, 11, 23, 2, 27, 13)),
    ("2026-11-24T09:00:00-08:00", _utc(2026, 11, 24, 17, 0)),
    ("2026-11-24T09:00:00+05:30", _utc(2026, 11, 24, 3, 30)),
    ("2026-11-24T19:23:21.277068Z", _utc(2026, 11, 24, 19, 23, 21, 277068)),
    ("2026-01-12T20:23:55.123456789Z", _utc(2026, 1, 12, 20, 23, 55, 123456)),
    ("2026-11-23T02:27:13", _utc(2026, 11, 23, 2, 27, 13)),  # no zone: UTC
    # Ruby Time#to_s (worker:<id>:started, delayed:last_enqueued_at)
    ("2026-11-23 02:27:13 +0000", _utc(2026, 11, 23, 2, 27, 13)),
    ("2026-11-24 09:00:00 -0800", _utc(2026, 11, 24, 17, 0)),
    ("2026-11-24 09:00:00 +0530", _utc(2026, 11, 24, 3, 30)),
    ("2026-11-24 09:00:00 -05:30", _utc(2026, 11, 24, 14, 30)),
    # Resque failed_at, in the worker's local zone
    ("2026/11/23 02:27:07 UTC", _utc(2026, 11, 23, 2, 27, 7)),
    ("2026/11/24 09:00:00 PST", _utc(2026, 11, 24, 17, 0)),
    ("2026/07/01 10:00:00 PDT", _utc(2026, 7, 1, 17, 0)),
    ("2026/07/01 10:00:00 CEST", _utc(2026, 7, 1, 8, 0)),
    ("2026/01/01 10:00:00 CET", _utc(2026, 1, 1, 9, 0)),
    ("2026/01/01 10:00:00 JST", _utc(2026, 1, 1, 1, 0)),
    ("2026/01/01 10:00:00 ACST", _utc(2026, 1, 1, 0, 30)),
    ("2026/01/01 10:00:00 est", _utc(2026, 1, 1, 15, 0)),
    ("2026/11/23 02:27:07", _utc(2026, 11, 23, 2, 27, 7)),
    # node-resque Date#toString()
    ("Mon Nov 23 2026 02:27:55 GMT+0000 (Coordinated Universal Time)",
     _utc(2026, 11, 23, 2, 27, 55)),
    ("Mon Nov 23 2026 09:27:55 GMT+0700 (Indochina Time)", _utc(2026, 11, 23, 2, 27, 55)),
    ("Sun Nov 22 2026 21:27:55 GMT-0500 (Eastern Standard Time)",
     _utc(2026, 11, 23, 2, 27, 55)),
    ("Mon Nov 23 2026 02:27:55 GMT+0000", _utc(2026, 11, 23, 2, 27, 55)),
    # epoch seconds (node's started, pyres' run_at)
    ("1795400833", _utc(2026, 11, 23, 2, 27, 13)),
    ("1795400833.25", _utc(2026, 11, 23, 2, 27, 13, 250000)),
    ("  2026-11-23T02:27:13Z  ", _utc(2026, 11, 23, 2, 27, 13)),
])
def test_parse_time_reads_every_format_resque_clients_write(text: str, expected: datetime):
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_parse_time_reads_epoch_numbers():
    assert parse_time(1795400833) == _utc(2026, 11, 23, 2, 27, 13)
    assert parse_time(1795400833.5) == _utc(2026, 11, 23, 2, 27, 13, 500000)


@pytest.mark.parametrize("fmt", [format_iso, format_run_at, format_heartbeat, format_started,
                                 format_failed_at])
def test_parse_time_reads_back_everything_jobqueue_writes(fmt: Any):
    assert parse_time(fmt(T)) == T


@pytest.mark.parametrize("value", [
    None, "", "nonsense", "nan", "2026/11/24 09:00:00 XYZ", "Mon Foo 23 2026 02:27:55 GMT+0000",
    [2026], {"t": 1},
])
def test_parse_time_returns_none_for_unreadable_values(value: Any):
    assert parse_time(value) is None


@pytest.mark.parametrize("value", [
    "2026-13-45T02:27:13Z",  # ISO-shaped, impossible date
    "2026/11/24 25:00:00 UTC",
    "2026-02-30 10:00:00 +0000",
    "2026-11-24 09:00:00 +9900",
    "2026-11-24T09:00:00+99:00",
    "Mon Nov 31 2026 02:27:55 GMT+0000",
    "Mon Nov 23 2026 02:27:55 GMT+9900",
    "inf",
    "1e400",
    1e20,
    float("nan"),
])
def test_parse_time_returns_none_rather_than_raising_on_impossible_times(value: Any):
    assert parse_time(value) is None


# --------------------------------------------------------------------------- jobs
def test_plain_job_is_byte_identical_to_ruby_resque_enqueue():
    job = Job(task_name="Archive", args=[35, "tar", {"k": "ü/x"}])
    assert encode_job(job) == '{"class":"Archive","args":[35,"tar",{"k":"ü/x"}]}'


def test_plain_job_without_args_has_an_empty_array():
    assert encode_job(Job(task_name="Ping", args=[])) == '{"class":"Ping","args":[]}'


def test_jobqueue_job_puts_class_and_args_first_then_its_own_fields():
    job = Job(task_name="shop.tasks.send_receipt", args=[42],
              kwargs={"email": "ann@example.com"}, id="689f6cb149586bbd9ddb591a1f2f3201",
              queue="default", enqueued_at=_utc(2026, 11, 24, 19, 23, 21, 277068))
    assert encode_job(job) == (
        '{"class":"shop.tasks.send_receipt","args":[42],'
        '"id":"689f6cb149586bbd9ddb591a1f2f3201","kwargs":{"email":"ann@example.com"},'
        '"enqueued_at":"2026-11-24T19:23:21.277068Z"}'
    )


def test_jobqueue_job_writes_priority_before_enqueued_at_and_attempts_last():
    job = Job(task_name="t.x", args=[], id="abc", priority=10,
              enqueued_at=_utc(2026, 1, 1), extra={"attempts": 2})
    assert encode_job(job) == (
        '{"class":"t.x","args":[],"id":"abc","kwargs":{},"priority":10,'
        '"enqueued_at":"2026-01-01T00:00:00.000000Z","attempts":2}'
    )


def test_jobqueue_job_omits_zero_priority_and_missing_enqueued_at():
    assert encode_job(Job(task_name="t.x", args=[1], id="abc")) == (
        '{"class":"t.x","args":[1],"id":"abc","kwargs":{}}'
    )


def test_delayed_item_is_byte_identical_to_resque_scheduler():
    job = Job(task_name="Mail", args=[{"user_id": 5}], queue="mail")
    assert encode_delayed(job) == '{"class":"Mail","args":[{"user_id":5}],"queue":"mail"}'


def test_delayed_jobqueue_job_puts_queue_third():
    job = Job(task_name="shop.tasks.send_receipt", args=[44], id="6278ee317bba9ab30ad1a6936d3bdd44",
              queue="default", enqueued_at=_utc(2026, 11, 24, 19, 23, 21, 289194))
    assert encode_delayed(job) == (
        '{"class":"shop.tasks.send_receipt","args":[44],"queue":"default",'
        '"id":"6278ee317bba9ab30ad1a6936d3bdd44","kwargs":{},'
        '"enqueued_at":"2026-11-24T19:23:21.289194Z"}'
    )


def test_decode_reads_ruby_payload():
    raw = '{"class":"Archive","args":[35,"tar",{"k":"ü/x"}]}'
    job = decode_job(raw, "file_serve")
    assert job == Job(task_name="Archive", args=[35, "tar", {"k": "ü/x"}], queue="file_serve")
    assert job.id is None and job.kwargs == {} and job.extra == {}
    assert job.raw == raw


def test_decode_reads_bytes_as_utf8():
    raw = '{"class":"Archive","args":["ü"]}'
    assert decode_job(raw.encode(), "q") == decode_job(raw, "q")
    assert decode_job(raw.encode(), "q").raw == raw


def test_decode_reads_node_resque_payload_and_drops_its_queue_field():
    job = decode_job('{"class":"Add","queue":"math","args":[1,2]}', "math")
    assert (job.task_name, job.args, job.queue, job.extra) == ("Add", [1, 2], "math", {})


def test_decode_takes_the_queue_from_the_caller_not_the_payload():
    assert decode_job('{"class":"Add","queue":"other","args":[]}', "math").queue == "math"


def test_decode_reads_node_empty_object_args_as_no_arguments():
    assert decode_job('{"class":"Ping","args":{}}', "q").args == []


def test_decode_reads_a_non_empty_object_args_as_the_single_argument():
    assert decode_job('{"class":"Ping","args":{"a":1}}', "q").args == [{"a": 1}]


def test_decode_reads_missing_args_as_no_arguments():
    assert decode_job('{"class":"Ping"}', "q").args == []


def test_decode_keeps_unknown_fields_in_extra():
    job = decode_job('{"class":"A","args":[],"jid":"x1","prefix":"p","attempts":2}', "q")
    assert job.extra == {"jid": "x1", "prefix": "p", "attempts": 2}


def test_decode_reads_jobqueue_fields():
    raw = ('{"class":"t.x","args":[1],"id":"abc","kwargs":{"k":2},"priority":-3,'
           '"enqueued_at":"2026-11-24T19:23:21.277068Z"}')
    job = decode_job(raw, "q")
    assert job == Job(task_name="t.x", args=[1], kwargs={"k": 2}, id="abc", queue="q",
                      enqueued_at=_utc(2026, 11, 24, 19, 23, 21, 277068), priority=-3)


def test_decode_reads_an_unreadable_enqueued_at_as_none():
    assert decode_job('{"class":"A","args":[],"enqueued_at":"garbage"}', "q").enqueued_at is None
    assert decode_job('{"class":"A","args":[],"enqueued_at":"2026-13-45T00:00:00Z"}',
                      "q").enqueued_at is None


@pytest.mark.parametrize("job", [
    Job(task_name="Archive", args=[35, "tar", {"k": "ü/x"}], queue="q"),
    Job(task_name="t.x", args=[1, [2, {"a": None}]], kwargs={"k": "v"}, id="abc", queue="q",
        enqueued_at=_utc(2026, 1, 1, 0, 0, 0, 1), priority=7, extra={"attempts": 3}),
])
def test_encode_then_decode_gives_the_same_job_and_the_same_bytes(job: Job):
    raw = encode_job(job)
    again = decode_job(raw, "q")
    assert again == job
    assert encode_job(again) == raw


def test_decode_then_encode_of_ruby_bytes_is_byte_identical():
    raw = '{"class":"Archive","args":[35,"tar",{"k":"ü/x"}]}'
    assert encode_job(decode_job(raw, "q")) == raw


@pytest.mark.parametrize("raw, message", [
    ("nope", "payload is not valid JSON (Expecting value: line 1 column 1 (char 0)): nope"),
    ("[1]", "payload must be a JSON object, got list"),
    ('"x"', "payload must be a JSON object, got str"),
    ("null", "payload must be a JSON object, got NoneType"),
    ('{"args":[]}', 'payload has no "class" string naming the job'),
    ('{"class":"","args":[]}', 'payload has no "class" string naming the job'),
    ('{"class":5,"args":[]}', 'payload has no "class" string naming the job'),
    ('{"class":"A","args":"x"}', '"args" must be a JSON array, got str'),
    ('{"class":"A","args":5}', '"args" must be a JSON array, got int'),
    ('{"class":"A","args":[],"kwargs":[]}', '"kwargs" must be a JSON object, got list'),
    ('{"class":"A","args":[],"id":5}', '"id" must be a string of 1 to 63 characters'),
    ('{"class":"A","args":[],"id":""}', '"id" must be a string of 1 to 63 characters'),
    ('{"class":"A","args":[],"id":"' + "x" * 64 + '"}',
     '"id" must be a string of 1 to 63 characters'),
    ('{"class":"A","args":[],"priority":"1"}', '"priority" must be an integer'),
    ('{"class":"A","args":[],"priority":1.5}', '"priority" must be an integer'),
    ('{"class":"A","args":[],"priority":true}', '"priority" must be an integer'),
    ('{"class":"A","args":["\\ud800"]}',
     "payload escapes a lone UTF-16 surrogate (\\uD800-\\uDFFF), which is not Unicode text"),
    ('{"class":"A","args":["\udcff"]}', "payload is not valid UTF-8 text"),
])
def test_decode_rejects_what_is_not_a_resque_payload_saying_why(raw: str, message: str):
    with pytest.raises(PayloadError) as info:
        decode_job(raw, "q")
    assert str(info.value) == message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_rejects_nan_and_infinity_which_no_resque_client_reads(constant: str):
    # Python's json would read them, but such a job could never be written back (dumps).
    raw = f'{{"class":"Archive","args":[{constant}]}}'
    with pytest.raises(PayloadError) as info:
        decode_job(raw, "q")
    assert str(info.value) == (
        f"payload is not valid JSON ({constant} is not a JSON value): {raw}")


def test_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)


def test_decode_accepts_an_id_of_63_characters():
    assert decode_job('{"class":"A","args":[],"id":"' + "x" * 63 + '"}', "q").id == "x" * 63


def test_decode_accepts_a_surrogate_pair_escape():
    assert decode_job('{"class":"A","args":["\\ud83d\\ude00"]}', "q").args == ["😀"]


def test_invalid_json_error_clips_long_payloads():
    raw = "x" * 300
    with pytest.raises(PayloadError) as info:
        decode_job(raw, "q")
    assert str(info.value).endswith(": " + "x" * 200 + "... (300 chars)")


# --------------------------------------------------------------------------- working
def test_working_record_is_ruby_shape_with_payload_verbatim():
    assert encode_working("slow", T, '{"class":"Slow","args":[3]}') == (
        '{"queue":"slow","run_at":"2026-11-23T02:27:13Z","payload":{"class":"Slow","args":[3]}}'
    )


def test_working_record_escapes_the_queue_and_embeds_payload_bytes_unchanged():
    raw = '{"class":"A","args":["ü/x"],"id":"abc","kwargs":{}}'
    text = encode_working('odd"q', T, raw)
    assert json.loads(text) == {"queue": 'odd"q', "run_at": "2026-11-23T02:27:13Z",
                                "payload": json.loads(raw)}
    assert text.endswith(f'"payload":{raw}}}')


def test_working_record_with_a_worker_id_names_the_worker_as_node_resque_does():
    text = encode_working("slow", T, '{"class":"Slow","args":[3]}', "web1:4242:slow,q:x")
    assert text == ('{"queue":"slow","run_at":"2026-11-23T02:27:13Z","worker":"web1:4242",'
                    '"payload":{"class":"Slow","args":[3]}}')


@pytest.mark.parametrize("worker_id, name", [
    ("web1:4242:critical,default", "web1:4242"), ("web1:4242:a:b", "web1:4242"),
    ("odd", "odd"), ("host:1", "host:1")])
def test_worker_name_is_the_id_up_to_its_second_colon(worker_id, name):
    assert worker_name(worker_id) == name


def test_reserve_lua_writes_exactly_the_bytes_of_encode_working(jq):
    raw = '{"class":"A","args":["ü/x",1],"id":"abc","kwargs":{}}'
    jq.redis.rpush(jq.key("queue", "q:1"), raw)
    worker_id = "web1:4242:q:1,other"
    reservation = jq.broker.reserve(worker_id, ["q:1"])
    written = jq.redis.get(jq.key("worker", worker_id))
    token = json.loads(written)["jq"]
    assert re.fullmatch(r"[0-9a-f]+", token), token
    assert written == encode_working("q:1", reservation.run_at, raw, worker_id, token)


def test_working_record_with_a_token_has_it_between_the_worker_and_the_payload():
    text = encode_working("slow", T, '{"class":"Slow","args":[3]}', "web1:4242:slow", "ab1")
    assert text == ('{"queue":"slow","run_at":"2026-11-23T02:27:13Z","worker":"web1:4242",'
                    '"jq":"ab1","payload":{"class":"Slow","args":[3]}}')


# --------------------------------------------------------------------------- failures
RUBY_FAILURE = (
    '{"failed_at":"2026/11/23 02:27:07 UTC","payload":{"class":"Archive","args":["fail",1]},'
    '"exception":"RuntimeError","error":"boom é","backtrace":["t1.rb:7:in `perform\'"],'
    '"worker":"vm:31273:file_serve","queue":"file_serve"}'
)


def _ruby_failure(**changes: Any) -> Failure:
    fields: dict[str, Any] = dict(
        failed_at=_utc(2026, 11, 23, 2, 27, 7), payload={"class": "Archive", "args": ["fail", 1]},
        exception="RuntimeError", error="boom é", backtrace=["t1.rb:7:in `perform'"],
        worker="vm:31273:file_serve", queue="file_serve")
    fields.update(changes)
    return Failure(**fields)


def test_failure_record_is_byte_identical_to_ruby_failure_redis():
    assert encode_failure(_ruby_failure()) == RUBY_FAILURE


def test_decode_reads_ruby_failure_record():
    failure = decode_failure(RUBY_FAILURE)
    assert failure == _ruby_failure()
    assert failure.task_name == "Archive"
    assert failure.raw == RUBY_FAILURE


def test_ruby_failure_record_round_trips_byte_for_byte():
    assert encode_failure(decode_failure(RUBY_FAILURE)) == RUBY_FAILURE
    assert encode_failure(decode_failure(RUBY_FAILURE.encode())) == RUBY_FAILURE


def test_ruby_requeued_record_round_trips_with_retried_at_last():
    raw = RUBY_FAILURE[:-1] + ',"retried_at":"2026/11/23 02:30:00 UTC"}'
    failure = decode_failure(raw)
    assert failure.retried_at == _utc(2026, 11, 23, 2, 30)
    assert encode_failure(failure) == raw


def test_failure_writes_extra_fields_then_jobqueue_id_last():
    failure = _ruby_failure(retried_at=_utc(2026, 11, 23, 2, 30), extra={"note": 1}, id="f1")
    assert encode_failure(failure) == (
        RUBY_FAILURE[:-1] + ',"retried_at":"2026/11/23 02:30:00 UTC","note":1,"id":"f1"}'
    )


def test_jobqueue_failure_record_round_trips():
    failure = _ruby_failure(payload={"class": "t.x", "args": [], "id": "abc", "kwargs": {}},
                            exception="ValueError", backtrace=["Traceback:", "ValueError: x"],
                            retried_at=_utc(2026, 11, 24), extra={"other": [1]}, id="f1")
    raw = encode_failure(failure)
    assert decode_failure(raw) == failure
    assert encode_failure(decode_failure(raw)) == raw


def test_decode_reads_ruby_failure_in_a_local_zone_and_writes_it_back_in_utc():
    raw = RUBY_FAILURE.replace("2026/11/23 02:27:07 UTC", "2026/11/24 09:00:00 PST")
    failure = decode_failure(raw)
    assert failure.failed_at == _utc(2026, 11, 24, 17, 0)
    assert json.loads(encode_failure(failure))["failed_at"] == "2026/11/24 17:00:00 UTC"


def test_decode_reads_node_resque_failure_record():
    raw = ('{"worker":"host:12","queue":"math","payload":{"class":"Add","queue":"math",'
           '"args":[1]},"exception":"Error","error":"boom","backtrace":null,'
           '"failed_at":"Mon Nov 23 2026 02:27:55 GMT+0000 (Coordinated Universal Time)"}')
    failure = decode_failure(raw)
    assert failure == Failure(
        failed_at=_utc(2026, 11, 23, 2, 27, 55),
        payload={"class": "Add", "queue": "math", "args": [1]}, exception="Error",
        error="boom", backtrace=[], worker="host:12", queue="math")
    assert failure.task_name == "Add"


def test_decode_failure_reads_a_string_backtrace_as_lines():
    failure = decode_failure('{"backtrace":"a\\nb","payload":{"class":"A","args":[]}}')
    assert failure.backtrace == ["a", "b"]


def test_decode_failure_tolerates_missing_and_odd_fields():
    failure = decode_failure('{"payload":"not a dict","backtrace":5,"id":7,"failed_at":"x"}')
    assert failure.failed_at is None and failure.retried_at is None
    assert failure.backtrace == []
    assert failure.id is None
    assert (failure.exception, failure.error, failure.worker, failure.queue) == ("", "", "", "")
    assert failure.task_name == ""


def test_decode_failure_keeps_unknown_fields_in_extra():
    raw = RUBY_FAILURE[:-1] + ',"hostname":"vm","pid":1}'
    assert decode_failure(raw).extra == {"hostname": "vm", "pid": 1}


@pytest.mark.parametrize("raw, message", [
    ("{oops", "failure record is not valid JSON"),
    ("[1]", "failure record must be a JSON object"),
])
def test_decode_failure_rejects_what_is_not_a_record(raw: str, message: str):
    with pytest.raises(PayloadError, match=message.replace("(", r"\(")):
        decode_failure(raw)


def test_encode_failure_without_a_time_writes_now():
    before = datetime.now(UTC).replace(microsecond=0)
    written = json.loads(encode_failure(_ruby_failure(failed_at=None)))["failed_at"]
    after = datetime.now(UTC)
    parsed = parse_time(written)
    assert parsed is not None and before <= parsed <= after


def test_failure_with_a_lone_surrogate_in_the_message_stays_valid_utf8():
    raw = encode_failure(_ruby_failure(error="bad \ud800 text"))
    raw.encode("utf-8")
    assert decode_failure(raw).error == "bad \ufffd text"


# --------------------------------------------------------------------------- results
def _record(**changes: Any) -> ResultRecord:
    fields: dict[str, Any] = dict(
        id="r1", task_name="t.x", status="SUCCESSFUL", queue="mail", priority=-5,
        backend="default", args=[1, "ü"], kwargs={"k": [None]},
        enqueued_at=_utc(2026, 1, 1, 0, 0, 0, 1), started_at=_utc(2026, 1, 1, 0, 0, 1),
        last_attempted_at=_utc(2026, 1, 1, 0, 0, 2), finished_at=_utc(2026, 1, 1, 0, 0, 3),
        run_after=_utc(2026, 1, 1, 0, 0, 4), return_value={"ok": True},
        errors=[{"exception_class_path": "builtins.ValueError", "traceback": "tb"}],
        worker_ids=["h:1:q", "h:2:q"])
    fields.update(changes)
    return ResultRecord(**fields)


def test_result_fields_are_strings_with_iso_times_and_json_values():
    assert encode_result(_record()) == {
        "task": "t.x", "status": "SUCCESSFUL", "queue": "mail", "priority": "-5",
        "backend": "default", "args": '[1,"ü"]', "kwargs": '{"k":[null]}',
        "errors": '[{"exception_class_path":"builtins.ValueError","traceback":"tb"}]',
        "worker_ids": '["h:1:q","h:2:q"]',
        "enqueued_at": "2026-01-01T00:00:00.000001Z", "started_at": "2026-01-01T00:00:01.000000Z",
        "last_attempted_at": "2026-01-01T00:00:02.000000Z",
        "finished_at": "2026-01-01T00:00:03.000000Z", "run_after": "2026-01-01T00:00:04.000000Z",
        "return_value": '{"ok":true}',
    }


def test_result_record_round_trips():
    record = _record()
    assert decode_result("r1", encode_result(record)) == record


def test_result_without_times_omits_them_and_round_trips():
    record = _record(status="READY", enqueued_at=None, started_at=None, last_attempted_at=None,
                     finished_at=None, run_after=None, return_value=None, errors=[],
                     worker_ids=[])
    fields = encode_result(record)
    assert not {"enqueued_at", "started_at", "finished_at", "run_after",
                "last_attempted_at", "return_value"} & set(fields)
    assert decode_result("r1", fields) == record


def test_only_a_successful_result_stores_a_return_value():
    fields = encode_result(_record(status="FAILED", return_value="ignored"))
    assert "return_value" not in fields
    assert decode_result("r1", fields).return_value is None


def test_successful_none_return_value_is_stored_as_null():
    fields = encode_result(_record(return_value=None))
    assert fields["return_value"] == "null"
    assert decode_result("r1", fields).return_value is None


def test_decode_result_fills_defaults_for_missing_optional_fields():
    record = decode_result("r9", {"task": "t.x", "status": "READY"})
    assert record == ResultRecord(id="r9", task_name="t.x", status="READY", queue="default",
                                  priority=0, backend="default", args=[], kwargs={})


@pytest.mark.parametrize("fields, detail", [
    ({"status": "READY"}, "'task'"),
    ({"task": "t.x"}, "'status'"),
    ({"task": "t.x", "status": "READY", "priority": "high"}, "invalid literal"),
    ({"task": "t.x", "status": "READY", "args": "[1,"}, "Expecting value"),
    ({"task": "t.x", "status": "SUCCESSFUL", "return_value": "{"}, "Expecting property name"),
])
def test_decode_result_reports_a_corrupt_hash(fields: dict[str, str], detail: str):
    with pytest.raises(PayloadError) as info:
        decode_result("r1", fields)
    assert str(info.value).startswith("result 'r1' is corrupt: ")
    assert detail in str(info.value)


def test_result_with_a_lone_surrogate_return_value_stays_valid_utf8():
    fields = encode_result(_record(return_value="bad \ud800"))
    fields["return_value"].encode("utf-8")
    assert decode_result("r1", fields).return_value == "bad \ufffd"


# --------------------------------------------------------------------------- compact results
def _job_of(record: ResultRecord, **changes: Any) -> Job:
    values: dict[str, Any] = dict(
        task_name=record.task_name, args=record.args, kwargs=record.kwargs, id=record.id,
        queue=record.queue, enqueued_at=record.enqueued_at, priority=record.priority)
    values.update(changes)
    return Job(**values)


def _stored(record: ResultRecord, job: Job, raw: str | None = None) -> dict[str, str]:
    """The hash push.lua writes: ``payload`` (the job's bytes) and the compact fields."""
    return {"payload": raw if raw is not None else encode_job(job),
            **encode_enqueued_result(record, job)}


def test_a_ready_result_on_the_default_queue_is_its_status_and_its_payload():
    record = _record(status="READY", queue="default", priority=0, started_at=None,
                     last_attempted_at=None, finished_at=None, run_after=None,
                     return_value=None, errors=[], worker_ids=[])
    assert encode_enqueued_result(record, _job_of(record)) == {"status": "READY"}


def test_a_compact_result_writes_only_what_the_payload_does_not_say():
    record = _record(backend="other")
    assert encode_enqueued_result(record, _job_of(record)) == {
        "status": "SUCCESSFUL", "queue": "mail", "backend": "other",
        "errors": '[{"exception_class_path":"builtins.ValueError","traceback":"tb"}]',
        "worker_ids": '["h:1:q","h:2:q"]', "started_at": "2026-01-01T00:00:01.000000Z",
        "last_attempted_at": "2026-01-01T00:00:02.000000Z",
        "finished_at": "2026-01-01T00:00:03.000000Z", "run_after": "2026-01-01T00:00:04.000000Z",
        "return_value": '{"ok":true}',
    }


@pytest.mark.parametrize("changes", [
    {}, {"status": "READY", "return_value": None}, {"priority": 0, "queue": "default"},
    {"args": [], "kwargs": {}, "errors": [], "worker_ids": []}, {"enqueued_at": None},
    {"args": [[1, {"deep": ["é", None, 2.5]}]], "kwargs": {"k": {"n": [True, False]}}},
    {"status": "FAILED", "return_value": None}, {"backend": "other", "priority": 100},
])
def test_a_compact_result_round_trips(changes: dict[str, Any]):
    record = _record(**changes)
    assert decode_result("r1", _stored(record, _job_of(record))) == record


def test_a_compact_result_round_trips_through_a_delayed_item_too():
    record = _record(status="READY", return_value=None)
    job = _job_of(record)
    assert decode_result("r1", _stored(record, job, encode_delayed(job))) == record


def test_fields_a_job_does_not_match_are_written_out_and_win_over_the_payload():
    record = _record(status="READY", return_value=None)
    job = _job_of(record, task_name="t.other", args=[9], kwargs={}, priority=3,
                  enqueued_at=_utc(2030, 1, 1))
    fields = encode_enqueued_result(record, job)
    assert {"task", "args", "kwargs", "priority", "enqueued_at"} <= set(fields)
    assert decode_result("r1", _stored(record, job)) == record


def test_decode_result_reads_the_full_layout_of_earlier_versions():
    # Byte for byte what jobqueue wrote at enqueue before the compact layout.
    fields = {"task": "t.x", "status": "READY", "queue": "mail", "priority": "-5",
              "backend": "default", "args": '[1,"ü"]', "kwargs": '{"k":[null]}',
              "errors": "[]", "worker_ids": "[]", "enqueued_at": "2026-01-01T00:00:00.000001Z"}
    assert decode_result("r1", fields) == ResultRecord(
        id="r1", task_name="t.x", status="READY", queue="mail", priority=-5, backend="default",
        args=[1, "ü"], kwargs={"k": [None]}, enqueued_at=_utc(2026, 1, 1, 0, 0, 0, 1))


@pytest.mark.parametrize("fields, detail", [
    ({"status": "READY", "payload": "{"}, "Expecting property name"),
    ({"status": "READY", "payload": '["not", "a", "job"]'}, "not a Resque job"),
    ({"status": "READY", "payload": '{"args": []}'}, "not a Resque job"),
    ({"status": "READY", "payload": '{"class": "t.x", "priority": "high"}'}, "invalid literal"),
    ({"payload": '{"class": "t.x"}'}, "'status'"),
])
def test_decode_result_reports_a_corrupt_compact_hash(fields: dict[str, str], detail: str):
    with pytest.raises(PayloadError) as info:
        decode_result("r1", fields)
    assert str(info.value).startswith("result 'r1' is corrupt: ")
    assert detail in str(info.value)


@pytest.mark.parametrize("value", [
    None, True, 0, -1.5, 1e300, "ü/\\\"x\u2028", [], {}, [1, [2, {"a": None}]],
    {"k": "é", "n": {"deep": [True, False, 12345678901234567890]}}, "bad \udcff",
])
def test_dumps_writes_what_json_dumps_writes_with_those_options(value: Any):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert dumps(value) == expected.replace("\udcff", "\ufffd")


@pytest.mark.parametrize("dt", [
    datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, 0, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 19, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-5)))])
def test_fast_time_formats_write_what_strftime_would(dt):
    utc = dt.astimezone(UTC)
    assert format_iso(dt) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert format_run_at(dt) == utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run_at_of_iso(format_iso(dt)) == format_run_at(dt)


def test_format_iso_keeps_its_second_apart_from_other_dates_with_the_same_clock_time():
    # it keeps the text of the last second it wrote: every field of the date must count
    now = datetime(2026, 12, 4, 2, 47, 13, 120000, tzinfo=UTC)
    others = [now.replace(microsecond=5), now.replace(day=5), now.replace(month=11),
              now.replace(year=2027), now.replace(hour=3), now.replace(minute=48),
              now.replace(second=14), now.astimezone(timezone(timedelta(hours=-8))),
              datetime(2026, 12, 4, 18, 47, 13, 120000, tzinfo=timezone(timedelta(hours=16)))]
    for dt in [now, *others, now, *reversed(others)]:
        assert format_iso(dt) == dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
