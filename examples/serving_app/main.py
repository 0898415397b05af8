"""An example serving app: one Warden model's champion behind an HTTP endpoint.

Runs on functions-framework (as a Cloud Run service or a 2nd-gen HTTP function would)::

    WARDEN_SERVE_MODEL=breast-cancer-risk \\
    functions-framework --source examples/serving_app/main.py --target serve

* ``POST /predict`` with ``{"rows": [{feature: value, ...}, ...]}`` → ``{"version", "request_ids",
  "predictions"}``: the positive-class score for a classifier, the cluster for a clustering
  model. One version answers the whole request (``Champion.current()``), and every row is logged
  (``PredictionLog``) for the monitor to read.
* ``POST /label`` with ``{"request_id": ..., "label": ...}``: the outcome, when it is known.
* ``GET /health`` → ``{"status", "model_loaded", "version", "predictions", "champion",
  "prediction_log"}``; 503 until a model is loaded.

Settings (environment): ``WARDEN_SERVE_MODEL`` (required), ``WARDEN_REGISTRY_BUCKET`` and
``WARDEN_DATA_BUCKET`` as for the functions, ``SERVE_CHECK_INTERVAL`` (seconds between champion
checks, default 30), ``SERVE_FLUSH_SECONDS`` (prediction log age flush, default 60),
``SERVE_LOCAL_METRICS`` (locally only: write each request's Cloud Run metrics as this service).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import functions_framework

from warden.serving import Champion, PredictionLog

MODEL = os.environ["WARDEN_SERVE_MODEL"]
champion = Champion.from_env(
    MODEL, check_interval=float(os.environ.get("SERVE_CHECK_INTERVAL", "30"))
)
predictions = PredictionLog.from_env(
    MODEL, flush_seconds=float(os.environ.get("SERVE_FLUSH_SECONDS", "60"))
)
MAX_ROWS = 1000  # per request

# Locally nobody plays Cloud Run, which publishes each request's latency and status for the
# serving alert policies (warden.yaml ``serving:``): with SERVE_LOCAL_METRICS set to the
# service's name, the app writes them itself to the Monitoring stand-in. Never deployed: Cloud
# Run writes its own and Google refuses user writes to run.googleapis.com types.
_local_metrics: Any = None
if os.environ.get("SERVE_LOCAL_METRICS"):
    from warden_local.serving_metrics import ServingMetrics

    _local_metrics = ServingMetrics(os.environ["SERVE_LOCAL_METRICS"])


def _answer(status: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return body, status


@functions_framework.http
def serve(request: Any) -> tuple[dict[str, Any], int]:
    started = time.perf_counter()
    body, status = _route(request)
    if _local_metrics is not None:
        try:
            _local_metrics.record((time.perf_counter() - started) * 1000, status)
        except Exception:  # observability, never the request's failure
            logging.getLogger(__name__).warning("local serving metrics not written", exc_info=True)
    return body, status


def _route(request: Any) -> tuple[dict[str, Any], int]:
    path = request.path.rstrip("/") or "/"
    if path == "/health":
        return _health()
    if request.method != "POST":
        return _answer(405, {"error": "POST /predict or /label; GET /health"})
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _answer(400, {"error": "the body must be a JSON object"})
    if path == "/label":
        ok = predictions.label(str(body.get("request_id", "")), body.get("label"))
        return _answer(200 if ok else 503, {"recorded": ok})
    if path not in ("/", "/predict"):
        return _answer(404, {"error": f"no route {path}"})
    return _predict(body)


def _predict(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    import pandas as pd

    rows = body.get("rows")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS:
        return _answer(400, {"error": f"rows: a list of 1 to {MAX_ROWS} objects"})
    try:
        loaded = champion.current()
    except Exception as exc:  # no champion yet, registry unreachable at startup
        return _answer(503, {"error": f"no model loaded: {exc}"})
    features = list(loaded.manifest["features"])
    frame = pd.DataFrame([r if isinstance(r, dict) else {} for r in rows])
    absent = [f for f in features if f not in frame.columns]
    if absent:
        return _answer(400, {"error": f"rows lack features {absent}"})
    try:
        X = frame[features].astype(float)
    except (TypeError, ValueError) as exc:
        return _answer(400, {"error": f"features must be numbers: {exc}"})
    estimator = loaded.estimator
    if loaded.manifest.get("task") == "classification":
        scores = estimator.predict_proba(X)[:, -1]  # the positive class is the last (0/1)
        outputs = [{"score": float(s)} for s in scores]
        answer: list[Any] = [float(s) for s in scores]
    else:
        clusters = estimator.predict(X)
        outputs = [{"cluster": int(c)} for c in clusters]
        answer = [int(c) for c in clusters]
    champion.served(len(answer))
    ids = [
        predictions.log(dict(zip(features, values, strict=True)), out, version=loaded.version)
        for values, out in zip(X.itertuples(index=False, name=None), outputs, strict=True)
    ]
    return _answer(200, {"version": loaded.version, "request_ids": ids, "predictions": answer})


def _health() -> tuple[dict[str, Any], int]:
    status = champion.status()
    log = predictions.stats()
    healthy = status["model_loaded"] and status["failing_version"] is None
    body = {
        "status": "ok" if healthy else ("degraded" if status["model_loaded"] else "unavailable"),
        "model_loaded": status["model_loaded"],
        "version": status["version"],
        "predictions": status["predictions"],
        "champion": status,
        "prediction_log": log,
    }
    return _answer(200 if status["model_loaded"] else 503, body)


# Load at startup, as a serving app should; without a champion yet, /health answers 503 and
# the first request that finds one loads it.
with contextlib.suppress(Exception):
    champion.load()
