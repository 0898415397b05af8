"""Housekeeping on a real fake-gcs-server (and the Pub/Sub emulator, the Monitoring stand-in):
retention, integrity, orphans, expiry, idempotency — plus the pure retention plan."""

from __future__ import annotations

import functools
import io
import json
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from warden.alerts import Alert, DeliveryResult, alert_from_model_event
from warden.alerts.state import GROUPS, MUTES, NFLOG, AlertState
from warden.config.alerting import parse_alerting
from warden.errors import PermanentError, UnknownModelError
from warden.jobs.housekeeping import (
    KEEP_ALIAS_WINDOW,
    KEEP_CHAMPION,
    KEEP_CORRUPT,
    KEEP_NEWEST,
    ROUTER_STATE_TTL,
    housekeep,
    retention_plan,
    run_housekeeping,
    snapshot_id_for,
)
from warden.jobs.messages import RunRequest
from warden.store.registry import ARTIFACT, CLAIM, Registry
from warden.store.runs import RunLedger
from warden_local.monitoring import MonitoringStandIn

ROOT = Path(__file__).resolve().parents[1]
MODEL = "customer-segments"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# -- helpers --------------------------------------------------------------------------------------


@functools.cache
def _artifact() -> bytes:
    buf = io.BytesIO()
    joblib.dump(StandardScaler().fit(load_iris().data), buf)
    return buf.getvalue()


def _register(registry: Registry, count: int) -> list[int]:
    out = []
    for _ in range(count):
        v = registry.claim_version(MODEL, run_id="test")
        registry.register(
            MODEL,
            v,
            {ARTIFACT: _artifact(), "profile.json": json.dumps({"v": v}).encode()},
            {"task": "clustering", "features": ["a"]},
        )
        out.append(v)
    return out


def _promote(storage_client, bucket: str, version: int, at: datetime) -> None:
    """Promote at a chosen time: the registry stamps history with its clock."""
    Registry(storage_client, bucket, clock=lambda: at).promote(
        MODEL, version, reason="test", actor="test"
    )


def _objects(storage_client, bucket: str, prefix: str = "") -> dict[str, int]:
    return {b.name: b.generation for b in storage_client.list_blobs(bucket, prefix=prefix)}


def _request(key: str = "k1") -> RunRequest:
    return RunRequest(model=MODEL, reason="schedule", key=key, message_id=key, as_of=NOW.date())


@pytest.fixture
def make_rt(make_runtime, tmp_path):
    """``make_rt(now, backup=False, **housekeeping)``: a runtime whose clock reads ``now`` and
    whose warden.yaml carries these housekeeping settings for MODEL."""

    def make(now: datetime = NOW, *, settings: dict[str, Any] | None = None, **housekeeping: Any):
        raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
        housekeeping.setdefault("backup", False)
        raw["models"][MODEL]["housekeeping"] = housekeeping
        path = tmp_path / f"warden-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(raw))
        rt = make_runtime(install=False, config_path=path, **(settings or {}))
        rt.clock = lambda: now
        return rt

    return make


# -- retention_plan (pure) ------------------------------------------------------------------------


def _plan(versions, champion=None, history=(), corrupt=(), *, keep_last=3, window=30):
    return retention_plan(
        list(versions),
        champion,
        list(history),
        set(corrupt),
        keep_last=keep_last,
        alias_window=timedelta(days=window),
        now=NOW,
    )


def test_plan_keeps_the_newest_keep_last() -> None:
    plan = _plan(range(1, 11), keep_last=3)
    assert plan.keep == {8: KEEP_NEWEST, 9: KEEP_NEWEST, 10: KEEP_NEWEST}
    assert plan.delete == [1, 2, 3, 4, 5, 6, 7]
    assert _plan([], keep_last=3).delete == []
    assert _plan([1, 2], keep_last=5).delete == []


def test_plan_alias_window_semantics() -> None:
    # v2 held the alias until 40 days ago: outside the window, gone.
    # v3 held it from 40 to 10 days ago: in force at the window's start (30 days ago), kept.
    history = [(2, NOW - 50 * DAY), (3, NOW - 40 * DAY), (4, NOW - 10 * DAY)]
    plan = _plan(range(1, 11), champion=4, history=history, keep_last=2)
    assert plan.keep == {3: KEEP_ALIAS_WINDOW, 4: KEEP_CHAMPION, 9: KEEP_NEWEST, 10: KEEP_NEWEST}
    assert 2 not in plan.keep
    # Left 10 days ago: kept; it was also the value in force when the window opened.
    left_recently = [(5, NOW - 60 * DAY), (6, NOW - 10 * DAY)]
    assert _plan(range(1, 11), 6, left_recently, keep_last=1).keep == {
        5: KEEP_ALIAS_WINDOW,
        6: KEEP_CHAMPION,
        10: KEEP_NEWEST,
    }
    # A move exactly at the window's start counts; one a second before it is replaced by then.
    edge = [(1, NOW - 30 * DAY - timedelta(seconds=1)), (2, NOW - 30 * DAY)]
    assert set(_plan(range(1, 6), 2, edge, keep_last=1).keep) == {2, 5}
    # A zero window keeps only what is in force now.
    zero = _plan(range(1, 6), 3, [(2, NOW - DAY), (3, NOW - DAY / 2)], window=0, keep_last=1)
    assert set(zero.keep) == {3, 5}


def test_plan_always_keeps_the_champion_and_corrupt_versions() -> None:
    plan = _plan(range(1, 11), champion=1, corrupt={2, 9}, keep_last=2, window=0)
    assert plan.keep == {
        1: KEEP_CHAMPION,
        2: KEEP_CORRUPT,
        8: KEEP_NEWEST,
        9: KEEP_CORRUPT,
        10: KEEP_NEWEST,
    }
    # a corrupt version never takes the place of a usable one among the newest
    assert plan.delete == [3, 4, 5, 6, 7]


def test_plan_lists_each_version_once_under_its_strongest_reason() -> None:
    history = [(10, NOW - 5 * DAY)]
    # v10: champion, newest and in the window — listed once, as champion
    plan = _plan(range(1, 11), champion=10, history=history, keep_last=3)
    assert plan.keep == {8: KEEP_NEWEST, 9: KEEP_NEWEST, 10: KEEP_CHAMPION}
    # a corrupt champion is still "champion", and does not count among the newest
    plan = _plan(range(1, 11), champion=10, history=history, corrupt={10}, keep_last=3)
    assert plan.keep == {7: KEEP_NEWEST, 8: KEEP_NEWEST, 9: KEEP_NEWEST, 10: KEEP_CHAMPION}
    assert set(plan.keep).isdisjoint(plan.delete)
    assert sorted([*plan.keep, *plan.delete]) == list(range(1, 11))
    # versions not in the list (already retired) are never "kept"
    assert _plan([5, 6], champion=3, history=[(3, NOW)], keep_last=1).keep == {6: KEEP_NEWEST}
    with pytest.raises(ValueError, match="aware"):
        retention_plan(
            [1], None, [], set(), keep_last=1, alias_window=DAY, now=datetime(2026, 1, 1)
        )


# -- acceptance: retention over 30 versions -------------------------------------------------------


def test_retention_over_30_versions_keeps_exactly_the_right_ones(
    make_rt, storage_client, bucket_names
) -> None:
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    assert _register(registry, 30) == list(range(1, 31))
    now = datetime.now(UTC)
    for version, days_ago in ((3, 100), (8, 45), (12, 35), (15, 20), (20, 10), (22, 2)):
        _promote(storage_client, bucket, version, now - days_ago * DAY)
    # v3 and v8 left the alias more than 30 days ago; v12 was in force when the window opened;
    # v15 and v20 held it within the window; v22 is champion; 26-30 are the newest five.
    expected_keep = {12, 15, 20, 22, 26, 27, 28, 29, 30}
    expected_delete = sorted(set(range(1, 31)) - expected_keep)
    rt = make_rt(now, retention={"keep_last": 5, "alias_window_days": 30})

    before = _objects(storage_client, bucket)
    dry = run_housekeeping(rt, MODEL, dry_run=True)
    assert dry.status == "dry_run"
    assert dry.retention.delete == expected_delete
    assert dry.retention.deleted == []
    assert _objects(storage_client, bucket) == before  # nothing changed, not even a marker

    real = housekeep(_request(), rt)
    assert real.status == "completed"
    assert real.retention.deleted == dry.retention.delete
    assert real.retention.keep == {
        12: KEEP_ALIAS_WINDOW,
        15: KEEP_ALIAS_WINDOW,
        20: KEEP_ALIAS_WINDOW,
        22: KEEP_CHAMPION,
        **dict.fromkeys(range(26, 31), KEEP_NEWEST),
    }
    assert real.integrity.failures == []
    assert len(real.integrity.checked) == 30
    assert set(registry.version_numbers(MODEL)) == expected_keep
    for v in expected_delete:  # only the claim is left, so the number stays taken
        names = set(_objects(storage_client, bucket, f"{MODEL}/versions/{v:06d}/"))
        assert names == {f"{MODEL}/versions/{v:06d}/{CLAIM}"}
    assert real.retention.objects_deleted == 3 * len(expected_delete)
    estimator, manifest = registry.load(MODEL)  # the champion still loads, verified
    assert manifest["version"] == 22
    assert estimator.mean_.shape == (4,)
    assert _register(registry, 1) == [31]  # numbers are never reused
    assert "21 version(s) deleted" in real.detail
    # the run is recorded for health
    status = rt.ledger().status(MODEL, "housekeeping")
    assert status["last_success"]["deleted_versions"] == expected_delete
    # the next run retires only what v31 pushed out of the newest five
    again = housekeep(_request("k2"), rt)
    assert again.retention.deleted == [26]


# -- acceptance: corruption is detected, alerted, kept --------------------------------------------


def test_corrupted_artifact_is_detected_alerted_and_kept(
    make_rt, storage_client, bucket_names, topic_sink
) -> None:
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 5)
    now = datetime.now(UTC)
    _promote(storage_client, bucket, 2, now - 100 * DAY)
    # v1: a valid pickle, but not the registered bytes; v3: a file gone.
    tampered = io.BytesIO()
    joblib.dump(StandardScaler().fit(load_iris().data * 2), tampered)
    registry.bucket.blob(f"{MODEL}/versions/000001/{ARTIFACT}").upload_from_string(
        tampered.getvalue()
    )
    registry.bucket.blob(f"{MODEL}/versions/000003/profile.json").delete()

    topic_id, publisher, pull = topic_sink("model-events")
    with MonitoringStandIn() as standin:
        rt = make_rt(
            now,
            settings={
                "publisher": publisher,
                "events_topic": topic_id,
                "metrics_enabled": True,
                "monitoring_endpoint": standin.endpoint,
            },
            retention={"keep_last": 1, "alias_window_days": 0},
        )
        out = housekeep(_request(), rt)
        failures = standin.points(
            "custom.googleapis.com/warden/housekeeping/integrity_failures", model=MODEL
        )
        heartbeat = standin.points("custom.googleapis.com/warden/housekeeping/heartbeat")

    assert sorted(out.integrity.corrupt) == [1, 3]
    by_version = {f["version"]: f for f in out.integrity.failures}
    assert by_version[1]["files"] == [ARTIFACT]
    assert "does not match the manifest" in by_version[1]["detail"]
    assert by_version[3]["files"] == ["profile.json"]
    assert "missing" in by_version[3]["detail"]
    assert "CORRUPT: v1, v3 (kept)" in out.detail
    # Kept for forensics, though retention would otherwise have taken them.
    assert out.retention.keep == {
        1: KEEP_CORRUPT,
        2: KEEP_CHAMPION,
        3: KEEP_CORRUPT,
        5: KEEP_NEWEST,
    }
    assert out.retention.deleted == [4]
    assert registry.version_numbers(MODEL) == [1, 2, 3, 5]
    # never "fixed": the tampered bytes are still there
    assert (
        registry.bucket.blob(f"{MODEL}/versions/000001/{ARTIFACT}").download_as_bytes()
        == tampered.getvalue()
    )

    events = pull(2)
    assert sorted(p["version"] for _, p in events) == [1, 3]
    for attributes, payload in events:
        assert attributes == {"model": MODEL, "kind": "integrity_failed"}
        alert = alert_from_model_event(payload, attributes)
        assert alert.labels["severity"] == "critical"
        assert alert.labels["alertname"] == "ModelIntegrityFailed"
        assert alert.labels["version"] == str(payload["version"])
        assert alert.annotations["summary"] == by_version[payload["version"]]["detail"]
    assert [(labels, value) for labels, _, value in failures] == [({"model": MODEL}, 2.0)]
    assert [(labels, value) for labels, _, value in heartbeat] == [({"model": MODEL}, 1.0)]


# -- orphans --------------------------------------------------------------------------------------


def test_orphan_folders_are_swept_after_the_grace_period_only(
    make_rt, storage_client, bucket_names
) -> None:
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 2)
    orphan = registry.claim_version(MODEL, run_id="killed")  # claimed, files, no manifest
    for name in (ARTIFACT, "profile.json"):
        registry.bucket.blob(f"{MODEL}/versions/{orphan:06d}/{name}").upload_from_string(b"x")
    bare = registry.claim_version(MODEL, run_id="killed-early")  # a claim, nothing else
    real_now = datetime.now(UTC)

    young = housekeep(_request("young"), make_rt(real_now + timedelta(hours=23)))
    assert young.orphans.waiting == [orphan]
    assert young.orphans.swept == []
    assert len(_objects(storage_client, bucket, f"{MODEL}/versions/{orphan:06d}/")) == 3

    rt = make_rt(real_now + timedelta(hours=25), orphan_grace_hours=24)
    dry = run_housekeeping(rt, MODEL, dry_run=True)
    assert dry.orphans.swept == [orphan]
    assert len(_objects(storage_client, bucket, f"{MODEL}/versions/{orphan:06d}/")) == 3

    old = housekeep(_request("old"), rt)
    assert old.orphans.swept == [orphan]
    assert sorted(old.orphans.objects_deleted) == sorted(dry.orphans.objects_deleted)
    assert set(_objects(storage_client, bucket, f"{MODEL}/versions/{orphan:06d}/")) == {
        f"{MODEL}/versions/{orphan:06d}/{CLAIM}"
    }
    assert set(_objects(storage_client, bucket, f"{MODEL}/versions/{bare:06d}/")) == {
        f"{MODEL}/versions/{bare:06d}/{CLAIM}"
    }
    assert registry.version_numbers(MODEL) == [1, 2]
    assert registry.claim_version(MODEL, run_id="next") == bare + 1


# -- expiry: run-ledger markers -------------------------------------------------------------------


def test_old_finished_markers_are_purged_running_ones_and_status_kept(
    make_rt, storage_client, bucket_names
) -> None:
    bucket = bucket_names["registry"]
    t = {"now": NOW - 40 * DAY}
    ledger = RunLedger(storage_client, bucket, clock=lambda: t["now"])

    def run(kind: str, key: str, status: str | None) -> str:
        claim = ledger.begin(MODEL, kind, key, run_id=key)
        if status is not None:
            ledger.finish(claim, status, {})
        return claim.name

    old = {
        run("retrain", "a", "done"),
        run("monitor", "b", "failed"),
        run("retrain", "c", "aborted"),
    }
    stale_running = run("retrain", "d", None)  # its instance died 40 days ago
    ledger.record_status(MODEL, "retrain", outcome="success", detail={})
    t["now"] = NOW - 29 * DAY
    recent = run("retrain", "e", "done")
    t["now"] = NOW - timedelta(minutes=5)
    in_lease = run("monitor", "f", None)
    other_model = RunLedger(storage_client, bucket, clock=lambda: NOW - 99 * DAY)
    other_model.finish(other_model.begin("other", "retrain", "x", run_id="x"), "done", {})

    rt = make_rt(NOW, marker_ttl_days=30)
    dry = run_housekeeping(rt, MODEL, dry_run=True)
    assert set(dry.expiry.markers) == old | {stale_running}
    out = housekeep(_request(), rt)
    assert set(out.expiry.markers) == old | {stale_running}
    left = set(_objects(storage_client, bucket, f"{MODEL}/runs/"))
    own = RunLedger.marker_name(MODEL, "housekeeping", "k1")
    assert left == {recent, in_lease, own}
    assert rt.ledger().status(MODEL, "retrain") is not None
    assert _objects(storage_client, bucket, "other/runs/")  # other models' markers untouched
    assert rt.ledger().purge(MODEL, older_than=NOW - 30 * DAY) == []


# -- expiry: router state -------------------------------------------------------------------------


def test_router_state_purge_removes_only_what_is_over(storage_client, bucket_names) -> None:
    state = AlertState(storage_client, bucket_names["registry"])
    config = parse_alerting(
        {
            "receivers": [{"name": "log", "log": {}}],
            "route": {"receiver": "log", "group_by": ["model"], "group_wait": "0s"},
        },
        "test",
    )
    now = NOW.timestamp()
    old = now - 10 * 86400

    def send(receiver, message):
        return DeliveryResult(receiver.name, True, 1)

    def event(model: str, at: float) -> Alert:
        payload = {"schema": 1, "kind": "failed", "model": model, "at": at}
        return alert_from_model_event(payload)

    # a group that fired and resolved ten days ago (its model event timed out after 1 h)
    state.ingest([event("gone", old)], config=config, now=old, instance="a")
    state.flush_due(config=config, now=old + 1, instance="a", send=send)
    state.flush_due(config=config, now=old + 7200, instance="a", send=send)
    # a group still firing for ten days (a Monitoring incident has no timeout), and a fresh one
    incident = Alert(
        {"alertname": "x", "model": "stuck"}, {}, "firing", old, None, "fp1", "monitoring"
    )
    state.ingest([incident], config=config, now=old, instance="a")
    state.ingest([event("fresh", now - 600)], config=config, now=now - 600, instance="a")
    # silences: long over, recently over, active
    for sid, ends in (("long", now - 8 * 86400), ("recent", now - 86400), ("on", now + 86400)):
        state.add_silence(
            ['model="z"'], starts_at=old, ends_at=ends, created_by="t", silence_id=sid
        )
    groups = state._names(GROUPS)
    assert len(groups) == 1  # "gone"; the others are still in the inbox
    # The tick folds the new ones, and deletes "gone" once its tombstone has expired.
    ticked = state.flush_due(config=config, now=now - 599, instance="a", send=send)
    assert ticked.deleted_groups == 1
    assert len(state._names(GROUPS)) == 2
    old_nflog = {n for n in state._names(NFLOG) if state._read(n)[0]["sent_at"] < now - 7 * 86400}
    assert len(old_nflog) == 2  # the firing and the resolved notification of "gone"

    dry = state.purge_expired(now=now, older_than=ROUTER_STATE_TTL, dry_run=True)
    assert set(dry) == {f"{MUTES}#silence=long", *old_nflog}
    assert set(state.purge_expired(now=now, older_than=ROUTER_STATE_TTL)) == set(dry)
    assert len(state._names(GROUPS)) == 2  # still firing, and fresh
    assert [s.id for s in state.list_silences()] == ["on", "recent"]
    assert set(state._names(NFLOG)).isdisjoint(old_nflog)
    assert state.purge_expired(now=now, older_than=ROUTER_STATE_TTL) == []


# -- idempotency, backup wiring, manual runs ------------------------------------------------------


def test_the_same_request_twice_does_the_work_once(make_rt, storage_client, bucket_names) -> None:
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 4)
    rt = make_rt(datetime.now(UTC), retention={"keep_last": 2, "alias_window_days": 0})
    first = housekeep(_request(), rt)
    assert first.retention.deleted == [1, 2]
    _register(registry, 2)  # 5 and 6: a second real run would delete 3 and 4
    after_first = _objects(storage_client, bucket)
    second = housekeep(_request(), rt)
    assert second.status == "duplicate"
    assert second.run_id == first.run_id
    assert second.detail == "already done"
    assert _objects(storage_client, bucket) == after_first
    assert registry.version_numbers(MODEL) == [3, 4, 5, 6]


def test_a_move_onto_a_version_being_retired_is_refused(
    make_rt, storage_client, bucket_names, monkeypatch
) -> None:
    """A rollback that verified v2 just before housekeeping deleted its manifest tries to move
    the alias there afterwards: the retirement mark in the alias object turns it away, so the
    alias never points at a retired version."""
    from warden.errors import VersionNotFound

    registry = Registry(storage_client, bucket_names["registry"])
    _register(registry, 4)
    rt = make_rt(datetime.now(UTC), retention={"keep_last": 1, "alias_window_days": 0})
    hk_registry = rt.registry()
    retire = hk_registry.retire_manifest
    refused: list[str] = []

    def racing_rollback(model: str, version: int):
        retired = retire(model, version)
        if version == 2:
            try:
                registry.move_alias(model, lambda _: 2, action="rollback", reason="t", actor="t")
            except VersionNotFound as exc:
                refused.append(str(exc))
        return retired

    monkeypatch.setattr(hk_registry, "retire_manifest", racing_rollback)
    out = housekeep(_request(), rt)
    assert len(refused) == 1
    assert "being retired by housekeeping" in refused[0]
    assert out.retention.deleted == [1, 2, 3]
    assert registry.alias(MODEL) is None  # no champion was set, none is now
    assert registry.version_numbers(MODEL) == [4]
    # The marks are gone with the run: the alias can move again (onto what exists).
    registry.move_alias(MODEL, lambda _: 4, action="promote", reason="t", actor="t")
    assert registry.alias(MODEL).version == 4


def test_a_version_made_champion_before_the_mark_is_kept(
    make_rt, storage_client, bucket_names, monkeypatch
) -> None:
    """The other order: the move lands first (after the plan was made); the mark then leaves
    that version out, and it stays whole."""
    registry = Registry(storage_client, bucket_names["registry"])
    _register(registry, 4)
    rt = make_rt(datetime.now(UTC), retention={"keep_last": 1, "alias_window_days": 0})
    hk_registry = rt.registry()
    mark = hk_registry.mark_retiring

    def move_first(model: str, versions, **kw):
        registry.move_alias(model, lambda _: 2, action="rollback", reason="t", actor="t")
        return mark(model, versions, **kw)

    monkeypatch.setattr(hk_registry, "mark_retiring", move_first)
    out = housekeep(_request(), rt)
    assert out.retention.delete == [1, 2, 3]
    assert out.retention.reprieved == [2]
    assert out.retention.deleted == [1, 3]
    assert registry.version_numbers(MODEL) == [2, 4]
    _, manifest = registry.load(MODEL)  # the champion is whole and verified
    assert manifest["version"] == 2
    assert (
        "retiring" not in registry.bucket.blob(f"{MODEL}/aliases/champion.json").download_as_text()
    )


def test_backup_runs_before_deletion_and_skips_on_a_dry_run(
    make_rt, storage_client, bucket_names, monkeypatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    registry = Registry(storage_client, bucket_names["registry"])

    class Snapshot:
        def to_dict(self) -> dict[str, Any]:
            return {"id": "snap"}

    def snapshot(rt, *, model=None, snapshot_id=None):
        calls.append(("snapshot", {"model": model, "snapshot_id": snapshot_id}))
        assert registry.version_numbers(MODEL) == [1, 2, 3]  # nothing deleted yet
        return Snapshot()

    def prune_snapshots(rt, *, retention_days, now=None, dry_run=False, model=None):
        assert model == MODEL  # only this model's own snapshots
        calls.append(("prune", {"retention_days": retention_days, "now": now, "dry_run": dry_run}))
        return ["old-snapshot"]

    fake = types.ModuleType("warden.jobs.backup")
    fake.snapshot = snapshot  # type: ignore[attr-defined]
    fake.prune_snapshots = prune_snapshots  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "warden.jobs.backup", fake)
    _register(registry, 3)
    now = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    rt = make_rt(
        now,
        backup=True,
        backup_retention_days=9,
        retention={"keep_last": 1, "alias_window_days": 0},
    )

    dry = run_housekeeping(rt, MODEL, dry_run=True)
    assert dry.backup.status == "dry_run"
    assert dry.backup.pruned == ["old-snapshot"]
    assert calls == [("prune", {"retention_days": 9, "now": now, "dry_run": True})]
    calls.clear()

    out = housekeep(_request(), rt)
    assert out.backup.status == "done"
    assert out.backup.snapshot == {"id": "snap"}
    sid = snapshot_id_for(MODEL, now, _request().key)
    assert sid.startswith(f"20261120-{MODEL}-")
    assert out.backup.snapshot_id == sid
    assert calls == [
        ("snapshot", {"model": MODEL, "snapshot_id": sid}),
        ("prune", {"retention_days": 9, "now": now, "dry_run": False}),
    ]
    assert out.retention.deleted == [1, 2]


def test_the_snapshot_holds_what_retention_then_deletes(
    make_rt, storage_client, bucket_names
) -> None:
    from warden.jobs.backup import list_snapshots

    registry = Registry(storage_client, bucket_names["registry"])
    _register(registry, 4)
    _promote(storage_client, bucket_names["registry"], 3, datetime.now(UTC) - 60 * DAY)
    now = datetime.now(UTC)
    rt = make_rt(now, backup=True, retention={"keep_last": 1, "alias_window_days": 0})
    out = housekeep(_request(), rt)
    sid = snapshot_id_for(MODEL, now, _request().key)
    assert out.backup.status == "done"
    assert out.backup.snapshot["id"] == sid
    assert out.backup.snapshot["versions"] == {MODEL: [1, 2, 3, 4]}
    assert out.retention.deleted == [1, 2]
    assert registry.version_numbers(MODEL) == [3, 4]
    assert [(s.id, s.versions, s.champions) for s in list_snapshots(rt)] == [
        (sid, {MODEL: 4}, {MODEL: 3})
    ]


def test_backup_configured_but_unavailable_fails_before_deleting_anything(
    make_rt, storage_client, bucket_names, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "warden.jobs.backup", None)  # import fails
    registry = Registry(storage_client, bucket_names["registry"])
    _register(registry, 3)
    rt = make_rt(datetime.now(UTC), backup=True, retention={"keep_last": 1})
    dry = run_housekeeping(rt, MODEL, dry_run=True)
    assert dry.backup.status == "skipped"
    assert "not available" in dry.backup.detail
    with pytest.raises(PermanentError, match=r"housekeeping\.backup is on"):
        housekeep(_request(), rt)
    assert registry.version_numbers(MODEL) == [1, 2, 3]
    assert rt.ledger().status(MODEL, "housekeeping")["last_run"]["outcome"] == "failed"
    redelivered = housekeep(_request(), rt)  # a permanent failure is final: not retried
    assert redelivered.status == "duplicate"
    assert redelivered.detail == "already failed"


def test_manual_runs_take_unique_keys_and_dry_runs_take_no_marker(make_rt) -> None:
    rt = make_rt(NOW)
    assert run_housekeeping(rt, MODEL, dry_run=True).status == "dry_run"
    assert list(rt.ledger().bucket.list_blobs(prefix=f"{MODEL}/runs/")) == []
    a = run_housekeeping(rt, MODEL, dry_run=False)
    b = run_housekeeping(rt, MODEL, dry_run=False)
    assert (a.status, b.status) == ("completed", "completed")
    assert a.run_id != b.run_id
    assert len(list(rt.ledger().bucket.list_blobs(prefix=f"{MODEL}/runs/housekeeping/"))) == 2
    assert a.to_dict()["retention"] == {
        "keep": {},
        "delete": [],
        "deleted": [],
        "reprieved": [],
        "objects_deleted": 0,
    }
    with pytest.raises(UnknownModelError):
        run_housekeeping(rt, "no-such-model", dry_run=True)
