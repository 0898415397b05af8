"""End to end: `warden local up` in a subprocess, driven only from the outside — the `warden`
CLI, the Cloud Scheduler API, Pub/Sub and Cloud Storage through the real client libraries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from stack_process import local_stack, wait_for, write_run_marker
from warden_local.examples import seed_examples
from warden_local.pubsub import read_deliveries
from warden_local.stack import FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
SEG, RISK = "customer-segments", "breast-cancer-risk"
SPEED = 3600.0  # a virtual hour per real second: a daily job ticks every 24 s


def _far_hour(now: datetime) -> int:
    """An hour of day whose cron slot is far from the real clock, so a real publish time never
    falls in the 2-minute slot window that would make a forced run look like a duplicate tick."""
    return (now.hour + 12) % 24


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    return wait_for(predicate, timeout, what, interval)


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
    """MODEL's versions as `warden versions` lists them."""
    return [r["version"] for r in json.loads(warden(stack, "versions", model).stdout)]


def stored(stack: dict, model: str) -> list[int]:
    """MODEL's versions read in-process: what waits poll (cheap; see RunningStack)."""
    return stack["running"].version_numbers(model)


def deliveries(stack: dict, message_id: str | None = None) -> list[dict]:
    """What the job functions logged per delivery (``warden.jobs.entrypoints``), as Cloud Logging
    would show it: one structured line per delivery outcome, in order."""
    found = read_deliveries(*sorted(stack["run_dir"].glob("function-*.log")))
    return [d for d in found if message_id is None or d["message_id"] == message_id]


def _publish(stack: dict, payload: bytes, **attributes: str) -> str:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack["state"]["project"], "retrain-requests")
    return publisher.publish(topic, payload, **attributes).result(timeout=30)


def test_a_scheduled_tick_produces_a_version(stack) -> None:
    for model in (RISK, SEG):
        _wait(lambda m=model: stored(stack, m), 150, f"{model} v1 from the scheduled tick")
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
    _wait(lambda: stored(stack, SEG), 150, "first version")
    warden(stack, "jobs", "pause", f"{SEG}-retrain")  # keep ticks out of the count
    before = versions(stack, SEG)
    out = json.loads(warden(stack, "jobs", "run", f"{SEG}-retrain").stdout)
    assert out["job"] == f"{SEG}-retrain"
    _wait(lambda: len(stored(stack, SEG)) == len(before) + 1, 90, "a version from jobs run")
    assert len(versions(stack, SEG)) == len(before) + 1
    warden(stack, "jobs", "resume", f"{SEG}-retrain")


def test_a_paused_job_does_not_tick(stack) -> None:
    _wait(lambda: stored(stack, SEG) and stored(stack, RISK), 150, "first versions")
    paused = json.loads(warden(stack, "jobs", "pause", f"{SEG}-retrain").stdout)
    assert paused["state"] == "PAUSED"
    risk_before = versions(stack, RISK)
    attempted = {
        j["job"]: j["last_attempt"] for j in json.loads(warden(stack, "jobs", "list").stdout)
    }

    # The unpaused job's next attempt proves a daily slot passed on the virtual clock. Both jobs
    # share the slot, so the Scheduler fired (or skipped) them in the same pass, and it records
    # an attempt as soon as it has published: no sleep needed to see that the paused one did not.
    # (A version count is no marker here: a retrain of the slot before the pause may still land.)
    def last_attempt() -> str | None:  # the REST API the CLI reads, polled in-process
        return stack["running"].scheduler_job(f"{RISK}-retrain").get("lastAttemptTime")

    first = last_attempt()
    _wait(
        lambda: last_attempt() != first,
        90,
        "the unpaused job's tick",
    )
    after = {j["job"]: j for j in json.loads(warden(stack, "jobs", "list").stdout)}
    assert after[f"{RISK}-retrain"]["last_attempt"] != attempted[f"{RISK}-retrain"]
    assert after[f"{SEG}-retrain"]["last_attempt"] == attempted[f"{SEG}-retrain"]
    assert after[f"{SEG}-retrain"]["state"] == "PAUSED"
    # ...and the unpaused job's tick did its work.
    _wait(lambda: len(stored(stack, RISK)) > len(risk_before), 90, "the unpaused job's version")
    warden(stack, "jobs", "resume", f"{SEG}-retrain")


def test_the_triggers_are_terraforms_push_subscriptions_with_delivery_json(stack) -> None:
    """Read back from the emulator: per event function, modules/function's subscription with
    exactly terraform/delivery.json's policy; per topic, pubsub.tf's dead-letter topic and hold."""
    from google.cloud import pubsub_v1

    policy = json.loads((ROOT / "terraform" / "delivery.json").read_text())
    project = stack["state"]["project"]
    event_functions = {f.name: f.topic for f in FUNCTIONS if f.topic}
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for name, topic in event_functions.items():
            path = f"projects/{project}/subscriptions/local-{name.replace('_', '-')}-push"
            sub = subscriber.get_subscription(subscription=path)
            assert sub.topic == f"projects/{project}/topics/{topic}"
            # The function's own URL, root path, as deployed: the raw push body, no shim.
            assert sub.push_config.push_endpoint == stack["state"]["functions"][name] + "/"
            assert sub.retry_policy.minimum_backoff.total_seconds() == _seconds(
                policy["minimum_backoff"]
            )
            assert sub.retry_policy.maximum_backoff.total_seconds() == _seconds(
                policy["maximum_backoff"]
            )
            dead_letter = f"projects/{project}/topics/{topic}-dead-letter"
            assert sub.dead_letter_policy.dead_letter_topic == dead_letter
            assert sub.dead_letter_policy.max_delivery_attempts == policy["max_delivery_attempts"]
            assert sub.ack_deadline_seconds == 600
            hold = subscriber.get_subscription(
                subscription=f"projects/{project}/subscriptions/{topic}-dead-letter-hold"
            )
            assert hold.topic == dead_letter
            assert hold.retain_acked_messages is True
            assert not hold.push_config.push_endpoint  # a pull subscription: kept, inspectable
            assert stack["state"]["subscriptions"][name] == {
                "push": path,
                "dead_letter_hold": hold.name,
            }
        assert set(stack["state"]["subscriptions"]) == set(event_functions)
    finally:
        subscriber.close()


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def test_retryable_failure_is_redelivered_then_succeeds(stack) -> None:
    """Another instance holds the run's lease: 5xx, redelivered by the emulator; once the lease
    runs out, a redelivery takes the run over and registers the version."""
    scheduled = "2031-01-01T00:00:00Z"
    key = f"retrain:{RISK}:scheduled:2031-01-01T00:00:00+00:00"
    registry = stack["env"]["WARDEN_REGISTRY_BUCKET"]
    write_run_marker(stack["gcs"], registry, RISK, key, status="running", lease_seconds=6)
    before = versions(stack, RISK)
    payload = {
        "schema": 1,
        "model": RISK,
        "reason": "backfill",
        "scheduled_time": scheduled,
        "as_of": datetime.now(UTC).date().isoformat(),
    }
    message_id = _publish(stack, json.dumps(payload).encode(), model=RISK)
    _wait(lambda: len(stored(stack, RISK)) > len(before), 120, "the retried run's version")
    mine = _wait(
        lambda: (lambda d: d if d and d[-1]["delivery"] == "ok" else None)(
            deliveries(stack, message_id)
        ),
        30,
        "the successful delivery's log line",
    )
    assert len(mine) >= 2
    assert mine[0]["delivery"] == "retry"  # RunInProgress → WARNING, re-raised → 5xx
    assert mine[0]["severity"] == "WARNING"
    assert mine[0]["error_type"] == "RunInProgress"
    assert {d["delivery"] for d in mine[:-1]} == {"retry"}
    assert mine[-1]["severity"] == "INFO"
    # The version this delivery registered (scheduled ticks on the shared stack may add others).
    assert mine[-1]["version"] in versions(stack, RISK)
    assert mine[-1]["version"] > max(before, default=0)


def test_a_permanent_failure_is_not_redelivered_forever(stack) -> None:
    bad = _publish(stack, b"this is not json", model=RISK)
    (refused,) = _wait(lambda: deliveries(stack, bad), 60, "the bad message's delivery")
    assert refused["delivery"] == "refused"  # logged at ERROR and acknowledged (2xx)
    assert refused["severity"] == "ERROR"
    assert "message.data is not valid JSON" in refused["message"]

    # A positive marker rather than a sleep: a probe published after the bad message's delivery
    # fails retryably on the same subscription (its run is leased elsewhere). The emulator's
    # first redelivery follows a 5xx by ~1 s whatever the backoff (docs/decisions.md), so once
    # the probe has been redelivered, a redelivery of the bad message would already be logged.
    key = f"retrain:{RISK}:scheduled:2032-01-01T00:00:00+00:00"
    registry = stack["env"]["WARDEN_REGISTRY_BUCKET"]
    write_run_marker(stack["gcs"], registry, RISK, key, status="running")
    probe = {"schema": 1, "model": RISK, "reason": "backfill"}
    probe_id = _publish(
        stack, json.dumps({**probe, "scheduled_time": "2032-01-01T00:00:00Z"}).encode()
    )
    _wait(lambda: len(deliveries(stack, probe_id)) >= 2, 60, "the probe's redelivery")
    assert deliveries(stack, bad) == [refused]
    # Let the probe go: its next delivery finds the run done and is acknowledged.
    write_run_marker(stack["gcs"], registry, RISK, key, status="done")


def test_health_and_metrics_from_the_outside(stack) -> None:
    _wait(lambda: stored(stack, RISK), 150, "a version")
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
