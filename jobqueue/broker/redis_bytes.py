"""Bytes from Redis and back, losslessly: the two helpers every Redis broker module shares.

Payloads are read as text with ``surrogateescape``, so bytes that are not UTF-8 survive as
lone surrogates and are written back exactly (a malformed job is failed with its very
bytes, and actions address records by their exact bytes).
"""

from __future__ import annotations


def text(value: bytes | str | None) -> str:
    """Decode Redis bytes losslessly (invalid UTF-8 survives as surrogates)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def raw_bytes(value: str) -> bytes:
    """The exact bytes of a string decoded by ``text``."""
    return value.encode("utf-8", "surrogateescape")
