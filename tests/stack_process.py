"""`warden local up` in a subprocess, for end-to-end tests that drive it only from the outside
(the `warden` CLI, the Cloud Scheduler API, Pub/Sub and Cloud Storage through real clients);
also used by the push-delivery tests (run markers that make a delivery fail retryably)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from warden.settings import LocalClock

T = TypeVar("T")
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
#: The virtual clock of each running stack with one, by its STORAGE_EMULATOR_HOST.
_CLOCKS: dict[str, LocalClock] = {}


def write_run_marker(
    gcs: Any,
    bucket: str,
    model: str,
    key: str,
    *,
    status: str,
    lease_seconds: float = 600,
    clock: LocalClock | None = None,
) -> None:
    """The retrain run marker of request ``key`` as another instance would leave it: ``running``
    within a lease (a delivery of that request then fails retryably: 5xx, redelivered) or
    ``done`` (a delivery is acknowledged as a duplicate, without training).

    Times are on the functions' clock: ``clock``, by default that of the running stack whose
    storage emulator ``STORAGE_EMULATOR_HOST`` points at (real time if it has none); the lease
    lasts ``lease_seconds`` of real time whatever the clock's speed."""
    from warden.store.runs import RunLedger

    clock = clock or _CLOCKS.get(os.environ.get("STORAGE_EMULATOR_HOST", ""))
    now = clock.now() if clock else datetime.now(UTC)
    lease = timedelta(seconds=lease_seconds * (clock.speed if clock else 1))
    marker = {
        "model": model,
        "kind": "retrain",
        "key": key,
        "run_id": "another-instance",
        "status": status,
        "started_at": now.isoformat(),
        "lease_until": (now + lease).isoformat(),
        "attempt": 1,
    }
    gcs.bucket(bucket).blob(RunLedger.marker_name(model, "retrain", key)).upload_from_string(
        json.dumps(marker)
    )


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@dataclass
class RunningStack:
    proc: subprocess.Popen
    state: dict[str, Any]
    env: dict[str, str]  # what a client needs to reach this stack
    run_dir: Path
    tmp: Path
    _registry: Any = field(default=None, repr=False)

    def warden(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`warden --json ARGS` against this stack."""
        out = subprocess.run(
            [sys.executable, "-m", "warden.cli", "--json", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
        )
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def warden_json(self, *args: str) -> Any:
        return json.loads(self.warden(*args).stdout)

    def version_numbers(self, model: str) -> list[int]:
        """MODEL's registered versions, read in-process (one listing). Waits poll this, not
        `warden versions`: a CLI process every quarter second kept a core busy for as long as a
        test waited; what a test asserts still goes through the CLI."""
        from warden.store.registry import Registry

        if self._registry is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            client = storage.Client(
                project=self.state["project"],
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self.state["env"]["STORAGE_EMULATOR_HOST"]},
            )
            self._registry = Registry(client, self.state["env"]["WARDEN_REGISTRY_BUCKET"])
        registry: Registry = self._registry
        return registry.version_numbers(model)

    def scheduler_job(self, job_id: str) -> dict[str, Any]:
        """A Scheduler job as the stand-in's REST API shows it (virtual times): one HTTP request
        in-process, so a wait polls this, not `warden jobs list` (a CLI process each)."""
        import urllib.request

        url = (
            f"{self.state['env']['WARDEN_SCHEDULER_ENDPOINT']}/v1/projects/"
            f"{self.state['project']}/locations/{self.state['location']}/jobs/{job_id}"
        )
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (loopback)
            job: dict[str, Any] = json.loads(resp.read())
        return job

    @property
    def clock(self) -> LocalClock | None:
        """The virtual clock every process of the stack reads (None: real time)."""
        text = self.state["env"].get("WARDEN_LOCAL_CLOCK")
        return LocalClock.parse(text) if text else None

    def now(self) -> datetime:
        """The stack's time: its virtual clock's, or the real one."""
        clock = self.clock
        return clock.now() if clock else datetime.now(UTC)


@contextmanager
def local_stack(
    tmp: Path,
    config: Path,
    *,
    speed: float,
    clock_start: datetime | None = None,
    shared_clock: bool = False,
    only: str | None = None,
    alert_channel: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningStack]:
    """Start the stack, wait for its stack.json, yield it; Ctrl-C it (then kill) on the way out."""
    run_dir = tmp / "run"
    env = {k: v for k, v in os.environ.items() if k not in EMULATOR_VARS}
    args = [sys.executable, "-m", "warden.cli", "local", "up", "--run-dir", str(run_dir)]
    args += ["--config", str(config), "--speed", str(speed)]
    if shared_clock:
        args.append("--shared-clock")
    if clock_start is not None:
        args += ["--clock-start", clock_start.isoformat()]
    if only:
        args += ["--only", only]
    if alert_channel:
        args += ["--alert-channel", alert_channel]
    args += extra_args  # e.g. ("--persist", DIR)
    log = (tmp / "stack.out").open("wb")
    state: dict[str, Any] = {}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        state_file = run_dir / "stack.json"
        wait_for(lambda: state_file.exists() or proc.poll() is not None, 180, "stack.json")
        assert proc.poll() is None, (tmp / "stack.out").read_text()
        state = json.loads(state_file.read_text())
        running = RunningStack(proc, state, {**env, **state["env"]}, run_dir, tmp)
        if running.clock is not None:
            _CLOCKS[state["env"]["STORAGE_EMULATOR_HOST"]] = running.clock
        yield running
    finally:
        _CLOCKS.pop(state.get("env", {}).get("STORAGE_EMULATOR_HOST", ""), None)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
