"""Where a test task runs, from ``/proc``: shared by the tasks and hooks of the test app."""

from __future__ import annotations

import os


def served_worker() -> int:
    """The worker this process works for: its parent, or the worker behind its fork server.

    A job child of a fork-mode worker is forked by the worker's fork server (titled
    ``resque-3.0.0: Fork server of <worker pid>``) unless ``FORK_SERVER`` is off.
    """
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as file:
            title = file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return parent
    marker = "Fork server of "
    return int(title.split(marker, 1)[1].split()[0]) if marker in title else parent
