"""The deployed trigger path, end to end: the real Pub/Sub emulator pushing, through subscriptions
wired as terraform/modules/function wires them (``warden_local.pubsub.wire_trigger``: the raw push
body to the function's root URL, retry and dead-letter policy from terraform/delivery.json), to
real functions-framework servers, which turn the push into a CloudEvent for our decoder.

What each delivery did is read where production would show it: the function's structured log
(``warden.jobs.entrypoints``: one line per delivery outcome with the Pub/Sub message id)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from events import binary_headers, envelope
from stack_process import wait_for, write_run_marker
from warden.store.registry import Registry
from warden_local.bundle import build
from warden_local.process import FunctionServer
from warden_local.pubsub import (
    delivery_policy,
    push_subscription_id,
    read_deliveries,
    wire_trigger,
)

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 20)  # conftest's seed() ends its partitions here

PROJECT = "warden-test"
MODEL = "breast-cancer-risk"


def _env(gcs_emulator, bucket_names, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_PROJECT": PROJECT,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_METRICS": "off",
        **extra,
    }
    env.pop("WARDEN_EVENTS_TOPIC", None)  # model events are only logged
    return env


@dataclasses.dataclass
class Function:
    url: str
    log: Path

    def deliveries(self, message_id: str | None = None) -> list[dict[str, Any]]:
        found = read_deliveries(self.log)
        return [d for d in found if message_id is None or d["message_id"] == message_id]


@pytest.fixture
def retrain_server(tmp_path, gcs_emulator, bucket_names, pubsub_emulator) -> Iterator[Function]:
    """retrain_model from functions/ on functions-framework, as the local stack serves it."""
    log = tmp_path / "function-retrain_model.log"
    env = _env(gcs_emulator, bucket_names, WARDEN_CONFIG=str(ROOT / "warden.yaml"))
    source = ROOT / "functions" / "retrain_model" / "main.py"
    with log.open("wb") as out, FunctionServer(source, "retrain_model", log=out, env=env) as server:
        yield Function(server.url, log)


@pytest.fixture
def trigger(pubsub_emulator) -> Iterator[Callable[..., dict[str, str]]]:
    """``trigger(url, policy=None)`` → {"topic", "push", "hold"}: a fresh topic wired to ``url``
    exactly as the local stack wires a function (delivery.json's policy unless ``policy``)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []

    def make(url: str, policy: Any = None) -> dict[str, str]:
        suffix = uuid.uuid4().hex[:8]
        topic_id = f"retrain-requests-{suffix}"
        push, hold = wire_trigger(
            publisher,
            subscriber,
            project=PROJECT,
            topic_id=topic_id,
            subscription_id=push_subscription_id("retrain_model", f"t{suffix}"),
            push_endpoint=url,
            policy=policy,
        )
        created.append(push)
        return {"topic": publisher.topic_path(PROJECT, topic_id), "push": push, "hold": hold}

    yield make
    for path in created:  # no pushes to a stopped server after the test
        subscriber.delete_subscription(subscription=path)
    subscriber.close()


def publish(topic: str, data: bytes, **attributes: str) -> str:
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient().publish(topic, data, **attributes).result(timeout=30)


def retrain_request(scheduled_time: str | None = None) -> bytes:
    payload = {"schema": 1, "model": MODEL, "reason": "backfill", "as_of": AS_OF.isoformat()}
    if scheduled_time:
        payload["scheduled_time"] = scheduled_time
    return json.dumps(payload).encode()


def key_of(scheduled_time: str) -> str:
    return f"retrain:{MODEL}:scheduled:{scheduled_time.replace('Z', '+00:00')}"


# -- tests ---------------------------------------------------------------------------------------


@pytest.fixture
def retrain_bundle_server(
    tmp_path, gcs_emulator, bucket_names, pubsub_emulator
) -> Iterator[tuple[Function, Any]]:
    [bundle] = build(["retrain_model"], out=tmp_path / "build")
    source = tmp_path / "build" / "retrain_model"
    log = tmp_path / "function.log"
    env = _env(
        gcs_emulator,
        bucket_names,
        # The bundle's own copy of the package comes first, as on Cloud Functions.
        PYTHONPATH=str(source),
        WARDEN_CODE_VERSION=bundle.sha256[:12],
    )
    env.pop("WARDEN_CONFIG", None)  # the function reads the warden.yaml shipped in its bundle
    with log.open("wb") as out:
        server = FunctionServer(source / "main.py", "retrain_model", log=out, env=env, cwd=source)
        with server:
            yield Function(server.url, log), bundle


def test_raw_push_into_a_built_bundle_retrains_once(
    retrain_bundle_server, trigger, seed, storage_client, bucket_names
) -> None:
    function, bundle = retrain_bundle_server
    seed(days=14)
    wired = trigger(function.url)
    good = publish(wired["topic"], retrain_request(), model=MODEL)
    # A malformed request on the same subscription is acknowledged (logged), not redelivered
    # forever: the good one still goes through and nothing else is registered.
    bad = publish(wired["topic"], b"not json", model=MODEL)

    registry = Registry(storage_client, bucket_names["registry"])
    (done,) = wait_for(lambda: function.deliveries(good), 180, "the good request's delivery")
    assert done["delivery"] == "ok", function.log.read_text()[-4000:]
    assert done["severity"] == "INFO"
    assert done["version"] == 1
    (refused,) = wait_for(lambda: function.deliveries(bad), 30, "the bad request's delivery")
    assert refused["delivery"] == "refused"
    assert refused["severity"] == "ERROR"
    assert "not valid JSON" in refused["message"]
    # The emulator sends no deliveryAttempt, and functions-framework's conversion of a raw push
    # would drop it anyway (test_delivery_attempt_is_logged_when_the_envelope_has_one).
    assert "delivery_attempt" not in done

    assert registry.version_numbers(MODEL) == [1]
    manifest = registry.manifest(MODEL, 1)
    assert manifest["code_version"] == bundle.sha256[:12]
    assert registry.verify(MODEL, 1).ok


def test_a_permanent_error_is_acknowledged_and_never_redelivered(
    retrain_server: Function, trigger, storage_client, bucket_names
) -> None:
    wired = trigger(retrain_server.url)
    bad = publish(wired["topic"], b"not json", model=MODEL)
    (refused,) = wait_for(lambda: retrain_server.deliveries(bad), 30, "the bad delivery")
    assert refused["delivery"] == "refused"
    assert refused["severity"] == "ERROR"
    assert refused["error_type"] == "EventError"

    # Positive marker, no sleep: a probe published afterwards fails retryably on the same
    # subscription (another instance holds its run). The emulator redelivers ~1 s after a 5xx
    # whatever the backoff, so once the probe came back, a nacked bad message would have too.
    scheduled = "2031-01-01T00:00:00Z"
    write_run_marker(
        storage_client, bucket_names["registry"], MODEL, key_of(scheduled), status="running"
    )
    probe = publish(wired["topic"], retrain_request(scheduled), model=MODEL)
    retried = wait_for(
        lambda: (lambda d: d if len(d) >= 2 else None)(retrain_server.deliveries(probe)),
        30,
        "the probe's redelivery",
    )
    assert [d["delivery"] for d in retried] == ["retry"] * len(retried)
    assert {d["error_type"] for d in retried} == {"RunInProgress"}
    assert {d["severity"] for d in retried} == {"WARNING"}
    assert retrain_server.deliveries(bad) == [refused]


def test_a_failed_delivery_is_redelivered_until_it_succeeds(
    retrain_server: Function, trigger, seed, storage_client, bucket_names
) -> None:
    """A 5xx (a retryable error, re-raised) is redelivered under delivery.json's policy until a
    delivery succeeds. (How long the emulator waits between tries is its own business, measured
    once in docs/decisions.md, not asserted on a wall clock here.)

    delivery.json's attempts and maximum backoff, the minimum backoff shortened from 10 s to 3 s
    only to keep the test quick. The emulator redelivers ~1 s after the first 5xx whatever the
    backoff, then waits the minimum and more: ~6 s here (~14 s at 10 s) for the test to let the
    run go between the second delivery and the third."""
    seed(days=14)
    policy = dataclasses.replace(delivery_policy(), minimum_backoff="3s")
    minimum = float(policy.minimum_backoff.removesuffix("s"))
    wired = trigger(retrain_server.url, policy)
    scheduled = "2031-02-01T00:00:00Z"
    registry = bucket_names["registry"]
    write_run_marker(storage_client, registry, MODEL, key_of(scheduled), status="running")
    message_id = publish(wired["topic"], retrain_request(scheduled), model=MODEL)

    wait_for(lambda: len(retrain_server.deliveries(message_id)) >= 2, 30, "two failed deliveries")
    # The other instance gave up: the next delivery takes the run over.
    write_run_marker(storage_client, registry, MODEL, key_of(scheduled), status="aborted")
    mine = wait_for(
        lambda: (lambda d: d if d[-1]["delivery"] == "ok" else None)(
            retrain_server.deliveries(message_id)
        ),
        minimum + 120,
        "a successful redelivery",
    )
    assert [d["delivery"] for d in mine] == ["retry"] * (len(mine) - 1) + ["ok"]
    assert len(mine) == 3
    assert mine[-1]["version"] == 1
    assert Registry(storage_client, registry).version_numbers(MODEL) == [1]


def test_after_max_delivery_attempts_a_message_is_parked_in_the_hold_subscription(
    retrain_server: Function, trigger, storage_client, bucket_names
) -> None:
    """pubsub.tf's dead-letter topic and hold subscription, with delivery.json's attempts (the
    backoff shortened here only to keep the test quick)."""
    from google.cloud import pubsub_v1

    policy = dataclasses.replace(delivery_policy(), minimum_backoff="1s", maximum_backoff="2s")
    wired = trigger(retrain_server.url, policy)
    scheduled = "2031-03-01T00:00:00Z"
    write_run_marker(
        storage_client, bucket_names["registry"], MODEL, key_of(scheduled), status="running"
    )
    data = retrain_request(scheduled)
    message_id = publish(wired["topic"], data, model=MODEL)

    subscriber = pubsub_v1.SubscriberClient()
    try:

        def parked() -> list[Any]:
            resp = subscriber.pull(subscription=wired["hold"], max_messages=10, timeout=5)
            return list(resp.received_messages)

        (held,) = wait_for(parked, 90, "the message in the dead-letter hold subscription")
    finally:
        subscriber.close()
    assert held.message.data == data
    attributes = dict(held.message.attributes)
    assert attributes["model"] == MODEL
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(
        policy.max_delivery_attempts
    )
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == wired["push"].rsplit("/")[-1]
    # Every attempt was logged before its 5xx, so all of them are in the log by now.
    mine = retrain_server.deliveries(message_id)
    assert [d["delivery"] for d in mine] == ["retry"] * policy.max_delivery_attempts


def test_delivery_attempt_is_logged_when_the_envelope_has_one(retrain_server: Function) -> None:
    """Pub/Sub adds ``deliveryAttempt`` to a push only on subscriptions with a dead-letter policy;
    the emulator never does (docs/decisions.md), so these requests are posted directly."""
    # An Eventarc-style binary CloudEvent whose envelope carries it: logged.
    body = envelope(b"not json", message_id="attempt-3")
    body["deliveryAttempt"] = 3
    resp = requests.post(
        retrain_server.url, data=json.dumps(body), headers=binary_headers(body), timeout=30
    )
    assert resp.status_code == 200
    (line,) = retrain_server.deliveries("attempt-3")
    assert line["delivery_attempt"] == 3
    assert line["delivery"] == "refused"

    # The raw push body our subscriptions deliver: functions-framework's conversion keeps only
    # the message, so the attempt never reaches the function (nor does "subscription").
    raw = {
        "subscription": f"projects/{PROJECT}/subscriptions/direct",
        "deliveryAttempt": 4,
        "message": {
            "data": base64.b64encode(b"not json").decode(),
            "messageId": "attempt-4",
            "publishTime": "2026-11-20T10:00:00.123Z",
        },
    }
    assert requests.post(retrain_server.url, json=raw, timeout=30).status_code == 200
    (line,) = retrain_server.deliveries("attempt-4")
    assert "delivery_attempt" not in line

    # An event that is not a Pub/Sub envelope: no message id yet, so the CloudEvent id is used.
    headers = {**binary_headers(envelope(b"{}", message_id="ce-only")), "ce-id": "ce-only"}
    resp = requests.post(
        retrain_server.url, data=json.dumps({"nothing": 1}), headers=headers, timeout=30
    )
    assert resp.status_code == 200
    (line,) = retrain_server.deliveries("ce-only")
    assert line["delivery"] == "refused"
    assert line["error_type"] == "EventError"
