"""warden.report.html: structure, escaping and isolation of the HTML reports, then a real render.

The pure tests parse the output with html.parser. The last test renders a realistic drift report
in Debian's headless Chromium (installed by .ci/run), takes a screenshot, dumps the DOM Chromium
built, and reads Chromium's net log to prove the page made no request beyond its own file.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pytest
from markupsafe import Markup, escape

from warden.errors import PermanentError
from warden.report import html as report_html
from warden.report.html import (
    CSP,
    TEMPLATES,
    feature_score,
    render_drift_report,
    render_version_report,
)
from warden.report.version import render_report

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
#: Names that break out of an element, or of a double-quoted attribute, when not escaped.
HOSTILE = [EVIL, '"><img src=x onerror=alert(1)>']
DRIFT_SECTIONS = {"summary", "features", "trends", "distributions", "performance", "history"}
CLASSIFIER_SECTIONS = {"curves", "confusion", "calibration", "importance"}
VERSION_SECTIONS = {
    "summary",
    "gate",
    "metrics",
    "features",
    "scores",
    "data",
} | CLASSIFIER_SECTIONS


# --------------------------------------------------------------------------- parsing


class Page(HTMLParser):
    """Collects what the assertions need: ids, attributes, tags, text per section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.metas: list[dict[str, str]] = []
        self.rows: list[dict[str, str]] = []  # <tr> attributes, in order
        self.text: dict[str, list[str]] = {}
        self._section: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in a.items()]
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "meta":
            self.metas.append(a)
        if tag == "tr":
            self.rows.append(a)
        if tag == "section":
            self._section, self._depth = a.get("id"), 0
        if self._section and tag not in {"br", "meta", "line", "rect", "circle", "path"}:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        self.text.setdefault(self._section or "", []).append(data)

    def section_text(self, sid: str) -> str:
        return " ".join(" ".join(self.text.get(sid, [])).split())


class Charts(HTMLParser):
    """The text a reader can see or hover in the SVG charts: aria-labels, <title>s, <text>s."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.labels: list[str] = []
        self.texts: list[str] = []
        self._svg = 0
        self._inside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self._svg += 1
            self.labels.append(dict(attrs).get("aria-label") or "")
        if self._svg and tag in {"title", "text"}:
            self._inside.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._svg and tag in {"title", "text"} and self._inside:
            self.texts.append(self._inside.pop())
        if tag == "svg":
            self._svg -= 1

    def handle_data(self, data: str) -> None:
        if self._inside:
            self._inside[-1] += data


def chart_text(doc: str) -> str:
    charts = Charts()
    charts.feed(doc)
    charts.close()
    return "\n".join(charts.labels + charts.texts)


def svgs(doc: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", doc, flags=re.DOTALL)


def assert_only_escaped(doc: str, hostile: str) -> None:
    """The hostile string is in the page only in its escaped form: never as markup."""
    assert hostile not in doc
    assert "<img" not in doc
    assert "<script" not in doc.lower()
    assert str(escape(hostile)) in doc
    for svg in svgs(doc):
        assert hostile not in svg
    assert_isolated(doc)


def parse(doc: str) -> Page:
    page = Page()
    page.feed(doc)
    page.close()
    return page


def assert_isolated(doc: str) -> None:
    """No script, no URL that could load anything, and the CSP that forbids it anyway."""
    page = parse(doc)
    assert "<script" not in doc.lower()
    assert "script" not in page.tags
    for tag, name, value in page.attrs:
        if name in {"src", "href", "srcset", "action", "xlink:href", "poster", "data"}:
            assert value.startswith("#"), (tag, name, value)
        assert "http:" not in value, (tag, name, value)
        assert "https:" not in value, (tag, name, value)
        assert not value.strip().startswith("//"), (tag, name, value)
        assert not name.startswith("on"), (tag, name)
    assert "url(" not in doc
    assert "@import" not in doc
    csp = [m for m in page.metas if m.get("http-equiv", "").lower() == "content-security-policy"]
    assert [m["content"] for m in csp] == [CSP]
    assert "default-src 'none'" in CSP
    assert any(m.get("charset", "").lower() == "utf-8" for m in page.metas)


# --------------------------------------------------------------------------- inputs


def feature_result(
    kind: str, ref: list[float], cur: list[float], labels: list[str], *, drifted: bool
) -> dict[str, Any]:
    r, c = np.asarray(ref, dtype=float), np.asarray(cur, dtype=float)
    eps = 1e-4
    psi = float(np.sum((c - r) * np.log((c + eps) / (r + eps))))
    m = (r + c) / 2
    js = float(
        0.5 * np.sum(r * np.log((r + eps) / (m + eps)))
        + 0.5 * np.sum(c * np.log((c + eps) / (m + eps)))
    )
    linf = float(np.max(np.abs(c - r)))
    ks = float(np.max(np.abs(np.cumsum(c) - np.cumsum(r))))
    stats: dict[str, float | None] = {"psi": psi, "js": js, "wasserstein": None, "ks": None}
    thresholds = {"psi": 0.2, "js": 0.1}
    if kind == "continuous":
        stats.update(wasserstein=ks * 0.8, ks=ks, linf=None, cramers_v=None)
        thresholds.update(wasserstein=0.1, ks=0.1)
    else:
        stats.update(linf=linf, cramers_v=min(1.0, linf * 1.5))
        thresholds.update(linf=0.1, cramers_v=0.15)
    reasons = [
        f"{name} {value:.3f} >= {thresholds[name]}"
        for name, value in stats.items()
        if value is not None and name in thresholds and value >= thresholds[name]
    ]
    return {
        "kind": kind,
        "drifted": drifted,
        "reasons": reasons if drifted else [],
        "n_ref": 20_000,
        "n_cur": 4_800,
        "missing_ref": 0.01,
        "missing_cur": 0.08 if drifted else 0.012,
        "stats": stats,
        "thresholds": thresholds,
        "histogram": {"labels": labels, "ref": r.tolist(), "cur": c.tolist()},
    }


def drift_result(
    n_features: int = 25, drifted: tuple[int, ...] = (3, 11, 17, 22)
) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    features: dict[str, Any] = {}
    for i in range(n_features):
        shifted = i in drifted
        if i % 5 == 4:
            labels = ["web", "ios", "android", "partner", "store", "other"]
            ref = rng.dirichlet(np.full(len(labels), 5.0))
            cur = (
                rng.dirichlet(np.full(len(labels), 2.0))
                if shifted
                else ref + rng.normal(0, 0.004, ref.size)
            )
            kind, name = "categorical", f"channel_{i}"
        elif i % 5 == 3:
            labels = [str(v) for v in range(6)]
            ref = np.array([30, 25, 18, 12, 9, 6], dtype=float)
            cur = ref[::-1].copy() if shifted else ref + rng.normal(0, 0.3, ref.size)
            kind, name = "discrete", f"visits_{i}"
        else:
            edges = np.linspace(-3, 3, 11)
            centre = edges[:-1] + 0.3
            ref = np.exp(-(centre**2) / 2)
            # A few stable features move a little, so the effect bars differ in length.
            nudge = 0.2 if i in (5, 8) else 0.0
            cur = (
                np.exp(-((centre - 1.1) ** 2) / 2)
                if shifted
                else np.exp(-((centre - nudge) ** 2) / 2) * (1 + rng.normal(0, 0.02, ref.size))
            )
            labels = [f"[{a:.1f}, {b:.1f})" for a, b in itertools.pairwise(edges)]
            kind, name = "continuous", f"amount_{i}"
        ref, cur = np.clip(ref, 1e-6, None), np.clip(cur, 1e-6, None)
        features[name] = feature_result(
            kind, list(ref / ref.sum()), list(cur / cur.sum()), labels, drifted=shifted
        )
    names = [n for n, f in features.items() if f["drifted"]]
    return {
        "schema": 1,
        "rows": 4_800,
        "reference_rows": 20_000,
        "insufficient": False,
        "dataset_drift": len(names) / n_features >= 0.15,
        "drift_share": len(names) / n_features,
        "drifted": names,
        "dataset_share_threshold": 0.15,
        "features": features,
    }


def history(points: int = 10) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 10, 6, tzinfo=UTC)
    out = []
    for i in range(points):
        share = [0.04, 0.04, 0.08, 0.04, 0.08, 0.12, 0.08, 0.12, 0.2, 0.16][i % 10]
        out.append(
            {
                "at": (start + timedelta(days=i)).isoformat(),
                "drift_share": share,
                "dataset_drift": share >= 0.15,
                "metrics": {"roc_auc": 0.91 - 0.004 * i, "positive_rate": 0.12 + 0.003 * i},
                "version": 3 if i < 6 else 4,
            }
        )
    return out


PERFORMANCE = {
    "metric": "roc_auc",
    "baseline": 0.912,
    "current": 0.861,
    "drop": 0.051,
    "degraded": True,
}
WINDOW = {"start": "2026-11-13", "end": "2026-11-20", "rows": 4_800}


def render_realistic(**overrides: Any) -> str:
    kwargs: dict[str, Any] = {
        "model": "churn",
        "version": 4,
        "run_id": "5f1c0a9e2b7d4e3f",
        "at": "2026-11-20T06:00:00+00:00",
        "window": WINDOW,
        "performance": PERFORMANCE,
        "history": history(),
    }
    kwargs.update(overrides)
    result = kwargs.pop("result", None) or drift_result()
    return render_drift_report(result, **kwargs)


def manifest(*, passed: bool = True, task: str = "classification") -> dict[str, Any]:
    reasons = [
        "candidate passed its sanity checks: ok",
        f"roc_auc {0.921 if passed else 0.801:.3f} >= floor 0.800: ok",
        "roc_auc 0.921 >= champion v3's 0.913: ok"
        if passed
        else "roc_auc 0.801 is 12.3% below champion v3's 0.913 (allowed 5.0%): rejected",
    ]
    return {
        "model": "churn",
        "version": 4,
        "task": task,
        "created_at": "2026-11-20T05:00:00+00:00",
        "run_id": "abc123",
        "code_version": "1a2b3c4",
        "libraries": {"scikit-learn": "1.5.2", "numpy": "2.1.0"},
        "features": ["tenure", "plan", "visits"],
        "target": "churned",
        "estimator": {"steps": [{"kind": "StandardScaler"}, {"kind": "LogisticRegression"}]},
        "data": {
            "start": "2026-10-21",
            "end": "2026-11-19",
            "partition_count": 30,
            "first_partition": "dt=2026-10-21",
            "last_partition": "dt=2026-11-19",
            "file_count": 1_200,
            "bytes": 3_565_158,
            "files_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "rows": 30_000,
            "missing": {"tenure": 0.01, "plan": 0.0},
            "train_rows": 24_000,
            "holdout_rows": 6_000,
        },
        "metrics": {
            "candidate": {"roc_auc": 0.921 if passed else 0.801, "f1": 0.61, "accuracy": 0.88},
            "champion": {"roc_auc": 0.913, "f1": 0.6, "accuracy": 0.87},
        },
        "evaluation": {
            "candidate": {"n_rows": 6_000, "class_counts": {"0": 5_300, "1": 700}},
            "champion": None,
            "candidate_problems": [],
        },
        "champion_version": 3,
        "gate": {
            "passed": passed,
            "metric": "roc_auc",
            "candidate_value": 0.921 if passed else 0.801,
            "champion_value": 0.913,
            "floor": 0.8,
            "max_relative_drop": 0.05,
            "reasons": reasons,
            "champion_version": 3,
            "champion_error": None,
        },
    }


def profile() -> dict[str, Any]:
    return {
        "schema": 2,
        "rows": 30_000,
        "features": {
            "tenure": {
                "kind": "continuous",
                "count": 30_000,
                "missing_rate": 0.01,
                "mean": 14.2,
                "std": 9.1,
                "min": 0.0,
                "max": 72.0,
                "edges": [0, 1, 2, 4, 6, 9, 13, 18, 26, 40, 72],
                "counts": [3000] * 10,
            },
            "visits": {
                "kind": "discrete",
                "count": 30_000,
                "missing_rate": 0.0,
                "values": [0, 1, 2, 3],
                "counts": [9000, 12000, 6000, 3000],
            },
            "plan": {
                "kind": "categorical",
                "count": 30_000,
                "missing_rate": 0.0,
                "categories": ["basic", "pro", EVIL],
                "counts": [20000, 8000, 1500],
                "other": 500,
            },
        },
        "baseline_metrics": {"roc_auc": 0.921},
        "score_distribution": {
            "bin_edges": [i / 10 for i in range(11)],
            "counts": [2100, 1300, 800, 500, 400, 300, 250, 200, 100, 50],
        },
    }


def scored_history(result: dict[str, Any], points: int = 10) -> list[dict[str, Any]]:
    """Earlier runs as the monitor passes them: in the first half every feature's score is half
    its (capped) current one, below the threshold; then it climbs to this run's; the features
    at or over 1× count as drifted in that run."""
    runs = history(points)
    half = points // 2
    for i, run in enumerate(runs):
        frac = max(0, i - half + 1) / (points - half)
        run["feature_scores"] = {
            name: round(score * frac + 0.5 * min(1.0, score) * (1 - frac), 4)
            for name, score in ((n, feature_score(f)) for n, f in result["features"].items())
        }
        run["drifted"] = [n for n, v in run["feature_scores"].items() if v >= 1.0]
    return runs


@functools.cache
def diagnostics() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Real evaluation details: a logistic regression (candidate) and a random forest
    (champion) scored by warden.ml.evaluation on the same held-out breast-cancer rows."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from warden.config import EvaluationSpec
    from warden.ml.evaluation import evaluate

    data = load_breast_cancer(as_frame=True)
    X_tr, X_ho, y_tr, y_ho = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    spec = EvaluationSpec()
    cand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_tr, y_tr)
    champ = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_tr, y_tr)
    c = evaluate(cand, "classification", X_ho, y_ho, spec=spec, positive_label=1)
    h = evaluate(champ, "classification", X_ho, y_ho, spec=spec, positive_label=1)
    return c.details, h.details, c.metrics, h.metrics


def classifier_manifest() -> dict[str, Any]:
    """manifest() with the classifier details a retrain stores."""
    cand, champ, cand_m, champ_m = copy.deepcopy(diagnostics())
    m = manifest()
    m["metrics"] = {"candidate": cand_m, "champion": champ_m}
    m["evaluation"] = {"candidate": cand, "champion": champ, "candidate_problems": []}
    return m


# --------------------------------------------------------------------------- drift report


def test_drift_report_has_every_section_and_the_verdict() -> None:
    doc = render_realistic()
    page = parse(doc)
    assert set(page.ids) >= DRIFT_SECTIONS
    summary = page.section_text("summary")
    assert "Dataset drift" in summary
    assert "16%" in summary
    assert "threshold 15%" in summary
    assert "4,800" in summary
    assert "20,000" in summary
    assert "Degraded" in page.section_text("performance")
    assert "first run" not in page.section_text("history")
    assert doc.count("<svg") >= 25 + 3  # one per feature, the drift share and metric histories
    assert len(doc.encode()) < 300_000
    assert_isolated(doc)


def test_drifted_features_come_first_and_are_highlighted() -> None:
    result = drift_result()
    page = parse(render_realistic(result=result))
    rows = [r for r in page.rows if "data-feature" in r]
    assert len(rows) == 25
    drifted = set(result["drifted"])
    flags = [r["data-feature"] in drifted for r in rows]
    assert flags == sorted(flags, reverse=True)  # all drifted rows before the stable ones
    assert all(r["class"] == "drift" for r in rows[: len(drifted)])
    assert all(r["class"] == "stable" for r in rows[len(drifted) :])


def test_stable_features_are_sorted_by_largest_effect() -> None:
    result = drift_result(n_features=3, drifted=())
    small, large = result["features"]["amount_0"], result["features"]["amount_1"]
    small["stats"]["psi"], large["stats"]["psi"] = 0.01, 0.19
    small["stats"]["js"] = large["stats"]["js"] = 0.0
    small["stats"]["ks"] = large["stats"]["ks"] = 0.0
    small["stats"]["wasserstein"] = large["stats"]["wasserstein"] = 0.0
    page = parse(render_realistic(result=result))
    order = [r["data-feature"] for r in page.rows if "data-feature" in r]
    assert order.index("amount_1") < order.index("amount_0")


def test_hostile_feature_names_and_reasons_are_escaped() -> None:
    result = drift_result(n_features=5, drifted=(0,))
    first = next(iter(result["features"]))
    feature = result["features"].pop(first)
    feature["reasons"] = ["psi > 0.2 <img src=x onerror=alert(2)>"]
    feature["histogram"]["labels"][0] = "<b>bold</b>"
    result["features"][EVIL] = feature
    result["drifted"] = [EVIL]
    doc = render_realistic(result=result, model="<i>m</i>", run_id='"><script>x</script>')
    assert EVIL not in doc
    assert "<img" not in doc
    assert "<b>bold" not in doc
    assert "<i>m</i>" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    page = parse(doc)
    assert EVIL in page.section_text("features")  # shown as text, not run
    assert "<img src=x onerror=alert(2)>" in page.section_text("features")
    assert_isolated(doc)


def test_first_run_has_no_history_chart() -> None:
    doc = render_realistic(history=[])
    page = parse(doc)
    assert "first run" in page.section_text("history")
    assert_isolated(doc)


def test_insufficient_data_and_unlabeled_window() -> None:
    result = {
        "schema": 1,
        "rows": 12,
        "reference_rows": 20_000,
        "insufficient": True,
        "dataset_drift": False,
        "drift_share": 0.0,
        "drifted": [],
        "dataset_share_threshold": 0.5,
        "features": {},
    }
    doc = render_drift_report(
        result, model="churn", version=None, run_id="r1", at="not a time", performance=None
    )
    page = parse(doc)
    assert set(page.ids) >= DRIFT_SECTIONS
    assert "Insufficient data" in page.section_text("summary")
    assert "no labels in this window" in page.section_text("performance").lower()
    assert "first run" in page.section_text("history")
    assert_isolated(doc)


def test_no_drift_and_sparse_inputs_do_not_crash() -> None:
    result: dict[str, Any] = {
        "dataset_drift": False,
        "features": {
            "x": {"kind": "continuous", "stats": {"psi": None, "ks": float("nan")}},
            "y": {},
            "z": {"histogram": {"labels": ["a", "b"], "ref": [0.5], "cur": [None, 0.5]}},
        },
    }
    sparse_history: list[dict[str, Any]] = [{"at": "yesterday"}, {"drift_share": 0.1}]
    doc = render_drift_report(
        result, model="m", version=1, run_id="r", at="today", history=sparse_history
    )
    page = parse(doc)
    assert set(page.ids) >= DRIFT_SECTIONS
    assert "No dataset drift" in page.section_text("summary")
    assert "—" in page.section_text("features")
    assert "nan" not in page.section_text("features").lower()
    assert_isolated(doc)


def banner_classes(page: Page) -> list[str]:
    """The verdict banners' classes (not the performance section's slim one)."""
    return [
        v
        for _, name, v in page.attrs
        if name == "class" and v.startswith("banner") and not v.endswith("slim")
    ]


def test_partial_drift_is_stated_and_never_a_green_banner() -> None:
    result = drift_result(n_features=15, drifted=(1, 6, 12))
    result.update(dataset_share_threshold=0.5, dataset_drift=False)
    doc = render_realistic(result=result)
    page = parse(doc)
    summary = page.section_text("summary")
    assert banner_classes(page) == ["banner warn"]
    assert "Features drifted" in summary
    assert "No dataset drift" not in doc
    names = " , ".join(result["drifted"])  # bold names: their own text nodes
    assert f"3 of 15 features drifted; dataset verdict below the 50% share: {names} ." in summary
    assert "Features drifted" in doc[: doc.index("</title>")]

    # Over the share: red, saying so; nothing drifted: green, saying that.
    page = parse(render_realistic())
    assert banner_classes(page)[0] == "banner bad"
    assert "4 of 25 features drifted; dataset drift at or above the 15% share" in (
        page.section_text("summary")
    )
    calm = drift_result(n_features=15, drifted=())
    page = parse(render_realistic(result=calm))
    assert banner_classes(page)[0] == "banner ok"
    assert "Every feature is within its thresholds." in page.section_text("summary")


def trend_rows(doc: str) -> dict[str, str]:
    """Each trend row's markup by feature name, in page order."""
    rows = re.findall(r'<tr class="(?:drift|stable)" data-trend="([^"]*)">(.*?)</tr>', doc, re.S)
    return dict(rows)


def test_trends_draw_each_features_score_over_the_latest_runs() -> None:
    result = drift_result()
    doc = render_realistic(result=result, history=scored_history(result, points=15))
    page = parse(doc)
    rows = trend_rows(doc)
    features = [r["data-feature"] for r in page.rows if "data-feature" in r]
    assert list(rows) == features  # the features table's order: drifted first
    drifted = set(result["drifted"])
    for name, row in rows.items():
        assert row.count("<circle") == 11  # the latest 10 earlier runs (of 15), then this one
        last = re.findall(r'<circle class="([^"]+)"', row)[-1]
        assert last == ("pt-bad" if name in drifted else "pt-ok")
        assert f'aria-label="{name}: score over the last 11 runs"' in row
    # A drifted feature climbs over its threshold in the later runs: red points there.
    first = rows[result["drifted"][0]]
    assert 0 < first.count('class="pt-bad"') < 11
    assert re.search(r"(\d+) of 11 runs", first)
    score = feature_score(result["features"][result["drifted"][0]])
    assert f"{score:.2f}×" in first
    text = page.section_text("trends")
    assert "last 11 runs" in text

    # Runs from before per-feature scores were recorded: the section says so.
    page = parse(render_realistic(history=history()))
    assert "No per-feature scores from earlier runs yet" in page.section_text("trends")
    assert set(page.ids) >= DRIFT_SECTIONS


def test_trends_are_bounded_in_features() -> None:
    result = drift_result(n_features=60, drifted=(2, 40))
    doc = render_realistic(result=result, history=scored_history(result, points=3))
    rows = trend_rows(doc)
    assert len(rows) == 50
    assert set(result["drifted"]) <= set(rows)
    assert "… and 10 more features (the most stable) not drawn" in parse(doc).section_text("trends")


def test_feature_score_is_the_largest_statistic_to_threshold_ratio() -> None:
    feature = {
        "stats": {"psi": 0.3, "js": 0.01, "ks": None},
        "thresholds": {"psi": 0.2, "js": 0.1, "ks": 0.1, "missing_rate": 0.05},
    }
    assert feature_score(feature) == pytest.approx(1.5)
    assert feature_score({"stats": {"psi": float("nan")}, "thresholds": {"psi": 0.2}}) == 0.0
    assert feature_score(None) == 0.0


# --------------------------------------------------------------------------- version report


@pytest.mark.parametrize("with_profile", [True, False])
def test_version_report_sections(with_profile: bool) -> None:
    doc = render_version_report(manifest(), profile() if with_profile else None)
    page = parse(doc)
    assert set(page.ids) >= VERSION_SECTIONS
    assert "PASSED" in page.section_text("gate")
    assert "roc_auc 0.921 >= floor 0.800: ok" in page.section_text("gate")
    assert "champion v3" in page.section_text("metrics")
    if with_profile:
        assert "tenure" in page.section_text("features")
        assert doc.count("<svg") == 3 + 1  # three features and the score distribution
        assert EVIL in page.section_text("features")
        assert EVIL not in doc
    else:
        assert "unavailable" in page.section_text("features")
        assert "no score distribution" in page.section_text("scores")
    assert_isolated(doc)


def test_rejected_version_says_so_with_its_reason() -> None:
    doc = render_report(manifest(passed=False))
    page = parse(doc)
    gate = page.section_text("gate")
    assert "REJECTED" in gate
    assert "PASSED" not in doc
    assert "12.3% below champion v3's 0.913 (allowed 5.0%): rejected" in gate
    assert "12.3% below" in page.section_text("summary")  # the deciding reason up front
    assert_isolated(doc)


def test_minimal_and_legacy_manifests_render() -> None:
    doc = render_version_report({"model": "seg", "version": 1})
    page = parse(doc)
    assert set(page.ids) >= VERSION_SECTIONS
    assert "—" in page.section_text("gate")
    legacy = {  # profile schema 1, a clustering model
        "features": {"x": {"count": 10, "bin_edges": [0.0, 1.0, 3.0], "bin_counts": [5, 5]}},
        "rows": 10,
    }
    m = manifest(task="clustering")
    m["metrics"] = {"candidate": {"silhouette": -0.12}, "champion": None}
    doc = render_version_report(m, legacy)
    page = parse(doc)
    assert "Not a classifier" in page.section_text("scores")
    assert "-0.1200" in page.section_text("metrics")
    assert_isolated(doc)


def test_version_report_with_25_fine_grained_profiles_stays_small() -> None:
    rng = np.random.default_rng(3)
    features = {}
    for i in range(25):
        values = rng.lognormal(3, 1, 5_000)  # a long right tail, as amounts have
        edges = np.quantile(values, np.linspace(0, 1, 101))
        counts = np.histogram(values, bins=edges)[0]
        features[f"amount_{i}"] = {
            "kind": "continuous",
            "count": 5_000,
            "missing_rate": 0.0,
            "mean": float(values.mean()),
            "edges": edges.tolist(),
            "counts": counts.tolist(),
        }
    doc = render_version_report(manifest(), {"schema": 2, "rows": 5_000, "features": features})
    page = parse(doc)
    assert doc.count("<svg") == 25  # no score distribution in this profile
    assert "beyond the axis" in page.section_text("features")  # the far tail is not drawn
    assert len(doc.encode()) < 300_000
    assert_isolated(doc)


def test_version_data_is_a_summary_and_older_file_lists_are_cut() -> None:
    data = parse(render_version_report(manifest())).section_text("data")
    assert "Partitions 30 (dt=2026-10-21 … dt=2026-11-19)" in data
    assert "Files 1,200 · 3.4 MB" in data
    assert "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" in data
    assert "Files read" not in data

    def legacy(n: int) -> str:
        m = manifest()
        for key in ("partition_count", "first_partition", "last_partition", "file_count"):
            del m["data"][key]
        m["data"]["partitions"] = [f"dt=2026-11-{d:02d}" for d in range(1, 20)]
        m["data"]["files"] = [
            f"gs://d/churn/dt=2026-11-01/part-{i:05d}.parquet#1" for i in range(n)
        ]
        return render_version_report(m)

    small, large = legacy(500), legacy(50_000)
    data = parse(large).section_text("data")
    assert "Partitions 19 (dt=2026-11-01 … dt=2026-11-19)" in data
    assert "Files 50,000" in data
    assert "part-00019.parquet" in data
    assert "part-00020.parquet" not in data
    assert "… and 49,980 more" in data
    assert abs(len(large) - len(small)) < 20  # a listing would add ~2.5 MB
    assert_isolated(large)


def _long_values() -> np.ndarray:
    """50 categories of 200 KB each: a 10 MB profile (and report) before labels were capped."""
    return np.array([f"plan {i:02d} " + "v" * 200_000 for i in range(50)], dtype=object)


def test_version_report_shows_capped_category_values() -> None:
    from warden.ml.drift import build_reference_profile, cap_label

    values = _long_values()
    rng = np.random.default_rng(5)
    prof = build_reference_profile(
        {"plan": values[rng.choice(50, 5_000)]}, numeric=[], categorical=["plan"]
    )
    doc = render_version_report(manifest(), prof)
    assert len(doc.encode()) < 100_000
    features = parse(doc).section_text("features")
    assert "50 categories kept" in features
    assert "long values cut to 200 characters" in features
    assert cap_label(values[7]) in features  # each value's start, "…#" and a digest
    assert "v" * 250 not in doc
    assert_isolated(doc)

    # A profile stored before the cap still renders small: the report cuts labels itself.
    legacy = json.loads(json.dumps(prof))
    full = {cap_label(v): v for v in values}
    legacy["features"]["plan"]["categories"] = [
        full[c] for c in legacy["features"]["plan"]["categories"]
    ]
    old = render_version_report(manifest(), legacy)
    assert len(old.encode()) < 100_000
    assert "long values cut to 200 characters" in parse(old).section_text("features")
    assert "v" * 250 not in old


def test_drift_report_of_long_category_values_stays_small() -> None:
    from warden.ml.drift import build_reference_profile, cap_label, compute_drift

    values = _long_values()
    rng = np.random.default_rng(6)
    prof = build_reference_profile(
        {"plan": values[rng.choice(50, 5_000)]}, numeric=[], categorical=["plan"]
    )
    shares = np.ones(50)
    shares[3] = 30.0  # one plan takes over
    current = values[rng.choice(50, 5_000, p=shares / shares.sum())]
    result = compute_drift(prof, {"plan": current}).to_dict()
    assert result["drifted"] == ["plan"]
    doc = render_drift_report(
        result, model="churn", version=4, run_id="r1", at="2026-11-20T06:00:00+00:00"
    )
    assert len(doc.encode()) < 60_000
    assert len(json.dumps(result)) < 10_000  # drift.json holds this
    assert cap_label(values[3]) in parse(doc).section_text("distributions")
    assert "v" * 250 not in doc
    assert_isolated(doc)


def test_version_report_draws_a_classifiers_curves_confusion_calibration_and_importance() -> None:
    m = classifier_manifest()
    cand = m["evaluation"]["candidate"]
    doc = render_version_report(m, profile())
    page = parse(doc)
    assert set(page.ids) >= VERSION_SECTIONS
    charts = chart_text(doc)
    assert "ROC curve: true positive rate against false positive rate" in charts
    assert "Precision-recall curve" in charts
    assert "Reliability: observed share of positives against the predicted probability" in charts
    assert "a random model" in charts
    assert "perfect calibration" in charts
    assert "candidate" in charts
    assert "champion v3" in charts  # the champion's curves, on the same rows
    c = cand["confusion"]
    fpr = c["fp"] / (c["fp"] + c["tn"])
    tpr = c["tp"] / (c["tp"] + c["fn"])
    assert f"operating point: FPR {fpr:.3f}, TPR {tpr:.3f}" in charts
    curves = page.section_text("curves")
    assert f"ROC AUC {m['metrics']['candidate']['roc_auc']:.3f} (candidate)" in curves
    assert f"{m['metrics']['champion']['roc_auc']:.3f} (champion v3)" in curves
    confusion = page.section_text("confusion")
    for key, label in (("tp", "true positives"), ("fn", "false negatives")):
        share = 100 * c[key] / (c["tp"] + c["fn"])
        assert f"{c[key]:,} {label} · {share:.1f}% of the row" in confusion
    assert "predicted 1 predicted 0 actual 1" in confusion
    assert "Threshold 0.5" in confusion
    assert f"Precision {c['tp'] / (c['tp'] + c['fp']):.3f}" in confusion
    calibration = page.section_text("calibration")
    assert f"Brier score {cand['calibration']['brier']:.3f} (candidate" in calibration
    importance = page.section_text("importance")
    top = cand["importance"]["features"]
    assert "Coefficients of the final estimator" in importance
    assert f"The {len(top)} largest of 30 features." in importance
    bars = re.findall(r'<div class="ibar" data-name="([^"]*)">.*?style="([^"]*)"', doc)
    assert [name for name, _ in bars] == [e["name"] for e in top]
    # Signed bars around the middle: a negative coefficient grows left of 50%.
    for (_, style), entry in zip(bars, top, strict=True):
        left = float(re.search(r"left:([\d.]+)%", style).group(1))
        assert (left < 50) == (entry["value"] < 0)
    assert doc.count("<svg") == 3 + 1 + 3  # features, scores, then ROC, PR and reliability
    assert len(doc.encode()) < 120_000
    assert_isolated(doc)


def test_version_report_says_why_a_classifier_section_is_empty() -> None:
    clustering = manifest(task="clustering")
    page = parse(render_version_report(clustering))
    for sid in CLASSIFIER_SECTIONS:
        assert "Not a classifier (clustering)" in page.section_text(sid)
    page = parse(render_version_report(manifest()))  # registered before the report drew them
    for sid in CLASSIFIER_SECTIONS:
        assert "not recorded for this version" in page.section_text(sid)
    m = classifier_manifest()  # a model with decision_function only, no importances
    m["evaluation"]["candidate"].update(calibration=None, importance=None)
    m["evaluation"]["champion"] = None
    page = parse(render_version_report(m))
    assert "scores are not probabilities" in page.section_text("calibration")
    assert "no feature importance recorded" in page.section_text("importance")
    assert "champion v3" not in page.section_text("curves")  # no champion curves to draw
    assert "ROC AUC" in page.section_text("curves")


def test_permutation_importance_is_explained_with_its_spread() -> None:
    m = classifier_manifest()
    m["evaluation"]["candidate"]["importance"] = {
        "kind": "permutation",
        "n_features": 2,
        "rows": 300,
        "repeats": 3,
        "features": [
            {"name": "worst perimeter", "value": 0.31, "std": 0.02},
            {"name": "noise", "value": -0.004, "std": 0.003},
        ],
    }
    doc = render_version_report(m)
    text = parse(doc).section_text("importance")
    assert "Drop in ROC AUC when one feature's values are shuffled, on 300 held-out rows" in text
    assert "0.3100 ± 0.0200" in text
    assert "-0.0040 ± 0.0030" in text
    widths = re.findall(r'data-name="[^"]*">.*?width:([\d.]+)%', doc)
    assert [float(w) for w in widths] == [100.0, 0.0]  # unsigned: a negative drop draws nothing


# --------------------------------------------------------------------------- escaping, templates


def hostile_drift(hostile: str) -> str:
    """A drift run whose every name a user or a data source controls is ``hostile``."""
    result = drift_result(n_features=5, drifted=(0,))
    first = next(iter(result["features"]))
    feature = result["features"].pop(first)
    feature["kind"] = hostile
    feature["reasons"] = [f"psi 0.5 >= 0.2 {hostile}"]
    feature["histogram"]["labels"][0] = hostile
    feature["stats"]["new_category_share"] = 0.3  # a value the reference never had
    feature["thresholds"]["new_category_share"] = 0.05
    feature["new_categories"] = {
        "share": 0.3,
        "rows": 1_440,
        "top": [{"value": hostile, "rows": 1_440}],
        "reference": "complete",
    }
    result["features"][hostile] = feature
    result["drifted"] = [hostile]
    runs = scored_history(result)
    for run in runs:
        run["metrics"][hostile] = 0.5
        run["drifted"] = [hostile]
    return render_drift_report(
        result,
        model=hostile,
        version=4,
        run_id=hostile,
        at="2026-11-20T06:00:00+00:00",
        window={"start": hostile, "end": "2026-11-20", "rows": 10},
        performance={**PERFORMANCE, "metric": hostile},
        history=runs,
    )


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_only_escaped_in_the_drift_report(hostile: str) -> None:
    doc = hostile_drift(hostile)
    assert_only_escaped(doc, hostile)
    page = parse(doc)
    assert f"{hostile} · drift check" in page.section_text("")  # the header, as text
    assert hostile in page.section_text("summary")
    assert hostile in page.section_text("features")
    assert hostile in page.section_text("performance")
    assert f"new values (1,440 rows): {hostile!r} (1,440)" in page.section_text("features")
    assert next(r["data-feature"] for r in page.rows if "data-feature" in r) == hostile
    charts = chart_text(doc)  # inside the SVG: the chart titles, bar tooltips, bin labels
    assert f"{hostile}: share of rows per bin, reference vs current" in charts
    assert f"{hostile} · reference: " in charts
    assert f"{hostile} over time" in charts
    assert f"{hostile}: score over the last 11 runs" in charts  # its trend
    assert hostile in page.section_text("trends")
    assert any(str(escape(hostile)) in svg for svg in svgs(doc))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_only_escaped_in_the_version_report(hostile: str) -> None:
    m = classifier_manifest()
    details = m["evaluation"]["candidate"]
    details["importance"]["features"][0]["name"] = hostile
    details["confusion"]["positive_label"] = hostile
    details["positive_label"] = hostile
    m["model"] = hostile
    m["task"] = hostile
    m["metrics"]["candidate"][hostile] = 0.5
    m["metrics"]["champion"][hostile] = 0.4
    m["gate"]["reasons"].append(f"{hostile}: rejected")
    m["gate"]["passed"] = False
    m["data"]["missing"][hostile] = 0.5
    m["params"] = {hostile: hostile}
    prof = profile()
    prof["features"][hostile] = {**prof["features"]["plan"], "categories": ["a", hostile, "b"]}
    doc = render_version_report(m, prof)
    assert_only_escaped(doc, hostile)
    page = parse(doc)
    assert f"{hostile} · version 4" in page.section_text("")
    assert hostile in page.section_text("summary")  # the failed reason, up front
    assert hostile in page.section_text("gate")
    assert hostile in page.section_text("metrics")
    assert hostile in page.section_text("features")
    assert hostile in page.section_text("data")
    assert f"Not a classifier ({hostile})" in page.section_text("curves")
    charts = chart_text(doc)
    assert f"{hostile}: reference distribution" in charts
    assert f"{hostile} · reference: " in charts  # a category label's tooltip
    assert any(str(escape(hostile)) in svg for svg in svgs(doc))
    # A classifier's sections carry the names too: a feature, the positive label.
    doc = render_version_report({**m, "task": "classification"}, prof)
    assert_only_escaped(doc, hostile)
    page = parse(doc)
    assert f"predicted {hostile}" in page.section_text("confusion")
    assert f"positive pushes toward {hostile}" in page.section_text("importance")
    assert re.search(rf'data-name="{re.escape(str(escape(hostile)))}"', doc)


def test_only_the_charts_reach_the_templates_as_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything else is plain data that autoescape escapes; the charts hold nothing raw."""
    seen: list[tuple[str, dict[str, Any]]] = []
    render = report_html._render

    def spy(name: str, **context: Any) -> str:
        seen.append((name, context))
        return render(name, **context)

    def markups(value: Any) -> list[Markup]:
        if isinstance(value, Markup):
            return [value]
        if isinstance(value, dict):
            return [x for v in value.values() for x in markups(v)]
        if isinstance(value, list | tuple):
            return [x for v in value for x in markups(v)]
        assert value is None or isinstance(value, str | int | float | bool), type(value)
        return []

    monkeypatch.setattr(report_html, "_render", spy)
    hostile = HOSTILE[1]
    hostile_drift(hostile)
    prof = profile()
    prof["features"][hostile] = prof["features"]["plan"]
    m = classifier_manifest()
    m["evaluation"]["candidate"]["importance"]["features"][0]["name"] = hostile
    render_version_report({**m, "model": hostile}, prof)
    assert [name for name, _ in seen] == ["drift.html.j2", "version.html.j2"]
    for _, context in seen:
        charts = markups(context)
        assert charts
        for chart in charts:
            assert chart.startswith(('<svg class="chart" ', '<p class="muted">')), chart[:80]
            assert hostile not in chart
            assert "<img" not in chart


def test_reports_are_drawn_from_the_templates_with_autoescape() -> None:
    names = {p.name for p in TEMPLATES.iterdir()}
    assert names >= {"base.html.j2", "macros.html.j2", "drift.html.j2", "version.html.j2"}
    assert all(name.endswith(".html.j2") for name in names)
    for report in ("drift.html.j2", "version.html.j2"):
        assert '{% extends "base.html.j2" %}' in (TEMPLATES / report).read_text(encoding="utf-8")
    env = report_html._environment()
    assert env is report_html._environment()  # built once
    assert env.autoescape is True
    assert env.undefined is jinja2.StrictUndefined
    # What the template writes, not this module: a changed template changes the report.
    template = env.get_template("drift.html.j2")
    assert template.filename == str(TEMPLATES / "drift.html.j2")


def test_a_changed_template_changes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    base = copy / "base.html.j2"
    base.write_text(
        base.read_text(encoding="utf-8").replace("Generated by Warden", "Drawn from a copy"),
        encoding="utf-8",
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(copy),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    monkeypatch.setattr(report_html, "_environment", lambda: env)
    assert "Drawn from a copy" in render_realistic(history=[])
    assert "Drawn from a copy" in render_version_report(manifest())


def test_a_missing_template_variable_fails_the_render_clearly() -> None:
    with pytest.raises(PermanentError, match="'model' is undefined") as info:
        report_html._render("drift.html.j2", title="t")
    assert isinstance(info.value.__cause__, jinja2.UndefinedError)
    # A nested key counts too: no section quietly renders empty.
    with pytest.raises(PermanentError, match="has no attribute 'kpis'"):
        report_html._render(
            "version.html.j2",
            **{k: "x" for k in ("title", "model", "version", "task", "created")},
            **{k: "x" for k in ("code_version", "run_id")},
            summary={"cls": "ok", "word": "PASSED", "detail": ""},
        )


def test_a_missing_template_fails_the_render_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle that left the templates out: permanent, and saying which file is missing."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(tmp_path), autoescape=True, undefined=jinja2.StrictUndefined
    )
    monkeypatch.setattr(report_html, "_environment", lambda: env)
    with pytest.raises(PermanentError, match=r"'drift\.html\.j2' is missing"):
        render_realistic()
    with pytest.raises(PermanentError, match=r"'version\.html\.j2' is missing"):
        render_report(manifest())


# --------------------------------------------------------------------------- real browser

# A page that asks for one external image: it shows the net log check can see a page's loads.
# `.invalid` never resolves, and the resolver rule below fails every lookup in-process anyway.
CONTROL = (
    '<!doctype html><html><body><img src="http://warden-probe.invalid/p.png" alt=""></body></html>'
)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_distinct_bytes(data: bytes) -> int:
    """Distinct byte values in the decompressed image data: a blank page filters to a handful."""
    pos, idat = 8, bytearray()
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(np.unique(np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8)))


def read_netlog(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8").rstrip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a browser that died mid-write leaves the events list open
        return json.loads(text.rstrip(",") + "]}")


def page_requests(netlog: dict[str, Any]) -> list[str]:
    """URLs the page asked for. Chromium's own background fetches (update checks, network time)
    carry the initiator 'not an origin' and are not the report's doing; they fail too, since
    every host name resolves to NOTFOUND. A file:// page load never enters the net stack."""
    types = {v: k for k, v in netlog["constants"]["logEventTypes"].items()}
    urls = []
    for event in netlog["events"]:
        params = event.get("params") or {}
        started = types.get(event["type"]) == "URL_REQUEST_START_JOB" and "url" in params
        if started and params.get("initiator") != "not an origin":
            urls.append(params["url"])
    return urls


def chromium(url: str, *args: str, profile_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers (Cloud Build) give /dev/shm only 64 MB
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile_dir}",
        "--window-size=1280,2400",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_chromium_renders_the_drift_report_offline(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing, and this test needs Debian's Chromium: "
            "apt-get update && apt-get install -y chromium  (.ci/run installs it in CI)"
        )
    doc = render_realistic(history=scored_history(drift_result()))
    assert_isolated(doc)
    report, control = tmp_path / "drift report.html", tmp_path / "control.html"
    report.write_text(doc, encoding="utf-8")
    control.write_text(CONTROL, encoding="utf-8")
    shot, control_shot = tmp_path / "report.png", tmp_path / "control.png"
    netlog, control_netlog = tmp_path / "report-net.json", tmp_path / "control-net.json"

    run = chromium(
        report.as_uri(),
        "--dump-dom",
        f"--screenshot={shot}",
        f"--log-net-log={netlog}",
        profile_dir=tmp_path / "profile-report",
    )
    assert run.returncode == 0, f"chromium failed:\n{run.stderr[-3000:]}"
    assert shot.exists(), f"no screenshot:\n{run.stderr[-3000:]}"
    chromium(
        control.as_uri(),
        f"--screenshot={control_shot}",
        f"--log-net-log={control_netlog}",
        profile_dir=tmp_path / "profile-control",
    )

    # The DOM Chromium built has every section, the verdict, every feature row and chart.
    page = parse(run.stdout)
    assert set(page.ids) >= DRIFT_SECTIONS
    assert "Dataset drift" in page.section_text("summary")
    assert len([r for r in page.rows if "data-feature" in r]) == 25
    # Each feature's trend: a row with its sparkline of 11 runs in the trends section.
    trends = [r for r in page.rows if "data-trend" in r]
    assert [r["data-trend"] for r in trends] == [
        r["data-feature"] for r in page.rows if "data-feature" in r
    ]
    assert len(trend_rows(run.stdout)) == 25
    assert all(row.count("<circle") == 11 for row in trend_rows(run.stdout).values())
    assert "score over runs" in page.section_text("trends").lower()
    assert page.tags.count("svg") >= 28 + 25
    assert "script" not in page.tags

    # The screenshot: the requested size, and far more detail than the (blank) control page.
    data = shot.read_bytes()
    assert png_size(data) == (1280, 2400)
    assert len(data) > 50_000
    assert len(data) > 10 * control_shot.stat().st_size
    assert png_distinct_bytes(data) > 200

    # Nothing was requested by the report; the same check does see the control page's image.
    assert page_requests(read_netlog(netlog)) == []
    assert page_requests(read_netlog(control_netlog)) == ["http://warden-probe.invalid/p.png"]
    assert "Content Security Policy" not in run.stderr  # nothing was even attempted and blocked


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing, and this test needs Debian's Chromium: "
            "apt-get update && apt-get install -y chromium  (.ci/run installs it in CI)"
        )


def test_chromium_renders_the_classifier_sections_of_the_version_report(tmp_path: Path) -> None:
    require_chromium()
    m = classifier_manifest()
    cand = m["evaluation"]["candidate"]
    doc = render_version_report(m, profile())
    report = tmp_path / "version report.html"
    report.write_text(doc, encoding="utf-8")
    netlog = tmp_path / "net.json"
    run = chromium(
        report.as_uri(),
        "--dump-dom",
        f"--log-net-log={netlog}",
        profile_dir=tmp_path / "profile",
    )
    assert run.returncode == 0, f"chromium failed:\n{run.stderr[-3000:]}"
    page = parse(run.stdout)
    assert set(page.ids) >= VERSION_SECTIONS
    charts = chart_text(run.stdout)
    for title in (
        "ROC curve: true positive rate against false positive rate",
        "Precision-recall curve",
        "Reliability: observed share of positives against the predicted probability",
    ):
        assert title in charts
    # The curves Chromium parsed: candidate and champion lines, the operating point ring.
    assert run.stdout.count('class="curve cand"') == 3
    assert run.stdout.count('class="curve champ"') == 3
    assert run.stdout.count('class="op"') == 2
    c = cand["confusion"]
    cells = re.findall(r'<td class="(right|wrong)"><span class="count">([\d,]+)</span>', run.stdout)
    assert cells == [
        ("right", f"{c['tp']:,}"),
        ("wrong", f"{c['fn']:,}"),
        ("wrong", f"{c['fp']:,}"),
        ("right", f"{c['tn']:,}"),
    ]
    names = re.findall(r'<div class="ibar" data-name="([^"]*)">', run.stdout)
    assert names == [e["name"] for e in cand["importance"]["features"]]
    assert page_requests(read_netlog(netlog)) == []


# A test page (not a report) that measures the reports as Chromium lays them out: each report in
# a 1280-pixel frame; for the page and each section, how much wider the content is than the box.
# Scripts run here only; the reports inside keep their CSP.
LAYOUT_PROBE = """<!doctype html><html><body style="margin:0">
<iframe id="drift" src="drift.html" style="width:1280px;height:800px;border:0"></iframe>
<iframe id="version" src="version.html" style="width:1280px;height:800px;border:0"></iframe>
<pre id="out">pending</pre>
<script>
window.addEventListener("load", function () {
  var out = {};
  ["drift", "version"].forEach(function (id) {
    var d = document.getElementById(id).contentDocument, e = d.documentElement;
    var m = {page: e.scrollWidth - e.clientWidth};
    d.querySelectorAll("section").forEach(function (s) {
      m[s.id] = s.scrollWidth - s.clientWidth;
    });
    out[id] = m;
  });
  document.getElementById("out").textContent = JSON.stringify(out);
});
</script></body></html>"""


def test_long_feature_names_wrap_instead_of_widening_the_reports(tmp_path: Path) -> None:
    require_chromium()
    long = "customer_lifetime_value_in_the_first_ninety_days_" * 4  # no space to break at
    result = drift_result(n_features=15, drifted=(1, 6, 12))
    result["features"][long] = result["features"].pop(result["drifted"][0])
    result["drifted"] = [long, *result["drifted"][1:]]
    result.update(dataset_share_threshold=0.5, dataset_drift=False)
    drift = render_realistic(result=result, history=scored_history(result))
    assert long in parse(drift).section_text("summary")
    assert long in parse(drift).section_text("trends")
    m = classifier_manifest()
    m["evaluation"]["candidate"]["importance"]["features"][0]["name"] = long
    version = render_version_report(m, {"schema": 2, "rows": 10, "features": {long: {}}})
    (tmp_path / "drift.html").write_text(drift, encoding="utf-8")
    (tmp_path / "version.html").write_text(version, encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(LAYOUT_PROBE, encoding="utf-8")
    run = chromium(
        probe.as_uri(),
        "--dump-dom",
        "--allow-file-access-from-files",  # lets the probe read its frames' layout
        profile_dir=tmp_path / "profile",
    )
    assert run.returncode == 0, f"chromium failed:\n{run.stderr[-3000:]}"
    found = re.search(r'<pre id="out">(.*?)</pre>', run.stdout, re.S)
    assert found, run.stdout[-2000:]
    overflow = json.loads(found.group(1))
    assert set(overflow["drift"]) == {"page"} | DRIFT_SECTIONS
    assert set(overflow["version"]) == {"page"} | VERSION_SECTIONS
    for report, widths in overflow.items():
        assert all(px <= 0 for px in widths.values()), (report, widths)
