"""warden.ml.gate: each rule, its explanation, and an end-to-end run on real models."""

from __future__ import annotations

import json
import math

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from warden.config import EvaluationSpec
from warden.ml.evaluation import Evaluation, evaluate
from warden.ml.gate import GateDecision, decide


def ev(value: float, metric: str = "roc_auc", *, sane: bool = True) -> Evaluation:
    problems = [] if sane else ["all predictions are 0"]
    return Evaluation(metrics={metric: value}, details={}, sane=sane, problems=problems)


def gate(candidate: Evaluation, champion: Evaluation | None, **kw) -> GateDecision:
    args = {"metric": "roc_auc", "floor": 0.9, "max_relative_drop": 0.05, "champion_version": 3}
    return decide(candidate=candidate, champion=champion, **{**args, **kw})


def test_better_candidate_passes_and_explains_each_check() -> None:
    d = gate(ev(0.93), ev(0.913))
    assert d.passed
    assert (d.candidate_value, d.champion_value) == (0.93, 0.913)
    assert d.reasons == [
        "candidate passed its sanity checks: ok",
        "roc_auc 0.930 >= floor 0.900: ok",
        "roc_auc 0.930 >= champion v3's 0.913: ok",
    ]


def test_small_drop_within_the_relative_margin_passes() -> None:
    d = gate(ev(0.905), ev(0.913))
    assert d.passed
    assert d.reasons[-1] == "roc_auc 0.905 is 0.9% below champion v3's 0.913 (allowed 5.0%): ok"


def test_below_floor_is_rejected_even_when_better_than_champion() -> None:
    d = gate(ev(0.85), ev(0.80))
    assert not d.passed
    assert "roc_auc 0.850 < floor 0.900: rejected" in d.reasons


def test_relative_drop_beyond_margin_is_rejected() -> None:
    d = gate(ev(0.801), ev(0.913), floor=0.5)
    assert not d.passed
    assert (
        d.reasons[-1] == "roc_auc 0.801 is 12.3% below champion v3's 0.913 (allowed 5.0%): rejected"
    )


def test_first_version_is_decided_on_the_floor() -> None:
    ok = gate(ev(0.91), None, champion_version=None)
    assert ok.passed
    assert ok.champion_value is None
    assert ok.reasons[-1] == "no champion yet: first version"
    assert not gate(ev(0.89), None, champion_version=None).passed


def test_champion_error_is_recorded_and_the_floor_alone_decides() -> None:
    # The champion's (much better) score is ignored: it could not be evaluated properly.
    d = gate(ev(0.91), ev(0.99), champion_error="IntegrityError: sha256 mismatch")
    assert d.passed
    assert d.champion_value is None
    assert d.champion_error == "IntegrityError: sha256 mismatch"
    assert d.reasons[-1] == (
        "champion v3 could not be evaluated (IntegrityError: sha256 mismatch): "
        "deciding on the floor alone"
    )
    assert not gate(ev(0.85), None, champion_error="gone").passed


def test_negative_silhouette_margin_is_relative_to_the_magnitude() -> None:
    args = {"metric": "silhouette", "floor": -1.0, "champion_version": 2}
    champion = ev(-0.2, "silhouette")
    # 2.5% worse than -0.200 (threshold -0.210): passes. Naive 0.95 * -0.2 = -0.19 would reject.
    ok = gate(ev(-0.205, "silhouette"), champion, **args)
    assert ok.passed
    assert ok.reasons[-1] == (
        "silhouette -0.205 is 2.5% below champion v2's -0.200 (allowed 5.0%): ok"
    )
    # 10% worse: rejected.
    assert not gate(ev(-0.22, "silhouette"), champion, **args).passed
    # Better (less negative) always passes the comparison.
    assert gate(ev(-0.1, "silhouette"), champion, **args).passed


def test_zero_champion_allows_no_drop() -> None:
    args = {"metric": "silhouette", "floor": -1.0}
    d = gate(ev(-0.01, "silhouette"), ev(0.0, "silhouette"), **args)
    assert not d.passed
    assert (
        d.reasons[-1]
        == "silhouette -0.010 is below champion v3's 0.000, which allows no drop: rejected"
    )


@pytest.mark.parametrize("champion", [None, ev(0.5)])
def test_nan_metric_fails(champion) -> None:
    d = gate(ev(math.nan), champion, floor=-math.inf)
    assert not d.passed
    assert "not a number" in d.reasons[1]
    json.dumps(d.to_dict(), allow_nan=False)  # NaN/inf become null


def test_missing_metric_fails() -> None:
    d = gate(Evaluation(metrics={}, details={}, sane=False, problems=["one cluster"]), None)
    assert not d.passed
    assert d.candidate_value is None
    assert "candidate has no roc_auc value: rejected" in d.reasons


def test_nan_champion_falls_back_to_the_floor() -> None:
    d = gate(ev(0.91), ev(math.nan))
    assert d.passed
    assert d.reasons[-1] == "champion v3 has no usable roc_auc (nan): deciding on the floor alone"


def test_insane_candidate_fails_despite_a_good_metric() -> None:
    d = gate(ev(0.99, sane=False), ev(0.9))
    assert not d.passed
    assert d.reasons[0] == "candidate failed its sanity checks (all predictions are 0): rejected"


def test_numbers_that_round_alike_are_printed_apart() -> None:
    d = gate(ev(0.8999), None)
    assert not d.passed
    assert "roc_auc 0.8999 < floor 0.9000: rejected" in d.reasons


def test_to_dict_is_json() -> None:
    d = gate(ev(0.93), ev(0.913))
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["passed"] is True
    assert out["champion_version"] == 3
    assert out["reasons"] == d.reasons


def test_gate_on_real_models_sharing_one_holdout() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_ho, y_tr, y_ho = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    spec = EvaluationSpec()
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_tr, y_tr)
    dummy = DummyClassifier(strategy="most_frequent").fit(X_tr, y_tr)
    good_ev = evaluate(good, "classification", X_ho, y_ho, spec=spec)
    dummy_ev = evaluate(dummy, "classification", X_ho, y_ho, spec=spec)

    assert decide(
        metric="roc_auc",
        floor=0.5,
        max_relative_drop=0.05,
        candidate=good_ev,
        champion=dummy_ev,
        champion_version=1,
    ).passed
    demoted = decide(
        metric="roc_auc",
        floor=0.5,
        max_relative_drop=0.05,
        candidate=dummy_ev,
        champion=good_ev,
        champion_version=2,
    )
    assert not demoted.passed
    assert demoted.reasons[0].startswith("candidate failed its sanity checks")
    assert demoted.reasons[-1].endswith("(allowed 5.0%): rejected")
