"""The allow-list of scikit-learn classes a config may name, and building pipelines from it.

Only the tables are pure; :func:`build_estimator` imports scikit-learn (lazily) when called.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any, Literal

from warden.errors import ConfigError

if TYPE_CHECKING:
    from warden.config import EstimatorSpec

Kind = Literal["transformer", "clusterer", "classifier"]

#: name -> (module, kind). Anything not here is refused at config validation time.
ALLOWED: dict[str, tuple[str, Kind]] = {
    # preprocessing
    "StandardScaler": ("sklearn.preprocessing", "transformer"),
    "MinMaxScaler": ("sklearn.preprocessing", "transformer"),
    "RobustScaler": ("sklearn.preprocessing", "transformer"),
    "QuantileTransformer": ("sklearn.preprocessing", "transformer"),
    "PowerTransformer": ("sklearn.preprocessing", "transformer"),
    "SimpleImputer": ("sklearn.impute", "transformer"),
    "PCA": ("sklearn.decomposition", "transformer"),
    # clustering
    "KMeans": ("sklearn.cluster", "clusterer"),
    "MiniBatchKMeans": ("sklearn.cluster", "clusterer"),
    # classification
    "LogisticRegression": ("sklearn.linear_model", "classifier"),
    "RandomForestClassifier": ("sklearn.ensemble", "classifier"),
    "ExtraTreesClassifier": ("sklearn.ensemble", "classifier"),
    "GradientBoostingClassifier": ("sklearn.ensemble", "classifier"),
    "HistGradientBoostingClassifier": ("sklearn.ensemble", "classifier"),
}

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*$")

TASK_FINAL_KIND: dict[str, Kind] = {"clustering": "clusterer", "classification": "classifier"}


def build_estimator(spec: EstimatorSpec, *, where: str = "estimator") -> Any:
    """Build a fresh, unfitted estimator (a Pipeline, or whatever the factory returns)."""
    if spec.factory:
        module_name, func_name = spec.factory.split(":")
        try:
            factory = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}.factory: cannot import {spec.factory!r}: {exc}") from exc
        estimator = factory(**spec.factory_params)
        if not hasattr(estimator, "fit"):
            raise ConfigError(
                f"{where}.factory: {spec.factory!r} returned {type(estimator)!r}, "
                "which has no fit()"
            )
        return estimator

    from sklearn.pipeline import Pipeline

    steps = []
    for i, step in enumerate(spec.steps):
        module_name, _kind = ALLOWED[step.cls]
        cls = getattr(importlib.import_module(module_name), step.cls)
        try:
            instance = cls(**step.params)
        except TypeError as exc:
            raise ConfigError(f"{where}.steps[{i}].params: {step.cls}: {exc}") from exc
        try:
            # scikit-learn validates parameter values lazily, at fit; do it now for a clear error.
            instance._validate_params()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.steps[{i}].params: {step.cls}: {exc}") from exc
        steps.append((step.name or step.cls.lower(), instance))
    return Pipeline(steps)
