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

from warden.clients import Clients
from warden.config import AlertPolicy
from warden.metrics import MetricPoint, from_clients
from warden.settings import Settings
from warden_local.monitoring import MonitoringStandIn
from warden_local.policies import PolicyEvaluator


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
    assert opened["severity"] == "Warning"
    auth = received[0][0]["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == "monitoring:s3cret"
