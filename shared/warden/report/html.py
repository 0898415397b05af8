"""Self-contained HTML reports for drift monitoring runs and for model versions.

Everything is inline: CSS, and SVG charts drawn here from the numbers (no plotting library). A
strict Content-Security-Policy forbids every load, so a report opened from a bucket, a ticket or
a mail shows the same thing offline and cannot tell anyone that it was opened. Inputs are treated
as untrusted and incomplete: every string is escaped, and a missing optional key renders as "—"
instead of failing the run that writes the report.

Sections carry stable ids (``#summary``, ``#features``, ...) that tests and links rely on.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

DASH = "—"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
#: Longest label (category, bin) a report prints, tooltips included. Profiles already cap
#: category labels at this length (warden.ml.drift.MAX_CATEGORY_CHARS); this also bounds reports
#: drawn from profiles written before they did.
LABEL_CHARS = 200
#: Most categories drawn in one reference chart; the rest join "(other)".
MAX_BARS = 50
#: Files named in the "Files read" list of a version that still lists them (older manifests).
MAX_FILES_LISTED = 20

# Drift statistics in display order; all are distances, so "value >= threshold" means drift.
STAT_ORDER = ("psi", "js", "wasserstein", "ks", "linf", "cramers_v")
STAT_NAMES = {
    "psi": ("PSI", "population stability index"),
    "js": ("JS", "Jensen-Shannon distance"),
    "wasserstein": ("Wasserstein", "Wasserstein distance (normalised)"),
    "ks": ("KS", "Kolmogorov-Smirnov statistic"),
    "linf": ("L∞", "largest difference in any category's share"),
    "cramers_v": ("Cramér's V", "Cramér's V"),
}

_CSS = """
:root{--ink:#1f2937;--muted:#4b5563;--line:#e3e6ea;--bg:#f4f5f7;--ref:#7b8494;--cur:#2456d6;
--bad:#b42318;--bad-bg:#fdecea;--bad-ink:#7a1a12;--ok:#067647;--ok-bg:#e5f5ec;--ok-ink:#05512f;
--warn:#b54708;--warn-bg:#fff3d6;--warn-ink:#7a2e0e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:22px 24px 40px}
header h1{font-size:24px;margin:0 0 2px;overflow-wrap:anywhere}
.sub,.muted{color:var(--muted)}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
nav{margin:10px 0 0;display:flex;gap:6px;flex-wrap:wrap}
nav a{color:var(--cur);text-decoration:none;padding:3px 10px;border:1px solid var(--line);
border-radius:999px;background:#fff;font-size:13px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;
margin:16px 0}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:14px;margin:0 0 6px}
h3.gap{margin-top:18px}
.banner{display:flex;flex-wrap:wrap;gap:6px 24px;align-items:baseline;padding:16px 20px;
border-radius:8px;border-left:10px solid}
.banner .verdict{font-size:28px;font-weight:750;letter-spacing:-.01em}
.banner.slim{padding:10px 16px;margin-bottom:12px}
.banner.slim .verdict{font-size:19px}
.banner.bad{background:var(--bad-bg);border-color:var(--bad);color:var(--bad-ink)}
.banner.ok{background:var(--ok-bg);border-color:var(--ok);color:var(--ok-ink)}
.banner.warn{background:var(--warn-bg);border-color:var(--warn);color:var(--warn-ink)}
.banner.none{background:#eef0f3;border-color:#6b7280}
.kpis{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;margin-top:14px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:0}
.kpi .k{display:block;color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.05em}
.kpi .v{display:block;font-size:24px;font-weight:650;overflow-wrap:anywhere}
.kpi .v.small{font-size:16px;padding:5px 0 4px}
.kpi .d{display:block;color:var(--muted);font-size:13px;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em;
font-weight:600}
td.name{font-weight:650;overflow-wrap:break-word;word-break:break-word;min-width:130px;
max-width:220px}
td.name .badge{margin-top:3px}
.kind{font-weight:400;color:var(--muted);font-size:12px}
.kind.over{color:var(--bad);font-weight:650}
tr.drift td{background:#fff6f5}
tr.drift td:first-child{box-shadow:inset 5px 0 var(--bad)}
table.features td{padding:6px 10px}
table.kv th{width:220px;text-transform:none;letter-spacing:0;font-size:14px;color:var(--muted);
font-weight:500}
.badge.big{font-size:15px;padding:2px 12px;vertical-align:2px}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:650;
white-space:nowrap}
.badge.bad{background:var(--bad);color:#fff}
.badge.ok{background:var(--ok-bg);color:var(--ok-ink);border:1px solid #a6dcbd}
.badge.warn{background:var(--warn-bg);color:var(--warn-ink);border:1px solid #f3c777}
.badge.none{background:#eef0f3;color:var(--muted)}
.stats{display:grid;grid-template-columns:repeat(2,max-content);gap:2px 22px}
.stat{display:grid;grid-template-columns:94px 74px 104px;align-items:center;gap:6px;
white-space:nowrap;font-size:13px}
.stat .n{color:var(--muted)}
.stat .t{color:var(--muted);font-weight:400}
.stat.over .n,.stat.over .num{color:var(--bad);font-weight:650}
.meter{display:inline-block;position:relative;width:74px;height:9px;background:#e6e9ee;
border-radius:5px;vertical-align:middle}
.meter i{position:absolute;left:0;top:0;bottom:0;background:var(--cur);border-radius:5px}
.meter.over i{background:var(--bad)}
.meter b{position:absolute;top:-3px;bottom:-3px;width:2px;background:var(--ink)}
.meter.wide{display:block;width:100%;height:12px;margin-top:8px}
ul.reasons{margin:0;padding-left:16px;font-size:13px;min-width:190px}
ul.gate{list-style:none;padding:0;margin:12px 0}
ul.gate li{padding:7px 10px 7px 34px;border-radius:6px;margin:4px 0;position:relative}
ul.gate li::before{position:absolute;left:12px;font-weight:800}
ul.gate li.ok{background:var(--ok-bg);color:var(--ok-ink)}
ul.gate li.ok::before{content:"✓"}
ul.gate li.bad{background:var(--bad-bg);color:var(--bad-ink);font-weight:600}
ul.gate li.bad::before{content:"✗"}
ul.gate li.info{background:#eef0f3}
ul.gate li.info::before{content:"i";font-style:italic}
.grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:14px}
.grid.two{grid-template-columns:repeat(2,minmax(0,1fr))}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;min-width:0}
.card.drift{border-color:var(--bad);box-shadow:inset 0 4px var(--bad)}
.card h3{display:flex;justify-content:space-between;gap:8px;overflow-wrap:anywhere}
.card .facts{color:var(--muted);font-size:12px;margin-top:4px}
svg.chart{width:100%;height:auto;display:block}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#4b5563}
svg .axis{stroke:#9aa1ab;stroke-width:1}
svg .grid{stroke:#e3e6ea;stroke-width:1}
svg .ref{fill:var(--ref)}
svg .cur{fill:var(--cur)}
svg .thr{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:6 4}
svg .line{fill:none;stroke:var(--cur);stroke-width:2}
svg .pt-ok{fill:var(--ok);stroke:#fff;stroke-width:1.5}
svg .pt-bad{fill:var(--bad);stroke:#fff;stroke-width:1.5}
svg .pt{fill:var(--cur);stroke:#fff;stroke-width:1.5}
svg text.thr-label{fill:var(--bad);font-weight:600}
.legend{display:flex;gap:18px;color:var(--muted);font-size:13px;margin:0 0 10px}
.legend span::before{content:"";display:inline-block;width:11px;height:11px;border-radius:2px;
margin-right:6px;vertical-align:-1px;background:var(--c)}
.legend span.dash::before{width:18px;height:0;border-top:2px dashed var(--bad);border-radius:0;
vertical-align:3px;background:none}
.mbar{display:grid;grid-template-columns:170px 270px minmax(0,1fr) 80px;gap:4px 12px;
align-items:center;margin:3px 0}
.mbar.first{margin-top:12px}
.mbar .lbl{overflow-wrap:anywhere}
.mbar .track{height:14px;background:#eef0f3;border-radius:4px;position:relative}
.mbar .track i{position:absolute;left:0;top:0;bottom:0;border-radius:4px}
pre{background:#f6f7f9;border:1px solid var(--line);border-radius:6px;padding:10px;
overflow:auto;font-size:12px}
details summary{cursor:pointer;color:var(--cur);margin:8px 0}
footer{color:var(--muted);font-size:12px;text-align:center}
@media (max-width:900px){.grid,.kpis{grid-template-columns:repeat(2,minmax(0,1fr))}
.grid.two{grid-template-columns:1fr}.stats{grid-template-columns:max-content}}
@media print{body{background:#fff}section{break-inside:avoid}nav{display:none}}
"""


# --------------------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


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
    """Escaped text, "—" for a missing value."""
    return DASH if value is None or value == "" else _e(value)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else []


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _meter(value: float | None, threshold: float | None, scale: float, title: str) -> str:
    """A small bar with the threshold as a tick; red once the value reaches it."""
    if value is None or scale <= 0:
        return f'<span class="meter" title="{_e(title)}"></span>'
    width = max(0.0, min(1.0, value / scale)) * 100
    over = threshold is not None and value >= threshold
    tick = ""
    if threshold is not None:
        tick = f'<b style="left:{max(0.0, min(1.0, threshold / scale)) * 100:.1f}%"></b>'
    cls = "meter over" if over else "meter"
    return (
        f'<span class="{cls}" title="{_e(title)}"><i style="width:{width:.1f}%"></i>{tick}</span>'
    )


def _svg(width: int, height: int, title: str, body: str) -> str:
    # No xmlns: inline SVG in HTML does not need it, and the report then holds no URL at all.
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>{body}</svg>"
    )


def _kpi(key: str, value: str, detail: str = "", *, small: bool = False) -> str:
    d = f'<span class="d">{detail}</span>' if detail else ""
    v = f'<span class="v{" small" if small else ""}">{value}</span>'
    return f'<div class="kpi"><span class="k">{_e(key)}</span>{v}{d}</div>'


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _section(sid: str, heading: str, body: str) -> str:
    return (
        f'<section id="{sid}" aria-labelledby="{sid}-h">'
        f'<h2 id="{sid}-h">{heading}</h2>{body}</section>'
    )


def _page(title: str, header: str, nav: Sequence[tuple[str, str]], sections: Sequence[str]) -> str:
    links = "".join(f'<a href="#{sid}">{_e(label)}</a>' for sid, label in nav)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width,initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head>\n"
        f"<body><main><header>{header}<nav>{links}</nav></header>\n"
        + "\n".join(sections)
        + "\n<footer>Generated by Warden · self-contained: no scripts, no external resources"
        "</footer></main></body></html>\n"
    )


# --------------------------------------------------------------------------- charts


def _nice_step(span: float, count: int) -> float:
    """A 1/2/2.5/5 × 10^k step giving about ``count`` intervals over ``span``."""
    raw = span / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
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
) -> str:
    """Grouped bars of shares per label; ``series`` is (css class, name, values)."""
    n = len(labels)
    if n == 0:
        return f'<p class="muted">{DASH} no histogram</p>'
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
            f'<line class="{"axis" if tick == 0 else "grid"}" x1="{left}" x2="{left + plot_w}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/><text x="{left - 5}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_pct_tick(tick)}</text>'
        )
    gap = slot * 0.12
    bw = (slot - 2 * gap) / max(1, len(series))
    for i, label in enumerate(labels):
        for j, (cls, name, _) in enumerate(series):
            v = values[j][i]
            h = v / ymax * plot_h
            parts.append(
                f'<rect class="{cls}" x="{left + i * slot + gap + j * bw:.1f}" '
                f'y="{base - h:.1f}" width="{bw:.1f}" height="{h:.1f}">'
                f"<title>{_e(_clip(str(label), LABEL_CHARS))} · {_e(name)}: {v:.1%}</title></rect>"
            )
    step = max(1, math.ceil(n / 12))
    for i in range(0, n, step):
        x = left + (i + 0.5) * slot
        label = _e(_clip(_compact(str(labels[i])), 16 if rotate else max(3, int(slot / 6.5))))
        if rotate:
            parts.append(
                f'<text transform="translate({x + 3:.1f},{base + 10:.1f}) rotate(-40)" '
                f'text-anchor="end">{label}</text>'
            )
        else:
            parts.append(
                f'<text x="{x:.1f}" y="{base + 15:.1f}" text-anchor="middle">{label}</text>'
            )
    return _svg(width, height, title, "".join(parts))


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
) -> str:
    """A true histogram on a numeric axis: bar area is the share of rows, so quantile bins
    (narrow where data is dense) show the real shape instead of a flat row of equal bars."""
    e = [_float(x) for x in edges]
    c = [_float(x) for x in counts[: len(edges) - 1]]
    if len(e) < 2 or len(c) != len(e) - 1 or None in e or None in c:
        return f'<p class="muted">{DASH} no histogram</p>'
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
        return f'<p class="muted">constant value {_e(_short(lo))}</p>'
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
            f'<rect class="ref" x="{x0:.1f}" y="{base - h:.1f}" '
            f'width="{max(0.6, x1 - x0 - 0.6):.1f}" height="{h:.1f}"><title>'
            f"[{_e(_short(a))}, {_e(_short(b))}): {cnt:,.0f} rows ({cnt / total:.1%})"
            "</title></rect>"
        )
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}"/>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        parts.append(
            f'<text x="{left + frac * plot_w:.1f}" y="{base + 15}" text-anchor="{anchor}">'
            f"{_e(_short(lo + frac * (hi - lo)))}</text>"
        )
    if outside > 0:
        parts.append(
            f'<text x="{left + plot_w}" y="11" text-anchor="end">'
            f"{outside / total:.1%} of rows beyond the axis</text>"
        )
    return _svg(width, height, title, "".join(parts))


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
    y_fmt: Any = _short,
    width: int = 1100,
    height: int = 220,
    this_run: bool = True,
) -> str:
    """A line over time; ``flags``: True = bad. With ``this_run`` the last point is larger."""
    n = len(ys)
    finite = [y for y in ys if y is not None]
    if not finite:
        return f'<p class="muted">{DASH} no values</p>'
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
            f'<line class="{"axis" if tick == lo else "grid"}" x1="{left}" x2="{left + plot_w}" '
            f'y1="{yp(tick):.1f}" y2="{yp(tick):.1f}"/><text x="{left - 6}" '
            f'y="{yp(tick) + 4:.1f}" text-anchor="end">{_e(y_fmt(tick))}</text>'
        )
    if threshold is not None and lo <= threshold <= hi:
        ty = yp(threshold)
        parts.append(
            f'<line class="thr" x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="thr-label" x="{left + 6}" y="{ty - 6:.1f}">'
            f"threshold {_e(y_fmt(threshold))}</text>"
        )
    pts = [(x, yp(y)) for x, y in zip(xs, ys, strict=True) if y is not None]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
    parts.append(f'<path class="line" d="{path}"/>')
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y is None:
            continue
        flag = flags[i] if flags is not None and i < len(flags) else None
        cls = "pt" if flag is None else ("pt-bad" if flag else "pt-ok")
        last = this_run and i == n - 1
        parts.append(
            f'<circle class="{cls}" cx="{x:.1f}" cy="{yp(y):.1f}" r="{6.5 if last else 4.5}">'
            f"<title>{_e(stamps[i])}{' (this run)' if last else ''}: {_e(y_fmt(y))}</title>"
            "</circle>"
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
            f'<text x="{xs[i]:.1f}" y="{top + plot_h + 18}" text-anchor="{anchor}">'
            f"{_e(_clip(labels[i], 18))}</text>"
        )
    return _svg(width, height, title, "".join(parts))


def _stamp(value: Any) -> str:
    """A short, readable time: '2026-11-20 06:00 UTC' rather than a full ISO string."""
    t = _parse_time(value)
    if t is None:
        return str(value)
    zone = f" {t.tzname()}" if t.tzinfo is not None else ""
    return t.strftime("%Y-%m-%d %H:%M") + zone


def _legend(*items: tuple[str, str]) -> str:
    spans = "".join(f'<span style="--c:{color}">{_e(name)}</span>' for name, color in items)
    return f'<div class="legend">{spans}</div>'


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


def _stat_rows(feature: Mapping[str, Any]) -> str:
    """Each statistic against its threshold; the bar spans twice the threshold, tick at half."""
    stats, thresholds = _map(feature.get("stats")), _map(feature.get("thresholds"))
    names = [s for s in STAT_ORDER if s in stats] + sorted(set(stats) - set(STAT_ORDER))
    rows = []
    for name in names:
        v, t = _float(stats.get(name)), _float(thresholds.get(name))
        if v is None:
            continue
        label, long_name = STAT_NAMES.get(name, (name, name))
        over = t is not None and v >= t
        if t is not None and t > 0:
            meter = _meter(v, t, 2 * t, f"{long_name}: {v:.4g} vs threshold {t:.4g}")
            shown = f'{_num(v)}<span class="t"> / {_num(t)}</span>'
        else:
            meter, shown = "<span></span>", _num(v)
        rows.append(
            f'<div class="stat{" over" if over else ""}" title="{_e(long_name)}">'
            f'<span class="n">{_e(label)}</span>{meter}<span class="num">{shown}</span></div>'
        )
    return f'<div class="stats">{"".join(rows)}</div>' if rows else DASH


def _verdict(result: Mapping[str, Any]) -> tuple[str, str]:
    if result.get("insufficient"):
        return "Insufficient data", "warn"
    if result.get("dataset_drift"):
        return "Dataset drift", "bad"
    if "dataset_drift" not in result:
        return "No verdict", "none"
    return "No dataset drift", "ok"


def _drift_summary(
    result: Mapping[str, Any],
    features: Mapping[str, Any],
    window: Mapping[str, Any] | None,
    performance: Mapping[str, Any] | None,
) -> str:
    verdict, cls = _verdict(result)
    share, thr = _float(result.get("drift_share")), _float(result.get("dataset_share_threshold"))
    drifted = [str(d) for d in _seq(result.get("drifted"))] or [
        n for n, f in features.items() if _map(f).get("drifted")
    ]
    if result.get("insufficient"):
        detail = (
            f"Too few rows to judge drift: {_int(result.get('rows'))} in this window against "
            f"{_int(result.get('reference_rows'))} in the reference."
        )
    elif drifted:
        listed = ", ".join(f"<b>{_e(d)}</b>" for d in drifted[:6])
        more = f" and {len(drifted) - 6} more" if len(drifted) > 6 else ""
        detail = f"{len(drifted)} drifted: {listed}{more}."
    else:
        detail = "Every feature is within its thresholds."
    banner = (
        f'<div class="banner {cls}"><span class="verdict">{_e(verdict)}</span>'
        f"<span>{detail}</span></div>"
    )
    meter = _meter(share, thr, 1.0, f"drift share {_pct(share)} vs threshold {_pct(thr)}")
    share_detail = (
        f"{len(drifted)} of {len(features)} features · threshold {_pct(thr)}"
        + meter.replace('class="meter', 'class="meter wide', 1)
    )
    w = _map(window)
    span = f"{_text(w.get('start'))} → {_text(w.get('end'))}" if w else DASH
    perf = _map(performance)
    if perf and _float(perf.get("current")) is not None:
        perf_v = _num(perf.get("current"))
        perf_d = f"{_text(perf.get('metric'))} · baseline {_num(perf.get('baseline'))}"
        if perf.get("degraded"):
            perf_d += ' <span class="badge bad">degraded</span>'
    else:
        perf_v, perf_d = DASH, "no labels in this window"
    kpis = (
        _kpi("Drift share", _pct(share), share_detail)
        + _kpi(
            "Rows checked",
            _int(result.get("rows")),
            f"reference {_int(result.get('reference_rows'))}",
        )
        + _kpi(
            "Data window", span, f"{_int(w.get('rows'))} rows" if w.get("rows") else "", small=True
        )
        + _kpi("Performance", perf_v, perf_d)
    )
    return _section("summary", "Summary", banner + f'<div class="kpis">{kpis}</div>')


def _drift_features(ordered: list[tuple[str, Mapping[str, Any]]]) -> str:
    if not ordered:
        return _section("features", "Features", f'<p class="muted">{DASH} no features</p>')
    rows = []
    for name, f in ordered:
        drifted = bool(f.get("drifted"))
        badge = (
            '<span class="badge bad">drifted</span>'
            if drifted
            else '<span class="badge ok">stable</span>'
        )
        reasons = "".join(f"<li>{_e(r)}</li>" for r in _seq(f.get("reasons")))
        rows.append(
            f'<tr class="{"drift" if drifted else "stable"}" data-feature="{_e(name)}">'
            f'<td class="name">{_e(name)}<div class="kind">{_text(f.get("kind"))}</div>{badge}'
            f"</td><td>{_stat_rows(f)}</td>"
            f'<td class="num">{_int(f.get("n_ref"))} → {_int(f.get("n_cur"))}'
            f'<div class="kind{" over" if _missing_change(f)[1] else ""}">missing '
            f"{_pct(f.get('missing_ref'), 1)} → {_pct(f.get('missing_cur'), 1)}</div></td>"
            f"<td>{f'<ul class=reasons>{reasons}</ul>' if reasons else DASH}</td></tr>"
        )
    head = (
        "<thead><tr><th>Feature</th><th>Statistic: value / threshold</th>"
        "<th>Rows ref → cur</th><th>Reasons</th></tr></thead>"
    )
    note = (
        '<p class="muted">Drifted features first, then by how far their largest statistic is '
        "toward its threshold. Each bar spans twice the threshold; the tick marks it.</p>"
    )
    return _section(
        "features",
        "Features",
        f'{note}<table class="features">{head}<tbody>{"".join(rows)}</tbody></table>',
    )


def _drift_distributions(ordered: list[tuple[str, Mapping[str, Any]]]) -> str:
    cards = []
    for name, f in ordered:
        hist = _map(f.get("histogram"))
        labels = [str(x) for x in _seq(hist.get("labels"))]
        chart = _bars_svg(
            f"{name}: share of rows per bin, reference vs current",
            labels,
            [
                ("ref", "reference", _seq(hist.get("ref"))),
                ("cur", "current", _seq(hist.get("cur"))),
            ],
        )
        drifted = bool(f.get("drifted"))
        badge = '<span class="badge bad">drifted</span>' if drifted else ""
        facts = (
            f"{_text(f.get('kind'))} · PSI {_num(_map(f.get('stats')).get('psi'))}"
            f" · rows {_int(f.get('n_ref'))} → {_int(f.get('n_cur'))}"
        )
        cards.append(
            f'<div class="card{" drift" if drifted else ""}">'
            f"<h3><span>{_e(name)}</span>{badge}</h3>{chart}"
            f'<div class="facts">{facts}</div></div>'
        )
    if not cards:
        return _section(
            "distributions", "Distributions", f'<p class="muted">{DASH} no features</p>'
        )
    body = (
        _legend(("reference (training data)", "var(--ref)"), ("current window", "var(--cur)"))
        + f'<div class="grid">{"".join(cards)}</div>'
    )
    return _section("distributions", "Distributions", body)


def _metric_bars(rows: Sequence[tuple[str, Sequence[tuple[str, float | None, str]]]]) -> str:
    """Horizontal bars, one block per metric; each entry is (series name, value, colour)."""
    values = [v for _, entries in rows for _, v, _ in entries if v is not None]
    lo = min([0.0, *values])
    hi = max([1.0, *values]) if all(-1 <= v <= 1 for v in values) else max([0.0, *values])
    span = (hi - lo) or 1.0
    out = []
    for metric, entries in rows:
        for k, (series, v, color) in enumerate(entries):
            width = 0.0 if v is None else (v - lo) / span * 100
            label = f"<b>{_e(metric)}</b>" if k == 0 else ""
            out.append(
                f'<div class="mbar{" first" if k == 0 else ""}"><span class="lbl">{label}</span>'
                f'<span class="muted">{_e(series)}</span><span class="track">'
                f'<i style="width:{width:.1f}%;background:{color}"></i></span>'
                f'<span class="num">{_num(v, 4)}</span></div>'
            )
    return "".join(out)


def _drift_performance(performance: Mapping[str, Any] | None) -> str:
    perf = _map(performance)
    current = _float(perf.get("current"))
    if not perf or current is None:
        body = (
            '<p class="muted">No labels in this window: performance cannot be measured until '
            "the outcomes arrive. Drift above is the early warning.</p>"
        )
        return _section("performance", "Performance", body)
    degraded = bool(perf.get("degraded"))
    metric = str(perf.get("metric") or "metric")
    baseline = _float(perf.get("baseline"))
    change = ""
    if baseline is not None:
        change = f" from {_num(baseline)} to {_num(current)}"
        if baseline:
            change += f" ({(current - baseline) / abs(baseline):+.1%})"
    headline = (
        f'<div class="banner {"bad" if degraded else "ok"} slim"><span class="verdict">'
        f"{'Degraded' if degraded else 'Holding up'}</span><span>{_e(metric)}{change}; "
        f"drop {_num(perf.get('drop'))}</span></div>"
    )
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
    return _section("performance", "Performance", headline + f'<div class="bars">{bars}</div>')


def _drift_history(
    result: Mapping[str, Any],
    history: Sequence[Any],
    at: str,
    performance: Mapping[str, Any] | None,
) -> str:
    runs = [_map(h) for h in history]
    if not runs:
        body = '<p class="muted">This is the first run: no history yet to compare with.</p>'
        return _section("history", "History", body)
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
    body = [
        "<h3>Share of drifted features</h3>",
        _legend(
            ("no dataset drift", "var(--ok)"),
            ("dataset drift", "var(--bad)"),
            ("threshold", "var(--bad)"),
        ).replace('<span style="--c:var(--bad)">threshold', '<span class="dash">threshold'),
        chart,
    ]
    names = sorted({str(k) for r in runs for k in _map(r.get("metrics"))})
    perf = _map(performance)
    cards = []
    for name in names[:6]:
        ys = [_float(_map(r.get("metrics")).get(name)) for r in runs]
        current = _float(perf.get("current")) if perf.get("metric") == name else None
        mstamps = stamps if current is not None else stamps[:-1]
        if current is not None:
            ys.append(current)
        cards.append(
            f'<div class="card"><h3>{_e(name)}</h3>'
            + _line_svg(
                f"{name} over time",
                mstamps,
                ys,
                width=540,
                height=190,
                this_run=current is not None,
            )
            + "</div>"
        )
    if cards:
        body.append(f'<h3 class="gap">Metrics</h3><div class="grid two">{"".join(cards)}</div>')
    return _section("history", "History", "".join(body))


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
) -> str:
    """One drift monitoring run as a self-contained HTML page.

    ``result`` is the drift module's output (schema 1); ``history`` lists earlier runs, oldest
    first; ``performance`` is None when the window has no labels.
    """
    result = dict(_map(result))
    features = _map(result.get("features"))
    ordered = _sorted_features(features)
    verdict, _ = _verdict(result)
    against = f"champion v{version}" if version is not None else "no champion version"
    header = (
        f"<h1>{_e(model)} · drift check</h1>"
        f'<div class="sub">Against {_e(against)} · run <code>{_e(run_id)}</code> · '
        f"{_e(_stamp(at))}</div>"
    )
    sections = [
        _drift_summary(result, features, window, performance),
        _drift_features(ordered),
        _drift_distributions(ordered),
        _drift_performance(performance),
        _drift_history(result, _seq(history), at, performance),
    ]
    nav = [
        ("summary", "Summary"),
        ("features", "Features"),
        ("distributions", "Distributions"),
        ("performance", "Performance"),
        ("history", "History"),
    ]
    return _page(f"{model} — {verdict} — {_stamp(at)}", header, nav, sections)


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


def _version_summary(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> str:
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
        detail = "; ".join(_e(r) for r in failed)
    elif word == "PASSED":
        detail = "Every check passed: eligible to become the champion."
    else:
        detail = "No gate decision was recorded for this version."
    banner = (
        f'<div class="banner {cls}"><span class="verdict">Gate {word}</span>'
        f"<span>{detail}</span></div>"
    )
    data = _map(manifest.get("data"))
    champ_no = manifest.get("champion_version")
    window = f"{_text(data.get('start'))} → {_text(data.get('end'))}" if data else DASH
    kpis = (
        _kpi(f"Candidate {metric or 'metric'}", _num(cand_v, 4), f"floor {_num(gate.get('floor'))}")
        + _kpi(
            "Champion" + (f" v{_e(champ_no)}" if champ_no is not None else ""),
            _num(champ_v, 4),
            "no champion yet: first version" if champ_no is None else "same held-out rows",
        )
        + _kpi(
            "Rows",
            _int(data.get("rows")),
            f"train {_int(data.get('train_rows'))} · holdout {_int(data.get('holdout_rows'))}",
        )
        + _kpi("Data window", window, small=True)
    )
    return _section("summary", "Summary", banner + f'<div class="kpis">{kpis}</div>')


def _version_gate(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> str:
    word, cls = _gate_word(gate)
    reasons = "".join(
        f'<li class="{_reason_class(str(r))}">{_e(r)}</li>' for r in _seq(gate.get("reasons"))
    )
    drop = _float(gate.get("max_relative_drop"))
    rows = [
        ("Metric", _text(gate.get("metric"))),
        (
            "Candidate / champion",
            f"{_num(gate.get('candidate_value'), 4)} / {_num(gate.get('champion_value'), 4)}",
        ),
        ("Floor", _num(gate.get("floor"), 4)),
        ("Largest drop allowed", DASH if drop is None else f"{100 * drop:.1f}% of the champion"),
        (
            "Compared with",
            f"champion v{_e(gate['champion_version'])}"
            if gate.get("champion_version") is not None
            else "no champion",
        ),
    ]
    if gate.get("champion_error"):
        rows.append(("Champion error", _e(gate["champion_error"])))
    verb = {"PASSED": "passed", "REJECTED": "was rejected by"}.get(word, "has no decision from")
    intro = (
        f"<p>Version {_text(manifest.get('version'))} <b>{verb}</b> the promotion gate "
        f"({word}). Every check must pass:</p>"
    )
    body = (
        intro
        + f'<ul class="gate">{reasons or f"<li class=info>{DASH} no reasons recorded</li>"}</ul>'
        + _kv_table(rows)
    )
    return _section("gate", f'Gate: <span class="badge {cls} big">{word}</span>', body)


def _version_metrics(manifest: Mapping[str, Any], gate: Mapping[str, Any]) -> str:
    metrics = _map(manifest.get("metrics"))
    cand, champ = _map(metrics.get("candidate")), _map(metrics.get("champion"))
    names = [str(n) for n in cand if _float(cand[n]) is not None or n in champ]
    names += [str(n) for n in champ if n not in names]
    gate_metric = gate.get("metric")
    names.sort(key=lambda n: (n != gate_metric, n))
    if not names:
        return _section("metrics", "Metrics", f'<p class="muted">{DASH} no metrics recorded</p>')
    champ_no = manifest.get("champion_version")
    champ_name = f"champion v{champ_no}" if champ_no is not None else "champion"
    rows = []
    for n in names:
        entries = [("candidate", _float(cand.get(n)), "var(--cur)")]
        if champ:
            entries.append((champ_name, _float(champ.get(n)), "var(--ref)"))
        rows.append((f"{n} (gate)" if n == gate_metric else n, entries))
    legend = _legend(("candidate", "var(--cur)"), (champ_name, "var(--ref)")) if champ else ""
    note = '<p class="muted">Both models scored on the same held-out rows.</p>'
    return _section("metrics", "Metrics", legend + _metric_bars(rows) + note)


def _profile_chart(name: str, f: Mapping[str, Any]) -> str:
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


def _version_features(profile: Mapping[str, Any] | None) -> str:
    heading = "Reference distributions"
    if profile is None:
        body = '<p class="muted">No profile given: reference distributions are unavailable.</p>'
        return _section("features", heading, body)
    feats = _map(profile.get("features"))
    if not feats:
        return _section("features", heading, f'<p class="muted">{DASH} no features</p>')
    cards = [
        f'<div class="card"><h3><span>{_e(name)}</span></h3>'
        f'{_profile_chart(str(name), _map(raw))}<div class="facts">{_profile_facts(_map(raw))}'
        "</div></div>"
        for name, raw in feats.items()
    ]
    note = (
        f'<p class="muted">This version\'s training data ({_int(profile.get("rows"))} rows): '
        "what drift monitoring compares new data with.</p>"
    )
    return _section("features", heading, note + f'<div class="grid">{"".join(cards)}</div>')


def _version_scores(manifest: Mapping[str, Any], profile: Mapping[str, Any] | None) -> str:
    task = manifest.get("task")
    dist = _map(_map(profile).get("score_distribution"))
    if task not in (None, "classification") and not dist:
        body = f'<p class="muted">Not a classifier ({_e(task)}): no score distribution.</p>'
        return _section("scores", "Score distribution", body)
    if not dist:
        body = f'<p class="muted">{DASH} no score distribution recorded</p>'
        return _section("scores", "Score distribution", body)
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
    note = (
        '<p class="muted">Share of held-out rows per predicted probability of the positive '
        "class. A change of shape between versions is a change in what the model says.</p>"
    )
    return _section("scores", "Score distribution", chart + note)


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
        return " · ".join(f"{_e(k)}: {_plain(v)}" for k, v in value.items()) or DASH
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or DASH
    if _float(value) is not None and not isinstance(value, bool):
        return _int(value) if float(value).is_integer() else _num(value)
    return _text(value)


def _version_data(manifest: Mapping[str, Any]) -> str:
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
        (_DATA_LABELS.get(str(k), str(k)), _plain(v))
        for k, v in data.items()
        if k not in ("files", "partitions", "missing", *summary)
    ]
    parts, files = _seq(data.get("partitions")), _seq(data.get("files"))
    folded = ""
    if "file_count" in data:  # a summary: the same size however many files were read
        first, last = data.get("first_partition"), data.get("last_partition")
        span = ""
        if first:
            span = f" ({_e(first)}" + (f" … {_e(last)}" if last and last != first else "") + ")"
        size = _float(data.get("bytes"))
        rows += [
            ("Partitions", f"{_int(data.get('partition_count'))}{span}"),
            ("Files", f"{_int(data.get('file_count'))}" + (f" · {_bytes(size)}" if size else "")),
            ("Files sha256", f"<code>{_text(data.get('files_sha256'))}</code>"),
        ]
    else:  # older manifests list every partition and file: show their extent, a few names
        span = f" ({_e(parts[0])} … {_e(parts[-1])})" if parts else ""
        rows += [("Partitions", f"{len(parts)}{span}"), ("Files", _int(len(files)))]
        if files:
            shown = [_clip(str(f), LABEL_CHARS) for f in files[:MAX_FILES_LISTED]]
            if len(files) > MAX_FILES_LISTED:
                shown.append(f"… and {len(files) - MAX_FILES_LISTED:,} more")
            folded = (
                f"<details><summary>Files read</summary><pre>{_e(chr(10).join(shown))}</pre>"
                "</details>"
            )
    missing = _map(data.get("missing"))
    worst = sorted(((str(k), _float(v) or 0.0) for k, v in missing.items()), key=lambda kv: -kv[1])
    if worst:
        rows.append(("Most missing", ", ".join(f"{_e(k)} {_pct(v, 1)}" for k, v in worst[:5])))
    evaluation = _map(manifest.get("evaluation"))
    details = _map(evaluation.get("candidate"))
    for key in ("n_rows", "class_counts", "positive_label", "n_clusters", "cluster_sizes"):
        if key in details:
            rows.append((f"Held-out {key.replace('_', ' ')}", _plain(details[key])))
    problems = _seq(evaluation.get("candidate_problems"))
    if problems:
        rows.append(("Candidate problems", "; ".join(_e(p) for p in problems)))
    blocks = [
        ("Estimator", manifest.get("estimator")),
        ("Parameters", manifest.get("params")),
        ("Library versions", manifest.get("libraries")),
    ]
    folded = (
        "".join(
            f"<details><summary>{name}</summary><pre>"
            f"{_e(json.dumps(value, indent=2, sort_keys=True, default=str))}</pre></details>"
            for name, value in blocks
            if value is not None
        )
        + folded
    )
    return _section("data", "Data", _kv_table(rows) + folded)


def _bytes(size: float) -> str:
    if size < 1024:
        return f"{size:,.0f} bytes"
    for power, unit in ((1, "KB"), (2, "MB"), (3, "GB")):
        if size < 1024 ** (power + 1) or unit == "GB":
            return f"{size / 1024**power:,.1f} {unit}"
    return DASH  # pragma: no cover - the loop always returns


def render_version_report(manifest: dict[str, Any], profile: dict[str, Any] | None = None) -> str:
    """One registered version: gate decision, metrics, reference data, scores, provenance."""
    m = _map(manifest)
    gate = _map(m.get("gate"))
    model, version = m.get("model", DASH), m.get("version", DASH)
    word, _ = _gate_word(gate)
    header = (
        f"<h1>{_e(model)} · version {_e(version)}</h1>"
        f'<div class="sub">{_text(m.get("task"))} · created '
        f"{_e(_stamp(m.get('created_at', DASH)))} · code "
        f"<code>{_text(m.get('code_version'))}</code> · run <code>{_text(m.get('run_id'))}</code>"
        "</div>"
    )
    sections = [
        _version_summary(m, gate),
        _version_gate(m, gate),
        _version_metrics(m, gate),
        _version_features(_map(profile) if profile is not None else None),
        _version_scores(m, profile),
        _version_data(m),
    ]
    nav = [
        ("summary", "Summary"),
        ("gate", "Gate"),
        ("metrics", "Metrics"),
        ("features", "Features"),
        ("scores", "Scores"),
        ("data", "Data"),
    ]
    return _page(f"{model} v{version} — gate {word}", header, nav, sections)
