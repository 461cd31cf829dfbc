"""Read-only views of a Redis broker for the monitor and ``manage.py jobqueue``.

Kept apart from the hot path in ``redis.py``: nothing here runs while a worker processes jobs.
Every view reads a bounded slice (``LRANGE``/``SCARD``/``LLEN``), never a whole list or
``KEYS *``, so pages stay fast with millions of entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import payload
from ..job import BadJob, Job
from .base import Broker, WorkerInfo

if TYPE_CHECKING:
    import redis

    from ..keys import Keys


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


class RedisInspectMixin(Broker):
    """Inspection half of ``RedisBroker``."""

    client: redis.Redis
    keys: Keys

    def queue_names(self) -> list[str]:
        """Every queue in ``<ns>:queues``, sorted."""
        return sorted(_text(q) for q in self._call(lambda: self.client.smembers(self.keys.queues)))

    def queue_sizes(self) -> dict[str, int]:
        names = self.queue_names()

        def run() -> list[int]:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.llen(self.keys.queue(name))
            return pipe.execute()

        return dict(zip(names, self._call(run), strict=True))

    def peek(self, queue: str, start: int, count: int) -> list[Job | BadJob]:
        raw = self._call(lambda: self.client.lrange(self.keys.queue(queue), start,
                                                    start + count - 1))
        jobs: list[Job | BadJob] = []
        for item in raw:
            entry = _text(item)
            try:
                jobs.append(payload.decode_job(entry, queue))
            except payload.PayloadError as exc:
                jobs.append(BadJob(raw=entry, queue=queue, error=str(exc), run_at=None,
                                   worker_id=""))
        return jobs

    def workers(self) -> list[WorkerInfo]:
        ids = sorted(_text(w) for w in self._call(lambda: self.client.smembers(self.keys.workers)))
        k = self.keys

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k.heartbeats)
            for wid in ids:
                pipe.get(k.worker_started(wid))
                pipe.get(k.worker(wid))
                pipe.get(k.stat("processed", wid))
                pipe.get(k.stat("failed", wid))
                pipe.hgetall(k.worker_info(wid))
            return pipe.execute()

        replies = self._call(run)
        beats = {_text(a): _text(b) for a, b in (replies[0] or {}).items()}
        result = []
        for i, wid in enumerate(ids):
            started, current, processed, failed, info = replies[1 + 5 * i : 6 + 5 * i]
            host, _, rest = wid.partition(":")
            pid_text, _, queue_list = rest.partition(":")
            try:
                current_obj = payload.json.loads(_text(current)) if current else None
            except ValueError:
                current_obj = {"payload": _text(current)}
            result.append(WorkerInfo(
                id=wid, host=host, pid=int(pid_text) if pid_text.isdigit() else 0,
                queues=[q for q in queue_list.split(",") if q],
                started_at=payload.parse_time(_text(started)),
                heartbeat_at=payload.parse_time(beats.get(wid)),
                processed=int(processed or 0), failed=int(failed or 0), current=current_obj,
                extra={_text(a): _text(b) for a, b in (info or {}).items()},
            ))
        return result

    def failed_count(self) -> int:
        return int(self._call(lambda: self.client.llen(self.keys.failed)))

    def failed_slice(self, start: int, count: int) -> list[payload.Failure]:
        raw = self._call(lambda: self.client.lrange(self.keys.failed, start, start + count - 1))
        failures = []
        for item in raw:
            try:
                failures.append(payload.decode_failure(item))
            except payload.PayloadError as exc:
                failures.append(payload.Failure(
                    failed_at=None, payload=_text(item), exception="MalformedFailureRecord",
                    error=str(exc), backtrace=[], worker="", queue="", raw=_text(item)))
        return failures

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

    # Provided by RedisBroker.
    def _call(self, fn: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError
