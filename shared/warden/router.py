"""Use case: route alerts — ingest (dedup, silences, inhibition), then flush due groups.

Two doors lead here: Cloud Monitoring's webhook (HTTP, schema 1.2, token-checked) and
``model-events`` on Pub/Sub. A flush-only tick (Cloud Scheduler) sends groups whose
``group_wait`` / ``group_interval`` / ``repeat_interval`` came due with no new alert.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from warden.errors import ConfigError, EventError
from warden.logs import fields
from warden.runtime import Runtime
from warden.settings import secret

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
TOKEN_ENV = "WARDEN_WEBHOOK_TOKEN"  # noqa: S105 - the variable's name, not its value


def _instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def route(rt: Runtime, alerts: Iterable[Any], *, now: float | None = None) -> dict[str, Any]:
    """Ingest ``alerts`` and flush every due group; return a summary."""
    from warden.receivers import deliver

    config = rt.alerting
    if config is None:
        raise ConfigError(f"{rt.settings.config_path}: alerting: no routing configured")
    now = time.time() if now is None else now
    state = rt.alert_state()
    ingested = state.ingest(list(alerts), config=config, now=now, instance=_instance())

    def send(receiver: Any, message: dict[str, Any]) -> Any:
        return deliver(
            receiver,
            message,
            secrets=secret,
            publisher_factory=lambda: rt.clients.publisher,
            project=rt.settings.project,
        )

    flushed = state.flush_due(config=config, now=now, instance=_instance(), send=send)
    summary = {
        "new": ingested.new,
        "updated": ingested.updated,
        "unchanged": ingested.unchanged,
        "silenced": ingested.silenced,
        "inhibited": ingested.inhibited,
        "ignored": ingested.ignored,
        "notified": len(flushed.sent),
        "failed": len(flushed.failed),
    }
    log.info("routed alerts", extra=fields(**summary))
    return summary


def check_token(headers: Mapping[str, str], args: Mapping[str, str], expected: str | None) -> bool:
    """``?auth_token=`` or HTTP basic auth (any user), compared in constant time."""
    if not expected:
        return False  # no token configured: refuse everything rather than accept everything
    given = args.get("auth_token", "")
    auth = headers.get("Authorization", "")
    if not given and auth[:6].lower() == "basic ":
        try:
            given = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            given = ""
    return hmac.compare_digest(given.encode(), expected.encode())


def handle_webhook(
    rt: Runtime,
    *,
    method: str,
    headers: Mapping[str, str],
    args: Mapping[str, str],
    read_body: Callable[[int], bytes],
    content_length: int | None,
) -> tuple[int, dict[str, Any]]:
    """One Cloud Monitoring webhook call → (HTTP status, JSON body). Never 5xx for bad input."""
    from warden.alerting import alert_from_incident

    if method != "POST":
        return 405, {"error": "use POST"}
    if not check_token(headers, args, secret(TOKEN_ENV)):
        return 401, {"error": "missing or wrong credentials"}
    if content_length is None:
        return 411, {"error": "Content-Length is required"}
    if content_length > MAX_BODY_BYTES:  # refused before reading a byte of it
        return 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return 415, {"error": f"Content-Type must be application/json, got {ctype[:64]!r}"}
    body = read_body(content_length)
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return 400, {"error": "body is not UTF-8"}
    except (ValueError, RecursionError) as exc:
        return 400, {"error": f"body is not valid JSON: {str(exc)[:200]}"}
    try:
        alert = alert_from_incident(payload)
    except EventError as exc:
        return 400, {"error": str(exc)[:500]}
    return 200, {"status": "accepted", "fingerprint": alert.fingerprint, **route(rt, [alert])}
