"""Alert routing, Alertmanager-style: the pure core (no I/O, no Google imports).

* Config: receivers, a route tree (matchers, group_by, timings, ``continue``), inhibit rules.
* :class:`Alert` from a Cloud Monitoring webhook (schema 1.2) or a ``model-events`` message.
* Routing, grouping, silences, inhibition, and the timing decision :func:`due` over one group's
  state dict (the dict :mod:`warden.alert_state` keeps in GCS).

Fingerprints (stable identity of an alert across its open and close):

* Cloud Monitoring: ``sha256("monitoring\\0" + incident_id)[:16]`` — an incident's open and
  close notifications share it.
* model-events: ``sha256("model-events\\0kind\\0model\\0version")[:16]``. Model events never
  resolve explicitly; they resolve by timing out (``ends_at = starts_at + 1h``).

Group key: ``route_id + ":" + json(sorted group label pairs)``; objects are named by
``sha256(group_key)[:32]`` so keys of any length map to short, safe object names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from warden.config import _loc, _Strict
from warden.errors import ConfigError, EventError

RESOLVE_TIMEOUT = 3600.0  # model events resolve by timing out after this many seconds
MAX_LABELS = 64
MAX_VALUE = 1024
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DEFAULT_TIMINGS = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 14400.0}

# -- matchers -----------------------------------------------------------------------------------

_MATCHER = re.compile(
    r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s]*))\s*$'
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Like Alertmanager, a missing label matches as the empty string.
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(got) is not None  # anchored: ^(?:value)$
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def parse_matcher(text: str) -> Matcher:
    """``label OP "value"`` (OP: = != =~ !~). Raise ValueError on bad syntax or regex."""
    if not isinstance(text, str):
        raise ValueError(f"a matcher must be a string, got {type(text).__name__}")
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a matcher like 'label=\"value\"' (ops: = != =~ !~)")
    name, op = m.group(1), m.group(2)
    value = m.group(4) if m.group(3) is None else re.sub(r"\\(.)", r"\1", m.group(3))
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{value})")
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return Matcher(name, op, value, regex)


def _check_matcher(text: str) -> str:
    parse_matcher(text)
    return text


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


# -- durations ----------------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> float | None:
    """ "30s", "5m", "4h", "1h30m" → seconds. None stays None (inherit from the parent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a duration must be a string like '5m', got {type(value).__name__}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        parts = _DURATION.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration like '30s', '5m', '4h' or '1h30m'")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


MatcherStr = Annotated[str, AfterValidator(_check_matcher)]
Duration = Annotated[float | None, BeforeValidator(parse_duration)]

# -- configuration ------------------------------------------------------------------------------


class SlackReceiver(_Strict):
    url_env: str = Field(min_length=1, description="env var holding the incoming-webhook URL")
    channel: str | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)


class WebhookReceiver(_Strict):
    url_env: str = Field(min_length=1)
    secret_env: str = Field(min_length=1, description="env var holding the HMAC secret")
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class PubSubReceiver(_Strict):
    topic: str = Field(min_length=1, description="topic id in the settings project")
    action: Literal["retrain", "forward"]
    max_attempts: int = Field(default=3, ge=1, le=10)


class LogReceiver(_Strict):
    pass


class Receiver(_Strict):
    name: str = Field(min_length=1)
    slack: SlackReceiver | None = None
    webhook: WebhookReceiver | None = None
    pubsub: PubSubReceiver | None = None
    log: LogReceiver | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Receiver:
        given = [k for k in ("slack", "webhook", "pubsub", "log") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of slack, webhook, pubsub, log (got {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("slack", "webhook", "pubsub", "log") if getattr(self, k))

    @property
    def max_attempts(self) -> int:
        return int(getattr(getattr(self, self.kind), "max_attempts", 1))


class Route(_Strict):
    receiver: str | None = None
    matchers: list[MatcherStr] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration = None
    group_interval: Duration = None
    repeat_interval: Duration = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _group_by(self) -> Route:
        if self.group_by is not None and "..." in self.group_by and len(self.group_by) > 1:
            raise ValueError("group_by: '...' (all labels) cannot be combined with label names")
        return self


class InhibitRule(_Strict):
    source_matchers: list[MatcherStr] = Field(min_length=1)
    target_matchers: list[MatcherStr] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with its inherited settings filled in and its matchers compiled."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...] | None  # None: group by all labels ("...")
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    children: tuple[ResolvedRoute, ...]


class IncidentSettings(_Strict):
    """How Cloud Monitoring incidents enter routing."""

    default_severity: Literal["critical", "error", "warning", "info"] = Field(
        default="warning",
        description="severity label of an incident whose policy has none ('no severity', "
        "uptime checks) and no 'severity' user label",
    )
    route_test_notifications: bool = Field(
        default=False,
        description='route the console\'s test notification (labelled test="true") instead of '
        "only acknowledging and logging it",
    )


class AlertingConfig(_Strict):
    receivers: list[Receiver] = Field(min_length=1)
    route: Route
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)

    def receiver(self, name: str) -> Receiver:
        for r in self.receivers:
            if r.name == name:
                return r
        raise ConfigError(f"alerting: no receiver named {name!r}")

    @cached_property
    def tree(self) -> ResolvedRoute:
        return _resolve(self.route, "0", None)

    @cached_property
    def rules(self) -> list[Rule]:
        return _rules(self.inhibit_rules)


def _resolve(route: Route, rid: str, parent: ResolvedRoute | None) -> ResolvedRoute:
    def pick(name: str) -> float:
        own = getattr(route, name)
        if own is not None:
            return float(own)
        return getattr(parent, name) if parent else DEFAULT_TIMINGS[name]

    if route.group_by is not None:
        group_by = None if route.group_by == ["..."] else tuple(route.group_by)
    else:
        group_by = parent.group_by if parent else ()
    node = ResolvedRoute(
        id=rid,
        receiver=route.receiver or (parent.receiver if parent else ""),
        matchers=tuple(parse_matcher(m) for m in route.matchers),
        group_by=group_by,
        group_wait=pick("group_wait"),
        group_interval=pick("group_interval"),
        repeat_interval=pick("repeat_interval"),
        continue_=route.continue_,
        children=(),
    )
    kids = tuple(_resolve(c, f"{rid}.{i}", node) for i, c in enumerate(route.routes))
    return ResolvedRoute(**{**node.__dict__, "children": kids})


def parse_alerting(raw: Any, source: str) -> AlertingConfig:
    """Validate the ``alerting`` section. Raise :class:`ConfigError` naming the dotted key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: alerting: must be a mapping with receivers and route")
    try:
        config = AlertingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            loc = _loc(tuple(err["loc"]))
            problems.append(f"{source}: alerting.{loc}: {msg}")
        raise ConfigError("\n".join(problems)) from None
    names = [r.name for r in config.receivers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{source}: alerting.receivers[{i}].name: duplicate name {name!r}")
    if not config.route.receiver:
        raise ConfigError(f"{source}: alerting.route.receiver: the root route needs a receiver")
    if config.route.matchers:
        raise ConfigError(f"{source}: alerting.route.matchers: the root route matches everything")

    def walk(route: Route, path: str) -> None:
        if route.receiver is not None and route.receiver not in names:
            raise ConfigError(
                f"{source}: alerting.{path}.receiver: unknown receiver {route.receiver!r}; "
                f"declared: {', '.join(names)}"
            )
        for i, child in enumerate(route.routes):
            walk(child, f"{path}.routes[{i}]")

    walk(config.route, "route")
    return config


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


def alert_from_model_event(payload: Any, attributes: Mapping[str, Any] | None = None) -> Alert:
    """A ``model-events`` message as a firing alert that resolves by timing out after 1 h."""
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
    summary = str(payload.get("reason") or payload.get("detail") or f"{model}: {kind}")
    return Alert(
        labels=labels,
        annotations={"summary": summary[:MAX_VALUE]},
        status="firing",
        starts_at=starts_at,
        ends_at=starts_at + RESOLVE_TIMEOUT,
        fingerprint=_fp("model-events", kind, model, vtext),
        source="model-events",
    )


# -- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    route_id: str
    receiver: str
    group_by: tuple[str, ...] | None
    group_wait: float
    group_interval: float
    repeat_interval: float

    def group_labels(self, alert: Alert) -> dict[str, str]:
        if self.group_by is None:
            return dict(sorted(alert.labels.items()))
        return {k: alert.labels[k] for k in sorted(self.group_by) if k in alert.labels}

    def group_key(self, alert: Alert) -> str:
        return f"{self.route_id}:{json.dumps(sorted(self.group_labels(alert).items()))}"


def _match(route: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    # Alertmanager's Route.Match, line for line.
    if not matches_all(route.matchers, labels):
        return []
    found: list[ResolvedRoute] = []
    for child in route.children:
        got = _match(child, labels)
        found += got
        if got and not child.continue_:
            break
    return found or [route]


def route_alert(alert: Alert, route: ResolvedRoute | AlertingConfig) -> list[RouteMatch]:
    """The routes an alert goes to (depth-first; ``continue`` keeps looking at siblings)."""
    tree = route.tree if isinstance(route, AlertingConfig) else route
    return [
        RouteMatch(r.id, r.receiver, r.group_by, r.group_wait, r.group_interval, r.repeat_interval)
        for r in _match(tree, alert.labels)
    ]


def group_id(group_key: str) -> str:
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


# -- silences and inhibition ----------------------------------------------------------------------


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[str, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def __post_init__(self) -> None:
        for m in self.matchers:
            parse_matcher(m)
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, alert: Alert | Mapping[str, str], now: float) -> bool:
        labels = alert.labels if isinstance(alert, Alert) else alert
        return self.active(now) and matches_all((parse_matcher(m) for m in self.matchers), labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": list(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(data["id"]),
            matchers=tuple(data["matchers"]),
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            created_by=str(data.get("created_by", "")),
            comment=str(data.get("comment", "")),
        )


Rule = tuple[list[Matcher], list[Matcher], list[str]]


def _rules(rules: Iterable[InhibitRule] | Iterable[Rule]) -> list[Rule]:
    out: list[Rule] = []
    for r in rules:
        if isinstance(r, InhibitRule):
            out.append(
                (
                    [parse_matcher(m) for m in r.source_matchers],
                    [parse_matcher(m) for m in r.target_matchers],
                    list(r.equal),
                )
            )
        else:
            out.append(r)
    return out


def inhibited(
    alert: Alert, firing_alerts: Iterable[Alert], rules: Iterable[InhibitRule] | Iterable[Rule]
) -> bool:
    """Alertmanager semantics. Like Alertmanager, when the target also matches the source side,
    sources that also match the target side are ignored (so two such alerts don't mute each
    other); an alert never inhibits itself."""
    firing = [a for a in firing_alerts if a.status == "firing"]
    for source_m, target_m, equal in _rules(rules):
        if not matches_all(target_m, alert.labels):
            continue
        two_sided = matches_all(source_m, alert.labels)
        for src in firing:
            if src.fingerprint == alert.fingerprint or not matches_all(source_m, src.labels):
                continue
            if two_sided and matches_all(target_m, src.labels):
                continue
            if all(src.labels.get(k, "") == alert.labels.get(k, "") for k in equal):
                return True
    return False


# -- notification timing over one group's state -------------------------------------------------


def alert_from_state(fingerprint: str, rec: Mapping[str, Any]) -> Alert:
    return Alert(
        labels=dict(rec["labels"]),
        annotations=dict(rec.get("annotations", {})),
        status=rec["status"],
        starts_at=float(rec["starts_at"]),
        ends_at=None if rec.get("ends_at") is None else float(rec["ends_at"]),
        fingerprint=fingerprint,
        source=rec.get("source", "monitoring"),
    )


def expire(group_state: dict[str, Any], now: float) -> dict[str, Any]:
    """Firing alerts whose ends_at has passed (model events' timeout) become resolved."""
    for rec in group_state.get("alerts", {}).values():
        if rec["status"] == "firing" and rec.get("ends_at") is not None and rec["ends_at"] <= now:
            rec["status"] = "resolved"
    return group_state


def to_send(group_state: Mapping[str, Any]) -> dict[str, str]:
    """fingerprint → status of what a notification would carry now: firing alerts that are not
    muted, and resolved alerts that were last sent as firing (sent once, then dropped)."""
    notified = group_state.get("notified", {})
    out = {}
    for fp, rec in group_state.get("alerts", {}).items():
        muted = rec.get("silenced") or rec.get("inhibited")
        if rec["status"] == "firing" and not muted:
            out[fp] = "firing"
        elif notified.get(fp) == "firing" and (rec["status"] == "resolved" or muted):
            # Muted after being sent: tell the receiver it is over, like a resolve.
            out[fp] = "resolved"
    return out


def next_due(group_state: Mapping[str, Any], now: float) -> float | None:
    """When this group should next notify, or None if there is nothing to say."""
    view = to_send(group_state)
    notified = group_state.get("notified", {})
    last = group_state.get("last_notified_at")
    firing = any(s == "firing" for s in view.values())
    if last is None:
        if not firing:
            return None
        return float(group_state["first_seen"]) + float(group_state["group_wait"])
    changed = {fp: s for fp, s in view.items() if notified.get(fp) != s}
    gone = [fp for fp in notified if fp not in view]  # e.g. dropped while muted
    if changed or (gone and firing):
        return float(last) + float(group_state["group_interval"])
    if firing:
        return float(last) + float(group_state["repeat_interval"])
    return None


def due(group_state: Mapping[str, Any], now: float) -> bool:
    """group_wait before the first notification, group_interval between notifications that
    carry changes, repeat_interval before re-sending an unchanged firing group."""
    when = next_due(group_state, now)
    return when is not None and now >= when


def digest(view: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(view.items())).encode()).hexdigest()[:16]


def render_message(group_state: Mapping[str, Any]) -> dict[str, Any]:
    """The receiver-neutral message for the group as it stands (see :func:`to_send`)."""
    view = to_send(group_state)
    alerts = []
    for fp in sorted(view, key=lambda f: (view[f] != "firing", f)):
        rec = group_state["alerts"][fp]
        alerts.append(
            {
                "fingerprint": fp,
                "status": view[fp],
                "labels": rec["labels"],
                "annotations": rec.get("annotations", {}),
                "starts_at": rec["starts_at"],
                "ends_at": rec.get("ends_at"),
            }
        )
    firing = sum(1 for a in alerts if a["status"] == "firing")
    resolved = len(alerts) - firing
    glabels = group_state.get("group_labels", {})
    names = sorted({a["labels"].get("alertname", "") for a in alerts} - {""})
    status = "firing" if firing else "resolved"
    head = f"[{status.upper()}:{firing if firing else resolved}]"
    title = f"{head} {', '.join(names) or 'alerts'}"
    if glabels:
        title += " (" + " ".join(f"{k}={v}" for k, v in glabels.items()) + ")"
    lines = []
    links = []
    for a in alerts:
        ann = a["annotations"]
        label_text = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()))
        lines.append(f"- [{a['status']}] {ann.get('summary') or label_text} ({label_text})")
        if ann.get("url"):
            links.append(ann["url"])
    return {
        "title": title,
        "text": "\n".join(lines),
        "status": status,
        "firing": firing,
        "resolved": resolved,
        "receiver": group_state.get("receiver"),
        "group_key": group_state.get("key"),
        "group_labels": glabels,
        "alerts": alerts,
        "links": links,
    }


@dataclass(frozen=True)
class DeliveryResult:
    receiver: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
