"""The Eventarc shim end to end: real Pub/Sub emulator → shim → real functions-framework servers."""

from __future__ import annotations

import base64
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from warden_local.eventarc import (
    PUBLISHED,
    EventarcShim,
    Route,
    create_push_subscription,
    ensure_topic,
)
from warden_local.process import FunctionServer, free_port
from warden_local.pubsub import PubSubEmulator

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "warden-test"
_ids = itertools.count()

# The function under the shim: records each CloudEvent, then fails while the file named by the
# message's ``fail_while`` attribute exists (or sleeps ``sleep`` seconds first).
RECORDER = """
import json
import os
import pathlib
import time

import functions_framework

LOG = pathlib.Path(os.environ["RECORD_LOG"])


@functions_framework.cloud_event
def record(event):
    attributes = dict(event.get_attributes())
    with LOG.open("a") as fh:
        fh.write(json.dumps({"attributes": attributes, "data": event.data}) + "\\n")
    msg_attrs = (event.data.get("message") or {}).get("attributes") or {}
    time.sleep(float(msg_attrs.get("sleep", 0)))
    if "fail_while" in msg_attrs and pathlib.Path(msg_attrs["fail_while"]).exists():
        raise RuntimeError("asked to fail")
"""


class Recorder:
    def __init__(self, server: FunctionServer, log: Path) -> None:
        self.server = server
        self.log = log

    @property
    def url(self) -> str:
        return self.server.url

    def records(self, message_id: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [r for r in rows if message_id is None or r["attributes"]["id"] == message_id]


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def push_body(message_id: str = "m-1", **message: Any) -> bytes:
    return json.dumps(
        {
            "subscription": f"projects/{PROJECT}/subscriptions/direct",
            "message": {
                "data": base64.b64encode(b"hi").decode(),
                "messageId": message_id,
                "publishTime": "2026-11-20T10:00:00.123Z",
                **message,
            },
        }
    ).encode()


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pubsub() -> Iterator[PubSubEmulator]:
    mp = pytest.MonkeyPatch()
    with PubSubEmulator() as emulator:
        mp.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator
    mp.undo()


@pytest.fixture(scope="module")
def clients(pubsub: PubSubEmulator) -> Iterator[tuple[Any, Any]]:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    root = tmp_path_factory.mktemp("recorder")
    source = root / "main.py"
    source.write_text(RECORDER)
    log = root / "events.jsonl"
    with (root / "server.log").open("wb") as out:
        env = {**os.environ, "RECORD_LOG": str(log)}
        with FunctionServer(source, "record", log=out, env=env) as server:
            yield Recorder(server, log)


@pytest.fixture
def trigger(
    clients: tuple[Any, Any], tmp_path: Path
) -> Iterator[Callable[..., tuple[EventarcShim, str, str]]]:
    """``trigger(target_url, **shim_kw)`` → (started shim, topic path, subscription path): a fresh
    topic with a push subscription to the shim, which routes it to ``target_url``."""
    publisher, subscriber = clients
    shims: list[EventarcShim] = []
    subscriptions: list[str] = []

    def _make(target_url: str, **shim_kw: Any) -> tuple[EventarcShim, str, str]:
        name = unique("route")
        topic = ensure_topic(publisher, PROJECT, unique("topic"))
        shim = EventarcShim([Route(name, target_url, topic)], **shim_kw).start()
        shims.append(shim)
        sub = create_push_subscription(
            subscriber,
            project=PROJECT,
            topic_id=topic.rsplit("/", 1)[1],
            subscription_id=unique("eventarc"),
            push_endpoint=shim.push_url(name),
        )
        subscriptions.append(sub)
        return shim, topic, sub

    yield _make
    for sub in subscriptions:  # no pushes to a stopped shim after the test
        subscriber.delete_subscription(subscription=sub)
    for shim in shims:
        shim.stop()


def of(shim: EventarcShim, message_id: str) -> list[dict[str, Any]]:
    return [d for d in shim.deliveries if d["message_id"] == message_id]


# -- tests ---------------------------------------------------------------------------------------


def test_published_message_arrives_as_an_eventarc_binary_cloud_event(
    clients, recorder: Recorder, trigger
) -> None:
    publisher, _ = clients
    shim, topic, sub = trigger(recorder.url)
    payload = b'{"schema": 1, "model": "iris"}'
    message_id = publisher.publish(topic, payload, model="iris", reason="manual").result()

    (record,) = wait_until(lambda: recorder.records(message_id), what="the CloudEvent")
    attrs, data = record["attributes"], record["data"]
    published = data["message"]["publishTime"]
    assert attrs == {
        "id": message_id,
        "source": f"//pubsub.googleapis.com/{topic}",
        "type": PUBLISHED,
        "specversion": "1.0",
        "time": published,
        "datacontenttype": "application/json",
    }
    ts = datetime.fromisoformat(published.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - ts) < timedelta(minutes=1)
    assert data == {
        "subscription": sub,
        "message": {
            "data": base64.b64encode(payload).decode(),
            "attributes": {"model": "iris", "reason": "manual"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": published,
            "publish_time": published,
        },
    }
    delivery = wait_until(lambda: of(shim, message_id), what="the delivery record")[0]
    assert delivery["route"] == next(iter(shim.routes))
    assert delivery["status"] == 200
    assert delivery["error"] is None
    assert delivery["seconds"] >= 0
    assert requests.get(f"{shim.endpoint}/deliveries", timeout=5).json() == shim.deliveries


def test_acknowledged_messages_are_not_redelivered(clients, recorder: Recorder, trigger) -> None:
    publisher, _ = clients
    shim, topic, _ = trigger(recorder.url)
    ids = [publisher.publish(topic, f"m{i}".encode()).result() for i in range(3)]
    wait_until(lambda: all(of(shim, m) for m in ids), what="three deliveries")
    time.sleep(3)  # the emulator redelivers a nacked push after ~1 s
    for message_id in ids:
        assert [d["status"] for d in of(shim, message_id)] == [200]
        assert len(recorder.records(message_id)) == 1


def test_failing_function_is_retried_until_it_succeeds(
    clients, recorder: Recorder, trigger, tmp_path: Path
) -> None:
    publisher, _ = clients
    shim, topic, _ = trigger(recorder.url)
    marker = tmp_path / "fail"
    marker.touch()
    message_id = publisher.publish(topic, b"retry me", fail_while=str(marker)).result()

    wait_until(lambda: len(of(shim, message_id)) >= 2, what="two failed deliveries")
    marker.unlink()
    wait_until(lambda: of(shim, message_id)[-1]["status"] == 200, what="a successful retry")
    statuses = [d["status"] for d in of(shim, message_id)]
    assert len(statuses) >= 3
    assert statuses[-1] == 200
    assert all(s == 500 for s in statuses[:-1]), statuses
    assert all(d["error"] for d in of(shim, message_id)[:-1])

    time.sleep(3)
    assert [d["status"] for d in of(shim, message_id)] == statuses
    records = recorder.records(message_id)
    assert len(records) == len(statuses)
    # Every attempt is the same event: one id, one envelope.
    assert {json.dumps(r, sort_keys=True) for r in records} == {
        json.dumps(records[0], sort_keys=True)
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'"message"',
        b'{"subscription": "projects/p/subscriptions/s"}',
        b'{"message": "aGk="}',
        b'{"message": {"data": "aGk=", "publishTime": "2026-11-20T10:00:00Z"}}',
        b'{"message": {"data": "aGk=", "messageId": "7"}}',
        b'{"subscription": 3, "message": {"messageId": "7", "publishTime": "2026-11-20T10:00Z"}}',
    ],
)
def test_malformed_push_is_refused_and_never_forwarded(recorder: Recorder, body: bytes) -> None:
    topic = f"projects/{PROJECT}/topics/unused"
    with EventarcShim([Route("fn", recorder.url, topic)]) as shim:
        before = len(recorder.records())
        resp = requests.post(shim.push_url("fn"), data=body, timeout=10)
        assert resp.status_code == 400, resp.text
        assert "error" in resp.json()
        assert shim.deliveries == []
        # Forwarding is synchronous: had the shim forwarded, the record would already exist.
        assert len(recorder.records()) == before


def test_unknown_route_is_404_and_health_is_200(recorder: Recorder) -> None:
    with EventarcShim([Route("fn", recorder.url, f"projects/{PROJECT}/topics/unused")]) as shim:
        before = len(recorder.records())
        assert (
            requests.post(f"{shim.endpoint}/push/nope", data=push_body(), timeout=10).status_code
            == 404
        )
        assert (
            requests.post(f"{shim.endpoint}/elsewhere", data=push_body(), timeout=10).status_code
            == 404
        )
        assert requests.get(f"{shim.endpoint}/healthz", timeout=10).status_code == 200
        assert shim.deliveries == []
        assert len(recorder.records()) == before


def test_message_id_twin_is_filled_in(recorder: Recorder) -> None:
    """An envelope with only ``message_id``/``publish_time`` still reaches the function with
    both spellings, as Eventarc's does."""
    with EventarcShim([Route("fn", recorder.url, f"projects/{PROJECT}/topics/twin")]) as shim:
        body = {
            "subscription": f"projects/{PROJECT}/subscriptions/twin",
            "message": {"data": "", "message_id": "twin-1", "publish_time": "2026-11-20T10:00:00Z"},
        }
        resp = requests.post(shim.push_url("fn"), data=json.dumps(body), timeout=10)
        assert resp.status_code == 204
        (record,) = recorder.records("twin-1")
        assert record["attributes"]["time"] == "2026-11-20T10:00:00Z"
        assert record["data"]["message"] == {
            "data": "",
            "message_id": "twin-1",
            "messageId": "twin-1",
            "publish_time": "2026-11-20T10:00:00Z",
            "publishTime": "2026-11-20T10:00:00Z",
        }


def test_unreachable_target_is_503_recorded_and_redelivered(
    clients, trigger, tmp_path: Path
) -> None:
    publisher, _ = clients
    log = tmp_path / "deliveries.jsonl"
    shim, topic, _ = trigger(f"http://127.0.0.1:{free_port()}/", log=log)
    route = next(iter(shim.routes))

    resp = requests.post(shim.push_url(route), data=push_body("direct-1"), timeout=10)
    assert resp.status_code == 503
    (delivery,) = of(shim, "direct-1")
    assert delivery["status"] is None
    assert "ConnectionError" in delivery["error"]

    # Through the emulator: a 503 is a nack, so the message keeps coming back.
    message_id = publisher.publish(topic, b"nobody home").result()
    wait_until(lambda: len(of(shim, message_id)) >= 2, what="a redelivery after 503")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0] == delivery
    assert {x["message_id"] for x in lines} == {"direct-1", message_id}
    assert all(x["status"] is None for x in lines)


def test_slow_function_times_out_as_503(recorder: Recorder) -> None:
    topic = f"projects/{PROJECT}/topics/slow"
    with EventarcShim([Route("fn", recorder.url, topic)], timeout=0.5) as shim:
        started = time.monotonic()
        body = push_body("slow-1", attributes={"sleep": "2"})
        resp = requests.post(shim.push_url("fn"), data=body, timeout=10)
        assert resp.status_code == 503
        assert time.monotonic() - started < 1.8
        (delivery,) = shim.deliveries
        assert delivery["status"] is None
        assert "Timeout" in delivery["error"]


def test_cli_prints_ready_serves_and_exits_0_on_sigterm(
    pubsub, clients, recorder: Recorder, tmp_path: Path
) -> None:
    publisher, subscriber = clients
    name = unique("cli")
    topic = f"projects/{PROJECT}/topics/{name}"
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([{"name": name, "target_url": recorder.url, "topic": topic}]))
    log = tmp_path / "deliveries.jsonl"
    port = free_port()
    cmd = [
        sys.executable, "-m", "warden_local.eventarc", "--port", str(port),
        "--routes", str(routes), "--log", str(log), "--subscribe",
    ]  # fmt: skip
    with (tmp_path / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "no 'ready' line within 30 s"
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"ready http://127.0.0.1:{port}"

            # --subscribe wired topic → push subscription → this shim.
            message_id = publisher.publish(topic, b"via cli").result()
            url = f"http://127.0.0.1:{port}/deliveries"
            (delivery,) = wait_until(
                lambda: requests.get(url, timeout=5).json(), what="a delivery via the CLI"
            )
            assert delivery["message_id"] == message_id
            assert delivery["status"] == 200
            assert json.loads(log.read_text()) == delivery
            assert len(recorder.records(message_id)) == 1

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            subscriber.delete_subscription(
                subscription=subscriber.subscription_path(PROJECT, f"eventarc-{name}")
            )


def test_real_retrain_function_acknowledges_a_malformed_message(
    clients, trigger, gcs_emulator, bucket_names, tmp_path: Path
) -> None:
    publisher, _ = clients
    env = {
        **os.environ,
        "WARDEN_CONFIG": str(ROOT / "warden.yaml"),
        "WARDEN_PROJECT": PROJECT,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_METRICS": "off",
    }
    env.pop("WARDEN_EVENTS_TOPIC", None)
    server_log = tmp_path / "retrain.log"
    source = ROOT / "functions/retrain_model/main.py"
    with (
        server_log.open("wb") as out,
        FunctionServer(source, "retrain_model", log=out, env=env) as server,
    ):
        shim, topic, _ = trigger(server.url)
        message_id = publisher.publish(topic, b"not json").result()
        wait_until(lambda: of(shim, message_id), timeout=30, what="the retrain delivery")
        time.sleep(3)
        (delivery,) = of(shim, message_id)
        assert delivery["status"] == 200, delivery
        # What the emulator was answered: the function's 2xx relayed as 204.
        direct = requests.post(
            shim.push_url(next(iter(shim.routes))),
            data=push_body("direct-retrain", data=base64.b64encode(b"not json").decode()),
            timeout=30,
        )
        assert direct.status_code == 204
        assert [d["status"] for d in of(shim, "direct-retrain")] == [200]
    # The 2xx came from the permanent-error path, not from doing nothing.
    logged = [json.loads(x) for x in server_log.read_text().splitlines() if x.startswith("{")]
    refused = [r for r in logged if "refused" in r.get("message", "")]
    assert refused, server_log.read_text()[-2000:]
    assert refused[0]["severity"] == "ERROR"
