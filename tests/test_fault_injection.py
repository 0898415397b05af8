"""The storage service dies in the middle of a retrain, a promote and a backup.

fake-gcs-server runs on its filesystem backend here, so a SIGKILL and a restart keep what was
written (objects and generations). At a chosen request the emulator is killed and the instance
dies with it (tests/faults.py). After a restart: no partial version is visible, the champion
pointer is intact (and loads), and a rerun — a Pub/Sub redelivery after the run's lease —
completes the work.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from faults import CrashingSession, InstanceCrashed, LandThen503Proxy, LosingSession, body_mentions
from warden import runtime
from warden.errors import ConflictError
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.settings import Settings
from warden.store.registry import Registry
from warden.store.runs import RunLedger
from warden_local.examples import seed_examples
from warden_local.gcs import StorageEmulator

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 20)
MODEL = "breast-cancer-risk"
PROJECT = "warden-test"


@pytest.fixture(scope="module")
def durable_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEmulator]:
    emulator = StorageEmulator(root=tmp_path_factory.mktemp("gcs-root"))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcs(durable_gcs: StorageEmulator, monkeypatch: pytest.MonkeyPatch) -> StorageEmulator:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", durable_gcs.host)
    if not durable_gcs.alive():  # a previous test may have left it killed
        durable_gcs.start()
    return durable_gcs


def _client(session: CrashingSession | None = None) -> storage.Client:
    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), _http=session)


@pytest.fixture
def buckets(gcs: StorageEmulator) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    names = {k: f"{k}-{suffix}" for k in ("registry", "data", "backup")}
    client = _client()
    for name in names.values():
        client.create_bucket(name)
    seed_examples(client, bucket=names["data"], end=AS_OF, days=10)
    return names


def _runtime(buckets: dict[str, str], client: storage.Client, **kw) -> runtime.Runtime:
    settings = Settings(
        project=PROJECT,
        registry_bucket=buckets["registry"],
        data_bucket=buckets["data"],
        backup_bucket=buckets["backup"],
        metrics_enabled=False,
        config_path=ROOT / "warden.yaml",
    )
    return runtime.build(settings, storage=client, **kw)


def _request(message_id: str) -> RunRequest:
    return RunRequest(
        model=MODEL,
        reason="manual",
        key=f"retrain:{MODEL}:message:{message_id}",
        message_id=message_id,
        as_of=AS_OF,
    )


def _crash_at(fragment: str, gcs: StorageEmulator) -> CrashingSession:
    return CrashingSession(body_mentions(fragment), on_crash=gcs.kill)


def _restart(gcs: StorageEmulator) -> None:
    assert not gcs.alive(), "the trigger never fired"
    gcs.start()


def _registry(buckets: dict[str, str]) -> Registry:
    return Registry(_client(), buckets["registry"])


def _visible_versions(reg: Registry) -> list[int]:
    return [int(v["version"]) for v in reg.versions(MODEL)]


def _after_lease(rt: runtime.Runtime) -> runtime.Runtime:
    """The redelivery comes after the dead instance's lease ran out."""
    lease = RunLedger(rt.clients.storage, rt.settings.registry_bucket).lease
    rt.clock = lambda: runtime._utcnow() + lease + timedelta(minutes=1)
    return rt


def _first_champion(buckets: dict[str, str]) -> None:
    rt = _runtime(buckets, _client())
    outcome = retrain(_request("first"), rt)
    assert outcome.promoted
    assert outcome.version == 1


@pytest.mark.parametrize(
    "crash_at",
    [
        "versions/000002/claim",  # right after the run started: nothing of v2 written yet
        "versions/000002/model.joblib",  # the artifact upload itself
        "versions/000002/manifest.json",  # every file of v2 written but its manifest
    ],
    ids=["at-claim", "at-artifact", "before-manifest"],
)
def test_storage_dies_in_the_middle_of_a_retrain(gcs, buckets, crash_at: str) -> None:
    _first_champion(buckets)
    before = _registry(buckets).alias(MODEL)

    session = _crash_at(crash_at, gcs)
    rt = _runtime(buckets, _client(session))
    with pytest.raises(InstanceCrashed):
        retrain(_request("second"), rt)
    assert session.requests_before_crash > 0

    _restart(gcs)
    reg = _registry(buckets)
    assert _visible_versions(reg) == [1], "a partial version became visible"
    written = {
        b.name.rsplit("/", 1)[-1] for b in reg.bucket.list_blobs(prefix=f"{MODEL}/versions/000002/")
    }
    if crash_at.endswith("manifest.json"):
        assert {"claim.json", "model.joblib"} <= written  # the crash really was mid-version
    assert "manifest.json" not in written
    assert reg.alias(MODEL) == before
    reg.load(MODEL)  # the champion still verifies and loads

    # Pub/Sub redelivers the same message; once the lease is over a new instance takes over.
    again = _after_lease(_runtime(buckets, _client()))
    outcome = retrain(_request("second"), again)
    assert outcome.status == "registered", outcome
    versions = _visible_versions(_registry(buckets))
    assert versions[0] == 1
    assert len(versions) == 2  # v2, or v3 when the dead run had claimed number 2
    assert _registry(buckets).verify(MODEL, versions[-1]).ok
    # The redelivery of a finished run is a no-op.
    assert retrain(_request("second"), again).status == "duplicate"


def _register_second_version(buckets: dict[str, str]) -> None:
    rt = _runtime(buckets, _client())
    retrain(_request("second"), rt)
    assert _visible_versions(_registry(buckets)) == [1, 2]


@pytest.mark.parametrize("crash_at", ["alias-write", "history-write"])
def test_storage_dies_in_the_middle_of_a_promote(gcs, buckets, crash_at: str) -> None:
    _first_champion(buckets)
    _register_second_version(buckets)
    reg = _registry(buckets)
    # Whatever the gate decided, go back to v1 so that promoting v2 is a real move.
    if reg.alias(MODEL).version != 1:
        reg.rollback(MODEL, to=1, actor="test")
    before = reg.alias(MODEL)
    history_before = len(reg.history(MODEL))

    # The alias is written first, then its history entry (registry.move_alias).
    target = (
        f"{MODEL}/aliases/champion.json"
        if crash_at == "alias-write"
        else f"{MODEL}/aliases/history/champion/{before.seq + 1:08d}.json"
    )
    session = CrashingSession(body_mentions(target, method="POST"), on_crash=gcs.kill)
    crashing = Registry(_client(session), buckets["registry"])
    with pytest.raises(InstanceCrashed):
        crashing.promote(MODEL, 2, reason="operator", actor="cli")

    _restart(gcs)
    reg = _registry(buckets)
    state = reg.alias(MODEL)
    if crash_at == "alias-write":
        assert state == before  # the pointer never moved
    else:
        assert state.version == 2  # it moved; the crash only cost the history entry
    assert reg.verify(MODEL, state.version).ok
    reg.load(MODEL)

    # The operator runs the same promote again: it completes, and history is whole.
    again = reg.promote(MODEL, 2, reason="operator", actor="cli")
    assert again.version == 2
    history = reg.history(MODEL)
    assert len(history) == history_before + 1
    assert max(history, key=lambda h: h.seq).version == 2
    assert sorted(h.seq for h in history) == list(range(1, len(history) + 1))


@pytest.mark.parametrize("crash_at", ["/versions/000001/model.joblib", "/snapshot.json"])
def test_storage_dies_in_the_middle_of_a_backup(gcs, buckets, crash_at: str) -> None:
    from warden.jobs.backup import list_snapshots, snapshot

    _first_champion(buckets)
    before = _registry(buckets).alias(MODEL)
    snapshot_id = "20261120-nightly"

    session = CrashingSession(body_mentions(crash_at, method="POST"), on_crash=gcs.kill)
    with pytest.raises(InstanceCrashed):
        snapshot(_runtime(buckets, _client(session)), snapshot_id=snapshot_id)

    _restart(gcs)
    rt = _runtime(buckets, _client())
    assert list_snapshots(rt) == [], "an incomplete snapshot became visible"
    assert _registry(buckets).alias(MODEL) == before  # a backup never touches the registry
    _registry(buckets).load(MODEL)

    # The rerun (the next housekeeping delivery) completes the same snapshot.
    done = snapshot(rt, snapshot_id=snapshot_id)
    assert done.id == snapshot_id
    [listed] = list_snapshots(rt)
    assert listed.id == snapshot_id
    assert snapshot(rt, snapshot_id=snapshot_id).already_complete  # and a third run is a no-op


# -- a retrain interrupted between register and promote resumes (issue 14) -----------------------
@pytest.mark.parametrize("fault", ["crash", "lost-race"])
def test_a_retrain_stopped_between_register_and_promote_resumes_it(gcs, buckets, fault) -> None:
    """The instance dies at its promote (a crash: the redelivery comes after the lease), or every
    compare-and-swap of the alias loses its race (ConflictError, retryable: the run is released
    and redelivered at once). Either way the redelivery finds v2, registered by this same
    request, and carries on from its manifest's gate decision: one version, the right champion."""
    _first_champion(buckets)
    alias_write = body_mentions(f"{MODEL}/aliases/champion.json", method="POST")
    if fault == "crash":
        session: CrashingSession | LosingSession = CrashingSession(alias_write, on_crash=gcs.kill)
        with pytest.raises(InstanceCrashed):
            retrain(_request("second"), _runtime(buckets, _client(session)))
        _restart(gcs)
        again = _after_lease(_runtime(buckets, _client()))
    else:
        session = LosingSession(alias_write)
        with pytest.raises(ConflictError):
            retrain(_request("second"), _runtime(buckets, _client(session)))
        assert session.refused > 1  # it re-read and tried again, and lost every time
        again = _runtime(buckets, _client())
    reg = _registry(buckets)
    assert _visible_versions(reg) == [1, 2]
    assert reg.manifest(MODEL, 2)["gate"]["passed"]  # the stopped run was going to promote
    assert reg.alias(MODEL).version == 1

    outcome = retrain(_request("second"), again)
    assert (outcome.status, outcome.version, outcome.promoted) == ("registered", 2, True)
    assert _visible_versions(_registry(buckets)) == [1, 2], "the redelivery registered again"
    assert reg.alias(MODEL).version == 2
    assert [h.version for h in reg.history(MODEL)] == [1, 2]
    assert retrain(_request("second"), again).status == "duplicate"


def test_a_redelivery_after_an_unregistered_claim_trains_afresh(gcs, buckets) -> None:
    """The checkpoint names a version that never got its manifest (the crash came before the
    commit point): the redelivery registers a new one, and only one becomes visible."""
    _first_champion(buckets)
    session = CrashingSession(body_mentions(f"{MODEL}/versions/000002/manifest.json"), gcs.kill)
    with pytest.raises(InstanceCrashed):
        retrain(_request("second"), _runtime(buckets, _client(session)))
    _restart(gcs)
    outcome = retrain(_request("second"), _after_lease(_runtime(buckets, _client())))
    assert outcome.status == "registered"
    assert outcome.version == 3  # number 2 stays an orphan for housekeeping
    assert _visible_versions(_registry(buckets)) == [1, 3]


# -- our own conditional write, retried by the client library (issue 14) -------------------------
#: Every conditional write of a retrain, in order: ledger marker, version claim, checkpoint,
#: files, manifest (the commit point), the alias, its history entry, the ledger's final state.
RETRAIN_WRITES = [
    f"{MODEL}/runs/retrain/",
    f"{MODEL}/versions/000002/claim.json",
    f"{MODEL}/versions/000002/model.joblib",
    f"{MODEL}/versions/000002/profile.json",
    f"{MODEL}/versions/000002/manifest.json",
    f"{MODEL}/aliases/champion.json",
    f"{MODEL}/aliases/history/champion/00000002.json",
    f"{MODEL}/status/retrain.json",
]


def test_writes_that_landed_then_got_a_503_complete_once(gcs, buckets) -> None:
    """A proxy in front of the storage emulator lets each conditional write of a retrain land and
    answers 503: the client library retries it and gets a 412 for our own write. The retrain
    completes in that one call — no "already exists", no RunInProgress for a lease — with one
    effect: one version, one alias move, one history entry, its ledger marker done."""
    _first_champion(buckets)
    proxy = LandThen503Proxy(gcs.host, RETRAIN_WRITES)
    try:
        client = storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": proxy.url},
        )
        outcome = retrain(_request("second"), _runtime(buckets, client))
    finally:
        proxy.close()
    assert proxy.hits == RETRAIN_WRITES, "a fault never fired"
    assert (outcome.status, outcome.version, outcome.promoted) == ("registered", 2, True)
    reg = _registry(buckets)
    assert _visible_versions(reg) == [1, 2]
    assert reg.alias(MODEL).version == 2
    assert [h.version for h in reg.history(MODEL)] == [1, 2]
    ledger = RunLedger(_client(), buckets["registry"])
    got = ledger.bucket.blob(ledger.marker_name(MODEL, "retrain", _request("second").key))
    assert json.loads(got.download_as_bytes())["status"] == "done"
    assert retrain(_request("second"), _runtime(buckets, _client())).status == "duplicate"
