"""Decoding Pub/Sub CloudEvents and run requests: our fixtures and the conformance ones."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

from events import envelope
from warden.config import load_config
from warden.errors import EventError, UnknownModelError
from warden.jobs.messages import decode_pubsub_event, parse_run_request

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config(ROOT / "warden.yaml")
CONFORMANCE = ROOT.parent / "shared" / "conformance"
PUBSUB = "google.cloud.pubsub.topic.v1.messagePublished"


def _event(body, *, ce_type: str = PUBSUB) -> CloudEvent:
    return CloudEvent(
        {
            "type": ce_type,
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "id": "evt-1",
            "specversion": "1.0",
        },
        body,
    )


def test_decodes_an_eventarc_envelope() -> None:
    published = datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC)
    body = envelope(
        {"model": "m"}, attributes={"model": "m"}, message_id="42", publish_time=published
    )
    msg = decode_pubsub_event(_event(body))
    assert json.loads(msg.data) == {"model": "m"}
    assert msg.attributes == {"model": "m"}
    assert msg.message_id == "42"
    assert msg.publish_time == published
    assert msg.subscription.endswith("eventarc-retrain")


@pytest.mark.parametrize(
    ("body", "ce_type", "problem"),
    [
        ({"message": {"data": "%%%not base64"}}, PUBSUB, "not valid base64"),
        ({"message": {"data": 12}}, PUBSUB, "must be a base64 string"),
        ({"nothing": 1}, PUBSUB, "no 'message' object"),
        ("plain text", PUBSUB, "not a JSON Pub/Sub envelope"),
        ({"message": {"data": "", "attributes": {"a": 1}}}, PUBSUB, "attributes must map"),
        ({"message": {"data": "", "publishTime": "yesterday"}}, PUBSUB, "not an RFC 3339"),
        (
            {"message": {"data": ""}},
            "google.cloud.storage.object.v1.finalized",
            "unexpected event type",
        ),
    ],
)
def test_malformed_envelopes_are_event_errors(body, ce_type: str, problem: str) -> None:
    with pytest.raises(EventError, match=problem):
        decode_pubsub_event(_event(body, ce_type=ce_type))


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"reason": "manual"}', "no 'model'"),
        (b'{"model": "../etc"}', "not a valid model name"),
        (b'{"model": "customer-segments", "reason": "whim"}', "'reason' must be one of"),
        (b'{"model": "customer-segments", "schema": 9}', "unsupported payload schema 9"),
        (b'{"model": "customer-segments", "as_of": "2026-13-01"}', "'as_of' is not a date"),
    ],
)
def test_bad_payloads_are_event_errors(payload: bytes, problem: str) -> None:
    body = envelope(payload)
    msg = decode_pubsub_event(_event(body))
    with pytest.raises(EventError, match=problem):
        parse_run_request(msg, CONFIG, job="retrain")


def test_unknown_model_is_permanent_and_named() -> None:
    msg = decode_pubsub_event(_event(envelope({"model": "churn"})))
    with pytest.raises(UnknownModelError, match="unknown model 'churn'"):
        parse_run_request(msg, CONFIG, job="retrain")


def test_attribute_and_payload_must_agree() -> None:
    body = envelope({"model": "customer-segments"}, attributes={"model": "breast-cancer-risk"})
    with pytest.raises(EventError, match="disagrees"):
        parse_run_request(decode_pubsub_event(_event(body)), CONFIG, job="retrain")


def test_manual_requests_are_keyed_by_message_id() -> None:
    body = envelope(
        {"model": "customer-segments", "reason": "manual", "as_of": "2026-11-01"}, message_id="777"
    )
    req = parse_run_request(decode_pubsub_event(_event(body)), CONFIG, job="retrain")
    assert req.key == "retrain:customer-segments:message:777"
    assert req.as_of == date(2026, 11, 1)


def test_scheduled_ticks_are_keyed_by_their_cron_slot_whatever_the_message_id() -> None:
    # customer-segments retrains "0 3 * * 1" Europe/Paris: Monday 2026-11-23 03:00 CET = 02:00Z.
    keys = set()
    for message_id, second in (("a", 4), ("b", 40), ("c", 110)):
        published = datetime(2026, 11, 23, 2, 0, second % 60, tzinfo=UTC).replace(
            minute=second // 60
        )
        body = envelope(
            {"model": "customer-segments", "reason": "schedule"},
            message_id=message_id,
            publish_time=published,
        )
        req = parse_run_request(decode_pubsub_event(_event(body)), CONFIG, job="retrain")
        keys.add(req.key)
        assert req.scheduled_time == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert keys == {"retrain:customer-segments:scheduled:2026-11-23T02:00:00+00:00"}
    # A forced run long after the slot is its own request.
    late = envelope(
        {"model": "customer-segments", "reason": "schedule"},
        message_id="z",
        publish_time=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    req = parse_run_request(decode_pubsub_event(_event(late)), CONFIG, job="retrain")
    assert req.key == "retrain:customer-segments:message:z"


def test_explicit_scheduled_time_wins() -> None:
    body = envelope(
        {"model": "customer-segments", "reason": "schedule"},
        attributes={"scheduled_time": "2026-11-16T02:00:00Z"},
    )
    req = parse_run_request(decode_pubsub_event(_event(body)), CONFIG, job="retrain")
    assert req.key.endswith("scheduled:2026-11-16T02:00:00+00:00")
    assert req.as_of == date(2026, 11, 16)


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="conformance fixtures live outside the repo")
@pytest.mark.parametrize("name", ["pubsub_binary", "pubsub_text", "legacy_pubsub"])
def test_conformance_pubsub_inputs_decode_then_refuse_cleanly(name: str) -> None:
    raw = json.loads((CONFORMANCE / f"{name}-cloudevent-input.json").read_text())
    attrs = {k: v for k, v in raw.items() if k != "data"}
    msg = decode_pubsub_event(CloudEvent(attrs, raw["data"]))
    assert msg.message_id == "aaaaaa-1111-bbbb-2222-cccccccccccc"
    with pytest.raises(EventError):  # their payloads are not Warden requests
        parse_run_request(msg, CONFIG, job="retrain")


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="conformance fixtures live outside the repo")
def test_conformance_storage_event_is_refused_cleanly() -> None:
    raw = json.loads((CONFORMANCE / "storage-cloudevent-input.json").read_text())
    attrs = {k: v for k, v in raw.items() if k != "data"}
    with pytest.raises(EventError, match="unexpected event type"):
        decode_pubsub_event(CloudEvent(attrs, raw["data"]))
