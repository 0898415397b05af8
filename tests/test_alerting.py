"""The pure alerting core: payload parsing, routing, grouping, silences, inhibition, timing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from warden.alerting import (
    Alert,
    Silence,
    alert_from_incident,
    alert_from_model_event,
    due,
    inhibited,
    next_due,
    parse_alerting,
    parse_matcher,
    render_message,
    route_alert,
)
from warden.errors import ConfigError, EventError


def incident(state: str = "open", **over: Any) -> dict[str, Any]:
    """A notification as Cloud Monitoring sends it (webhook schema version 1.2)."""
    inc: dict[str, Any] = {
        "incident_id": "0.opqiw61fsv7p",
        "scoping_project_id": "warden-prod",
        "scoping_project_number": 12345,
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.opqiw61fsv7p?project=warden-prod",
        "started_at": 1_700_000_000,
        "ended_at": None if state == "open" else 1_700_000_900,
        "state": state,
        "resource_id": "",
        "resource_name": "churn-scorer",
        "resource_display_name": "churn-scorer",
        "resource_type_display_name": "Cloud Run Revision",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": "churn-scorer", "location": "europe-west1"},
        },
        "metric": {
            "type": "custom.googleapis.com/warden/drift_score",
            "displayName": "Drift score",
            "labels": {"model": "churn", "feature-name": "tenure"},
        },
        "metadata": {"system_labels": {}, "user_labels": {"team": "ml"}},
        "policy_name": "Model drift",
        "policy_user_labels": {"team": "ml", "severity": "page"},
        "condition_name": "drift above 0.2",
        "threshold_value": "0.2",
        "observed_value": "0.31",
        "condition": {"name": "projects/warden-prod/alertPolicies/1/conditions/2"},
        "severity": "Warning",
        "summary": "Drift score for churn is above the threshold of 0.2 with a value of 0.31.",
        "apigee_url": "",
        "documentation": {
            "content": "Retrain the model: `warden retrain churn`.",
            "mime_type": "text/markdown",
            "subject": "Drift on churn",
        },
    }
    inc.update(over)
    return {"version": "1.2", "incident": inc}


def test_open_incident_becomes_a_firing_alert() -> None:
    a = alert_from_incident(incident())
    assert a.status == "firing"
    assert a.source == "monitoring"
    assert a.starts_at == 1_700_000_000
    assert a.ends_at is None
    assert a.labels["alertname"] == "Model drift"
    assert a.labels["severity"] == "warning"  # core label wins over policy_user_labels
    assert a.labels["condition"] == "drift above 0.2"
    assert a.labels["incident_id"] == "0.opqiw61fsv7p"
    assert a.labels["metric_type"] == "custom.googleapis.com/warden/drift_score"
    assert a.labels["resource_type"] == "cloud_run_revision"
    assert a.labels["team"] == "ml"
    assert a.labels["model"] == "churn"
    assert a.labels["feature_name"] == "tenure"  # sanitized label name
    assert a.labels["service_name"] == "churn-scorer"
    assert a.annotations["url"].startswith("https://console.cloud.google.com/")
    assert a.annotations["documentation"].startswith("Retrain")


def test_closed_incident_shares_the_fingerprint() -> None:
    opened, closed = alert_from_incident(incident()), alert_from_incident(incident("closed"))
    assert closed.status == "resolved"
    assert closed.ends_at == 1_700_000_900
    assert opened.fingerprint == closed.fingerprint
    other = alert_from_incident(incident(incident_id="0.other"))
    assert other.fingerprint != opened.fingerprint


def test_label_limits() -> None:
    many = {f"l{i}": "x" * 2000 for i in range(100)}
    a = alert_from_incident(incident(policy_user_labels=many))
    assert len(a.labels) == 64
    assert all(len(v) <= 1024 for v in a.labels.values())
    assert a.labels["alertname"] == "Model drift"


def _without(path: str) -> dict[str, Any]:
    p = incident()
    node = p
    *parents, last = path.split(".")
    for k in parents:
        node = node[k]
    del node[last]
    return p


def _with(path: str, value: Any) -> dict[str, Any]:
    p = incident()
    node = p
    *parents, last = path.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    return p


MALFORMED = [
    ("payload", [1, 2]),
    ("version", {"version": "1.1", "incident": incident()["incident"]}),
    ("version", _without("version")),
    ("incident", _without("incident")),
    ("incident", _with("incident", "x")),
    ("incident.incident_id", _without("incident.incident_id")),
    ("incident.incident_id", _with("incident.incident_id", 7)),
    ("incident.incident_id", _with("incident.incident_id", " ")),
    ("incident.url", _without("incident.url")),
    ("incident.url", _with("incident.url", ["x"])),
    ("incident.started_at", _with("incident.started_at", "1700000000")),
    ("incident.started_at", _with("incident.started_at", 1.5)),
    ("incident.started_at", _with("incident.started_at", True)),
    ("incident.started_at", _with("incident.started_at", -1)),
    ("incident.started_at", _without("incident.started_at")),
    ("incident.ended_at", _with("incident.ended_at", "soon")),
    ("incident.ended_at", _with("incident.state", "closed")),  # closed without ended_at
    ("incident.ended_at", _with("incident.ended_at", 1)),  # before started_at
    ("incident.state", _with("incident.state", "acknowledged")),
    ("incident.state", _without("incident.state")),
    ("incident.summary", _with("incident.summary", None)),
    ("incident.summary", _with("incident.summary", 3)),
    ("incident.resource", _without("incident.resource")),
    ("incident.resource.type", _without("incident.resource.type")),
    ("incident.resource.labels.location", _with("incident.resource.labels.location", 1)),
    ("incident.resource.labels", _with("incident.resource.labels", ["a"])),
    ("incident.metric", _with("incident.metric", [])),
    ("incident.metric.type", _with("incident.metric.type", 5)),
    ("incident.metric.displayName", _without("incident.metric.displayName")),
    ("incident.metric.labels.model", _with("incident.metric.labels.model", None)),
    ("incident.metadata", _with("incident.metadata", "x")),
    ("incident.metadata.user_labels.team", _with("incident.metadata.user_labels.team", 1)),
    ("incident.policy_name", _without("incident.policy_name")),
    ("incident.policy_user_labels.team", _with("incident.policy_user_labels.team", 2)),
    ("incident.condition_name", _with("incident.condition_name", {})),
    ("incident.condition", _with("incident.condition", "c")),
    ("incident.severity", _with("incident.severity", "critical")),
    ("incident.severity", _without("incident.severity")),
    ("incident.documentation", _without("incident.documentation")),
    ("incident.documentation.content", _with("incident.documentation.content", 1)),
    ("incident.documentation.mime_type", _without("incident.documentation.mime_type")),
    ("incident.documentation.subject", _with("incident.documentation.subject", 9)),
    ("incident.observed_value", _with("incident.observed_value", 0.31)),
    ("incident.scoping_project_id", _with("incident.scoping_project_id", 1)),
]


@pytest.mark.parametrize(("field", "payload"), MALFORMED, ids=[f for f, _ in MALFORMED])
def test_malformed_incidents_name_the_field(field: str, payload: Any) -> None:
    with pytest.raises(EventError) as err:
        alert_from_incident(payload)
    assert field in str(err.value)


def test_started_at_message_names_the_type() -> None:
    with pytest.raises(EventError, match=r"incident.started_at must be an integer epoch, got str"):
        alert_from_incident(_with("incident.started_at", "1"))


def test_model_events() -> None:
    at = "2026-11-20T10:00:00+00:00"
    a = alert_from_model_event(
        {"schema": 1, "kind": "drift_detected", "model": "churn", "at": at, "version": 7},
        {"model": "churn", "kind": "drift_detected"},
    )
    assert a.labels == {
        "alertname": "ModelDriftDetected",
        "model": "churn",
        "kind": "drift_detected",
        "severity": "warning",
        "version": "7",
    }
    assert a.status == "firing"
    assert a.ends_at == a.starts_at + 3600
    again = alert_from_model_event(
        {"schema": 1, "kind": "drift_detected", "model": "churn", "at": at, "version": 7}, {}
    )
    assert again.fingerprint == a.fingerprint
    failed = alert_from_model_event({"schema": 1, "kind": "failed", "model": "churn", "at": at}, {})
    assert failed.labels["severity"] == "error"
    assert failed.fingerprint != a.fingerprint
    rejected = alert_from_model_event(
        {"schema": 1, "kind": "rejected", "model": "churn", "at": at}, {}
    )
    assert rejected.labels["severity"] == "info"
    for bad, field in (
        ({"schema": 2, "kind": "failed", "model": "m", "at": at}, "schema"),
        ({"schema": 1, "kind": "nope", "model": "m", "at": at}, "kind"),
        ({"schema": 1, "kind": "failed", "model": "", "at": at}, "model"),
        ({"schema": 1, "kind": "failed", "model": "m", "at": "yesterday"}, "at"),
        ({"schema": 1, "kind": "failed", "model": "m", "at": at, "version": [1]}, "version"),
    ):
        with pytest.raises(EventError, match=field):
            alert_from_model_event(bad, {})
    with pytest.raises(EventError, match=r"attributes.model"):
        alert_from_model_event(
            {"schema": 1, "kind": "failed", "model": "m", "at": at}, {"model": "x"}
        )


# -- config ------------------------------------------------------------------------------------

RECEIVERS = [
    {"name": "ops", "log": {}},
    {"name": "slack", "slack": {"url_env": "SLACK_URL", "channel": "#ml"}},
    {"name": "hook", "webhook": {"url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}},
    {"name": "retrain", "pubsub": {"topic": "retrain-requests", "action": "retrain"}},
]


def config(route: dict[str, Any], inhibit: list | None = None):
    return parse_alerting(
        {"receivers": RECEIVERS, "route": route, "inhibit_rules": inhibit or []}, "warden.yaml"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"receiver": "ops", "routes": [{"matchers": ['a="1"']}, {"matchers": ["b ~ 1"]}]},
            "alerting.route.routes[1].matchers[0]",
        ),
        (
            {"receiver": "ops", "routes": [{"matchers": ['a=~"("']}]},
            "alerting.route.routes[0].matchers[0]: invalid regular expression",
        ),
        ({"receiver": "nobody"}, "alerting.route.receiver: unknown receiver 'nobody'"),
        (
            {"receiver": "ops", "routes": [{"routes": [{"receiver": "x"}]}]},
            "alerting.route.routes[0].routes[0].receiver",
        ),
        ({"matchers": ['a="b"']}, "alerting.route.receiver"),
        ({"receiver": "ops", "matchers": ['a="b"']}, "alerting.route.matchers"),
        ({"receiver": "ops", "group_wait": "soon"}, "alerting.route.group_wait"),
        ({"receiver": "ops", "routes": [{"repeat_interval": "-1h"}]}, "repeat_interval"),
        ({"receiver": "ops", "group_by": ["...", "a"]}, "alerting.route"),
        ({"receiver": "ops", "colour": "red"}, "alerting.route.colour: unknown key"),
    ],
)
def test_config_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(raw)
    assert message in str(err.value)


def test_receiver_errors() -> None:
    with pytest.raises(ConfigError, match=r"alerting.receivers\[1\].name: duplicate"):
        parse_alerting(
            {"receivers": [RECEIVERS[0], RECEIVERS[0]], "route": {"receiver": "ops"}}, "w"
        )
    with pytest.raises(ConfigError, match=r"alerting.receivers\[0\]: .*exactly one"):
        parse_alerting(
            {
                "receivers": [{"name": "x", "log": {}, "slack": {"url_env": "U"}}],
                "route": {"receiver": "x"},
            },
            "w",
        )
    with pytest.raises(ConfigError, match=r"alerting.receivers\[0\].pubsub.action"):
        parse_alerting(
            {
                "receivers": [{"name": "x", "pubsub": {"topic": "t", "action": "page"}}],
                "route": {"receiver": "x"},
            },
            "w",
        )
    with pytest.raises(ConfigError, match=r"alerting.inhibit_rules\[0\].source_matchers\[0\]"):
        config({"receiver": "ops"}, [{"source_matchers": ["bad"], "target_matchers": ["a=b"]}])


def test_timings_inherit_and_parse() -> None:
    c = config(
        {
            "receiver": "ops",
            "group_by": ["alertname"],
            "group_wait": "10s",
            "repeat_interval": "1h30m",
            "routes": [{"receiver": "slack", "group_interval": "2m", "routes": [{}]}],
        }
    )
    child = c.tree.children[0]
    grandchild = child.children[0]
    assert (c.tree.group_wait, c.tree.group_interval, c.tree.repeat_interval) == (10, 300, 5400)
    assert (child.group_wait, child.group_interval, child.repeat_interval) == (10, 120, 5400)
    assert grandchild.receiver == "slack"
    assert grandchild.group_interval == 120
    assert grandchild.group_by == ("alertname",)
    assert grandchild.id == "0.0.0"
    d = config({"receiver": "ops"})
    assert (d.tree.group_wait, d.tree.group_interval, d.tree.repeat_interval) == (30, 300, 14400)


# -- routing -----------------------------------------------------------------------------------


def alert(status: str = "firing", fp: str | None = None, **labels: str) -> Alert:
    return Alert(
        labels=labels,
        annotations={},
        status=status,  # type: ignore[arg-type]
        starts_at=0.0,
        ends_at=None,
        fingerprint=fp or "fp-" + "-".join(f"{k}={v}" for k, v in sorted(labels.items())),
        source="monitoring",
    )


def test_regex_is_fully_anchored() -> None:
    m = parse_matcher('service=~"api"')
    assert m.matches({"service": "api"})
    assert not m.matches({"service": "api-gateway"})
    assert not m.matches({"service": "my-api"})
    assert parse_matcher('service=~"api.*"').matches({"service": "api-gateway"})
    assert parse_matcher('service=~"a|b"').matches({"service": "b"})
    assert not parse_matcher('service=~"a|b"').matches({"service": "ab"})
    assert parse_matcher('service!~"a|b"').matches({"service": "ab"})
    assert parse_matcher('team!="ml"').matches({})  # a missing label is ""
    assert parse_matcher('team=""').matches({})
    assert parse_matcher("team=ml").matches({"team": "ml"})
    assert parse_matcher(r'msg="say \"hi\""').matches({"msg": 'say "hi"'})


def test_routing_with_continue() -> None:
    c = config(
        {
            "receiver": "ops",
            "group_by": ["alertname"],
            "routes": [
                {"matchers": ['team="ml"'], "receiver": "slack", "continue": True},
                {"matchers": ['severity=~"critical|error"'], "receiver": "hook"},
                {"matchers": ['team="ml"'], "receiver": "retrain"},
            ],
        }
    )
    got = [(m.route_id, m.receiver) for m in route_alert(alert(team="ml", severity="error"), c)]
    assert got == [("0.0", "slack"), ("0.1", "hook")]  # hook matched without continue: stop
    got = [(m.route_id, m.receiver) for m in route_alert(alert(team="ml", severity="info"), c)]
    assert got == [("0.0", "slack"), ("0.2", "retrain")]
    got = [(m.route_id, m.receiver) for m in route_alert(alert(team="web"), c)]
    assert got == [("0", "ops")]  # nothing below matched: the root takes it


def test_nested_routes_fall_back_to_the_matching_parent() -> None:
    c = config(
        {
            "receiver": "ops",
            "routes": [
                {
                    "matchers": ['team="ml"'],
                    "receiver": "slack",
                    "routes": [{"matchers": ['severity="critical"'], "receiver": "hook"}],
                },
                {"receiver": "retrain"},
            ],
        }
    )
    assert [m.receiver for m in route_alert(alert(team="ml", severity="critical"), c)] == ["hook"]
    assert [m.route_id for m in route_alert(alert(team="ml", severity="info"), c)] == ["0.0"]
    assert [m.receiver for m in route_alert(alert(team="x"), c)] == ["retrain"]


def test_group_keys() -> None:
    c = config({"receiver": "ops", "group_by": ["alertname", "cluster"]})
    (m,) = route_alert(alert(alertname="A", cluster="eu", instance="1"), c)
    (m2,) = route_alert(alert(alertname="A", cluster="eu", instance="2"), c)
    (m3,) = route_alert(alert(alertname="A", cluster="us", instance="1"), c)
    assert m.group_key(alert(alertname="A", cluster="eu", instance="1")) == m2.group_key(
        alert(alertname="A", cluster="eu", instance="2")
    )
    assert m.group_key(alert(alertname="A", cluster="eu")) != m3.group_key(
        alert(alertname="A", cluster="us")
    )
    assert m.group_key(alert(alertname="A", cluster="eu")).startswith("0:")
    c_all = config({"receiver": "ops", "group_by": ["..."]})
    (ma,) = route_alert(alert(a="1", b="2"), c_all)
    assert ma.group_key(alert(a="1", b="2")) != ma.group_key(alert(a="1", b="3"))
    c_none = config({"receiver": "ops"})
    (mn,) = route_alert(alert(a="1"), c_none)
    assert mn.group_key(alert(a="1")) == mn.group_key(alert(a="2"))  # one group for all


# -- silences and inhibition ---------------------------------------------------------------------


def test_silences() -> None:
    s = Silence("s1", ('alertname="Drift"', 'model=~"churn|fraud"'), 100.0, 200.0, "me", "deploy")
    a = alert(alertname="Drift", model="churn")
    assert s.matches(a, 150)
    assert not s.matches(a, 99)
    assert not s.matches(a, 200)
    assert not s.matches(alert(alertname="Drift", model="churner"), 150)
    assert not s.matches(alert(alertname="Other", model="churn"), 150)
    assert Silence.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="matcher"):
        Silence("s2", ("nonsense",), 0, 1, "me", "")


RULES = [
    {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["model"],
    }
]


def test_inhibition() -> None:
    rules = config({"receiver": "ops"}, RULES).rules
    crit = alert(severity="critical", model="churn", fp="c")
    warn = alert(severity="warning", model="churn", fp="w")
    other = alert(severity="warning", model="fraud", fp="o")
    assert inhibited(warn, [crit, warn], rules)
    assert not inhibited(other, [crit, other], rules)  # equal labels differ
    assert not inhibited(crit, [crit, warn], rules)  # crit is not a target
    resolved = alert("resolved", severity="critical", model="churn", fp="c")
    assert not inhibited(warn, [resolved], rules)  # only firing sources inhibit
    # Missing on both sides counts as equal, like Alertmanager.
    assert inhibited(alert(severity="warning", fp="x"), [alert(severity="critical", fp="y")], rules)


def test_an_alert_never_inhibits_itself() -> None:
    rules = config(
        {"receiver": "ops"},
        [{"source_matchers": ['team="ml"'], "target_matchers": ['team="ml"'], "equal": []}],
    ).rules
    a = alert(team="ml", fp="a")
    assert not inhibited(a, [a], rules)
    # Two alerts that each match both sides do not mute each other (Alertmanager's rule).
    b = alert(team="ml", x="1", fp="b")
    assert not inhibited(a, [a, b], rules)


# -- timing ------------------------------------------------------------------------------------


def group(**over: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "key": "0:[]",
        "receiver": "ops",
        "group_labels": {"alertname": "Drift"},
        "alerts": {
            "a": {"status": "firing", "labels": {"alertname": "Drift"}, "starts_at": 0},
        },
        "first_seen": 1000.0,
        "last_notified_at": None,
        "notified": {},
        "group_wait": 30.0,
        "group_interval": 300.0,
        "repeat_interval": 3600.0,
    }
    state.update(over)
    return state


def _firing(*fps: str, resolved: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {fp: {"status": "firing", "labels": {"alertname": "Drift", "i": fp}} for fp in fps}
    out.update(
        {fp: {"status": "resolved", "labels": {"alertname": "Drift", "i": fp}} for fp in resolved}
    )
    for rec in out.values():
        rec["starts_at"] = 0
    return out


@pytest.mark.parametrize(
    ("state", "now", "want"),
    [
        # group_wait: the first notification waits from first_seen
        (group(), 1000.0, False),
        (group(), 1029.9, False),
        (group(), 1030.0, True),
        # nothing firing yet never notified: nothing to say
        (group(alerts=_firing(resolved=("a",))), 5000.0, False),
        # unchanged since the last notification: repeat_interval
        (group(last_notified_at=2000.0, notified={"a": "firing"}), 2299.0, False),
        (group(last_notified_at=2000.0, notified={"a": "firing"}), 5599.0, False),
        (group(last_notified_at=2000.0, notified={"a": "firing"}), 5600.0, True),
        # a new alert: group_interval after the last notification
        (
            group(alerts=_firing("a", "b"), last_notified_at=2000.0, notified={"a": "firing"}),
            2299.0,
            False,
        ),
        (
            group(alerts=_firing("a", "b"), last_notified_at=2000.0, notified={"a": "firing"}),
            2300.0,
            True,
        ),
        # a resolve: group_interval too
        (
            group(
                alerts=_firing(resolved=("a",)), last_notified_at=2000.0, notified={"a": "firing"}
            ),
            2300.0,
            True,
        ),
        # everything resolved and already sent: never again
        (group(alerts=_firing(resolved=("a",)), last_notified_at=2000.0, notified={}), 1e9, False),
        # a silenced alert does not count
        (
            group(
                alerts={"a": {"status": "firing", "labels": {}, "starts_at": 0, "silenced": True}}
            ),
            5000.0,
            False,
        ),
        (
            group(
                alerts={"a": {"status": "firing", "labels": {}, "starts_at": 0, "inhibited": True}}
            ),
            5000.0,
            False,
        ),
    ],
)
def test_due_timing_table(state: dict, now: float, want: bool) -> None:
    assert due(state, now) is want


def test_next_due_and_render() -> None:
    state = group(alerts=_firing("a", "b", resolved=("c",)), notified={"c": "firing"})
    state["alerts"]["a"]["annotations"] = {"summary": "drift on churn", "url": "https://x/1"}
    assert next_due(state, 0) == 1030.0
    msg = render_message(state)
    assert msg["firing"] == 2
    assert msg["resolved"] == 1
    assert msg["title"].startswith("[FIRING:2] Drift")
    assert "drift on churn" in msg["text"]
    assert msg["links"] == ["https://x/1"]
    assert [a["status"] for a in msg["alerts"]] == ["firing", "firing", "resolved"]
    only_resolved = copy.deepcopy(state)
    only_resolved["alerts"] = _firing(resolved=("c",))
    assert render_message(only_resolved)["title"].startswith("[RESOLVED:1]")
