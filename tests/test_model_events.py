"""model-events reach the real Pub/Sub emulator with JSON payloads and model/kind attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from warden.errors import DataError
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden_local.pubsub import PubSubEmulator

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "warden-test"
MODEL = "breast-cancer-risk"


@pytest.fixture(scope="module")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    mp = pytest.MonkeyPatch()
    with PubSubEmulator() as emulator:
        mp.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator
    mp.undo()


@pytest.fixture
def topic(pubsub_emulator, bucket_names):
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    name = f"model-events-{bucket_names['registry']}"
    topic_path = publisher.create_topic(name=publisher.topic_path(PROJECT, name)).name
    sub_path = subscriber.subscription_path(PROJECT, name)
    subscriber.create_subscription(name=sub_path, topic=topic_path)
    yield name, publisher, subscriber, sub_path
    subscriber.close()


def _pull(subscriber, sub_path, want: int) -> list:
    got = []
    for _ in range(20):
        resp = subscriber.pull(subscription=sub_path, max_messages=50, timeout=5)
        got += resp.received_messages
        if resp.received_messages:
            subscriber.acknowledge(
                subscription=sub_path, ack_ids=[m.ack_id for m in resp.received_messages]
            )
        if len(got) >= want:
            break
    return got


def test_retrain_publishes_registered_promoted_and_failed(seed, make_runtime, topic) -> None:
    name, publisher, subscriber, sub_path = topic
    seed(days=3, models=(MODEL,))
    rt = make_runtime(install=False, publisher=publisher, events_topic=name, project=PROJECT)
    retrain(
        RunRequest(
            model=MODEL, reason="manual", key="k1", message_id="k1", as_of=date(2026, 11, 20)
        ),
        rt,
    )
    with pytest.raises(DataError):
        retrain(
            RunRequest(
                model=MODEL, reason="manual", key="k2", message_id="k2", as_of=date(2020, 1, 1)
            ),
            rt,
        )
    messages = _pull(subscriber, sub_path, want=3)
    events = [
        (m.message.attributes["kind"], m.message.attributes["model"], json.loads(m.message.data))
        for m in messages
    ]
    kinds = sorted(kind for kind, _, _ in events)
    assert kinds == ["failed", "promoted", "version_registered"]
    assert {model for _, model, _ in events} == {MODEL}
    payloads = {kind: body for kind, _, body in events}
    assert payloads["version_registered"]["schema"] == 1
    assert payloads["version_registered"]["version"] == 1
    assert payloads["promoted"]["version"] == 1
    assert payloads["promoted"]["previous_version"] is None
    assert "no dt= partitions" in payloads["failed"]["error"]
