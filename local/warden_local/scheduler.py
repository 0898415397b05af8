"""A local Cloud Scheduler stand-in: warden.yaml's jobs on a (virtual) clock + the v1 REST API.

Cloud Scheduler has no emulator, so this plays both of its parts:

* **Ticks.** Each ENABLED job's next fire time is computed with croniter in the job's IANA time
  zone, on a :class:`VirtualClock` that may run faster than real time. When a slot is due the job
  publishes exactly what a Pub/Sub-target job publishes: its static ``data`` and ``attributes``,
  nothing else (no slot time: the functions infer it from the publish time, as in the cloud).
* **REST API.** ``list``/``get``/``run``/``pause``/``resume`` on
  ``/v1/projects/P/locations/L/jobs[/ID[:verb]]``, camelCase JSON shaped like the real v1 API,
  so the real ``google-cloud-scheduler`` client (``transport="rest"``) works against it. Jobs
  come from warden.yaml: create/patch/delete answer 501 UNIMPLEMENTED.

Choices where the real service is unspecified or where a virtual clock changes things:

* **Missed slots.** If the clock moved past several slots at once (a high speed, a slow publish,
  :meth:`VirtualClock.advance`), only the **latest** missed slot fires, once. The real service
  never bursts catch-up runs, and a burst would only make the functions deduplicate.
  Slots before :meth:`SchedulerStandIn.start` (or before ``since``, when given), or while a job
  was paused, never fire: resuming schedules the next slot after "now", as ``ResumeJob`` does.
* **DST.** Whatever croniter 7 yields in the zone: a wall time inside a spring-forward gap fires
  once at the end of the gap; a wall time repeated at fall-back fires twice (once per offset).
  Google only documents that such slots "may observe execution anomalies".
* **Failures.** A failed publish is recorded in the job's ``status`` as ``{"code": 14
  (UNAVAILABLE), "message": ...}`` with the publisher's error in the message, and logged; the tick
  loop keeps going. Like a job with the default ``retryCount: 0`` it is not retried; the next
  slot is the next attempt. A successful attempt sets ``status`` to ``{}`` (code OK).
* ``pause``/``resume`` are idempotent, and :run works on paused jobs (as in the real API); run
  publishes synchronously so the returned Job already carries the attempt's status.
* All times (``scheduleTime``, ``lastAttemptTime``, ``userUpdateTime``) are virtual-clock times.
* **The local stack's shared clock** (``--clock START,ANCHOR,SPEED``, ``WARDEN_LOCAL_CLOCK``):
  the stand-in reads the same virtual time as every function. Pub/Sub's ``publishTime`` stays
  real (the emulator sets it), so a function would infer a slot of the *real* clock from it: a
  per-minute job at speed 60 would map sixty ticks to one real minute, one run and fifty-nine
  duplicates. On that clock a tick of a per-model job therefore also carries its slot as the
  ``scheduled_time`` attribute (an explicit slot the functions already honour: the same key
  and ``as_of`` they would infer from a virtual publish time). Manual ``:run`` attempts carry
  none, as in the cloud. And that clock started before this process did (the stack fixes it
  before the functions start): the schedule runs from the clock's start, so a slot that passed
  while the stack was still starting fires (once: see missed slots) when the stand-in starts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo

from croniter import croniter

from warden.config.schedules import DEFAULT_LOCATION, JobSpec
from warden.settings import LocalClock
from warden_local.process import free_port
from warden_local.rest import ApiError, JsonApiHandler

log = logging.getLogger("warden_local.scheduler")

ENABLED = "ENABLED"
PAUSED = "PAUSED"
#: google.cloud.scheduler.v1.Job.State numbers, for ``$alt=json;enum-encoding=int`` requests.
STATE_NUMBERS = {"STATE_UNSPECIFIED": 0, ENABLED: 1, PAUSED: 2, "DISABLED": 3, "UPDATE_FAILED": 4}
#: The v1 API's RetryConfig defaults (retryCount 0: a failed attempt waits for the next slot).
RETRY_CONFIG = {
    "retryCount": 0,
    "maxRetryDuration": "0s",
    "minBackoffDuration": "5s",
    "maxBackoffDuration": "3600s",
    "maxDoublings": 5,
}
ATTEMPT_DEADLINE = "180s"
UNAVAILABLE = 14
MAX_PAGE_SIZE = 500
#: Longest single real-time wait: bounds how late a clock jump (``advance``) is noticed.
_MAX_WAIT = 0.5


# -- time ---------------------------------------------------------------------------------------
def _aware_utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2026-03-29T01:00:00Z`` (microseconds only when non-zero), as the v1 API writes times."""
    value = _aware_utc(value)
    frac = f".{value.microsecond:06d}" if value.microsecond else ""
    return value.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


class VirtualClock:
    """``now() = start + real time elapsed × speed``, as an aware UTC datetime.

    By default the real time elapsed is measured on the monotonic clock from construction.
    :meth:`shared` follows a :class:`warden.settings.LocalClock` instead, with its very formula
    (``start + (time.time() - anchor) × speed`` in epoch seconds), so the stand-in and every
    function of the local stack given the same three numbers read the same virtual time.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.start = _aware_utc(start) if start is not None else datetime.now(UTC)
        self.speed = float(speed)
        self._t0 = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self.local_clock: LocalClock | None = None  # set by shared()

    @classmethod
    def shared(cls, local_clock: LocalClock) -> VirtualClock:
        """The clock ``WARDEN_LOCAL_CLOCK`` describes (see :class:`warden.settings.LocalClock`)."""
        clock = cls(datetime.fromtimestamp(local_clock.start, UTC), local_clock.speed)
        clock.local_clock = local_clock
        return clock

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        if self.local_clock is not None:
            return self.local_clock.now() + offset
        elapsed = (time.monotonic() - self._t0) * self.speed
        return self.start + offset + timedelta(seconds=elapsed)

    def advance(self, delta: timedelta) -> None:
        """Jump the virtual time (sleepers notice within ~0.5 s real). Only this clock jumps:
        processes sharing a :class:`~warden.settings.LocalClock` do not follow."""
        with self._lock:
            self._offset += delta

    def real_seconds_until(self, virtual_dt: datetime) -> float:
        return max(0.0, (_aware_utc(virtual_dt) - self.now()).total_seconds() / self.speed)

    def sleep_until(self, virtual_dt: datetime, stop_event: threading.Event) -> bool:
        """Sleep until the virtual time reaches ``virtual_dt``: True, or False if ``stop_event``
        was set first. Waits in short slices so a clock jump is noticed."""
        while not stop_event.is_set():
            remaining = self.real_seconds_until(virtual_dt)
            if remaining <= 0:
                return True
            stop_event.wait(min(remaining, _MAX_WAIT))
        return False


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first slot of ``cron`` in ``timezone`` strictly after ``after``, in UTC."""
    local = _aware_utc(after).astimezone(ZoneInfo(timezone))
    return croniter(cron, local).get_next(datetime).astimezone(UTC)


def latest_due_slot(cron: str, timezone: str, first_due: datetime, now: datetime) -> datetime:
    """The last slot ``<= now``, given that ``first_due <= now`` is a slot (the one overdue)."""
    latest = _aware_utc(first_due)
    it = croniter(cron, latest.astimezone(ZoneInfo(timezone)))
    while True:
        candidate = it.get_next(datetime).astimezone(UTC)
        if candidate > now:
            return latest
        latest = candidate


# -- jobs ---------------------------------------------------------------------------------------
@dataclass
class _Job:
    spec: JobSpec
    name: str
    topic: str
    data: bytes
    state: str
    user_update_time: datetime
    next_fire: datetime
    last_attempt_time: datetime | None = None
    status: dict[str, Any] | None = None


class SchedulerStandIn:
    """Cron over ``jobs`` on ``clock``, published with ``publisher_factory()``'s client.

    The factory is called once by :meth:`start`; the stand-in owns that client and stops it in
    :meth:`stop`. ``state_file`` (JSON) keeps pause/resume across restarts. ``stamp_slots``: each
    tick of a per-model job also carries its slot as the ``scheduled_time`` attribute; ``since``:
    the schedule runs from this (virtual) time rather than from construction (both for the local
    stack's shared clock: see the module docstring).
    """

    def __init__(
        self,
        jobs: list[JobSpec],
        *,
        project: str,
        location: str,
        publisher_factory: Callable[[], Any],
        port: int | None = None,
        clock: VirtualClock | None = None,
        state_file: Path | None = None,
        publish_timeout: float = 30.0,
        stamp_slots: bool = False,
        since: datetime | None = None,
    ) -> None:
        self.project = project
        self.location = location
        self.port = port or free_port()
        self.clock = clock or VirtualClock()
        self.state_file = Path(state_file) if state_file is not None else None
        self.publish_timeout = publish_timeout
        self.stamp_slots = stamp_slots
        self._publisher_factory = publisher_factory
        self._publisher: Any = None
        self._lock = threading.Lock()
        self._fired: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()  # set on stop and on pause/resume: re-plan the next tick
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

        now = self.clock.now()
        first = min(_aware_utc(since), now) if since is not None else now
        saved = self._load_state()
        self._jobs: dict[str, _Job] = {}
        for spec in jobs:
            if spec.job_id in self._jobs:
                raise ValueError(f"duplicate job id {spec.job_id!r}")
            name = spec.name(project, location)
            entry = saved.get(name, {})
            self._jobs[spec.job_id] = _Job(
                spec=spec,
                name=name,
                topic=f"projects/{project}/topics/{spec.topic}",
                data=base64.b64decode(spec.data_b64()),
                state=PAUSED if entry.get("state") == PAUSED else ENABLED,
                user_update_time=(
                    _parse_time(entry["userUpdateTime"]) if "userUpdateTime" in entry else now
                ),
                next_fire=next_fire_time(spec.cron, spec.timezone, first),
            )

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        self._publisher = self._publisher_factory()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.standin = self
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="scheduler-http",
                daemon=True,
            ),
            threading.Thread(target=self._tick_loop, name="scheduler-ticks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("serving %d job(s) on %s", len(self._jobs), self.endpoint)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=self.publish_timeout + 5)
            if thread.is_alive():
                log.warning("thread %s did not stop", thread.name)
        self._threads = []
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                self._publisher.stop()
            self._publisher = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def fired(self) -> list[dict[str, Any]]:
        """Successful publishes so far (a snapshot): job_id, schedule_time (virtual, UTC),
        attempt_time (virtual), message_id, manual."""
        with self._lock:
            return [dict(item) for item in self._fired]

    # -- the API, in Python (JSON dicts with string enums) -------------------------------------
    def list_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._to_json(job) for job in self._jobs.values()]

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._to_json(self._job(job_id))

    def run_job(self, job_id: str) -> dict[str, Any]:
        """Publish now, whatever the state (like ``RunJob``); the Job after the attempt."""
        job = self._job(job_id)
        self._attempt(job, self.clock.now(), manual=True)
        return self.get_job(job_id)

    def pause_job(self, job_id: str) -> dict[str, Any]:
        return self._set_state(job_id, PAUSED)

    def resume_job(self, job_id: str) -> dict[str, Any]:
        return self._set_state(job_id, ENABLED)

    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            name = f"projects/{self.project}/locations/{self.location}/jobs/{job_id}"
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                "NOT_FOUND",
                f"Job {name} not found (the local stand-in serves the jobs in warden.yaml: "
                f"{', '.join(self._jobs) or 'none'}).",
            ) from None

    def _set_state(self, job_id: str, state: str) -> dict[str, Any]:
        job = self._job(job_id)
        with self._lock:
            if job.state != state:
                now = self.clock.now()
                job.state = state
                job.user_update_time = now
                if state == ENABLED:
                    # Resume never fires the slots missed while paused.
                    job.next_fire = next_fire_time(job.spec.cron, job.spec.timezone, now)
                self._save_state()
                log.info("%s: %s", job.spec.job_id, state)
            result = self._to_json(job)
        self._wake.set()
        return result

    def _to_json(self, job: _Job) -> dict[str, Any]:
        spec = job.spec
        if job.state == ENABLED:
            schedule_time = job.next_fire
        else:
            schedule_time = next_fire_time(spec.cron, spec.timezone, self.clock.now())
        out: dict[str, Any] = {
            "name": job.name,
            "pubsubTarget": {
                "topicName": job.topic,
                "data": spec.data_b64(),
                "attributes": spec.attributes(),
            },
            "schedule": spec.cron,
            "timeZone": spec.timezone,
            "userUpdateTime": rfc3339(job.user_update_time),
            "state": job.state,
            "scheduleTime": rfc3339(schedule_time),
            "retryConfig": dict(RETRY_CONFIG),
            "attemptDeadline": ATTEMPT_DEADLINE,
        }
        if job.last_attempt_time is not None:
            out["lastAttemptTime"] = rfc3339(job.last_attempt_time)
        if job.status is not None:
            out["status"] = dict(job.status)
        return out

    # -- ticks --------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                upcoming = self._fire_due()
            except Exception:  # never let one bad tick end the schedule
                log.exception("tick failed")
                upcoming = self.clock.now() + timedelta(seconds=self.clock.speed)
            if upcoming is None:  # nothing enabled: wait for a resume (or stop)
                self._wake.wait()
            else:
                self.clock.sleep_until(upcoming, self._wake)

    def _fire_due(self) -> datetime | None:
        """Fire every enabled job whose slot has come; return the earliest next slot."""
        now = self.clock.now()
        due: list[tuple[_Job, datetime]] = []
        with self._lock:
            for job in self._jobs.values():
                if job.state != ENABLED or job.next_fire > now:
                    continue
                spec = job.spec
                slot = latest_due_slot(spec.cron, spec.timezone, job.next_fire, now)
                if slot != job.next_fire:
                    log.info(
                        "%s: clock passed several slots; firing only the latest (%s)",
                        spec.job_id,
                        rfc3339(slot),
                    )
                job.next_fire = next_fire_time(spec.cron, spec.timezone, now)
                due.append((job, slot))
        for job, slot in due:
            if self._stop.is_set():
                break
            self._attempt(job, slot, manual=False)
        with self._lock:
            upcoming = [j.next_fire for j in self._jobs.values() if j.state == ENABLED]
        return min(upcoming, default=None)

    def _attempt(self, job: _Job, schedule_time: datetime, *, manual: bool) -> None:
        attempt_time = self.clock.now()
        message_id: str | None = None
        try:
            publisher = self._publisher
            if publisher is None:
                raise RuntimeError("the stand-in is not started")
            attributes = job.spec.attributes()
            if self.stamp_slots and not manual and job.spec.data is None:
                attributes["scheduled_time"] = rfc3339(schedule_time)
            future = publisher.publish(
                job.topic, job.data, timeout=self.publish_timeout, **attributes
            )
            message_id = str(future.result(timeout=self.publish_timeout + 5))
            status: dict[str, Any] = {}
        except Exception as exc:
            status = {
                "code": UNAVAILABLE,
                "message": f"publishing to {job.topic} failed: {type(exc).__name__}: {exc}",
            }
            log.warning("%s: %s", job.spec.job_id, status["message"])
        with self._lock:
            job.last_attempt_time = attempt_time
            job.status = status
            if message_id is not None:
                self._fired.append(
                    {
                        "job_id": job.spec.job_id,
                        "schedule_time": schedule_time,
                        "attempt_time": attempt_time,
                        "message_id": message_id,
                        "manual": manual,
                    }
                )
        if message_id is not None:
            log.info(
                "%s: published %s for %s%s",
                job.spec.job_id,
                message_id,
                rfc3339(schedule_time),
                " (run)" if manual else "",
            )

    # -- state file ---------------------------------------------------------------------------
    def _load_state(self) -> dict[str, dict[str, Any]]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
            jobs = raw["jobs"]
            if not isinstance(jobs, dict):
                raise TypeError("'jobs' is not an object")
            return jobs
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.state_file}: unreadable scheduler state: {exc}") from None

    def _save_state(self) -> None:
        """Write atomically (called with the lock held)."""
        if self.state_file is None:
            return
        doc = {
            "version": 1,
            "jobs": {
                job.name: {"state": job.state, "userUpdateTime": rfc3339(job.user_update_time)}
                for job in self._jobs.values()
            },
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)


def _parse_time(value: str) -> datetime:
    return _aware_utc(datetime.fromisoformat(value))


# -- HTTP ---------------------------------------------------------------------------------------
_JOBS_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)/jobs"
    r"(?:/(?P<job>[^/:]+)(?::(?P<verb>[A-Za-z]+))?)?$"
)
_LOCATIONS_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/:]+)/locations(?:/(?P<location>[^/:]+))?$"
)
_UNIMPLEMENTED = (
    "{what} is not supported by the local Cloud Scheduler stand-in: its jobs come from "
    "warden.yaml (edit the file and restart the stand-in)."
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: SchedulerStandIn


class _Handler(JsonApiHandler):
    server: _Server
    server_version = "warden-local-scheduler"

    def encode(self, body: dict[str, Any], *, int_enums: bool) -> Any:
        return _encode_enums(body) if int_enums else body

    def route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> dict[str, Any]:
        return self._route(method, path, query)  # the request bodies carry nothing we use

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        standin = self.server.standin
        match = _JOBS_PATH.match(path)
        if match is None:
            loc = _LOCATIONS_PATH.match(path)
            if loc is not None and method == "GET":
                return self._locations(loc["project"], loc["location"])
            raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such method: {method} {path}")
        job_id, verb = match["job"], match["verb"]
        if job_id is None and method == "POST":
            raise ApiError(
                HTTPStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", _UNIMPLEMENTED.format(what="CreateJob")
            )
        if job_id is not None and verb is None and method in ("PATCH", "DELETE"):
            what = "UpdateJob" if method == "PATCH" else "DeleteJob"
            raise ApiError(
                HTTPStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", _UNIMPLEMENTED.format(what=what)
            )
        self._check_parent(match["project"], match["location"])
        if job_id is None and method == "GET":
            return self._list(query)
        if job_id is not None and verb is None and method == "GET":
            return standin.get_job(job_id)
        if job_id is not None and method == "POST":
            actions = {
                "run": standin.run_job,
                "pause": standin.pause_job,
                "resume": standin.resume_job,
            }
            if verb in actions:
                return actions[verb](job_id)
        raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"no such method: {method} {path}")

    def _check_parent(self, project: str, location: str) -> None:
        standin = self.server.standin
        if (project, location) != (standin.project, standin.location):
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                "NOT_FOUND",
                f"projects/{project}/locations/{location} has no jobs here; this stand-in serves "
                f"projects/{standin.project}/locations/{standin.location}.",
            )

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        jobs = self.server.standin.list_jobs()
        try:
            size = int(query.get("pageSize", ["0"])[0])
            offset = int(query.get("pageToken", ["0"])[0] or 0)
        except ValueError:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_ARGUMENT",
                "pageSize must be an integer and pageToken one this API returned",
            ) from None
        if size < 0 or offset < 0 or offset > len(jobs):
            raise ApiError(
                HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "invalid pageSize or pageToken"
            )
        size = min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        page: dict[str, Any] = {"jobs": jobs[offset : offset + size]}
        if offset + size < len(jobs):
            page["nextPageToken"] = str(offset + size)
        return page

    def _locations(self, project: str, location: str | None) -> dict[str, Any]:
        standin = self.server.standin
        if location is not None:
            self._check_parent(project, location)
        elif project != standin.project:
            raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"unknown project {project!r}")
        loc = {
            "name": f"projects/{standin.project}/locations/{standin.location}",
            "locationId": standin.location,
        }
        return loc if location is not None else {"locations": [loc]}


def _encode_enums(body: dict[str, Any]) -> dict[str, Any]:
    """Job.state as its number, for clients asking ``$alt=json;enum-encoding=int``."""

    def job(item: dict[str, Any]) -> dict[str, Any]:
        if "state" in item:
            return {**item, "state": STATE_NUMBERS[item["state"]]}
        return item

    if "jobs" in body:
        return {**body, "jobs": [job(item) for item in body["jobs"]]}
    return job(body)


# -- command line -------------------------------------------------------------------------------
def _start_time(value: str) -> datetime:
    try:
        return _parse_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _clock(value: str) -> LocalClock:
    from warden.errors import ConfigError

    try:
        return LocalClock.parse(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(value: str) -> float:
    speed = float(value)
    if not speed > 0:
        raise argparse.ArgumentTypeError("speed must be > 0")
    return speed


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    previous = {
        sig: signal.signal(sig, lambda *_: event.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warden_local.scheduler",
        description="Run warden.yaml's Cloud Scheduler jobs locally: cron ticks published to "
        "Pub/Sub (PUBSUB_EMULATOR_HOST) and the Cloud Scheduler v1 REST API.",
    )
    parser.add_argument("--config", type=Path, default=Path("warden.yaml"))
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", default=DEFAULT_LOCATION)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--speed", type=_speed, default=None, help="virtual seconds per second (default: 1)"
    )
    parser.add_argument(
        "--start",
        type=_start_time,
        default=None,
        help="virtual start time, ISO 8601 (default: now)",
    )
    parser.add_argument(
        "--clock",
        type=_clock,
        default=None,
        metavar="START,ANCHOR,SPEED",
        help="the local stack's shared clock (WARDEN_LOCAL_CLOCK's format), instead of "
        "--start/--speed: the schedule runs from START, and ticks carry their slot as the "
        "scheduled_time attribute",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="JSON file keeping paused jobs paused across restarts",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.clock is not None and (args.speed is not None or args.start is not None):
        parser.error("--clock replaces --start and --speed")
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from google.cloud import pubsub_v1

    from warden.config import load_config
    from warden.config.schedules import job_specs
    from warden.errors import ConfigError

    try:
        specs = job_specs(load_config(args.config))
        standin = SchedulerStandIn(
            specs,
            project=args.project,
            location=args.location,
            publisher_factory=pubsub_v1.PublisherClient,  # reads PUBSUB_EMULATOR_HOST itself
            port=args.port,
            clock=(
                VirtualClock.shared(args.clock)
                if args.clock is not None
                else VirtualClock(args.start, args.speed or 1.0)
            ),
            state_file=args.state_file,
            stamp_slots=args.clock is not None,
            since=(
                datetime.fromtimestamp(args.clock.start, UTC) if args.clock is not None else None
            ),
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    with _signals_set(stop), standin:
        print(f"ready {standin.endpoint}", flush=True)
        while not stop.wait(1.0):
            pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
