"""The allow-list of scikit-learn classes a config may name, and building pipelines from it.

A ``factory: module:function`` may only name a function of a module under
:data:`FACTORY_PACKAGES`: code shipped in the function bundle, not whatever the runtime can
import. Only the tables and checks are pure; :func:`build_estimator` imports scikit-learn
(lazily) when called.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any, Literal

from warden.errors import ConfigError

if TYPE_CHECKING:
    from warden.config.models import EstimatorSpec

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

#: ``package.module:function``: ASCII identifiers, a public function name, nothing after it.
FACTORY_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z]\w*", re.ASCII)

#: The packages a ``factory`` may come from. The function bundles ship ``main.py``, the
#: ``warden`` package (every ``.py`` under ``shared/warden/``) and pinned third-party libraries
#: (``local/warden_local/bundle.py``); of those, only ``shared/warden/factories/`` is meant for
#: estimator factories. This is code, not a warden.yaml setting, on purpose: the file that names
#: a factory must not also be able to widen what may be named.
FACTORY_PACKAGES: tuple[str, ...] = ("warden.factories",)


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    # Whole dotted components only: ``warden.factoriesX`` is not inside ``warden.factories``.
    return any(module == p or module.startswith(p + ".") for p in packages)


def check_factory(factory: str, packages: tuple[str, ...] = FACTORY_PACKAGES) -> str:
    """``factory`` if it is a well-formed ``module:function`` inside ``packages``; else
    :class:`ValueError` saying what is allowed."""
    if not FACTORY_PATTERN.fullmatch(factory):
        raise ValueError(f"factory must look like 'package.module:function', got {factory!r}")
    module = factory.partition(":")[0]
    if not _in_packages(module, packages):
        raise ValueError(
            f"{factory!r} is not in an allowed factory package; factories must be functions "
            f"of modules shipped in the function bundle under: {', '.join(packages)}"
        )
    return factory


TASK_FINAL_KIND: dict[str, Kind] = {"clustering": "clusterer", "classification": "classifier"}


def build_estimator(spec: EstimatorSpec, *, where: str = "estimator") -> Any:
    """Build a fresh, unfitted estimator (a Pipeline, or whatever the factory returns)."""
    if spec.factory:
        try:  # checked at config load already; again here, before anything is imported
            check_factory(spec.factory)
        except ValueError as exc:
            raise ConfigError(f"{where}.factory: {exc}") from None
        module_name, func_name = spec.factory.split(":")
        try:
            factory = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}.factory: cannot import {spec.factory!r}: {exc}") from exc
        defined_in = getattr(factory, "__module__", None)
        if not isinstance(defined_in, str) or not _in_packages(defined_in, FACTORY_PACKAGES):
            # e.g. ``from subprocess import run`` in a factories module: not a factory of ours
            raise ConfigError(
                f"{where}.factory: {spec.factory!r} is defined in {defined_in!r}, not in "
                f"{', '.join(FACTORY_PACKAGES)}"
            )
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
