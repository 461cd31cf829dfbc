"""How fast the admin monitor renders with 1,000,000 pending and 100,000 failed jobs.

Starts a private ``redis-server`` on a free port, fills it with pipelined ``RPUSH`` of
realistic payloads (jobqueue's own format: class, args, id, kwargs, enqueued_at) and failure
records (Ruby's shape with a 20-line Python traceback), then renders every monitor page
through Django's test client as a logged-in superuser and prints a timing table (median
and worst of several runs, milliseconds, wall clock including template rendering).

    python benchmarks/bench_monitor.py [--pending 1000000] [--failed 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(url: str) -> None:
    """Minimal Django settings: the admin, an in-memory database, jobqueue on ``url``."""
    import django
    from django.conf import settings

    from jobqueue.compat import TASKS_APP

    apps = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
            "django.contrib.sessions", "django.contrib.messages", "jobqueue"]
    settings.configure(
        SECRET_KEY="bench", DEBUG=False, USE_TZ=True, ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.urls", INSTALLED_APPS=apps + ([TASKS_APP] if TASKS_APP else []),
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True, "OPTIONS": {"context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages"]}}],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        STATIC_URL="/static/",
        TASKS={"default": {"BACKEND": "jobqueue.backends.redis.RedisBackend", "QUEUES": [],
                           "OPTIONS": {"URL": url, "NAMESPACE": "bench"}}},
    )
    django.setup()


def fill(client: object, pending: int, failed: int) -> None:
    """Pipelined RPUSH of realistic payloads and failure records, 40 workers, 3 h of history."""
    from jobqueue import payload
    from jobqueue.job import Job
    from jobqueue.keys import Keys

    k = Keys("bench")

    now = datetime.now(UTC)
    tasks = ["shop.tasks.send_receipt", "shop.tasks.resize_image", "search.tasks.reindex",
             "mail.tasks.deliver"]
    queues = ["default", "mail", "images", "search"]
    trace = [f'  File "/srv/app/shop/tasks.py", line {40 + i}, in step_{i}' for i in range(20)]
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    pipe.sadd(k.queues, *queues)
    for i in range(pending):
        queue = "default" if i < pending * 0.9 else queues[i % 4]
        job = Job(task_name=tasks[i % 4], args=[i, f"user{i}@example.com"],
                  kwargs={"order_id": 10_000_000 + i, "locale": "en"}, id=uuid.uuid4().hex,
                  queue=queue, enqueued_at=now)
        pipe.rpush(k.queue(queue), payload.encode_job(job))
        if i % 10_000 == 9_999:
            pipe.execute()
    for i in range(failed):
        body = {"class": tasks[i % 4], "args": [i, f"user{i}@example.com"],
                "id": uuid.uuid4().hex, "kwargs": {"order_id": 20_000_000 + i},
                "enqueued_at": payload.format_iso(now)}
        record = payload.Failure(
            failed_at=now, payload=body,
            exception=["ValueError", "TimeoutError", "KeyError"][i % 3],
            error=f"order {20_000_000 + i} could not be charged", backtrace=trace,
            worker=f"web-{i % 8}:{1000 + i % 50}:default", queue=queues[i % 4],
            id=uuid.uuid4().hex)
        pipe.rpush(k.failed, payload.encode_failure(record))
        if i % 10_000 == 9_999:
            pipe.execute()
    minute = int(now.timestamp()) // 60
    for m in range(180):
        pipe.set(k.history("processed", minute - m), 900 + m % 50)
        pipe.set(k.history("failed", minute - m), m % 7)
    for w in range(40):
        wid = f"worker-{w % 8}:{2000 + w}:default,mail"
        pipe.sadd(k.workers, wid)
        pipe.set(k.worker_started(wid), payload.format_started(now))
        pipe.hset(k.heartbeats, wid, payload.format_heartbeat(now))
        pipe.hset(k.worker_info(wid), mapping={"heartbeat_interval": "5.0", "mode": "fork"})
        if w % 4 == 0:
            job = Job(task_name=tasks[0], args=[w], id=uuid.uuid4().hex, queue="default")
            pipe.set(k.worker(wid), payload.encode_working("default", now,
                                                           payload.encode_job(job)))
    pipe.execute()


def pages(pending: int, failed: int) -> list[tuple[str, str]]:
    """(label, URL) of every page measured."""
    m = "/admin/jobqueue/monitor/"
    last_queue_page = max(int(pending * 0.9) // 25, 1)
    last_failed_page = max(failed // 20, 1)
    return [
        ("overview (/admin/jobqueue/)", "/admin/jobqueue/"),
        ("overview.json", m + "overview.json"),
        ("metrics (Prometheus)", m + "metrics"),
        ("queues", m + "queues/"),
        ("queue default, page 1", m + "queues/default/"),
        (f"queue default, page {last_queue_page}", m + f"queues/default/?p={last_queue_page}"),
        ("failed, page 1", m + "failed/"),
        (f"failed, page {last_failed_page}", m + f"failed/?p={last_failed_page}"),
        ("failed, queue=mail", m + "failed/?queue=mail"),
        ("failed, exception=KeyError", m + "failed/?exception=KeyError"),
        ("failed, search 'user99999@' (1 match)", m + "failed/?q=user99999%40"),
        ("failed, task=nope (0 matches, full scan)", m + "failed/?task=nope"),
        ("failed, bulk retry confirm (counts 25,000)",
         m + "actions/failed/bulk/?action=retry&queue=mail"),
        ("working", m + "working/"),
        ("workers", m + "workers/"),
        ("scheduled", m + "scheduled/"),
        ("stats", m + "stats/"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from jobqueue.redis_server import RedisServer

    with RedisServer() as server:
        configure(server.url)
        import redis
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        client = redis.Redis.from_url(server.url)
        started = time.perf_counter()
        fill(client, args.pending, args.failed)
        filled = time.perf_counter() - started
        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_superuser("bench", "b@example.com", "x")
        browser = Client()
        browser.force_login(user)
        info = client.info()
        print(f"Redis {info['redis_version']}, {client.dbsize()} keys, "
              f"{info['used_memory_human']} used; filled {args.pending:,} pending and "
              f"{args.failed:,} failed in {filled:.1f}s")
        print(f"Python {sys.version.split()[0]}, Django {__import__('django').get_version()}, "
              f"{os.cpu_count()} CPUs; {args.runs} runs per page, milliseconds\n")
        print(f"| {'page':<46} | {'median':>7} | {'worst':>7} | {'KiB':>5} |")
        print(f"|{'-' * 48}|{'-' * 9}|{'-' * 9}|{'-' * 7}|")
        worst_overall = 0.0
        for label, url in pages(args.pending, args.failed):
            times, size = [], 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                response = browser.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (url, response.status_code)
                size = len(response.content)
            worst_overall = max(worst_overall, max(times))
            print(f"| {label:<46} | {statistics.median(times):>7.1f} | {max(times):>7.1f} | "
                  f"{size / 1024:>5.0f} |")
        print(f"\nslowest single render: {worst_overall:.0f} ms\n")
        bulk_actions(browser, client)
    return 0


def bulk_actions(browser: object, client: object) -> None:
    """Time the destructive bulk actions once each, last (they change the data)."""
    url = "/admin/jobqueue/monitor/actions/failed/bulk/"
    for label, data in (
            ("retry every failed job with queue=mail", {"action": "retry", "queue": "mail"}),
            ("remove every failed job with exception=KeyError",
             {"action": "remove", "exception": "KeyError"})):
        before = client.llen("bench:failed")  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        response = browser.post(url, {**data, "confirm": "yes"})  # type: ignore[attr-defined]
        took = time.perf_counter() - t0
        assert response.status_code == 302, response.status_code
        done = before - client.llen("bench:failed")  # type: ignore[attr-defined]
        print(f"{label}: {done:,} records in {took:.2f} s ({done / took:,.0f}/s)")


if __name__ == "__main__":
    sys.exit(main())
