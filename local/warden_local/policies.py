"""Threshold alert policies evaluated by the local Monitoring stand-in.

Cloud Monitoring evaluates alert policies on the series it stores and sends incidents to a
notification channel — a webhook, or a Pub/Sub topic — as JSON, schema ``version: "1.2"``.
Locally the stand-in calls :meth:`PolicyEvaluator.observe` for every point it accepts; a series
that crosses a policy's threshold opens an incident, and one that comes back closes it (same
``incident_id``). Payloads are sent from a background thread with bounded retries, like a
notification channel, in the documented shape (tests/incidents.py holds them to it).

Serving policies (``warden.yaml`` ``serving:``, :class:`~warden.config.ServingPolicy`) are
evaluated from the Cloud Run request metrics the stand-in accepts when it plays Cloud Run
(:meth:`PolicyEvaluator.observe_serving`, written by :mod:`warden_local.serving_metrics`), like
the conditions terraform/monitoring.tf gives Cloud Monitoring: at each point, over the 60 s
window ending there, across every series of the service (revisions, routes, response codes),
the p95 of the merged ``request_latencies`` histograms (linear interpolation inside the bucket
holding the 95th percentile) or the share of ``request_count`` in ``response_code_class`` 5xx.
A breach opens an incident once it has held for ``duration_s`` of point time (evaluated at the
points, not every 60 s on a wall clock as Cloud Monitoring does); a window without a breach
closes it; a window without requests is no data and changes nothing. What each policy last
evaluated to is kept in :attr:`PolicyEvaluator.serving_status`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warden.config import SERVING_ALIGNMENT_S, AlertPolicy, ServingPolicy
from warden.telemetry.metrics import METRIC_PREFIX

log = logging.getLogger(__name__)

#: AlertPolicy.severity → the incident's ``severity`` as Google's documented example spells it
#: (lower case; a policy without a severity — Terraform sets none for "info" — says
#: "no severity"). See tests/incidents.py for the sources.
SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "no severity"}
#: The user name of the basic-auth webhook channel, here and in terraform/monitoring.tf (the
#: router checks only the password, in constant time).
BASIC_AUTH_USER = "monitoring"
_API_COMPARISON = {
    ">": "COMPARISON_GT",
    ">=": "COMPARISON_GT",
    "<": "COMPARISON_LT",
    "<=": "COMPARISON_LT",
}
_NUDGE = {">": 0, ">=": -1, "<": 0, "<=": 1}


def api_threshold(policy: AlertPolicy) -> float:
    """The GT/LT threshold Terraform gives Cloud Monitoring (terraform/modules/config)."""
    return policy.threshold + _NUDGE[policy.comparison] * 1e-9 * max(1.0, abs(policy.threshold))


def _project_number(project: str) -> int:
    """A stable stand-in for the scoping project's number (a 12-digit integer in Google's)."""
    return int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 10**12


def incident_payload(
    policy: AlertPolicy,
    *,
    project: str,
    incident_id: str,
    state: str,
    started_at: int,
    ended_at: int | None,
    value: float,
    metric_labels: Mapping[str, str],
    resource_type: str,
    resource_labels: Mapping[str, str],
    prefix: str = "warden",
) -> dict[str, Any]:
    """The webhook notification (schema 1.2) Cloud Monitoring sends for the metric-threshold
    policy Terraform makes of ``policy`` (terraform/monitoring.tf: display name, user labels,
    documentation subject and content, condition): the documented fields, names and spelling,
    nothing of our own."""
    metric_type = METRIC_PREFIX + policy.metric
    display = "Global" if resource_type == "global" else resource_type
    res_labels = ", ".join(f"{k}={v}" for k, v in resource_labels.items())
    resource_name = f"{project} {display} labels {{{res_labels}}}"
    labels_text = ", ".join(f"{k}={v}" for k, v in sorted(metric_labels.items()))
    where = f"{policy.metric} for {resource_name} with metric labels {{{labels_text}}}"
    threshold = api_threshold(policy)
    verb = "above" if _API_COMPARISON[policy.comparison] == "COMPARISON_GT" else "below"
    if state == "closed":
        summary = f"{where} returned to normal with a value of {value:.3f}."
    else:
        summary = f"{where} is {verb} the threshold of {threshold:.3f} with a value of {value:.3f}."
    condition = f"{policy.metric} {policy.comparison} {policy.threshold:g}"
    model = metric_labels.get("model", "")
    filters = [f'metric.type="{metric_type}"', f'resource.type="{resource_type}"']
    filters += [f'metric.label.{k}="{v}"' for k, v in policy.filter.items()]
    return _incident(
        policy_name=policy.name,
        severity=policy.severity,
        prefix=prefix,
        project=project,
        incident_id=incident_id,
        state=state,
        started_at=started_at,
        ended_at=ended_at,
        resource_name=resource_name,
        resource_type_display_name=display,
        resource={"type": resource_type, "labels": dict(resource_labels)},
        metric={"type": metric_type, "displayName": policy.metric, "labels": dict(metric_labels)},
        condition_name=condition,
        threshold_text=f"{threshold:g}",
        value=value,
        condition_threshold={
            "filter": " AND ".join(filters),
            "aggregations": [
                {
                    "alignmentPeriod": "300s",
                    "perSeriesAligner": "ALIGN_MAX" if verb == "above" else "ALIGN_MIN",
                }
            ],
            "comparison": _API_COMPARISON[policy.comparison],
            "thresholdValue": threshold,
            "duration": f"{policy.duration_s}s",
            "trigger": {"count": 1},
        },
        content=f"Warden policy `{policy.name}`: {condition} for model {model}.\n\n"
        f"Runbook: {policy.runbook or 'docs/RUNBOOKS.md'}",
        subject=f"[{policy.severity.upper()}] {policy.name}: {model}",
        summary=summary,
    )


def _incident(
    *,
    policy_name: str,
    severity: str,
    prefix: str,
    project: str,
    incident_id: str,
    state: str,
    started_at: int,
    ended_at: int | None,
    resource_name: str,
    resource_type_display_name: str,
    resource: dict[str, Any],
    metric: dict[str, Any],
    condition_name: str,
    threshold_text: str,
    value: float,
    condition_threshold: dict[str, Any],
    content: str,
    subject: str,
    summary: str,
) -> dict[str, Any]:
    """The schema 1.2 envelope every incident this stand-in sends shares, around one policy's
    resource, metric and condition: the documented fields, names and spelling
    (https://cloud.google.com/monitoring/support/notification-options#webhooks)."""
    policy_id = int(hashlib.sha256(policy_name.encode()).hexdigest()[:15], 16)
    return {
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": project,
            "scoping_project_number": _project_number(project),
            "url": "https://console.cloud.google.com/monitoring/alerting/incidents/"
            f"{incident_id}?project={project}",
            "severity": SEVERITY[severity],
            "started_at": started_at,
            "ended_at": ended_at,
            "state": state,
            "resource_id": "",
            "resource_name": resource_name,
            "resource_display_name": "",
            "resource_type_display_name": resource_type_display_name,
            "resource": resource,
            "metric": metric,
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": policy_name,
            "policy_user_labels": {
                "warden_policy": policy_name,
                "warden_prefix": prefix,
                "severity": severity,
            },
            "condition_name": condition_name,
            "threshold_value": threshold_text,
            "observed_value": f"{value:.3f}",
            "condition": {
                "name": f"projects/{project}/alertPolicies/{policy_id}/conditions/{policy_id + 1}",
                "displayName": condition_name,
                "conditionThreshold": condition_threshold,
            },
            "documentation": {
                "content": content,
                "mime_type": "text/markdown",
                "subject": subject,
            },
            "summary": summary,
        },
        "version": "1.2",
    }


REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
#: The conditions terraform/monitoring.tf gives each kind of serving policy (the suite holds the
#: two together): metric, aligner, cross-series reducer, display name of the metric.
SERVING_CONDITION = {
    "latency": (REQUEST_LATENCIES, "ALIGN_DELTA", "REDUCE_PERCENTILE_95", "Request Latencies"),
    "errors": (REQUEST_COUNT, "ALIGN_RATE", "REDUCE_SUM", "Request Count"),
}


def bucket_bounds(options: Any, count: int) -> list[tuple[float, float]]:
    """(lower, upper) of each of ``count`` buckets of a ``BucketOptions`` pb: bucket 0 is the
    underflow (-inf, first bound), the last the overflow (last bound, +inf)."""
    kind = options.WhichOneof("options")
    if kind == "linear_buckets":
        lin = options.linear_buckets
        bounds = [lin.offset + lin.width * i for i in range(lin.num_finite_buckets + 1)]
    elif kind == "exponential_buckets":
        exp = options.exponential_buckets
        bounds = [exp.scale * exp.growth_factor**i for i in range(exp.num_finite_buckets + 1)]
    elif kind == "explicit_buckets":
        bounds = list(options.explicit_buckets.bounds)
    else:
        bounds = []
    edges = [-math.inf, *bounds, math.inf]
    return [(edges[i], edges[i + 1]) for i in range(min(count, len(edges) - 1))]


def histogram(distribution: Any) -> dict[tuple[float, float], int]:
    """A ``Distribution`` pb as {(lower, upper): count}; without buckets, all at its mean."""
    if not distribution.bucket_counts:
        mean = float(distribution.mean)
        return {(mean, mean): int(distribution.count)} if distribution.count else {}
    bounds = bucket_bounds(distribution.bucket_options, len(distribution.bucket_counts))
    return {b: int(c) for b, c in zip(bounds, distribution.bucket_counts, strict=False) if c}


def percentile(buckets: Mapping[tuple[float, float], int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, interpolated linearly inside the bucket that
    holds it; an open-ended bucket gives its finite bound. None when it is empty."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for (lower, upper), count in sorted(buckets.items()):
        if seen + count >= rank:
            if math.isinf(lower):
                return upper
            if math.isinf(upper):
                return lower
            return lower + (rank - seen) / count * (upper - lower)
        seen += count
    return max(lower for lower, _ in buckets if not math.isinf(lower))


@dataclass(frozen=True)
class ServingEvaluation:
    """What a serving policy evaluated to at one point: the value (p95 in ms, or 5xx share)
    over the window ending ``at`` (seconds), the requests it saw, and whether it breached."""

    policy: str
    service: str
    at: int
    value: float
    requests: int
    breached: bool


def serving_incident_payload(
    policy: ServingPolicy,
    *,
    project: str,
    incident_id: str,
    state: str,
    started_at: int,
    ended_at: int | None,
    value: float,
    prefix: str = "warden",
) -> dict[str, Any]:
    """The 1.2 notification Cloud Monitoring sends for the serving policy Terraform makes of
    ``policy`` (terraform/monitoring.tf serving_latency / serving_errors): grouped by
    ``resource.label.service_name``, so the resource carries the service and the metric no
    labels."""
    metric_type, aligner, reducer, display = SERVING_CONDITION[policy.kind]
    resource_labels = {"project_id": project, "service_name": policy.service}
    resource_name = f"{project} Cloud Run Revision labels {{service_name={policy.service}}}"
    if policy.kind == "latency":
        condition = f"p95 latency of {policy.service} > {policy.threshold:g} ms"
        content = (
            f"Serving policy `{policy.name}`: p95 request latency of Cloud Run service "
            f"`{policy.service}` above {policy.threshold:g} ms for {policy.duration_s} s."
        )
    else:
        condition = f"5xx share of {policy.service} > {policy.threshold:g}"
        content = (
            f"Serving policy `{policy.name}`: share of 5xx answers of Cloud Run service "
            f"`{policy.service}` above {policy.threshold:g} for {policy.duration_s} s."
        )
    where = f"{display} for {resource_name}"
    if state == "closed":
        summary = f"{where} returned to normal with a value of {value:.3f}."
    else:
        summary = (
            f"{where} is above the threshold of {policy.threshold:.3f} with a value of {value:.3f}."
        )
    scope = f'resource.type="cloud_run_revision" AND resource.label.service_name="{policy.service}"'
    aggregation = {
        "alignmentPeriod": f"{SERVING_ALIGNMENT_S}s",
        "perSeriesAligner": aligner,
        "crossSeriesReducer": reducer,
        "groupByFields": ["resource.label.service_name"],
    }
    threshold: dict[str, Any] = {
        "filter": f'metric.type="{metric_type}" AND {scope}',
        "aggregations": [aggregation],
        "comparison": "COMPARISON_GT",
        "thresholdValue": policy.threshold,
        "duration": f"{policy.duration_s}s",
        "trigger": {"count": 1},
    }
    if policy.kind == "errors":
        threshold["filter"] += ' AND metric.label.response_code_class="5xx"'
        threshold["denominatorFilter"] = f'metric.type="{metric_type}" AND {scope}'
        threshold["denominatorAggregations"] = [dict(aggregation)]
    return _incident(
        policy_name=policy.name,
        severity=policy.severity,
        prefix=prefix,
        project=project,
        incident_id=incident_id,
        state=state,
        started_at=started_at,
        ended_at=ended_at,
        resource_name=resource_name,
        resource_type_display_name="Cloud Run Revision",
        resource={"type": "cloud_run_revision", "labels": resource_labels},
        metric={"type": metric_type, "displayName": display, "labels": {}},
        condition_name=condition,
        threshold_text=f"{policy.threshold:g}",
        value=value,
        condition_threshold=threshold,
        content=f"{content}\n\nRunbook: {policy.runbook}",
        subject=f"[{policy.severity.upper()}] {policy.name}: {policy.service}",
        summary=summary,
    )


class PolicyEvaluator:
    """Opens and closes incidents per (policy, series) and sends them through one notification
    channel, as Cloud Monitoring does: POSTed to the webhook ``url`` (basic auth with
    ``token``), or published as the message data to the Pub/Sub ``topic``
    (``projects/P/topics/T``, the emulator named by ``PUBSUB_EMULATOR_HOST``)."""

    def __init__(
        self,
        policies: list[AlertPolicy],
        *,
        serving: Sequence[ServingPolicy] = (),
        project: str,
        url: str = "",
        topic: str = "",
        token: str = "",
        post: Callable[..., Any] | None = None,
        max_attempts: int = 5,
    ) -> None:
        if bool(url) == bool(topic):
            raise ValueError("give exactly one notification channel: url or topic")
        self.policies = policies
        self.serving = list(serving)
        self.project = project
        self.url = url
        self.topic = topic
        self.token = token
        self.max_attempts = max_attempts
        self._post = post
        self._open: dict[tuple[Any, ...], tuple[str, int]] = {}
        self._lock = threading.Lock()
        # Serving: per service, the Cloud Run points of the last window (end ns, kind, labels,
        # count or histogram), breaches by policy (since when, in ns), last evaluations.
        self._window: dict[str, deque[tuple[int, str, dict[str, str], Any]]] = {}
        self._breach_since: dict[str, int] = {}
        self.serving_status: dict[str, ServingEvaluation] = {}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.sent: list[tuple[dict[str, Any], int | None]] = []  # (payload, final status)
        self._thread = threading.Thread(target=self._sender, name="incidents", daemon=True)
        self._thread.start()

    def observe(
        self,
        metric_type: str,
        metric_labels: Mapping[str, str],
        resource_type: str,
        resource_labels: Mapping[str, str],
        end_ns: int,
        value: float,
    ) -> None:
        for policy in self.policies:
            if METRIC_PREFIX + policy.metric != metric_type:
                continue
            if any(metric_labels.get(k) != v for k, v in policy.filter.items()):
                continue
            key = (policy.name, metric_type, tuple(sorted(metric_labels.items())), resource_type)
            breached = policy.breached(value)
            now = end_ns // 1_000_000_000
            with self._lock:
                opened = self._open.get(key)
                if breached and opened is None:
                    incident = (uuid.uuid4().hex, now)
                    self._open[key] = incident
                    state, ended = "open", None
                elif not breached and opened is not None:
                    incident = self._open.pop(key)
                    state, ended = "closed", now
                else:
                    continue
            self._queue.put(
                incident_payload(
                    policy,
                    project=self.project,
                    incident_id=incident[0],
                    state=state,
                    started_at=incident[1],
                    ended_at=ended,
                    value=value,
                    metric_labels=metric_labels,
                    resource_type=resource_type,
                    resource_labels=resource_labels,
                )
            )

    def observe_serving(
        self,
        metric_type: str,
        metric_labels: Mapping[str, str],
        resource_type: str,
        resource_labels: Mapping[str, str],
        start_ns: int,
        end_ns: int,
        value: Any,
    ) -> None:
        """One Cloud Run point (``value`` a TypedValue pb) accepted by the stand-in: evaluate
        the serving policies of its service over the window ending at ``end_ns``."""
        service = resource_labels.get("service_name", "")
        policies = [p for p in self.serving if p.service == service]
        if resource_type != "cloud_run_revision" or not policies:
            return
        if metric_type == REQUEST_COUNT:
            entry: Any = int(value.int64_value)
        elif metric_type == REQUEST_LATENCIES:
            entry = histogram(value.distribution_value)
        else:
            return
        window_ns = SERVING_ALIGNMENT_S * 1_000_000_000
        with self._lock:
            points = self._window.setdefault(service, deque())
            points.append((end_ns, metric_type, dict(metric_labels), entry))
            now = max(p[0] for p in points)
            # Points may arrive out of order across series: keep those inside the window.
            recent = [p for p in points if p[0] > now - window_ns]
            points.clear()
            points.extend(recent)
        for policy in policies:
            self._evaluate_serving(policy, recent, now)

    def _evaluate_serving(
        self, policy: ServingPolicy, points: list[tuple[int, str, dict[str, str], Any]], now: int
    ) -> None:
        if policy.kind == "latency":
            merged: dict[tuple[float, float], int] = {}
            for _, metric_type, _, hist in points:
                if metric_type == REQUEST_LATENCIES:
                    for bucket, count in hist.items():
                        merged[bucket] = merged.get(bucket, 0) + count
            requests = sum(merged.values())
            p95 = percentile(merged, 0.95)
            if p95 is None:
                return  # no request in the window: no data
            value = p95
        else:
            counts = [(labels, n) for _, t, labels, n in points if t == REQUEST_COUNT]
            requests = sum(n for _, n in counts)
            if requests <= 0:
                return
            failed = sum(n for labels, n in counts if labels.get("response_code_class") == "5xx")
            value = failed / requests
        breached = policy.breached(value)
        at = now // 1_000_000_000
        key = ("serving", policy.name)
        with self._lock:
            self.serving_status[policy.name] = ServingEvaluation(
                policy.name, policy.service, at, value, requests, breached
            )
            if breached:
                since = self._breach_since.setdefault(policy.name, now)
                held = now - since >= policy.duration_s * 1_000_000_000
                if not held or key in self._open:
                    return
                incident = (uuid.uuid4().hex, at)
                self._open[key] = incident
                state, ended = "open", None
            else:
                self._breach_since.pop(policy.name, None)
                if key not in self._open:
                    return
                incident = self._open.pop(key)
                state, ended = "closed", at
        self._queue.put(
            serving_incident_payload(
                policy,
                project=self.project,
                incident_id=incident[0],
                state=state,
                started_at=incident[1],
                ended_at=ended,
                value=value,
            )
        )

    def _channel(self) -> Callable[[dict[str, Any]], int]:
        """One delivery attempt → an HTTP-like status (a publish that went through is 200)."""
        if self.topic:
            from google.cloud import pubsub_v1

            publisher = pubsub_v1.PublisherClient()

            def publish(payload: dict[str, Any]) -> int:
                publisher.publish(self.topic, json.dumps(payload).encode()).result(timeout=30)
                return 200

            return publish
        import requests

        post = self._post or requests.post
        headers = {"Content-Type": "application/json"}
        if self.token:  # as the deployed webhook_basicauth channel: never in the URL
            basic = base64.b64encode(f"{BASIC_AUTH_USER}:{self.token}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return lambda payload: post(self.url, json=payload, headers=headers, timeout=10).status_code

    def _sender(self) -> None:
        send = self._channel()
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            status = None
            for attempt in range(self.max_attempts):
                try:
                    status = send(payload)
                except Exception as exc:  # the router (or the emulator) may be starting or down
                    log.warning("incident delivery failed: %s", type(exc).__name__)
                    status = None
                if status is not None and status < 500:
                    break
                time.sleep(min(8.0, 0.5 * 2**attempt))
            self.sent.append((payload, status))

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued incident has been posted (tests)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
