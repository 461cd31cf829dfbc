"""Delayed jobs and dead-worker bookkeeping for ``RedisBroker`` (resque-scheduler's layout)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import payload
from ..job import Job
from .base import Broker, ErrorInfo
from .redis_tokens import Tokens, token_of

if TYPE_CHECKING:
    import redis

    from ..keys import Keys

PROMOTE_BATCH = 1000
#: Ruby Resque prunes a worker whose heartbeat is older than this (``prune_interval``).
RUBY_PRUNE_SECONDS = 300
#: A jobqueue worker is dead after missing this many heartbeats (and at least MIN seconds).
MISSED_HEARTBEATS = 6
MIN_STALE_SECONDS = 5.0


def due_second(run_at: datetime) -> int:
    """The delayed bucket of ``run_at``: rounded *up*, so a job never runs early."""
    return math.ceil(run_at.timestamp())


class RedisScheduleMixin(Broker):
    """Scheduling half of ``RedisBroker``."""

    client: redis.Redis
    keys: Keys
    namespace: str
    pending_result_ttl: int
    _queue_cache: Any
    _tokens: Tokens

    def _call(self, fn: Any) -> Any:  # pragma: no cover - provided by RedisBroker
        raise NotImplementedError

    def _script(self, name: str) -> Any:  # pragma: no cover - provided by RedisBroker
        raise NotImplementedError

    def _schedule_commands(self, pipe: Any, job: Job, result: payload.ResultRecord | None,
                           run_at: datetime) -> None:
        item = payload.encode_delayed(job)
        ts = due_second(run_at)
        pipe.rpush(self.keys.delayed(ts), item)
        pipe.sadd(self.keys.timestamps(item), f"delayed:{ts}")
        pipe.zadd(self.keys.delayed_schedule, {str(ts): ts})
        # Wake an idle worker of that queue so it notices the new earliest due time.
        pipe.rpush(self.keys.wake(job.queue), b"1")
        pipe.ltrim(self.keys.wake(job.queue), -64, -1)
        if result is not None:  # compact, like push.lua's: the item is the payload
            rkey = self.keys.result(result.id)
            pipe.hset(rkey, mapping={"payload": item,
                                     **payload.encode_enqueued_result(result, job)})
            pipe.expire(rkey, self.pending_result_ttl)

    def schedule(self, job: Job, result: payload.ResultRecord | None, run_at: datetime) -> None:
        def run() -> None:
            pipe = self.client.pipeline(transaction=True)
            self._schedule_commands(pipe, job, result, run_at)
            pipe.execute()

        self._call(run)

    def promote_due(self, until: float | None = None) -> float | None:
        now = datetime.now(UTC)
        head = payload.dumps({"failed_at": payload.format_failed_at(now)})[:-1] + ',"payload":'
        tail = (',"exception":"MalformedJob","error":"delayed item is not a Resque payload with '
                'a queue","backtrace":[],"worker":"scheduler","queue":""}')
        while True:
            moved, next_due = self._call(lambda: self._script("promote")(
                keys=[self.keys.delayed_schedule],
                args=[f"{self.namespace}:", PROMOTE_BATCH, head, tail,
                      "" if until is None else int(until)]))
            if int(moved):  # may have created a queue: let '*' see it on this very reserve
                self._queue_cache = None
            if int(moved) < PROMOTE_BATCH:
                return None if int(next_due) < 0 else float(next_due)

    def fire_periodic(self, name: str, tick: datetime, job: Job,
                      result: payload.ResultRecord | None) -> bool:
        import redis as redis_lib

        stamp = int(tick.timestamp())
        for _ in range(20):  # optimistic: retry while another schedule's claim races ours
            try:
                return bool(self._call(lambda: self._fire_once(name, stamp, job, result)))
            except redis_lib.WatchError:
                continue
        return False

    def _fire_once(self, name: str, stamp: int, job: Job,
                   result: payload.ResultRecord | None) -> bool:
        k = self.keys
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(k.periodic_last)
            last = pipe.hget(k.periodic_last, name)
            if last is not None and int(last) >= stamp:
                return False
            pipe.multi()
            pipe.hset(k.periodic_last, name, stamp)
            pipe.hset(k.last_enqueued_at, name, payload.format_started(datetime.now(UTC)))
            self._push_commands(pipe, job, result)
            pipe.execute()
        return True

    def periodic_last_runs(self) -> dict[str, datetime]:
        raw = self._call(lambda: self.client.hgetall(self.keys.periodic_last))
        return {k.decode(): datetime.fromtimestamp(int(v), UTC) for k, v in raw.items()}

    def _push_commands(self, pipe: Any, job: Job, result: payload.ResultRecord | None) -> None:
        raise NotImplementedError  # pragma: no cover - provided by RedisBroker

    def retry_later(self, worker_id: str, job: Job, queue: str, error: ErrorInfo,
                    run_at: datetime, *, only_if_in_flight: bool = False) -> bool:
        from .redis import HISTORY_TTL, error_json, raw_bytes

        k = self.keys
        attempts = int(job.extra.get("attempts", 0)) + 1
        again = Job(task_name=job.task_name, args=job.args, kwargs=job.kwargs, id=job.id,
                    queue=queue, enqueued_at=job.enqueued_at, priority=job.priority,
                    extra={**job.extra, "attempts": attempts})
        item = payload.encode_delayed(again)
        ts = due_second(run_at)
        minute = int(datetime.now(UTC).timestamp()) // 60
        keys = [k.worker(worker_id), k.result(job.id or "-"), k.stat("processed"),
                k.stat("processed", worker_id), k.history("processed", minute),
                k.delayed_schedule, k.delayed(ts), k.timestamps(item), k.wake(queue)]
        marker = self._tokens.marker(worker_id, job.raw or "", job.raw or "")
        args = ["1" if only_if_in_flight else "0", raw_bytes(marker), item, ts,
                error_json(error), payload.format_iso(run_at), HISTORY_TTL]
        return bool(self._call(lambda: self._script("retry")(keys=keys, args=args)))

    def in_flight(self, worker_id: str) -> tuple[str, str] | None:
        """See ``Broker.in_flight``. The record's reservation token, if it has one, is kept:
        settling the job read here then acts only on this very reservation."""
        raw = self._call(lambda: self.client.get(self.keys.worker(worker_id)))
        if not raw:
            return None
        text = raw.decode("utf-8", "surrogateescape")
        try:
            record = payload.json.loads(text)
        except ValueError:
            return None
        body = record.get("payload") if isinstance(record, dict) else None
        queue = str(record.get("queue", "")) if isinstance(record, dict) else ""
        if isinstance(body, str):  # undecodable payloads are stored as a JSON string
            held: tuple[str, str] | None = (queue, body)
        else:
            # The payload is embedded verbatim: cut it out of the record to keep its bytes.
            start = text.find('"payload":')
            held = (queue, text[start + len('"payload":'):-1]) if start >= 0 else None
        if held is not None:
            self._tokens.hold(worker_id, token_of(text), held[1])
        return held

    def stale_workers(self, now: datetime) -> list[str]:
        def run() -> tuple[dict[Any, Any], list[Any]]:
            beats = self.client.hgetall(self.keys.heartbeats)
            pipe = self.client.pipeline(transaction=False)
            for wid in beats:
                pipe.hget(self.keys.worker_info(wid.decode("utf-8", "surrogateescape")),
                          "heartbeat_interval")
            return beats, pipe.execute()

        beats, intervals = self._call(run)
        stale = []
        for (wid, beat), interval in zip(beats.items(), intervals, strict=True):
            seen = payload.parse_time(beat.decode("utf-8", "replace"))
            if seen is None:
                continue
            limit = (max(float(interval) * MISSED_HEARTBEATS, MIN_STALE_SECONDS)
                     if interval else RUBY_PRUNE_SECONDS)
            if (now - seen).total_seconds() > limit:
                stale.append(wid.decode("utf-8", "surrogateescape"))
        return stale

    def acquire_reaper_lock(self, owner: str, ttl_seconds: int) -> bool:
        return bool(self._call(lambda: self.client.set(
            self.keys.reaper_lock, owner, nx=True, ex=max(int(ttl_seconds), 1))))
