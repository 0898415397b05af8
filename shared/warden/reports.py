"""A self-contained HTML evaluation report per version (no scripts, no external assets)."""

from __future__ import annotations

import html
import json
from typing import Any


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _bar(value: float, lo: float, hi: float) -> str:
    width = 0.0 if hi <= lo else max(0.0, min(1.0, (value - lo) / (hi - lo))) * 100
    return f'<div class="bar"><div style="width:{width:.1f}%"></div></div><span>{value:.4f}</span>'


def render_report(manifest: dict[str, Any]) -> str:
    model, version = manifest["model"], manifest["version"]
    gate = manifest.get("gate", {})
    cand = manifest.get("metrics", {}).get("candidate", {})
    champ = manifest.get("metrics", {}).get("champion") or {}
    metric_rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{_bar(float(value), 0.0, 1.0)}</td>"
        f"<td>{'' if name not in champ else f'{float(champ[name]):.4f}'}</td></tr>"
        for name, value in cand.items()
        if isinstance(value, int | float)
    )
    verdict = "PASSED" if gate.get("passed") else "REJECTED"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in gate.get("reasons", []))
    window = manifest.get("data", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(model)} v{version} — evaluation</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:60em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{padding:.3em .8em;text-align:left;
border-bottom:1px solid #ddd}} .bar{{display:inline-block;width:12em;height:.8em;
background:#eee;margin-right:.5em}} .bar div{{height:100%;background:#3a7}}
.PASSED{{color:#070}} .REJECTED{{color:#a00}}
</style></head><body>
<h1>{html.escape(model)} — version {version}</h1>
<p>Task: {html.escape(str(manifest.get("task")))}; created {
        html.escape(str(manifest.get("created_at")))
    }; code {html.escape(str(manifest.get("code_version")))}</p>
<h2>Gate: <span class="{verdict}">{verdict}</span></h2><ul>{reasons}</ul>
<h2>Metrics on the held-out rows</h2>
<table><tr><th>metric</th><th>candidate</th><th>champion (v{
        champ and manifest.get("champion_version")
    })</th></tr>{metric_rows}</table>
<h2>Data</h2>{_table([(k, v) for k, v in window.items() if k != "files"])}
<h2>Estimator</h2><pre>{html.escape(json.dumps(manifest.get("estimator"), indent=2))}</pre>
</body></html>
"""
