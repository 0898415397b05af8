"""health over HTTP: champion verification, staleness, 503 on corruption, and a light import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from functions_framework import create_app

from events import binary_headers, envelope, retrain_payload
from warden.store.registry import ARTIFACT
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
                requests.get(base["health"], timeout=2)
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
