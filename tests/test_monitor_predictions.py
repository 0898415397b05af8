"""monitor_model on production traffic (``drift.source: predictions``): the prediction log that
warden.serving writes gives the same drift as the same rows read as a training feed, realized
performance on the rows whose labels arrived, and prediction drift against the champion's own
outputs on its holdout."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from warden.config import parse_config
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import monitor
from warden.jobs.retrain import retrain
from warden.ml.drift import prediction_drift
from warden.serving import Champion, PredictionLog
from warden.store.data import ROW_DAY, read_training_frame

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())
TRAINED = date(2026, 11, 1)
LATER = date(2026, 11, 20)
SEG, RISK = "customer-segments", "breast-cancer-risk"


def _runtime(make_runtime, **drift):
    rt = make_runtime(install=False)
    raw = copy.deepcopy(RAW)
    for model in raw["models"].values():
        model["drift"] = {"window_days": 7, "min_rows": 200, **drift}
    rt._config = parse_config(raw)
    return rt


def _drift_json(rt, outcome) -> dict:
    folder = outcome.report.split(f"gs://{rt.settings.registry_bucket}/", 1)[1]
    blob = rt.clients.storage.bucket(rt.settings.registry_bucket).blob(
        folder.replace("report.html", "drift.json")
    )
    return json.loads(blob.download_as_bytes())


def _serve(rt, model: str, frame, plog: PredictionLog, output: str) -> tuple[list[str], object]:
    """Answer every row of ``frame`` with the champion, as a serving app would, logging each
    prediction on its row's day; returns the request ids and the loaded champion."""
    cfg = rt.config.models[model]
    champion = Champion(model, rt.registry())
    loaded = champion.current()
    X = frame[cfg.features]
    if cfg.task == "classification":
        values = loaded.estimator.predict_proba(X)[:, 1]
    else:
        values = loaded.estimator.predict(X)
    ids = []
    for i, (row, value) in enumerate(zip(X.to_dict("records"), values, strict=True)):
        day = frame[ROW_DAY].iloc[i].to_pydatetime().replace(tzinfo=UTC)
        at = day + timedelta(hours=12, seconds=i % 3600)
        out = float(value) if cfg.task == "classification" else int(value)
        ids.append(plog.log(row, {output: out}, version=loaded.version, at=at))
    return ids, loaded


@pytest.fixture
def recent(seed, make_runtime, storage_client, bucket_names):
    """Champions trained on early November, and the week up to LATER as a training feed."""
    seed(end=TRAINED, days=7, customer_rows=2000, seed=1)
    rt = _runtime(make_runtime)
    for model in (SEG, RISK):
        retrain(
            RunRequest(
                model=model, reason="manual", key=f"t-{model}", message_id="t", as_of=TRAINED
            ),
            rt,
        )
    seed(end=LATER, days=7, customer_rows=2000, seed=2, shift=0.6)
    return rt


def _feed(rt, model: str, as_of: date = LATER):
    cfg = rt.config.models[model]
    frame, _ = read_training_frame(
        rt.clients.storage,
        bucket=cfg.data_bucket(rt.settings.data_bucket),
        spec=cfg.data.model_copy(update={"window_days": 7}),
        columns=cfg.features,
        as_of=as_of,
        target=cfg.target,
        row_days=True,
    )
    return frame


def test_the_log_gives_the_drift_the_same_rows_give_as_a_feed_and_joins_labels(
    recent, make_runtime, storage_client, bucket_names
) -> None:
    frame = _feed(recent, RISK)
    direct = monitor(
        RunRequest(model=RISK, reason="schedule", key="feed", message_id="1", as_of=LATER),
        recent,
    )
    plog = PredictionLog(RISK, storage_client.bucket(bucket_names["data"]), flush_at_exit=False)
    ids, loaded = _serve(recent, RISK, frame, plog, "score")
    labeled = list(range(0, len(frame), 3))  # a third of the outcomes are known so far
    for i in labeled:
        day = frame[ROW_DAY].iloc[i].to_pydatetime().replace(tzinfo=UTC)
        plog.label(ids[i], int(frame["malignant"].iloc[i]), at=day + timedelta(hours=20))
    plog.close()

    served_rt = _runtime(make_runtime, source="predictions")
    served = monitor(
        RunRequest(model=RISK, reason="schedule", key="served", message_id="2", as_of=LATER),
        served_rt,
    )
    a, b = _drift_json(recent, direct), _drift_json(served_rt, served)
    assert (a["source"], b["source"]) == ("training", "predictions")
    assert b["window"]["rows"] == a["window"]["rows"] == len(frame)
    assert b["drift"]["drifted"] == a["drift"]["drifted"]
    assert b["drift"]["dataset_drift"] == a["drift"]["dataset_drift"]
    for name, feature in a["drift"]["features"].items():
        for stat in ("psi", "wasserstein", "ks"):
            want = feature["stats"][stat]
            assert b["drift"]["features"][name]["stats"][stat] == pytest.approx(want, rel=1e-9)
    # Prediction drift: the logged scores against the champion's holdout scores.
    profile = json.loads(
        recent.registry().read_file(RISK, loaded.version, "profile.json", loaded.manifest)
    )
    scores = loaded.estimator.predict_proba(frame[recent.config.models[RISK].features])[:, 1]
    expected = prediction_drift(profile, scores, "classification")
    assert b["prediction_drift"]["output"] == "score"
    assert b["prediction_drift"]["value"] == pytest.approx(expected["value"])
    assert b["prediction_drift"]["drifted"] == expected["drifted"]
    assert a["prediction_drift"] is None
    # The report shows the served outputs against the holdout's, on a run over served traffic.
    reports = {}
    for rt_, outcome in ((recent, direct), (served_rt, served)):
        path = outcome.report.split(f"gs://{rt_.settings.registry_bucket}/", 1)[1]
        blob = rt_.clients.storage.bucket(rt_.settings.registry_bucket).blob(path)
        reports[rt_ is served_rt] = blob.download_as_bytes().decode()
    assert 'id="predictions"' in reports[True]
    assert f"psi {b['prediction_drift']['value']:.3f}" in reports[True]
    assert 'id="predictions"' not in reports[False]
    # Realized performance: on exactly the rows whose labels arrived.
    perf = b["performance"]
    assert perf["rows"] == len(labeled)
    want_auc = roc_auc_score(frame["malignant"].iloc[labeled], scores[labeled])
    assert perf["current"] == pytest.approx(want_auc, abs=1e-9)


@pytest.mark.parametrize("as_of", [TRAINED, LATER], ids=["training-week", "shifted-week"])
def test_cluster_shares_of_served_traffic_drift_when_the_segments_move(
    recent, make_runtime, storage_client, bucket_names, as_of
) -> None:
    frame = _feed(recent, SEG, as_of)
    plog = PredictionLog(SEG, storage_client.bucket(bucket_names["data"]), flush_at_exit=False)
    _, loaded = _serve(recent, SEG, frame, plog, "cluster")
    plog.close()
    rt = _runtime(make_runtime, source="predictions")
    outcome = monitor(
        RunRequest(model=SEG, reason="schedule", key="seg", message_id="3", as_of=as_of), rt
    )
    got = _drift_json(rt, outcome)["prediction_drift"]
    assert got["output"] == "cluster"
    assert got["statistic"] == "linf"
    profile = json.loads(
        rt.registry().read_file(SEG, loaded.version, "profile.json", loaded.manifest)
    )
    reference = profile["cluster_distribution"]["counts"]
    assert set(got["reference"]) >= set(reference)
    clusters = loaded.estimator.predict(frame[rt.config.models[SEG].features])
    shares = np.bincount(clusters) / len(clusters)
    assert got["current"] == {str(k): pytest.approx(v, abs=1e-6) for k, v in enumerate(shares)}
    ref_shares = np.asarray([reference.get(str(k), 0) for k in range(len(shares))], float)
    ref_shares /= ref_shares.sum()
    assert got["value"] == pytest.approx(np.max(np.abs(shares - ref_shares)), abs=1e-6)
    # The week it was trained on keeps the holdout's segment shares; the shifted week moves
    # them past the threshold (0.075), and the monitor alerts on it.
    assert got["drifted"] is (as_of == LATER)
    assert outcome.status == "checked"


def test_a_log_without_the_output_column_is_a_clear_data_error(
    recent, make_runtime, storage_client, bucket_names
) -> None:
    from warden.errors import DataError

    frame = _feed(recent, RISK)
    plog = PredictionLog(RISK, storage_client.bucket(bucket_names["data"]), flush_at_exit=False)
    _serve(recent, RISK, frame, plog, "probability")  # not the configured output name
    plog.close()
    rt = _runtime(make_runtime, source="predictions")
    with pytest.raises(DataError, match="score"):
        monitor(
            RunRequest(model=RISK, reason="schedule", key="x", message_id="4", as_of=LATER),
            rt,
        )


def test_outputs_and_performance_are_the_champions_own_rows(
    recent, make_runtime, storage_client, bucket_names
) -> None:
    """Rows another version answered (before a promotion, say) count for feature drift, what
    the model saw, but not for the champion's prediction drift or its realized performance."""
    frame = _feed(recent, RISK)
    plog = PredictionLog(RISK, storage_client.bucket(bucket_names["data"]), flush_at_exit=False)
    ids, loaded = _serve(recent, RISK, frame, plog, "score")
    others = frame.iloc[:150]
    for i, row in enumerate(others[recent.config.models[RISK].features].to_dict("records")):
        day = others[ROW_DAY].iloc[i].to_pydatetime().replace(tzinfo=UTC)
        rid = plog.log(row, {"score": 0.99}, version=loaded.version + 7, at=day)
        plog.label(rid, 0, at=day)  # every other-version row labelled: none may count
    for i in range(0, len(frame), 2):
        day = frame[ROW_DAY].iloc[i].to_pydatetime().replace(tzinfo=UTC)
        plog.label(ids[i], int(frame["malignant"].iloc[i]), at=day + timedelta(hours=20))
    plog.close()
    rt = _runtime(make_runtime, source="predictions")
    outcome = monitor(
        RunRequest(model=RISK, reason="schedule", key="mix", message_id="5", as_of=LATER), rt
    )
    got = _drift_json(rt, outcome)
    assert got["window"]["rows"] == len(frame) + 150
    assert got["prediction_drift"]["rows"] == len(frame)
    assert got["performance"]["rows"] == len(range(0, len(frame), 2))


def test_a_window_with_nothing_served_is_skipped_not_failed(recent, make_runtime) -> None:
    """No app traffic yet (or a quiet week): nothing to judge, and no failure to page about."""
    rt = _runtime(make_runtime, source="predictions")
    outcome = monitor(
        RunRequest(model=RISK, reason="schedule", key="quiet", message_id="6", as_of=LATER), rt
    )
    assert outcome.status == "skipped"
    assert "no predictions logged" in outcome.detail
    assert rt.ledger().status(RISK, "monitor")["last_run"]["outcome"] != "failed"


def test_prediction_drift_is_a_metric_and_no_labels_yet_is_no_failure(
    recent, make_runtime, storage_client, bucket_names
) -> None:
    from warden_local.monitoring import MonitoringStandIn

    frame = _feed(recent, RISK)
    plog = PredictionLog(RISK, storage_client.bucket(bucket_names["data"]), flush_at_exit=False)
    _serve(recent, RISK, frame, plog, "score")
    plog.close()
    with MonitoringStandIn() as standin:
        rt = make_runtime(install=False, metrics_enabled=True, monitoring_endpoint=standin.endpoint)
        rt._config = _runtime(make_runtime, source="predictions").config
        outcome = monitor(
            RunRequest(model=RISK, reason="schedule", key="m", message_id="7", as_of=LATER), rt
        )
        summary = _drift_json(rt, outcome)
        value = summary["prediction_drift"]["value"]
        # No label has arrived yet: performance says so rather than failing the run.
        assert summary["performance"]["labeled_rows"] == 0
        assert summary["performance"]["current"] is None
        since = datetime.now(UTC) - timedelta(hours=1)
        points = rt.metrics().read("drift/prediction", labels={"model": RISK}, since=since)
        rt.clients.monitoring.transport.close()
    assert [(labels["statistic"], v) for labels, _, v in points] == [("psi", pytest.approx(value))]
