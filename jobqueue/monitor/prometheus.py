"""The overview numbers in Prometheus' text exposition format (version 0.0.4).

``render_metrics(broker)`` is public so a project can serve it behind its own
authentication (a scrape token, an internal port) instead of the admin session.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..broker import Broker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(broker: Broker, now: datetime | None = None) -> str:
    """Counters and gauges of one broker as Prometheus text."""
    now = now or datetime.now(UTC)
    stats = broker.stats()
    sizes = broker.queue_sizes()
    stale = broker.stale_workers(now)
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: list[tuple[str, int | float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    metric("jobqueue_jobs_processed_total", "counter",
           "Jobs finished, failed ones included (Resque's stat:processed).",
           [("", stats["processed"])])
    metric("jobqueue_jobs_failed_total", "counter", "Jobs failed (Resque's stat:failed).",
           [("", stats["failed"])])
    metric("jobqueue_failed_records", "gauge", "Records in the failed list now.",
           [("", stats["failed_records"])])
    metric("jobqueue_queue_jobs", "gauge", "Jobs waiting, per queue.",
           [(f'{{queue="{_label(q)}"}}', n) for q, n in sorted(sizes.items())])
    metric("jobqueue_jobs_pending", "gauge", "Jobs waiting on every queue.",
           [("", stats["pending"])])
    metric("jobqueue_workers", "gauge", "Registered workers.", [("", stats["workers"])])
    metric("jobqueue_workers_working", "gauge", "Workers running a job now.",
           [("", stats["working"])])
    metric("jobqueue_workers_stale", "gauge", "Workers whose heartbeat is too old.",
           [("", len(stale))])
    metric("jobqueue_scheduled_due_times", "gauge", "Distinct due times of delayed jobs.",
           [("", broker.scheduled_count())])
    return "\n".join(lines) + "\n"
