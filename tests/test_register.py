"""`warden register MODEL FILE`: an externally trained model imported as a version, evaluated and
gated like a retrain, against the storage emulator. The models are trained here with
scikit-learn on the seeded example data (the configured window's training rows)."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from click.testing import CliRunner, Result
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from warden.cli.main import EXIT_ERROR, main
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import read_data, retrain
from warden.store.registry import ARTIFACT

ROOT = Path(__file__).resolve().parents[1]
RISK, SEG = "breast-cancer-risk", "customer-segments"
AS_OF = date(2026, 11, 20)


@pytest.fixture
def env(seed, make_runtime, bucket_names, monkeypatch):
    """Ten days of breast-cancer data, a champion v1 from a retrain, and the CLI pointed at the
    same buckets (events are only logged: no topic)."""
    seed(days=10, models=(RISK,))
    rt = make_runtime(install=False)
    first = retrain(
        RunRequest(model=RISK, reason="manual", key="first", message_id="first", as_of=AS_OF), rt
    )
    assert (first.version, first.promoted) == (1, True)
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", bucket_names["registry"])
    monkeypatch.setenv("WARDEN_DATA_BUCKET", bucket_names["data"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    monkeypatch.delenv("WARDEN_EVENTS_TOPIC", raising=False)
    monkeypatch.setenv("CLOUDSDK_CORE_ACCOUNT", "ops@example.com")  # the operator's identity
    return rt


def training_rows(rt, model: str = RISK) -> tuple[Any, Any]:
    """The training rows of the configured window (what a retrain fits on; not the holdout)."""
    data = read_data(rt, rt.config.model(model), AS_OF)
    return data.parts.X_train, data.parts.y_train


def save(model: Any, path: Path) -> Path:
    joblib.dump(model, path)
    return path


def good_model(rt, path: Path) -> Path:
    X, y = training_rows(rt)
    pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=1.0, max_iter=2000))])
    return save(pipe.fit(X, y), path)


def bad_model(rt, path: Path) -> Path:
    """Fitted on the right features with shuffled labels: its ROC AUC is near 0.5."""
    X, y = training_rows(rt)
    shuffled = np.random.default_rng(7).permutation(np.asarray(y))
    pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=2000))])
    return save(pipe.fit(X, shuffled), path)


class Embedder:
    """Fitted on the configured columns, but it cannot assign clusters (no predict)."""

    def __init__(self, columns: list[str]) -> None:
        self.feature_names_in_ = np.asarray(columns, dtype=object)

    def transform(self, X: Any) -> Any:
        return X


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def objects(rt) -> list[str]:
    return sorted(b.name for b in rt.clients.storage.list_blobs(rt.settings.registry_bucket))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_as_good_as_the_champion_is_registered_profiled_and_promoted(env, tmp_path):
    path = good_model(env, tmp_path / "vendor.joblib")
    out = invoke("--json", "register", RISK, str(path), "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    outcome = json.loads(out.output)
    assert (outcome["version"], outcome["promoted"], outcome["forced"]) == (2, True, False)
    assert outcome["gate"]["passed"] is True
    assert outcome["champion_version"] == 1
    registry = env.registry()
    assert registry.alias(RISK).version == 2
    last = registry.history(RISK)[-1]
    assert (last.version, last.previous_version, last.action) == (2, 1, "promote")
    assert last.reason == "gate passed (register vendor.joblib)"
    assert last.actor == "ops@example.com"

    manifest = registry.manifest(RISK, 2)
    assert manifest["source"]["kind"] == "register"
    assert manifest["source"]["file"] == "vendor.joblib"
    assert manifest["source"]["sha256"] == sha256(path)
    assert manifest["source"]["feature_names_checked"] is True
    # Evaluated as a retrain evaluates: champion v1 on the same held-out rows, same gate.
    v1 = registry.manifest(RISK, 1)
    assert manifest["evaluation"]["holdout"] == v1["evaluation"]["holdout"]
    assert manifest["data"]["files_sha256"] == v1["data"]["files_sha256"]
    assert manifest["metrics"]["champion"]["roc_auc"] == pytest.approx(
        v1["metrics"]["candidate"]["roc_auc"]
    )
    assert manifest["metrics"]["candidate"]["roc_auc"] > 0.95
    assert manifest["gate"]["champion_version"] == 1
    # Its training data is unknown: nothing claims it was fitted on this window.
    assert manifest["data"]["train_rows"] is None
    assert manifest["data"]["train_range"] is None
    assert manifest["estimator"]["steps"] == [
        {"name": "scale", "class": "StandardScaler"},
        {"name": "lr", "class": "LogisticRegression"},
    ]
    assert set(manifest["files"]) == {ARTIFACT, "profile.json", "report.html"}
    profile = json.loads(registry.read_file(RISK, 2, "profile.json", manifest))
    assert sum(profile["score_distribution"]["counts"]) == manifest["data"]["holdout_rows"]
    assert profile["baseline_metrics"]["roc_auc"] == manifest["metrics"]["candidate"]["roc_auc"]
    assert set(profile["features"]) == set(manifest["features"])
    assert b'id="gate"' in registry.read_file(RISK, 2, "report.html", manifest)
    loaded, _ = registry.load(RISK, 2)
    X, _y = training_rows(env)
    expected = joblib.load(path).predict_proba(X)
    np.testing.assert_allclose(loaded.predict_proba(X), expected)


def test_a_worse_model_is_registered_but_not_promoted_and_the_command_says_why(env, tmp_path):
    path = bad_model(env, tmp_path / "shuffled.joblib")
    out = invoke("register", RISK, str(path), "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    assert "registered shuffled.joblib as v2" in out.output
    assert "not promoted, its gate failed" in out.output
    assert "< floor 0.900: rejected" in out.output
    assert f"warden promote {RISK} 2 --force" in out.output
    registry = env.registry()
    assert registry.version_numbers(RISK) == [1, 2]
    assert registry.alias(RISK).version == 1
    assert len(registry.history(RISK)) == 1
    gate = registry.manifest(RISK, 2)["gate"]
    assert gate["passed"] is False
    assert any(r.endswith(": rejected") for r in gate["reasons"])

    again = json.loads(
        invoke(
            "--json", "register", RISK, str(path), "--as-of", AS_OF.isoformat(), "--again"
        ).output
    )
    assert (again["version"], again["promoted"]) == (3, False)
    assert again["gate"]["passed"] is False
    assert again["gate"]["reasons"] == gate["reasons"]


def test_force_with_a_reason_promotes_past_the_gate_and_history_keeps_the_reason(env, tmp_path):
    path = bad_model(env, tmp_path / "mandated.joblib")
    no_reason = CliRunner().invoke(main, ["register", RISK, str(path), "--force"])
    assert no_reason.exit_code == 2
    assert "--force needs --reason" in no_reason.output
    assert env.registry().version_numbers(RISK) == [1]

    out = invoke(
        "--json",
        "register",
        RISK,
        str(path),
        "--as-of",
        AS_OF.isoformat(),
        "--force",
        "--reason",
        "vendor model required by the audit",
    )
    assert out.exit_code == 0, out.output
    outcome = json.loads(out.output)
    assert (outcome["version"], outcome["promoted"], outcome["forced"]) == (2, True, True)
    assert outcome["gate"]["passed"] is False
    registry = env.registry()
    assert registry.alias(RISK).version == 2
    last = registry.history(RISK)[-1]
    assert (last.version, last.previous_version) == (2, 1)
    assert last.reason == "forced past a failed gate: vendor model required by the audit"
    assert last.actor == "ops@example.com"


def test_wrong_features_are_refused_and_nothing_is_registered(env, tmp_path):
    X, y = training_rows(env)
    before = objects(env)
    cases = {
        "fewer.joblib": (
            LogisticRegression(max_iter=2000).fit(X[X.columns[:-1]], y),
            "missing ['worst_concave_points']",
        ),
        "reordered.joblib": (
            LogisticRegression(max_iter=2000).fit(X[list(reversed(X.columns))], y),
            "in another order",
        ),
        "numpy.joblib": (
            LogisticRegression(max_iter=2000).fit(X.to_numpy()[:, :5], y),
            "takes 5 features",
        ),
        "labels.joblib": (
            LogisticRegression(max_iter=2000).fit(X, np.where(y == 1, "yes", "no")),
            "do not include breast-cancer-risk's positive_label 1",
        ),
        "clusters.joblib": (
            KMeans(n_clusters=2, n_init=2, random_state=0).fit(X),
            "has no predict_proba",
        ),
    }
    for name, (model, message) in cases.items():
        path = save(model, tmp_path / name)
        out = CliRunner().invoke(main, ["register", RISK, str(path), "--as-of", "2026-11-20"])
        assert out.exit_code == EXIT_ERROR, (name, out.output)
        assert message in out.output, (name, out.output)
        assert "error:" in out.output
    not_a_model = tmp_path / "notes.joblib"
    not_a_model.write_bytes(b"certainly not a pickle")
    out = CliRunner().invoke(main, ["register", RISK, str(not_a_model)])
    assert out.exit_code == EXIT_ERROR
    assert "is not a joblib file" in out.output
    assert objects(env) == before  # no claim, no file, no manifest, no alias move


def test_a_file_pickled_by_another_scikit_learn_is_refused(env, tmp_path, monkeypatch):
    X, y = training_rows(env)
    model = LogisticRegression(max_iter=2000).fit(X, y)
    with monkeypatch.context() as patched:  # what another scikit-learn writes into the pickle
        patched.setattr("sklearn.base.__version__", "0.24.2")
        path = save(model, tmp_path / "old.joblib")
    before = objects(env)
    out = CliRunner().invoke(main, ["register", RISK, str(path), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == EXIT_ERROR, out.output
    assert "pickled by another scikit-learn version" in out.output
    assert "0.24.2" in out.output
    assert objects(env) == before


def test_the_same_file_twice_is_refused_unless_again(env, tmp_path):
    path = good_model(env, tmp_path / "vendor.joblib")
    assert invoke("register", RISK, str(path), "--as-of", AS_OF.isoformat()).exit_code == 0
    before = objects(env)
    copy = tmp_path / "renamed.joblib"
    copy.write_bytes(path.read_bytes())  # another name, the same bytes
    out = CliRunner().invoke(main, ["register", RISK, str(copy), "--as-of", AS_OF.isoformat()])
    assert out.exit_code == EXIT_ERROR
    assert "already registered as v2 from 'vendor.joblib'" in out.output
    assert "--again" in out.output
    assert objects(env) == before
    out = invoke("--json", "register", RISK, str(copy), "--as-of", AS_OF.isoformat(), "--again")
    assert out.exit_code == 0, out.output
    third = json.loads(out.output)
    assert third["version"] == 3
    assert env.registry().manifest(RISK, 3)["source"]["sha256"] == sha256(path)


def test_a_clustering_model_needs_predict_and_gets_a_cluster_profile(
    seed, make_runtime, bucket_names, monkeypatch, tmp_path
):
    seed(days=14, customer_rows=600, seed=1, models=(SEG,))
    rt = make_runtime(install=False)
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", bucket_names["registry"])
    monkeypatch.setenv("WARDEN_DATA_BUCKET", bucket_names["data"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    X, _ = training_rows(rt, SEG)
    refused = CliRunner().invoke(
        main,
        [
            "register",
            SEG,
            str(save(Embedder(list(X.columns)), tmp_path / "e.joblib")),
            "--as-of",
            "2026-11-20",
        ],
    )
    assert refused.exit_code == EXIT_ERROR
    assert "has no predict" in refused.output

    pipe = Pipeline(
        [("scale", StandardScaler()), ("km", KMeans(n_clusters=4, n_init=4, random_state=0))]
    )
    path = save(pipe.fit(X), tmp_path / "segments.joblib")
    out = invoke("--json", "register", SEG, str(path), "--as-of", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    outcome = json.loads(out.output)
    assert (outcome["version"], outcome["promoted"]) == (1, True)  # first version: floor alone
    manifest = rt.registry().manifest(SEG, 1)
    assert manifest["gate"]["metric"] == "silhouette"
    profile = json.loads(rt.registry().read_file(SEG, 1, "profile.json", manifest))
    counts = profile["cluster_distribution"]["counts"]
    assert sum(counts.values()) == manifest["data"]["holdout_rows"]
    assert len(counts) == 4
