"""``manage.py jobqueue``: the monitor for people without a browser.

    manage.py jobqueue stats [--json]
    manage.py jobqueue queues [--json]
    manage.py jobqueue workers [--stale]
    manage.py jobqueue failed [--queue Q] [--task T] [--exception E] [--search S] [--limit N]
    manage.py jobqueue retry-failed (FILTERS | --all | --ref REF...) [--no-input]
    manage.py jobqueue remove-failed (FILTERS | --all | --ref REF...) [--no-input]
    manage.py jobqueue clear-failed [--no-input]
    manage.py jobqueue clear-queue QUEUE [--no-input]
    manage.py jobqueue prune-stale [--no-input]

Everything goes through the broker's inspection and management API, exactly as the admin
monitor does: retries requeue and remove each record atomically, addressed by its bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...broker import Broker, get_broker
from ...broker.base import FailedFilter
from ...compat import DEFAULT_TASK_BACKEND_ALIAS
from ...exceptions import BrokerUnavailable, ConfigurationError
from ...monitor.present import failed_row

DESTRUCTIVE = {"retry-failed", "remove-failed", "clear-failed", "clear-queue", "prune-stale"}


def _add_filters(parser: CommandParser) -> None:
    parser.add_argument("--queue", default="", help="only records of this queue")
    parser.add_argument("--task", default="", help="only this task (Resque class)")
    parser.add_argument("--exception", default="", help="only this exception class name")
    parser.add_argument("--search", default="", help="text the args or kwargs contain")


def _filter(options: dict[str, Any]) -> FailedFilter:
    return FailedFilter(queue=options["queue"], task=options["task"],
                        exception=options["exception"], search=options["search"])


class Command(BaseCommand):
    help = "Inspect and manage the job queue: stats, queues, workers and failed jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default=DEFAULT_TASK_BACKEND_ALIAS,
                            help="TASKS alias to inspect (default: 'default')")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        p = sub.add_parser("stats", help="counters: pending, processed, failed, workers")
        p.add_argument("--json", action="store_true")
        p = sub.add_parser("queues", help="every queue and its size")
        p.add_argument("--json", action="store_true")
        p = sub.add_parser("workers", help="registered workers")
        p.add_argument("--stale", action="store_true", help="only stale ones")
        p = sub.add_parser("failed", help="list failed jobs, newest first")
        _add_filters(p)
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--json", action="store_true")
        for name, verb in (("retry-failed", "requeue and remove"), ("remove-failed", "remove")):
            p = sub.add_parser(name, help=f"{verb} failed jobs matching a filter")
            _add_filters(p)
            p.add_argument("--all", action="store_true", help="every failed job")
            p.add_argument("--ref", action="append", default=[],
                           help="one record, by the ref 'failed' prints (repeatable)")
            self._add_no_input(p)
        self._add_no_input(sub.add_parser("clear-failed", help="delete every failure record"))
        p = sub.add_parser("clear-queue", help="delete every job waiting on a queue")
        p.add_argument("queue")
        self._add_no_input(p)
        self._add_no_input(sub.add_parser("prune-stale", help="prune workers with stale "
                                          "heartbeats; their jobs go back to their queues"))

    @staticmethod
    def _add_no_input(parser: CommandParser) -> None:
        parser.add_argument("--no-input", "--noinput", "--yes", dest="interactive",
                            action="store_false", help="do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            broker = get_broker(options["backend"])
            getattr(self, "do_" + options["action"].replace("-", "_"))(broker, options)
        except (BrokerUnavailable, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc

    def confirm(self, options: dict[str, Any], question: str) -> None:
        """Ask before a destructive action unless ``--no-input``; abort on anything but yes."""
        if not options.get("interactive", True):
            return
        answer = input(f"{question} Type 'yes' to continue: ")
        if answer.strip().lower() not in ("yes", "y"):
            raise CommandError("Cancelled; nothing was changed.")

    # ------------------------------------------------------------------ read-only
    def do_stats(self, broker: Broker, options: dict[str, Any]) -> None:
        stats = broker.stats()
        stats["stale_workers"] = len(broker.stale_workers(datetime.now(UTC)))
        stats["scheduled_due_times"] = broker.scheduled_count()
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2, sort_keys=True))
            return
        width = max(len(k) for k in stats)
        for name, value in stats.items():
            self.stdout.write(f"{name.replace('_', ' '):<{width}}  {value:>10}")

    def do_queues(self, broker: Broker, options: dict[str, Any]) -> None:
        sizes = dict(sorted(broker.queue_sizes().items()))
        if options["json"]:
            self.stdout.write(json.dumps(sizes, indent=2))
            return
        width = max([len(q) for q in sizes] + [5])
        for name, size in sizes.items():
            self.stdout.write(f"{name:<{width}}  {size:>10}")
        self.stdout.write(f"{'failed':<{width}}  {broker.failed_count():>10}")

    def do_workers(self, broker: Broker, options: dict[str, Any]) -> None:
        stale = set(broker.stale_workers(datetime.now(UTC)))
        for w in broker.workers():
            if options["stale"] and w.id not in stale:
                continue
            state = "stale" if w.id in stale else ("working" if w.current else "idle")
            beat = w.heartbeat_at.isoformat() if w.heartbeat_at else "never"
            self.stdout.write(f"{state:<8} {w.id}  processed={w.processed} failed={w.failed} "
                              f"heartbeat={beat}")

    def do_failed(self, broker: Broker, options: dict[str, Any]) -> None:
        where = _filter(options)
        limit = max(options["limit"], 1)
        if where.active:
            scan = broker.failed_scan(where, limit=limit)
            entries = scan.entries
        else:
            entries = broker.failed_page(0, limit)
        rows = [failed_row(e) for e in entries]
        if options["json"]:
            keep = ("ref", "failed_at", "queue", "task", "full_args", "exception", "error",
                    "worker", "attempts", "job_id")
            self.stdout.write(json.dumps([{k: r[k] for k in keep} for r in rows],
                                         indent=2, default=str))
            return
        for r in rows:
            when = r["failed_at"].strftime("%Y-%m-%d %H:%M:%S") if r["failed_at"] else "?"
            self.stdout.write(f"{when}  {r['queue']}  {r['task']}  {r['args']}")
            self.stdout.write(f"    {r['exception']}: {r['error_preview']}")
            self.stdout.write(f"    attempts={r['attempts']} worker={r['worker']} "
                              f"ref={r['ref']}")

    # ------------------------------------------------------------------ actions
    def _selection(self, broker: Broker, options: dict[str, Any]) -> tuple[FailedFilter, str]:
        where = _filter(options)
        if not (where.active or options["all"] or options["ref"]):
            raise CommandError("Say which failed jobs: --queue/--task/--exception/--search, "
                               "--ref REF, or --all for every one.")
        if options["ref"]:
            return where, f"{len(options['ref'])} failed job(s) by reference"
        count, complete = broker.failed_count_matching(where)
        return where, f"{count}{'' if complete else '+'} failed job(s)"

    def do_retry_failed(self, broker: Broker, options: dict[str, Any]) -> None:
        where, what = self._selection(broker, options)
        self.confirm(options, f"Retry {what}?")
        done = (broker.retry_failed(options["ref"]) if options["ref"]
                else broker.retry_failed_matching(where))
        self.stdout.write(f"Retried {done} failed job(s).")

    def do_remove_failed(self, broker: Broker, options: dict[str, Any]) -> None:
        where, what = self._selection(broker, options)
        self.confirm(options, f"Remove {what}?")
        done = (broker.remove_failed(options["ref"]) if options["ref"]
                else broker.remove_failed_matching(where))
        self.stdout.write(f"Removed {done} failed job(s).")

    def do_clear_failed(self, broker: Broker, options: dict[str, Any]) -> None:
        self.confirm(options, f"Delete all {broker.failed_count()} failure records?")
        self.stdout.write(f"Cleared {broker.clear_failed()} failure record(s).")

    def do_clear_queue(self, broker: Broker, options: dict[str, Any]) -> None:
        queue = options["queue"]
        self.confirm(options, f"Delete all {broker.queue_size(queue)} jobs on queue {queue!r}?")
        self.stdout.write(f"Deleted {broker.clear_queue(queue)} job(s) from {queue!r}.")

    def do_prune_stale(self, broker: Broker, options: dict[str, Any]) -> None:
        stale = broker.stale_workers(datetime.now(UTC))
        if not stale:
            self.stdout.write("No worker is stale.")
            return
        self.confirm(options, f"Prune {len(stale)} stale worker(s)?")
        for worker_id in stale:
            result = broker.prune_worker(worker_id, datetime.now(UTC))
            if result.pruned:
                where = f" (job back on {result.requeued_to!r})" if result.requeued_to else ""
                self.stdout.write(f"Pruned {worker_id}{where}")
            else:
                self.stdout.write(f"Left {worker_id}: {result.reason}")
