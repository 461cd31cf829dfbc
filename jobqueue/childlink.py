"""The pipes between a fork-mode worker and its job child: reports up, jobs down.

Every message is a frame: a 4-byte big-endian length, then that many bytes. Up the
*report* pipe the child sends one ``Report`` per job; down the *inbox* pipe the parent sends
the next reserved job to a child that may run more than one (``jobs_per_child``). The parent
alone talks to Redis: a job travels to the child as the exact payload it reserved, with the
reservation's facts, and the child decodes and resolves it itself (from its own registry,
never by importing a name it was sent).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from . import payload
from .job import Reservation

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # no report or job comes near this; a larger header is garbage


def frame(body: bytes) -> bytes:
    """``body`` with its length header."""
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, body: bytes) -> None:
    """Write one whole frame to a blocking pipe."""
    view = memoryview(frame(body))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_frame(fd: int) -> bytes | None:
    """Block until one frame arrives; ``None`` at end of file (the other side is gone)."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes announced: not a jobqueue pipe")
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        try:
            chunk = os.read(fd, left)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FrameReader:
    """Collect bytes as they come (non-blocking reads); say when a whole frame is in."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add what one read returned."""
        self.data += chunk

    def complete(self) -> bytes | None:
        """The first frame's body once it is whole, else ``None``."""
        if len(self.data) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.data)
        if size > MAX_FRAME or len(self.data) < HEADER.size + size:
            return None
        return bytes(self.data[HEADER.size:HEADER.size + size])

    def leftover(self) -> bytes:
        """Everything read, for the log when no whole frame came (a garbled report)."""
        return bytes(self.data)


def encode_assignment(reservation: Reservation, deadline: float | None) -> bytes:
    """A reserved job for a child that runs more than one: its payload and reservation."""
    body: dict[str, Any] = {
        "raw": reservation.job.raw, "queue": reservation.queue,
        "run_at": payload.format_iso(reservation.run_at),
        "worker_id": reservation.worker_id, "worker_ids": list(reservation.worker_ids),
        "started_at": payload.format_iso(reservation.started_at)
        if reservation.started_at else None,
        "deadline": deadline,
    }
    # ensure_ascii: a payload is valid text (undecodable ones are never forked), but the pipe
    # should not depend on it.
    return json.dumps(body, ensure_ascii=True).encode("ascii")


def decode_assignment(data: bytes) -> tuple[Reservation, float | None]:
    """The child's side of ``encode_assignment``; raises ``PayloadError``/``ValueError``."""
    body = json.loads(data.decode("ascii"))
    job = payload.decode_job(body["raw"], body["queue"])
    run_at = payload.parse_time(body["run_at"])
    if run_at is None:
        raise ValueError("assignment without a run_at")
    reservation = Reservation(
        job=job, queue=body["queue"], run_at=run_at, worker_id=body["worker_id"],
        started_at=payload.parse_time(body.get("started_at")) or run_at,
        worker_ids=tuple(body.get("worker_ids") or ()),
    )
    deadline = body.get("deadline")
    return reservation, float(deadline) if deadline is not None else None


@dataclass(slots=True)
class ChildLink:
    """A live job child seen from the parent: its pid, both pipe ends, jobs it ran."""

    pid: int
    reports: int  #: read end of the report pipe
    inbox: int | None  #: write end of the job pipe (``None``: the child runs one job)
    jobs: int = 0

    def close(self) -> None:
        """Close the parent's ends: a child waiting for a job sees end of file and exits."""
        for fd in (self.reports, self.inbox):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.inbox = None
        self.reports = -1
