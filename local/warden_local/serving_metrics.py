"""Cloud Run's request metrics, written by a local serving app to the Monitoring stand-in.

Deployed, Cloud Run publishes ``run.googleapis.com/request_count`` and
``run.googleapis.com/request_latencies`` for every request that reaches a revision, and the
serving alert policies (``warden.yaml`` ``serving:``, terraform/monitoring.tf) watch them; the
application writes nothing. Locally nobody plays Cloud Run, so the app calls
:meth:`ServingMetrics.record` once per request and this module writes what Cloud Run would,
through the real ``google-cloud-monitoring`` client (``Clients.monitoring``, the stand-in's
plaintext endpoint), to a stand-in started with ``cloud_run_metrics=True``
(``python -m warden_local.monitoring --cloud-run-metrics``, on by itself when its ``--config``
declares serving services):

* the same metric types, kinds and value types (DELTA INT64 count, DELTA DISTRIBUTION latency in
  ms), labels ``response_code`` and ``response_code_class`` (and ``route`` when given), on
  resource ``cloud_run_revision`` with ``service_name``, ``revision_name``, ``configuration_name``
  and ``location`` (https://cloud.google.com/monitoring/api/metrics_gcp, "run");
* one point per request rather than Cloud Run's per-minute aggregates (the stand-in merges
  them over the policies' 60 s window, so the value is the same);
* the latency histogram's bucket layout is this module's (:data:`LATENCY_BUCKETS`: exponential,
  10% wide, 1 ms to ~27 min): Cloud Run's own layout is not part of the documented metric, and
  the p95 is interpolated within a bucket either way.

Not for deployed code: Google refuses user writes to ``run.googleapis.com/`` types.
"""

from __future__ import annotations

import bisect
import threading
import time
from datetime import datetime
from typing import Any

from warden.clients import Clients
from warden.config import SERVICE_NAME
from warden.settings import Settings

__all__ = ["LATENCY_BUCKETS", "REQUEST_COUNT", "REQUEST_LATENCIES", "ServingMetrics"]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
#: BucketOptions of the latency distribution (milliseconds).
LATENCY_BUCKETS = {"num_finite_buckets": 150, "growth_factor": 1.1, "scale": 1.0}
_BOUNDS = [
    LATENCY_BUCKETS["scale"] * LATENCY_BUCKETS["growth_factor"] ** i
    for i in range(int(LATENCY_BUCKETS["num_finite_buckets"]) + 1)
]
_US = 1_000


class ServingMetrics:
    """Writes one request's Cloud Run metrics per :meth:`record` for the Cloud Run service
    ``service`` (its name under ``serving.services`` in warden.yaml). Thread-safe; points of a
    series are kept strictly ordered and non-overlapping, as the API requires — within this
    instance, so use one per service (two writers of one series could overlap, and the stand-in
    refuses that as Google does)."""

    def __init__(
        self,
        service: str,
        *,
        clients: Clients | None = None,
        revision: str | None = None,
        location: str = "local",
        timeout: float = 10.0,
    ) -> None:
        if not SERVICE_NAME.match(service):
            raise ValueError(f"{service!r} is not a Cloud Run service name")
        self.clients = clients if clients is not None else Clients(Settings.from_env())
        self.project = self.clients.settings.project
        self.service = service
        self.resource = {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": self.project,
                "service_name": service,
                "revision_name": revision or f"{service}-00001-loc",
                "configuration_name": service,
                "location": location,
            },
        }
        self.timeout = timeout
        self._lock = threading.Lock()
        self._last_end_us: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def record(
        self,
        latency_ms: float,
        status: int,
        *,
        at: datetime | None = None,
        route: str | None = None,
    ) -> None:
        """Write one request that took ``latency_ms`` and answered HTTP ``status``, ending at
        ``at`` (default: now; within the stand-in's 25 h window)."""
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status code")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        labels = {"response_code": str(status), "response_code_class": f"{status // 100}xx"}
        if route is not None:
            labels["route"] = route
        end_us = (time.time_ns() // _US) if at is None else _epoch_us(at)
        index = bisect.bisect_right(_BOUNDS, latency_ms)
        distribution = {
            "count": 1,
            "mean": float(latency_ms),
            "bucket_options": {"exponential_buckets": LATENCY_BUCKETS},
            "bucket_counts": [0] * index + [1],
        }
        from google.cloud import monitoring_v3

        series = []
        with self._lock:
            for metric_type, value in (
                (REQUEST_COUNT, {"int64_value": 1}),
                (REQUEST_LATENCIES, {"distribution_value": distribution}),
            ):
                key = (metric_type, tuple(sorted(labels.items())))
                last = self._last_end_us.get(key)
                end = end_us if last is None else max(end_us, last + 1)
                start = end - 1 if last is None else max(last, end - 1)
                self._last_end_us[key] = end
                series.append(
                    monitoring_v3.TimeSeries(
                        metric={"type": metric_type, "labels": labels},
                        resource=self.resource,
                        metric_kind="DELTA",
                        value_type="INT64" if metric_type == REQUEST_COUNT else "DISTRIBUTION",
                        points=[
                            {
                                "interval": {
                                    "start_time": _timestamp(start),
                                    "end_time": _timestamp(end),
                                },
                                "value": value,
                            }
                        ],
                    )
                )
            # Inside the lock: two requests of one series never reach the API out of order.
            self.clients.monitoring.create_time_series(
                request={"name": f"projects/{self.project}", "time_series": series},
                retry=None,
                timeout=self.timeout,
            )


def _epoch_us(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    return round(at.timestamp() * 1_000_000)


def _timestamp(us: int) -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts
