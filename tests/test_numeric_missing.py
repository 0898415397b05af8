"""Missing values in numeric features (``numeric_missing``), on scikit-learn's bundled breast-cancer
data: imputed by default (training no longer dies of scikit-learn's "Input X contains NaN"), or
refused with a message naming the columns and the setting; profiles and drift count them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from warden.config import ModelConfig, parse_config
from warden.errors import ConfigError, DataError
from warden.ml.drift import DriftThresholds, compute_drift
from warden.ml.evaluation import evaluate
from warden.ml.profiles import build_profile
from warden.ml.training import IMPUTE_STEP, Split, build_model, fit, model_input

FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "worst_area", "worst_concavity"]
HOLES = 40  # rows whose mean_radius is missing


def cancer(holes: int = HOLES) -> Any:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["malignant"] = 1 - frame.pop("target")  # 1: malignant, as in warden.yaml
    rows = np.random.default_rng(7).choice(len(frame), holes, replace=False)
    frame.loc[rows, "mean_radius"] = np.nan
    return frame


def config(numeric_missing: str | None = None, **extra: Any) -> ModelConfig:
    model: dict[str, Any] = {
        "task": "classification",
        "target": "malignant",
        "estimator": {
            "steps": [
                {"class": "StandardScaler"},
                {"class": "LogisticRegression", "params": {"max_iter": 1000}},
            ]
        },
        "data": {"prefix": "breast-cancer"},
        "features": FEATURES,
        **extra,
    }
    if numeric_missing is not None:
        model["numeric_missing"] = numeric_missing
    return parse_config({"models": {"risk": model}}).model("risk")


def split_of(frame: Any, cfg: ModelConfig) -> Split:
    X_tr, X_ho, y_tr, y_ho = train_test_split(
        model_input(frame, cfg),
        frame[cfg.target],
        test_size=0.25,
        random_state=0,
        stratify=frame[cfg.target],
    )
    return Split(X_tr, X_ho, y_tr, y_ho)


def test_impute_is_the_default_and_training_succeeds_with_nan() -> None:
    cfg = config()
    assert cfg.numeric_missing == "impute"
    frame = cancer()
    parts = split_of(frame, cfg)
    assert parts.X_train["mean_radius"].isna().any()
    assert parts.X_holdout["mean_radius"].isna().any()
    model = fit(cfg, parts)
    assert model.steps[0][0] == IMPUTE_STEP
    assert model.steps[0][1].strategy == "median"
    result = evaluate(
        model, cfg.task, parts.X_holdout, parts.y_holdout, spec=cfg.evaluation, positive_label=1
    )
    assert result.sane, result.problems
    assert result.metrics["roc_auc"] > 0.9
    # Rows with a hole get real scores, from the training median.
    holed = parts.X_holdout[parts.X_holdout["mean_radius"].isna()]
    assert np.isfinite(model.predict_proba(holed)).all()


def test_without_missing_values_the_imputer_changes_nothing() -> None:
    """The example models' data has no holes: their scores stay exactly what they were."""
    complete = cancer(holes=0)
    parts = split_of(complete, config())
    imputed = fit(config(), parts)
    plain = fit(config("refuse"), parts)
    assert IMPUTE_STEP not in dict(plain.steps)
    np.testing.assert_array_equal(
        imputed.predict_proba(parts.X_holdout), plain.predict_proba(parts.X_holdout)
    )


def test_refuse_names_the_column_the_counts_and_the_setting() -> None:
    cfg = config("refuse")
    frame = cancer()
    with pytest.raises(DataError) as info:
        fit(cfg, split_of(frame, cfg))
    message = str(info.value)
    assert "'mean_radius' (40 of 569 rows)" in message
    assert "models.risk.numeric_missing is 'refuse'" in message
    assert "'mean_texture'" not in message  # only the columns that have holes


def test_impute_refuses_a_column_with_no_values_at_all() -> None:
    cfg = config()
    frame = cancer()
    frame["worst_concavity"] = np.nan
    with pytest.raises(DataError, match=r"'worst_concavity' have no values in the 426 training"):
        fit(cfg, split_of(frame, cfg))


def test_impute_with_categorical_features_keeps_the_column_order() -> None:
    cfg = config(features=[*FEATURES, "texture_band"], categorical_features=["texture_band"])
    frame = cancer()
    frame["texture_band"] = np.where(frame["mean_texture"] > 20, "high", "low")
    frame.loc[frame.index[:10], "texture_band"] = None  # a category of its own: "(missing)"
    model = fit(cfg, split_of(frame, cfg))
    encode = model.named_steps["encode"]
    assert [name for name, _, _ in encode.transformers_[:2]] == ["categorical", IMPUTE_STEP]
    # One-hot columns first, then the numeric features in their configured order, as before.
    names = list(encode.get_feature_names_out())
    assert names[-len(FEATURES) :] == FEATURES
    assert set(names[: -len(FEATURES)]) == {
        "texture_band_(missing)",
        "texture_band_high",
        "texture_band_low",
    }


def test_refuse_without_holes_builds_the_configured_pipeline_unchanged() -> None:
    model = build_model(config("refuse"))
    assert [name for name, _ in model.steps] == ["standardscaler", "logisticregression"]


def test_an_unknown_setting_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"models\.risk\.numeric_missing: Input should be"):
        config("drop")


def test_profiles_and_drift_count_missing_numeric_values() -> None:
    frame = cancer()
    cfg = config()
    profile = build_profile(frame, cfg)
    radius = profile["features"]["mean_radius"]
    assert radius["missing"] == HOLES
    assert radius["count"] == len(frame) - HOLES
    assert np.isfinite([radius["mean"], radius["std"], radius["min"], radius["max"]]).all()
    # Recent data with twice the holes: drift is computed, and the missing rate moves.
    recent = cancer(holes=2 * HOLES)
    result = compute_drift(
        profile,
        {c: recent[c].to_numpy() for c in FEATURES},
        DriftThresholds(min_rows=100),
    ).to_dict()
    radius_drift = result["features"]["mean_radius"]
    assert radius_drift["missing_ref"] == pytest.approx(HOLES / len(frame))
    assert radius_drift["missing_cur"] == pytest.approx(2 * HOLES / len(frame))
    assert radius_drift["drifted"]
    assert radius_drift["reasons"][0].startswith("missing_rate")
    assert np.isfinite(radius_drift["stats"]["wasserstein"])
    assert not result["features"]["mean_texture"]["drifted"]


def test_a_model_without_an_imputer_scoring_rows_with_gaps_is_a_data_error() -> None:
    """A champion trained before the imputer existed (or under ``refuse``) meets a holdout with
    gaps: scikit-learn's ValueError becomes a permanent DataError — the retrain then records
    "champion could not be evaluated" and decides on the floor, instead of failing retryably
    and being redelivered until it is dead-lettered."""
    clean = cancer(holes=0)
    strict = config("refuse")
    old_champion = fit(strict, split_of(clean, strict))
    gappy = cancer()
    with pytest.raises(DataError, match="cannot score these rows"):
        evaluate(
            old_champion,
            "classification",
            model_input(gappy, strict),
            gappy["malignant"],
            spec=strict.evaluation,
        )
