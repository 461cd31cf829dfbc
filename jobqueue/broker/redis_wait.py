"""An idle worker's wait for ``RedisBroker``: the blocking pop, with the reserve behind it.

An idle worker blocks in ``BLPOP`` on its queues' wake lists. A job pushed by jobqueue adds
a wake token, the pop returns, and the worker used to send ``reserve.lua`` next: one more
round trip, a second wake-up of the worker and of Redis, before the job could start. Here
the reserve is sent in the same packet, behind the ``BLPOP``. Redis runs a client's commands
in order and runs the ones queued behind a blocking command as soon as it unblocks, so the
reserve runs the moment the token arrives and its reply comes back with the pop's: the job
reaches the worker in the push's own hop, as in Huey's blocking pop, while keeping the
in-flight record, the priorities across queues and the prefetch of ``reserve.lua``
(``BLMOVE`` takes one list, so Redis 6.2 cannot make that reservation in the pop itself).

The reservation is kept for the worker's next ``reserve`` call, which returns it without a
round trip. The reserve's times are Redis's own clock at the moment it runs (an empty
``run_at`` argument): it runs when the wait ends, not when it was sent.

A signal interrupting the wait must not leave a reservation behind unread: the pending
``BLPOP`` is ended with ``CLIENT UNBLOCK`` from another connection (the reserve behind it
then runs, finding a job or not) and both replies are read, so the worker knows what it
holds and puts it back if it is stopping. Only if Redis does not answer at all is the
connection dropped; a reserve that ran with its reply lost is then delivered again by the
worker's next ``reserve`` (``reserve.lua`` returns a job the worker already holds), or put
back by ``release``.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from .. import payload
from ..exceptions import BrokerUnavailable
from ..job import BadJob, Job, Reservation
from .base import Broker

if TYPE_CHECKING:
    from ..keys import Keys

logger = logging.getLogger("jobqueue.broker")
_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
#: How long an interrupted wait waits for the replies after ``CLIENT UNBLOCK``.
UNBLOCK_SECONDS = 2.0


class RedisWaitMixin(Broker):
    """The waiting half of ``RedisBroker``."""

    client: redis.Redis
    keys: Keys
    _scripts: dict[str, Any]
    _deferred: list[tuple[list[Any], list[Any]]]
    _unread: list[Any]

    def _init_wait(self) -> None:
        # The reservation each worker's wait made, for its next ``reserve``.
        self._waited: dict[str, Reservation | BadJob] = {}
        # Workers whose wait was abandoned with a reserve that may have run unread.
        self._lost_waits: set[str] = set()

    def _reserve_call(self, worker_id: str, queues: Sequence[str], now: Any, more: int,
                      token: str, refill: str = "") -> tuple[list[Any], list[Any]]:
        raise NotImplementedError  # pragma: no cover - provided by RedisBroker

    def _reserved(self, worker_id: str, queues: Sequence[str], reply: Any, now: Any,
                  token: str) -> Reservation | BadJob | None:
        raise NotImplementedError  # pragma: no cover - provided by RedisBroker

    def _call(self, fn: Any, *, flush: bool = True) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _settle_async(self) -> None:  # pragma: no cover - provided by the prefetch mixin
        raise NotImplementedError

    def now(self) -> Any:  # pragma: no cover - provided by RedisBroker
        raise NotImplementedError

    def wait_for_job(self, queues: Sequence[str], timeout: float, interrupt_fd: int | None,
                     *, worker_id: str | None = None, prefetch: int = 1) -> None:
        """See ``Broker.wait_for_job``; with ``worker_id``, reserve behind the pop."""
        if not queues:
            _sleep_or_interrupt(timeout, interrupt_fd)
            return
        if worker_id is not None:
            self._settle_async()  # a refill in flight must be read before reserving again
        # Reserve behind the pop only with nothing else owed on this worker's connections.
        owner = worker_id if not self._deferred and not self._unread else None
        token = self._tokens.new() if owner else None  # type: ignore[attr-defined]
        pool = self.client.connection_pool
        conn = self._call(pool.get_connection)
        try:
            packet = list(conn.pack_command("CLIENT", "ID")) if owner else []
            packet += conn.pack_command("BLPOP", *[self.keys.wake(q) for q in queues],
                                        f"{max(timeout, 0.01):.3f}")
            if owner and token:
                keys, args = self._reserve_call(owner, queues, None, max(prefetch - 1, 0), token)
                packet += conn.pack_command("EVALSHA", self._scripts["reserve"].sha,
                                            len(keys), *keys, *args)
            conn.send_packed_command([b"".join(packet)])  # one write, not one per command
            client_id = conn.read_response() if owner else None
            if not self._await(conn, timeout, interrupt_fd, client_id):
                if owner:
                    self._lost_waits.add(owner)
                return
            conn.read_response()  # the pop: a token, or nil after the timeout
            if owner and token:
                self._keep_waited(owner, queues, conn, token)
        except (OSError, *_REDIS_ERRORS) as exc:
            conn.disconnect()
            if owner:
                self._lost_waits.add(owner)
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
        finally:
            pool.release(conn)

    def _await(self, conn: Any, timeout: float, interrupt_fd: int | None,
               client_id: Any) -> bool:
        """Wait for the pop's reply; False when the wait was abandoned (connection dropped).

        On an interrupt the pending pop is unblocked when its client id is known (then the
        replies are read as usual), else abandoned.
        """
        sock = getattr(conn, "_sock", None)
        if interrupt_fd is None or sock is None:
            return True
        if conn.can_read(timeout=0):  # replies already buffered
            return True
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(interrupt_fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll((timeout + 2.0) * 1000)}
        if sock.fileno() in ready:
            return True
        if interrupt_fd in ready and client_id is not None:
            try:
                self.client.execute_command("CLIENT", "UNBLOCK", client_id)
                if conn.can_read(timeout=UNBLOCK_SECONDS):
                    return True
            except _REDIS_ERRORS:
                pass
        conn.disconnect()  # interrupted (or Redis silent): abandon the pending pop
        return False

    def _keep_waited(self, worker_id: str, queues: Sequence[str], conn: Any,
                     token: str) -> None:
        try:
            reply = conn.read_response()
        except redis.ResponseError as exc:  # NOSCRIPT after a restart: the reserve did not run
            logger.debug("Reserve behind the wait failed (%s); the next reserve retries", exc)
            return
        found = self._reserved(worker_id, queues, reply, self.now(), token)
        if found is not None:
            self._waited[worker_id] = found

    def _take_waited(self, worker_id: str) -> Reservation | BadJob | None:
        """The reservation the last wait made for ``worker_id``, once."""
        return self._waited.pop(worker_id, None)

    def _put_back_waited(self, worker_id: str) -> int:
        """Requeue the job a wait reserved for ``worker_id`` and never handed out (the
        worker stops or pauses); with a wait abandoned unread, whatever the worker holds.
        Returns how many jobs went back (its prefetched ones go back with it)."""
        waited = self._waited.pop(worker_id, None)
        if isinstance(waited, Reservation):
            return int(self.requeue(worker_id, waited.job, waited.queue, None))
        held = (waited.queue, waited.raw) if waited is not None else None
        if held is None and worker_id in self._lost_waits:
            self._lost_waits.discard(worker_id)
            held = self.in_flight(worker_id)  # keeps the record's token for the requeue
        if held is None:
            return 0
        queue, raw = held
        try:  # decoded for its priority; else put back verbatim (its taker judges it)
            job = payload.decode_job(raw, queue)
        except payload.PayloadError:
            job = Job(task_name="", args=[], raw=raw, queue=queue)
        return int(self.requeue(worker_id, job, queue, None))

def _sleep_or_interrupt(timeout: float, interrupt_fd: int | None) -> None:
    if interrupt_fd is None:
        time.sleep(timeout)
        return
    poller = select.poll()
    poller.register(interrupt_fd, select.POLLIN)
    poller.poll(timeout * 1000)
