"""Score a fitted model on held-out rows: silhouette (clustering), ROC AUC & co. (classification).

Pure core: numpy only at import time; scikit-learn is imported inside the functions that need it.
No Google imports, no I/O. The candidate and the champion are both passed through
:func:`evaluate` on the *same* held-out rows, so their numbers are directly comparable.

Silhouette is computed here rather than with ``sklearn.metrics.silhouette_score`` so that memory
stays bounded (a fixed distance buffer whatever the number of rows) and so that large hold-outs can
be scored on a uniform sample with a stated error bound instead of an O(N²) pass. The per-row
values behind a silhouette travel with its :class:`Evaluation` (never serialised), so that
:func:`paired_difference` can compare a candidate with the champion row by row over the same
sampled rows (docs/evaluation.md).

A classifier's details also carry what its version report draws (:func:`classifier_diagnostics`):
ROC and precision-recall curves, the confusion matrix at the model's decision rule, a reliability
curve and feature importance, each bounded to a few KB of JSON.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
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

    ``exact`` means every row was a query row (all bounds and ``std_error`` are 0). Otherwise
    ``value`` is the mean of ``n_evaluated`` exactly computed s(i) over a uniform sample, and
    ``|value - exact value| <= error_bound`` with probability at least ``confidence``:
    ``error_bound`` is the empirical Bernstein half-width (:func:`empirical_bernstein_bound`),
    ``normal_bound`` the normal-approximation one (:func:`normal_bound`) and ``hoeffding_bound``
    the variance-blind Hoeffding one, kept for comparison. ``rows`` and ``values`` are the
    evaluated row indices and their s(i): not part of :meth:`to_dict` or of equality.
    """

    value: float
    exact: bool
    n_rows: int
    n_evaluated: int
    error_bound: float
    confidence: float
    std_error: float
    normal_bound: float = 0.0
    hoeffding_bound: float = 0.0
    bound_method: str = "exact"
    rows: np.ndarray = field(
        default_factory=lambda: np.empty(0, np.intp), compare=False, repr=False
    )
    values: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "exact": self.exact,
            "n_rows": self.n_rows,
            "n_evaluated": self.n_evaluated,
            "error_bound": self.error_bound,
            "confidence": self.confidence,
            "std_error": self.std_error,
            "normal_bound": self.normal_bound,
            "hoeffding_bound": self.hoeffding_bound,
            "bound_method": self.bound_method,
        }


@dataclass(frozen=True)
class RowValues:
    """The per-row values a metric is the mean of, and which rows of which data they are for.

    ``digest`` identifies the (standardised) hold-out matrix, ``rows`` the evaluated rows of it;
    two evaluations are comparable row by row only when both match. ``partition`` identifies the
    model's assignment of *every* row, up to renaming the clusters: two models with the same
    partition of the same data have the same silhouette, exactly. Kept in memory only.
    """

    metric: str
    rows: np.ndarray
    values: np.ndarray
    n_rows: int
    digest: str
    confidence: float
    #: Range of one value (b − a): 2 for silhouette, whose values lie in [−1, 1].
    value_range: float
    partition: str = ""


@dataclass(frozen=True)
class PairedDifference:
    """candidate − champion, averaged over the same evaluated rows, with its own bounds.

    ``difference`` is the mean of the per-row differences (which equals the difference of the two
    means); with probability at least ``confidence`` it lies within ``error_bound`` (empirical
    Bernstein) of the difference over all ``n_rows`` rows. ``normal_bound`` is the
    normal-approximation half-width. ``n_differing`` counts evaluated rows whose values differ.
    """

    metric: str
    difference: float
    exact: bool
    n_rows: int
    n_evaluated: int
    n_differing: int
    error_bound: float
    normal_bound: float
    std_error: float
    confidence: float
    bound_method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """One model's score on the held-out rows. ``details`` is JSON-serialisable."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    sane: bool = True
    problems: list[str] = field(default_factory=list)
    #: Per-row values of the gate metric (clustering: s(i)), for :func:`paired_difference`.
    row_values: RowValues | None = field(default=None, compare=False, repr=False)

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


def _check(n: int, confidence: float) -> None:
    if n < 2:
        raise ValueError("n must be at least 2")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")


def hoeffding_bound(n: int, confidence: float) -> float:
    """Half-width t with P(|mean - mu| >= t) <= 1 - confidence for n values in [-1, 1].

    Hoeffding: P(|mean - mu| >= t) <= 2 exp(-2 n t² / (b - a)²) with b - a = 2. Sampling without
    replacement from a finite population only tightens it (Hoeffding 1963 §6; Serfling 1974).
    It ignores the spread of the values, hence ±0.033 at n = 10,000 and 99 % whatever the data:
    reported for comparison only; see :func:`empirical_bernstein_bound`.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    return math.sqrt(2.0 * math.log(2.0 / (1.0 - confidence)) / n)


def empirical_bernstein_bound(
    variance: float, n: int, confidence: float, *, value_range: float = 2.0
) -> float:
    """Two-sided empirical Bernstein half-width for the mean of n values in a range of width R.

    Maurer & Pontil (2009), "Empirical Bernstein Bounds and Sample Variance Penalization",
    Theorem 4: for n >= 2 independent values in [0, 1] and δ > 0, with probability >= 1 − δ,
    E[Z] − mean(Z) <= sqrt(2 V ln(2/δ) / n) + 7 ln(2/δ) / (3(n − 1)), V the sample variance
    (ddof=1). Rescaled to a range R and applied to both sides at δ/2 each:

        |mean − μ| <= sqrt(2 V ln(4/δ) / n) + 7 R ln(4/δ) / (3(n − 1)),  δ = 1 − confidence.

    ``variance`` is the sample variance (ddof=1) of the values themselves (not rescaled).
    """
    _check(n, confidence)
    if not variance >= 0.0 or not value_range > 0.0:
        raise ValueError("variance must be >= 0 and value_range > 0")
    log_term = math.log(4.0 / (1.0 - confidence))
    return math.sqrt(2.0 * variance * log_term / n) + 7.0 * value_range * log_term / (3.0 * (n - 1))


def normal_bound(std: float, n: int, confidence: float, *, population: int | None = None) -> float:
    """z · s / √n, the two-sided normal-approximation (CLT) half-width at ``confidence``.

    ``std`` is the sample standard deviation (ddof=1). With ``population`` N (rows drawn without
    replacement from N), the finite-population correction √((N − n)/(N − 1)) applies
    (Cochran, Sampling Techniques, 1977, §2.5). Asymptotic: no finite-sample guarantee.
    """
    _check(n, confidence)
    if not std >= 0.0:
        raise ValueError("std must be >= 0")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    fpc = 1.0
    if population is not None:
        if population < n:
            raise ValueError("population must be at least n")
        fpc = math.sqrt((population - n) / (population - 1))
    return z * std * fpc / math.sqrt(n)


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
    reported ``error_bound`` is the empirical Bernstein half-width at ``confidence``
    (:func:`empirical_bernstein_bound`, values in [−1, 1]).
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
        everything = np.arange(n)
        values = _silhouette_samples(matrix, codes, sizes, everything)
        return SilhouetteResult(
            value=float(values.mean()),
            exact=True,
            n_rows=n,
            n_evaluated=n,
            error_bound=0.0,
            confidence=confidence,
            std_error=0.0,
            rows=everything,
            values=values,
        )

    if sample_size < 2:
        raise ValueError("sample_size must be at least 2")
    rng = np.random.default_rng(seed)
    # Sorted indices walk X in memory order; the order does not change the mean.
    query = np.sort(rng.choice(n, size=sample_size, replace=False))
    values = _silhouette_samples(matrix, codes, sizes, query)
    std = float(values.std(ddof=1))
    return SilhouetteResult(
        value=float(values.mean()),
        exact=False,
        n_rows=n,
        n_evaluated=sample_size,
        error_bound=empirical_bernstein_bound(std * std, sample_size, confidence),
        confidence=confidence,
        std_error=std / math.sqrt(sample_size),
        normal_bound=normal_bound(std, sample_size, confidence, population=n),
        hoeffding_bound=hoeffding_bound(sample_size, confidence),
        bound_method="empirical_bernstein",
        rows=query,
        values=values,
    )


def paired_difference(candidate: Evaluation, champion: Evaluation) -> PairedDifference | None:
    """candidate − champion, row by row over the rows both were evaluated on, with its bound.

    None unless both evaluations carry per-row values (:attr:`Evaluation.row_values`) for the
    same metric, over the same rows of the same hold-out data (same digest, same row indices):
    then each row's difference is of two exact per-row values for one and the same point, and
    their mean estimates the difference over all rows (docs/evaluation.md). Exact (every row
    evaluated, or both models group every row identically): the difference is exact and the
    bounds are 0.
    """
    a, b = candidate.row_values, champion.row_values
    if a is None or b is None:
        return None
    same = (
        a.metric == b.metric
        and a.digest == b.digest
        and a.n_rows == b.n_rows
        and a.confidence == b.confidence
        and a.value_range == b.value_range
        and np.array_equal(a.rows, b.rows)
    )
    if not same:
        return None
    diff = a.values - b.values
    n = int(diff.shape[0])
    if a.partition and a.partition == b.partition:
        # Same data, same grouping of all N rows (sampled or not): the same silhouette, exactly.
        return PairedDifference(
            metric=a.metric,
            difference=0.0,
            exact=True,
            n_rows=a.n_rows,
            n_evaluated=n,
            n_differing=0,
            error_bound=0.0,
            normal_bound=0.0,
            std_error=0.0,
            confidence=a.confidence,
            bound_method="identical_partition",
        )
    exact = n == a.n_rows
    std = 0.0 if exact else float(diff.std(ddof=1))
    return PairedDifference(
        metric=a.metric,
        difference=float(diff.mean()),
        exact=exact,
        n_rows=a.n_rows,
        n_evaluated=n,
        n_differing=int(np.count_nonzero(diff)),
        # Each difference lies in [−R, R]: a range of 2R.
        error_bound=0.0
        if exact
        else empirical_bernstein_bound(std * std, n, a.confidence, value_range=2 * a.value_range),
        normal_bound=0.0 if exact else normal_bound(std, n, a.confidence, population=a.n_rows),
        std_error=std / math.sqrt(n),
        confidence=a.confidence,
        bound_method="exact" if exact else "empirical_bernstein",
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


# ------------------------------------------------------------------ classifier diagnostics
#
# What the version report draws for a classifier (ROC and precision-recall curves, the confusion
# matrix at the model's own decision rule, a reliability curve, feature importance), computed on
# the held-out rows at evaluation time and stored in the manifest's evaluation details: small,
# bounded JSON (each curve at most CURVE_POINTS points, values rounded to DIGITS decimals).

#: Most points kept per stored curve (ROC, precision-recall).
CURVE_POINTS = 100
#: Decimals kept for curve coordinates: far below a pixel of any chart.
DIGITS = 4
#: Equal-width bins over [0, 1] of the reliability (calibration) curve.
CALIBRATION_BINS = 10
#: Features listed in the stored importance, largest magnitude first.
IMPORTANCE_FEATURES = 30
#: Permutation importance (estimators without their own) costs one prediction on the sample per
#: shuffle: at most PERMUTATION_ROWS held-out rows, up to PERMUTATION_REPEATS shuffles per feature
#: within a budget of PERMUTATION_PREDICTIONS predictions (at least one shuffle each), and not
#: attempted beyond PERMUTATION_MAX_FEATURES input features.
PERMUTATION_ROWS = 300
PERMUTATION_REPEATS = 3
PERMUTATION_PREDICTIONS = 60
PERMUTATION_MAX_FEATURES = 60
#: Longest feature name stored (names of one-hot columns carry category values).
NAME_CHARS = 200


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), DIGITS) for v in values]


def thin_curve(xs: Any, ys: Any, max_points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of a curve, spread evenly along its length (both ends kept),
    rounded to :data:`DIGITS` decimals. A curve with few points comes back whole."""
    x, y = np.asarray(xs, dtype=np.float64).ravel(), np.asarray(ys, dtype=np.float64).ravel()
    n = x.shape[0]
    if n > max_points >= 2:
        along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        targets = np.linspace(0.0, along[-1], max_points - 1)
        idx = np.clip(np.searchsorted(along, targets, side="left"), 0, n - 1)
        keep = np.unique(np.concatenate([[0], idx, [n - 1]]))
        x, y = x[keep], y[keep]
    return _rounded(x), _rounded(y)


def decision_rule(model: Any) -> tuple[float | None, str]:
    """The threshold on the positive class's score behind ``model.predict``, as far as the model
    says, and the rule in words. The confusion matrix itself always comes from ``predict``."""
    for attr, what in (("best_threshold_", "tuned"), ("threshold", "fixed")):
        value = getattr(model, attr, None)
        if isinstance(value, int | float | np.floating) and not isinstance(value, bool):
            return float(value), f"predict: {what} threshold {float(value):g} ({attr})"
    if hasattr(model, "predict_proba"):
        return 0.5, "predict: the more probable class (probability threshold 0.5)"
    return 0.0, "predict: the sign of decision_function (threshold 0)"


def confusion_at_rule(
    truth: np.ndarray, pred: np.ndarray, *, positive_label: Any, negative_label: Any
) -> dict[str, Any]:
    """Counts of the 2×2 confusion matrix of ``pred`` (the model's decisions) against ``truth``."""
    actual, said = truth == positive_label, pred == positive_label
    return {
        "positive_label": _plain(positive_label),
        "negative_label": _plain(negative_label),
        "tp": int(np.count_nonzero(actual & said)),
        "fp": int(np.count_nonzero(~actual & said)),
        "fn": int(np.count_nonzero(actual & ~said)),
        "tn": int(np.count_nonzero(~actual & ~said)),
    }


def reliability(
    is_pos: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Reliability curve over equal-width probability bins: per non-empty bin, the mean predicted
    probability, the observed share of positives and the row count; and the Brier score."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(is_pos, dtype=np.float64)
    # Bin i holds (edge_i, edge_i+1], the first [0, edge_1]: sklearn's calibration_curve bins.
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p, side="left")
    count = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=p, minlength=bins)
    observed = np.bincount(which, weights=hit, minlength=bins)
    keep = count > 0
    return {
        "bins": bins,
        "predicted": _rounded(predicted[keep] / count[keep]),
        "observed": _rounded(observed[keep] / count[keep]),
        "count": [int(c) for c in count[keep]],
        "brier": round(float(np.mean((p - hit) ** 2)), 6),
    }


def _input_names(X: Any) -> list[str]:
    columns = getattr(X, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    return [f"x{i}" for i in range(np.shape(X)[1])]


def _final_step(model: Any) -> tuple[Any, Any]:
    """The last estimator of a pipeline (else the model itself) and the transforms before it."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return steps[-1][1], (model[:-1] if len(steps) > 1 else None)
    return model, None


def _names_after(transforms: Any, names: list[str], width: int) -> list[str] | None:
    """The names of the columns the final estimator sees, when the pipeline can say."""
    if transforms is None:
        return names if len(names) == width else None
    try:
        out = [str(n) for n in transforms.get_feature_names_out(names)]
    except (AttributeError, TypeError, ValueError):
        return None
    return out if len(out) == width else None


def _importance_entries(
    names: list[str], values: np.ndarray, stds: np.ndarray | None = None
) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(values), kind="stable")[:IMPORTANCE_FEATURES]
    out = []
    for i in order:
        entry: dict[str, Any] = {
            "name": names[i][:NAME_CHARS],
            "value": round(float(values[i]), 6),
        }
        if stds is not None:
            entry["std"] = round(float(stds[i]), 6)
        out.append(entry)
    return out


def _permutation_importance(
    model: Any, X: Any, is_pos: np.ndarray, positive_label: Any, seed: int
) -> dict[str, Any] | None:
    """Mean drop in ROC AUC when one input column is shuffled, on a small seeded sample."""
    from sklearn.metrics import roc_auc_score

    names = _input_names(X)
    if len(names) > PERMUTATION_MAX_FEATURES:
        return None
    rng = np.random.default_rng(seed)
    n = int(is_pos.shape[0])
    take = np.sort(rng.choice(n, size=min(n, PERMUTATION_ROWS), replace=False))
    hits = is_pos[take]
    if hits.all() or not hits.any():
        return None
    frame = hasattr(X, "iloc")
    sample: Any = X.iloc[take] if frame else np.asarray(X)[take]
    base = roc_auc_score(hits, positive_scores(model, sample, positive_label))
    repeats = max(1, min(PERMUTATION_REPEATS, PERMUTATION_PREDICTIONS // len(names)))
    drops = np.zeros((len(names), repeats))
    keys = list(X.columns) if frame else [(slice(None), j) for j in range(len(names))]
    for j, key in enumerate(keys):
        column = sample[key].to_numpy() if frame else sample[key]
        for r in range(repeats):
            shuffled = sample.copy()
            shuffled[key] = column[rng.permutation(len(column))]
            score = positive_scores(model, shuffled, positive_label)
            drops[j, r] = base - roc_auc_score(hits, score)
    return {
        "kind": "permutation",
        "n_features": len(names),
        "rows": int(take.shape[0]),
        "repeats": repeats,
        "features": _importance_entries(names, drops.mean(axis=1), drops.std(axis=1)),
    }


def feature_importance(
    model: Any, X: Any, is_pos: np.ndarray, positive_label: Any, *, seed: int = 0
) -> dict[str, Any] | None:
    """What drives the model, largest first (at most :data:`IMPORTANCE_FEATURES` entries).

    The final estimator's ``feature_importances_`` (kind ``impurity``) or, for a linear model, its
    ``coef_`` (kind ``coefficient``, signed toward ``positive_label``, on the scale of the
    estimator's own inputs), named through the pipeline (``get_feature_names_out``). A model with
    neither, or whose columns cannot be named, gets permutation importance on a small sample of
    the held-out rows (kind ``permutation``). None when nothing can be computed.
    """
    names = _input_names(X)
    final, transforms = _final_step(model)
    raw = getattr(final, "feature_importances_", None)
    kind = "impurity"
    if raw is None:
        coef = getattr(final, "coef_", None)
        if coef is not None and (np.ndim(coef) == 1 or np.shape(coef)[0] == 1):
            raw, kind = coef, "coefficient"
    if raw is not None:
        values = np.asarray(raw, dtype=np.float64).ravel()
        classes = list(getattr(final, "classes_", []))
        if kind == "coefficient" and classes[:1] == [positive_label]:
            values = -values  # a binary coef_ points toward classes_[1]
        labels = _names_after(transforms, names, values.shape[0])
        if labels is not None and np.isfinite(values).all():
            return {
                "kind": kind,
                "n_features": int(values.shape[0]),
                "features": _importance_entries(labels, values),
            }
    try:
        return _permutation_importance(model, X, is_pos, positive_label, seed)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None


def classifier_diagnostics(
    model: Any,
    X: Any,
    truth: np.ndarray,
    score: np.ndarray,
    pred: np.ndarray,
    *,
    positive_label: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """The report's classifier sections, as JSON-ready details (the module's comment above):
    ``roc``, ``pr``, ``confusion``, ``calibration`` (None unless the scores are probabilities)
    and ``importance`` (None when it cannot be computed)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    is_pos = truth == positive_label
    fpr, tpr, _ = roc_curve(is_pos, score)
    precision, recall, _ = precision_recall_curve(is_pos, score)
    roc_x, roc_y = thin_curve(fpr, tpr)
    # sklearn lists precision-recall by rising threshold (recall falling): store recall rising.
    pr_x, pr_y = thin_curve(recall[::-1], precision[::-1])
    classes = [c for c in getattr(model, "classes_", []) if c != positive_label]
    negative = classes[0] if classes else next((v for v in truth if v != positive_label), None)
    threshold, rule = decision_rule(model)
    confusion = confusion_at_rule(
        truth, pred, positive_label=positive_label, negative_label=negative
    )
    return {
        "roc": {"fpr": roc_x, "tpr": roc_y},
        "pr": {
            "recall": pr_x,
            "precision": pr_y,
            "average_precision": round(float(average_precision_score(is_pos, score)), 6),
            "prevalence": round(float(is_pos.mean()), 6),
        },
        "confusion": {**confusion, "threshold": threshold, "rule": rule},
        "calibration": reliability(is_pos, score) if hasattr(model, "predict_proba") else None,
        "importance": feature_importance(model, X, is_pos, positive_label, seed=seed),
    }


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
    rows = RowValues(
        metric="silhouette",
        rows=result.rows,
        values=result.values,
        n_rows=n,
        digest=_digest(space),
        confidence=result.confidence,
        value_range=2.0,
        partition=_partition_digest(labels),
    )
    return Evaluation(metrics={"silhouette": result.value}, details=details, row_values=rows)


def _partition_digest(labels: np.ndarray) -> str:
    """Identifies a grouping of the rows whatever the cluster names: clusters are renumbered in
    order of first appearance before hashing."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    canonical = np.argsort(np.argsort(first))[inverse.ravel()].astype(np.int64)
    return hashlib.blake2b(canonical.tobytes(), digest_size=16).hexdigest()


def _digest(matrix: np.ndarray) -> str:
    """Identifies a feature matrix: equal digests mean the same rows in the same order."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(matrix.shape).encode())
    h.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    return h.hexdigest()


def _evaluate_classification(
    model: Any, X: Any, y: Any, positive_label: Any, *, seed: int = 0, diagnostics: bool = True
) -> Evaluation:
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
    if diagnostics:
        details.update(
            classifier_diagnostics(
                model, X, truth, score, pred, positive_label=positive_label, seed=seed
            )
        )
    return Evaluation(metrics=computed, details=details, sane=not problems, problems=problems)


def evaluate(
    model: Any,
    task: Literal["clustering", "classification"],
    X: Any,
    y: Any = None,
    *,
    spec: EvaluationSpec,
    positive_label: Any = 1,
    diagnostics: bool = True,
) -> Evaluation:
    """Score a fitted ``model`` on held-out ``X`` (and ``y`` for classification).

    ``diagnostics=False`` leaves out the report's curves, confusion matrix and importances (the
    monitor only needs the metrics).

    ``X`` goes to the model as given (DataFrame or array). A model whose output makes the metric
    meaningless (one cluster, one predicted class, NaN scores) comes back with ``sane=False`` and
    a problem message; bad *data* (e.g. a hold-out with a single class) raises DataError. A
    classifier's details include :func:`classifier_diagnostics` (curves, confusion, importance).
    """
    if task not in ("clustering", "classification"):
        raise ConfigError(f"unknown task {task!r}; expected 'clustering' or 'classification'")
    try:
        if task == "clustering":
            return _evaluate_clustering(model, X, spec)
        return _evaluate_classification(
            model, X, y, positive_label, seed=spec.seed, diagnostics=diagnostics
        )
    except ValueError as exc:
        # scikit-learn refuses rows the model cannot take (NaN into a pipeline trained without
        # an imputer, an unseen column layout): the same rows fail the same way every time, so
        # a permanent DataError (a champion then "could not be evaluated"), never a retry loop.
        raise DataError(f"the model cannot score these rows: {exc}"[:2000]) from exc
