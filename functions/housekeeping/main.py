"""Cloud Function (2nd gen) ``housekeeping``: Pub/Sub ``housekeeping-requests`` → one model's
integrity sweep, snapshot to the backup bucket, retention, orphan sweep and state expiry.

Permanent errors (malformed event, unknown model) are logged at ERROR and acknowledged;
anything else propagates → 5xx → retry (see warden.jobs.entrypoints).
"""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework

from warden.jobs.entrypoints import run_job_event
from warden.jobs.housekeeping import housekeep

log = logging.getLogger("warden.functions.housekeeping")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.cloud_event
def housekeeping(cloud_event) -> None:
    run_job_event(
        cloud_event, job="housekeeping", use_case=housekeep, default_config=CONFIG, logger=log
    )
