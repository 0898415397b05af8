"""Threshold alert policies evaluated by the local Monitoring stand-in.

Cloud Monitoring evaluates alert policies on the series it stores and sends incidents to a
notification channel — a webhook, or a Pub/Sub topic — as JSON, schema ``version: "1.2"``.
Locally the stand-in calls :meth:`PolicyEvaluator.observe` for every point it accepts; a series
that crosses a policy's threshold opens an incident, and one that comes back closes it (same
``incident_id``). Payloads are sent from a background thread with bounded retries, like a
notification channel, in the documented shape (tests/incidents.py holds them to it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from warden.config import AlertPolicy
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
    policy_id = int(hashlib.sha256(policy.name.encode()).hexdigest()[:15], 16)
    return {
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": project,
            "scoping_project_number": _project_number(project),
            "url": "https://console.cloud.google.com/monitoring/alerting/incidents/"
            f"{incident_id}?project={project}",
            "severity": SEVERITY[policy.severity],
            "started_at": started_at,
            "ended_at": ended_at,
            "state": state,
            "resource_id": "",
            "resource_name": resource_name,
            "resource_display_name": "",
            "resource_type_display_name": display,
            "resource": {"type": resource_type, "labels": dict(resource_labels)},
            "metric": {
                "type": metric_type,
                "displayName": policy.metric,
                "labels": dict(metric_labels),
            },
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": policy.name,
            "policy_user_labels": {
                "warden_policy": policy.name,
                "warden_prefix": prefix,
                "severity": policy.severity,
            },
            "condition_name": condition,
            "threshold_value": f"{threshold:g}",
            "observed_value": f"{value:.3f}",
            "condition": {
                "name": f"projects/{project}/alertPolicies/{policy_id}/conditions/{policy_id + 1}",
                "displayName": condition,
                "conditionThreshold": {
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
            },
            "documentation": {
                "content": f"Warden policy `{policy.name}`: {condition} for model {model}.\n\n"
                f"Runbook: {policy.runbook or 'docs/RUNBOOKS.md'}",
                "mime_type": "text/markdown",
                "subject": f"[{policy.severity.upper()}] {policy.name}: {model}",
            },
            "summary": summary,
        },
        "version": "1.2",
    }


class PolicyEvaluator:
    """Opens and closes incidents per (policy, series) and sends them through one notification
    channel, as Cloud Monitoring does: POSTed to the webhook ``url`` (basic auth with
    ``token``), or published as the message data to the Pub/Sub ``topic``
    (``projects/P/topics/T``, the emulator named by ``PUBSUB_EMULATOR_HOST``)."""

    def __init__(
        self,
        policies: list[AlertPolicy],
        *,
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
        self.project = project
        self.url = url
        self.topic = topic
        self.token = token
        self.max_attempts = max_attempts
        self._post = post
        self._open: dict[tuple[Any, ...], tuple[str, int]] = {}
        self._lock = threading.Lock()
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
