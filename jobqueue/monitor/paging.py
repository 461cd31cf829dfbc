"""Pages over lists that live in Redis: Django's ``Paginator`` on a lazily fetched window.

The paginator learns the length from one ``LLEN``/``ZCARD`` and asks only for the slice it
shows, so page 50,000 of a million jobs costs the same as page 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest

PAGE_VAR = "p"


class Window(Sequence[Any]):
    """A sequence of known length whose slices are fetched on demand."""

    def __init__(self, length: int, fetch: Callable[[int, int], list[Any]]) -> None:
        self.length = length
        self.fetch = fetch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.length)
            return self.fetch(start, max(stop - start, 0)) if stop > start else []
        return self.fetch(index, 1)[0]


def query_with(request: HttpRequest, **changes: Any) -> str:
    """The current query string with some parameters changed (``None`` removes one)."""
    params = request.GET.copy()
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


def paginate(request: HttpRequest, length: int, fetch: Callable[[int, int], list[Any]],
             per_page: int) -> dict[str, Any]:
    """A page of ``Window(length, fetch)`` chosen by ``?p=`` with links for the template."""
    paginator = Paginator(Window(length, fetch), per_page)
    page: Page = paginator.get_page(request.GET.get(PAGE_VAR))
    links = []
    if paginator.num_pages > 1:
        for number in paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
            if number == paginator.ELLIPSIS:
                links.append({"ellipsis": True})
            else:
                links.append({"number": number, "current": number == page.number,
                              "url": query_with(request, **{PAGE_VAR: number})})
    return {"page": page, "items": list(page.object_list), "links": links,
            "count": length, "offset": page.start_index() - 1 if length else 0}
