"""Hooks as Django signals (Resque's worker hooks, resque-pool's hooks).

Connect receivers in your app's ``ready()``. ``sender`` is the ``Worker`` (or ``Pool``) class;
``worker`` is the instance. Per-job hooks are sent with ``send_robust``: a failing receiver is
logged and never stops a worker or loses a job. ``before_first_fork`` uses ``send`` so a
broken set-up stops the worker before it takes any job.
"""

from __future__ import annotations

from django.dispatch import Signal

#: In a worker, once, before it takes its first job (kwargs: worker).
before_first_fork = Signal()
#: In a worker, before forking a child for a job (kwargs: worker, job).
before_fork = Signal()
#: In the forked child, before the job runs (kwargs: worker, job). Reopen connections here.
after_fork = Signal()
#: A worker registered itself and is about to take jobs (kwargs: worker).
worker_started = Signal()
#: A worker unregistered itself and is about to exit (kwargs: worker).
worker_stopped = Signal()
#: The pool master ran its set-up hooks and is about to fork workers (kwargs: pool).
pool_started = Signal()
#: The pool master reaped a worker process (kwargs: pool, pid, status).
worker_exit = Signal()
