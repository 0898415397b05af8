"""warden.telemetry.metrics against the loopback MetricService, via the real monitoring client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.api import metric_pb2
from google.api_core import exceptions as api_exceptions
from google.cloud import monitoring_v3

from warden.clients import Clients
from warden.errors import (
    MetricsRejectedError,
    MetricsWriteError,
    PermanentError,
    RetryableError,
)
from warden.settings import Settings
from warden.telemetry.metrics import (
    METRIC_PREFIX,
    MetricPoint,
    MetricsWriter,
    from_clients,
)
from warden_local.monitoring import MonitoringStandIn

PROJECT = "warden-test"
AUC = METRIC_PREFIX + "model/roc_auc"


@pytest.fixture
def standin() -> Iterator[MonitoringStandIn]:
    with MonitoringStandIn() as server:
        yield server


@pytest.fixture
def clients(standin: MonitoringStandIn) -> Clients:
    return Clients(Settings(project=PROJECT, monitoring_endpoint=standin.endpoint))


@pytest.fixture
def writer(clients: Clients) -> MetricsWriter:
    return MetricsWriter(lambda: clients.monitoring, PROJECT, timeout=2.0)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _interval(start: datetime, end: datetime) -> dict[str, datetime]:
    return {"start_time": start, "end_time": end}


def _series(metric_type: str, labels: dict[str, str], at: datetime, value: float) -> dict:
    return {
        "metric": {"type": metric_type, "labels": labels},
        "resource": {"type": "global", "labels": {"project_id": PROJECT}},
        "points": [{"interval": {"end_time": at}, "value": {"double_value": value}}],
    }


# --- writing --------------------------------------------------------------------------------------


def test_points_arrive_as_real_create_requests(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    at = _now() - timedelta(minutes=1)
    written = writer.write(
        [
            MetricPoint("model/roc_auc", 0.91, {"model": "churn", "version": "3"}),
            MetricPoint("retrain/duration", 1200, {"model": "churn"}),
        ],
        at=at,
    )

    assert written == 2
    [request] = standin.requests
    assert isinstance(request, monitoring_v3.CreateTimeSeriesRequest)
    assert request.name == f"projects/{PROJECT}"
    auc, rows = request.time_series
    assert auc.metric.type == AUC
    assert dict(auc.metric.labels) == {"model": "churn", "version": "3"}
    assert auc.resource.type == "global"
    assert dict(auc.resource.labels) == {"project_id": PROJECT}
    assert auc.metric_kind == metric_pb2.MetricDescriptor.MetricKind.GAUGE
    assert auc.value_type == metric_pb2.MetricDescriptor.ValueType.DOUBLE
    assert [p.value.double_value for p in auc.points] == [0.91]
    assert auc.points[0].interval.end_time == at
    assert rows.metric.type == METRIC_PREFIX + "retrain/duration"
    assert rows.points[0].value.double_value == 1200.0
    assert standin.points(AUC, model="churn") == [({"model": "churn", "version": "3"}, at, 0.91)]


def test_450_series_make_three_requests_of_at_most_200(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    points = [MetricPoint("model/roc_auc", i / 450, {"model": f"m{i:03d}"}) for i in range(450)]

    assert writer.write(points, at=_now()) == 450

    sizes = [len(r.time_series) for r in standin.requests]
    assert sizes == [200, 200, 50]
    assert len(standin.points(AUC)) == 450
    sent = [ts.metric.labels["model"] for r in standin.requests for ts in r.time_series]
    assert sent == [f"m{i:03d}" for i in range(450)]


def test_same_series_twice_in_one_write_is_refused_before_sending(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    points = [
        MetricPoint("model/roc_auc", 0.8, {"model": "a"}),
        MetricPoint("model/roc_auc", 0.7, {"model": "b"}),
        MetricPoint("model/roc_auc", 0.9, {"model": "a"}),
    ]

    with pytest.raises(MetricsRejectedError, match="appears twice"):
        writer.write(points)

    assert standin.requests == []


def test_out_of_order_write_is_rejected_as_permanent(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    at = _now()
    writer.write([MetricPoint("model/roc_auc", 0.9, {"model": "a"})], at=at)

    for stale in (at - timedelta(seconds=30), at):  # older, and the same instant
        with pytest.raises(PermanentError, match="Points must be written in order") as info:
            writer.write([MetricPoint("model/roc_auc", 0.1, {"model": "a"})], at=stale)
        assert info.value.code == "INVALID_ARGUMENT"

    assert len(standin.requests) == 3
    assert standin.points(AUC) == [({"model": "a"}, at, 0.9)]


def test_valid_series_of_a_partly_rejected_request_are_still_stored(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    at = _now()
    writer.write([MetricPoint("model/roc_auc", 0.9, {"model": "a"})], at=at)

    with pytest.raises(MetricsRejectedError, match=r"timeSeries\[0\]") as info:
        writer.write(
            [
                MetricPoint("model/roc_auc", 0.1, {"model": "a"}),
                MetricPoint("model/roc_auc", 0.5, {"model": "b"}),
            ],
            at=at,
        )

    assert r"timeSeries[1]" not in str(info.value)
    assert standin.points(AUC, model="b") == [({"model": "b"}, at, 0.5)]


def test_transient_statuses_raise_retryable_and_others_permanent(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    point = MetricPoint("model/roc_auc", 0.5, {"model": "a"})
    standin.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", method="CreateTimeSeries")
    with pytest.raises(MetricsWriteError) as transient:
        writer.write([point], at=_now() - timedelta(seconds=2))
    assert transient.value.code == "RESOURCE_EXHAUSTED"
    assert isinstance(transient.value, RetryableError)

    standin.fail_next(grpc.StatusCode.PERMISSION_DENIED, "no", method="CreateTimeSeries")
    with pytest.raises(MetricsRejectedError) as permanent:
        writer.write([point], at=_now() - timedelta(seconds=1))
    assert permanent.value.code == "PERMISSION_DENIED"

    assert writer.write([point], at=_now()) == 1  # faults are one-shot


def test_stopped_standin_makes_writes_raise_unavailable_quickly(
    writer: MetricsWriter, standin: MonitoringStandIn
) -> None:
    writer.write([MetricPoint("model/roc_auc", 0.5)], at=_now() - timedelta(seconds=1))
    standin.stop()

    with pytest.raises(MetricsWriteError) as info:  # (a hang would meet pytest-timeout)
        writer.write([MetricPoint("model/roc_auc", 0.6)], at=_now())

    assert info.value.code == "UNAVAILABLE"


def test_disabled_writer_sends_nothing_and_never_builds_the_client(
    standin: MonitoringStandIn,
) -> None:
    calls: list[int] = []

    def factory() -> monitoring_v3.MetricServiceClient:
        calls.append(1)
        raise AssertionError("the client must not be built")

    writer = MetricsWriter(factory, PROJECT, enabled=False)

    assert writer.write([MetricPoint("model/roc_auc", 0.5)]) == 0
    assert calls == []
    assert standin.requests == []


def test_client_is_built_once_on_first_write(clients: Clients, standin: MonitoringStandIn) -> None:
    calls: list[int] = []

    def factory() -> monitoring_v3.MetricServiceClient:
        calls.append(1)
        return clients.monitoring

    writer = MetricsWriter(factory, PROJECT)
    assert calls == []
    writer.write([MetricPoint("model/roc_auc", 0.5)], at=_now() - timedelta(seconds=1))
    writer.write([MetricPoint("model/roc_auc", 0.6)], at=_now())

    assert calls == [1]
    assert len(standin.requests) == 2


def test_from_clients_uses_settings(standin: MonitoringStandIn) -> None:
    on = from_clients(Clients(Settings(project="p-on", monitoring_endpoint=standin.endpoint)))
    off = from_clients(
        Clients(Settings(project="p-off", monitoring_endpoint="127.0.0.1:1", metrics_enabled=False))
    )

    assert on.write([MetricPoint("model/roc_auc", 0.5)]) == 1
    assert off.write([MetricPoint("model/roc_auc", 0.5)]) == 0
    assert [r.name for r in standin.requests] == ["projects/p-on"]


def test_invalid_points_and_naive_times_are_refused_locally(writer: MetricsWriter) -> None:
    with pytest.raises(MetricsRejectedError, match="label key"):
        MetricPoint("model/roc_auc", 0.5, {"Model": "a"})
    with pytest.raises(MetricsRejectedError, match="metric name"):
        MetricPoint("/model auc", 0.5)
    with pytest.raises(MetricsRejectedError, match=r"not in warden\.telemetry\.metrics\.CATALOGUE"):
        MetricPoint("model/auc", 0.5)  # a typo of model/roc_auc: no descriptor, no alert policy
    with pytest.raises(MetricsRejectedError, match="label 'feature' is not declared"):
        MetricPoint("model/roc_auc", 0.5, {"model": "a", "feature": "x"})
    with pytest.raises(MetricsRejectedError, match="not a number"):
        MetricPoint("model/roc_auc", "0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        writer.write([MetricPoint("model/roc_auc", 0.5)], at=datetime(2024, 1, 1))


def test_importing_metrics_does_not_import_monitoring_v3() -> None:
    code = (
        "import sys, warden.telemetry.metrics\n"
        "loaded = [m for m in sys.modules if m.startswith(('google.cloud.monitoring', 'grpc'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


# --- reading --------------------------------------------------------------------------------------


def test_read_round_trips_with_label_filter_newest_first(writer: MetricsWriter) -> None:
    t0 = _now() - timedelta(minutes=3)
    for step, (a, b) in enumerate([(0.70, 0.60), (0.80, 0.65), (0.90, 0.62)]):
        at = t0 + timedelta(minutes=step)
        writer.write(
            [
                MetricPoint("model/roc_auc", a, {"model": "a"}),
                MetricPoint("model/roc_auc", b, {"model": "b"}),
                MetricPoint("model/f1", 0.1, {"model": "a"}),
            ],
            at=at,
        )

    only_a = writer.read("model/roc_auc", labels={"model": "a"})
    assert only_a == [
        ({"model": "a"}, t0 + timedelta(minutes=2), 0.90),
        ({"model": "a"}, t0 + timedelta(minutes=1), 0.80),
        ({"model": "a"}, t0, 0.70),
    ]
    both = writer.read("model/roc_auc")
    assert len(both) == 6
    assert [when for _, when, _ in both] == sorted((when for _, when, _ in both), reverse=True)
    assert {labels["model"] for labels, _, _ in both} == {"a", "b"}
    # since is exclusive: the API's read interval is (start, end].
    assert [v for _, _, v in writer.read("model/roc_auc", labels={"model": "b"}, since=t0)] == [
        0.62,
        0.65,
    ]
    assert writer.read("model/roc_auc", labels={"model": "nope"}) == []


def test_list_time_series_pages_and_honours_interval(
    writer: MetricsWriter, clients: Clients
) -> None:
    t0 = _now() - timedelta(minutes=2)
    writer.write([MetricPoint("model/roc_auc", i, {"model": f"m{i}"}) for i in range(3)], at=t0)
    writer.write(
        [MetricPoint("model/roc_auc", 10 + i, {"model": f"m{i}"}) for i in range(3)],
        at=t0 + timedelta(minutes=1),
    )

    pager = clients.monitoring.list_time_series(
        request={
            "name": f"projects/{PROJECT}",
            "filter": f'metric.type = "{AUC}"',
            "interval": _interval(t0 - timedelta(seconds=1), t0 + timedelta(minutes=1)),
            "page_size": 1,
        }
    )
    pages = list(pager.pages)
    assert [len(p.time_series) for p in pages] == [1, 1, 1]
    assert [[pt.value.double_value for pt in p.time_series[0].points] for p in pages] == [
        [10.0, 0.0],
        [11.0, 1.0],
        [12.0, 2.0],
    ]

    instant = clients.monitoring.list_time_series(
        request={
            "name": f"projects/{PROJECT}",
            "filter": f'metric.type = "{AUC}" AND metric.labels.model = "m1"',
            "interval": {"end_time": t0},
        }
    )
    assert [[pt.value.double_value for pt in ts.points] for ts in instant] == [[1.0]]


@pytest.mark.parametrize(
    "bad_filter",
    [
        f'metric.type = starts_with("{METRIC_PREFIX}")',
        f'metric.type = "{AUC}" OR metric.labels.model = "a"',
        f'metric.type = "{AUC}" AND metric.labels.model != "a"',
        'metric.labels.model = "a"',
        "",
    ],
)
def test_unknown_filter_forms_are_rejected(
    bad_filter: str, writer: MetricsWriter, clients: Clients
) -> None:
    writer.write([MetricPoint("model/roc_auc", 0.5, {"model": "a"})])

    with pytest.raises(api_exceptions.InvalidArgument, match="filter"):
        list(
            clients.monitoring.list_time_series(
                request={
                    "name": f"projects/{PROJECT}",
                    "filter": bad_filter,
                    "interval": _interval(_now() - timedelta(hours=1), _now() + timedelta(hours=1)),
                },
                retry=None,
                timeout=2.0,
            )
        )


# --- the stand-in's own fidelity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("too_many", "maximum of 200"),
        ("two_points", "only one point"),
        ("duplicate", "Duplicate TimeSeries"),
        ("bad_name", "projects/PROJECT_ID"),
        ("builtin_type", "cannot be written"),
        ("too_old", "25 hours"),
    ],
)
def test_standin_rejects_what_the_real_api_rejects(
    case: str, message: str, clients: Clients, standin: MonitoringStandIn
) -> None:
    at = _now()
    name = f"projects/{PROJECT}"
    series = [_series(AUC, {"model": "a"}, at, 0.5)]
    if case == "too_many":
        series = [_series(AUC, {"model": f"m{i}"}, at, 0.5) for i in range(201)]
    elif case == "two_points":
        series[0]["points"].append({"interval": {"end_time": at}, "value": {"double_value": 1.0}})
    elif case == "duplicate":
        series.append(_series(AUC, {"model": "a"}, at + timedelta(seconds=1), 0.6))
    elif case == "bad_name":
        name = PROJECT
    elif case == "builtin_type":
        series = [_series("compute.googleapis.com/instance/uptime", {}, at, 1.0)]
    elif case == "too_old":
        series = [_series(AUC, {"model": "a"}, at - timedelta(hours=26), 0.5)]

    with pytest.raises(api_exceptions.InvalidArgument, match=message):
        clients.monitoring.create_time_series(
            request={"name": name, "time_series": series}, retry=None, timeout=2.0
        )
    assert len(standin.requests) == 1
    if case != "duplicate":  # the first of two duplicates is written, as Google does
        assert standin.points(AUC) == []


def test_value_type_must_match_the_auto_created_descriptor(
    writer: MetricsWriter, clients: Clients
) -> None:
    at = _now()
    writer.write([MetricPoint("model/roc_auc", 0.5, {"model": "a"})], at=at - timedelta(seconds=5))
    descriptor = clients.monitoring.get_metric_descriptor(
        name=f"projects/{PROJECT}/metricDescriptors/{AUC}", retry=None, timeout=2.0
    )
    assert descriptor.type == AUC
    assert descriptor.value_type == metric_pb2.MetricDescriptor.ValueType.DOUBLE
    assert [label.key for label in descriptor.labels] == ["model"]

    int_series = _series(AUC, {"model": "b"}, at, 0.0)
    int_series["points"][0]["value"] = {"int64_value": 3}
    with pytest.raises(api_exceptions.InvalidArgument, match="must be DOUBLE, but is INT64"):
        clients.monitoring.create_time_series(
            request={"name": f"projects/{PROJECT}", "time_series": [int_series]},
            retry=None,
            timeout=2.0,
        )
    listed = clients.monitoring.list_metric_descriptors(
        request={
            "name": f"projects/{PROJECT}",
            "filter": f'metric.type = starts_with("{METRIC_PREFIX}")',
        }
    )
    assert [d.type for d in listed] == [AUC]
    with pytest.raises(api_exceptions.NotFound):
        clients.monitoring.get_metric_descriptor(
            name=f"projects/{PROJECT}/metricDescriptors/{METRIC_PREFIX}nope",
            retry=None,
            timeout=2.0,
        )


def test_state_file_keeps_series_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "monitoring.json"
    at = _now()
    with MonitoringStandIn(state_file=state) as first:
        writer = MetricsWriter(
            Clients(Settings(project=PROJECT, monitoring_endpoint=first.endpoint)).monitoring,
            PROJECT,
            timeout=2.0,
        )
        writer.write([MetricPoint("model/roc_auc", 0.9, {"model": "a"})], at=at)
    assert state.exists()

    with MonitoringStandIn(state_file=state) as second:
        writer = MetricsWriter(
            Clients(Settings(project=PROJECT, monitoring_endpoint=second.endpoint)).monitoring,
            PROJECT,
            timeout=2.0,
        )
        assert writer.read("model/roc_auc") == [({"model": "a"}, at, 0.9)]
        with pytest.raises(MetricsRejectedError, match="in order"):
            writer.write([MetricPoint("model/roc_auc", 0.1, {"model": "a"})], at=at)
