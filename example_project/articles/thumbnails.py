"""A pure-Python stand-in for real image work: a hash-based "identicon" encoded as PNG.

Real sites would call Pillow or an image service from the task; this keeps the example free
of dependencies while still producing bytes a browser can show.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

GRID = 5  # cells per side; the left half is mirrored onto the right
MIN_SIZE, MAX_SIZE = 8, 512


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """Encode 8-bit RGB ``rows`` (``3 * width`` bytes each) as a PNG file."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every scanline
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def cells_for(text: str) -> list[list[bool]]:
    """A symmetric GRID x GRID on/off pattern derived from ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    half = (GRID + 1) // 2
    cells = []
    for y in range(GRID):
        left = [bool(digest[3 + y * half + x] & 1) for x in range(half)]
        cells.append(left + left[: GRID - half][::-1])
    return cells


def identicon(text: str, size: int = 64) -> bytes:
    """A ``size`` x ``size`` PNG identicon of ``text``."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    digest = hashlib.sha256(text.encode()).digest()
    ink = bytes((digest[0] // 2 + 64, digest[1] // 2 + 64, digest[2] // 2 + 64))
    paper = b"\xf4\xf4\xf4"
    cells = cells_for(text)
    rows = []
    for y in range(size):
        cell_row = cells[y * GRID // size]
        rows.append(b"".join(ink if cell_row[x * GRID // size] else paper for x in range(size)))
    return encode_png(size, size, rows)
