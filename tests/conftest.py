"""Shared fixtures: a real fake-gcs-server for the whole session, fresh buckets per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_local.gcs import StorageEmulator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[StorageEmulator]:
    """fake-gcs-server (memory backend) for the session; STORAGE_EMULATOR_HOST points at it."""
    mp = pytest.MonkeyPatch()
    with StorageEmulator() as emulator:
        mp.setenv("STORAGE_EMULATOR_HOST", emulator.host)
        yield emulator
    mp.undo()


@pytest.fixture
def storage_client(gcs_emulator: StorageEmulator):
    from google.cloud import storage

    return storage.Client(project="warden-test")


@pytest.fixture
def bucket_names(storage_client) -> dict[str, str]:
    """A fresh registry and data bucket per test, so tests never see each other's objects."""
    suffix = uuid.uuid4().hex[:10]
    names = {"registry": f"registry-{suffix}", "data": f"data-{suffix}"}
    for name in names.values():
        storage_client.create_bucket(name)
    return names
