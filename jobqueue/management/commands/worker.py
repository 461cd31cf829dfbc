"""``manage.py worker``: run one jobqueue worker in the foreground."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import queues as queue_lists
from ...broker import get_broker
from ...compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from ...conf import get_config
from ...exceptions import ConfigurationError
from ...prewarm import run_setup_hooks
from ...worker import Worker

LEVELS = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
#: ``-v`` when not given (Django's): then a level set in ``LOGGING`` is kept.
DEFAULT_VERBOSITY = 1


class Command(BaseCommand):
    help = (
        "Run a worker: reserve jobs from a Resque queue list (order is priority; '*', globs and "
        "'!queue' work) and run each in a forked child. Signals: QUIT finish job and exit; "
        "TERM/INT stop (child gets the grace period); USR1 kill child; USR2 pause; CONT resume."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", "-q", default=None,
                            help="comma-separated queue list, highest priority first "
                                 "(default: $QUEUES, $QUEUE, else '*')")
        parser.add_argument("--burst", action="store_true",
                            help="exit when the queues are empty")
        parser.add_argument("--no-fork", action="store_true",
                            help="run jobs in this process instead of a child per job")
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between polls for jobs pushed by other Resque clients")
        parser.add_argument("--grace", type=float, default=None,
                            help="seconds a running job gets after TERM before SIGKILL")
        parser.add_argument("--name", default=None, help="host part of the worker id")
        parser.add_argument("--max-jobs", type=int, default=None,
                            help="exit after this many jobs")
        parser.add_argument("--prefetch", type=int, default=None, metavar="N",
                            help="--no-fork: reserve up to N jobs per round trip (default "
                                 "JOBQUEUE['PREFETCH'], 8; 1 reserves one at a time)")
        parser.add_argument("--jobs-per-child", type=int, default=1, metavar="N",
                            help="fork mode: let one forked child run up to N jobs before it "
                                 "exits (default 1: a fresh child per job)")
        parser.add_argument("--backend", default=DEFAULT_TASK_BACKEND_ALIAS,
                            help="TASKS alias to serve (default: 'default')")

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        patterns = queue_lists.parse(options["queues"]) or queue_lists.from_environment()
        if options["jobs_per_child"] < 1:
            raise CommandError("--jobs-per-child must be 1 or more")
        if options["prefetch"] is not None and options["prefetch"] < 1:
            raise CommandError("--prefetch must be 1 or more")
        if options["no_fork"] and options["jobs_per_child"] > 1:
            raise CommandError("--jobs-per-child needs fork mode: a --no-fork worker runs "
                               "every job in its own process already")
        try:
            get_config()
            broker = get_broker(options["backend"])
            run_setup_hooks()  # JOBQUEUE["SETUP"], once, before the first fork
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        worker = Worker(
            broker, patterns or ["*"],
            fork=not options["no_fork"], burst=options["burst"],
            interval=options["interval"], name=options["name"],
            grace_period=options["grace"], max_jobs=options["max_jobs"],
            jobs_per_child=options["jobs_per_child"], prefetch=options["prefetch"],
            backend_class=type(task_backends[options["backend"]]),
        )
        worker.work()

    @staticmethod
    def _configure_logging(verbosity: int) -> None:
        """Level the ``jobqueue`` logger by ``-v``, add a stderr handler if none would print.

        At the default ``-v 1`` a level your ``LOGGING`` gives the ``jobqueue`` logger stands
        (``"WARNING"`` drops the line per job); ``-v 0``, ``2`` and ``3`` override it.
        """
        logger = logging.getLogger("jobqueue")
        if verbosity != DEFAULT_VERBOSITY or logger.level == logging.NOTSET:
            logger.setLevel(LEVELS.get(verbosity, logging.INFO))
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
            logger.addHandler(handler)
