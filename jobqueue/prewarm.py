"""Set-up hooks: ``JOBQUEUE["SETUP"]`` and the shipped prewarm that runs before forking.

A forked child starts as a copy of its parent. Whatever the parent loaded and cached, every
child has for free, in memory pages they share until someone writes to them. Whatever the
parent left cold, *every* job child pays for again: importing the database driver, building
each model's ``_meta`` caches, the ContentType query, the URL resolver, translation catalogs.

``SETUP`` lists dotted paths of callables taking no arguments. ``run_setup_hooks()`` calls them
in order, in the pool master before it forks its workers and in ``manage.py worker`` before its
first fork. The shipped hook is ``jobqueue.prewarm.models``::

    JOBQUEUE = {"SETUP": ["jobqueue.prewarm.models", "myapp.jobs.warm_caches"]}

It is ``warm_caches()``, then ``close_connections()`` (no database or cache socket may be
shared with a child), then ``freeze_gc()`` (move every object to the collector's permanent
generation, so collections in the children never write to the pages holding them). Each step
is also a hook of its own, so you can reorder them around your own hooks.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable

from django.utils.module_loading import import_string

from .exceptions import ConfigurationError

logger = logging.getLogger("jobqueue.prewarm")
#: ``_meta`` cached properties worth building once (names missing in a Django version are
#: skipped).
META_CACHES = (
    "fields", "concrete_fields", "local_concrete_fields", "many_to_many", "related_objects",
    "_forward_fields_map", "fields_map", "managers", "managers_map", "base_manager",
    "default_manager", "_property_names", "_non_pk_concrete_field_names",
    "_reverse_one_to_one_field_names", "db_returning_fields", "pk_fields",
    "total_unique_constraints", "all_parents", "_relation_tree",
)
#: Descriptor attributes that build a class on first access (related managers, exceptions).
DESCRIPTOR_CACHES = ("related_manager_cls", "RelatedObjectDoesNotExist")


def resolve_hook(path: str) -> Callable[[], object]:
    """Import a ``SETUP`` entry; raise ``ConfigurationError`` naming it if that fails."""
    try:
        hook = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"JOBQUEUE['SETUP'] entry {path!r} cannot be imported: "
                                 f"{exc}") from exc
    if not callable(hook):
        raise ConfigurationError(f"JOBQUEUE['SETUP'] entry {path!r} is not callable")
    return hook  # type: ignore[no-any-return]


def run_setup_hooks(paths: Iterable[str] | None = None) -> list[str]:
    """Call each ``SETUP`` hook (default: ``JOBQUEUE["SETUP"]``) in order; return the paths.

    A hook that raises stops the caller: a broken set-up must not start workers.
    """
    if paths is None:
        from .conf import get_config

        paths = get_config().setup
    done = []
    for path in paths:
        hook = resolve_hook(path)
        started = time.perf_counter()
        hook()
        logger.info("Setup hook %s ran in %.0f ms", path,
                    (time.perf_counter() - started) * 1000)
        done.append(path)
    return done


# ---------------------------------------------------------------------------- the hooks
def models() -> None:
    """Warm every cache, close every connection, freeze the collector (the default prewarm)."""
    warm_caches()
    close_connections()
    freeze_gc()


def warm_caches() -> None:
    """Import task modules and build the caches each job child would otherwise build again."""
    from . import registry

    registry.autodiscover()  # an import error here is a configuration error: let it raise
    for name, step in (("database backends", _warm_databases), ("models", _warm_models),
                       ("content types", _warm_content_types), ("URL resolver", _warm_urls),
                       ("translations", _warm_translations), ("templates", _warm_templates)):
        started = time.perf_counter()
        try:
            step()
        except Exception as exc:  # e.g. the database is down: workers still start
            logger.warning("Prewarm: %s not warmed: %s: %s", name, type(exc).__name__, exc)
            continue
        logger.debug("Prewarm: %s warmed in %.1f ms", name,
                     (time.perf_counter() - started) * 1000)


def close_connections() -> None:
    """Close every database and cache connection, so no child inherits a live socket."""
    from django.core.cache import caches
    from django.db import connections

    connections.close_all()
    caches.close_all()


def freeze_gc() -> None:
    """Collect, then move every surviving object to the permanent generation.

    Children forked afterwards never traverse (and so never write to) those objects' pages
    during a collection, which keeps the pages shared.
    """
    gc.collect()
    gc.freeze()
    logger.debug("Prewarm: %d objects frozen", gc.get_freeze_count())


# ---------------------------------------------------------------------------- steps
def _warm_databases() -> None:
    """Load every database backend (the driver import is the slow part), without connecting."""
    from django.db import connections

    for alias in connections:
        wrapper = connections[alias]
        _ = wrapper.ops, wrapper.features, wrapper.client, wrapper.creation


def _warm_models() -> None:
    from django.apps import apps

    for model in apps.get_models(include_auto_created=True):
        opts = model._meta
        opts.get_fields()
        fields = opts.get_fields(include_hidden=True)
        for name in META_CACHES:
            try:
                getattr(opts, name)
            except AttributeError:
                continue
        for field in fields:
            accessor = field.name if field.concrete or not field.auto_created \
                else _reverse_accessor(field)
            descriptor = model.__dict__.get(accessor) if accessor else None
            for name in DESCRIPTOR_CACHES if descriptor is not None else ():
                try:
                    getattr(descriptor, name)
                except AttributeError:
                    continue


def _reverse_accessor(field: object) -> str | None:
    get_accessor_name = getattr(field, "get_accessor_name", None)
    return get_accessor_name() if get_accessor_name is not None else None


def _warm_content_types() -> None:
    """Fill ContentType's cache for every model whose row exists (never creating rows)."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.contenttypes"):
        return
    from django.contrib.contenttypes.models import ContentType

    existing = set(ContentType.objects.values_list("app_label", "model"))
    wanted = [model for model in apps.get_models()
              if (model._meta.app_label, model._meta.model_name) in existing]
    ContentType.objects.get_for_models(*wanted, for_concrete_models=False)
    ContentType.objects.get_for_models(*wanted)


def _warm_urls() -> None:
    from django.conf import settings

    if not getattr(settings, "ROOT_URLCONF", None):
        return
    from django.urls import get_resolver

    resolver = get_resolver()
    _ = resolver.url_patterns, resolver.reverse_dict, resolver.namespace_dict


def _warm_translations() -> None:
    from django.conf import settings

    if settings.USE_I18N:
        from django.utils import translation

        translation.gettext("jobqueue")  # loads the active language's merged catalog


def _warm_templates() -> None:
    from django.template import engines

    for engine in engines.all():  # DjangoTemplates imports every templatetags library here
        getattr(engine, "engine", None)
