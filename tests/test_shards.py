"""A monitor run sharded over the tasks of a job execution equals the one-process run: the
accumulators' exported counts merge exactly, the scoring sample merges into the one-pass
sample, and on the storage emulator N tasks (run here one after the other, as Cloud Run could)
leave the same verdicts, statistics and window as one process, once per request."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from warden.config import parse_config
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import monitor
from warden.jobs.retrain import retrain
from warden.jobs.shards import monitor_task, shard_root, share
from warden.ml.drift import (
    DriftAccumulator,
    DriftThresholds,
    PredictionAccumulator,
    build_reference_profile,
)
from warden.settings import TaskContext
from warden.store import gcs
from warden.store.data import RowSample

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())
TRAINED = date(2026, 11, 1)
LATER = date(2026, 11, 20)
SEG, RISK = "customer-segments", "breast-cancer-risk"
LEASE = timedelta(minutes=30)


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats up to rounding (sums of floats added in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple), path
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


# --- the pieces -----------------------------------------------------------------------------


def test_share_gives_every_file_to_one_task_in_contiguous_runs_balanced_by_bytes() -> None:
    sizes = [5, 100, 3, 3, 90, 1, 1, 40, 60, 7]
    for count in (1, 2, 3, 4, 16):
        parts = [share(sizes, i, count) for i in range(count)]
        flat = [f for p in parts for f in p]
        assert flat == list(range(len(sizes)))  # each once, in order: contiguous runs
    halves = [sum(sizes[f] for f in share(sizes, i, 2)) for i in range(2)]
    assert abs(halves[0] - halves[1]) <= max(sizes)  # within one file of even
    assert [share([0, 0, 0, 0], i, 2) for i in range(2)] == [[0, 1], [2, 3]]  # sizes unknown


NUMERIC = ["mean radius", "mean texture", "worst area", "visits"]


def _frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True).frame
    frame = data[["mean radius", "mean texture", "worst area"]].copy()
    frame["visits"] = (data["mean perimeter"] // 10).astype(int)  # a discrete feature
    frame["grade"] = np.where(data["target"] == 1, "benign", "malignant")
    frame.loc[frame.index % 17 == 0, "mean texture"] = np.nan  # missing values
    return frame


def test_accumulator_states_merge_into_the_one_pass_result() -> None:
    frame = _frame()
    reference = frame.iloc[:300]
    profile = build_reference_profile(reference, numeric=NUMERIC, categorical=["grade"])
    # Current data that moves: shifted, with categories the reference never had.
    current = frame.iloc[300:].copy()
    current["mean radius"] += 3.0
    current.loc[current.index % 5 == 0, "grade"] = "unseen-grade"
    current.loc[current.index % 7 == 0, "visits"] = 99
    cuts = [0, 60, 61, 200, len(current)]  # uneven, one of a single row
    chunks = [current.iloc[a:b] for a, b in itertools.pairwise(cuts)]

    one = DriftAccumulator(profile)
    for chunk in chunks:
        one.update(chunk)
    shards = []
    for part in (chunks[:1], chunks[1:3], chunks[3:]):
        acc = DriftAccumulator(profile)
        for chunk in part:
            acc.update(chunk)
        shards.append(json.loads(json.dumps(acc.state())))  # as a partial stores it
    merged = DriftAccumulator(profile)
    for state in shards:
        merged.merge(state)

    few = DriftThresholds(min_rows=50)  # judge these 269 rows
    expected = one.result(few).to_dict()
    assert expected["drifted"]  # the check below compares verdicts that say something
    _same(expected, merged.result(few).to_dict())


def test_a_state_from_another_profile_is_refused() -> None:
    frame = _frame()
    profile = build_reference_profile(frame, numeric=NUMERIC, categorical=["grade"])
    other = build_reference_profile(frame, numeric=["mean radius"])
    acc = DriftAccumulator(other)
    acc.update(frame)
    with pytest.raises(Exception, match="partial covers features"):
        DriftAccumulator(profile).merge(acc.state())


def test_prediction_counts_merge_into_the_one_pass_result() -> None:
    rng = np.random.default_rng(3)
    profile = {
        "score_distribution": {
            "bin_edges": [i / 10 for i in range(11)],
            "counts": [5, 9, 14, 20, 30, 30, 20, 14, 9, 5],
        }
    }
    scores = rng.beta(2, 5, 5_000)
    one = PredictionAccumulator(profile, "classification")
    one.update(scores)
    merged = PredictionAccumulator(profile, "classification")
    for part in np.array_split(scores, 3):
        acc = PredictionAccumulator(profile, "classification")
        acc.update(part)
        merged.merge(json.loads(json.dumps(acc.state())))
    assert one.result()["drifted"]
    _same(one.result(), merged.result())


def test_samples_of_disjoint_files_merge_into_the_one_pass_sample() -> None:
    files = [
        (f"gs://b/f{i}.parquet#1", pd.DataFrame({"row": np.arange(n) + 1000 * i, "f": i}))
        for i, n in enumerate((700, 50, 1_300, 400))
    ]
    one = RowSample(300, seed=11)
    for ordinal, (source, frame) in enumerate(files):
        one.add(frame, source=source, ordinal=ordinal)
    merged = RowSample(300, seed=11)
    for part in ([0, 1], [2], [3]):
        shard = RowSample(300, seed=11)
        for ordinal in part:
            source, frame = files[ordinal]
            shard.add(frame, source=source, ordinal=ordinal)
        merged.merge(shard.state(), rows=shard.rows)
    expected = one.frame()
    assert len(expected) == 300
    assert merged.rows == one.rows == 2_450
    pd.testing.assert_frame_equal(merged.frame(), expected)


# --- on the emulators ---------------------------------------------------------------------------


@pytest.fixture
def rt(seed, make_runtime):
    seed(end=TRAINED, days=7, customer_rows=1500, seed=1)
    built = make_runtime()
    raw = copy.deepcopy(RAW)
    for model in raw["models"].values():
        model["drift"] = {"window_days": 7}
    built._config = parse_config(raw)
    for model in (SEG, RISK):
        request = RunRequest(
            model=model, reason="manual", key=f"t-{model}", message_id="t", as_of=TRAINED
        )
        retrain(request, built)
    return built


def _request(model: str, key: str) -> RunRequest:
    return RunRequest(model=model, reason="schedule", key=key, message_id=key, as_of=LATER)


def _task(request: RunRequest, index: int, count: int, execution: str = "exec-1") -> TaskContext:
    return TaskContext("monitor", request.to_json(), execution, index, count, 0)


def _summary(rt, outcome) -> dict[str, Any]:
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    folder = outcome.report.split(f"{rt.settings.registry_bucket}/", 1)[1].rsplit("/", 1)[0]
    return json.loads(bucket.blob(f"{folder}/drift.json").download_as_bytes())


def _results(rt, model: str) -> list[str]:
    return [
        b.name
        for b in rt.clients.storage.list_blobs(
            rt.settings.registry_bucket, prefix=f"{model}/monitoring/"
        )
        if b.name.endswith("/drift.json")
    ]


def test_a_sharded_monitor_equals_the_one_process_monitor(rt, seed) -> None:
    count = 3
    seed(end=LATER, days=7, customer_rows=1500, seed=8, shift=1.0)  # drifted: verdicts to compare
    for model in (SEG, RISK):
        single = monitor(_request(model, f"single-{model}"), rt)
        request = _request(model, f"sharded-{model}")
        outcomes = [
            monitor_task(request, rt, _task(request, i, count), lease=LEASE) for i in range(count)
        ]
        assert [o.status for o in outcomes] == ["partial"] * (count - 1) + ["checked"]
        merged = outcomes[-1]
        assert single.status == "checked"
        # Something to agree on: drift verdicts (the shifted segments), a score (the risk model).
        assert single.dataset_drift if model == SEG else single.performance["current"] > 0.5
        assert (merged.dataset_drift, merged.drifted, merged.degraded) == (
            single.dataset_drift,
            single.drifted,
            single.degraded,
        )
        one, many = _summary(rt, single), _summary(rt, merged)
        _same(one["drift"], many["drift"])
        _same(one["performance"], many["performance"])
        _same(one["window"], many["window"])
        assert one["version"] == many["version"] == 1
        # Each task read a share of the files, and the shares cover the window once.
        bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
        root = shard_root(model, request.key)
        partials = [
            gcs.read_json(bucket, f"{root}partial-{i:05d}-of-{count:05d}.json").data
            for i in range(count)
        ]
        assert sum(p["files"] for p in partials) == one["window"]["file_count"]
        assert all(p["files"] > 0 for p in partials)
        assert sum(p["rows"] for p in partials) == one["window"]["rows"]
        # The request is done: a redelivered task finds it so, and one result stays.
        again = monitor_task(request, rt, _task(request, 0, count, "exec-2"), lease=LEASE)
        assert again.status == "duplicate"
        assert len(_results(rt, model)) == 2  # the single run's and the sharded run's


def test_a_second_execution_and_a_retried_merger_leave_one_result(rt, seed) -> None:
    seed(end=LATER, days=7, customer_rows=1500, seed=9)
    request = _request(SEG, "twice")
    # Execution A: both partials land, and task 1 claims the merge but dies before concluding.
    assert monitor_task(request, rt, _task(request, 0, 2, "A"), lease=LEASE).status == "partial"
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    root = shard_root(SEG, request.key)
    claim = gcs.dumps({"owner": "A/1", "until": (rt.clock() + LEASE).isoformat()})
    assert gcs.create(bucket, f"{root}merge.json", claim) is not None
    assert len(list(rt.clients.storage.list_blobs(bucket.name, prefix=f"{root}partial-"))) == 1
    # Execution B (a redelivery) runs too: its task 1 lands the second partial, sees A's live
    # claim and leaves the merge to it; its task 0 finds its partial there already.
    assert monitor_task(request, rt, _task(request, 1, 2, "B"), lease=LEASE).detail.endswith(
        "another task merges"
    )
    assert monitor_task(request, rt, _task(request, 0, 2, "B"), lease=LEASE).status == "partial"
    assert _results(rt, SEG) == []
    # Cloud Run retries A's task 1: its own claim, so it merges and concludes.
    done = monitor_task(request, rt, _task(request, 1, 2, "A"), lease=LEASE)
    assert done.status == "checked"
    assert len(_results(rt, SEG)) == 1
    assert monitor_task(request, rt, _task(request, 1, 2, "B"), lease=LEASE).status == "duplicate"
    assert len(_results(rt, SEG)) == 1


def test_an_expired_merge_claim_is_taken_over(rt, seed) -> None:
    seed(end=LATER, days=7, customer_rows=1500, seed=10)
    request = _request(SEG, "expired")
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    root = shard_root(SEG, request.key)
    stale = gcs.dumps({"owner": "gone/1", "until": (rt.clock() - timedelta(seconds=1)).isoformat()})
    assert gcs.create(bucket, f"{root}merge.json", stale) is not None
    assert monitor_task(request, rt, _task(request, 0, 2, "C"), lease=LEASE).status == "partial"
    assert monitor_task(request, rt, _task(request, 1, 2, "C"), lease=LEASE).status == "checked"
    holder = gcs.read_json(bucket, f"{root}merge.json").data
    assert holder["owner"] == "C/1"


def test_a_window_with_no_data_fails_the_request_once(rt) -> None:
    request = RunRequest(
        model=SEG, reason="schedule", key="empty", message_id="empty", as_of=date(2020, 1, 1)
    )
    from warden.errors import DataError

    with pytest.raises(DataError, match="no dt= partitions"):
        monitor_task(request, rt, _task(request, 0, 2), lease=LEASE)
    marker = rt.ledger().marker(SEG, "monitor", "empty")
    assert marker["status"] == "failed"
    assert monitor_task(request, rt, _task(request, 1, 2), lease=LEASE).status == "duplicate"


def test_housekeeping_expires_old_shard_folders_and_keeps_live_ones(rt, seed) -> None:
    from datetime import UTC, datetime

    from warden.jobs.housekeeping import run_housekeeping
    from warden.jobs.shards import purge_shards

    seed(end=LATER, days=7, customer_rows=1500, seed=11)
    request = _request(SEG, "to-expire")
    for i in range(2):
        monitor_task(request, rt, _task(request, i, 2), lease=LEASE)
    root = shard_root(SEG, request.key)
    names = sorted(
        b.name for b in rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=root)
    )
    assert len(names) == 6  # plan, two samples, two partials, the merge claim
    now = datetime.now(UTC)
    # Written just now: not older than a day ago, so kept (a run may still be going on).
    assert purge_shards(rt, SEG, older_than=now - timedelta(days=1)) == []
    # Housekeeping past the TTL deletes the whole folder, and only it.
    ttl = rt.config.model(SEG).housekeeping.marker_ttl_days
    rt.clock = lambda: now + timedelta(days=ttl + 1)
    outcome = run_housekeeping(rt, SEG, dry_run=False)
    assert sorted(outcome.expiry.shard_objects) == names
    assert outcome.summary()["shard_objects_purged"] == 6
    assert list(rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=root)) == []
    assert _results(rt, SEG)  # the run's result stays
