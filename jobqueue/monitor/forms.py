"""Forms of the monitor: the failed list's filter, and validation of posted references."""

from __future__ import annotations

from django import forms

from ..broker.base import FailedFilter
from ..broker.redis_manage import parse_ref

BULK_ACTIONS = {"retry": "Retry", "remove": "Remove", "clear": "Clear"}


class FailedFilterForm(forms.Form):
    """Narrow the failed list: exact queue, task and exception class, and a text search."""

    queue = forms.CharField(required=False, max_length=200)
    task = forms.CharField(required=False, max_length=300, label="Task")
    exception = forms.CharField(required=False, max_length=200, label="Exception")
    q = forms.CharField(required=False, max_length=200, label="Search args")

    def filter(self) -> FailedFilter:
        """The filter these fields describe (empty when the form is invalid)."""
        if not self.is_valid():
            return FailedFilter()
        data = self.cleaned_data
        return FailedFilter(queue=data["queue"].strip(), task=data["task"].strip(),
                            exception=data["exception"].strip(), search=data["q"].strip())


def filter_from(data: dict[str, str] | object) -> FailedFilter:
    """A ``FailedFilter`` from a GET or POST ``QueryDict``."""
    return FailedFilterForm(data).filter()  # type: ignore[arg-type]


def filter_params(where: FailedFilter) -> dict[str, str]:
    """The query parameters that reproduce ``where``."""
    params = {"queue": where.queue, "task": where.task, "exception": where.exception,
              "q": where.search}
    return {k: v for k, v in params.items() if v}


def valid_refs(values: list[str]) -> list[str]:
    """The posted values that are failure record references, duplicates dropped."""
    return [ref for ref in dict.fromkeys(values) if parse_ref(ref) is not None]


def int_param(value: str | None) -> int | None:
    """A non-negative integer query parameter, or ``None``."""
    if value is None or not value.isdigit():
        return None
    return int(value)
