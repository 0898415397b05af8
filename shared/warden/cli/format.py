"""Readable text for ``warden versions`` and ``warden show``, from version manifests.

Pure: plain data in, strings (and JSON-ready rows) out; the commands in :mod:`warden.cli.main`
read the registry and choose between this text and ``--json``. Manifests are read defensively: a
key an older manifest lacks prints as "—" rather than failing the command.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["DASH", "show_text", "version_rows", "versions_text"]

DASH = "—"
#: Longest gate reason printed on a ``versions`` line (``show`` prints them whole).
REASON_CHARS = 90


# --------------------------------------------------------------------------- small helpers


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else []


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _num(value: Any, digits: int = 4) -> str:
    v = _float(value)
    return DASH if v is None else f"{v:.{digits}f}"


def _signed(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:+.{digits}f}"


def _int(value: Any) -> str:
    v = _float(value)
    return DASH if v is None else f"{round(v):,}"


def _text(value: Any) -> str:
    return DASH if value is None or value == "" else str(value)


def _when(value: Any) -> str:
    """'2026-11-20 05:00 UTC' from an ISO timestamp; the value as it is if it does not parse."""
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return _text(value)
    zone = f" {t.tzname()}" if t.tzinfo is not None else ""
    return t.strftime("%Y-%m-%d %H:%M") + zone


def _size(n: Any) -> str:
    v = _float(n)
    if v is None:
        return DASH
    if v < 1024:
        return f"{v:,.0f} B"
    for power, unit in ((1, "KB"), (2, "MB"), (3, "GB")):
        if v < 1024 ** (power + 1) or unit == "GB":
            break
    return f"{v / 1024**power:,.1f} {unit}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "", align: str = ""
) -> list[str]:
    """The header line, then the rows: columns padded to their widest cell and aligned as
    ``align`` says per column ("l"/"r"; by default right when every cell starts like a number or
    is a dash); the last column is left free so a long reason does not widen the others."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers[:-1])]
    right = [
        align[i] == "r"
        if i < len(align)
        else bool(rows) and all(r[i][:1] in "+-—0123456789" and r[i] for r in rows)
        for i in range(len(widths))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=False)
        ]
        return (indent + "  ".join([*parts, cells[-1]])).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _reason(reason: str) -> tuple[str, str]:
    """('ok' | 'FAIL' | '--', the reason without its ': ok' / ': rejected' ending)."""
    text = str(reason).strip()
    low = text.lower()
    if low.endswith(": ok"):
        return "ok", text[:-4]
    if low.endswith(": rejected"):
        return "FAIL", text[: -len(": rejected")]
    return "--", text


# --------------------------------------------------------------------------- versions


def version_rows(
    manifests: Sequence[Mapping[str, Any]], champion: int | None
) -> list[dict[str, Any]]:
    """One JSON-ready row per version: its gate metric's value, and the value of the champion it
    was compared with at gate time (``metrics.champion``) with the relative change, so a failed
    gate can be read off the row. ``champion`` marks the current champion."""
    rows = []
    for m in manifests:
        gate = _map(m.get("gate"))
        metric = gate.get("metric")
        metrics = _map(m.get("metrics"))
        value = _float(_map(metrics.get("candidate")).get(str(metric)))
        if value is None:
            value = _float(gate.get("candidate_value"))
        against = _float(_map(metrics.get("champion")).get(str(metric)))
        if against is None:
            against = _float(gate.get("champion_value"))
        change = (value - against) / abs(against) if value is not None and against else None
        failed = [_reason(r)[1] for r in _seq(gate.get("reasons")) if _reason(r)[0] == "FAIL"]
        rows.append(
            {
                "version": m.get("version"),
                "created_at": m.get("created_at"),
                "metric": metric,
                "value": value,
                "champion_value": against,
                "compared_with": m.get("champion_version"),
                "relative_change": change,
                "gate_passed": gate.get("passed"),
                "gate_reason": failed[0] if failed else None,
                "champion": champion is not None and m.get("version") == champion,
            }
        )
    return rows


def versions_text(model: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The versions as a table: each candidate's score beside the champion's it was gated
    against, the change, the gate outcome (with the failing check), ``*`` on the champion."""
    if not rows:
        return f"{model}: no versions yet"
    metrics = {str(r.get("metric")) for r in rows}
    one = len(metrics) == 1
    metric = next(iter(metrics)) if one else "score"
    body = []
    for r in rows:
        value = _num(r.get("value"))
        if not one:
            value = f"{_text(r.get('metric'))} {value}"
        against = r.get("compared_with")
        if against is None:
            gated = "— (first version)"
        else:
            gated = f"{_num(r.get('champion_value'))} (v{against})"
        change = _float(r.get("relative_change"))
        passed = r.get("gate_passed")
        outcome = "pass" if passed else ("FAIL" if passed is False else DASH)
        if passed is False and r.get("gate_reason"):
            outcome += ": " + _clip(str(r["gate_reason"]), REASON_CHARS)
        body.append(
            [
                "*" if r.get("champion") else " ",
                f"v{r.get('version')}",
                _when(r.get("created_at")),
                value,
                gated,
                DASH if change is None else f"{100 * change:+.2f}%",
                outcome,
            ]
        )
    head = ["", "VERSION", "CREATED", metric.upper(), "CHAMPION AT GATE", "CHANGE", "GATE"]
    champion = next((r for r in rows if r.get("champion")), None)
    title = f"{model} · gate metric {metric if one else ', '.join(sorted(metrics))}"
    title += f" · * current champion (v{champion['version']})" if champion else " · no champion"
    return "\n".join([title, *_table(head, body, align="lllrrr")])


# --------------------------------------------------------------------------- show


def _gate_lines(m: Mapping[str, Any]) -> list[str]:
    gate = _map(m.get("gate"))
    passed = gate.get("passed")
    word = "PASSED" if passed else ("REJECTED" if passed is False else "NOT RECORDED")
    champ = gate.get("champion_version", m.get("champion_version"))
    against = f"champion v{champ}" if champ is not None else "no champion (first version)"
    lines = [f"Gate: {word} · {_text(gate.get('metric'))} · compared with {against}"]
    for reason in _seq(gate.get("reasons")):
        mark, text = _reason(reason)
        lines.append(f"  {mark:<4}  {text}")
    paired = _map(gate.get("paired"))
    if paired:
        diff, bound = _float(paired.get("difference")), _float(paired.get("error_bound"))
        conf = _float(paired.get("confidence"))
        how = "exact" if paired.get("exact") else f"± {_num(bound)} at {100 * (conf or 0):g}%"
        verdict = "" if paired.get("conclusive", True) else "; inconclusive at this sample size"
        lines.append(
            f"  paired {_text(paired.get('metric'))} difference {_signed(diff)} ({how}) over "
            f"{_int(paired.get('n_evaluated'))} of {_int(paired.get('n_rows'))} rows; allowed "
            f"{_signed(_float(paired.get('allowed_difference')))}{verdict}"
        )
    if gate.get("champion_error"):
        lines.append(f"  champion error: {gate['champion_error']}")
    return lines


def _metric_lines(m: Mapping[str, Any]) -> list[str]:
    metrics = _map(m.get("metrics"))
    cand, champ = _map(metrics.get("candidate")), _map(metrics.get("champion"))
    gate_metric = _map(m.get("gate")).get("metric")
    names = sorted({*map(str, cand), *map(str, champ)}, key=lambda n: (n != gate_metric, n))
    if not names:
        return ["Metrics: none recorded"]
    champ_no = m.get("champion_version")
    label = f"champion v{champ_no}" if champ_no is not None and champ else "champion"
    rows = []
    for n in names:
        c, h = _float(cand.get(n)), _float(champ.get(n))
        change = c - h if c is not None and h is not None else None
        name = f"{n} (gate)" if n == gate_metric else n
        rows.append([name, _num(c), _num(h) if champ else DASH, _signed(change)])
    head = ["", "candidate", label, "change"]
    return ["Metrics (candidate and champion on the same held-out rows)", *_table(head, rows, "  ")]


def _data_lines(m: Mapping[str, Any]) -> list[str]:
    data = _map(m.get("data"))
    if not data:
        return ["Data: not recorded"]
    rows = [
        ["window", f"{_text(data.get('start'))} → {_text(data.get('end'))}"],
        [
            "rows",
            f"{_int(data.get('rows'))} read · {_int(data.get('train_rows'))} training · "
            f"{_int(data.get('holdout_rows'))} held out",
        ],
    ]
    if "partition_count" in data:
        first, last = data.get("first_partition"), data.get("last_partition")
        span = f" ({first} … {last})" if first and last and first != last else ""
        rows.append(["partitions", f"{_int(data.get('partition_count'))}{span}"])
        rows.append(["data files", f"{_int(data.get('file_count'))} · {_size(data.get('bytes'))}"])
    elif _seq(data.get("files")):
        rows.append(["data files", _int(len(_seq(data.get("files"))))])
    details = _map(_map(m.get("evaluation")).get("candidate"))
    for key, label in (("class_counts", "held-out classes"), ("cluster_sizes", "cluster sizes")):
        counts = _map(details.get(key))
        if counts:
            rows.append([label, " · ".join(f"{k}: {_int(v)}" for k, v in counts.items())])
    width = max(len(r[0]) for r in rows)
    return ["Data"] + [f"  {k:<{width}}  {v}" for k, v in rows]


def _file_lines(m: Mapping[str, Any]) -> list[str]:
    files = _map(m.get("files"))
    if not files:
        return ["Files: none listed"]
    rows = []
    for name, record in sorted(files.items()):
        r = _map(record)
        digest = str(r.get("sha256") or "")
        rows.append([str(name), _size(r.get("size")), f"sha256 {digest[:12]}…" if digest else DASH])
    total = sum(_float(_map(r).get("size")) or 0.0 for r in files.values())
    return [f"Files ({len(files)}, {_size(total)})", *_table(["", "", ""], rows, indent="  ")[1:]]


def show_text(manifest: Mapping[str, Any], *, champion: int | None = None) -> str:
    """A version at a glance: gate verdict and reasons, candidate beside champion metric by
    metric, the data window and row counts, the files with their sizes."""
    m = manifest
    version = m.get("version")
    status = " · current champion" if champion is not None and version == champion else ""
    head = [
        f"{_text(m.get('model'))} v{_text(version)}{status}",
        f"{_text(m.get('task'))} · created {_when(m.get('created_at'))} · run "
        f"{_text(m.get('run_id'))} · code {_text(m.get('code_version'))}",
    ]
    problems = [str(p) for p in _seq(_map(m.get("evaluation")).get("candidate_problems"))]
    sections = [head, _gate_lines(m), _metric_lines(m), _data_lines(m), _file_lines(m)]
    if problems:
        sections.insert(2, ["Candidate problems", *(f"  {p}" for p in problems)])
    return "\n\n".join("\n".join(s) for s in sections)
