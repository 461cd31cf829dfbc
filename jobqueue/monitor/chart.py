"""A small inline SVG chart of jobs per minute, drawn on the server (no JavaScript library).

Colours come from CSS classes in ``jobqueue/monitor.css`` that use the admin's variables,
so the chart follows the admin's light and dark themes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..broker.base import Throughput

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 150, 40, 18, 8


def _points(values: list[int], top: int) -> str:
    n = max(len(values) - 1, 1)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    return " ".join(
        f"{PAD_LEFT + i * plot_w / n:.1f},{PAD_TOP + plot_h - (v / top) * plot_h:.1f}"
        for i, v in enumerate(values))


def _nice_top(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``peak``."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= peak:
                return step * scale
        scale *= 10


def throughput_svg(data: Throughput, label: str = "Jobs per minute") -> SafeString:
    """Processed and failed jobs per minute as an SVG line chart with hour marks."""
    minutes = len(data.processed)
    top = _nice_top(max([*data.processed, *data.failed, 1]))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    step = (WIDTH - PAD_LEFT) / max(minutes - 1, 1)
    marks = []
    for i in range(minutes):
        minute = data.start_minute + i
        x = PAD_LEFT + i * step
        if minute % 60 == 0 and PAD_LEFT + 16 <= x <= WIDTH - 16:  # room for its label
            when = datetime.fromtimestamp(minute * 60, UTC)
            marks.append((x, when.strftime("%H:%M")))
    grid = format_html_join("", (
        '<line class="jq-grid" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>'
        '<text class="jq-axis" x="{0}" y="{3}" text-anchor="middle">{4}</text>'),
        ((f"{x:.1f}", PAD_TOP, PAD_TOP + plot_h, HEIGHT - 4, text) for x, text in marks))
    total_p, total_f = sum(data.processed), sum(data.failed)
    summary = (f"{label}: {total_p} processed and {total_f} failed in the last "
               f"{minutes} minutes (times in UTC)")
    return format_html(
        '<svg class="jq-chart" viewBox="0 0 {w} {h}" role="img" aria-label="{summary}" '
        '><title>{summary}</title>'
        '<line class="jq-grid" x1="{left}" y1="{top}" x2="{w}" y2="{top}"/>'
        '<line class="jq-base" x1="{left}" y1="{bottom}" x2="{w}" y2="{bottom}"/>'
        '<text class="jq-axis" x="{lx}" y="{ty}" text-anchor="end">{peak}</text>'
        '<text class="jq-axis" x="{lx}" y="{bottom}" text-anchor="end">0</text>{grid}'
        '<polyline class="jq-processed" points="{processed}"/>'
        '<polyline class="jq-failed" points="{failed}"/></svg>',
        w=WIDTH, h=HEIGHT, summary=summary, left=PAD_LEFT, top=PAD_TOP,
        bottom=PAD_TOP + plot_h, lx=PAD_LEFT - 6, ty=PAD_TOP + 8, peak=top,
        grid=grid or mark_safe(""),
        processed=_points(data.processed, top), failed=_points(data.failed, top))
