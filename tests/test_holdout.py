"""The holdout (issue 15, item 1): a champion is never scored on rows it was trained on.

The data: daily partitions in the real fake-gcs-server whose labels follow a logistic model
(10 standard-normal features, 6 of them with weight, seeded), so a logistic regression is the
right model and a RandomForest, which memorises the label noise, is genuinely worse on rows it
has not seen but near perfect on rows it has. The champion (the forest) is trained two days
before the candidate (the logistic regression), on an overlapping 14-day window.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from warden.config import parse_config
from warden.errors import DataError
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.ml.evaluation import evaluate
from warden.ml.gate import decide
from warden.ml.training import (
    MIN_COMPARISON_ROWS,
    RANDOM_HOLDOUT_WARNING,
    champion_rows,
    fit,
    split,
    trained_through,
)
from warden.store.data import ROW_DAY, read_training_frame
from warden_local.examples import write_partitions

pytestmark = pytest.mark.emulator

END = date(2026, 11, 20)
DAYS, PER_DAY = 16, 100
FEATURES = [f"x{i}" for i in range(10)]
WEIGHTS = 1.2 * np.array([1.0, -1.0, 0.8, -0.8, 0.6, 0.5, 0.0, 0.0, 0.0, 0.0])
FOREST = [{"class": "RandomForestClassifier", "params": {"n_estimators": 100, "random_state": 0}}]
LOGISTIC = [{"class": "StandardScaler"}, {"class": "LogisticRegression", "params": {"C": 1.0}}]
MODELS = {"leak-time": "time", "leak-random": "random"}


def day(n: int) -> date:
    """``n`` days before END."""
    return END - timedelta(days=n)


def leak_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(DAYS * PER_DAY, len(FEATURES)))
    y = (rng.random(len(X)) < 1.0 / (1.0 + np.exp(-(X @ WEIGHTS)))).astype("int64")
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = y
    return frame


def source_days() -> np.ndarray:
    """Each source row's partition day, as write_partitions lays the frame out (equal chunks,
    oldest first)."""
    return np.repeat([day(DAYS - 1 - i) for i in range(DAYS)], PER_DAY)


def raw_config(estimator: list[dict[str, Any]]) -> dict[str, Any]:
    model = {
        "task": "classification",
        "estimator": {"steps": estimator},
        "data": {"prefix": "leak", "format": "csv", "window_days": 14},
        "features": FEATURES,
        "target": "y",
        "gate": {"metric": "roc_auc", "min": 0.6, "max_relative_drop": 0.05},
    }
    return {
        "version": 1,
        "models": {
            name: {**model, "evaluation": {"holdout": holdout, "holdout_fraction": 0.25}}
            for name, holdout in MODELS.items()
        },
    }


def request(model: str, as_of: date, key: str) -> RunRequest:
    return RunRequest(model=model, reason="manual", key=key, message_id=key, as_of=as_of)


@pytest.fixture
def leak(storage_client, bucket_names, make_runtime, tmp_path: Path) -> SimpleNamespace:
    """The data in the emulator, and a forest champion (v1) for both models trained as of
    END - 2 days, on the window END-15..END-2."""
    frame = leak_frame()
    write_partitions(
        storage_client,
        bucket=bucket_names["data"],
        prefix="leak",
        frame=frame,
        fmt="csv",
        end=END,
        days=DAYS,
    )
    runtimes = {}
    for role, estimator in (("champion", FOREST), ("candidate", LOGISTIC)):
        path = tmp_path / f"{role}.yaml"
        path.write_text(yaml.safe_dump(raw_config(estimator)))
        runtimes[role] = make_runtime(install=False, config_path=path)
    for model in MODELS:
        first = retrain(request(model, day(2), f"{model}-v1"), runtimes["champion"])
        assert (first.version, first.promoted) == (1, True), first.gate
    frame["day"] = source_days()
    return SimpleNamespace(
        frame=frame, storage=storage_client, bucket=bucket_names["data"], **runtimes
    )


def test_a_random_holdout_rejects_a_better_candidate_the_time_holdout_promotes(leak) -> None:
    # What retrain did before: a random holdout of the candidate's window (END-13..END), both
    # models scored on all of it.
    cfg = leak.candidate.config.model("leak-random")
    frame, _ = read_training_frame(
        leak.storage,
        bucket=leak.bucket,
        spec=cfg.data,
        columns=FEATURES,
        as_of=END,
        target="y",
        row_days=True,
    )
    window = leak.frame[leak.frame["day"] >= day(13)]
    assert [d.date() for d in frame[ROW_DAY]] == list(window["day"])  # each row's own day
    parts = split(frame, cfg, days=frame[ROW_DAY])
    forest, m1 = leak.candidate.registry().load("leak-random", 1)
    seen = parts.holdout_days <= np.datetime64(m1["data"]["train_range"]["last"])
    assert seen.mean() > 0.8  # most held-out rows are inside the forest's training days
    logistic = fit(cfg, parts)

    def auc(model: Any, mask: Any) -> Any:
        X, y = parts.holdout_subset(mask)
        return evaluate(model, "classification", X, y, spec=cfg.evaluation)

    everything = np.ones(len(parts.X_holdout), dtype=bool)
    leaked = decide(
        metric="roc_auc",
        floor=0.6,
        max_relative_drop=0.05,
        candidate=auc(logistic, everything),
        champion=auc(forest, everything),
        champion_version=1,
    )
    assert not leaked.passed, leaked.reasons
    assert leaked.champion_value > 0.95 > leaked.candidate_value  # the forest recalls its rows
    # On the held-out rows the forest never saw, the candidate is the better model.
    unseen_cand, unseen_champ = auc(logistic, ~seen), auc(forest, ~seen)
    assert unseen_cand.metrics["roc_auc"] > unseen_champ.metrics["roc_auc"]

    # The default time-based holdout: the newest days, which the champion never saw.
    outcome = retrain(request("leak-time", END, "leak-time-v2"), leak.candidate)
    assert outcome.promoted, outcome.gate["reasons"]
    m2 = leak.candidate.registry().manifest("leak-time", 2)
    assert m2["gate"]["passed"] is True
    assert m2["evaluation"]["champion_rows"]["rows"] == m2["data"]["holdout_rows"]
    assert m2["metrics"]["candidate"]["roc_auc"] > m2["metrics"]["champion"]["roc_auc"]
    assert m2["evaluation"]["warnings"] == []
    assert leak.candidate.registry().resolve("leak-time") == 2


def _counts(rows: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in rows["y"].value_counts().sort_index().items()}


def test_the_champion_is_scored_only_on_rows_dated_after_its_training_range(leak) -> None:
    src = leak.frame
    registry = leak.candidate.registry()

    # Time: the champion (window END-15..END-2) trained on its ten oldest days.
    m1 = registry.manifest("leak-time", 1)
    trained = m1["data"]["train_range"]
    assert trained == {"first": day(15).isoformat(), "last": day(6).isoformat()}
    in_range = src[(src["day"] >= day(15)) & (src["day"] <= day(6))]
    assert m1["data"]["train_rows"] == len(in_range)  # the range is the rows it was fitted on
    assert m1["evaluation"]["holdout"]["first"] == day(5).isoformat()

    retrain(request("leak-time", END, "leak-time-v2"), leak.candidate)
    m2 = registry.manifest("leak-time", 2)
    rows = m2["evaluation"]["champion_rows"]
    assert rows["after"] == trained["last"]
    assert rows["source"] == "train_range"
    assert rows["first"] > trained["last"]
    held = m2["evaluation"]["holdout"]
    scored = src[(src["day"] >= date.fromisoformat(held["first"])) & (src["day"] <= END)]
    assert scored["day"].min() > day(6)  # no row of the champion's training days
    assert m2["evaluation"]["champion"]["n_rows"] == len(scored) == rows["rows"]
    assert m2["evaluation"]["champion"]["class_counts"] == _counts(scored)
    assert m2["gate"]["candidate_value"] == m2["metrics"]["candidate"]["roc_auc"]

    # Random: the champion trained on every day of its window, so only the candidate's held-out
    # rows of the two newest days are unseen; both models are scored on those, and only those.
    r1 = registry.manifest("leak-random", 1)
    assert r1["data"]["train_range"] == {"first": day(15).isoformat(), "last": day(2).isoformat()}
    retrain(request("leak-random", END, "leak-random-v2"), leak.candidate)
    r2 = registry.manifest("leak-random", 2)
    rows = r2["evaluation"]["champion_rows"]
    assert (rows["after"], rows["first"], rows["last"]) == (
        day(2).isoformat(),
        day(1).isoformat(),
        END.isoformat(),
    )
    assert MIN_COMPARISON_ROWS <= rows["rows"] < r2["data"]["holdout_rows"]
    assert r2["evaluation"]["champion"]["n_rows"] == rows["rows"]
    cand_on_rows = r2["evaluation"]["candidate_on_champion_rows"]
    assert r2["gate"]["candidate_value"] == cand_on_rows["roc_auc"]
    assert cand_on_rows["roc_auc"] != r2["metrics"]["candidate"]["roc_auc"]
    assert r2["evaluation"]["warnings"] == [RANDOM_HOLDOUT_WARNING]
    assert RANDOM_HOLDOUT_WARNING in r2["gate"]["reasons"]


def test_a_retrain_on_the_champions_own_window(leak) -> None:
    registry = leak.candidate.registry()
    # Time: the champion never saw its window's newest days, so the comparison stands.
    retrain(request("leak-time", day(2), "leak-time-again"), leak.candidate)
    again = registry.manifest("leak-time", 2)
    assert again["evaluation"]["champion_rows"]["rows"] == again["data"]["holdout_rows"]
    assert again["metrics"]["champion"] is not None
    assert again["gate"]["champion_error"] is None

    # Random: every held-out row is inside the champion's training days; it is not scored, and
    # the floor alone decides.
    retrain(request("leak-random", day(2), "leak-random-again"), leak.candidate)
    skipped = registry.manifest("leak-random", 2)
    assert skipped["metrics"]["champion"] is None
    assert skipped["gate"]["champion_value"] is None
    error = skipped["gate"]["champion_error"]
    assert error.startswith("champion v1 could not be scored on unseen rows: all ")
    assert f"dated on or before {day(2).isoformat()}" in error
    assert any("deciding on the floor alone" in r for r in skipped["gate"]["reasons"])
    assert skipped["gate"]["passed"] is True
    assert skipped["evaluation"]["champion_rows"]["rows"] == 0


# --------------------------------------------------------------------- split, without storage


def _cfg(holdout: str = "time", fraction: float = 0.25, **model: Any):
    raw = raw_config(LOGISTIC)
    spec = raw["models"]["leak-time"]
    spec["evaluation"] = {"holdout": holdout, "holdout_fraction": fraction}
    spec.update(model)
    return parse_config(raw).model("leak-time")


def _days(counts: list[int]) -> list[date]:
    return [d for i, n in enumerate(counts) for d in [day(len(counts) - 1 - i)] * n]


def test_the_time_holdout_is_the_fewest_newest_days_holding_the_fraction() -> None:
    frame = leak_frame().iloc[:700]
    days = _days([100] * 7)  # 25 % of 700 is 175 rows: the two newest days (200 rows)
    parts = split(frame, _cfg(), days=days)
    assert (parts.method, len(parts.X_train), len(parts.X_holdout)) == ("time", 500, 200)
    assert parts.train_range is not None
    assert parts.holdout_range is not None
    assert (parts.train_range.first, parts.train_range.last) == (day(6), day(2))
    assert (parts.holdout_range.first, parts.holdout_range.last) == (day(1), END)
    assert list(parts.X_holdout.index) == list(range(500, 700))  # the rows of those days
    assert ROW_DAY not in parts.X_train.columns
    assert list(parts.X_train.columns) == FEATURES
    assert parts.warnings == ()
    # Uneven days: the newest day alone already holds a quarter of the rows.
    parts = split(frame, _cfg(), days=_days([100, 100, 100, 100, 100, 200]))
    assert len(parts.X_holdout) == 200
    assert parts.holdout_range.first == END
    # However large the newest days, at least one day is left to train on.
    parts = split(frame, _cfg(fraction=0.5), days=_days([100, 600]))
    assert (len(parts.X_train), len(parts.X_holdout)) == (100, 600)


def test_the_time_holdout_refuses_what_it_cannot_split() -> None:
    frame = leak_frame().iloc[:300]
    with pytest.raises(DataError, match=r"data on 1 day\(s\) \(2026-11-20\); it needs at least 2"):
        split(frame, _cfg(), days=[END] * 300)
    with pytest.raises(ValueError, match="needs each row's partition day"):
        split(frame, _cfg())
    one_class = frame.copy()
    one_class.loc[200:, "y"] = 1  # the newest day holds only class 1
    with pytest.raises(DataError, match=r"held-out days dt=2026-11-20\.\.dt=2026-11-20 hold only"):
        split(one_class, _cfg(), days=_days([100, 100, 100]))
    # The random split takes any data and says what it costs.
    parts = split(frame, _cfg("random"), days=[END] * 300)
    assert parts.method == "random"
    assert parts.warnings == (RANDOM_HOLDOUT_WARNING,)


def test_champion_rows_for_old_manifests_and_too_few_rows() -> None:
    frame = leak_frame().iloc[:800]
    cfg = _cfg("random")
    parts = split(frame, cfg, days=_days([100] * 8))

    def unseen_after(n: int) -> int:
        return int((parts.holdout_days > np.datetime64(day(n))).sum())

    # A manifest from before train_range: the end of the window it read.
    old = {"data": {"start": day(20).isoformat(), "end": day(3).isoformat(), "rows": 1}}
    assert trained_through(old) == (day(3), "window_end")
    rows = champion_rows(parts, old)
    assert rows.problem is None
    assert (rows.first, rows.last) == (day(2), END)
    assert rows.rows == unseen_after(3) == int(rows.mask.sum())
    assert rows.to_dict()["source"] == "window_end"
    assert not rows.everything
    # Newer manifests: the precise range wins over the window.
    both = {"data": {**old["data"], "train_range": {"first": "2026-11-01", "last": "2026-11-17"}}}
    assert trained_through(both) == (day(3), "train_range")
    # A handful of unseen rows is no honest comparison.
    recent = {"data": {**old["data"], "end": day(1).isoformat()}}
    assert unseen_after(1) < MIN_COMPARISON_ROWS
    few = champion_rows(parts, recent)
    assert few.mask is None
    assert few.problem == (
        f"only {unseen_after(1)} of the {len(parts.X_holdout)} held-out rows are dated after "
        f"{day(1).isoformat()} (its window's end); fewer than {MIN_COMPARISON_ROWS} is too few "
        "to compare on"
    )
    nothing = champion_rows(parts, {"features": FEATURES})
    assert nothing.problem == "its manifest records neither its training days nor its data window"
