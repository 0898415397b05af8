"""Decoding Pub/Sub CloudEvents and the requests they carry. Pure: no I/O.

A Pub/Sub message arrives as a CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` — made by functions-framework from a push
subscription's raw body (how Warden deploys its triggers), or sent by Eventarc in binary mode —
whose data is the push envelope
``{"subscription": ..., "message": {"data": <base64>, "attributes": {...}, "messageId": ...,
"publishTime": ...}}``. Everything that can be wrong with one is an :class:`EventError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from warden.config import WardenConfig
from warden.errors import EventError

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
SCHEMA = 1
MAX_DATA_BYTES = 64 * 1024
#: A "schedule" message published this long after a cron slot counts as that slot's tick.
#: Short on purpose: a forced run (``jobs run``) published inside the window is taken for that
#: slot's tick and deduplicated; Cloud Scheduler publishes within seconds of the slot.
SCHEDULE_TOLERANCE = timedelta(minutes=2)
REASONS = ("schedule", "manual", "drift", "degradation", "alert", "backfill")


@dataclass(frozen=True)
class PubSubMessage:
    data: bytes
    attributes: dict[str, str]
    message_id: str
    publish_time: datetime | None
    subscription: str = ""
    source: str = ""


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise EventError(f"{what} must be an RFC 3339 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"{what} is not an RFC 3339 time: {value[:64]!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def decode_pubsub_event(event: Any) -> PubSubMessage:
    """Turn a functions-framework ``CloudEvent`` into a :class:`PubSubMessage`."""
    try:
        ce_type = event["type"]
        source = event["source"]
        ce_id = event["id"]
    except (KeyError, TypeError):
        raise EventError("not a CloudEvent: missing type, source or id") from None
    if ce_type != PUBSUB_PUBLISHED:
        raise EventError(f"unexpected event type {ce_type!r}; want {PUBSUB_PUBLISHED!r}")
    body = getattr(event, "data", None)
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            raise EventError("event data is not a JSON Pub/Sub envelope") from None
    if not isinstance(body, Mapping) or not isinstance(body.get("message"), Mapping):
        raise EventError("event data has no 'message' object (not a Pub/Sub envelope)")
    message = body["message"]
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise EventError(f"message.data must be a base64 string, got {type(raw).__name__}")
    if len(raw) > MAX_DATA_BYTES * 4 // 3 + 4:
        raise EventError(f"message.data is larger than {MAX_DATA_BYTES} bytes")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("message.data is not valid base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise EventError("message.attributes must map strings to strings")
    message_id = message.get("messageId") or message.get("message_id") or ce_id
    if not isinstance(message_id, str) or not message_id:
        raise EventError("message has no messageId")
    publish = message.get("publishTime") or message.get("publish_time")
    publish_time = _parse_time(publish, "message.publishTime") if publish else None
    return PubSubMessage(
        data=data,
        attributes=dict(attributes),
        message_id=message_id,
        publish_time=publish_time,
        subscription=str(body.get("subscription") or ""),
        source=str(source),
    )


def decode_json_payload(message: PubSubMessage) -> dict[str, Any]:
    if not message.data:
        raise EventError("message.data is empty; expected a JSON object")
    try:
        payload = json.loads(message.data.decode("utf-8"))
    except UnicodeDecodeError:
        raise EventError("message.data is not UTF-8 text") from None
    except ValueError as exc:
        raise EventError(f"message.data is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise EventError(f"message.data must be a JSON object, got {type(payload).__name__}")
    return payload


_MODEL = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class RunRequest:
    """A request to run a job (retrain, monitor, ...) for one model."""

    model: str
    reason: str
    key: str
    message_id: str
    as_of: date
    scheduled_time: datetime | None = None
    requested_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "reason": self.reason,
            "key": self.key,
            "message_id": self.message_id,
            "as_of": self.as_of.isoformat(),
            "scheduled_time": self.scheduled_time.isoformat() if self.scheduled_time else None,
            "requested_at": self.requested_at.isoformat() if self.requested_at else None,
        }

    def to_json(self) -> str:
        """The whole request, ``extra`` included: what a job execution is handed
        (``WARDEN_RUN_REQUEST``, :meth:`from_json`)."""
        return json.dumps({**self.to_dict(), "extra": self.extra}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        """A request a function validated and handed on (:meth:`to_json`)."""
        try:
            raw = json.loads(text)
            return cls(
                model=str(raw["model"]),
                reason=str(raw["reason"]),
                key=str(raw["key"]),
                message_id=str(raw["message_id"]),
                as_of=date.fromisoformat(raw["as_of"]),
                scheduled_time=(
                    _parse_time(raw["scheduled_time"], "scheduled_time")
                    if raw.get("scheduled_time")
                    else None
                ),
                requested_at=(
                    _parse_time(raw["requested_at"], "requested_at")
                    if raw.get("requested_at")
                    else None
                ),
                extra=dict(raw.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EventError(f"a handed-on run request is malformed: {exc!r}"[:300]) from None


def _slot_for(cron: str, tz: str, published: datetime) -> datetime | None:
    """The cron fire time this publish belongs to, if it was published within the tolerance."""
    from croniter import croniter

    local = published.astimezone(ZoneInfo(tz))
    prev = croniter(cron, local + timedelta(seconds=1)).get_prev(datetime)
    if timedelta(0) <= local - prev <= SCHEDULE_TOLERANCE:
        return prev.astimezone(UTC)
    return None


def parse_run_request(
    message: PubSubMessage, config: WardenConfig, *, job: str, now: datetime | None = None
) -> RunRequest:
    """Validate a job request. Payload: ``{"schema": 1, "model": ..., "reason": ...}`` plus
    optional ``scheduled_time`` (RFC 3339) and ``as_of`` (YYYY-MM-DD, the data window's end).

    The idempotency key is, in order: the explicit ``scheduled_time``; for ``reason: schedule``
    the cron slot of the model's ``job`` schedule that the message was published in (Cloud
    Scheduler may fire a slot twice, with two message ids); otherwise the message id.
    """
    payload = decode_json_payload(message)
    schema = payload.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise EventError(f"unsupported payload schema {schema!r}; this code reads schema {SCHEMA}")
    model = payload.get("model", message.attributes.get("model"))
    if not isinstance(model, str) or not model:
        raise EventError("payload has no 'model' (string)")
    if not _MODEL.match(model):
        raise EventError(f"payload 'model' is not a valid model name: {model[:64]!r}")
    attr_model = message.attributes.get("model")
    if attr_model is not None and attr_model != model:
        raise EventError(f"attribute model {attr_model!r} disagrees with payload model {model!r}")
    cfg = config.model(model)  # UnknownModelError (permanent) names the known ones
    reason = payload.get("reason", "manual")
    if reason not in REASONS:
        raise EventError(f"payload 'reason' must be one of {REASONS}, got {str(reason)[:64]!r}")
    now = now or datetime.now(UTC)
    scheduled = payload.get("scheduled_time", message.attributes.get("scheduled_time"))
    scheduled_time = _parse_time(scheduled, "scheduled_time") if scheduled else None
    schedule = getattr(cfg.schedules, job, None)
    if scheduled_time is None and reason == "schedule" and schedule is not None:
        scheduled_time = _slot_for(schedule.cron, schedule.timezone, message.publish_time or now)
    if scheduled_time is not None:
        key = f"{job}:{model}:scheduled:{scheduled_time.astimezone(UTC).isoformat()}"
    else:
        key = f"{job}:{model}:message:{message.message_id}"
    as_of_raw = payload.get("as_of")
    if as_of_raw is not None:
        if not isinstance(as_of_raw, str):
            raise EventError("payload 'as_of' must be a YYYY-MM-DD string")
        try:
            as_of = date.fromisoformat(as_of_raw)
        except ValueError:
            raise EventError(f"payload 'as_of' is not a date: {as_of_raw[:32]!r}") from None
    else:
        as_of = (scheduled_time or message.publish_time or now).astimezone(UTC).date()
    return RunRequest(
        model=model,
        reason=reason,
        key=key,
        message_id=message.message_id,
        as_of=as_of,
        scheduled_time=scheduled_time,
        requested_at=message.publish_time,
        extra={
            k: v
            for k, v in payload.items()
            if k not in {"schema", "model", "reason", "scheduled_time", "as_of"}
        },
    )
