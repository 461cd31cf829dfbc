"""The pipe protocol between a fork-mode worker and its child (``jobqueue.childlink``)."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime

import pytest

from jobqueue.childlink import (
    HEADER,
    MAX_FRAME,
    ChildLink,
    FrameReader,
    decode_assignment,
    encode_assignment,
    frame,
    read_frame,
    write_frame,
)
from jobqueue.job import Reservation
from jobqueue.payload import PayloadError, decode_job

RAW = '{"class":"tests.testapp.tasks.add","args":[1,"ü/x"],"id":"abc","kwargs":{"k":[]}}'
RUN_AT = datetime(2026, 12, 1, 18, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def pipe():
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_frames_cross_a_real_pipe_whole_and_in_order(pipe):
    read_fd, write_fd = pipe
    write_frame(write_fd, b"first")
    write_frame(write_fd, b"")
    write_frame(write_fd, "é".encode() * 1000)
    os.close(write_fd)
    assert read_frame(read_fd) == b"first"
    assert read_frame(read_fd) == b""
    assert read_frame(read_fd) == "é".encode() * 1000
    assert read_frame(read_fd) is None  # end of file: the other side is gone


def test_a_frame_cut_short_by_end_of_file_is_none(pipe):
    read_fd, write_fd = pipe
    os.write(write_fd, frame(b"abcdef")[:-2])
    os.close(write_fd)
    assert read_frame(read_fd) is None


def test_a_header_announcing_more_than_the_limit_is_refused(pipe):
    read_fd, write_fd = pipe
    os.write(write_fd, HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(ValueError, match="not a jobqueue pipe"):
        read_frame(read_fd)


def test_the_reader_completes_a_frame_fed_byte_by_byte():
    reader = FrameReader()
    data = frame(b'{"action":"finish"}') + b"trailing"
    for i in range(len(data)):
        if i < HEADER.size + 19:
            assert reader.complete() is None
        reader.feed(data[i:i + 1])
    assert reader.complete() == b'{"action":"finish"}'


def test_garbage_never_completes_and_is_kept_for_the_log():
    reader = FrameReader()
    reader.feed(b'{"action": "fin')  # a child writing JSON without a header
    assert reader.complete() is None
    assert reader.leftover() == b'{"action": "fin'


def test_an_assignment_carries_the_exact_payload_and_the_reservation():
    job = decode_job(RAW, "default")
    reservation = Reservation(job=job, queue="default", run_at=RUN_AT, worker_id="h:1:default",
                              started_at=RUN_AT, worker_ids=("h:0:default", "h:1:default"))
    data = encode_assignment(reservation, 1234.5)
    assert data.isascii()
    again, deadline = decode_assignment(data)
    assert deadline == 1234.5
    assert again == reservation and again.job.raw == RAW
    assert again.attempts == 2


def test_an_assignment_without_deadline_or_start():
    job = decode_job(RAW, "q")
    reservation = Reservation(job=job, queue="q", run_at=RUN_AT, worker_id="h:1:q")
    again, deadline = decode_assignment(encode_assignment(reservation, None))
    assert deadline is None
    assert again.started_at == RUN_AT  # the first attempt starts now


def test_a_corrupt_assignment_raises():
    with pytest.raises(PayloadError):
        decode_assignment(b'{"raw":"{not json","queue":"q","run_at":"2026-12-01T18:00:00Z",'
                          b'"worker_id":"h:1:q"}')
    with pytest.raises(KeyError):
        decode_assignment(b'{"raw":"{\\"class\\":\\"A\\"}","queue":"q"}')  # no run_at
    with pytest.raises(UnicodeDecodeError):
        decode_assignment('{"raw":"ü"}'.encode())  # the encoder only writes ASCII


def test_closing_a_link_closes_both_ends_once(pipe):
    read_fd, write_fd = pipe
    link = ChildLink(pid=1, reports=read_fd, inbox=write_fd)
    link.close()
    link.close()
    assert link.inbox is None
    with pytest.raises(OSError):
        os.fstat(read_fd)
