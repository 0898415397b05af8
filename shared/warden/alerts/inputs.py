"""Alerts from the two doors: Cloud Monitoring incidents (webhook schema 1.2, leniently) and
``model-events`` messages. Pure: no I/O. May import :mod:`warden.errors` and :mod:`warden.config`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from warden.config.alerting import MAX_LABELS, MAX_VALUE, RESOLVE_TIMEOUT
from warden.errors import EventError

# -- alerts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    status: Literal["firing", "resolved"]
    starts_at: float
    ends_at: float | None
    fingerprint: str
    source: Literal["monitoring", "model-events"]


def _fp(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def sanitize_label(name: str) -> str:
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return out if out and not out[0].isdigit() else "_" + out


#: Severities an incident can carry into routing (Cloud Monitoring's three, lower-cased).
INCIDENT_SEVERITIES = ("critical", "error", "warning")
#: Severity labels a route may match: the incidents' three and model events' "info".
SEVERITY_LABELS = (*INCIDENT_SEVERITIES, "info")
DEFAULT_INCIDENT_SEVERITY = "warning"

#: ``incident.condition`` keys (Cloud Monitoring API v3 ``AlertPolicy.Condition``) → the
#: ``condition_type`` label.
CONDITION_TYPES = {
    "conditionThreshold": "threshold",
    "conditionAbsent": "absence",
    "conditionMatchedLog": "log_match",
    "conditionMonitoringQueryLanguage": "mql",
    "conditionPrometheusQueryLanguage": "promql",
    "conditionSql": "sql",
}


def _scalar(value: Any) -> str:
    """A field Google documents as a string, read leniently: numbers and booleans as text,
    anything else (null, objects, arrays) as absent."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    return ""


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _label_map(value: Any) -> dict[str, str]:
    """A documented ``{string: string}`` map; non-scalar values are dropped, not refused."""
    out = {}
    for key, raw in _obj(value).items():
        text = _scalar(raw)
        if isinstance(key, str) and key and text:
            out[key] = text
    return out


def _epoch_or_none(value: Any) -> float | None:
    """Seconds since the epoch, from an integer (documented), a float, a numeric string or an
    RFC 3339 string; 0, negatives, null and anything unreadable are "not known"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return ts.timestamp() if ts.tzinfo else None
    if isinstance(value, int | float) and value > 0 and value == value and value < 1e11:
        return float(value)
    return None


def incident_condition_type(incident: Mapping[str, Any]) -> str:
    """threshold, absence, log_match, uptime, mql, promql, sql — or "unknown"."""
    resource_type = _scalar(_obj(incident.get("resource")).get("type"))
    metric_type = _scalar(_obj(incident.get("metric")).get("type"))
    if resource_type == "uptime_url" or metric_type.startswith(
        "monitoring.googleapis.com/uptime_check/"
    ):
        return "uptime"
    condition = _obj(incident.get("condition"))
    for key, kind in CONDITION_TYPES.items():
        if key in condition:
            return kind
    return "unknown"


def is_test_notification(payload: Any) -> bool:
    """The console's "send test notification" payload: ``version`` is ``"test"``."""
    return isinstance(payload, Mapping) and _scalar(payload.get("version")).lower() == "test"


def alert_from_incident(
    payload: Any,
    *,
    received_at: float,
    default_severity: str = DEFAULT_INCIDENT_SEVERITY,
) -> Alert:
    """A Cloud Monitoring notification (webhook body or Pub/Sub message data) as an alert.

    Lenient where Google is loose: every field but ``incident.incident_id`` may be missing,
    null, empty, of another type or case, or unknown (extra fields are ignored). Refused —
    :class:`EventError` naming the problem — only what can never be an alert: a body that is
    not an object, no ``incident`` object, no ``incident_id``.

    * ``state``: "open" → firing, "closed" → resolved, case-insensitive; missing or unknown →
      resolved if ``ended_at`` is set, else firing.
    * ``severity``: Critical/Error/Warning in any case; otherwise ("no severity", missing,
      unknown) a ``severity`` policy user label if it names one, else ``default_severity``.
    * times: missing, 0 or unreadable ``started_at`` → ``received_at``.
    * labels: alertname (policy), condition, condition_type, severity, incident_id, metric and
      resource type where present; then policy user labels, metric labels, resource labels and
      metadata user/system labels, first come first kept (see :func:`_merge_labels`).
    """
    if not isinstance(payload, Mapping):
        raise EventError(
            f"body must be a JSON object with an 'incident' object, got {type(payload).__name__}"
        )
    inc = payload.get("incident")
    if inc is None:
        raise EventError("no 'incident' object in the notification")
    if not isinstance(inc, Mapping):
        raise EventError(f"incident must be an object, got {type(inc).__name__}")
    raw_id = inc.get("incident_id")
    incident_id = "" if isinstance(raw_id, bool) else _scalar(raw_id).strip()
    if not incident_id:
        raise EventError("incident.incident_id is missing or empty")
    incident_id = incident_id[:MAX_VALUE]

    state = _scalar(inc.get("state")).strip().lower()
    started = _epoch_or_none(inc.get("started_at"))
    ended = _epoch_or_none(inc.get("ended_at"))
    resolved = state == "closed" or (state != "open" and ended is not None)
    starts_at = started if started is not None else received_at
    ends_at = max(ended if ended is not None else received_at, starts_at) if resolved else None

    policy_labels = _label_map(inc.get("policy_user_labels"))
    severity = _scalar(inc.get("severity")).strip().lower()
    if severity not in INCIDENT_SEVERITIES:
        from_label = policy_labels.get("severity", "").strip().lower()
        severity = from_label if from_label in SEVERITY_LABELS else default_severity

    condition = _obj(inc.get("condition"))
    condition_name = _scalar(inc.get("condition_name")) or _scalar(condition.get("displayName"))
    policy_name = _scalar(inc.get("policy_name"))
    resource = _obj(inc.get("resource"))
    metric = _obj(inc.get("metric"))
    metadata = _obj(inc.get("metadata"))
    core = {
        "alertname": policy_name or condition_name or "monitoring-incident",
        "condition": condition_name,
        "condition_type": incident_condition_type(inc),
        "severity": severity,
        "incident_id": incident_id,
        "metric_type": _scalar(metric.get("type")),
        "resource_type": _scalar(resource.get("type")),
    }
    labels = _merge_labels(
        {k: v for k, v in core.items() if v},
        policy_labels,
        _label_map(metric.get("labels")),
        _label_map(resource.get("labels")),
        _label_map(metadata.get("user_labels")),
        _label_map(metadata.get("system_labels")),
    )

    doc = inc.get("documentation")
    doc_obj = _obj(doc)
    content = _scalar(doc) if not doc_obj else _scalar(doc_obj.get("content"))
    summary = _scalar(inc.get("summary")) or (
        f"{labels['alertname']}: {'resolved' if resolved else 'firing'}"
    )
    annotations = {
        "summary": summary,
        "url": _scalar(inc.get("url")),
        "documentation": content,
        "subject": _scalar(doc_obj.get("subject")),
        "observed_value": _scalar(inc.get("observed_value")),
        "threshold_value": _scalar(inc.get("threshold_value")),
        "resource_name": _scalar(inc.get("resource_display_name"))
        or _scalar(inc.get("resource_name")),
    }
    return Alert(
        labels=labels,
        annotations={k: v[: MAX_VALUE * 8] for k, v in annotations.items() if v},
        status="resolved" if resolved else "firing",
        starts_at=float(starts_at),
        ends_at=None if ends_at is None else float(ends_at),
        fingerprint=_fp("monitoring", incident_id),
        source="monitoring",
    )


def _merge_labels(core: dict[str, str], *extras: Mapping[str, str]) -> dict[str, str]:
    """Core labels win; extras are added first-come (policy, metric, resource), sanitized,
    truncated to 1024 characters, up to 64 labels in all (the rest dropped in sorted order)."""
    out = {k: v[:MAX_VALUE] for k, v in core.items()}
    for extra in extras:
        for key in sorted(extra):
            name = sanitize_label(key)
            if name not in out and len(out) < MAX_LABELS:
                out[name] = extra[key][:MAX_VALUE]
    return out


MODEL_EVENT_KINDS = (
    "version_registered",
    "promoted",
    "rejected",
    "failed",
    "rolled_back",
    "drift_detected",
    "performance_degraded",
    "integrity_failed",
)
MODEL_SEVERITY = {
    "drift_detected": "warning",
    "performance_degraded": "warning",
    "failed": "error",
    "integrity_failed": "critical",
}


def _parse_at(value: Any) -> float:
    if isinstance(value, bool):
        raise EventError("at must be an ISO-8601 timestamp, got bool")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise EventError(f"at must be an ISO-8601 timestamp, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"at must be an ISO-8601 timestamp, got {value!r}") from None
    if ts.tzinfo is None:
        raise EventError(f"at must carry a time zone, got {value!r}")
    return ts.timestamp()


#: How much of a ``failed`` event's error text its alert carries (summary and ``error``).
ERROR_SUMMARY_MAX = 500
_JOB = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _bounded(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: Slack titles, log lines
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert_from_model_event(payload: Any, attributes: Mapping[str, Any] | None = None) -> Alert:
    """A ``model-events`` message as a firing alert that resolves by timing out after 1 h.

    Labels: alertname (``Model`` + the kind in CamelCase), model, kind, severity, and version
    and job when the event names them. A ``failed`` event's summary is
    ``MODEL: JOB failed: ERROR`` with the error's first :data:`ERROR_SUMMARY_MAX` characters
    (also in the ``error`` annotation); other events summarize their ``reason`` or ``detail``.
    """
    attributes = attributes or {}
    if not isinstance(payload, dict):
        raise EventError(f"payload must be a JSON object, got {type(payload).__name__}")
    if payload.get("schema") != 1:
        raise EventError(f"schema must be 1, got {payload.get('schema')!r}")
    kind = payload.get("kind", attributes.get("kind"))
    if kind not in MODEL_EVENT_KINDS:
        raise EventError(f"kind must be one of {list(MODEL_EVENT_KINDS)}, got {kind!r}")
    model = payload.get("model", attributes.get("model"))
    if not isinstance(model, str) or not model:
        raise EventError(f"model must be a non-empty string, got {model!r}")
    for key, want in (("kind", kind), ("model", model)):
        if key in attributes and attributes[key] != want:
            raise EventError(
                f"attributes.{key} {attributes[key]!r} disagrees with payload {want!r}"
            )
    version = payload.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int | str)):
        raise EventError(f"version must be an integer or string, got {type(version).__name__}")
    job = payload.get("job")
    job = job if isinstance(job, str) and _JOB.match(job) else ""
    starts_at = _parse_at(payload.get("at"))
    vtext = "" if version is None else str(version)
    labels = {
        "alertname": "Model" + "".join(w.capitalize() for w in kind.split("_")),
        "model": model,
        "kind": kind,
        "severity": MODEL_SEVERITY.get(kind, "info"),
    }
    if vtext:
        labels["version"] = vtext[:MAX_VALUE]
    annotations: dict[str, str] = {}
    if job:
        labels["job"] = job  # what inhibits the run-failed metric policy's page (warden.yaml)
    if kind == "failed":
        error = _bounded(_scalar(payload.get("error")) or "no error text given", ERROR_SUMMARY_MAX)
        summary = f"{model}: {job or 'run'} failed: {error}"
        annotations["error"] = error
        run_id = _scalar(payload.get("run_id"))
        if run_id:
            annotations["run_id"] = run_id[:MAX_VALUE]
    else:
        summary = str(payload.get("reason") or payload.get("detail") or f"{model}: {kind}")
    return Alert(
        labels=labels,
        annotations={"summary": summary[:MAX_VALUE], **annotations},
        status="firing",
        starts_at=starts_at,
        ends_at=starts_at + RESOLVE_TIMEOUT,
        # A job's failure is its own alert: a monitor failing beside a retrain is not a repeat.
        fingerprint=_fp("model-events", kind, model, vtext, *([job] if job else [])),
        source="model-events",
    )
