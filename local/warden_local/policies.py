"""Threshold alert policies evaluated by the local Monitoring stand-in.

Cloud Monitoring evaluates alert policies on the series it stores and sends incidents to a
webhook notification channel as JSON, schema ``version: "1.2"``. Locally the stand-in calls
:meth:`PolicyEvaluator.observe` for every point it accepts; a series that crosses a policy's
threshold opens an incident, and one that comes back closes it (same ``incident_id``). Payloads
are POSTed from a background thread with bounded retries, like a notification channel.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from warden.config import AlertPolicy
from warden.metrics import METRIC_PREFIX

log = logging.getLogger(__name__)

SEVERITY = {"critical": "Critical", "error": "Error", "warning": "Warning", "info": "No severity"}


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
) -> dict[str, Any]:
    """A Cloud Monitoring webhook payload, schema 1.2, for one threshold policy."""
    metric_type = METRIC_PREFIX + policy.metric
    verb = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
    summary = (
        f"{metric_type} for {', '.join(f'{k}={v}' for k, v in sorted(metric_labels.items()))}"
        f" is {verb[policy.comparison]} the threshold of {policy.threshold} "
        f"with a value of {value:.4g}."
    )
    if state == "closed":
        summary = f"{metric_type} returned to normal with a value of {value:.4g}."
    return {
        "version": "1.2",
        "incident": {
            "incident_id": incident_id,
            "scoping_project_id": project,
            "scoping_project_number": 0,
            "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}"
            f"?project={project}",
            "started_at": started_at,
            "ended_at": ended_at,
            "state": state,
            "summary": summary,
            "apigee_url": "",
            "observed_value": f"{value:.6g}",
            "resource": {"type": resource_type, "labels": dict(resource_labels)},
            "resource_type_display_name": resource_type,
            "resource_id": "",
            "resource_display_name": resource_type,
            "resource_name": f"projects/{project}",
            "metric": {
                "type": metric_type,
                "displayName": policy.metric,
                "labels": dict(metric_labels),
            },
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": policy.name,
            "policy_user_labels": {"warden_policy": policy.name},
            "documentation": {
                "content": f"Runbook: {policy.runbook or 'docs/RUNBOOKS.md'}",
                "mime_type": "text/markdown",
                "subject": f"[{policy.severity.upper()}] {policy.name}",
            },
            "condition": {
                "name": f"projects/{project}/alertPolicies/0/conditions/0",
                "displayName": f"{policy.metric} {policy.comparison} {policy.threshold}",
            },
            "condition_name": f"{policy.metric} {policy.comparison} {policy.threshold}",
            "threshold_value": str(policy.threshold),
            "severity": SEVERITY[policy.severity],
        },
    }


class PolicyEvaluator:
    """Opens and closes incidents per (policy, series) and posts them to ``url``."""

    def __init__(
        self,
        policies: list[AlertPolicy],
        *,
        project: str,
        url: str,
        token: str = "",
        post: Callable[..., Any] | None = None,
        max_attempts: int = 5,
    ) -> None:
        self.policies = policies
        self.project = project
        self.url = url
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

    def _sender(self) -> None:
        import requests

        post = self._post or requests.post
        headers = {"Content-Type": "application/json"}
        if self.token:  # Cloud Monitoring's webhook channels support basic auth
            basic = base64.b64encode(f"monitoring:{self.token}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            status = None
            for attempt in range(self.max_attempts):
                try:
                    status = post(self.url, json=payload, headers=headers, timeout=10).status_code
                except Exception as exc:  # the router may be starting or down
                    log.warning("incident post failed: %s", type(exc).__name__)
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
