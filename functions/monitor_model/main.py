"""Cloud Function (2nd gen) ``monitor_model``: Pub/Sub ``monitor-requests`` → drift and performance
check of one model's champion.

Permanent errors (malformed event, unknown model, bad data) are logged at ERROR and acknowledged;
anything else propagates → 5xx → retry (see warden.jobs.entrypoints).
"""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework

from warden.jobs.entrypoints import run_job_event
from warden.jobs.monitor import monitor

log = logging.getLogger("warden.functions.monitor_model")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.cloud_event
def monitor_model(cloud_event) -> None:
    run_job_event(cloud_event, job="monitor", use_case=monitor, default_config=CONFIG, logger=log)
