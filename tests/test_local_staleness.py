"""On the local stack, in real time: a scheduled job that is paused past its staleness limit
(twice its period) turns health degraded, and the uptime check's ``fail_on=stale`` gets a 503.

The housekeeping job ticks every minute here, so its limit is two minutes: the test takes about
three and a half, most of it waiting for the clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml

from stack_process import RunningStack, local_stack, wait_for
from warden_local.examples import seed_examples

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer-risk"


def _wait(predicate, timeout: float, what: str):
    return wait_for(predicate, timeout, what, interval=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
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
    # A light stack (it runs for minutes): only the functions this test needs.
    with local_stack(tmp, config, speed=1, only="retrain_model,housekeeping,health") as running:
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = running.env["STORAGE_EMULATOR_HOST"]
        try:
            seed_examples(
                storage.Client(project=running.state["project"]),
                bucket=running.state["env"]["WARDEN_DATA_BUCKET"],
                end=datetime.now(UTC).date(),
                days=5,
                models=(MODEL,),
            )
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST")
        yield running


def warden(stack: RunningStack, *args: str) -> dict | list:
    return stack.warden_json(*args)


def _health(stack: RunningStack, query: str = "") -> requests.Response:
    return requests.get(stack.state["functions"]["health"] + query, timeout=30)


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
