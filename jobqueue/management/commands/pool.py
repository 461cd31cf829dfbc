"""``manage.py pool``: run a pool master in the foreground (resque-pool for Django)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import pool_config, registry
from ...broker import get_broker
from ...conf import get_config
from ...exceptions import ConfigurationError
from ...pool import (
    PidFile,
    Pool,
    PoolRunning,
    inherited_from_environment,
    inherited_pidfile_fd,
)
from ...prewarm import resolve_hook, run_setup_hooks
from .worker import Command as WorkerCommand

logger = logging.getLogger("jobqueue.pool")


class Command(BaseCommand):
    help = (
        "Run a pool master: load Django once, run JOBQUEUE['SETUP'] hooks, fork the workers "
        "of JOBQUEUE['POOL'] (or --config resque-pool.yml) and keep their counts. Signals: "
        "HUP reload code and config; QUIT drain and exit; INT/TERM stop workers (grace "
        "period) and exit; WINCH stop workers, keep master; TTIN/TTOU one worker more/fewer "
        "per queue list; USR1/USR2/CONT passed on to workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", "-c", default=None, metavar="FILE",
                            help="a resque-pool.yml (needs PyYAML) or .json file instead of "
                                 "JOBQUEUE['POOL']")
        parser.add_argument("--environment", "-E", default=None,
                            help="section of --config to merge over its root (default: "
                                 "$RACK_ENV, $RAILS_ENV, $RESQUE_ENV)")
        parser.add_argument("--pidfile", "-p", default=None,
                            help="write the master's pid here; refuse to start if another "
                                 "master holds it")
        parser.add_argument("--appname", "-a", default=None,
                            help="name shown in the process title (default: the current "
                                 "directory's name)")
        parser.add_argument("--check-reload", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        WorkerCommand._configure_logging(options["verbosity"])
        inherited = inherited_from_environment()  # set when HUP re-exec'd us
        config = self._load(options["config"], options["environment"])
        if options["check_reload"]:
            self._check_reload()
            return
        pidfile = PidFile(options["pidfile"]) if options["pidfile"] else None
        if pidfile is not None:
            try:
                pidfile.acquire(inherited_pidfile_fd(inherited))
            except PoolRunning as exc:
                raise CommandError(str(exc)) from exc
        try:
            pool = Pool(config, app_name=options["appname"] or "",
                        grace_period=get_config().grace_period, inherited=inherited,
                        pidfile_fd=pidfile.fd if pidfile else None, setup=_setup,
                        immortal_heap=get_config().immortal_heap,
                        huge_pages=get_config().huge_pages)
            code = pool.run()
        finally:
            if pidfile is not None:
                pidfile.release()
        if code:
            sys.exit(code)

    @staticmethod
    def _load(config_file: str | None, environment: str | None) -> pool_config.PoolConfig:
        try:
            config = pool_config.load(config_file, environment)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        if not config.specs:
            raise CommandError(
                f"Nothing to run: {config.source} has no queue lists. Set JOBQUEUE['POOL'], "
                "e.g. {'critical': 2, 'default,mail': 3, '*': 1}, or give --config FILE.")
        for spec in config.specs:
            try:
                get_broker(spec.backend)
            except Exception as exc:
                raise CommandError(f"{config.source}[{spec.key!r}]: backend "
                                   f"{spec.backend!r}: {exc}") from exc
        return config

    def _check_reload(self) -> None:
        """Start up as a HUP would (settings, checks, tasks, SETUP hooks); fail if it breaks.

        The hooks really run (here, in a throwaway process): a hook that fails after the
        re-exec would take every worker down with the master.
        """
        try:
            registry.autodiscover()
            for path in get_config().setup:
                resolve_hook(path)
            run_setup_hooks()
        except (ConfigurationError, ImportError) as exc:
            raise CommandError(str(exc)) from exc


def _setup() -> None:
    if not get_config().setup:
        logger.info("No JOBQUEUE['SETUP'] hooks: add 'jobqueue.prewarm.models' to load caches "
                    "once in the master and share them with every worker")
    run_setup_hooks()
