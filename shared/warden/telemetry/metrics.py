"""Write (and read back) Warden's custom metrics in Cloud Monitoring.

Each :class:`MetricPoint` becomes one gauge DOUBLE point of the custom metric
``custom.googleapis.com/warden/<name>`` on the ``global`` resource. The Monitoring client is built
on the first write and ``google.cloud.monitoring_v3`` is imported only inside methods, so a
function that never writes metrics never pays for that import.

Failures are wrapped so callers can decide whether metrics are fatal: transient gRPC statuses
raise :class:`~warden.errors.MetricsWriteError` (a ``RetryableError``), everything else
:class:`~warden.errors.MetricsRejectedError` (a ``PermanentError``). Calls use ``retry=None`` and
a short timeout: a dead endpoint fails fast instead of stalling the function for the client's
default retry budget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.errors import MetricsRejectedError, MetricsWriteError

if TYPE_CHECKING:
    from google.cloud.monitoring_v3 import MetricServiceClient

    from warden.clients import Clients

METRIC_PREFIX = "custom.googleapis.com/warden/"
#: The API rejects requests with more series than this.
MAX_SERIES_PER_REQUEST = 200
#: How far back ``read`` looks when no ``since`` is given.
DEFAULT_LOOKBACK = timedelta(days=30)
DEFAULT_TIMEOUT = 5.0

TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL"})


@dataclass(frozen=True)
class MetricSpec:
    """What a custom metric means; Terraform declares the same descriptor (a test holds them)."""

    labels: tuple[str, ...]
    unit: str
    description: str


_VERSIONED = ("model", "version")
_PER_JOB = ("model", "job")

#: Every metric Warden writes. A point of any other name, or with a label not listed here, is
#: refused before it is sent, so the descriptors and alert policies in Terraform cover all of them.
CATALOGUE: dict[str, MetricSpec] = {
    "model/silhouette": MetricSpec(
        _VERSIONED, "1", "Silhouette of a registered version on held-out data."
    ),
    "model/roc_auc": MetricSpec(
        _VERSIONED, "1", "ROC AUC of a registered version on held-out data."
    ),
    "model/f1": MetricSpec(_VERSIONED, "1", "F1 of a registered version on held-out data."),
    "model/accuracy": MetricSpec(
        _VERSIONED, "1", "Accuracy of a registered version on held-out data."
    ),
    "model/promoted": MetricSpec(_PER_JOB, "1", "1 when a retrain promoted its candidate, else 0."),
    "retrain/duration": MetricSpec(_PER_JOB, "s", "Wall time of a successful retrain."),
    "run/success": MetricSpec(
        _PER_JOB, "1", "1 per successful retrain or monitor run, 0 per failed one."
    ),
    "drift/share": MetricSpec(
        _VERSIONED, "1", "Share of features that drifted from the champion's profile."
    ),
    "drift/dataset": MetricSpec(
        _VERSIONED, "1", "1 when the dataset-level drift verdict is positive."
    ),
    "drift/score": MetricSpec(
        (*_VERSIONED, "feature"), "1", "Per-feature drift statistic (see docs/drift.md)."
    ),
    "drift/prediction": MetricSpec(
        (*_VERSIONED, "statistic"),
        "1",
        "Prediction drift of served outputs against the champion's holdout outputs.",
    ),
    "monitor/performance": MetricSpec(
        (*_VERSIONED, "metric"), "1", "Champion's metric on recent data."
    ),
    "monitor/performance_drop": MetricSpec(
        (*_VERSIONED, "metric"), "1", "Relative drop of that metric against the promoted value."
    ),
    "housekeeping/heartbeat": MetricSpec(
        ("model",), "1", "1 at the end of each successful housekeeping run."
    ),
    "housekeeping/integrity_failures": MetricSpec(
        ("model",),
        "1",
        "Versions whose files are missing or differ from their manifest's sha256.",
    ),
    "housekeeping/deleted_versions": MetricSpec(
        ("model",), "1", "Versions retired by a housekeeping run's retention."
    ),
}

_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
_MAX_LABEL_VALUE = 1024


@dataclass(frozen=True)
class MetricPoint:
    """One value of one series: ``name`` ("model/roc_auc") plus ``labels`` identify the series."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise MetricsRejectedError(
                f"metric name {self.name!r}: use letters, digits, '_', '.', '-' and '/' separators"
            )
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise MetricsRejectedError(f"metric {self.name}: value {self.value!r} is not a number")
        spec = CATALOGUE.get(self.name)
        if spec is None:
            raise MetricsRejectedError(
                f"metric {self.name!r} is not in warden.telemetry.metrics.CATALOGUE "
                "(nor in Terraform's descriptors): declare it in both"
            )
        for key, val in self.labels.items():
            if key not in spec.labels and _LABEL_KEY.fullmatch(key):
                raise MetricsRejectedError(
                    f"metric {self.name}: label {key!r} is not declared (declared: {spec.labels})"
                )
            if not _LABEL_KEY.fullmatch(key):
                raise MetricsRejectedError(
                    f"metric {self.name}: label key {key!r} must match [a-z][a-z0-9_]*"
                )
            if not isinstance(val, str) or len(val) > _MAX_LABEL_VALUE:
                raise MetricsRejectedError(
                    f"metric {self.name}: label {key} must be a string of at most "
                    f"{_MAX_LABEL_VALUE} characters"
                )
        # Copy so a caller mutating its dict later cannot change a "frozen" point.
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "labels", dict(self.labels))

    @property
    def metric_type(self) -> str:
        return METRIC_PREFIX + self.name

    @property
    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.metric_type, tuple(sorted(self.labels.items()))


def _wrap(exc: Exception, action: str) -> Exception:
    """Map a google.api_core error to Warden's tree by its gRPC status."""
    status = getattr(exc, "grpc_status_code", None)
    code = getattr(status, "name", None)
    message = f"Cloud Monitoring {action} failed ({code or type(exc).__name__}): {exc}"
    if code in TRANSIENT_CODES:
        return MetricsWriteError(message, code=code)
    return MetricsRejectedError(message, code=code)


def _utc(when: datetime, what: str) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {when.isoformat()}")
    return when.astimezone(UTC)


class MetricsWriter:
    """Writes :class:`MetricPoint`\\ s as gauge points; reads them back for the CLI.

    ``client_factory`` is a ``MetricServiceClient`` or a zero-argument callable returning one; a
    callable is called once, on the first call that needs the API.
    """

    def __init__(
        self,
        client_factory: Callable[[], MetricServiceClient] | MetricServiceClient,
        project: str,
        *,
        enabled: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        # A client exposes create_time_series; anything else callable is a factory.
        if hasattr(client_factory, "create_time_series"):
            self._client: Any = client_factory
            self._factory: Callable[[], Any] | None = None
        elif callable(client_factory):
            self._client = None
            self._factory = client_factory
        else:
            raise TypeError("client_factory must be a MetricServiceClient or a callable")
        self.project = project
        self.enabled = enabled
        self.timeout = timeout

    @property
    def client(self) -> MetricServiceClient:
        if self._client is None:
            assert self._factory is not None
            from google.auth import exceptions as auth_exceptions

            try:
                self._client = self._factory()
            except auth_exceptions.GoogleAuthError as exc:  # e.g. no credentials: config problem
                raise MetricsRejectedError(f"cannot build the Monitoring client: {exc}") from exc
        return self._client

    @property
    def project_name(self) -> str:
        return f"projects/{self.project}"

    def write(self, points: Iterable[MetricPoint], *, at: datetime | None = None) -> int:
        """Write one point per series at ``at`` (default: now); return how many were written.

        A series may appear only once per call: two points of one series at one time would be
        rejected by the API as out of order whichever request carried the second, so the whole
        call is refused before anything is sent.
        """
        batch = list(points)
        if not self.enabled or not batch:
            return 0
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for point in batch:
            if point.series_key in seen:
                raise MetricsRejectedError(
                    f"metric {point.name} with labels {point.labels} appears twice in one write"
                )
            seen.add(point.series_key)
        when = datetime.now(UTC) if at is None else _utc(at, "at")

        from google.api import metric_pb2
        from google.api_core import exceptions as api_exceptions
        from google.cloud import monitoring_v3

        gauge = metric_pb2.MetricDescriptor.MetricKind.GAUGE
        double = metric_pb2.MetricDescriptor.ValueType.DOUBLE
        series = [
            monitoring_v3.TimeSeries(
                metric={"type": p.metric_type, "labels": p.labels},
                resource={"type": "global", "labels": {"project_id": self.project}},
                metric_kind=gauge,
                value_type=double,
                points=[{"interval": {"end_time": when}, "value": {"double_value": p.value}}],
            )
            for p in batch
        ]
        written = 0
        for start in range(0, len(series), MAX_SERIES_PER_REQUEST):
            chunk = series[start : start + MAX_SERIES_PER_REQUEST]
            try:
                self.client.create_time_series(
                    request={"name": self.project_name, "time_series": chunk},
                    retry=None,
                    timeout=self.timeout,
                )
            except api_exceptions.GoogleAPICallError as exc:
                raise _wrap(exc, f"write ({written} of {len(series)} series written)") from exc
            written += len(chunk)
        return written

    def read(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        since: datetime | None = None,
    ) -> list[tuple[dict[str, str], datetime, float]]:
        """Points of metric ``name`` whose labels include ``labels``, newest first.

        ``since`` is exclusive (the API reads the half-open interval ``(since, now]``); it
        defaults to :data:`DEFAULT_LOOKBACK` ago.
        """
        probe = MetricPoint(name, 0.0, dict(labels or {}))  # validates name and labels
        end = datetime.now(UTC)
        start = end - DEFAULT_LOOKBACK if since is None else _utc(since, "since")
        if start >= end:
            return []
        terms = [f"metric.type = {_quote(probe.metric_type)}", 'resource.type = "global"']
        terms += [f"metric.labels.{k} = {_quote(v)}" for k, v in sorted(probe.labels.items())]

        from google.api_core import exceptions as api_exceptions
        from google.cloud import monitoring_v3

        request = monitoring_v3.ListTimeSeriesRequest(
            name=self.project_name,
            filter=" AND ".join(terms),
            interval={"start_time": start, "end_time": end},
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        out: list[tuple[dict[str, str], datetime, float]] = []
        try:
            for ts in self.client.list_time_series(
                request=request, retry=None, timeout=self.timeout
            ):
                raw = monitoring_v3.TimeSeries.pb(ts)
                series_labels = dict(raw.metric.labels)
                for point in raw.points:
                    kind = point.value.WhichOneof("value")
                    if kind not in {"double_value", "int64_value"}:
                        continue
                    out.append(
                        (
                            dict(series_labels),
                            point.interval.end_time.ToDatetime(tzinfo=UTC),
                            float(getattr(point.value, kind)),
                        )
                    )
        except api_exceptions.GoogleAPICallError as exc:
            raise _wrap(exc, "read") from exc
        out.sort(key=lambda item: item[1], reverse=True)  # stable: series order kept on ties
        return out


def _quote(value: str) -> str:
    # The filter language takes double-quoted strings with backslash escapes, as JSON does.
    return json.dumps(value, ensure_ascii=False)


def from_clients(clients: Clients) -> MetricsWriter:
    """A writer for ``clients``' project that builds the Monitoring client only when used."""
    return MetricsWriter(
        lambda: clients.monitoring,
        clients.settings.project,
        enabled=clients.settings.metrics_enabled,
    )
