#!/usr/bin/env python3
"""Regenerate the monitor screenshots in ``docs/img/`` (light pages and one dark overview).

Runs ``tests/test_browser.py::test_screenshots`` (headless ``/usr/bin/chromium`` through
Playwright, a private redis-server, seeded data) with ``JOBQUEUE_SCREENSHOTS`` pointing at
``docs/img``. Use the interpreter of a test virtualenv:

    .venvs/py312-dj60/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JOBQUEUE_SCREENSHOTS": str(out), "JOBQUEUE_TEST_PG": "0"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_browser.py::test_screenshots"]
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if result.returncode == 0:
        for path in sorted(out.glob("monitor-*.png")):
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
