"""Scheduled jobs derived from ``warden.yaml``: one per model and schedule kind. Pure.

The same names and payloads are used by Terraform (``google_cloud_scheduler_job``), the local
Scheduler stand-in and ``warden jobs``, so a job means the same thing everywhere.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from warden.config import WardenConfig

#: Job kind → the Pub/Sub topic id its ticks are published to.
TOPICS: dict[str, str] = {
    "retrain": "retrain-requests",
    "monitor": "monitor-requests",
    "housekeeping": "housekeeping-requests",
}
#: Topic that the functions publish model events to.
EVENTS_TOPIC = "model-events"
DEFAULT_LOCATION = "europe-west1"


@dataclass(frozen=True)
class JobSpec:
    model: str
    kind: str
    cron: str
    timezone: str
    topic: str
    data: dict[str, Any] | None = None  # a fixed payload for jobs that are not per model

    @property
    def job_id(self) -> str:
        return f"{self.model}-{self.kind}"

    def payload(self) -> dict[str, Any]:
        """Exactly what the job publishes (Cloud Scheduler's data is static)."""
        if self.data is not None:
            return dict(self.data)
        return {"schema": 1, "model": self.model, "reason": "schedule"}

    def data_b64(self) -> str:
        return base64.b64encode(json.dumps(self.payload(), sort_keys=True).encode()).decode()

    def attributes(self) -> dict[str, str]:
        if self.data is not None:
            return {"kind": self.kind}
        return {"model": self.model, "kind": self.kind}

    def name(self, project: str, location: str) -> str:
        return f"projects/{project}/locations/{location}/jobs/{self.job_id}"


#: Flushes due alert groups when no new alert arrives (route_alert_events reads model-events).
ALERT_FLUSH = JobSpec(
    model="alerts",
    kind="flush",
    cron="* * * * *",
    timezone="Etc/UTC",
    topic=EVENTS_TOPIC,
    data={"schema": 1, "kind": "flush"},
)


def job_specs(config: WardenConfig) -> list[JobSpec]:
    specs = [ALERT_FLUSH] if config.alerting is not None else []
    for name, model in sorted(config.models.items()):
        for kind in TOPICS:
            schedule = getattr(model.schedules, kind)
            if schedule is not None:
                specs.append(JobSpec(name, kind, schedule.cron, schedule.timezone, TOPICS[kind]))
    return specs
