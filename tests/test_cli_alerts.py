"""`warden alerts` against the router's state on the storage emulator.

Cloud Monitoring incidents (tests/incidents.py, Google's documented 1.2 payloads) go through the
router use case (ingest → flush, log receivers) at fixed times; the command then reads the
groups at a fixed "now" (the runtime's clock) and must report each alert's muting, the group's
receiver and when it next notifies.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import incidents
from warden.alerts.router import incident_alerts, route
from warden.alerts.state import next_notification
from warden.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_780_010_000.0  # after every fixture incident's started_at
NOW = T0 + 200
HOUR = 3600.0

ALERTING: dict[str, Any] = {
    "receivers": [{"name": "oncall", "log": {}}, {"name": "audit", "log": {}}],
    "route": {
        "receiver": "audit",
        "group_by": ["alertname", "model"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [{"matchers": ['severity =~ "critical|error"'], "receiver": "oncall"}],
    },
    "inhibit_rules": [
        {
            "source_matchers": ['alertname = "model-degraded"'],
            "target_matchers": ['alertname = "model-drift"'],
            "equal": ["model"],
        }
    ],
}

# [DOC] shape: THRESHOLD_OPEN's incident for warden.yaml's `model-degraded` policy (severity
# error, metric monitor/performance_drop) on the same model: another incident, same fields.
DEGRADED_OPEN = copy.deepcopy(incidents.THRESHOLD_OPEN)
DEGRADED_OPEN["incident"].update(
    incident_id="0.d3gr4ded0001",
    url="https://console.cloud.google.com/monitoring/alerting/incidents/0.d3gr4ded0001",
    severity="error",
    policy_name="model-degraded",
    condition_name="monitor/performance_drop > 0.05",
    summary="monitor/performance_drop for global with metric labels {model=customer-segments} "
    "is above the threshold of 0.050 with a value of 0.120.",
    threshold_value="0.05",
    observed_value="0.120",
    policy_user_labels={"warden_policy": "model-degraded", "warden_prefix": "warden"},
)
DEGRADED_OPEN["incident"]["metric"] = {
    "type": "custom.googleapis.com/warden/monitor/performance_drop",
    "displayName": "monitor/performance_drop",
    "labels": {"model": "customer-segments"},
}
DEGRADED_OPEN["incident"]["condition"].update(
    name=f"projects/{incidents.PROJECT}/alertPolicies/777/conditions/888",
    displayName="monitor/performance_drop > 0.05",
)
DEGRADED_OPEN["incident"]["condition"]["conditionThreshold"].update(
    filter='metric.type="custom.googleapis.com/warden/monitor/performance_drop" '
    'resource.type="global"',
    comparison="COMPARISON_GT",
    thresholdValue=0.05,
)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@pytest.fixture
def routed(make_runtime, tmp_path):
    """Four incidents routed at T0; a flush at T0+60 (group_wait 30 s) notifies the unmuted ones;
    the log-match incident closes at T0+120. Returns (runtime, fingerprints, silence id)."""
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["alerting"] = ALERTING
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    rt = make_runtime(install=False, config_path=config)
    silence = rt.alert_state().add_silence(
        ['alertname="stale-pipeline"'],
        starts_at=T0 - 60,
        ends_at=T0 + 2 * HOUR,
        created_by="oncall",
        comment="INC-42: scheduler migration",
    )
    payloads = {
        "degraded": DEGRADED_OPEN,
        "drift": incidents.THRESHOLD_OPEN,  # model-drift, customer-segments, warning
        "stale": incidents.ABSENCE_OPEN,  # stale-pipeline, breast-cancer-risk, warning
        "refused": incidents.LOG_MATCH_OPEN,  # retrain-refused-requests, Error, no model
    }
    alerts = {k: incident_alerts(rt, p, door="webhook", now=T0)[0] for k, p in payloads.items()}
    first = route(rt, list(alerts.values()), now=T0)
    assert (first["new"], first["notified"]) == (4, 0)  # group_wait holds them
    assert route(rt, [], now=T0 + 60)["notified"] == 2  # degraded and refused; the others muted
    closed = incident_alerts(
        rt, incidents.closed(incidents.LOG_MATCH_OPEN), door="webhook", now=T0 + 120
    )
    assert route(rt, closed, now=T0 + 120)["updated"] == 1
    return rt, {k: a.fingerprint for k, a in alerts.items()}, silence.id


def run(rt, *args: str, now: float = NOW, code: int = 0):
    rt.clock = lambda: at(now)
    out = CliRunner().invoke(main, list(args), obj={"rt": rt}, catch_exceptions=False)
    assert out.exit_code == code, out.output
    return out


def groups(rt, *args: str, now: float = NOW) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = json.loads(run(rt, "--json", "alerts", *args, now=now).stdout)
    return got


def names(listed: list[dict[str, Any]]) -> list[str]:
    return [g["group_labels"]["alertname"] for g in listed]


def test_firing_groups_with_muting_receivers_and_next_notification(routed) -> None:
    rt, fp, silence_id = routed
    listed = groups(rt)
    assert names(listed) == ["model-degraded", "model-drift", "stale-pipeline"]
    degraded, drift, stale = listed

    assert degraded["receiver"] == "oncall"
    assert degraded["route_id"] == "0.0"
    assert degraded["group_labels"] == {"alertname": "model-degraded", "model": "customer-segments"}
    (a,) = degraded["alerts"]
    assert a["fingerprint"] == fp["degraded"]
    assert (a["status"], a["state"], a["silenced"], a["inhibited"]) == (
        "firing",
        "active",
        False,
        False,
    )
    assert a["labels"]["severity"] == "error"
    assert (a["notified"], a["will_send"]) == (True, "firing")
    assert degraded["last_notified_at"] == T0 + 60
    # Sent at T0+60, unchanged since: again after repeat_interval (4 h).
    assert degraded["next_notification_at"] == T0 + 60 + 4 * HOUR
    assert degraded["next_notification_reason"] == "repeat_interval"
    assert degraded["next_notification_in"] == 60 + 4 * HOUR - 200
    assert degraded["timings"] == {
        "group_wait": 30.0,
        "group_interval": 300.0,
        "repeat_interval": 4 * HOUR,
    }

    assert drift["receiver"] == "audit"
    (a,) = drift["alerts"]
    assert a["fingerprint"] == fp["drift"]
    assert (a["state"], a["inhibited_by"], a["silenced_by"]) == ("inhibited", [fp["degraded"]], [])
    assert (a["notified"], a["will_send"]) == (False, None)
    assert drift["last_notified_at"] is None
    assert (drift["next_notification_at"], drift["next_notification_reason"]) == (
        None,
        "nothing_to_send",
    )

    assert stale["receiver"] == "audit"
    (a,) = stale["alerts"]
    assert (a["state"], a["silenced_by"], a["inhibited_by"]) == ("silenced", [silence_id], [])
    assert stale["next_notification_reason"] == "nothing_to_send"


def test_all_shows_resolved_owed_then_tombstones(routed) -> None:
    rt, fp, _ = routed
    listed = groups(rt, "--all")
    assert names(listed) == [
        "model-degraded",
        "model-drift",
        "retrain-refused-requests",
        "stale-pipeline",
    ]
    refused = listed[2]
    assert refused["receiver"] == "oncall"
    (a,) = refused["alerts"]
    assert (a["fingerprint"], a["status"], a["notified"], a["will_send"]) == (
        fp["refused"],
        "resolved",
        True,
        "resolved",
    )
    # The resolve is a change: no earlier than group_interval (5 m) after the T0+60 send.
    assert refused["next_notification_at"] == T0 + 60 + 300
    assert refused["next_notification_reason"] == "group_interval"
    assert refused["next_notification_in"] == 160

    # Past that time, before any flush: due now.
    text = run(rt, "alerts", "--all", now=T0 + 400).stdout
    assert "due now, at the next flush (group interval passed 40s ago)" in text

    # The flush sends the resolve and drops the alert, keeping its tombstone.
    assert route(rt, [], now=T0 + 400)["notified"] == 1
    assert "retrain-refused-requests" not in names(groups(rt, now=T0 + 400))
    later = {g["group_labels"]["alertname"]: g for g in groups(rt, "--all", now=T0 + 400)}
    empty = later["retrain-refused-requests"]
    assert empty["alerts"] == []
    ended = incidents.LOG_MATCH_OPEN["incident"]["started_at"] + 600  # closed(): after=600
    assert empty["tombstones"] == {fp["refused"]: ended}
    assert (empty["next_notification_at"], empty["next_notification_reason"]) == (
        None,
        "nothing_to_send",
    )


def test_matchers_state_toggles_and_receiver_filter(routed) -> None:
    rt, _, _ = routed
    assert names(groups(rt, 'model="customer-segments"')) == ["model-degraded", "model-drift"]
    assert names(groups(rt, 'alertname=~"model-.*"', "-i")) == ["model-drift"]
    assert names(groups(rt, "-s")) == ["stale-pipeline"]
    assert names(groups(rt, "-a")) == ["model-degraded"]
    assert names(groups(rt, "-s", "-i")) == ["model-drift", "stale-pipeline"]
    assert names(groups(rt, "-r", "audit")) == ["model-drift", "stale-pipeline"]
    # Matchers select alerts, not groups: the resolved alert is only seen with --all.
    assert groups(rt, 'alertname="retrain-refused-requests"') == []
    assert names(groups(rt, "--all", 'severity="error"')) == [
        "model-degraded",
        "retrain-refused-requests",
    ]
    # Regexes are anchored, as in routes and amtool's --receiver.
    assert groups(rt, "-r", "aud") == []
    assert run(rt, "alerts", "-r", "aud").stdout.strip() == "no alerts match"
    bad = CliRunner().invoke(main, ["alerts", "model~~x"], obj={"rt": rt})
    assert bad.exit_code == 2
    assert "is not a matcher" in bad.output


def test_table_text(routed) -> None:
    rt, fp, silence_id = routed
    text = run(rt, "alerts").stdout
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 3
    degraded = blocks[0].splitlines()
    assert degraded[0] == (
        'alertname="model-degraded" model="customer-segments"  receiver=oncall  route=0.0  '
        "firing=1/1"
    )
    assert degraded[1] == (
        "  next notification: in 3h57m, 2026-05-29 03:14:20Z (repeat interval); "
        "last sent: 2m20s ago"
    )
    assert degraded[2].split() == [
        "STATUS",
        "STATE",
        "ALERTNAME",
        "MODEL",
        "SEVERITY",
        "STARTED",
        "SUMMARY",
    ]
    row = degraded[3].split()
    assert row[:5] == ["firing", "active", "model-degraded", "customer-segments", "error"]
    drift = blocks[1].splitlines()
    assert drift[1] == "  next notification: none (every firing alert is muted); last sent: never"
    assert drift[3].split()[:5] == [
        "firing",
        "inhibited",
        "model-drift",
        "customer-segments",
        "warning",
    ]
    assert drift[4].strip() == (
        f'inhibited by alertname="model-degraded" model="customer-segments" ({fp["degraded"]})'
    )
    stale = blocks[2].splitlines()
    assert stale[3].split()[:3] == ["firing", "silenced", "stale-pipeline"]
    assert stale[4].strip() == f"silenced by {silence_id} (warden silence expire {silence_id})"


def test_no_alerting_section_is_a_clear_error(make_runtime, tmp_path) -> None:
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw.pop("alerting")
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    rt = make_runtime(install=False, config_path=config)
    out = run(rt, "alerts", code=1)
    assert "alerting: no routing configured" in out.output


def test_next_notification_of_claims() -> None:
    """A claim decides before the timers, as in flush_due: fresh → being sent, taken over at
    claimed_at + lease; past the lease → the next flush re-sends."""
    state = {
        "alerts": {},
        "pending": {"seq": 3, "claimed_at": T0, "claimed_by": "i1", "view": {}},
        "last_notified_at": None,
    }
    assert next_notification(state, T0 + 10, 60.0) == (T0 + 60, "pending_claim")
    assert next_notification(state, T0 + 60, 60.0) == (T0 + 60, "stale_claim")
