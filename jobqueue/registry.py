"""Which names may run: registered tasks and the Resque class names mapped to them.

A task registers itself when a jobqueue backend validates it (at decoration time). A worker
imports every installed app's ``tasks`` module, ``JOBQUEUE["TASK_MODULES"]`` and the modules
named in ``RESQUE_CLASSES`` once at start-up; after that, a name found in a payload is only
ever *looked up*, never imported, so a payload cannot make a worker import or call anything.
"""

from __future__ import annotations

import logging
import threading
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules

from .conf import get_config

if TYPE_CHECKING:
    from .compat import Task

logger = logging.getLogger("jobqueue.registry")

_tasks: dict[str, Task] = {}
_lock = threading.Lock()
_discovered = False


def register(task: Task) -> None:
    """Remember a task under its ``module_path`` (the first definition wins)."""
    name = task.module_path
    if name not in _tasks:
        with _lock:
            _tasks.setdefault(name, task)


def registered() -> dict[str, Task]:
    """A snapshot of every registered task by name."""
    return dict(_tasks)


def autodiscover(*, force: bool = False) -> None:
    """Import every module that may define tasks: apps' ``tasks``, TASK_MODULES, mappings."""
    global _discovered
    if _discovered and not force:
        return
    config = get_config()
    autodiscover_modules("tasks")
    modules = list(config.task_modules)
    modules += [path.rpartition(".")[0] for path in config.resque_classes.values()]
    for module in modules:
        if module:
            import_module(module)  # from settings, trusted; a failure is a config error
    _discovered = True


def _reset(*, setting: str, **kwargs: Any) -> None:
    """Discover again after ``JOBQUEUE`` or ``INSTALLED_APPS`` change (tests, checks)."""
    global _discovered
    if setting in {"JOBQUEUE", "INSTALLED_APPS"}:
        _discovered = False


setting_changed.connect(_reset, dispatch_uid="jobqueue.registry.reset")


def resolve(name: str) -> Task | None:
    """Return the task a job name stands for, or ``None``: never imports anything."""
    task = _tasks.get(name)
    if task is not None:
        return task
    target = get_config().resque_classes.get(name)
    if target is not None:
        return _tasks.get(target)
    return None


def resque_name_for(task_name: str) -> str | None:
    """The Resque class name mapped to a task, if any (for display)."""
    for resque_name, target in get_config().resque_classes.items():
        if target == task_name:
            return resque_name
    return None
