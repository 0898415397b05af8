"""On the local stack's virtual clock: a scheduled job that is paused past its staleness limit
(twice its period) turns health degraded, and the uptime check's ``fail_on=stale`` gets a 503.

The housekeeping job ticks every minute here, so its limit is two minutes — of virtual time: the
stack runs ``SPEED`` times faster than real time, every process on the same clock
(``WARDEN_LOCAL_CLOCK``), so a tick comes every two real seconds and the limit four seconds after
the last success. Every time the test compares is a virtual one (health's ``checked_at``, the run
ledger's last success, the Scheduler's ``userUpdateTime``); no real-time duration is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from stack_process import RunningStack, local_stack, wait_for
from warden_local.examples import seed_examples

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer-risk"
JOB = f"{MODEL}-housekeeping"
#: 30 virtual seconds a real second: a housekeeping tick every 2 s. The run ledger's 20-minute
#: lease lasts 40 real seconds, well beyond the retrain's few.
SPEED = 30.0
LIMIT = timedelta(minutes=2)  # 2 × the housekeeping period


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("staleness")
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"] = {MODEL: raw["models"][MODEL]}
    # The virtual clock starts about now and the test lasts about a virtual hour: a retrain slot
    # twelve hours away never comes.
    far = (datetime.now(UTC).hour + 12) % 24
    raw["models"][MODEL]["schedules"] = {
        "retrain": {"cron": f"0 {far} * * *", "timezone": "Etc/UTC"},
        "housekeeping": {"cron": "* * * * *", "timezone": "Etc/UTC"},
    }
    raw.pop("alerting")  # no flush ticks: nothing but housekeeping runs on the clock
    config = tmp / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    # A light stack: only the functions this test needs.
    with local_stack(
        tmp, config, speed=SPEED, shared_clock=True, only="retrain_model,housekeeping,health"
    ) as running:
        assert running.clock is not None
        assert running.clock.speed == SPEED
        from google.cloud import storage

        # Restore, not pop: this worker's session emulator may own the variable (popping it broke
        # every later storage test on the worker).
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", running.env["STORAGE_EMULATOR_HOST"])
            seed_examples(
                storage.Client(project=running.state["project"]),
                bucket=running.state["env"]["WARDEN_DATA_BUCKET"],
                end=datetime.now(UTC).date(),
                days=5,
                models=(MODEL,),
            )
        yield running


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _health(stack: RunningStack, query: str = "") -> requests.Response:
    return requests.get(stack.state["functions"]["health"] + query, timeout=30)


def _job(stack: RunningStack) -> dict:
    """The housekeeping job as the Cloud Scheduler REST API shows it (virtual times)."""
    return stack.scheduler_job(JOB)


def test_a_paused_job_turns_health_degraded_past_its_staleness_limit(stack) -> None:
    stack.warden_json("retrain", MODEL)
    wait_for(lambda: stack.version_numbers(MODEL), 120, "a first version")
    assert stack.warden_json("versions", MODEL)

    def fresh() -> dict | None:
        before = stack.now()
        resp = _health(stack, "?fail_on=stale")
        after = stack.now()
        body = resp.json()
        # Health reads the stack's clock, the one this process computes from stack.json.
        assert before <= _time(body["checked_at"]) <= after
        hk = body["models"][MODEL]["jobs"]["housekeeping"]
        ok = resp.status_code == 200 and body["status"] == "ok" and hk["last_success_at"]
        return body if ok else None

    body = wait_for(fresh, 60, "a promoted champion and a housekeeping success")
    assert body["stale"] == []
    assert body["models"][MODEL]["jobs"]["housekeeping"]["stale_after_seconds"] == 120

    before = stack.now()
    assert stack.warden_json("jobs", "pause", JOB)["state"] == "PAUSED"
    paused_at = _time(_job(stack)["userUpdateTime"])
    assert before <= paused_at <= stack.now()  # the Scheduler stand-in reads the same clock

    def stale() -> dict | None:
        body = _health(stack).json()
        return body if body["status"] == "degraded" else None

    body = wait_for(stale, 30, "staleness")
    assert body["stale"] == [f"{MODEL}/housekeeping"]
    assert body["models"][MODEL]["detail"] == "stale: housekeeping"
    # Not before the limit, in virtual time: past it since the last success, which was at
    # most a minute (one period) before the pause.
    checked_at = _time(body["checked_at"])
    last_success = _time(body["models"][MODEL]["jobs"]["housekeeping"]["last_success_at"])
    assert checked_at - last_success >= LIMIT
    assert checked_at - paused_at > timedelta(seconds=50)
    assert _health(stack).status_code == 200  # degraded is not down...
    assert _health(stack, "?fail_on=stale").status_code == 503  # ...but the uptime check fails

    # Resuming brings it back on the next tick.
    stack.warden_json("jobs", "resume", JOB)

    def recovered() -> bool:
        resp = _health(stack, "?fail_on=stale")
        return resp.status_code == 200 and resp.json()["status"] == "ok"

    wait_for(recovered, 30, "recovery")
