"""Each function's use case, run on the emulators, writes only objects that its Terraform grants
let it write. The code decides what IAM must allow, and the deployed conditions (the CEL that
Terraform computes from terraform/iam.tf, evaluated as Google documents it) must allow it:
a new write path in the code that IAM would refuse fails here, not in production.
``test_terraform.py``'s least-privilege tests hold the other direction (no grant beyond need,
nothing but retrain and housekeeping able to write versions or aliases).

Writes are recorded at the client library (every mutating ``Blob``/``Bucket`` method), so
deletes and overwrites count as much as creations.
"""

from __future__ import annotations

import concurrent.futures
import copy
import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_terraform import NEEDED, READ_ONLY_STORAGE_ROLES, Cel, object_resource, storage_grants
from warden.alerts import alert_from_model_event
from warden.alerts.router import route
from warden.config import parse_config
from warden.errors import RetryableError
from warden.jobs.health import check_health
from warden.jobs.housekeeping import housekeep
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import monitor
from warden.jobs.retrain import retrain
from warden.store.registry import ARTIFACT, Registry

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())
SEG = "customer-segments"
TRAINED = date(2026, 11, 1)
LATER = date(2026, 11, 20)

#: Every mutating method of the storage client's Blob and Bucket.
BLOB_WRITES = (
    "upload_from_string",
    "upload_from_file",
    "upload_from_filename",
    "create_resumable_upload_session",
    "delete",
    "rewrite",
    "compose",
    "patch",
    "update",
    "make_public",
    "make_private",
)


@pytest.fixture
def writes(monkeypatch) -> list[tuple[str, str]]:
    """(bucket, object name) of every write, overwrite or delete through the storage client."""
    from google.cloud.storage import Blob, Bucket

    recorded: list[tuple[str, str]] = []

    def on_blob(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Blob, *args: Any, **kwargs: Any) -> Any:
            recorded.append((self.bucket.name, self.name))
            return original(self, *args, **kwargs)

        return wrapper

    def on_open(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Blob, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if "w" in mode:
                recorded.append((self.bucket.name, self.name))
            return original(self, mode, *args, **kwargs)

        return wrapper

    def on_bucket(original: Callable[..., Any], names: Callable[..., list[tuple[str, str]]]):
        @functools.wraps(original)
        def wrapper(self: Bucket, *args: Any, **kwargs: Any) -> Any:
            recorded.extend(names(self, *args, **kwargs))
            return original(self, *args, **kwargs)

        return wrapper

    def name(blob: Any) -> str:
        return blob if isinstance(blob, str) else blob.name

    for method in BLOB_WRITES:
        monkeypatch.setattr(Blob, method, on_blob(getattr(Blob, method)))
    monkeypatch.setattr(Blob, "open", on_open(Blob.open))
    bucket_writes = {
        "delete_blob": lambda b, blob_name, *a, **k: [(b.name, blob_name)],
        "delete_blobs": lambda b, blobs, *a, **k: [(b.name, name(x)) for x in blobs],
        "copy_blob": lambda b, blob, dest, new_name=None, *a, **k: [
            (dest.name, new_name or blob.name)
        ],
        "rename_blob": lambda b, blob, new_name, *a, **k: [(b.name, blob.name), (b.name, new_name)],
    }
    for method, names in bucket_writes.items():
        monkeypatch.setattr(Bucket, method, on_bucket(getattr(Bucket, method), names))
    return recorded


@functools.cache
def _cel(expression: str) -> Cel:
    return Cel(expression)


def refused(fn: str, writes: list[tuple[str, str]], buckets: dict[str, str]) -> list[str]:
    """The writes that ``fn``'s Terraform grants would refuse (bucket KEY deployed as
    ``warden-KEY`` in ``storage_grants``; here the test's own bucket of that key)."""
    keys = {bucket: key for key, bucket in buckets.items()}
    grants = [g for g in storage_grants() if g[0] == fn and g[2] not in READ_ONLY_STORAGE_ROLES]
    out = []
    for bucket, name in sorted(set(writes)):
        key = keys.get(bucket)
        if not any(
            b == key and (cond is None or _cel(cond).admits(object_resource(b, name)))
            for _, b, _, cond in grants
        ):
            out.append(f"gs://{bucket}/{name}")
    return out


class FakePublisher:
    """A Pub/Sub publisher that can be made to fail (the retrain request's give-back path)."""

    def __init__(self) -> None:
        self.fail = False
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> concurrent.futures.Future:
        if self.fail:
            raise ConnectionError("Pub/Sub unreachable (test)")
        self.sent.append((topic, data, attributes))
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(str(len(self.sent)))
        return future


def _request(key: str, as_of: date, model: str = SEG) -> RunRequest:
    return RunRequest(model=model, reason="schedule", key=key, message_id=key, as_of=as_of)


def test_retrain_writes_only_the_registry_and_health_writes_nothing(
    seed, make_runtime, writes, bucket_names
) -> None:
    seed(end=TRAINED, days=5, customer_rows=1200, models=(SEG,))
    rt = make_runtime(install=False)
    writes.clear()  # the seeding
    outcome = retrain(_request("r1", TRAINED), rt)
    assert outcome.version == 1
    assert {b for b, _ in writes} == {bucket_names["registry"]}
    assert refused("retrain_model", writes, bucket_names) == []

    writes.clear()
    status, body = check_health(rt, deep=True)
    assert status == 200, body
    assert writes == []  # health holds objectViewer only


def test_monitor_writes_only_its_reports_marker_and_ledger(
    seed, make_runtime, writes, bucket_names
) -> None:
    publisher = FakePublisher()
    seed(end=TRAINED, days=7, customer_rows=2000, seed=1, models=(SEG,))
    rt = make_runtime(install=False, publisher=publisher)
    raw = copy.deepcopy(RAW)
    raw["models"][SEG]["drift"] = {
        "window_days": 7,
        "retrain_on_drift": True,
        "retrain_on_degradation": True,
        "retrain_cooldown_hours": 24,
    }
    rt._config = parse_config(raw)
    retrain(_request("r1", TRAINED), rt)
    seed(end=LATER, days=7, customer_rows=2000, seed=8, shift=1.0, models=(SEG,))
    writes.clear()

    # Drift, and the retrain request cannot be published: the cooldown marker is given back
    # (deleted) and the run released for the redelivery, which then completes.
    publisher.fail = True
    with pytest.raises(RetryableError):
        monitor(_request("m1", LATER), rt)
    publisher.fail = False
    outcome = monitor(_request("m1", LATER), rt)
    assert outcome.dataset_drift is True
    assert outcome.retrain_requested is True
    assert len(publisher.sent) == 1

    registry = bucket_names["registry"]
    assert {b for b, _ in writes} == {registry}
    names = {n for _, n in writes}
    assert f"{SEG}/monitoring/retrain-request.json" in names
    assert refused("monitor_model", writes, bucket_names) == []
    # ...and the grant is no wider than the code: every prefix it admits is written.
    for prefix in NEEDED["monitor_model"]["prefixes"]["registry"]:
        assert any(n.startswith(f"{SEG}/{prefix}") for n in names), prefix


def test_the_routers_write_only_the_alert_bucket(make_runtime, writes, bucket_names) -> None:
    rt = make_runtime(install=False)
    raw = copy.deepcopy(RAW)
    raw["alerting"] = {
        "receivers": [{"name": "log", "log": {}}],
        "route": {"receiver": "log", "group_by": ["model"], "group_wait": "0s"},
    }
    rt._config = parse_config(raw)  # the runtime parses its alerting section afresh
    now = datetime.now(UTC).timestamp()
    event = {"schema": 1, "kind": "failed", "model": SEG, "at": now}
    first = route(rt, [alert_from_model_event(event)], now=now)
    flushed = route(rt, [], now=now + 60)
    assert first["new"] == 1
    assert first["notified"] + flushed["notified"] == 1
    assert {b for b, _ in writes} == {bucket_names["alerts"]}
    assert all(n.startswith("_alerting/") for _, n in writes)
    for fn in ("route_alerts", "route_alert_events"):
        assert refused(fn, writes, bucket_names) == []


def test_housekeeping_writes_are_granted(
    make_runtime, writes, bucket_names, storage_client, tmp_path
) -> None:
    raw = copy.deepcopy(RAW)
    raw["models"][SEG]["housekeeping"] = {
        "retention": {"keep_last": 1, "alias_window_days": 0},
        "backup": True,
        "backup_retention_days": 7,
    }
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    rt = make_runtime(install=False, config_path=config)
    started = datetime.now(UTC)
    registry = Registry(storage_client, bucket_names["registry"])
    for _ in range(2):
        v = registry.claim_version(SEG, run_id="test")
        registry.register(SEG, v, {ARTIFACT: f"artifact {v}".encode()}, {"task": "clustering"})
    registry.promote(SEG, 2, reason="test", actor="test")
    orphan = registry.claim_version(SEG, run_id="crashed")  # a retrain that died mid-way
    storage_client.bucket(bucket_names["registry"]).blob(
        f"{SEG}/versions/{orphan:06d}/{ARTIFACT}"
    ).upload_from_string(b"half")
    ledger = rt.ledger()
    claim = ledger.begin(SEG, "retrain", "old", "run-old")
    ledger.finish(claim, "done", {})
    rt.alert_state().add_silence(
        [f'model="{SEG}"'], starts_at=0, ends_at=1, created_by="test", silence_id="old"
    )
    writes.clear()

    rt.clock = lambda: started + timedelta(days=60)
    outcome = housekeep(_request("h1", LATER), rt)
    assert outcome.retention.deleted == [1]
    assert outcome.orphans.swept == [orphan]
    assert outcome.backup.status == "done"
    assert outcome.expiry.markers
    assert outcome.expiry.router_state == ["_alerting/mutes.json#silence=old"]
    assert {b for b, _ in writes} == {
        bucket_names["registry"],
        bucket_names["backup"],
        bucket_names["alerts"],
    }
    assert refused("housekeeping", writes, bucket_names) == []


def test_a_write_outside_the_grants_is_refused(bucket_names) -> None:
    """The check itself: what the routers and the monitor may not do is reported."""
    registry, alerts = bucket_names["registry"], bucket_names["alerts"]
    model = [(registry, f"{SEG}/versions/000001/model.joblib")]
    assert refused("route_alerts", model, bucket_names) == [f"gs://{registry}/{model[0][1]}"]
    assert refused("monitor_model", model, bucket_names) == [f"gs://{registry}/{model[0][1]}"]
    alias = [(registry, f"{SEG}/aliases/champion.json")]
    assert refused("monitor_model", alias, bucket_names) == [f"gs://{registry}/{alias[0][1]}"]
    assert refused("health", [(registry, f"{SEG}/status/monitor.json")], bucket_names)
    assert refused("monitor_model", [(alerts, "_alerting/mutes.json")], bucket_names)
    assert refused("retrain_model", model, bucket_names) == []
