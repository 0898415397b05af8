"""Cloud Functions (2nd gen) ``route_alerts`` (HTTP: Cloud Monitoring incident webhooks) and
``route_alert_events`` (Pub/Sub: ``model-events``, flush ticks, and Cloud Monitoring incidents
from a Pub/Sub notification channel) over one routing state.

Bad input gets a 4xx naming the problem (HTTP) or is acknowledged with an ERROR log (Pub/Sub);
a failure to reach the state or a receiver's transport propagates → 5xx → retried.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import functions_framework

from warden import runtime
from warden.alerts.router import handle_webhook, incident_alerts, route
from warden.errors import PermanentError
from warden.jobs.messages import decode_json_payload, decode_pubsub_event
from warden.logs import fields
from warden.web import url_length

log = logging.getLogger("warden.functions.route_alerts")
CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.http
def route_alerts(request):
    rt = runtime.current(default_config=CONFIG)
    status, body = handle_webhook(  # logs its own refusals at ERROR, with the reason
        rt,
        method=request.method,
        headers=request.headers,
        args=request.args,
        read_body=lambda n: request.stream.read(n),
        content_length=request.content_length,
        url_length=url_length(request),
    )
    return json.dumps(body), status, {"Content-Type": "application/json"}


@functions_framework.cloud_event
def route_alert_events(cloud_event) -> None:
    """model-events, flush ticks, and Cloud Monitoring incidents from a Pub/Sub notification
    channel — told apart by shape: an ``incident`` object is a notification."""
    rt = runtime.current(default_config=CONFIG)
    message_id = cloud_event.get("id") if hasattr(cloud_event, "get") else None
    try:
        message = decode_pubsub_event(cloud_event)
        message_id = message.message_id
        payload = decode_json_payload(message)
        if "incident" in payload:
            alerts = incident_alerts(rt, payload, door="pubsub")
        elif payload.get("kind") == "flush":
            alerts = []
        else:
            from warden.alerts import alert_from_model_event

            alerts = [alert_from_model_event(payload, message.attributes)]
        summary = route(rt, alerts)
    except PermanentError as exc:
        log.error(
            "alert event refused: %s",
            exc,
            extra=fields(
                error_type=type(exc).__name__,
                message_id=message_id,
                door="pubsub",
                refused=True,
                delivery="refused",
            ),
        )
        return
    except Exception as exc:  # state or receiver transport: 5xx, Pub/Sub redelivers
        log.warning(
            "alert event failed, Pub/Sub will redeliver: %s",
            exc,
            extra=fields(error_type=type(exc).__name__, message_id=message_id, delivery="retry"),
        )
        raise
    log.info("alert events routed", extra=fields(message_id=message_id, delivery="ok", **summary))
