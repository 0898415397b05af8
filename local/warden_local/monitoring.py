"""A loopback Cloud Monitoring ``MetricService`` for local runs and tests.

Cloud Monitoring has no emulator, so this is a small gRPC server that the real
``google.cloud.monitoring_v3.MetricServiceClient`` can talk to over a plaintext channel (see
:attr:`warden.clients.Clients.monitoring`). It checks what the real API checks where Warden could
get it wrong, so a test that passes here does not fail against Google:

* ``CreateTimeSeries``: ``name`` is ``projects/P``; 1..200 series; exactly one point per series;
  a writable metric type (``custom.``/``external.``/``workload.googleapis.com/``); a resource type;
  no series twice in one request; gauge points only (start time unset or equal to the end time);
  a point's end time strictly after the series' last point, no older than 25 hours and no more
  than 5 minutes ahead; the value type consistent with the metric descriptor (auto-created on
  first write, as Google does). Like the real API, the valid series of a request are stored even
  when others are rejected, and the error names the rejected ``timeSeries[i]``.
* ``ListTimeSeries``: filters of the form ``metric.type = "T" [AND metric.labels.K = "V"]
  [AND resource.type = "R"] [AND resource.labels.K = "V"]``; anything else is INVALID_ARGUMENT.
  The read interval is half-open ``(start, end]`` (an unset start means the instant ``end``);
  points come newest first; views FULL and HEADERS; paging by series. Aggregation and
  ``order_by`` are UNIMPLEMENTED rather than silently ignored.
* ``CreateMetricDescriptor`` / ``GetMetricDescriptor`` / ``ListMetricDescriptors``: store and
  return, with ``metric.type = "T"`` or ``metric.type = starts_with("P")`` filters.
* Cloud Run's own request metrics (:data:`CLOUD_RUN_METRICS`), only with
  ``cloud_run_metrics=True``: the stand-in then plays Cloud Run, which publishes them for every
  service (no user can write ``run.googleapis.com/`` types in Google's API, and without the flag
  neither can anyone here). Written as Cloud Run's are: DELTA points (start strictly before
  end, no overlap with the series' previous point) on resource ``cloud_run_revision`` with a
  ``service_name``; ``request_count`` INT64, ``request_latencies`` a DISTRIBUTION in ms. They
  are handed to ``on_serving_point`` (the serving policies, warden_local.policies).

Nothing starts at import time. Optional JSON persistence (``state_file``) lets series survive a
restart, so ordering errors show up across local runs exactly as they would in the cloud.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.api import label_pb2, metric_pb2
from google.cloud import monitoring_v3
from google.protobuf import empty_pb2, json_format

SERVICE = "google.monitoring.v3.MetricService"
MAX_SERIES_PER_REQUEST = 200
DEFAULT_PAGE_SIZE = 100_000

_NS = 1_000_000_000
_MAX_AGE_NS = 25 * 3600 * _NS
_MAX_AHEAD_NS = 5 * 60 * _NS
_WRITABLE_PREFIXES = (
    "custom.googleapis.com/",
    "external.googleapis.com/",
    "workload.googleapis.com/",
)
#: Cloud Run's request metrics the stand-in accepts when it plays Cloud Run: type → (value type,
#: unit). https://cloud.google.com/monitoring/api/metrics_gcp ("run"): request_count (DELTA,
#: INT64, labels response_code, response_code_class, route) and request_latencies (DELTA,
#: DISTRIBUTION, ms, same labels), on the monitored resource cloud_run_revision.
CLOUD_RUN_METRICS = {
    "run.googleapis.com/request_count": (
        metric_pb2.MetricDescriptor.ValueType.INT64,
        "1",
    ),
    "run.googleapis.com/request_latencies": (
        metric_pb2.MetricDescriptor.ValueType.DISTRIBUTION,
        "ms",
    ),
}
CLOUD_RUN_RESOURCE = "cloud_run_revision"
_PROJECT_NAME = re.compile(r"projects/([A-Za-z0-9][A-Za-z0-9.:-]*)")
_DESCRIPTOR_NAME = re.compile(r"(projects/[^/]+)/metricDescriptors/(.+)")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
_OUT_OF_ORDER = (
    "Points must be written in order. One or more of the points specified had an older start "
    "time than the most recent point."
)

_Kind = metric_pb2.MetricDescriptor.MetricKind
_VType = metric_pb2.MetricDescriptor.ValueType
_ONEOF_VALUE_TYPE = {
    "bool_value": _VType.BOOL,
    "int64_value": _VType.INT64,
    "double_value": _VType.DOUBLE,
    "string_value": _VType.STRING,
    "distribution_value": _VType.DISTRIBUTION,
}

# Raw protobuf classes behind the proto-plus wrappers: the server works on these directly.
_TypedValuePb = monitoring_v3.TypedValue.pb()
_ListTimeSeriesResponsePb = monitoring_v3.ListTimeSeriesResponse.pb()
_ListDescriptorsResponsePb = monitoring_v3.ListMetricDescriptorsResponse.pb()
_View = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView


class _Reject(Exception):
    """Abort the current RPC with ``code`` (raised inside handlers, turned into a status)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Series:
    project: str
    metric_type: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    metric_kind: int
    value_type: int
    # (end time in ns, TypedValue pb), oldest first
    points: list[tuple[int, Any]] = field(default_factory=list)
    # end time → start time in ns, for DELTA points (Cloud Run's metrics)
    starts: dict[int, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[Any, ...]:
        return _series_key(
            self.project,
            self.metric_type,
            self.metric_labels,
            self.resource_type,
            self.resource_labels,
        )


def _series_key(
    project: str,
    metric_type: str,
    metric_labels: dict[str, str],
    resource_type: str,
    resource_labels: dict[str, str],
) -> tuple[Any, ...]:
    return (
        project,
        metric_type,
        tuple(sorted(metric_labels.items())),
        resource_type,
        tuple(sorted(resource_labels.items())),
    )


def _ns_to_datetime(ns: int) -> datetime:
    seconds, rest = divmod(ns, _NS)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)


def _timestamp_ns(ts: Any) -> int:
    return int(ts.seconds) * _NS + int(ts.nanos)


def _project_of(name: str) -> str:
    match = _PROJECT_NAME.fullmatch(name)
    if not match:
        raise _Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Field name had an invalid value of {name!r}: must be of the form projects/PROJECT_ID",
        )
    return match.group(1)


# --- filters -------------------------------------------------------------------------------------

_STRING = r'"(?P<value>(?:[^"\\]|\\.)*)"'
_TERM = re.compile(
    r"\s*(?P<field>metric\.type|resource\.type|(?:metric|resource)\.labels\.[A-Za-z_][A-Za-z0-9_]*)"
    r"\s*=\s*" + _STRING + r"\s*"
)
_AND = re.compile(r"AND\s")
_SUPPORTED = (
    'metric.type = "T" [AND metric.labels.K = "V"] [AND resource.type = "R"] '
    '[AND resource.labels.K = "V"]'
)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_filter(text: str) -> list[tuple[str, str]]:
    """Parse the subset of the Monitoring filter language Warden uses into (field, value) terms.

    Raises ``ValueError`` (INVALID_ARGUMENT on the wire) for anything outside that subset, so a
    caller never gets results for a filter the stand-in only half understood.
    """
    if not text.strip():
        raise ValueError(
            "Field filter had an invalid value: a filter with a metric.type is required"
        )
    terms: list[tuple[str, str]] = []
    pos = 0
    while True:
        term = _TERM.match(text, pos)
        if term is None:
            raise ValueError(
                f"Field filter had an invalid value: cannot parse {text[pos:]!r} at offset {pos}; "
                f"the stand-in supports only {_SUPPORTED}"
            )
        terms.append((term["field"], _unescape(term["value"])))
        pos = term.end()
        if pos == len(text):
            break
        conj = _AND.match(text, pos)
        if conj is None:
            raise ValueError(
                f"Field filter had an invalid value: expected AND at offset {pos}, got "
                f"{text[pos:]!r}; the stand-in supports only {_SUPPORTED}"
            )
        pos = conj.end()
    if not any(name == "metric.type" for name, _ in terms):
        raise ValueError("Field filter had an invalid value: the filter must specify a metric.type")
    return terms


def _matches(series: _Series, terms: list[tuple[str, str]]) -> bool:
    for name, value in terms:
        if name == "metric.type":
            actual: str | None = series.metric_type
        elif name == "resource.type":
            actual = series.resource_type
        elif name.startswith("metric.labels."):
            actual = series.metric_labels.get(name.removeprefix("metric.labels."))
        else:
            actual = series.resource_labels.get(name.removeprefix("resource.labels."))
        if actual != value:
            return False
    return True


# --- the server ----------------------------------------------------------------------------------


class MonitoringStandIn:
    """A loopback gRPC ``MetricService``. Use as a context manager or call start()/stop().

    ``endpoint`` ("127.0.0.1:PORT") goes into ``Settings.monitoring_endpoint``. ``requests`` holds
    every ``CreateTimeSeriesRequest`` received (accepted or not). ``fail_next`` makes the next
    calls fail with a chosen status, to exercise callers' error handling through the real client.
    ``check_time_window=False`` accepts points of any age (for replaying old data locally).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        state_file: Path | None = None,
        check_time_window: bool = True,
        on_point: Callable[[str, dict, str, dict, int, float], None] | None = None,
        cloud_run_metrics: bool = False,
        on_serving_point: Callable[[str, dict, str, dict, int, int, Any], None] | None = None,
    ) -> None:
        self._on_point = on_point  # alert policy evaluation (warden_local.policies)
        # Serving policies: (metric type, metric labels, resource type, resource labels, start
        # ns, end ns, TypedValue pb) of each accepted Cloud Run point.
        self._cloud_run_metrics = cloud_run_metrics
        self._on_serving_point = on_serving_point
        self._requested_port = port
        self._port: int | None = port
        self._state_file = Path(state_file) if state_file is not None else None
        self._check_time_window = check_time_window
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._requests: list[monitoring_v3.CreateTimeSeriesRequest] = []
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._descriptors: dict[tuple[str, str], Any] = {}  # (project, type) -> MetricDescriptor pb
        self._faults: list[tuple[grpc.StatusCode, str, str | None]] = []
        if self._state_file is not None and self._state_file.exists():
            self._load(self._state_file)

    # -- lifecycle --

    def start(self) -> MonitoringStandIn:
        if self._server is not None:
            return self
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mon"))
        server.add_generic_rpc_handlers((self._handlers(),))
        address = f"127.0.0.1:{self._requested_port or 0}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # newer grpcio raises instead of returning 0
            raise RuntimeError(f"monitoring stand-in: cannot bind {address}: {exc}") from exc
        if not port:
            raise RuntimeError(f"monitoring stand-in: cannot bind {address}")
        server.start()
        self._port = port
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()

    def __enter__(self) -> MonitoringStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._port is None:
            raise RuntimeError("monitoring stand-in: not started, so no port yet")
        return f"127.0.0.1:{self._port}"

    # -- inspection helpers for tests and local tooling --

    @property
    def requests(self) -> list[monitoring_v3.CreateTimeSeriesRequest]:
        """A snapshot of every CreateTimeSeriesRequest received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def points(
        self, metric_type: str, **label_filters: str
    ) -> list[tuple[dict[str, str], datetime, float]]:
        """Stored numeric points of ``metric_type`` whose metric labels include ``label_filters``.

        Oldest first, across all projects; ``end_time`` is a UTC datetime (microseconds).
        """
        out: list[tuple[int, dict[str, str], float]] = []
        with self._lock:
            for series in self._series.values():
                if series.metric_type != metric_type:
                    continue
                if any(series.metric_labels.get(k) != v for k, v in label_filters.items()):
                    continue
                for end_ns, value in series.points:
                    kind = value.WhichOneof("value")
                    if kind in {"double_value", "int64_value", "bool_value"}:
                        out.append(
                            (end_ns, dict(series.metric_labels), float(getattr(value, kind)))
                        )
        out.sort(key=lambda item: (item[0], sorted(item[1].items())))
        return [(labels, _ns_to_datetime(ns), value) for ns, labels, value in out]

    def fail_next(
        self, code: grpc.StatusCode, message: str = "injected failure", *, method: str | None = None
    ) -> None:
        """Fail the next call of ``method`` (e.g. "CreateTimeSeries"; None: any) with ``code``."""
        with self._lock:
            self._faults.append((code, message, method))

    # -- gRPC plumbing --

    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(name: str, fn: Callable[[Any], Any], request_type: Any) -> grpc.RpcMethodHandler:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    self._injected_fault(name)
                    return fn(request)
                except _Reject as rej:
                    context.abort(rej.code, rej.message)

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=request_type.deserialize,
                response_serializer=lambda message: message.SerializeToString(),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CreateTimeSeries": unary(
                    "CreateTimeSeries",
                    self._create_time_series,
                    monitoring_v3.CreateTimeSeriesRequest,
                ),
                "ListTimeSeries": unary(
                    "ListTimeSeries", self._list_time_series, monitoring_v3.ListTimeSeriesRequest
                ),
                "CreateMetricDescriptor": unary(
                    "CreateMetricDescriptor",
                    self._create_descriptor,
                    monitoring_v3.CreateMetricDescriptorRequest,
                ),
                "GetMetricDescriptor": unary(
                    "GetMetricDescriptor",
                    self._get_descriptor,
                    monitoring_v3.GetMetricDescriptorRequest,
                ),
                "ListMetricDescriptors": unary(
                    "ListMetricDescriptors",
                    self._list_descriptors,
                    monitoring_v3.ListMetricDescriptorsRequest,
                ),
            },
        )

    def _injected_fault(self, method: str) -> None:
        with self._lock:
            for i, (code, message, only) in enumerate(self._faults):
                if only is None or only == method:
                    del self._faults[i]
                    raise _Reject(code, message)

    # -- CreateTimeSeries --

    def _create_time_series(self, request: monitoring_v3.CreateTimeSeriesRequest) -> Any:
        with self._lock:
            self._requests.append(request)
        pb = monitoring_v3.CreateTimeSeriesRequest.pb(request)
        project = _project_of(pb.name)
        count = len(pb.time_series)
        if count == 0:
            raise _Reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Field timeSeries had an invalid value: at least one TimeSeries is required.",
            )
        if count > MAX_SERIES_PER_REQUEST:
            raise _Reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field timeSeries had an invalid value: a maximum of {MAX_SERIES_PER_REQUEST} "
                f"TimeSeries can be written in a single request, got {count}.",
            )
        errors: list[str] = []
        seen: set[tuple[Any, ...]] = set()
        now_ns = time.time_ns()
        changed = False
        with self._lock:
            for i, ts in enumerate(pb.time_series):
                try:
                    self._write_one(project, ts, seen, now_ns)
                    changed = True
                except _Reject as rej:
                    errors.append(f"{rej.message}: timeSeries[{i}]")
            if changed:
                self._save()
        if errors:
            raise _Reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                "One or more TimeSeries could not be written: " + "; ".join(errors),
            )
        return empty_pb2.Empty()

    def _write_one(self, project: str, ts: Any, seen: set[tuple[Any, ...]], now_ns: int) -> None:
        """Validate one series and store its point (caller holds the lock)."""
        bad = grpc.StatusCode.INVALID_ARGUMENT
        metric_type = ts.metric.type
        if not metric_type:
            raise _Reject(bad, "Field metric.type had an invalid value: a metric type is required")
        cloud_run = self._cloud_run_metrics and metric_type in CLOUD_RUN_METRICS
        if not cloud_run and not metric_type.startswith(_WRITABLE_PREFIXES):
            hint = (
                " (start the stand-in with cloud_run_metrics=True / --cloud-run-metrics to play "
                "Cloud Run)"
                if metric_type in CLOUD_RUN_METRICS
                else ""
            )
            raise _Reject(bad, f"The metric type {metric_type!r} cannot be written by users{hint}")
        if cloud_run and ts.resource.type != CLOUD_RUN_RESOURCE:
            raise _Reject(bad, f"{metric_type} is written on resource {CLOUD_RUN_RESOURCE} only")
        if cloud_run and not ts.resource.labels.get("service_name"):
            raise _Reject(bad, f"The monitored resource {CLOUD_RUN_RESOURCE} requires service_name")
        for key in ts.metric.labels:
            if not _LABEL_KEY.fullmatch(key):
                raise _Reject(bad, f"Field metric.labels had an invalid label key {key!r}")
        if not ts.resource.type:
            raise _Reject(bad, "Field resource.type had an invalid value: a resource is required")
        if ts.resource.type == "global" and not ts.resource.labels.get("project_id"):
            raise _Reject(bad, "The monitored resource 'global' requires the label project_id")
        if len(ts.points) != 1:
            raise _Reject(
                bad,
                f"Field points had an invalid value: only one point can be written per "
                f"TimeSeries per request, got {len(ts.points)}",
            )
        metric_kind = _Kind.DELTA if cloud_run else _Kind.GAUGE
        if ts.metric_kind not in (_Kind.METRIC_KIND_UNSPECIFIED, metric_kind):
            raise _Reject(
                bad,
                f"The stand-in accepts only {_Kind.Name(metric_kind)} points for {metric_type}",
            )
        point = ts.points[0]
        kind = point.value.WhichOneof("value")
        if kind is None:
            raise _Reject(bad, "Field points[0].value had an invalid value: a value is required")
        value_type = _ONEOF_VALUE_TYPE[kind]
        if ts.value_type not in (_VType.VALUE_TYPE_UNSPECIFIED, value_type):
            raise _Reject(
                bad,
                f"Value type for metric {metric_type} must be {_VType.Name(ts.value_type)}, but is "
                f"{_VType.Name(value_type)}.",
            )
        if not point.interval.HasField("end_time"):
            raise _Reject(bad, "Field points[0].interval.end_time is required")
        end_ns = _timestamp_ns(point.interval.end_time)
        start_ns = end_ns
        if cloud_run:
            want = CLOUD_RUN_METRICS[metric_type][0]
            if value_type != want:
                raise _Reject(
                    bad,
                    f"Value type for metric {metric_type} must be {_VType.Name(want)}, but is "
                    f"{_VType.Name(value_type)}.",
                )
            if not point.interval.HasField("start_time"):
                raise _Reject(bad, f"A DELTA point of {metric_type} needs a start time")
            start_ns = _timestamp_ns(point.interval.start_time)
            if start_ns >= end_ns:
                raise _Reject(
                    bad,
                    f"The start time must be before the end time for the delta metric "
                    f"{metric_type}",
                )
        elif point.interval.HasField("start_time") and _timestamp_ns(point.interval.start_time) != (
            end_ns
        ):
            raise _Reject(
                bad,
                "The start time must be equal to the end time for the gauge metric " + metric_type,
            )
        if self._check_time_window:
            if end_ns < now_ns - _MAX_AGE_NS:
                raise _Reject(bad, "Points must be written no more than 25 hours in the past.")
            if end_ns > now_ns + _MAX_AHEAD_NS:
                raise _Reject(bad, "Points must be written no more than 5 minutes in the future.")
        metric_labels = dict(ts.metric.labels)
        resource_labels = dict(ts.resource.labels)
        key = _series_key(project, metric_type, metric_labels, ts.resource.type, resource_labels)
        if key in seen:
            raise _Reject(
                bad,
                "Duplicate TimeSeries encountered. Only one point can be written per TimeSeries "
                "per request.",
            )
        seen.add(key)
        descriptor = self._descriptors.get((project, metric_type))
        if descriptor is not None and descriptor.value_type not in (
            _VType.VALUE_TYPE_UNSPECIFIED,
            value_type,
        ):
            raise _Reject(
                bad,
                f"Value type for metric {metric_type} must be "
                f"{_VType.Name(descriptor.value_type)}, but is {_VType.Name(value_type)}.",
            )
        series = self._series.get(key)
        if series is not None and series.points and end_ns <= series.points[-1][0]:
            raise _Reject(bad, _OUT_OF_ORDER)
        if cloud_run and series is not None and series.points and start_ns < series.points[-1][0]:
            raise _Reject(bad, _OUT_OF_ORDER)  # DELTA intervals of one series never overlap
        if descriptor is None:
            descriptor = metric_pb2.MetricDescriptor(
                name=f"projects/{project}/metricDescriptors/{metric_type}",
                type=metric_type,
                metric_kind=metric_kind,
                value_type=value_type,
                unit=CLOUD_RUN_METRICS[metric_type][1] if cloud_run else "",
                description="Cloud Run's (played by the stand-in)."
                if cloud_run
                else "Auto-created on first write.",
            )
            self._descriptors[(project, metric_type)] = descriptor
        known = {label.key for label in descriptor.labels}
        for label_key in sorted(metric_labels.keys() - known):
            descriptor.labels.append(label_pb2.LabelDescriptor(key=label_key))
        if series is None:
            series = _Series(
                project=project,
                metric_type=metric_type,
                metric_labels=metric_labels,
                resource_type=ts.resource.type,
                resource_labels=resource_labels,
                metric_kind=metric_kind,
                value_type=value_type,
            )
            self._series[key] = series
        value = _TypedValuePb()
        value.CopyFrom(point.value)
        series.points.append((end_ns, value))
        if cloud_run:
            series.starts[end_ns] = start_ns
            if self._on_serving_point is not None:
                try:
                    self._on_serving_point(
                        metric_type,
                        metric_labels,
                        ts.resource.type,
                        resource_labels,
                        start_ns,
                        end_ns,
                        value,
                    )
                except Exception:  # evaluating alerts must never break writes
                    import logging

                    logging.getLogger(__name__).exception("serving policy evaluation failed")
        numeric = kind in ("double_value", "int64_value", "bool_value")
        if self._on_point is not None and numeric and not cloud_run:
            try:
                self._on_point(
                    metric_type,
                    metric_labels,
                    ts.resource.type,
                    resource_labels,
                    end_ns,
                    float(getattr(point.value, kind)),
                )
            except Exception:  # evaluating alerts must never break writes
                import logging

                logging.getLogger(__name__).exception("alert policy evaluation failed")

    # -- ListTimeSeries --

    def _list_time_series(self, request: monitoring_v3.ListTimeSeriesRequest) -> Any:
        pb = monitoring_v3.ListTimeSeriesRequest.pb(request)
        bad = grpc.StatusCode.INVALID_ARGUMENT
        project = _project_of(pb.name)
        try:
            terms = parse_filter(pb.filter)
        except ValueError as exc:
            raise _Reject(bad, str(exc)) from None
        if not pb.interval.HasField("end_time"):
            raise _Reject(bad, "Field interval.endTime had an invalid value: it is required")
        end_ns = _timestamp_ns(pb.interval.end_time)
        start_ns = (
            _timestamp_ns(pb.interval.start_time) if pb.interval.HasField("start_time") else None
        )
        if start_ns is not None and start_ns > end_ns:
            raise _Reject(bad, "Field interval had an invalid value: start time after end time")
        if start_ns == end_ns:
            start_ns = None  # a zero-length interval is the instant end_time

        def in_interval(ns: int) -> bool:
            return ns == end_ns if start_ns is None else start_ns < ns <= end_ns

        if pb.HasField("aggregation") or pb.HasField("secondary_aggregation") or pb.order_by:
            raise _Reject(
                grpc.StatusCode.UNIMPLEMENTED,
                "The monitoring stand-in does not implement aggregation or order_by",
            )
        offset = self._page_offset(pb.page_token)
        page_size = pb.page_size or DEFAULT_PAGE_SIZE
        with self._lock:
            matched: list[tuple[_Series, list[tuple[int, Any]]]] = []
            for series in self._series.values():
                if series.project != project or not _matches(series, terms):
                    continue
                points = [p for p in series.points if in_interval(p[0])]
                if points:
                    matched.append((series, points))
            matched.sort(key=lambda item: item[0].key)
            response = _ListTimeSeriesResponsePb()
            for series, points in matched[offset : offset + page_size]:
                out = response.time_series.add()
                out.metric.type = series.metric_type
                out.metric.labels.update(series.metric_labels)
                out.resource.type = series.resource_type
                out.resource.labels.update(series.resource_labels)
                out.metric_kind = series.metric_kind
                out.value_type = series.value_type
                if pb.view == _View.HEADERS:
                    continue
                for end, value in reversed(points):  # newest first, as the real API returns
                    point = out.points.add()
                    point.interval.end_time.FromNanoseconds(end)
                    if end in series.starts:
                        point.interval.start_time.FromNanoseconds(series.starts[end])
                    point.value.CopyFrom(value)
        if offset + page_size < len(matched):
            response.next_page_token = str(offset + page_size)
        return response

    @staticmethod
    def _page_offset(token: str) -> int:
        if not token:
            return 0
        if not token.isdigit():
            raise _Reject(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid page token {token!r}")
        return int(token)

    # -- metric descriptors (minimal) --

    def _create_descriptor(self, request: monitoring_v3.CreateMetricDescriptorRequest) -> Any:
        pb = monitoring_v3.CreateMetricDescriptorRequest.pb(request)
        project = _project_of(pb.name)
        descriptor = metric_pb2.MetricDescriptor()
        descriptor.CopyFrom(pb.metric_descriptor)
        if not descriptor.type.startswith(_WRITABLE_PREFIXES):
            raise _Reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field metricDescriptor.type had an invalid value of {descriptor.type!r}",
            )
        descriptor.name = f"projects/{project}/metricDescriptors/{descriptor.type}"
        with self._lock:
            self._descriptors[(project, descriptor.type)] = descriptor
            self._save()
        return descriptor

    def _get_descriptor(self, request: monitoring_v3.GetMetricDescriptorRequest) -> Any:
        match = _DESCRIPTOR_NAME.fullmatch(request.name)
        if not match:
            raise _Reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field name had an invalid value {request.name!r}",
            )
        project = _project_of(match.group(1))
        with self._lock:
            descriptor = self._descriptors.get((project, match.group(2)))
        if descriptor is None:
            raise _Reject(
                grpc.StatusCode.NOT_FOUND, f"Could not find descriptor for metric {match.group(2)}"
            )
        return descriptor

    def _list_descriptors(self, request: monitoring_v3.ListMetricDescriptorsRequest) -> Any:
        pb = monitoring_v3.ListMetricDescriptorsRequest.pb(request)
        project = _project_of(pb.name)
        predicate = _descriptor_filter(pb.filter)
        offset = self._page_offset(pb.page_token)
        page_size = pb.page_size or DEFAULT_PAGE_SIZE
        with self._lock:
            found = sorted(
                (d for (p, t), d in self._descriptors.items() if p == project and predicate(t)),
                key=lambda d: d.type,
            )
        response = _ListDescriptorsResponsePb()
        response.metric_descriptors.extend(found[offset : offset + page_size])
        if offset + page_size < len(found):
            response.next_page_token = str(offset + page_size)
        return response

    # -- persistence --

    def _save(self) -> None:
        """Write the state file atomically (caller holds the lock)."""
        if self._state_file is None:
            return
        state = {
            "version": 1,
            "descriptors": [
                {"project": project, "descriptor": json_format.MessageToDict(descriptor)}
                for (project, _), descriptor in self._descriptors.items()
            ],
            "series": [
                {
                    "project": s.project,
                    "metric_type": s.metric_type,
                    "metric_labels": s.metric_labels,
                    "resource_type": s.resource_type,
                    "resource_labels": s.resource_labels,
                    "metric_kind": s.metric_kind,
                    "value_type": s.value_type,
                    "points": [[ns, json_format.MessageToDict(v)] for ns, v in s.points],
                    "starts": [[end, start] for end, start in s.starts.items()],
                }
                for s in self._series.values()
            ],
        }
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self._state_file.parent, prefix=".monitoring-", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            os.replace(tmp, self._state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            for item in state["descriptors"]:
                descriptor = json_format.ParseDict(
                    item["descriptor"], metric_pb2.MetricDescriptor()
                )
                self._descriptors[(item["project"], descriptor.type)] = descriptor
            for item in state["series"]:
                series = _Series(
                    project=item["project"],
                    metric_type=item["metric_type"],
                    metric_labels=dict(item["metric_labels"]),
                    resource_type=item["resource_type"],
                    resource_labels=dict(item["resource_labels"]),
                    metric_kind=int(item["metric_kind"]),
                    value_type=int(item["value_type"]),
                    points=[
                        (int(ns), json_format.ParseDict(value, _TypedValuePb()))
                        for ns, value in item["points"]
                    ],
                    starts={int(end): int(start) for end, start in item.get("starts", [])},
                )
                self._series[series.key] = series
        except (OSError, ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            raise ValueError(f"monitoring stand-in: unreadable state file {path}: {exc}") from exc


def _descriptor_filter(text: str) -> Callable[[str], bool]:
    if not text.strip():
        return lambda _type: True
    match = re.fullmatch(
        r"\s*metric\.type\s*=\s*(starts_with\(\s*)?" + _STRING + r"(?(1)\s*\))\s*", text
    )
    if match is None:
        raise _Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Field filter had an invalid value {text!r}: the stand-in supports only "
            'metric.type = "T" and metric.type = starts_with("P")',
        )
    wanted = _unescape(match["value"])
    if match.group(1):
        return lambda metric_type: metric_type.startswith(wanted)
    return lambda metric_type: metric_type == wanted


def main(argv: list[str] | None = None) -> int:
    """``python -m warden_local.monitoring --port N [--state-file F]``: serve until signalled."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="warden_local.monitoring", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument(
        "--no-time-window",
        action="store_true",
        help="accept points of any age (replaying old data)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="warden.yaml whose alert_policies to evaluate"
    )
    parser.add_argument(
        "--incident-url",
        default="",
        help="webhook receiving 1.2 incidents (token from WARDEN_WEBHOOK_TOKEN)",
    )
    parser.add_argument(
        "--incident-topic",
        default="",
        help="or a Pub/Sub notification channel: projects/P/topics/T receiving the same JSON",
    )
    parser.add_argument("--project", default="warden-local")
    parser.add_argument(
        "--cloud-run-metrics",
        action="store_true",
        help="play Cloud Run: accept its request metrics (on by itself when --config declares "
        "serving services)",
    )
    args = parser.parse_args(argv)
    evaluator = None
    cloud_run_metrics = args.cloud_run_metrics
    if args.config is not None:
        from warden.config import load_config

        config = load_config(args.config)
        cloud_run_metrics = cloud_run_metrics or bool(config.serving_policies)
        if args.incident_url or args.incident_topic:
            from warden_local.policies import PolicyEvaluator

            evaluator = PolicyEvaluator(
                config.alert_policies,
                serving=config.serving_policies,
                project=args.project,
                url=args.incident_url,
                topic=args.incident_topic,
                token=os.environ.get("WARDEN_WEBHOOK_TOKEN", ""),
            )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    standin = MonitoringStandIn(
        args.port or None,
        state_file=args.state_file,
        check_time_window=not args.no_time_window,
        on_point=evaluator.observe if evaluator is not None else None,
        cloud_run_metrics=cloud_run_metrics,
        on_serving_point=evaluator.observe_serving if evaluator is not None else None,
    ).start()
    print(f"ready {standin.endpoint}", flush=True)
    try:
        stop.wait()
    finally:
        standin.stop()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
