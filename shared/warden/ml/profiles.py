"""Reference profile of a version's training data: compact statistics, never the data itself.

Stored as ``profile.json`` beside the artifact so ``monitor_model`` compares recent data with it
without re-reading the training window. The per-feature part comes from
:func:`warden.ml.drift.build_reference_profile` (quantile bins, exact counts for small integer
domains, category frequencies); this module adds what only training knows: the target's class
balance, the baseline metrics and the distribution of the model's scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from warden.config import ModelConfig


def build_profile(
    frame: Any,
    cfg: ModelConfig,
    *,
    baseline: dict[str, float] | None = None,
    scores: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    from warden.ml.drift import build_reference_profile

    profile = build_reference_profile(
        {c: frame[c].to_numpy() for c in cfg.features},
        numeric=cfg.numeric_features,
        categorical=cfg.categorical_features,
    )
    if cfg.target is not None:
        counts = frame[cfg.target].value_counts()
        profile["target"] = {
            "name": cfg.target,
            "class_counts": {str(k): int(v) for k, v in counts.items()},
        }
    if baseline:
        profile["baseline_metrics"] = baseline
    if scores is not None and len(scores):
        hist, edges = np.histogram(
            np.clip(np.asarray(scores, dtype=float), 0.0, 1.0), bins=10, range=(0.0, 1.0)
        )
        profile["score_distribution"] = {"bin_edges": edges.tolist(), "counts": hist.tolist()}
    if clusters is not None and len(clusters):
        labels, counts = np.unique(np.asarray(clusters), return_counts=True)
        profile["cluster_distribution"] = {
            "counts": {str(k): int(n) for k, n in zip(labels.tolist(), counts, strict=True)}
        }
    return profile
