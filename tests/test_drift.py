"""warden.ml.drift on realistic data: profile, accumulation, statistics, verdicts and JSON shape."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.stats import chi2_contingency, wasserstein_distance
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from warden.errors import ConfigError, DataError
from warden.ml.drift import (
    KNOWN_FALSE_POSITIVE,
    MAX_CATEGORIES,
    MAX_CATEGORY_CHARS,
    MAX_KNOWN_TAIL,
    UNSEEN_CAP,
    DriftAccumulator,
    DriftThresholds,
    LabelFilter,
    build_reference_profile,
    cap_label,
    compute_drift,
    psi,
)

CANCER = load_breast_cancer()
NUMERIC = [str(n) for n in CANCER.feature_names[:20]]
LEVELS = {
    "plan": [0.5, 0.3, 0.2],
    "region": [0.35, 0.25, 0.2, 0.12, 0.08],
    "device": [0.4, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03],
    "channel": list(np.geomspace(1, 0.1, 10) / np.geomspace(1, 0.1, 10).sum()),
    "country": list(np.geomspace(1, 0.03, 12) / np.geomspace(1, 0.03, 12).sum()),
}
CATEGORICAL = list(LEVELS)


def categories(rng: np.random.Generator, n: int, name: str, probs=None) -> np.ndarray:
    probs = np.asarray(LEVELS[name] if probs is None else probs)
    levels = np.array([f"{name}_{i}" for i in range(probs.size)], dtype=object)
    return levels[rng.choice(probs.size, size=n, p=probs / probs.sum())]


def sample(seed: int, n: int) -> dict[str, np.ndarray]:
    """n rows drawn (with replacement) from the breast-cancer table, plus 5 categorical columns."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, CANCER.data.shape[0], n)
    cols = {name: CANCER.data[rows, i] for i, name in enumerate(NUMERIC)}
    for name in CATEGORICAL:
        cols[name] = categories(rng, n, name)
    return cols


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return sample(0, 10_000)


@pytest.fixture(scope="module")
def profile(reference) -> dict:
    return build_reference_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL)


# ---------------------------------------------------------------------------- profile


def test_profile_is_compact_and_round_trips_json(profile, reference):
    text = json.dumps(profile)
    assert len(text) < 50_000
    assert json.loads(text) == profile
    assert profile["schema"] == 2
    assert profile["rows"] == 10_000
    assert profile["bins"] == 100
    assert len(profile["features"]) == 25
    area = profile["features"]["mean area"]
    assert area["kind"] == "continuous"
    assert sum(area["counts"]) == area["count"] == 10_000
    assert len(area["edges"]) == len(area["counts"]) + 1
    assert area["edges"][0] == area["min"]
    assert area["edges"][-1] == area["max"]
    assert set(area["quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
    plan = profile["features"]["plan"]
    assert plan["kind"] == "categorical"
    assert plan["categories"][0] == "plan_0"  # most frequent first
    assert sum(plan["counts"]) + plan["other"] == 10_000
    # The round-tripped profile compares the same way as the original.
    current = sample(1, 5_000)
    assert (
        compute_drift(json.loads(text), current).to_dict()
        == compute_drift(profile, current).to_dict()
    )


def test_integer_valued_columns_keep_exact_counts():
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    wine = load_wine(as_frame=True).frame
    rng = np.random.default_rng(3)
    cols = {
        "sex": diabetes["sex"].to_numpy(),  # 1 / 2
        "age": diabetes["age"].to_numpy(),  # 58 distinct integers > max_discrete
        "bmi": diabetes["bmi"].to_numpy(),
        "visits": rng.poisson(3, diabetes.shape[0]),
    }
    features = build_reference_profile(cols, numeric=list(cols))["features"]
    assert features["sex"]["kind"] == "discrete"
    assert features["sex"]["values"] == [1, 2]
    assert sum(features["sex"]["counts"]) == diabetes.shape[0]
    assert features["visits"]["kind"] == "discrete"
    assert features["age"]["kind"] == "continuous"
    assert features["bmi"]["kind"] == "continuous"
    magnesium = {"magnesium": wine["magnesium"].to_numpy()}  # 53 distinct integers
    default = build_reference_profile(magnesium, numeric=["magnesium"])
    assert default["features"]["magnesium"]["kind"] == "continuous"
    wider = build_reference_profile(magnesium, numeric=["magnesium"], max_discrete=60)
    assert wider["features"]["magnesium"]["kind"] == "discrete"
    assert len(wider["features"]["magnesium"]["values"]) == 53


def test_missing_values_and_top_categories_in_profile():
    rng = np.random.default_rng(4)
    x = rng.normal(size=2_000)
    x[:200] = np.nan
    labels = categories(rng, 2_000, "country")
    labels[:100] = None
    p = build_reference_profile(
        {"x": x, "c": labels}, numeric=["x"], categorical=["c"], max_categories=5
    )["features"]
    assert (p["x"]["count"], p["x"]["missing"], p["x"]["missing_rate"]) == (1_800, 200, 0.1)
    assert (p["c"]["count"], p["c"]["missing"]) == (1_900, 100)
    assert len(p["c"]["categories"]) == 5
    assert p["c"]["other"] == 1_900 - sum(p["c"]["counts"])
    assert p["c"]["other"] > 0


def _blobs(count: int, size: int) -> list[str]:
    """``count`` distinct values of ``size`` characters that differ only in their last two."""
    return [f"{'v' * (size - 2)}{i:02d}" for i in range(count)]


def test_long_and_many_categories_are_capped_and_drift_stays_the_same():
    """50 categories of 200 KB each (a 10 MB profile before the cap), then 120 of them: the
    profile keeps the 50 most frequent, each label at most MAX_CATEGORY_CHARS long, and drift
    statistics equal those of the same data with short labels."""
    rng = np.random.default_rng(12)
    n, k = 5_000, 120
    weights = np.geomspace(1, 0.02, k)
    ref_idx = rng.choice(k, size=n, p=weights / weights.sum())
    moved = weights.copy()
    moved[0] *= 5  # the most frequent category gains about 11 points
    cur_idx = rng.choice(k, size=n, p=moved / moved.sum())
    long = np.array(_blobs(k, 200_000), dtype=object)
    # Short labels that sort like the capped long ones (their common prefix, then the hash), so
    # ties in frequency keep the same categories on both sides.
    short = np.array([cap_label(v)[-10:] for v in long], dtype=object)

    for count in (50, k):  # exactly 50 values, then more than the cap
        ref_long = long[ref_idx % count]
        prof = build_reference_profile({"c": ref_long}, numeric=[], categorical=["c"])
        spec = prof["features"]["c"]
        assert len(json.dumps(prof)) < 20_000  # 50 × 200 KB went in
        assert len(spec["categories"]) == min(count, MAX_CATEGORIES)
        assert len(set(spec["categories"])) == len(spec["categories"])  # still distinct
        assert all(len(c) <= MAX_CATEGORY_CHARS for c in spec["categories"])
        assert spec["categories"][0].startswith("vvvv")
        assert sum(spec["counts"]) + spec["other"] == n
        assert (spec["other"] > 0) == (count > MAX_CATEGORIES)

        short_prof = build_reference_profile(
            {"c": short[ref_idx % count]}, numeric=[], categorical=["c"]
        )
        assert spec["counts"] == short_prof["features"]["c"]["counts"]
        capped = compute_drift(prof, {"c": long[cur_idx % count]}).features["c"]
        plain = compute_drift(short_prof, {"c": short[cur_idx % count]}).features["c"]
        assert capped.drifted
        assert plain.drifted
        assert dict(capped.stats) == dict(plain.stats)
        assert capped.histogram["ref"] == plain.histogram["ref"]
        assert capped.histogram["cur"] == plain.histogram["cur"]
        assert all(len(label) <= MAX_CATEGORY_CHARS for label in capped.histogram["labels"])
        same = compute_drift(prof, {"c": long[ref_idx % count]}).features["c"]
        assert not same.drifted
        assert same.stats["linf"] == 0.0


def test_profiles_stored_before_the_cap_still_match_long_values():
    """A profile written with full 200 KB labels: current values are capped when counted, so the
    stored labels are capped the same way on load, or every row would look new."""
    rng = np.random.default_rng(13)
    values = np.array(_blobs(5, 200_000), dtype=object)
    prof = build_reference_profile(
        {"c": values[rng.choice(5, size=4_000)]}, numeric=[], categorical=["c"]
    )
    legacy = json.loads(json.dumps(prof))
    full = {cap_label(v): v for v in values}
    legacy["features"]["c"]["categories"] = [full[c] for c in prof["features"]["c"]["categories"]]
    assert min(len(c) for c in legacy["features"]["c"]["categories"]) == 200_000
    current = values[rng.choice(5, size=4_000)]
    old = compute_drift(legacy, {"c": current}).features["c"]
    new = compute_drift(prof, {"c": current}).features["c"]
    assert dict(old.stats) == dict(new.stats)
    assert old.histogram == new.histogram
    assert not old.drifted
    assert "(new)" not in old.histogram["labels"]


def test_cap_label_keeps_distinct_values_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert cap_label("short") == "short"
    assert len(cap_label(a)) == MAX_CATEGORY_CHARS
    assert cap_label(a) != cap_label(b)
    assert cap_label(a).startswith("x" * 150)
    assert "…#" in cap_label(a)
    assert cap_label(cap_label(a)) == cap_label(a)  # idempotent
    assert cap_label("é" * 1_000) != cap_label("é" * 1_001)


# ---------------------------------------------------------------------------- accumulation


def test_many_chunks_equal_one_chunk(profile):
    current = sample(7, 30_000)
    for name in ("mean radius", "mean area"):  # some values outside the reference range
        current[name] = current[name] * 1.3
    one = compute_drift(profile, current).to_dict()
    acc = DriftAccumulator(profile)
    bounds = [0, 1, 2_500, 2_501, 17_000, 30_000]
    for lo, hi in itertools.pairwise(bounds):
        acc.update({k: v[lo:hi] for k, v in current.items()})
    many = acc.result().to_dict()
    assert acc.rows == 30_000
    assert json.dumps(many, sort_keys=True) == json.dumps(one, sort_keys=True) or _close(many, one)


def _close(a, b) -> bool:
    """Equal up to float summation order."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_arrow_pandas_and_numpy_inputs_agree(profile):
    current = sample(8, 20_000)
    current["plan"][:300] = None
    base = compute_drift(profile, current).to_dict()
    arrow = {k: pa.array(v) for k, v in current.items()}
    arrow["region"] = arrow["region"].dictionary_encode()
    arrow["device"] = pa.chunked_array([arrow["device"][:7_000], arrow["device"][7_000:]])
    assert _close(compute_drift(profile, arrow).to_dict(), base)
    assert _close(compute_drift(profile, pa.table(arrow)).to_dict(), base)
    assert _close(compute_drift(profile, pd.DataFrame(current)).to_dict(), base)
    assert base["features"]["plan"]["missing_cur"] == pytest.approx(300 / 20_000)


def test_memory_is_bounded_for_unseen_values():
    rng = np.random.default_rng(9)
    ref = {"n": rng.poisson(3, 5_000), "c": categories(rng, 5_000, "plan")}
    prof = build_reference_profile(ref, numeric=["n"], categorical=["c"])
    acc = DriftAccumulator(prof)
    for i in range(5):  # ids where small counts used to be: thousands of new values
        ids = np.arange(i * 3_000, (i + 1) * 3_000)
        acc.update({"n": ids, "c": np.array([f"user{j}" for j in ids], dtype=object)})
    states = acc._states
    assert len(states["n"].unseen) <= UNSEEN_CAP
    assert len(states["c"].unseen) <= UNSEEN_CAP
    result = acc.result()
    assert result.features["n"].n_cur == 15_000
    assert result.features["c"].drifted
    assert result.features["n"].drifted


# ---------------------------------------------------------------------------- verdicts


def test_same_distribution_never_drifts(profile):
    for seed in range(1, 31):
        result = compute_drift(profile, sample(100 + seed, 10_000))
        assert not result.insufficient
        assert not result.dataset_drift
        assert result.drifted == (), (seed, {n: result.features[n].reasons for n in result.drifted})


def test_catches_mean_shift_of_a_fifth_sd(profile, reference):
    current = sample(11, 10_000)
    for name in ("mean radius", "texture error"):
        current[name] = current[name] + 0.2 * reference[name].std()
    result = compute_drift(profile, current)
    assert set(result.drifted) == {"mean radius", "texture error"}
    w = result.features["mean radius"].stats["wasserstein"]
    assert w == pytest.approx(0.2, abs=0.03)
    assert result.features["mean radius"].reasons[0].startswith("wasserstein 0.")
    assert not result.dataset_drift


def test_catches_discrete_mean_shift_and_scale_change():
    rng = np.random.default_rng(12)
    ref = {"calls": rng.poisson(4, 10_000), "x": rng.lognormal(1, 0.5, 10_000)}
    prof = build_reference_profile(ref, numeric=["calls", "x"])
    assert prof["features"]["calls"]["kind"] == "discrete"
    mu = float(np.exp(1 + 0.125))
    current = {
        "calls": rng.poisson(4 + 0.2 * 2, 10_000),  # +0.2 sd of a Poisson(4)
        "x": mu + 1.2 * (rng.lognormal(1, 0.5, 10_000) - mu),  # ×1.2 spread
    }
    result = compute_drift(prof, current)
    assert set(result.drifted) == {"calls", "x"}
    assert result.dataset_drift  # 2 of 2 features
    assert result.features["calls"].stats["wasserstein"] == pytest.approx(0.2, abs=0.04)
    assert result.features["calls"].kind == "discrete"


def test_catches_scale_change_on_real_columns(profile, reference):
    current = sample(13, 10_000)
    for name in NUMERIC[:10]:
        mu = reference[name].mean()
        current[name] = mu + 1.2 * (current[name] - mu)
    result = compute_drift(profile, current)
    assert set(NUMERIC[:10]) <= set(result.drifted)
    assert result.drift_share == pytest.approx(len(result.drifted) / 25)


def test_catches_category_mix_moving_ten_points(profile):
    rng = np.random.default_rng(14)
    current = sample(14, 10_000)
    probs = np.array(LEVELS["region"])
    probs[0] -= 0.10
    probs[1] += 0.10
    current["region"] = categories(rng, 10_000, "region", probs)
    result = compute_drift(profile, current)
    assert result.drifted == ("region",)
    region = result.features["region"]
    assert region.stats["linf"] == pytest.approx(0.10, abs=0.025)
    assert any(r.startswith("linf ") for r in region.reasons)


def test_unseen_categories_are_their_own_bucket(profile):
    current = sample(15, 10_000)
    current["plan"][:1_500] = "plan_new"  # 15% of a category the reference never had
    result = compute_drift(profile, current)
    plan = result.features["plan"]
    assert plan.drifted
    assert plan.histogram["labels"][-1] == "(new)"
    assert plan.histogram["cur"][-1] == pytest.approx(0.15)
    assert plan.histogram["ref"][-1] == 0.0


def test_a_new_category_in_a_fifth_of_the_rows_is_reported_and_drifts(profile):
    rng = np.random.default_rng(40)
    current = sample(40, 10_000)
    current["plan"][rng.permutation(10_000)[:2_000]] = "plan_new"  # never in the reference
    result = compute_drift(profile, current)
    plan = result.features["plan"]
    assert plan.drifted
    assert "new_category_share 0.200 >= 0.050 (new: 'plan_new')" in plan.reasons
    assert plan.stats["new_category_share"] == pytest.approx(0.2)
    assert dict(plan.new_categories) == {
        "share": pytest.approx(0.2),
        "rows": 2_000,
        "top": [{"value": "plan_new", "rows": 2_000}],
        "reference": "complete",  # plan's three categories are all in the profile
    }
    assert result.new_categories == ("plan",)
    assert result.to_dict()["new_categories"] == ["plan"]
    # The other categorical features have no new value: the signal stays quiet there.
    for name in CATEGORICAL[1:]:
        assert result.features[name].stats["new_category_share"] == 0.0
        assert not result.features[name].drifted

    # Switched off, the share is still reported but judges nothing.
    quiet = compute_drift(profile, current, DriftThresholds(new_category_share=None))
    assert quiet.features["plan"].stats["new_category_share"] == pytest.approx(0.2)
    assert not any(r.startswith("new_category_share") for r in quiet.features["plan"].reasons)
    assert quiet.new_categories == ()


def test_no_new_category_means_no_new_category_signal(profile):
    result = compute_drift(profile, sample(41, 10_000))
    for name in CATEGORICAL:
        feature = result.features[name]
        assert feature.stats["new_category_share"] == 0.0
        assert feature.new_categories["rows"] == 0
        assert feature.new_categories["top"] == []
        assert not any(r.startswith("new_category_share") for r in feature.reasons)
    assert result.new_categories == ()


def _long_tail(rng: np.random.Generator, n: int, k: int = 60) -> np.ndarray:
    """``k`` categories with geometric frequencies: the profile keeps the top 50, and the 10
    rarest (about 3% of rows) go to "other"."""
    weights = np.geomspace(1, 0.05, k)
    levels = np.array([f"shop_{i:02d}" for i in range(k)], dtype=object)
    return levels[rng.choice(k, size=n, p=weights / weights.sum())]


def test_a_new_category_hiding_in_other_is_caught_and_a_rare_one_rising_is_not():
    """Before, a value the reference never had joined the rare reference categories in "other":
    at 6% of the rows it moved "other" too little for L∞ or PSI. The profile's filter of the rare
    categories tells the two apart."""
    rng = np.random.default_rng(42)
    prof = build_reference_profile({"c": _long_tail(rng, 20_000)}, numeric=[], categorical=["c"])
    spec = prof["features"]["c"]
    assert spec["other"] > 0
    assert spec["tail"]["distinct"] == 10
    assert spec["tail"]["filter"] is not None
    assert len(json.dumps(spec["tail"])) < 500

    new = _long_tail(rng, 20_000)
    new[rng.permutation(20_000)[:1_200]] = "shop_new"
    drifted = compute_drift(prof, {"c": new}).features["c"]
    assert drifted.stats["linf"] < 0.075  # the old statistics alone would not have flagged it
    assert drifted.stats["psi"] < 0.2
    assert drifted.reasons == ("new_category_share 0.060 >= 0.050 (new: 'shop_new')",)
    assert drifted.new_categories["reference"] == "filter"
    assert drifted.new_categories["top"] == [{"value": "shop_new", "rows": 1_200}]

    rare = _long_tail(rng, 20_000)
    rare[rng.permutation(20_000)[:1_200]] = [f"shop_{55 + i % 5}" for i in range(1_200)]
    known = compute_drift(prof, {"c": rare}).features["c"]
    assert known.stats["new_category_share"] == 0.0  # rare, not new
    assert not known.drifted


def test_the_filter_of_rare_categories_and_its_limits():
    rng = np.random.default_rng(43)
    labels = [f"item {i}" for i in range(20_000)]
    known = LabelFilter.build(labels)
    assert all(label in known for label in labels)  # never a false negative
    strangers = sum(f"other {i}" in known for i in range(100_000))
    assert strangers / 100_000 < 2 * KNOWN_FALSE_POSITIVE
    again = LabelFilter.from_dict(json.loads(json.dumps(known.to_dict())))
    assert all(label in again for label in labels[:1_000])
    assert len(json.dumps(known.to_dict())) < 50_000
    with pytest.raises(DataError, match="malformed"):
        LabelFilter.from_dict({**known.to_dict(), "bits": 8})

    # An id-like reference column: too many rare values to keep, so new ones cannot be told
    # from rare ones; the share is None and judges nothing.
    ids = np.array([f"user{i}" for i in range(MAX_KNOWN_TAIL + 100)], dtype=object)
    prof = build_reference_profile({"c": ids}, numeric=[], categorical=["c"])
    assert prof["features"]["c"]["tail"] == {"distinct": MAX_KNOWN_TAIL + 50, "filter": None}
    fresh = np.array([f"visitor{i}" for i in range(5_000)], dtype=object)
    result = compute_drift(prof, {"c": fresh}).features["c"]
    assert result.stats["new_category_share"] is None
    assert result.new_categories == {
        "share": None,
        "rows": None,
        "top": [],
        "reference": "unavailable",
    }
    assert not any(r.startswith("new_category_share") for r in result.reasons)

    # Profiles written before the filter: exact when they list every category, else unknown.
    tail = build_reference_profile({"c": _long_tail(rng, 5_000)}, numeric=[], categorical=["c"])
    del tail["features"]["c"]["tail"]
    current = {"c": np.array(["shop_00"] * 4_000 + ["brand new"] * 1_000, dtype=object)}
    assert compute_drift(tail, current).features["c"].stats["new_category_share"] is None
    whole = build_reference_profile(
        {"c": categories(rng, 5_000, "plan")}, numeric=[], categorical=["c"]
    )
    assert "tail" not in whole["features"]["c"]
    current = {"c": np.array(["plan_0"] * 4_000 + ["brand new"] * 1_000, dtype=object)}
    assert compute_drift(whole, current).features["c"].stats["new_category_share"] == 0.2


def test_new_missing_values_drift_with_their_own_reason(profile):
    """Missingness is drift: a column that starts arriving 20% empty breaks the model's inputs
    even if the values that do arrive look the same."""
    current = sample(16, 10_000)
    area = current["mean area"].copy()
    area[np.random.default_rng(16).permutation(10_000)[:2_000]] = np.nan
    current["mean area"] = area
    labels = current["device"].copy()
    labels[:2_000] = None
    current["device"] = labels
    result = compute_drift(profile, current)
    assert set(result.drifted) == {"mean area", "device"}
    for name in ("mean area", "device"):
        (reason,) = result.features[name].reasons
        assert reason.startswith("missing_rate 0.000 -> 0.2")
    assert result.features["mean area"].missing_cur == 0.2
    assert result.features["mean area"].n_cur == 8_000


def test_fully_missing_column_is_judged_on_missingness_only(profile):
    current = sample(17, 5_000)
    current["mean area"] = np.full(5_000, np.nan)
    result = compute_drift(profile, current)
    area = result.features["mean area"]
    assert area.n_cur == 0
    assert area.drifted
    assert area.reasons == ("missing_rate 0.000 -> 1.000 (change 1.000 >= 0.050)",)


def test_insufficient_data_gives_no_verdict(profile, reference):
    current = sample(18, 500)
    for name in NUMERIC:
        current[name] = current[name] + reference[name].std()  # a huge shift, but few rows
    result = compute_drift(profile, current)
    assert result.insufficient
    assert not result.dataset_drift
    assert result.drifted == ()
    assert result.features["mean radius"].stats["wasserstein"] > 0.5  # still reported
    assert not compute_drift(profile, current, DriftThresholds(min_rows=400)).insufficient
    small_ref = build_reference_profile(sample(19, 300), numeric=NUMERIC[:2])
    assert compute_drift(small_ref, sample(20, 50_000)).insufficient


def test_per_feature_overrides(profile, reference):
    current = sample(21, 10_000)
    current["mean radius"] = current["mean radius"] + 0.2 * reference["mean radius"].std()
    th = DriftThresholds(
        overrides={
            "mean radius": {"wasserstein": 0.5},
            "mean texture": {"wasserstein": 0.001, "psi": None},
        }
    )
    assert th.for_feature("mean radius", "continuous")["wasserstein"] == 0.5
    assert "psi" not in th.for_feature("mean texture", "continuous")
    assert th.for_feature("plan", "categorical") == {
        "psi": 0.2,
        "linf": 0.075,
        "missing_rate": 0.05,
        "new_category_share": 0.05,
    }
    assert "new_category_share" not in th.for_feature("mean radius", "continuous")
    result = compute_drift(profile, current, th)
    assert "mean radius" not in result.drifted
    assert "mean texture" in result.drifted
    assert result.features["mean radius"].thresholds["wasserstein"] == 0.5
    with pytest.raises(ConfigError, match="unknown statistic"):
        DriftThresholds(overrides={"x": {"pvalue": 0.05}})
    with pytest.raises(ConfigError):
        DriftThresholds(psi=-1)


def test_bad_inputs_raise_data_errors(profile):
    with pytest.raises(DataError, match="mean area"):
        compute_drift(profile, {k: v for k, v in sample(22, 100).items() if k != "mean area"})
    with pytest.raises(DataError, match="schema"):
        DriftAccumulator({"schema": 1, "features": {}})
    with pytest.raises(DataError, match="not in the reference"):
        DriftAccumulator(profile, ["nope"])
    with pytest.raises(DataError, match="not numeric"):
        compute_drift(profile, {**sample(23, 100), "mean area": np.array(["a"] * 100)})


# ---------------------------------------------------------------------------- statistics


def test_identical_distributions_score_zero(profile):
    ref = profile["features"]
    # Current rows that reproduce the reference bins exactly.
    cur = {}
    for name, spec in ref.items():
        if spec["kind"] == "categorical":
            cur[name] = np.repeat(np.array(spec["categories"], dtype=object), spec["counts"])
        else:
            mids = (np.array(spec["edges"][:-1]) + np.array(spec["edges"][1:])) / 2
            cur[name] = np.repeat(mids, spec["counts"])
    result = compute_drift(profile, cur)
    for f in result.features.values():
        assert f.stats["psi"] == pytest.approx(0, abs=1e-12)
        assert f.stats["js"] == pytest.approx(0, abs=1e-6)
        if f.kind == "categorical":
            assert f.stats["linf"] == pytest.approx(0, abs=1e-12)
            assert f.stats["cramers_v"] == pytest.approx(0, abs=1e-12)
        else:
            assert f.stats["wasserstein"] < 0.01  # mass at bin midpoints, not spread: ≈ 0
            assert f.stats["ks"] < 0.006


def test_psi_matches_hand_computation():
    ref = {"c": np.array(["a"] * 6 + ["b"] * 4, dtype=object)}
    prof = build_reference_profile(ref, numeric=[], categorical=["c"])
    cur = {"c": np.array(["a"] * 3 + ["b"] * 7, dtype=object)}
    stats = compute_drift(prof, cur).features["c"].stats
    p = np.array([6.5, 4.5]) / 11  # 0.5 added to each bucket
    q = np.array([3.5, 7.5]) / 11
    assert stats["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert psi(np.array([6, 4]), np.array([3, 7])) == pytest.approx(stats["psi"])
    assert stats["linf"] == pytest.approx(0.3)
    m = np.array([0.45, 0.55])
    js = math.sqrt(
        0.5 * np.sum([0.6, 0.4] * np.log2(np.array([0.6, 0.4]) / m))
        + 0.5 * np.sum([0.3, 0.7] * np.log2(np.array([0.3, 0.7]) / m))
    )
    assert stats["js"] == pytest.approx(js)


def test_cramers_v_is_chi_square_effect_size_of_equal_samples():
    rng = np.random.default_rng(24)
    ref = {"c": categories(rng, 10_000, "device")}
    prof = build_reference_profile(ref, numeric=[], categorical=["c"])
    cur_labels = categories(rng, 10_000, "device", [0.3, 0.3, 0.15, 0.1, 0.07, 0.05, 0.03])
    v = compute_drift(prof, {"c": cur_labels}).features["c"].stats["cramers_v"]
    spec = prof["features"]["c"]
    cur_counts = [int(np.sum(cur_labels == c)) for c in spec["categories"]]
    chi2 = chi2_contingency(np.array([spec["counts"], cur_counts]), correction=False)[0]
    assert v == pytest.approx(math.sqrt(chi2 / 20_000), rel=1e-9)
    # Independent of how many more current rows there are.
    big = np.tile(cur_labels, 10)
    assert compute_drift(prof, {"c": big}).features["c"].stats["cramers_v"] == pytest.approx(v)


def test_wasserstein_of_unit_normals_half_an_sd_apart():
    rng = np.random.default_rng(25)
    prof = build_reference_profile({"x": rng.normal(0, 1, 20_000)}, numeric=["x"])
    stats = compute_drift(prof, {"x": rng.normal(0.5, 1, 200_000)}).features["x"].stats
    assert stats["wasserstein"] == pytest.approx(0.5, abs=0.03)
    assert stats["ks"] == pytest.approx(math.erf(0.25 / math.sqrt(2)), abs=0.01)  # 2Φ(0.25) − 1


def test_binned_wasserstein_follows_a_long_tail():
    """Wide outer bins of a skewed column are split, so binned W1 stays close to the exact one."""
    rng = np.random.default_rng(29)
    ref = rng.lognormal(0, 1, 20_000)
    cur = rng.lognormal(0.3, 1, 100_000)  # everything ×1.35
    prof = build_reference_profile({"x": ref}, numeric=["x"])
    w = compute_drift(prof, {"x": cur}).features["x"].stats["wasserstein"]
    assert w == pytest.approx(wasserstein_distance(ref, cur) / ref.std(), abs=0.02)


def test_discrete_wasserstein_and_ks_are_exact():
    rng = np.random.default_rng(26)
    ref = rng.poisson(3, 5_000)
    cur = rng.poisson(3.6, 7_000)  # includes values the reference never saw
    prof = build_reference_profile({"n": ref}, numeric=["n"])
    stats = compute_drift(prof, {"n": cur}).features["n"].stats
    assert stats["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur) / ref.std())
    grid = np.arange(0, max(ref.max(), cur.max()) + 1)
    f_ref = np.searchsorted(np.sort(ref), grid, side="right") / ref.size
    f_cur = np.searchsorted(np.sort(cur), grid, side="right") / cur.size
    assert stats["ks"] == pytest.approx(np.max(np.abs(f_ref - f_cur)))


def test_continuous_wasserstein_counts_mass_beyond_the_reference_range():
    rng = np.random.default_rng(27)
    ref = rng.uniform(0, 1, 10_000)
    prof = build_reference_profile({"x": ref}, numeric=["x"])
    cur = rng.uniform(0, 1, 10_000) + 3.0  # entirely above the reference max
    w = compute_drift(prof, {"x": cur}).features["x"].stats["wasserstein"]
    assert w == pytest.approx(wasserstein_distance(ref, cur) / ref.std(), rel=0.01)


# ---------------------------------------------------------------------------- JSON shape


def test_to_dict_shape(profile):
    rng = np.random.default_rng(28)
    current = sample(28, 5_000)
    wide = {
        "many": rng.poisson(30, 5_000),  # ~40 discrete values: histogram grouped
        "cats": np.array([f"k{i}" for i in rng.integers(0, 30, 5_000)], dtype=object),
    }
    wide_prof = build_reference_profile(wide, numeric=["many"], categorical=["cats"])
    assert wide_prof["features"]["many"]["kind"] == "discrete"
    for prof, cur in ((profile, current), (wide_prof, wide)):
        d = compute_drift(prof, cur).to_dict()
        json.dumps(d, allow_nan=False)
        assert set(d) == {
            "schema",
            "rows",
            "reference_rows",
            "insufficient",
            "dataset_drift",
            "drift_share",
            "drifted",
            "new_categories",
            "dataset_share_threshold",
            "features",
        }
        assert d["schema"] == 1
        assert isinstance(d["drifted"], list)
        for f in d["features"].values():
            assert set(f) == {
                "kind",
                "drifted",
                "reasons",
                "n_ref",
                "n_cur",
                "missing_ref",
                "missing_cur",
                "stats",
                "thresholds",
                "histogram",
                "new_categories",
            }
            assert f["kind"] in {"continuous", "discrete", "categorical"}
            assert set(f["stats"]) == {
                "psi",
                "js",
                "wasserstein",
                "ks",
                "linf",
                "cramers_v",
                "new_category_share",
            }
            categorical = f["kind"] == "categorical"
            assert (f["new_categories"] is None) != categorical
            assert (f["stats"]["new_category_share"] is None) != categorical
            if categorical:
                assert set(f["new_categories"]) == {"share", "rows", "top", "reference"}
            assert isinstance(f["stats"]["psi"], float)
            assert isinstance(f["stats"]["js"], float)
            assert (f["stats"]["linf"] is None) == (f["kind"] != "categorical")
            assert (f["stats"]["wasserstein"] is None) == (f["kind"] == "categorical")
            assert all(isinstance(v, float) for v in f["thresholds"].values())
            h = f["histogram"]
            assert set(h) == {"labels", "ref", "cur"}
            assert 1 <= len(h["labels"]) <= 20
            assert len(h["labels"]) == len(h["ref"]) == len(h["cur"])
            assert sum(h["ref"]) == pytest.approx(1)
            assert sum(h["cur"]) == pytest.approx(1)
    area = compute_drift(profile, current).to_dict()["features"]["mean area"]
    assert area["histogram"]["labels"][0].startswith("(-inf, ")
    assert area["histogram"]["labels"][1].startswith("[")
    assert area["histogram"]["labels"][-1].endswith(", +inf)")


def test_core_imports_numpy_only():
    code = (
        "import sys, warden.ml.drift; "
        "bad = [m for m in ('pandas', 'scipy', 'pyarrow', 'sklearn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
