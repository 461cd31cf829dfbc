"""Test settings for ``manage.py pool`` subprocesses: ``tests.settings`` plus JOBQUEUE overrides.

``JOBQUEUE_TEST_POOL_FILE`` names a JSON file whose keys (``POOL``, ``SETUP``, ``GRACE_PERIOD``,
...) replace those of ``JOBQUEUE``. It is read at every start, so a test changes the pool's
configuration by rewriting the file and sending HUP (which re-executes the master).
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import JOBQUEUE as _BASE

_overrides_file = os.environ.get("JOBQUEUE_TEST_POOL_FILE")
if _overrides_file:
    with open(_overrides_file, encoding="utf-8") as _file:
        JOBQUEUE = {**_BASE, **json.load(_file)}
