"""Alert policies on the local Monitoring stand-in: metric points written through the real client
open and close Cloud Monitoring incidents (webhook schema 1.2) at a capture endpoint."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import incidents
from warden.alerts import alert_from_incident
from warden.clients import Clients
from warden.config import AlertPolicy
from warden.settings import Settings
from warden.telemetry.metrics import MetricPoint, from_clients
from warden_local.monitoring import MonitoringStandIn
from warden_local.policies import PolicyEvaluator, incident_payload


@pytest.fixture
def capture() -> Iterator[tuple[str, list]]:
    received: list[tuple[dict, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", received
    server.shutdown()


def test_threshold_crossing_opens_and_closes_one_incident(capture) -> None:
    url, received = capture
    policy = AlertPolicy(
        name="model-drift",
        metric="drift/share",
        comparison=">=",
        threshold=0.5,
        severity="warning",
        runbook="docs/RUNBOOKS.md#drift",
    )
    evaluator = PolicyEvaluator([policy], project="warden-test", url=url, token="s3cret")
    with MonitoringStandIn(on_point=evaluator.observe) as standin:
        writer = from_clients(
            Clients(Settings(project="warden-test", monitoring_endpoint=standin.endpoint))
        )
        start = datetime.now(UTC) - timedelta(minutes=10)
        for i, value in enumerate([0.2, 0.7, 0.8, 0.1, 0.3]):
            writer.write(
                [MetricPoint("drift/share", value, {"model": "m", "version": "1"})],
                at=start + timedelta(minutes=i),
            )
            # An unrelated series never opens anything.
            writer.write(
                [MetricPoint("drift/share", 0.0, {"model": "other", "version": "1"})],
                at=start + timedelta(minutes=i),
            )
        evaluator.drain()
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    evaluator.close()
    assert [p["incident"]["state"] for _, p in received] == ["open", "closed"]
    opened, closed = (p["incident"] for _, p in received)
    assert received[0][1]["version"] == "1.2"
    assert opened["incident_id"] == closed["incident_id"]
    assert opened["policy_name"] == "model-drift"
    assert opened["metric"]["type"] == "custom.googleapis.com/warden/drift/share"
    assert opened["metric"]["labels"] == {"model": "m", "version": "1"}
    assert isinstance(opened["started_at"], int)
    assert opened["ended_at"] is None
    assert closed["ended_at"] - opened["started_at"] == 120  # opened at 0.7, closed at 0.1
    assert opened["severity"] == "warning"  # the documented spelling: lower case
    auth = received[0][0]["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == "monitoring:s3cret"


# The documented webhook fields (tests/incidents.py, [DOC]): the stand-in may send nothing else.
DOCUMENTED_FIELDS = {
    "incident_id", "scoping_project_id", "scoping_project_number", "url", "severity",
    "started_at", "ended_at", "state", "summary", "apigee_url", "observed_value", "resource",
    "resource_type_display_name", "resource_id", "resource_display_name", "resource_name",
    "metric", "metadata", "policy_name", "policy_user_labels", "documentation", "condition",
    "condition_name", "threshold_value",
}  # fmt: skip


def _shape(value):
    """Types all the way down, with dict keys: what two payloads must share to look alike."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (type(value).__name__)
    )


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
@pytest.mark.parametrize("state", ["open", "closed"])
def test_the_stand_in_sends_the_documented_threshold_shape(severity: str, state: str) -> None:
    """Held to Google's documented example (tests/incidents.py), never the other way round."""
    policy = AlertPolicy(name="model-drift", metric="drift/share", threshold=0.5, severity=severity)
    sent = incident_payload(
        policy,
        project="warden-test",
        incident_id="0.abc",
        state=state,
        started_at=1_780_000_000,
        ended_at=1_780_000_600 if state == "closed" else None,
        value=0.7,
        metric_labels={"model": "m", "version": "1"},
        resource_type="global",
        resource_labels={"project_id": "warden-test"},
    )
    assert set(sent) == {"incident", "version"}
    assert sent["version"] == "1.2"
    inc = sent["incident"]
    assert set(inc) <= DOCUMENTED_FIELDS, set(inc) - DOCUMENTED_FIELDS
    documented = incidents.DOCUMENTED_EXAMPLE["incident"]

    def string_map(value) -> bool:  # the documented {string: string} label maps
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())

    for key in set(inc) & set(documented):
        want, got = documented[key], inc[key]
        if key == "ended_at" and got is None:
            continue  # null while open ([DOC])
        if key == "policy_user_labels":
            assert string_map(got)
        elif key == "condition":
            assert set(got) == set(want)
            assert set(got["conditionThreshold"]) <= set(want["conditionThreshold"])
            for sub, value in got["conditionThreshold"].items():
                assert _shape(value) == _shape(want["conditionThreshold"][sub]), sub
        elif isinstance(want, dict):  # resource, metric, metadata, documentation
            assert set(got) <= set(want), (key, set(got) - set(want))
            for sub, value in got.items():
                if "labels" in sub:
                    assert string_map(value), (key, sub)
                else:
                    assert _shape(value) == _shape(want[sub]), (key, sub)
        else:
            assert _shape(got) == _shape(want), (key, got, want)
    assert inc["severity"] == {"info": "no severity"}.get(severity, severity)
    assert inc["state"] == state
    assert inc["condition"]["conditionThreshold"]["comparison"] in (
        "COMPARISON_GT",
        "COMPARISON_LT",
    )
    # And what it sends routes like what Google sends.
    alert = alert_from_incident(sent, received_at=1_780_000_000)
    assert alert.labels["condition_type"] == "threshold"
    assert alert.labels["severity"] == severity
    assert alert.status == ("firing" if state == "open" else "resolved")


def test_the_pub_sub_channel_publishes_the_same_json(topic_sink) -> None:
    """A Pub/Sub notification channel's message data is the webhook's body ([PUBSUB])."""
    topic_id, _, pull = topic_sink("incidents")
    policy = AlertPolicy(name="model-drift", metric="drift/share", threshold=0.5)
    evaluator = PolicyEvaluator(
        [policy], project="warden-test", topic=f"projects/warden-test/topics/{topic_id}"
    )
    try:
        for at, value in ((1_780_000_000, 0.9), (1_780_000_060, 0.1)):
            evaluator.observe(
                "custom.googleapis.com/warden/drift/share",
                {"model": "m", "version": "1"},
                "global",
                {"project_id": "warden-test"},
                at * 1_000_000_000,
                value,
            )
        got = pull(want=2, timeout=30)
        deadline = time.monotonic() + 10
        while len(evaluator.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the sender records a delivery just after the publish returns
    finally:
        evaluator.close()
    assert sorted(p["incident"]["state"] for _, p in got) == ["closed", "open"]
    published = sorted(json.dumps(p, sort_keys=True) for _, p in got)
    assert published == sorted(json.dumps(p, sort_keys=True) for p, _ in evaluator.sent)
    assert all(status == 200 for _, status in evaluator.sent)
    with pytest.raises(ValueError, match="exactly one notification channel"):
        PolicyEvaluator([policy], project="p", url="http://x", topic="projects/p/topics/t")
