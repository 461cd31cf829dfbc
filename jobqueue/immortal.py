"""Make a process's start-up heap immortal before it forks, so that children stop copying pages.

Why: CPython writes an object's reference count each time code takes or drops a reference to
it, reading included: calling a function writes the function's and its code object's
counts, creating an instance writes its class's, reading a module global writes the
value's. In a forked child every first write to a page shared with the parent is a
copy-on-write fault (a page copy and a trap into the kernel, 3.4-9 µs on the development
VM), so a job child that only *runs* code the parent loaded still copies hundreds of pages.
Python 3.12 (PEP 683, written for exactly this: Instagram's pre-fork web servers) gave
objects an *immortal* reference count, which ``Py_INCREF``/``Py_DECREF`` leave alone. The
interpreter only makes its own static objects and interned strings immortal;
``immortalize()`` does the same for every object alive at the moment it runs.

Measured (2026-12-02, AMD VM, Python 3.12, the benchmark's no-op job, fork per job): a job
child took 611 page faults before, 353 after; see docs/performance.md for the rates.

What it costs, and why that is acceptable here:

* Objects alive when it runs are never freed by that process or its children, even if the
  program drops them later. In a worker that is the start-up heap: modules, classes,
  functions, settings, caches that live as long as the worker anyway. Something built at
  start-up and dropped later stays (bounded by the start-up heap, typically 40-60 MiB, and
  shared with every child).
* Objects whose class has a finalizer (``__del__``: sockets, files, generators, database
  connections, anything of the user's with ``__del__``) and frames and tracebacks are left
  mortal, so their clean-up still runs when they die. What such an object holds is made
  immortal like the rest (it outlives its holder).
* It walks the heap once (about 1.5 µs per object: 0.24 s for a Django process of 150,000
  objects), and runs only where the reference count layout is known: CPython 3.12 and 3.13,
  64-bit, with the GIL. Elsewhere it does nothing (on 3.11 objects cannot be immortal).
* An object already immortal is not written and not walked again, so a pool's worker,
  forked from a master that did it, walks only what it created itself, and keeps its pages
  shared with the master.

``JOBQUEUE["IMMORTAL_HEAP"] = False`` turns it off (``conf``).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
import sysconfig
import time
import types
from dataclasses import dataclass

logger = logging.getLogger("jobqueue.immortal")

#: ``_Py_IMMORTAL_REFCNT`` of CPython 3.12 and 3.13 on 64-bit builds: ``Py_INCREF`` sees the
#: low 32 bits overflow and writes nothing; ``Py_DECREF`` sees them negative and returns.
IMMORTAL_REFCNT = 0xFFFFFFFF
#: Whether this interpreter's objects can be made immortal this way.
SUPPORTED = (sys.implementation.name == "cpython" and (3, 12) <= sys.version_info[:2] <= (3, 13)
             and sys.maxsize > 2**32 and not sysconfig.get_config_var("Py_GIL_DISABLED"))
#: Left mortal whatever their class: they hold a running function's locals.
_MORTAL_TYPES = (types.FrameType, types.TracebackType)


@dataclass(frozen=True, slots=True)
class Immortalized:
    """What one ``immortalize()`` did."""

    objects: int  # made immortal now
    kept_mortal: int  # left alone: a finalizer, a frame or a traceback
    seconds: float


def is_immortal(obj: object) -> bool:
    """Whether ``obj``'s reference count is immortal (never written, never freed)."""
    return SUPPORTED and sys.getrefcount(obj) >= IMMORTAL_REFCNT


def immortalize() -> Immortalized | None:
    """Collect garbage, make every live object immortal, freeze the collector.

    ``None`` where the interpreter does not support it (``SUPPORTED``). Call it in the
    process about to fork, after its start-up and warm-up: see the module's docstring.
    """
    if not SUPPORTED:
        return None
    started = time.perf_counter()
    gc.collect()
    made, kept = _walk(gc.get_objects() + list(sys.modules.values()))
    gc.freeze()  # children never traverse these objects' pages in a collection either
    done = Immortalized(made, kept, time.perf_counter() - started)
    logger.info("Immortal heap (pid %d): %d objects made immortal, %d left mortal, in %.0f ms",
                os.getpid(), done.objects, done.kept_mortal, done.seconds * 1000)
    return done


def _walk(roots: list[object]) -> tuple[int, int]:
    """Make ``roots`` and everything they reach immortal; counts of made and kept mortal."""
    stack = roots
    seen: set[int] = {id(stack)}
    finalizes: dict[type, bool] = {}
    write = ctypes.c_ssize_t.from_address
    getrefcount, referents = sys.getrefcount, gc.get_referents
    made = kept = 0
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen:
            continue
        seen.add(key)
        if getrefcount(obj) >= IMMORTAL_REFCNT:
            continue  # immortal already (static, interned, or done before a fork): not walked
        cls = type(obj)
        mortal = finalizes.get(cls)
        if mortal is None:  # (looked up in the class dicts: no attribute hook of theirs runs)
            mortal = finalizes[cls] = (issubclass(cls, _MORTAL_TYPES)
                                       or any("__del__" in vars(k) for k in cls.__mro__))
        if mortal:
            kept += 1
            continue
        write(key).value = IMMORTAL_REFCNT
        made += 1
        stack.extend(referents(obj))
    return made, kept
