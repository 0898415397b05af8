"""Structured logging: one JSON object a line on stdout, in Cloud Logging's structured format.

We attach google-cloud-logging's ``StructuredLogHandler`` directly instead of calling
``Client().setup_logging()``: outside Cloud Run that picks the API handler, which needs the
network, and building a client costs time at cold start. Fields go in
``extra={"json_fields": {...}}``; ``labels`` become ``logging.googleapis.com/labels``.

No secret reaches a log line through the request: the handler adds ``httpRequest.requestUrl``
(taken from the Flask request) to every line written while a request is served, and a URL's
query string may carry a token (``?auth_token=``); :class:`_ScrubRequest` keeps only scheme,
host and path. Request headers (``Authorization``) are never logged.
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
    for existing in root.handlers:
        if getattr(existing, _MARK, False) and (
            stream is None
            or (isinstance(existing, logging.StreamHandler) and existing.stream is stream)
        ):
            root.setLevel(level)
            return existing
    handler = StructuredLogHandler(
        project_id=project, stream=stream or sys.stdout, labels=labels or None
    )
    setattr(handler, _MARK, True)
    handler.addFilter(_ScrubRequest())  # after the handler's own filter, which sets the URL
    root.addHandler(handler)
    root.setLevel(level)
    # The Google libraries are chatty at INFO about transports and retries.
    for noisy in ("google", "urllib3", "werkzeug", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


def fields(**values: object) -> dict[str, dict[str, object]]:
    """``log.info("...", extra=fields(model=m, version=v))``."""
    return {"json_fields": {k: v for k, v in values.items() if v is not None}}


def scrub_url(url: str) -> str:
    """``scheme://host/path`` of ``url``: no user info, query string or fragment."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _ScrubRequest(logging.Filter):
    """Strip the query string (and any user info) from the request URL the structured handler
    attached to the record, in both the dict and the JSON text it formats from."""

    def filter(self, record: logging.LogRecord) -> bool:
        import json

        request = getattr(record, "_http_request", None)
        if isinstance(request, dict) and request.get("requestUrl"):
            request = {**request, "requestUrl": scrub_url(str(request["requestUrl"]))}
            record._http_request = request
            record._http_request_str = json.dumps(request, ensure_ascii=False)
        return True
