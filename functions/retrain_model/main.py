"""Cloud Function (2nd gen) ``retrain_model``: Pub/Sub ``retrain-requests`` → retrain one model.

Permanent errors (malformed event, unknown model, bad data) are logged at ERROR and acknowledged
(return normally → 2xx), so Pub/Sub never loops on them. Anything else propagates → 5xx → retry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import functions_framework

from warden import runtime
from warden.errors import PermanentError
from warden.logs import fields
from warden.messages import decode_pubsub_event, parse_run_request
from warden.retrain import retrain

log = logging.getLogger("warden.functions.retrain_model")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.cloud_event
def retrain_model(cloud_event) -> None:
    rt = runtime.current(default_config=CONFIG)
    try:
        message = decode_pubsub_event(cloud_event)
        request = parse_run_request(message, rt.config, job="retrain")
        outcome = retrain(request, rt)
    except PermanentError as exc:
        log.error(
            "retrain request refused: %s",
            exc,
            extra=fields(
                event_id=cloud_event.get("id") if hasattr(cloud_event, "get") else None,
                error_type=type(exc).__name__,
            ),
        )
        return
    log.info(
        "retrain %s: %s",
        outcome.status,
        outcome.detail,
        extra=fields(model=outcome.model, version=outcome.version, promoted=outcome.promoted),
    )
