"""What every Pub/Sub job function does around its use case: decode the event, validate the
request, run it (or, for retrains and monitor runs, hand it to a Cloud Run job:
:mod:`warden.jobs.dispatch`), and map errors — permanent ones are logged at ERROR and
acknowledged (so Pub/Sub never loops on them); anything else propagates → 5xx → redelivery.

Every delivery ends in exactly one structured log line carrying the Pub/Sub ``message_id`` (the
CloudEvent id if the event could not be decoded), ``delivery_attempt`` when the envelope has
Pub/Sub's ``deliveryAttempt``, and ``delivery``: ``ok`` (INFO, acknowledged), ``refused`` (ERROR,
a permanent error, acknowledged) or ``retry`` (WARNING, re-raised → 5xx → redelivered).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from warden import runtime
from warden.errors import PermanentError
from warden.jobs.messages import decode_pubsub_event, parse_run_request
from warden.logs import fields


def run_job_event(
    cloud_event: Any,
    *,
    job: str,
    use_case: Callable[..., Any],
    default_config: Path,
    logger: logging.Logger,
) -> None:
    rt = runtime.current(default_config=default_config)
    event_id = cloud_event.get("id") if hasattr(cloud_event, "get") else None
    delivery = {"message_id": event_id, "delivery_attempt": _delivery_attempt(cloud_event)}
    try:
        message = decode_pubsub_event(cloud_event)
        delivery["message_id"] = message.message_id
        request = parse_run_request(message, rt.config, job=job)
        if job in ("retrain", "monitor"):
            # Here, or handed to a Cloud Run job, as the model's runners say.
            from warden.jobs.dispatch import dispatch

            kind: Literal["retrain", "monitor"] = "retrain" if job == "retrain" else "monitor"
            outcome = dispatch(request, rt, kind, use_case, actor=f"{job}_model")
        else:
            outcome = use_case(request, rt)
    except PermanentError as exc:
        logger.error(
            "%s request refused: %s",
            job,
            exc,
            extra=fields(
                event_id=event_id,
                error_type=type(exc).__name__,
                delivery="refused",
                **delivery,
            ),
        )
        return
    except Exception as exc:
        logger.warning(
            "%s delivery failed, Pub/Sub will redeliver: %s",
            job,
            exc,
            extra=fields(error_type=type(exc).__name__, delivery="retry", **delivery),
        )
        raise
    logger.info(
        "%s %s: %s",
        job,
        outcome.status,
        outcome.detail,
        extra=fields(model=outcome.model, version=outcome.version, delivery="ok", **delivery),
    )


def _delivery_attempt(cloud_event: Any) -> int | None:
    """Pub/Sub's ``deliveryAttempt`` from the event's envelope, if it carries one (Pub/Sub sets
    it only on subscriptions with a dead-letter policy)."""
    data = getattr(cloud_event, "data", None)
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    attempt = data.get("deliveryAttempt") if isinstance(data, Mapping) else None
    return attempt if type(attempt) is int else None
