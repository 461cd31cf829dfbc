"""Turn broker records into plain values for templates, JSON and the command line.

Nothing here marks anything safe: templates escape every value, so a ``<script>`` in a job's
args, a class name or an exception message shows as text.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from .. import payload
from ..broker.base import FailedEntry, WorkerInfo
from ..job import BadJob, Job

ARGS_PREVIEW_CHARS = 160


def clip(value: str, limit: int = ARGS_PREVIEW_CHARS) -> str:
    """``value`` cut to ``limit`` characters with an ellipsis."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def args_json(args: Any, kwargs: Any = None) -> str:
    """Arguments as compact JSON; keyword arguments after them when there are any."""
    text = payload.dumps(args if args is not None else [])
    if kwargs:
        text += " " + payload.dumps(kwargs)
    return text


def encode_raw(raw: str) -> str:
    """A payload's exact bytes as URL-safe base64, for a hidden form field."""
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogateescape")).decode("ascii")


def decode_raw(value: str) -> str | None:
    """The payload ``encode_raw`` encoded, or ``None`` when ``value`` is not such a value."""
    if not value:
        return None
    try:
        data = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    return data.decode("utf-8", "surrogateescape")


def job_row(job: Job | BadJob) -> dict[str, Any]:
    """A waiting or delayed job as a table row."""
    if isinstance(job, BadJob):
        return {"task": "(undecodable)", "args": clip(job.raw), "full_args": job.raw,
                "id": "", "enqueued_at": None, "priority": 0, "error": job.error,
                "raw": encode_raw(job.raw), "queue": job.queue}
    text = args_json(job.args, job.kwargs)
    return {"task": job.task_name, "args": clip(text), "full_args": text, "id": job.id or "",
            "enqueued_at": job.enqueued_at, "priority": job.priority, "error": "",
            "raw": encode_raw(job.raw or payload.encode_job(job)), "queue": job.queue}


def current_job(worker: WorkerInfo) -> dict[str, Any] | None:
    """The job a worker runs, from its in-flight record, or ``None`` when idle."""
    current = worker.current
    if not current:
        return None
    body = current.get("payload")
    if isinstance(body, dict):
        task = str(body.get("class", ""))
        text = args_json(body.get("args"), body.get("kwargs"))
        job_id = body.get("id") if isinstance(body.get("id"), str) else ""
    else:
        task, text, job_id = "(undecodable)", str(body), ""
    return {"queue": str(current.get("queue", "")), "task": task, "args": clip(text),
            "id": job_id, "run_at": payload.parse_time(current.get("run_at"))}


def worker_row(worker: WorkerInfo, stale: set[str], now: datetime) -> dict[str, Any]:
    """A worker with its state (working, idle, stale) and current job."""
    job = current_job(worker)
    age = (now - worker.heartbeat_at).total_seconds() if worker.heartbeat_at else None
    return {
        "id": worker.id, "host": worker.host, "pid": worker.pid, "queues": worker.queues,
        "started_at": worker.started_at, "heartbeat_at": worker.heartbeat_at,
        "heartbeat_age": int(age) if age is not None else None,
        "processed": worker.processed, "failed": worker.failed, "job": job,
        "stale": worker.id in stale, "extra": dict(sorted(worker.extra.items())),
        "state": "stale" if worker.id in stale else ("working" if job else "idle"),
    }


def group_by_host(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by host, hosts sorted, each with its rows."""
    hosts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        hosts.setdefault(row["host"], []).append(row)
    return [{"host": host, "workers": items} for host, items in sorted(hosts.items())]


def failed_row(entry: FailedEntry) -> dict[str, Any]:
    """A failure record for the failed list and its detail page."""
    f = entry.failure
    body = f.payload
    if isinstance(body, dict):
        text = args_json(body.get("args"), body.get("kwargs"))
        job_id = body.get("id") if isinstance(body.get("id"), str) else ""
    else:
        text, job_id = str(body), ""
    return {
        "ref": entry.ref, "index": entry.index, "failed_at": f.failed_at,
        "retried_at": f.retried_at, "queue": f.queue, "task": f.task_name or "(undecodable)",
        "args": clip(text), "full_args": text, "exception": f.exception, "error": f.error,
        "error_preview": clip(f.error.splitlines()[0] if f.error else "", 200),
        "backtrace": "\n".join(f.backtrace), "worker": f.worker, "attempts": entry.attempts,
        "job_id": job_id, "record_id": f.id or "",
        "payload": payload.dumps(body) if not isinstance(body, str) else body,
    }
