"""Registry snapshots and restores on a real fake-gcs-server, through the real client."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from warden.errors import SnapshotNotFound
from warden.jobs.backup import (
    list_snapshots,
    prune_snapshots,
    restore,
    snapshot,
)
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.store.registry import ARTIFACT, Registry

AS_OF = date(2026, 11, 20)
SEG, RISK = "customer-segments", "breast-cancer-risk"


# -- helpers ----------------------------------------------------------------------------------
def _retrain(rt, model: str, key: str):
    request = RunRequest(model=model, reason="manual", key=key, message_id=key, as_of=AS_OF)
    return retrain(request, rt)


def _artifact(scale: float) -> bytes:
    buf = io.BytesIO()
    joblib.dump(StandardScaler().fit(load_iris().data * scale), buf)
    return buf.getvalue()


def _register(registry: Registry, model: str, scale: float = 1.0, *, promote: bool = True) -> int:
    version = registry.claim_version(model, run_id=f"test-{scale}")
    registry.register(
        model,
        version,
        {ARTIFACT: _artifact(scale), "profile.json": json.dumps({"scale": scale}).encode()},
        {"task": "clustering", "features": ["a"]},
    )
    if promote:
        registry.promote(model, version, reason="test", actor="test")
    return version


def _objects(rt, bucket: str, prefix: str = "") -> dict[str, int]:
    """name → generation: any write (or delete) shows up as a difference."""
    return {
        b.name: b.generation for b in rt.clients.storage.list_blobs(bucket, prefix=prefix or None)
    }


def _wipe(rt, prefix: str = "") -> None:
    for blob in rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=prefix or None):
        blob.delete()


def _manifest_bytes(rt, model: str) -> dict[int, bytes]:
    registry = rt.registry()
    return {
        v: registry.bucket.blob(f"{model}/versions/{v:06d}/manifest.json").download_as_bytes()
        for v in registry.version_numbers(model)
    }


def _history(rt, model: str) -> list[dict]:
    return [h.to_json() for h in rt.registry().history(model)]


def _backup_blob(rt, name: str):
    return rt.clients.storage.bucket(rt.settings.backup_bucket).blob(name)


@pytest.fixture
def trained(seed, make_runtime):
    """Both example models trained for real: v1 of each, promoted."""
    seed(days=3)
    rt = make_runtime(install=False)
    for model in (SEG, RISK):
        outcome = _retrain(rt, model, "k1")
        assert (outcome.version, outcome.promoted) == (1, True)
    return rt


@pytest.fixture
def rt(make_runtime):
    return make_runtime(install=False)


# -- round trip with real models --------------------------------------------------------------
def test_backup_wipe_restore_gives_back_identical_manifests_aliases_and_loadable_champions(
    trained,
) -> None:
    rt = trained
    stray = rt.registry().bucket
    stray.blob("_alerting/groups/g.json").upload_from_string(b"{}")  # operational state
    stray.blob("ghost/runs/retrain/x.json").upload_from_string(b"{}")  # a model never trained
    before = {m: _manifest_bytes(rt, m) for m in (SEG, RISK)}
    history_before = {m: _history(rt, m) for m in (SEG, RISK)}
    snap = snapshot(rt, snapshot_id="2026-11-20-all")
    assert snap.copied == 2 * 4  # three files and the manifest per version
    assert sorted(snap.models) == sorted([RISK, SEG])  # no "_alerting" or other folders
    assert snap.models[SEG]["aliases"]["champion"]["version"] == 1
    assert snap.models[SEG]["aliases"]["champion"]["generation"] > 0
    assert [i.id for i in list_snapshots(rt)] == ["2026-11-20-all"]

    _wipe(rt)
    assert _objects(rt, rt.settings.registry_bucket) == {}
    report = restore(rt, snap.id, actor="oncall")

    assert report.ok
    assert [(v.model, v.version, v.status) for v in report.versions] == [
        (RISK, 1, "restored"),
        (SEG, 1, "restored"),
    ]
    assert {(a.model, a.status, a.version) for a in report.aliases} == {
        (RISK, "created", 1),
        (SEG, "created", 1),
    }
    registry = rt.registry()
    for model in (SEG, RISK):
        assert _manifest_bytes(rt, model) == before[model]  # byte for byte
        assert registry.resolve(model, "champion") == 1
        history = _history(rt, model)
        assert history[:-1] == history_before[model]
        assert history[-1]["action"] == "restore"
        assert history[-1]["reason"] == f"restore {snap.id}"
        assert history[-1]["actor"] == "oncall"
        assert history[-1]["seq"] == history_before[model][-1]["seq"] + 1
        estimator, manifest = registry.load(model)  # sha256-verified before unpickling
        assert hasattr(estimator, "predict")
        assert manifest["version"] == 1
    assert report.to_dict()["ok"] is True
    # Running the same restore again finds everything in place and writes nothing.
    after = _objects(rt, rt.settings.registry_bucket)
    again = restore(rt, snap.id, actor="oncall")
    assert {v.status for v in again.versions} == {"present"}
    assert {a.status for a in again.aliases} == {"kept"}
    assert _objects(rt, rt.settings.registry_bucket) == after
    # Restored versions hold their claims: the next retrain takes v2, never a restored number.
    assert registry.claim_version(SEG, run_id="next") == 2


def test_a_rerun_completes_an_interrupted_restore(rt) -> None:
    registry = rt.registry()
    for scale in (1.0, 2.0):
        _register(registry, "m", scale)
    history = _history(rt, "m")
    snap = snapshot(rt, snapshot_id="s1")
    _wipe(rt)
    restore(rt, snap.id)
    # Simulate a crash: v2's files and claim written, its manifest not; the alias written,
    # its history not.
    _wipe(rt, "m/versions/000002/manifest.json")
    _wipe(rt, "m/aliases/history/")
    assert registry.version_numbers("m") == [1]

    report = restore(rt, snap.id)

    assert [(v.version, v.status) for v in report.versions] == [(1, "present"), (2, "restored")]
    (alias,) = report.aliases
    assert (alias.status, alias.version, alias.history_restored) == ("kept", 2, 2)
    assert "earlier run of this restore" in alias.detail
    assert _history(rt, "m")[:-1] == history
    assert [h["seq"] for h in _history(rt, "m")] == [1, 2, 3]
    assert registry.load("m")[1]["version"] == 2


def test_restore_into_a_registry_with_newer_versions_keeps_them(trained) -> None:
    rt = trained
    snap = snapshot(rt)
    assert snap.id.endswith("Z")  # default id: a UTC timestamp
    outcome = _retrain(rt, RISK, "k2")
    assert (outcome.version, outcome.promoted) == (2, True)
    before = _objects(rt, rt.settings.registry_bucket)

    report = restore(rt, snap.id)

    assert report.ok
    assert {v.status for v in report.versions} == {"present"}
    kept = {a.model: (a.status, a.version) for a in report.aliases}
    assert kept == {RISK: ("kept", 2), SEG: ("kept", 1)}
    assert any("kept existing champion v2" in a.detail for a in report.aliases)
    assert _objects(rt, rt.settings.registry_bucket) == before  # nothing written at all
    assert rt.registry().resolve(RISK) == 2


# -- conflicts and integrity ------------------------------------------------------------------
def test_same_number_with_another_manifest_or_a_live_claim_is_a_conflict(rt) -> None:
    registry = rt.registry()
    for scale in (1.0, 2.0, 3.0):
        _register(registry, "m", scale)
    snapshot(rt, snapshot_id="s1")
    _wipe(rt)
    other = _register(registry, "m", 9.0, promote=False)  # a new registry reused number 1
    assert other == 1
    in_flight = registry.claim_version("m", run_id="someone-else")  # 2: claimed, no manifest
    assert in_flight == 2
    v1_before = _objects(rt, rt.settings.registry_bucket, "m/versions/000001/")
    v2_before = _objects(rt, rt.settings.registry_bucket, "m/versions/000002/")

    report = restore(rt, "s1")

    status = {v.version: v for v in report.versions}
    assert status[1].status == "conflict"
    assert "different manifest" in status[1].detail
    assert status[2].status == "conflict"
    assert "someone-else" in status[2].detail
    assert status[3].status == "restored"
    assert not report.ok
    assert _objects(rt, rt.settings.registry_bucket, "m/versions/000001/") == v1_before
    assert _objects(rt, rt.settings.registry_bucket, "m/versions/000002/") == v2_before
    # The champion (v3) came back; its previous (v2) did not, so rollback has nowhere to go.
    alias = registry.alias("m")
    assert alias is not None
    assert (alias.version, alias.previous_version, alias.action) == (3, None, "restore")
    assert registry.load("m")[1]["version"] == 3


def test_a_corrupted_backup_object_never_becomes_a_visible_version(rt) -> None:
    registry = rt.registry()
    _register(registry, "m", 1.0)
    _register(registry, "m", 2.0)  # champion
    snap = snapshot(rt, snapshot_id="s1")
    _backup_blob(rt, f"snapshots/{snap.id}/m/versions/000002/{ARTIFACT}").upload_from_string(
        _artifact(5.0)  # a valid pickle, but not the one the manifest lists
    )
    _wipe(rt)

    report = restore(rt, snap.id)

    outcome = {v.version: (v.status, v.detail) for v in report.versions}
    assert outcome[1] == ("restored", "")
    assert outcome[2][0] == "corrupt"
    assert "backup copy is corrupt" in outcome[2][1]
    # Verified before anything was written: not even a claim for v2.
    assert _objects(rt, rt.settings.registry_bucket, "m/versions/000002/") == {}
    assert registry.version_numbers("m") == [1]
    (alias,) = report.aliases
    assert (alias.status, alias.version) == ("skipped", 2)
    assert registry.alias("m") is None  # never pointed at a version that is not there


def test_a_version_corrupted_in_the_registry_is_left_out_of_the_snapshot(rt) -> None:
    registry = rt.registry()
    _register(registry, "m", 1.0)
    _register(registry, "m", 2.0)
    registry.bucket.blob(f"m/versions/000001/{ARTIFACT}").upload_from_string(b"tampered")
    snap = snapshot(rt, snapshot_id="s1")
    assert sorted(snap.models["m"]["versions"]) == ["2"]
    assert "does not match the manifest" in snap.skipped["m"]["1"]
    assert _objects(rt, rt.settings.backup_bucket, "snapshots/s1/m/versions/000001/") == {}
    assert list_snapshots(rt)[0].skipped == 1


# -- interrupted and repeated snapshots ---------------------------------------------------------
def test_an_interrupted_snapshot_is_invisible_and_a_rerun_completes_it(rt) -> None:
    registry = rt.registry()
    _register(registry, "m", 1.0)
    _register(registry, "m", 2.0)
    crashed = registry.claim_version("m", run_id="crashed")  # claimed, never manifested
    registry.bucket.blob(f"m/versions/{crashed:06d}/{ARTIFACT}").upload_from_string(b"partial")
    first = snapshot(rt, snapshot_id="2026-11-20-m", model="m")
    assert sorted(first.models["m"]["versions"]) == ["1", "2"]  # the in-flight v3 is skipped
    # Simulate a crash before the commit point: no snapshot.json, one file not copied yet.
    _backup_blob(rt, "snapshots/2026-11-20-m/snapshot.json").delete()
    _backup_blob(rt, f"snapshots/2026-11-20-m/m/versions/000002/{ARTIFACT}").delete()
    _backup_blob(rt, "snapshots/2026-11-20-m/m/versions/000001/profile.json").upload_from_string(
        b"garbage from the crashed attempt"
    )
    assert list_snapshots(rt) == []
    with pytest.raises(SnapshotNotFound, match="no complete snapshot"):
        restore(rt, "2026-11-20-m")
    # Meanwhile the registry moved on: the completed snapshot records what the rerun read.
    v4 = _register(registry, "m", 4.0)

    second = snapshot(rt, snapshot_id="2026-11-20-m", model="m")

    assert not second.already_complete
    # The lost file, the garbled one (replaced: the folder was not committed), and all of v4.
    assert (second.copied, second.reused) == (1 + 1 + 3, 4)
    assert sorted(second.models["m"]["versions"], key=int) == ["1", "2", str(v4)]
    assert second.models["m"]["aliases"]["champion"]["version"] == v4
    assert [i.id for i in list_snapshots(rt)] == ["2026-11-20-m"]
    _wipe(rt)
    assert restore(rt, "2026-11-20-m").ok  # every copied file verifies

    backup_before = _objects(rt, rt.settings.backup_bucket)
    third = snapshot(rt, snapshot_id="2026-11-20-m", model="m")
    assert third.already_complete
    assert (third.copied, third.reused) == (0, 0)
    assert third.models == second.models
    assert _objects(rt, rt.settings.backup_bucket) == backup_before


# -- one model ----------------------------------------------------------------------------------
def test_one_model_snapshot_and_restore_leave_the_other_model_alone(rt) -> None:
    registry = rt.registry()
    _register(registry, "alpha", 1.0)
    _register(registry, "beta", 2.0)
    snap = snapshot(rt, model="alpha")
    assert snap.id.endswith("Z-alpha")
    assert list(snap.models) == ["alpha"]
    with pytest.raises(SnapshotNotFound, match="does not hold model 'beta'"):
        restore(rt, snap.id, model="beta")
    _wipe(rt, "alpha/")
    _register(registry, "beta", 3.0)  # beta keeps living
    beta_before = _objects(rt, rt.settings.registry_bucket, "beta/")

    report = restore(rt, snap.id, model="alpha")

    assert [(v.model, v.status) for v in report.versions] == [("alpha", "restored")]
    assert _objects(rt, rt.settings.registry_bucket, "beta/") == beta_before
    assert registry.resolve("alpha") == 1
    assert registry.resolve("beta") == 2


def test_restoring_one_model_from_a_full_snapshot(rt) -> None:
    registry = rt.registry()
    _register(registry, "alpha", 1.0)
    _register(registry, "beta", 2.0)
    snap = snapshot(rt, snapshot_id="full")
    _wipe(rt)
    report = restore(rt, snap.id, model="beta")
    assert [(v.model, v.status) for v in report.versions] == [("beta", "restored")]
    assert registry.models() == ["beta"]


# -- dry run and unknown snapshots --------------------------------------------------------------
def test_dry_run_restore_writes_nothing(rt) -> None:
    registry = rt.registry()
    _register(registry, "m", 1.0)
    _register(registry, "m", 2.0)
    snap = snapshot(rt, snapshot_id="s1")
    _wipe(rt, "m/versions/000002/")
    _wipe(rt, "m/aliases/")
    before = _objects(rt, rt.settings.registry_bucket)

    report = restore(rt, snap.id, dry_run=True)

    assert report.dry_run
    assert [(v.version, v.status) for v in report.versions] == [
        (1, "present"),
        (2, "would_restore"),
    ]
    (alias,) = report.aliases
    assert (alias.status, alias.version, alias.history_restored) == ("would_create", 2, 2)
    assert _objects(rt, rt.settings.registry_bucket) == before

    real = restore(rt, snap.id)
    assert [(v.version, v.status) for v in real.versions] == [(1, "present"), (2, "restored")]
    assert [h.seq for h in registry.history("m")] == [1, 2, 3]


def test_unknown_snapshot_and_bad_ids_are_clear_errors(rt) -> None:
    from warden.errors import ConfigError, PermanentError

    with pytest.raises(SnapshotNotFound, match="no complete snapshot 'nope'") as info:
        restore(rt, "nope")
    assert isinstance(info.value, PermanentError)
    with pytest.raises(ConfigError, match="invalid snapshot id"):
        snapshot(rt, snapshot_id="../registry")


# -- pruning ----------------------------------------------------------------------------------
def test_prune_deletes_old_snapshots_but_keeps_newer_ones_and_the_newest_per_model(rt) -> None:
    registry = rt.registry()
    _register(registry, "alpha", 1.0)
    _register(registry, "beta", 2.0)
    real_now = datetime.now(UTC)
    prune_at = real_now + timedelta(days=8)

    def at(ts: datetime) -> None:
        rt.clock = lambda: ts

    at(real_now - timedelta(days=3))
    old_full = snapshot(rt, snapshot_id="old-full").id  # 11 days old at prune time
    at(real_now - timedelta(days=2))
    old_alpha = snapshot(rt, model="alpha", snapshot_id="old-alpha").id  # alpha's newest
    at(real_now + timedelta(days=7))
    new_beta = snapshot(rt, model="beta", snapshot_id="new-beta").id  # 1 day old
    at(real_now)
    snapshot(rt, snapshot_id="interrupted")
    _backup_blob(rt, "snapshots/interrupted/snapshot.json").delete()  # objects from "now"
    assert [i.id for i in list_snapshots(rt)] == [new_beta, old_alpha, old_full]

    # An incomplete folder created just now is younger than the retention: kept.
    assert prune_snapshots(rt, retention_days=7, now=real_now) == []
    # Scoped to a model (what housekeeping does): only that model's own snapshots are
    # candidates, never the whole-registry one nor another model's.
    assert prune_snapshots(rt, retention_days=7, now=prune_at, dry_run=True, model="beta") == []
    assert prune_snapshots(rt, retention_days=7, now=prune_at, dry_run=True, model="alpha") == []
    backup_before = _objects(rt, rt.settings.backup_bucket)
    planned = prune_snapshots(rt, retention_days=7, now=prune_at, dry_run=True)
    assert planned == ["interrupted", "old-full"]
    assert _objects(rt, rt.settings.backup_bucket) == backup_before

    deleted = prune_snapshots(rt, retention_days=7, now=prune_at)

    assert deleted == planned
    assert [i.id for i in list_snapshots(rt)] == [new_beta, old_alpha]
    left = {name.split("/")[1] for name in _objects(rt, rt.settings.backup_bucket)}
    assert left == {new_beta, old_alpha}
    # old-alpha is 10 days old but still alpha's only backup: kept until a newer one exists.
    assert prune_snapshots(rt, retention_days=7, now=prune_at) == []


def test_snapshot_history_matches_the_alias_state_it_read(rt) -> None:
    registry = rt.registry()
    v1, v2 = _register(registry, "m", 1.0), _register(registry, "m", 2.0, promote=False)
    # A move whose history write crashed: the alias object is the only record of seq 2.
    alias = registry.alias("m")
    assert alias is not None
    moved = {**alias.to_json(), "version": v2, "previous_version": v1, "seq": 2}
    registry.bucket.blob("m/aliases/champion.json").upload_from_string(
        json.dumps(moved), if_generation_match=alias.generation
    )
    # A history object past the alias state we read (as if a move landed while we copied).
    later = {**moved, "version": v1, "previous_version": v2, "seq": 3}
    registry.bucket.blob("m/aliases/history/champion/00000003.json").upload_from_string(
        json.dumps(later)
    )
    snap = snapshot(rt, snapshot_id="s1")
    doc = snap.models["m"]
    assert doc["aliases"]["champion"]["version"] == v2
    assert [(h["seq"], h["version"]) for h in doc["history"]] == [(1, v1), (2, v2)]
