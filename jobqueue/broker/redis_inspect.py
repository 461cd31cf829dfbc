"""Read-only views of a Redis broker for the monitor and ``manage.py jobqueue``.

Kept apart from the hot path in ``redis.py``: nothing here runs while a worker processes jobs.
Every view reads a bounded slice (``LRANGE``/``ZRANGE``/``SCARD``/``LLEN``/``MGET``), never a
whole list or ``KEYS *``, so pages stay fast with millions of entries. Filtering the failed
list runs server-side in ``lua/failed_scan.lua``, a few thousand records per call, so
matches come back without shipping the list to Python. Actions live in ``redis_manage``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import payload
from ..job import BadJob, Job
from .base import FailedEntry, FailedFilter, FailedScan, ScheduledBucket, Throughput, WorkerInfo
from .redis_bytes import text
from .redis_manage import SCAN_CHUNK, RedisManageMixin, make_ref

if TYPE_CHECKING:
    import redis

    from ..keys import Keys

#: Scores below this belong to positive priorities (they run before the plain list).
PRIORITY_SPLIT = 100 * 10**12
SERVER_FIELDS = ("redis_version", "redis_mode", "os", "uptime_in_seconds", "connected_clients",
                 "blocked_clients", "used_memory_human", "used_memory_peak_human",
                 "maxmemory_human", "maxmemory_policy", "total_commands_processed",
                 "instantaneous_ops_per_sec", "keyspace_hits", "keyspace_misses",
                 "expired_keys", "evicted_keys", "role")


def _decode(raw: bytes | str, queue: str) -> Job | BadJob:
    entry = text(raw)
    try:
        return payload.decode_job(entry, queue)
    except payload.PayloadError as exc:
        return BadJob(raw=entry, queue=queue, error=str(exc), run_at=None, worker_id="")


def _failure(raw: bytes) -> payload.Failure:
    try:
        return payload.decode_failure(text(raw))
    except payload.PayloadError as exc:
        return payload.Failure(failed_at=None, payload=text(raw),
                               exception="MalformedFailureRecord", error=str(exc),
                               backtrace=[], worker="", queue="", raw=text(raw))


def _segments(start: int, count: int, ahead: int, length: int) -> list[tuple[str, int, int]]:
    """Split positions ``start..start+count-1`` of a queue into ranges of its two stores:
    ``("z", rank_from, rank_to)`` in the priority zset, ``("l", from, to)`` in the list."""
    parts, end = [], start + count - 1
    if start < ahead:
        parts.append(("z", start, min(end, ahead - 1)))
    if end >= ahead and start < ahead + length:
        parts.append(("l", max(start - ahead, 0), min(end - ahead, length - 1)))
    if end >= ahead + length:
        lo = max(start - ahead - length, 0) + ahead
        parts.append(("z", lo, end - length))
    return parts


class RedisInspectMixin(RedisManageMixin):
    """Inspection half of ``RedisBroker``."""

    client: redis.Redis
    keys: Keys

    # -------------------------------------------------------------- queues
    def queue_names(self) -> list[str]:
        """Every queue in ``<ns>:queues``, sorted."""
        return sorted(text(q) for q in self._call(lambda: self.client.smembers(self.keys.queues)))

    def queue_sizes(self) -> dict[str, int]:
        names = self.queue_names()

        def run() -> list[int]:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.llen(self.keys.queue(name))
                pipe.zcard(self.keys.priority_queue(name))
            return pipe.execute()

        counts = self._call(run)
        return {name: int(counts[2 * i]) + int(counts[2 * i + 1])
                for i, name in enumerate(names)}

    def queue_size(self, queue: str) -> int:
        def run() -> list[int]:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.keys.queue(queue))
            pipe.zcard(self.keys.priority_queue(queue))
            return pipe.execute()

        return sum(int(n) for n in self._call(run))

    def peek(self, queue: str, start: int, count: int) -> list[Job | BadJob]:
        """Jobs in the order workers take them: positive priorities, the list, negative."""
        zkey, lkey = self.keys.priority_queue(queue), self.keys.queue(queue)

        def sizes() -> list[int]:
            pipe = self.client.pipeline(transaction=True)
            pipe.zcard(zkey)
            pipe.zcount(zkey, "-inf", f"({PRIORITY_SPLIT}")
            pipe.llen(lkey)
            return pipe.execute()

        zsize, ahead, length = self._call(sizes)
        if not zsize:
            raw = self._call(lambda: self.client.lrange(lkey, start, start + count - 1))
            return [_decode(item, queue) for item in raw]

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for store, lo, hi in _segments(start, count, int(ahead), int(length)):
                if store == "z":
                    pipe.zrange(zkey, lo, hi)
                else:
                    pipe.lrange(lkey, lo, hi)
            return pipe.execute()

        return [_decode(item, queue) for part in self._call(run) for item in part]

    # -------------------------------------------------------------- workers
    def workers(self) -> list[WorkerInfo]:
        ids = sorted(text(w) for w in self._call(lambda: self.client.smembers(self.keys.workers)))
        return self._load_workers(ids)

    def worker(self, worker_id: str) -> WorkerInfo | None:
        if not self._call(lambda: self.client.sismember(self.keys.workers, worker_id)):
            return None
        found = self._load_workers([worker_id])
        return found[0] if found else None

    def _load_workers(self, ids: list[str]) -> list[WorkerInfo]:
        k = self.keys

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for wid in ids:
                pipe.hget(k.heartbeats, wid)
                pipe.get(k.worker_started(wid))
                pipe.get(k.worker(wid))
                pipe.get(k.stat("processed", wid))
                pipe.get(k.stat("failed", wid))
                pipe.hgetall(k.worker_info(wid))
                # node-resque counts per worker under its name (host:pid), not the full id.
                pipe.get(k.stat("processed", payload.worker_name(wid)))
                pipe.get(k.stat("failed", payload.worker_name(wid)))
            return pipe.execute()

        replies = self._call(run)
        result = []
        for i, wid in enumerate(ids):
            beat, started, current, processed, failed, info, node_processed, node_failed = \
                replies[8 * i : 8 * i + 8]
            processed, failed = processed or node_processed, failed or node_failed
            host, _, rest = wid.partition(":")
            pid_text, _, queue_list = rest.partition(":")
            try:
                current_obj = payload.json.loads(text(current)) if current else None
            except ValueError:
                current_obj = {"payload": text(current)}
            result.append(WorkerInfo(
                id=wid, host=host, pid=int(pid_text) if pid_text.isdigit() else 0,
                queues=[q for q in queue_list.split(",") if q],
                started_at=payload.parse_time(text(started)),
                heartbeat_at=payload.parse_time(text(beat)),
                processed=int(processed or 0), failed=int(failed or 0),
                current=current_obj if isinstance(current_obj, dict) else None,
                extra={text(a): text(b) for a, b in (info or {}).items()},
            ))
        return result

    # -------------------------------------------------------------- failed
    def failed_count(self) -> int:
        return int(self._call(lambda: self.client.llen(self.keys.failed)))

    def failed_slice(self, start: int, count: int) -> list[payload.Failure]:
        raw = self._call(lambda: self.client.lrange(self.keys.failed, start, start + count - 1))
        return [_failure(item) for item in raw]

    def failed_page(self, start: int, count: int) -> list[FailedEntry]:
        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.llen(self.keys.failed)
            pipe.lrange(self.keys.failed, -(start + count), -(start + 1))
            return pipe.execute()

        length, raw = self._call(run)
        first = max(int(length) - start - count, 0)
        pairs = [(first + i, item) for i, item in enumerate(raw)]
        return self._entries(pairs[::-1])

    def failed_entry(self, ref: str) -> FailedEntry | None:
        found = self._find_failed(ref)
        return self._entries([found])[0] if found else None

    def _entries(self, pairs: list[tuple[int, bytes]]) -> list[FailedEntry]:
        """Decode records and count each job's attempts (from its result when it has one)."""
        failures = [_failure(raw) for _, raw in pairs]
        ids = [f.payload.get("id") if isinstance(f.payload, dict) else None for f in failures]

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(self.keys.result(job_id if isinstance(job_id, str) else "-"),
                          "worker_ids")
            return pipe.execute()

        worker_ids = self._call(run) if any(isinstance(i, str) for i in ids) else [None] * len(ids)
        entries = []
        for (index, raw), failure, wids in zip(pairs, failures, worker_ids, strict=True):
            attempts = 0
            if wids:
                try:
                    attempts = len(payload.json.loads(text(wids)))
                except (ValueError, TypeError):
                    attempts = 0
            if not attempts:
                extra = failure.payload.get("attempts", 0) if isinstance(
                    failure.payload, dict) else 0
                attempts = (extra if isinstance(extra, int) else 0) + 1
            entries.append(FailedEntry(index=index, ref=make_ref(index, raw), failure=failure,
                                       attempts=attempts))
        return entries

    def failed_scan(self, where: FailedFilter, *, before: int | None = None,
                    after: int | None = None, limit: int = 20,
                    max_scanned: int = 100_000) -> FailedScan:
        up = after is not None
        if after is not None:
            cursor = after + 1
        elif before is not None:
            if before <= 0:
                return FailedScan([], None, None, 0, False)
            cursor = before - 1
        else:
            cursor = -1
        found: list[tuple[int, bytes]] = []
        scanned, ended = 0, False
        while len(found) <= limit and scanned < max_scanned:
            reply = self._scan_call("up" if up else "down", cursor, "records",
                                    min(SCAN_CHUNK, max_scanned - scanned),
                                    limit + 1 - len(found), where)
            scanned += int(reply[0])
            pairs = reply[3:]
            found += [(int(pairs[i]), pairs[i + 1]) for i in range(0, len(pairs), 2)]
            if int(reply[1]) < 0:
                ended = True
                break
            cursor = int(reply[1])
        more = len(found) > limit
        found = found[:limit]
        capped = not ended and not more
        if up:  # found is oldest first here
            newer = found[-1][0] if more else (cursor - 1 if capped else None)
            older = after + 1 if after is not None and after >= 0 else None
            found.reverse()
        else:
            older = found[-1][0] if more else (cursor + 1 if capped else None)
            newer = before - 1 if before is not None else None
        return FailedScan(entries=self._entries(found), older=older, newer=newer,
                          scanned=scanned, capped=capped)

    def failed_count_matching(self, where: FailedFilter,
                              max_scanned: int = 1_000_000) -> tuple[int, bool]:
        if not where.active:
            return self.failed_count(), True
        cursor, scanned, matched = -1, 0, 0
        while scanned < max_scanned:
            reply = self._scan_call("down", cursor, "count",
                                    min(SCAN_CHUNK, max_scanned - scanned), 0, where)
            scanned += int(reply[0])
            matched += int(reply[2])
            if int(reply[1]) < 0:
                return matched, True
            cursor = int(reply[1])
        return matched, False

    # -------------------------------------------------------------- counters
    def throughput(self, minutes: int, now: datetime | None = None) -> Throughput:
        last = int((now or datetime.now(UTC)).timestamp()) // 60
        first = last - minutes + 1
        names = ("processed", "failed")

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.mget([self.keys.history(name, m) for m in range(first, last + 1)])
            return pipe.execute()

        processed, failed = ([int(v or 0) for v in values] for values in self._call(run))
        return Throughput(start_minute=first, processed=processed, failed=failed)

    def stats(self) -> dict[str, int]:
        sizes = self.queue_sizes()
        k = self.keys

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.stat("processed"))
            pipe.get(k.stat("failed"))
            pipe.scard(k.workers)
            pipe.llen(k.failed)
            return pipe.execute()

        processed, failed, workers, failed_now = self._call(run)
        working = sum(1 for w in self.workers() if w.current)
        return {
            "pending": sum(sizes.values()),
            "processed": int(processed or 0),
            "failed": int(failed or 0),
            "failed_records": int(failed_now or 0),
            "queues": len(sizes),
            "workers": int(workers or 0),
            "working": working,
        }

    def server_info(self) -> dict[str, Any]:
        info, dbsize = self._call(lambda: (self.client.info(), self.client.dbsize()))
        summary = {name: info[name] for name in SERVER_FIELDS if name in info}
        summary["dbsize"] = int(dbsize)
        summary["keyspace"] = {name: value for name, value in info.items()
                               if name.startswith("db") and isinstance(value, dict)}
        return summary

    def key_counts(self) -> dict[str, int]:
        k = self.keys
        names = self.queue_names()

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(k.failed)
            pipe.scard(k.workers)
            pipe.hlen(k.heartbeats)
            pipe.zcard(k.delayed_schedule)
            pipe.hlen(k.periodic_last)
            for name in names:
                pipe.llen(k.queue(name))
                pipe.zcard(k.priority_queue(name))
            return pipe.execute()

        reply = self._call(run)
        sizes = reply[5:]
        return {
            "queues": len(names),
            "queued jobs": sum(int(n) for n in sizes[0::2]),
            "prioritised jobs": sum(int(n) for n in sizes[1::2]),
            "failure records": int(reply[0]),
            "registered workers": int(reply[1]),
            "worker heartbeats": int(reply[2]),
            "delayed due times": int(reply[3]),
            "periodic schedules": int(reply[4]),
        }

    # -------------------------------------------------------------- delayed jobs
    def scheduled_count(self) -> int:
        return int(self._call(lambda: self.client.zcard(self.keys.delayed_schedule)))

    def scheduled_page(self, start: int, count: int, per_bucket: int) -> list[ScheduledBucket]:
        stamps = self._call(lambda: self.client.zrange(self.keys.delayed_schedule, start,
                                                       start + count - 1))
        return self._buckets([int(float(text(s))) for s in stamps], 0, per_bucket)

    def scheduled_bucket(self, timestamp: int, start: int, count: int) -> ScheduledBucket:
        return self._buckets([timestamp], start, count)[0]

    def _buckets(self, stamps: list[int], start: int, count: int) -> list[ScheduledBucket]:
        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for ts in stamps:
                pipe.llen(self.keys.delayed(ts))
                pipe.lrange(self.keys.delayed(ts), start, start + count - 1)
            return pipe.execute()

        reply = self._call(run) if stamps else []
        buckets = []
        for i, ts in enumerate(stamps):
            items = []
            for raw in reply[2 * i + 1]:
                try:
                    body = payload.json.loads(text(raw))
                except ValueError:
                    body = None
                queue = body.get("queue") if isinstance(body, dict) else None
                items.append(_decode(raw, queue if isinstance(queue, str) else ""))
            buckets.append(ScheduledBucket(timestamp=ts, size=int(reply[2 * i]), items=items))
        return buckets

    # Provided by RedisBroker.
    def _call(self, fn: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError
