"""Encode and decode everything jobqueue stores in Redis: jobs, failures, results, times.

Pure functions only (no Redis, no Django settings), pinned by golden bytes in the tests. JSON
is written the way Ruby's json gem writes it (compact separators, raw UTF-8, insertion order)
so Resque's by-value operations (``LREM``) match across languages.

Over 500 lines on purpose: the payload encoding lives in one place, and jobs, failures,
results and times share one encoder and one set of time formats (both on the hot path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .job import Job

RUBY_FAILED_AT = "%Y/%m/%d %H:%M:%S UTC"


class PayloadError(ValueError):
    """A queue entry or record that is not what Resque's format says it must be."""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


#: ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)`` builds this
#: very encoder on every call; building it once is the same output for less work.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
#: And ``_ENCODER.encode`` builds its C encoder (and a dict to spot circular values) on every
#: call, which costs more than encoding a short list: 2.8 µs against 0.6 for a list of two
#: strings (2-core AMD VM). This one is built once, with ``_ENCODER``'s own arguments and
#: without that dict: a circular value ends in ``RecursionError`` and goes to ``_ENCODER``,
#: which raises its usual ``ValueError``.
#: (Without CPython's ``_json`` it is None, and ``_ENCODER.encode`` does the work.)
_C_ENCODE = None if c_make_encoder is None else c_make_encoder(
    None, _ENCODER.default, encode_basestring, None, _ENCODER.key_separator,
    _ENCODER.item_separator, _ENCODER.sort_keys, _ENCODER.skipkeys, _ENCODER.allow_nan)


def dumps(obj: Any) -> str:
    """Serialise like Ruby's json gem: compact, UTF-8, no NaN.

    Lone surrogates (undecodable bytes kept by ``surrogateescape``, or a task's own bad
    strings) cannot be written as UTF-8 nor read by Lua's cjson even as ``\\u`` escapes:
    each becomes U+FFFD, so every record stays valid JSON for every Resque client.
    """
    try:
        text = _ENCODER.encode(obj) if _C_ENCODE is None else "".join(_C_ENCODE(obj, 0))
    except RecursionError:  # a circular value: the stdlib encoder raises its ValueError
        text = _ENCODER.encode(obj)
    if not text.isascii() and _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


# --------------------------------------------------------------------------- times
# (``isoformat`` of a UTC time, its "+00:00" cut, writes the same as the ``strftime`` spelled
# in the docstrings at a fraction of its cost: these run several times per job.)

#: The last second ``format_iso`` wrote: (second, minute, hour, day, month, year, its text
#: up to the seconds). One tuple, read once per call and replaced whole, so threads that
#: race on it each see a consistent pair.
_iso_second: tuple[int, int, int, int, int, int, str] = (-1, -1, -1, -1, -1, -1, "")


def format_iso(dt: datetime) -> str:
    """UTC ISO 8601 with microseconds and an explicit ``Z``: ``%Y-%m-%dT%H:%M:%S.%fZ``.

    A worker formats a few times per job, nearly all within the same second: the text up to
    the seconds is kept for that second, and only the microseconds are written (on a 2-core
    AMD VM, 0.8 µs a call instead of 2.3 for ``isoformat``).
    """
    global _iso_second
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    last = _iso_second
    if (dt.second != last[0] or dt.minute != last[1] or dt.hour != last[2]
            or dt.day != last[3] or dt.month != last[4] or dt.year != last[5]):
        last = _iso_second = (dt.second, dt.minute, dt.hour, dt.day, dt.month, dt.year,
                              dt.isoformat(timespec="seconds")[:-6])
    return f"{last[6]}.{dt.microsecond:06d}Z"


def run_at_of_iso(iso: str) -> str:
    """``format_run_at`` of the time ``format_iso`` wrote as ``iso`` (its first 19 characters
    are the same), for a caller that needs both."""
    return iso[:19] + "Z"


def format_run_at(dt: datetime) -> str:
    """Resque's ``run_at``: UTC ISO 8601 to the second with ``Z``: ``%Y-%m-%dT%H:%M:%SZ``."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.isoformat(timespec="seconds")[:-6] + "Z"


def format_heartbeat(dt: datetime) -> str:
    """Resque's heartbeat: ISO 8601 with a numeric zone, which Ruby's ``Time.parse`` reads."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def format_started(dt: datetime) -> str:
    """Ruby's ``Time#to_s``: ``2026-11-23 02:27:13 +0000``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def format_failed_at(dt: datetime) -> str:
    """Resque's ``failed_at``: ``2026/11/23 02:27:07 UTC`` (always UTC, zone written)."""
    return dt.astimezone(UTC).strftime(RUBY_FAILED_AT)


# Zone abbreviations Ruby writes with %Z; strptime's %Z rejects most of them.
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "IST": 1, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7,
    "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11, "ACST": 9.5, "AWST": 8, "NZST": 12, "NZDT": 13,
}
_RUBY_TIME = re.compile(
    r"^(\d{4})[/-](\d\d)[/-](\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*"
    r"(?:([+-]\d\d):?(\d\d)|([A-Za-z]{1,5}))?$"
)
_NODE_TIME = re.compile(
    r"^\w{3} (\w{3}) (\d\d) (\d{4}) (\d\d):(\d\d):(\d\d) GMT([+-]\d\d)(\d\d)(?: \(.*\))?$"
)
_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}


def parse_time(value: Any) -> datetime | None:
    """Read any time Resque, node-resque or jobqueue writes; ``None`` when unreadable.

    Accepts ISO 8601 (``Z`` or offsets), Ruby's ``Time#to_s`` and ``failed_at`` forms with zone
    abbreviations, node's ``Date#toString()``, and epoch seconds. Times without a zone are UTC.
    A well-formed but impossible time (month 13, offset +99:00, epoch 1e20, NaN) is unreadable
    too: it must not raise out of a payload or record decoder.
    """
    try:
        return _parse_time(value)
    except (ValueError, OverflowError, OSError):
        return None


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).strip()
    if len(text) > 10 and text[10] == "T":  # ISO 8601, what jobqueue writes: the fast path
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if m := _RUBY_TIME.match(text):
        y, mo, d, h, mi, s, frac, oh, om, abbr = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        if oh is not None:
            sign = -1 if oh.startswith("-") else 1
            offset = timedelta(hours=int(oh), minutes=sign * int(om))
        elif abbr is not None:
            hours = _ZONES.get(abbr.upper())
            if hours is None:
                return None
            offset = timedelta(hours=hours)
        else:
            offset = timedelta(0)
        naive = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro)
        return naive.replace(tzinfo=timezone(offset)).astimezone(UTC)
    if m := _NODE_TIME.match(text):
        mon, d, y, h, mi, s, oh, om = m.groups()
        if mon not in _MONTHS:
            return None
        sign = -1 if oh.startswith("-") else 1
        tz = timezone(timedelta(hours=int(oh), minutes=sign * int(om)))
        naive = datetime(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(s))
        return naive.replace(tzinfo=tz).astimezone(UTC)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return None


# --------------------------------------------------------------------------- jobs
def encode_job(job: Job) -> str:
    """Resque's payload: ``class`` and ``args`` first, jobqueue's own fields after.

    A job without an id (``enqueue_to``) is a plain ``{"class","args"}``, byte for byte what
    Ruby's ``Resque.enqueue`` writes.
    """
    body: dict[str, Any] = {"class": job.task_name, "args": job.args}
    if job.id is not None:
        body["id"] = job.id
        body["kwargs"] = job.kwargs
        if job.priority:
            body["priority"] = job.priority
        if job.enqueued_at is not None:
            body["enqueued_at"] = format_iso(job.enqueued_at)
    body.update(job.extra)
    return dumps(body)


def encode_delayed(job: Job) -> str:
    """resque-scheduler's delayed item: ``class, args, queue``, then jobqueue's fields.

    Promotion pushes these exact bytes onto the queue (Resque and node ignore the extra
    ``queue`` key; node-resque's own payloads carry it too).
    """
    body: dict[str, Any] = {"class": job.task_name, "args": job.args, "queue": job.queue}
    if job.id is not None:
        body["id"] = job.id
        body["kwargs"] = job.kwargs
        if job.priority:
            body["priority"] = job.priority
        if job.enqueued_at is not None:
            body["enqueued_at"] = format_iso(job.enqueued_at)
    body.update(job.extra)
    return dumps(body)


def decode_job(raw: str | bytes, queue: str) -> Job:
    """Read a job of any Resque client; raise ``PayloadError`` saying exactly what is wrong.

    Ruby writes ``{"class","args"}``, node-resque ``{"class","queue","args"}``, jobqueue adds
    ``id``, ``kwargs``, ``enqueued_at``. Unknown fields are kept in ``extra``.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    # ASCII text (the common case) holds no raw surrogate, and an escaped one needs a "\u":
    # each search below runs only where it can find something.
    if not text.isascii() and _LONE_SURROGATE.search(text):  # not UTF-8: surrogateescape
        raise PayloadError("payload is not valid UTF-8 text")
    try:
        body = _DECODER.decode(text)
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON ({exc}): {_clip(text)}") from None
    if not isinstance(body, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(body).__name__}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _LONE_SURROGATE.search(
            json.dumps(body, ensure_ascii=False)):
        raise PayloadError("payload escapes a lone UTF-16 surrogate (\\uD800-\\uDFFF), "
                           "which is not Unicode text")
    name = body.get("class")
    if not isinstance(name, str) or not name:
        raise PayloadError("payload has no \"class\" string naming the job")
    args = body.get("args", [])
    if isinstance(args, dict):  # node/PHP clients send {} for "no arguments"
        args = [args] if args else []
    if not isinstance(args, list):
        raise PayloadError(f"\"args\" must be a JSON array, got {type(args).__name__}")
    kwargs = body.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise PayloadError(f"\"kwargs\" must be a JSON object, got {type(kwargs).__name__}")
    job_id = body.get("id")
    if job_id is not None and (not isinstance(job_id, str) or not 0 < len(job_id) < 64):
        raise PayloadError("\"id\" must be a string of 1 to 63 characters")
    priority = body.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PayloadError("\"priority\" must be an integer")
    return Job(
        task_name=name,
        args=args,
        kwargs=kwargs,
        id=job_id,
        queue=queue,
        enqueued_at=parse_time(body.get("enqueued_at")),
        priority=priority,
        extra={k: v for k, v in body.items() if k not in _KNOWN_FIELDS},
        raw=text,
    )


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN/Infinity; JSON, Ruby's JSON.parse and node do not. Such a
    # job could never be written back (failure record, result) by ``dumps``.
    raise ValueError(f"{name} is not a JSON value")


#: ``json.loads(text, parse_constant=...)`` builds this decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_KNOWN_FIELDS = frozenset({"class", "args", "kwargs", "id", "priority", "enqueued_at", "queue"})


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# --------------------------------------------------------------------------- working / failures
def worker_name(worker_id: str) -> str:
    """node-resque's name of a worker: ``host:pid``, the id without its queue list."""
    host, _, rest = worker_id.partition(":")
    pid, sep, _ = rest.partition(":")
    return f"{host}:{pid}" if sep else worker_id


def encode_working(queue: str, run_at: datetime, raw_payload: str,
                   worker_id: str | None = None, token: str | None = None) -> str:
    """``worker:<id>`` value: Ruby's ``queue``, ``run_at`` and ``payload``, in Ruby's order.

    With ``worker_id`` a ``worker`` field (``host:pid``, node-resque's worker name) comes
    before the payload, as node-resque writes it: node's ``allWorkingOn()`` files a record
    under that field. With ``token`` (hex, see ``broker.redis_tokens``) a ``jq`` field, the
    reservation's token, follows it. Ruby and resque-web ignore both. The payload is embedded
    verbatim and always last, so the in-flight payload is the record's tail. ``reserve.lua``
    writes the same bytes (pinned by a test).
    """
    worker = f'"worker":{dumps(worker_name(worker_id))},' if worker_id is not None else ""
    jq = f'"jq":"{token}",' if token is not None else ""
    return (f'{{"queue":{dumps(queue)},"run_at":"{format_run_at(run_at)}",{worker}{jq}'
            f'"payload":{raw_payload}}}')


@dataclass(frozen=True, slots=True)
class Failure:
    """One entry of ``<ns>:failed`` in Ruby's or node's shape."""

    failed_at: datetime | None
    payload: Any
    exception: str
    error: str
    backtrace: list[str]
    worker: str
    queue: str
    retried_at: datetime | None = None
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: str | None = field(default=None, compare=False, repr=False)

    @property
    def task_name(self) -> str:
        p = self.payload
        return str(p.get("class", "")) if isinstance(p, Mapping) else ""


def encode_failure(failure: Failure) -> str:
    """Ruby's ``Failure::Redis`` record, key for key, with jobqueue's ``id`` last."""
    body: dict[str, Any] = {
        "failed_at": format_failed_at(failure.failed_at or datetime.now(UTC)),
        "payload": failure.payload,
        "exception": failure.exception,
        "error": failure.error,
        "backtrace": failure.backtrace,
        "worker": failure.worker,
        "queue": failure.queue,
    }
    if failure.retried_at is not None:
        body["retried_at"] = format_failed_at(failure.retried_at)
    body.update(failure.extra)
    if failure.id is not None:
        body["id"] = failure.id
    return dumps(body)


def decode_failure(raw: str | bytes) -> Failure:
    """Read a failure record written by Ruby, node-resque or jobqueue."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"failure record is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise PayloadError("failure record must be a JSON object")
    backtrace = body.get("backtrace") or []
    if isinstance(backtrace, str):
        backtrace = backtrace.splitlines()
    known = {"failed_at", "payload", "exception", "error", "backtrace", "worker", "queue",
             "retried_at", "id"}
    return Failure(
        failed_at=parse_time(body.get("failed_at")),
        payload=body.get("payload"),
        exception=str(body.get("exception") or ""),
        error=str(body.get("error") or ""),
        backtrace=[str(line) for line in backtrace] if isinstance(backtrace, list) else [],
        worker=str(body.get("worker") or ""),
        queue=str(body.get("queue") or ""),
        retried_at=parse_time(body.get("retried_at")),
        id=body.get("id") if isinstance(body.get("id"), str) else None,
        extra={k: v for k, v in body.items() if k not in known},
        raw=text,
    )


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A TaskResult as stored: plain data, turned into Django's ``TaskResult`` by the backend."""

    id: str
    task_name: str
    status: str
    queue: str
    priority: int
    backend: str
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    last_attempted_at: datetime | None = None
    finished_at: datetime | None = None
    run_after: datetime | None = None
    return_value: Any = None
    errors: list[dict[str, str]] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)


def encode_result(record: ResultRecord) -> dict[str, str]:
    """Fields of the result hash, every one written out; times as ISO, structured values as
    JSON. (Results written with their job use ``encode_enqueued_result``.)"""
    fields = {
        "task": record.task_name,
        "status": record.status,
        "queue": record.queue,
        "priority": str(record.priority),
        "backend": record.backend,
        "args": dumps(record.args),
        "kwargs": dumps(record.kwargs),
        "errors": dumps(record.errors),
        "worker_ids": dumps(record.worker_ids),
    }
    for name in ("enqueued_at", "started_at", "last_attempted_at", "finished_at", "run_after"):
        value = getattr(record, name)
        if value is not None:
            fields[name] = format_iso(value)
    if record.status == "SUCCESSFUL":
        fields["return_value"] = dumps(record.return_value)
    return fields


def encode_enqueued_result(record: ResultRecord, job: Job) -> dict[str, str]:
    """The result hash of a job written with it, without its ``payload`` field.

    The writer adds ``payload``, the job's exact bytes (``push.lua`` stores its argument,
    ``schedule`` the delayed item), and ``decode_result`` reads the task, args, kwargs,
    priority and enqueued_at from it. Only what the payload does not say is written here, and
    default values are left out (queue and backend ``default``, no errors, no workers): a
    READY result on the default queue is ``status`` and ``payload``. A field that disagrees
    with ``job`` is written out and wins over the payload.
    """
    fields = {"status": record.status}
    if record.queue != "default":
        fields["queue"] = record.queue
    if record.backend != "default":
        fields["backend"] = record.backend
    if record.task_name != job.task_name:
        fields["task"] = record.task_name
    if record.priority != job.priority:
        fields["priority"] = str(record.priority)
    if record.args is not job.args and record.args != job.args:
        fields["args"] = dumps(record.args)
    if record.kwargs is not job.kwargs and record.kwargs != job.kwargs:
        fields["kwargs"] = dumps(record.kwargs)
    if record.errors:
        fields["errors"] = dumps(record.errors)
    if record.worker_ids:
        fields["worker_ids"] = dumps(record.worker_ids)
    for name in ("started_at", "last_attempted_at", "finished_at", "run_after"):
        value = getattr(record, name)
        if value is not None:
            fields[name] = format_iso(value)
    if record.enqueued_at != job.enqueued_at and record.enqueued_at is not None:
        fields["enqueued_at"] = format_iso(record.enqueued_at)
    if record.status == "SUCCESSFUL":
        fields["return_value"] = dumps(record.return_value)
    return fields


def _payload_fields(raw: str | None) -> dict[str, Any]:
    """The ``ResultRecord`` fields a result's ``payload`` field stands for (none without one)."""
    if raw is None:
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("class"), str):
        raise ValueError("payload is not a Resque job")
    return {"task_name": body["class"], "args": body.get("args", []),
            "kwargs": body.get("kwargs", {}), "priority": int(body.get("priority", 0)),
            "enqueued_at": body.get("enqueued_at")}


def decode_result(result_id: str, fields: Mapping[str, str]) -> ResultRecord:
    """Rebuild a ``ResultRecord`` from the result hash, in either layout: every field
    written out (``encode_result``, and every result earlier versions stored), or
    ``payload`` plus what it does not say (``encode_enqueued_result``). A field written out
    wins over the payload."""
    try:
        job = _payload_fields(fields.get("payload"))
        return ResultRecord(
            id=result_id,
            task_name=fields["task"] if "task" in fields or not job else job["task_name"],
            status=fields["status"],
            queue=fields.get("queue", "default"),
            priority=int(fields["priority"]) if "priority" in fields else job.get("priority", 0),
            backend=fields.get("backend", "default"),
            args=json.loads(fields["args"]) if "args" in fields else job.get("args", []),
            kwargs=json.loads(fields["kwargs"]) if "kwargs" in fields else job.get("kwargs", {}),
            enqueued_at=parse_time(fields.get("enqueued_at", job.get("enqueued_at"))),
            started_at=parse_time(fields.get("started_at")),
            last_attempted_at=parse_time(fields.get("last_attempted_at")),
            finished_at=parse_time(fields.get("finished_at")),
            run_after=parse_time(fields.get("run_after")),
            return_value=json.loads(fields["return_value"]) if "return_value" in fields else None,
            errors=json.loads(fields.get("errors", "[]")),
            worker_ids=json.loads(fields.get("worker_ids", "[]")),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PayloadError(f"result {result_id!r} is corrupt: {exc}") from None
