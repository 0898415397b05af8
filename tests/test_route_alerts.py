"""route_alerts over HTTP (Cloud Monitoring 1.2 webhooks) and route_alert_events over Pub/Sub
CloudEvents, with real fake-gcs state and a capture endpoint standing in for the receivers."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from functions_framework import create_app

import incidents
from events import binary_headers, envelope
from warden.alerts.signing import verify
from warden.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "t0ken-for-tests"
SECRET = "hmac-secret-for-tests"
SOURCE = ROOT / "functions/route_alerts/main.py"


@pytest.fixture
def capture() -> Iterator[tuple[str, list]]:
    received: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def alerting(group_wait: str = "0s", group_interval: str = "1s") -> dict:
    return {
        "receivers": [
            {
                "name": "oncall",
                "webhook": {"url_env": "TEST_HOOK_URL", "secret_env": "TEST_HOOK_SECRET"},
            },
            {"name": "quiet", "log": {}},
        ],
        "route": {
            "receiver": "oncall",
            "group_by": ["alertname", "model"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": "4h",
            "routes": [{"matchers": ['severity = "info"'], "receiver": "quiet"}],
        },
    }


@pytest.fixture
def rt(make_runtime, capture, monkeypatch):
    url, _ = capture
    monkeypatch.setenv("WARDEN_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_HOOK_URL", url)
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    built = make_runtime()
    raw = copy.deepcopy(yaml.safe_load((ROOT / "warden.yaml").read_text()))
    raw["alerting"] = alerting()
    built._config = parse_config(raw)
    return built


@pytest.fixture
def client(rt):
    return create_app("route_alerts", str(SOURCE), "http").test_client()


class RouterClock:
    """The router's "now", held still and moved by the test: ``warden.alerts.router`` reads
    ``time.time()`` (the function entry points pass no ``now=``), so group_wait and
    group_interval pass without sleeping, and nothing depends on how fast the machine is."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def router_clock(monkeypatch) -> RouterClock:
    clock = RouterClock()
    monkeypatch.setattr("warden.alerts.router.time", clock)
    return clock


def incident(state: str = "open", incident_id: str = "inc-1", model: str = "m") -> dict:
    """A documented metric-threshold notification (tests/incidents.py), for one model."""
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    inc = payload["incident"]
    inc["incident_id"] = incident_id
    inc["metric"]["labels"] = {"model": model, "version": "3"}
    return incidents.closed(payload) if state == "closed" else payload


def post(client, payload, *, token: str | None = TOKEN, **headers):
    query = f"?auth_token={token}" if token is not None else ""
    return client.post(
        f"/{query}",
        data=json.dumps(payload),
        headers={"Content-Type": "application/json", **headers},
    )


def notifications(received) -> list[dict]:
    out = []
    for headers, body in received:
        assert verify(SECRET, body, headers["X-Warden-Signature"])  # fresh: within 5 minutes
        out.append(json.loads(body))
    return out


def flush() -> None:
    """A Scheduler flush tick through the Pub/Sub entry point."""
    tick = create_app("route_alert_events", str(SOURCE), "cloudevent").test_client()
    body = envelope({"schema": 1, "kind": "flush"})
    assert tick.post("/", data=json.dumps(body), headers=binary_headers(body)).status_code == 200


def test_credentials_are_required_and_checked(client) -> None:
    assert post(client, incident(), token=None).status_code == 401
    assert post(client, incident(), token="wrong").status_code == 401
    basic = base64.b64encode(f"monitoring:{TOKEN}".encode()).decode()
    ok = post(client, incident(), token=None, Authorization=f"Basic {basic}")
    assert ok.status_code == 200
    bad = base64.b64encode(b"monitoring:nope").decode()
    assert post(client, incident(), token=None, Authorization=f"Basic {bad}").status_code == 401


def test_open_duplicates_and_close_give_one_firing_and_one_resolved(
    client, capture, router_clock
) -> None:
    _, received = capture
    for _ in range(100):
        assert post(client, incident("open")).status_code == 200
        router_clock.advance(0.005)  # redeliveries over half a second
    assert len(received) == 1  # group_wait 0s: the first delivery notified, the rest deduped
    assert post(client, incident("closed")).status_code == 200
    flush()
    assert len(received) == 1  # the resolve is a change: it waits for group_interval (1s here)
    router_clock.advance(1)
    flush()
    flush()
    sent = notifications(received)
    assert len(sent) == 2, sent
    text = [json.dumps(n) for n in sent]
    assert "firing" in text[0]
    assert "resolved" in text[1]


def test_model_events_arrive_through_pub_sub(rt, capture) -> None:
    _, received = capture
    app = create_app("route_alert_events", str(SOURCE), "cloudevent").test_client()
    event = {
        "schema": 1,
        "kind": "drift_detected",
        "model": "customer-segments",
        "version": 2,
        "at": datetime.now(UTC).isoformat(),
        "drift_share": 0.8,
    }
    body = envelope(event, attributes={"model": "customer-segments", "kind": "drift_detected"})
    assert app.post("/", data=json.dumps(body), headers=binary_headers(body)).status_code == 200
    assert app.post("/", data=json.dumps(body), headers=binary_headers(body)).status_code == 200
    sent = notifications(received)
    assert len(sent) == 1
    assert "customer-segments" in json.dumps(sent[0])
    bad = envelope(b"not json")
    assert app.post("/", data=json.dumps(bad), headers=binary_headers(bad)).status_code == 200
    assert len(received) == 1


def test_fifty_alerts_within_group_wait_make_one_notification(
    rt, client, capture, router_clock
) -> None:
    raw = copy.deepcopy(rt.config.model_dump(by_alias=True))
    raw["alerting"] = alerting(group_wait="2s")
    rt._config = parse_config(raw)
    _, received = capture
    for i in range(50):
        assert post(client, incident(incident_id=f"inc-{i}")).status_code == 200
        router_clock.advance(0.01)  # fifty alerts over half a second
    assert received == []  # still inside group_wait
    flush()
    assert received == []  # a flush tick inside group_wait sends nothing either
    router_clock.advance(2)
    flush()
    sent = notifications(received)
    assert len(sent) == 1
    assert all(f"inc-{i}" in json.dumps(sent[0]) for i in range(50))


def _reconfigure(rt, **alerting_overrides) -> None:
    raw = copy.deepcopy(rt.config.model_dump(by_alias=True))
    raw["alerting"] = {**alerting(group_interval="0s"), **alerting_overrides}
    rt._config = parse_config(raw)


def push_body(payload: dict, message_id: str) -> dict:
    """What a Pub/Sub push subscription POSTs for one message of a Pub/Sub notification channel
    (the same JSON as the webhook's body, base64 in message.data)."""
    return {
        "message": {
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "messageId": message_id,
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": "projects/warden-test/subscriptions/warden-route-alert-events-push",
    }


def publish(payload: dict, message_id: str) -> None:
    """One delivery to route_alert_events as deployed: the raw push body, turned into a
    CloudEvent by functions-framework."""
    app = create_app("route_alert_events", str(SOURCE), "cloudevent").test_client()
    resp = app.post("/", json=push_body(payload, message_id))
    assert resp.status_code == 200, resp.get_data(as_text=True)


@pytest.mark.parametrize("kind", sorted(incidents.BY_KIND))
def test_each_documented_kind_routes_the_same_through_webhook_and_pub_sub(
    kind, rt, client, capture, make_runtime, storage_client
) -> None:
    payload, condition_type = incidents.BY_KIND[kind]
    _, received = capture
    _reconfigure(rt)
    for p in (payload, incidents.closed(payload)):
        resp = post(client, p)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["routed"] is True
    via_webhook = notifications(received)
    received.clear()

    # The same notifications on fresh router state, through the Pub/Sub channel's door.
    other = f"registry-{uuid.uuid4().hex[:10]}"
    storage_client.create_bucket(other)
    config = rt._config
    rt = make_runtime(registry_bucket=other)
    rt._config = config
    for i, p in enumerate((payload, incidents.closed(payload))):
        publish(p, message_id=f"{kind}-{i}")
    via_pubsub = notifications(received)

    assert via_pubsub == via_webhook
    assert [n["status"] for n in via_webhook] == ["firing", "resolved"]
    alert = via_webhook[0]["alerts"][0]
    assert alert["labels"]["alertname"] == payload["incident"]["policy_name"]
    assert alert["labels"]["condition_type"] == condition_type
    assert alert["labels"]["incident_id"] == payload["incident"]["incident_id"]
    assert alert["annotations"]["summary"] == payload["incident"]["summary"]
    assert via_webhook[0]["receiver"] == "oncall"


def test_documented_spellings_and_cases_are_routed(client, rt, capture) -> None:
    _, received = capture
    _reconfigure(rt)
    documented = copy.deepcopy(incidents.DOCUMENTED_EXAMPLE)  # "no severity", state "closed"
    opened = incidents.opened(documented)
    opened["incident"]["state"] = "OPEN"
    opened["incident"]["unknown_new_field"] = {"nested": [1, "two"]}
    opened["yet_another"] = True
    assert post(client, opened).status_code == 200
    documented["incident"]["state"] = "Closed"
    assert post(client, documented).status_code == 200
    sent = notifications(received)
    assert [n["status"] for n in sent] == ["firing", "resolved"]
    labels = sent[0]["alerts"][0]["labels"]
    assert labels["severity"] == "warning"  # "no severity" → alerting.incidents.default_severity
    assert labels["alertname"] == "Monitor-Project-Cluster"
    assert labels["user_label_1"] == "important label"


def test_the_console_test_notification_is_acknowledged_and_logged(
    client, rt, capture, caplog
) -> None:
    _, received = capture
    with caplog.at_level("INFO"):
        resp = post(client, incidents.TEST_NOTIFICATION)
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "test notification acknowledged", "routed": False}
    assert any("test notification acknowledged" in r.getMessage() for r in caplog.records)
    publish(incidents.TEST_NOTIFICATION, message_id="test-1")  # the Pub/Sub door too
    assert received == []

    _reconfigure(rt, incidents={"route_test_notifications": True})
    resp = post(client, incidents.TEST_NOTIFICATION)
    assert resp.get_json()["routed"] is True
    (sent,) = notifications(received)
    assert sent["alerts"][0]["labels"]["test"] == "true"


@pytest.mark.parametrize(
    ("case", "body", "token", "status", "reason"),
    [
        ("no credentials", incidents.THRESHOLD_OPEN, None, 401, "credentials"),
        ("wrong token", incidents.THRESHOLD_OPEN, "wrong", 401, "credentials"),
        ("not JSON", b"<html>not json</html>", TOKEN, 400, "not valid JSON"),
        ("not UTF-8", b"\xff\xfe{", TOKEN, 400, "not UTF-8"),
        ("no incident", {"version": "1.2"}, TOKEN, 400, "no 'incident' object"),
        ("incident not an object", {"incident": [1]}, TOKEN, 400, "incident must be an object"),
        (
            "no incident_id",
            {"version": "1.2", "incident": {"state": "open"}},
            TOKEN,
            400,
            "incident.incident_id",
        ),
        (
            "oversized",
            {"incident": {"incident_id": "x", "summary": "x" * 300_000}},
            TOKEN,
            413,
            "larger than",
        ),
    ],
)
def test_refusals_name_the_problem_and_are_logged_at_error(
    client, rt, capture, caplog, case, body, token, status, reason
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = f"?auth_token={token}" if token is not None else ""
    with caplog.at_level("INFO"):
        resp = client.post(f"/{query}", data=data, headers={"Content-Type": "application/json"})
    assert resp.status_code == status
    assert reason in resp.get_json()["error"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(reason in r.getMessage() and str(status) in r.getMessage() for r in errors)
    assert capture[1] == []


def test_content_type_does_not_decide(client, rt, capture) -> None:
    _reconfigure(rt)
    for ctype in ("text/plain", "application/json; charset=UTF-8", "application/octet-stream"):
        payload = incident(incident_id=f"ct-{ctype}")
        resp = client.post(
            f"/?auth_token={TOKEN}", data=json.dumps(payload), headers={"Content-Type": ctype}
        )
        assert resp.status_code == 200, resp.get_json()


def test_a_refused_pub_sub_notification_is_acknowledged_and_logged(rt, capture, caplog) -> None:
    with caplog.at_level("INFO"):
        publish({"version": "1.2", "incident": {"state": "open"}}, message_id="bad-1")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("incident.incident_id" in r.getMessage() for r in errors)
    assert capture[1] == []


def test_every_documented_payload_over_a_real_http_server(tmp_path, capture, bucket_names) -> None:
    """The same payloads over a socket to a functions-framework process (real Content-Length,
    and chunked bodies without one), not through the WSGI test client — authenticated as the
    deployed webhook_basicauth channel does, and, for older channels, by ``?auth_token=``. No
    secret, right or wrong, appears in any log line: routed, refused or failing requests."""
    import os

    import requests

    from warden_local.policies import BASIC_AUTH_USER
    from warden_local.process import FunctionServer

    url, received = capture
    raw = copy.deepcopy(yaml.safe_load((ROOT / "warden.yaml").read_text()))
    raw["alerting"] = alerting(group_interval="0s")
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {
        **os.environ,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_ALERT_BUCKET": bucket_names["alerts"],
        "WARDEN_CONFIG": str(config),
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_METRICS": "off",
        "WARDEN_WEBHOOK_TOKEN": TOKEN,
        "TEST_HOOK_URL": url,
        "TEST_HOOK_SECRET": SECRET,
    }
    wrong = "wr0ng-s3cret-never-logged"
    # And an error path, served alongside: the alert state is unreachable (no such bucket).
    failing = {**env, "WARDEN_ALERT_BUCKET": f"missing-{bucket_names['alerts']}"}
    log, failing_log = tmp_path / "route_alerts.log", tmp_path / "route_alerts-failing.log"
    with (
        log.open("wb") as out,
        failing_log.open("wb") as failing_out,
        FunctionServer(SOURCE, "route_alerts", signature="http", env=env, log=out) as server,
        FunctionServer(
            SOURCE, "route_alerts", signature="http", env=failing, log=failing_out
        ) as broken,
    ):
        basic = {"auth": (BASIC_AUTH_USER, TOKEN), "timeout": 30}
        payloads = [p for p, _ in incidents.BY_KIND.values()]
        payloads += [incidents.closed(p) for p in payloads] + [incidents.TEST_NOTIFICATION]
        for i, payload in enumerate(payloads):
            body = json.dumps(payload).encode()
            if i % 2:  # chunked: no Content-Length at all
                resp = requests.post(server.url, data=iter([body[:100], body[100:]]), **basic)
            elif i % 3:
                resp = requests.post(server.url, data=body, **basic)
            else:  # a token in the query, as webhook_tokenauth channels send it
                resp = requests.post(f"{server.url}?auth_token={TOKEN}", data=body, timeout=30)
            assert resp.status_code == 200, (i, resp.text)
        refused = requests.post(f"{server.url}?auth_token={TOKEN}", data=b"{not json", timeout=30)
        assert refused.status_code == 400
        denied = [
            requests.post(f"{server.url}?auth_token={wrong}", json=payloads[0], timeout=30),
            requests.post(server.url, json=payloads[0], auth=(BASIC_AUTH_USER, wrong), timeout=30),
        ]
        assert [r.status_code for r in denied] == [401, 401]
        # functions-framework sets no request-line limit: the function refuses a huge URL itself.
        huge = requests.post(f"{server.url}?pad={'x' * 20_000}", json=payloads[0], **basic)
        assert huge.status_code == 414
        # The error path → 5xx, with a traceback.
        resp = requests.post(f"{broken.url}?auth_token={TOKEN}", json=payloads[0], timeout=30)
        assert resp.status_code >= 500
        # Both stopped at once: each waits out gunicorn's graceful stop (~2.5 s).
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda function: function.stop(), (server, broken)))
    sent = notifications(received)
    statuses = Counter((n["alerts"][0]["labels"]["alertname"], n["status"]) for n in sent)
    for payload, _ in incidents.BY_KIND.values():
        name = payload["incident"]["policy_name"]
        assert statuses[(name, "firing")] >= 1, name
        assert statuses[(name, "resolved")] >= 1, name
    text = "\n".join(path.read_text() for path in (log, failing_log))
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    # What terraform/monitoring.tf's router-refusals policy matches: severity>=ERROR, refused=true.
    assert any(
        r.get("severity") == "ERROR"
        and r.get("refused") is True
        and "not valid JSON" in r["message"]
        for r in lines
    )
    # The request URL is logged (so the check below is not vacuous), without its query.
    urls = {r["httpRequest"].get("requestUrl") for r in lines if r.get("httpRequest")}
    assert urls
    assert all(u and "?" not in u for u in urls), urls
    basic_header = base64.b64encode(f"{BASIC_AUTH_USER}:{TOKEN}".encode()).decode()
    for secret in (TOKEN, wrong, basic_header):
        assert secret not in text
