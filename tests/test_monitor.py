"""monitor_model end to end on the emulators: drift against the champion's stored profile,
performance on labeled recent data, report, metrics, events and the retrain cooldown."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from functions_framework import create_app

from events import binary_headers, envelope
from warden.config import parse_config
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import monitor
from warden.jobs.retrain import retrain
from warden_local.monitoring import MonitoringStandIn

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())
TRAINED = date(2026, 11, 1)
LATER = date(2026, 11, 20)
SEG, RISK = "customer-segments", "breast-cancer-risk"


@pytest.fixture(scope="module")
def monitoring() -> Iterator[MonitoringStandIn]:
    with MonitoringStandIn() as standin:
        yield standin


@pytest.fixture
def rt(seed, make_runtime, monitoring, topic_sink):
    events_topic, publisher, events = topic_sink("model-events")
    retrain_topic, _, retrains = topic_sink("retrain-requests")
    seed(end=TRAINED, days=7, customer_rows=2000, seed=1)  # what the champions learn from
    built = make_runtime(
        metrics_enabled=True,
        monitoring_endpoint=monitoring.endpoint,
        events_topic=events_topic,
        retrain_topic=retrain_topic,
        publisher=publisher,
    )
    raw = copy.deepcopy(RAW)
    for model in raw["models"].values():
        model["drift"] = {
            "window_days": 7,
            "retrain_on_drift": True,
            "retrain_on_degradation": True,
            "retrain_cooldown_hours": 24,
        }
    built._config = parse_config(raw)
    for model in (SEG, RISK):
        retrain(
            RunRequest(
                model=model, reason="manual", key=f"t-{model}", message_id="t", as_of=TRAINED
            ),
            built,
        )
    events(want=4)  # drain the retrains' own events
    built.events_pull, built.retrains_pull = events, retrains
    return built


def _monitor(rt, model: str, key: str, as_of: date = LATER):
    return monitor(
        RunRequest(model=model, reason="schedule", key=key, message_id=key, as_of=as_of), rt
    )


def test_same_distribution_raises_nothing_and_stores_a_report(rt, seed, monitoring) -> None:
    seed(end=LATER, days=7, customer_rows=2000, seed=7, models=(SEG,))
    outcome = _monitor(rt, SEG, "k1")
    assert outcome.status == "checked"
    assert outcome.version == 1
    assert outcome.dataset_drift is False
    assert outcome.drifted == []
    assert outcome.retrain_requested is False
    assert outcome.performance["metric"] == "silhouette"
    assert outcome.performance["degraded"] is False
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    folder = outcome.report.split(f"{rt.settings.registry_bucket}/", 1)[1].rsplit("/", 1)[0]
    summary = json.loads(bucket.blob(f"{folder}/drift.json").download_as_bytes())
    assert summary["window"]["rows"] == 2000
    assert summary["window"]["file_count"] == 7  # a summary, not a list of the files
    assert "files" not in summary["window"]
    assert set(summary["drift"]["features"]) == set(rt.config.model(SEG).features)
    html = bucket.blob(f"{folder}/report.html").download_as_bytes().decode()
    assert 'id="summary"' in html
    assert "No dataset drift" in html
    shares = monitoring.points("custom.googleapis.com/warden/drift/share", model=SEG)
    assert shares[-1][2] == pytest.approx(outcome.drift_share)
    assert len(monitoring.points("custom.googleapis.com/warden/drift/score", model=SEG)) >= 6
    assert rt.events_pull.before_marker() == []
    assert rt.retrains_pull.before_marker() == []


def test_drift_publishes_an_event_and_one_retrain_per_cooldown(rt, seed) -> None:
    seed(end=LATER, days=7, customer_rows=2000, seed=8, shift=1.0, models=(SEG,))
    first = _monitor(rt, SEG, "drift-1")
    assert first.dataset_drift is True
    assert len(first.drifted) >= 3
    assert first.retrain_requested is True
    kinds = sorted(attrs["kind"] for attrs, _ in rt.events_pull(want=2))
    # The segments blur too, so the champion's silhouette on recent data drops as well.
    assert kinds == ["drift_detected", "performance_degraded"]
    assert first.degraded is True
    requests = rt.retrains_pull(want=1)
    assert [(a["model"], p["reason"]) for a, p in requests] == [(SEG, "drift")]
    # A second drifted run inside the cooldown requests nothing more.
    second = _monitor(rt, SEG, "drift-2")
    assert second.dataset_drift is True
    assert second.retrain_requested is False
    assert rt.retrains_pull.before_marker() == []
    # The redelivery of the first request is a no-op.
    assert _monitor(rt, SEG, "drift-1").status == "duplicate"


def test_label_noise_shows_up_as_performance_degradation(rt, seed) -> None:
    seed(end=LATER, days=7, label_noise=0.3, seed=3, models=(RISK,))
    outcome = _monitor(rt, RISK, "perf-1")
    perf = outcome.performance
    assert perf["metric"] == "roc_auc"
    assert perf["baseline"] > 0.95
    assert perf["current"] < perf["baseline"] * 0.95
    assert outcome.degraded is True
    kinds = sorted(attrs["kind"] for attrs, _ in rt.events_pull(want=1))
    assert "performance_degraded" in kinds
    assert [p["reason"] for _, p in rt.retrains_pull(want=1)] == ["degradation"]


def test_unlabeled_recent_data_still_gets_drift(rt, storage_client, bucket_names) -> None:
    from warden_local.examples import breast_cancer_frame, write_partitions

    frame = breast_cancer_frame(seed=4).drop(columns=["malignant"])
    write_partitions(
        storage_client,
        bucket=bucket_names["data"],
        prefix="breast-cancer",
        frame=frame,
        fmt="csv",
        end=LATER,
        days=7,
    )
    outcome = _monitor(rt, RISK, "unlabeled")
    assert outcome.status == "checked"
    assert outcome.performance["current"] is None
    assert "labeled" in outcome.performance["detail"]
    assert outcome.degraded is False


def test_no_champion_is_skipped(make_runtime, seed) -> None:
    seed(end=LATER, days=7, models=(RISK,))
    rt = make_runtime(install=False)
    outcome = _monitor(rt, RISK, "none")
    assert outcome.status == "skipped"


def test_function_acknowledges_bad_requests_and_runs_good_ones(rt, seed) -> None:
    from warden import runtime

    runtime.install(rt)
    seed(end=LATER, days=7, customer_rows=2000, seed=9, models=(SEG,))
    app = create_app("monitor_model", str(ROOT / "functions/monitor_model/main.py"), "cloudevent")
    client = app.test_client()
    good = envelope({"schema": 1, "model": SEG, "reason": "schedule", "as_of": str(LATER)})
    assert client.post("/", data=json.dumps(good), headers=binary_headers(good)).status_code == 200
    assert rt.ledger().status(SEG, "monitor")["last_success"]["outcome"] == "success"
    bad = envelope({"schema": 1, "model": "nope"})
    assert client.post("/", data=json.dumps(bad), headers=binary_headers(bad)).status_code == 200


def _clinic_runtime(make_runtime, *, drift=None, **settings):
    """A runtime whose only model, clinic-risk, is the risk model on six features plus a
    categorical ``clinic`` (data under ``clinics/``)."""
    raw = copy.deepcopy(RAW)
    risk = copy.deepcopy(raw["models"][RISK])
    risk["features"] = [*risk["features"][:6], "clinic"]
    risk["categorical_features"] = ["clinic"]
    risk["data"]["prefix"] = "clinics"
    risk["drift"] = {"window_days": 7, "min_rows": 200, **(drift or {})}
    raw["models"] = {"clinic-risk": risk}
    rt = make_runtime(install=False, **settings)
    rt._config = parse_config(raw)
    return rt


def test_categorical_features_train_and_drift(make_runtime, storage_client, bucket_names) -> None:
    """A classifier with a categorical feature: one-hot encoded for training, its category mix
    watched by the monitor (a 15-point move in one clinic's share is caught)."""
    import numpy as np

    from warden_local.examples import breast_cancer_frame, write_partitions

    rt = _clinic_runtime(make_runtime)

    def frame(shares: list[float], seed: int):
        data = breast_cancer_frame(seed=seed)
        rng = np.random.default_rng(seed)
        data["clinic"] = rng.choice(["north", "south", "east", "west"], size=len(data), p=shares)
        return data

    write_partitions(
        storage_client,
        bucket=bucket_names["data"],
        prefix="clinics",
        frame=frame([0.25, 0.25, 0.25, 0.25], 1),
        fmt="csv",
        end=TRAINED,
        days=5,
    )
    outcome = retrain(
        RunRequest(model="clinic-risk", reason="manual", key="c1", message_id="c1", as_of=TRAINED),
        rt,
    )
    assert outcome.promoted is True
    assert outcome.metrics["roc_auc"] > 0.9
    profile = json.loads(
        rt.registry().read_file(
            "clinic-risk", 1, "profile.json", rt.registry().manifest("clinic-risk", 1)
        )
    )
    assert profile["features"]["clinic"]["kind"] == "categorical"
    assert sorted(profile["features"]["clinic"]["categories"]) == ["east", "north", "south", "west"]
    model, _ = rt.registry().load("clinic-risk")
    assert type(model.steps[0][1]).__name__ == "ColumnTransformer"

    write_partitions(
        storage_client,
        bucket=bucket_names["data"],
        prefix="clinics",
        frame=frame([0.40, 0.20, 0.20, 0.20], 2),
        fmt="csv",
        end=LATER,
        days=5,
    )
    drifted = monitor(
        RunRequest(model="clinic-risk", reason="schedule", key="c2", message_id="c2", as_of=LATER),
        rt,
    )
    assert drifted.drifted == ["clinic"]
    assert drifted.dataset_drift is False  # one feature of seven
    assert drifted.performance["current"] > 0.9


def test_monitor_lists_only_its_window(rt, seed, monkeypatch) -> None:
    """Weeks of older partitions (the champion's training data among them) are never listed."""
    seed(end=LATER, days=7, customer_rows=2000, seed=7, models=(SEG,))
    storage = rt.clients.storage
    data_prefixes: list[str] = []
    real = storage.list_blobs

    def recording(bucket, *args, **kwargs):
        if bucket == rt.settings.data_bucket:
            data_prefixes.append(kwargs.get("prefix", ""))
        return real(bucket, *args, **kwargs)

    monkeypatch.setattr(storage, "list_blobs", recording)
    assert _monitor(rt, SEG, "listing").status == "checked"
    window = [LATER - timedelta(days=6 - i) for i in range(7)]
    assert data_prefixes == [f"customers/dt={day}/" for day in window]


def test_long_category_values_are_capped_in_profile_drift_and_report(
    make_runtime, storage_client, bucket_names
) -> None:
    """50 clinics whose names are 5,000 characters long: the stored profile, drift.json and the
    report keep each name at most 200 characters, and the same rows later are still no drift
    at all (each current name is capped the way its reference was, so they match)."""
    import numpy as np

    from warden.ml.drift import MAX_CATEGORY_CHARS
    from warden_local.examples import breast_cancer_frame, write_partitions

    rt = _clinic_runtime(make_runtime)
    clinics = np.array([f"clinic {i:02d} " + "x" * 5_000 for i in range(50)], dtype=object)

    data = breast_cancer_frame(seed=1)
    data["clinic"] = clinics[np.random.default_rng(1).integers(0, 50, len(data))]
    for end in (TRAINED, LATER):
        write_partitions(
            storage_client,
            bucket=bucket_names["data"],
            prefix="clinics",
            frame=data,
            fmt="csv",
            end=end,
            days=5,
        )
        if end == TRAINED:
            trained = retrain(
                RunRequest(
                    model="clinic-risk", reason="manual", key="c1", message_id="c1", as_of=end
                ),
                rt,
            )
            assert trained.promoted is True
    registry = rt.registry()
    manifest = registry.manifest("clinic-risk", 1)
    stored = registry.read_file("clinic-risk", 1, "profile.json", manifest)
    assert len(stored) < 40_000  # 250 KB of names went in
    categories = json.loads(stored)["features"]["clinic"]["categories"]
    assert len(categories) == 50
    assert max(len(c) for c in categories) == MAX_CATEGORY_CHARS
    version_report = registry.read_file("clinic-risk", 1, "report.html", manifest)
    assert b"x" * 250 not in version_report

    outcome = monitor(
        RunRequest(model="clinic-risk", reason="schedule", key="c2", message_id="c2", as_of=LATER),
        rt,
    )
    assert outcome.status == "checked"
    assert outcome.drifted == []
    folder = outcome.report.split(f"{rt.settings.registry_bucket}/", 1)[1].rsplit("/", 1)[0]
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    summary = json.loads(bucket.blob(f"{folder}/drift.json").download_as_bytes())
    clinic = summary["drift"]["features"]["clinic"]
    assert clinic["stats"]["linf"] == 0.0  # an unmatched name would have counted as new
    assert "(new)" not in clinic["histogram"]["labels"]
    assert max(len(label) for label in clinic["histogram"]["labels"]) <= MAX_CATEGORY_CHARS
    assert b"x" * 250 not in bucket.blob(f"{folder}/report.html").download_as_bytes()


def test_a_clinic_the_champion_never_saw_is_reported_as_new_and_drifts(
    make_runtime, storage_client, bucket_names, topic_sink
) -> None:
    """A fifth of the recent rows come from a clinic that is not in the training data: the
    verdict names the new-category share and the value in drift.json, the report and the
    drift_detected event. The training rows again: no new category, no such signal."""
    import numpy as np

    from warden_local.examples import breast_cancer_frame, write_partitions

    events_topic, publisher, events = topic_sink("model-events")
    rt = _clinic_runtime(
        make_runtime, drift={"alert_on": "any"}, events_topic=events_topic, publisher=publisher
    )

    def frame(new_share: float):
        data = breast_cancer_frame(seed=1)
        rng = np.random.default_rng(1)
        data["clinic"] = rng.choice(["north", "south", "east", "west"], size=len(data))
        new = rng.permutation(len(data))[: round(new_share * len(data))]
        data.loc[new, "clinic"] = "central"
        return data, len(new)

    def write(data, end: date) -> None:
        write_partitions(
            storage_client,
            bucket=bucket_names["data"],
            prefix="clinics",
            frame=data,
            fmt="csv",
            end=end,
            days=5,
        )

    def run(key: str, as_of: date):
        outcome = monitor(
            RunRequest(
                model="clinic-risk", reason="schedule", key=key, message_id=key, as_of=as_of
            ),
            rt,
        )
        folder = outcome.report.split(f"{rt.settings.registry_bucket}/", 1)[1].rsplit("/", 1)[0]
        bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
        summary = json.loads(bucket.blob(f"{folder}/drift.json").download_as_bytes())
        html = bucket.blob(f"{folder}/report.html").download_as_bytes().decode()
        return outcome, summary["drift"], html

    trained, _ = frame(0.0)
    write(trained, TRAINED)
    retrain(
        RunRequest(model="clinic-risk", reason="manual", key="c1", message_id="c1", as_of=TRAINED),
        rt,
    )
    events(want=2)  # the retrain's own events

    recent, new_rows = frame(0.2)
    write(recent, LATER)
    outcome, drift, html = run("new", LATER)
    clinic = drift["features"]["clinic"]
    share = new_rows / len(recent)
    assert outcome.drifted == ["clinic"]
    assert clinic["stats"]["new_category_share"] == pytest.approx(share)
    assert clinic["thresholds"]["new_category_share"] == 0.05  # drift.new_category_share
    assert f"new_category_share {share:.3f} >= 0.050 (new: 'central')" in clinic["reasons"]
    assert clinic["new_categories"] == {
        "share": pytest.approx(share),
        "rows": new_rows,
        "top": [{"value": "central", "rows": new_rows}],
        "reference": "complete",
    }
    assert drift["new_categories"] == ["clinic"]
    assert f"new values ({new_rows} rows): &#39;central&#39; ({new_rows})" in html
    (payload,) = [p for a, p in events(want=1) if a["kind"] == "drift_detected"]
    assert payload["new_categories"] == {
        "clinic": {"share": pytest.approx(share), "top": ["central"]}
    }

    later = LATER + timedelta(days=14)
    write(trained, later)
    outcome, drift, html = run("none", later)
    clinic = drift["features"]["clinic"]
    assert clinic["stats"]["new_category_share"] == 0.0
    assert clinic["new_categories"]["top"] == []
    assert not any(r.startswith("new_category_share") for r in clinic["reasons"])
    assert drift["new_categories"] == []
    assert outcome.drifted == []
    assert "new values" not in html


def test_the_report_shows_each_features_trend_from_the_latest_runs(rt, seed, monkeypatch) -> None:
    import re

    import warden.jobs.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "FEATURE_TREND_RUNS", 1)  # of 2 earlier runs, the last
    seed(end=LATER, days=7, customer_rows=2000, seed=8, shift=1.0, models=(SEG,))
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)

    def report(key: str) -> tuple[str, dict]:
        outcome = _monitor(rt, SEG, key)
        assert outcome.dataset_drift is True
        folder = outcome.report.split(f"{rt.settings.registry_bucket}/", 1)[1].rsplit("/", 1)[0]
        html = bucket.blob(f"{folder}/report.html").download_as_bytes().decode()
        return html, json.loads(bucket.blob(f"{folder}/drift.json").download_as_bytes())

    first, _ = report("trend-1")
    assert "No per-feature scores from earlier runs yet" in first
    report("trend-2")
    third, summary = report("trend-3")
    rows = dict(
        re.findall(r'<tr class="(?:drift|stable)" data-trend="([^"]*)">(.*?)</tr>', third, re.S)
    )
    assert set(rows) == set(rt.config.model(SEG).features)
    for row in rows.values():
        assert row.count("<circle") == 2  # the one earlier run with scores, then this run
    drifted = summary["drift"]["drifted"]
    assert drifted
    for name in drifted:  # the same data drifted in every run: red points both times
        assert rows[name].count('class="pt-bad"') == 2
    # The drift-share history still has all three runs.
    assert "Drift share over the last 3 runs" in third
