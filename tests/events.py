"""Builders for events shaped exactly like Eventarc's Pub/Sub deliveries (binary mode)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

TOPIC_SOURCE = "//pubsub.googleapis.com/projects/warden-test/topics/retrain-requests"


def envelope(
    data: bytes | str | dict | list | None,
    *,
    attributes: dict[str, str] | None = None,
    message_id: str | None = None,
    publish_time: datetime | None = None,
    raw_data: Any = None,
) -> dict[str, Any]:
    if isinstance(data, dict | list):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    message_id = message_id or str(uuid.uuid4().int)[:16]
    ts = (publish_time or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    message: dict[str, Any] = {
        "data": raw_data if raw_data is not None else base64.b64encode(data or b"").decode(),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": ts,
        "publish_time": ts,
    }
    if attributes:
        message["attributes"] = attributes
    return {
        "subscription": "projects/warden-test/subscriptions/eventarc-retrain",
        "message": message,
    }


def binary_headers(
    body: dict[str, Any],
    *,
    ce_type: str = "google.cloud.pubsub.topic.v1.messagePublished",
    source: str = TOPIC_SOURCE,
) -> dict[str, str]:
    return {
        "ce-id": body["message"]["messageId"],
        "ce-source": source,
        "ce-type": ce_type,
        "ce-specversion": "1.0",
        "ce-time": body["message"]["publishTime"],
        "Content-Type": "application/json",
    }


def retrain_payload(model: str, **extra: Any) -> dict[str, Any]:
    return {"schema": 1, "model": model, "reason": extra.pop("reason", "manual"), **extra}
