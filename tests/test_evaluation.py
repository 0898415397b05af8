"""warden.ml.evaluation on real scikit-learn data: silhouette exactness, sampling bounds and their
coverage, paired differences, metrics."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_iris, load_wine, make_blobs
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    roc_auc_score,
    silhouette_samples,
    silhouette_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import warden.ml.evaluation as ev
from warden.config import EvaluationSpec
from warden.errors import DataError
from warden.ml.evaluation import (
    Evaluation,
    block_shape,
    classification_metrics,
    empirical_bernstein_bound,
    evaluate,
    hoeffding_bound,
    normal_bound,
    paired_difference,
    silhouette,
)

SPEC = EvaluationSpec()


class FixedLabels:
    """A 'clusterer' whose assignment is given, to isolate what evaluate does with X."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def predict(self, X: object) -> np.ndarray:
        return self.labels


@pytest.fixture(scope="module")
def iris_kmeans() -> tuple[np.ndarray, np.ndarray]:
    X = load_iris().data
    return X, KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(X)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    return data.data, data.target


# ------------------------------------------------------------------------- exact silhouette


def test_exact_silhouette_matches_sklearn_on_iris_kmeans(iris_kmeans) -> None:
    X, labels = iris_kmeans
    result = silhouette(X, labels)
    assert result.exact
    assert result.n_rows == result.n_evaluated == 150
    assert result.error_bound == 0.0
    assert result.std_error == 0.0
    assert result.value == pytest.approx(silhouette_score(X, labels), abs=1e-9)


def test_exact_silhouette_matches_sklearn_on_wine() -> None:
    wine = load_wine()
    expected = silhouette_score(wine.data, wine.target)
    assert silhouette(wine.data, wine.target).value == pytest.approx(expected, abs=1e-9)
    # String labels are just names: same answer.
    names = np.asarray(wine.target_names)[wine.target]
    assert silhouette(wine.data, names).value == pytest.approx(expected, abs=1e-9)


def test_singleton_clusters_score_zero_like_sklearn(iris_kmeans) -> None:
    X, labels = iris_kmeans
    labels = labels.copy()
    labels[[0, 60]] = [7, 8]  # two points alone in their own clusters
    expected = silhouette_score(X, labels)
    assert silhouette(X, labels).value == pytest.approx(expected, abs=1e-9)
    assert silhouette_samples(X, labels)[[0, 60]].tolist() == [0.0, 0.0]


def test_tiny_buffer_forces_many_blocks_and_gives_the_same_answer(iris_kmeans, monkeypatch) -> None:
    X, labels = iris_kmeans
    # 40 float64 per block: many query and reference blocks, self-distances across block edges.
    monkeypatch.setattr(ev, "DISTANCE_BUFFER_BYTES", 8 * 40)
    assert block_shape(150, 150, 3) == (3, 13)
    assert silhouette(X, labels).value == pytest.approx(silhouette_score(X, labels), abs=1e-9)


def test_each_sampled_row_is_scored_exactly_against_all_rows(iris_kmeans) -> None:
    X, labels = iris_kmeans
    _, codes = np.unique(labels, return_inverse=True)
    sizes = np.bincount(codes).astype(float)
    query = np.array([3, 50, 51, 149])
    got = ev._silhouette_samples(np.ascontiguousarray(X, float), codes, sizes, query)
    np.testing.assert_allclose(got, silhouette_samples(X, labels)[query], rtol=0, atol=1e-12)


@pytest.mark.parametrize("labels", [np.zeros(150), np.arange(150)], ids=["one", "all-distinct"])
def test_silhouette_undefined_raises_data_error(iris_kmeans, labels) -> None:
    X, _ = iris_kmeans
    with pytest.raises(DataError, match="silhouette is undefined"):
        silhouette(X, labels)


def test_silhouette_rejects_non_finite_features(iris_kmeans) -> None:
    X, labels = iris_kmeans
    X = X.copy()
    X[4, 2] = np.nan
    with pytest.raises(DataError, match="finite"):
        silhouette(X, labels)


# ---------------------------------------------------------------------- sampled silhouette


@pytest.fixture(scope="module")
def blobs_12k() -> tuple[np.ndarray, np.ndarray, float]:
    # Just over the 10,000-row exact limit: the smallest hold-out that samples 10,000 rows, and an
    # exact reference that costs ~2 s (30,000 rows took ~15 s for the same assertions).
    X, y = make_blobs(n_samples=12_000, centers=4, n_features=3, cluster_std=2.0, random_state=0)
    exact = silhouette(X, y, exact_max_rows=12_000)
    assert exact.exact
    return X, y, exact.value


def test_sampled_silhouette_lands_within_its_error_bound(blobs_12k) -> None:
    X, y, exact = blobs_12k
    result = silhouette(X, y, exact_max_rows=10_000, sample_size=10_000, confidence=0.99, seed=0)
    assert not result.exact
    assert (result.n_rows, result.n_evaluated) == (12_000, 10_000)
    assert result.bound_method == "empirical_bernstein"
    variance = float(np.var(result.values, ddof=1))
    assert result.error_bound == pytest.approx(empirical_bernstein_bound(variance, 10_000, 0.99))
    # The variance-blind Hoeffding figure is still reported; it is three times wider here
    # (0.0326 against 0.0108).
    assert round(result.hoeffding_bound, 4) == 0.0326
    assert result.error_bound < result.hoeffding_bound / 2
    assert abs(result.value - exact) <= result.error_bound
    # The normal-approximation bound is tighter still, and honest here too.
    assert 0 < result.normal_bound < result.error_bound
    assert abs(result.value - exact) <= result.normal_bound
    assert 0 < result.std_error < result.normal_bound
    # The evaluated rows and their values come along (for paired comparisons), not serialised.
    assert result.values.shape == result.rows.shape == (10_000,)
    assert result.value == pytest.approx(result.values.mean())
    assert "values" not in result.to_dict()
    assert "rows" not in result.to_dict()


def test_reported_bounds_cover_the_exact_silhouette_over_200_draws() -> None:
    """Coverage at the default confidence (99 %): 200 independent uniform samples of 300 rows
    from 1,500 (seeds 0-199); the exact silhouette must lie within the reported bound in at
    least 97 % of them (nominal 99 % minus a 2-point tolerance; binomial sd ≈ 0.7 points)."""
    X, y = make_blobs(n_samples=1_500, centers=4, n_features=3, cluster_std=2.0, random_state=0)
    truth = silhouette_score(X, y)  # scikit-learn's, independent of the code under test
    draws = [silhouette(X, y, exact_max_rows=100, sample_size=300, seed=s) for s in range(200)]
    errors = np.array([abs(r.value - truth) for r in draws])
    bernstein = np.array([r.error_bound for r in draws])
    normal = np.array([r.normal_bound for r in draws])
    assert np.mean(errors <= bernstein) >= 0.97
    assert np.mean(errors <= normal) >= 0.97
    # Narrower than Hoeffding at the same n, and the normal bound narrower still.
    assert bernstein.max() < hoeffding_bound(300, 0.99)
    assert normal.max() < bernstein.min()
    # Calibration, not just width: rescaled to 90 %, the reported normal bound misses about one
    # draw in ten (a bound that is merely wide would cover nearly all of them).
    at_90 = normal * NormalDist().inv_cdf(0.95) / NormalDist().inv_cdf(0.995)
    assert 0.85 <= np.mean(errors <= at_90) <= 0.95


def test_sampled_silhouette_is_reproducible_by_seed(blobs_12k) -> None:
    X, y, _ = blobs_12k
    a = silhouette(X, y, sample_size=500, seed=1)
    b = silhouette(X, y, sample_size=500, seed=1)
    c = silhouette(X, y, sample_size=500, seed=2)
    assert a == b
    assert a.value != c.value


def test_sample_as_large_as_the_data_is_exact(iris_kmeans) -> None:
    X, labels = iris_kmeans
    result = silhouette(X, labels, exact_max_rows=100, sample_size=150)
    assert result.exact
    assert result.value == pytest.approx(silhouette_score(X, labels), abs=1e-9)


def test_hoeffding_bound_formula() -> None:
    assert hoeffding_bound(10_000, 0.99) == pytest.approx(0.032552, abs=1e-6)
    assert hoeffding_bound(2_500, 0.95) == pytest.approx(math.sqrt(2 * math.log(40) / 2_500))
    # Four times the rows, half the width.
    assert hoeffding_bound(40_000, 0.99) == pytest.approx(hoeffding_bound(10_000, 0.99) / 2)


def test_empirical_bernstein_bound_formula() -> None:
    # Maurer & Pontil (2009) Thm 4, both sides at δ/2: sqrt(2 V ln(4/δ)/n) + 7 R ln(4/δ)/(3(n-1)).
    log_term = math.log(4 / 0.01)
    expected = math.sqrt(2 * 0.04 * log_term / 10_000) + 7 * 2 * log_term / (3 * 9_999)
    assert empirical_bernstein_bound(0.04, 10_000, 0.99) == pytest.approx(expected)
    assert empirical_bernstein_bound(0.04, 10_000, 0.99) == pytest.approx(0.009720, abs=1e-6)
    # No spread: only the range term is left; it scales with the range.
    assert empirical_bernstein_bound(0.0, 10_000, 0.99, value_range=4.0) == pytest.approx(
        28 * log_term / (3 * 9_999)
    )
    # With the spread of a real silhouette it beats Hoeffding from a few hundred rows on; with
    # very few rows the range term makes it the wider of the two.
    assert empirical_bernstein_bound(0.04, 300, 0.99) < hoeffding_bound(300, 0.99)
    assert empirical_bernstein_bound(0.04, 100, 0.99) > hoeffding_bound(100, 0.99)
    with pytest.raises(ValueError, match="at least 2"):
        empirical_bernstein_bound(0.04, 1, 0.99)


def test_normal_bound_formula() -> None:
    assert normal_bound(0.2, 10_000, 0.95) == pytest.approx(1.959964 * 0.2 / 100, rel=1e-6)
    # Finite-population correction: sampling half the population.
    assert normal_bound(0.2, 10_000, 0.95, population=20_000) == pytest.approx(
        1.959964 * 0.2 / 100 * math.sqrt(10_000 / 19_999), rel=1e-6
    )
    assert normal_bound(0.2, 100, 0.95, population=100) == 0.0


# --------------------------------------------------------------------------- memory bound


@pytest.mark.parametrize(
    ("n_query", "n_ref", "k"),
    [(10_000, 30_000, 4), (10_000, 200_000, 8), (1, 5_000_000, 3), (50_000, 50_000, 20_000)],
)
def test_block_shape_keeps_every_work_array_within_16_mib(n_query, n_ref, k) -> None:
    budget = 16 * 1024 * 1024
    q, r = block_shape(n_query, n_ref, k)
    assert 1 <= q <= n_query
    assert 1 <= r <= n_ref
    assert q * r * 8 <= budget  # distances
    assert r * k * 8 <= budget  # reference one-hot
    assert q * k * 8 <= budget  # per-cluster sums


def test_block_shape_uses_the_budget() -> None:
    # Small problems go in one block; large ones fill (nearly) the whole buffer.
    assert block_shape(150, 150, 3) == (150, 150)
    q, r = block_shape(10_000, 30_000, 4)
    assert r == 30_000
    assert q * r * 8 > 16 * 1024 * 1024 - 30_000 * 8
    assert block_shape(10, 10, 10**9) == (1, 1)  # degrades, never zero


# ------------------------------------------------------------------- classification metrics


def test_classification_metrics_match_sklearn(cancer) -> None:
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    proba, pred = model.predict_proba(X), model.predict(X)
    got = classification_metrics(y, proba[:, 1], pred, positive_label=1)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, proba[:, 1]))
    assert got["f1"] == pytest.approx(f1_score(y, pred))
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["positive_rate"] == pytest.approx(np.mean(pred == 1))
    assert got["predicted_classes"] == 2
    assert isinstance(got["predicted_classes"], int)

    neg = classification_metrics(y, proba[:, 0], pred, positive_label=0)
    assert neg["f1"] == pytest.approx(f1_score(y, pred, pos_label=0))
    assert neg["positive_rate"] == pytest.approx(np.mean(pred == 0))


def test_classification_metrics_need_both_classes(cancer) -> None:
    _, y = cancer
    ones = y[y == 1]
    with pytest.raises(DataError, match="ROC AUC needs both classes in the held-out data"):
        classification_metrics(ones, np.linspace(0, 1, ones.size), ones, positive_label=1)


def test_classification_metrics_reject_multiclass_and_unknown_positive() -> None:
    y = load_iris().target
    with pytest.raises(DataError, match="binary"):
        classification_metrics(y, np.zeros(150), y, positive_label=1)
    with pytest.raises(DataError, match="positive_label 'yes'"):
        classification_metrics(y[:100], np.zeros(100), y[:100], positive_label="yes")


# ------------------------------------------------------------------------------- evaluate


def test_evaluate_classification_with_predict_proba_and_string_labels(cancer) -> None:
    X, y = cancer
    names = np.asarray(load_breast_cancer().target_names)[y]  # 'malignant' / 'benign'
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, names)
    result = evaluate(model, "classification", X, names, spec=SPEC, positive_label="malignant")
    col = list(model.classes_).index("malignant")
    expected = roc_auc_score(names == "malignant", model.predict_proba(X)[:, col])
    assert result.sane
    assert result.problems == []
    assert result.metrics["roc_auc"] == pytest.approx(expected)
    assert set(result.metrics) == {"roc_auc", "f1", "accuracy", "positive_rate"}
    assert result.details["predicted_classes"] == 2
    assert result.details["class_counts"] == {"benign": 357, "malignant": 212}
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize("positive_label", [0, 1])
def test_evaluate_classification_falls_back_to_decision_function(cancer, positive_label) -> None:
    X, y = cancer
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    assert not hasattr(model, "predict_proba")
    result = evaluate(model, "classification", X, y, spec=SPEC, positive_label=positive_label)
    score = model.decision_function(X)
    expected = roc_auc_score(y == positive_label, score if positive_label == 1 else -score)
    assert result.metrics["roc_auc"] == pytest.approx(expected)
    assert result.metrics["roc_auc"] > 0.9  # the sign is right for either positive label


def test_one_class_predictions_are_not_sane(cancer) -> None:
    X, y = cancer
    model = DummyClassifier(strategy="most_frequent").fit(X, y)
    result = evaluate(model, "classification", X, y, spec=SPEC, positive_label=1)
    assert not result.sane
    assert result.problems == ["all predictions are 1"]
    assert result.metrics["roc_auc"] == pytest.approx(0.5)
    assert result.metrics["positive_rate"] == 1.0


def test_evaluate_classification_needs_y(cancer) -> None:
    X, y = cancer
    model = LogisticRegression(max_iter=50).fit(X[:, :3], y)
    with pytest.raises(DataError, match="target"):
        evaluate(model, "classification", X[:, :3], None, spec=SPEC)


def test_evaluate_clustering_scores_in_the_standardised_holdout_space() -> None:
    iris = load_iris(as_frame=True)
    X = iris.data  # a DataFrame, passed to the model as given
    model = make_pipeline(StandardScaler(), KMeans(n_clusters=3, n_init=10, random_state=0))
    model.fit(X)
    labels = model.predict(X)
    result = evaluate(model, "clustering", X, spec=SPEC)
    expected = silhouette_score(StandardScaler().fit_transform(X), labels)
    assert result.sane
    assert result.metrics == {"silhouette": pytest.approx(expected, abs=1e-9)}
    assert result.details["n_clusters"] == 3
    assert sum(result.details["cluster_sizes"].values()) == 150
    assert result.details["exact"] is True
    json.dumps(result.to_dict(), allow_nan=False)


def test_clustering_silhouette_ignores_units_and_constant_columns(iris_kmeans) -> None:
    X, labels = iris_kmeans
    model = FixedLabels(labels)
    base = evaluate(model, "clustering", X, spec=SPEC).metrics["silhouette"]
    # Same assignment, features in other units plus a constant column: same geometry.
    rescaled = np.column_stack([X * [1000.0, 1.0, 0.01, 3.0], np.full(150, 42.0)])
    other = evaluate(model, "clustering", rescaled, spec=SPEC).metrics["silhouette"]
    assert other == pytest.approx(base, abs=1e-9)
    # And a different assignment of the same rows scores differently.
    worse = evaluate(FixedLabels(np.arange(150) % 3), "clustering", X, spec=SPEC)
    assert worse.metrics["silhouette"] < base - 0.3


def test_one_cluster_model_is_not_sane() -> None:
    X = load_iris().data
    model = KMeans(n_clusters=1, n_init=1, random_state=0).fit(X)
    result = evaluate(model, "clustering", X, spec=SPEC)
    assert not result.sane
    assert result.metrics == {}
    assert result.problems == ["all 150 rows are in cluster 0: silhouette is undefined"]
    assert result.details["cluster_sizes"] == {"0": 150}


def test_evaluate_clustering_samples_when_the_holdout_is_large() -> None:
    wine = load_wine()
    spec = EvaluationSpec(silhouette_exact_max_rows=100, silhouette_sample_size=100, seed=3)
    result = evaluate(FixedLabels(wine.target), "clustering", wine.data, spec=spec)
    details = result.details
    assert (details["exact"], details["n_rows"], details["n_evaluated"]) == (False, 178, 100)
    assert details["bound_method"] == "empirical_bernstein"
    assert details["hoeffding_bound"] == pytest.approx(hoeffding_bound(100, 0.99))
    sampled = result.row_values
    assert sampled is not None
    assert sampled.values.shape == (100,)
    variance = float(np.var(sampled.values, ddof=1))
    assert details["error_bound"] == pytest.approx(empirical_bernstein_bound(variance, 100, 0.99))
    exact = silhouette_score(StandardScaler().fit_transform(wine.data), wine.target)
    assert abs(result.metrics["silhouette"] - exact) <= details["error_bound"]
    assert abs(result.metrics["silhouette"] - exact) <= details["normal_bound"]
    json.dumps(result.to_dict(), allow_nan=False)


# ------------------------------------------------------------------------ paired difference


def test_paired_difference_over_all_rows_is_exact(iris_kmeans) -> None:
    X, labels = iris_kmeans
    other = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(X)
    cand = evaluate(FixedLabels(other), "clustering", X, spec=SPEC)
    champ = evaluate(FixedLabels(labels), "clustering", X, spec=SPEC)
    pair = paired_difference(cand, champ)
    assert pair is not None
    assert pair.exact
    assert (pair.n_rows, pair.n_evaluated, pair.error_bound, pair.normal_bound) == (150, 150, 0, 0)
    expected = silhouette_score(StandardScaler().fit_transform(X), other) - silhouette_score(
        StandardScaler().fit_transform(X), labels
    )
    assert pair.difference == pytest.approx(expected, abs=1e-9)
    assert pair.n_differing > 0


def test_renamed_clusters_are_the_same_partition_with_an_exact_zero_difference(cancer) -> None:
    X, _ = cancer
    labels = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(X)
    spec = EvaluationSpec(silhouette_exact_max_rows=100, silhouette_sample_size=200, seed=1)
    champ = evaluate(FixedLabels(labels), "clustering", X, spec=spec)
    renamed = evaluate(FixedLabels(np.array(["c", "a", "b"])[labels]), "clustering", X, spec=spec)
    pair = paired_difference(renamed, champ)
    assert pair is not None
    assert (pair.bound_method, pair.exact, pair.difference, pair.error_bound) == (
        "identical_partition",
        True,
        0.0,
        0.0,
    )
    # One row moved: no longer the same partition, so a sampled difference with a real bound.
    moved = labels.copy()
    moved[0] = (moved[0] + 1) % 3
    pair = paired_difference(evaluate(FixedLabels(moved), "clustering", X, spec=spec), champ)
    assert pair is not None
    assert (pair.bound_method, pair.exact) == ("empirical_bernstein", False)
    assert pair.error_bound > 0


def test_paired_bound_covers_the_exact_difference_and_beats_the_unpaired_one() -> None:
    """50 seeded samples of 300 of 1,500 rows, candidate k=5 against champion k=4 (true paired
    difference ≈ −0.057). At 99 %: every draw within the paired empirical Bernstein bound, and at
    most 3 of 50 outside the normal-approximation one (expected: 0.5)."""
    X, _ = make_blobs(n_samples=1_500, centers=4, n_features=3, cluster_std=2.0, random_state=0)
    # Fitted models' labels, fixed once (predicting them again for every draw only costs time).
    champion = FixedLabels(KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(X))
    candidate = FixedLabels(KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(X))
    space = StandardScaler().fit_transform(X)
    truth = silhouette_score(space, candidate.labels) - silhouette_score(space, champion.labels)
    covered, covered_normal, paired_widths, unpaired_widths = 0, 0, [], []
    for seed in range(50):
        spec = EvaluationSpec(silhouette_exact_max_rows=100, silhouette_sample_size=300, seed=seed)
        cand = evaluate(candidate, "clustering", X, spec=spec)
        champ = evaluate(champion, "clustering", X, spec=spec)
        pair = paired_difference(cand, champ)
        assert pair is not None
        assert not pair.exact
        assert pair.difference == pytest.approx(
            cand.metrics["silhouette"] - champ.metrics["silhouette"], abs=1e-12
        )
        covered += abs(pair.difference - truth) <= pair.error_bound
        covered_normal += abs(pair.difference - truth) <= pair.normal_bound
        paired_widths.append(pair.normal_bound)
        unpaired_widths.append(
            math.hypot(cand.details["normal_bound"], champ.details["normal_bound"])
        )
    assert covered == 50
    assert covered_normal >= 47
    # Same rows: the per-row values move together, so the difference is much better determined
    # than two independent estimates would make it.
    assert np.mean(paired_widths) < 0.75 * np.mean(unpaired_widths)


def test_paired_difference_needs_the_same_rows_of_the_same_data(cancer) -> None:
    X, _ = cancer
    labels = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(X)
    spec = EvaluationSpec(silhouette_exact_max_rows=100, silhouette_sample_size=200, seed=1)
    base = evaluate(FixedLabels(labels), "clustering", X, spec=spec)
    assert paired_difference(base, base) is not None
    other_rows = evaluate(
        FixedLabels(labels), "clustering", X, spec=spec.model_copy(update={"seed": 2})
    )
    assert paired_difference(base, other_rows) is None
    other_data = evaluate(FixedLabels(labels), "clustering", X + 1e-3 * X[::-1], spec=spec)
    assert paired_difference(base, other_data) is None
    no_rows = Evaluation(metrics={"silhouette": 0.5})
    assert paired_difference(base, no_rows) is None


# ------------------------------------------------------------------ classifier diagnostics


def _cancer_frame() -> tuple[object, np.ndarray]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target.to_numpy()


def test_classifier_details_carry_bounded_curves_that_match_the_metrics() -> None:
    from sklearn.metrics import average_precision_score, confusion_matrix

    X, y = _cancer_frame()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    result = evaluate(model, "classification", X, y, spec=SPEC, positive_label=1)
    d = result.details
    fpr, tpr = d["roc"]["fpr"], d["roc"]["tpr"]
    recall, precision = d["pr"]["recall"], d["pr"]["precision"]
    # sklearn gives 569 rows ~100+ precision-recall points: thinned to the bound, ends kept.
    assert len(recall) <= ev.CURVE_POINTS < len(np.unique(model.predict_proba(X)[:, 1]))
    assert (recall[0], precision[0], recall[-1]) == (0.0, 1.0, 1.0)
    assert precision[-1] == pytest.approx(np.mean(y == 1), abs=1e-4)  # everyone called positive
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert fpr == sorted(fpr)
    assert tpr == sorted(tpr)
    assert recall == sorted(recall)
    # The stored points still give the numbers the metrics report.
    assert np.trapezoid(tpr, fpr) == pytest.approx(result.metrics["roc_auc"], abs=2e-3)
    ap = average_precision_score(y == 1, model.predict_proba(X)[:, 1])
    assert d["pr"]["average_precision"] == pytest.approx(ap, abs=1e-6)
    assert d["pr"]["prevalence"] == pytest.approx(np.mean(y == 1), abs=1e-6)
    # The confusion matrix is of the model's own decisions: the same as sklearn's.
    tn, fp, fn, tp = confusion_matrix(y, model.predict(X), labels=[0, 1]).ravel()
    c = d["confusion"]
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (tp, fp, fn, tn)
    assert (c["positive_label"], c["negative_label"], c["threshold"]) == (1, 0, 0.5)
    assert tp / (tp + fp) > 0.9  # it is a good model: the counts are not all in one cell
    assert len(json.dumps(d, allow_nan=False)) < 8_000


def test_reliability_curve_matches_sklearns_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    X, y = _cancer_frame()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000)).fit(X, y)
    cal = evaluate(model, "classification", X, y, spec=SPEC).details["calibration"]
    prob = model.predict_proba(X)[:, 1]
    observed, predicted = calibration_curve(y, prob, n_bins=10, strategy="uniform")
    assert cal["observed"] == pytest.approx(observed, abs=1e-4)
    assert cal["predicted"] == pytest.approx(predicted, abs=1e-4)
    assert sum(cal["count"]) == len(y)
    assert cal["brier"] == pytest.approx(np.mean((prob - y) ** 2), abs=1e-6)
    # Heavy regularisation pulls probabilities toward the middle: visibly off the diagonal.
    assert max(abs(o - p) for o, p in zip(observed, predicted, strict=True)) > 0.05


def test_coefficients_are_named_through_the_pipeline_and_signed_toward_the_positive_label() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    X, y = _cancer_frame()
    frame = X[["worst radius", "mean texture"]].copy()
    frame["size"] = pd.cut(X["mean radius"], [0, 12, 15, 99], labels=["small", "mid", "large"])
    frame["size"] = frame["size"].astype(str)
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(), ["size"])],
        remainder=StandardScaler(),
        verbose_feature_names_out=False,
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(frame, y)
    coef = dict(zip(model[:-1].get_feature_names_out(), model[-1].coef_[0], strict=True))
    for positive, sign in ((1, 1.0), (0, -1.0)):
        imp = evaluate(model, "classification", frame, y, spec=SPEC, positive_label=positive)
        imp = imp.details["importance"]
        assert imp["kind"] == "coefficient"
        assert imp["n_features"] == 5
        got = {e["name"]: e["value"] for e in imp["features"]}
        assert set(got) == {"size_small", "size_mid", "size_large", "worst radius", "mean texture"}
        for name, value in got.items():
            assert value == pytest.approx(sign * coef[name], abs=1e-6)
        magnitudes = [abs(e["value"]) for e in imp["features"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
    # Benign (1) tumours are the small ones: a larger worst radius pushes toward malignant (0).
    assert got["worst radius"] > 0


def test_tree_importances_and_the_decision_function_fallback() -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = _cancer_frame()
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    imp = evaluate(forest, "classification", X, y, spec=SPEC).details["importance"]
    assert imp["kind"] == "impurity"
    assert len(imp["features"]) == ev.IMPORTANCE_FEATURES == 30
    top = imp["features"][0]
    best = int(np.argmax(forest.feature_importances_))
    assert top["name"] == X.columns[best]
    assert top["value"] == pytest.approx(forest.feature_importances_[best], abs=1e-6)

    svc = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    d = evaluate(svc, "classification", X, y, spec=SPEC).details
    assert d["calibration"] is None  # decision_function scores are not probabilities
    assert d["confusion"]["threshold"] == 0.0
    assert "decision_function" in d["confusion"]["rule"]
    assert d["importance"]["kind"] == "coefficient"


def test_permutation_importance_for_a_model_without_its_own() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = _cancer_frame()
    rng = np.random.default_rng(0)
    frame = X[["worst perimeter"]].copy()
    frame["noise"] = rng.normal(size=len(frame))
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(15)).fit(frame, y)
    imp = evaluate(model, "classification", frame, y, spec=SPEC).details["importance"]
    assert imp["kind"] == "permutation"
    assert imp["rows"] == ev.PERMUTATION_ROWS
    assert imp["repeats"] == ev.PERMUTATION_REPEATS
    by_name = {e["name"]: e for e in imp["features"]}
    assert [e["name"] for e in imp["features"]] == ["worst perimeter", "noise"]
    assert by_name["worst perimeter"]["value"] > 0.2  # shuffling the signal costs ROC AUC
    assert abs(by_name["noise"]["value"]) < 0.05
    again = evaluate(model, "classification", frame, y, spec=SPEC).details["importance"]
    assert again == imp  # seeded by evaluation.seed: the same sample and shuffles


def test_thin_curve_keeps_short_curves_and_bounds_long_ones() -> None:
    assert ev.thin_curve([0, 0.5, 1], [0, 0.7, 1]) == ([0.0, 0.5, 1.0], [0.0, 0.7, 1.0])
    t = np.linspace(0, 1, 5_000)
    xs, ys = ev.thin_curve(t, np.sqrt(t), max_points=50)
    assert len(xs) <= 50
    assert (xs[0], ys[0], xs[-1], ys[-1]) == (0.0, 0.0, 1.0, 1.0)
    # Spread along the curve's length: the steep start keeps points too.
    assert sum(x < 0.05 for x in xs) >= 5
    assert np.max(np.abs(np.sqrt(xs) - ys)) < 1e-3
