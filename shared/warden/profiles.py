"""Reference profile of a version's training data: compact statistics, never the data itself.

Stored as ``profile.json`` beside the artifact so drift monitoring can compare recent data
with it without re-reading the training window. Per numeric feature: moments, missing rate and
quantile bin edges with counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PROFILE_SCHEMA = 1
BINS = 20


def numeric_profile(values: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    n = int(values.size)
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"count": n, "missing_rate": float(1 - finite.size / n) if n else 0.0}
    if finite.size == 0:
        return out
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
    counts = np.histogram(finite, bins=edges)[0].tolist() if edges.size > 1 else [int(finite.size)]
    out.update(
        {
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "min": float(finite.min()),
            "max": float(finite.max()),
            "quantiles": {
                str(q): float(np.quantile(finite, q))
                for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
            },
            "bin_edges": edges.tolist(),
            "bin_counts": counts,
        }
    )
    return out


def build_profile(
    frame: Any,
    features: list[str],
    *,
    target: str | None = None,
    baseline: dict[str, float] | None = None,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "schema": PROFILE_SCHEMA,
        "rows": len(frame),
        "features": {f: numeric_profile(frame[f].to_numpy()) for f in features},
    }
    if target is not None:
        counts = frame[target].value_counts()
        profile["target"] = {
            "name": target,
            "class_counts": {str(k): int(v) for k, v in counts.items()},
        }
    if baseline:
        profile["baseline_metrics"] = baseline
    if scores is not None and len(scores):
        hist, edges = np.histogram(np.asarray(scores, dtype=float), bins=10, range=(0.0, 1.0))
        profile["score_distribution"] = {"bin_edges": edges.tolist(), "counts": hist.tolist()}
    return profile
