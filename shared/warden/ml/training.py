"""Splitting, fitting and serialising a candidate. Imports scikit-learn lazily."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from warden.config import ModelConfig
from warden.config.estimators import build_estimator
from warden.errors import DataError


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_holdout: Any
    y_train: Any | None
    y_holdout: Any | None


def split(frame: Any, cfg: ModelConfig) -> Split:
    """A seeded train/held-out split (stratified for classifiers) of the configured columns.

    The same data and seed give the same held-out rows, so candidate and champion are always
    scored on identical rows.
    """
    from sklearn.model_selection import train_test_split

    X = model_input(frame, cfg)
    spec = cfg.evaluation
    if cfg.task == "classification":
        y = frame[cfg.target]
        classes = sorted(y.unique().tolist(), key=str)
        if len(classes) != 2:
            raise DataError(
                f"{cfg.name}: classification needs exactly two classes in "
                f"{cfg.target!r}, found {len(classes)}: {classes[:10]}"
            )
        if cfg.positive_label not in classes:
            raise DataError(
                f"{cfg.name}: positive_label {cfg.positive_label!r} does not occur "
                f"in {cfg.target!r} (classes: {classes})"
            )
        counts = y.value_counts()
        if counts.min() < 4:
            raise DataError(
                f"{cfg.name}: class {counts.idxmin()!r} has only {counts.min()} rows;"
                " too few to train and evaluate"
            )
        X_tr, X_ho, y_tr, y_ho = train_test_split(
            X, y, test_size=spec.holdout_fraction, random_state=spec.seed, stratify=y
        )
        return Split(X_tr, X_ho, y_tr, y_ho)
    X_tr, X_ho = train_test_split(X, test_size=spec.holdout_fraction, random_state=spec.seed)
    return Split(X_tr, X_ho, None, None)


MISSING_CATEGORY = "(missing)"


def model_input(frame: Any, cfg: ModelConfig) -> Any:
    """The feature frame a model sees: categorical features as plain strings, missing ones as
    an explicit category (the encoder treats it like any other)."""
    X = frame[cfg.features]
    if cfg.categorical_features:
        X = X.copy()
        for col in cfg.categorical_features:
            X[col] = X[col].astype("object").where(X[col].notna(), MISSING_CATEGORY).astype(str)
    return X


def build_model(cfg: ModelConfig) -> Any:
    """The configured estimator; with categorical features, one-hot encoding goes first."""
    estimator = build_estimator(cfg.estimator, where=f"models.{cfg.name}.estimator")
    if not cfg.categorical_features:
        return estimator
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                cfg.categorical_features,
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    steps = list(estimator.steps) if isinstance(estimator, Pipeline) else [("model", estimator)]
    return Pipeline([("encode", encode), *steps])


def fit(cfg: ModelConfig, data: Split) -> Any:
    estimator = build_model(cfg)
    try:
        if cfg.task == "classification":
            estimator.fit(data.X_train, data.y_train)
        else:
            estimator.fit(data.X_train)
    except ValueError as exc:
        # scikit-learn raises ValueError for data it cannot fit (NaN without an imputer, ...):
        # the same data fails the same way, so it is permanent.
        raise DataError(f"{cfg.name}: fitting failed: {exc}") from exc
    return estimator


def dump(estimator: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(estimator, buf, compress=3)
    return buf.getvalue()


def library_versions() -> dict[str, str]:
    import platform

    import joblib
    import numpy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }
