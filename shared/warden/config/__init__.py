"""Configuration: ``warden.yaml`` parsed and validated into frozen pydantic models.

* :mod:`~warden.config.base` — the strict base model and error locations.
* :mod:`~warden.config.models` — models, data, schedules, gate, drift, housekeeping, policies.
* :mod:`~warden.config.alerting` — the ``alerting`` section (receivers, routes, inhibit rules).
* :mod:`~warden.config.estimators` — the scikit-learn allow-list and pipeline building.
* :mod:`~warden.config.schedules` — the Scheduler jobs and topics a config implies.
* :mod:`~warden.config.reference` — the JSON Schema and ``docs/config.md``, from the models.

Pure core: no I/O beyond reading the YAML file, no Google imports, scikit-learn only inside
:func:`build_estimator`. May import :mod:`warden.errors` only.
"""

from __future__ import annotations

from warden.config.alerting import (
    DEFAULT_TIMINGS,
    LABEL_NAME,
    MAX_LABELS,
    MAX_VALUE,
    RESOLVE_TIMEOUT,
    AlertingConfig,
    Duration,
    IncidentSettings,
    InhibitRule,
    LogReceiver,
    Matcher,
    MatcherStr,
    PubSubReceiver,
    Receiver,
    ResolvedRoute,
    Route,
    Rule,
    SlackReceiver,
    WebhookReceiver,
    compile_rules,
    matches_all,
    parse_alerting,
    parse_duration,
    parse_matcher,
)
from warden.config.base import (
    Strict,
    loc,
)
from warden.config.models import (
    DEFAULT_FLOOR,
    DEFAULT_METRIC,
    DRIFT_STATS,
    MODEL_NAME,
    TASK_METRICS,
    AlertPolicy,
    DataSpec,
    DriftSpec,
    EstimatorSpec,
    EvaluationSpec,
    GateSpec,
    HousekeepingSpec,
    Metric,
    ModelConfig,
    RetentionSpec,
    Schedule,
    Schedules,
    Step,
    Task,
    WardenConfig,
    load_config,
    parse_config,
)

__all__ = [
    "DEFAULT_FLOOR",
    "DEFAULT_METRIC",
    "DEFAULT_TIMINGS",
    "DRIFT_STATS",
    "LABEL_NAME",
    "MAX_LABELS",
    "MAX_VALUE",
    "MODEL_NAME",
    "RESOLVE_TIMEOUT",
    "TASK_METRICS",
    "AlertPolicy",
    "AlertingConfig",
    "DataSpec",
    "DriftSpec",
    "Duration",
    "EstimatorSpec",
    "EvaluationSpec",
    "GateSpec",
    "HousekeepingSpec",
    "IncidentSettings",
    "InhibitRule",
    "LogReceiver",
    "Matcher",
    "MatcherStr",
    "Metric",
    "ModelConfig",
    "PubSubReceiver",
    "Receiver",
    "ResolvedRoute",
    "RetentionSpec",
    "Route",
    "Rule",
    "Schedule",
    "Schedules",
    "SlackReceiver",
    "Step",
    "Strict",
    "Task",
    "WardenConfig",
    "WebhookReceiver",
    "compile_rules",
    "load_config",
    "loc",
    "matches_all",
    "parse_alerting",
    "parse_config",
    "parse_duration",
    "parse_matcher",
]
