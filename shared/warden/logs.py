"""Structured logging: one JSON object a line on stdout, in Cloud Logging's structured format.

We attach google-cloud-logging's ``StructuredLogHandler`` directly instead of calling
``Client().setup_logging()``: outside Cloud Run that picks the API handler, which needs the
network, and building a client costs time at cold start. Fields go in
``extra={"json_fields": {...}}``; ``labels`` become ``logging.googleapis.com/labels``.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

_MARK = "_warden_structured"


def setup_logging(
    *,
    project: str | None = None,
    level: str = "INFO",
    stream: IO[str] | None = None,
    labels: dict[str, str] | None = None,
) -> logging.Handler:
    """Install the structured handler on the root logger (once; later calls reuse it)."""
    from google.cloud.logging_v2.handlers.structured_log import StructuredLogHandler

    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, _MARK, False) and (stream is None or handler.stream is stream):
            root.setLevel(level)
            return handler
    handler = StructuredLogHandler(
        project_id=project, stream=stream or sys.stdout, labels=labels or None
    )
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # The Google libraries are chatty at INFO about transports and retries.
    for noisy in ("google", "urllib3", "werkzeug", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


def fields(**values: object) -> dict[str, dict[str, object]]:
    """``log.info("...", extra=fields(model=m, version=v))``."""
    return {"json_fields": {k: v for k, v in values.items() if v is not None}}
