"""Use case: compare recent data (and, where labels exist, performance) with the champion's
reference, and act on what changed.

1. claim the request in the run ledger (kind ``monitor``; a redelivery stops here);
2. read the champion's ``profile.json`` (sha256-checked against its manifest);
3. stream the recent window file by file into a :class:`~warden.ml.drift.DriftAccumulator` (memory
   holds counts, plus a uniform sample of at most ``drift.max_eval_rows`` rows for scoring,
   :class:`~warden.store.data.RowSample`, seeded from the request key so a retried run scores
   the same rows);
4. score the champion on the recent rows: ROC AUC etc. where labels exist, silhouette always for
   clustering; a relative drop beyond ``drift.performance_margin`` is a degradation;

   With ``drift.source: predictions`` the recent rows are what the model answered in production
   (the prediction log of :mod:`warden.serving`): the same drift and performance (labels joined
   by request id), plus prediction drift — the logged outputs against the champion's outputs on
   its holdout (:func:`warden.ml.drift.prediction_drift`);
5. store ``drift.json`` and a self-contained ``report.html`` under
   ``MODEL/monitoring/<UTC stamp>-<run>/`` (create-only), write metrics, publish
   ``drift_detected`` / ``performance_degraded``, and request a retrain if configured — at most
   one per cooldown, enforced by compare-and-swap on ``MODEL/monitoring/retrain-request.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from warden.config import DataSpec, ModelConfig
from warden.errors import ConflictError, DataError, PermanentError, RetryableError
from warden.jobs.messages import RunRequest
from warden.logs import fields
from warden.runtime import Runtime
from warden.serving.predlog import LABEL, MODEL_VERSION, REQUEST_ID
from warden.store import gcs
from warden.store.data import clip_text
from warden.store.runs import Finished, PriorRun, Run, run_once

log = logging.getLogger(__name__)

JOB = "monitor"
MIN_LABELED_ROWS = 50
HISTORY_RUNS = 30
#: Of those, the latest runs whose per-feature scores the report's trend section draws.
FEATURE_TREND_RUNS = 10


@dataclass
class MonitorOutcome:
    model: str
    status: str  # checked | duplicate | skipped
    version: int | None = None
    dataset_drift: bool = False
    drift_share: float = 0.0
    drifted: list[str] = field(default_factory=list)
    degraded: bool = False
    performance: dict[str, Any] | None = None
    retrain_requested: bool = False
    report: str | None = None
    run_id: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_thresholds(cfg: ModelConfig) -> Any:
    """The configured thresholds on top of the calibrated defaults."""
    from dataclasses import replace

    from warden.ml.drift import DriftThresholds

    base = DriftThresholds()
    return replace(
        base,
        **cfg.drift.thresholds,
        dataset_share=cfg.drift.dataset_share,
        new_category_share=cfg.drift.new_category_share,
        min_rows=cfg.drift.min_rows,
        overrides=cfg.drift.per_feature,
    )


def monitor(
    request: RunRequest,
    rt: Runtime,
    *,
    actor: str = "monitor_model",
    owner: str | None = None,
    lease: timedelta | None = None,
) -> MonitorOutcome:
    """One monitor run over the whole window, in this process (a function, or a job of one
    task). ``owner``/``lease``: see :meth:`warden.store.runs.RunLedger.begin`."""
    cfg = rt.config.model(request.model)
    return ledgered(
        request,
        rt,
        cfg,
        lambda run: _run(request, rt, cfg, run, actor=actor),
        owner=owner,
        lease=lease,
    )


def ledgered(
    request: RunRequest,
    rt: Runtime,
    cfg: ModelConfig,
    work: Callable[[Run], MonitorOutcome],
    *,
    owner: str | None = None,
    lease: timedelta | None = None,
) -> MonitorOutcome:
    """``work`` at most once per request key, through the run ledger (a redelivery, or another
    shard's merge, finds the run done and returns ``duplicate``)."""

    def duplicate(prior: PriorRun) -> MonitorOutcome:
        return MonitorOutcome(
            model=cfg.name,
            status="duplicate",
            run_id=str(prior.record.get("run_id", "")),
            detail=f"already {prior.status}",
        )

    def failed(exc: PermanentError, run_id: str) -> None:
        rt.events().try_publish("failed", cfg.name, job=JOB, error=str(exc)[:2000], run_id=run_id)

    def finished(o: MonitorOutcome) -> Finished:
        return Finished(
            marker={"version": o.version, "drift": o.dataset_drift, "degraded": o.degraded},
            status={
                "version": o.version,
                "dataset_drift": o.dataset_drift,
                "drift_share": o.drift_share,
                "degraded": o.degraded,
            },
        )

    return run_once(
        rt.ledger(),
        cfg.name,
        JOB,
        request.key,
        work=work,
        finished=finished,
        duplicate=duplicate,
        failed=failed,
        owner=owner,
        lease=lease,
    )


@dataclass
class Prepared:
    """What a monitor run compares against: the champion version and its reference profile, and
    where the recent rows are (the training feed, or the prediction log)."""

    cfg: ModelConfig
    version: int
    manifest: dict[str, Any]
    profile: dict[str, Any]
    bucket: str
    output: str | None  # the prediction log's output column (drift.source: predictions)

    @property
    def served(self) -> bool:
        return self.output is not None

    def reader(self, rt: Runtime, request: RunRequest, plan: Any = None) -> Any:
        """The window's files (listed now, or pinned by ``plan``)."""
        from warden.store.data import WindowReader

        cfg, output = self.cfg, self.output
        return WindowReader(
            rt.clients.storage,
            bucket=self.bucket,
            spec=prediction_log_spec(cfg) if output else cfg.data,
            # The prediction log: the features, the output watched, the version that answered
            # and the request id labels are joined on; the training feed: features and target.
            columns=[*cfg.features, output, MODEL_VERSION, REQUEST_ID] if output else cfg.features,
            as_of=request.as_of,
            target=None if output else cfg.target,
            categorical=(
                [*cfg.categorical_features, REQUEST_ID] if output else cfg.categorical_features
            ),
            window_days=cfg.drift.window_days,
            target_required=False,
            plan=plan,
        )


@dataclass
class Scan:
    """Counts of the recent rows: feature drift, the champion's outputs, the scoring sample.
    Additive: scans of disjoint files merge into the scan of all of them."""

    drift: Any  # warden.ml.drift.DriftAccumulator
    predictions: Any  # warden.ml.drift.PredictionAccumulator, or None
    sample: Any  # warden.store.data.RowSample

    @classmethod
    def empty(cls, prep: Prepared, request: RunRequest) -> Scan:
        from warden.ml.drift import DriftAccumulator, PredictionAccumulator
        from warden.store.data import RowSample

        cfg = prep.cfg
        return cls(
            drift=DriftAccumulator(prep.profile, features=cfg.features),
            predictions=PredictionAccumulator(prep.profile, cfg.task) if prep.served else None,
            sample=RowSample(cfg.drift.max_eval_rows, seed=sample_seed(cfg, request)),
        )

    def read(self, prep: Prepared, reader: Any, indices: Any = None) -> None:
        """Feed the files at ``indices`` of the reader's window (all by default)."""
        features = prep.cfg.features
        for ordinal, source, frame in reader.parts(indices):
            self.drift.update({c: frame[c].to_numpy() for c in features})
            if prep.output:
                # Feature drift is about what the model saw, whoever answered; its outputs and
                # its performance are the champion's own: rows other versions answered are not.
                frame = frame[frame[MODEL_VERSION] == prep.version]
                self.predictions.update(frame[prep.output].to_numpy())
            self.sample.add(frame, source=source, ordinal=ordinal)


def prepare(
    request: RunRequest, rt: Runtime, cfg: ModelConfig, *, version: int | None = None
) -> Prepared | str:
    """The champion (or ``version``) and its profile; a string says why there is nothing to
    monitor (no champion yet, nothing served in the window)."""
    registry = rt.registry()
    if version is None:
        champion = registry.alias(cfg.name)
        if champion is None:
            return "no champion yet"
        version = champion.version
    manifest = registry.manifest(cfg.name, version)
    profile = json.loads(registry.read_file(cfg.name, version, "profile.json", manifest))
    if profile.get("schema") != 2:
        raise DataError(
            f"{cfg.name} v{version}: its profile.json (schema "
            f"{profile.get('schema')}) predates drift monitoring; retrain to monitor"
        )
    missing = [f for f in cfg.features if f not in profile.get("features", {})]
    if missing:
        raise DataError(
            f"{cfg.name} v{version}: features {missing} are not in the champion's "
            "reference profile (the configuration changed since it was trained)"
        )
    served = cfg.drift.source == "predictions"
    # The prediction log is where warden.serving writes it: WARDEN_DATA_BUCKET (a model's own
    # data.bucket holds its training feed, which the serving side does not know of).
    bucket = rt.settings.data_bucket if served else cfg.data_bucket(rt.settings.data_bucket)
    if served and _nothing_served(rt, bucket, cfg, request):
        # No traffic is not a failure of the model (an app not deployed yet, a quiet week):
        # skipped, and said so; a broken logger shows in the app's health (dropped, errors).
        return f"no predictions logged in the {cfg.drift.window_days} days to {request.as_of}"
    output = prediction_output(cfg) if served else None
    return Prepared(cfg, version, manifest, profile, bucket, output)


def _skipped(cfg: ModelConfig, run_id: str, detail: str) -> MonitorOutcome:
    log.warning("nothing to monitor: %s", detail, extra=fields(model=cfg.name))
    return MonitorOutcome(model=cfg.name, status="skipped", run_id=run_id, detail=detail)


def _run(
    request: RunRequest, rt: Runtime, cfg: ModelConfig, run: Run, *, actor: str
) -> MonitorOutcome:
    prep = prepare(request, rt, cfg)
    if isinstance(prep, str):
        return _skipped(cfg, run.run_id, prep)
    reader = prep.reader(rt, request)
    scan = Scan.empty(prep, request)
    scan.read(prep, reader)
    return conclude(request, rt, prep, scan, reader, run, actor=actor)


def conclude(
    request: RunRequest,
    rt: Runtime,
    prep: Prepared,
    scan: Scan,
    reader: Any,
    run: Run,
    *,
    actor: str,
) -> MonitorOutcome:
    """Judge a scan of the whole window (one process's, or the shards' merged), then store,
    measure, announce and act on it."""
    cfg, version, run_id = prep.cfg, prep.version, run.run_id
    window = reader.window()
    if window.rows == 0:
        raise DataError(
            f"{reader.root}: the monitoring window {reader.window_text} has files but no rows"
        )
    thresholds = drift_thresholds(cfg)
    result = scan.drift.result(thresholds)
    drift = result.to_dict()
    predictions = None
    scored = scan.sample.frame()
    if prep.output:
        predictions = scan.predictions.result(thresholds)
        predictions["output"] = prep.output
        if cfg.task == "classification" and scored is not None:
            scored = _with_labels(rt, cfg, prep.bucket, request, scored)
    performance = _performance(rt, cfg, version, prep.manifest, scored)
    degraded = bool(performance and performance.get("degraded"))
    alert = drift["dataset_drift"] if cfg.drift.alert_on == "dataset" else bool(drift["drifted"])
    alert = alert or bool(predictions and predictions["drifted"])

    registry = rt.registry()
    # One folder per request: an attempt that takes over (a retried job task) finishes the
    # folder its predecessor began instead of leaving a second result.
    folder = run.resumed.get("folder")
    at = run.resumed.get("at")
    if not folder or not at:
        now = datetime.now(UTC)
        folder, at = f"{cfg.name}/monitoring/{now:%Y%m%dT%H%M%SZ}-{run_id[:8]}/", now.isoformat()
        run.checkpoint(folder=folder, at=at)
    summary = {
        "schema": 1,
        "model": cfg.name,
        "version": version,
        "run_id": run_id,
        "at": at,
        "request": request.to_dict(),
        "window": window.to_dict(),
        "source": cfg.drift.source,
        "drift": drift,
        "prediction_drift": predictions,
        "performance": performance,
        "alert": alert,
    }
    history = _history(rt, cfg.name)
    _store(rt, folder, summary, history, resumed=bool(run.resumed.get("folder")))
    log.info(
        "monitored %s v%d: drift share %.2f%s",
        cfg.name,
        version,
        drift["drift_share"],
        " (dataset drift)" if drift["dataset_drift"] else "",
        extra=fields(model=cfg.name, version=version, drifted=drift["drifted"], degraded=degraded),
    )
    _metrics(rt, cfg, version, drift, performance, predictions)

    if alert:
        rt.events().try_publish(
            "drift_detected",
            cfg.name,
            version=version,
            run_id=run_id,
            drift_share=drift["drift_share"],
            drifted=drift["drifted"],
            dataset_drift=drift["dataset_drift"],
            new_categories=_new_categories(drift),
            source=cfg.drift.source,
            prediction_drift=(
                None
                if predictions is None
                else {k: predictions.get(k) for k in ("output", "statistic", "value", "drifted")}
            ),
            report=f"gs://{registry.bucket_name}/{folder}report.html",
        )
    if degraded and performance is not None:
        rt.events().try_publish(
            "performance_degraded",
            cfg.name,
            version=version,
            run_id=run_id,
            **{k: performance[k] for k in ("metric", "baseline", "current", "drop")},
        )
    requested = False
    reason = (
        "drift"
        if alert and cfg.drift.retrain_on_drift
        else "degradation"
        if degraded and cfg.drift.retrain_on_degradation
        else None
    )
    if reason:
        requested = request_retrain(rt, cfg, reason=reason, run_id=run_id, as_of=request.as_of)
    return MonitorOutcome(
        model=cfg.name,
        status="checked",
        version=version,
        dataset_drift=drift["dataset_drift"],
        drift_share=drift["drift_share"],
        drifted=list(drift["drifted"]),
        degraded=degraded,
        performance=performance,
        retrain_requested=requested,
        report=f"gs://{registry.bucket_name}/{folder}report.html",
        run_id=run_id,
        detail=(
            f"drift share {drift['drift_share']:.2f}; drifted: "
            f"{', '.join(drift['drifted']) or 'none'}"
        ),
    )


def prediction_output(cfg: ModelConfig) -> str:
    """The prediction log's column watched for prediction drift."""
    return cfg.drift.output or ("score" if cfg.task == "classification" else "cluster")


def prediction_log_spec(cfg: ModelConfig, labels: bool = False) -> DataSpec:
    """Where the model's prediction log (or its labels) lies in the data bucket, as a data
    spec the window reader takes (warden.serving.PredictionLog writes Parquet partitions)."""
    prefix = cfg.drift.labels_prefix if labels else cfg.drift.predictions_prefix
    default = f"{'labels' if labels else 'predictions'}/{cfg.name}"
    return DataSpec(
        prefix=prefix or default,
        format="parquet",
        window_days=cfg.drift.window_days,
        min_rows=10,
    )


def _nothing_served(rt: Runtime, bucket: str, cfg: ModelConfig, request: RunRequest) -> bool:
    """True when no day of the window has a prediction-log partition (one short listing per
    day, the window's days only)."""
    prefix = prediction_log_spec(cfg).prefix
    for back in range(cfg.drift.window_days):
        day = request.as_of - timedelta(days=back)
        found = rt.clients.storage.list_blobs(
            bucket, prefix=f"{prefix}/dt={day.isoformat()}/", max_results=1
        )
        if any(True for _ in found):
            return False
    return True


def _with_labels(
    rt: Runtime, cfg: ModelConfig, bucket: str, request: RunRequest, frame: Any
) -> Any:
    """``frame`` (logged predictions) with the target column filled from the labels logged for
    them, joined by request id (a prediction without a label yet keeps a null target). Labels
    are read from the partitions of the same window, by the day each label arrived."""
    from warden.store.data import WindowReader

    assert cfg.target is not None  # a classifier
    try:
        reader = WindowReader(
            rt.clients.storage,
            bucket=bucket,
            spec=prediction_log_spec(cfg, labels=True),
            columns=[REQUEST_ID, LABEL],
            as_of=request.as_of,
            categorical=[REQUEST_ID, LABEL],
            window_days=cfg.drift.window_days,
            target_required=False,
        )
        parts = list(reader.frames())
    except DataError as exc:  # no labels yet: performance says so
        log.info("no labels for %s: %s", cfg.name, exc, extra=fields(model=cfg.name))
        parts = []
    frame = frame.drop(columns=[cfg.target], errors="ignore")
    if not parts:
        frame[cfg.target] = None
        return frame
    import pandas as pd

    labels = pd.concat(parts, ignore_index=True).drop_duplicates(REQUEST_ID, keep="last")
    labels = labels.rename(columns={LABEL: cfg.target})[[REQUEST_ID, cfg.target]]
    return frame.merge(labels, on=REQUEST_ID, how="left")


def sample_seed(cfg: ModelConfig, request: RunRequest) -> int:
    """Seed of the scoring sample: from the model's ``evaluation.seed`` and the request's
    idempotency key, so a retry of one request scores the same rows and successive scheduled
    runs draw independent samples."""
    text = f"{cfg.evaluation.seed}\n{request.key}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def _new_categories(drift: dict[str, Any]) -> dict[str, Any]:
    """The features whose new-category share reached its threshold, for the event: the share
    and the few most frequent new values (already cut short by the drift module)."""
    out = {}
    for name in drift.get("new_categories", []):
        new = drift["features"][name].get("new_categories") or {}
        out[name] = {"share": new.get("share"), "top": [t["value"] for t in new.get("top", [])]}
    return out


def _performance(
    rt: Runtime, cfg: ModelConfig, version: int, manifest: dict[str, Any], frame: Any
) -> dict[str, Any] | None:
    """The champion's gate metric on recent rows against the value it was promoted with."""
    from warden.ml.evaluation import evaluate
    from warden.ml.training import model_input

    if frame is None or not len(frame):
        return None
    metric = cfg.gate_metric
    baseline = (manifest.get("metrics", {}).get("candidate") or {}).get(metric)
    y = None
    if cfg.task == "classification":
        labeled = frame[frame[cfg.target].notna()]
        if len(labeled) < MIN_LABELED_ROWS or labeled[cfg.target].nunique() < 2:
            return {
                "metric": metric,
                "baseline": baseline,
                "current": None,
                "drop": None,
                "degraded": False,
                "labeled_rows": len(labeled),
                "detail": "not enough labeled rows with both classes",
            }
        frame = labeled
        y = labeled[cfg.target]
        # Labels may arrive as text or floats; align them with what the model was trained on.
        with contextlib.suppress(TypeError, ValueError):
            y = y.astype(type(cfg.positive_label))
    model, _ = rt.registry().load(cfg.name, version)
    try:
        result = evaluate(
            model,
            cfg.task,
            model_input(frame, cfg),
            y,
            spec=cfg.evaluation,
            positive_label=cfg.positive_label,
            diagnostics=False,  # metrics only: the curves belong to the version report
        )
    except DataError as exc:
        return {
            "metric": metric,
            "baseline": baseline,
            "current": None,
            "drop": None,
            "degraded": False,
            "detail": clip_text(str(exc)),  # stored in drift.json: bounded like every error
        }
    current = result.metrics.get(metric)
    drop = None
    degraded = False
    if current is not None and baseline is not None and not math.isnan(current):
        drop = (baseline - current) / abs(baseline) if baseline else 0.0
        degraded = drop > cfg.drift.performance_margin
    return {
        "metric": metric,
        "baseline": baseline,
        "current": current,
        "drop": drop,
        "degraded": degraded,
        "margin": cfg.drift.performance_margin,
        "rows": len(frame),
        "sane": result.sane,
        "problems": result.problems,
    }


def _history(rt: Runtime, model: str) -> list[dict[str, Any]]:
    """The last runs' summaries (oldest first), for the report's history chart; the latest
    :data:`FEATURE_TREND_RUNS` also carry each feature's score and the drifted features, read
    from the same ``drift.json`` objects, for its per-feature trend."""
    from warden.report.html import feature_score

    client = rt.clients.storage
    bucket = rt.settings.registry_bucket
    names = sorted(
        b.name
        for b in client.list_blobs(bucket, prefix=f"{model}/monitoring/")
        if b.name.endswith("/drift.json")
    )[-HISTORY_RUNS:]
    out = []
    for i, name in enumerate(names):
        try:
            run = json.loads(client.bucket(bucket).blob(name).download_as_bytes())
        except ValueError:
            continue
        perf = run.get("performance") or {}
        entry = {
            "at": run.get("at"),
            "version": run.get("version"),
            "drift_share": run.get("drift", {}).get("drift_share", 0.0),
            "dataset_drift": run.get("drift", {}).get("dataset_drift", False),
            "metrics": (
                {perf["metric"]: perf["current"]} if perf.get("current") is not None else {}
            ),
        }
        if i >= len(names) - FEATURE_TREND_RUNS:
            features = run.get("drift", {}).get("features") or {}
            entry["feature_scores"] = {f: feature_score(v) for f, v in features.items()}
            entry["drifted"] = list(run.get("drift", {}).get("drifted") or [])
        out.append(entry)
    return out


def _store(
    rt: Runtime,
    folder: str,
    summary: dict[str, Any],
    history: list[dict],
    *,
    resumed: bool = False,
) -> None:
    from warden.report.html import render_drift_report

    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    drift = summary["drift"]
    html = render_drift_report(
        drift,
        model=summary["model"],
        version=summary["version"],
        run_id=summary["run_id"],
        at=summary["at"],
        window=summary["window"],
        performance=summary["performance"],
        history=history,
        predictions=summary.get("prediction_drift"),
    )
    # Report first, summary last: a run is listed (by its drift.json) only once complete.
    for name, data, content_type in (
        ("report.html", html, "text/html"),
        ("drift.json", gcs.dumps(summary), "application/json"),
    ):
        if gcs.create(bucket, folder + name, data, content_type=content_type) is None:
            if resumed:  # an earlier attempt of this run wrote it: the folder is ours
                continue
            raise ConflictError(f"gs://{bucket.name}/{folder}{name} already exists")


def _metrics(
    rt: Runtime,
    cfg: ModelConfig,
    version: int,
    drift: dict[str, Any],
    performance: dict[str, Any] | None,
    predictions: dict[str, Any] | None = None,
) -> None:
    from warden.telemetry.metrics import MetricPoint

    base = {"model": cfg.name, "version": str(version)}
    points = [
        MetricPoint("drift/share", float(drift["drift_share"]), dict(base)),
        MetricPoint("drift/dataset", float(drift["dataset_drift"]), dict(base)),
    ]
    if predictions and predictions.get("value") is not None:
        labels = {**base, "statistic": str(predictions["statistic"])}
        points.append(MetricPoint("drift/prediction", float(predictions["value"]), labels))
    for name, feature in drift["features"].items():
        points.append(MetricPoint("drift/score", _score(feature), {**base, "feature": name}))
    if performance and performance.get("current") is not None:
        labels = {**base, "metric": performance["metric"]}
        points.append(MetricPoint("monitor/performance", float(performance["current"]), labels))
        if performance.get("drop") is not None:
            points.append(
                MetricPoint("monitor/performance_drop", float(performance["drop"]), dict(labels))
            )
    try:
        rt.metrics().write(points)
        rt.metrics().write([MetricPoint("run/success", 1.0, {"model": cfg.name, "job": JOB})])
    except Exception as exc:  # observability, not state
        log.error("could not write metrics: %s", exc, extra=fields(model=cfg.name))


def _score(feature: dict[str, Any]) -> float:
    """One number per feature: the largest statistic-to-threshold ratio (≥ 1 means drifted)."""
    ratios = [
        feature["stats"][k] / t
        for k, t in feature.get("thresholds", {}).items()
        if t and feature["stats"].get(k) is not None
    ]
    return float(max(ratios, default=0.0))


def request_retrain(rt: Runtime, cfg: ModelConfig, *, reason: str, run_id: str, as_of: Any) -> bool:
    """Publish a retrain request unless one went out within the cooldown. Compare-and-swap on a
    small marker makes concurrent monitor runs agree on who requests."""
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    name = f"{cfg.name}/monitoring/retrain-request.json"
    cooldown = timedelta(hours=cfg.drift.retrain_cooldown_hours)
    now = datetime.now(UTC)
    last: list[datetime] = []

    def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
        last.clear()
        if stored is not None:
            requested = datetime.fromisoformat(stored.data["requested_at"])
            if now - requested < cooldown:
                last.append(requested)
                return None
        return {"requested_at": now.isoformat(), "reason": reason, "run_id": run_id}

    # A lost race re-reads and re-decides; ten in a row raise ConflictError (retryable).
    got = gcs.update_json(
        bucket,
        name,
        change,
        attempts=10,
        conflict=f"{cfg.name}: retrain-request marker kept changing",
    )
    if got.written is None:
        log.info(
            "retrain not requested: cooldown until %s",
            last[0] + cooldown,
            extra=fields(model=cfg.name, reason=reason),
        )
        return False
    payload = {"schema": 1, "model": cfg.name, "reason": reason, "as_of": str(as_of)}
    try:
        publisher = rt.clients.publisher
        topic = publisher.topic_path(rt.settings.project, rt.settings.retrain_topic)
        message_id = publisher.publish(
            topic, json.dumps(payload).encode(), model=cfg.name, kind="retrain"
        ).result(timeout=30)
    except Exception as exc:
        # Give the cooldown back so the redelivery of this monitor request can try again.
        try:
            gcs.delete_if(bucket, name, got.generation)
        except Exception:
            log.exception("could not release the retrain-request marker")
        raise RetryableError(f"{cfg.name}: could not publish the retrain request: {exc}") from exc
    log.info("retrain requested (%s)", reason, extra=fields(model=cfg.name, message_id=message_id))
    return True
