"""Redis clients for jobqueue backends, built from ``TASKS[alias]["OPTIONS"]``.

Clients are process-global and shared by every thread's backend instance (Django builds one
backend per thread). redis-py's connection pools notice a fork and reconnect in the child, so
a forked job never reuses its parent's socket.

``ThreadConnection`` is the producer's lean lane: each thread keeps one connection taken from
the client's pool and sends commands packed once, skipping redis-py's per-command pool round
(lock, readiness poll, metrics) while keeping its retry policy. A producer's call may also
spin for its reply instead of sleeping at once (``_Kept.spin_for_reply``).
"""

from __future__ import annotations

import functools
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings

from .exceptions import ConfigurationError

try:  # hiredis packs a whole command in C; optional (the ``hiredis`` extra)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - exercised where hiredis is not installed
    _hiredis_pack = None

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = {"redis", "rediss", "unix"}
#: How long (seconds) a producer's call polls for its reply before it sleeps in ``recv``,
#: by default: 200 µs where the machine has another CPU for Redis to answer on, else none
#: (spinning would only delay a Redis that shares this one CPU). See ``_Kept``.
DEFAULT_REPLY_SPIN = 200e-6 if (os.cpu_count() or 1) > 1 else 0.0
_clients: dict[tuple[str, tuple[tuple[str, str], ...]], redis.Redis] = {}
_lock = threading.Lock()

#: Connection defaults: fail fast when Redis is gone, notice dead peers, keep bytes raw.
#: A forked job opens a fresh connection, so the handshake is kept to one round trip:
#: RESP2 (no HELLO), no CLIENT SETINFO, no PING health check.
CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_connect_timeout": 5.0,
    "socket_timeout": 30.0,
    "socket_keepalive": True,
    "health_check_interval": 0,
    "retry_on_timeout": False,
    "protocol": 2,
    "lib_name": None,
    "lib_version": None,
}


#: Defaults that only make sense for TCP connections (left out for ``unix://`` URLs).
_TCP_ONLY = frozenset({"socket_keepalive"})


@functools.cache
def _supported_defaults() -> dict[str, Any]:
    """Drop defaults this redis-py does not know (older releases lack some)."""
    import inspect

    known = set(inspect.signature(redis.Redis.__init__).parameters)
    defaults = {k: v for k, v in CLIENT_DEFAULTS.items() if k in known}
    if "driver_info" in known:  # redis-py 8+: ``driver_info=None`` disables CLIENT SETINFO
        defaults.pop("lib_name", None)
        defaults.pop("lib_version", None)
        defaults["driver_info"] = None
    if "maint_notifications_config" in known:  # redis-py 7+: RESP3-only feature, off
        try:
            from redis.maint_notifications import MaintNotificationsConfig

            defaults["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        except ImportError:  # pragma: no cover
            pass
    return defaults


def validate_url(url: Any, where: str) -> str:
    """Return ``url`` if it is a Redis URL redis-py can use; raise naming ``where`` otherwise."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{where} must be a Redis URL string, got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{where} = {url!r} is not a Redis URL: use redis://, rediss:// or unix://"
        )
    return url


def url_from_cache(alias: str, where: str) -> tuple[str, dict[str, Any]]:
    """Read the Redis URL (and password) of a django-redis or Django Redis cache alias."""
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(f"{where} names cache {alias!r}, which is not in CACHES")
    cache = caches[alias]
    location = cache.get("LOCATION")
    if isinstance(location, list | tuple):
        location = location[0] if location else None
    url = validate_url(location, f"CACHES[{alias!r}]['LOCATION']")
    extra: dict[str, Any] = {}
    password = (cache.get("OPTIONS") or {}).get("PASSWORD")
    if password:
        extra["password"] = password
    return url, extra


def get_client(url: str, kwargs: Mapping[str, Any] | None = None) -> redis.Redis:
    """Return the process-wide client for ``url`` (created on first use, never at import)."""
    defaults = _supported_defaults()
    if urlsplit(url).scheme == "unix":  # redis-py's unix socket connection rejects these
        defaults = {k: v for k, v in defaults.items() if k not in _TCP_ONLY}
    options = {**defaults, **(kwargs or {})}
    key = (url, tuple(sorted((k, repr(v)) for k, v in options.items())))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(url, decode_responses=False, **options)
                _clients[key] = client
    return client


def reset_clients() -> None:
    """Drop every cached client (tests, and after settings change)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


# --------------------------------------------------------------------------- the lean lane
def _pack_python(args: tuple[Any, ...]) -> bytes:
    """RESP for ``args`` (``bytes``, ``str`` as UTF-8, ``int``): what redis-py would send."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif not isinstance(arg, bytes):
            arg = str(arg).encode("ascii")
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def packer_for(client: redis.Redis) -> Callable[[tuple[Any, ...]], bytes] | None:
    """A function packing a whole command at once for ``client``'s connections, or ``None``
    when the client encodes text other than as strict UTF-8 (then redis-py packs)."""
    kwargs = client.connection_pool.connection_kwargs
    if (kwargs.get("encoding", "utf-8").lower().replace("_", "-") not in {"utf-8", "utf8"}
            or kwargs.get("encoding_errors", "strict") != "strict"):
        return None
    return _hiredis_pack or _pack_python


#: At most this many connections of a pool are kept by threads (and never more than a
#: quarter of its ``max_connections``); other threads borrow one per call.
KEPT_CONNECTIONS = 32


class _Kept:
    """A connection one thread keeps; when the thread ends (its storage goes), it goes back."""

    __slots__ = ("__weakref__", "caught", "conn", "pid", "poller", "sock", "spins", "wait")

    def __init__(self, lane: ThreadConnection, conn: Any) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.sock: Any = None
        self.poller: Any = None
        self.wait = 0.0  # moving average of the wait for a reply, seconds
        self.spins = self.caught = 0  # spins made; of them, ended by the reply
        weakref.finalize(self, lane.give_back, conn, self.pid)

    def spin_for_reply(self, conn: Any, budget: float) -> float:
        """Poll (without sleeping) for up to ``budget`` seconds until the reply is readable,
        if replies have lately come sooner than that; return when the wait began.

        Why: a thread that sleeps in ``recv`` is woken by the reply, and on a VM an idle
        vCPU's halt and wake-up cost more than Redis' own work (loopback, 2026-12-03, AMD VM:
        an ``enqueue()`` took 188-206 µs sleeping, 108-155 µs spinning up to 200 µs, for
        -12% to +23% client CPU per call: a sleeping thread's wake-up costs CPU too). The average
        (``learn``) keeps a thread from burning ``budget`` per call on a Redis whose replies
        come later than that (another host); it spins again once replies come sooner.
        """
        started = time.perf_counter()
        if self.wait < budget and self.poller is not None and conn._sock is self.sock:
            self.spins += 1
            poll, end = self.poller.poll, started + budget
            while not poll(0):
                if time.perf_counter() >= end:
                    return started
            self.caught += 1
        return started

    def learn(self, started: float) -> None:
        """Fold the wait that began at ``started`` (and just ended) into the average."""
        self.wait += (time.perf_counter() - started - self.wait) * 0.125

    def fresh(self) -> Any:
        """The connection, disconnected first if it holds something while no reply is due:
        Redis closed it (a restart, its idle ``timeout``, a protocol error) or sent stray
        bytes. redis-py's pool makes the same check when it hands a connection out; the next
        command then reconnects instead of failing. (One ``poll``; only a readable socket is
        looked at closer, since TLS may have records that carry no data.)"""
        conn = self.conn
        sock = getattr(conn, "_sock", None)
        if sock is None:
            return conn
        if sock is not self.sock:
            self.sock, self.poller = sock, select.poll()
            self.poller.register(sock, select.POLLIN)
        if self.poller.poll(0):
            try:
                stale = conn.can_read()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                stale = True
            if stale:
                conn.disconnect()
        return conn


class ThreadConnection:
    """One client's lean lane: each thread's own connection from the client's pool, for
    commands packed once and sent in one packet.

    Thread-safe (a connection per thread) and fork-safe (a child never uses its parent's
    sockets: the pid is checked on every call). A thread keeps its connection until it ends;
    once ``KEPT_CONNECTIONS`` threads keep one, further threads borrow one from the pool per
    call, so a pool's ``max_connections`` is never used up by idle threads. Errors are
    redis-py's: ``ConnectionError``, ``TimeoutError``, ``ResponseError`` and its subclasses.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.pack = packer_for(client)
        cap = getattr(self.pool, "max_connections", None)
        self.limit = (min(KEPT_CONNECTIONS, cap // 4) if isinstance(cap, int)
                      else KEPT_CONNECTIONS)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._kept = 0

    def _take(self) -> tuple[Any, bool]:
        """This thread's connection, and whether it keeps it (else: release after use)."""
        kept: _Kept | None = getattr(self._local, "kept", None)
        pid = os.getpid()
        if kept is not None and kept.pid == pid:
            return kept.fresh(), True
        if pid != self._pid:  # a forked child: the parent's connections are not ours
            with self._lock:
                if pid != self._pid:
                    self._reset()
        # Connects now: a refused connection raises at once, outside the retry policy (as
        # redis-py's own commands do).
        conn = self.pool.get_connection()
        with self._lock:
            keep = self._kept < self.limit
            if keep:
                self._kept += 1
        if keep:
            self._local.kept = _Kept(self, conn)
        return conn, keep

    def give_back(self, conn: Any, pid: int) -> None:
        """Return a kept connection to the pool (not in a forked child: it is the parent's)."""
        if os.getpid() != pid or pid != self._pid:
            return
        with self._lock:
            self._kept -= 1
        self.pool.release(conn)

    def packed(self, *args: Any) -> bytes:
        """``args`` as one command on the wire."""
        if self.pack is not None:
            return self.pack(args)
        conn = self.pool.get_connection()
        try:
            return b"".join(conn.pack_command(*args))
        finally:
            self.pool.release(conn)

    def call(self, command: bytes, meanwhile: Callable[[], object] | None = None,
             spin: float = 0.0) -> Any:
        """Send one packed command and read its reply, retrying as redis-py's client would
        (the connection's own ``retry`` policy: reconnect after a dropped connection).

        ``meanwhile`` runs between sending and reading, while Redis works: it runs again if
        the command is sent again, so it must be idempotent. ``spin`` > 0: then poll for the
        reply up to that many seconds before sleeping (``_Kept.spin_for_reply``).
        """
        if not spin:
            return self._run(lambda conn: _exchange(conn, command, meanwhile))
        return self._run(lambda conn: _exchange(conn, command, meanwhile,
                                                self._spinner(conn), spin))

    def _spinner(self, conn: Any) -> _Kept | None:
        kept: _Kept | None = getattr(self._local, "kept", None)
        return kept if kept is not None and kept.conn is conn else None

    def call_many(self, commands: list[bytes]) -> list[Any]:
        """Send packed commands in one packet and read every reply, as a non-transactional
        pipeline does: a ``ResponseError`` reply is returned in its place, not raised."""
        packet = b"".join(commands)
        replies: list[Any] = self._run(lambda conn: _exchange_many(conn, packet, len(commands)))
        return replies

    def _run(self, exchange: Callable[[Any], Any]) -> Any:
        conn, kept = self._take()
        try:
            return conn.retry.call_with_retry(lambda: exchange(conn),
                                              lambda _error: conn.disconnect())
        except redis.ResponseError:
            raise  # a reply: the connection is in order
        except BaseException:
            if kept:  # given back (disconnected): the pool reconnects it for the next taker
                self._local.kept = None
            raise
        finally:
            if not kept:
                self.pool.release(conn)


_lanes: weakref.WeakKeyDictionary[redis.Redis, ThreadConnection] = weakref.WeakKeyDictionary()


def lane_for(client: redis.Redis) -> ThreadConnection:
    """The one ``ThreadConnection`` of ``client`` in this process."""
    lane = _lanes.get(client)
    if lane is None:
        with _lock:
            lane = _lanes.get(client)
            if lane is None:
                lane = _lanes[client] = ThreadConnection(client)
    return lane


def _exchange(conn: Any, command: bytes, meanwhile: Callable[[], object] | None = None,
              spinner: _Kept | None = None, spin: float = 0.0) -> Any:
    conn.send_packed_command((command,), check_health=False)
    if meanwhile is not None:
        try:
            meanwhile()
        except BaseException:
            conn.read_response()  # the reply is due whatever happened here
            raise
    if spinner is None:
        return conn.read_response()
    started = spinner.spin_for_reply(conn, spin)
    reply = conn.read_response()
    spinner.learn(started)
    return reply


def _exchange_many(conn: Any, packet: bytes, count: int) -> list[Any]:
    conn.send_packed_command((packet,), check_health=False)
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies


class DeferredConnection:
    """One connection of ``client``'s pool, for one thread, that sends commands now and reads
    their replies later: a worker runs a job while Redis acknowledges the one before.

    Fork-safe (a child takes a connection of its own). ``send`` and ``collect`` raise redis-py's
    connection errors; the caller decides what to send again.
    """

    def __init__(self, client: redis.Redis, spin: float = 0.0) -> None:
        self.pool = client.connection_pool
        self.conn: Any = None
        self.pid = 0
        self.outstanding = 0
        #: Seconds ``collect`` polls for a reply before sleeping (as ``_Kept.spin_for_reply``
        #: does for producers), while the moving average ``wait`` of its waits is below it.
        self.spin = spin
        self.wait = 0.0
        self.spins = self.caught = 0

    def send(self, packet: bytes, replies: int) -> None:
        """Write a packet of commands holding ``replies`` replies; read them (with those of
        packets sent before) with ``collect``."""
        if self.conn is None or self.pid != os.getpid():
            self.conn, self.pid, self.outstanding = self.pool.make_connection(), os.getpid(), 0
        self.outstanding += replies
        self.conn.send_packed_command((packet,), check_health=False)

    def collect(self, count: int | None = None) -> list[Any]:
        """Read the next ``count`` replies due, by default all of them (a ``ResponseError``
        reply is returned in its place)."""
        replies: list[Any] = []
        left = self.outstanding if count is None else min(count, self.outstanding)
        started = self._spin() if left else 0.0
        while left:
            left -= 1
            try:
                replies.append(self.conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
            self.outstanding -= 1
            if started:  # the first reply, the one that may have been waited for
                self.wait += (time.perf_counter() - started - self.wait) * 0.125
                started = 0.0
        return replies

    def _spin(self) -> float:
        """Poll for the first reply due for up to ``spin`` seconds, if replies have lately
        come sooner than that; return when the wait began (0.0: not measured)."""
        if not self.spin:
            return 0.0
        started = time.perf_counter()
        if self.wait < self.spin:
            self.spins += 1
            end, can_read = started + self.spin, self.conn.can_read
            while not can_read(0):
                if time.perf_counter() >= end:
                    return started
            self.caught += 1
        return started

    def reset(self) -> None:
        """Drop the connection (after an error): the next ``send`` opens a new one."""
        if self.conn is not None and self.pid == os.getpid():
            self.conn.disconnect()
        self.conn, self.outstanding = None, 0
