"""End to end: `warden local up` in a subprocess, driven only from the outside — the `warden`
CLI, the Cloud Scheduler API, Pub/Sub and Cloud Storage through the real client libraries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stack_process import local_stack, wait_for
from warden.examples import seed_examples
from warden.runs import RunLedger

ROOT = Path(__file__).resolve().parents[1]
SEG, RISK = "customer-segments", "breast-cancer-risk"
SPEED = 3600.0  # a virtual hour per real second: a daily job ticks every 24 s


def _far_hour(now: datetime) -> int:
    """An hour of day whose cron slot is far from the real clock, so a real publish time never
    falls in the 2-minute slot window that would make a forced run look like a duplicate tick."""
    return (now.hour + 12) % 24


def _wait(predicate, timeout: float, what: str):
    return wait_for(predicate, timeout, what)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("stack")
    now = datetime.now(UTC)
    hour = _far_hour(now)
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    for model in raw["models"].values():
        model["schedules"] = {"retrain": {"cron": f"0 {hour} * * *", "timezone": "Etc/UTC"}}
    config = tmp / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    slot = now.replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=1)
    mp = pytest.MonkeyPatch()
    clock_start = slot - timedelta(seconds=20 * SPEED)
    with local_stack(tmp, config, speed=SPEED, clock_start=clock_start) as running:
        try:
            # Data lands before the first tick (20 real seconds after start).
            for key in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
                mp.setenv(key, running.env[key])
            from google.cloud import storage

            gcs = storage.Client(project=running.state["project"])
            seed_examples(
                gcs,
                bucket=running.state["env"]["WARDEN_DATA_BUCKET"],
                end=now.date(),
                days=5,
                customer_rows=1500,
            )
            yield {
                "proc": running.proc,
                "state": running.state,
                "env": running.env,
                "run_dir": running.run_dir,
                "gcs": gcs,
                "config": config,
                "tmp": tmp,
                "running": running,
            }
        finally:
            mp.undo()


def warden(stack: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return stack["running"].warden(*args, check=check)


def versions(stack: dict, model: str) -> list[int]:
    return [r["version"] for r in json.loads(warden(stack, "versions", model).stdout)]


def deliveries(stack: dict) -> list[dict]:
    path = stack["run_dir"] / "deliveries.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _publish(stack: dict, payload: bytes, **attributes: str) -> str:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack["state"]["project"], "retrain-requests")
    return publisher.publish(topic, payload, **attributes).result(timeout=30)


def test_a_scheduled_tick_produces_a_version(stack) -> None:
    for model in (RISK, SEG):
        _wait(lambda m=model: versions(stack, m), 150, f"{model} v1 from the scheduled tick")
    jobs = json.loads(warden(stack, "jobs", "list").stdout)
    retrain_jobs = [j for j in jobs if j["job"].endswith("-retrain")]
    assert {j["job"] for j in retrain_jobs} == {f"{RISK}-retrain", f"{SEG}-retrain"}
    assert all(j["last_attempt"] for j in retrain_jobs)
    # At this clock speed the per-minute alert flush tick starts paused (docs/decisions.md).
    assert {j["job"]: j["state"] for j in jobs}["alerts-flush"] == "PAUSED"
    risk = json.loads(warden(stack, "show", f"{RISK}@1").stdout)
    assert risk["request"]["reason"] == "schedule"
    assert risk["gate"]["passed"] is True


def test_jobs_run_goes_through_the_scheduler_api(stack) -> None:
    _wait(lambda: versions(stack, SEG), 150, "first version")
    warden(stack, "jobs", "pause", f"{SEG}-retrain")  # keep ticks out of the count
    before = versions(stack, SEG)
    out = json.loads(warden(stack, "jobs", "run", f"{SEG}-retrain").stdout)
    assert out["job"] == f"{SEG}-retrain"
    _wait(lambda: len(versions(stack, SEG)) == len(before) + 1, 90, "a version from jobs run")
    warden(stack, "jobs", "resume", f"{SEG}-retrain")


def test_a_paused_job_does_not_tick(stack) -> None:
    _wait(lambda: versions(stack, SEG) and versions(stack, RISK), 150, "first versions")
    paused = json.loads(warden(stack, "jobs", "pause", f"{SEG}-retrain").stdout)
    assert paused["state"] == "PAUSED"
    seg_before, risk_before = versions(stack, SEG), versions(stack, RISK)
    # The unpaused job ticking again proves a daily slot passed on the virtual clock.
    _wait(lambda: len(versions(stack, RISK)) > len(risk_before), 90, "the unpaused job's tick")
    time.sleep(3)  # anything the paused job could have published would have landed by now
    assert versions(stack, SEG) == seg_before
    listed = {j["job"]: j for j in json.loads(warden(stack, "jobs", "list").stdout)}
    assert listed[f"{SEG}-retrain"]["state"] == "PAUSED"
    warden(stack, "jobs", "resume", f"{SEG}-retrain")


def test_retryable_failure_is_redelivered_then_succeeds(stack) -> None:
    """Another instance holds the run's lease: 5xx, redelivered by the emulator; once the lease
    runs out, a redelivery takes the run over and registers the version."""
    from google.cloud import storage

    scheduled = "2031-01-01T00:00:00Z"
    key = f"retrain:{RISK}:scheduled:2031-01-01T00:00:00+00:00"
    registry = stack["env"]["WARDEN_REGISTRY_BUCKET"]
    lease_until = datetime.now(UTC) + timedelta(seconds=6)
    marker = {
        "model": RISK,
        "kind": "retrain",
        "key": key,
        "run_id": "crashed-instance",
        "status": "running",
        "started_at": datetime.now(UTC).isoformat(),
        "lease_until": lease_until.isoformat(),
        "attempt": 1,
    }
    storage.Client(project=stack["state"]["project"]).bucket(registry).blob(
        RunLedger.marker_name(RISK, "retrain", key)
    ).upload_from_string(json.dumps(marker))
    before = versions(stack, RISK)
    payload = {
        "schema": 1,
        "model": RISK,
        "reason": "backfill",
        "scheduled_time": scheduled,
        "as_of": datetime.now(UTC).date().isoformat(),
    }
    message_id = _publish(stack, json.dumps(payload).encode(), model=RISK)
    _wait(lambda: len(versions(stack, RISK)) > len(before), 120, "the retried run's version")
    mine = [d for d in deliveries(stack) if d["message_id"] == message_id]
    assert len(mine) >= 2
    assert mine[0]["status"] >= 500  # RunInProgress → retry
    assert 200 <= mine[-1]["status"] < 300


def test_a_permanent_failure_is_not_redelivered_forever(stack) -> None:
    message_id = _publish(stack, b"this is not json", model=RISK)
    _wait(
        lambda: [d for d in deliveries(stack) if d["message_id"] == message_id], 60, "the delivery"
    )
    time.sleep(5)  # the emulator redelivers a non-2xx after ~1 s: give it several chances
    mine = [d for d in deliveries(stack) if d["message_id"] == message_id]
    assert len(mine) == 1
    assert 200 <= mine[0]["status"] < 300
    log = (stack["run_dir"] / "function-retrain_model.log").read_text()
    assert "message.data is not valid JSON" in log


def test_health_and_metrics_from_the_outside(stack) -> None:
    _wait(lambda: versions(stack, RISK), 150, "a version")
    import urllib.request

    url = stack["state"]["functions"]["health"]

    def verified() -> dict | None:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
        return body if body["models"][RISK].get("verified") else None

    body = _wait(verified, 60, "a verified champion")  # promotion follows registration
    assert body["models"][RISK]["champion"]["version"] >= 1

    def auc_rows() -> list:
        rows = json.loads(warden(stack, "metrics", RISK).stdout)
        return [r for r in rows if r["metric"] == "model/roc_auc"]

    rows = _wait(auc_rows, 60, "roc_auc points")  # metrics follow the run's completion
    assert all(r["value"] > 0.9 for r in rows)
    assert {r["labels"]["model"] for r in rows} == {RISK}


def test_local_env_points_a_shell_at_the_stack(stack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "warden.cli", "local", "env", "--run-dir", str(stack["run_dir"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert exports["STORAGE_EMULATOR_HOST"] == stack["env"]["STORAGE_EMULATOR_HOST"]
    assert exports["WARDEN_SCHEDULER_ENDPOINT"].startswith("http://127.0.0.1:")
    assert exports["WARDEN_CONFIG"] == str(stack["config"])


def test_stack_shuts_down_cleanly_on_ctrl_c(stack) -> None:
    """Last in the module: SIGINT stops every process the stack started."""
    pids = stack["state"]["pids"]
    stack["proc"].send_signal(signal.SIGINT)
    assert stack["proc"].wait(timeout=60) == 0
    alive = []
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
            alive.append(name)
        except ProcessLookupError:
            pass
    assert alive == []
    assert not (stack["run_dir"] / "stack.json").exists()
