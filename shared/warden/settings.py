"""The one place that reads environment variables.

Terraform sets exactly the variables listed in :data:`ENV_VARS` on each function (a test over the
parsed HCL holds the two together). The Google client libraries read a few of their own
(``STORAGE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``); we read
``STORAGE_EMULATOR_HOST`` only to know whether we run locally.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warden.errors import ConfigError

#: Every variable Warden itself reads, with what it means.
ENV_VARS: dict[str, str] = {
    "WARDEN_PROJECT": "Google Cloud project id (falls back to GOOGLE_CLOUD_PROJECT).",
    "WARDEN_CONFIG": "Path of warden.yaml (default: warden.yaml beside the function's main.py).",
    "WARDEN_REGISTRY_BUCKET": "Bucket holding the model registry.",
    "WARDEN_ALERT_BUCKET": (
        "Bucket holding the alert router's state (_alerting/: groups, silences, notification "
        "log), apart from the registry. Unset: the registry bucket, against the storage emulator "
        "only; elsewhere the router, housekeeping and `warden silence` refuse to guess."
    ),
    "WARDEN_DATA_BUCKET": "Default bucket for training data.",
    "WARDEN_BACKUP_BUCKET": "Bucket that registry snapshots go to (warden backup, housekeeping).",
    "WARDEN_EVENTS_TOPIC": "Pub/Sub topic id for model-events (empty: events are only logged).",
    "WARDEN_RETRAIN_TOPIC": "Pub/Sub topic id that retrain requests go to (monitor, CLI).",
    "WARDEN_MONITORING_ENDPOINT": "host:port of a plaintext MetricService (local stand-in only).",
    "WARDEN_SCHEDULER_ENDPOINT": "http://host:port of a Cloud Scheduler REST API (local only).",
    "WARDEN_LOCATION": "Cloud Scheduler location (region) of Warden's jobs.",
    "WARDEN_RETRAIN_JOB": (
        "Cloud Run job (projects/P/locations/L/jobs/NAME) that runs retrains routed to the job "
        "runner (warden.yaml runners.retrain); empty: none deployed."
    ),
    "WARDEN_MONITOR_JOB": (
        "Cloud Run job (projects/P/locations/L/jobs/NAME) that runs monitor runs routed to the "
        "job runner (warden.yaml runners.monitor); empty: none deployed."
    ),
    "WARDEN_RUN_ENDPOINT": "http://host:port of a Cloud Run Admin API v2 (local stand-in only).",
    "WARDEN_METRICS": "'on' (default) or 'off' to skip Cloud Monitoring writes.",
    "WARDEN_CODE_VERSION": "Version string of the deployed code (bundle hash or git sha).",
    "WARDEN_LOG_LEVEL": "Root log level (default INFO).",
    "WARDEN_WEBHOOK_TOKEN": "Token the Cloud Monitoring webhook must present (secret).",
    "WARDEN_LOCAL_CLOCK": (
        "The local stack's virtual clock, 'START,ANCHOR,SPEED' (epoch seconds, epoch seconds, "
        "factor): now = START + (real time - ANCHOR) x SPEED, shared by the scheduler stand-in and "
        "every function so leases, retention and staleness move with the ticks. Honoured only "
        "against the storage emulator."
    ),
}

#: Not set on deployed functions: the local stand-ins' endpoints, and the config path (functions
#: read the warden.yaml shipped beside their main.py; the CLI may point elsewhere).
LOCAL_ONLY_ENV_VARS = frozenset(
    {
        "WARDEN_MONITORING_ENDPOINT",
        "WARDEN_SCHEDULER_ENDPOINT",
        "WARDEN_RUN_ENDPOINT",
        "WARDEN_CONFIG",
        "WARDEN_LOCAL_CLOCK",
    }
)
#: Set on the Cloud Run jobs only (not on functions): which use case a task runs (Terraform, on the
#: job) and the request it runs (per execution, in the run's container overrides).
JOB_ENV_VARS: dict[str, str] = {
    "WARDEN_JOB": "On a Cloud Run job: the use case its tasks run, 'retrain' or 'monitor'.",
    "WARDEN_RUN_REQUEST": (
        "On a Cloud Run job execution: the run request (JSON, warden.jobs.messages.RunRequest) "
        "the triggering function validated; set per execution through the run's overrides."
    ),
}

#: Delivered to functions from Secret Manager, never as a plain environment variable.
SECRET_ENV_VARS = frozenset({"WARDEN_WEBHOOK_TOKEN"})

DEFAULT_PROJECT = "warden-local"


@dataclass(frozen=True)
class LocalClock:
    """``now = start + (time.time() - anchor) × speed``: one formula, so every process of the
    local stack (scheduler stand-in, functions, CLI) reads the same virtual time."""

    start: float
    anchor: float
    speed: float

    @classmethod
    def parse(cls, text: str) -> LocalClock:
        try:
            start, anchor, speed = (float(x) for x in text.split(","))
        except ValueError:
            raise ConfigError(
                f"environment: WARDEN_LOCAL_CLOCK must be 'START,ANCHOR,SPEED', got {text!r}"
            ) from None
        if not speed > 0:
            raise ConfigError(f"environment: WARDEN_LOCAL_CLOCK speed must be > 0, got {speed}")
        return cls(start, anchor, speed)

    def __str__(self) -> str:
        return f"{self.start!r},{self.anchor!r},{self.speed!r}"

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.start + (time.time() - self.anchor) * self.speed, UTC)


@dataclass(frozen=True)
class Settings:
    """Runtime settings, built once from the environment (or given directly in tests)."""

    project: str = DEFAULT_PROJECT
    config_path: Path = Path("warden.yaml")
    registry_bucket: str = "warden-registry"
    #: The router's state. None (a Settings built in code: tests, benches) means the registry
    #: bucket; "" (from_env outside the emulator without WARDEN_ALERT_BUCKET) means unset, and
    #: :attr:`alert_state_bucket` refuses it.
    alert_bucket: str | None = None
    data_bucket: str = "warden-data"
    backup_bucket: str = "warden-backup"
    events_topic: str = ""
    retrain_topic: str = "retrain-requests"
    monitoring_endpoint: str = ""
    scheduler_endpoint: str = ""
    #: Cloud Run jobs of the job runner (full resource names) and, locally, the Admin API stand-in.
    retrain_job: str = ""
    monitor_job: str = ""
    run_endpoint: str = ""
    location: str = "europe-west1"
    metrics_enabled: bool = True
    code_version: str = "dev"
    log_level: str = "INFO"
    storage_emulator_host: str = ""
    local_clock: LocalClock | None = None
    #: Running on Cloud Run (functions 2nd gen, jobs): ``K_SERVICE`` or ``CLOUD_RUN_JOB`` is set.
    serverless: bool = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_config: Path | None = None
    ) -> Settings:
        env = os.environ if environ is None else environ
        metrics = env.get("WARDEN_METRICS", "on").strip().lower()
        if metrics not in {"on", "off"}:
            raise ConfigError(f"environment: WARDEN_METRICS must be 'on' or 'off', got {metrics!r}")
        config_path = env.get("WARDEN_CONFIG") or (default_config or Path("warden.yaml"))
        emulator = env.get("STORAGE_EMULATOR_HOST", "")
        # Locally (tests, tools that predate the split) the router's state may share the
        # registry bucket; against real Cloud Storage it never falls back there silently.
        alert_bucket = env.get("WARDEN_ALERT_BUCKET", "").strip() or (None if emulator else "")
        clock_text = env.get("WARDEN_LOCAL_CLOCK", "").strip()
        local_clock = LocalClock.parse(clock_text) if clock_text and emulator else None
        return cls(
            project=env.get("WARDEN_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT,
            config_path=Path(config_path),
            registry_bucket=env.get("WARDEN_REGISTRY_BUCKET", cls.registry_bucket),
            alert_bucket=alert_bucket,
            data_bucket=env.get("WARDEN_DATA_BUCKET", cls.data_bucket),
            backup_bucket=env.get("WARDEN_BACKUP_BUCKET", cls.backup_bucket),
            events_topic=env.get("WARDEN_EVENTS_TOPIC", ""),
            retrain_topic=env.get("WARDEN_RETRAIN_TOPIC", cls.retrain_topic),
            monitoring_endpoint=env.get("WARDEN_MONITORING_ENDPOINT", ""),
            scheduler_endpoint=env.get("WARDEN_SCHEDULER_ENDPOINT", ""),
            location=env.get("WARDEN_LOCATION", cls.location),
            retrain_job=env.get("WARDEN_RETRAIN_JOB", "").strip(),
            monitor_job=env.get("WARDEN_MONITOR_JOB", "").strip(),
            run_endpoint=env.get("WARDEN_RUN_ENDPOINT", "").strip(),
            metrics_enabled=metrics == "on",
            code_version=env.get("WARDEN_CODE_VERSION", "dev"),
            log_level=env.get("WARDEN_LOG_LEVEL", "INFO").upper(),
            storage_emulator_host=emulator,
            local_clock=local_clock,
            serverless=bool(env.get("K_SERVICE") or env.get("CLOUD_RUN_JOB")),
        )

    def now(self) -> datetime:
        """The time leases, retention and staleness are measured in: the real UTC time, or the
        local stack's virtual clock."""
        return self.local_clock.now() if self.local_clock else datetime.now(UTC)

    @property
    def is_local(self) -> bool:
        return bool(self.storage_emulator_host)

    @property
    def alert_state_bucket(self) -> str:
        """The bucket of the alert router's state (``_alerting/``), never guessed in the cloud."""
        if self.alert_bucket is None:
            return self.registry_bucket
        if not self.alert_bucket:
            raise ConfigError(
                "environment: WARDEN_ALERT_BUCKET is not set; the alert router's state (groups, "
                "silences) lives in its own bucket, PREFIX-alerts "
                '(eval "$(terraform output -raw cli_env)" sets it)'
            )
        return self.alert_bucket


@dataclass(frozen=True)
class TaskContext:
    """One task of a Cloud Run job execution, as Cloud Run and Warden's job describe it: Cloud
    Run sets ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX`` (0-based), ``CLOUD_RUN_TASK_COUNT``
    and ``CLOUD_RUN_TASK_ATTEMPT`` (0 on the first try); the job sets :data:`JOB_ENV_VARS`."""

    job: str
    request: str
    execution: str = "local"
    index: int = 0
    count: int = 1
    attempt: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskContext:
        env = os.environ if environ is None else environ
        job = env.get("WARDEN_JOB", "").strip()
        if job not in {"retrain", "monitor"}:
            raise ConfigError(
                f"environment: WARDEN_JOB must be 'retrain' or 'monitor', got {job!r}"
            )
        request = env.get("WARDEN_RUN_REQUEST", "").strip()
        if not request:
            raise ConfigError(
                "environment: WARDEN_RUN_REQUEST is empty; a job execution gets its request "
                "from the run's container overrides (warden.jobs.dispatch)"
            )

        def number(name: str, default: int) -> int:
            text = env.get(name, "").strip()
            try:
                return int(text) if text else default
            except ValueError:
                raise ConfigError(f"environment: {name} must be an integer, got {text!r}") from None

        index, count = number("CLOUD_RUN_TASK_INDEX", 0), number("CLOUD_RUN_TASK_COUNT", 1)
        if not 0 <= index < count:
            raise ConfigError(f"environment: task index {index} is outside 0..{count - 1}")
        return cls(
            job=job,
            request=request,
            execution=env.get("CLOUD_RUN_EXECUTION", "").strip() or "local",
            index=index,
            count=count,
            attempt=number("CLOUD_RUN_TASK_ATTEMPT", 0),
        )


def secret(name: str) -> str | None:
    """A receiver secret (webhook URL or HMAC key) named in the alerting config, or None."""
    return os.environ.get(name) or None


#: What :func:`operator_identity` reads, in order (the CLI records it as the actor of a move).
OPERATOR_SOURCES = (
    "CLOUDSDK_CORE_ACCOUNT (gcloud's account override)",
    "GOOGLE_APPLICATION_CREDENTIALS: a service-account key file's client_email",
    "gcloud's active configuration: [core] account (CLOUDSDK_CONFIG, default ~/.config/gcloud)",
    "the login name (LOGNAME, USER, LNAME, USERNAME, then the password database)",
)


def operator_identity(environ: Mapping[str, str] | None = None, *, home: Path | None = None) -> str:
    """Who runs the CLI, for the registry's history and the events of a move: the first of
    :data:`OPERATOR_SOURCES` that names someone, else ``"unknown"``. Local files only (no
    metadata server, no token refresh), so it costs nothing when nobody is found."""
    env = os.environ if environ is None else environ
    account = env.get("CLOUDSDK_CORE_ACCOUNT", "").strip()
    if account:
        return account
    email = _key_file_email(env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip())
    if email:
        return email
    config_dir = env.get("CLOUDSDK_CONFIG", "").strip()
    gcloud = Path(config_dir) if config_dir else (home or Path.home()) / ".config" / "gcloud"
    account = _gcloud_account(gcloud, env.get("CLOUDSDK_ACTIVE_CONFIG_NAME", "").strip())
    if account:
        return account
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass.getuser() reads
        if env.get(name, "").strip():
            return env[name].strip()
    import getpass

    try:
        return getpass.getuser()  # the password database
    except (OSError, KeyError, ImportError):
        return "unknown"


def _key_file_email(path: str) -> str:
    """``client_email`` of a service-account key file; "" for anything else or unreadable."""
    if not path:
        return ""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or data.get("type") != "service_account":
        return ""
    email = data.get("client_email")
    return email.strip() if isinstance(email, str) else ""


def _gcloud_account(config_dir: Path, active: str) -> str:
    """``[core] account`` of gcloud's active configuration (what ``gcloud config get-value
    account`` prints); "" when there is none or it cannot be read."""
    import configparser

    if not active:
        try:
            active = (config_dir / "active_config").read_text().strip()
        except (OSError, UnicodeDecodeError):
            active = ""
    try:
        name = active or "default"
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(config_dir / "configurations" / f"config_{name}")
        return parser.get("core", "account", fallback="").strip()
    except (OSError, configparser.Error, UnicodeDecodeError):
        return ""
