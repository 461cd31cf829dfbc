"""Template tag behind ``admin/jobqueue/app_index.html``: the app index is the overview.

The admin routes ``<admin>/jobqueue/`` to its own app index view; overriding that one
template is how the monitor's overview takes the address without any URLconf change.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.simple_tag(takes_context=True)
def jobqueue_overview(context: Any) -> SafeString:
    """Render the monitor's overview for the admin site serving this request."""
    # Imported here: Django imports every app's tag libraries at start-up, and a project
    # without django.contrib.admin must still be able to install jobqueue.
    from django.contrib import admin
    from django.contrib.admin.sites import all_sites

    from ..exceptions import BrokerUnavailable, ConfigurationError
    from ..monitor.base import base_context, can_view
    from ..monitor.views_overview import render_overview

    request = context["request"]
    site = next((s for s in all_sites if s.name == getattr(request, "current_app", None)),
                admin.site)
    if not can_view(request.user):
        return mark_safe("")
    try:
        html = render_overview(request, site)
    except (BrokerUnavailable, ConfigurationError) as exc:
        page = base_context(request, site)
        page.update(title="Job queue unavailable", error=str(exc), crumbs=[])
        html = render_to_string("jobqueue/monitor/unavailable.html", page, request=request)
    return mark_safe(html)  # a rendered template: every value in it was autoescaped


@register.filter
def dotbreak(value: Any) -> SafeString:
    """Escape a dotted name and let it wrap after each dot (``a.<wbr>b``)."""
    return mark_safe(escape(str(value)).replace(".", ".<wbr>"))  # escaped first
