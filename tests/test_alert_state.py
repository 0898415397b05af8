"""Alert state on fake-gcs-server + receivers against a local capture HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from capture import Capture, running
from warden.alerts import Alert, alert_from_incident, alert_from_model_event
from warden.alerts.receivers import deliver
from warden.alerts.state import AlertState
from warden.config.alerting import AlertingConfig, parse_alerting
from warden.settings import secret

T = 1_700_000_000.0
SECRET = "s3cr3t-hmac-key"


@pytest.fixture
def capture() -> Iterator[Capture]:
    with running(SECRET) as cap:
        yield cap


def _config(route: dict[str, Any] | None = None, **extra: Any) -> AlertingConfig:
    receivers = [
        {"name": "hook", "webhook": {"url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}},
        {"name": "page", "webhook": {"url_env": "PAGE_URL", "secret_env": "HOOK_SECRET"}},
        {"name": "down", "webhook": {"url_env": "DOWN_URL", "secret_env": "HOOK_SECRET"}},
        {"name": "retrain", "pubsub": {"topic": extra.pop("topic", "t"), "action": "retrain"}},
    ]
    return parse_alerting(
        {
            "receivers": receivers,
            "route": route
            or {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            },
            **extra,
        },
        "test",
    )


@pytest.fixture
def env(capture: Capture, storage_client, bucket_names):
    secrets = {
        "HOOK_URL": capture.url + "/hook",
        "PAGE_URL": capture.url + "/page",
        "DOWN_URL": "http://127.0.0.1:9/down",  # discard port: connection refused
        "HOOK_SECRET": SECRET,
    }
    state = AlertState(storage_client, bucket_names["registry"], lease=60)

    def send(receiver, message):
        return deliver(receiver, message, secrets=secrets.get, sleep=lambda s: None)

    return state, send, secrets


def incident(n: int = 0, state: str = "open", policy: str = "Model drift", **labels: str):
    return alert_from_incident(
        {
            "version": "1.2",
            "incident": {
                "incident_id": f"0.inc{n}",
                "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.inc{n}",
                "started_at": int(T) - 60,
                "ended_at": None if state == "open" else int(T) + 100,
                "state": state,
                "summary": f"incident {n}",
                "resource": {"type": "global", "labels": {"project_id": "p"}},
                "metric": {
                    "type": "custom.googleapis.com/warden/drift",
                    "displayName": "Drift",
                    "labels": labels,
                },
                "policy_name": policy,
                "policy_user_labels": {},
                "condition_name": "drift high",
                "severity": "Warning",
                "documentation": {"content": "see runbook", "mime_type": "text/markdown"},
            },
        },
        received_at=T,
    )


def test_duplicates_notify_once_and_signature_verifies(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config()
    results = [
        state.ingest([incident(1)], config=config, now=T + i * 0.1, instance="i1")
        for i in range(100)
    ]
    assert results[0].new == 1
    assert sum(r.unchanged for r in results) == 99
    assert state.flush_due(config=config, now=T + 10, instance="i1", send=send).sent == []
    for now in (T + 31, T + 40, T + 400, T + 3600):
        state.flush_due(config=config, now=now, instance="i1", send=send)
    (req,) = capture.at("/hook")
    assert req["verified"]
    assert int(req["timestamp"]) > 0
    assert req["body"]["firing"] == 1
    assert req["body"]["alerts"][0]["labels"]["incident_id"] == "0.inc1"
    assert len(state.nflog()) == 1
    # repeat_interval (4h) after the notification: sent again, unchanged
    state.flush_due(config=config, now=T + 31 + 4 * 3600, instance="i1", send=send)
    assert len(capture.at("/hook")) == 2


def test_open_then_closed_is_one_firing_and_one_resolved(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config()
    state.ingest([incident(1)], config=config, now=T, instance="a")
    state.flush_due(config=config, now=T + 31, instance="a", send=send)
    state.ingest([incident(1, "closed")], config=config, now=T + 100, instance="a")
    state.ingest([incident(1, "closed")], config=config, now=T + 101, instance="a")
    state.flush_due(config=config, now=T + 200, instance="a", send=send)  # < group_interval
    assert len(capture.at("/hook")) == 1
    for now in (T + 331, T + 400, T + 20_000):
        state.flush_due(config=config, now=now, instance="a", send=send)
    # Late redeliveries of both notifications change nothing.
    r = state.ingest([incident(1), incident(1, "closed")], config=config, now=T + 500, instance="b")
    assert r.ignored == 1
    state.flush_due(config=config, now=T + 30_000, instance="a", send=send)
    reqs = capture.at("/hook")
    assert [(q["body"]["status"], q["body"]["firing"], q["body"]["resolved"]) for q in reqs] == [
        ("firing", 1, 0),
        ("resolved", 0, 1),
    ]


def test_a_close_that_overtakes_its_open_keeps_the_incident_closed(env, capture: Capture) -> None:
    """Pub/Sub (and webhook retries) do not keep order: a close may arrive before its open. The
    close is remembered, so the late open is taken for what it is — over — and nothing pages."""
    state, send, _ = env
    config = _config()
    early = state.ingest([incident(2, "closed")], config=config, now=T, instance="a")
    assert early.ignored == 1
    late = state.ingest([incident(2)], config=config, now=T + 1, instance="b")
    assert (late.new, late.ignored) == (0, 1)
    # Another incident in the same group still notifies: the tombstone is per fingerprint.
    state.ingest([incident(3)], config=config, now=T + 2, instance="a")
    for now in (T + 40, T + 400):
        state.flush_due(config=config, now=now, instance="a", send=send)
    reqs = capture.at("/hook")
    assert len(reqs) == 1
    assert [a["labels"]["incident_id"] for a in reqs[0]["body"]["alerts"]] == ["0.inc3"]


def test_fifty_alerts_within_group_wait_are_one_notification(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config()
    for i in range(50):
        state.ingest([incident(i)], config=config, now=T + i * 0.5, instance="a")
    state.flush_due(config=config, now=T + 29, instance="a", send=send)
    assert capture.at("/hook") == []
    state.flush_due(config=config, now=T + 30, instance="a", send=send)
    state.flush_due(config=config, now=T + 60, instance="a", send=send)
    (req,) = capture.at("/hook")
    assert req["body"]["firing"] == 50
    assert {a["labels"]["incident_id"] for a in req["body"]["alerts"]} == {
        f"0.inc{i}" for i in range(50)
    }


def test_silenced_alerts_are_recorded_not_sent(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config()
    sil = state.add_silence(
        ['alertname="Model drift"'], starts_at=T - 1, ends_at=T + 3600, created_by="me"
    )
    assert [s.id for s in state.list_silences(T)] == [sil.id]
    r = state.ingest([incident(1)], config=config, now=T, instance="a")
    assert r.silenced == 1
    for now in (T + 31, T + 400, T + 3000):
        state.flush_due(config=config, now=now, instance="a", send=send)
    assert capture.at("/hook") == []
    (name,) = [b.name for b in state._client.list_blobs(state.bucket_name, prefix="_alerting/g")]
    data = json.loads(state.bucket.blob(name).download_as_bytes())
    assert next(iter(data["alerts"].values()))["silenced"] is True
    # Expire the silence: the alert is notified at the next flush.
    assert state.expire_silence(sil.id, now=T + 3100)
    assert state.list_silences(T + 3100) == []
    state.flush_due(config=config, now=T + 3101, instance="a", send=send)
    assert len(capture.at("/hook")) == 1


def test_inhibited_alerts_are_not_sent(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config(
        inhibit_rules=[
            {
                "source_matchers": ['alertname="Model down"'],
                "target_matchers": ['alertname="Model drift"'],
                "equal": ["model"],
            }
        ]
    )
    down = incident(1, policy="Model down", model="churn")
    drift = incident(2, model="churn")
    other = incident(3, model="fraud")
    r = state.ingest([down, drift, other], config=config, now=T, instance="a")
    assert r.inhibited == 1
    state.flush_due(config=config, now=T + 31, instance="a", send=send)
    sent = [
        (a["labels"]["alertname"], a["labels"]["model"])
        for q in capture.at("/hook")
        for a in q["body"]["alerts"]
    ]
    assert sorted(sent) == [("Model down", "churn"), ("Model drift", "fraud")]


def test_inhibition_that_begins_later_is_recorded_in_the_state(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config(
        inhibit_rules=[
            {
                "source_matchers": ['alertname="Model down"'],
                "target_matchers": ['alertname="Model drift"'],
                "equal": ["model"],
            }
        ]
    )
    drift = incident(2, model="churn")
    state.ingest([drift], config=config, now=T, instance="a")  # nothing inhibits it yet
    state.ingest(
        [incident(1, policy="Model down", model="churn")], config=config, now=T + 1, instance="a"
    )
    state.flush_due(config=config, now=T + 31, instance="a", send=send)
    stored = [
        rec
        for name in state._names("_alerting/groups/")
        for rec in (state._read(name)[0] or {}).get("alerts", {}).values()
        if rec["labels"]["alertname"] == "Model drift"
    ]
    assert [r["inhibited"] for r in stored] == [True]
    sent = [a["labels"]["alertname"] for q in capture.at("/hook") for a in q["body"]["alerts"]]
    assert sent == ["Model down"]


def test_concurrent_instances_notify_each_group_exactly_once(
    capture: Capture, gcs_emulator, bucket_names
) -> None:
    from google.cloud import storage

    config = _config()
    secrets = {"HOOK_URL": capture.url + "/hook", "HOOK_SECRET": SECRET}
    burst = [incident(g * 10 + i, policy=f"policy-{g}") for g in range(3) for i in range(5)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            st = AlertState(storage.Client(project="warden-test"), bucket_names["registry"])

            def send(receiver, message):
                return deliver(receiver, message, secrets=secrets.get, sleep=lambda s: None)

            st.ingest(burst, config=config, now=T, instance=f"w{n}")
            st.flush_due(config=config, now=T + 31, instance=f"w{n}", send=send)
            st.ingest(burst, config=config, now=T + 32, instance=f"w{n}")
            st.flush_due(config=config, now=T + 33, instance=f"w{n}", send=send)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    reqs = capture.at("/hook")
    titles = sorted(q["body"]["alerts"][0]["labels"]["alertname"] for q in reqs)
    assert titles == ["policy-0", "policy-1", "policy-2"]
    assert all(q["body"]["firing"] == 5 for q in reqs)


def test_crash_between_send_and_confirm_resends_once_after_the_lease(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config()
    state.ingest([incident(1)], config=config, now=T, instance="a")

    def crashing(receiver, message):
        send(receiver, message)  # delivered...
        raise RuntimeError("instance died before confirming")

    r1 = state.flush_due(config=config, now=T + 31, instance="a", send=crashing)
    assert len(r1.failed) == 1
    r2 = state.flush_due(config=config, now=T + 60, instance="b", send=send)
    assert r2.skipped_claimed == 1  # the claim is fresh: hands off
    assert len(capture.at("/hook")) == 1
    r3 = state.flush_due(config=config, now=T + 92, instance="b", send=send)
    assert r3.taken_over == 1
    for now in (T + 100, T + 500, T + 3000):
        state.flush_due(config=config, now=now, instance="c", send=send)
    reqs = capture.at("/hook")
    assert len(reqs) == 2
    assert reqs[0]["body"]["seq"] == reqs[1]["body"]["seq"]  # the same notification, repeated
    assert [e["instance"] for e in state.nflog()] == ["b"]


def test_webhook_retries_and_permanent_errors(env, capture: Capture) -> None:
    _, _, secrets = env
    config = _config()
    hook = config.receiver("hook")
    waits: list[float] = []
    capture.script["/hook"] = [503, 503, 200]
    res = deliver(hook, {"title": "t"}, secrets=secrets.get, sleep=waits.append)
    assert (res.ok, res.attempts, res.status) == (True, 3, 200)
    assert len(waits) == 2
    assert 0.25 <= waits[0] <= 0.5
    assert 0.5 <= waits[1] <= 1.0
    capture.script["/hook"] = [400, 200]
    res = deliver(hook, {"title": "t"}, secrets=secrets.get, sleep=waits.append)
    assert (res.ok, res.attempts, res.status) == (False, 1, 400)
    capture.script["/hook"] = [429, 500, 502, 200]
    res = deliver(hook, {"title": "t"}, secrets=secrets.get, sleep=waits.append)
    assert (res.ok, res.attempts, res.status) == (False, 3, 502)  # max_attempts = 3
    assert len(capture.at("/hook")) == 3 + 1 + 3
    assert all(q["verified"] for q in capture.at("/hook"))
    wrong = {**secrets, "HOOK_SECRET": "not-the-key"}
    deliver(hook, {"title": "t"}, secrets=wrong.get, sleep=waits.append)
    assert capture.at("/hook")[-1]["verified"] is False


def test_a_down_receiver_does_not_block_the_others(env, capture: Capture) -> None:
    state, send, _ = env
    config = _config(
        {
            "receiver": "hook",
            "group_by": ["alertname"],
            "routes": [
                {"matchers": ['alertname="Model drift"'], "receiver": "down", "continue": True},
                {"matchers": ['alertname="Model drift"'], "receiver": "page", "continue": True},
            ],
        }
    )
    state.ingest([incident(1)], config=config, now=T, instance="a")
    res = state.flush_due(config=config, now=T + 31, instance="a", send=send)
    assert [f["receiver"] for f in res.failed] == ["down"]
    assert res.failed[0]["attempts"] == 3
    assert [s["receiver"] for s in res.sent] == ["page"]
    assert len(capture.at("/page")) == 1
    # The failed group is not lost: it is still due and retried at the next flush.
    res = state.flush_due(config=config, now=T + 40, instance="a", send=send)
    assert [f["receiver"] for f in res.failed] == ["down"]
    assert len(capture.at("/page")) == 1


def test_pubsub_retrain_action_publishes(env, topic_sink) -> None:
    state, _, _ = env
    topic_id, publisher, pull = topic_sink("alerts")
    config = _config({"receiver": "retrain", "group_by": ["model"]}, topic=topic_id)
    drift = alert_from_model_event(
        {"schema": 1, "kind": "drift_detected", "model": "churn", "at": "2023-11-14T22:13:20Z"},
        {"model": "churn", "kind": "drift_detected"},
    )
    state.ingest([drift], config=config, now=T, instance="a")

    def send(receiver, message):
        return deliver(
            receiver,
            message,
            secrets=lambda name: None,
            publisher_factory=lambda: publisher,
            project="warden-test",
        )

    res = state.flush_due(config=config, now=T + 31, instance="a", send=send)
    assert [s["receiver"] for s in res.sent] == ["retrain"]
    assert pull(1) == [
        ({"model": "churn", "kind": "retrain"}, {"schema": 1, "model": "churn", "reason": "alert"})
    ]
    # Model events resolve by timing out (1 h): a resolved notification goes out, no new retrain.
    res = state.flush_due(config=config, now=drift.starts_at + 3600 + 1, instance="a", send=send)
    assert len(res.sent) == 1
    assert pull.before_marker() == []


def test_resolved_state_expires_to_nothing_but_the_mutes_object(env, monkeypatch) -> None:
    """Once an incident is resolved and said, the tick deletes its group when the tombstone
    expires and housekeeping sweeps the notification log and the ended silence: no object is
    left behind but ``mutes.json`` (emptied)."""
    from datetime import timedelta

    from warden.alerts.state import MUTES, TOMBSTONE_TTL

    state, send, _ = env
    config = _config()
    state.add_silence(['a="b"'], starts_at=T, ends_at=T + 10, created_by="me")
    state.ingest([incident(1)], config=config, now=T, instance="a")
    state.flush_due(config=config, now=T + 31, instance="a", send=send)
    state.ingest([incident(1, "closed")], config=config, now=T + 40, instance="a")
    state.flush_due(config=config, now=T + 400, instance="a", send=send)
    assert len(state.nflog()) == 2
    later = T + 400 + TOMBSTONE_TTL + 60
    flushed = state.flush_due(config=config, now=later, instance="a", send=send)
    assert flushed.deleted_groups == 1
    swept = state.purge_expired(now=later, older_than=timedelta(hours=1))
    assert len(swept) == 3  # two notification records and the silence
    names = [b.name for b in state._client.list_blobs(state.bucket_name, prefix="_alerting/")]
    assert names == [MUTES]
    assert state.list_silences() == []
    monkeypatch.setenv("WARDEN_TEST_SECRET", "x")
    assert secret("WARDEN_TEST_SECRET") == "x"
    assert secret("WARDEN_TEST_MISSING") is None


def test_alert_type_is_what_ingest_takes() -> None:
    assert isinstance(incident(1), Alert)


class _CountingSession:
    """Counts the object requests a storage client makes (method and URL)."""

    def __init__(self) -> None:
        import requests

        self.calls: list[str] = []
        session = requests.Session()
        original = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any):
            # Object requests only: the client library also checks the bucket itself, once and
            # from a background thread (its bucket metadata cache).
            if "/o/" in url or "/o?" in url:
                self.calls.append(f"{method} {url}")
            return original(method, url, *args, **kwargs)

        session.request = request  # type: ignore[method-assign]
        self.session = session


def _count_calls(state: AlertState, counting: _CountingSession, act) -> int:
    before = len(counting.calls)
    act(state)
    return len(counting.calls) - before


def test_work_per_call_does_not_grow_with_the_number_of_groups(env, bucket_names) -> None:
    """A new alert, the tick that sends it, and a duplicate of it cost the same whether 3 or 60
    other groups exist (nothing lists or reads them); the duplicate costs one read (its group)
    and no write."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    _, send, _ = env
    counting = _CountingSession()
    client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=counting.session
    )
    config = _config()
    ours = AlertState(client, bucket_names["registry"], lease=60)
    other = AlertState(env[0]._client, bucket_names["registry"], lease=60)

    def call(alert: Alert, now: float):
        def act(st: AlertState) -> None:
            got = st.ingest([alert], config=config, now=now, instance="i1")
            st.flush_groups(got.due, config=config, now=now, instance="i1", send=send)

        return act

    costs = []
    for size, base in ((3, 0), (60, 1000)):
        t = T + 10 * base  # each round in its own minutes
        for n in range(base, base + size):  # idle groups: sent once, their claims' leases over
            other.ingest([incident(n, policy=f"p{n}")], config=config, now=t, instance="i2")
        other.flush_due(config=config, now=t + 31, instance="i2", send=send)
        other.flush_due(config=config, now=t + 200, instance="i2", send=send)
        fresh = incident(base + 500, policy=f"fresh{base}")
        new = _count_calls(ours, counting, call(fresh, t + 210))
        tick = _count_calls(
            ours,
            counting,
            lambda st, at=t + 250: st.flush_due(config=config, now=at, instance="i1", send=send),
        )
        dup = _count_calls(ours, counting, call(fresh, t + 251))
        costs.append((new, tick, dup))
        if size == 3:  # one read: the group; a plain duplicate needs no silences or sources
            assert dup == 1, "\n".join(counting.calls[-dup:])
            assert "groups%2F" in counting.calls[-1]
            assert counting.calls[-1].startswith("GET ")
    assert costs[0] == costs[1], (costs, "\n".join(counting.calls))
