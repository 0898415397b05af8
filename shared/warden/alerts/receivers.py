"""Deliver one rendered group notification to one receiver (Slack, webhook, Pub/Sub, log).

Retries: exponential backoff 0.5 s × 2^n (capped at 8 s, equal jitter) on 5xx, 429 and connection
errors only, never more than the receiver's ``max_attempts``; any other 4xx is permanent.
:func:`deliver` never raises for a delivery failure: it returns ``ok=False`` so one failing
receiver never blocks the others. Secrets are never logged; of a URL only the host is.

Signatures (generic webhook): every attempt is signed afresh, ``X-Warden-Signature:
t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<body>">`` (and ``X-Warden-Timestamp: <t>``), so a
retried attempt carries a new timestamp and a receiver can refuse replays; see
:mod:`warden.alerts.signing` (Stripe's and Slack's schemes, cited there).

Markup: Slack reads ``text`` and mrkdwn fields as markup, where ``<!channel>`` is a mass mention
and ``<https://evil|console.cloud.google.com>`` a disguised link. Alert data (summaries, labels,
annotations) comes from outside, so every field the Slack receiver renders from it is escaped
(``&``, ``<``, ``>``: https://api.slack.com/reference/surfaces/formatting#escaping) and shows as
the literal text. The JSON webhook, Pub/Sub and log receivers carry data, not markup: raw.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from warden.alerts import DeliveryResult
from warden.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from warden.config.alerting import Receiver
from warden.logs import fields
from warden.retry import Backoff

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
SLACK_TEXT_LIMIT = 3000  # a section block's text
SLACK_HEADER_LIMIT = 150  # a header block's plain_text
#: Slack's three escapes, applied in one pass (``str.translate``): nothing is escaped twice.
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_LONGEST_ENTITY = len("&amp;")

__all__ = ["DeliveryResult", "deliver", "send_budget", "sign", "slack_escape", "verify"]


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


#: Between delivery attempts (the package's one policy, :class:`warden.retry.Backoff`).
BACKOFF = Backoff(base=BACKOFF_BASE, cap=BACKOFF_CAP, floor=0.5)  # equal jitter

#: Each Slack attempt's answer wait, and one Pub/Sub attempt's wait for all its publishes.
SLACK_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 30.0


def send_budget(receiver: Receiver) -> float:
    """The longest :func:`deliver` takes for ``receiver`` as configured: every attempt's timeout
    plus the longest backoff between attempts. A notification claim's lease covers it (see
    :mod:`warden.alerts.state`), so no second router takes over a send still in flight."""
    per_attempt = {
        "slack": SLACK_TIMEOUT,
        "webhook": receiver.webhook.timeout_s if receiver.webhook else 0.0,
        "pubsub": PUBLISH_TIMEOUT,
    }.get(receiver.kind)
    if per_attempt is None:  # log: no I/O beyond the function's own log
        return 1.0
    attempts = receiver.max_attempts
    pauses = sum(min(BACKOFF.cap, BACKOFF.base * 2.0**n) for n in range(attempts - 1))
    return attempts * per_attempt + pauses


def _default_post(url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
    import requests

    return requests.post(url, data=data, headers=headers, timeout=timeout)


def _http(
    receiver: Receiver,
    url: str,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    *,
    max_attempts: int,
    timeout: float,
    http_post: Callable[..., Any],
    sleep: Callable[[float], None],
) -> DeliveryResult:
    import requests

    status: int | None = None
    error: str | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            resp = http_post(url, data=body, headers=headers(), timeout=timeout)
            status = int(resp.status_code)
            if 200 <= status < 300:
                return DeliveryResult(receiver.name, True, attempt, status, None)
            error = f"HTTP {status} from {_host(url)}"
            retry = status >= 500 or status == 429
        except (requests.ConnectionError, requests.Timeout, OSError) as exc:
            status, error, retry = None, f"{type(exc).__name__} talking to {_host(url)}", True
        log.warning(
            "receiver delivery attempt failed",
            extra=fields(receiver=receiver.name, attempt=attempt, status=status, error=error),
        )
        if not retry or attempt == max_attempts:
            return DeliveryResult(receiver.name, False, attempt, status, error)
        BACKOFF.pause(attempt - 1, sleep)
    return DeliveryResult(receiver.name, False, max_attempts, status, error)


def slack_escape(text: Any) -> str:
    """``text`` as Slack shows it literally: ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``.

    Already-escaped input is escaped again (``&lt;`` → ``&amp;lt;``), so it too shows as typed.
    """
    return str(text).translate(_SLACK_ESCAPES)


def _clip(escaped: str, limit: int) -> str:
    """Shorten escaped text to ``limit`` characters without cutting an entity in two (half an
    entity would leave a bare ``&``); an ellipsis marks the cut."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - _LONGEST_ENTITY + 1))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _slack_body(message: dict[str, Any], channel: str | None) -> dict[str, Any]:
    title = slack_escape(message["title"])
    text = _clip(f"*{title}*\n{slack_escape(message['text'])}", SLACK_TEXT_LIMIT)
    body: dict[str, Any] = {
        "text": title,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _clip(title, SLACK_HEADER_LIMIT)},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        ],
    }
    if channel:
        body["channel"] = channel
    return body


def deliver(
    receiver: Receiver,
    message: dict[str, Any],
    *,
    secrets: Callable[[str], str | None],
    publisher_factory: Callable[[], Any] | None = None,
    project: str = "",
    http_post: Callable[..., Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> DeliveryResult:
    """Send ``message`` to ``receiver``; ``clock`` gives each webhook attempt its signed
    timestamp (unix seconds)."""
    post = http_post or _default_post
    try:
        if receiver.slack is not None:
            url = secrets(receiver.slack.url_env)
            if not url:
                return DeliveryResult(receiver.name, False, 0, None, "slack URL secret not set")
            body = json.dumps(_slack_body(message, receiver.slack.channel)).encode()
            return _http(
                receiver,
                url,
                body,
                lambda: {"Content-Type": "application/json"},
                max_attempts=receiver.slack.max_attempts,
                timeout=SLACK_TIMEOUT,
                http_post=post,
                sleep=sleep,
            )
        if receiver.webhook is not None:
            cfg = receiver.webhook
            url, key = secrets(cfg.url_env), secrets(cfg.secret_env)
            if not url or not key:
                return DeliveryResult(receiver.name, False, 0, None, "webhook secret not set")
            body = json.dumps(message, sort_keys=True, default=str).encode()
            secret_key: str = key

            def signed_headers() -> dict[str, str]:
                # Taken per attempt: a retry is signed again, with a fresh timestamp.
                timestamp = int(clock())
                return {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(secret_key, body, timestamp),
                    TIMESTAMP_HEADER: str(timestamp),
                }

            return _http(
                receiver,
                url,
                body,
                signed_headers,
                max_attempts=cfg.max_attempts,
                timeout=cfg.timeout_s,
                http_post=post,
                sleep=sleep,
            )
        if receiver.pubsub is not None:
            return _publish(receiver, message, publisher_factory, project, sleep)
        log.warning(
            "alert notification",
            extra=fields(receiver=receiver.name, notification=message),
        )
        return DeliveryResult(receiver.name, True, 1, None, None)
    except Exception as exc:  # a receiver bug must not stop the others
        log.exception("receiver failed", extra=fields(receiver=receiver.name))
        return DeliveryResult(receiver.name, False, 1, None, f"{type(exc).__name__}: {exc}")


def _publish(
    receiver: Receiver,
    message: dict[str, Any],
    publisher_factory: Callable[[], Any] | None,
    project: str,
    sleep: Callable[[float], None],
) -> DeliveryResult:
    cfg = receiver.pubsub
    assert cfg is not None
    if publisher_factory is None or not project:
        return DeliveryResult(receiver.name, False, 0, None, "no publisher or project")
    publisher = publisher_factory()
    path = publisher.topic_path(project, cfg.topic)
    batches: list[tuple[bytes, dict[str, str]]] = []
    if cfg.action == "retrain":
        models = sorted(
            {
                a["labels"]["model"]
                for a in message.get("alerts", [])
                if a["status"] == "firing" and a["labels"].get("model")
            }
        )
        for model in models:
            body = json.dumps({"schema": 1, "model": model, "reason": "alert"}).encode()
            batches.append((body, {"model": model, "kind": "retrain"}))
    else:
        body = json.dumps(message, sort_keys=True, default=str).encode()
        batches.append((body, {"kind": "alert", "status": str(message.get("status", ""))}))
    error: str | None = None
    for attempt in range(1, cfg.max_attempts + 1):
        try:
            # One deadline for the attempt, however many models it publishes for.
            futures = [publisher.publish(path, data, **attrs) for data, attrs in batches]
            deadline = time.monotonic() + PUBLISH_TIMEOUT
            for future in futures:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            return DeliveryResult(receiver.name, True, attempt, None, None)
        except Exception as exc:  # Pub/Sub client errors are transient more often than not
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "publish failed", extra=fields(receiver=receiver.name, attempt=attempt, error=error)
            )
            if attempt < cfg.max_attempts:
                BACKOFF.pause(attempt - 1, sleep)
    return DeliveryResult(receiver.name, False, cfg.max_attempts, None, error)
