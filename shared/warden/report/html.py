"""Self-contained HTML reports for drift monitoring runs and for model versions.

What it holds: the two public renderers (:func:`render_drift_report`, used by the monitor job,
and :func:`render_version_report`, stored with each version), the code that turns their untrusted
inputs into plain data for the Jinja2 templates in ``templates/`` (``base.html.j2`` the page,
``macros.html.j2`` the repeated pieces, ``drift.html.j2`` and ``version.html.j2`` one per
report), and the inline SVG charts.

Escaping: the templates are rendered with autoescape and ``StrictUndefined``, and everything
passed to them is plain data (strings, numbers, lists, dicts), so autoescape escapes every value.
The only :class:`markupsafe.Markup` values are the charts, drawn here from ``Markup`` literals
whose every inserted value (labels, titles, numbers) ``Markup.format`` escapes. A missing
template or template variable fails the render with :class:`~warden.errors.PermanentError`.

Everything is inline: CSS, and SVG charts drawn from the numbers (no plotting library). A strict
Content-Security-Policy forbids every load, so a report opened from a bucket, a ticket or a mail
shows the same thing offline and cannot tell anyone that it was opened. Inputs are treated as
untrusted and incomplete: a missing optional key renders as "—" instead of failing the run that
writes the report. Sections carry stable ids (``#summary``, ``#features``, ...) that tests and
links rely on.

Pure: no I/O beyond reading its own templates. May import only :mod:`warden.errors` (and jinja2,
markupsafe).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from warden.errors import PermanentError

__all__ = [
    "CSP",
    "DASH",
    "LABEL_CHARS",
    "MAX_BARS",
    "MAX_FILES_LISTED",
    "STAT_NAMES",
    "STAT_ORDER",
    "TEMPLATES",
    "render_drift_report",
    "render_version_report",
]

DASH = "—"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: Where the page templates live; function bundles must ship its ``*.html.j2`` files.
TEMPLATES = Path(__file__).parent / "templates"
#: Longest label (category, bin) a report prints, tooltips included. Profiles already cap
#: category labels at this length (warden.ml.drift.MAX_CATEGORY_CHARS); this also bounds reports
#: drawn from profiles written before they did.
LABEL_CHARS = 200
#: Most categories drawn in one reference chart; the rest join "(other)".
MAX_BARS = 50
#: Files named in the "Files read" list of a version that still lists them (older manifests).
MAX_FILES_LISTED = 20

# Drift statistics in display order; all are distances, so "value >= threshold" means drift.
STAT_ORDER = ("psi", "js", "wasserstein", "ks", "linf", "cramers_v", "new_category_share")
STAT_NAMES = {
    "psi": ("PSI", "population stability index"),
    "js": ("JS", "Jensen-Shannon distance"),
    "wasserstein": ("Wasserstein", "Wasserstein distance (normalised)"),
    "ks": ("KS", "Kolmogorov-Smirnov statistic"),
    "linf": ("L∞", "largest difference in any category's share"),
    "cramers_v": ("Cramér's V", "Cramér's V"),
    "new_category_share": ("New", "share of values the reference never had"),
}

#: What the templates receive for one piece of the page: plain data, autoescaped there.
Data = dict[str, Any]


# --------------------------------------------------------------------------- templates


@functools.cache
def _environment() -> jinja2.Environment:
    """The one Jinja2 environment, built on first use: autoescape, and an error (not an empty
    string) for any variable a template names that the context lacks."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, **context: Any) -> str:
    """Render one report template; a missing template or variable is a bug or a bundle without
    its templates: retrying cannot help, so it is a PermanentError naming what is missing."""
    try:
        return _environment().get_template(name).render(csp=CSP, **context)
    except jinja2.TemplateNotFound as exc:
        raise PermanentError(
            f"HTML report template {exc.name!r} is missing from {TEMPLATES}"
        ) from exc
    except jinja2.UndefinedError as exc:
        raise PermanentError(f"HTML report template {name}: {exc.message}") from exc


# --------------------------------------------------------------------------- small helpers


def _float(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _num(value: Any, digits: int = 3) -> str:
    v = _float(value)
    if v is None:
        return DASH
    if abs(v) >= 1e6:
        return f"{v:.{digits - 1}e}"
    if v != 0 and abs(v) < 10**-digits:
        # Below the shown precision; "<0.001" reads better than 3.86e-04 in a table.
        return f"{'-' if v < 0 else ''}<{10**-digits:.{digits}f}"
    return f"{v:.{digits}f}"


def _int(value: Any) -> str:
    v = _float(value)
    return DASH if v is None else f"{round(v):,}"


def _pct(value: Any, digits: int = 0) -> str:
    v = _float(value)
    return DASH if v is None else f"{100 * v:.{digits}f}%"


def _short(value: float) -> str:
    """Compact axis label: about three significant digits, 12.5k rather than 1.25e+04."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if size >= 100:
        return f"{value:.0f}"
    if 0 < size < 1e-2:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _text(value: Any) -> str:
    """A value as text, "—" for a missing one."""
    return DASH if value is None or value == "" else str(value)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else []


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _meter(value: float | None, threshold: float | None, scale: float, title: str) -> Data:
    """A small bar with the threshold as a tick (percentages of its width); red once the value
    reaches the threshold. No value draws the empty track."""
    if value is None or scale <= 0:
        return {"title": title, "over": False, "width": None, "tick": None}
    return {
        "title": title,
        "over": threshold is not None and value >= threshold,
        "width": max(0.0, min(1.0, value / scale)) * 100,
        "tick": None if threshold is None else max(0.0, min(1.0, threshold / scale)) * 100,
    }


def _kpi(
    key: str,
    value: str,
    detail: str = "",
    *,
    small: bool = False,
    badge: Data | None = None,
    meter: Data | None = None,
) -> Data:
    """One headline figure; ``badge`` and ``meter`` follow the detail line (shown with it)."""
    return {
        "key": key,
        "value": value,
        "detail": detail,
        "small": small,
        "badge": badge,
        "meter": meter,
    }


def _row(label: str, value: str, *, code: bool = False) -> Data:
    """A row of a key/value table; ``code`` shows the value in monospace."""
    return {"label": label, "value": value, "code": code}


def _metric_bars(rows: Sequence[tuple[str, Sequence[tuple[str, float | None, str]]]]) -> list[Data]:
    """Horizontal bars, one block per metric; each entry is (series name, value, colour). The
    first bar of a block carries the metric's name; widths share one scale."""
    values = [v for _, entries in rows for _, v, _ in entries if v is not None]
    lo = min([0.0, *values])
    hi = max([1.0, *values]) if all(-1 <= v <= 1 for v in values) else max([0.0, *values])
    span = (hi - lo) or 1.0
    return [
        {
            "metric": metric if k == 0 else None,
            "series": series,
            "width": 0.0 if v is None else (v - lo) / span * 100,
            "color": color,
            "value": _num(v, 4),
        }
        for metric, entries in rows
        for k, (series, v, color) in enumerate(entries)
    ]


# --------------------------------------------------------------------------- charts
#
# Every chart is Markup assembled only from Markup literals: Markup.format escapes each value it
# inserts (labels, names, titles, numbers), and Markup("").join would escape any plain string
# that slipped into the parts. Nothing from the inputs is ever marked safe as it stands.


def _no_chart(text: str) -> Markup:
    """What a chart shows when there is nothing to draw."""
    return Markup('<p class="muted">{text}</p>').format(text=text)


def _svg(width: int, height: int, title: str, parts: Sequence[Markup]) -> Markup:
    # No xmlns: inline SVG in HTML does not need it, and the report then holds no URL at all.
    return Markup(
        '<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        "<title>{title}</title>{body}</svg>"
    ).format(width=width, height=height, title=title, body=Markup("").join(parts))


def _nice_step(span: float, count: int) -> float:
    """A 1/2/2.5/5 × 10^k step giving about ``count`` intervals over ``span``."""
    raw = span / max(1, count)
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def _nice_range(lo: float, hi: float, count: int = 4) -> tuple[float, float, list[float]]:
    """Round axis bounds and the ticks between them, so labels read 0.86, 0.88, ..."""
    if hi <= lo:
        lo, hi = lo - (abs(lo) or 1) * 0.05, hi + (abs(hi) or 1) * 0.05
    step = _nice_step(hi - lo, count)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(k * step, 12) for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


def _pct_tick(value: float) -> str:
    return f"{round(100 * value, 2):g}%"


_NUMBER = re.compile(r"-?\d+\.\d{3,}(?:e[-+]?\d+)?")


def _compact(label: str) -> str:
    """Bin labels with three significant digits, so they fit under a bar."""
    return _NUMBER.sub(lambda m: _short(float(m.group())), label)


def _bars_svg(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[Any]]],
    *,
    width: int = 360,
    height: int = 190,
) -> Markup:
    """Grouped bars of shares per label; ``series`` is (css class, name, values)."""
    n = len(labels)
    if n == 0:
        return _no_chart(f"{DASH} no histogram")
    values = [[_float(v) or 0.0 for v in (list(vals) + [0.0] * n)[:n]] for _, _, vals in series]
    _, ymax, ticks = _nice_range(0.0, max((v for vs in values for v in vs), default=0.0) or 1.0, 3)
    left, right = 40, 8
    slot = (width - left - right) / n
    # Rotate the labels only when the longest would not fit under its bar group.
    rotate = max(len(_compact(str(label))) for label in labels) * 6.3 > slot - 4
    top, bottom = 10, 58 if rotate else 24
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    parts = []
    for tick in ticks:
        y = base - tick / ymax * plot_h
        parts.append(
            Markup(
                '<line class="{cls}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(
                cls="axis" if tick == 0 else "grid",
                x1=left,
                x2=left + plot_w,
                y=y,
                tx=left - 5,
                ty=y + 4,
                label=_pct_tick(tick),
            )
        )
    gap = slot * 0.12
    bw = (slot - 2 * gap) / max(1, len(series))
    for i, label in enumerate(labels):
        for j, (cls, name, _) in enumerate(series):
            v = values[j][i]
            h = v / ymax * plot_h
            parts.append(
                Markup(
                    '<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}">'
                    "<title>{label} · {name}: {v:.1%}</title></rect>"
                ).format(
                    cls=cls,
                    x=left + i * slot + gap + j * bw,
                    y=base - h,
                    w=bw,
                    h=h,
                    label=_clip(str(label), LABEL_CHARS),
                    name=name,
                    v=v,
                )
            )
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        x = left + (i + 0.5) * slot
        label = _clip(_compact(str(labels[i])), 16 if rotate else max(3, int(slot / 6.5)))
        if rotate:
            parts.append(
                Markup(
                    '<text transform="translate({x:.1f},{y:.1f}) rotate(-40)" '
                    'text-anchor="end">{label}</text>'
                ).format(x=x + 3, y=base + 10, label=label)
            )
        else:
            parts.append(
                Markup('<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{label}</text>').format(
                    x=x, y=base + 15, label=label
                )
            )
    return _svg(width, height, title, parts)


def _trim_tails(edges: list[float], counts: list[float], share: float) -> tuple[int, int]:
    """Bins to keep, [start, stop), leaving out at most ``share`` of the rows at each end: one
    extreme value would otherwise squeeze the whole distribution into a single pixel column."""
    total = sum(counts) or 1.0
    start, stop, dropped = 0, len(counts), 0.0
    while start < stop - 1 and dropped + counts[start] <= share * total:
        dropped += counts[start]
        start += 1
    dropped = 0.0
    while stop - 1 > start and dropped + counts[stop - 1] <= share * total:
        dropped += counts[stop - 1]
        stop -= 1
    return start, stop


def _hist_svg(
    title: str, edges: Sequence[Any], counts: Sequence[Any], *, width: int = 360, height: int = 170
) -> Markup:
    """A true histogram on a numeric axis: bar area is the share of rows, so quantile bins
    (narrow where data is dense) show the real shape instead of a flat row of equal bars."""
    e = [_float(x) for x in edges]
    c = [_float(x) for x in counts[: len(edges) - 1]]
    if len(e) < 2 or len(c) != len(e) - 1 or None in e or None in c:
        return _no_chart(f"{DASH} no histogram")
    ev = [x for x in e if x is not None]
    cv = [x for x in c if x is not None]
    total = sum(cv) or 1.0
    start, stop = _trim_tails(ev, cv, 0.015) if len(cv) >= 10 else (0, len(cv))
    outside = total - sum(cv[start:stop])
    ev, cv = ev[start : stop + 1], cv[start:stop]
    # Profiles keep ~100 fine bins; ~25 drawn bins show the same shape at a quarter the bytes.
    step = math.ceil(len(cv) / 25)
    if step > 1:
        ev = ev[::step] + ([ev[-1]] if (len(ev) - 1) % step else [])
        cv = [sum(cv[i : i + step]) for i in range(0, len(cv), step)]
    lo, hi = ev[0], ev[-1]
    if hi <= lo:
        return _no_chart(f"constant value {_short(lo)}")
    dens = [cnt / (b - a) if b > a else 0.0 for cnt, a, b in zip(cv, ev, ev[1:], strict=False)]
    dmax = max(dens) or 1.0
    left, right, top, bottom = 12, 12, 22 if outside > 0 else 8, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    parts = []
    for cnt, d, a, b in zip(cv, dens, ev, ev[1:], strict=False):
        x0 = left + (a - lo) / (hi - lo) * plot_w
        x1 = left + (b - lo) / (hi - lo) * plot_w
        h = d / dmax * plot_h
        parts.append(
            Markup(
                '<rect class="ref" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}">'
                "<title>[{a}, {b}): {cnt:,.0f} rows ({share:.1%})</title></rect>"
            ).format(
                x=x0,
                y=base - h,
                w=max(0.6, x1 - x0 - 0.6),
                h=h,
                a=_short(a),
                b=_short(b),
                cnt=cnt,
                share=cnt / total,
            )
        )
    parts.append(
        Markup('<line class="axis" x1="{x1}" x2="{x2}" y1="{y}" y2="{y}"/>').format(
            x1=left, x2=left + plot_w, y=base
        )
    )
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        parts.append(
            Markup('<text x="{x:.1f}" y="{y}" text-anchor="{anchor}">{label}</text>').format(
                x=left + frac * plot_w,
                y=base + 15,
                anchor=anchor,
                label=_short(lo + frac * (hi - lo)),
            )
        )
    if outside > 0:
        parts.append(
            Markup(
                '<text x="{x}" y="11" text-anchor="end">{share:.1%} of rows beyond the axis</text>'
            ).format(x=left + plot_w, share=outside / total)
        )
    return _svg(width, height, title, parts)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _time_labels(stamps: Sequence[Any]) -> list[str]:
    """Axis labels as short as the stamps allow: 'Nov 20' for a daily schedule."""
    times = [_parse_time(s) for s in stamps]
    if None in times:
        return [str(s) for s in stamps]
    parsed = [t for t in times if t is not None]
    if len({t.year for t in parsed}) > 1:
        fmt = "%Y-%m-%d"
    elif len({(t.hour, t.minute) for t in parsed}) == 1:
        fmt = "%b %d"
    else:
        fmt = "%b %d %H:%M"
    return [t.strftime(fmt) for t in parsed]


def _line_svg(
    title: str,
    stamps: Sequence[Any],
    ys: Sequence[float | None],
    *,
    flags: Sequence[bool | None] | None = None,
    y_range: tuple[float, float] | None = None,
    threshold: float | None = None,
    y_fmt: Callable[[float], str] = _short,
    width: int = 1100,
    height: int = 220,
    this_run: bool = True,
) -> Markup:
    """A line over time; ``flags``: True = bad. With ``this_run`` the last point is larger."""
    n = len(ys)
    finite = [y for y in ys if y is not None]
    if not finite:
        return _no_chart(f"{DASH} no values")
    if y_range is None:
        y_range = (min(finite), max(finite))
    lo, hi, ticks = _nice_range(*y_range, count=4)
    left, right, top, bottom = 52, 18, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    # Real time spacing when every stamp parses (gaps in the schedule show), else run order.
    times = [_parse_time(s) for s in stamps]
    ts = [t.timestamp() for t in times if t is not None]
    if len(ts) == n > 1 and max(ts) > min(ts):
        xs = [left + (t - min(ts)) / (max(ts) - min(ts)) * plot_w for t in ts]
    else:
        xs = [left + (i / (n - 1) if n > 1 else 0.5) * plot_w for i in range(n)]

    def yp(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    parts = []
    for tick in ticks:
        parts.append(
            Markup(
                '<line class="{cls}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(
                cls="axis" if tick == lo else "grid",
                x1=left,
                x2=left + plot_w,
                y=yp(tick),
                tx=left - 6,
                ty=yp(tick) + 4,
                label=y_fmt(tick),
            )
        )
    if threshold is not None and lo <= threshold <= hi:
        ty = yp(threshold)
        parts.append(
            Markup(
                '<line class="thr" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<text class="thr-label" x="{tx}" y="{ty:.1f}">threshold {label}</text>'
            ).format(
                x1=left, x2=left + plot_w, y=ty, tx=left + 6, ty=ty - 6, label=y_fmt(threshold)
            )
        )
    pts = [(x, yp(y)) for x, y in zip(xs, ys, strict=True) if y is not None]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
    parts.append(Markup('<path class="line" d="{d}"/>').format(d=path))
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y is None:
            continue
        flag = flags[i] if flags is not None and i < len(flags) else None
        last = this_run and i == n - 1
        parts.append(
            Markup(
                '<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r}">'
                "<title>{stamp}{note}: {value}</title></circle>"
            ).format(
                cls="pt" if flag is None else ("pt-bad" if flag else "pt-ok"),
                x=x,
                y=yp(y),
                r=6.5 if last else 4.5,
                stamp=stamps[i],
                note=" (this run)" if last else "",
                value=y_fmt(y),
            )
        )
    # Labels right to left from this run, skipping any that would overlap the one after it.
    labels = _time_labels(stamps)
    placed: list[int] = []
    for i in range(n - 1, -1, -1):
        half = len(labels[i]) * 3.3 + 8
        if not placed or xs[placed[-1]] - xs[i] >= half + len(labels[placed[-1]]) * 3.3 + 8:
            placed.append(i)
    for i in placed:
        anchor = "middle"
        if xs[i] - len(labels[i]) * 3.3 < left - 30:
            anchor = "start"
        elif xs[i] + len(labels[i]) * 3.3 > width:
            anchor = "end"
        parts.append(
            Markup('<text x="{x:.1f}" y="{y}" text-anchor="{anchor}">{label}</text>').format(
                x=xs[i], y=top + plot_h + 18, anchor=anchor, label=_clip(labels[i], 18)
            )
        )
    return _svg(width, height, title, parts)


def _spark_svg(
    title: str,
    stamps: Sequence[Any],
    ys: Sequence[float | None],
    flags: Sequence[bool | None],
    *,
    width: int = 460,
    height: int = 62,
) -> Markup:
    """A compact line of one feature's score (a multiple of its threshold) over runs, in run
    order, with the threshold (1×) dashed. Red points: drifted in that run; the last, larger
    point is this run. Scores beyond the top of the axis are drawn at the top (tooltip exact)."""
    finite = [y for y in ys if y is not None]
    if not finite:
        return _no_chart(f"{DASH} no scores")
    top = min(4.0, max(1.5, max(finite) * 1.1))
    left, right, pad = 30, 10, 6
    plot_w, plot_h = width - left - right, height - 2 * pad
    n = len(ys)

    def xp(i: int) -> float:
        return left + (i / (n - 1) if n > 1 else 0.5) * plot_w

    def yp(v: float) -> float:
        return pad + plot_h - min(v, top) / top * plot_h

    parts = [
        Markup(
            '<line class="axis" x1="{x1}" x2="{x2}" y1="{y0:.1f}" y2="{y0:.1f}"/>'
            '<line class="thr" x1="{x1}" x2="{x2}" y1="{y1:.1f}" y2="{y1:.1f}"/>'
            '<text class="thr-label" x="{tx}" y="{ty:.1f}" text-anchor="end">1×</text>'
        ).format(x1=left, x2=left + plot_w, y0=yp(0.0), y1=yp(1.0), tx=left - 4, ty=yp(1.0) + 4)
    ]
    pts = [(xp(i), yp(y)) for i, y in enumerate(ys) if y is not None]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
    parts.append(Markup('<path class="line" d="{d}"/>').format(d=path))
    for i, y in enumerate(ys):
        if y is None:
            continue
        flag = flags[i] if i < len(flags) else None
        last = i == n - 1
        parts.append(
            Markup(
                '<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r}">'
                "<title>{stamp}{note}: {value:.2f}× threshold{state}</title></circle>"
            ).format(
                cls="pt" if flag is None else ("pt-bad" if flag else "pt-ok"),
                x=xp(i),
                y=yp(y),
                r=4.5 if last else 3,
                stamp=_stamp(stamps[i]) if i < len(stamps) else DASH,
                note=" (this run)" if last else "",
                value=y,
                state="" if flag is None else (" · drifted" if flag else " · stable"),
            )
        )
    return _svg(width, height, title, parts)


#: One line of a curve chart: (css class, name, xs, ys, point tooltips or None for no points).
Curve = tuple[str, str, Sequence[Any], Sequence[Any], Sequence[str] | None]


def _curve_svg(
    title: str,
    curves: Sequence[Curve],
    *,
    x_label: str,
    y_label: str,
    diagonal: str | None = None,
    baseline: tuple[float, str] | None = None,
    marks: Sequence[tuple[float, float, str]] = (),
    width: int = 440,
    height: int = 380,
) -> Markup:
    """Lines on the unit square (ROC, precision-recall, reliability): ``diagonal`` names the
    dashed y = x line, ``baseline`` a dashed horizontal one, ``marks`` are highlighted points
    (x, y, tooltip) such as the operating point. Values outside [0, 1] are clipped."""
    drawn = []
    for cls, name, xs, ys, tips in curves:
        pairs = zip([_float(v) for v in xs], [_float(v) for v in ys], strict=False)
        pts = [
            (min(1.0, max(0.0, x)), min(1.0, max(0.0, y)), k)
            for k, (x, y) in enumerate(pairs)
            if x is not None and y is not None
        ]
        if pts:
            drawn.append((cls, name, pts, tips))
    if not drawn:
        return _no_chart(f"{DASH} no curve recorded")
    left, right, top, bottom = 46, 14, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def xp(v: float) -> float:
        return left + v * plot_w

    def yp(v: float) -> float:
        return top + (1.0 - v) * plot_h

    parts = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            Markup(
                '<line class="{cls}" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
                '<line class="{cls}" x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y2}"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
                '<text x="{x:.1f}" y="{bx}" text-anchor="middle">{label}</text>'
            ).format(
                cls="axis" if tick == 0 else "grid",
                x1=left,
                x2=left + plot_w,
                y=yp(tick),
                x=xp(tick),
                y1=top,
                y2=top + plot_h,
                tx=left - 6,
                ty=yp(tick) + 4,
                bx=top + plot_h + 15,
                label=f"{tick:g}",
            )
        )
    parts.append(
        Markup(
            '<text x="{cx:.1f}" y="{by}" text-anchor="middle">{xl}</text>'
            '<text transform="translate(12,{cy:.1f}) rotate(-90)" text-anchor="middle">{yl}</text>'
        ).format(cx=left + plot_w / 2, by=height - 6, xl=x_label, cy=top + plot_h / 2, yl=y_label)
    )
    if diagonal is not None:
        parts.append(
            Markup(
                '<line class="chance" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}">'
                "<title>{name}</title></line>"
            ).format(x0=xp(0), y0=yp(0), x1=xp(1), y1=yp(1), name=diagonal)
        )
    if baseline is not None:
        level = min(1.0, max(0.0, baseline[0]))
        parts.append(
            Markup(
                '<line class="chance" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}">'
                "<title>{name}</title></line>"
            ).format(x1=left, x2=left + plot_w, y=yp(level), name=baseline[1])
        )
    for cls, name, pts, tips in drawn:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{xp(x):.1f},{yp(y):.1f}" for i, (x, y, _) in enumerate(pts)
        )
        parts.append(
            Markup('<path class="curve {cls}" d="{d}"><title>{name}</title></path>').format(
                cls=cls, d=path, name=name
            )
        )
        if tips is not None:
            for x, y, k in pts:
                parts.append(
                    Markup(
                        '<circle class="dot {cls}" cx="{x:.1f}" cy="{y:.1f}" r="4">'
                        "<title>{name}: {tip}</title></circle>"
                    ).format(
                        cls=cls, x=xp(x), y=yp(y), name=name, tip=tips[k] if k < len(tips) else ""
                    )
                )
    for x, y, tip in marks:
        parts.append(
            Markup(
                '<circle class="op" cx="{x:.1f}" cy="{y:.1f}" r="6"><title>{tip}</title></circle>'
            ).format(x=xp(min(1.0, max(0.0, x))), y=yp(min(1.0, max(0.0, y))), tip=tip)
        )
    return _svg(width, height, title, parts)


def _stamp(value: Any) -> str:
    """A short, readable time: '2026-11-20 06:00 UTC' rather than a full ISO string."""
    t = _parse_time(value)
    if t is None:
        return str(value)
    zone = f" {t.tzname()}" if t.tzinfo is not None else ""
    return t.strftime("%Y-%m-%d %H:%M") + zone


# --------------------------------------------------------------------------- drift report


def _missing_change(feature: Mapping[str, Any]) -> tuple[float | None, bool]:
    """The change in missing rate, and whether it reaches the feature's missing_rate threshold."""
    ref, cur = _float(feature.get("missing_ref")), _float(feature.get("missing_cur"))
    if ref is None or cur is None:
        return None, False
    limit = _float(_map(feature.get("thresholds")).get("missing_rate"))
    return abs(cur - ref), limit is not None and abs(cur - ref) >= limit


def _effect(feature: Mapping[str, Any]) -> float:
    """How far past (or short of) its thresholds a feature is: the largest value/threshold."""
    stats, thresholds = _map(feature.get("stats")), _map(feature.get("thresholds"))
    ratios = []
    change, limit = _missing_change(feature)[0], _float(thresholds.get("missing_rate"))
    if change is not None and limit:
        ratios.append(change / limit)
    for name, value in stats.items():
        v, t = _float(value), _float(thresholds.get(name))
        if v is not None and t is not None and t > 0:
            ratios.append(v / t)
    if ratios:
        return max(ratios)
    return _float(stats.get("psi")) or 0.0


def _sorted_features(features: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    items = [(str(name), _map(f)) for name, f in features.items()]
    return sorted(items, key=lambda nf: (not nf[1].get("drifted"), -_effect(nf[1]), nf[0]))


def _stat_rows(feature: Mapping[str, Any]) -> list[Data]:
    """Each statistic against its threshold; the bar spans twice the threshold, tick at half."""
    stats, thresholds = _map(feature.get("stats")), _map(feature.get("thresholds"))
    names = [s for s in STAT_ORDER if s in stats] + sorted(set(stats) - set(STAT_ORDER))
    rows = []
    for name in names:
        v, t = _float(stats.get(name)), _float(thresholds.get(name))
        if v is None:
            continue
        label, long_name = STAT_NAMES.get(name, (name, name))
        row = {"label": label, "long_name": long_name, "over": t is not None and v >= t}
        if t is not None and t > 0:
            title = f"{long_name}: {v:.4g} vs threshold {t:.4g}"
            row.update(value=_num(v), threshold=_num(t), meter=_meter(v, t, 2 * t, title))
        else:
            row.update(value=_num(v), threshold=None, meter=None)
        rows.append(row)
    return rows


def feature_score(feature: Any) -> float:
    """One number per feature of a drift result: its largest statistic-to-threshold ratio
    (>= 1: a statistic reached its threshold), 0.0 when none can be computed. The same number
    the monitor writes as the ``drift/score`` metric; the drift report's trends draw it."""
    f = _map(feature)
    stats, thresholds = _map(f.get("stats")), _map(f.get("thresholds"))
    ratios = []
    for name, limit in thresholds.items():
        v, t = _float(stats.get(name)), _float(limit)
        if v is not None and t:
            ratios.append(v / t)
    return float(max(ratios, default=0.0))


def _drifted(result: Mapping[str, Any]) -> list[str]:
    """The drifted features: the result's list, else the features flagged drifted."""
    features = _map(result.get("features"))
    return [str(d) for d in _seq(result.get("drifted"))] or [
        str(n) for n, f in features.items() if _map(f).get("drifted")
    ]


def _verdict(result: Mapping[str, Any]) -> tuple[str, str]:
    """The banner's verdict and colour. Never green while a feature drifted: drifted features
    short of the dataset share give an amber "Features drifted"."""
    if result.get("insufficient"):
        return "Insufficient data", "warn"
    if result.get("dataset_drift"):
        return "Dataset drift", "bad"
    if _drifted(result):
        return "Features drifted", "warn"
    if "dataset_drift" not in result:
        return "No verdict", "none"
    return "No dataset drift", "ok"


def _drift_lead(result: Mapping[str, Any], drifted: int, total: int) -> str:
    """'3 of 15 features drifted' and where that stands against the dataset share."""
    lead = f"{drifted} of {total} feature{'s' if total != 1 else ''} drifted"
    thr = _float(result.get("dataset_share_threshold"))
    if thr is None or "dataset_drift" not in result:
        return lead
    if result.get("dataset_drift"):
        return f"{lead}; dataset drift at or above the {_pct(thr)} share"
    return f"{lead}; dataset verdict below the {_pct(thr)} share"


def _drift_summary(
    result: Mapping[str, Any],
    features: Mapping[str, Any],
    window: Mapping[str, Any] | None,
    performance: Mapping[str, Any] | None,
) -> Data:
    verdict, cls = _verdict(result)
    share, thr = _float(result.get("drift_share")), _float(result.get("dataset_share_threshold"))
    drifted = _drifted(result)
    names: list[str] = []
    if result.get("insufficient"):
        detail = (
            f"Too few rows to judge drift: {_int(result.get('rows'))} in this window against "
            f"{_int(result.get('reference_rows'))} in the reference."
        )
    elif drifted:
        names, detail = drifted[:6], ""
    else:
        detail = "Every feature is within its thresholds."
    w = _map(window)
    span = f"{_text(w.get('start'))} → {_text(w.get('end'))}" if w else DASH
    perf = _map(performance)
    badge = None
    if perf and _float(perf.get("current")) is not None:
        perf_v = _num(perf.get("current"))
        perf_d = f"{_text(perf.get('metric'))} · baseline {_num(perf.get('baseline'))}"
        if perf.get("degraded"):
            badge = {"cls": "bad", "text": "degraded"}
    else:
        perf_v, perf_d = DASH, "no labels in this window"
    kpis = [
        _kpi(
            "Drift share",
            _pct(share),
            f"{len(drifted)} of {len(features)} features · threshold {_pct(thr)}",
            meter=_meter(share, thr, 1.0, f"drift share {_pct(share)} vs threshold {_pct(thr)}"),
        ),
        _kpi(
            "Rows checked",
            _int(result.get("rows")),
            f"reference {_int(result.get('reference_rows'))}",
        ),
        _kpi(
            "Data window", span, f"{_int(w.get('rows'))} rows" if w.get("rows") else "", small=True
        ),
        _kpi("Performance", perf_v, perf_d, badge=badge),
    ]
    return {
        "verdict": verdict,
        "cls": cls,
        "names": names,
        "lead": _drift_lead(result, len(drifted), len(features)),
        "more": f" and {len(drifted) - 6} more" if len(drifted) > 6 else "",
        "detail": detail,
        "kpis": kpis,
    }


def _drift_features(ordered: list[tuple[str, Mapping[str, Any]]]) -> list[Data]:
    return [
        {
            "name": name,
            "kind": _text(f.get("kind")),
            "drifted": bool(f.get("drifted")),
            "stats": _stat_rows(f),
            "n_ref": _int(f.get("n_ref")),
            "n_cur": _int(f.get("n_cur")),
            "missing_over": _missing_change(f)[1],
            "missing_ref": _pct(f.get("missing_ref"), 1),
            "missing_cur": _pct(f.get("missing_cur"), 1),
            "new": _new_values(f),
            "new_over": _over(f, "new_category_share"),
            "reasons": [str(r) for r in _seq(f.get("reasons"))],
        }
        for name, f in ordered
    ]


def _over(feature: Mapping[str, Any], stat: str) -> bool:
    v = _float(_map(feature.get("stats")).get(stat))
    t = _float(_map(feature.get("thresholds")).get(stat))
    return v is not None and t is not None and v >= t


def _new_values(feature: Mapping[str, Any]) -> str:
    """The most frequent values the reference never had, with their rows ("" if none, or if the
    profile could not tell new values from rare ones)."""
    new = _map(feature.get("new_categories"))
    shown = []
    for item in _seq(new.get("top")):
        top = _map(item)
        label = _clip(str(top.get("value")), LABEL_CHARS)
        shown.append(f"{label!r} ({_int(top.get('rows'))})")
    if not shown:
        return ""
    rows = _int(new.get("rows"))
    return f"new values ({rows} rows): " + ", ".join(shown)


def _drift_distributions(ordered: list[tuple[str, Mapping[str, Any]]]) -> list[Data]:
    cards = []
    for name, f in ordered:
        hist = _map(f.get("histogram"))
        chart = _bars_svg(
            f"{name}: share of rows per bin, reference vs current",
            [str(x) for x in _seq(hist.get("labels"))],
            [
                ("ref", "reference", _seq(hist.get("ref"))),
                ("cur", "current", _seq(hist.get("cur"))),
            ],
        )
        facts = (
            f"{_text(f.get('kind'))} · PSI {_num(_map(f.get('stats')).get('psi'))}"
            f" · rows {_int(f.get('n_ref'))} → {_int(f.get('n_cur'))}"
        )
        cards.append(
            {"name": name, "drifted": bool(f.get("drifted")), "chart": chart, "facts": facts}
        )
    return cards


def _drift_predictions(predictions: Mapping[str, Any] | None) -> Data | None:
    """The served outputs against the champion's holdout outputs (None: a training-feed run)."""
    pred = _map(predictions)
    if not pred:
        return None
    reference, current = _map(pred.get("reference")), _map(pred.get("current"))
    labels = [str(k) for k in reference] or [str(k) for k in current]
    output = str(pred.get("output") or "output")
    statistic = str(pred.get("statistic") or "")
    drifted = bool(pred.get("drifted"))
    chart = _bars_svg(
        f"{output}: share of served outputs per {'bin' if statistic == 'psi' else 'cluster'}, "
        "champion's holdout vs this window",
        labels,
        [
            ("ref", "holdout at training", [reference.get(k) for k in labels]),
            ("cur", "served in this window", [current.get(k) for k in labels]),
        ],
    )
    value, threshold = _float(pred.get("value")), _float(pred.get("threshold"))
    detail = str(pred.get("detail") or "")
    if value is not None:
        detail = (
            f"{statistic} {_num(value)} (threshold {_num(threshold)}) on "
            f"{_int(pred.get('rows'))} outputs of the champion" + (f"; {detail}" if detail else "")
        )
    return {
        "cls": "bad" if drifted else "ok",
        "verdict": "Prediction drift" if drifted else "Outputs hold steady",
        "detail": detail,
        "chart": chart,
    }


def _drift_performance(performance: Mapping[str, Any] | None) -> Data | None:
    """None when the window has no labels (no current value)."""
    perf = _map(performance)
    current = _float(perf.get("current"))
    if not perf or current is None:
        return None
    degraded = bool(perf.get("degraded"))
    metric = str(perf.get("metric") or "metric")
    baseline = _float(perf.get("baseline"))
    change = ""
    if baseline is not None:
        change = f" from {_num(baseline)} to {_num(current)}"
        if baseline:
            change += f" ({(current - baseline) / abs(baseline):+.1%})"
    bars = _metric_bars(
        [
            (
                metric,
                [
                    ("baseline (held-out rows at training)", baseline, "var(--ref)"),
                    ("this window", current, "var(--bad)" if degraded else "var(--cur)"),
                ],
            )
        ]
    )
    return {
        "cls": "bad" if degraded else "ok",
        "verdict": "Degraded" if degraded else "Holding up",
        "detail": f"{metric}{change}; drop {_num(perf.get('drop'))}",
        "bars": bars,
    }


def _drift_history(
    result: Mapping[str, Any],
    history: Sequence[Any],
    at: str,
    performance: Mapping[str, Any] | None,
) -> Data | None:
    """None on the first run (no earlier runs to draw)."""
    runs = [_map(h) for h in history]
    if not runs:
        return None
    stamps = [r.get("at", DASH) for r in runs] + [at]
    shares = [_float(r.get("drift_share")) for r in runs] + [_float(result.get("drift_share"))]
    flags = [bool(r.get("dataset_drift")) for r in runs] + [bool(result.get("dataset_drift"))]
    thr = _float(result.get("dataset_share_threshold"))
    top = max([s for s in shares if s is not None] + ([thr] if thr is not None else []) + [0.05])
    chart = _line_svg(
        f"Drift share over the last {len(stamps)} runs, with the dataset threshold",
        stamps,
        shares,
        flags=flags,
        y_range=(0.0, min(1.0, top * 1.15)),
        threshold=thr,
        y_fmt=_pct_tick,
    )
    names = sorted({str(k) for r in runs for k in _map(r.get("metrics"))})
    perf = _map(performance)
    metrics = []
    for name in names[:6]:
        ys = [_float(_map(r.get("metrics")).get(name)) for r in runs]
        current = _float(perf.get("current")) if perf.get("metric") == name else None
        mstamps = stamps if current is not None else stamps[:-1]
        if current is not None:
            ys.append(current)
        metrics.append(
            {
                "name": name,
                "chart": _line_svg(
                    f"{name} over time",
                    mstamps,
                    ys,
                    width=540,
                    height=190,
                    this_run=current is not None,
                ),
            }
        )
    return {"chart": chart, "metrics": metrics}


#: Most runs (this one included) and most features the trend section draws.
TREND_RUNS = 11
TREND_FEATURES = 50


def _drift_trends(
    ordered: list[tuple[str, Mapping[str, Any]]], history: Sequence[Any], at: str
) -> Data | None:
    """Each feature's score (:func:`feature_score`) over the latest earlier runs that recorded
    per-feature scores, then this run; features in the table's order (drifted first). None when
    no earlier run recorded them."""
    runs = [_map(h) for h in history if isinstance(_map(h).get("feature_scores"), Mapping)]
    runs = runs[-(TREND_RUNS - 1) :]
    if not runs or not ordered:
        return None
    stamps = [r.get("at", DASH) for r in runs] + [at]
    drifted_in = [{str(d) for d in _seq(r.get("drifted"))} for r in runs]
    rows = []
    for name, f in ordered[:TREND_FEATURES]:
        ys = [_float(_map(r.get("feature_scores")).get(name)) for r in runs]
        flags: list[bool | None] = [
            None if y is None else name in d for y, d in zip(ys, drifted_in, strict=True)
        ]
        now = feature_score(f)
        ys.append(now)
        flags.append(bool(f.get("drifted")))
        seen = [flag for flag in flags if flag is not None]
        rows.append(
            {
                "name": name,
                "drifted": bool(f.get("drifted")),
                "chart": _spark_svg(
                    f"{name}: score over the last {len(ys)} runs", stamps, ys, flags
                ),
                "count": f"{sum(seen)} of {len(seen)} runs",
                "now": f"{now:.2f}×",
            }
        )
    more = len(ordered) - TREND_FEATURES
    return {
        "runs": len(stamps),
        "rows": rows,
        "more": f"… and {more} more features (the most stable) not drawn" if more > 0 else "",
    }


def render_drift_report(
    result: dict[str, Any],
    *,
    model: str,
    version: int | None,
    run_id: str,
    at: str,
    window: dict[str, Any] | None = None,
    performance: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    predictions: dict[str, Any] | None = None,
) -> str:
    """One drift monitoring run as a self-contained HTML page (template ``drift.html.j2``).

    ``result`` is the drift module's output (schema 1); ``history`` lists earlier runs, oldest
    first (``feature_scores`` and ``drifted`` in a run feed the per-feature trends);
    ``performance`` is None when the window has no labels; ``predictions`` is the prediction
    drift of a run on served traffic (``drift.source: predictions``), else None.
    """
    result = dict(_map(result))
    features = _map(result.get("features"))
    ordered = _sorted_features(features)
    verdict, _ = _verdict(result)
    return _render(
        "drift.html.j2",
        title=f"{model} — {verdict} — {_stamp(at)}",
        model=str(model),
        against=f"champion v{version}" if version is not None else "no champion version",
        run_id=str(run_id),
        at=_stamp(at),
        summary=_drift_summary(result, features, window, performance),
        features=_drift_features(ordered),
        distributions=_drift_distributions(ordered),
        performance=_drift_performance(performance),
        predictions=_drift_predictions(predictions),
        history=_drift_history(result, _seq(history), at, performance),
        trends=_drift_trends(ordered, _seq(history), at),
    )


# --------------------------------------------------------------------------- version report


def _gate_word(gate: Mapping[str, Any]) -> tuple[str, str]:
    passed = gate.get("passed")
    if passed is True:
        return "PASSED", "ok"
    if passed is False:
        return "REJECTED", "bad"
    return "NOT RECORDED", "none"


def _reason_class(reason: str) -> str:
    low = reason.strip().lower()
    if low.endswith(": ok"):
        return "ok"
    if low.endswith(": rejected"):
        return "bad"
    return "info"


def _version_summary(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> Data:
    word, cls = _gate_word(gate)
    metric = gate.get("metric")
    metrics = _map(manifest.get("metrics"))
    cand, champ = _map(metrics.get("candidate")), _map(metrics.get("champion"))
    cand_v = _float(gate.get("candidate_value"))
    cand_v = cand_v if cand_v is not None else _float(cand.get(str(metric)))
    champ_v = _float(gate.get("champion_value"))
    champ_v = champ_v if champ_v is not None else _float(champ.get(str(metric)))
    failed = [str(r) for r in _seq(gate.get("reasons")) if _reason_class(str(r)) == "bad"]
    if failed:
        detail = "; ".join(failed)
    elif word == "PASSED":
        detail = "Every check passed: eligible to become the champion."
    else:
        detail = "No gate decision was recorded for this version."
    data = _map(manifest.get("data"))
    champ_no = manifest.get("champion_version")
    window = f"{_text(data.get('start'))} → {_text(data.get('end'))}" if data else DASH
    kpis = [
        _kpi(
            f"Candidate {metric or 'metric'}", _num(cand_v, 4), f"floor {_num(gate.get('floor'))}"
        ),
        _kpi(
            "Champion" + (f" v{champ_no}" if champ_no is not None else ""),
            _num(champ_v, 4),
            "no champion yet: first version" if champ_no is None else "same held-out rows",
        ),
        _kpi(
            "Rows",
            _int(data.get("rows")),
            f"train {_int(data.get('train_rows'))} · holdout {_int(data.get('holdout_rows'))}",
        ),
        _kpi("Data window", window, small=True),
    ]
    return {"word": word, "cls": cls, "detail": detail, "kpis": kpis}


def _version_gate(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> Data:
    word, cls = _gate_word(gate)
    drop = _float(gate.get("max_relative_drop"))
    rows = [
        _row("Metric", _text(gate.get("metric"))),
        _row(
            "Candidate / champion",
            f"{_num(gate.get('candidate_value'), 4)} / {_num(gate.get('champion_value'), 4)}",
        ),
        _row("Floor", _num(gate.get("floor"), 4)),
        _row(
            "Largest drop allowed", DASH if drop is None else f"{100 * drop:.1f}% of the champion"
        ),
        _row(
            "Compared with",
            f"champion v{gate['champion_version']}"
            if gate.get("champion_version") is not None
            else "no champion",
        ),
    ]
    if gate.get("champion_error"):
        rows.append(_row("Champion error", str(gate["champion_error"])))
    return {
        "word": word,
        "cls": cls,
        "version": _text(manifest.get("version")),
        "verb": {"PASSED": "passed", "REJECTED": "was rejected by"}.get(
            word, "has no decision from"
        ),
        "reasons": [
            {"cls": _reason_class(str(r)), "text": str(r)} for r in _seq(gate.get("reasons"))
        ],
        "rows": rows,
    }


def _version_metrics(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> Data | None:
    """None when no metric was recorded."""
    metrics = _map(manifest.get("metrics"))
    cand, champ = _map(metrics.get("candidate")), _map(metrics.get("champion"))
    names = [str(n) for n in cand if _float(cand[n]) is not None or n in champ]
    names += [str(n) for n in champ if n not in names]
    gate_metric = gate.get("metric")
    names.sort(key=lambda n: (n != gate_metric, n))
    if not names:
        return None
    champ_no = manifest.get("champion_version")
    champ_name = f"champion v{champ_no}" if champ_no is not None else "champion"
    rows = []
    for n in names:
        entries = [("candidate", _float(cand.get(n)), "var(--cur)")]
        if champ:
            entries.append((champ_name, _float(champ.get(n)), "var(--ref)"))
        rows.append((f"{n} (gate)" if n == gate_metric else n, entries))
    legend = [("candidate", "var(--cur)"), (champ_name, "var(--ref)")] if champ else []
    return {"legend": legend, "bars": _metric_bars(rows)}


def _profile_chart(name: str, f: Mapping[str, Any]) -> Markup:
    """The reference distribution of one feature, whatever shape its profile entry has."""
    title = f"{name}: reference distribution"
    counts = _seq(f.get("counts")) or _seq(f.get("bin_counts"))
    edges = _seq(f.get("edges")) or _seq(f.get("bin_edges"))
    if edges:
        return _hist_svg(title, edges, counts)
    other = _float(f.get("other")) or 0.0
    total = sum(_float(c) or 0.0 for c in counts) + other or 1.0
    labels = [
        _clip(str(x), LABEL_CHARS) for x in _seq(f.get("values")) or _seq(f.get("categories"))
    ]
    shares = [(_float(c) or 0.0) / total for c in counts][: len(labels)]
    if len(shares) > MAX_BARS:  # profiles keep the most frequent first
        other += sum(shares[MAX_BARS:]) * total
        labels, shares = labels[:MAX_BARS], shares[:MAX_BARS]
    if other:
        labels.append("(other)")
        shares.append(other / total)
    return _bars_svg(title, labels, [("ref", "reference", shares)], height=170)


def _profile_facts(f: Mapping[str, Any]) -> str:
    kind = f.get("kind") or ("continuous" if f.get("bin_edges") or f.get("edges") else None)
    parts = [_text(kind)]
    parts += [
        f"{label} {_num(f.get(key))}"
        for key, label in (("mean", "mean"), ("std", "std"), ("min", "min"), ("max", "max"))
        if _float(f.get(key)) is not None
    ]
    parts += [f"missing {_pct(f.get('missing_rate'), 1)}", f"n {_int(f.get('count'))}"]
    categories = [str(c) for c in _seq(f.get("categories"))]
    if categories:
        counts = [_float(c) or 0.0 for c in _seq(f.get("counts"))]
        other = _float(f.get("other")) or 0.0
        total = sum(counts) + other
        kept = f"{len(categories)} categories kept"
        parts.append(f"{kept}, other {_pct(other / total, 1)}" if other and total else kept)
        if any(len(c) > LABEL_CHARS or "…#" in c for c in categories):
            parts.append(f"long values cut to {LABEL_CHARS} characters")
    return " · ".join(parts)


def _version_features(profile: Mapping[str, Any] | None) -> Data:
    """``empty`` says why there is nothing to draw, else None and a card per feature."""
    if profile is None:
        empty = "No profile given: reference distributions are unavailable."
        return {"empty": empty, "rows": DASH, "cards": []}
    feats = _map(profile.get("features"))
    if not feats:
        return {"empty": f"{DASH} no features", "rows": DASH, "cards": []}
    cards = [
        {
            "name": str(name),
            "chart": _profile_chart(str(name), _map(raw)),
            "facts": _profile_facts(_map(raw)),
        }
        for name, raw in feats.items()
    ]
    return {"empty": None, "rows": _int(profile.get("rows")), "cards": cards}


def _version_scores(manifest: Mapping[str, Any], profile: Mapping[str, Any] | None) -> Data:
    """``empty`` says why there is no chart, else None and the chart."""
    task = manifest.get("task")
    dist = _map(_map(profile).get("score_distribution"))
    if task not in (None, "classification") and not dist:
        return {"empty": f"Not a classifier ({task}): no score distribution.", "chart": None}
    if not dist:
        return {"empty": f"{DASH} no score distribution recorded", "chart": None}
    edges, counts = _seq(dist.get("bin_edges")), _seq(dist.get("counts"))
    total = sum(_float(c) or 0.0 for c in counts) or 1.0
    labels = [
        f"{_short(a)}–{_short(b)}"
        for a, b in itertools.pairwise(_float(x) for x in edges)
        if a is not None and b is not None
    ]
    shares = [(_float(c) or 0.0) / total for c in counts]
    chart = _bars_svg(
        "Predicted probability of the positive class on the held-out rows",
        labels,
        [("cur", "held-out rows", shares)],
        width=1100,
        height=200,
    )
    return {"empty": None, "chart": chart}


_DIAGNOSTICS = ("roc", "pr", "confusion", "calibration", "importance")


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _confusion_counts(details: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    c = _map(details.get("confusion"))
    counts = [_float(c.get(k)) for k in ("tp", "fp", "fn", "tn")]
    if any(v is None for v in counts):
        return None
    tp, fp, fn, tn = (v or 0.0 for v in counts)
    return tp, fp, fn, tn


def _version_curves(
    cand: Mapping[str, Any], champ: Mapping[str, Any], champ_name: str, metrics: Mapping[str, Any]
) -> Data:
    """The ROC and precision-recall charts, candidate over champion (same held-out rows), with
    the candidate's operating point (its confusion matrix) marked on both."""
    counts = _confusion_counts(cand)
    roc_marks, pr_marks = [], []
    if counts is not None:
        tp, fp, fn, tn = counts
        tpr, fpr, precision = _rate(tp, tp + fn), _rate(fp, fp + tn), _rate(tp, tp + fp)
        if tpr is not None and fpr is not None:
            roc_marks.append((fpr, tpr, f"operating point: FPR {fpr:.3f}, TPR {tpr:.3f}"))
        if tpr is not None and precision is not None:
            tip = f"operating point: recall {tpr:.3f}, precision {precision:.3f}"
            pr_marks.append((tpr, precision, tip))
    series = [("candidate", "cand", cand)] + ([(champ_name, "champ", champ)] if champ else [])
    roc: list[Curve] = []
    pr: list[Curve] = []
    for name, cls, details in series:
        r, p = _map(details.get("roc")), _map(details.get("pr"))
        if _seq(r.get("fpr")):
            roc.append((cls, name, _seq(r.get("fpr")), _seq(r.get("tpr")), None))
        if _seq(p.get("recall")):
            pr.append((cls, name, _seq(p.get("recall")), _seq(p.get("precision")), None))
    cand_pr = _map(cand.get("pr"))
    prevalence = _float(cand_pr.get("prevalence"))
    auc = _map(metrics.get("candidate")).get("roc_auc")
    champ_auc = _map(metrics.get("champion")).get("roc_auc")
    roc_facts = f"ROC AUC {_num(auc)} (candidate)"
    if len(roc) > 1:
        roc_facts += f" · {_num(champ_auc)} ({champ_name})"
    ap = [_num(_map(d.get("pr")).get("average_precision")) for _, _, d in series]
    pr_facts = f"average precision {ap[0]} (candidate)"
    if len(pr) > 1:
        pr_facts += f" · {ap[1]} ({champ_name})"
    if prevalence is not None:
        pr_facts += f" · positives {_pct(prevalence, 1)} of rows (the dashed line: a random model)"
    return {
        "legend": [("candidate", "var(--cur)")]
        + ([(champ_name, "var(--ref)")] if len(roc) > 1 or len(pr) > 1 else []),
        "roc": _curve_svg(
            "ROC curve: true positive rate against false positive rate",
            roc,
            x_label="false positive rate",
            y_label="true positive rate",
            diagonal="a random model",
            marks=roc_marks,
        ),
        "roc_facts": roc_facts + " · ◯ the model's operating point",
        "pr": _curve_svg(
            "Precision-recall curve",
            pr,
            x_label="recall",
            y_label="precision",
            baseline=None if prevalence is None else (prevalence, "a random model"),
            marks=pr_marks,
        ),
        "pr_facts": pr_facts,
    }


def _version_confusion(details: Mapping[str, Any]) -> Data | None:
    """The 2×2 matrix of the model's decisions on the held-out rows, and the rates it gives."""
    counts = _confusion_counts(details)
    if counts is None:
        return None
    tp, fp, fn, tn = counts
    c = _map(details.get("confusion"))
    pos, neg = _text(c.get("positive_label")), _text(c.get("negative_label"))

    threshold = _float(c.get("threshold"))
    precision, recall = _rate(tp, tp + fp), _rate(tp, tp + fn)
    rows = [
        _row("Decision rule", _text(c.get("rule"))),
        _row("Threshold", DASH if threshold is None else f"{threshold:g}"),
        _row("Precision", _num(precision)),
        _row("Recall (true positive rate)", _num(recall)),
        _row("Specificity (true negative rate)", _num(_rate(tn, tn + fp))),
        _row("False positive rate", _num(_rate(fp, fp + tn))),
    ]

    def cell(count: float, actual: float, what: str, right: bool) -> Data:
        share = _pct(_rate(count, actual), 1)
        return {"count": _int(count), "text": f"{what} · {share} of the row", "right": right}

    return {
        "positive": pos,
        "negative": neg,
        "matrix": [
            {
                "actual": pos,
                "cells": [
                    cell(tp, tp + fn, "true positives", True),
                    cell(fn, tp + fn, "false negatives", False),
                ],
            },
            {
                "actual": neg,
                "cells": [
                    cell(fp, fp + tn, "false positives", False),
                    cell(tn, fp + tn, "true negatives", True),
                ],
            },
        ],
        "rows": rows,
    }


def _calibration_curve(name: str, cls: str, details: Mapping[str, Any]) -> Curve | None:
    cal = _map(details.get("calibration"))
    predicted, observed = _seq(cal.get("predicted")), _seq(cal.get("observed"))
    if not predicted:
        return None
    counts = _seq(cal.get("count"))
    tips = [
        f"predicted {_num(p)}, observed {_num(o)} over {_int(n)} rows"
        for p, o, n in zip(predicted, observed, [*counts, *[None] * len(predicted)], strict=False)
    ]
    return (cls, name, predicted, observed, tips)


def _version_calibration(
    cand: Mapping[str, Any], champ: Mapping[str, Any], champ_name: str
) -> Data | None:
    """The reliability curve (None unless the candidate's scores were probabilities)."""
    own = _calibration_curve("candidate", "cand", cand)
    if own is None:
        return None
    other = _calibration_curve(champ_name, "champ", champ) if champ else None
    curves = [own] + ([other] if other is not None else [])
    cal = _map(cand.get("calibration"))
    facts = f"Brier score {_num(cal.get('brier'))} (candidate; lower is better)"
    if other is not None:
        facts += f" · {_num(_map(champ.get('calibration')).get('brier'))} ({champ_name})"
    return {
        "chart": _curve_svg(
            "Reliability: observed share of positives against the predicted probability",
            curves,
            x_label="mean predicted probability",
            y_label="observed share of positives",
            diagonal="perfect calibration",
        ),
        "facts": facts + f" · {_int(cal.get('bins'))} equal-width bins, empty ones left out",
    }


_IMPORTANCE_KINDS = {
    "impurity": "Impurity-based importance of the final estimator (feature_importances_): "
    "how much each feature's splits reduce impurity, summed over the trees.",
    "coefficient": "Coefficients of the final estimator, on its own inputs (after the "
    "pipeline's transforms): positive pushes toward {pos}, negative away from it. Magnitudes "
    "compare only when the inputs share a scale (e.g. after a StandardScaler).",
    "permutation": "Drop in ROC AUC when one feature's values are shuffled, on {rows} held-out "
    "rows, mean of {repeats} shuffle(s): the model has no importances of its own.",
}


def _version_importance(details: Mapping[str, Any]) -> Data | None:
    imp = _map(details.get("importance"))
    entries = [_map(e) for e in _seq(imp.get("features"))]
    values = [_float(e.get("value")) for e in entries]
    if not entries or all(v is None for v in values):
        return None
    kind = str(imp.get("kind") or "")
    signed = kind == "coefficient"
    scale = max((abs(v) for v in values if v is not None), default=0.0) or 1.0
    bars = []
    for e, v in zip(entries, values, strict=True):
        size = 0.0 if v is None else abs(v) / scale
        if signed:
            width, left = size * 50, 50.0 if (v or 0.0) >= 0 else 50 - size * 50
        else:
            width, left = (size * 100 if (v or 0.0) > 0 else 0.0), 0.0
        std = _float(e.get("std"))
        bars.append(
            {
                "name": _clip(str(e.get("name")), LABEL_CHARS),
                "left": left,
                "width": width,
                "neg": v is not None and v < 0,
                "value": _num(v, 4) + (f" ± {_num(std, 4)}" if std is not None else ""),
            }
        )
    total = _float(imp.get("n_features"))
    shown = f"The {len(bars)} largest of {_int(total)} features." if total else ""
    text = _IMPORTANCE_KINDS.get(kind, f"Importance ({kind or DASH}).").format(
        pos=_text(details.get("positive_label")),
        rows=_int(imp.get("rows")),
        repeats=_int(imp.get("repeats")),
    )
    return {"kind": kind or DASH, "signed": signed, "text": text, "shown": shown, "bars": bars}


def _version_classifier(manifest: Mapping[str, Any]) -> Data:
    """The classifier sections (curves, confusion matrix, calibration, importance), drawn from
    the evaluation details stored at retrain time. ``empty`` says why there are none."""
    task = manifest.get("task")
    evaluation = _map(manifest.get("evaluation"))
    cand, champ = _map(evaluation.get("candidate")), _map(evaluation.get("champion"))
    champ_no = manifest.get("champion_version")
    champ_name = f"champion v{champ_no}" if champ_no is not None else "champion"
    if not any(k in champ for k in _DIAGNOSTICS):
        champ = {}
    empty = None
    if task not in (None, "classification"):
        empty = f"Not a classifier ({task}): no curves, confusion matrix or calibration."
    elif not any(k in cand for k in _DIAGNOSTICS):
        empty = f"{DASH} not recorded for this version (registered before reports drew them)."
    if empty is not None:
        return {
            "empty": empty,
            "curves": None,
            "confusion": None,
            "calibration": None,
            "importance": None,
        }
    return {
        "empty": None,
        "curves": _version_curves(cand, champ, champ_name, _map(manifest.get("metrics"))),
        "confusion": _version_confusion(cand),
        "calibration": _version_calibration(cand, champ, champ_name),
        "importance": _version_importance(cand),
    }


_DATA_LABELS = {
    "start": "Window start",
    "end": "Window end",
    "rows": "Rows read",
    "train_rows": "Training rows",
    "holdout_rows": "Held-out rows",
}


def _plain(value: Any) -> str:
    """A value for a table cell: numbers with separators, mappings as 'k: v' pairs."""
    if isinstance(value, Mapping):
        return " · ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or DASH
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or DASH
    if _float(value) is not None and not isinstance(value, bool):
        return _int(value) if float(value).is_integer() else _num(value)
    return _text(value)


def _version_data(manifest: Mapping[str, Any]) -> Data:
    """The data window as table rows, then folded blocks (estimator, parameters, libraries and,
    for older manifests, the first files read)."""
    data = _map(manifest.get("data"))
    summary = {
        "partition_count",
        "first_partition",
        "last_partition",
        "file_count",
        "bytes",
        "files_sha256",
    }
    rows = [
        _row(_DATA_LABELS.get(str(k), str(k)), _plain(v))
        for k, v in data.items()
        if k not in ("files", "partitions", "missing", *summary)
    ]
    parts, files = _seq(data.get("partitions")), _seq(data.get("files"))
    files_read: list[Data] = []
    if "file_count" in data:  # a summary: the same size however many files were read
        first, last = data.get("first_partition"), data.get("last_partition")
        span = ""
        if first:
            span = f" ({first}" + (f" … {last}" if last and last != first else "") + ")"
        size = _float(data.get("bytes"))
        rows += [
            _row("Partitions", f"{_int(data.get('partition_count'))}{span}"),
            _row(
                "Files", f"{_int(data.get('file_count'))}" + (f" · {_bytes(size)}" if size else "")
            ),
            _row("Files sha256", _text(data.get("files_sha256")), code=True),
        ]
    else:  # older manifests list every partition and file: show their extent, a few names
        span = f" ({parts[0]} … {parts[-1]})" if parts else ""
        rows += [_row("Partitions", f"{len(parts)}{span}"), _row("Files", _int(len(files)))]
        if files:
            shown = [_clip(str(f), LABEL_CHARS) for f in files[:MAX_FILES_LISTED]]
            if len(files) > MAX_FILES_LISTED:
                shown.append(f"… and {len(files) - MAX_FILES_LISTED:,} more")
            files_read.append({"summary": "Files read", "text": "\n".join(shown)})
    missing = _map(data.get("missing"))
    worst = sorted(((str(k), _float(v) or 0.0) for k, v in missing.items()), key=lambda kv: -kv[1])
    if worst:
        rows.append(_row("Most missing", ", ".join(f"{k} {_pct(v, 1)}" for k, v in worst[:5])))
    evaluation = _map(manifest.get("evaluation"))
    details = _map(evaluation.get("candidate"))
    for key in ("n_rows", "class_counts", "positive_label", "n_clusters", "cluster_sizes"):
        if key in details:
            rows.append(_row(f"Held-out {key.replace('_', ' ')}", _plain(details[key])))
    problems = _seq(evaluation.get("candidate_problems"))
    if problems:
        rows.append(_row("Candidate problems", "; ".join(str(p) for p in problems)))
    blocks = [
        {"summary": name, "text": json.dumps(value, indent=2, sort_keys=True, default=str)}
        for name, value in (
            ("Estimator", manifest.get("estimator")),
            ("Parameters", manifest.get("params")),
            ("Library versions", manifest.get("libraries")),
        )
        if value is not None
    ]
    return {"rows": rows, "blocks": blocks + files_read}


def _bytes(size: float) -> str:
    if size < 1024:
        return f"{size:,.0f} bytes"
    for power, unit in ((1, "KB"), (2, "MB"), (3, "GB")):
        if size < 1024 ** (power + 1) or unit == "GB":
            return f"{size / 1024**power:,.1f} {unit}"
    return DASH  # pragma: no cover - the loop always returns


def render_version_report(manifest: dict[str, Any], profile: dict[str, Any] | None = None) -> str:
    """One registered version: gate decision, metrics, a classifier's curves, confusion matrix,
    calibration and feature importance, reference data, scores, provenance (template
    ``version.html.j2``)."""
    m = _map(manifest)
    gate = _map(m.get("gate"))
    model, version = m.get("model", DASH), m.get("version", DASH)
    word, _ = _gate_word(gate)
    return _render(
        "version.html.j2",
        title=f"{model} v{version} — gate {word}",
        model=str(model),
        version=str(version),
        task=_text(m.get("task")),
        created=_stamp(m.get("created_at", DASH)),
        code_version=_text(m.get("code_version")),
        run_id=_text(m.get("run_id")),
        summary=_version_summary(m, gate),
        gate=_version_gate(m, gate),
        metrics=_version_metrics(m, gate),
        features=_version_features(_map(profile) if profile is not None else None),
        scores=_version_scores(m, profile),
        classifier=_version_classifier(m),
        data=_version_data(m),
    )
