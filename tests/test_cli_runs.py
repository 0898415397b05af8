"""Runs you can see: ``warden runs``, ``retrain --wait`` and ``monitor --wait`` against the
storage and Pub/Sub emulators, with the real functions (functions-framework apps) taking the
requests the CLI publishes; the ``failed`` event's alert, and one failure paging once."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from functions_framework import create_app

import incidents
from events import binary_headers, envelope
from warden.alerts import alert_from_model_event
from warden.alerts.inputs import ERROR_SUMMARY_MAX
from warden.alerts.router import incident_alerts, route
from warden.cli.main import main
from warden.cli.runs import EXIT_RUN_FAILED, EXIT_WAIT_TIMEOUT, request_topic
from warden.errors import ConfigError
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.settings import Settings, operator_identity
from warden.store.runs import RunLedger
from warden.telemetry.events import ERROR_MAX, EventPublisher

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "warden-test"
MODEL = "breast-cancer-risk"
AS_OF = "2026-11-20"
OPERATOR = "oncall@example.com"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class Topics:
    """The deployment's three topics under a fresh prefix (Terraform's naming), each with a pull
    subscription of the same name."""

    def __init__(self, prefix: str) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.ids = {k: f"{prefix}-{k}" for k in ("retrain-requests", "monitor-requests")}
        self.ids["model-events"] = f"{prefix}-model-events"
        for topic_id in self.ids.values():
            topic = self.publisher.create_topic(name=self.publisher.topic_path(PROJECT, topic_id))
            self.subscriber.create_subscription(name=self.sub(topic_id), topic=topic.name)

    def sub(self, topic_id: str) -> str:
        return self.subscriber.subscription_path(PROJECT, topic_id)

    def pull(self, topic: str, want: int = 1, timeout: float = 20.0) -> list[Any]:
        """Messages on ``topic`` ("model-events", ...; acknowledged) until ``want`` arrived or
        ``timeout``."""
        import time

        topic_id = self.ids[topic]
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            resp = self.subscriber.pull(subscription=self.sub(topic_id), max_messages=50, timeout=5)
            got += [m.message for m in resp.received_messages]
            if resp.received_messages:
                self.subscriber.acknowledge(
                    subscription=self.sub(topic_id),
                    ack_ids=[m.ack_id for m in resp.received_messages],
                )
        return got


class Function:
    """Stands where Pub/Sub's push subscription and the deployed function would: pulls the
    requests on a topic and posts each, as the Eventarc-shaped binary CloudEvent Pub/Sub sends,
    to the real function (functions-framework's app); acknowledges on 2xx, as push does."""

    def __init__(self, topics: Topics, topic_id: str, function: str) -> None:
        source = ROOT / "functions" / function / "main.py"
        self.client = create_app(function, str(source), "cloudevent").test_client()
        self.topics, self.sub = topics, topics.sub(topic_id)
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from google.api_core.exceptions import GoogleAPICallError, RetryError

        subscriber = self.topics.subscriber
        while not self.stop.is_set():
            try:
                resp = subscriber.pull(subscription=self.sub, max_messages=10, timeout=2)
            except (GoogleAPICallError, RetryError):
                continue  # nothing to pull within the deadline
            for received in resp.received_messages:
                m = received.message
                body = envelope(
                    m.data,
                    attributes=dict(m.attributes),
                    message_id=m.message_id,
                    publish_time=m.publish_time,
                )
                answer = self.client.post("/", data=json.dumps(body), headers=binary_headers(body))
                self.statuses.append(answer.status_code)
                if answer.status_code < 300:
                    subscriber.acknowledge(subscription=self.sub, ack_ids=[received.ack_id])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def deployment(pubsub_emulator, seed, make_runtime, bucket_names, monkeypatch):
    """Data for MODEL, the topics, the functions' runtime (installed: what their entry points
    use) and the CLI's environment, pointing at the same buckets and topics."""
    seed(days=14, models=(MODEL,))
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    rt = make_runtime(
        project=PROJECT,
        publisher=topics.publisher,
        events_topic=topics.ids["model-events"],
        retrain_topic=topics.ids["retrain-requests"],
    )
    for key, value in {
        "WARDEN_PROJECT": PROJECT,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_CONFIG": str(ROOT / "warden.yaml"),
        "WARDEN_RETRAIN_TOPIC": topics.ids["retrain-requests"],
        "WARDEN_EVENTS_TOPIC": topics.ids["model-events"],
        "WARDEN_METRICS": "off",
        "CLOUDSDK_CORE_ACCOUNT": OPERATOR,
    }.items():
        monkeypatch.setenv(key, value)
    rt.topics = topics
    return rt


@pytest.fixture
def function(deployment) -> Iterator[Any]:
    """``function(kind)`` starts that job's function on its request topic."""
    started: list[Function] = []
    names = {"retrain": "retrain_model", "monitor": "monitor_model"}

    def start(kind: str) -> Function:
        topic_id = deployment.topics.ids[f"{kind}-requests"]
        started.append(Function(deployment.topics, topic_id, names[kind]))
        return started[-1]

    yield start
    for f in started:
        f.close()


# -- retrain --wait ------------------------------------------------------------------------------


def test_retrain_wait_follows_the_run_to_done_and_runs_lists_it(deployment, function) -> None:
    function("retrain")
    out = invoke("--json", "retrain", MODEL, "--as-of", AS_OF, "--wait", "--timeout", "300")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    # The key the CLI followed is the one the function derived from the same message.
    assert data["key"] == f"retrain:{MODEL}:message:{data['message_id']}"
    run = data["run"]
    assert (run["status"], run["version"], run["promoted"]) == ("done", 1, True)
    assert run["started_at"]
    assert run["finished_at"]
    assert run["duration_s"] >= 0
    assert f"  … retrain {MODEL}: " in out.stderr  # progress goes to stderr: stdout is JSON
    assert deployment.registry().alias(MODEL).version == 1

    text = invoke("runs", MODEL)
    assert text.exit_code == 0
    line = text.stdout.strip()
    assert " retrain " in line
    assert " done " in line
    assert " v1 " in line
    assert "promoted" in line
    rows = json.loads(invoke("--json", "runs", MODEL, "--kind", "retrain").stdout)
    assert [(r["key"], r["status"], r["version"]) for r in rows] == [(data["key"], "done", 1)]
    assert json.loads(invoke("--json", "runs", MODEL, "--kind", "monitor").stdout) == []


def test_retrain_wait_reports_a_failed_run_with_its_error(deployment, function) -> None:
    function("retrain")
    out = invoke("--json", "retrain", MODEL, "--as-of", "2020-01-01", "--wait", "--timeout", "300")
    assert out.exit_code == EXIT_RUN_FAILED, out.output
    assert "retrain of breast-cancer-risk failed (DataError)" in out.stderr
    assert "no dt= partitions" in out.stderr  # the error text itself, not just "failed"
    run = json.loads(out.stdout)["run"]
    assert run["status"] == "failed"
    assert "no dt= partitions" in run["error"]

    rows = json.loads(invoke("--json", "runs", MODEL).stdout)
    assert [(r["status"], r["error_type"]) for r in rows] == [("failed", "DataError")]
    assert rows[0]["duration_s"] is not None  # started_at kept in the finished marker
    assert "DataError: " in invoke("runs", MODEL).stdout

    # The failed event carries the error, and so does the alert the router makes of it.
    events = [json.loads(m.data) for m in deployment.topics.pull("model-events")]
    failed = next(e for e in events if e["kind"] == "failed")
    assert failed["job"] == "retrain"
    assert "no dt= partitions" in failed["error"]
    alert = alert_from_model_event(failed, {"model": MODEL, "kind": "failed"})
    assert alert.labels["job"] == "retrain"
    assert alert.annotations["summary"].startswith(f"{MODEL}: retrain failed: ")
    assert "no dt= partitions" in alert.annotations["summary"]


def test_wait_gives_up_at_the_timeout_and_says_where_to_look(deployment) -> None:
    # No function takes the request: it stays queued; --timeout 0 looks once and gives up.
    out = invoke("--json", "retrain", MODEL, "--wait", "--timeout", "0")
    assert out.exit_code == EXIT_WAIT_TIMEOUT, out.output
    assert "still queued" in out.stderr
    assert f"warden runs {MODEL}" in out.stderr
    published = deployment.topics.pull("retrain-requests")
    assert [json.loads(m.data) for m in published] == [
        {"schema": 1, "model": MODEL, "reason": "manual"}
    ]
    assert published[0].message_id == json.loads(out.stdout)["message_id"]
    assert invoke("runs", MODEL).stdout.strip() == f"{MODEL}: no runs recorded"


def test_retrain_without_wait_only_publishes(deployment) -> None:
    out = invoke("retrain", MODEL)
    assert out.exit_code == 0, out.output
    assert "retrain requested" in out.stdout
    assert f"warden runs {MODEL}" in out.stdout
    assert len(deployment.topics.pull("retrain-requests")) == 1
    bad = CliRunner().invoke(main, ["retrain", MODEL, "--as-of", "20.11.2026"])
    assert bad.exit_code == 2
    assert "YYYY-MM-DD" in bad.output


# -- monitor [--wait] ----------------------------------------------------------------------------


def test_monitor_publishes_on_the_monitor_topic_and_waits_for_the_run(deployment, function):
    retrain(
        RunRequest(
            model=MODEL, reason="manual", key="r1", message_id="r1", as_of=date(2026, 11, 20)
        ),
        deployment,
    )
    function("monitor")
    out = invoke("--json", "monitor", MODEL, "--as-of", AS_OF, "--wait", "--timeout", "300")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["topic"].endswith(deployment.topics.ids["monitor-requests"])
    assert data["key"] == f"monitor:{MODEL}:message:{data['message_id']}"
    assert (data["run"]["status"], data["run"]["version"]) == ("done", 1)
    kinds = {r["kind"]: r["status"] for r in json.loads(invoke("--json", "runs", MODEL).stdout)}
    assert kinds == {"monitor": "done", "retrain": "done"}
    [monitor_line] = [
        line for line in invoke("runs", MODEL).stdout.splitlines() if " monitor " in line
    ]
    assert " v1 " in monitor_line
    assert "drift" in monitor_line  # "no drift" or "drift", from the marker's result


def test_the_monitor_topic_follows_the_retrain_topic_prefix() -> None:
    assert request_topic(Settings(retrain_topic="p-retrain-requests"), "monitor") == (
        "p-monitor-requests"
    )
    assert request_topic(Settings(retrain_topic="retrain-requests"), "monitor") == (
        "monitor-requests"
    )
    with pytest.raises(ConfigError, match="pass --topic"):
        request_topic(Settings(retrain_topic="my-own-topic"), "monitor")


# -- the ledger's listing ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def test_finished_markers_keep_started_at_and_recent_is_newest_first(
    storage_client, bucket_names
) -> None:
    clock = Clock()
    ledger = RunLedger(storage_client, bucket_names["registry"], clock=clock)
    plan = [("retrain", "done", 90), ("monitor", "failed", 30), ("housekeeping", "done", 12)]
    for i, (kind, status, seconds) in enumerate(plan):
        claim = ledger.begin(MODEL, kind, f"k{i}", f"run{i}")
        clock.advance(seconds=seconds)
        assert ledger.finish(claim, status, {"error": "boom"} if status == "failed" else {})
        clock.advance(hours=1)
    ledger.begin(MODEL, "retrain", "k3", "run3")  # still running
    ledger.begin("customer-segments", "retrain", "other", "run9")  # another model's

    rows = ledger.recent(MODEL)
    assert [r["key"] for r in rows] == ["k3", "k2", "k1", "k0"]
    for row, (_, status, seconds) in zip(rows[1:], reversed(plan), strict=True):
        started = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00"))
        finished = datetime.fromisoformat(row["finished_at"].replace("Z", "+00:00"))
        assert (row["status"], (finished - started).total_seconds()) == (status, seconds)
    assert [r["key"] for r in ledger.recent(MODEL, limit=2)] == ["k3", "k2"]
    assert [r["key"] for r in ledger.recent(MODEL, kind="retrain")] == ["k3", "k0"]
    assert ledger.marker(MODEL, "monitor", "k1")["result"] == {"error": "boom"}
    assert ledger.marker(MODEL, "monitor", "never") is None


# -- the failed event and its alert --------------------------------------------------------------


def test_failed_events_always_carry_a_bounded_error(deployment) -> None:
    events = EventPublisher(
        lambda: deployment.topics.publisher, PROJECT, deployment.topics.ids["model-events"]
    )
    events.publish("failed", MODEL, job="monitor", run_id="r1")
    events.publish("failed", MODEL, job="retrain", error="x" * (ERROR_MAX + 100))
    got = [json.loads(m.data) for m in deployment.topics.pull("model-events", want=2)]
    errors = sorted((e["job"], e["error"]) for e in got)
    assert errors == [("monitor", "no error text given"), ("retrain", "x" * ERROR_MAX)]


def test_the_failed_alert_shows_the_error_bounded_on_one_line() -> None:
    at = "2026-11-20T10:00:00+00:00"
    error = "DataError: no rows\nin window " + "y" * 2000
    payload = {"schema": 1, "kind": "failed", "model": MODEL, "at": at, "job": "monitor"}
    alert = alert_from_model_event({**payload, "error": error, "run_id": "abc"}, {})
    assert alert.labels == {
        "alertname": "ModelFailed",
        "model": MODEL,
        "kind": "failed",
        "severity": "error",
        "job": "monitor",
    }
    shown = alert.annotations["error"]
    assert len(shown) == ERROR_SUMMARY_MAX
    assert shown.endswith("…")
    assert shown.startswith("DataError: no rows in window yyy")
    assert alert.annotations["summary"] == f"{MODEL}: monitor failed: {shown}"
    assert alert.annotations["run_id"] == "abc"
    retrain_alert = alert_from_model_event({**payload, "job": "retrain", "error": "e"}, {})
    assert retrain_alert.fingerprint != alert.fingerprint  # two jobs failing: two alerts
    bare = alert_from_model_event({k: v for k, v in payload.items() if k != "job"}, {})
    assert bare.annotations["summary"] == f"{MODEL}: run failed: no error text given"


# -- one failure pages once ----------------------------------------------------------------------


@pytest.fixture
def receivers(monkeypatch) -> Iterator[list[tuple[str, dict]]]:
    """The real warden.yaml's Slack and audit receivers, pointed at a capture server."""
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("WARDEN_SLACK_WEBHOOK_URL", f"{base}/slack")
    monkeypatch.setenv("WARDEN_AUDIT_WEBHOOK_URL", f"{base}/audit")
    monkeypatch.setenv("WARDEN_AUDIT_WEBHOOK_SECRET", "s3cret")
    yield received
    server.shutdown()
    server.server_close()


def run_failed_incident(started_at: float, state: str = "open") -> dict:
    """The run-failed policy's incident for MODEL's retrain (Terraform: a threshold on
    run/success < 1, per series, so the metric labels model and job come along)."""
    payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
    inc = payload["incident"]
    inc.update(
        incident_id=f"0.runfailed{int(started_at)}",
        severity="Error",
        started_at=int(started_at),
        policy_name="run-failed",
        condition_name="run/success < 1",
        summary=f"run/success for global with metric labels {{job=retrain, model={MODEL}}} is "
        "below the threshold of 1.000 with a value of 0.000.",
    )
    inc["policy_user_labels"] = {"warden_policy": "run-failed", "warden_prefix": "warden"}
    inc["metric"] = {
        "type": "custom.googleapis.com/warden/run/success",
        "displayName": "run/success",
        "labels": {"job": "retrain", "model": MODEL},
    }
    return incidents.closed(payload) if state == "closed" else payload


def _slack(received: list[tuple[str, dict]]) -> list[str]:
    return [json.dumps(body) for path, body in received if path == "/slack"]


def test_one_failed_retrain_pages_once(make_runtime, receivers) -> None:
    rt = make_runtime(install=False)
    t0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC).timestamp()
    event = {
        "schema": 1,
        "kind": "failed",
        "model": MODEL,
        "at": datetime.fromtimestamp(t0, UTC).isoformat(),
        "job": "retrain",
        "error": "breast-cancer/: no dt= partitions in the window 2019-11-03..2020-01-01",
        "run_id": "run-1",
    }
    # The event arrives at once; the metric policy's incident minutes later, then closes.
    route(rt, [alert_from_model_event(event, {"model": MODEL, "kind": "failed"})], now=t0)
    route(rt, [], now=t0 + 31)
    route(rt, incident_alerts(rt, run_failed_incident(t0 + 90), door="webhook"), now=t0 + 120)
    for later in (151, 400, 800):
        route(rt, [], now=t0 + later)
    closed = run_failed_incident(t0 + 90, state="closed")
    route(rt, incident_alerts(rt, closed, door="webhook"), now=t0 + 900)
    for later in (931, 1300):
        route(rt, [], now=t0 + later)

    pages = _slack(receivers)
    assert len(pages) == 1, pages
    assert "ModelFailed" in pages[0]
    assert "no dt= partitions" in pages[0]


def test_a_lost_failed_event_still_pages_through_the_metric_policy(make_runtime, receivers):
    rt = make_runtime(install=False)
    t0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC).timestamp()
    route(rt, incident_alerts(rt, run_failed_incident(t0), door="webhook"), now=t0)
    route(rt, [], now=t0 + 31)
    pages = _slack(receivers)
    assert len(pages) == 1
    assert "run-failed" in pages[0]


# -- the operator -------------------------------------------------------------------------------


def test_operator_identity_reads_gcloud_then_adc_then_the_login(tmp_path) -> None:
    home = tmp_path / "home"
    gcloud = home / ".config" / "gcloud"
    (gcloud / "configurations").mkdir(parents=True)
    (gcloud / "active_config").write_text("work\n")
    (gcloud / "configurations" / "config_work").write_text("[core]\naccount = bob@example.com\n")
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "ci@p.iam.gsa.com"}))
    user_adc = tmp_path / "adc.json"
    user_adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))

    def who(**env: str) -> str:
        return operator_identity(env, home=home)

    assert who(CLOUDSDK_CORE_ACCOUNT="amy@example.com", USER="amy") == "amy@example.com"
    assert who(GOOGLE_APPLICATION_CREDENTIALS=str(key), USER="amy") == "ci@p.iam.gsa.com"
    assert who(GOOGLE_APPLICATION_CREDENTIALS=str(user_adc), USER="amy") == "bob@example.com"
    assert who(CLOUDSDK_ACTIVE_CONFIG_NAME="none", USER="amy") == "amy"
    empty = tmp_path / "empty"
    assert operator_identity({"LOGNAME": "carol"}, home=empty) == "carol"
    assert operator_identity({"CLOUDSDK_CONFIG": str(gcloud)}, home=empty) == "bob@example.com"
