"""The example project stays healthy: its own test suite passes and its settings pass the checks.

``scripts/run-example --smoke`` (run by ``.ci/run``) drives the real site, pool and Redis; these
tests keep the example's Django project itself from rotting between those runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def _manage(*args: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update({"REDIS_URL": redis_url, "EXAMPLE_DB": str(tmp_path / "example.sqlite3"),
                "PYTHONPATH": os.pathsep.join([str(EXAMPLE.parent), env.get("PYTHONPATH", "")])})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


def test_the_example_projects_own_test_suite_passes(redis_server_url, tmp_path):
    done = _manage("test", "articles", "--noinput", redis_url=redis_server_url,
                   tmp_path=tmp_path)

    assert done.returncode == 0, done.stderr[-4000:]
    assert "OK" in done.stderr


def test_the_example_settings_pass_every_system_check_including_pool_and_schedule(
        redis_server_url, tmp_path):
    done = _manage("check", "--fail-level", "WARNING", redis_url=redis_server_url,
                   tmp_path=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
