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
from pydantic import Field, ValidationError, field_validator, model_validator

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
    cls: str = Field(alias="class", description="An allow-listed scikit-learn class name.")
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None

    @field_validator("cls")
    @classmethod
    def _allowed(cls, value: str) -> str:
        if value not in ALLOWED:
            raise ValueError(
                f"{value!r} is not an allowed estimator; allowed: {', '.join(sorted(ALLOWED))}"
            )
        return value


class EstimatorSpec(Strict):
    steps: list[Step] = Field(default_factory=list)
    factory: str | None = Field(
        default=None, description="'module:function' of a module under warden.factories"
    )
    factory_params: dict[str, Any] = Field(default_factory=dict)

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
    bucket: str | None = Field(default=None, description="default: the data bucket setting")
    prefix: str = Field(min_length=1, description="folder holding dt=YYYY-MM-DD/ partitions")
    format: Literal["csv", "parquet"] = "parquet"
    window_days: int = Field(default=30, ge=1, le=3660)
    min_rows: int = Field(default=50, ge=10)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or value.startswith("gs:") or ".." in value.split("/"):
            raise ValueError("must be a folder inside the bucket, like 'customers/daily'")
        return value


class Schedule(Strict):
    cron: str
    timezone: str = "Etc/UTC"

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
    retrain: Schedule | None = None
    monitor: Schedule | None = None
    housekeeping: Schedule | None = None


class GateSpec(Strict):
    metric: Metric | None = None
    min: float | None = Field(default=None, description="absolute floor for the metric")
    max_relative_drop: float = Field(
        default=0.05, ge=0.0, le=1.0, description="largest allowed drop vs the champion, relative"
    )


class EvaluationSpec(Strict):
    holdout_fraction: float = Field(default=0.25, gt=0.0, le=0.5)
    seed: int = 0
    silhouette_exact_max_rows: int = Field(default=10_000, ge=100, le=200_000)
    silhouette_sample_size: int = Field(default=10_000, ge=100, le=200_000)
    silhouette_confidence: float = Field(default=0.99, gt=0.5, lt=1.0)


DRIFT_STATS = {"psi", "js", "wasserstein", "ks", "linf", "cramers_v", "missing_rate"}


class DriftSpec(Strict):
    """How ``monitor_model`` judges recent data against the champion's reference profile."""

    window_days: int = Field(default=7, ge=1, le=366, description="recent data to compare")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="effect-size thresholds: psi, js, wasserstein, linf..."
    )
    per_feature: dict[str, dict[str, float]] = Field(default_factory=dict)
    dataset_share: float = Field(default=0.5, gt=0.0, le=1.0)
    # docs/drift.md: a categorical feature drifts when at least this share of its current values
    # are categories the reference never had; null turns the check off (the share is still
    # reported). per_feature can set it for one feature.
    new_category_share: float | None = Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="share of values never seen in the reference that makes a category drift",
    )
    # Calibrated in docs/drift.md: below ~1k rows, heavy-tailed columns alarm too often.
    min_rows: int = Field(default=1000, ge=10)
    alert_on: Literal["dataset", "any"] = Field(
        default="dataset", description="publish drift_detected on dataset drift or any feature"
    )
    performance_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    retrain_on_drift: bool = False
    retrain_on_degradation: bool = False
    retrain_cooldown_hours: float = Field(default=24.0, ge=0.0, le=24 * 90)
    max_eval_rows: int = Field(default=200_000, ge=1_000, description="rows kept for scoring")

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


class RetentionSpec(Strict):
    """Which versions housekeeping keeps: the newest ``keep_last``, every version an alias
    pointed to within ``alias_window_days``, and always the current champion."""

    keep_last: int = Field(default=10, ge=1, le=10_000)
    alias_window_days: int = Field(default=30, ge=0, le=3650)


class HousekeepingSpec(Strict):
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    marker_ttl_days: int = Field(
        default=30, ge=1, le=3650, description="finished run-ledger markers older than this go"
    )
    backup: bool = Field(default=True, description="snapshot the model on each housekeeping run")
    backup_retention_days: int = Field(default=7, ge=1, le=3650)
    orphan_grace_hours: int = Field(
        default=24, ge=1, le=720, description="age after which an unmanifested version is swept"
    )


class ModelConfig(Strict):
    name: str
    task: Task
    description: str = ""
    estimator: EstimatorSpec
    data: DataSpec
    features: list[str] = Field(min_length=1)
    categorical_features: list[str] = Field(
        default_factory=list, description="features that are labels, one-hot encoded"
    )
    target: str | None = None
    positive_label: int | str = 1
    schedules: Schedules = Field(default_factory=Schedules)
    gate: GateSpec = Field(default_factory=GateSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    housekeeping: HousekeepingSpec = Field(default_factory=HousekeepingSpec)
    labels: dict[str, str] = Field(default_factory=dict)

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

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    metric: str = Field(pattern=r"^[a-z_]+(/[a-z_]+)+$", description="e.g. drift/share")
    comparison: Literal[">", ">=", "<", "<="] = ">="
    threshold: float
    duration_s: int = Field(default=0, ge=0, le=86_400)
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    filter: dict[str, str] = Field(default_factory=dict, description="metric label equality")
    runbook: str = ""

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.comparison]


class WardenConfig(Strict):
    version: Literal[1] = 1
    models: dict[str, ModelConfig]
    alert_policies: list[AlertPolicy] = Field(default_factory=list)
    alerting: dict[str, Any] | None = Field(
        default=None, description="route tree, receivers, inhibit rules (warden.alerts)"
    )

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
