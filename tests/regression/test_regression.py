"""Regression guard: the example models must score as well as their recorded baseline.

Each example model of ``warden.yaml`` is trained exactly as ``retrain_model`` trains it (same
data reader, seeded split, estimator, evaluation; only the storage is in memory, see
``regression_guard.py``) on deterministic example data, and its held-out metrics are compared
with ``baseline.json``:

* a guarded metric (silhouette, ROC AUC, F1) more than 5 % below its baseline (relative) fails,
  naming the model, the metric, both values, and what changed since the baseline (estimator,
  library versions);
* more than 5 % above only warns that the baseline could be refreshed;
* two trainings must give identical metrics, or the guard would be flaky.

Refresh rule. ``baseline.json`` changes only deliberately, with ``make regression-baseline``
(a dry run that prints the diff old → new) and then ``make regression-baseline CONFIRM=yes``,
and only when the metric change is intended and understood: a new estimator or parameters,
a reviewed library upgrade (docs/dependencies.md), a change to the example data or evaluation.
Never refresh to make a failing guard pass: a drop nobody can explain is the bug this test is
for. Commit the refreshed file together with the change that explains it.
"""

from __future__ import annotations

import warnings

import pytest
from regression_guard import (
    BASELINE,
    CONFIG,
    GUARDED,
    RECORDED,
    REFRESH_HINT,
    TOLERANCE,
    compare,
    context,
    example_models,
    load_baseline,
    train_all,
)

from warden.config import load_config

BASE = load_baseline() if BASELINE.exists() else {"models": {}}


class BaselineCanBeRefreshed(UserWarning):
    """A metric is well above its baseline: the guard would no longer catch a drop back."""


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def trained(config):
    return train_all(config)


def test_baseline_describes_the_example_models(config):
    assert BASELINE.exists(), f"{BASELINE} is missing. {REFRESH_HINT}"
    assert sorted(BASE["models"]) == sorted(example_models(config)), (
        f"baseline.json covers {sorted(BASE['models'])} but warden.yaml's example models are "
        f"{sorted(example_models(config))}. {REFRESH_HINT}"
    )
    for name, entry in BASE["models"].items():
        assert set(entry["metrics"]) == set(RECORDED[entry["task"]]), name
        assert set(entry["guarded"]) == GUARDED & set(entry["metrics"]), name
    for key in ("created", "libraries", "data", "tolerance"):
        assert key in BASE, f"baseline.json lacks {key!r}"
    assert {"scikit-learn", "numpy"} <= set(BASE["libraries"])
    assert BASE["tolerance"] == TOLERANCE


def test_training_is_deterministic(config, trained):
    again = train_all(config)
    for name, first in trained.items():
        assert again[name].metrics == first.metrics, (
            f"{name}: two trainings on the same data gave {first.metrics} and "
            f"{again[name].metrics}; the regression guard needs a deterministic run "
            "(a random_state missing from the estimator or the split?)"
        )


@pytest.mark.parametrize("model", sorted(BASE["models"]))
def test_no_regression_against_baseline(model, trained):
    verdicts = [v for v in compare(BASE, trained) if v.model == model]
    regressed = [v for v in verdicts if v.regressed]
    for v in verdicts:
        if v.improved:
            warnings.warn(
                f"{v.line()}: more than {TOLERANCE:.0%} better than the baseline; if the "
                "improvement is understood, refresh it (make regression-baseline) so that a "
                "later drop back is caught",
                BaselineCanBeRefreshed,
                stacklevel=1,
            )
    if regressed:
        lines = [f"{model} regressed by more than {TOLERANCE:.0%} against {BASELINE.name}:"]
        lines += [f"  {v.line()}" for v in regressed]
        notes = context(BASE, trained, model)
        if notes:
            lines += ["changed since the baseline:", *notes]
        lines.append(REFRESH_HINT + " Never refresh just to make this test pass.")
        pytest.fail("\n".join(lines), pytrace=False)
