"""Use case: route alerts — ingest (dedup, silences, inhibition), then flush due groups.

Two doors lead here: Cloud Monitoring's webhook (HTTP, schema 1.2, token-checked) and
``model-events`` on Pub/Sub. A flush-only tick (Cloud Scheduler) sends groups whose
``group_wait`` / ``group_interval`` / ``repeat_interval`` came due with no new alert.
"""

from __future__ import annotations

import base64
import binascii
import functools
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
    """Ingest ``alerts`` and flush the groups they touched that are due; with no alerts (the
    scheduler's tick), flush every group whose ``due`` marker has come. Returns a summary."""
    from warden.alerts.receivers import deliver

    config = rt.alerting
    if config is None:
        raise ConfigError(f"{rt.settings.config_path}: alerting: no routing configured")
    now = time.time() if now is None else now
    state = rt.alert_state()
    instance = _instance()

    def send(receiver: Any, message: dict[str, Any]) -> Any:
        return deliver(
            receiver,
            message,
            secrets=secret,
            publisher_factory=lambda: rt.clients.publisher,
            project=rt.settings.project,
        )

    batch = list(alerts)
    if not batch:
        flushed = state.flush_due(config=config, now=now, instance=instance, send=send)
        summary = {"tick": True, "groups": flushed.groups, "folded": flushed.folded}
    else:
        ingested = state.ingest(batch, config=config, now=now, instance=instance, flushing=True)
        flushed = state.flush_groups(
            ingested.due,
            config=config,
            now=now,
            instance=instance,
            send=send,
            mutes=ingested.mutes,
        )
        summary = {
            "new": ingested.new,
            "updated": ingested.updated,
            "unchanged": ingested.unchanged,
            "silenced": ingested.silenced,
            "inhibited": ingested.inhibited,
            "ignored": ingested.ignored,
        }
    summary.update(notified=len(flushed.sent), failed=len(flushed.failed))
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


def incident_alerts(rt: Runtime, payload: Any, *, door: str, now: float | None = None) -> list[Any]:
    """A Cloud Monitoring notification (either door: webhook or Pub/Sub channel) as the alerts
    to route: one, or none for the console's test notification unless
    ``alerting.incidents.route_test_notifications`` asks for it. Raises :class:`EventError`
    for what can never be an alert (no ``incident`` object, no ``incident_id``)."""
    from dataclasses import replace

    from warden.alerts import alert_from_incident, is_test_notification

    config = rt.alerting
    if config is None:
        raise ConfigError(f"{rt.settings.config_path}: alerting: no routing configured")
    settings = config.incidents
    alert = alert_from_incident(
        payload,
        received_at=time.time() if now is None else now,
        default_severity=settings.default_severity,
    )
    if not is_test_notification(payload):
        return [alert]
    if not settings.route_test_notifications:
        log.info(
            "Cloud Monitoring test notification acknowledged (not routed: "
            "alerting.incidents.route_test_notifications is off)",
            extra=fields(door=door, incident_id=alert.labels.get("incident_id")),
        )
        return []
    log.info("Cloud Monitoring test notification routed", extra=fields(door=door))
    return [replace(alert, labels={**alert.labels, "test": "true"})]


def _read_limited(read_body: Callable[[int], bytes], content_length: int | None) -> bytes | None:
    """The body, or None if it is larger than MAX_BODY_BYTES (read no further than that)."""
    if content_length is not None:
        return read_body(content_length) if content_length <= MAX_BODY_BYTES else None
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = read_body(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def _refusals_logged(
    handle: Callable[..., tuple[int, dict[str, Any]]],
) -> Callable[..., tuple[int, dict[str, Any]]]:
    """Every 4xx answer is also an ERROR log line with its reason and ``refused: true`` (what
    Terraform's router-refusals policy matches): a refused payload is never silent."""

    @functools.wraps(handle)
    def logged(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        status, body = handle(*args, **kwargs)
        if status >= 400:
            log.error(
                "webhook refused (%d): %s",
                status,
                body["error"],
                extra=fields(status=status, door="webhook", refused=True),
            )
        return status, body

    return logged


@_refusals_logged
def handle_webhook(
    rt: Runtime,
    *,
    method: str,
    headers: Mapping[str, str],
    args: Mapping[str, str],
    read_body: Callable[[int], bytes],
    content_length: int | None,
    url_length: int = 0,
) -> tuple[int, dict[str, Any]]:
    """One Cloud Monitoring webhook call → (HTTP status, JSON body). Never 5xx for bad input.

    A 4xx only for what can never become an alert — a URL over MAX_URL_BYTES, wrong or missing
    credentials, a body larger than MAX_BODY_BYTES, a body that is not JSON, no ``incident``
    object or no ``incident_id`` — each logged at ERROR with its reason. Content-Type is not
    checked: the body decides."""
    from warden.web import MAX_URL_BYTES

    if url_length > MAX_URL_BYTES:
        return 414, {"error": f"URL longer than {MAX_URL_BYTES} bytes"}
    if method != "POST":
        return 405, {"error": "use POST"}
    if not check_token(headers, args, secret(TOKEN_ENV)):
        return 401, {"error": "missing or wrong credentials"}
    body = _read_limited(read_body, content_length)
    if body is None:  # refused before reading more than the limit
        return 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return 400, {"error": "body is not UTF-8 JSON"}
    except (ValueError, RecursionError) as exc:
        return 400, {"error": f"body is not valid JSON: {str(exc)[:200]}"}
    try:
        alerts = incident_alerts(rt, payload, door="webhook")
    except EventError as exc:
        return 400, {"error": str(exc)[:500]}
    if not alerts:
        return 200, {"status": "test notification acknowledged", "routed": False}
    return 200, {
        "status": "accepted",
        "fingerprint": alerts[0].fingerprint,
        "routed": True,
        **route(rt, alerts),
    }
