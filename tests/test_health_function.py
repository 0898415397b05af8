"""health over HTTP: champion verification, staleness, 503 on corruption, and a light import."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import joblib
import pytest
import requests
from functions_framework import create_app
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from events import binary_headers, envelope, retrain_payload
from warden import runtime
from warden.settings import Settings
from warden.store.registry import ARTIFACT, MANIFEST, Registry, sha256_hex
from warden_local.process import free_port

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 20)


@pytest.fixture
def seeded(seed, make_runtime):
    seed(days=7, customer_rows=1200, seed=3)
    return make_runtime()


def _retrain_all() -> None:
    app = create_app("retrain_model", str(ROOT / "functions/retrain_model/main.py"), "cloudevent")
    client = app.test_client()
    for model in ("customer-segments", "breast-cancer-risk"):
        body = envelope(retrain_payload(model, as_of=AS_OF.isoformat()))
        assert (
            client.post("/", data=json.dumps(body), headers=binary_headers(body)).status_code == 200
        )


def _health(query: str = ""):
    app = create_app("health", str(ROOT / "functions/health/main.py"), "http")
    return app.test_client().get("/" + query)


def test_a_huge_url_is_refused_before_any_work(seeded) -> None:
    from warden.web import MAX_URL_BYTES

    assert _health(f"?pad={'x' * MAX_URL_BYTES}").status_code == 414
    assert _health(f"?pad={'x' * (MAX_URL_BYTES // 2)}").status_code == 200


def test_health_reports_degraded_until_models_have_champions(seeded) -> None:
    resp = _health()
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "degraded"
    assert body["models"]["customer-segments"]["detail"] == "no champion yet"


def test_health_verifies_champions_and_reports_retrain_age(seeded) -> None:
    _retrain_all()
    resp = _health()
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.get_json()
    assert body["status"] == "ok"
    for model in ("customer-segments", "breast-cancer-risk"):
        entry = body["models"][model]
        assert entry["champion"]["version"] == 1
        assert entry["verified"] is True
        assert "loaded" not in entry
        assert 0 <= entry["seconds_since_last_retrain"] < 120
        assert entry["last_retrain_outcome"] == "success"
    deep = _health("?deep=true").get_json()
    assert deep["deep"] is True
    assert all(m["loaded"] is True for m in deep["models"].values())


def test_a_job_past_twice_its_period_is_stale_and_fails_the_strict_check(seeded) -> None:
    _retrain_all()
    fresh = _health("?fail_on=stale")
    assert fresh.status_code == 200
    body = fresh.get_json()
    assert body["stale"] == []
    segments = body["models"]["customer-segments"]["jobs"]
    assert segments["retrain"]["stale_after_seconds"] == 14 * 24 * 3600  # weekly cron
    assert segments["retrain"]["stale"] is False
    assert segments["monitor"]["last_success_at"] is None  # never ran: not stale
    assert body["versions"]["scikit-learn"]  # dependency versions are reported
    assert body["versions"]["python"].startswith("3.")

    # Eight days later the daily breast-cancer retrain (limit ~2 days) is stale; the weekly
    # customer-segments retrain (limit 14 days) is not.
    real_clock = seeded.clock
    seeded.clock = lambda: real_clock() + timedelta(days=8)
    lenient = _health()
    assert lenient.status_code == 200
    body = lenient.get_json()
    assert body["status"] == "degraded"
    assert body["stale"] == ["breast-cancer-risk/retrain"]
    assert body["models"]["breast-cancer-risk"]["detail"] == "stale: retrain"
    assert body["models"]["customer-segments"]["status"] == "ok"
    strict = _health("?fail_on=stale")
    assert strict.status_code == 503
    assert _health("?fail_on=maybe").status_code == 400


def test_health_is_503_when_a_champion_is_tampered(seeded) -> None:
    _retrain_all()
    seeded.registry().bucket.blob(
        f"breast-cancer-risk/versions/000001/{ARTIFACT}"
    ).upload_from_string(b"tampered")
    resp = _health()
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unhealthy"
    assert body["models"]["breast-cancer-risk"]["verified"] is False
    assert "does not match" in body["models"]["breast-cancer-risk"]["detail"]
    assert body["models"]["customer-segments"]["status"] == "ok"


def test_health_is_503_when_the_registry_is_unreachable(seeded, storage_client) -> None:
    storage_client.bucket(seeded.settings.registry_bucket).delete(force=True)
    resp = _health()
    assert resp.status_code == 503
    assert "registry check failed" in resp.get_json()["detail"]


_PROBE = textwrap.dedent("""
    import json, sys, time
    from functions_framework import create_app
    app = create_app("health", sys.argv[1], "http")
    client = app.test_client()
    t = time.perf_counter(); shallow = client.get("/"); shallow_s = time.perf_counter() - t
    light = "sklearn" not in sys.modules and "pandas" not in sys.modules
    deep = client.get("/?deep=true")
    print(json.dumps({"shallow": shallow.status_code, "shallow_s": shallow_s, "light": light,
                      "deep": deep.status_code, "sklearn_after_deep": "sklearn" in sys.modules,
                      "body": shallow.get_json()}))
""")


def test_health_does_not_import_scikit_learn_unless_asked_to_load(seeded, gcs_emulator) -> None:
    _retrain_all()
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_REGISTRY_BUCKET": seeded.settings.registry_bucket,
        "WARDEN_CONFIG": str(ROOT / "warden.yaml"),
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_METRICS": "off",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT / "functions/health/main.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shallow"] == 200
    assert result["body"]["status"] == "ok"
    assert result["light"] is True
    assert result["deep"] == 200
    assert result["sklearn_after_deep"] is True
    # Reported, not asserted: timing belongs in bench/ (see bench/health.py).
    print(f"health (shallow, warm app) answered in {result['shallow_s'] * 1000:.0f} ms")


def test_real_functions_framework_servers_end_to_end(seeded, gcs_emulator) -> None:
    """The functions-framework CLI serving both functions; events POSTed over real HTTP."""
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_REGISTRY_BUCKET": seeded.settings.registry_bucket,
        "WARDEN_DATA_BUCKET": seeded.settings.data_bucket,
        "WARDEN_CONFIG": str(ROOT / "warden.yaml"),
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_METRICS": "off",
    }
    procs = {}
    ports = {"retrain_model": free_port(), "health": free_port()}
    try:
        for target, sig in (("retrain_model", "cloudevent"), ("health", "http")):
            procs[target] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "functions_framework",
                    "--target",
                    target,
                    "--source",
                    str(ROOT / f"functions/{target}/main.py"),
                    "--signature-type",
                    sig,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports[target]),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        base = {t: f"http://127.0.0.1:{p}" for t, p in ports.items()}
        deadline = time.monotonic() + 60
        while True:
            try:
                # Connect within 2 s (refused until the server listens), then let it answer
                # at its pace: its first answer reads the registry, seconds on a loaded machine.
                requests.get(base["health"], timeout=(2, 60))
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "health server did not start"
                time.sleep(0.2)
        body = envelope(retrain_payload("breast-cancer-risk", as_of=AS_OF.isoformat()))
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = requests.post(
                    base["retrain_model"],
                    data=json.dumps(body),
                    headers=binary_headers(body),
                    timeout=120,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "retrain server did not start"
                time.sleep(0.2)
        assert resp.status_code == 200, resp.text
        health = requests.get(base["health"], timeout=10).json()
        assert health["models"]["breast-cancer-risk"]["champion"]["version"] == 1
        # Structured logs: the retrain process wrote JSON lines with severity.
        procs["retrain_model"].terminate()
        out, _ = procs["retrain_model"].communicate(timeout=20)
        lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
        assert any(
            r.get("severity") == "INFO" and "registered" in r.get("message", "") for r in lines
        )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


# -- the cost of a shallow check: object metadata, never the artifact's bytes ------------------
class MediaBytes(requests.Session):
    """Counts the body bytes of every media download (``alt=media``), per object name."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.read: dict[str, int] = {}

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        parts = urlsplit(url)
        if "alt=media" in parts.query:
            name = unquote(parts.path.partition("/o/")[2])
            size = len(response.content)  # the whole body: what a download fetches
            with self._lock:
                self.read[name] = self.read.get(name, 0) + size
        return response

    def reset(self) -> None:
        with self._lock:
            self.read.clear()


@pytest.fixture
def counted(gcs_emulator, bucket_names):
    """A runtime (installed) whose storage client counts the bytes of media downloads."""
    session = MediaBytes()
    client = storage.Client(
        project="warden-test", credentials=AnonymousCredentials(), _http=session
    )
    settings = Settings(
        project="warden-test",
        registry_bucket=bucket_names["registry"],
        alert_bucket=bucket_names["alerts"],
        data_bucket=bucket_names["data"],
        backup_bucket=bucket_names["backup"],
        metrics_enabled=False,
        config_path=ROOT / "warden.yaml",
    )
    rt = runtime.build(settings, storage=client)
    runtime.install(rt)
    yield rt, session
    runtime.install(None)


SEG = "customer-segments"
BIG = 50 * 1024 * 1024


def _pickled(payload: bytes) -> bytes:
    """A loadable joblib artifact around ``payload`` (deep health only loads it)."""
    buf = io.BytesIO()
    joblib.dump(payload, buf)
    return buf.getvalue()


def _champion(registry: Registry, data: bytes, model: str = SEG) -> int:
    version = registry.claim_version(model, run_id="test")
    registry.register(model, version, {ARTIFACT: data}, {"task": "test"})
    registry.promote(model, version, reason="test", actor="test")  # one full sha256 check
    return version


def _artifact_name(version: int, model: str = SEG) -> str:
    return f"{model}/versions/{version:06d}/{ARTIFACT}"


def test_shallow_health_reads_no_artifact_bytes_and_deep_reads_them_all(counted) -> None:
    rt, session = counted
    data = _pickled(os.urandom(BIG))
    assert len(data) >= BIG
    version = _champion(rt.registry(), data)
    artifact = _artifact_name(version)
    record = rt.registry().manifest(SEG, version)["files"][ARTIFACT]
    assert record["crc32c"]
    assert record["md5"]
    assert record["generation"]

    session.reset()
    shallow = _health()
    entry = shallow.get_json()["models"][SEG]
    assert entry["status"] == "ok", entry
    assert entry["verified"] is True
    assert entry["verified_by"] == "metadata"
    assert "loaded" not in entry
    assert artifact not in session.read  # not one byte of the artifact
    assert sum(session.read.values()) < 64 * 1024  # the alias, manifest and status objects

    session.reset()
    deep = _health("?deep=true")
    entry = deep.get_json()["models"][SEG]
    assert entry["status"] == "ok", entry
    assert entry["loaded"] is True
    assert entry["verified_by"] == "sha256"
    assert session.read[artifact] >= len(data)


@pytest.mark.parametrize("change", ["same size", "other size", "deleted"])
def test_an_artifact_replaced_behind_the_manifest_is_unhealthy_without_reading_it(
    counted, change: str
) -> None:
    rt, session = counted
    registry = rt.registry()
    data = _pickled(os.urandom(4096))
    version = _champion(registry, data)
    artifact = _artifact_name(version)
    blob = registry.bucket.blob(artifact)
    if change == "deleted":
        blob.delete()
    else:
        other = bytes(b ^ 0xFF for b in data) if change == "same size" else data + b"\0"
        blob.upload_from_string(other)  # a new generation, bypassing the registry

    session.reset()
    resp = _health()
    assert resp.status_code == 503
    body = resp.get_json()
    entry = body["models"][SEG]
    assert body["status"] == entry["status"] == "unhealthy"
    assert entry["verified"] is False
    assert artifact not in session.read
    registered = registry.manifest(SEG, version)["files"][ARTIFACT]["generation"]
    if change == "deleted":
        assert entry["detail"].endswith(f"{artifact} is missing")
        return
    assert "does not match the manifest" in entry["detail"]
    assert f"registered at generation {registered}" in entry["detail"]
    assert f"generation {registry.bucket.get_blob(artifact).generation}" in entry["detail"]
    if change == "same size":
        assert "crc32c" in entry["detail"]
        assert "md5" in entry["detail"]
        assert "size" not in entry["detail"]
    else:
        assert f"size {len(data) + 1} (manifest: {len(data)})" in entry["detail"]


def test_a_restored_champion_is_healthy_its_sha256_settles_the_new_generation(counted) -> None:
    """``warden restore`` writes the manifest as registered and every file anew: the same bytes
    at another generation, which the full sha256 settles."""
    from warden.jobs.backup import restore, snapshot

    rt, session = counted
    registry = rt.registry()
    data = _pickled(os.urandom(4096))
    version = _champion(registry, data)
    artifact = _artifact_name(version)
    registered = registry.manifest(SEG, version)["files"][ARTIFACT]["generation"]
    snap = snapshot(rt, model=SEG, snapshot_id="20261120-health")
    for blob in rt.clients.storage.list_blobs(rt.settings.registry_bucket):
        blob.delete()
    assert restore(rt, snap.id, model=SEG, actor="test").ok
    assert registry.bucket.get_blob(artifact).generation != registered

    session.reset()
    entry = _health().get_json()["models"][SEG]
    assert entry["status"] == "ok", entry
    assert entry["verified_by"] == "sha256"
    assert session.read[artifact] == len(data)

    registry.bucket.blob(artifact).upload_from_string(bytes(b ^ 0xFF for b in data))
    entry = _health().get_json()["models"][SEG]
    assert entry["status"] == "unhealthy"
    assert "does not match the manifest" in entry["detail"]


@pytest.mark.parametrize("recorded", [("sha256", "size"), ("sha256", "size", "generation")])
def test_a_manifest_without_checksums_falls_back_to_the_full_sha256(
    counted, recorded: tuple[str, ...]
) -> None:
    """Versions registered before crc32c and md5 were recorded (the manifest written by hand)."""
    rt, session = counted
    registry = rt.registry()
    version = registry.claim_version(SEG, run_id="older")
    vdir = f"{SEG}/versions/{version:06d}/"
    data = _pickled(os.urandom(4096))
    blob = registry.bucket.blob(vdir + ARTIFACT)
    blob.upload_from_string(data, if_generation_match=0)
    full = {"sha256": sha256_hex(data), "size": len(data), "generation": blob.generation}
    manifest = {
        "schema": 1,
        "model": SEG,
        "version": version,
        "task": "test",
        "files": {ARTIFACT: {k: full[k] for k in recorded}},
    }
    registry.bucket.blob(vdir + MANIFEST).upload_from_string(
        json.dumps(manifest), content_type="application/json", if_generation_match=0
    )
    registry.promote(SEG, version, reason="older version", actor="test")

    session.reset()
    entry = _health().get_json()["models"][SEG]
    assert entry["status"] == "ok", entry
    assert entry["verified_by"] == "sha256"
    assert session.read[vdir + ARTIFACT] == len(data)  # downloaded and hashed

    blob.upload_from_string(bytes(b ^ 0xFF for b in data))  # same size, other bytes
    resp = _health()
    assert resp.status_code == 503
    entry = resp.get_json()["models"][SEG]
    assert entry["verified"] is False
    assert "does not match the manifest's" in entry["detail"]
