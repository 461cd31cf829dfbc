"""Result lookup by task result id, and Stats (server summary, key counts; never ``KEYS *``)."""

from __future__ import annotations

from typing import Any

from .. import payload
from .base import MonitorPage


class ResultView(MonitorPage):
    template_name = "jobqueue/monitor/result.html"
    nav = "results"
    title = "Result lookup"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        result_id = self.request.GET.get("id", "").strip()[:200]
        record = self.broker.get_result(result_id) if result_id else None
        context.update(result_id=result_id, record=record, looked_up=bool(result_id))
        if record is not None:
            context.update(
                args=payload.dumps(record.args), kwargs_json=payload.dumps(record.kwargs),
                return_value=payload.dumps(record.return_value)
                if record.status == "SUCCESSFUL" else "",
                attempts=len(record.worker_ids))
        return context


class StatsView(MonitorPage):
    template_name = "jobqueue/monitor/stats.html"
    nav = "stats"
    title = "Stats"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        info = self.broker.server_info()
        keyspace = info.pop("keyspace", {})
        context.update(stats=self.broker.stats(), server=sorted(info.items()),
                       keyspace=sorted(keyspace.items()), keys=self.broker.key_counts(),
                       namespace=getattr(self.broker, "namespace", ""))
        return context
