"""Shared fixtures: a real fake-gcs-server for the session, fresh buckets and runtimes per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from warden import runtime
from warden.examples import seed_examples
from warden.settings import Settings
from warden_local.gcs import StorageEmulator

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 20)


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


@pytest.fixture
def seed(storage_client, bucket_names) -> Callable[..., dict[str, list[str]]]:
    """``seed(days=7, end=AS_OF, **kw)``: example-model partitions in this test's data bucket."""

    def _seed(**kwargs: Any) -> dict[str, list[str]]:
        kwargs.setdefault("end", AS_OF)
        return seed_examples(storage_client, bucket=bucket_names["data"], **kwargs)

    return _seed


@pytest.fixture
def make_runtime(storage_client, bucket_names) -> Iterator[Callable[..., runtime.Runtime]]:
    """``make_runtime(install=True, publisher=None, **settings)``: a runtime on this test's
    buckets; installed as the process runtime (what function entry points use) by default."""

    def _make(*, install: bool = True, publisher: Any = None, **overrides: Any):
        values: dict[str, Any] = {
            "project": "warden-test",
            "registry_bucket": bucket_names["registry"],
            "data_bucket": bucket_names["data"],
            "metrics_enabled": False,
            "config_path": ROOT / "warden.yaml",
            **overrides,
        }
        built = runtime.build(Settings(**values), storage=storage_client, publisher=publisher)
        if install:
            runtime.install(built)
        return built

    yield _make
    runtime.install(None)
