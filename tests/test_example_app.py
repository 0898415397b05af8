"""The example serving app (examples/serving_app) on functions-framework against the storage
emulator: /health in the ops shape, predictions from the champion, a promotion under load
swapped to without a failed request, every answered row in the prediction log, labels."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests
import yaml
from sklearn.datasets import load_breast_cancer

from stack_process import wait_for
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.store.registry import ARTIFACT
from warden_local.process import FunctionServer

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples/serving_app/main.py"
RISK = "breast-cancer-risk"
TRAINED = date(2026, 11, 1)


@pytest.fixture
def rt(seed, make_runtime):
    seed(end=TRAINED, days=7, seed=1)
    built = make_runtime(install=False)
    retrain(RunRequest(model=RISK, reason="manual", key="t", message_id="t", as_of=TRAINED), built)
    return built


@pytest.fixture
def app(rt, gcs_emulator, bucket_names, tmp_path) -> Iterator[tuple[str, Path]]:
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_SERVE_MODEL": RISK,
        "SERVE_CHECK_INTERVAL": "1",
        "SERVE_FLUSH_SECONDS": "1",
        "THREADS": "8",
    }
    log = tmp_path / "app.log"
    with (
        log.open("wb") as out,
        FunctionServer(APP, "serve", signature="http", env=env, log=out) as server,
    ):
        yield server.url.rstrip("/"), log


def _rows(n: int, offset: int = 0) -> list[dict[str, float]]:
    frame = load_breast_cancer(as_frame=True).data
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return [
        {k: float(v) for k, v in frame.iloc[(offset + i) % len(frame)].items()} for i in range(n)
    ]


def _promote_a_second_version(rt) -> int:
    """What an operator's promote does: the same estimator registered again as a new version
    (the answers stay comparable; the version tells who answered), then moved onto."""
    registry = rt.registry()
    manifest = registry.manifest(RISK)
    data = registry.read_file(RISK, manifest["version"], ARTIFACT, manifest)
    version = registry.claim_version(RISK, run_id="test")
    keep = {k: manifest[k] for k in ("task", "features", "target")}
    registry.register(RISK, version, {ARTIFACT: data}, keep)
    assert registry.promote(RISK, version, reason="test", actor="test") is not None
    return version


def test_health_has_the_shape_ops_expect(app) -> None:
    url, _ = app
    resp = requests.get(f"{url}/health", timeout=30)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["version"] == 1
    assert body["predictions"] == 0
    assert body["champion"]["failing_version"] is None
    assert body["prediction_log"]["dropped"] == 0


def test_bad_requests_are_refused_with_a_reason(app) -> None:
    url, _ = app
    assert requests.post(f"{url}/predict", data="x", timeout=30).status_code == 400
    assert requests.post(f"{url}/predict", json={"rows": []}, timeout=30).status_code == 400
    lacking = requests.post(f"{url}/predict", json={"rows": [{"a": 1.0}]}, timeout=30)
    assert lacking.status_code == 400
    assert "mean_radius" in lacking.json()["error"]
    assert requests.get(f"{url}/predict", timeout=30).status_code == 405


def test_a_promotion_under_load_is_swapped_to_without_a_failed_request(
    rt, app, storage_client, bucket_names
) -> None:
    url, _ = app
    answers: list[list[tuple[int, int, int]]] = [[] for _ in range(4)]  # (status, version, rows)
    ids: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def client(k: int) -> None:
        session = requests.Session()
        i = 0
        while not done.is_set():
            rows = _rows(3, offset=k * 1000 + i * 3)
            resp = session.post(f"{url}/predict", json={"rows": rows}, timeout=60)
            body: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
            answers[k].append((resp.status_code, body.get("version", -1), len(rows)))
            with lock:
                ids.extend(body.get("request_ids", []))
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    served = lambda: sum(len(a) for a in answers)  # noqa: E731
    try:
        wait_for(lambda: served() >= 40, 60, "requests answered by v1")
        v2 = _promote_a_second_version(rt)
        wait_for(
            lambda: requests.get(f"{url}/health", timeout=30).json()["version"] == v2,
            60,
            "the app to swap to v2",
        )
        mark = served()
        wait_for(lambda: served() >= mark + 40, 60, "requests answered by v2")
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    every = [a for per in answers for a in per]
    assert {status for status, _, _ in every} == {200}
    for per in answers:
        versions = [v for _, v, _ in per]
        assert versions == sorted(versions)  # v1 then v2, never back
    assert {v for _, v, _ in every} == {1, v2}
    health = requests.get(f"{url}/health", timeout=30).json()
    assert health["predictions"] == sum(n for _, _, n in every)
    assert health["champion"]["last_swap"]["to"] == v2
    # Labels for some answered rows, then the prediction log holds every answered row.
    for rid in ids[:5]:
        resp = requests.post(f"{url}/label", json={"request_id": rid, "label": 1}, timeout=30)
        assert resp.json() == {"recorded": True}

    def logged() -> pd.DataFrame:
        frames = [
            pq.read_table(io.BytesIO(b.download_as_bytes())).to_pandas()
            for b in storage_client.list_blobs(bucket_names["data"], prefix=f"predictions/{RISK}/")
        ]
        return pd.concat(frames) if frames else pd.DataFrame({"request_id": []})

    def all_logged() -> bool:
        # The log writes once its oldest row is a second old and another row arrives.
        requests.post(f"{url}/predict", json={"rows": _rows(1)}, timeout=30)
        return set(ids) <= set(logged()["request_id"])

    wait_for(all_logged, 60, "every answered row logged", interval=0.5)
    table = logged()
    assert set(table["model_version"]) == {1, v2}
    assert "score" in table.columns
    labels = json.dumps(requests.get(f"{url}/health", timeout=30).json()["prediction_log"])
    assert '"labels": 5' in labels


def test_locally_the_app_writes_cloud_runs_request_metrics_and_the_errors_policy_fires(
    gcs_emulator, bucket_names, tmp_path
) -> None:
    """No champion yet: every /predict is a 503. Written as Cloud Run would (SERVE_LOCAL_METRICS),
    they breach the service's 5xx-share policy in the Monitoring stand-in, which opens an
    incident for warden-example-app-errors (the router's side: tests/test_serving_alerts.py)."""
    from types import SimpleNamespace

    from warden.config import parse_config
    from warden_local.monitoring import MonitoringStandIn
    from warden_local.policies import PolicyEvaluator

    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["serving"] = {
        "services": [
            {
                "name": "warden-example-app",
                # Latency is not this test's subject: a bound no loaded machine reaches.
                "latency": {"p95_ms": 60_000, "duration_s": 0},
                "errors": {"rate": 0.05, "duration_s": 0},
            }
        ]
    }
    sent: list[dict[str, Any]] = []
    evaluator = PolicyEvaluator(
        [],
        serving=parse_config(raw).serving_policies,
        project="warden-test",
        url="http://route-alerts.invalid/",
        token="t",
        post=lambda url, *, json, headers, timeout: (
            sent.append(json) or SimpleNamespace(status_code=200)
        ),
    )
    with MonitoringStandIn(
        cloud_run_metrics=True, on_serving_point=evaluator.observe_serving
    ) as standin:
        env = {
            **os.environ,
            "STORAGE_EMULATOR_HOST": gcs_emulator.host,
            "WARDEN_PROJECT": "warden-test",
            "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
            "WARDEN_DATA_BUCKET": bucket_names["data"],
            "WARDEN_SERVE_MODEL": RISK,
            "WARDEN_MONITORING_ENDPOINT": standin.endpoint,
            "SERVE_LOCAL_METRICS": "warden-example-app",
        }
        with (
            (tmp_path / "app.log").open("wb") as out,
            FunctionServer(APP, "serve", signature="http", env=env, log=out) as server,
        ):
            for _ in range(5):
                resp = requests.post(f"{server.url}predict", json={"rows": _rows(1)}, timeout=30)
                assert resp.status_code == 503  # no champion yet
            status = evaluator.serving_status
            wait_for(
                lambda: (
                    "warden-example-app-errors" in status
                    and status["warden-example-app-errors"].requests >= 5
                ),
                30,
                "the stand-in to evaluate the app's five requests",
            )
        evaluator.drain()
        wait_for(lambda: sent, 30, "the incident")
    evaluator.close()
    assert status["warden-example-app-errors"].breached
    assert not status["warden-example-app-latency"].breached
    (incident,) = [p["incident"] for p in sent]
    assert incident["policy_name"] == "warden-example-app-errors"
    assert incident["state"] == "open"
    assert incident["resource"]["labels"]["service_name"] == "warden-example-app"
