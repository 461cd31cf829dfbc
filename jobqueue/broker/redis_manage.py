"""Operator actions on a Redis broker: the monitor's and ``manage.py jobqueue``'s buttons.

Every action is one Lua script (``lua/failed_act.lua``, ``failed_scan.lua``,
``queue_delete.lua``, ``queue_clear.lua``, ``worker_prune.lua``, ``delayed_act.lua``) that
finds its target by content and acts only if it is still there, so a page that is a minute
old can never make an action hit the wrong job. Nothing here runs on the hot path.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import payload
from .base import Broker, FailedFilter, Pruned
from .redis_bytes import raw_bytes

if TYPE_CHECKING:
    import redis

    from ..keys import Keys
    from .redis_tokens import Tokens

#: Records one scan call examines: a few milliseconds of Redis time, then others get a turn.
SCAN_CHUNK = 5000
#: Records per call of a bulk action.
ACT_BATCH = 200
_REF = re.compile(r"^(\d+)\.(\d+)\.([0-9a-f]{40})$")


def make_ref(index: int, record: bytes) -> str:
    """The address of one failure record: position hint, length and SHA-1 of its bytes."""
    return f"{index}.{len(record)}.{hashlib.sha1(record).hexdigest()}"


def parse_ref(ref: str) -> tuple[int, int, str] | None:
    """``(hint, length, sha1)`` of a reference, or ``None`` when it is not one."""
    m = _REF.match(ref or "")
    return (int(m[1]), int(m[2]), m[3]) if m else None


def filter_args(where: FailedFilter) -> list[str]:
    """The filter as ``failed_scan.lua`` takes it (ARGV[6..9])."""
    return [payload.dumps(where.queue) if where.queue else "",
            payload.dumps(where.task) if where.task else "",
            payload.dumps(where.exception) if where.exception else "",
            where.search]


def retry_target(record: bytes) -> tuple[str, str, str, str] | None:
    """``(queue, payload, priority score, result id)`` to requeue a failure record's job.

    The payload is the one the job failed with, every field kept (id, kwargs, priority,
    enqueued_at, attempts...); ``None`` when the record names no queue to go back to.
    """
    try:
        failure = payload.decode_failure(record)
    except payload.PayloadError:
        return None
    body = failure.payload
    queue = failure.queue or (body.get("queue") if isinstance(body, dict) else "") or ""
    if not isinstance(queue, str) or not queue:
        return None
    if isinstance(body, str):  # an undecodable job kept verbatim: it goes back as it came
        return queue, body, "", ""
    data = payload.dumps(body)
    priority = body.get("priority", 0) if isinstance(body, dict) else 0
    score = str((100 - priority) * 10**12) if isinstance(priority, int) and priority else ""
    job_id = body.get("id") if isinstance(body, dict) else None
    return queue, data, score, job_id if isinstance(job_id, str) else ""


class RedisManageMixin(Broker):
    """Action half of ``RedisBroker``'s monitoring API (reads are in ``redis_inspect``)."""

    client: redis.Redis
    keys: Keys
    namespace: str
    pending_result_ttl: int
    _tokens: Tokens

    # -------------------------------------------------------------- failed: by reference
    def _act(self, mode: str, groups: list[list[Any]]) -> Any:
        args: list[Any] = [mode, f"jobqueue-tomb:{os.urandom(12).hex()}",
                           f"{self.namespace}:", self.pending_result_ttl]
        for group in groups:
            args.extend(group)
        return self._call(lambda: self._script("failed_act")(
            keys=[self.keys.failed, self.keys.queues], args=args))

    def _find_failed(self, ref: str) -> tuple[int, bytes] | None:
        parsed = parse_ref(ref)
        if parsed is None:
            return None
        reply = self._act("find", [list(parsed)])
        return (int(reply[0]), reply[1]) if reply else None

    def retry_failed(self, refs: Sequence[str]) -> int:
        done = 0
        for chunk in _chunks(list(dict.fromkeys(refs)), ACT_BATCH):
            groups = []
            for ref in chunk:
                found = self._find_failed(ref)
                target = retry_target(found[1]) if found else None
                if found is None or target is None:
                    continue
                groups.append(_address(*found) + list(target))
            if groups:
                done += int(self._act("retry", _descending(groups)))
        return done

    def remove_failed(self, refs: Sequence[str]) -> int:
        groups = [list(p) for p in (parse_ref(r) for r in dict.fromkeys(refs)) if p]
        done = 0
        for chunk in _chunks(groups, ACT_BATCH):
            done += int(self._act("remove", _descending(chunk)))
        return done

    # -------------------------------------------------------------- failed: by filter
    def _scan_call(self, direction: str, start: int, mode: str, budget: int, want: int,
                   where: FailedFilter) -> list[Any]:
        args = [direction, start, mode, budget, want, *filter_args(where),
                f"jobqueue-tomb:{os.urandom(12).hex()}"]
        return self._call(lambda: self._script("failed_scan")(keys=[self.keys.failed],
                                                              args=args))

    def _matching_batches(self, where: FailedFilter) -> Iterator[list[list[Any]]]:
        """Retry groups for every match, newest first, one batch per scan call."""
        cursor = -1
        while True:
            reply = self._scan_call("down", cursor, "records", SCAN_CHUNK, ACT_BATCH, where)
            pairs = reply[3:]
            groups = []
            for i in range(0, len(pairs), 2):
                index, record = int(pairs[i]), pairs[i + 1]
                target = retry_target(record)
                if target is not None:
                    groups.append(_address(index, record) + list(target))
            if groups:
                yield groups
            if int(reply[1]) < 0:
                return
            cursor = int(reply[1])

    def retry_failed_matching(self, where: FailedFilter) -> int:
        done = 0
        for groups in self._matching_batches(where):
            # Retrying removes records above the cursor only, so the cursor stays valid.
            done += int(self._act("retry", groups))
        return done

    def remove_failed_matching(self, where: FailedFilter) -> int:
        if not where.active:
            return self.clear_failed()
        cursor, done = -1, 0
        while True:
            reply = self._scan_call("down", cursor, "remove", SCAN_CHUNK, 0, where)
            done += int(reply[2])
            if int(reply[1]) < 0:
                return done
            cursor = int(reply[1])

    def clear_failed(self) -> int:
        def run() -> int:
            pipe = self.client.pipeline(transaction=True)
            pipe.llen(self.keys.failed)
            pipe.delete(self.keys.failed)
            return int(pipe.execute()[0])

        return self._call(run)

    # -------------------------------------------------------------- queues
    def delete_queued(self, queue: str, raw: str) -> bool:
        k = self.keys
        try:
            body = payload.json.loads(raw)
        except ValueError:
            body = None
        job_id = body.get("id") if isinstance(body, dict) else None
        result_key = k.result(job_id) if isinstance(job_id, str) and job_id else ""
        return bool(self._call(lambda: self._script("queue_delete")(
            keys=[k.queue(queue), k.priority_queue(queue), result_key],
            args=[raw_bytes(raw)])))

    def clear_queue(self, queue: str, *, forget: bool = False) -> int:
        k = self.keys
        return int(self._call(lambda: self._script("queue_clear")(
            keys=[k.queue(queue), k.priority_queue(queue), k.wake(queue), k.queues],
            args=[queue, "forget" if forget else ""])))

    # -------------------------------------------------------------- workers
    def prune_worker(self, worker_id: str, now: datetime) -> Pruned:
        if worker_id not in self.stale_workers(now):
            return Pruned(False, reason="not stale: its heartbeat is recent (or it never "
                                        "sent one)")
        k = self.keys
        beat = self._call(lambda: self.client.hget(k.heartbeats, worker_id))
        held = self.in_flight(worker_id)
        queue, raw = held if held else ("", "")
        score = ""
        job_id = None
        if raw:
            try:
                body = payload.json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict):
                job_id = body.get("id")
                prio = body.get("priority", 0)
                if isinstance(prio, int) and prio:
                    score = str((100 - prio) * 10**12)
        keys = [k.workers, k.worker(worker_id), k.worker_started(worker_id), k.heartbeats,
                k.stat("processed", worker_id), k.stat("failed", worker_id),
                k.worker_info(worker_id), k.queue(queue) if raw else "",
                k.priority_queue(queue) if raw else "", k.queues,
                k.wake(queue) if raw else "",
                k.result(job_id) if isinstance(job_id, str) and job_id else ""]
        args = [worker_id, beat or b"", raw_bytes(raw), queue, score,
                raw_bytes(self._tokens.marker(worker_id, raw, "")) if raw else ""]
        # What it prefetched goes back first, so that its in-flight job ends up before it.
        self._call(lambda: self._script("release")(keys=[k.prefetch(worker_id)],
                                                   args=[f"{k.namespace}:"]))
        reply = int(self._call(lambda: self._script("worker_prune")(keys=keys, args=args)))
        if reply == 2:
            return Pruned(True, requeued_to=queue)
        if reply == 1:
            return Pruned(True)
        return Pruned(False, reason="it sent a heartbeat or changed job meanwhile"
                      if reply in (-1, -2) else "unexpected reply")

    # -------------------------------------------------------------- delayed jobs
    def _delayed(self, mode: str, timestamp: int, raw: str) -> int:
        k = self.keys
        return int(self._call(lambda: self._script("delayed_act")(
            keys=[k.delayed_schedule, k.delayed(timestamp), k.timestamps(raw)],
            args=[mode, str(timestamp), raw_bytes(raw), f"{self.namespace}:"])))

    def run_scheduled_now(self, timestamp: int, raw: str) -> bool:
        return self._delayed("run", timestamp, raw) == 1

    def delete_scheduled(self, timestamp: int, raw: str) -> bool:
        return self._delayed("delete", timestamp, raw) == 1

    # Provided by RedisBroker and its mixins.
    def _call(self, fn: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _script(self, name: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


def _address(index: int, record: bytes) -> list[Any]:
    """``failed_act.lua``'s hint, length and digest of one record."""
    return [index, len(record), hashlib.sha1(record).hexdigest()]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _descending(groups: list[list[Any]]) -> list[list[Any]]:
    """Act on higher indexes first: removing one never shifts the hints still to come."""
    return sorted(groups, key=lambda g: -int(g[0]))
