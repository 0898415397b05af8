"""Example data for the two models in ``warden.yaml``, for the demo and the tests.

* :func:`customer_frame`: synthetic customers from four segments (``customer-segments``), with a
  ``shift`` knob that blurs the segments so a retrain scores a clearly lower silhouette.
* :func:`breast_cancer_frame`: scikit-learn's Wisconsin data with snake_case columns and a
  ``malignant`` label (``breast-cancer-risk``), with optional label noise.
* :func:`write_partitions`: lay a frame out as daily ``dt=YYYY-MM-DD`` partitions in a bucket.

numpy, pandas and scikit-learn are imported inside functions only.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd
    from google.cloud import storage

CUSTOMER_FEATURES = [
    "recency_days",
    "orders_per_year",
    "avg_order_value",
    "tenure_months",
    "discount_share",
    "web_share",
]

# Per segment: population share, then the centre of each feature. Recency, orders, order value
# and tenure are lognormal (medians here); the two shares are beta distributed (means here).
_SEGMENTS: dict[str, dict[str, float]] = {
    "loyal": {
        "share": 0.20, "recency_days": 8, "orders_per_year": 26, "avg_order_value": 140,
        "tenure_months": 72, "discount_share": 0.05, "web_share": 0.45,
    },
    "bargain": {
        "share": 0.30, "recency_days": 25, "orders_per_year": 12, "avg_order_value": 30,
        "tenure_months": 30, "discount_share": 0.70, "web_share": 0.85,
    },
    "new": {
        "share": 0.20, "recency_days": 12, "orders_per_year": 3, "avg_order_value": 65,
        "tenure_months": 3, "discount_share": 0.30, "web_share": 0.90,
    },
    "dormant": {
        "share": 0.30, "recency_days": 300, "orders_per_year": 1.2, "avg_order_value": 55,
        "tenure_months": 48, "discount_share": 0.20, "web_share": 0.20,
    },
}  # fmt: skip
_LOG_FEATURES = ("recency_days", "orders_per_year", "avg_order_value", "tenure_months")
_SHARE_FEATURES = ("discount_share", "web_share")
_LOG_SIGMA = 0.30  # spread of the lognormal features within a segment
_CONCENTRATION = 40.0  # beta a + b: higher means shares sit closer to the segment's mean


def customer_frame(n: int, *, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """``n`` customers with the ``customer-segments`` features and a ground-truth ``segment``.

    ``shift`` in [0, 1] moves the population: segment centres drift towards each other, spread
    grows, customers lapse (recency up, orders down) and spend less. At 1.0 the four segments
    overlap enough that KMeans(4) scores a much lower silhouette than at 0.0.
    """
    import numpy as np
    import pandas as pd

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be in [0, 1], got {shift}")
    rng = np.random.default_rng(seed)
    names = list(_SEGMENTS)
    shares = np.array([_SEGMENTS[s]["share"] for s in names])
    # Exact counts (largest remainder), so small frames still contain every segment.
    raw = shares * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: n - counts.sum()]] += 1

    blend = 0.55 * shift  # how far each centre moves towards the population's centre
    widen = 1.0 + 1.2 * shift
    drift = {  # behavioural drift of the whole population, as multipliers on the medians
        "recency_days": 1.0 + 0.6 * shift,
        "orders_per_year": 1.0 - 0.3 * shift,
        "avg_order_value": 1.0 - 0.25 * shift,
        "tenure_months": 1.0,
    }
    log_mean = {f: np.mean([np.log(_SEGMENTS[s][f]) for s in names]) for f in _LOG_FEATURES}
    share_mean = {f: np.mean([_SEGMENTS[s][f] for s in names]) for f in _SHARE_FEATURES}

    parts = []
    for name, count in zip(names, counts, strict=True):
        seg = _SEGMENTS[name]
        cols: dict[str, np.ndarray] = {}
        for f in _LOG_FEATURES:
            centre = (1 - blend) * np.log(seg[f]) + blend * log_mean[f] + np.log(drift[f])
            cols[f] = np.exp(rng.normal(centre, _LOG_SIGMA * widen, count))
        for f in _SHARE_FEATURES:
            mean = (1 - blend) * seg[f] + blend * share_mean[f]
            conc = _CONCENTRATION / widen**2
            cols[f] = rng.beta(mean * conc, (1 - mean) * conc, count)
        part = pd.DataFrame(cols)
        part["segment"] = name
        parts.append(part)

    frame = pd.concat(parts, ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    # Counts are whole numbers; order value is money; shares stay in [0, 1] by construction.
    frame["recency_days"] = np.round(frame["recency_days"]).astype("int64")
    frame["tenure_months"] = np.maximum(np.round(frame["tenure_months"]), 1).astype("int64")
    frame["orders_per_year"] = np.round(frame["orders_per_year"], 1)
    frame["avg_order_value"] = np.round(frame["avg_order_value"], 2)
    frame["discount_share"] = np.round(frame["discount_share"], 4)
    frame["web_share"] = np.round(frame["web_share"], 4)
    return frame[[*CUSTOMER_FEATURES, "segment"]]


def breast_cancer_frame(*, label_noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """scikit-learn's breast-cancer data: snake_case feature columns and ``malignant`` (1/0).

    sklearn codes malignant as 0; here ``malignant`` is 1 for malignant so that the positive
    class is the one to catch. ``label_noise`` flips exactly ``round(label_noise * n)`` labels.
    """
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.rename(columns=lambda c: c.strip().replace(" ", "_"))
    malignant = (bunch.target.to_numpy() == 0).astype("int64")
    flips = round(label_noise * len(malignant))
    if flips:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(malignant), size=flips, replace=False)
        malignant[idx] = 1 - malignant[idx]
    frame["malignant"] = malignant
    return frame.reset_index(drop=True)


def write_partitions(
    client: storage.Client,
    *,
    bucket: str,
    prefix: str,
    frame: pd.DataFrame,
    fmt: Literal["csv", "parquet"],
    end: date,
    days: int,
) -> list[str]:
    """Write ``frame`` as ``days`` daily partitions ending at ``end``; return the object names.

    The frame is split into consecutive, roughly equal chunks, oldest first: one file
    ``PREFIX/dt=YYYY-MM-DD/part-00000.{fmt}`` per day.
    """
    import numpy as np

    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    prefix = prefix.strip("/")
    target = client.bucket(bucket)
    names = []
    bounds = np.linspace(0, len(frame), days + 1).round().astype(int)
    for i in range(days):
        chunk = frame.iloc[bounds[i] : bounds[i + 1]]
        day = end - timedelta(days=days - 1 - i)
        name = f"{prefix}/dt={day.isoformat()}/part-00000.{fmt}"
        if fmt == "csv":
            target.blob(name).upload_from_string(chunk.to_csv(index=False), content_type="text/csv")
        else:
            buf = io.BytesIO()
            chunk.to_parquet(buf, index=False)
            target.blob(name).upload_from_string(
                buf.getvalue(), content_type="application/vnd.apache.parquet"
            )
        names.append(name)
    return names


#: Where warden.yaml's example models read their data (``data.prefix`` and ``data.format``).
EXAMPLE_DATA = {
    "customer-segments": ("customers", "parquet"),
    "breast-cancer-risk": ("breast-cancer", "csv"),
}


def seed_examples(
    client: Any,
    *,
    bucket: str,
    end: date,
    days: int = 7,
    models: tuple[str, ...] = tuple(EXAMPLE_DATA),
    customer_rows: int = 2400,
    shift: float = 0.0,
    label_noise: float = 0.0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Write ``days`` daily partitions ending ``end`` for the example models; return names."""
    written: dict[str, list[str]] = {}
    for model in models:
        prefix, fmt = EXAMPLE_DATA[model]
        frame = (
            customer_frame(customer_rows, seed=seed, shift=shift)
            if model == "customer-segments"
            else breast_cancer_frame(label_noise=label_noise, seed=seed)
        )
        written[model] = write_partitions(
            client, bucket=bucket, prefix=prefix, frame=frame, fmt=fmt, end=end, days=days
        )  # type: ignore[arg-type]
    return written
