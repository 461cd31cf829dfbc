"""Helpers shared by the tests that count what a Redis client sends."""

from __future__ import annotations

import contextlib
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
