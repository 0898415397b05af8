"""Routing, grouping, silences, inhibition and the timing decision over one group's state dict
(the dict :mod:`warden.alerts.state` keeps in GCS). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warden.alerts.inputs import Alert
from warden.config.alerting import (
    AlertingConfig,
    InhibitRule,
    ResolvedRoute,
    Rule,
    compile_rules,
    matches_all,
    parse_matcher,
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


def inhibited(
    alert: Alert, firing_alerts: Iterable[Alert], rules: Iterable[InhibitRule] | Iterable[Rule]
) -> bool:
    """Alertmanager semantics. Like Alertmanager, when the target also matches the source side,
    sources that also match the target side are ignored (so two such alerts don't mute each
    other); an alert never inhibits itself."""
    firing = [a for a in firing_alerts if a.status == "firing"]
    for source_m, target_m, equal in compile_rules(rules):
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


def alerts_now(group_state: Mapping[str, Any], now: float) -> list[Alert]:
    """The group's alerts as :func:`expire` would leave them at ``now``, without changing (or
    copying) the stored state: a firing alert past its ``ends_at`` comes back resolved."""
    from dataclasses import replace

    out = []
    for fp, rec in group_state.get("alerts", {}).items():
        a = alert_from_state(fp, rec)
        if a.status == "firing" and a.ends_at is not None and a.ends_at <= now:
            a = replace(a, status="resolved")
        out.append(a)
    return out


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
