"""On the local stack, in real time: a scheduled job that is paused past its staleness limit
(twice its period) turns health degraded, and the uptime check's ``fail_on=stale`` gets a 503.

The housekeeping job ticks every minute here, so its limit is two minutes: the test takes about
three and a half, most of it waiting for the clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml

from warden.examples import seed_examples

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer-risk"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("staleness")
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"] = {MODEL: raw["models"][MODEL]}
    far = (datetime.now(UTC).hour + 12) % 24  # no retrain tick during the test
    raw["models"][MODEL]["schedules"] = {
        "retrain": {"cron": f"0 {far} * * *", "timezone": "Etc/UTC"},
        "housekeeping": {"cron": "* * * * *", "timezone": "Etc/UTC"},
    }
    raw.pop("alerting")  # no flush ticks: nothing but housekeeping runs on the clock
    config = tmp / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_dir = tmp / "run"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"}
    }
    log = (tmp / "stack.out").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "warden.cli", "local", "up"),
            *("--run-dir", str(run_dir), "--config", str(config), "--speed", "1"),
            *("--only", "retrain_model,housekeeping,health"),  # a light stack: it runs long
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,
    )
    try:
        state_file = run_dir / "stack.json"
        _wait(lambda: state_file.exists() or proc.poll() is not None, 180, "stack.json")
        assert proc.poll() is None, (tmp / "stack.out").read_text()
        state = json.loads(state_file.read_text())
        client_env = {**env, **state["env"]}
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = client_env["STORAGE_EMULATOR_HOST"]
        try:
            gcs = storage.Client(project=state["project"])
            seed_examples(
                gcs,
                bucket=state["env"]["WARDEN_DATA_BUCKET"],
                end=datetime.now(UTC).date(),
                days=5,
                models=(MODEL,),
            )
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST")
        yield {"state": state, "env": client_env, "tmp": tmp}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def warden(stack: dict, *args: str) -> dict | list:
    out = subprocess.run(
        [sys.executable, "-m", "warden.cli", "--json", *args],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=stack["tmp"],
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _health(stack: dict, query: str = "") -> requests.Response:
    return requests.get(stack["state"]["functions"]["health"] + query, timeout=30)


def test_a_paused_job_turns_health_degraded_past_its_staleness_limit(stack) -> None:
    warden(stack, "retrain", MODEL)
    _wait(lambda: warden(stack, "versions", MODEL), 120, "a first version")

    def housekeeping() -> dict:
        return _health(stack).json()["models"][MODEL]["jobs"]["housekeeping"]

    _wait(lambda: housekeeping()["last_success_at"], 150, "a housekeeping tick")
    fresh = _health(stack, "?fail_on=stale")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["status"] == "ok"
    assert housekeeping()["stale_after_seconds"] == 120

    warden(stack, "jobs", "pause", f"{MODEL}-housekeeping")
    paused_at = time.monotonic()
    body = _wait(
        lambda: (b := _health(stack).json())["status"] == "degraded" and b, 240, "staleness"
    )
    # Not before the limit: the last success was at most a minute before the pause.
    assert time.monotonic() - paused_at > 50
    assert body["stale"] == [f"{MODEL}/housekeeping"]
    assert body["models"][MODEL]["detail"] == "stale: housekeeping"
    assert _health(stack).status_code == 200  # degraded is not down...
    assert _health(stack, "?fail_on=stale").status_code == 503  # ...but the uptime check fails

    # Resuming brings it back on the next tick.
    warden(stack, "jobs", "resume", f"{MODEL}-housekeeping")
    _wait(lambda: _health(stack).json()["status"] == "ok", 150, "recovery")
