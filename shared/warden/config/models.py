"""``warden.yaml``: the one source of truth for the models Warden looks after.

Pure: no I/O except reading the file in :func:`load_config`, no Google or scikit-learn imports.
Every validation error names the file, the key (as a dotted path) and the problem.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from warden.config.alerting import parse_alerting
from warden.config.base import Strict, loc
from warden.config.estimators import ALLOWED, TASK_FINAL_KIND, check_factory
from warden.errors import ConfigError, UnknownModelError

MODEL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

Task = Literal["clustering", "classification"]
Metric = Literal["silhouette", "roc_auc", "f1", "accuracy"]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "clustering": ("silhouette",),
    "classification": ("roc_auc", "f1", "accuracy"),
}
DEFAULT_METRIC = {"clustering": "silhouette", "classification": "roc_auc"}
#: Default absolute floors: better than no structure / better than chance.
DEFAULT_FLOOR = {"silhouette": 0.0, "roc_auc": 0.5, "f1": 0.0, "accuracy": 0.5}


class Step(Strict):
    """One step of the estimator pipeline: an allow-listed scikit-learn class and its parameters."""

    cls: str = Field(
        alias="class",
        description="allow-listed scikit-learn class, e.g. StandardScaler, KMeans, "
        "LogisticRegression; transformers first, the clusterer or classifier last",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the class (scikit-learn's names; unset ones keep "
        "scikit-learn's defaults); checked when the pipeline is built",
    )
    name: str | None = Field(
        default=None,
        description="the step's name in the pipeline; null: the class name, lower case",
    )

    @field_validator("cls")
    @classmethod
    def _allowed(cls, value: str) -> str:
        if value not in ALLOWED:
            raise ValueError(
                f"{value!r} is not an allowed estimator; allowed: {', '.join(sorted(ALLOWED))}"
            )
        return value


class EstimatorSpec(Strict):
    """What is trained: a pipeline of allow-listed ``steps``, or a ``factory``; exactly one."""

    steps: list[Step] = Field(
        default_factory=list,
        description="the pipeline, in order: transformers, then one clusterer or classifier",
    )
    factory: str | None = Field(
        default=None,
        description="'warden.factories.MODULE:FUNCTION' returning an unfitted estimator "
        "(instead of steps)",
    )
    factory_params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments passed to the factory function"
    )

    @field_validator("factory")
    @classmethod
    def _shipped(cls, value: str | None) -> str | None:
        # Only modules shipped in the bundle (estimators.FACTORY_PACKAGES), never os:system.
        return None if value is None else check_factory(value)

    @model_validator(mode="after")
    def _one_of(self) -> EstimatorSpec:
        if bool(self.steps) == bool(self.factory):
            raise ValueError("give exactly one of 'steps' or 'factory'")
        return self


class DataSpec(Strict):
    """Where the training data is: ``gs://BUCKET/PREFIX/dt=YYYY-MM-DD/*.{parquet,csv}``."""

    bucket: str | None = Field(
        default=None, description="bucket of the training data; null: WARDEN_DATA_BUCKET"
    )
    prefix: str = Field(
        min_length=1,
        description="folder in the bucket holding the dt=YYYY-MM-DD/ partitions, e.g. customers",
    )
    format: Literal["csv", "parquet"] = Field(
        default="parquet", description="file format of the partitions' files"
    )
    window_days: int = Field(
        default=30,
        ge=1,
        le=3660,
        description="days of partitions a retrain reads, ending with the run's as_of day",
    )
    min_rows: int = Field(
        default=50, ge=10, description="fewest rows a training window may have; fewer fail the run"
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or value.startswith("gs:") or ".." in value.split("/"):
            raise ValueError("must be a folder inside the bucket, like 'customers/daily'")
        return value


class Schedule(Strict):
    """When a Cloud Scheduler job fires."""

    cron: str = Field(description="5-field cron expression, e.g. '0 3 * * 1' (Mondays, 03:00)")
    timezone: str = Field(default="Etc/UTC", description="IANA time zone the cron is read in")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter  # small, pure-python

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid 5-field cron expression")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value


class Schedules(Strict):
    """The model's Scheduler jobs; a kind left out (null) is not scheduled."""

    retrain: Schedule | None = Field(
        default=None, description="when to retrain; null: only on request (warden retrain)"
    )
    monitor: Schedule | None = Field(
        default=None, description="when to check drift and performance; null: never scheduled"
    )
    housekeeping: Schedule | None = Field(
        default=None,
        description="when to run the integrity sweep, backup and retention; null: never scheduled",
    )


class GateSpec(Strict):
    """What a candidate must achieve on the held-out rows to become the champion."""

    metric: Metric | None = Field(
        default=None,
        description="metric the gate judges; null: silhouette (clustering), roc_auc "
        "(classification)",
    )
    min: float | None = Field(
        default=None,
        description="absolute floor for the metric; null: 0.0 for silhouette and f1, 0.5 for "
        "roc_auc and accuracy",
    )
    max_relative_drop: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="largest allowed drop below the champion, as a fraction of its value "
        "(0.05 = 5%)",
    )


class EvaluationSpec(Strict):
    """How candidate and champion are scored on the same held-out rows (docs/evaluation.md)."""

    holdout: Literal["time", "random"] = Field(
        default="time",
        description=(
            "time: hold out the newest days, at least holdout_fraction of the rows; random: a"
            " seeded random sample (a champion can then have trained on most of it: a warning)"
        ),
    )
    holdout_fraction: float = Field(
        default=0.25,
        gt=0.0,
        le=0.5,
        description="share of the rows held out to score candidate and champion (0.25 = 25%)",
    )
    seed: int = Field(default=0, description="random seed of the split and the silhouette sample")
    silhouette_exact_max_rows: int = Field(
        default=10_000,
        ge=100,
        le=200_000,
        description="held-out rows up to which silhouette is exact; above, it is sampled",
    )
    silhouette_sample_size: int = Field(
        default=10_000,
        ge=100,
        le=200_000,
        description="rows sampled for silhouette above silhouette_exact_max_rows",
    )
    silhouette_confidence: float = Field(
        default=0.99,
        gt=0.5,
        lt=1.0,
        description="probability that a sampled silhouette is within its stated error bound",
    )


DRIFT_STATS = {"psi", "js", "wasserstein", "ks", "linf", "cramers_v", "missing_rate"}


class DriftSpec(Strict):
    """How ``monitor_model`` judges recent data against the champion's reference profile."""

    window_days: int = Field(
        default=7, ge=1, le=366, description="days of recent data compared with the reference"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="effect-size thresholds replacing the built-in ones, by statistic: psi, js, "
        "wasserstein, ks, linf, cramers_v, missing_rate (docs/drift.md)",
    )
    per_feature: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="FEATURE: {statistic: threshold} for one feature (new_category_share too)",
    )
    dataset_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of the features that must drift for the dataset to drift",
    )
    # docs/drift.md: a categorical feature drifts when at least this share of its current values
    # are categories the reference never had; null turns the check off (the share is still
    # reported). per_feature can set it for one feature.
    new_category_share: float | None = Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="share of values never seen in the reference that makes a categorical "
        "feature drift; null: check off (the share is still reported)",
    )
    # Calibrated in docs/drift.md: below ~1k rows, heavy-tailed columns alarm too often.
    min_rows: int = Field(
        default=1000,
        ge=10,
        description="fewest recent (and reference) rows for a drift verdict; fewer: "
        "'insufficient data'",
    )
    alert_on: Literal["dataset", "any"] = Field(
        default="dataset",
        description="publish drift_detected when the dataset drifts, or when any feature does",
    )
    performance_margin: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="relative drop of the gate metric on recent rows that counts as degraded "
        "(0.05 = 5%)",
    )
    retrain_on_drift: bool = Field(
        default=False, description="request a retrain when the data drifts (once per cooldown)"
    )
    retrain_on_degradation: bool = Field(
        default=False,
        description="request a retrain when performance degrades (once per cooldown)",
    )
    retrain_cooldown_hours: float = Field(
        default=24.0,
        ge=0.0,
        le=24 * 90,
        description="hours after a monitor-requested retrain before it requests another",
    )
    max_eval_rows: int = Field(
        default=200_000,
        ge=1_000,
        description="recent rows sampled (uniformly) to score the champion on",
    )
    source: Literal["training", "predictions"] = Field(
        default="training",
        description="what is compared with the reference: the training feed (data.prefix) or "
        "the prediction log warden.serving.PredictionLog writes (docs/serving.md)",
    )
    predictions_prefix: str | None = Field(
        default=None,
        description="folder of the prediction log in the data bucket; null: predictions/MODEL",
    )
    labels_prefix: str | None = Field(
        default=None,
        description="folder of the labels logged for predictions, joined by request id; "
        "null: labels/MODEL",
    )
    output: str | None = Field(
        default=None,
        description="the prediction log's output column watched for prediction drift; null: "
        "score (classification) or cluster (clustering)",
    )

    @field_validator("predictions_prefix", "labels_prefix")
    @classmethod
    def _log_prefix(cls, value: str | None) -> str | None:
        return None if value is None else DataSpec._prefix(value)

    @field_validator("thresholds")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        if "new_category_share" in value:
            raise ValueError(
                "new_category_share is a setting of its own: drift.new_category_share "
                "(or drift.per_feature.FEATURE.new_category_share for one feature)"
            )
        unknown = sorted(set(value) - DRIFT_STATS)
        if unknown:
            raise ValueError(f"unknown drift statistic(s) {unknown}; use {sorted(DRIFT_STATS)}")
        if any(v <= 0 for v in value.values()):
            raise ValueError("thresholds must be positive")
        return value


class RunnerSpec(Strict):
    """Where one kind of run of the model executes: in the triggering function (minutes, a few
    GiB), or as a Cloud Run job execution (hours, up to 32 GiB, parallel tasks), or ``auto``:
    a job when the window's data is larger than the limits below (measured from the listing's
    object sizes and the ``rows`` metadata the prediction log writes; nothing is downloaded)."""

    runner: Literal["function", "job", "auto"] = Field(
        default="function",
        description="function (in the triggering function), job (a Cloud Run job execution) "
        "or auto (a job above max_bytes or max_rows)",
    )
    max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="auto: a window whose data files hold more bytes runs as a job",
    )
    max_rows: int = Field(
        default=2_000_000,
        ge=1,
        description="auto: a window whose files say (object metadata 'rows') they hold more "
        "rows runs as a job",
    )
    tasks: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="monitor only: tasks of the job execution, each reading its share of the "
        "window's files (their counts are merged into one result)",
    )
    timeout_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="how long a job's run may hold the run ledger's claim (the job's task "
        "timeout in Terraform should not be longer)",
    )


class Runners(Strict):
    """Where each kind of run executes (see :class:`RunnerSpec`)."""

    retrain: RunnerSpec = Field(
        default_factory=RunnerSpec, description="retrains: function, job or auto (one task)"
    )
    monitor: RunnerSpec = Field(
        default_factory=RunnerSpec, description="monitor runs: function, job or auto; tasks"
    )

    @field_validator("retrain")
    @classmethod
    def _one_task(cls, value: RunnerSpec) -> RunnerSpec:
        if value.tasks != 1:
            raise ValueError("a retrain runs as one task (tasks: 1); only monitor runs shard")
        return value


class RetentionSpec(Strict):
    """Which versions housekeeping keeps: the newest ``keep_last``, every version an alias
    pointed to within ``alias_window_days``, and always the current champion."""

    keep_last: int = Field(default=10, ge=1, le=10_000, description="newest versions kept")
    alias_window_days: int = Field(
        default=30, ge=0, le=3650, description="days back in which every champion is kept"
    )


class HousekeepingSpec(Strict):
    """The daily upkeep: integrity sweep, snapshot, retention, expiry (docs/RUNBOOKS.md)."""

    retention: RetentionSpec = Field(
        default_factory=RetentionSpec, description="which versions retention keeps"
    )
    marker_ttl_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="days after which finished run-ledger markers are deleted",
    )
    backup: bool = Field(default=True, description="snapshot the model on each housekeeping run")
    backup_retention_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="days a snapshot is kept (the newest one of each model always stays)",
    )
    orphan_grace_hours: int = Field(
        default=24,
        ge=1,
        le=720,
        description="hours after which a version without a manifest is swept",
    )


class ModelConfig(Strict):
    """One model Warden looks after; its key under ``models`` is its name."""

    name: str = Field(
        description="1-40 characters of a-z, 0-9 and '-', starting with a letter; filled in "
        "from the key under models (give it only to repeat the key)"
    )
    task: Task = Field(description="what the model does; decides the metrics and final step")
    description: str = Field(default="", description="free text for the people reading it")
    estimator: EstimatorSpec = Field(description="what is trained")
    data: DataSpec = Field(description="where the training data is")
    features: list[str] = Field(
        min_length=1, description="the input columns, in the order the model sees them"
    )
    categorical_features: list[str] = Field(
        default_factory=list,
        description="features holding labels, not numbers: one-hot encoded, a missing value is "
        "a category of its own; each must be listed in features",
    )
    numeric_missing: Literal["impute", "refuse"] = Field(
        default="impute",
        description="missing values (NaN) in the numeric features: 'impute' fills them with "
        "the training rows' median in front of the configured steps; 'refuse' fails the run, "
        "naming the columns",
    )
    target: str | None = Field(
        default=None,
        description="the label column: required for classification, absent for clustering",
    )
    positive_label: int | str = Field(
        default=1, description="target value of the positive class (ROC AUC, F1)"
    )
    schedules: Schedules = Field(
        default_factory=Schedules, description="when Cloud Scheduler runs this model's jobs"
    )
    gate: GateSpec = Field(default_factory=GateSpec, description="the promotion gate")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="how candidate and champion are scored"
    )
    drift: DriftSpec = Field(
        default_factory=DriftSpec, description="how the monitor judges recent data"
    )
    housekeeping: HousekeepingSpec = Field(
        default_factory=HousekeepingSpec, description="retention, backups and expiry"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="free-form labels for people and tools, e.g. team: the owning team",
    )
    runners: Runners = Field(
        default_factory=Runners,
        description="where retrains and monitor runs execute: the function or a Cloud Run job",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(
                "model names are 1-40 characters of a-z, 0-9 and '-', starting with a letter"
            )
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str]) -> list[str]:
        # One pass with a Counter: ``value.count(f)`` per feature was quadratic (30k features
        # took ~9 s to validate).
        dupes = sorted(f for f, n in Counter(value).items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate features: {dupes}")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ModelConfig:
        if self.task == "classification" and not self.target:
            raise ValueError("classification models need a 'target' column")
        if self.task == "clustering" and self.target:
            raise ValueError("clustering models take no 'target'")
        if self.target and self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed in features")
        features = set(self.features)  # membership in a set: linear in the number of features
        stray = [f for f in self.categorical_features if f not in features]
        if stray:
            raise ValueError(f"categorical_features {stray} are not listed in features")
        unknown = sorted(set(self.drift.per_feature) - features)
        if unknown:
            raise ValueError(f"drift.per_feature names unknown features {unknown}")
        if self.estimator.steps:
            final = self.estimator.steps[-1].cls
            want = TASK_FINAL_KIND[self.task]
            if ALLOWED[final][1] != want:
                raise ValueError(
                    f"the last estimator step must be a {want} for task "
                    f"{self.task!r}, got {final!r}"
                )
            for step in self.estimator.steps[:-1]:
                if ALLOWED[step.cls][1] != "transformer":
                    raise ValueError(f"{step.cls!r} can only be the last step")
        if self.gate.metric and self.gate.metric not in TASK_METRICS[self.task]:
            raise ValueError(
                f"gate.metric {self.gate.metric!r} does not apply to task "
                f"{self.task!r}; use one of {TASK_METRICS[self.task]}"
            )
        return self

    @property
    def numeric_features(self) -> list[str]:
        categorical = set(self.categorical_features)
        return [f for f in self.features if f not in categorical]

    @property
    def gate_metric(self) -> str:
        return self.gate.metric or DEFAULT_METRIC[self.task]

    @property
    def gate_floor(self) -> float:
        return self.gate.min if self.gate.min is not None else DEFAULT_FLOOR[self.gate_metric]

    def data_bucket(self, default: str) -> str:
        return self.data.bucket or default


class AlertPolicy(Strict):
    """A threshold on one of Warden's custom metrics (Terraform makes a Cloud Monitoring alert
    policy of it; the local Monitoring stand-in evaluates it and posts 1.2 incidents)."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        description="the policy's name (the alertname label): a-z, 0-9 and '-', at most 63",
    )
    metric: str = Field(
        pattern=r"^[a-z_]+(/[a-z_]+)+$",
        description="a Warden metric under custom.googleapis.com/warden/, e.g. drift/share",
    )
    comparison: Literal[">", ">=", "<", "<="] = Field(
        default=">=", description="how the metric's value is compared with the threshold"
    )
    threshold: float = Field(description="the value that breaches, in the metric's unit")
    duration_s: int = Field(
        default=0,
        ge=0,
        le=86_400,
        description="seconds the breach must last before an incident opens (0: at once)",
    )
    severity: Literal["critical", "error", "warning", "info"] = Field(
        default="warning", description="the incident's severity label"
    )
    filter: dict[str, str] = Field(
        default_factory=dict,
        description="metric labels that must be equal, e.g. {model: customer-segments}",
    )
    runbook: str = Field(default="", description="link to the runbook, shown in the incident")

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.comparison]


#: A Cloud Run service name (a Cloud Function gen2 runs as the Cloud Run service of its name):
#: lower-case letters, digits and '-', starting with a letter, not ending with '-', under 50.
SERVICE_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,47}[a-z0-9])?$")
#: Cloud Run samples its request metrics every 60 s: the alignment period of serving policies.
SERVING_ALIGNMENT_S = 60
Severity = Literal["critical", "error", "warning", "info"]


def _whole_minutes(value: int) -> int:
    # Cloud Monitoring takes a condition's duration only in whole minutes (0, 60, 120, ... s).
    if value % 60:
        raise ValueError(f"{value} is not a multiple of 60 seconds (Cloud Monitoring's unit)")
    return value


class _ServingCondition(Strict):
    """What the two kinds of serving policy share: how long a breach must last."""

    duration_s: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="seconds the breach must last before an incident opens (a multiple of 60, "
        "as Cloud Monitoring requires)",
    )

    @field_validator("duration_s")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        return _whole_minutes(value)


class ServingLatency(_ServingCondition):
    """p95 request latency of a Cloud Run service (``run.googleapis.com/request_latencies``,
    milliseconds, as Cloud Run publishes it for every request that reaches a revision)."""

    p95_ms: float = Field(
        gt=0,
        le=3_600_000,
        description="p95 latency in milliseconds above which the service is too slow (over all "
        "its requests, per 60 s window)",
    )
    severity: Severity = Field(default="warning", description="the incident's severity label")
    runbook: str = Field(
        default="docs/RUNBOOKS.md#serving-latency",
        description="link to the runbook, shown in the incident",
    )


class ServingErrors(_ServingCondition):
    """Share of 5xx answers among a Cloud Run service's requests
    (``run.googleapis.com/request_count``, ``response_code_class``)."""

    rate: float = Field(
        gt=0.0,
        lt=1.0,
        description="share of requests answered 5xx above which the service fails "
        "(0.05 = 5%), per 60 s window",
    )
    severity: Severity = Field(default="error", description="the incident's severity label")
    runbook: str = Field(
        default="docs/RUNBOOKS.md#serving-errors",
        description="link to the runbook, shown in the incident",
    )


class ServingPolicy(Strict):
    """One serving alert policy as Terraform creates it and the local stand-in evaluates it:
    derived from ``serving.services``, never written in ``warden.yaml`` itself."""

    name: str = Field(description="SERVICE-latency or SERVICE-errors: the alertname")
    kind: Literal["latency", "errors"] = Field(description="what the policy watches")
    service: str = Field(description="the Cloud Run service name")
    threshold: float = Field(description="p95 in ms (latency) or 5xx share (errors)")
    duration_s: int = Field(description="seconds the breach must last")
    severity: Severity = Field(description="the incident's severity label")
    runbook: str = Field(description="link to the runbook")

    def breached(self, value: float) -> bool:
        """Cloud Monitoring's COMPARISON_GT: strictly above the threshold."""
        return value > self.threshold


class ServingService(Strict):
    """A Cloud Run service (or Cloud Function gen2) serving a model, and its alert policies:
    at least one of ``latency`` and ``errors``."""

    name: str = Field(
        description="the Cloud Run service name (a gen2 function's name): 1-49 characters of "
        "a-z, 0-9 and '-', starting with a letter, not ending with '-'"
    )
    latency: ServingLatency | None = Field(
        default=None, description="alert when the p95 latency is too high; null: no such alert"
    )
    errors: ServingErrors | None = Field(
        default=None, description="alert when too many requests fail (5xx); null: no such alert"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVICE_NAME.match(value):
            raise ValueError(
                "Cloud Run service names are 1-49 characters of a-z, 0-9 and '-', starting with "
                "a letter and not ending with '-'"
            )
        return value

    @model_validator(mode="after")
    def _some_policy(self) -> ServingService:
        if self.latency is None and self.errors is None:
            raise ValueError(
                f"service {self.name!r} declares no policy: give latency, errors or both"
            )
        return self

    def policies(self) -> list[ServingPolicy]:
        out = []
        if self.latency is not None:
            out.append(
                ServingPolicy(
                    name=f"{self.name}-latency",
                    kind="latency",
                    service=self.name,
                    threshold=self.latency.p95_ms,
                    duration_s=self.latency.duration_s,
                    severity=self.latency.severity,
                    runbook=self.latency.runbook,
                )
            )
        if self.errors is not None:
            out.append(
                ServingPolicy(
                    name=f"{self.name}-errors",
                    kind="errors",
                    service=self.name,
                    threshold=self.errors.rate,
                    duration_s=self.errors.duration_s,
                    severity=self.errors.severity,
                    runbook=self.errors.runbook,
                )
            )
        return out


class ServingConfig(Strict):
    """Alerts on the serving application's Cloud Run services, from the request metrics Cloud
    Run publishes (no code in the application): one Cloud Monitoring alert policy each."""

    services: list[ServingService] = Field(
        min_length=1, description="the Cloud Run services to watch (at least one)"
    )

    @field_validator("services")
    @classmethod
    def _unique(cls, value: list[ServingService]) -> list[ServingService]:
        dupes = sorted(n for n, k in Counter(s.name for s in value).items() if k > 1)
        if dupes:
            raise ValueError(f"services declared twice: {dupes}")
        return value

    def policies(self) -> list[ServingPolicy]:
        """Every declared policy, named SERVICE-latency / SERVICE-errors."""
        return [p for service in self.services for p in service.policies()]


class WardenConfig(Strict):
    """``warden.yaml``: the models, alert policies, alert routing and serving alerts."""

    version: Literal[1] = Field(default=1, description="version of this file's format")
    models: dict[str, ModelConfig] = Field(description="the models, keyed by name (at least one)")
    alert_policies: list[AlertPolicy] = Field(
        default_factory=list,
        description="threshold policies on Warden's metrics (Cloud Monitoring alert policies)",
    )
    alerting: dict[str, Any] | None = Field(
        default=None,
        description="alert routing: receivers, route tree, inhibit rules (docs/alerting.md); "
        "null: no routing",
    )
    serving: ServingConfig | None = Field(
        default=None,
        description="latency and error-rate alerts on the serving application's Cloud Run "
        "services (docs/alerting.md); null: none",
    )

    @field_validator("serving")
    @classmethod
    def _serving_names_free(cls, value: ServingConfig | None, info: ValidationInfo) -> Any:
        # A serving policy's name is an alertname like an alert_policies name: never both.
        taken = {p.name for p in info.data.get("alert_policies", [])}
        clash = sorted(p.name for p in (value.policies() if value else []) if p.name in taken)
        if clash:
            raise ValueError(f"serving policies {clash} have the name of an alert_policies entry")
        return value

    @property
    def serving_policies(self) -> list[ServingPolicy]:
        """The serving alert policies (empty without a ``serving`` block)."""
        return self.serving.policies() if self.serving is not None else []

    def model(self, name: str) -> ModelConfig:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModelError(
                f"unknown model {name!r}; warden.yaml declares: {known}"
            ) from None


def parse_config(raw: Any, *, source: str = "warden.yaml") -> WardenConfig:
    """Validate an already-parsed YAML document. Raise :class:`ConfigError` naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'models' key")
    models = raw.get("models")
    if isinstance(models, dict):
        # The mapping key is the model's name; fill it in so errors and code see one name.
        raw = {
            **raw,
            "models": {
                k: ({**v, "name": k} if isinstance(v, dict) and "name" not in v else v)
                for k, v in models.items()
            },
        }
    try:
        config = WardenConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append(f"{source}: {loc(tuple(err['loc']))}: {msg}")
        raise ConfigError("\n".join(problems)) from None
    for key, model in config.models.items():
        if model.name != key:
            raise ConfigError(f"{source}: models.{key}.name: must equal its key {key!r}")
    if not config.models:
        raise ConfigError(f"{source}: models: declare at least one model")
    if config.alerting is not None:
        parse_alerting(config.alerting, source)
    return config


def load_config(path: str | Path) -> WardenConfig:
    """Read and validate ``warden.yaml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))
