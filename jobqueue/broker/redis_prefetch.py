"""Prefetch for ``--no-fork`` workers: reserve a few jobs at once, start each without a wait.

A worker that runs jobs in its own process spends most of a small job waiting for Redis:
the acknowledgement of one job and the reservation of the next are a round trip. With a
prefetch of N, ``reserve.lua`` reserves up to N jobs of the first non-empty queue in one
step: the first goes to ``worker:<id>`` as always, the others wait in order in the worker's
prefetch list (``<ns>:jobqueue:prefetch:<id>``), in flight like it. For each of them the
worker then sends ``finish.lua`` of the job it ran and ``start.lua`` of the next in one
packet, and runs the next job at once; it reads the replies later (after up to three jobs
while jobs are short, after one once a job takes more than a millisecond: ``_send_async``).
The batch's last start carries a refill as well (``reserve.lua`` in refill mode: up to N-1
jobs into the prefetch list, none into ``worker:<id>``, which holds the job just started), so
in a steady stream the worker never waits for a reserve: the next batch is in the reply it
reads after the job.

What stays true: a reserved job is always in Redis (queue, prefetch list, in-flight record,
done), so a worker killed at any point loses nothing: ``unregister_worker`` and the reaper
put its prefetch list back at the head of its queues (``release.lua``), in order, without
counting an attempt. Every step is conditional on the in-flight record, so a packet sent
twice (after a dropped connection) acts once: each step looks for its job's reservation
token (``"jq":"<token>.<k>"``, see ``redis_tokens``), so even a batch of byte-identical
plain Resque jobs is acknowledged and started one by one. What changes: a worker holds up
to N-1 more jobs than it runs, so a job of higher priority that arrives meanwhile waits for
them. USR2 takes effect after the job running now, ``pause-all-workers`` after it or the next
one (a start's reply says so, and it is read one job late; with jobs under a millisecond, up
to ``ASYNC_DEPTH`` jobs late); the rest go back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis

from .. import payload
from ..connection import DeferredConnection
from ..exceptions import BrokerUnavailable
from ..job import BadJob, Job, Reservation
from .base import Broker
from .redis_bytes import raw_bytes, text
from .redis_tokens import Tokens, token_marker, token_of

logger = logging.getLogger("jobqueue.worker")
#: What a refill needs when its reply is read: the worker id, its queues, the reserve token.
Refill = tuple[str, list[str], str]
#: Times packets are sent again after a dropped connection before Redis counts as gone.
RESENDS = 2
#: Packets of starts (with the acknowledgements before them) unread at most at a time, and
#: the age after which one is read anyway (see ``_send_async``). Measured on a 2-core VM with
#: no-op jobs, pinned: 4,435 jobs/s with one packet in flight, 4,718 with two, 5,126 with
#: three, 5,111 with four (medians of five runs of 20,000 jobs).
ASYNC_DEPTH = 3
ASYNC_GRACE = 0.001


class _Packet(NamedTuple):
    """A packet sent by ``_send_async``: its scripts' names and commands, the refill it
    carries (worker id, queues, token), if any, and when it was sent (``time.monotonic``)."""

    names: tuple[str, ...]
    commands: list[bytes]
    refill: Refill | None
    sent: float


class RedisPrefetchMixin(Broker):
    """Prefetched reservations and their asynchronous starts; plumbing from ``RedisBroker``."""

    keys: Any
    _deferred: list[tuple[list[Any], list[Any]]]
    _scripts: dict[str, Any]
    _result_prefix: str
    _tokens: Tokens

    def _evalsha(self, name: str, keys: list[Any], args: list[Any]) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def _init_prefetch(self, client: redis.Redis) -> None:
        # Each worker's prefetched jobs, in order, with their reservation tokens.
        self._prefetched: dict[str, deque[tuple[Reservation | BadJob, str | None]]] = {}
        # A --no-fork worker's stream: it spins for replies as producers do (reply_spin).
        self._async = DeferredConnection(client, self.reply_spin)  # type: ignore[attr-defined]
        self._async_owner: int | None = None  # the thread whose packet is in flight
        # Packets sent whose replies are unread, oldest first.
        self._unread: list[_Packet] = []
        #: Seconds after which a sent packet is read before the next job (see _send_async).
        self.async_grace = ASYNC_GRACE

    # ------------------------------------------------------------------ the batch
    def _take_prefetched(self, worker_id: str, queues: Sequence[str] = (),
                         prefetch: int = 1) -> Reservation | BadJob | None:
        """The next prefetched job, started asynchronously (with the held-back ack); when it
        is the batch's last, the same packet refills the batch (``reserve.lua`` in refill
        mode), so the next batch is there when this job is done."""
        batch = self._prefetched.get(worker_id)
        if not batch:
            return None
        item, token = batch.popleft()
        now = self.now()  # type: ignore[attr-defined]
        if isinstance(item, BadJob):
            started, ids, raw, result_id = now, (), item.raw, "-"
        else:
            started = item.started_at or now
            ids = (*item.worker_ids, worker_id)
            raw, result_id = item.job.raw or "", item.job.id or "-"
        fallback = "" if isinstance(item, BadJob) else raw  # an entry without a token
        marker = token_marker(token) if token else fallback
        k = self.keys
        iso_now = payload.format_iso(now)
        start = self._evalsha("start", [k.worker(worker_id), k.prefetch(worker_id),
                                        self._result_prefix + result_id, k.pause_all],
                              [raw_bytes(marker), payload.run_at_of_iso(iso_now), iso_now,
                               payload.dumps(list(ids)),
                               iso_now if started is now else payload.format_iso(started)])
        commands = [self._evalsha("finish", keys, args) for keys, args in self._deferred]
        self._deferred.clear()
        names = (*("finish",) * len(commands), "start")
        commands.append(start)
        refill = None
        if not batch and prefetch > 1 and marker and queues:  # the batch's last job
            refill = (worker_id, list(queues), self._tokens.new())
            names = (*names, "reserve")
            commands.append(self._refill_command(refill, marker, prefetch - 1, now))
        self._send_async(names, commands, refill)
        self._tokens.hold(worker_id, token, raw)
        if isinstance(item, BadJob):
            return BadJob(raw=item.raw, queue=item.queue, error=item.error, run_at=now,
                          worker_id=worker_id)
        return Reservation(job=item.job, queue=item.queue, run_at=now, worker_id=worker_id,
                           started_at=started, worker_ids=ids)

    def _refill_command(self, refill: Refill, marker: str, more: int, now: Any) -> bytes:
        """``reserve.lua`` in refill mode: up to ``more`` jobs into the prefetch list, only
        if ``worker:<id>`` holds the job started just before it (``marker``)."""
        worker_id, queues, token = refill
        keys, args = self._reserve_call(  # type: ignore[attr-defined]
            worker_id, queues, now, more, token, refill=marker)
        return self._evalsha("reserve", keys, args)

    def _keep_prefetched(self, worker_id: str, queue: str, reply: Sequence[Any],
                         now: Any, token: str, first: int = 4) -> None:
        """Remember the jobs ``reserve.lua`` prefetched (its reply from index ``first``: after
        the first job, or after the queue's index for a refill) and their tokens
        (``<token>.<k>`` for the k-th)."""
        batch: deque[tuple[Reservation | BadJob, str | None]] = deque()
        for k, at in enumerate(range(first, len(reply), 3), start=1):
            started = payload.parse_time(text(reply[at + 1])) if reply[at + 1] else None
            ids = tuple(json.loads(text(reply[at + 2]))) if reply[at + 2] else ()
            batch.append((_entry(text(reply[at]), queue, worker_id, now,
                                 lambda _job, s=started, i=ids: (s, i)),
                          f"{token}.{k}" if token else None))
        if batch:
            self._prefetched[worker_id] = batch

    def _recover_prefetched(self, worker_id: str, records: Sequence[Any], now: Any) -> None:
        """After a lost reserve reply: the prefetch list is in Redis; rebuild the batch (an
        entry written without a token is matched by its payload)."""
        batch: deque[tuple[Reservation | BadJob, str | None]] = deque()
        for entry in records:
            found = _split_record(text(entry))
            if found is not None:
                batch.append((_entry(found[1], found[0], worker_id, now, self._attempts),
                              token_of(text(entry))))
        if batch:
            self._prefetched[worker_id] = batch

    def _attempts(self, job: Job) -> tuple[Any, tuple[str, ...]]:
        """``(started_at, worker_ids)`` of a job's result record (none: ``(None, ())``)."""
        record = self.get_result(job.id) if job.id else None
        return (record.started_at, tuple(record.worker_ids)) if record else (None, ())

    def release(self, worker_id: str) -> int:
        """Put back at the head of their queues the job a wait reserved and the jobs
        prefetched, none of them started."""
        count = self._put_back_waited(worker_id)  # type: ignore[attr-defined]
        if not self._prefetched.get(worker_id):
            return count
        return count + self._release(worker_id)

    def _release(self, worker_id: str) -> int:
        """``release.lua`` for ``worker_id``'s prefetch list, whatever this process knows of
        it (the list in Redis is what counts)."""
        self._prefetched.pop(worker_id, None)
        command = self._evalsha("release", [self.keys.prefetch(worker_id)],
                                [f"{self.keys.namespace}:"])
        return int(self._call(lambda: self._run_packed("release", [command])[0]))  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ the packet
    def _send_async(self, names: tuple[str, ...], commands: list[bytes],
                    refill: Refill | None = None) -> None:
        """Send a packet and return; its replies are read by a later ``_settle_async``.

        Up to ``ASYNC_DEPTH`` packets stay unread while jobs are short: a packet's replies
        are read after the job it started and the next ones have run, so Redis has those
        jobs' time to answer, and the worker does not sleep in a read for each job. A packet
        older than ``async_grace`` is read before the next job (its replies are surely in:
        reading them costs no wait), so after a job that took longer than that, a pause or a
        lost batch is seen as soon as with one packet in flight. ``reserve`` reads them all
        when its batch is empty (a refill's reply holds the next batch).
        """
        self._settle_async(keep=ASYNC_DEPTH - 1)
        self._async_owner = threading.get_ident()
        self._unread.append(_Packet(names, commands, refill, time.monotonic()))
        if self._async.conn is not None or not self._unread[:-1]:
            try:
                self._async.send(b"".join(commands), len(commands))
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self._async.reset()  # every unread packet is sent again by _settle_async

    def _due(self, keep: int) -> int:
        """How many of the oldest unread packets to read now: all but the newest ``keep``,
        and every one sent longer than ``async_grace`` ago."""
        unread = self._unread
        due = max(len(unread) - keep, 0)
        if due < len(unread):
            old = time.monotonic() - self.async_grace
            while due < len(unread) and unread[due].sent <= old:
                due += 1
        return due

    def _settle_async(self, keep: int = 0) -> None:
        """Read the replies of the packets ``_due`` (by default of all of them); after a
        dropped connection send every unread packet again, in order (each step is
        conditional: one that already acted does nothing).

        Only the thread that sent them settles them (a heartbeat thread never does).
        """
        if not self._unread or threading.get_ident() != self._async_owner:
            return
        due = self._due(keep)
        if not due:
            return
        for attempt in range(RESENDS + 1):
            try:
                if not self._async.outstanding:  # the connection was lost: send them again
                    for packet in self._unread:
                        self._async.send(b"".join(packet.commands), len(packet.commands))
                    due = len(self._unread)  # and read them all (see _check_replies)
                replies = self._async.collect(sum(len(p.names) for p in self._unread[:due]))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._async.reset()
                if attempt == RESENDS:
                    raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
                continue
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                for name in dict.fromkeys(n for p in self._unread for n in p.names):
                    self.client.script_load(self._scripts[name].script)  # type: ignore[attr-defined]
                self._async.reset()  # the newer packets failed alike: send every one again
                due = len(self._unread)
                continue
            self._check_replies(replies, due)
            return

    def _check_replies(self, replies: list[Any], packets: int) -> None:
        """Act on the replies of the oldest ``packets`` unread packets."""
        starts, refills = [], []
        at = 0
        for names, _, refill, _ in self._unread[:packets]:
            packet = replies[at:at + len(names)]
            at += len(names)
            starts.append(packet[names.index("start")])
            if refill is not None:
                refills.append((refill, packet[-1]))
        del self._unread[:packets]
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        for refill, reply in refills:  # a refill acts only if its start did
            self._refilled(refill, reply)
        # Sent again after a lost connection, a start that had acted finds a later job in
        # flight and says 0; so only the newest start read says whether the batch is ours.
        if starts and int(starts[-1]) == 0:
            self._lost_prefetch()
        elif any(int(reply) == 3 for reply in starts):  # pause-all-workers: the rest go back
            for worker_id in [w for w, batch in self._prefetched.items() if batch]:
                self._release(worker_id)

    def _refilled(self, refill: Refill, reply: Any) -> None:
        """Keep the batch a refill reserved ({-2, records}: a resent refill found the list
        already filled; {-3}, false or {0}: it took nothing)."""
        worker_id, queues, token = refill
        if not reply or int(reply[0]) in (0, -3):
            return
        now = self.now()  # type: ignore[attr-defined]
        if int(reply[0]) == -2:
            self._recover_prefetched(worker_id, reply[1:], now)
        else:
            self._keep_prefetched(worker_id, queues[int(reply[0]) - 1], reply, now, token,
                                  first=1)

    def _lost_prefetch(self) -> None:
        """A start found its job gone (a reaper or an operator moved the prefetch list): the
        job is running anyway (at least once); what was prefetched after it is not ours."""
        logger.warning("Prefetched jobs were moved away from this worker (reaped while "
                       "alive?); dropping %d of them here",
                       sum(len(b) for b in self._prefetched.values()))
        self._prefetched.clear()


def _entry(raw: str, queue: str, worker_id: str, now: Any,
           attempts: Callable[[Job], tuple[Any, tuple[str, ...]]]) -> Reservation | BadJob:
    """One prefetched job as the worker will get it: a ``Reservation``, or a ``BadJob`` kept
    verbatim when its payload does not decode (it is failed in its turn)."""
    try:
        job = payload.decode_job(raw, queue)
    except payload.PayloadError as exc:
        return BadJob(raw=raw, queue=queue, error=str(exc), run_at=now, worker_id=worker_id)
    started, ids = attempts(job)
    return Reservation(job=job, queue=queue, run_at=now, worker_id=worker_id,
                       started_at=started, worker_ids=ids)


def _split_record(entry: str) -> tuple[str, str] | None:
    """``(queue, exact payload)`` of an in-flight record (the payload is its tail)."""
    at = entry.find('"payload":')
    try:
        body = json.loads(entry)
    except ValueError:
        return None
    if at < 0 or not isinstance(body, dict):
        return None
    raw = body["payload"] if isinstance(body.get("payload"), str) else entry[at + 10:-1]
    return str(body.get("queue", "")), raw


__all__ = ["RedisPrefetchMixin"]
