"""``warden local up``: the whole system on one machine, wired as it is in the cloud.

| service          | local form                                                           |
|------------------|----------------------------------------------------------------------|
| Cloud Storage    | fake-gcs-server, memory backend; with ``storage_root`` (``warden     |
|                  | local up --persist DIR``) its filesystem backend: objects survive    |
|                  | restarts (noncurrent versions are not kept)                          |
| Pub/Sub          | the Cloud SDK's Pub/Sub emulator (Java)                              |
| Triggers         | Terraform's push subscriptions (``local-FUNCTION-push``): the raw    |
|                  | push → the function's root URL; retry and dead-letter policy from    |
|                  | terraform/delivery.json; ``TOPIC-dead-letter`` + ``…-hold`` pull sub |
| Cloud Scheduler  | ``warden_local.scheduler``: cron over warden.yaml + the REST API     |
| Cloud Monitoring | ``warden_local.monitoring``: loopback gRPC MetricService             |
| Cloud Run jobs   | ``warden_local.cloudrun``: the Admin API v2 (jobs, executions, LRO); |
|                  | ``warden-retrain`` / ``warden-monitor`` run ``warden.jobs.task`` as  |
|                  | local processes, one per task (logs in ``cloudrun/``)                |
| Cloud Functions  | one functions-framework process per function                         |
| Cloud Logging    | ``function-NAME.log``: structured JSON lines; the job functions log  |
|                  | one per delivery outcome (``warden_local.pubsub.read_deliveries``)   |

Every process gets its own log in the run folder; ``stack.json`` there lists endpoints, the
trigger subscriptions and the environment a client needs (``warden local env`` prints it as
``export`` lines).

**Time.** By default only the scheduler stand-in runs on a virtual clock (``speed``,
``clock_start``: cron ticks come faster, each carrying its own key); the functions read real time.
With ``shared_clock`` (``warden local up --shared-clock``) and a speed or start, the stack fixes one
virtual clock (:class:`warden.settings.LocalClock`) just before the first function
starts: it reads ``clock_start`` (default: the real time) then and runs ``speed`` times faster.
The scheduler stand-in (``--clock``: its schedule runs from that moment, so a slot that passes
while the functions start still fires), every function and every client (``WARDEN_LOCAL_CLOCK``
in their environment and in ``stack.json``'s, which ``warden local env`` prints) read it: cron
ticks, run-ledger leases, staleness, retention and the registry's timestamps move together.
What stays real: Pub/Sub's publish times and Cloud Storage's object times (the emulators set
them), the Monitoring stand-in, the alert router's timers and the seeded data's dates.

**Reload.** :meth:`LocalStack.serve_forever` reloads on SIGUSR1 (``warden local reload`` sends it
and waits for the outcome in ``stack.json``): it re-reads ``config_path`` and, if it validates,
restarts every function server on its port (each reads the file as it starts), the Monitoring
stand-in when it evaluates alert policies, and the Scheduler stand-in, whose jobs are then the
new config's (pause states kept in its state file). A config that does not validate changes
nothing. The emulators, the push subscriptions and the stored data stay. The Scheduler's clock
goes on: the shared clock as it was (each job's latest slot fires once more on restart; the
functions acknowledge it as a duplicate of that slot), or its own clock from the virtual time it
had reached (estimated from its launch); a slot that falls while it restarts does not fire.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from warden.config import load_config
from warden.config.schedules import DEFAULT_LOCATION, EVENTS_TOPIC, TOPICS
from warden.jobs.task import COMMAND as TASK_COMMAND
from warden.settings import LocalClock
from warden_local.gcs import StorageEmulator
from warden_local.process import FunctionServer, ManagedProcess, free_port
from warden_local.pubsub import (
    PubSubEmulator,
    delivery_policy,
    ensure_topic,
    push_subscription_id,
    wire_trigger,
)

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
#: Stands in for Terraform's ``var.prefix`` in subscription names (topics keep the code's names).
SUBSCRIPTION_PREFIX = "local"
#: The Cloud Run jobs of the job runner: WARDEN_JOB value → job id (Terraform deploys the same).
RUN_JOBS = {"retrain": "warden-retrain", "monitor": "warden-monitor"}
#: Retries and timeout per task of those jobs, as terraform/jobs.tf's defaults.
RUN_JOB_MAX_RETRIES = 2
RUN_JOB_TIMEOUT = "3600s"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    signature: str  # "cloudevent" | "http"
    topic: str | None = None  # Pub/Sub trigger (a push subscription), if any
    source: str | None = None  # folder under functions/ (default: the name)
    #: gunicorn threads (``THREADS``), as Terraform sets them: the deployed request concurrency.
    #: None keeps functions-framework's default (the model functions serve one request per
    #: instance in the cloud; locally one process serves them all).
    threads: int | None = None

    @property
    def folder(self) -> str:
        return self.source or self.name


#: The deployed functions and their triggers (Terraform declares the same; a test holds them).
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("retrain_model", "cloudevent", TOPICS["retrain"]),
    FunctionSpec("monitor_model", "cloudevent", TOPICS["monitor"]),
    FunctionSpec("housekeeping", "cloudevent", TOPICS["housekeeping"]),
    FunctionSpec("health", "http"),
    FunctionSpec("route_alerts", "http", source="route_alerts", threads=16),
    FunctionSpec(
        "route_alert_events", "cloudevent", EVENTS_TOPIC, source="route_alerts", threads=16
    ),
)


class PythonService(ManagedProcess):
    """A Python module run as a child process (``python -m MODULE ARGS``)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        port: int,
        log: IO[bytes] | None,
        env: Mapping[str, str],
    ) -> None:
        super().__init__(port, log=log, env=env)
        self.name = name
        self._args = args

    def command(self) -> list[str]:
        return [sys.executable, *self._args]


class LocalStack:
    """Start, supervise and stop the local cloud. Use as a context manager."""

    def __init__(
        self,
        *,
        config_path: Path = ROOT / "warden.yaml",
        run_dir: Path,
        project: str = "warden-local",
        location: str = DEFAULT_LOCATION,
        speed: float = 1.0,
        clock_start: datetime | None = None,
        shared_clock: bool = False,
        registry_bucket: str = "warden-registry",
        alert_bucket: str = "warden-alerts",
        data_bucket: str = "warden-data",
        backup_bucket: str = "warden-backup",
        functions: tuple[FunctionSpec, ...] = FUNCTIONS,
        progress: Callable[[str], None] = lambda _msg: None,
        before_scheduler: Callable[[LocalStack], None] | None = None,
        alert_channel: str = "webhook",
        storage_root: Path | None = None,
    ) -> None:
        if alert_channel not in ("webhook", "pubsub"):
            raise ValueError(f"alert_channel must be 'webhook' or 'pubsub', got {alert_channel!r}")
        self.config_path = Path(config_path).resolve()
        self.config = load_config(self.config_path)  # fail fast on a bad config
        self.run_dir = Path(run_dir).resolve()
        self.project = project
        self.location = location
        self.speed = speed
        self.clock_start = clock_start
        self.shared_clock = shared_clock
        self.registry_bucket = registry_bucket
        self.alert_bucket = alert_bucket  # the router's state, apart from the registry
        self.data_bucket = data_bucket
        self.backup_bucket = backup_bucket
        self.functions = functions
        self.progress = progress
        self.before_scheduler = before_scheduler  # e.g. seed data before the first tick
        # How the Monitoring stand-in reaches the router: Terraform's var.alert_channel.
        self.alert_channel = alert_channel
        #: fake-gcs-server's filesystem root (None: memory): buckets and objects outlive the stack.
        self.storage_root = Path(storage_root).resolve() if storage_root is not None else None
        self.processes: dict[str, ManagedProcess] = {}
        self.function_urls: dict[str, str] = {}
        self.endpoints: dict[str, str] = {}
        self.subscriptions: dict[str, dict[str, str]] = {}  # function → push, dead_letter_hold
        self._logs: list[IO[bytes]] = []
        self.secrets: dict[str, str] = {}
        #: The shared virtual clock (None: real time); fixed by start().
        self.clock: LocalClock | None = None
        self._started = False
        #: (real epoch, virtual epoch) when the Scheduler stand-in's own clock was launched.
        self._scheduler_origin: tuple[float, float] | None = None
        #: The pid that takes SIGUSR1 for a reload (set while serve_forever runs), and the outcome
        #: of the latest reload (``generation`` counts them): both in stack.json.
        self.supervisor_pid: int | None = None
        self.reload_status: dict[str, Any] = {"generation": 0}

    # -- environment --------------------------------------------------------------------------
    def client_env(self) -> dict[str, str]:
        """What a client (the CLI, a test, a function) needs to reach this stack."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoints["storage"],
            "PUBSUB_EMULATOR_HOST": self.endpoints["pubsub"],
            "PUBSUB_PROJECT_ID": self.project,
            "WARDEN_PROJECT": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "WARDEN_LOCATION": self.location,
            "WARDEN_CONFIG": str(self.config_path),
            "WARDEN_REGISTRY_BUCKET": self.registry_bucket,
            "WARDEN_ALERT_BUCKET": self.alert_bucket,
            "WARDEN_DATA_BUCKET": self.data_bucket,
            "WARDEN_BACKUP_BUCKET": self.backup_bucket,
            "WARDEN_EVENTS_TOPIC": EVENTS_TOPIC,
            "WARDEN_MONITORING_ENDPOINT": self.endpoints["monitoring"],
            "WARDEN_SCHEDULER_ENDPOINT": self.endpoints["scheduler"],
            **self._run_env(),
            **({"WARDEN_LOCAL_CLOCK": str(self.clock)} if self.clock is not None else {}),
        }

    def _run_env(self) -> dict[str, str]:
        """The Cloud Run stand-in and its jobs (none until it has started)."""
        if "cloudrun" not in self.endpoints:
            return {}
        return {
            "WARDEN_RUN_ENDPOINT": self.endpoints["cloudrun"],
            "WARDEN_RETRAIN_JOB": self.run_job_name("retrain"),
            "WARDEN_MONITOR_JOB": self.run_job_name("monitor"),
        }

    def run_job_name(self, job: str) -> str:
        """The full name of the Cloud Run job running ``job`` ("retrain" or "monitor")."""
        return f"projects/{self.project}/locations/{self.location}/jobs/{RUN_JOBS[job]}"

    def _fix_clock(self) -> None:
        """One virtual clock for every process, from now on (real time, or not shared: none)."""
        if not self.shared_clock or (self.speed == 1 and self.clock_start is None):
            return
        anchor = time.time()
        start = anchor
        if self.clock_start is not None:
            aware = self.clock_start
            start = (aware if aware.tzinfo else aware.replace(tzinfo=UTC)).timestamp()
        self.clock = LocalClock(start=start, anchor=anchor, speed=float(self.speed))

    def _log(self, name: str) -> IO[bytes]:
        handle = (self.run_dir / f"{name}.log").open("ab")
        self._logs.append(handle)
        return handle

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _start(self) -> None:
        say = self.progress
        say("starting fake-gcs-server")
        gcs = StorageEmulator(root=self.storage_root, log=self._log("fake-gcs-server"))
        self.processes["storage"] = gcs.start()
        self.endpoints["storage"] = gcs.host
        say("starting the Pub/Sub emulator")
        pubsub = PubSubEmulator(log=self._log("pubsub-emulator"))
        self.processes["pubsub"] = pubsub.start(timeout=90)
        self.endpoints["pubsub"] = pubsub.host
        # This process talks to both emulators through the real clients too.
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host

        say("starting the Monitoring stand-in")
        port = free_port()
        monitoring = PythonService(
            "monitoring",
            [
                "-m",
                "warden_local.monitoring",
                "--port",
                str(port),
                "--state-file",
                str(self.run_dir / "monitoring-state.json"),
            ],
            port=port,
            log=self._log("monitoring"),
            env=self._base_env(),
        )
        self.processes["monitoring"] = monitoring.start()
        self.endpoints["monitoring"] = f"127.0.0.1:{port}"
        self.endpoints["scheduler"] = f"http://127.0.0.1:{free_port()}"

        say("starting the Cloud Run stand-in")
        port = free_port()
        cloudrun = PythonService(
            "cloudrun",
            [
                "-m",
                "warden_local.cloudrun",
                "--port",
                str(port),
                "--project",
                self.project,
                "--location",
                self.location,
                "--log-dir",
                str(self.run_dir / "cloudrun"),
            ],
            port=port,
            log=self._log("cloudrun"),
            env=self._base_env(),  # each task's base; the jobs add the stack's WARDEN_* below
        )
        self.processes["cloudrun"] = cloudrun.start()
        self.endpoints["cloudrun"] = f"http://127.0.0.1:{port}"

        say("creating buckets and topics")
        self._create_buckets_and_topics()

        say("starting the receiver capture endpoint")
        port = free_port()
        capture = PythonService(
            "capture",
            [
                "-m",
                "warden_local.capture",
                "--port",
                str(port),
                "--out",
                str(self.run_dir / "received.jsonl"),
            ],
            port=port,
            log=self._log("capture"),
            env=self._base_env(),
        )
        self.processes["capture"] = capture.start()
        self.endpoints["capture"] = f"http://127.0.0.1:{port}"
        # Receivers' URLs and secrets, as Secret Manager would inject them in the cloud.
        self.secrets = {
            "WARDEN_WEBHOOK_TOKEN": secrets.token_urlsafe(24),
            "WARDEN_SLACK_WEBHOOK_URL": f"{self.endpoints['capture']}/slack",
            "WARDEN_AUDIT_WEBHOOK_URL": f"{self.endpoints['capture']}/audit",
            "WARDEN_AUDIT_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        }

        self._fix_clock()  # before the first process that reads it
        say("creating the Cloud Run jobs")
        self._create_run_jobs()
        for spec in self.functions:
            say(f"starting function {spec.name}")
            port = free_port()
            self.processes[f"function:{spec.name}"] = self._function_server(spec, port).start(
                timeout=60
            )
            self.function_urls[spec.name] = f"http://127.0.0.1:{port}"

        say("creating the push subscriptions (terraform/delivery.json)")
        self._create_push_subscriptions()

        if self.before_scheduler is not None:
            self.before_scheduler(self)
        router = "route_alerts" if self.alert_channel == "webhook" else "route_alert_events"
        if router in self.function_urls:
            self._restart_monitoring_with_policies()
        if self.speed > 60:
            self._pause_flush_job()
        say("starting the Cloud Scheduler stand-in")
        self._start_scheduler()
        self._write_state()

    def _function_server(self, spec: FunctionSpec, port: int) -> FunctionServer:
        env = {
            **self._base_env(),
            **self.client_env(),
            **self.secrets,
            "K_SERVICE": spec.name,
            "K_REVISION": f"{spec.name}-local",
            "K_CONFIGURATION": spec.name,
            "FUNCTION_TARGET": spec.name,
            "FUNCTION_SIGNATURE_TYPE": spec.signature,
            "WARDEN_CODE_VERSION": "local",
        }
        if spec.threads is not None:
            env["THREADS"] = str(spec.threads)
        return FunctionServer(
            FUNCTIONS_DIR / spec.folder / "main.py",
            spec.name,
            signature=spec.signature,
            port=port,
            log=self._log(f"function-{spec.name}"),
            env=env,
        )

    def _start_scheduler(self, *, resume: bool = False) -> None:
        """Launch the Scheduler stand-in over ``config_path``; ``resume``: its own clock goes on
        from the virtual time it had reached (a reload), instead of from ``clock_start``."""
        sched_port = int(self.endpoints["scheduler"].rsplit(":", 1)[1])
        args = [
            "-m",
            "warden_local.scheduler",
            "--config",
            str(self.config_path),
            "--project",
            self.project,
            "--location",
            self.location,
            "--port",
            str(sched_port),
            "--state-file",
            str(self.run_dir / "scheduler-state.json"),
        ]
        if self.clock is not None:  # the functions' clock, so ticks, leases and staleness agree
            args.append(f"--clock={self.clock}")
        else:  # the scheduler's own virtual clock; the functions stay on real time
            args += ["--speed", str(self.speed)]
            launched = time.time()
            start: float | None = None
            if resume and self._scheduler_origin is not None:
                real, virtual = self._scheduler_origin
                start = virtual + (launched - real) * self.speed
            elif self.clock_start is not None:
                aware = self.clock_start
                start = (aware if aware.tzinfo else aware.replace(tzinfo=UTC)).timestamp()
            if start is not None and not (self.speed == 1 and self.clock_start is None):
                args += ["--start", datetime.fromtimestamp(start, UTC).isoformat()]
            self._scheduler_origin = (launched, launched if start is None else start)
        scheduler = PythonService(
            "scheduler",
            args,
            port=sched_port,
            log=self._log("scheduler"),
            env={**self._base_env(), **self.client_env()},
        )
        self.processes["scheduler"] = scheduler.start()

    # -- reload ---------------------------------------------------------------------------------
    def reload(self) -> str:
        """Re-read ``config_path``; restart the functions, the Monitoring stand-in (if it runs
        policies) and the Scheduler stand-in with it. A config that does not validate raises
        :class:`~warden.errors.ConfigError` before anything is restarted. Returns a summary."""
        from warden.config.schedules import job_specs

        config = load_config(self.config_path)
        self.config = config
        say = self.progress
        say(f"reloading {self.config_path}")
        self.processes["scheduler"].stop()  # no tick while the functions restart
        for spec in self.functions:
            say(f"restarting function {spec.name}")
            key = f"function:{spec.name}"
            self.processes[key].stop()
            port = int(self.function_urls[spec.name].rsplit(":", 1)[1])
            self.processes[key] = self._function_server(spec, port).start(timeout=60)
        router = "route_alerts" if self.alert_channel == "webhook" else "route_alert_events"
        if router in self.function_urls:
            self._restart_monitoring_with_policies()
        if self.speed > 60:
            self._pause_flush_job(keep=True)
        say("restarting the Cloud Scheduler stand-in")
        self._start_scheduler(resume=True)
        return (
            f"{len(config.models)} model(s), {len(self.functions)} function(s) restarted, "
            f"{len(job_specs(config))} scheduler job(s)"
        )

    def _reload_and_record(self) -> None:
        generation = int(self.reload_status.get("generation", 0)) + 1
        try:
            detail = self.reload()
            self.reload_status = {"generation": generation, "status": "ok", "detail": detail}
            self.progress(f"reloaded: {detail}")
        except Exception as exc:  # reported in stack.json; a process left dead stops the stack
            self.reload_status = {"generation": generation, "status": "error", "detail": str(exc)}
            print(f"error: reload failed: {exc}", file=sys.stderr)
        self._write_state()

    def _restart_monitoring_with_policies(self) -> None:
        """Now that the router is up, the Monitoring stand-in can evaluate alert policies and
        send incidents to it (its series survive the restart in the state file): POSTed to
        route_alerts, or — the Pub/Sub notification channel — published to model-events, whose
        push subscription delivers them to route_alert_events."""
        channel = (
            ["--incident-url", self.function_urls["route_alerts"]]
            if self.alert_channel == "webhook"
            else ["--incident-topic", f"projects/{self.project}/topics/{EVENTS_TOPIC}"]
        )
        self.progress("restarting the Monitoring stand-in with alert policies")
        self.processes["monitoring"].stop()
        port = int(self.endpoints["monitoring"].rsplit(":", 1)[1])
        monitoring = PythonService(
            "monitoring",
            [
                "-m",
                "warden_local.monitoring",
                "--port",
                str(port),
                "--state-file",
                str(self.run_dir / "monitoring-state.json"),
                "--config",
                str(self.config_path),
                "--project",
                self.project,
                *channel,
            ],
            port=port,
            log=self._log("monitoring"),
            env={**self._base_env(), "WARDEN_WEBHOOK_TOKEN": self.secrets["WARDEN_WEBHOOK_TOKEN"]},
        )
        self.processes["monitoring"] = monitoring.start()

    def _pause_flush_job(self, *, keep: bool = False) -> None:
        """At a fast clock a per-minute flush tick would fire many times a second; flushing
        still happens on every router invocation. ``keep``: the other jobs' saved states stay
        (a reload), instead of starting afresh."""
        from warden.config.schedules import ALERT_FLUSH

        name = ALERT_FLUSH.name(self.project, self.location)
        path = self.run_dir / "scheduler-state.json"
        jobs: dict[str, Any] = {}
        if keep and path.exists():
            with contextlib.suppress(ValueError, AttributeError):
                jobs = dict(json.loads(path.read_text()).get("jobs", {}))
        jobs[name] = {**jobs.get(name, {}), "state": "PAUSED"}
        path.write_text(json.dumps({"version": 1, "jobs": jobs}))

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _create_buckets_and_topics(self) -> None:
        from google.api_core.exceptions import Conflict
        from google.cloud import pubsub_v1, storage

        client = storage.Client(project=self.project)
        for name in (self.registry_bucket, self.alert_bucket, self.data_bucket, self.backup_bucket):
            with contextlib.suppress(Conflict):
                client.create_bucket(name)
        publisher = pubsub_v1.PublisherClient()
        for topic in (*TOPICS.values(), EVENTS_TOPIC):
            ensure_topic(publisher, self.project, topic)

    def _create_run_jobs(self) -> None:
        """``warden-retrain`` and ``warden-monitor`` on the Cloud Run stand-in, as Terraform
        declares them: ``python -m warden.jobs.task`` with the functions' environment (after
        the clock is fixed: it carries WARDEN_LOCAL_CLOCK) and WARDEN_JOB. Over plain HTTP:
        the ``google-cloud-run`` client would cost the stack half a second of imports."""
        env = {**self.client_env(), "WARDEN_CODE_VERSION": "local"}
        for job, job_id in RUN_JOBS.items():
            container = {
                "name": "task",
                "image": f"local/warden-{job}",  # required by the API; ignored locally
                "command": [sys.executable, *TASK_COMMAND[1:]],  # the image's ENTRYPOINT
                "env": [
                    {"name": k, "value": v} for k, v in sorted({**env, "WARDEN_JOB": job}.items())
                ],
            }
            body = {
                "template": {
                    "taskCount": 1,
                    "template": {
                        "containers": [container],
                        "maxRetries": RUN_JOB_MAX_RETRIES,
                        "timeout": RUN_JOB_TIMEOUT,
                    },
                }
            }
            request = urllib.request.Request(  # noqa: S310 (the stand-in, on loopback)
                f"{self.endpoints['cloudrun']}/v2/projects/{self.project}/locations/"
                f"{self.location}/jobs?jobId={job_id}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                response.read()

    def _create_push_subscriptions(self) -> None:
        """Per event function, what terraform/modules/function deploys: a push subscription to
        the function's root URL with delivery.json's retry and dead-letter policy, the topic's
        ``…-dead-letter`` topic and its hold subscription (terraform/pubsub.tf)."""
        from google.cloud import pubsub_v1

        policy = delivery_policy()
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        try:
            for spec in self.functions:
                if spec.topic is None:
                    continue
                push, hold = wire_trigger(
                    publisher,
                    subscriber,
                    project=self.project,
                    topic_id=spec.topic,
                    subscription_id=push_subscription_id(spec.name, SUBSCRIPTION_PREFIX),
                    push_endpoint=f"{self.function_urls[spec.name]}/",
                    policy=policy,
                    # Pub/Sub's maximum: every function answers within it (modules/function
                    # uses the function's timeout + 30 s, capped at the same 600 s).
                    ack_deadline=600,
                )
                self.subscriptions[spec.name] = {"push": push, "dead_letter_hold": hold}
        finally:
            subscriber.close()

    def _write_state(self) -> None:
        state = {
            "project": self.project,
            "location": self.location,
            "run_dir": str(self.run_dir),
            "endpoints": self.endpoints,
            "functions": self.function_urls,
            "subscriptions": self.subscriptions,
            "env": self.client_env(),
            "speed": self.speed,
            "clock": str(self.clock) if self.clock is not None else None,
            "pids": {name: p.pid for name, p in self.processes.items()},
            "storage_root": str(self.storage_root) if self.storage_root is not None else None,
            "supervisor_pid": self.supervisor_pid,
            "reload": self.reload_status,
        }
        # Atomically: `warden local env` / `reload` may read it while a reload rewrites it.
        path = self.run_dir / "stack.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes.items() if not proc.alive()]

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {name}: {exc}", file=sys.stderr)
        self.processes.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        for key in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
            os.environ.pop(key, None)
        state = self.run_dir / "stack.json"
        if state.exists():
            state.unlink()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, poll: float = 1.0) -> int:
        """Run until SIGINT/SIGTERM; stop everything; non-zero if a process died on its own.
        SIGUSR1 reloads the config (:meth:`reload`; the outcome goes to stack.json). Not SIGHUP:
        a closed terminal sends that."""
        stop = threading.Event()
        reload = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda *_: reload.set())
        self.supervisor_pid = os.getpid()  # only now: SIGUSR1's default action kills
        self._write_state()
        try:
            while not stop.wait(poll):
                if reload.is_set():
                    reload.clear()
                    self._reload_and_record()
                dead = self.dead()
                if dead:
                    print(
                        f"error: {', '.join(dead)} exited; stopping the stack "
                        f"(logs in {self.run_dir})",
                        file=sys.stderr,
                    )
                    return 1
            return 0
        finally:
            self.supervisor_pid = None
            usr1 = previous.pop(signal.SIGUSR1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()  # removes stack.json, then SIGUSR1's handler goes: a late one harms not
            signal.signal(signal.SIGUSR1, usr1)


def read_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "stack.json"
    if not path.exists():
        raise FileNotFoundError(f"no running stack in {run_dir} (start one: warden local up)")
    return json.loads(path.read_text())


def request_reload(run_dir: Path, *, timeout: float = 300.0) -> dict[str, Any]:
    """Ask the stack supervised in ``run_dir`` to reload its config (SIGUSR1) and wait for the
    outcome: stack.json's ``reload`` entry, ``{"generation", "status": "ok"|"error",
    "detail"}``. FileNotFoundError: no stack there; RuntimeError: it takes no reloads or its
    supervisor is gone; TimeoutError: no outcome within ``timeout`` seconds."""
    state = read_state(run_dir)
    if not state.get("supervisor_pid"):  # stack.json is written once before serving starts
        try:
            state = wait_until(
                lambda: (s := read_state(run_dir)).get("supervisor_pid") and s,
                timeout=10,
                what="the stack's supervisor",
            )
        except TimeoutError:
            raise RuntimeError(
                f"the stack in {run_dir} takes no reloads: it is not supervised by "
                "`warden local up` (an in-process stack: call LocalStack.reload())"
            ) from None
    pid = int(state["supervisor_pid"])
    before = int(state.get("reload", {}).get("generation", 0))
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise RuntimeError(
            f"the stack's supervisor (pid {pid}) is gone; {run_dir}/stack.json is stale"
        ) from None

    def answered() -> dict[str, Any] | None:
        if not (Path(run_dir) / "stack.json").exists():
            raise RuntimeError(f"the stack in {run_dir} stopped while reloading (see its logs)")
        outcome = read_state(run_dir).get("reload", {})
        return outcome if int(outcome.get("generation", 0)) > before else None

    return wait_until(answered, timeout=timeout, what=f"the reload of the stack in {run_dir}")


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
