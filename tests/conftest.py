"""Shared fixtures: a real fake-gcs-server for the session, fresh buckets and runtimes per test."""

from __future__ import annotations

import os

# One thread per process for OpenMP (KMeans) and BLAS, before numpy or scikit-learn loads them:
# four xdist workers and the functions they start share two cores, and each library's default
# (a thread per core, spinning between parallel regions) burned a third more CPU for the same
# work (measured on the ML test files: 97 -> 66 CPU seconds). Subprocesses inherit it.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from warden import runtime
from warden.settings import Settings
from warden_local.examples import seed_examples
from warden_local.gcs import StorageEmulator
from warden_local.pubsub import PubSubEmulator

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def _emulator_env_kept() -> Iterator[None]:
    """A test may point the emulator variables elsewhere but must give them back: the session's
    emulators own them for every later test on this worker (a popped STORAGE_EMULATOR_HOST once
    failed two unrelated tests with DefaultCredentialsError)."""
    import os

    keys = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
    before = {k: os.environ.get(k) for k in keys}
    yield
    after = {k: os.environ.get(k) for k in keys}
    changed = {k: (before[k], after[k]) for k in keys if before[k] and before[k] != after[k]}
    assert not changed, f"the test changed emulator variables it found set: {changed}"


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[StorageEmulator]:
    """fake-gcs-server (memory backend) for the session; STORAGE_EMULATOR_HOST points at it."""
    mp = pytest.MonkeyPatch()
    with StorageEmulator() as emulator:
        mp.setenv("STORAGE_EMULATOR_HOST", emulator.host)
        yield emulator
    mp.undo()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """The Cloud SDK's Pub/Sub emulator, started on first use; PUBSUB_EMULATOR_HOST points at it."""
    mp = pytest.MonkeyPatch()
    with PubSubEmulator() as emulator:
        mp.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator
    mp.undo()


@pytest.fixture
def topic_sink(pubsub_emulator, bucket_names):
    """``topic_sink(name)`` → (topic_id, publisher, pull): a fresh, uniquely named topic with a
    pull subscription; ``pull(want, timeout)`` returns [(attributes, json payload)] so far, and
    ``pull.before_marker()`` what arrived before a marker published now (to show that nothing
    else was published: a positive marker, not a wait for silence)."""
    import json
    import time

    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()

    class Pull:
        def __init__(self, topic: str, sub: str) -> None:
            self.topic, self.sub = topic, sub

        def _batch(self) -> list[tuple[dict, bytes]]:
            resp = subscriber.pull(subscription=self.sub, max_messages=50, timeout=5)
            if resp.received_messages:
                subscriber.acknowledge(
                    subscription=self.sub, ack_ids=[m.ack_id for m in resp.received_messages]
                )
            return [(dict(m.message.attributes), m.message.data) for m in resp.received_messages]

        def __call__(self, want: int = 1, timeout: float = 10.0) -> list[tuple[dict, dict]]:
            got: list[tuple[dict, dict]] = []
            deadline = time.monotonic() + timeout
            while len(got) < want and time.monotonic() < deadline:
                got += [(a, json.loads(d)) for a, d in self._batch()]
            return got

        def before_marker(self, timeout: float = 30.0) -> list[tuple[dict, dict]]:
            """Publish a marker, pull until it arrives; the messages pulled before it."""
            marker = uuid.uuid4().hex
            publisher.publish(self.topic, b"{}", warden_test_marker=marker).result(timeout=30)
            got: list[tuple[dict, dict]] = []
            deadline = time.monotonic() + timeout
            while True:
                for attrs, data in self._batch():
                    if attrs.get("warden_test_marker") == marker:
                        return got
                    got.append((attrs, json.loads(data)))
                assert time.monotonic() < deadline, "the marker message never arrived"

    def make(name: str):
        topic_id = f"{name}-{bucket_names['data']}"
        topic = publisher.create_topic(name=publisher.topic_path("warden-test", topic_id)).name
        sub = subscriber.subscription_path("warden-test", topic_id)
        subscriber.create_subscription(name=sub, topic=topic)
        return topic_id, publisher, Pull(topic, sub)

    yield make
    subscriber.close()


@pytest.fixture
def storage_client(gcs_emulator: StorageEmulator):
    from google.cloud import storage

    from warden.clients import tune_storage_session

    # As Warden's own clients against the emulator: without requests' per-request environment
    # lookups (proxies, netrc), a tenth of the CPU of the storage-heavy tests.
    client = storage.Client(project="warden-test")
    tune_storage_session(client, skip_environment=True)
    return client


@pytest.fixture
def bucket_names(storage_client) -> dict[str, str]:
    """Fresh buckets per test (registry, the router's alert state, data, backup), so tests never
    see each other's objects; the alert state is apart from the registry, as deployed."""
    suffix = uuid.uuid4().hex[:10]
    names = {
        "registry": f"registry-{suffix}",
        "alerts": f"alerts-{suffix}",
        "data": f"data-{suffix}",
        "backup": f"backup-{suffix}",
    }
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
        if "registry_bucket" in overrides and "alert_bucket" not in overrides:
            # Another registry is another deployment: its router state starts empty too.
            overrides["alert_bucket"] = f"alerts-{uuid.uuid4().hex[:10]}"
            storage_client.create_bucket(overrides["alert_bucket"])
        values: dict[str, Any] = {
            "project": "warden-test",
            "registry_bucket": bucket_names["registry"],
            "alert_bucket": bucket_names["alerts"],
            "data_bucket": bucket_names["data"],
            "backup_bucket": bucket_names["backup"],
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


#: The longest files go first (longest-processing-time scheduling), each on its own worker, with the
#: short files filling in behind them. Measured on the 2-core machine: xdist's own order (files
#: by number of tests) ran these one-test files last, one after another on one worker: 320 s;
#: this order, 221 s, of which 40 s a file queued behind the fuzz test; with that fixed too, see
#: docs/development.md. Ordered by each file's wall time in a loaded run (2026-12-07; every file
#: over 14 s): with only the longest dozen listed, a 21 s file started in the last minute and ran
#: alone for its last 10 s.
SLOW_FIRST = (
    "test_demo.py",
    "test_local_stack.py",
    "test_route_alerts_fuzz.py",
    "test_push_delivery.py",
    "test_local_drift_loop.py",
    "test_monitor.py",
    "test_fault_injection.py",
    "test_local_staleness.py",
    "test_onboarding_e2e.py",
    "test_terraform.py",
    "test_job_runner.py",
    "test_local_workflow.py",
    "test_health_function.py",
    "test_example_app.py",
    "test_route_alerts.py",
    "test_router_concurrency.py",
    "test_alert_state.py",
    "test_cli.py",
    "test_register.py",
    "test_retrain_function.py",
    "test_monitor_predictions.py",
    "test_bundle.py",
    "test_holdout.py",
    "test_pubsub_class_sharing.py",
    "test_router_scale.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """SLOW_FIRST, then the other files by their number of tests, most first (xdist's own
    heuristic): the files at the end are the small ones."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.path.name] = counts.get(item.path.name, 0) + 1

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in SLOW_FIRST:
            return SLOW_FIRST.index(name), 0
        return len(SLOW_FIRST), -counts[name]

    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` in the collection order above.

    Two changes to xdist's loadfile: it keeps the collection order (xdist would sort files by
    their number of tests, and these long files have one or a few, so they all ran last, on one
    worker); and the second file each worker gets at the start (a worker holds its last test
    until it knows the next one) is the smallest left, not the next long one, which would wait
    behind the first. After the start, xdist's own rule hands out the next file as a worker
    nears its end. Other ``--dist`` modes are left alone.
    """
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SlowFirstScheduling(LoadFileScheduling):
        _starting = False

        def schedule(self) -> None:
            self.config.option.loadscopereorder = False
            self._starting = self.collection is None
            try:
                super().schedule()
            finally:
                self._starting = False

        def _reschedule(self, node: Any) -> None:
            if self._starting and self.workqueue:
                smallest = next(reversed(self.workqueue))
                self.workqueue.move_to_end(smallest, last=False)
            super()._reschedule(node)

    return SlowFirstScheduling(config, log)
