"""Helpers shared by the Redis broker tests: counting what a client sends, waiting in a thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sent_packets(client: Any) -> Iterator[list[bytes]]:
    """Record every packet ``client``'s connections send: one packet is one round trip."""
    cls = client.connection_pool.connection_class
    original = cls.send_packed_command
    packets: list[bytes] = []

    def spy(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        chunks = [command] if isinstance(command, bytes | str) else list(command)
        packets.append(b"".join(c if isinstance(c, bytes) else str(c).encode() for c in chunks))
        return original(self, command, *args, **kwargs)

    cls.send_packed_command = spy
    try:
        yield packets
    finally:
        cls.send_packed_command = original


def start_waiter(broker: Any, queues: list[str], timeout: float, fd: int | None,
                 **kwargs: Any) -> threading.Thread:
    """Run ``broker.wait_for_job(queues, timeout, fd, **kwargs)`` in a thread; whatever it
    raises lands in the thread's ``errors`` list for the test to check."""
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            broker.wait_for_job(queues, timeout, fd, **kwargs)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread
