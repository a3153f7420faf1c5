"""The contribution-against-entitlement chart: inline SVG with its own text alternative.

A horizontal bar per figure, its value written beside it, so the chart never relies on colour
or length alone (WCAG 1.4.1); bars have at least 3:1 contrast against the page (1.4.11). The
SVG is `role="img"` with a title and a description that state every number (1.1.1).
"""

from __future__ import annotations

from html import escape

from rms.entitlement.arithmetic import format_size

WIDTH = 640
BAR_LEFT = 190
BAR_MAX = 330
ROW = 44
# Dark blue, dark green and dark purple: each over 7:1 against white.
COLOURS = ("#0b4f9c", "#1e6b34", "#5b2a86")


def contribution_chart(bars: list[tuple[str, int]], title: str) -> str:
    """An SVG bar chart of (label, bytes) pairs, scaled to the largest."""
    largest = max([value for _, value in bars] + [1])
    height = ROW * len(bars) + 16
    summary = "; ".join(f"{label}: {format_size(value)}" for label, value in bars)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
    ]
    for row, (label, value) in enumerate(bars):
        y = 8 + row * ROW
        length = 0 if value <= 0 else max(2, round(BAR_MAX * value / largest))
        colour = COLOURS[row % len(COLOURS)]
        parts += [
            f'<text x="0" y="{y + 22}" class="chart-label">{escape(label)}</text>',
            f'<rect x="{BAR_LEFT}" y="{y + 4}" width="{length}" height="26" fill="{colour}"/>',
            f'<text x="{BAR_LEFT + length + 8}" y="{y + 22}" class="chart-value">'
            f"{escape(format_size(value))}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)
