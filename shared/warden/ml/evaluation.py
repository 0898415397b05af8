"""Score a fitted model on held-out rows: silhouette (clustering), ROC AUC & co. (classification).

Pure core: numpy only at import time; scikit-learn is imported inside the functions that need it.
No Google imports, no I/O. The candidate and the champion are both passed through
:func:`evaluate` on the *same* held-out rows, so their numbers are directly comparable.

Silhouette is computed here rather than with ``sklearn.metrics.silhouette_score`` so that memory
stays bounded (a fixed distance buffer whatever the number of rows) and so that large hold-outs can
be scored on a uniform sample with a stated error bound instead of an O(N²) pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from warden.errors import ConfigError, DataError

if TYPE_CHECKING:
    from warden.config import EvaluationSpec

#: Size of the float64 distance block (query rows × reference rows) held at any one time.
DISTANCE_BUFFER_BYTES = 16 * 1024 * 1024
_F64 = 8


@dataclass(frozen=True)
class SilhouetteResult:
    """Mean silhouette and how much to trust it.

    ``exact`` means every row was a query row (``error_bound`` and ``std_error`` are 0). Otherwise
    ``value`` is the mean of ``n_evaluated`` exactly computed s(i) over a uniform sample, and
    ``|value - exact value| <= error_bound`` with probability at least ``confidence``.
    """

    value: float
    exact: bool
    n_rows: int
    n_evaluated: int
    error_bound: float
    confidence: float
    std_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """One model's score on the held-out rows. ``details`` is JSON-serialisable."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    sane: bool = True
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # NaN is not JSON; a missing number is clearer than an invalid document.
        metrics = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}
        return {
            "metrics": metrics,
            "details": self.details,
            "sane": self.sane,
            "problems": list(self.problems),
        }


# --------------------------------------------------------------------------- silhouette


def hoeffding_bound(n: int, confidence: float) -> float:
    """Half-width t with P(|mean - mu| >= t) <= 1 - confidence for n values in [-1, 1].

    Hoeffding: P(|mean - mu| >= t) <= 2 exp(-2 n t² / (b - a)²) with b - a = 2. Sampling without
    replacement from a finite population only tightens it (Hoeffding 1963 §6; Serfling 1974).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    return math.sqrt(2.0 * math.log(2.0 / (1.0 - confidence)) / n)


def block_shape(
    n_query: int, n_ref: int, n_clusters: int, *, budget_bytes: int | None = None
) -> tuple[int, int]:
    """Rows per (query block, reference block) so that each float64 work array fits the budget.

    Three arrays are alive per step: distances (q × r), the reference one-hot (r × k) and the
    per-cluster sums (q × k). Each is kept within ``budget_bytes``; at least one row is always
    taken, so a pathological k beyond the budget degrades to row-at-a-time instead of failing.
    """
    if min(n_query, n_ref, n_clusters) < 1:
        raise ValueError("n_query, n_ref and n_clusters must all be positive")
    if budget_bytes is None:
        budget_bytes = DISTANCE_BUFFER_BYTES  # read at call time so tests can shrink it
    budget = max(1, budget_bytes // _F64)  # elements
    ref = max(1, min(n_ref, budget, budget // n_clusters))
    query = max(1, min(n_query, budget // ref, budget // n_clusters))
    return query, ref


def _as_matrix(X: Any) -> np.ndarray:
    try:
        matrix = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"silhouette needs numeric features: {exc}") from exc
    if matrix.ndim != 2:
        raise DataError(f"silhouette needs a 2-D feature matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise DataError("silhouette needs finite feature values (found NaN or infinity)")
    return np.ascontiguousarray(matrix)


def _silhouette_samples(
    X: np.ndarray, codes: np.ndarray, sizes: np.ndarray, query: np.ndarray
) -> np.ndarray:
    """Exact s(i) for the rows ``query`` (indices into X), each measured against all N rows."""
    n, k = X.shape[0], sizes.shape[0]
    sq_norms = np.einsum("ij,ij->i", X, X)
    q_rows, r_rows = block_shape(query.shape[0], n, k)
    ref_blocks = [(start, min(start + r_rows, n)) for start in range(0, n, r_rows)]
    eye = np.eye(k)
    # With a single reference block the one-hot never changes: build it once.
    fixed_onehot = eye[codes] if len(ref_blocks) == 1 else None
    own_counts = sizes[codes[query]]
    out = np.empty(query.shape[0])

    for q0 in range(0, query.shape[0], q_rows):
        idx = query[q0 : q0 + q_rows]
        Xq, nq = X[idx], sq_norms[idx]
        sums = np.zeros((idx.shape[0], k))
        for r0, r1 in ref_blocks:
            # ||x||² + ||y||² − 2x·y, in place on one buffer; clip rounding negatives before sqrt.
            dist = Xq @ X[r0:r1].T
            dist *= -2.0
            dist += nq[:, None]
            dist += sq_norms[None, r0:r1]
            np.maximum(dist, 0.0, out=dist)
            np.sqrt(dist, out=dist)
            # A point's distance to itself is exactly 0; the formula leaves ~1e-8 of rounding.
            hit = (idx >= r0) & (idx < r1)
            dist[np.flatnonzero(hit), idx[hit] - r0] = 0.0
            onehot = fixed_onehot if fixed_onehot is not None else eye[codes[r0:r1]]
            sums += dist @ onehot
        own = codes[idx]
        rows = np.arange(idx.shape[0])
        n_own = own_counts[q0 : q0 + q_rows]
        singleton = n_own == 1
        a = sums[rows, own] / np.where(singleton, 1, n_own - 1)
        means = sums / sizes[None, :]
        means[rows, own] = np.inf
        b = means.min(axis=1)
        denom = np.maximum(a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(denom > 0, (b - a) / denom, 0.0)
        # scikit-learn's convention: s(i) = 0 for a point alone in its cluster.
        out[q0 : q0 + q_rows] = np.where(singleton, 0.0, s)
    return out


def silhouette(
    X: Any,
    labels: Any,
    *,
    exact_max_rows: int = 10_000,
    sample_size: int = 10_000,
    confidence: float = 0.99,
    seed: int = 0,
) -> SilhouetteResult:
    """Mean silhouette coefficient (Euclidean), exact up to ``exact_max_rows`` rows, else sampled.

    Sampled mode draws ``sample_size`` rows uniformly without replacement (fixed ``seed``) and
    computes each of their s(i) exactly against all N rows, so the mean is unbiased; the
    reported ``error_bound`` is the Hoeffding half-width at ``confidence``.
    """
    matrix = _as_matrix(X)
    codes_in = np.asarray(labels).ravel()
    n = matrix.shape[0]
    if codes_in.shape[0] != n:
        raise DataError(f"silhouette: {n} rows but {codes_in.shape[0]} labels")
    _, codes = np.unique(codes_in, return_inverse=True)
    codes = codes.ravel()
    sizes = np.bincount(codes).astype(np.float64)
    k = sizes.shape[0]
    if k < 2 or k >= n:
        raise DataError(
            f"silhouette is undefined for {k} distinct label(s) on {n} rows: "
            "it needs at least 2 clusters and fewer clusters than rows"
        )

    if n <= exact_max_rows or sample_size >= n:
        values = _silhouette_samples(matrix, codes, sizes, np.arange(n))
        return SilhouetteResult(
            value=float(values.mean()),
            exact=True,
            n_rows=n,
            n_evaluated=n,
            error_bound=0.0,
            confidence=confidence,
            std_error=0.0,
        )

    if sample_size < 2:
        raise ValueError("sample_size must be at least 2")
    rng = np.random.default_rng(seed)
    # Sorted indices walk X in memory order; the order does not change the mean.
    query = np.sort(rng.choice(n, size=sample_size, replace=False))
    values = _silhouette_samples(matrix, codes, sizes, query)
    return SilhouetteResult(
        value=float(values.mean()),
        exact=False,
        n_rows=n,
        n_evaluated=sample_size,
        error_bound=hoeffding_bound(sample_size, confidence),
        confidence=confidence,
        std_error=float(values.std(ddof=1) / math.sqrt(sample_size)),
    )


# ------------------------------------------------------------------------ classification


def classification_metrics(
    y_true: Any, y_score: Any, y_pred: Any, *, positive_label: Any
) -> dict[str, float]:
    """ROC AUC (from scores), F1 and positive rate (for ``positive_label``), accuracy.

    Also ``predicted_classes``: how many distinct classes the predictions use (an int).
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    truth = np.asarray(y_true).ravel()
    score = np.asarray(y_score, dtype=np.float64).ravel()
    pred = np.asarray(y_pred).ravel()
    if not truth.shape[0] == score.shape[0] == pred.shape[0]:
        raise DataError(
            f"length mismatch: {truth.shape[0]} labels, {score.shape[0]} scores, "
            f"{pred.shape[0]} predictions"
        )
    if truth.shape[0] == 0:
        raise DataError("no held-out rows to evaluate")
    classes = np.unique(truth)
    if classes.shape[0] < 2:
        raise DataError(
            f"ROC AUC needs both classes in the held-out data; found only {classes[0]!r}"
        )
    if classes.shape[0] > 2:
        raise DataError(f"binary classification only; held-out data has {classes.shape[0]} classes")
    is_pos = truth == positive_label
    if not is_pos.any():
        raise DataError(
            f"positive_label {positive_label!r} is not among the held-out classes "
            f"{[c.item() if hasattr(c, 'item') else c for c in classes]}"
        )
    if not np.isfinite(score).all():
        raise DataError("scores contain NaN or infinity")
    pred_pos = pred == positive_label
    return {
        "roc_auc": float(roc_auc_score(is_pos, score)),
        "f1": float(f1_score(is_pos, pred_pos, zero_division=0.0)),
        "accuracy": float(accuracy_score(truth, pred)),
        "positive_rate": float(pred_pos.mean()),
        "predicted_classes": int(np.unique(pred).shape[0]),
    }


def positive_scores(model: Any, X: Any, positive_label: Any) -> np.ndarray:
    """Scores that grow with the positive class: predict_proba's column, else decision_function."""
    classes = list(getattr(model, "classes_", []))
    if positive_label not in classes:
        raise DataError(
            f"the model does not know positive_label {positive_label!r}; "
            f"its classes are {[_plain(c) for c in classes]}"
        )
    if len(classes) != 2:
        raise DataError(f"binary classification only; the model has {len(classes)} classes")
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, classes.index(positive_label)]
    if hasattr(model, "decision_function"):
        # For binary scikit-learn models, decision_function > 0 means classes_[1].
        score = np.asarray(model.decision_function(X), dtype=np.float64).ravel()
        return score if classes.index(positive_label) == 1 else -score
    raise DataError(f"{type(model).__name__} has neither predict_proba nor decision_function")


# -------------------------------------------------------------------------------- evaluate


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so details stay JSON-serialisable."""
    return value.item() if isinstance(value, np.generic) else value


def standardise(X: Any) -> tuple[np.ndarray, int]:
    """Z-score columns by the data's own mean/std; constant columns and missing values become 0.

    Returns the matrix and the number of missing values filled. Using the held-out rows' own
    statistics gives every model the same geometry, whatever scaling its pipeline learnt.
    """
    try:
        matrix = np.array(X, dtype=np.float64)  # a copy: never modify the caller's data
    except (TypeError, ValueError) as exc:
        raise DataError(f"clustering features must be numeric: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise DataError(f"need a non-empty 2-D feature matrix, got shape {matrix.shape}")
    matrix[np.isinf(matrix)] = np.nan
    missing = np.isnan(matrix)
    n_missing = int(missing.sum())
    all_missing = missing.all(axis=0)
    cols = ~all_missing
    mean = np.zeros(matrix.shape[1])
    std = np.zeros(matrix.shape[1])
    if cols.any():
        mean[cols] = np.nanmean(matrix[:, cols], axis=0)
        std[cols] = np.nanstd(matrix[:, cols], axis=0)
    matrix -= mean
    scale = np.where(std > 0, std, 1.0)
    matrix /= scale
    matrix[:, std == 0] = 0.0
    matrix[missing] = 0.0
    return matrix, n_missing


def _one_hot(X: Any) -> Any:
    """Categorical columns become 0/1 dummies so the silhouette space is numeric; both models
    see the same held-out rows, hence the same dummies."""
    if not hasattr(X, "select_dtypes"):
        return X
    import pandas as pd

    cats = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    return pd.get_dummies(X, columns=cats, dtype=float) if cats else X


def _evaluate_clustering(model: Any, X: Any, spec: EvaluationSpec) -> Evaluation:
    labels = np.asarray(model.predict(X)).ravel()
    n = labels.shape[0]
    values, counts = np.unique(labels, return_counts=True)
    sizes = {str(_plain(v)): int(c) for v, c in zip(values, counts, strict=True)}
    details: dict[str, Any] = {"n_rows": n, "n_clusters": len(values), "cluster_sizes": sizes}
    if len(values) < 2:
        where = f"cluster {_plain(values[0])!r}" if len(values) else "no cluster"
        problem = f"all {n} rows are in {where}: silhouette is undefined"
        return Evaluation(metrics={}, details=details, sane=False, problems=[problem])
    if len(values) >= n:
        problem = f"{len(values)} clusters for {n} rows: every row is its own cluster"
        return Evaluation(metrics={}, details=details, sane=False, problems=[problem])

    space, n_missing = standardise(_one_hot(X))
    if space.shape[0] != n:
        raise DataError(f"the model returned {n} labels for {space.shape[0]} rows")
    result = silhouette(
        space,
        labels,
        exact_max_rows=spec.silhouette_exact_max_rows,
        sample_size=spec.silhouette_sample_size,
        confidence=spec.silhouette_confidence,
        seed=spec.seed,
    )
    details.update(result.to_dict())
    details["space"] = "holdout-standardised"
    details["missing_values_filled"] = n_missing
    return Evaluation(metrics={"silhouette": result.value}, details=details)


def _evaluate_classification(model: Any, X: Any, y: Any, positive_label: Any) -> Evaluation:
    if y is None:
        raise DataError("classification evaluation needs the held-out target values")
    pred = np.asarray(model.predict(X)).ravel()
    score = np.asarray(positive_scores(model, X, positive_label), dtype=np.float64).ravel()
    truth = np.asarray(y).ravel()
    pred_values, pred_counts = np.unique(pred, return_counts=True)
    true_values, true_counts = np.unique(truth, return_counts=True)
    details: dict[str, Any] = {
        "n_rows": int(truth.shape[0]),
        "positive_label": _plain(positive_label),
        "class_counts": {
            str(_plain(v)): int(c) for v, c in zip(true_values, true_counts, strict=True)
        },
        "prediction_counts": {
            str(_plain(v)): int(c) for v, c in zip(pred_values, pred_counts, strict=True)
        },
    }
    problems: list[str] = []
    if not np.isfinite(score).all():
        # A model that emits NaN scores is broken, not the data: reject it, do not crash.
        problems.append("the model produced NaN or infinite scores")
        return Evaluation(metrics={}, details=details, sane=False, problems=problems)
    computed = classification_metrics(truth, score, pred, positive_label=positive_label)
    details["predicted_classes"] = int(computed.pop("predicted_classes"))
    if len(pred_values) == 1:
        problems.append(f"all predictions are {_plain(pred_values[0])!r}")
    return Evaluation(metrics=computed, details=details, sane=not problems, problems=problems)


def evaluate(
    model: Any,
    task: Literal["clustering", "classification"],
    X: Any,
    y: Any = None,
    *,
    spec: EvaluationSpec,
    positive_label: Any = 1,
) -> Evaluation:
    """Score a fitted ``model`` on held-out ``X`` (and ``y`` for classification).

    ``X`` goes to the model as given (DataFrame or array). A model whose output makes the metric
    meaningless (one cluster, one predicted class, NaN scores) comes back with ``sane=False`` and
    a problem message; bad *data* (e.g. a hold-out with a single class) raises DataError.
    """
    if task == "clustering":
        return _evaluate_clustering(model, X, spec)
    if task == "classification":
        return _evaluate_classification(model, X, y, positive_label)
    raise ConfigError(f"unknown task {task!r}; expected 'clustering' or 'classification'")
