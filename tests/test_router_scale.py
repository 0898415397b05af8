"""The router's alert state at the edges of time and volume, on fake-gcs-server.

* **A slow receiver is not sent twice.** A claim used to hold a fixed 60 s: a second router took
  it over (and sent again) while the first was still inside a slow send. Now the lease is the
  receiver's whole send budget (:func:`~warden.alerts.receivers.send_budget`) plus
  :data:`~warden.alerts.state.CLAIM_MARGIN`, so a second router's tick 61 s after the claim — in
  the middle of a webhook send that may take 3 × 60 s — keeps its hands off, and one
  notification reaches the receiver.
* **Storage holds O(active alerts).** Ten thousand alerts fire and 9,900 of them resolve; once
  the tombstones have expired (the tick) and the notification log is swept (housekeeping), what
  is left under ``_alerting/`` is the groups that still hold a firing alert and their next
  wake-up markers: no inbox objects, no notification records, nothing of the resolved alerts.

Time is virtual throughout (the ``now=`` of every call); the only real waiting is on a
``threading.Event`` that the test itself sets.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import test_alert_state as base
from capture import Capture
from warden.alerts import Alert, DeliveryResult, group_id, route_alert
from warden.alerts.receivers import deliver, send_budget
from warden.alerts.state import (
    DUE,
    GROUPS,
    INBOX,
    MUTES,
    NFLOG,
    PREFIX,
    TOMBSTONE_TTL,
    AlertState,
)
from warden.config.alerting import AlertingConfig, parse_alerting

# The fixture of test_alert_state.py, by the name the test asks for.
capture = base.capture
T, SECRET = base.T, base.SECRET

#: How long the test waits for a thread it started before calling it stuck (real seconds; a
#: timeout here fails the test, it never stands in for "did not happen").
STUCK = 30.0


def _names(state: AlertState, prefix: str = PREFIX) -> list[str]:
    return [b.name for b in state._client.list_blobs(state.bucket_name, prefix=prefix)]


def _groups(state: AlertState) -> dict[str, dict[str, Any]]:
    """gid → the stored group object."""
    out = {}
    for name in _names(state, GROUPS):
        out[name.removeprefix(GROUPS).removesuffix(".json")] = json.loads(
            state.bucket.blob(name).download_as_bytes()
        )
    return out


# -- 1. a receiver slower than the old fixed lease -------------------------------------------------


def _slow_config() -> AlertingConfig:
    return parse_alerting(
        {
            "receivers": [
                {
                    "name": "slow",
                    "webhook": {
                        "url_env": "HOOK_URL",
                        "secret_env": "HOOK_SECRET",
                        "timeout_s": 60,
                        "max_attempts": 3,
                    },
                }
            ],
            "route": {
                "receiver": "slow",
                "group_by": ["alertname"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            },
        },
        "test",
    )


def test_a_receiver_slower_than_the_old_lease_is_sent_once_with_two_routers(
    capture: Capture, storage_client, bucket_names
) -> None:
    from google.cloud import storage

    config = _slow_config()
    receiver = config.receiver("slow")
    budget = send_budget(receiver)
    assert budget > 60 + 61, budget  # longer than the old lease, and than B's wait below
    bucket = bucket_names["alerts"]
    router_a = AlertState(storage_client, bucket, lease=60)
    router_b = AlertState(storage.Client(project="warden-test"), bucket, lease=60)
    secrets = {"HOOK_URL": capture.url + "/hook", "HOOK_SECRET": SECRET}

    calls: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()
    in_send = threading.Event()  # A is inside its send
    release = threading.Event()  # the slow send may finish

    def slow_send(rcv, message):
        """Record the call, then (first call only) hold the send open until released: in
        virtual time, a send still going on more than 60 s after its claim."""
        with lock:
            calls.append((threading.current_thread().name, message))
            first = len(calls) == 1
        if first:
            in_send.set()
            assert release.wait(STUCK), "the test never released the slow send"
        return deliver(rcv, message, secrets=secrets.get, sleep=lambda s: None)

    r = router_a.ingest([base.incident(1)], config=config, now=T, instance="A")
    assert r.new == 1
    claimed_at = T + 31  # group_wait 30 s has passed
    a_result: dict[str, Any] = {}

    def run_a() -> None:
        try:
            a_result["flush"] = router_a.flush_due(
                config=config, now=claimed_at, instance="A", send=slow_send
            )
        except BaseException as exc:
            a_result["error"] = exc

    a = threading.Thread(target=run_a, name="router-A", daemon=True)
    a.start()
    try:
        assert in_send.wait(STUCK), f"router A never reached its send: {a_result}"

        # A is inside send: the claim is stored, with a lease that covers the whole budget.
        ((gid, group),) = _groups(router_a).items()
        pending = group["pending"]
        assert pending["claimed_by"] == "A"
        assert pending["claimed_at"] == claimed_at
        assert float(pending["lease_until"]) >= claimed_at + budget
        assert float(pending["lease_until"]) > claimed_at + 61  # past the old 60 s lease

        # Router B ticks 61 s after the claim: past the old fixed lease, within the real one.
        b_result = router_b.flush_due(
            config=config, now=claimed_at + 61, instance="B", send=slow_send
        )
        assert b_result.sent == []
        assert b_result.taken_over == 0
        assert b_result.skipped_claimed >= 1
        assert [who for who, _ in calls] == ["router-A"]  # B did not call send at all
        assert _groups(router_b)[gid]["pending"]["claimed_by"] == "A"  # the claim is A's still
    finally:
        release.set()
        a.join(STUCK)
    assert not a.is_alive(), "router A's flush did not finish"
    assert "error" not in a_result, a_result
    flushed = a_result["flush"]
    assert [s["group"] for s in flushed.sent] == [gid]
    assert flushed.lost_confirm == 0  # A confirmed its own claim
    assert _groups(router_a)[gid]["pending"] is None

    # B again, one second later, and once more past the lease's end (where a claim left
    # unconfirmed would be taken over): A's confirm left nothing to re-send.
    lease_until = float(pending["lease_until"])
    for now in (claimed_at + 62, lease_until + 1):
        later = router_b.flush_due(config=config, now=now, instance="B", send=slow_send)
        assert (later.sent, later.taken_over) == ([], 0), now
    assert len(calls) == 1
    (req,) = capture.at("/hook")  # exactly one notification reached the receiver
    assert req["verified"]
    assert req["body"]["alerts"][0]["labels"]["incident_id"] == "0.inc1"
    assert [e["instance"] for e in router_a.nflog()] == ["A"]


# -- 2. ten thousand alerts through their whole life -----------------------------------------------

N = 10_000
NAMES = 25  # alertname a0..a24: route group_by [alertname] makes one group of each
#: Alerts per ingest call: ingest writes one inbox object (and lists the inbox once) per call and
#: group, so the storage requests grow with calls × groups, not with alerts.
BATCH = 2500


def _alert(i: int, now: float, *, resolved_at: float | None = None) -> Alert:
    return Alert(
        labels={"alertname": f"a{i % NAMES}", "model": f"m{i % 50}", "n": str(i)},
        annotations={"summary": f"alert {i}"},
        status="firing" if resolved_at is None else "resolved",
        starts_at=now,
        ends_at=resolved_at,
        # fixed width, like real fingerprints: none is a prefix of another
        fingerprint=hashlib.sha256(f"soak\0{i}".encode()).hexdigest()[:16],
        source="monitoring",
    )


def _keep(i: int) -> bool:
    """The 100 alerts left firing: 20 in each of 5 groups (a0..a4); the other 20 groups end
    with none."""
    return i % NAMES < 5 and i < 20 * NAMES


def test_ten_thousand_alert_soak_leaves_only_active_state(storage_client, bucket_names) -> None:
    config = parse_alerting(
        {
            "receivers": [{"name": "log", "log": {}}],
            "route": {
                "receiver": "log",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1m",
                "repeat_interval": "4h",
            },
        },
        "test",
    )
    state = AlertState(storage_client, bucket_names["alerts"], lease=60)
    sent: list[dict[str, Any]] = []

    def send(receiver, message):
        sent.append(message)
        return DeliveryResult(receiver.name, True, 1)

    def tick(now: float):
        return state.flush_due(config=config, now=now, instance="soak", send=send)

    kept = [i for i in range(N) if _keep(i)]
    assert len(kept) == 100
    active = {
        group_id(m.group_key(a))
        for i in kept
        for a in [_alert(i, T)]
        for m in route_alert(a, config)
    }
    assert len(active) == 5

    # Fire all 10,000 (4 calls of 2,500: one inbox object per call and group), then tick.
    for start in range(0, N, BATCH):
        got = state.ingest(
            [_alert(i, T) for i in range(start, start + BATCH)],
            config=config,
            now=T,
            instance="soak",
        )
        assert got.new == BATCH
    first = tick(T + 1)
    assert len(first.sent) == NAMES
    assert first.failed == []
    assert sum(m["firing"] for m in sent) == N
    assert len(_names(state, INBOX)) == 0

    # Resolve 9,900 of them, then tick once group_interval has passed.
    resolved_at = T + 600
    for start in range(0, N, BATCH):
        batch = [_alert(i, T, resolved_at=resolved_at) for i in range(start, start + BATCH)]
        got = state.ingest(
            [a for i, a in zip(range(start, start + BATCH), batch, strict=True) if not _keep(i)],
            config=config,
            now=resolved_at,
            instance="soak",
        )
        assert got.updated == sum(1 for i in range(start, start + BATCH) if not _keep(i))
    sent.clear()
    second = tick(resolved_at + 61)
    assert len(second.sent) == NAMES
    assert second.failed == []
    assert sum(m["resolved"] for m in sent) == N - len(kept)
    assert sum(m["firing"] for m in sent) == len(kept)  # the 5 active groups say theirs again

    # Past the tombstones' expiry: the tick deletes the 20 groups left with nothing (and sends
    # the 5 active groups' 4 h repeats, due long since).
    later = resolved_at + TOMBSTONE_TTL + 120
    sent.clear()
    third = tick(later)
    assert third.deleted_groups == NAMES - len(active)
    assert sorted(s["group"] for s in third.sent) == sorted(active)
    assert sum(m["firing"] for m in sent) == len(kept)

    # Housekeeping, more than its hour after the last notification, sweeps the log; a tick
    # then has nothing to do (the next repeat is 4 h after the last).
    sweep = later + 3600 + 60
    assert tick(sweep).sent == []
    swept = state.purge_expired(now=sweep, older_than=timedelta(hours=1))
    assert len(swept) == NAMES + NAMES + len(active)  # every notification record, nothing else
    assert all(name.startswith(NFLOG) for name in swept)

    names = _names(state)
    kinds = Counter(
        next((k for k in (GROUPS, INBOX, DUE, NFLOG, MUTES) if n.startswith(k)), "other")
        for n in names
    )
    assert kinds["other"] == 0, names  # nothing outside the known layout
    assert kinds[GROUPS] == len(active)
    assert kinds[INBOX] == 0
    assert kinds[NFLOG] == 0
    assert kinds[MUTES] <= 1
    # Each active group keeps exactly one marker, its next wake-up (the 4 h repeat): the tick
    # deletes every marker it has handled, so what is left lies ahead, one per wake-up still to
    # come. (Between ticks a group can hold one more: a wake-up scheduled before a change moved
    # its next one, until the tick reaches it.)
    markers = [n for n in names if n.startswith(DUE)]
    assert sorted(n.rsplit("/", 1)[1] for n in markers) == sorted(active), markers
    assert all(int(n.removeprefix(DUE).split("/")[0]) * 60 > sweep for n in markers), markers
    # The groups hold the 100 firing alerts and nothing of the 9,900 resolved ones.
    groups = _groups(state)
    assert set(groups) == active
    held = [
        fp for g in groups.values() for fp, rec in g["alerts"].items() if rec["status"] == "firing"
    ]
    assert sorted(held) == sorted(_alert(i, T).fingerprint for i in kept)
    assert all(not g["tombstones"] and g["pending"] is None for g in groups.values())
