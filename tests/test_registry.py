"""``jobqueue.registry``: which names a worker may run, and that a payload never imports code.

Only tasks registered on a jobqueue backend and Resque class names mapped to them in
``JOBQUEUE["RESQUE_CLASSES"]`` resolve. ``resolve()`` is a dictionary look-up: a name in a job
can never make a process import a module. ``autodiscover()`` imports what settings name
(installed apps' ``tasks`` modules and ``TASK_MODULES``), once.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from jobqueue import registry
from jobqueue.compat import task
from tests.testapp import tasks

#: Standard-library modules that nothing in the test suite imports; the first one not yet in
#: ``sys.modules`` serves as "a real module that must stay unimported".
CANDIDATE_MODULES = ("tabnanny", "pyclbr", "filecmp", "netrc", "sched", "colorsys", "wave",
                     "mailbox", "cmd", "code", "codeop", "pickletools", "tomllib")


@task()
def local_task() -> str:
    """A task defined in this test module (registered when the decorator validates it)."""
    return "local"


def _unimported_module() -> str:
    for name in CANDIDATE_MODULES:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            return name
    pytest.skip("every candidate module is already imported")


def _write_module(root: Path, dotted: str, source: str) -> None:
    path = root.joinpath(*dotted.split("."))
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in list(path.parents)[: len(dotted.split(".")) - 1]:
        (parent / "__init__.py").touch()
    path.with_suffix(".py").write_text(textwrap.dedent(source))


# ------------------------------------------------------------------ resolve
def test_a_registered_task_resolves_by_its_dotted_path():
    assert registry.resolve("tests.testapp.tasks.add") is tasks.add
    assert registry.resolve(local_task.module_path) is local_task


def test_decorating_a_task_registers_it():
    assert registry.registered()["tests.testapp.tasks.echo"] is tasks.echo
    assert local_task.module_path in registry.registered()


def test_a_mapped_resque_class_name_resolves_to_its_task():
    # tests.settings maps "Archive" to tests.testapp.tasks.archive
    assert registry.resolve("Archive") is tasks.archive


def test_mapping_follows_the_setting(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "RESQUE_CLASSES": {"Sum": "tests.testapp.tasks.add"}}
    assert registry.resolve("Sum") is tasks.add
    assert registry.resolve("Archive") is None
    assert registry.resque_name_for("tests.testapp.tasks.add") == "Sum"
    assert registry.resque_name_for("tests.testapp.tasks.echo") is None


def test_unknown_names_do_not_resolve():
    assert registry.resolve("No::Such::Job") is None
    assert registry.resolve("tests.testapp.tasks.nothing_here") is None
    assert registry.resolve("") is None


def test_a_plain_function_of_a_task_module_does_not_resolve():
    # ``_flaky`` is a module-level function of the tasks module, but not a task.
    assert callable(tasks._flaky)
    assert registry.resolve("tests.testapp.tasks._flaky") is None


def test_a_mapping_to_something_that_is_not_a_registered_task_does_not_resolve(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE,
                         "RESQUE_CLASSES": {"Flaky": "tests.testapp.tasks._flaky"}}
    assert registry.resolve("Flaky") is None


def test_resolve_never_imports_a_module_named_in_a_job():
    assert registry.resolve("os.system") is None
    name = _unimported_module()
    assert registry.resolve(f"{name}.main") is None
    assert registry.resolve(name) is None
    assert name not in sys.modules


def test_resolve_never_imports_the_target_of_a_mapping(settings):
    name = _unimported_module()
    settings.JOBQUEUE = {**settings.JOBQUEUE, "RESQUE_CLASSES": {"Sneaky": f"{name}.main"}}
    assert registry.resolve("Sneaky") is None
    assert name not in sys.modules


def test_the_first_definition_of_a_name_wins():
    clone = object.__new__(type(tasks.add))
    for field in ("priority", "func", "backend", "queue_name", "run_after", "takes_context"):
        object.__setattr__(clone, field, getattr(tasks.add, field))
    registry.register(clone)
    assert registry.resolve("tests.testapp.tasks.add") is tasks.add


def test_registered_is_a_snapshot():
    snapshot = registry.registered()
    snapshot["made.up.name"] = tasks.add
    assert registry.resolve("made.up.name") is None


# ------------------------------------------------------------------ autodiscover
@pytest.fixture
def module_root(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_autodiscover_imports_task_modules(settings, module_root):
    package = f"jq_discover_{uuid.uuid4().hex[:8]}"
    _write_module(module_root, f"{package}.jobs", """
        from jobqueue.compat import task

        @task()
        def ping() -> str:
            return "pong"
    """)
    settings.JOBQUEUE = {**settings.JOBQUEUE, "TASK_MODULES": [f"{package}.jobs"]}
    assert registry.resolve(f"{package}.jobs.ping") is None
    registry.autodiscover(force=True)
    assert f"{package}.jobs" in sys.modules
    found = registry.resolve(f"{package}.jobs.ping")
    assert found is not None and found.func() == "pong"


def test_autodiscover_imports_the_modules_of_mapped_resque_classes(settings, module_root):
    package = f"jq_mapped_{uuid.uuid4().hex[:8]}"
    _write_module(module_root, f"{package}.jobs", """
        from jobqueue.compat import task

        @task()
        def archive(*args):
            return list(args)
    """)
    settings.JOBQUEUE = {**settings.JOBQUEUE,
                         "RESQUE_CLASSES": {"RubyArchive": f"{package}.jobs.archive"}}
    assert registry.resolve("RubyArchive") is None
    registry.autodiscover(force=True)
    found = registry.resolve("RubyArchive")
    assert found is not None and found.module_path == f"{package}.jobs.archive"


def test_autodiscover_imports_the_tasks_module_of_every_installed_app(settings, module_root):
    app = f"jq_app_{uuid.uuid4().hex[:8]}"
    _write_module(module_root, f"{app}.tasks", """
        from jobqueue.compat import task

        @task()
        def hello() -> str:
            return "hi"
    """)
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, app]
    assert f"{app}.tasks" not in sys.modules
    registry.autodiscover(force=True)
    assert f"{app}.tasks" in sys.modules
    assert registry.resolve(f"{app}.tasks.hello") is not None


def test_autodiscover_runs_again_after_the_setting_changes(settings, module_root):
    registry.autodiscover()  # discovered once with the current settings
    package = f"jq_later_{uuid.uuid4().hex[:8]}"
    _write_module(module_root, f"{package}.jobs", """
        from jobqueue.compat import task

        @task()
        def late() -> None:
            pass
    """)
    settings.JOBQUEUE = {**settings.JOBQUEUE, "TASK_MODULES": [f"{package}.jobs"]}
    registry.autodiscover()
    assert registry.resolve(f"{package}.jobs.late") is not None


def test_autodiscover_raises_for_a_module_that_cannot_be_imported(settings):
    settings.JOBQUEUE = {**settings.JOBQUEUE, "TASK_MODULES": ["tests.testapp.no_such_module"]}
    with pytest.raises(ImportError):
        registry.autodiscover(force=True)
