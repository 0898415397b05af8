"""The pure alerting core: payload parsing, routing, grouping, silences, inhibition, timing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import incidents
from warden.alerts import (
    Alert,
    Silence,
    alert_from_incident,
    alert_from_model_event,
    due,
    inhibited,
    is_test_notification,
    next_due,
    render_message,
    route_alert,
)
from warden.config.alerting import parse_alerting, parse_matcher
from warden.errors import ConfigError, EventError

RECEIVED = 1_800_000_000.0  # when the router got the notification (fallback for unknown times)


def parse(payload: Any, **kw: Any) -> Alert:
    return alert_from_incident(payload, received_at=RECEIVED, **kw)


@pytest.mark.parametrize("kind", sorted(incidents.BY_KIND))
def test_every_documented_condition_kind_opens_and_closes(kind: str) -> None:
    payload, condition_type = incidents.BY_KIND[kind]
    opened = parse(payload)
    assert opened.status == "firing"
    assert opened.ends_at is None
    assert opened.labels["condition_type"] == condition_type
    assert opened.labels["alertname"] == payload["incident"]["policy_name"]
    assert opened.labels["incident_id"] == payload["incident"]["incident_id"]
    assert opened.labels["severity"] in ("critical", "error", "warning")
    assert opened.annotations["summary"] == payload["incident"]["summary"]
    closed = parse(incidents.closed(payload))
    assert closed.status == "resolved"
    assert closed.fingerprint == opened.fingerprint
    assert closed.ends_at == payload["incident"]["started_at"] + 600


def test_the_documented_example_is_accepted_as_published() -> None:
    a = parse(incidents.DOCUMENTED_EXAMPLE)
    assert a.status == "resolved"
    assert (a.starts_at, a.ends_at) == (1577840461, 1577877071)
    # "no severity" (lower case, as documented) takes the configured default.
    assert a.labels["severity"] == "warning"
    assert parse(incidents.DOCUMENTED_EXAMPLE, default_severity="error").labels["severity"] == (
        "error"
    )
    assert a.labels["alertname"] == "Monitor-Project-Cluster"
    assert a.labels["condition"] == "VM Instance - CPU utilization [MAX]"
    assert a.labels["metric_type"] == "compute.googleapis.com/instance/cpu/utilization"
    assert a.labels["resource_type"] == "gce_instance"
    # Policy user labels, metric labels, resource labels and metadata labels all route.
    assert a.labels["user_label_1"] == "important label"  # sanitized name
    assert a.labels["instance_name"] == "the name of the VM instance"
    assert a.labels["zone"] == "us-central1-c"
    assert a.labels["labelkey"] == "labelvalue"
    assert a.annotations["subject"] == "ALERT - No severity"
    assert a.annotations["documentation"].startswith("TEST ALERT")
    assert a.annotations["observed_value"] == "0.835"
    assert a.annotations["url"].startswith("https://console.cloud.google.com/")


def test_uptime_and_log_match_incidents_route_on_the_labels_they_have() -> None:
    up = parse(incidents.UPTIME_OPEN)
    assert up.labels["host"] == "warden-health.example.run.app"
    assert up.labels["severity"] == "warning"  # no severity at all: the default
    assert "metric_type" not in up.labels
    assert "documentation" not in up.annotations
    assert parse(incidents.UPTIME_CLOSED).ends_at == 1579559552
    log = parse(incidents.LOG_MATCH_OPEN)
    assert log.labels["severity"] == "error"  # "Error": any case
    assert log.labels["service_name"] == "warden-retrain-model"
    assert log.labels["team"] == "ml-platform"
    assert "metric_type" not in log.labels


@pytest.mark.parametrize(
    ("state", "status"),
    [("OPEN", "firing"), ("Open", "firing"), ("CLOSED", "resolved"), ("Closed", "resolved")],
)
def test_state_is_case_insensitive(state: str, status: str) -> None:
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    payload["incident"].update(state=state, ended_at=1780000600 if status == "resolved" else None)
    assert parse(payload).status == status


@pytest.mark.parametrize(
    ("given", "user_label", "want"),
    [
        ("CRITICAL", None, "critical"),
        ("Error", None, "error"),
        ("warning", "info", "warning"),  # the incident's own severity wins over a label
        ("no severity", "info", "info"),  # Terraform labels "info" policies (no API severity)
        ("No severity", None, "warning"),
        ("sev-1", None, "warning"),  # unknown: the default
        (None, "critical", "critical"),
        (None, "page", "warning"),  # a label that names no severity is no severity
    ],
)
def test_severity_is_case_insensitive_with_a_default(given, user_label, want) -> None:
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    payload["incident"]["severity"] = given
    payload["incident"]["policy_user_labels"] = {"severity": user_label} if user_label else {}
    assert parse(payload).labels["severity"] == want


@pytest.mark.parametrize(
    "field", sorted(set(incidents.THRESHOLD_OPEN["incident"]) - {"incident_id"})
)
@pytest.mark.parametrize("value", ["<missing>", None, "", [], {}, 7, "ÿ" * 3, True])
def test_every_field_but_incident_id_may_be_missing_null_or_of_another_type(field, value) -> None:
    base = parse(incidents.THRESHOLD_OPEN)
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    if value == "<missing>":
        del payload["incident"][field]
    else:
        payload["incident"][field] = value
    a = parse(payload)
    assert a.fingerprint == base.fingerprint
    assert a.labels["incident_id"] == "0.nvmkgq5w0d1a"
    assert a.labels["alertname"]


def test_unknown_fields_versions_and_times_are_tolerated() -> None:
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    payload["version"] = "1.3"
    payload["brand_new"] = {"deep": [1, 2]}
    payload["incident"]["another_new_field"] = "x"
    payload["incident"]["started_at"] = "1780000000"  # a numeric string
    a = parse(payload)
    assert a.starts_at == 1780000000
    payload["incident"]["started_at"] = "2026-05-28T20:26:40Z"  # RFC 3339
    assert parse(payload).starts_at == 1780000000
    payload["incident"]["started_at"] = 0  # the test notification's "unknown"
    assert parse(payload).starts_at == RECEIVED
    payload["incident"].update(state=None, ended_at=1780000600)  # no state, but it ended
    assert parse(payload).status == "resolved"
    payload["incident"]["incident_id"] = 12345  # a number is still an id
    assert parse(payload).labels["incident_id"] == "12345"


def test_label_limits() -> None:
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    payload["incident"]["policy_user_labels"] = {f"l{i}": "x" * 2000 for i in range(100)}
    a = parse(payload)
    assert len(a.labels) == 64
    assert all(len(v) <= 1024 for v in a.labels.values())
    assert a.labels["alertname"] == "model-drift"


REFUSED = [
    ("not an object", [1, 2], "must be a JSON object"),
    ("a string", "1.2", "must be a JSON object"),
    ("no incident", {"version": "1.2"}, "no 'incident' object"),
    ("null incident", {"version": "1.2", "incident": None}, "no 'incident' object"),
    ("incident is a string", {"incident": "x"}, "incident must be an object"),
    ("incident is a list", {"incident": []}, "incident must be an object"),
    ("no incident_id", {"incident": {"state": "open"}}, "incident.incident_id"),
    ("empty incident_id", {"incident": {"incident_id": " "}}, "incident.incident_id"),
    ("null incident_id", {"incident": {"incident_id": None}}, "incident.incident_id"),
    ("bool incident_id", {"incident": {"incident_id": True}}, "incident.incident_id"),
    ("object incident_id", {"incident": {"incident_id": {"a": 1}}}, "incident.incident_id"),
]


@pytest.mark.parametrize(("case", "payload", "reason"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_only_what_can_never_be_an_alert_is_refused(case: str, payload: Any, reason: str) -> None:
    with pytest.raises(EventError) as err:
        parse(payload)
    assert reason in str(err.value)


def test_the_console_test_notification_is_recognised_and_parses() -> None:
    assert is_test_notification(incidents.TEST_NOTIFICATION)
    assert not is_test_notification(incidents.THRESHOLD_OPEN)
    a = parse(incidents.TEST_NOTIFICATION)
    assert a.status == "firing"  # "OPEN"
    assert a.starts_at == RECEIVED  # started_at 0
    assert a.annotations["documentation"] == "Test documentation"  # a plain string


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
