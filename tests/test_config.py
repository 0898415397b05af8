"""warden.yaml validation: the shipped file is valid, and every error names file, key, problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from warden.config import load_config, parse_config
from warden.errors import ConfigError, UnknownModelError
from warden.estimators import build_estimator

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())


def _bad(mutate) -> str:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="cfg.yaml")
    return str(info.value)


def test_shipped_config_is_valid_and_complete() -> None:
    config = load_config(ROOT / "warden.yaml")
    seg = config.model("customer-segments")
    risk = config.model("breast-cancer-risk")
    assert seg.task == "clustering"
    assert seg.gate_metric == "silhouette"
    assert risk.task == "classification"
    assert risk.target == "malignant"
    assert risk.gate_metric == "roc_auc"
    assert risk.gate_floor == 0.9
    assert seg.gate.max_relative_drop == 0.05
    assert seg.schedules.retrain is not None
    assert seg.schedules.retrain.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda r: r["models"]["customer-segments"]["gate"].update(mn=1),
            "cfg.yaml: models.customer-segments.gate.mn: unknown key",
        ),
        (
            lambda r: r["models"]["customer-segments"]["estimator"]["steps"][1].update(
                {"class": "SVC"}
            ),
            "models.customer-segments.estimator.steps[1].class: 'SVC' is not an allowed estimator",
        ),
        (
            lambda r: r["models"]["breast-cancer-risk"]["schedules"]["retrain"].update(
                timezone="Mars/Olympus"
            ),
            "models.breast-cancer-risk.schedules.retrain.timezone: 'Mars/Olympus' is not an IANA",
        ),
        (
            lambda r: r["models"]["breast-cancer-risk"]["schedules"]["retrain"].update(
                cron="61 * * * *"
            ),
            "schedules.retrain.cron: '61 * * * *' is not a valid",
        ),
        (
            lambda r: r["models"]["breast-cancer-risk"].pop("target"),
            "classification models need a 'target'",
        ),
        (
            lambda r: r["models"]["customer-segments"].update(target="x"),
            "clustering models take no 'target'",
        ),
        (
            lambda r: r["models"]["customer-segments"]["gate"].update(metric="roc_auc"),
            "gate.metric 'roc_auc' does not apply to task 'clustering'",
        ),
        (
            lambda r: r["models"]["customer-segments"]["gate"].update(max_relative_drop=2),
            "models.customer-segments.gate.max_relative_drop: Input should be less than or equal",
        ),
        (
            lambda r: r["models"]["customer-segments"]["estimator"]["steps"].reverse(),
            "the last estimator step must be a clusterer",
        ),
        (
            lambda r: r["models"]["customer-segments"]["estimator"].update(factory="pkg.mod:make"),
            "give exactly one of 'steps' or 'factory'",
        ),
        (
            lambda r: r["models"]["customer-segments"].update(features=["a", "a"]),
            "duplicate features: ['a']",
        ),
        (
            lambda r: r["models"]["customer-segments"]["data"].update(prefix="gs://x/y"),
            "models.customer-segments.data.prefix",
        ),
        (
            lambda r: r["models"].update({"Bad_Name": r["models"]["customer-segments"]}),
            "models.Bad_Name.name: model names are",
        ),
        (lambda r: r.update(models={}), "declare at least one model"),
    ],
)
def test_errors_name_file_key_and_problem(mutate, expected: str) -> None:
    assert expected in _bad(mutate)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_unknown_model_names_the_known_ones() -> None:
    config = parse_config(RAW)
    with pytest.raises(UnknownModelError, match="breast-cancer-risk, customer-segments"):
        config.model("nope")


def test_estimator_params_are_checked_when_built() -> None:
    raw = copy.deepcopy(RAW)
    raw["models"]["customer-segments"]["estimator"]["steps"][1]["params"] = {"n_clusterz": 3}
    cfg = parse_config(raw).model("customer-segments")
    with pytest.raises(ConfigError, match=r"steps\[1\].params: KMeans: .*n_clusterz"):
        build_estimator(cfg.estimator)
    raw["models"]["customer-segments"]["estimator"]["steps"][1]["params"] = {"n_clusters": -2}
    cfg = parse_config(raw).model("customer-segments")
    with pytest.raises(ConfigError, match=r"steps\[1\].params: KMeans: .*n_clusters"):
        build_estimator(cfg.estimator)


def test_factory_estimators_are_imported_and_checked() -> None:
    raw = copy.deepcopy(RAW)
    est = raw["models"]["customer-segments"]["estimator"]
    est.pop("steps")
    est["factory"] = "sklearn.cluster:KMeans"
    est["factory_params"] = {"n_clusters": 3, "n_init": 2}
    model = build_estimator(parse_config(raw).model("customer-segments").estimator)
    assert model.n_clusters == 3
    est["factory"] = "warden.nothing_here:make"
    with pytest.raises(ConfigError, match=r"cannot import .warden\.nothing_here:make."):
        build_estimator(parse_config(raw).model("customer-segments").estimator)
    est["factory"] = "json:dumps"
    est["factory_params"] = {"obj": 1}
    with pytest.raises(ConfigError, match="has no fit"):
        build_estimator(parse_config(raw).model("customer-segments").estimator)
