"""Moves of the champion racing each other and housekeeping's retention (issue 14).

Each test stalls one writer at the compare-and-swap of the alias (tests/faults.py
``PausingSession``: after it read and verified, before it writes), lets another writer act, then
lets it go. Whatever the interleaving, the alias only ever points at a version that verifies,
and a version the alias is on is never retired.
"""

from __future__ import annotations

import concurrent.futures
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from faults import PausingSession, body_mentions
from warden.errors import IntegrityError, VersionNotFound
from warden.jobs.housekeeping import housekeep
from warden.jobs.messages import RunRequest
from warden.store.registry import ARTIFACT, Registry

ROOT = Path(__file__).resolve().parents[1]
MODEL = "customer-segments"


def _register(registry: Registry, count: int) -> list[int]:
    out = []
    for _ in range(count):
        v = registry.claim_version(MODEL, run_id="test")
        registry.register(
            MODEL, v, {ARTIFACT: os.urandom(2048)}, {"task": "clustering", "features": ["a"]}
        )
        out.append(v)
    return out


def _stalled(bucket: str, path: str) -> tuple[Registry, PausingSession]:
    session = PausingSession(body_mentions(path, method="POST"))
    client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=session
    )
    return Registry(client, bucket), session


def _alias_verifies(registry: Registry) -> int:
    state = registry.alias(MODEL)
    assert state is not None
    check = registry.verify(MODEL, state.version)
    assert check.ok, check.detail
    return state.version


def test_a_rollback_racing_a_promote_moves_only_to_a_version_it_verified(
    storage_client, bucket_names
) -> None:
    """The rollback reads champion v2 (previous v1), verifies v1 and stalls at its write. A
    promote of v3 lands meanwhile, and v2's artifact is damaged. The rollback loses its race,
    re-decides on the fresh state — now back to v2 — and must verify v2 before moving there."""
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 3)
    registry.promote(MODEL, 1, reason="t", actor="t")
    registry.promote(MODEL, 2, reason="t", actor="t")

    stalled, session = _stalled(bucket, f"{MODEL}/aliases/champion.json")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        rollback = pool.submit(stalled.rollback, MODEL, actor="oncall")
        assert session.reached.wait(60)
        registry.promote(MODEL, 3, reason="retrain", actor="retrain")
        registry.bucket.blob(f"{MODEL}/versions/000002/{ARTIFACT}").upload_from_string(b"rot")
        session.release()
        with pytest.raises(IntegrityError, match="sha256"):
            rollback.result(timeout=60)
    assert _alias_verifies(registry) == 3


@pytest.fixture
def housekeeping_rt(make_runtime, tmp_path):
    """A runtime whose retention keeps only the newest version (and the champion)."""
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"][MODEL]["housekeeping"] = {
        "retention": {"keep_last": 1, "alias_window_days": 0},
        "backup": False,
    }
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(raw))
    return make_runtime(install=False, config_path=path)


def _housekeeping_request() -> RunRequest:
    key = f"housekeeping-{datetime.now(UTC).isoformat()}"
    return RunRequest(
        model=MODEL, reason="schedule", key=key, message_id=key, as_of=datetime.now(UTC).date()
    )


def test_retention_racing_a_promote_never_leaves_the_alias_on_a_retired_version(
    housekeeping_rt, storage_client, bucket_names
) -> None:
    """The promote verifies v2 and stalls at its write; housekeeping retires v1–v3 (v4 is the
    newest and the champion). Released, the promote must not land on v2: refused, the alias
    stays on v4, which verifies."""
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 4)
    registry.promote(MODEL, 4, reason="t", actor="t")

    stalled, session = _stalled(bucket, f"{MODEL}/aliases/champion.json")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        promote = pool.submit(stalled.promote, MODEL, 2, reason="operator", actor="cli")
        assert session.reached.wait(60)
        out = housekeep(_housekeeping_request(), housekeeping_rt)
        assert out.retention.deleted == [1, 2, 3]
        session.release()
        with pytest.raises(VersionNotFound):
            promote.result(timeout=60)
    assert _alias_verifies(registry) == 4
    assert registry.version_numbers(MODEL) == [4]


def test_a_promote_that_lands_first_keeps_its_version_from_retention(
    housekeeping_rt, storage_client, bucket_names
) -> None:
    """The other order: the promote of v2 lands while housekeeping is between its plan and its
    retirement (stalled at marking); the promoted version survives, whole."""
    bucket = bucket_names["registry"]
    registry = Registry(storage_client, bucket)
    _register(registry, 4)
    registry.promote(MODEL, 4, reason="t", actor="t")

    hk_registry = housekeeping_rt.registry()
    session = PausingSession(body_mentions(f"{MODEL}/aliases/champion.json", method="POST"))
    hk_registry._client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=session
    )
    hk_registry._bucket = None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(housekeep, _housekeeping_request(), housekeeping_rt)
        assert session.reached.wait(60)  # planned v1–v3, about to mark them
        registry.promote(MODEL, 2, reason="operator", actor="cli")
        session.release()
        out = run.result(timeout=120)
    assert out.retention.delete == [1, 2, 3]
    assert 2 not in out.retention.deleted
    assert _alias_verifies(registry) == 2
    assert registry.version_numbers(MODEL) == [2, 4]
