"""What ``manage.py pool`` runs: queue lists and their worker counts.

Two sources, one result (a ``PoolConfig``):

* ``JOBQUEUE["POOL"]`` in settings: ``{"critical": 2, "default,mail": 3, "*": 1}``. A value is
  a worker count, or a dict of per-worker options with a ``count``:
  ``{"count": 2, "fork": False, "interval": 0.5, "grace_period": 30, "max_jobs": 500,
  "jobs_per_child": 1, "prefetch": 8, "backend": "default"}``.
* ``--config resque-pool.yml`` (needs PyYAML; a ``.json`` file needs nothing): resque-pool's
  format. A top-level mapping named after the environment (``--environment``, else
  ``RACK_ENV``, ``RAILS_ENV``, ``RESQUE_ENV``) is merged over the root; other mappings without a
  ``count`` are other environments' sections and are dropped, as resque-pool does.

Keys are Resque queue lists (order is priority; ``*``, globs and ``!queue`` work), normalised by
stripping blanks: ``"default, mail"`` and ``"default,mail"`` are the same list (and an error
if both appear). Pure logic: no processes, no Redis.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import queues as queue_lists
from .exceptions import ConfigurationError

#: Option names of the per-worker form; ``count`` is required in it.
OPTION_KEYS = ("count", "fork", "interval", "grace_period", "max_jobs", "jobs_per_child",
               "prefetch", "backend")
#: Environment variables naming the environment section of a resque-pool.yml, in order.
ENVIRONMENT_VARIABLES = ("RACK_ENV", "RAILS_ENV", "RESQUE_ENV")
NO_YAML = (
    "Reading {path} needs PyYAML, which is not installed: pip install 'django-jobqueue[yaml]' "
    "(or PyYAML). Alternatively give the same mapping as a .json file, or put it in "
    "JOBQUEUE['POOL'] in your settings."
)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One queue list of the pool: how many workers, and how each one runs."""

    key: str  #: the normalised queue list, e.g. ``"default,mail"``
    queues: tuple[str, ...]
    count: int
    fork: bool = True
    interval: float | None = None  #: ``None``: ``JOBQUEUE["INTERVAL"]``
    grace_period: float | None = None  #: ``None``: ``JOBQUEUE["GRACE_PERIOD"]``
    max_jobs: int | None = None  #: recycle the worker after this many jobs
    jobs_per_child: int = 1  #: fork mode: jobs one forked child runs before it exits
    prefetch: int | None = None  #: no-fork: jobs reserved per round trip (``PREFETCH``)
    backend: str = "default"  #: the ``TASKS`` alias whose broker the workers serve


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The validated pool: specs in the order they were given."""

    specs: tuple[WorkerSpec, ...] = ()
    source: str = "JOBQUEUE['POOL']"

    def by_key(self) -> dict[str, WorkerSpec]:
        """Specs by normalised queue list."""
        return {spec.key: spec for spec in self.specs}

    @property
    def total(self) -> int:
        """Number of workers the pool keeps running."""
        return sum(spec.count for spec in self.specs)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{where}: the worker count must be a whole number >= 0, "
                                 f"got {value!r}")
    return value


def _options(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate the per-worker form and return ``WorkerSpec`` keyword arguments."""
    unknown = sorted(str(k) for k in value if k not in OPTION_KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(OPTION_KEYS)}")
    if "count" not in value:
        raise ConfigurationError(f"{where}: the options form needs a 'count'")
    options: dict[str, Any] = {"count": _count(value["count"], f"{where}['count']")}
    if "fork" in value:
        if not isinstance(value["fork"], bool):
            raise ConfigurationError(f"{where}['fork'] must be true or false, "
                                     f"got {value['fork']!r}")
        options["fork"] = value["fork"]
    for name, minimum in (("interval", 0.01), ("grace_period", 0.0)):
        if value.get(name) is not None:
            number = value[name]
            if isinstance(number, bool) or not isinstance(number, int | float) \
                    or number < minimum:
                raise ConfigurationError(f"{where}['{name}'] must be a number >= {minimum:g}, "
                                         f"got {number!r}")
            options[name] = float(number)
    for name in ("max_jobs", "jobs_per_child", "prefetch"):
        if value.get(name) is not None:
            jobs = value[name]
            if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
                raise ConfigurationError(f"{where}['{name}'] must be a whole number >= 1, "
                                         f"got {jobs!r}")
            options[name] = jobs
    if options.get("jobs_per_child", 1) > 1 and options.get("fork") is False:
        raise ConfigurationError(f"{where}: 'jobs_per_child' needs fork mode "
                                 "(it is about forked children; 'fork' is false)")
    if "backend" in value:
        if not isinstance(value["backend"], str) or not value["backend"]:
            raise ConfigurationError(f"{where}['backend'] must be a TASKS alias, "
                                     f"got {value['backend']!r}")
        options["backend"] = value["backend"]
    return options


def parse_pool(raw: Any, *, where: str = "JOBQUEUE['POOL']") -> PoolConfig:
    """Validate a queue-list mapping; raise ``ConfigurationError`` naming the bad entry."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must map queue lists to worker counts, "
                                 f"got {type(raw).__name__}")
    specs: list[WorkerSpec] = []
    seen: dict[str, str] = {}
    for key, value in raw.items():
        entry = f"{where}[{key!r}]"
        if not isinstance(key, str):
            raise ConfigurationError(f"{entry}: a queue list must be a string such as "
                                     "'default,mail'")
        patterns = queue_lists.parse(key)
        if not patterns:
            raise ConfigurationError(f"{entry}: the queue list is empty; use '*' for every "
                                     "queue")
        normal = ",".join(patterns)
        if normal in seen:
            raise ConfigurationError(f"{entry}: the same queue list as {seen[normal]!r}")
        seen[normal] = key
        if isinstance(value, Mapping):
            options = _options(value, entry)
        else:
            options = {"count": _count(value, entry)}
        specs.append(WorkerSpec(key=normal, queues=tuple(patterns), **options))
    return PoolConfig(specs=tuple(specs), source=where)


def environment_name(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str | None:
    """The environment whose section applies: ``explicit``, else resque-pool's variables."""
    if explicit:
        return explicit
    environ = os.environ if environ is None else environ
    for name in ENVIRONMENT_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


def select_environment(data: Mapping[str, Any], environment: str | None) -> dict[str, Any]:
    """Apply resque-pool's rule: merge the environment's section, drop other sections."""
    merged = dict(data)
    section = data.get(environment) if environment else None
    if environment and isinstance(section, Mapping) and "count" not in section:
        merged.pop(environment)
        merged.update(section)
    return {key: value for key, value in merged.items()
            if not (isinstance(value, Mapping) and "count" not in value)}


def read_file(path: str | os.PathLike[str]) -> Any:
    """Read a resque-pool.yml (PyYAML) or ``.json`` file into plain data."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"Cannot read pool config {file}: {exc.strerror}") from exc
    if "<%" in text:
        raise ConfigurationError(f"{file} uses ERB (<% %>), which only Ruby's resque-pool "
                                 "evaluates; write plain YAML or use JOBQUEUE['POOL']")
    if file.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{file} is not valid JSON: {exc}") from exc
    try:
        import yaml
    except ImportError:
        raise ConfigurationError(NO_YAML.format(path=file)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{file} is not valid YAML: {exc}") from exc


def load_file(path: str | os.PathLike[str], environment: str | None = None) -> PoolConfig:
    """Load a resque-pool.yml (or ``.json``) for ``environment``; validate it."""
    data = read_file(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path} must hold a mapping of queue lists to worker counts")
    chosen = select_environment(data, environment_name(environment))
    return parse_pool(chosen, where=str(path))


def load(config_file: str | None = None, environment: str | None = None,
         setting: Any = None) -> PoolConfig:
    """The pool to run: ``config_file`` if given, else ``setting`` (``JOBQUEUE["POOL"]``)."""
    if config_file:
        return load_file(config_file, environment)
    if setting is None:
        from .conf import get_config

        setting = get_config().pool
    return parse_pool(setting)


def describe(config: PoolConfig) -> str:
    """One line for logs: ``critical=2 default,mail=3 *=1``."""
    return " ".join(f"{spec.key}={spec.count}" for spec in config.specs) or "(no workers)"

