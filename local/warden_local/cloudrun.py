"""A local Cloud Run Admin API v2 stand-in for jobs: create, run (with overrides), executions.

Cloud Run has no emulator, so this is a small stdlib HTTP server speaking the v2 REST API as
the real ``google-cloud-run`` client (``transport="rest"``) calls it, with camelCase JSON shaped
like Google's (fields at their default value are left out, as proto3 JSON does; enums as names,
or as numbers when the client asks ``$alt=json;enum-encoding=int``). Shapes and paths from:

* https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs (Job,
  ExecutionTemplate, TaskTemplate, Container, EnvVar, Condition, ExecutionReference)
* https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs/run (RunJobRequest,
  Overrides, ContainerOverride: env merged by name, args replaced, ``clearArgs``)
* https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions
  (Execution and its counts; ``get``, ``list``, ``cancel``)
* https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.operations (Operation)
* https://cloud.google.com/run/docs/container-contract (a task's ``CLOUD_RUN_JOB``,
  ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX``, ``CLOUD_RUN_TASK_ATTEMPT``,
  ``CLOUD_RUN_TASK_COUNT``; exit code 0 is success)
* https://cloud.google.com/run/docs/create-jobs (defaults: 1 task, 3 retries, 600 s timeout;
  a task past its retries fails the execution once every task has been tried)
* the client's REST transports (``run_v2/services/{jobs,executions}/transports/rest_base.py``):
  the exact URIs below.

Endpoints, under ``/v2/projects/P/locations/L`` (the stand-in's project and location; any
other parent is NOT_FOUND), plus one of its own:

======  ==================================  ================================================
POST    ``/jobs?jobId=J``                   CreateJob → Operation (done)
GET     ``/jobs``, ``/jobs/J``              ListJobs, GetJob
DELETE  ``/jobs/J``                         DeleteJob → Operation (done)
POST    ``/jobs/J:run``                     RunJob → Operation (done once the execution is)
GET     ``/jobs/J/executions[/E]``          ListExecutions (newest first), GetExecution
POST    ``/jobs/J/executions/E:cancel``     CancelExecution → Operation
GET     ``/operations[/ID]``                ListOperations, GetOperation
POST    ``/operations/ID:wait``             WaitOperation
GET     ``/_local/executions/E`` (no /v2)   **not Google's API**: each task attempt's pid,
                                            whether it runs, exit code and log file
======  ==================================  ================================================

What runs locally, and where it differs from Cloud Run:

* **A container is a local process**: ``command + args`` run with the stand-in's base
  environment, the container's ``env``, the run's override ``env`` and the reserved
  ``CLOUD_RUN_*`` variables (reserved ones win). The ``image`` is required (as by Google) but
  ignored; ``workingDir``, when set, is the process's working folder. A container without a
  ``command`` runs its ``args`` (there is no image entrypoint to fall back on). Only the first
  container runs (Cloud Run jobs allow sidecars; Warden uses none).
* **Tasks**: at most ``parallelism`` at once (0: all). Each runs in its own session (process
  group); a non-zero exit, a signal or the timeout (the whole group is SIGKILLed) is a failed
  attempt, retried at once up to ``maxRetries`` times with ``CLOUD_RUN_TASK_ATTEMPT`` + 1 (no
  backoff). stdout and stderr of each attempt go to ``LOG_DIR/E-task{i}-attempt{a}.log``
  (Cloud Logging's stand-in); the Execution's ``logUri`` is that folder's ``file://`` URI.
* **Counts** as documented: ``retriedCount`` counts tasks retried at least once, not retries.
* **Operations**: RunJob's Operation carries the Execution as ``metadata`` (while it runs and
  after) and, once done, as ``response``; a failed execution's Operation has ``error``
  instead (the two are one union field): code 9, FAILED_PRECONDITION, with the first failed
  task's message (Google documents that the operation fails, not which code); a cancelled one
  code 1, CANCELLED. CreateJob/DeleteJob are done at once.
* An execution is named ``J-xxxxx`` (five random lowercase letters and digits) and its ``job``
  field holds the job's id ``J``; its tasks' messages name them ``J-xxxxx-taskI``.
* Resource names use the project id given (not the project number); times are real UTC time
  (not the local stack's virtual clock); state lives in memory only. Unknown request fields
  are ignored rather than rejected; snake_case field names are accepted like camelCase (as
  Google's JSON parser does). UpdateJob and DeleteExecution answer 501 UNIMPLEMENTED.
* If the stand-in is SIGKILLed, its tasks outlive it (SIGTERM/SIGINT and :meth:`stop` stop them).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from warden_local.rest import ApiError, JsonApiHandler

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "EXECUTION_TYPE",
    "JOB_TYPE",
    "ApiError",
    "CloudRunStandIn",
    "main",
]

log = logging.getLogger("warden_local.cloudrun")

#: Cloud Run's defaults for a job's TaskTemplate and ExecutionTemplate (create-jobs docs).
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = "600s"
DEFAULT_TASK_COUNT = 1
JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
#: google.rpc.Code of a failed execution's Operation (see the module docstring).
_FAILED_CODE = 9
#: How long stop() lets tasks handle SIGTERM before SIGKILL (Cloud Run gives 10 s).
_TERM_GRACE = 3.0
_ID_CHARS = string.ascii_lowercase + string.digits
#: Enum fields we emit → value numbers (google.cloud.run.v2 protos), for enum-encoding=int.
_ENUMS: dict[str, dict[str, int]] = {
    "state": {
        "STATE_UNSPECIFIED": 0,
        "CONDITION_PENDING": 1,
        "CONDITION_RECONCILING": 2,
        "CONDITION_FAILED": 3,
        "CONDITION_SUCCEEDED": 4,
    },
    "executionReason": {
        "EXECUTION_REASON_UNDEFINED": 0,
        "JOB_STATUS_SERVICE_POLLING_ERROR": 1,
        "NON_ZERO_EXIT_CODE": 2,
        "CANCELLED": 3,
        "CANCELLING": 4,
        "DELETED": 5,
    },
    "severity": {"SEVERITY_UNSPECIFIED": 0, "ERROR": 1, "WARNING": 2, "INFO": 3},
    "launchStage": {"LAUNCH_STAGE_UNSPECIFIED": 0, "ALPHA": 2, "BETA": 3, "GA": 4},
    "completionStatus": {
        "COMPLETION_STATUS_UNSPECIFIED": 0,
        "EXECUTION_SUCCEEDED": 1,
        "EXECUTION_FAILED": 2,
        "EXECUTION_RUNNING": 3,
        "EXECUTION_PENDING": 4,
        "EXECUTION_CANCELLED": 5,
    },
    "executionEnvironment": {
        "EXECUTION_ENVIRONMENT_UNSPECIFIED": 0,
        "EXECUTION_ENVIRONMENT_GEN1": 1,
        "EXECUTION_ENVIRONMENT_GEN2": 2,
    },
}
_ENUM_NAMES = {key: {v: k for k, v in names.items()} for key, names in _ENUMS.items()}
#: Maps whose keys are the user's, not field names (left as they are when normalising input).
_MAP_FIELDS = frozenset({"labels", "annotations", "nodeSelector", "limits"})
_ONEOF_FIELDS = frozenset({"maxRetries"})
_JOB_ID = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    """``2026-12-07T12:00:00.123456Z``, as Google writes Timestamps (UTC, "Z")."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _normalise(value: Any, *, in_map: bool = False) -> Any:
    """Request JSON with snake_case field names turned camelCase (Google accepts both)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key if in_map else _camel(key)
            out[name] = _normalise(item, in_map=name in _MAP_FIELDS and not in_map)
        return out
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value


def _prune(value: Any) -> Any:
    """Drop fields at their default (0, "", false, [], {}), as proto3 JSON output does; a
    field in a oneof (``maxRetries``) is written even at 0, as Google writes it."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {
            k: v
            for k, v in pruned.items()
            if k in _ONEOF_FIELDS or v not in (0, "", False, [], {}, None)
        }
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


def _encode_enums(value: Any, *, as_int: bool) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _MAP_FIELDS:  # user keys ("state" may be a label)
                out[key] = item
            elif key in _ENUMS and isinstance(item, str) and as_int:
                out[key] = _ENUMS[key].get(item, 0)
            else:
                out[key] = _encode_enums(item, as_int=as_int)
        return out
    if isinstance(value, list):
        return [_encode_enums(item, as_int=as_int) for item in value]
    return value


def _enum_name(key: str, value: Any) -> Any:
    """An enum given as a number (the client's enum-encoding=int bodies) as its name."""
    if isinstance(value, int) and key in _ENUM_NAMES:
        return _ENUM_NAMES[key].get(value, value)
    return value


def _seconds(value: Any, what: str) -> float:
    """A google.protobuf.Duration in JSON ("600s", "1.5s"); a bare number is taken as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.endswith("s"):
        try:
            seconds = float(value[:-1])
        except ValueError:
            raise ApiError.invalid(f"{what}: invalid duration {value!r}") from None
    else:
        raise ApiError.invalid(f'{what}: invalid duration {value!r} (expected like "600s")')
    if seconds <= 0:
        raise ApiError.invalid(f"{what}: must be positive, got {value!r}")
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _int(value: Any, what: str, *, minimum: int = 0) -> int:
    try:
        number = int(value)  # int64 fields may come as strings in proto3 JSON
    except (TypeError, ValueError):
        raise ApiError.invalid(f"{what}: not an integer: {value!r}") from None
    if number < minimum:
        raise ApiError.invalid(f"{what}: must be >= {minimum}, got {number}")
    return number


def _env_list(value: Any, what: str) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError.invalid(f"{what}: expected a list of {{name, value}}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not item.get("name"):
            raise ApiError.invalid(f"{what}[{i}].name: required")
        if "valueSource" in item:
            raise ApiError.unimplemented(
                f"{what}[{i}].valueSource: Secret Manager references are not served locally"
            )
        out.append({"name": str(item["name"]), "value": str(item.get("value", ""))})
    return out


def _merge_env(base: list[dict[str, str]], override: list[dict[str, str]]) -> list[dict[str, str]]:
    """ContainerOverride.env is merged with the container's env: same name, new value."""
    merged = {item["name"]: item["value"] for item in base}
    for item in override:
        merged[item["name"]] = item["value"]
    return [{"name": name, "value": value} for name, value in merged.items()]


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError.invalid(f"{what}: expected a list of strings")
    return list(value)


# -- state -----------------------------------------------------------------------------------------
@dataclass
class _Container:
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[dict[str, str]]
    working_dir: str

    @classmethod
    def parse(cls, raw: Any, what: str) -> _Container:
        if not isinstance(raw, dict):
            raise ApiError.invalid(f"{what}: expected an object")
        if not raw.get("image"):
            raise ApiError.invalid(f"{what}.image: required")
        return cls(
            name=str(raw.get("name", "")),
            image=str(raw["image"]),
            command=_strings(raw.get("command"), f"{what}.command"),
            args=_strings(raw.get("args"), f"{what}.args"),
            env=_env_list(raw.get("env"), f"{what}.env"),
            working_dir=str(raw.get("workingDir", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "command": list(self.command),
            "args": list(self.args),
            "env": [dict(item) for item in self.env],
            "workingDir": self.working_dir,
        }


@dataclass
class _Template:
    """ExecutionTemplate + its TaskTemplate, as a job holds it (and an execution, overridden)."""

    task_count: int
    parallelism: int
    containers: list[_Container]
    max_retries: int
    timeout: float
    service_account: str = ""
    execution_environment: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any) -> _Template:
        raw = raw if isinstance(raw, dict) else {}
        task = raw.get("template") or {}
        if not isinstance(task, dict):
            raise ApiError.invalid("template.template: expected an object")
        containers = task.get("containers") or []
        if not isinstance(containers, list) or not containers:
            raise ApiError.invalid("template.template.containers: at least one is required")
        return cls(
            task_count=_int(
                raw.get("taskCount", DEFAULT_TASK_COUNT) or DEFAULT_TASK_COUNT,
                "template.taskCount",
                minimum=1,
            ),
            parallelism=_int(raw.get("parallelism", 0), "template.parallelism"),
            containers=[
                _Container.parse(item, f"template.template.containers[{i}]")
                for i, item in enumerate(containers)
            ],
            # maxRetries is a oneof: an explicit 0 means no retry, absence the default.
            max_retries=_int(
                task.get("maxRetries", DEFAULT_MAX_RETRIES), "template.template.maxRetries"
            ),
            timeout=_seconds(task.get("timeout", DEFAULT_TIMEOUT), "template.template.timeout"),
            service_account=str(task.get("serviceAccount", "")),
            execution_environment=str(
                _enum_name("executionEnvironment", task.get("executionEnvironment", ""))
            ),
            labels=dict(raw.get("labels") or {}),
        )

    def task_template_json(self) -> dict[str, Any]:
        return {
            "containers": [c.to_json() for c in self.containers],
            # Emitted even at 0, as Google does for a field in a oneof.
            "maxRetries": self.max_retries,
            "timeout": _duration(self.timeout),
            "serviceAccount": self.service_account,
            "executionEnvironment": self.execution_environment,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "taskCount": self.task_count,
            "parallelism": self.parallelism,
            "template": self.task_template_json(),
        }


@dataclass
class _Job:
    job_id: str
    name: str
    uid: str
    template: _Template
    labels: dict[str, str]
    annotations: dict[str, str]
    create_time: datetime
    executions: list[str] = field(default_factory=list)  # execution ids, oldest first


@dataclass
class _Attempt:
    index: int
    attempt: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    timed_out: bool = False


@dataclass
class _Execution:
    execution_id: str
    name: str
    uid: str
    job: _Job
    template: _Template
    create_time: datetime
    operation: str
    start_time: datetime | None = None
    completion_time: datetime | None = None
    update_time: datetime | None = None
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried_tasks: set[int] = field(default_factory=set)
    attempts: list[_Attempt] = field(default_factory=list)
    failure: str = ""  # the first failed task's message
    cancel_requested: bool = False
    done: bool = False

    @property
    def status(self) -> str:
        if not self.done:
            return "EXECUTION_RUNNING" if self.start_time else "EXECUTION_PENDING"
        if self.cancelled:
            return "EXECUTION_CANCELLED"
        return "EXECUTION_FAILED" if self.failed else "EXECUTION_SUCCEEDED"


# -- the stand-in ----------------------------------------------------------------------------------
class CloudRunStandIn:
    """Cloud Run jobs for ``projects/{project}/locations/{location}`` on a loopback port.

    ``env``: the base environment of every task (default: this process's). ``log_dir``: where
    each task attempt's output goes. Use as a context manager, or :meth:`start`/:meth:`stop`.
    """

    def __init__(
        self,
        *,
        project: str,
        location: str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.project = project
        self.location = location
        self.log_dir = Path(log_dir)
        self.env = dict(env) if env is not None else None
        self._port = port
        self._cond = threading.Condition()  # guards all state below; notified on any change
        self._jobs: dict[str, _Job] = {}
        self._executions: dict[str, _Execution] = {}  # by execution id
        self._operations: dict[str, dict[str, Any]] = {}  # by operation id: static parts
        self._stopping = False
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the client's ``api_endpoint``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.standin = self
        thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="cloudrun-http",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)
        log.info("serving %s on %s", self.parent, self.url)
        return self

    def stop(self) -> None:
        """Stop serving and stop every task process (SIGTERM, then SIGKILL after a grace)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._kill_tasks(self._live_attempts())
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=_TERM_GRACE + 10)
            if thread.is_alive():
                log.warning("thread %s did not stop", thread.name)
        self._threads = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the API, in Python (JSON dicts shaped like the REST API's) --------------------------------
    def create_job(self, job_id: str, job: Mapping[str, Any]) -> dict[str, Any]:
        """CreateJob: ``job`` is a Job's JSON (camelCase or snake_case); returns the Job."""
        if not _JOB_ID.fullmatch(job_id):
            raise ApiError.invalid(
                f"jobId {job_id!r}: must be 1-63 lowercase letters, digits or hyphens, "
                "start with a letter and not end with a hyphen"
            )
        raw = _normalise(dict(job))
        template = _Template.parse(raw.get("template"))
        with self._cond:
            if job_id in self._jobs:
                raise ApiError(
                    HTTPStatus.CONFLICT,
                    "ALREADY_EXISTS",
                    f"Resource '{job_id}' already exists.",
                )
            created = _Job(
                job_id=job_id,
                name=f"{self.parent}/jobs/{job_id}",
                uid=str(uuid.uuid4()),
                template=template,
                labels=dict(raw.get("labels") or {}),
                annotations=dict(raw.get("annotations") or {}),
                create_time=_now(),
            )
            self._jobs[job_id] = created
            log.info("created job %s", created.name)
            return self._job_json(created)

    def get_job(self, job_id: str) -> dict[str, Any]:
        with self._cond:
            return self._job_json(self._job(job_id))

    def list_jobs(self) -> list[dict[str, Any]]:
        with self._cond:
            return [self._job_json(job) for job in self._jobs.values()]

    def delete_job(self, job_id: str) -> dict[str, Any]:
        with self._cond:
            job = self._job(job_id)
            if any(not self._executions[e].done for e in job.executions):
                raise ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    f"Job {job.name} has running executions; cancel them first.",
                )
            body = self._job_json(job)
            del self._jobs[job_id]
            for execution_id in job.executions:
                self._executions.pop(execution_id, None)
            return body

    def run_job(self, job_id: str, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """RunJob with a RunJobRequest's JSON (``overrides``...); returns the Operation."""
        raw = _normalise(dict(request or {}))
        with self._cond:
            if self._stopping:
                raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", "shutting down")
            job = self._job(job_id)
            template = self._overridden(job.template, raw.get("overrides"))
            if raw.get("validateOnly"):
                return {"name": f"{self.parent}/operations/{uuid.uuid4()}", "done": True}
            execution_id = f"{job_id}-{''.join(secrets.choice(_ID_CHARS) for _ in range(5))}"
            operation_id = str(uuid.uuid4())
            execution = _Execution(
                execution_id=execution_id,
                name=f"{job.name}/executions/{execution_id}",
                uid=str(uuid.uuid4()),
                job=job,
                template=template,
                create_time=_now(),
                operation=operation_id,
            )
            self._executions[execution_id] = execution
            self._operations[operation_id] = {"kind": "run", "execution": execution_id}
            job.executions.append(execution_id)
            thread = threading.Thread(
                target=self._run_execution,
                args=(execution,),
                name=f"cloudrun-{execution_id}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()
            log.info("%s: started (%d task(s))", execution.name, template.task_count)
            return self._operation_json(operation_id)

    def get_execution(self, name: str) -> dict[str, Any]:
        """GetExecution by full name or execution id."""
        with self._cond:
            return self._execution_json(self._execution(name))

    def list_executions(self, job_id: str) -> list[dict[str, Any]]:
        """The job's executions, newest first (as Google lists them)."""
        with self._cond:
            job = self._job(job_id)
            return [self._execution_json(self._executions[e]) for e in reversed(job.executions)]

    def cancel_execution(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """CancelExecution: stop its tasks (no retry); returns the Operation, done once they
        are stopped (within ``timeout``)."""
        with self._cond:
            execution = self._execution(name)
            execution.cancel_requested = True
            live = [a for a in execution.attempts if a.proc is not None and a.exit_code is None]
            self._cond.notify_all()
        self._kill_tasks(live)
        self.wait(execution.name, timeout)
        operation_id = str(uuid.uuid4())
        with self._cond:
            self._operations[operation_id] = {"kind": "cancel", "execution": execution.execution_id}
            return self._operation_json(operation_id)

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        with self._cond:
            return self._operation_json(self._operation(operation_id))

    def list_operations(self) -> list[dict[str, Any]]:
        with self._cond:
            return [self._operation_json(op) for op in self._operations]

    def wait_operation(self, operation_id: str, timeout: float) -> dict[str, Any]:
        """WaitOperation: the Operation once done, or as it is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                body = self._operation_json(self._operation(operation_id))
                remaining = deadline - time.monotonic()
                if body.get("done") or remaining <= 0 or self._stopping:
                    return body
                self._cond.wait(remaining)

    # -- helpers for tests and the local stack (not Google's API) ----------------------------------
    def wait(self, execution_name: str, timeout: float) -> dict[str, Any]:
        """The Execution's JSON once it has finished; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            execution = self._execution(execution_name)
            while not execution.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{execution.name} did not finish within {timeout:g}s "
                        f"({execution.succeeded} succeeded, {execution.running} running)"
                    )
                self._cond.wait(remaining)
            return self._execution_json(execution)

    def task_processes(self, execution_name: str) -> list[subprocess.Popen[bytes]]:
        """The execution's task processes still running (one per running task)."""
        with self._cond:
            execution = self._execution(execution_name)
            return [
                a.proc
                for a in execution.attempts
                if a.proc is not None and a.exit_code is None and a.proc.poll() is None
            ]

    def local_execution(self, execution_name: str) -> dict[str, Any]:
        """``GET /_local/executions/E``: every attempt's task index, attempt, pid, whether it
        still runs, exit code and log file."""
        with self._cond:
            execution = self._execution(execution_name)
            return {
                "name": execution.name,
                "done": execution.done,
                "tasks": [
                    {
                        "index": a.index,
                        "attempt": a.attempt,
                        "pid": a.proc.pid if a.proc is not None else None,
                        "running": a.proc is not None and a.exit_code is None,
                        "exitCode": a.exit_code,
                        "timedOut": a.timed_out,
                        "log": str(a.log),
                    }
                    for a in execution.attempts
                ],
            }

    # -- lookups (with the lock held) --------------------------------------------------------------
    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise ApiError.not_found(
                f"Resource '{job_id}' of kind 'JOB' in region '{self.location}' in project "
                f"'{self.project}' does not exist."
            ) from None

    def _execution(self, name: str) -> _Execution:
        execution_id = name.rsplit("/", 1)[-1]
        execution = self._executions.get(execution_id)
        if execution is None or (
            "/" in name and name != execution.name  # a full name must match in full
        ):
            raise ApiError.not_found(
                f"Resource '{execution_id}' of kind 'EXECUTION' in region '{self.location}' "
                f"in project '{self.project}' does not exist."
            )
        return execution

    def _operation(self, operation_id: str) -> str:
        if operation_id not in self._operations:
            raise ApiError.not_found(
                f"Operation {self.parent}/operations/{operation_id} not found."
            )
        return operation_id

    # -- JSON (with the lock held) -----------------------------------------------------------------
    def _job_json(self, job: _Job) -> dict[str, Any]:
        latest: dict[str, Any] = {}
        if job.executions:
            last = self._executions[job.executions[-1]]
            latest = {
                "name": last.execution_id,
                "createTime": _rfc3339(last.create_time),
                "completionTime": _rfc3339(last.completion_time) if last.completion_time else "",
                "completionStatus": last.status,
            }
        created = _rfc3339(job.create_time)
        return _prune(
            {
                "name": job.name,
                "uid": job.uid,
                "generation": "1",
                "labels": dict(job.labels),
                "annotations": dict(job.annotations),
                "createTime": created,
                "updateTime": created,
                "launchStage": "GA",
                "template": job.template.to_json(),
                "observedGeneration": "1",
                "terminalCondition": {
                    "type": "Ready",
                    "state": "CONDITION_SUCCEEDED",
                    "lastTransitionTime": created,
                },
                "executionCount": len(job.executions),
                "latestCreatedExecution": latest,
                "etag": f'"{job.uid[:8]}"',
            }
        )

    def _execution_json(self, execution: _Execution) -> dict[str, Any]:
        created = _rfc3339(execution.create_time)
        started = _rfc3339(execution.start_time) if execution.start_time else ""
        completed = _rfc3339(execution.completion_time) if execution.completion_time else ""
        conditions: list[dict[str, Any]] = [
            {
                "type": "ResourcesAvailable",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": created,
            },
        ]
        if execution.start_time is not None:
            conditions.append(
                {"type": "Started", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": started}
            )
        status = execution.status
        if status == "EXECUTION_SUCCEEDED":
            completed_condition = {
                "type": "Completed",
                "state": "CONDITION_SUCCEEDED",
                "message": "Execution completed successfully.",
                "lastTransitionTime": completed,
            }
        elif status in ("EXECUTION_FAILED", "EXECUTION_CANCELLED"):
            cancelled = status == "EXECUTION_CANCELLED"
            completed_condition = {
                "type": "Completed",
                "state": "CONDITION_FAILED",
                "message": "The execution was cancelled." if cancelled else execution.failure,
                "lastTransitionTime": completed,
                "executionReason": "CANCELLED" if cancelled else "NON_ZERO_EXIT_CODE",
            }
        else:
            completed_condition = {
                "type": "Completed",
                "state": "CONDITION_PENDING",
                "lastTransitionTime": created,
            }
        conditions.insert(0, completed_condition)
        updated = execution.update_time or execution.create_time
        return _prune(
            {
                "name": execution.name,
                "uid": execution.uid,
                "generation": "1",
                "labels": dict(execution.template.labels),
                "createTime": created,
                "startTime": started,
                "completionTime": completed,
                "updateTime": _rfc3339(updated),
                "launchStage": "GA",
                "job": execution.job.job_id,
                "parallelism": execution.template.parallelism,
                "taskCount": execution.template.task_count,
                "template": execution.template.task_template_json(),
                "reconciling": not execution.done,
                "conditions": conditions,
                "observedGeneration": "1",
                "runningCount": execution.running,
                "succeededCount": execution.succeeded,
                "failedCount": execution.failed,
                "cancelledCount": execution.cancelled,
                "retriedCount": len(execution.retried_tasks),
                "logUri": self.log_dir.resolve().as_uri(),
                "etag": f'"{execution.uid[:8]}-{int(updated.timestamp() * 1e6)}"',
            }
        )

    def _operation_json(self, operation_id: str) -> dict[str, Any]:
        entry = self._operations[operation_id]
        name = f"{self.parent}/operations/{operation_id}"
        if entry["kind"] in ("create", "delete"):
            body = {**entry["job"]}
            return {
                "name": name,
                "metadata": {"@type": JOB_TYPE, **body},
                "done": True,
                "response": {"@type": JOB_TYPE, **body},
            }
        execution = self._executions.get(entry["execution"])
        if execution is None:  # its job was deleted since
            return {
                "name": name,
                "done": True,
                "error": {"code": 5, "message": f"Execution {entry['execution']} was deleted."},
            }
        body = {"@type": EXECUTION_TYPE, **self._execution_json(execution)}
        out: dict[str, Any] = {"name": name, "metadata": body}
        if execution.done:  # proto3 JSON leaves "done": false out
            out["done"] = True
            # error and response are one union field: a failed run has only the error.
            if execution.status == "EXECUTION_FAILED":
                out["error"] = {"code": _FAILED_CODE, "message": execution.failure}
            elif execution.status == "EXECUTION_CANCELLED" and entry["kind"] == "run":
                out["error"] = {"code": 1, "message": "The execution was cancelled."}
            else:
                out["response"] = body
        return out

    def record_job_operation(self, kind: str, job: dict[str, Any]) -> dict[str, Any]:
        """An Operation (done) for CreateJob/DeleteJob, kept for GetOperation."""
        operation_id = str(uuid.uuid4())
        with self._cond:
            self._operations[operation_id] = {"kind": kind, "job": job}
            return self._operation_json(operation_id)

    # -- overrides ---------------------------------------------------------------------------------
    def _overridden(self, template: _Template, overrides: Any) -> _Template:
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise ApiError.invalid("overrides: expected an object")
        containers = [
            _Container(c.name, c.image, list(c.command), list(c.args), list(c.env), c.working_dir)
            for c in template.containers
        ]
        for i, raw in enumerate(overrides.get("containerOverrides") or []):
            what = f"overrides.containerOverrides[{i}]"
            if not isinstance(raw, dict):
                raise ApiError.invalid(f"{what}: expected an object")
            name = str(raw.get("name", ""))
            if name:
                target = next((c for c in containers if c.name == name), None)
                if target is None:
                    raise ApiError.invalid(f"{what}.name: no container named {name!r} in the job")
            elif len(containers) == 1 or i < len(containers):
                target = containers[0] if len(containers) == 1 else containers[i]
            else:
                raise ApiError.invalid(f"{what}.name: required when the job has several containers")
            args = _strings(raw.get("args"), f"{what}.args")
            if raw.get("clearArgs"):
                target.args = []
            elif args:
                target.args = args
            target.env = _merge_env(target.env, _env_list(raw.get("env"), f"{what}.env"))
        task_count = template.task_count
        if overrides.get("taskCount") not in (None, 0):
            task_count = _int(overrides["taskCount"], "overrides.taskCount", minimum=1)
        timeout = template.timeout
        if overrides.get("timeout") not in (None, ""):
            timeout = _seconds(overrides["timeout"], "overrides.timeout")
        return _Template(
            task_count=task_count,
            parallelism=template.parallelism,
            containers=containers,
            max_retries=template.max_retries,
            timeout=timeout,
            service_account=template.service_account,
            execution_environment=template.execution_environment,
            labels=dict(template.labels),
        )

    # -- running -----------------------------------------------------------------------------------
    def _run_execution(self, execution: _Execution) -> None:
        template = execution.template
        limit = template.parallelism or template.task_count
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(template.task_count):
            pending.put(index)
        workers = [
            threading.Thread(
                target=self._worker,
                args=(execution, pending),
                name=f"cloudrun-{execution.execution_id}-w{i}",
                daemon=True,
            )
            for i in range(min(limit, template.task_count))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        with self._cond:
            # Tasks never started (stop or cancel came first) count as cancelled.
            finished = execution.succeeded + execution.failed + execution.cancelled
            execution.cancelled += template.task_count - finished
            execution.done = True
            execution.completion_time = execution.update_time = _now()
            self._cond.notify_all()
            log.info(
                "%s: %s (%d succeeded, %d failed, %d cancelled)",
                execution.name,
                execution.status,
                execution.succeeded,
                execution.failed,
                execution.cancelled,
            )

    def _worker(self, execution: _Execution, pending: queue.SimpleQueue[int]) -> None:
        while True:
            with self._cond:
                if self._stopping or execution.cancel_requested:
                    return
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            self._run_task(execution, index)

    def _run_task(self, execution: _Execution, index: int) -> None:
        """Every attempt of one task, until one succeeds or the retries are spent."""
        template = execution.template
        container = template.containers[0]
        for attempt in range(template.max_retries + 1):
            with self._cond:
                if self._stopping or execution.cancel_requested:
                    execution.cancelled += 1
                    execution.update_time = _now()
                    self._cond.notify_all()
                    return
                if attempt:
                    execution.retried_tasks.add(index)
                record = _Attempt(
                    index,
                    attempt,
                    self.log_dir / f"{execution.execution_id}-task{index}-attempt{attempt}.log",
                )
                execution.attempts.append(record)
                execution.running += 1
                execution.start_time = execution.start_time or _now()
                execution.update_time = _now()
            code = self._attempt(execution, container, record)
            with self._cond:
                execution.running -= 1
                record.exit_code = code
                execution.update_time = _now()
                if code == 0:
                    execution.succeeded += 1
                    self._cond.notify_all()
                    return
                interrupted = self._stopping or execution.cancel_requested
                if interrupted:
                    execution.cancelled += 1
                    self._cond.notify_all()
                    return
                self._cond.notify_all()
            log.info(
                "%s task %d attempt %d: %s",
                execution.execution_id,
                index,
                attempt,
                "timed out" if record.timed_out else f"exit code {code}",
            )
        with self._cond:
            execution.failed += 1
            if not execution.failure:
                cause = (
                    "The configured timeout was reached."
                    if record.timed_out
                    else "The container exited with an error."
                )
                execution.failure = (
                    f"Task {execution.execution_id}-task{index} failed with message: {cause}"
                )
            self._cond.notify_all()

    def _attempt(self, execution: _Execution, container: _Container, record: _Attempt) -> int:
        """Run one attempt to its end; its exit code (-N: killed by signal N)."""
        template = execution.template
        env = dict(self.env if self.env is not None else os.environ)
        env.update({item["name"]: item["value"] for item in container.env})
        env.update(
            {
                "CLOUD_RUN_JOB": execution.job.job_id,
                "CLOUD_RUN_EXECUTION": execution.execution_id,
                "CLOUD_RUN_TASK_INDEX": str(record.index),
                "CLOUD_RUN_TASK_COUNT": str(template.task_count),
                "CLOUD_RUN_TASK_ATTEMPT": str(record.attempt),
            }
        )
        argv = [*container.command, *container.args]
        with record.log.open("wb") as out:
            if not argv:
                out.write(b"warden-local cloudrun: the container has neither command nor args\n")
                return 127
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=container.working_dir or None,
                    start_new_session=True,  # its own group: a timeout or stop kills it all
                )
            except OSError as exc:
                out.write(f"warden-local cloudrun: cannot start {argv!r}: {exc}\n".encode())
                return 127
            with self._cond:
                record.proc = proc
                self._cond.notify_all()
                if self._stopping or execution.cancel_requested:  # stop() may have missed it
                    _kill_group(proc.pid, signal.SIGKILL)
            try:
                code = proc.wait(timeout=template.timeout)
            except subprocess.TimeoutExpired:
                record.timed_out = True
                _kill_group(proc.pid, signal.SIGKILL)
                code = proc.wait()
            _kill_group(proc.pid, signal.SIGKILL)  # children left behind in its group
        return code

    def _live_attempts(self) -> list[_Attempt]:
        with self._cond:
            return [
                a
                for execution in self._executions.values()
                for a in execution.attempts
                if a.proc is not None and a.exit_code is None
            ]

    @staticmethod
    def _kill_tasks(attempts: list[_Attempt]) -> None:
        """SIGTERM each task's group, then SIGKILL what is left after the grace period."""
        procs = [a.proc for a in attempts if a.proc is not None]
        for proc in procs:
            _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + _TERM_GRACE
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# -- HTTP ------------------------------------------------------------------------------------------
_PARENT = r"^/v2/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)"
_JOBS_PATH = re.compile(_PARENT + r"/jobs(?:/(?P<job>[^/:]+)(?::(?P<verb>[A-Za-z]+))?)?$")
_EXECUTIONS_PATH = re.compile(
    _PARENT + r"/jobs/(?P<job>[^/:]+)/executions"
    r"(?:/(?P<execution>[^/:]+)(?::(?P<verb>[A-Za-z]+))?)?$"
)
_OPERATIONS_PATH = re.compile(
    _PARENT + r"/operations(?:/(?P<operation>[^/:]+)(?::(?P<verb>[A-Za-z]+))?)?$"
)
_LOCAL_PATH = re.compile(r"^/_local/executions/(?P<execution>[^/:]+)$")
MAX_PAGE_SIZE = 1000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: CloudRunStandIn


class _Handler(JsonApiHandler):
    server: _Server
    server_version = "warden-local-cloudrun"

    def encode(self, body: dict[str, Any], *, int_enums: bool) -> Any:
        return _encode_enums(body, as_int=int_enums)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> dict[str, Any]:
        return self._route(method, path, query, self.json_object(raw))

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> dict[str, Any]:
        standin = self.server.standin
        if (match := _LOCAL_PATH.match(path)) and method == "GET":
            return standin.local_execution(match["execution"])
        if match := _EXECUTIONS_PATH.match(path):
            self._check_parent(match)
            execution, verb = match["execution"], match["verb"]
            name = f"{standin.parent}/jobs/{match['job']}/executions/{execution}"
            if execution is None and method == "GET":
                standin.get_job(match["job"])  # NOT_FOUND for an unknown job
                return _page(standin.list_executions(match["job"]), "executions", query)
            if execution is not None and verb is None and method == "GET":
                return standin.get_execution(name)
            if execution is not None and verb == "cancel" and method == "POST":
                return standin.cancel_execution(name)
            if execution is not None and verb is None and method == "DELETE":
                raise ApiError.unimplemented("DeleteExecution is not served by the local stand-in.")
        elif match := _JOBS_PATH.match(path):
            self._check_parent(match)
            job, verb = match["job"], match["verb"]
            if job is None and method == "POST":
                job_id = query.get("jobId", [""])[0]
                if not job_id:
                    raise ApiError.invalid("jobId: required")
                if query.get("validateOnly", ["false"])[0].lower() == "true":
                    _Template.parse(_normalise(body).get("template"))
                    return {"name": f"{standin.parent}/operations/{uuid.uuid4()}", "done": True}
                created = standin.create_job(job_id, body)
                return standin.record_job_operation("create", created)
            if job is None and method == "GET":
                return _page(standin.list_jobs(), "jobs", query)
            if job is not None and verb is None and method == "GET":
                return standin.get_job(job)
            if job is not None and verb is None and method == "DELETE":
                return standin.record_job_operation("delete", standin.delete_job(job))
            if job is not None and verb is None and method == "PATCH":
                raise ApiError.unimplemented("UpdateJob is not served by the local stand-in.")
            if job is not None and verb == "run" and method == "POST":
                return standin.run_job(job, body)
        elif match := _OPERATIONS_PATH.match(path):
            self._check_parent(match)
            operation, verb = match["operation"], match["verb"]
            if operation is None and method == "GET":
                return _page(standin.list_operations(), "operations", query)
            if operation is not None and verb is None and method == "GET":
                return standin.get_operation(operation)
            if operation is not None and verb == "wait" and method == "POST":
                timeout = _seconds(body["timeout"], "timeout") if body.get("timeout") else 60.0
                return standin.wait_operation(operation, min(timeout, 60.0))
        raise ApiError.not_found(f"no such method: {method} {path}")

    def _check_parent(self, match: re.Match[str]) -> None:
        standin = self.server.standin
        if (match["project"], match["location"]) != (standin.project, standin.location):
            raise ApiError.not_found(
                f"projects/{match['project']}/locations/{match['location']} is not served here; "
                f"this stand-in serves {standin.parent}."
            )


def _page(items: list[dict[str, Any]], key: str, query: dict[str, list[str]]) -> dict[str, Any]:
    try:
        size = int(query.get("pageSize", ["0"])[0] or 0)
        offset = int(query.get("pageToken", ["0"])[0] or 0)
    except ValueError:
        raise ApiError.invalid(
            "pageSize must be an integer and pageToken one this API returned"
        ) from None
    if size < 0 or offset < 0 or offset > len(items):
        raise ApiError.invalid("invalid pageSize or pageToken")
    size = min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    page: dict[str, Any] = {key: items[offset : offset + size]}
    if offset + size < len(items):
        page["nextPageToken"] = str(offset + size)
    return page


# -- command line ----------------------------------------------------------------------------------
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
        prog="python -m warden_local.cloudrun",
        description="Serve the Cloud Run Admin API v2 (jobs, executions, operations) locally; "
        "each task runs as a local process. Tasks get this process's environment.",
    )
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--log-dir", type=Path, required=True, help="task logs go here")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    standin = CloudRunStandIn(
        project=args.project, location=args.location, log_dir=args.log_dir, port=args.port
    )
    stop = threading.Event()
    with _signals_set(stop), standin:
        print(f"ready {standin.url}", flush=True)
        while not stop.wait(1.0):
            pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
