"""Serving alerts (warden.yaml ``serving:``): latency and error-rate policies on the serving
application's Cloud Run services, from the request metrics Cloud Run publishes.

Config validation; Terraform (the provider-free config module applied for real, the root module
read with python-hcl2, the provider schemas); and locally the Monitoring stand-in playing Cloud
Run, fed through the real client by warden_local.serving_metrics, opening incidents that the
real route_alerts function routes to a receiver.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from functions_framework import create_app
from google.api import metric_pb2
from google.api_core import exceptions as api_exceptions
from google.cloud import monitoring_v3

from stack_process import wait_for
from test_policies import DOCUMENTED_FIELDS
from test_route_alerts import SECRET, SOURCE, TOKEN, alerting, capture  # noqa: F401
from test_terraform import _anchors, _evaluate_config, _resources, _root
from warden.alerts import alert_from_incident
from warden.alerts.signing import verify
from warden.clients import Clients
from warden.config import ServingPolicy, WardenConfig, load_config, parse_config
from warden.errors import ConfigError
from warden.settings import Settings
from warden_local import tfschema
from warden_local.monitoring import MonitoringStandIn
from warden_local.policies import (
    SERVING_CONDITION,
    PolicyEvaluator,
    percentile,
    serving_incident_payload,
)
from warden_local.serving_metrics import ServingMetrics

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "terraform"


def _raw() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load((ROOT / "warden.yaml").read_text()))


def _with_serving(serving: Any) -> dict[str, Any]:
    raw = _raw()
    raw["serving"] = serving
    return raw


# --- config ---------------------------------------------------------------------------------------


def test_the_shipped_config_declares_both_policies_of_the_example_app() -> None:
    config = load_config(ROOT / "warden.yaml")
    assert config.serving is not None
    by_name = {p.name: p for p in config.serving_policies}
    assert set(by_name) == {"warden-example-app-latency", "warden-example-app-errors"}
    latency, errors = by_name["warden-example-app-latency"], by_name["warden-example-app-errors"]
    assert (latency.kind, latency.threshold, latency.duration_s) == ("latency", 500, 300)
    assert (errors.kind, errors.threshold, errors.severity) == ("errors", 0.05, "error")
    assert latency.breached(500.1)
    assert not latency.breached(500)  # COMPARISON_GT


def test_defaults_and_one_policy_per_block() -> None:
    config = parse_config(
        _with_serving(
            {
                "services": [
                    {"name": "risk-api", "errors": {"rate": 0.01}},
                    {"name": "a", "latency": {"p95_ms": 250}},
                ]
            }
        )
    )
    assert [p.model_dump() for p in config.serving_policies] == [
        {
            "name": "risk-api-errors",
            "kind": "errors",
            "service": "risk-api",
            "threshold": 0.01,
            "duration_s": 300,
            "severity": "error",
            "runbook": "docs/RUNBOOKS.md#serving-errors",
        },
        {
            "name": "a-latency",
            "kind": "latency",
            "service": "a",
            "threshold": 250.0,
            "duration_s": 300,
            "severity": "warning",
            "runbook": "docs/RUNBOOKS.md#serving-latency",
        },
    ]
    assert parse_config(_raw() | {"serving": None}).serving_policies == []


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({"services": []}, "serving.services: List should have at least 1 item"),
        ({}, "serving.services: Field required"),
        (
            {"services": [{"name": "risk-api"}]},
            "serving.services[0]: service 'risk-api' declares no policy",
        ),
        (
            {"services": [{"name": "Risk", "errors": {"rate": 0.1}}]},
            "serving.services[0].name: Cloud Run service names",
        ),
        ({"services": [{"name": "risk-", "errors": {"rate": 0.1}}]}, "serving.services[0].name"),
        ({"services": [{"name": "a" * 50, "errors": {"rate": 0.1}}]}, "serving.services[0].name"),
        ({"services": [{"name": "1api", "errors": {"rate": 0.1}}]}, "serving.services[0].name"),
        (
            {"services": [{"name": "a", "latency": {"p95_ms": 0}}]},
            "latency.p95_ms: Input should be greater than 0",
        ),
        (
            {"services": [{"name": "a", "latency": {"p95_ms": 4e6}}]},
            "latency.p95_ms: Input should be less than or equal",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 1}}]},
            "errors.rate: Input should be less than 1",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 0}}]},
            "errors.rate: Input should be greater than 0",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 0.1, "duration_s": 90}}]},
            "errors.duration_s: 90 is not a multiple of 60 seconds",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 0.1, "duration_s": 86_460}}]},
            "errors.duration_s: Input should be less than or equal",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 0.1, "severity": "page"}}]},
            "errors.severity",
        ),
        (
            {"services": [{"name": "a", "errors": {"rate": 0.1, "treshold": 1}}]},
            "errors.treshold: unknown key",
        ),
        ({"services": [{"name": "a", "p95_ms": 3}]}, "serving.services[0].p95_ms: unknown key"),
        (
            {
                "services": [
                    {"name": "a", "errors": {"rate": 0.1}},
                    {"name": "a", "latency": {"p95_ms": 9}},
                ]
            },
            "services declared twice: ['a']",
        ),
        (
            {"services": [{"name": "model", "errors": {"rate": 0.1}}], "extra": 1},
            "serving.extra: unknown key",
        ),
    ],
)
def test_bad_serving_blocks_are_refused_naming_the_key(serving: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with_serving(serving))
    assert message in str(info.value), str(info.value)


def test_a_serving_policy_may_not_take_an_alert_policy_name() -> None:
    raw = _with_serving({"services": [{"name": "model", "latency": {"p95_ms": 100}}]})
    raw["alert_policies"].append({"name": "model-latency", "metric": "drift/share", "threshold": 1})
    with pytest.raises(ConfigError, match=r"serving: .*\['model-latency'\] have the name"):
        parse_config(raw)


# --- Terraform ------------------------------------------------------------------------------------


def _tf_view(policy: ServingPolicy) -> dict[str, Any]:
    dumped = policy.model_dump()
    dumped.pop("name")
    return dumped


@pytest.fixture(scope="module")
def shipped() -> WardenConfig:
    return load_config(ROOT / "warden.yaml")


def test_the_config_module_derives_the_serving_policies_like_the_code(
    tmp_path: Path, shipped: WardenConfig
) -> None:
    variant = _with_serving(
        {
            "services": [
                {
                    "name": "risk-api",
                    "latency": {
                        "p95_ms": 750.5,
                        "duration_s": 0,
                        "severity": "critical",
                        "runbook": "docs/RUNBOOKS.md#serving-latency",
                    },
                },
                {"name": "scores", "errors": {"rate": 0.02}},
                {
                    "name": "both",
                    "latency": {"p95_ms": 100},
                    "errors": {"rate": 0.5, "duration_s": 600, "severity": "info"},
                },
            ]
        }
    )
    cases = [
        ((ROOT / "warden.yaml").read_text(), shipped),
        (yaml.safe_dump(variant, sort_keys=False), parse_config(variant)),
        (yaml.safe_dump(_raw() | {"serving": None}), parse_config(_raw() | {"serving": None})),
    ]
    raw_without = _raw()
    raw_without.pop("serving")
    cases.append((yaml.safe_dump(raw_without), parse_config(raw_without)))
    for i, (text, config) in enumerate(cases):
        evaluated = _evaluate_config(text, tmp_path / f"tf{i}")
        want = {p.name: _tf_view(p) for p in config.serving_policies}
        assert evaluated["serving_policies"] == want, i
    assert len(parse_config(variant).serving_policies) == 4


def _filters(text: str) -> set[str]:
    return set(text.split(" AND "))


def test_one_alert_policy_per_declared_serving_policy_with_its_condition() -> None:
    locals_ = _root()["locals"]
    assert "module.config.serving_policies" in locals_["serving_latency"]
    assert 'p.kind == "latency"' in locals_["serving_latency"]
    assert 'p.kind == "errors"' in locals_["serving_errors"]
    scope = str(locals_["serving_filter"])
    assert "cloud_run_revision" in scope
    assert "resource.label.service_name=" in scope
    assert "${p.service}" in scope

    policies = _resources("google_monitoring_alert_policy")
    latency, errors = policies["serving_latency"], policies["serving_errors"]
    assert latency["for_each"] == "${local.serving_latency}"
    assert errors["for_each"] == "${local.serving_errors}"
    for body in (latency, errors):
        assert body["display_name"] == "${each.key}"  # the alertname in the router
        assert body["user_labels"] == {
            "warden_policy": "${each.key}",
            "warden_prefix": "${var.prefix}",
            "severity": "${each.value.severity}",
        }
        assert body["severity"] == "${local.severity[each.value.severity]}"
        assert body["notification_channels"] == "${local.notification_channels}"
        assert body["alert_strategy"]["auto_close"] == "1800s"
        assert body["documentation"]["content"].endswith(
            "Runbook: ${var.runbook_base_url}/${each.value.runbook}"
        )
        cond = body["conditions"]["condition_threshold"]
        assert cond["comparison"] == "COMPARISON_GT"
        assert cond["threshold_value"] == "${each.value.threshold}"
        assert cond["duration"] == "${each.value.duration_s}s"
        assert cond["evaluation_missing_data"] == "EVALUATION_MISSING_DATA_INACTIVE"

    lcond = latency["conditions"]["condition_threshold"]
    assert _filters(lcond["filter"]) == {
        'metric.type="run.googleapis.com/request_latencies"',
        "${local.serving_filter[each.key]}",
    }
    assert lcond["aggregations"] == {
        "alignment_period": "60s",
        "per_series_aligner": "ALIGN_DELTA",
        "cross_series_reducer": "REDUCE_PERCENTILE_95",
        "group_by_fields": ["resource.label.service_name"],
    }
    assert "denominator_filter" not in lcond

    econd = errors["conditions"]["condition_threshold"]
    assert _filters(econd["filter"]) == {
        'metric.type="run.googleapis.com/request_count"',
        "${local.serving_filter[each.key]}",
        'metric.label.response_code_class="5xx"',
    }
    assert _filters(econd["denominator_filter"]) == {
        'metric.type="run.googleapis.com/request_count"',
        "${local.serving_filter[each.key]}",
    }
    rate = {
        "alignment_period": "60s",
        "per_series_aligner": "ALIGN_RATE",
        "cross_series_reducer": "REDUCE_SUM",
        "group_by_fields": ["resource.label.service_name"],
    }
    assert econd["aggregations"] == rate
    assert econd["denominator_aggregations"] == rate

    # The local stand-in describes the same conditions in its incidents.
    for kind, body in (("latency", lcond), ("errors", econd)):
        metric, aligner, reducer, _ = SERVING_CONDITION[kind]
        assert f'metric.type="{metric}"' in body["filter"]
        assert (aligner, reducer) == (
            body["aggregations"]["per_series_aligner"],
            body["aggregations"]["cross_series_reducer"],
        )


def test_serving_runbooks_exist(shipped: WardenConfig) -> None:
    runbooks = ROOT / "docs" / "RUNBOOKS.md"
    anchors = _anchors(runbooks.read_text())
    assert {"serving-latency", "serving-errors"} <= anchors
    for policy in shipped.serving_policies:
        path, _, anchor = policy.runbook.partition("#")
        assert (ROOT / path) == runbooks, policy.name
        assert anchor in anchors, policy.name


def test_the_serving_policies_hold_to_the_provider_schema() -> None:
    try:
        report = tfschema.check(TF, schemas=tfschema.Schemas())
    except tfschema.SchemaError as exc:
        pytest.fail(str(exc))
    assert not report.findings, "\n".join(map(str, report.findings))
    for name in ("serving_latency", "serving_errors"):
        assert f"google_monitoring_alert_policy.{name}" in report.addresses


# --- the local stand-in ---------------------------------------------------------------------------


def test_percentile_interpolates_inside_the_bucket() -> None:
    assert percentile({}, 0.95) is None
    assert percentile({(10.0, 20.0): 100}, 0.95) == pytest.approx(19.5)
    assert percentile({(0.0, 10.0): 95, (100.0, 200.0): 5}, 0.95) == pytest.approx(10.0)
    assert percentile({(0.0, 10.0): 90, (100.0, 200.0): 10}, 0.95) == pytest.approx(150.0)
    assert percentile({(-math.inf, 1.0): 5}, 0.5) == 1.0
    assert percentile({(500.0, math.inf): 5}, 0.5) == 500.0


def test_cloud_run_metrics_are_refused_unless_the_stand_in_plays_cloud_run() -> None:
    with MonitoringStandIn() as standin:
        clients = Clients(Settings(project="warden-test", monitoring_endpoint=standin.endpoint))
        with pytest.raises(api_exceptions.InvalidArgument, match="cannot be written by users"):
            ServingMetrics("api", clients=clients).record(12.0, 200)
    with MonitoringStandIn(cloud_run_metrics=True) as standin:
        clients = Clients(Settings(project="warden-test", monitoring_endpoint=standin.endpoint))
        metrics = ServingMetrics("api", clients=clients)
        at = datetime.now(UTC) - timedelta(minutes=1)
        metrics.record(12.0, 200, at=at)
        metrics.record(13.0, 200, at=at)  # same instant: still ordered and non-overlapping
        client = clients.monitoring
        listed = list(
            client.list_time_series(
                request={
                    "name": "projects/warden-test",
                    "filter": 'metric.type = "run.googleapis.com/request_latencies" AND '
                    'resource.labels.service_name = "api"',
                    "interval": {
                        "start_time": at - timedelta(hours=1),
                        "end_time": at + timedelta(minutes=1),
                    },
                }
            )
        )
        # A DELTA point needs its start time, and Cloud Run's metrics their resource.
        bad = monitoring_v3.TimeSeries(
            metric={"type": "run.googleapis.com/request_count"},
            resource={"type": "cloud_run_revision", "labels": {"service_name": "api"}},
            points=[{"interval": {"end_time": datetime.now(UTC)}, "value": {"int64_value": 1}}],
        )
        with pytest.raises(api_exceptions.InvalidArgument, match="needs a start time"):
            client.create_time_series(name="projects/warden-test", time_series=[bad])
        bad.resource.type = "global"
        with pytest.raises(api_exceptions.InvalidArgument, match="cloud_run_revision only"):
            client.create_time_series(name="projects/warden-test", time_series=[bad])
    assert len(listed) == 1
    assert listed[0].metric_kind == metric_pb2.MetricDescriptor.MetricKind.DELTA
    assert listed[0].metric.labels == {"response_code": "200", "response_code_class": "2xx"}
    points = sorted(listed[0].points, key=lambda p: p.interval.end_time)
    assert [p.value.distribution_value.mean for p in points] == [12.0, 13.0]
    assert points[0].interval.start_time < points[0].interval.end_time
    assert points[0].interval.end_time <= points[1].interval.start_time


def _router_post(client: Any):
    """The evaluator's webhook POST, into the real route_alerts function (functions-framework
    test client; basic auth as the deployed webhook_basicauth channel)."""

    def post(url: str, *, json: dict, headers: dict, timeout: float) -> Any:
        response = client.post("/", data=_dumps(json), headers=headers)
        return SimpleNamespace(status_code=response.status_code)

    return post


def _dumps(payload: dict) -> str:  # post()'s keyword is called json, like requests.post's
    return json.dumps(payload)


@pytest.fixture
def router(make_runtime, capture, monkeypatch):  # noqa: F811
    url, received = capture
    monkeypatch.setenv("WARDEN_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_HOOK_URL", url)
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    built = make_runtime()
    raw = _raw()
    raw["alerting"] = alerting()
    built._config = parse_config(raw)
    return create_app("route_alerts", str(SOURCE), "http").test_client(), received


def test_the_stand_in_opens_serving_incidents_through_the_router(router) -> None:
    client, received = router
    config = parse_config(
        _with_serving(
            {
                "services": [
                    {"name": name, "latency": {"p95_ms": 500}, "errors": {"rate": 0.05}}
                    for name in ("slow-api", "failing-api", "healthy-api")
                ]
            }
        )
    )
    evaluator = PolicyEvaluator(
        [],
        serving=config.serving_policies,
        project="warden-test",
        url="http://route-alerts.invalid/",
        token=TOKEN,
        post=_router_post(client),
    )
    # Seven minutes of traffic, one request per service every 10 s, ending a minute ago: more
    # than each policy's 300 s duration, written at explicit times (no sleeping).
    start = datetime.now(UTC) - timedelta(minutes=8)
    with MonitoringStandIn(
        cloud_run_metrics=True, on_serving_point=evaluator.observe_serving
    ) as standin:
        clients = Clients(Settings(project="warden-test", monitoring_endpoint=standin.endpoint))
        slow = ServingMetrics("slow-api", clients=clients)
        failing = ServingMetrics("failing-api", clients=clients)
        healthy = ServingMetrics("healthy-api", clients=clients)
        for i in range(42):
            at = start + timedelta(seconds=10 * i)
            slow.record(900.0 + i, 200, at=at)  # p95 ~ 900 ms > 500
            failing.record(40.0, 503 if i % 3 == 0 else 200, at=at)  # a third 5xx > 5%
            # Fast, and a 4xx now and then: a client error is not a 5xx.
            healthy.record(50.0 + i % 7, 404 if i % 10 == 0 else 200, at=at)
        # Then the slow service recovers: once its window holds only fast requests, its
        # incident closes (same incident_id).
        for i in range(42, 50):
            slow.record(30.0, 200, at=start + timedelta(seconds=10 * i))
        evaluator.drain()
        # The sender thread records a delivery just after the router answers.
        wait_for(lambda: len(evaluator.sent) >= 3, 20, "three deliveries", interval=0.05)
    evaluator.close()

    states = sorted(
        (p["incident"]["policy_name"], p["incident"]["state"]) for p, _ in evaluator.sent
    )
    assert states == [
        ("failing-api-errors", "open"),
        ("slow-api-latency", "closed"),
        ("slow-api-latency", "open"),
    ]
    opened = {
        p["incident"]["policy_name"]: (p, status)
        for p, status in evaluator.sent
        if p["incident"]["state"] == "open"
    }
    closed = next(p["incident"] for p, _ in evaluator.sent if p["incident"]["state"] == "closed")
    assert all(status == 200 for _, status in evaluator.sent)
    latency = opened["slow-api-latency"][0]["incident"]
    assert latency["state"] == "open"
    assert latency["metric"]["type"] == "run.googleapis.com/request_latencies"
    assert latency["resource"] == {
        "type": "cloud_run_revision",
        "labels": {"project_id": "warden-test", "service_name": "slow-api"},
    }
    assert 880 < float(latency["observed_value"]) < 1000
    # Opened once the breach had held for 300 s of point time.
    assert latency["started_at"] - int(start.timestamp()) >= 300
    assert closed["incident_id"] == latency["incident_id"]
    assert closed["ended_at"] > latency["started_at"]
    assert float(closed["observed_value"]) < 500
    errors = opened["failing-api-errors"][0]["incident"]
    assert errors["condition"]["conditionThreshold"]["denominatorFilter"].startswith(
        'metric.type="run.googleapis.com/request_count"'
    )
    assert float(errors["observed_value"]) == pytest.approx(2 / 6, abs=0.01)

    # Positive marker: the healthy service was evaluated, every window of it, and is healthy.
    status = evaluator.serving_status
    assert set(status) == {p.name for p in config.serving_policies}
    for name in (
        "healthy-api-latency",
        "healthy-api-errors",
        "slow-api-errors",
        "failing-api-latency",
    ):
        assert not status[name].breached, status[name]
        assert status[name].requests >= 5
    assert 50 <= status["healthy-api-latency"].value < 500
    assert status["healthy-api-errors"].value == 0.0
    assert not status["slow-api-latency"].breached
    assert status["failing-api-errors"].breached

    # The router routed both to the receiver, with the policy name as alertname.
    sent = []
    for headers, body in received:
        assert verify(SECRET, body, headers["X-Warden-Signature"])
        sent.append(body.decode())
    text = "\n".join(sent)
    assert "slow-api-latency" in text
    assert "failing-api-errors" in text
    assert "healthy-api" not in text


def test_serving_incidents_route_like_googles() -> None:
    config = parse_config(_raw())
    policy = {p.kind: p for p in config.serving_policies}
    for kind, state in (("latency", "open"), ("errors", "closed")):
        payload = serving_incident_payload(
            policy[kind],
            project="warden-test",
            incident_id="0.serving",
            state=state,
            started_at=1_780_000_000,
            ended_at=1_780_000_600 if state == "closed" else None,
            value=0.5,
        )
        assert set(payload) == {"incident", "version"}
        assert set(payload["incident"]) <= DOCUMENTED_FIELDS  # nothing of our own
        alert = alert_from_incident(payload, received_at=1_780_000_700)
        assert alert.labels["alertname"] == policy[kind].name
        assert alert.labels["condition_type"] == "threshold"
        assert alert.labels["severity"] == policy[kind].severity
        assert alert.labels["service_name"] == "warden-example-app"
        assert alert.status == ("firing" if state == "open" else "resolved")
        assert re.search(r"RUNBOOKS\.md#serving-", payload["incident"]["documentation"]["content"])
