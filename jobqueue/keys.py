"""Every Redis key jobqueue reads or writes, in one place.

Resque's keys keep Resque's names so Ruby Resque, node-resque and resque-web share them; keys
that only jobqueue uses live under ``<ns>:jobqueue:`` where other Resque clients never look.
No other module builds a key string.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one namespace (``resque`` by default)."""

    namespace: str = "resque"

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # --- Resque's own keys -------------------------------------------------------------
    @property
    def queues(self) -> str:
        """Set of every queue name (no prefix)."""
        return self._k("queues")

    def queue(self, name: str) -> str:
        """List of JSON payloads of one queue; head is oldest, tail newest."""
        return self._k("queue", name)

    @property
    def workers(self) -> str:
        """Set of registered worker ids ``host:pid:queues``."""
        return self._k("workers")

    def worker(self, worker_id: str) -> str:
        """String: JSON ``{queue, run_at, payload}`` of the job a worker is running."""
        return self._k("worker", worker_id)

    def worker_started(self, worker_id: str) -> str:
        """String: when the worker registered, Ruby ``Time#to_s`` form."""
        return self._k("worker", worker_id, "started")

    @property
    def heartbeats(self) -> str:
        """Hash worker id -> ISO 8601 time of its last heartbeat."""
        return self._k("workers", "heartbeat")

    @property
    def prune_lock(self) -> str:
        """String with TTL: who is pruning dead workers right now."""
        return self._k("pruning_dead_workers_in_progress")

    def stat(self, name: str, worker_id: str | None = None) -> str:
        """Integer counter ``processed``/``failed``, global or per worker."""
        return self._k("stat", name) if worker_id is None else self._k("stat", name, worker_id)

    @property
    def failed(self) -> str:
        """List of JSON failure records; tail is newest."""
        return self._k("failed")

    @property
    def pause_all(self) -> str:
        """String ``"true"`` pauses every worker (Resque 2.3+)."""
        return self._k("pause-all-workers")

    # --- resque-scheduler's keys (delayed jobs) ---------------------------------------
    @property
    def delayed_schedule(self) -> str:
        """Sorted set of epoch seconds that have delayed jobs (member = score = seconds)."""
        return self._k("delayed_queue_schedule")

    def delayed(self, timestamp: int) -> str:
        """List of delayed items (payload plus ``queue``) due at one epoch second."""
        return self._k("delayed", str(timestamp))

    def timestamps(self, item: str) -> str:
        """Set of ``delayed:<ts>`` (no namespace) holding an item: the reverse index."""
        return self._k("timestamps", item)

    @property
    def last_enqueued_at(self) -> str:
        """Hash schedule name -> Ruby ``Time#to_s`` of its last firing (resque-scheduler)."""
        return self._k("delayed", "last_enqueued_at")

    # --- jobqueue's own keys ------------------------------------------------------------
    def result(self, result_id: str) -> str:
        """Hash: one TaskResult (status, times, args, return value, errors, worker ids)."""
        return self._k("jobqueue", "result", result_id)

    def wake(self, queue: str) -> str:
        """List of wake-up tokens, one per job jobqueue pushed; idle workers BLPOP these."""
        return self._k("jobqueue", "wake", queue)

    def worker_info(self, worker_id: str) -> str:
        """Hash: jobqueue's extra facts about a worker (mode, version, master pid)."""
        return self._k("jobqueue", "worker", worker_id)

    def prefetch(self, worker_id: str) -> str:
        """List of in-flight records of jobs a ``--no-fork`` worker reserved ahead (oldest
        first), waiting to start; back to their queues if the worker stops or dies."""
        return self._k("jobqueue", "prefetch", worker_id)

    def priority_queue(self, queue: str) -> str:
        """Sorted set of a queue's jobs with a non-zero priority (score: priority, then FIFO)."""
        return self._k("jobqueue", "priority", queue)

    @property
    def priority_sequence(self) -> str:
        """Counter giving prioritised jobs their FIFO position."""
        return self._k("jobqueue", "priority-seq")

    @property
    def periodic_last(self) -> str:
        """Hash schedule name -> epoch seconds of the last tick enqueued (exactly-once claim)."""
        return self._k("jobqueue", "periodic", "last")

    @property
    def reaper_lock(self) -> str:
        """String with TTL: which worker is reaping dead workers right now."""
        return self._k("jobqueue", "reaper")

    def history(self, name: str, minute: int) -> str:
        """Integer counter of jobs ``processed``/``failed`` in one UTC minute (epoch // 60)."""
        return self._k("jobqueue", "history", name, str(minute))
