"""What every Pub/Sub job function does around its use case: decode the event, validate the
request, run, and map errors — permanent ones are logged at ERROR and acknowledged (so Pub/Sub
never loops on them); anything else propagates → 5xx → redelivery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warden import runtime
from warden.errors import PermanentError
from warden.logs import fields
from warden.messages import decode_pubsub_event, parse_run_request


def run_job_event(
    cloud_event: Any,
    *,
    job: str,
    use_case: Callable[..., Any],
    default_config: Path,
    logger: logging.Logger,
) -> None:
    rt = runtime.current(default_config=default_config)
    try:
        message = decode_pubsub_event(cloud_event)
        request = parse_run_request(message, rt.config, job=job)
        outcome = use_case(request, rt)
    except PermanentError as exc:
        logger.error(
            "%s request refused: %s",
            job,
            exc,
            extra=fields(
                event_id=cloud_event.get("id") if hasattr(cloud_event, "get") else None,
                error_type=type(exc).__name__,
            ),
        )
        return
    logger.info(
        "%s %s: %s",
        job,
        outcome.status,
        outcome.detail,
        extra=fields(model=outcome.model, version=outcome.version),
    )
