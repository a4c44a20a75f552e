"""Rendering the ops view's pages: the Jinja environment, its filters, and chart geometry for inline SVG.

The pages are server-rendered HTML with no script and no external source: the trend charts are
inline SVG whose coordinates ``chart`` computes here, and the templates draw (``_macros.html``).
Every link is relative to the page, so the view works inside the UI's iframe and behind a reverse
proxy with a base path: ``root`` leads back to the app's root, ``""`` on the overview, ``"../"`` on
``batches/<id>``, ``"../../"`` on ``models/<name>/<version>`` (a page's last segment is no folder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from crack_model.pipelines.shown import shown_key

TEMPLATES = Path(__file__).resolve().parent / "templates"
CHART_WIDTH = 440
CHART_HEIGHT = 160
MARGIN = {"left": 44, "right": 10, "top": 16, "bottom": 22}
MAX_X_LABELS = 7
BAND_LABEL_MIN_WIDTH = 48  # narrower bands keep their version in the tooltip only


def file_link(key: str, root: str = "") -> str:
    """Relative URL of the route that serves a store key (keys may hold spaces and non-ASCII)."""
    return root + "files/" + quote(key, safe="/")


def batch_link(batch_id: str, root: str = "") -> str:
    return root + "batches/" + quote(batch_id, safe="")


def model_link(version: str, name: str, root: str = "") -> str:
    return root + "models/" + quote(name, safe="") + "/" + quote(version, safe="")


def shown(text: Any) -> str:
    """Uploads' names and the reasons quoting them, invisible characters made visible (``\\u202e``, ``\\x1b``,
    ``\\n``): a bidirectional override showed the rest of a name reversed, a zero-width space made two names look
    alike, and a line break or an escape showed as nothing. HTML escaping is the template's, after this."""
    return shown_key(str(text))


def environment() -> Any:
    """The Jinja environment of the view's templates, with autoescape and the view's filters."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters.update(
        file_link=file_link, batch_link=batch_link, model_link=model_link, percent=percent, number=number,
        when=when, size=size, shown=shown,
    )  # fmt: skip
    return env


def _finite(value: Any) -> float | None:
    """``value`` as a finite number, or None when it is none (a hand-edited document can hold anything)."""
    try:
        amount = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return amount if math.isfinite(amount) else None


# The number filters show a value they cannot format as it is: an odd value costs its cell, never the page.
def percent(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    amount = _finite(value)
    return str(value) if amount is None else f"{100 * amount:.{digits}f}%"


def number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    amount = _finite(value)
    if amount is None:
        return str(value)
    if digits:
        return f"{amount:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else f"{int(amount):,}"  # a big count keeps every digit


def when(value: Any) -> str:
    """``2026-11-24T20:25:55Z`` -> ``2026-11-24 20:25:55 UTC``."""
    if not value:
        return "–"
    text = str(value)
    return text.replace("T", " ").removesuffix("Z") + " UTC" if text.endswith("Z") else text


def size(value: Any) -> str:
    """Bytes for people: ``9421704`` -> ``9.0 MB``."""
    if value is None:
        return "–"
    amount = _finite(value)
    if amount is None:
        return str(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value`` (axis tops)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return float(step * power)
    return float(10 * power)


def _tick_label(value: float, as_percent: bool) -> str:
    """Axis labels: ``2.5%``, ``0.125``, ``1,000`` (no more digits than the value has)."""
    if as_percent:
        return f"{100 * value:.3g}%"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _plotted(point: dict[str, Any], field: str) -> float | None:
    """A point's value as plotted: None (a gap) when missing, or not a finite number (NaN, Infinity in JSON)."""
    value = point.get(field)
    try:
        number_ = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return None
    return number_ if math.isfinite(number_) else None


def chart(
    points: Sequence[dict[str, Any]],
    fields: Iterable[str],
    *,
    bars: bool = False,
    as_percent: bool = False,
    reference: float | None = None,
    bands: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Geometry of one small chart over the nights: a polyline (or bars) per field, axis, champion bands.

    Args:
        points: the history's points, oldest first (``crack_model.pipelines.history``).
        fields: the point fields drawn, each its own series (``series-0``, ``series-1`` in the CSS).
        bars: bars instead of lines (the first field only).
        as_percent: values are fractions, labelled as percentages.
        reference: a dashed horizontal line (the drift threshold), kept inside the axis.
        bands: the champion's reigns (``first``/``last`` point indexes, ``version``) as shaded backgrounds.

    Returns:
        JSON-ready coordinates in a ``width`` x ``height`` viewBox; a missing value breaks a line.
    """
    fields = list(fields)
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = CHART_WIDTH - MARGIN["right"], CHART_HEIGHT - MARGIN["bottom"]
    count = max(len(points), 1)
    step = (right - left) / count
    values = [value for point in points for field in fields if (value := _plotted(point, field)) is not None]
    top_value = _nice_ceiling(max([*values, reference or 0.0, 0.0]))

    def x_at(index: int) -> float:
        return round(left + (index + 0.5) * step, 1)

    def y_at(value: float) -> float:
        return round(bottom - (bottom - top) * min(value, top_value) / top_value, 1)

    series = []
    for number_, field in enumerate(fields):
        segments: list[list[str]] = [[]]
        dots = []
        for index, point in enumerate(points):
            value = _plotted(point, field)
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            x, y = x_at(index), y_at(value)
            segments[-1].append(f"{x},{y}")
            label = percent(value) if as_percent else number(value, 2 if value < 100 else 0)
            dots.append({"x": x, "y": y, "title": f"{point.get('night') or point.get('run_id')}: {label}"})
        series.append(
            {"field": field, "css": f"series-{number_}", "lines": [" ".join(part) for part in segments if part],
             "dots": dots}
        )  # fmt: skip
    bar_shapes = []
    if bars and fields:
        width = round(max(step * 0.6, 1.0), 1)
        for index, point in enumerate(points):
            value = _plotted(point, fields[0])
            if value is None:
                continue
            y = y_at(value)
            bar_shapes.append(
                {"x": round(x_at(index) - width / 2, 1), "y": y, "width": width, "height": round(bottom - y, 1),
                 "title": f"{point.get('night') or point.get('run_id')}: {number(value)}"}
            )  # fmt: skip
    every = max(1, math.ceil(len(points) / MAX_X_LABELS))
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "plot": {"left": left, "top": top, "right": right, "bottom": bottom},
        "ticks": [
            {"y": y_at(value), "label": _tick_label(value, as_percent)} for value in (0.0, top_value / 2, top_value)
        ],
        "series": [] if bars else series,
        "bars": bar_shapes,
        "reference": None if reference is None else {"y": y_at(reference), "label": _tick_label(reference, as_percent)},
        "bands": [
            {
                "x": round(left + band["first"] * step, 1),
                "width": round((band["last"] - band["first"] + 1) * step, 1),
                "shade": f"band-{position % 2}",
                "version": band.get("version") or "no champion",
                "label": _short_version(band.get("version"))
                if (band["last"] - band["first"] + 1) * step >= BAND_LABEL_MIN_WIDTH
                else "",
            }
            for position, band in enumerate(bands)
        ],
        "x_labels": [
            {"x": x_at(index), "text": str(point.get("night") or "")[5:] or str(index + 1)}
            for index, point in enumerate(points)
            if index % every == 0
        ],
        "empty": not points,
    }


def _short_version(version: str | None) -> str:
    """``20261101T020000Z-aaaa1111`` -> ``11-01 aaaa1111`` (training day and hash): fits a band."""
    if not version:
        return "no champion"
    stamp, _, digest = version.partition("-")
    if len(stamp) >= 8 and stamp[:8].isdigit() and digest:
        return f"{stamp[4:6]}-{stamp[6:8]} {digest[:8]}"
    return version[:14]


def trend_charts(trends: dict[str, Any]) -> list[dict[str, Any]]:
    """The overview's five trend charts, each with its title and geometry."""
    points, bands = trends.get("points") or [], trends.get("bands") or []
    threshold = trends.get("drift_threshold")
    specs: list[tuple[str, list[str], list[str], dict[str, Any]]] = [
        ("Objects per night", ["objects"], ["objects"], {"bars": True}),
        ("Crack rate", ["crack_rate"], ["crack rate"], {"as_percent": True}),
        ("Error and quarantine rates", ["error_rate", "quarantine_rate"], ["errors", "quarantined"],
         {"as_percent": True}),
        ("Throughput (images/s)", ["throughput_images_per_second"], ["images/s"], {}),
        ("Highest drift PSI of the night's batches", ["max_psi"], ["max PSI"], {"reference": threshold}),
    ]  # fmt: skip
    charts = []
    for title, fields, legend, options in specs:
        geometry = chart(points, fields, bands=bands, **options)
        charts.append({"id": fields[0].replace("_", "-"), "title": title, "legend": legend, **geometry})
    return charts
