"""The Pub/Sub notification channel on the local stack, end to end: a metric point breaches an
alert policy in the Monitoring stand-in, which publishes the incident to model-events (as a
Cloud Monitoring Pub/Sub channel does); Terraform's push subscription delivers it to
route_alert_events, which routes it to a receiver — with no webhook in the path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from stack_process import local_stack, wait_for
from warden.clients import Clients
from warden.settings import Settings
from warden.telemetry.metrics import MetricPoint, from_clients

ROOT = Path(__file__).resolve().parents[1]


def test_incidents_reach_the_router_through_the_pub_sub_channel(tmp_path) -> None:
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"] = {"customer-segments": raw["models"]["customer-segments"]}
    raw["models"]["customer-segments"]["schedules"] = {}  # no scheduled runs: metrics only
    raw["alerting"]["route"].update(group_wait="0s", group_interval="0s")
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    policy = next(p for p in raw["alert_policies"] if p["metric"] == "drift/share")

    with local_stack(
        tmp_path, config, speed=1, only="route_alert_events", alert_channel="pubsub"
    ) as running:
        state = running.state
        assert "route_alerts" not in state["functions"]  # no webhook anywhere
        clients = Clients(
            Settings(project=state["project"], monitoring_endpoint=state["endpoints"]["monitoring"])
        )
        writer = from_clients(clients)
        labels = {"model": "customer-segments", "version": "7"}
        now = datetime.now(UTC)
        above, below = policy["threshold"] + 0.3, max(0.0, policy["threshold"] - 0.3)
        received = running.run_dir / "received.jsonl"

        def slack_notes() -> list[dict]:
            if not received.exists():
                return []
            notes = [json.loads(line) for line in received.read_text().splitlines()]
            return [n["body"] for n in notes if n["path"] == "/slack"]

        # One point at a time: Pub/Sub does not keep order, and a close that overtakes its open
        # (tests/test_alert_state.py) would rightly page no one.
        writer.write([MetricPoint("drift/share", above, labels)], at=now - timedelta(minutes=2))
        wait_for(lambda: len(slack_notes()) >= 1, 90, "the firing notification")
        writer.write([MetricPoint("drift/share", below, labels)], at=now - timedelta(minutes=1))
        notes = wait_for(lambda: len(slack_notes()) >= 2 and slack_notes(), 90, "the resolve")
        clients.monitoring.transport.close()
        log_file = running.run_dir / "function-route_alert_events.log"

        def delivered() -> list[dict]:
            """The router's "routed" log lines of acknowledged messages: a call logs after its
            send, so the second line may come a moment after the second notification."""
            lines = [json.loads(x) for x in log_file.read_text().splitlines() if x[:1] == "{"]
            return [r for r in lines if r.get("delivery") == "ok" and r.get("message_id")]

        wait_for(lambda: len(delivered()) >= 2, 30, "the router's log of both messages")
        log = log_file.read_text()

    text = [n["text"] for n in notes]
    assert text[0].startswith(f"[FIRING:1] {policy['name']}"), text
    assert text[1].startswith(f"[RESOLVED:1] {policy['name']}"), text
    routed = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    ok = [r for r in routed if r.get("delivery") == "ok" and r.get("message_id")]
    assert len(ok) >= 2, log[-3000:]
    assert not [r for r in routed if r.get("refused")], log[-3000:]
