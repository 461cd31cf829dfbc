"""The producer half of ``RedisBroker``: push one job, many, or a batch of one task's calls.

One ``EVALSHA push`` per job, or per thousand jobs of ``push_many``/``push_batch``, packed once
and sent on the calling thread's own connection (``connection.ThreadConnection``): no pool
round, no per-command machinery. ``get_result`` reads a result the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .. import payload
from ..job import Job
from .base import Broker
from .redis_bytes import text

#: Jobs per round trip of ``push_many``.
PUSH_CHUNK = 1000


_MARK_ARGS = "\x00jobqueue:args\x00"
_MARK_KWARGS = "\x00jobqueue:kwargs\x00"
_MARK_ID = "jobqueue-id-mark-5e1f"


def batch_encoder(job: Job) -> Callable[[str, list[Any], dict[str, Any]], str]:
    """``payload.encode_job`` for copies of ``job`` that differ only in id, args and kwargs.

    ``encode_job`` writes one template with marks in their place; each payload is the
    template with the marks' JSON replaced by the call's: the same bytes ``encode_job`` would
    write, at the cost of encoding the arguments alone. (If the template does not hold each
    mark once, in the order class, args, id, kwargs, every job is encoded whole.)
    """
    template = payload.encode_job(replace(job, args=[_MARK_ARGS], kwargs={_MARK_KWARGS: 0},
                                          id=_MARK_ID))
    marks = [payload.dumps([_MARK_ARGS]), _MARK_ID, payload.dumps({_MARK_KWARGS: 0})]
    found = [template.find(mark) for mark in marks]
    if any(template.count(mark) != 1 for mark in marks) or found != sorted(found):
        return lambda i, a, k: payload.encode_job(replace(job, id=i, args=a, kwargs=k))
    ends = [at + len(mark) for at, mark in zip(found, marks, strict=True)]
    head, mid, mid2, tail = (template[: found[0]], template[ends[0] : found[1]],
                             template[ends[1] : found[2]], template[ends[2] :])
    dumps = payload.dumps

    def encode(result_id: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        if not (result_id.isascii() and result_id.isalnum()):
            result_id = dumps(result_id)[1:-1]
        return (head + (dumps(args) if args else "[]") + mid + result_id + mid2
                + (dumps(kwargs) if kwargs else "{}") + tail)

    return encode


class RedisProduceMixin(Broker):
    """Enqueueing and result reads; the plumbing comes from ``RedisBroker``."""

    keys: Any
    pending_result_ttl: int
    _lane: Any
    _scripts: dict[str, Any]
    _push_keys: dict[str, list[str]]
    _result_prefix: str
    reply_spin: float

    def _call(self, fn: Any, *, flush: bool = True) -> Any:  # pragma: no cover - RedisBroker
        raise NotImplementedError

    def _evalsha(self, name: str, keys: list[Any], args: list[Any]) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def _run_packed(self, names: Any, commands: list[bytes],
                    meanwhile: Callable[[], object] | None = None,
                    spin: float = 0.0) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    # One EVALSHA push.lua per call, packed once and sent on this thread's own connection
    # (connection.ThreadConnection): no pool round, no per-command machinery.
    def _queue_keys(self, queue: str) -> list[str]:
        """push.lua's KEYS for ``queue`` (cached: building keys costs more than the lookup)."""
        keys = self._push_keys.get(queue)
        if keys is None:
            if len(self._push_keys) >= 1024:
                self._push_keys.clear()
            k = self.keys
            keys = self._push_keys[queue] = [k.queues, k.queue(queue), k.wake(queue),
                                             k.priority_queue(queue), k.priority_sequence]
        return keys

    def _push_call(self, job: Job, result: payload.ResultRecord | None
                   ) -> tuple[list[Any], list[Any]]:
        """push.lua's KEYS and ARGV for one job."""
        args: list[Any] = [job.queue, job.priority, "", self.pending_result_ttl,
                           self._result_prefix]
        if result is None:
            args += (0, "", payload.encode_job(job))
        else:
            fields = payload.encode_enqueued_result(result, job)
            args.append(len(fields))
            for field, value in fields.items():
                args += (field, value)
            args += (result.id, payload.encode_job(job))
        return self._queue_keys(job.queue), args

    def _push_commands(self, pipe: Any, job: Job, result: payload.ResultRecord | None) -> None:
        keys, args = self._push_call(job, result)
        self._scripts["push"](keys=keys, args=args, client=pipe)

    def push(self, job: Job, result: payload.ResultRecord | None, *,
             meanwhile: Callable[[], object] | None = None) -> None:
        keys, args = self._push_call(job, result)
        command = self._evalsha("push", keys, args)
        self._call(lambda: self._run_packed("push", [command], meanwhile, self.reply_spin))

    def push_many(self, items: Sequence[tuple[Job, payload.ResultRecord | None]]) -> None:
        for start in range(0, len(items), PUSH_CHUNK):
            chunk = items[start : start + PUSH_CHUNK]
            self._call(lambda chunk=chunk: self.push_many_chunk(chunk))

    def push_many_chunk(self, items: Sequence[tuple[Job, payload.ResultRecord | None]]) -> None:
        """Push up to a thousand jobs in one round trip: one push.lua call per run of jobs
        that share a queue, a priority and their results' other fields (normally one)."""
        commands = [self._evalsha("push", *call) for call in self._push_many_calls(items)]
        if commands:
            self._run_packed("push", commands)

    def _push_many_calls(self, items: Sequence[tuple[Job, payload.ResultRecord | None]]
                         ) -> list[tuple[list[Any], list[Any]]]:
        calls: list[tuple[list[Any], list[Any]]] = []
        group: tuple[Any, ...] | None = None
        for job, result in items:
            fields = () if result is None else tuple(
                payload.encode_enqueued_result(result, job).items())
            if (job.queue, job.priority, fields) != group:
                group = (job.queue, job.priority, fields)
                args: list[Any] = [job.queue, job.priority, "", self.pending_result_ttl,
                                   self._result_prefix, len(fields)]
                for field, value in fields:
                    args += (field, value)
                calls.append((self._queue_keys(job.queue), args))
            calls[-1][1].extend((result.id if result is not None else "",
                                 payload.encode_job(job)))
        return calls

    def push_batch(self, job: Job, result: payload.ResultRecord | None,
                   calls: Sequence[tuple[str, list[Any], dict[str, Any]]],
                   meanwhile: Callable[[int, int], object] | None = None) -> None:
        """Push ``job`` once per ``(id, args, kwargs)`` of ``calls``, with that id and those
        arguments, and with ``result`` a READY record for each, alike but for the same three:
        ``push_many`` of such jobs for less work (``enqueue_many``). One round trip and one
        push.lua call per 1,000 jobs; ids are ``new_result_id()``'s hex strings.

        ``meanwhile(start, end)`` runs while Redis stores ``calls[start:end]`` (between
        sending them and reading the reply); it may run again for the same calls. The next
        1,000 are encoded in that wait as well, so Redis' work on one chunk and the client's
        on the next overlap while still only one chunk is in flight (a failed chunk leaves
        every later one unsent).
        """
        command_for = self._batch_commands(job, result, calls)
        ahead: dict[int, bytes] = {}  # the next chunk's command, by its first index
        for start in range(0, len(calls), PUSH_CHUNK):
            command = ahead.pop(start, None) or command_for(start)
            end = min(start + PUSH_CHUNK, len(calls))

            def then(start: int = start, end: int = end) -> None:
                if meanwhile is not None:
                    meanwhile(start, end)
                if end < len(calls) and end not in ahead:  # (a resend finds it there)
                    ahead[end] = command_for(end)

            self._call(lambda command=command, then=then: self._run_packed(
                "push", [command], then))

    def _batch_commands(self, job: Job, result: payload.ResultRecord | None,
                        calls: Sequence[tuple[str, list[Any], dict[str, Any]]]
                        ) -> Callable[[int], bytes]:
        """``push_batch``'s EVALSHA push.lua for the chunk of ``calls`` from ``start``."""
        encode = batch_encoder(job)
        head: list[Any] = [job.queue, job.priority, "", self.pending_result_ttl,
                           self._result_prefix]
        if result is None:
            head.append(0)
        else:
            fields = payload.encode_enqueued_result(
                replace(result, id=job.id or "", args=job.args, kwargs=job.kwargs), job)
            head.append(len(fields))
            for field, value in fields.items():
                head += (field, value)
        keys = self._queue_keys(job.queue)

        def command_for(start: int) -> bytes:
            args = list(head)
            for result_id, call_args, call_kwargs in calls[start : start + PUSH_CHUNK]:
                args += ("" if result is None else result_id,
                         encode(result_id, call_args, call_kwargs))
            return self._evalsha("push", keys, args)

        return command_for

    def get_result(self, result_id: str) -> payload.ResultRecord | None:
        lane = self._lane
        command = lane.packed("HGETALL", self._result_prefix + result_id)
        raw = self._call(lambda: lane.call(command, spin=self.reply_spin))
        if not raw:
            return None
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        return payload.decode_result(result_id, {text(k): text(v) for k, v in pairs})

