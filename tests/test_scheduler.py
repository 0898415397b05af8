"""The local Cloud Scheduler stand-in, against the real Pub/Sub emulator and the real
``google-cloud-scheduler`` client over REST."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, scheduler_v1

from warden.config import load_config
from warden.config.schedules import JobSpec, job_specs
from warden_local.process import free_port
from warden_local.pubsub import PubSubEmulator
from warden_local.scheduler import (
    SchedulerStandIn,
    VirtualClock,
    latest_due_slot,
    next_fire_time,
)

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "europe-west1"
State = scheduler_v1.Job.State


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    mp = pytest.MonkeyPatch()
    emulator = PubSubEmulator().start(timeout=90)
    try:
        mp.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator
    finally:
        mp.undo()
        emulator.stop()


@pytest.fixture(scope="module")
def admin(pubsub_emulator: PubSubEmulator) -> Iterator[tuple[Any, Any]]:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()


@pytest.fixture
def project() -> str:
    """A fresh project per test: warden.yaml's topic names never collide between tests."""
    return f"sched-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_topic(admin: tuple[Any, Any], project: str) -> Callable[[str], str]:
    """``make_topic(topic_id)``: create the topic and a pull subscription; its path."""
    publisher, subscriber = admin

    def _make(topic_id: str) -> str:
        topic = publisher.create_topic(name=f"projects/{project}/topics/{topic_id}").name
        sub = f"projects/{project}/subscriptions/{topic_id}-sub"
        subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
        return sub

    return _make


@pytest.fixture
def pull(admin: tuple[Any, Any]) -> Callable[..., list[Any]]:
    """``pull(subscription, n, timeout)``: up to ``n`` messages (acked) within ``timeout`` s."""
    _, subscriber = admin

    def _pull(subscription: str, n: int = 1, timeout: float = 10.0) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                resp = subscriber.pull(
                    request={"subscription": subscription, "max_messages": 10},
                    timeout=max(0.2, min(2.0, deadline - time.monotonic())),
                )
            except gexc.DeadlineExceeded:
                continue
            if resp.received_messages:
                subscriber.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": [m.ack_id for m in resp.received_messages],
                    }
                )
                got.extend(m.message for m in resp.received_messages)
            else:
                time.sleep(0.05)
        return got

    return _pull


@pytest.fixture
def pulled_before_marker(
    admin: tuple[Any, Any], project: str, pull: Callable[..., list[Any]]
) -> Callable[[str, str], list[Any]]:
    """``pulled_before_marker(subscription, topic_id)``: publish a marker message to the topic
    and pull the subscription until the marker arrives; the other messages pulled (a positive
    marker: what was published before it has been delivered, no wait for silence)."""
    publisher, _ = admin

    def _pulled(subscription: str, topic_id: str) -> list[Any]:
        topic = f"projects/{project}/topics/{topic_id}"
        marker = publisher.publish(topic, b"marker").result(timeout=30)
        got: list[Any] = []

        def arrived() -> bool:
            got.extend(pull(subscription, 1, timeout=2.0))
            return any(m.message_id == marker for m in got)

        wait_for(arrived, what="the marker message")
        return [m for m in got if m.message_id != marker]

    return _pulled


@pytest.fixture
def standin(pubsub_emulator: PubSubEmulator, project: str) -> Iterator[Callable[..., Any]]:
    """``standin(jobs, clock=..., state_file=...)``: a started stand-in and a REST client to it;
    both stopped/closed at teardown."""
    started: list[tuple[SchedulerStandIn, Any]] = []

    def _make(
        jobs: list[JobSpec], *, clock: VirtualClock | None = None, state_file: Path | None = None
    ) -> tuple[SchedulerStandIn, Any]:
        server = SchedulerStandIn(
            jobs,
            project=project,
            location=LOCATION,
            publisher_factory=pubsub_v1.PublisherClient,
            clock=clock,
            state_file=state_file,
        ).start()
        client = rest_client(server.endpoint)
        started.append((server, client))
        return server, client

    yield _make
    for server, client in started:
        client.transport.close()
        server.stop()


def rest_client(endpoint: str) -> Any:
    return scheduler_v1.CloudSchedulerClient(
        transport="rest",
        client_options={"api_endpoint": endpoint},
        credentials=AnonymousCredentials(),
    )


def every_minute(model: str, topic: str, tz: str = "Etc/UTC") -> JobSpec:
    return JobSpec(model, "retrain", "* * * * *", tz, topic)


# -- pure helpers -------------------------------------------------------------------------------
def test_next_fire_time_follows_the_zone_across_dst() -> None:
    paris = "Europe/Paris"
    # 03:00 Paris is 02:00Z in winter (CET) and 01:00Z from 2026-03-29 (CEST) until 2026-10-25.
    assert next_fire_time("0 3 * * *", paris, utc(2026, 3, 27, 12)) == utc(2026, 3, 28, 2)
    assert next_fire_time("0 3 * * *", paris, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    assert next_fire_time("0 3 * * *", paris, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 2)
    # Spring-forward gap: 02:30 does not exist on 2026-03-29; it fires once, at the gap's end.
    assert next_fire_time("30 2 * * *", paris, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    # Fall-back overlap: 02:30 happens twice on 2026-10-25 (CEST then CET), so it fires twice.
    first = next_fire_time("30 2 * * *", paris, utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_fire_time("30 2 * * *", paris, first) == utc(2026, 10, 25, 1, 30)
    # New York: 02:30 EST is 07:30Z; 02:30 EDT (from 2026-03-08) is 06:30Z.
    ny = "America/New_York"
    assert next_fire_time("30 2 * * *", ny, utc(2026, 3, 7, 0)) == utc(2026, 3, 7, 7, 30)
    assert next_fire_time("30 2 * * *", ny, utc(2026, 3, 9, 0)) == utc(2026, 3, 9, 6, 30)
    # Strictly after: a slot itself is not its own next fire time.
    assert next_fire_time("* * * * *", "Etc/UTC", utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 0, 2)


def test_latest_due_slot_collapses_missed_slots_to_the_last() -> None:
    now = utc(2026, 1, 1, 0, 5, 30)
    assert latest_due_slot("* * * * *", "Etc/UTC", utc(2026, 1, 1, 0, 1), now) == utc(
        2026, 1, 1, 0, 5
    )
    assert latest_due_slot("* * * * *", "Etc/UTC", utc(2026, 1, 1, 0, 5), now) == utc(
        2026, 1, 1, 0, 5
    )
    # Daily in Paris across the spring change: the last slot is 03:00 CEST = 01:00Z.
    last = latest_due_slot(
        "0 3 * * *", "Europe/Paris", utc(2026, 3, 28, 2), utc(2026, 3, 30, 1, 30)
    )
    assert last == utc(2026, 3, 30, 1)


class RecordingEvent(threading.Event):
    """A stop event that records how long each ``wait`` was asked to block (real seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def test_virtual_clock_runs_at_speed_and_sleeps_in_virtual_time() -> None:
    start = utc(2026, 3, 29, 0, 0)
    before = time.monotonic()
    clock = VirtualClock(start, speed=100)
    after = time.monotonic()
    never = RecordingEvent()
    target = start + timedelta(seconds=10)  # 0.1 s real after the start
    assert clock.sleep_until(target, never) is True
    # It slept in virtual time: never asked to block longer than 10 virtual seconds / 100.
    assert never.waits
    assert all(w is not None and 0 < w <= 0.1 for w in never.waits), never.waits
    # It runs at speed: the virtual time elapsed is 100 × the real time since it was built,
    # bracketed by real readings taken just inside and just outside that interval.
    low = time.monotonic()
    elapsed = clock.now() - start
    high = time.monotonic()
    tick = timedelta(microseconds=1)  # timedelta's rounding
    assert timedelta(seconds=100 * (low - after)) - tick <= elapsed
    assert elapsed <= timedelta(seconds=100 * (high - before)) + tick
    assert elapsed >= timedelta(seconds=10)  # it woke no earlier than the target
    stopped = threading.Event()
    stopped.set()
    assert clock.sleep_until(clock.now() + timedelta(days=1), stopped) is False
    before = clock.now()
    clock.advance(timedelta(hours=1))
    assert clock.now() - before >= timedelta(hours=1)
    naive = VirtualClock(datetime(2026, 1, 1), speed=1)
    assert naive.now().tzinfo is not None
    assert naive.now() - utc(2026, 1, 1) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="speed"):
        VirtualClock(speed=0)


# -- REST API -----------------------------------------------------------------------------------
def test_list_and_get_return_the_jobs_of_warden_yaml(standin: Any, project: str) -> None:
    specs = job_specs(load_config(ROOT / "warden.yaml"))
    server, client = standin(specs, clock=VirtualClock(utc(2026, 3, 28, 12), speed=1))
    parent = f"projects/{project}/locations/{LOCATION}"
    jobs = {job.name: job for job in client.list_jobs(parent=parent)}
    assert sorted(jobs) == sorted(spec.name(project, LOCATION) for spec in specs)
    expected_next = {
        "customer-segments-retrain": utc(2026, 3, 30, 1),  # Monday 03:00 CEST
        "customer-segments-monitor": utc(2026, 3, 29, 4),  # 06:00 CEST, the day clocks change
        "breast-cancer-risk-retrain": utc(2026, 3, 29, 6, 30),  # 02:30 EDT
        "breast-cancer-risk-monitor": utc(2026, 3, 29, 11),  # 07:00 EDT
        "customer-segments-housekeeping": utc(2026, 3, 29, 2, 30),  # 04:30 CEST
        "breast-cancer-risk-housekeeping": utc(2026, 3, 29, 9),  # 05:00 EDT
        "alerts-flush": utc(2026, 3, 28, 12, 1),  # every minute
    }
    for spec in specs:
        job = client.get_job(name=spec.name(project, LOCATION))
        assert job == jobs[job.name]
        assert job.schedule == spec.cron
        assert job.time_zone == spec.timezone
        assert job.state == State.ENABLED
        assert job.pubsub_target.topic_name == f"projects/{project}/topics/{spec.topic}"
        assert job.pubsub_target.data == base64.b64decode(spec.data_b64())
        assert json.loads(job.pubsub_target.data) == spec.payload()
        assert dict(job.pubsub_target.attributes) == spec.attributes()
        assert job.schedule_time == expected_next[spec.job_id]
        assert job.retry_config.retry_count == 0
        assert job.attempt_deadline == timedelta(seconds=180)
        assert "last_attempt_time" not in job  # never attempted yet

    # Paging: one job per page, followed by the client's pager.
    pager = client.list_jobs(request={"parent": parent, "page_size": 1})
    pages = list(pager.pages)
    assert len(pages) == len(specs)
    assert sorted(j.name for page in pages for j in page.jobs) == sorted(jobs)

    # The raw JSON: camelCase, base64 data, string enums unless the client asks for numbers.
    url = f"{server.endpoint}/v1/{specs[0].name(project, LOCATION)}"
    raw = requests.get(url, timeout=10).json()
    assert raw["pubsubTarget"]["data"] == specs[0].data_b64()
    assert raw["state"] == "ENABLED"
    assert raw["timeZone"] == specs[0].timezone
    assert raw["scheduleTime"].endswith("Z")
    numeric = requests.get(url, params={"$alt": "json;enum-encoding=int"}, timeout=10).json()
    assert numeric["state"] == 1


def test_run_publishes_exactly_the_jobs_data_and_attributes(
    standin: Any, project: str, make_topic: Callable[[str], str], pull: Callable[..., list[Any]]
) -> None:
    specs = job_specs(load_config(ROOT / "warden.yaml"))
    spec = next(s for s in specs if s.job_id == "customer-segments-retrain")
    sub = make_topic(spec.topic)
    server, client = standin(specs)
    job = client.run_job(name=spec.name(project, LOCATION))
    assert job.status.code == 0
    assert job.last_attempt_time is not None
    [message] = pull(sub, 1)
    assert message.data == base64.b64decode(spec.data_b64())
    assert json.loads(message.data) == spec.payload()
    assert dict(message.attributes) == spec.attributes()
    [fired] = server.fired
    assert fired["job_id"] == spec.job_id
    assert fired["manual"] is True
    assert fired["message_id"] == message.message_id

    # Like the real API, run works on a paused job (and does not resume it).
    client.pause_job(name=spec.name(project, LOCATION))
    job = client.run_job(name=spec.name(project, LOCATION))
    assert job.state == State.PAUSED
    assert len(pull(sub, 1)) == 1
    assert len(server.fired) == 2


def test_unknown_jobs_and_parents_are_not_found_and_writes_unimplemented(
    standin: Any, project: str
) -> None:
    specs = [every_minute("alpha", "alpha-topic")]
    _, client = standin(specs)
    with pytest.raises(gexc.NotFound, match="not found"):
        client.get_job(name=f"projects/{project}/locations/{LOCATION}/jobs/nope-retrain")
    with pytest.raises(gexc.NotFound):
        client.pause_job(name=f"projects/{project}/locations/{LOCATION}/jobs/nope-retrain")
    with pytest.raises(gexc.NotFound):
        client.get_job(name=f"projects/other/locations/{LOCATION}/jobs/alpha-retrain")
    with pytest.raises(gexc.NotFound):
        list(client.list_jobs(parent=f"projects/{project}/locations/us-central1"))
    name = specs[0].name(project, LOCATION)
    with pytest.raises(gexc.MethodNotImplemented, match=r"warden\.yaml"):
        client.delete_job(name=name)
    with pytest.raises(gexc.MethodNotImplemented, match=r"warden\.yaml"):
        client.create_job(
            parent=f"projects/{project}/locations/{LOCATION}",
            job=scheduler_v1.Job(name=f"{name}-2", schedule="* * * * *"),
        )
    with pytest.raises(gexc.MethodNotImplemented, match=r"warden\.yaml"):
        client.update_job(job=scheduler_v1.Job(name=name, schedule="0 * * * *"))


# -- ticks --------------------------------------------------------------------------------------
def test_pause_stops_ticks_and_resume_fires_at_the_next_slot(
    standin: Any,
    project: str,
    make_topic: Callable[[str], str],
    pull: Callable[..., list[Any]],
    pulled_before_marker: Callable[[str, str], list[Any]],
) -> None:
    spec = every_minute("pausable", "pausable-topic")
    other = every_minute("unpaused", "unpaused-topic")  # same slots, never paused: the marker
    sub = make_topic(spec.topic)
    make_topic(other.topic)
    slot = utc(2026, 1, 1, 0, 1)
    clock = VirtualClock(slot - timedelta(seconds=40), speed=1)  # moved by the test
    server, client = standin([spec, other], clock=clock)
    name = spec.name(project, LOCATION)
    assert client.pause_job(name=name).state == State.PAUSED
    assert clock.now() < slot
    assert client.get_job(name=name).state == State.PAUSED

    clock.advance(timedelta(minutes=1))  # 20 s past the slot
    # Positive marker, no sleep: the other job's tick at that slot comes from the same pass over
    # the jobs, so once it is recorded the paused job has been passed over.
    wait_for(lambda: server.fired, timeout=5, what="the other job's tick at the slot")
    assert [(f["job_id"], f["schedule_time"]) for f in server.fired] == [(other.job_id, slot)]
    assert pulled_before_marker(sub, spec.topic) == []

    job = client.resume_job(name=name)
    assert job.state == State.ENABLED
    assert job.schedule_time == slot + timedelta(minutes=1)  # the paused slot is not caught up
    clock.advance(timedelta(minutes=1))

    def mine() -> list[dict[str, Any]]:
        return [f for f in server.fired if f["job_id"] == spec.job_id]

    wait_for(mine, timeout=5, what="the tick after resume")
    [fired] = mine()
    assert fired["schedule_time"] == slot + timedelta(minutes=1)
    assert fired["manual"] is False
    [message] = pull(sub, 1)
    assert message.message_id == fired["message_id"]
    assert dict(message.attributes) == spec.attributes()


def test_a_tick_fires_at_the_slot_in_the_jobs_time_zone_on_the_dst_day(
    standin: Any, project: str, make_topic: Callable[[str], str], pull: Callable[..., list[Any]]
) -> None:
    # 03:00 Europe/Paris on 2026-03-29 is the first CEST morning: 01:00Z, not 02:00Z.
    spec = JobSpec("paris", "monitor", "0 3 * * *", "Europe/Paris", "paris-topic")
    sub = make_topic(spec.topic)
    slot = utc(2026, 3, 29, 1)
    clock = VirtualClock(slot - timedelta(seconds=2), speed=2)
    server, client = standin([spec], clock=clock)
    assert client.get_job(name=spec.name(project, LOCATION)).schedule_time == slot
    wait_for(lambda: server.fired, timeout=5, what="the 03:00 Paris tick")
    [fired] = server.fired
    assert fired["schedule_time"] == slot
    assert slot <= fired["attempt_time"] < slot + timedelta(seconds=2)
    [message] = pull(sub, 1)
    assert json.loads(message.data) == spec.payload()
    job = client.get_job(name=spec.name(project, LOCATION))
    assert job.last_attempt_time == fired["attempt_time"]
    assert job.schedule_time == utc(2026, 3, 30, 1)


def test_a_clock_jump_fires_only_the_latest_missed_slot(
    standin: Any,
    make_topic: Callable[[str], str],
    pulled_before_marker: Callable[[str, str], list[Any]],
) -> None:
    spec = every_minute("jumpy", "jumpy-topic")
    sub = make_topic(spec.topic)
    clock = VirtualClock(utc(2026, 1, 1, 0, 0, 30), speed=1)
    server, _ = standin([spec], clock=clock)
    clock.advance(timedelta(minutes=5))  # slots 00:01 .. 00:05 are all overdue now
    wait_for(lambda: server.fired, timeout=5, what="the catch-up tick")
    # Positive marker, no sleep: the next slot's tick. Any (wrong) extra catch-up fire would
    # come from the same pass as the first one, before the loop moves on to 00:06.
    clock.advance(timedelta(minutes=1))
    wait_for(lambda: len(server.fired) >= 2, timeout=5, what="the 00:06 tick")
    assert [f["schedule_time"] for f in server.fired] == [
        utc(2026, 1, 1, 0, 5),
        utc(2026, 1, 1, 0, 6),
    ]
    published = pulled_before_marker(sub, spec.topic)
    assert sorted(m.message_id for m in published) == sorted(f["message_id"] for f in server.fired)


def test_a_publish_failure_sets_status_and_the_loop_continues(
    standin: Any,
    project: str,
    make_topic: Callable[[str], str],
    pull: Callable[..., list[Any]],
) -> None:
    broken = every_minute("broken", "missing-topic")  # topic not created (yet)
    healthy = every_minute("healthy", "healthy-topic")
    healthy_sub = make_topic(healthy.topic)
    clock = VirtualClock(utc(2026, 1, 1, 0, 0, 58), speed=60)  # a slot every real second
    server, client = standin([broken, healthy], clock=clock)
    broken_name = broken.name(project, LOCATION)

    def failed() -> Any:
        job = client.get_job(name=broken_name)
        return job if job.status.code == 14 else None

    job = wait_for(failed, timeout=5, what="the failed attempt")
    assert "missing-topic" in job.status.message
    first_attempt = job.last_attempt_time
    # The loop goes on: the healthy job keeps firing and the broken one is attempted again.
    wait_for(lambda: len(server.fired) >= 2, timeout=5, what="two healthy ticks")
    assert {f["job_id"] for f in server.fired} == {healthy.job_id}
    assert len(pull(healthy_sub, 2)) >= 2
    wait_for(
        lambda: client.get_job(name=broken_name).last_attempt_time > first_attempt,
        timeout=5,
        what="a second attempt",
    )
    assert client.get_job(name=broken_name).status.code == 14

    broken_sub = make_topic(broken.topic)  # fix it: the next slot succeeds
    wait_for(lambda: client.get_job(name=broken_name).status.code == 0, timeout=5, what="recovery")
    [message] = pull(broken_sub, 1)
    assert dict(message.attributes) == broken.attributes()
    assert any(f["job_id"] == broken.job_id for f in server.fired)


def test_the_state_file_keeps_a_paused_job_paused_across_a_restart(
    standin: Any,
    project: str,
    tmp_path: Path,
    make_topic: Callable[[str], str],
    pulled_before_marker: Callable[[str, str], list[Any]],
) -> None:
    state_file = tmp_path / "scheduler-state.json"
    spec = every_minute("sticky", "sticky-topic")
    other = every_minute("free", "free-topic")
    sub = make_topic(spec.topic)
    make_topic(other.topic)
    name = spec.name(project, LOCATION)
    first, client = standin([spec, other], state_file=state_file)
    paused_at = client.pause_job(name=name).user_update_time
    first.stop()
    saved = json.loads(state_file.read_text())
    assert saved["jobs"][name]["state"] == "PAUSED"

    # Restart on a fast clock just before a slot: still paused, and the slot passes silently.
    slot = utc(2026, 1, 1, 0, 1)
    clock = VirtualClock(slot - timedelta(seconds=1), speed=20)
    second, client = standin([spec, other], clock=clock, state_file=state_file)
    job = client.get_job(name=name)
    assert job.state == State.PAUSED
    assert job.user_update_time == paused_at
    assert client.get_job(name=other.name(project, LOCATION)).state == State.ENABLED
    wait_for(lambda: second.fired, timeout=5, what="the other job's tick")
    # Positive marker, no sleep: the other job's tick at the next slot, a later pass over the
    # jobs than the one that passed the paused job's slot.
    clock.advance(timedelta(minutes=1))
    wait_for(lambda: len(second.fired) >= 2, timeout=5, what="the other job's next tick")
    assert {f["job_id"] for f in second.fired} == {other.job_id}
    assert pulled_before_marker(sub, spec.topic) == []

    client.resume_job(name=name)
    assert json.loads(state_file.read_text())["jobs"][name]["state"] == "ENABLED"


# -- command line -------------------------------------------------------------------------------
def test_module_serves_warden_yaml_fires_and_exits_cleanly_on_sigterm(
    pubsub_emulator: PubSubEmulator,
    project: str,
    tmp_path: Path,
    make_topic: Callable[[str], str],
    pull: Callable[..., list[Any]],
) -> None:
    sub = make_topic("retrain-requests")
    port = free_port()
    # Monday 2026-03-30 03:00 Paris (CEST) = 01:00Z: customer-segments-retrain's slot, 1 s away.
    cmd = [
        sys.executable, "-m", "warden_local.scheduler", "--config", str(ROOT / "warden.yaml"),
        "--project", project, "--location", LOCATION, "--port", str(port), "--speed", "2",
        "--start", "2026-03-30T00:59:58Z", "--state-file", str(tmp_path / "state.json"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), cwd=ROOT
    )
    client = None
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no output within 30 s"
        assert proc.stdout.readline().decode().strip() == f"ready http://127.0.0.1:{port}"
        client = rest_client(f"http://127.0.0.1:{port}")
        jobs = list(client.list_jobs(parent=f"projects/{project}/locations/{LOCATION}"))
        assert len(jobs) == len(job_specs(load_config(ROOT / "warden.yaml")))
        [message] = pull(sub, 1, timeout=10)
        assert dict(message.attributes) == {"model": "customer-segments", "kind": "retrain"}
        assert json.loads(message.data) == {
            "schema": 1,
            "model": "customer-segments",
            "reason": "schedule",
        }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if client is not None:
            client.transport.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
