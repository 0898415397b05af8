"""The ``alerting`` section of warden.yaml: receivers, the route tree, inhibit rules, timings.

Pure: pydantic models and their validation (matchers, durations), no I/O. May import
:mod:`warden.errors` and :mod:`warden.config.base` only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from warden.config.base import Strict, loc
from warden.errors import ConfigError

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
#: In JSON Schema (docs/warden.schema.json) a duration is a string like "5m" or seconds.
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w))+\s*$"},
        {"type": "number", "minimum": 0},
        {"type": "null"},
    ]
}
Duration = Annotated[float | None, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]

# -- configuration ------------------------------------------------------------------------------


class SlackReceiver(Strict):
    """A Slack-compatible incoming webhook."""

    url_env: str = Field(min_length=1, description="env var holding the incoming-webhook URL")
    channel: str | None = Field(
        default=None, description="channel to post to; null: the webhook's own channel"
    )
    max_attempts: int = Field(default=3, ge=1, le=10, description="delivery attempts, in all")


class WebhookReceiver(Strict):
    """A JSON webhook, signed with HMAC-SHA256 (docs/alerting.md)."""

    url_env: str = Field(min_length=1, description="env var holding the webhook's URL")
    secret_env: str = Field(min_length=1, description="env var holding the HMAC secret")
    max_attempts: int = Field(default=3, ge=1, le=10, description="delivery attempts, in all")
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="seconds to wait for each attempt's answer"
    )


class PubSubReceiver(Strict):
    """A Pub/Sub topic."""

    topic: str = Field(min_length=1, description="topic id in the settings project")
    action: Literal["retrain", "forward"] = Field(
        description="'retrain': a retrain request for each firing alert's model; 'forward': "
        "the notification as it is"
    )
    max_attempts: int = Field(default=3, ge=1, le=10, description="delivery attempts, in all")


class LogReceiver(Strict):
    """The function's log: no settings (``log: {}``)."""


class Receiver(Strict):
    """A named destination of notifications: exactly one of slack, webhook, pubsub, log."""

    name: str = Field(min_length=1, description="the name routes refer to; unique")
    slack: SlackReceiver | None = Field(default=None, description="post to Slack")
    webhook: WebhookReceiver | None = Field(default=None, description="POST signed JSON")
    pubsub: PubSubReceiver | None = Field(default=None, description="publish to Pub/Sub")
    log: LogReceiver | None = Field(default=None, description="write to the log")

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


class Route(Strict):
    """A node of the route tree (like Alertmanager's); unset settings inherit the parent's."""

    receiver: str | None = Field(
        default=None, description="receiver name; null: the parent's (the root needs one)"
    )
    matchers: list[MatcherStr] = Field(
        default_factory=list,
        description='label matchers, all must match: label OP "value" with OP = != =~ !~ '
        "(the root has none)",
    )
    group_by: list[str] | None = Field(
        default=None,
        description="labels alerts are grouped by; ['...']: every label; null: the parent's",
    )
    group_wait: Duration = Field(
        default=None,
        description="wait before a new group's first notification, e.g. 30s; null: the "
        "parent's (root: 30s)",
    )
    group_interval: Duration = Field(
        default=None,
        description="wait before notifying a group's changes, e.g. 5m; null: the parent's "
        "(root: 5m)",
    )
    repeat_interval: Duration = Field(
        default=None,
        description="wait before repeating an unchanged notification, e.g. 4h; null: the "
        "parent's (root: 4h)",
    )
    continue_: bool = Field(
        default=False,
        alias="continue",
        description="after a match, also try the next sibling routes",
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="child routes, tried in order; the first match wins unless it continues",
    )

    @model_validator(mode="after")
    def _group_by(self) -> Route:
        if self.group_by is not None and "..." in self.group_by and len(self.group_by) > 1:
            raise ValueError("group_by: '...' (all labels) cannot be combined with label names")
        return self


class InhibitRule(Strict):
    """While an alert matching the source is firing, alerts matching the target are muted."""

    source_matchers: list[MatcherStr] = Field(
        min_length=1, description="matchers of the inhibiting (firing) alert"
    )
    target_matchers: list[MatcherStr] = Field(
        min_length=1, description="matchers of the alerts it mutes"
    )
    equal: list[str] = Field(
        default_factory=list, description="labels that must have equal values in both"
    )


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


class IncidentSettings(Strict):
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


class AlertingConfig(Strict):
    """The ``alerting`` section: where alerts go (docs/alerting.md)."""

    receivers: list[Receiver] = Field(min_length=1, description="where notifications go")
    route: Route = Field(description="the root of the route tree: matches every alert")
    inhibit_rules: list[InhibitRule] = Field(
        default_factory=list, description="alerts that mute others while they fire"
    )
    incidents: IncidentSettings = Field(
        default_factory=IncidentSettings,
        description="how Cloud Monitoring incidents enter routing",
    )

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
        return compile_rules(self.inhibit_rules)


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
            where = loc(tuple(err["loc"]))
            problems.append(f"{source}: alerting.{where}: {msg}")
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


Rule = tuple[list[Matcher], list[Matcher], list[str]]


def compile_rules(rules: Iterable[InhibitRule] | Iterable[Rule]) -> list[Rule]:
    """Inhibit rules as (source matchers, target matchers, equal labels), parsed once."""
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
