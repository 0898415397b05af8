"""The local stack's one virtual clock: ``WARDEN_LOCAL_CLOCK`` (:class:`warden.settings.LocalClock`,
read by every function and the CLI) and the Scheduler stand-in's :class:`VirtualClock` following
it agree, and the stack hands the same three numbers to all of them."""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from warden.config.schedules import ALERT_FLUSH, JobSpec
from warden.errors import ConfigError
from warden.settings import LocalClock, Settings
from warden_local import scheduler
from warden_local.scheduler import SchedulerStandIn, VirtualClock, rfc3339
from warden_local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
EMULATOR = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- one formula ----------------------------------------------------------------------------------
def test_the_schedulers_clock_and_local_clock_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = 1_790_000_000.123456
    local = LocalClock(start=utc(2031, 3, 30, 0, 59).timestamp() + 0.5, anchor=anchor, speed=37.5)
    shared = VirtualClock.shared(local)
    assert shared.speed == 37.5
    for real in (anchor, anchor + 0.000001, anchor + 1.25, anchor + 86_400.987654, anchor - 3):
        monkeypatch.setattr(time, "time", lambda real=real: real)
        assert shared.now() == local.now()
        assert local.now() == datetime.fromtimestamp(local.start + (real - anchor) * 37.5, UTC)
    monkeypatch.setattr(time, "time", lambda: anchor + 2)
    assert shared.now() == utc(2031, 3, 30, 1, 0, 15, 500000)  # 0.5 s + 2 s × 37.5 past 00:59
    assert shared.real_seconds_until(utc(2031, 3, 30, 1, 1, 30, 500000)) == pytest.approx(2.0)


def test_the_shared_clock_runs_on_the_wall_clock_at_its_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anchor = time.time()
    local = LocalClock(start=utc(2031, 1, 1).timestamp(), anchor=anchor, speed=100)
    shared = VirtualClock.shared(local)
    with monkeypatch.context() as m:  # 0.05 s of real time later, without waiting for it
        m.setattr(time, "time", lambda: anchor + 0.05)
        assert shared.now() == local.now()
        assert abs(local.now() - utc(2031, 1, 1, 0, 0, 5)) < timedelta(milliseconds=1)  # floats
    never = threading.Event()
    target = shared.now() + timedelta(seconds=10)  # 0.1 s real
    assert shared.sleep_until(target, never) is True
    assert local.now() >= target


def test_the_text_form_round_trips_and_the_scheduler_parses_it() -> None:
    local = LocalClock(start=1_790_000_000.5, anchor=1_780_000_000.123456789, speed=3600.0)
    assert LocalClock.parse(str(local)) == local
    assert scheduler._clock(str(local)) == local
    with pytest.raises(argparse.ArgumentTypeError, match="START,ANCHOR,SPEED"):
        scheduler._clock("1,2")


def test_the_scheduler_refuses_clock_with_start_or_speed(capsys) -> None:
    clock = str(LocalClock(start=1.0, anchor=2.0, speed=3.0))
    for extra in (["--speed", "2"], ["--start", "2031-01-01T00:00:00Z"]):
        with pytest.raises(SystemExit) as exc:
            scheduler.main(["--project", "p", f"--clock={clock}", *extra])
        assert exc.value.code == 2
        assert "--clock replaces --start and --speed" in capsys.readouterr().err


# -- Settings -------------------------------------------------------------------------------------
def test_settings_honour_warden_local_clock_only_against_the_emulator() -> None:
    text = "1790000000.5,1780000000.25,60"
    local = Settings.from_env({**EMULATOR, "WARDEN_LOCAL_CLOCK": text}).local_clock
    assert local == LocalClock(start=1_790_000_000.5, anchor=1_780_000_000.25, speed=60.0)
    real = Settings.from_env({"WARDEN_LOCAL_CLOCK": text})
    assert real.local_clock is None
    assert abs(real.now() - datetime.now(UTC)) < timedelta(seconds=5)
    # Not even read outside the emulator: a malformed value cannot break a deployed function.
    assert Settings.from_env({"WARDEN_LOCAL_CLOCK": "garbage"}).local_clock is None
    assert Settings.from_env({**EMULATOR, "WARDEN_LOCAL_CLOCK": ""}).local_clock is None


@pytest.mark.parametrize("bad", ["garbage", "1,2", "1,2,3,4", "1,2,x", "1,2,0", "1,2,-5"])
def test_settings_refuse_a_malformed_warden_local_clock(bad: str) -> None:
    with pytest.raises(ConfigError, match="WARDEN_LOCAL_CLOCK"):
        Settings.from_env({**EMULATOR, "WARDEN_LOCAL_CLOCK": bad})


def test_the_runtime_reads_the_virtual_clock() -> None:
    from warden import runtime

    start = utc(2031, 6, 1).timestamp()
    env = {**EMULATOR, "WARDEN_LOCAL_CLOCK": f"{start},{time.time()},1"}
    rt = runtime.build(Settings.from_env(env))
    assert timedelta(0) <= rt.clock() - utc(2031, 6, 1) < timedelta(seconds=5)


# -- the stack hands out one clock -----------------------------------------------------------------
def _stack(tmp_path: Path, **kwargs: Any) -> LocalStack:
    stack = LocalStack(run_dir=tmp_path, config_path=ROOT / "warden.yaml", **kwargs)
    stack.endpoints.update(
        storage="http://127.0.0.1:1",
        pubsub="127.0.0.1:2",
        monitoring="127.0.0.1:3",
        scheduler="http://127.0.0.1:4",
    )
    return stack


def test_the_stack_fixes_one_clock_only_off_real_time(tmp_path: Path) -> None:
    real = _stack(tmp_path, shared_clock=True)
    real._fix_clock()
    assert real.clock is None
    assert "WARDEN_LOCAL_CLOCK" not in real.client_env()

    unshared = _stack(tmp_path, speed=30)  # the default: only the scheduler runs fast
    unshared._fix_clock()
    assert unshared.clock is None
    assert "WARDEN_LOCAL_CLOCK" not in unshared.client_env()

    fast = _stack(tmp_path, speed=30, shared_clock=True)
    before = time.time()
    fast._fix_clock()
    assert fast.clock is not None
    assert before <= fast.clock.anchor == fast.clock.start <= time.time()
    assert fast.clock.speed == 30.0
    env = fast.client_env()
    assert LocalClock.parse(env["WARDEN_LOCAL_CLOCK"]) == fast.clock
    assert Settings.from_env(env).local_clock == fast.clock  # what functions and the CLI read

    naive = _stack(
        tmp_path, clock_start=datetime(2031, 1, 1, 12), shared_clock=True
    )  # speed 1: a shifted clock
    naive._fix_clock()
    assert naive.clock is not None
    assert naive.clock.start == utc(2031, 1, 1, 12).timestamp()
    assert naive.clock.speed == 1.0


# -- ticks on the shared clock carry their slot ---------------------------------------------------
class _Future:
    def __init__(self, message_id: str) -> None:
        self._id = message_id

    def result(self, timeout: float | None = None) -> str:
        return self._id


class _Publisher:
    """Records what the stand-in publishes (no emulator needed)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, timeout: float | None = None, **attrs: str):
        self.published.append((topic, attrs))
        return _Future(str(len(self.published)))

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("stamp", [True, False])
def test_ticks_carry_their_slot_only_on_the_shared_clock(stamp: bool) -> None:
    slot = utc(2031, 1, 1, 0, 1)
    # The slot is one real second away.
    local = LocalClock(
        start=(slot - timedelta(seconds=30)).timestamp(), anchor=time.time(), speed=30
    )
    publisher = _Publisher()
    job = JobSpec("m", "housekeeping", "* * * * *", "Etc/UTC", "housekeeping-requests")
    standin = SchedulerStandIn(
        [job, ALERT_FLUSH],
        project="p",
        location="europe-west1",
        publisher_factory=lambda: publisher,
        clock=VirtualClock.shared(local),
        stamp_slots=stamp,
    )
    with standin:
        deadline = time.monotonic() + 10
        while len(standin.fired) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        standin.pause_job(job.job_id)
        standin.pause_job(ALERT_FLUSH.job_id)
        standin.run_job(job.job_id)  # a manual run: no slot, as in the cloud
    by_topic = {topic.rsplit("/", 1)[1]: attrs for topic, attrs in publisher.published[:2]}
    expected = {"model": "m", "kind": "housekeeping"}
    if stamp:
        expected["scheduled_time"] = rfc3339(slot)
    assert by_topic["housekeeping-requests"] == expected
    assert by_topic["model-events"] == {"kind": "flush"}  # not a run request: never stamped
    assert publisher.published[-1][1] == {"model": "m", "kind": "housekeeping"}


def test_on_the_shared_clock_a_slot_missed_while_the_stack_started_still_fires() -> None:
    """The functions start on the clock before the stand-in does: its schedule runs from the
    clock's start (``since``), so the slot that passed in between fires (once) at its start."""
    slot = utc(2031, 1, 1, 0, 1)
    started = slot - timedelta(seconds=1)  # the clock's start, 1 virtual second before the slot
    local = LocalClock(start=started.timestamp(), anchor=time.time() - 1, speed=600)  # now: +10 min
    publisher = _Publisher()
    job = JobSpec("m", "retrain", "1 0 * * *", "Etc/UTC", "retrain-requests")  # daily at 00:01

    def make(since: datetime | None) -> SchedulerStandIn:
        return SchedulerStandIn(
            [job],
            project="p",
            location="europe-west1",
            publisher_factory=lambda: publisher,
            clock=VirtualClock.shared(local),
            stamp_slots=True,
            since=since,
        )

    late = make(None)
    assert _time(late.get_job(job.job_id)["scheduleTime"]) == slot + timedelta(days=1)
    with make(started) as standin:
        deadline = time.monotonic() + 10
        while not standin.fired and time.monotonic() < deadline:
            time.sleep(0.02)
        [fired] = standin.fired
    assert fired["schedule_time"] == slot
    assert publisher.published == [
        (
            "projects/p/topics/retrain-requests",
            {"model": "m", "kind": "retrain", "scheduled_time": rfc3339(slot)},
        )
    ]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
