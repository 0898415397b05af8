"""warden.serving.Champion on the storage emulator: verified loads, swaps under load, a corrupt
champion kept out, the local cache, and an import footprint light enough for a request path."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator

import joblib
import numpy as np
import pytest
from google.api_core.exceptions import Forbidden
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stack_process import wait_for
from warden.errors import VersionNotFound
from warden.serving import Champion
from warden.store.registry import ARTIFACT, Registry

MODEL = "risk"
X, Y = load_breast_cancer(return_X_y=True)


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _estimator(c: float) -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(X, Y)


def _bytes(estimator: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    return buf.getvalue()


@pytest.fixture
def registry(storage_client, bucket_names) -> Registry:
    return Registry(storage_client, bucket_names["registry"])


@pytest.fixture
def add_version(registry) -> Callable[..., tuple[int, object]]:
    """``add_version(c, promote=True)`` → (version, estimator): a classifier registered (and
    promoted) as the next version of MODEL."""

    def add(c: float, *, promote: bool = True) -> tuple[int, object]:
        estimator = _estimator(c)
        version = registry.claim_version(MODEL, run_id=f"c={c}")
        registry.register(MODEL, version, {ARTIFACT: _bytes(estimator)}, {"task": "classifier"})
        if promote:
            assert registry.promote(MODEL, version, reason="test", actor="test") is not None
        return version, estimator

    return add


def test_loads_the_champion_verified_and_counts_predictions(registry, add_version) -> None:
    v1, est = add_version(0.01)
    champion = Champion(MODEL, registry, clock=Clock())
    loaded = champion.load()
    assert (loaded.version, loaded.source) == (v1, "registry")
    assert loaded.manifest["files"][ARTIFACT]["sha256"]
    np.testing.assert_array_equal(champion.predict(X[:7]), est.predict(X[:7]))
    np.testing.assert_array_equal(champion.predict_proba(X[:3]), est.predict_proba(X[:3]))
    status = champion.status()
    assert status["model_loaded"] is True
    assert status["version"] == v1
    assert status["predictions"] == 10
    assert status["last_swap"] is None
    assert status["last_error"] is None


def test_no_champion_is_a_clear_error(registry, add_version) -> None:
    add_version(0.01, promote=False)
    with pytest.raises(VersionNotFound, match="no champion"):
        Champion(MODEL, registry).load()


def test_a_thousand_requests_across_a_promotion_all_answer_from_a_loaded_version(
    registry, add_version
) -> None:
    v1, est1 = add_version(0.001)
    v2, est2 = add_version(10.0, promote=False)
    rows = X[:50]
    expected = {v1: est1.predict_proba(rows)[:, 1], v2: est2.predict_proba(rows)[:, 1]}
    assert not np.allclose(expected[v1], expected[v2])  # the answers tell the versions apart
    clock = Clock()
    champion = Champion(MODEL, registry, check_interval=30, clock=clock)
    champion.load()

    answers: list[list[tuple[int, int, float]]] = [[] for _ in range(8)]
    failures: list[BaseException] = []
    done = threading.Event()

    def client(k: int) -> None:
        i = k
        try:
            while not done.is_set():
                loaded = champion.current()
                row = i % len(rows)
                score = loaded.estimator.predict_proba(rows[row : row + 1])[0, 1]
                champion.served()
                answers[k].append((loaded.version, row, float(score)))
                i += 8
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    try:
        served = lambda: sum(len(a) for a in answers)  # noqa: E731
        wait_for(lambda: served() >= 300, 60, "300 requests on v1")
        # Promoted, but within the interval nobody looks: still v1, and no check made.
        assert registry.promote(MODEL, v2, reason="test", actor="test") is not None
        wait_for(lambda: served() >= 600, 60, "300 more requests")
        assert champion.status()["checks"] == 0
        assert champion.current().version == v1
        clock.advance(30)  # the interval has passed: the next request starts a check
        wait_for(lambda: champion.status()["version"] == v2, 60, "the swap to v2")
        mark = served()
        wait_for(lambda: served() >= max(1000, mark + 200), 60, "requests on v2")
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures
    total = [a for per in answers for a in per]
    assert len(total) >= 1000
    for version, row, score in total:
        assert score == pytest.approx(expected[version][row], abs=1e-12)
    for per in answers:  # each client saw v1 then v2, never back
        versions = [v for v, _, _ in per]
        assert versions == sorted(versions)
    assert {v for v, _, _ in total} == {v1, v2}
    status = champion.status()
    assert status["last_swap"]["from"] == v1
    assert status["last_swap"]["to"] == v2
    assert status["checks"] == 1
    assert status["predictions"] == len(total)


def test_an_unmoved_alias_costs_one_metadata_read_per_interval(
    registry, add_version, storage_client
) -> None:
    add_version(0.01)
    clock = Clock()
    champion = Champion(MODEL, registry, check_interval=5, clock=clock)
    champion.load()
    calls: list[str] = []
    session = storage_client._http
    original = session.request

    def counting(method: str, url: str, *args: object, **kwargs: object) -> object:
        name = urllib.parse.unquote(url.split("?")[0].rsplit("/o/", 1)[-1])
        calls.append(f"{method} {name}{'' if 'alt=media' not in url else ' (content)'}")
        return original(method, url, *args, **kwargs)

    session.request = counting
    try:
        for _ in range(3):
            clock.advance(5)
            assert champion.refresh() is False
    finally:
        del session.request
    assert calls == [f"GET {MODEL}/aliases/champion.json"] * 3  # metadata, never content
    assert champion.status()["checks"] == 3


def test_a_corrupt_new_champion_is_never_served_and_status_says_why(
    registry, add_version, storage_client, bucket_names
) -> None:
    v1, est1 = add_version(0.01)
    clock = Clock()
    champion = Champion(MODEL, registry, check_interval=10, clock=clock)
    champion.load()
    v2, _ = add_version(1.0)
    # The promoted artifact is replaced behind its manifest (the move itself verified it).
    bucket = storage_client.bucket(bucket_names["registry"])
    blob = bucket.blob(f"{MODEL}/versions/{v2:06d}/{ARTIFACT}")
    blob.upload_from_string(_bytes(_estimator(5.0)))
    clock.advance(10)
    assert champion.refresh() is False
    status = champion.status()
    assert status["version"] == v1
    assert status["failing_version"] == v2
    assert "sha256" in status["last_error"]["message"]
    assert f"still serving v{v1}" in status["last_error"]["message"]
    np.testing.assert_array_equal(champion.predict(X[:5]), est1.predict(X[:5]))
    # The failed version is retried only after its delay, not on every check...
    clock.advance(5)
    assert champion.refresh() is False
    assert champion.status()["failing_version"] == v2
    # ...and a good champion promoted meanwhile is taken at once.
    v3, est3 = add_version(3.0)
    clock.advance(1)
    assert champion.refresh() is True
    status = champion.status()
    assert status["version"] == v3
    assert status["failing_version"] is None
    assert status["last_swap"]["from"] == v1
    np.testing.assert_array_equal(champion.predict(X[:5]), est3.predict(X[:5]))


def test_a_pinned_version_is_served_and_never_swapped(registry, add_version) -> None:
    v1, est1 = add_version(0.01)
    add_version(1.0)  # the champion is v2
    clock = Clock()
    champion = Champion(MODEL, registry, version=v1, check_interval=1, clock=clock)
    assert champion.load().version == v1
    clock.advance(100)
    assert champion.current().version == v1
    assert champion.refresh() is False
    status = champion.status()
    assert status["pinned"] is True
    assert status["version"] == v1
    np.testing.assert_array_equal(champion.predict(X[:5]), est1.predict(X[:5]))


def test_the_cache_saves_the_download_and_a_tampered_cache_file_is_refused(
    registry, add_version, tmp_path
) -> None:
    v1, est1 = add_version(0.01)
    first = Champion(MODEL, registry, cache_dir=tmp_path)
    assert first.load().source == "registry"
    cached = tmp_path / MODEL / f"v{v1:06d}.joblib"
    assert cached.read_bytes() == registry.read_file(
        MODEL, v1, ARTIFACT, registry.manifest(MODEL, v1)
    )
    again = Champion(MODEL, registry, cache_dir=tmp_path)
    assert again.load().source == "cache"
    np.testing.assert_array_equal(again.predict(X[:5]), est1.predict(X[:5]))
    cached.write_bytes(_bytes(_estimator(7.0)))  # not what the manifest says
    third = Champion(MODEL, registry, cache_dir=tmp_path)
    assert third.load().source == "registry"
    np.testing.assert_array_equal(third.predict(X[:5]), est1.predict(X[:5]))


def test_a_registry_that_refuses_at_startup_leaves_the_newest_verified_cache(
    add_version, registry, storage_client, tmp_path
) -> None:
    """Startup while the registry answers every request with an error the client does not
    retry (a 400 here: the emulator refuses the bucket name; in production a 403 after an IAM
    change): the newest cached version whose bytes match its cached manifest is served."""
    v1, est1 = add_version(0.01)
    v2, _ = add_version(1.0)
    assert Champion(MODEL, registry, cache_dir=tmp_path, version=v1).load().source == "registry"
    assert Champion(MODEL, registry, cache_dir=tmp_path).load().version == v2
    (tmp_path / MODEL / f"v{v2:06d}.joblib").write_bytes(b"tampered")  # v2's copy is refused
    with _forbidding_server() as url:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="warden-test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": url},
        )
        refusing = Registry(client, "registry")
        champion = Champion(MODEL, refusing, cache_dir=tmp_path)
        loaded = champion.load()
        assert (loaded.version, loaded.source) == (v1, "cache")
        np.testing.assert_array_equal(champion.predict(X[:5]), est1.predict(X[:5]))
        message = champion.status()["last_error"]["message"]
        assert "registry unavailable" in message
        assert "403" in message
        with pytest.raises(Forbidden):  # without a cache: the error itself
            Champion(MODEL, refusing).load()


@contextlib.contextmanager
def _forbidding_server() -> Iterator[str]:
    """An endpoint answering every request as Cloud Storage answers a caller without
    permission: 403 and the JSON API's error body
    (https://cloud.google.com/storage/docs/json_api/v1/status-codes#403-forbidden)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps(
        {
            "error": {
                "code": 403,
                "message": "serving@p.iam.gserviceaccount.com does not have "
                "storage.objects.get access to the Google Cloud Storage object.",
                "errors": [{"domain": "global", "reason": "forbidden", "message": "..."}],
            }
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(403)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_serving_module_is_light_until_a_model_loads(
    registry, add_version, gcs_emulator, bucket_names
) -> None:
    add_version(0.01)
    script = """
import json, sys
import warden.serving
from warden.serving import Champion
champion = Champion.from_env("risk")
heavy = lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "pandas"))
grpcish = lambda: sorted(
    m for m in sys.modules
    if m.startswith(("google.cloud.pubsub", "google.cloud.monitoring", "google.cloud.logging"))
)
before = {"heavy": heavy(), "grpc": grpcish()}
loaded = champion.load()
print(json.dumps({"before": before, "after_grpc": grpcish(), "sklearn": "sklearn" in sys.modules,
                  "version": loaded.version}))
"""
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_PROJECT": "warden-test",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == {"heavy": [], "grpc": []}
    assert got["after_grpc"] == []
    assert got["sklearn"] is True  # the pickle brought it, as it must
    assert got["version"] == 1


def test_a_check_never_blocks_a_request(registry, add_version) -> None:
    """While a check is loading a new version, requests keep answering from the old one."""
    v1, _ = add_version(0.01)
    v2, _ = add_version(1.0)  # promoted: the check below will load it
    clock = Clock()
    champion = Champion(MODEL, registry, version=None, check_interval=1, clock=clock)
    release = threading.Event()
    entered = threading.Event()
    fetch = champion._fetch

    def slow_fetch(version: int):  # a big artifact still downloading
        entered.set()
        assert release.wait(60)
        return fetch(version)

    # Load v1 as the champion first, as if v2 were promoted after startup.
    registry.promote(MODEL, v1, reason="back", actor="t")
    champion.load()
    registry.promote(MODEL, v2, reason="forward", actor="t")
    champion._fetch = slow_fetch  # type: ignore[method-assign]
    clock.advance(1)
    assert champion.current().version == v1  # starts the check in the background
    assert entered.wait(60)
    answered = [champion.current().version for _ in range(100)]  # the load is held meanwhile
    assert answered == [v1] * 100
    assert champion.status()["checks"] == 1  # one check in flight, not one per request
    release.set()
    wait_for(lambda: champion.status()["version"] == v2, 60, "the swap once loaded")


def test_a_corrupt_champion_at_startup_serves_the_one_before_it_until_repaired(
    registry, add_version, storage_client, bucket_names
) -> None:
    """A new instance starting while the champion's artifact is corrupt serves the previous
    champion (what the instances already running serve), says why, and takes the champion
    once its artifact matches the manifest again (restored from a backup, say)."""
    v1, est1 = add_version(0.01)
    v2, est2 = add_version(1.0)
    blob = storage_client.bucket(bucket_names["registry"]).blob(
        f"{MODEL}/versions/{v2:06d}/{ARTIFACT}"
    )
    good = blob.download_as_bytes()
    blob.upload_from_string(b"not a pickle")
    clock = Clock()
    champion = Champion(MODEL, registry, check_interval=10, clock=clock)
    loaded = champion.load()
    assert loaded.version == v1
    status = champion.status()
    assert status["failing_version"] == v2
    assert "sha256" in status["last_error"]["message"]
    np.testing.assert_array_equal(champion.predict(X[:5]), est1.predict(X[:5]))
    blob.upload_from_string(good)  # repaired
    clock.advance(10)  # its retry delay
    assert champion.refresh() is True
    assert champion.status()["version"] == v2
    assert champion.status()["failing_version"] is None
    np.testing.assert_array_equal(champion.predict(X[:5]), est2.predict(X[:5]))
