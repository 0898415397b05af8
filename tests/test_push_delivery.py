"""The deployed trigger path, end to end: a built bundle served by functions-framework, fed by a
Pub/Sub push subscription of the real emulator (raw push body, as terraform/modules/function's
own subscription delivers it, not the local Eventarc shim's binary CloudEvents)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import date

import pytest

from warden.registry import Registry
from warden_local.bundle import build
from warden_local.process import FunctionServer

AS_OF = date(2026, 11, 20)  # conftest's seed() ends its partitions here

PROJECT = "warden-test"
MODEL = "breast-cancer-risk"


@pytest.fixture
def retrain_bundle_server(tmp_path, gcs_emulator, bucket_names):
    [bundle] = build(["retrain_model"], out=tmp_path / "build")
    source = tmp_path / "build" / "retrain_model"
    log = tmp_path / "function.log"
    env = {
        **os.environ,
        # The bundle's own copy of the package comes first, as on Cloud Functions.
        "PYTHONPATH": str(source),
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_PROJECT": PROJECT,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_METRICS": "off",
        "WARDEN_CODE_VERSION": bundle.sha256[:12],
    }
    env.pop("WARDEN_CONFIG", None)  # the function reads the warden.yaml shipped in its bundle
    with log.open("wb") as out:
        server = FunctionServer(source / "main.py", "retrain_model", log=out, env=env, cwd=source)
        with server:
            yield server.url, bundle, log


def test_raw_push_into_a_built_bundle_retrains_once(
    retrain_bundle_server, pubsub_emulator, seed, storage_client, bucket_names
) -> None:
    from google.cloud import pubsub_v1

    url, bundle, log = retrain_bundle_server
    seed(days=14)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    name = f"retrain-requests-{uuid.uuid4().hex[:8]}"
    topic = publisher.create_topic(name=publisher.topic_path(PROJECT, name)).name
    subscriber.create_subscription(
        request={
            "name": subscriber.subscription_path(PROJECT, f"{name}-push"),
            "topic": topic,
            "push_config": {"push_endpoint": url},
            "ack_deadline_seconds": 120,
        }
    )
    payload = {"schema": 1, "model": MODEL, "reason": "manual", "as_of": AS_OF.isoformat()}
    publisher.publish(topic, json.dumps(payload).encode(), model=MODEL).result(timeout=30)
    # A malformed request on the same subscription is acknowledged (logged), not redelivered
    # forever: the good one still goes through and nothing else is registered.
    publisher.publish(topic, b"not json", model=MODEL).result(timeout=30)

    registry = Registry(storage_client, bucket_names["registry"])
    deadline = time.monotonic() + 180
    while not registry.version_numbers(MODEL):
        assert time.monotonic() < deadline, f"no version registered:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    time.sleep(3)  # room for a wrong second delivery to show up
    assert registry.version_numbers(MODEL) == [1]
    manifest = registry.manifest(MODEL, 1)
    assert manifest["code_version"] == bundle.sha256[:12]
    assert registry.verify(MODEL, 1).ok
    text = log.read_text()
    assert "not valid JSON" in text, text[-3000:]
    subscriber.close()
