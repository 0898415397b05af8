"""Cloud Function (2nd gen) ``retrain_model``: Pub/Sub ``retrain-requests`` → retrain one model.

Permanent errors (malformed event, unknown model, bad data) are logged at ERROR and acknowledged;
anything else propagates → 5xx → retry (see warden.jobs.entrypoints).
"""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework

from warden.jobs.entrypoints import run_job_event
from warden.jobs.retrain import retrain

log = logging.getLogger("warden.functions.retrain_model")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.cloud_event
def retrain_model(cloud_event) -> None:
    run_job_event(cloud_event, job="retrain", use_case=retrain, default_config=CONFIG, logger=log)
