"""The Redis broker: Resque's keys and records, jobqueue's atomic steps as Lua scripts.

Hot path per job: one ``EVALSHA reserve`` (pop + in-flight record + result RUNNING) and one
``EVALSHA finish`` (ack + result + counters + failure record). Producers send one
``EVALSHA push`` per job, or per thousand jobs of ``push_many``, on their thread's own
connection. Read-only inspection for the monitor lives in ``redis_inspect``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, TypeVar

import redis

from .. import payload, queues
from ..connection import DEFAULT_REPLY_SPIN, lane_for
from ..exceptions import BrokerUnavailable
from ..job import BadJob, Job, Reservation
from ..keys import Keys
from .base import ErrorInfo, Outcome, WorkerInfo
from .redis_bytes import raw_bytes, text
from .redis_inspect import RedisInspectMixin
from .redis_prefetch import ASYNC_DEPTH, RedisPrefetchMixin
from .redis_produce import RedisProduceMixin
from .redis_schedule import RedisScheduleMixin
from .redis_tokens import Tokens
from .redis_wait import RedisWaitMixin

T = TypeVar("T")
_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
HISTORY_TTL = 3 * 86400
QUEUE_CACHE_SECONDS = 1.0
WAKE_TOKENS_KEPT = 64


SCRIPT_NAMES = ("reserve", "finish", "requeue", "retry", "promote", "push", "start", "release")


def _load_script(client: redis.Redis, name: str) -> Any:
    source = files("jobqueue.broker").joinpath("lua", f"{name}.lua").read_text("utf-8")
    return client.register_script(source)


def error_json(error: ErrorInfo) -> str:
    """Django's ``TaskError`` fields, as stored in a result's ``errors``."""
    return payload.dumps(
        {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
    )


class RedisBroker(RedisProduceMixin, RedisPrefetchMixin, RedisWaitMixin, RedisScheduleMixin,
                  RedisInspectMixin):
    """Broker on one Redis database and namespace."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "resque",
        *,
        result_ttl: int = 86400,
        pending_result_ttl: int = 30 * 86400,
        backend_alias: str = "default",
        task_defaults: dict[str, Any] | None = None,
        reply_spin: float = DEFAULT_REPLY_SPIN,
    ) -> None:
        self.client = client
        #: Seconds an enqueue or result read polls for its reply before sleeping.
        self.reply_spin = reply_spin
        self.keys = Keys(namespace)
        self.namespace = namespace
        self.result_ttl = result_ttl
        self.pending_result_ttl = pending_result_ttl
        self.backend_alias = backend_alias
        self.task_defaults = dict(task_defaults or {})
        # Read every script now, so a forked child never touches the disk for one.
        self._scripts: dict[str, Any] = {name: _load_script(client, name)
                                         for name in SCRIPT_NAMES}
        self._queue_cache: tuple[float, tuple[str, ...], list[str]] | None = None
        self._dynamic: dict[tuple[str, ...], bool] = {}  # is_dynamic of each pattern list
        self._lane = lane_for(client)
        self._push_keys: dict[str, list[str]] = {}
        self._result_prefix = self.keys.result("")
        self._reserve_cache: dict[tuple[str, tuple[str, ...]], tuple[list[Any], list[Any]]] = {}
        self._finish_cache: dict[str, tuple[int, list[Any]]] = {}
        self._clock_offset = timedelta(0)
        # Acknowledgements held back to ride along with the next command (see finish()), and
        # the thread that held them back (only it sends them).
        self._deferred: list[tuple[list[Any], list[Any]]] = []
        self._deferred_owner: int | None = None
        self._tokens = Tokens()  # reservation tokens (see redis_tokens)
        self._init_prefetch(client)
        self._init_wait()

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[[], T], *, flush: bool = True) -> T:
        try:
            if flush:  # what this thread sent or held back goes first, in order
                self._settle_async()
                if self._deferred and self._deferred_owner == threading.get_ident():
                    self._flush_acks()
            return fn()
        except (*_REDIS_ERRORS, redis.ResponseError) as exc:
            if not _auth_refused(exc):
                if isinstance(exc, redis.ResponseError):
                    raise
                raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
            raise BrokerUnavailable(
                f"Redis refused the connection: it requires a password ({exc}). Put it in "
                "the URL (redis://:PASSWORD@host:6379/0) or in OPTIONS['CONNECTION_KWARGS']"
                "['password']") from exc

    def _evalsha(self, name: str, keys: list[Any], args: list[Any]) -> bytes:
        return self._lane.packed("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    def _run_packed(self, names: str | Sequence[str], commands: list[bytes],
                    meanwhile: Callable[[], object] | None = None,
                    spin: float = 0.0) -> list[Any]:
        """Send EVALSHAs of the scripts ``names`` in one round trip on this thread's
        connection (with one command, ``meanwhile`` runs while Redis works: see
        ``ThreadConnection``, which also spins ``spin`` seconds for its reply).

        After NOSCRIPT replies (Redis lost its script cache) the scripts are loaded and the
        commands are sent once more. That is safe: a NOSCRIPT command did not run, and every
        script here is conditional or idempotent, so one that did run, run again, does
        nothing more.
        """
        lane = self._lane
        for attempt in (1, 2):
            if len(commands) == 1:
                try:
                    return [lane.call(commands[0], meanwhile, spin)]
                except redis.exceptions.NoScriptError:
                    if attempt == 2:
                        raise
            else:
                replies = lane.call_many(commands)
                errors = [r for r in replies if isinstance(r, redis.ResponseError)]
                if not errors:
                    return replies
                if attempt == 2 or not all(isinstance(e, redis.exceptions.NoScriptError)
                                           for e in errors):
                    raise errors[0]
            for name in [names] if isinstance(names, str) else dict.fromkeys(names):
                lane.call(lane.packed("SCRIPT", "LOAD", self._scripts[name].script))
        raise AssertionError("unreachable")  # pragma: no cover

    def flush(self) -> None:
        self._call(lambda: None)

    def _flush_acks(self) -> None:
        """Send acknowledgements held back by ``finish(defer=True)``."""
        commands = [self._evalsha("finish", keys, args) for keys, args in self._deferred]
        self._run_packed("finish", commands)
        self._deferred.clear()

    def _reserve_with_acks(self, keys: list[Any], args: list[Any]) -> Any:
        """Run reserve.lua, after any held-back acknowledgements, in one round trip on this
        thread's own connection."""
        reserve = self._evalsha("reserve", keys, args)
        if not self._deferred:
            return self._run_packed("reserve", [reserve])[0]
        commands = [self._evalsha("finish", k, a) for k, a in self._deferred] + [reserve]
        replies = self._run_packed(("finish", "reserve"), commands)
        self._deferred.clear()
        return replies[-1]

    def _reserve_keys(self, worker_id: str, queues: Sequence[str]) -> tuple[list[Any], list[Any]]:
        """reserve.lua's KEYS and the fixed part of its ARGV (cached per worker and list)."""
        cache_key = (worker_id, tuple(queues))
        found = self._reserve_cache.get(cache_key)
        if found is None:
            if len(self._reserve_cache) >= 64:
                self._reserve_cache.clear()
            k = self.keys
            keys = [k.worker(worker_id), k.pause_all, *(k.queue(q) for q in queues),
                    *(k.wake(q) for q in queues), *(k.priority_queue(q) for q in queues),
                    k.prefetch(worker_id)]
            tail = [worker_id, self._result_prefix, *(payload.dumps(q) for q in queues)]
            found = self._reserve_cache[cache_key] = (keys, tail)
        return found

    def _reserve_call(self, worker_id: str, queues: Sequence[str], now: datetime | None, more: int,
                      token: str, refill: str = "") -> tuple[list[Any], list[Any]]:
        """reserve.lua's KEYS and ARGV: ``more`` jobs to prefetch; ``refill``, the marker of
        the job started just before, for refill mode (see reserve.lua)."""
        keys, tail = self._reserve_keys(worker_id, queues)
        # No ``now``: reserve.lua takes Redis's clock when it runs (a reserve queued behind a
        # blocking wait runs when the wait ends).
        times = ("", "")
        if now is not None:
            iso = payload.format_iso(now)
            times = (payload.run_at_of_iso(iso), iso)
        args = [len(queues), *times, *tail, more, token]
        if refill:
            args.append(raw_bytes(refill))
        return keys, args

    def _finish_keys(self, worker_id: str, result_id: str, minute: int) -> list[Any]:
        """finish.lua's KEYS (the worker's own are cached, and the minute's)."""
        fixed = self._finish_cache.get(worker_id)
        if fixed is None or fixed[0] != minute:
            if len(self._finish_cache) >= 64:
                self._finish_cache.clear()
            k = self.keys
            fixed = self._finish_cache[worker_id] = (minute, [
                k.stat("processed"), k.stat("processed", worker_id), k.stat("failed"),
                k.stat("failed", worker_id), k.failed, k.history("processed", minute),
                k.history("failed", minute)])
        return [self.keys.worker(worker_id), self._result_prefix + result_id, *fixed[1]]

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = _load_script(self.client, name)
        return script

    # ------------------------------------------------------------------ consuming
    def now(self) -> datetime:
        """Wall-clock time corrected to the Redis server's clock."""
        return datetime.now(UTC) + self._clock_offset

    def expand_queues(self, patterns: Sequence[str]) -> list[str]:
        key = tuple(patterns)
        dynamic = self._dynamic.get(key)
        if dynamic is None:
            if len(self._dynamic) >= 64:
                self._dynamic.clear()
            dynamic = self._dynamic[key] = queues.is_dynamic(patterns)
        if not dynamic:
            return list(patterns)
        cached = self._queue_cache
        if cached and cached[1] == key and time.monotonic() - cached[0] < QUEUE_CACHE_SECONDS:
            return cached[2]
        known = self._call(lambda: self.client.smembers(self.keys.queues))
        expanded = queues.expand(patterns, (text(q) for q in known))
        self._queue_cache = (time.monotonic(), key, expanded)
        return expanded

    def reserve(self, worker_id: str, queues: Sequence[str], *,
                prefetch: int = 1) -> Reservation | BadJob | None:
        if not queues:
            return None
        # With jobs left in the batch, recent packets may stay unread (see _send_async).
        self._settle_async(keep=ASYNC_DEPTH - 1 if self._prefetched.get(worker_id) else 0)
        waited = self._take_waited(worker_id)
        if waited is not None:
            return waited
        taken = self._take_prefetched(worker_id, queues, prefetch)
        if taken is not None:
            return taken
        now = self.now()
        token = self._tokens.new()
        keys, args = self._reserve_call(worker_id, queues, now, max(prefetch - 1, 0), token)
        reply = self._call(lambda: self._reserve_with_acks(keys, args), flush=False)
        self._lost_waits.discard(worker_id)  # a reserve it made unread comes back as held
        return self._reserved(worker_id, queues, reply, now, token)

    def _reserved(self, worker_id: str, queues: Sequence[str], reply: Any, now: datetime,
                  token: str) -> Reservation | BadJob | None:
        """The reservation in reserve.lua's ``reply`` (``None``: nothing, or paused)."""
        if not reply or reply[0] == 0:
            return None
        if int(reply[0]) == -1:  # a job this worker already holds
            return self._redelivered(worker_id, reply, now)
        queue = queues[int(reply[0]) - 1]
        raw = text(reply[1])
        self._tokens.hold(worker_id, token, raw)
        self._keep_prefetched(worker_id, queue, reply, now, token)
        try:
            job = payload.decode_job(raw, queue)
        except payload.PayloadError as exc:
            return BadJob(raw=raw, queue=queue, error=str(exc), run_at=now, worker_id=worker_id)
        started = payload.parse_time(text(reply[2])) if reply[2] else None
        worker_ids = tuple(json.loads(text(reply[3]))) if reply[3] else ()
        return Reservation(job=job, queue=queue, run_at=now, worker_id=worker_id,
                           started_at=started or now, worker_ids=worker_ids)

    def _redelivered(self, worker_id: str, reply: Sequence[Any],
                     now: datetime) -> Reservation | BadJob:
        """The job reserve.lua found this worker holding (the reply that gave it was lost),
        with its token and its prefetch batch rebuilt from Redis."""
        queue = text(reply[2])
        raw = text(reply[1])
        if raw.startswith('"'):  # an undecodable entry is held as a JSON string
            raw = json.loads(raw)
        self._tokens.hold(worker_id, text(reply[3]) if reply[3] else None, raw)
        self._recover_prefetched(worker_id, reply[4:], now)
        try:
            job = payload.decode_job(raw, queue)
        except payload.PayloadError as exc:
            return BadJob(raw=raw, queue=queue, error=str(exc), run_at=now, worker_id=worker_id)
        # Rare: read what the lost reply carried from the result record.
        record = self.get_result(job.id) if job.id else None
        started = record.started_at if record else None
        worker_ids = tuple(record.worker_ids) if record else ()
        return Reservation(job=job, queue=queue, run_at=now, worker_id=worker_id,
                           started_at=started or now, worker_ids=worker_ids)

    def is_paused(self) -> bool:
        return self._call(lambda: self.client.get(self.keys.pause_all)) == b"true"

    def finish(
        self,
        worker_id: str,
        job: Job | BadJob,
        queue: str,
        outcome: Outcome,
        *,
        only_if_in_flight: bool = False,
        defer: bool = False,
    ) -> bool:
        """See ``Broker.finish``. With ``defer`` the acknowledgement is held back and sent
        in the same round trip as this worker's next command (normally the next reserve);
        it is made conditional on the in-flight record, so sending it twice is harmless and
        a worker that dies before sending it leaves the job to the reaper (at-least-once).
        """
        minute = int(outcome.finished_at.timestamp()) // 60
        result_id = job.id if isinstance(job, Job) and job.id else "-"
        keys = self._finish_keys(worker_id, result_id, minute)
        failure = ""
        error = ""
        value = ""
        if outcome.status == "SUCCESSFUL":
            value = payload.dumps(outcome.return_value)
        else:
            assert outcome.error is not None
            error = error_json(outcome.error)
            failure = self._failure_record(worker_id, job, queue, outcome)
        raw = job.raw if isinstance(job, BadJob) else job.raw or ""
        marker = self._tokens.marker(worker_id, raw, raw if isinstance(job, Job) else "")
        args = [outcome.status, payload.format_iso(outcome.finished_at), value, error,
                self.result_ttl, failure, HISTORY_TTL,
                "1" if only_if_in_flight or defer else "0", raw_bytes(marker)]
        if defer:
            self._deferred.append((keys, args))
            self._deferred_owner = threading.get_ident()
            return True
        command = self._evalsha("finish", keys, args)
        return bool(self._call(lambda: self._run_packed("finish", [command])[0]))

    def _failure_record(self, worker_id: str, job: Job | BadJob, queue: str,
                        outcome: Outcome) -> str:
        assert outcome.error is not None
        if isinstance(job, BadJob):
            body: Any = job.raw
        else:
            body = json.loads(job.raw) if job.raw else {"class": job.task_name, "args": job.args}
        record = payload.Failure(
            failed_at=outcome.finished_at,
            payload=body,
            exception=outcome.error.exception_name,
            error=outcome.error.message,
            backtrace=outcome.error.traceback.splitlines(),
            worker=worker_id,
            queue=queue,
            id=_new_id(),
        )
        return payload.encode_failure(record)

    def requeue(self, worker_id: str, job: Job, queue: str, error: ErrorInfo | None) -> bool:
        # Jobs prefetched after this one go back first, so that this one ends up before them.
        if self._prefetched.get(worker_id):
            self._release(worker_id)
        k = self.keys
        keys = [k.worker(worker_id), k.queue(queue), k.queues, k.wake(queue),
                k.result(job.id or "-"), k.priority_queue(queue)]
        score = (100 - job.priority) * 10**12 if job.priority else ""
        raw = job.raw or payload.encode_job(job)
        args = [raw_bytes(raw), queue, error_json(error) if error else "", score,
                raw_bytes(self._tokens.marker(worker_id, raw, ""))]
        command = self._evalsha("requeue", keys, args)
        return bool(self._call(lambda: self._run_packed("requeue", [command])[0]))

    # ------------------------------------------------------------------ worker registry
    def register_worker(self, info: WorkerInfo) -> None:
        def run() -> None:
            seconds, micros = self.client.time()
            server_now = datetime.fromtimestamp(seconds + micros / 1e6, UTC)
            self._clock_offset = server_now - datetime.now(UTC)
            pipe = self.client.pipeline(transaction=True)
            pipe.sadd(self.keys.workers, info.id)
            pipe.set(self.keys.worker_started(info.id), payload.format_started(server_now))
            pipe.hset(self.keys.heartbeats, info.id, payload.format_heartbeat(server_now))
            extra = {"pid": str(info.pid), "host": info.host, "queues": ",".join(info.queues),
                     **info.extra}
            pipe.hset(self.keys.worker_info(info.id), mapping=extra)
            pipe.execute()

        self._call(run)

    def heartbeat(self, worker_id: str) -> None:
        # Never carries held-back acknowledgements: those ride with this worker's next
        # reserve, in order, and a --no-fork worker beats from a second thread.
        stamp = payload.format_heartbeat(self.now())
        self._call(lambda: self.client.hset(self.keys.heartbeats, worker_id, stamp),
                   flush=False)

    def unregister_worker(self, worker_id: str) -> None:
        # Reserved and prefetched jobs go back first: a crash between the two steps loses
        # nothing.
        self._put_back_waited(worker_id)
        self._release(worker_id)
        self._tokens.forget(worker_id)

        def run() -> None:
            k = self.keys
            pipe = self.client.pipeline(transaction=True)
            pipe.srem(k.workers, worker_id)
            pipe.delete(k.worker(worker_id), k.worker_started(worker_id),
                        k.stat("processed", worker_id), k.stat("failed", worker_id),
                        k.worker_info(worker_id))
            pipe.hdel(k.heartbeats, worker_id)
            pipe.execute()

        self._call(run)


def _auth_refused(exc: Exception) -> bool:
    """True for Redis' answers to a client that did not authenticate (NOAUTH, which redis-py
    raises as ``AuthenticationError``, and the protocol error a large unauthenticated command
    gets)."""
    message = str(exc)
    if isinstance(exc, redis.AuthenticationError):
        return message.startswith("Authentication required")
    return isinstance(exc, redis.ResponseError) and (
        message.startswith("NOAUTH") or "unauthenticated" in message)


def _new_id() -> str:
    return os.urandom(12).hex()
