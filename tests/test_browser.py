"""The admin monitor in a real headless Chromium (Debian's ``/usr/bin/chromium`` driven by
Playwright): log in as staff, read a queue's count, open a failed job, retry it, and watch a
real worker process it while the overview refreshes itself.

Runs wherever ``/usr/bin/chromium`` exists; skipped (with the reason) only on machines
without it, and never skipped in CI (``CI`` set), where ``.ci/run`` installs it.
``test_screenshots`` writes the documentation's screenshots to ``$JOBQUEUE_SCREENSHOTS``
(``scripts/screenshots.py`` sets it to ``docs/img``) or to a temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.monitor_support import fail_all, make_user, register_worker
from tests.testapp.tasks import add, boom, echo, sleepy

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _require_browser() -> Any:
    in_ci = bool(os.environ.get("CI"))
    if not os.path.exists(CHROMIUM) and not in_ci:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            raise
        pytest.skip("playwright is not installed (pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="module")
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-django's live server, for this module only (pytest-django's own lives for the
    whole session): its thread stops when the module ends, so the modules after it, some of
    which fork the pytest process, run in a process with one thread. A fork with another
    thread alive may deadlock the child (Python 3.12+ warns; ``pyproject.toml`` makes that
    warning an error)."""
    from pytest_django.live_server_helper import LiveServer

    address = (request.config.getvalue("liveserver")
               or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost")
    server = LiveServer(address)
    yield server
    server.stop()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium; Django's ORM may run while Playwright's loop exists."""
    sync_playwright = _require_browser()
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _login(browser: Any, live_server: Any, django_user_model: Any) -> Any:
    make_user(django_user_model, "staff", "manage_monitor")
    context = browser.new_context(viewport={"width": 1280, "height": 860},
                                  color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/jobqueue/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/jobqueue/")
    return page


def test_staff_retries_a_failed_job_and_watches_it_processed(jq, live_server, browser,
                                                             django_user_model):
    for i in range(3):
        add.using(queue_name="reports").enqueue(i, i)
    result = add.using(queue_name="browser").enqueue(2, 3)
    fail_all(jq.broker, "browser", message="simulated outage")
    page = _login(browser, live_server, django_user_model)

    assert page.locator('td[data-queue="reports"]').inner_text() == "3"
    assert page.locator('[data-stat="processed"]').inner_text() == "1"

    page.click("nav.jq-tabs >> text=Failed")
    entry = page.locator("tr.jq-failed-entry")
    assert entry.count() == 1
    assert "simulated outage" in entry.inner_text()
    entry.locator("td.jq-time a").click()
    assert "ValueError" in page.locator("strong.jq-exception").inner_text()
    assert "tests.testapp.tasks.add" in page.locator("#content-main").inner_text()

    page.click("button:has-text('Retry')")
    assert "Retried 1 failed job." in page.locator("ul.messagelist").inner_text()
    assert page.locator("tr.jq-failed-entry").count() == 0
    assert jq.broker.queue_size("browser") == 1

    jq.spawn_worker("--queues", "browser")
    page.click("nav.jq-tabs >> text=Overview")
    page.check("#jq-live-toggle")  # polls the page every 3 s from now on
    page.wait_for_function(
        "() => document.querySelector('[data-stat=processed]').textContent.trim() === '2'",
        timeout=TIMEOUT_MS)
    assert jq.broker.get_result(result.id).status == "SUCCESSFUL"
    assert page.locator('td[data-queue="browser"]').inner_text() == "0"
    page.reload()
    assert page.is_checked("#jq-live-toggle")  # the toggle is remembered (localStorage)


def _seed_for_screenshots(jq: Any) -> None:
    """A plausible production-looking state: queues, failures, workers, history."""
    for i in range(9):
        boom.using(queue_name="mail").enqueue(f"Order #{1040 + i} could not be charged")
    boom.using(queue_name="mail").enqueue("<script>alert('escaped')</script>")
    echo.using(queue_name="mail").enqueue("user7@example.com", template="welcome")
    fail_all(jq.broker, "mail", worker="web-2:3121:mail,default", message="gateway timeout")
    for i in range(80):
        echo.using(queue_name="mail").enqueue(f"user{i}@example.com", template="digest")
    for i in range(12):
        add.using(queue_name="reports").enqueue(i, i * 7)
    for i in range(7):
        add.using(queue_name="images", priority=5 if i < 2 else 0).enqueue(i, 640)
    sleepy.using(queue_name="newsletter").enqueue(120, "weekly")
    add.using(run_after=datetime.now(UTC) + timedelta(hours=2)).enqueue(1, 2)
    now = int(time.time()) // 60
    for m in range(180):
        processed = 40 + (m * 7) % 23 + (30 if 60 < m < 90 else 0)
        jq.redis.set(jq.key("jobqueue", "history", "processed", str(now - m)), processed)
        jq.redis.set(jq.key("jobqueue", "history", "failed", str(now - m)), (m * 5) % 4)
    for worker_id in ("web-1:2101:mail,default", "web-2:3121:mail,default",
                      "batch-1:771:reports,images,newsletter"):
        register_worker(jq.broker, worker_id, interval=30.0)
    register_worker(jq.broker, "old-box:99:*", age_seconds=3600)
    jq.broker.reserve("batch-1:771:reports,images,newsletter", ["newsletter"])
    jq.broker.reserve("web-1:2101:mail,default", ["mail"])


SCHEDULE = {
    "nightly-report": {"task": "tests.testapp.tasks.echo", "cron": "0 3 * * *",
                       "args": ["nightly"], "queue": "reports"},
    "refresh-rates": {"task": "tests.testapp.tasks.add", "every": 300, "args": [1, 2]},
}


def _seed_schedule(jq: Any, settings: Any) -> None:
    from jobqueue.periodic import build_periodic_job, parse_schedule

    settings.JOBQUEUE = {**settings.JOBQUEUE, "SCHEDULE": SCHEDULE}
    entry = next(e for e in parse_schedule(SCHEDULE) if e.name == "refresh-rates")
    tick = datetime.fromtimestamp(int(time.time()) // 300 * 300, UTC)
    job, record = build_periodic_job(entry)
    jq.broker.fire_periodic(entry.name, tick, job, record)


def test_screenshots(jq, live_server, browser, django_user_model, tmp_path, settings):
    out = Path(os.environ.get("JOBQUEUE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    _seed_for_screenshots(jq)
    _seed_schedule(jq, settings)
    page = _login(browser, live_server, django_user_model)
    base = f"{live_server.url}/admin/jobqueue/"
    ref = jq.broker.failed_page(0, 1)[0].ref
    shots = [("overview", ""), ("queues", "monitor/queues/"),
             ("queue", "monitor/queues/mail/"), ("failed", "monitor/failed/"),
             ("failed-entry", f"monitor/failed/{ref}/"), ("workers", "monitor/workers/"),
             ("scheduled", "monitor/scheduled/"), ("periodic", "monitor/periodic/")]
    for name, path in shots:
        page.goto(base + path)
        page.screenshot(path=str(out / f"monitor-{name}.png"), full_page=name != "queue")
        assert "<script>alert" not in page.content()
    page.emulate_media(color_scheme="dark")
    page.goto(base)
    page.screenshot(path=str(out / "monitor-overview-dark.png"), full_page=True)
    assert (out / "monitor-overview-dark.png").stat().st_size > 10_000
