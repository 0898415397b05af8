"""Cloud Function (2nd gen) ``monitor_model``: Pub/Sub ``monitor-requests`` → drift and
performance check of one model's champion against recent data.

Permanent errors (malformed event, unknown model, no data, stale profile) are logged at ERROR and
acknowledged, so Pub/Sub never loops on them. Anything else propagates → 5xx → retry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework

from warden import runtime
from warden.errors import PermanentError
from warden.logs import fields
from warden.messages import decode_pubsub_event, parse_run_request
from warden.monitor import monitor

log = logging.getLogger("warden.functions.monitor_model")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.cloud_event
def monitor_model(cloud_event) -> None:
    rt = runtime.current(default_config=CONFIG)
    try:
        message = decode_pubsub_event(cloud_event)
        request = parse_run_request(message, rt.config, job="monitor")
        outcome = monitor(request, rt)
    except PermanentError as exc:
        log.error(
            "monitor request refused: %s",
            exc,
            extra=fields(
                event_id=cloud_event.get("id") if hasattr(cloud_event, "get") else None,
                error_type=type(exc).__name__,
            ),
        )
        return
    log.info(
        "monitor %s: %s",
        outcome.status,
        outcome.detail,
        extra=fields(
            model=outcome.model,
            version=outcome.version,
            dataset_drift=outcome.dataset_drift,
            degraded=outcome.degraded,
            retrain_requested=outcome.retrain_requested,
        ),
    )
